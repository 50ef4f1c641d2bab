//! A request that only the scrape that started it reads: that scrape drives it itself, on its
//! own connection's task, exactly like a scrape with coalescing off (no task of its own, no shared
//! buffer, no wake-ups between two tasks for every frame).
//!
//! While the request can still take a second scraper (not answered yet, or every byte passed on
//! so far is at most `PROXY_COALESCE_MAX_BUFFER_BYTES`, so byte 0 is still at hand), the starting
//! scrape keeps a `Bytes` handle on every piece it passed on: a reference count, not a copy. A
//! scraper that joins then takes the request over ([`take_over`]): the send future or the body,
//! the slot and the gauge move to a task of their own (`Request` in the parent module) with a
//! shared buffer that already holds those pieces; the starting scrape goes on from its place in
//! that buffer, the joiner from byte 0. From then on it is an ordinary shared request.
//!
//! Once byte 0 is no longer at hand, the starting scrape takes the body out of the shared cell and
//! streams the rest alone; the request leaves the registry, as a shared one does when its buffer
//! drops byte 0.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode, Version};
use http_body::Body as _;
use tokio::sync::Notify;

use super::buffer::{self, BodyReader, BodyWriter, PACK_RUN, PACKED_PIECE, ReadError};
use super::{Answer, Head, HeadSlot, Held, Registry, failure, unregister};
use crate::exporter::ExporterError;
use crate::filter::ExporterBody;

/// The exporter request as the starting scrape drives it, movable to a task when one joins.
pub(super) type SendFuture = Pin<Box<dyn Future<Output = Result<Response<ExporterBody>, ExporterError>> + Send>>;

/// What the registry entry of a lone request and its starting scrape share.
pub(super) struct Lone {
    phase: Phase,
    /// The starting scrape's task while it waits on the exporter: woken when a joiner takes the
    /// request over, since the exporter then wakes the joiner's task instead.
    waker: Option<Waker>,
    /// The slot and the in-flight gauge, until the body ends or a joiner's task takes them.
    held: Option<Held>,
    /// The answer's head while streaming, for a joiner (outside [`Phase`], which moves).
    head: Option<Kept>,
    /// The starting scraper's connection, told when the shared buffer cuts that scraper once the
    /// request has been handed over (see [`BodyReader::hang_up_when_cut`]).
    hang_up: Option<Arc<Notify>>,
}

enum Phase {
    /// Sent (or being sent) by the starting scrape.
    Sending(SendFuture),
    /// The starting scrape streams the body. `sent`: every piece it has passed on, `bytes` of
    /// them, for a joiner.
    Streaming { body: ExporterBody, sent: Pieces, bytes: u64 },
    /// A joiner's task drives it now; the starting scrape reads `reader` (until it takes it out).
    Handed { head: Arc<HeadSlot>, reader: Option<BodyReader> },
    /// The body ended cleanly.
    Ended,
    /// Failed, abandoned, or past byte 0 (then the starting scrape streams the rest alone).
    Over,
}

/// The head of a lone request's answer, kept for a joiner: the starting scrape's own headers go to
/// its scraper. The first eight headers sit in place (windows_exporter sends three or four after
/// hop-by-hop ones are gone, the benchmark's nginx seven), so keeping them allocates nothing.
struct Kept {
    status: StatusCode,
    version: Version,
    first: [Option<(HeaderName, HeaderValue)>; 8],
    more: Vec<(HeaderName, HeaderValue)>,
}

impl Kept {
    fn of(parts: &http::response::Parts) -> Kept {
        let mut first: [Option<(HeaderName, HeaderValue)>; 8] = Default::default();
        let mut more = Vec::new();
        for (i, (name, value)) in parts.headers.iter().enumerate() {
            let header = (name.clone(), value.clone());
            match first.get_mut(i) {
                Some(slot) => *slot = Some(header),
                None => more.push(header),
            }
        }
        Kept { status: parts.status, version: parts.version, first, more }
    }

    fn answer(self) -> Answer {
        let mut headers = HeaderMap::with_capacity(self.first.len() + self.more.len());
        for (name, value) in self.first.into_iter().flatten().chain(self.more) {
            headers.append(name, value);
        }
        Answer { status: self.status, version: self.version, headers }
    }
}

/// A lone request, sending.
pub(super) fn new(send: SendFuture, held: Held) -> Arc<Mutex<Lone>> {
    Arc::new(Mutex::new(Lone { phase: Phase::Sending(send), waker: None, held: Some(held), head: None, hang_up: None }))
}

fn lock(lone: &Mutex<Lone>) -> MutexGuard<'_, Lone> {
    lone.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Keeps `cx`'s waker (a clone only when it is a different task's).
fn remember(waker: &mut Option<Waker>, cx: &Context<'_>) {
    if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
        *waker = Some(cx.waker().clone());
    }
}

/// Where a joiner's task picks a request up.
pub(super) enum From {
    /// Before the head: it sends (or goes on sending).
    Send(SendFuture),
    /// After the head: it reads the rest of the body.
    Body(ExporterBody),
}

/// A lone request handed over to a task of its own.
pub(super) struct Taken {
    /// The shared buffer's writer, holding what the starting scrape had passed on.
    pub writer: BodyWriter,
    /// The joiner's reader, from byte 0.
    pub reader: BodyReader,
    /// The head, set already when the exporter had answered.
    pub head: Arc<HeadSlot>,
    /// The slot and the gauge.
    pub held: Held,
    /// What the task does first.
    pub from: From,
}

/// Hands the request over to a joiner, if it can still serve one from byte 0.
pub(super) fn take_over(lone: &Mutex<Lone>, limit: u64) -> Option<Taken> {
    let mut guard = lock(lone);
    let lone = &mut *guard;
    let joinable = match &lone.phase {
        Phase::Sending(_) => true,
        Phase::Streaming { body, bytes, .. } => *bytes <= limit && !body.is_end_stream(),
        Phase::Handed { .. } | Phase::Ended | Phase::Over => false,
    };
    if !joinable {
        return None;
    }
    let held = lone.held.take().expect("a request in flight holds its slot");
    let (from, head, writer, starter, reader) = match std::mem::replace(&mut lone.phase, Phase::Over) {
        Phase::Sending(send) => {
            let (writer, starter) = buffer::shared(limit);
            let reader = writer.joiner().join().expect("a new body takes readers");
            (From::Send(send), HeadSlot::new(Head::Waiting), writer, starter, reader)
        }
        Phase::Streaming { body, sent, .. } => {
            let head = lone.head.take().expect("a streaming request kept its head");
            let (writer, starter, reader) = buffer::resumed(limit, sent.into_vec());
            (From::Body(body), HeadSlot::new(Head::Answered(Arc::new(head.answer()))), writer, starter, reader)
        }
        Phase::Handed { .. } | Phase::Ended | Phase::Over => unreachable!("checked joinable above"),
    };
    if let Some(hang_up) = lone.hang_up.take() {
        starter.hang_up_when_cut(hang_up);
    }
    lone.phase = Phase::Handed { head: head.clone(), reader: Some(starter) };
    if let Some(waker) = lone.waker.take() {
        waker.wake();
    }
    Some(Taken { writer, reader, head, held, from })
}

/// The starting scrape's end of a lone request.
pub(super) struct Starter {
    pub(super) lone: Arc<Mutex<Lone>>,
    pub(super) registry: Registry,
    pub(super) id: u64,
    pub(super) limit: u64,
    /// The body ended cleanly (known without the lock, for [`SharedBody::is_end_stream`]).
    pub(super) ended: bool,
}

/// How the starting scrape's wait for the head ended.
pub(super) enum Sent {
    /// The exporter answered (its head as it came, for this scraper); the starting scrape
    /// streams the body.
    Answered(http::response::Parts),
    /// The request failed before a head.
    Failed(ExporterError),
    /// A joiner took the request over: wait for this head, then read this reader.
    Handed(Arc<HeadSlot>, BodyReader),
}

/// One poll of the starting scrape's body.
enum Step {
    /// What to return.
    Polled(Poll<Option<Result<Bytes, ReadError>>>),
    /// Handed over: read this reader from now on.
    Reader(BodyReader),
    /// Past byte 0: this piece, then the rest of the exporter's body alone.
    Alone(ExporterBody, Option<Held>, Bytes),
}

impl Starter {
    /// Drives the send until the head, unless a joiner takes the request over first.
    pub(super) fn poll_answer(&mut self, cx: &mut Context<'_>) -> Poll<Sent> {
        let mut guard = lock(&self.lone);
        let lone = &mut *guard;
        match &mut lone.phase {
            Phase::Sending(send) => match send.as_mut().poll(cx) {
                Poll::Pending => {
                    remember(&mut lone.waker, cx);
                    Poll::Pending
                }
                Poll::Ready(Ok(response)) => {
                    let (parts, body) = response.into_parts();
                    lone.head = Some(Kept::of(&parts));
                    lone.phase = Phase::Streaming { body, sent: Pieces::default(), bytes: 0 };
                    Poll::Ready(Sent::Answered(parts))
                }
                Poll::Ready(Err(error)) => {
                    // A scrape arriving after the failure starts a new request.
                    let held = lone.held.take();
                    lone.phase = Phase::Over;
                    drop(guard);
                    drop(held);
                    unregister(&self.registry, self.id);
                    Poll::Ready(Sent::Failed(error))
                }
            },
            Phase::Handed { head, reader } => Poll::Ready(Sent::Handed(
                head.clone(),
                reader.take().expect("the starting scrape takes its reader once"),
            )),
            Phase::Streaming { .. } | Phase::Ended | Phase::Over => {
                unreachable!("the starting scrape waits for the head once")
            }
        }
    }

    /// The next piece of the body while the starting scrape streams it itself.
    fn poll_body(&mut self, cx: &mut Context<'_>) -> Step {
        let mut guard = lock(&self.lone);
        let lone = &mut *guard;
        let (body, sent, bytes) = match &mut lone.phase {
            Phase::Streaming { body, sent, bytes, .. } => (body, sent, bytes),
            Phase::Handed { reader, .. } => {
                return Step::Reader(reader.take().expect("the starting scrape takes its reader once"));
            }
            Phase::Ended => return Step::Polled(Poll::Ready(None)),
            Phase::Sending(_) | Phase::Over => {
                unreachable!("the body is read after the head and not after its end")
            }
        };
        loop {
            match Pin::new(&mut *body).poll_frame(cx) {
                Poll::Pending => {
                    remember(&mut lone.waker, cx);
                    return Step::Polled(Poll::Pending);
                }
                Poll::Ready(Some(Ok(frame))) => {
                    // Trailers carry no body bytes; windows_exporter sends none.
                    let Ok(data) = frame.into_data() else { continue };
                    *bytes += data.len() as u64;
                    if *bytes > self.limit {
                        // Byte 0 can no longer be held for a joiner: the rest is this scrape's alone.
                        let Phase::Streaming { body, .. } = std::mem::replace(&mut lone.phase, Phase::Over) else {
                            unreachable!("streaming")
                        };
                        let (held, head) = (lone.held.take(), lone.head.take());
                        drop(guard);
                        drop(head);
                        unregister(&self.registry, self.id);
                        return Step::Alone(body, held, data);
                    }
                    if body.is_end_stream() {
                        // hyper knows the end with the last byte of a Content-Length body: finish
                        // now, so the exporter connection goes back to the pool and the slot is free.
                        self.ended = true;
                        self.end(guard, Phase::Ended);
                        return Step::Polled(Poll::Ready(Some(Ok(data))));
                    }
                    sent.push(data.clone());
                    return Step::Polled(Poll::Ready(Some(Ok(data))));
                }
                Poll::Ready(None) => {
                    self.ended = true;
                    self.end(guard, Phase::Ended);
                    return Step::Polled(Poll::Ready(None));
                }
                Poll::Ready(Some(Err(error))) => {
                    let failure = failure(&error);
                    self.end(guard, Phase::Over);
                    return Step::Polled(Poll::Ready(Some(Err(ReadError::Failed(failure)))));
                }
            }
        }
    }

    /// The request is over (`phase`): what it held goes, outside the lock, and so does its entry.
    fn end(&self, mut lone: MutexGuard<'_, Lone>, phase: Phase) {
        let before = std::mem::replace(&mut lone.phase, phase);
        let (held, head) = (lone.held.take(), lone.head.take());
        drop(lone);
        drop((before, held, head));
        unregister(&self.registry, self.id);
    }
}

impl Drop for Starter {
    fn drop(&mut self) {
        let lone = lock(&self.lone);
        match lone.phase {
            // The starting scraper went away (or its deadline passed) while nobody shared the
            // request: the request goes with it.
            Phase::Sending(_) | Phase::Streaming { .. } => self.end(lone, Phase::Over),
            // Its reader on the shared buffer, if it never took it, goes now.
            Phase::Handed { .. } => {
                let mut lone = lone;
                let handed = std::mem::replace(&mut lone.phase, Phase::Over);
                drop(lone);
                drop(handed);
            }
            Phase::Ended | Phase::Over => {}
        }
    }
}

/// The pieces a lone request keeps for a joiner: the first few in place (a scrape's body comes in
/// a handful of reads), the rest in a vector, packed (see [`pack`]).
#[derive(Default)]
struct Pieces {
    first: [Option<Bytes>; 4],
    more: Vec<Bytes>,
    /// Pieces of `more` before this one are packed already.
    packed: usize,
}

impl Pieces {
    fn push(&mut self, piece: Bytes) {
        match self.first.iter_mut().find(|slot| slot.is_none()) {
            Some(slot) => *slot = Some(piece),
            None => {
                self.more.push(piece);
                pack(&mut self.more, &mut self.packed);
            }
        }
    }

    fn into_vec(self) -> Vec<Bytes> {
        self.first.into_iter().flatten().chain(self.more).collect()
    }
}

/// Packs the small pieces a lone request keeps for a joiner, as the shared buffer packs pieces
/// every reader has passed: an exporter that writes in small chunks would otherwise leave one
/// `Bytes` per chunk, each keeping alive the read buffer hyper cut it from. Every [`PACK_RUN`]
/// pieces, the new ones are copied together into pieces of up to [`PACKED_PIECE`] bytes; larger
/// ones stay as they are.
fn pack(sent: &mut Vec<Bytes>, packed: &mut usize) {
    if sent.len() < *packed + PACK_RUN {
        return;
    }
    let run: Vec<Bytes> = sent.drain(*packed..).collect();
    let mut small: Vec<u8> = Vec::new();
    for piece in run {
        if small.len() + piece.len() > PACKED_PIECE && !small.is_empty() {
            sent.push(Bytes::copy_from_slice(&small));
            small.clear();
        }
        if piece.len() >= PACKED_PIECE {
            sent.push(piece);
        } else {
            small.extend_from_slice(&piece);
        }
    }
    if !small.is_empty() {
        sent.push(Bytes::copy_from_slice(&small));
    }
    *packed = sent.len();
}

/// One scraper's body under coalescing: the exporter body it streams itself while nobody shares
/// its request, else its cursor on a shared request's buffer.
pub struct SharedBody(Source);

enum Source {
    /// A cursor on a shared request's buffer.
    Reader(BodyReader),
    /// The request this scrape started, while it drives it itself.
    Lone(Starter),
    /// The rest of this scrape's request, past byte 0: nobody can join any more.
    Alone { body: ExporterBody, _held: Option<Held> },
}

impl SharedBody {
    pub(super) fn reader(reader: BodyReader) -> SharedBody {
        SharedBody(Source::Reader(reader))
    }

    pub(super) fn lone(starter: Starter) -> SharedBody {
        SharedBody(Source::Lone(starter))
    }

    /// Signal `hang_up` when the shared buffer cuts this scraper for lagging (at once if it
    /// already has). A scraper streaming alone is never cut.
    pub fn hang_up_when_cut(&self, hang_up: Arc<Notify>) {
        match &self.0 {
            Source::Reader(reader) => reader.hang_up_when_cut(hang_up),
            Source::Lone(starter) => {
                let mut lone = lock(&starter.lone);
                match &lone.phase {
                    Phase::Handed { reader: Some(reader), .. } => reader.hang_up_when_cut(hang_up),
                    _ => lone.hang_up = Some(hang_up),
                }
            }
            Source::Alone { .. } => {}
        }
    }

    /// Whether the shared buffer cut this scraper off for lagging.
    pub fn is_cut(&self) -> bool {
        match &self.0 {
            Source::Reader(reader) => reader.is_cut(),
            Source::Lone(starter) => {
                matches!(&lock(&starter.lone).phase, Phase::Handed { reader: Some(reader), .. } if reader.is_cut())
            }
            Source::Alone { .. } => false,
        }
    }

    /// The next piece, the clean end (`None`), or why there is no more.
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, ReadError>>> {
        loop {
            let step = match &mut self.0 {
                Source::Reader(reader) => return reader.poll_next(cx),
                Source::Alone { body, .. } => return poll_alone(body, cx),
                Source::Lone(starter) => starter.poll_body(cx),
            };
            match step {
                Step::Polled(polled) => return polled,
                Step::Reader(reader) => self.0 = Source::Reader(reader),
                Step::Alone(body, held, data) => {
                    self.0 = Source::Alone { body, _held: held };
                    return Poll::Ready(Some(Ok(data)));
                }
            }
        }
    }

    /// Whether the next poll returns the clean end.
    pub fn is_end_stream(&self) -> bool {
        match &self.0 {
            Source::Reader(reader) => reader.is_end_stream(),
            Source::Alone { body, .. } => body.is_end_stream(),
            // The flag first: asked again after the last piece.
            Source::Lone(starter) => {
                starter.ended
                    || match &lock(&starter.lone).phase {
                        Phase::Streaming { body, .. } => body.is_end_stream(),
                        Phase::Ended => true,
                        Phase::Handed { reader: Some(reader), .. } => reader.is_end_stream(),
                        Phase::Handed { reader: None, .. } | Phase::Sending(_) | Phase::Over => false,
                    }
            }
        }
    }
}

/// The next data frame of a body this scrape streams alone.
fn poll_alone(body: &mut ExporterBody, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, ReadError>>> {
    loop {
        return match Pin::new(&mut *body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => Poll::Ready(Some(Ok(data))),
                Err(_trailers) => continue,
            },
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(ReadError::Failed(failure(&error))))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        };
    }
}
