//! Coalescing: one exporter request for every identical scrape in flight at once.
//!
//! windows_exporter v0.31+ serialises collections behind one lock, so a second identical scrape
//! (an HA Prometheus pair, an agent, an operator's curl) waits for the first collection and then
//! runs a second one: twice the load on the node, and the second scraper may time out. Here a
//! scrape that arrives while an identical exporter request ([`key::ScrapeKey`]) is in flight,
//! from the moment it is sent until its body ends, is served from it: same status, headers and
//! body bytes, from byte 0, as they arrive ([`buffer`]). Nothing is cached: once the body has
//! ended (or its start is no longer held), the next scrape sends a new request.
//!
//! While only the scrape that started it reads it, the exporter request is driven by that scrape
//! itself, as with coalescing off (`lone`): a lone scrape pays for coalescing only a registry
//! entry and handles on the pieces it passed on. As soon as a second scraper joins, the request
//! is driven by a task of its own, so it belongs to no scraper: the first scraper hanging up does
//! not cut off the others, and when the last one is gone the task drops the request (and its
//! `PROXY_MAX_INFLIGHT` slot, which the task holds: one slot per exporter request, however many
//! scrapers it serves). Every scraper keeps its own
//! deadline: it waits for the answer's head within it ([`Member::answer`]) and streams the body
//! within it, so one scraper's 504 or abort leaves the others going. A failure before the head
//! reaches every waiting scraper as the same error; a failure mid-body aborts every scraper.
//!
//! The registry lock is held only for lookups and inserts, never across an await. The registry
//! is a short vector compared key by key: it holds at most one request per exporter slot (plus
//! ones that ended but were not looked up since), so no hashing is needed.

pub mod buffer;
pub mod key;
mod lone;

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use http::{HeaderMap, Response, StatusCode, Version};
use http_body::Body as _;
use http_body_util::BodyExt;
use tokio::sync::{Notify, OwnedSemaphorePermit};

use self::buffer::{BodyReader, BodyWriter, Failure, Joiner, Room};
use self::key::{Identity, ScrapeKey};
pub use self::lone::SharedBody;
use self::lone::{Lone, Sent, Starter};
use crate::exporter::{ExporterError, innermost};
use crate::filter::{ExporterBody, FilterError};
use crate::telemetry::GaugeGuard;

/// Coalescing of identical concurrent scrapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Coalescing {
    /// `PROXY_COALESCE`.
    pub enabled: bool,
    /// `PROXY_COALESCE_MAX_BUFFER_BYTES`: body bytes one shared exporter request may hold.
    pub max_buffer_bytes: u64,
}

/// The head of the exporter's answer, as every scraper of the request gets it.
#[derive(Debug)]
pub struct Answer {
    /// The exporter's status.
    pub status: StatusCode,
    /// Its HTTP version (always 1.1 or 1.0 from the pooled HTTP/1 client).
    pub version: Version,
    /// Its headers, hop-by-hop ones already removed.
    pub headers: HeaderMap,
}

/// Where an exporter request stands, as its scrapers see it.
enum Head {
    /// Sent; no response head yet.
    Waiting,
    /// The head arrived; the body follows through the buffer.
    Answered(Arc<Answer>),
    /// No head: the request failed (each scraper answers 502 with this error).
    Failed(ExporterError),
    /// The driving task went away without an answer (only while the runtime stops).
    Gone,
}

/// The head of one exporter request, set once by its task, awaited by each of its scrapers.
/// (A `watch` channel did this with an allocation and eight `Notify`s per request.)
struct HeadSlot {
    head: Mutex<Head>,
    set: Notify,
}

impl HeadSlot {
    fn new(head: Head) -> Arc<HeadSlot> {
        Arc::new(HeadSlot { head: Mutex::new(head), set: Notify::new() })
    }

    fn lock(&self) -> MutexGuard<'_, Head> {
        self.head.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The driving task's end of a [`HeadSlot`]: it sets the head once; dropped without having set
/// it, it tells the scrapers the task is gone.
struct HeadSender(Arc<HeadSlot>);

impl HeadSender {
    fn send(&self, head: Head) {
        *self.0.lock() = head;
        self.0.set.notify_waiters();
    }
}

impl Drop for HeadSender {
    fn drop(&mut self) {
        if matches!(*self.0.lock(), Head::Waiting) {
            self.send(Head::Gone);
        }
    }
}

/// One scraper's share of an exporter request: the answer's head when it comes, then its own
/// cursor on the body.
pub struct Member(Role);

enum Role {
    /// It reads a shared request's buffer.
    Joined { head: Arc<HeadSlot>, reader: BodyReader },
    /// It started the request and drives it itself while nobody shares it.
    Started(Starter),
}

impl Member {
    /// Waits for the answer's head (the scrape that started the request drives it meanwhile,
    /// while nobody shares it; the caller bounds this with its own deadline). `Err(None)`:
    /// the driving task went away without an answer, which happens only while the runtime stops.
    pub async fn answer(&mut self) -> Result<http::response::Parts, Option<ExporterError>> {
        if let Role::Started(starter) = &mut self.0 {
            match std::future::poll_fn(|cx| starter.poll_answer(cx)).await {
                Sent::Answered(answer) => return Ok(answer),
                Sent::Failed(error) => return Err(Some(error)),
                Sent::Handed(head, reader) => self.0 = Role::Joined { head, reader },
            }
        }
        let Role::Joined { head, .. } = &self.0 else { unreachable!("a started request not handed over has answered") };
        loop {
            // Armed before looking, so a head set between the look and the wait is not missed.
            let set = head.set.notified();
            tokio::pin!(set);
            set.as_mut().enable();
            match &*head.lock() {
                Head::Waiting => {}
                Head::Answered(answer) => {
                    let (mut parts, ()) = Response::new(()).into_parts();
                    parts.status = answer.status;
                    parts.version = answer.version;
                    parts.headers = answer.headers.clone();
                    return Ok(parts);
                }
                Head::Failed(error) => return Err(Some(error.clone())),
                Head::Gone => return Err(None),
            }
            set.await;
        }
    }

    /// The body, once the head is in hand.
    pub fn into_body(self) -> SharedBody {
        match self.0 {
            Role::Joined { reader, .. } => SharedBody::reader(reader),
            Role::Started(starter) => SharedBody::lone(starter),
        }
    }
}

/// An exporter request in the registry.
struct Entry {
    id: u64,
    request: Arc<dyn Identity>,
    flight: Flight,
}

/// Who drives a request in flight.
enum Flight {
    /// The scrape that started it, on its own connection, while nobody shares it (`lone`).
    Lone(Arc<Mutex<Lone>>),
    /// A task of its own, for every scraper of it.
    Shared { joiner: Joiner, head: Arc<HeadSlot> },
}

type Registry = Arc<Mutex<Vec<Entry>>>;

/// Where the request for `key` is in the registry.
fn find(registry: &[Entry], request: &dyn Identity) -> Option<usize> {
    registry.iter().position(|entry| key::same(&*entry.request, request))
}

/// How the exporter body's failure reaches every scraper of it: its innermost cause, and whether
/// it is the filter's series cap.
fn failure(error: &FilterError) -> Failure {
    Failure { reason: innermost(error).into(), series_limit: error.is_series_limit() }
}

/// Removes request `id` from the registry.
fn unregister(registry: &Registry, id: u64) {
    let mut registry = lock(registry);
    if let Some(at) = registry.iter().position(|entry| entry.id == id) {
        registry.swap_remove(at);
    }
}

/// The exporter requests in flight, by [`ScrapeKey`].
pub struct Coalescer {
    registry: Registry,
    /// Woken whenever a request is registered, so scrapes waiting for a slot look again.
    registered: Notify,
    /// Scrapes waiting on `registered`: without any, a registration wakes nobody.
    waiting: AtomicUsize,
    next_id: AtomicU64,
    limit: u64,
}

/// How a scrape got its [`Member`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Joined {
    /// It started the exporter request.
    Started,
    /// It joined another scrape's exporter request.
    Shared,
}

impl Coalescer {
    /// A registry whose requests each hold at most `limit` body bytes (`PROXY_COALESCE_MAX_BUFFER_BYTES`).
    pub fn new(limit: u64) -> Coalescer {
        Coalescer {
            registry: Arc::default(),
            registered: Notify::new(),
            waiting: AtomicUsize::new(0),
            next_id: AtomicU64::new(0),
            limit,
        }
    }

    /// `PROXY_COALESCE_MAX_BUFFER_BYTES`.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Joins the identical exporter request in flight, if there is one that can still serve a
    /// new scraper from byte 0.
    pub fn join(&self, request: &dyn Identity) -> Option<Member> {
        let mut registry = lock(&self.registry);
        let at = find(&registry, request)?;
        let joined = self.join_entry(&mut registry[at]);
        if joined.is_none() {
            // Ended, abandoned or past byte 0: it no longer counts as in flight.
            registry.swap_remove(at);
        }
        joined
    }

    /// A new scraper of `entry`'s request, if it can still serve one from byte 0. A request its
    /// starting scrape drives alone is handed to a task of its own first.
    fn join_entry(&self, entry: &mut Entry) -> Option<Member> {
        match &entry.flight {
            Flight::Shared { joiner, head } => {
                joiner.join().map(|reader| Member(Role::Joined { head: head.clone(), reader }))
            }
            Flight::Lone(lone) => {
                let taken = lone::take_over(lone, self.limit)?;
                let (head, reader) = (taken.head.clone(), taken.reader);
                entry.flight = Flight::Shared { joiner: taken.writer.joiner(), head: head.clone() };
                let request = Request {
                    registry: self.registry.clone(),
                    key: entry.request.key(),
                    id: entry.id,
                    head: HeadSender(taken.head),
                    writer: taken.writer,
                    _held: taken.held,
                };
                match taken.from {
                    lone::From::Send(send) => tokio::spawn(request.drive(send)),
                    lone::From::Body(body) => tokio::spawn(request.stream(body)),
                };
                Some(Member(Role::Joined { head, reader }))
            }
        }
    }

    /// Completes when a request is registered after this call (for scrapes waiting for a slot,
    /// which then try [`Coalescer::join`] again). The scrape counts as waiting for it until the
    /// returned guard is dropped; call before looking, so a registration in between is not missed.
    pub fn registered(&self) -> (tokio::sync::futures::Notified<'_>, WaitingForRegistration<'_>) {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        (self.registered.notified(), WaitingForRegistration(&self.waiting))
    }

    /// Starts `request` with the `slot` the scrape obtained, unless an
    /// identical one was registered meanwhile (then the scrape joins it and `slot` is released).
    ///
    /// `send` sends the request and yields the exporter's answer with hop-by-hop headers
    /// removed. The starting scrape drives it, and then streams the body, itself; `slot` and
    /// `inflight` are held until the body ends. When a second scraper joins, the request (sent
    /// or not) moves to a task of its own with the body so far, the slot and the gauge.
    pub fn start<F>(
        &self,
        request: Arc<dyn Identity>,
        slot: OwnedSemaphorePermit,
        inflight: GaugeGuard,
        send: F,
    ) -> (Member, Joined)
    where
        F: Future<Output = Result<Response<ExporterBody>, ExporterError>> + Send + 'static,
    {
        let mut registry = lock(&self.registry);
        if let Some(at) = find(&registry, &*request) {
            if let Some(member) = self.join_entry(&mut registry[at]) {
                return (member, Joined::Shared);
            }
            // As in `join`: this one no longer counts as in flight; the new one replaces it.
            registry.swap_remove(at);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let lone = lone::new(Box::pin(send), Held { _slot: slot, _inflight: inflight });
        registry.push(Entry { id, request, flight: Flight::Lone(lone.clone()) });
        drop(registry);
        // A scrape that starts waiting after this load looks at the registry after the push above.
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.registered.notify_waiters();
        }
        let starter = Starter { lone, registry: self.registry.clone(), id, limit: self.limit, ended: false };
        (Member(Role::Started(starter)), Joined::Started)
    }
}

/// A scrape waiting for a registration ([`Coalescer::registered`]); dropped when it stops waiting.
pub struct WaitingForRegistration<'a>(&'a AtomicUsize);

impl Drop for WaitingForRegistration<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What an exporter request holds until its body ends.
struct Held {
    _slot: OwnedSemaphorePermit,
    _inflight: GaugeGuard,
}

fn lock(registry: &Registry) -> MutexGuard<'_, Vec<Entry>> {
    registry.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One shared exporter request, owned by its task.
struct Request {
    registry: Registry,
    key: ScrapeKey,
    id: u64,
    head: HeadSender,
    writer: BodyWriter,
    _held: Held,
}

impl Request {
    /// Sends, publishes the head, then reads the body into the buffer ([`Request::stream`]).
    async fn drive(mut self, send: lone::SendFuture) {
        let answer = tokio::select! {
            answer = send => answer,
            () = self.writer.abandoned() => {
                tracing::debug!(key = ?self.key, "every scraper left before the exporter answered; request dropped");
                return self.unregister();
            }
        };
        let body = match answer {
            Err(error) => {
                // Unregister first: a scrape arriving after the failure starts a new request.
                self.unregister();
                self.head.send(Head::Failed(error));
                return;
            }
            Ok(response) => {
                let (parts, body) = response.into_parts();
                let answer = Answer { status: parts.status, version: parts.version, headers: parts.headers };
                self.head.send(Head::Answered(Arc::new(answer)));
                body
            }
        };
        self.stream(body).await;
    }

    /// Reads the body into the buffer until it ends, fails, or nobody reads any more. The
    /// exporter is read whenever the fastest scraper is close to the newest byte, never held
    /// back by a slower one (those are cut by the buffer).
    async fn stream(mut self, mut body: ExporterBody) {
        let largest = self.writer.largest_piece();
        loop {
            // hyper knows the end as soon as the last byte of a Content-Length body (or a HEAD
            // answer) is in: finish then, so each scraper's stream reports its end with its last
            // byte (hyper stops polling a body at its length) and the exporter connection goes
            // back to the pool.
            if body.is_end_stream() {
                self.unregister();
                return self.writer.finish();
            }
            if self.writer.room().await == Room::Abandoned {
                tracing::debug!(key = ?self.key, "every scraper left mid-body; exporter request dropped");
                return self.unregister();
            }
            let frame = tokio::select! {
                frame = body.frame() => frame,
                () = self.writer.abandoned() => {
                    tracing::debug!(key = ?self.key, "every scraper left mid-body; exporter request dropped");
                    return self.unregister();
                }
            };
            match frame {
                None => {
                    self.unregister();
                    return self.writer.finish();
                }
                Some(Err(error)) => {
                    // Each scraper's stream logs and counts its own abort, with this cause.
                    self.unregister();
                    return self.writer.fail(failure(&error));
                }
                Some(Ok(frame)) => {
                    // Trailers carry no body bytes; windows_exporter sends none.
                    let Ok(mut data) = frame.into_data() else { continue };
                    // Reads are at most hyper's 128 KiB, within the largest piece for any valid
                    // limit; split anyway so each piece is covered by the room it waited for.
                    while data.len() > largest {
                        let piece = data.split_to(largest);
                        self.writer.push(piece);
                        if self.writer.room().await == Room::Abandoned {
                            return self.unregister();
                        }
                    }
                    self.writer.push(data);
                    if !self.writer.is_joinable() {
                        // Byte 0 is gone: later scrapes must not find this request.
                        self.unregister();
                    }
                }
            }
        }
    }

    /// Removes this request from the registry.
    fn unregister(&self) {
        unregister(&self.registry, self.id);
    }
}
