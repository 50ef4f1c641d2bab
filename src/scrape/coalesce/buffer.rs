//! The shared body: one exporter body, read by every scraper of a coalesced request, each with
//! its own cursor.
//!
//! One writer (the task that reads the exporter) appends the body as it arrives; any number of
//! readers (one per scraper) each read it from byte 0, in order, at their own pace. The rules
//! that keep memory bounded and keep a slow scraper from hurting anyone else:
//!
//! - **Bounded history.** The buffer holds at most `limit` bytes. While the whole body so far
//!   fits, it keeps everything from byte 0, so a scraper that arrives late still gets the whole
//!   body ([`Joiner::join`]); once the front has to go, nobody new can join, and from then on
//!   only what some reader has yet to read is kept.
//! - **The writer never waits on a slow reader.** It may read the exporter again while the
//!   *fastest* reader is less than half the limit behind ([`BodyWriter::poll_room`]); a reader
//!   that ends up more than `limit` bytes behind the newest byte is cut off
//!   ([`ReadError::Lagged`]) on the spot. So a slow reader can neither hold memory nor hold back
//!   the exporter and the others; a lone reader sets the pace, exactly as it would without
//!   coalescing (TCP flow control), and is never cut.
//! - **Pieces are at most half the limit** ([`BodyWriter::largest_piece`]; larger writes are
//!   split, zero-copy), so a write of one piece made when [`BodyWriter::poll_room`] allowed it
//!   never cuts the fastest reader.
//! - **Memory is the bytes held.** An exporter that writes in small chunks makes as many small
//!   pieces, each with its bookkeeping and each keeping hyper's read buffer alive; small pieces
//!   that every reader has passed are packed into few exact-size ones (`State::pack`), so the
//!   `limit` of body bytes costs about that much memory.
//! - **Never a clean short body.** The body ends cleanly only through [`BodyWriter::finish`];
//!   [`BodyWriter::fail`] or a writer dropped without finishing gives every reader
//!   [`ReadError::Failed`] after the bytes it had not read yet.
//! - **A cut reader's connection is told at once.** hyper polls a body only while the socket
//!   takes bytes, so a scraper that stopped reading would not poll its cursor again to learn it
//!   was cut; [`BodyReader::hang_up_when_cut`] gives the cursor a [`Notify`] the writer signals
//!   when it cuts it (`connection` then closes that connection).
//! - **Abandoned when nobody reads.** When no reader is left (gone or cut),
//!   [`BodyWriter::poll_abandoned`] says so: the exporter request is then dropped.
//!
//! Every reader position is a piece boundary (a reader takes whole pieces), so "bytes behind"
//! and "bytes held" are exact. The state is one mutex: the runtime is single-threaded and every
//! critical section is a few field updates, never an await.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use tokio::sync::Notify;

#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub mod model;

/// The size [`State::pack`] packs small pieces up to.
pub(super) const PACKED_PIECE: usize = 16 * 1024;

/// How many pieces every reader has passed before [`State::pack`] packs them (two under the
/// model check and the fuzzer, whose bodies are a few dozen bytes, so they pack all the time).
pub(super) const PACK_RUN: usize = if cfg!(any(test, fuzzing)) { 2 } else { 64 };

/// Why a reader gets no more of the body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// The exporter's body failed (or its writer went away) before its end.
    #[error("{0}")]
    Failed(Failure),
    /// This reader fell more than the buffer limit behind the exporter and was cut off.
    #[error("scraper fell more than the coalescing buffer behind the exporter")]
    Lagged,
}

/// Why the exporter's body failed, as every reader of it gets it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Failure {
    /// What went wrong, for the scraper's log line.
    pub reason: Arc<str>,
    /// Whether it was the filter's series cap (`PROXY_MAX_SERIES`), its own scrape outcome.
    pub series_limit: bool,
}

impl From<&str> for Failure {
    /// Any failure but the series cap.
    fn from(reason: &str) -> Failure {
        Failure { reason: reason.into(), series_limit: false }
    }
}

/// What the writer may do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Room {
    /// Read the exporter again: some reader is close enough to the head.
    Ready,
    /// Every reader is gone or cut: stop and drop the exporter request.
    Abandoned,
}

/// How the body ended, once it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Complete,
    Failed,
}

/// One reader's cursor.
struct Cursor {
    /// Which reader it is ([`BodyReader`]'s `id`).
    id: u64,
    /// Absolute number of the next piece to read.
    next: u64,
    /// Bytes read so far (the offset of that piece).
    pos: u64,
    /// Cut off for lagging; kept until the reader is dropped so it learns why.
    cut: bool,
    waker: Option<Waker>,
    /// Signalled when the writer cuts this reader: its connection, which may not be polling it.
    hang_up: Option<Arc<Notify>>,
}

struct State {
    limit: u64,
    /// The held pieces; `pieces[0]` is piece number `first` and starts at byte `base`.
    pieces: VecDeque<Bytes>,
    first: u64,
    /// Pieces before this number are packed already (see [`State::pack`]).
    packed: u64,
    base: u64,
    /// Bytes written so far.
    head: u64,
    end: Option<End>,
    /// Why the body failed, once it has.
    failure: Option<Failure>,
    /// One per reader not dropped yet: a handful at most, so a vector searched by id (a hash
    /// map hashed the id on every poll of every reader).
    cursors: Vec<Cursor>,
    next_id: u64,
    /// Readers not cut (the ones the writer works for).
    live: usize,
    /// The writer, when it waits for room or for abandonment.
    writer: Option<Waker>,
}

impl State {
    fn largest_piece(&self) -> u64 {
        self.limit / 2
    }

    fn joinable(&self) -> bool {
        self.base == 0 && self.end.is_none() && self.live > 0
    }

    fn add_reader(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.cursors.push(Cursor { id, next: 0, pos: 0, cut: false, waker: None, hang_up: None });
        self.live += 1;
        id
    }

    fn cursor(&self, id: u64) -> &Cursor {
        self.cursors.iter().find(|c| c.id == id).expect("a reader's cursor lives as long as the reader")
    }

    fn cursor_mut(&mut self, id: u64) -> &mut Cursor {
        self.cursors.iter_mut().find(|c| c.id == id).expect("a reader's cursor lives as long as the reader")
    }

    fn wake_writer(&mut self) {
        if let Some(waker) = self.writer.take() {
            waker.wake();
        }
    }

    fn wake_readers(&mut self) {
        for cursor in &mut self.cursors {
            if let Some(waker) = cursor.waker.take() {
                waker.wake();
            }
        }
    }

    fn room(&self) -> Option<Room> {
        if self.live == 0 {
            return Some(Room::Abandoned);
        }
        let fastest = self.cursors.iter().filter(|c| !c.cut).map(|c| c.pos).max().unwrap_or(self.head);
        (self.head - fastest < self.largest_piece()).then_some(Room::Ready)
    }

    fn push_piece(&mut self, piece: Bytes) -> usize {
        self.head += piece.len() as u64;
        self.pieces.push_back(piece);
        // Cut whoever is now too far behind, then drop what only they still needed.
        let mut cut = 0;
        for cursor in &mut self.cursors {
            if !cursor.cut && self.head - cursor.pos > self.limit {
                cursor.cut = true;
                cut += 1;
                if let Some(hang_up) = cursor.hang_up.take() {
                    hang_up.notify_one();
                }
            }
        }
        self.live -= cut;
        while self.head - self.base > self.limit {
            self.drop_front();
        }
        // Once nobody can join, history is for nobody: keep only what a live reader has yet to
        // read, so a lone reader's body is not held a second time here.
        if !self.joinable() {
            let oldest = self.cursors.iter().filter(|c| !c.cut).map(|c| c.next).min().unwrap_or(u64::MAX);
            while self.first < oldest && !self.pieces.is_empty() {
                self.drop_front();
            }
        }
        cut
    }

    fn drop_front(&mut self) {
        let front = self.pieces.pop_front().expect("held bytes are in pieces");
        self.base += front.len() as u64;
        self.first += 1;
        self.packed = self.packed.max(self.first);
    }

    /// While the body is joinable the buffer keeps every piece from byte 0, and an exporter
    /// that writes in small pieces (a chunk of a few bytes each) makes as many pieces: each
    /// with its bookkeeping, and each keeping alive the whole read buffer hyper cut it from, so
    /// `limit` bytes of body cost several times that in memory. Small pieces every live reader
    /// has passed (only a reader that joins later reads them again) are therefore copied
    /// together into pieces of up to [`PACKED_PIECE`] bytes (never more than half the limit),
    /// at their exact size. Readers stay on piece boundaries: they are all past the run.
    fn pack(&mut self) {
        let Some(passed) = self.cursors.iter().filter(|c| !c.cut).map(|c| c.next).min() else { return };
        if passed < self.packed + PACK_RUN as u64 {
            return;
        }
        let largest = (PACKED_PIECE as u64).min(self.largest_piece()) as usize;
        // The last packed piece, if it has room, is packed again with the new run.
        let mut start = (self.packed - self.first) as usize;
        if start > 0 && self.pieces[start - 1].len() < largest {
            start -= 1;
        }
        let end = (passed - self.first) as usize;
        let mut packed: Vec<Bytes> = Vec::new();
        let mut run: Vec<u8> = Vec::new();
        for piece in self.pieces.range(start..end) {
            if run.len() + piece.len() > largest && !run.is_empty() {
                packed.push(Bytes::copy_from_slice(&run));
                run.clear();
            }
            if piece.len() >= largest {
                packed.push(piece.clone());
            } else {
                run.extend_from_slice(piece);
            }
        }
        if !run.is_empty() {
            packed.push(Bytes::copy_from_slice(&run));
        }
        let removed = (end - start - packed.len()) as u64;
        let after: Vec<Bytes> = self.pieces.drain(start..).skip(end - start).collect();
        self.packed = self.first + (start + packed.len()) as u64;
        self.pieces.extend(packed);
        self.pieces.extend(after);
        for cursor in self.cursors.iter_mut().filter(|c| !c.cut) {
            cursor.next -= removed;
        }
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panic while holding the lock leaves counters that are still consistent per field; the
    // release profile aborts on panic anyway.
    state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A new shared body holding at most `limit` bytes, with its writer and its first reader.
///
/// `limit` below 2 is treated as 2 (pieces of one byte).
pub fn shared(limit: u64) -> (BodyWriter, BodyReader) {
    let mut state = State {
        limit: limit.max(2),
        pieces: VecDeque::new(),
        first: 0,
        packed: 0,
        base: 0,
        head: 0,
        end: None,
        failure: None,
        cursors: Vec::new(),
        next_id: 0,
        live: 0,
        writer: None,
    };
    let id = state.add_reader();
    let state = Arc::new(Mutex::new(state));
    (BodyWriter { state: state.clone(), ended: false }, BodyReader { state, id })
}

/// A shared body taken over from a scrape that streamed its exporter body alone until a second
/// scraper joined: `pieces` are every byte that scrape has sent so far (at most `limit`, so byte 0
/// is still held). Returns the writer, that scrape's reader (past those pieces) and the new
/// scraper's reader (from byte 0).
pub fn resumed(limit: u64, pieces: Vec<Bytes>) -> (BodyWriter, BodyReader, BodyReader) {
    let (mut writer, mut first) = shared(limit);
    for piece in pieces {
        writer.push(piece);
    }
    let mut cx = Context::from_waker(Waker::noop());
    while let Poll::Ready(Some(Ok(_))) = first.poll_next(&mut cx) {}
    let second = writer.joiner().join().expect("at most `limit` bytes were sent: byte 0 is still held");
    (writer, first, second)
}

/// The writing end: the task that reads the exporter.
pub struct BodyWriter {
    state: Arc<Mutex<State>>,
    ended: bool,
}

impl BodyWriter {
    /// A handle that lets later scrapers join while the body can still be read from byte 0.
    pub fn joiner(&self) -> Joiner {
        Joiner { state: self.state.clone() }
    }

    /// Whether to read the exporter again now ([`Room::Ready`]), stop ([`Room::Abandoned`]), or
    /// wait (pending until a reader catches up or leaves).
    pub fn poll_room(&mut self, cx: &mut Context<'_>) -> Poll<Room> {
        let mut state = lock(&self.state);
        match state.room() {
            Some(room) => Poll::Ready(room),
            None => {
                state.writer = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    /// [`BodyWriter::poll_room`] as a future.
    pub async fn room(&mut self) -> Room {
        std::future::poll_fn(|cx| self.poll_room(cx)).await
    }

    /// Ready once no reader is left.
    pub fn poll_abandoned(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = lock(&self.state);
        if state.live == 0 {
            return Poll::Ready(());
        }
        state.writer = Some(cx.waker().clone());
        Poll::Pending
    }

    /// [`BodyWriter::poll_abandoned`] as a future.
    pub async fn abandoned(&mut self) {
        std::future::poll_fn(|cx| self.poll_abandoned(cx)).await
    }

    /// The largest write that [`BodyWriter::poll_room`]'s `Ready` covers: half the limit. A
    /// larger write is split and may leave even the fastest reader too far behind.
    pub fn largest_piece(&self) -> usize {
        lock(&self.state).largest_piece() as usize
    }

    /// Appends `data` without ever waiting; returns how many readers this cut off for lagging.
    pub fn push(&mut self, mut data: Bytes) -> usize {
        let mut state = lock(&self.state);
        let largest = state.largest_piece() as usize;
        let mut cut = 0;
        while !data.is_empty() {
            let piece = data.split_to(data.len().min(largest));
            cut += state.push_piece(piece);
        }
        if state.joinable() {
            state.pack();
        }
        state.wake_readers();
        cut
    }

    /// Whether a new scraper could still join (see [`Joiner::join`]).
    pub fn is_joinable(&self) -> bool {
        lock(&self.state).joinable()
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        lock(&self.state).head
    }

    /// The body is complete: readers end cleanly once they have read it all.
    pub fn finish(mut self) {
        self.end(End::Complete, None);
    }

    /// The body failed for `reason`: readers get [`ReadError::Failed`] after what they have not
    /// read yet.
    pub fn fail(mut self, reason: impl Into<Failure>) {
        self.end(End::Failed, Some(reason.into()));
    }

    fn end(&mut self, end: End, failure: Option<Failure>) {
        self.ended = true;
        let mut state = lock(&self.state);
        state.end = Some(end);
        state.failure = failure;
        state.wake_readers();
    }
}

impl Drop for BodyWriter {
    fn drop(&mut self) {
        // A writer that goes away without finishing (its task dropped or panicked) must never
        // leave readers with what looks like a complete body.
        if !self.ended {
            self.end(End::Failed, Some(Failure::from("the exporter request was dropped before its body ended")));
        }
    }
}

/// Lets a scraper join a body in flight. Cheap to clone.
#[derive(Clone)]
pub struct Joiner {
    state: Arc<Mutex<State>>,
}

impl Joiner {
    /// A new reader from byte 0, while byte 0 is still held, the body has not ended and some
    /// reader is still there; `None` otherwise (the caller starts its own request).
    pub fn join(&self) -> Option<BodyReader> {
        let mut state = lock(&self.state);
        if !state.joinable() {
            return None;
        }
        let id = state.add_reader();
        Some(BodyReader { state: self.state.clone(), id })
    }

    /// Whether [`Joiner::join`] would give a reader now.
    pub fn is_joinable(&self) -> bool {
        lock(&self.state).joinable()
    }
}

/// One scraper's cursor on the shared body.
pub struct BodyReader {
    state: Arc<Mutex<State>>,
    id: u64,
}

impl BodyReader {
    /// Signal `hang_up` when the writer cuts this reader (at once if it already has).
    pub fn hang_up_when_cut(&self, hang_up: Arc<Notify>) {
        let mut state = lock(&self.state);
        let cursor = state.cursor_mut(self.id);
        if cursor.cut {
            hang_up.notify_one();
        } else {
            cursor.hang_up = Some(hang_up);
        }
    }

    /// Whether the writer cut this reader off for lagging.
    pub fn is_cut(&self) -> bool {
        let state = lock(&self.state);
        state.cursor(self.id).cut
    }

    /// The next piece, the clean end (`None`), or why there is no more.
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, ReadError>>> {
        let mut guard = lock(&self.state);
        let state = &mut *guard;
        let cursor =
            state.cursors.iter_mut().find(|c| c.id == self.id).expect("a reader's cursor lives as long as the reader");
        if cursor.cut {
            return Poll::Ready(Some(Err(ReadError::Lagged)));
        }
        if cursor.next < state.first + state.pieces.len() as u64 {
            // Not cut means at most `limit` behind, and everything that recent is held.
            let piece = state.pieces[(cursor.next - state.first) as usize].clone();
            cursor.next += 1;
            cursor.pos += piece.len() as u64;
            state.wake_writer();
            return Poll::Ready(Some(Ok(piece)));
        }
        match state.end {
            Some(End::Complete) => Poll::Ready(None),
            Some(End::Failed) => {
                let reason = state.failure.clone().expect("a failed body has a reason");
                Poll::Ready(Some(Err(ReadError::Failed(reason))))
            }
            None => {
                cursor.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    /// [`BodyReader::poll_next`] as a future.
    pub async fn next(&mut self) -> Option<Result<Bytes, ReadError>> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    /// Whether the next poll returns the clean end.
    pub fn is_end_stream(&self) -> bool {
        let state = lock(&self.state);
        let cursor = state.cursor(self.id);
        !cursor.cut && state.end == Some(End::Complete) && cursor.pos == state.head
    }

    /// Bytes this reader has taken so far.
    pub fn received(&self) -> u64 {
        lock(&self.state).cursor(self.id).pos
    }
}

impl Drop for BodyReader {
    fn drop(&mut self) {
        let mut state = lock(&self.state);
        if let Some(i) = state.cursors.iter().position(|c| c.id == self.id) {
            if !state.cursors.swap_remove(i).cut {
                state.live -= 1;
            }
        }
        // The writer may be waiting for this reader to catch up, or for the last one to leave.
        state.wake_writer();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poll<T>(f: impl FnOnce(&mut Context<'_>) -> Poll<T>) -> Poll<T> {
        f(&mut Context::from_waker(Waker::noop()))
    }

    fn read(reader: &mut BodyReader) -> Poll<Option<Result<Bytes, ReadError>>> {
        poll(|cx| reader.poll_next(cx))
    }

    #[test]
    fn a_late_joiner_gets_the_body_from_byte_0_then_follows_live() {
        let (mut writer, mut first) = shared(100);
        writer.push(Bytes::from_static(b"abc"));
        assert_eq!(read(&mut first), Poll::Ready(Some(Ok(Bytes::from_static(b"abc")))));
        let mut late = writer.joiner().join().expect("byte 0 is still held");
        writer.push(Bytes::from_static(b"de"));
        writer.finish();
        let mut got = Vec::new();
        while let Poll::Ready(Some(Ok(piece))) = read(&mut late) {
            got.extend_from_slice(&piece);
        }
        assert_eq!(got, b"abcde");
        assert_eq!(read(&mut late), Poll::Ready(None));
    }

    #[test]
    fn nobody_joins_once_byte_0_is_gone_or_the_body_ended() {
        let (mut writer, mut reader) = shared(4);
        writer.push(Bytes::from_static(b"ab"));
        writer.push(Bytes::from_static(b"cd"));
        while let Poll::Ready(Some(Ok(_))) = read(&mut reader) {}
        writer.push(Bytes::from_static(b"e"));
        assert!(writer.joiner().join().is_none(), "byte 0 was dropped to stay within the limit");

        let (writer, _reader) = shared(4);
        let joiner = writer.joiner();
        writer.finish();
        assert!(joiner.join().is_none(), "nothing is cached after the end");
    }

    #[test]
    fn a_reader_too_far_behind_is_cut_and_the_others_go_on() {
        let (mut writer, mut fast) = shared(8);
        let mut slow = writer.joiner().join().unwrap();
        let (slow_hang_up, fast_hang_up) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        slow.hang_up_when_cut(slow_hang_up.clone());
        fast.hang_up_when_cut(fast_hang_up.clone());
        let mut cut = 0;
        for _ in 0..5 {
            assert_eq!(poll(|cx| writer.poll_room(cx)), Poll::Ready(Room::Ready));
            cut += writer.push(Bytes::from_static(b"xyz"));
            while let Poll::Ready(Some(Ok(_))) = read(&mut fast) {}
        }
        assert_eq!(cut, 1);
        // The cut reader's connection is told without the reader being polled; the other's is not.
        assert!(slow.is_cut() && !fast.is_cut());
        assert!(poll(|cx| std::pin::pin!(slow_hang_up.notified()).poll(cx)).is_ready());
        assert!(poll(|cx| std::pin::pin!(fast_hang_up.notified()).poll(cx)).is_pending());
        assert_eq!(read(&mut slow), Poll::Ready(Some(Err(ReadError::Lagged))));
        // A hang-up registered after the cut is signalled at once.
        let late_hang_up = Arc::new(Notify::new());
        slow.hang_up_when_cut(late_hang_up.clone());
        assert!(poll(|cx| std::pin::pin!(late_hang_up.notified()).poll(cx)).is_ready());
        drop(slow);
        assert_eq!(fast.received(), 15);
        assert_eq!(poll(|cx| writer.poll_room(cx)), Poll::Ready(Room::Ready));
    }

    #[test]
    fn a_lone_reader_sets_the_pace_and_is_never_cut() {
        let (mut writer, mut reader) = shared(8);
        writer.push(Bytes::from_static(b"0123"));
        assert_eq!(poll(|cx| writer.poll_room(cx)), Poll::Pending, "4 bytes ahead of the only reader");
        assert!(read(&mut reader).is_ready());
        assert_eq!(poll(|cx| writer.poll_room(cx)), Poll::Ready(Room::Ready));
    }

    #[test]
    fn failure_and_a_dropped_writer_both_reach_readers_as_failed_after_their_bytes() {
        let (mut writer, mut reader) = shared(8);
        writer.push(Bytes::from_static(b"ab"));
        drop(writer);
        assert_eq!(read(&mut reader), Poll::Ready(Some(Ok(Bytes::from_static(b"ab")))));
        assert!(matches!(read(&mut reader), Poll::Ready(Some(Err(ReadError::Failed(_))))));
    }

    #[test]
    fn the_writer_is_abandoned_when_the_last_reader_leaves() {
        let (mut writer, first) = shared(8);
        let second = writer.joiner().join().unwrap();
        drop(first);
        assert_eq!(poll(|cx| writer.poll_abandoned(cx)), Poll::Pending);
        drop(second);
        assert_eq!(poll(|cx| writer.poll_abandoned(cx)), Poll::Ready(()));
        assert_eq!(poll(|cx| writer.poll_room(cx)), Poll::Ready(Room::Abandoned));
        assert!(writer.joiner().join().is_none(), "an abandoned body takes no new readers");
    }

    #[test]
    fn small_pieces_every_reader_passed_are_packed_and_a_late_joiner_still_reads_them() {
        let (mut writer, mut reader) = shared(1 << 20);
        let mut body = Vec::new();
        for i in 0..1000u32 {
            body.push(i as u8);
            writer.push(Bytes::copy_from_slice(&[i as u8]));
            assert!(read(&mut reader).is_ready());
        }
        let held = lock(&writer.state).pieces.len();
        assert!(held <= 4, "{held} pieces held for 1000 one-byte writes");
        let mut late = writer.joiner().join().expect("byte 0 is still held");
        writer.finish();
        let mut got = Vec::new();
        while let Poll::Ready(Some(Ok(piece))) = read(&mut late) {
            got.extend_from_slice(&piece);
        }
        assert_eq!(got, body);
        assert_eq!(read(&mut late), Poll::Ready(None));
    }

    #[test]
    fn once_nobody_can_join_only_what_a_reader_has_not_read_is_held() {
        let (mut writer, mut reader) = shared(8);
        for _ in 0..5 {
            writer.push(Bytes::from_static(b"abc"));
            while let Poll::Ready(Some(Ok(_))) = read(&mut reader) {}
        }
        // 15 bytes written: byte 0 is gone, so nobody can join, and the only reader has read all.
        // What it had read is dropped at the next write: only the newest piece is still held.
        assert!(!writer.is_joinable());
        let state = lock(&writer.state);
        assert_eq!(state.head - state.base, 3, "bytes held that nobody will read");
    }

    #[test]
    fn a_resumed_body_goes_on_for_the_reader_that_sent_it_and_starts_at_byte_0_for_the_joiner() {
        let sent = vec![Bytes::from_static(b"abc"), Bytes::from_static(b"defghij")];
        let (mut writer, mut first, mut joiner) = resumed(10, sent);
        assert_eq!(read(&mut first), Poll::Pending, "it has read everything written so far");
        let mut got = Vec::new();
        while let Poll::Ready(Some(Ok(piece))) = read(&mut joiner) {
            got.extend_from_slice(&piece);
            assert!(piece.len() <= 5, "pieces of at most half the limit");
        }
        assert_eq!(got, b"abcdefghij");
        writer.push(Bytes::from_static(b"k"));
        writer.finish();
        for reader in [&mut first, &mut joiner] {
            assert_eq!(read(reader), Poll::Ready(Some(Ok(Bytes::from_static(b"k")))));
            assert_eq!(read(reader), Poll::Ready(None));
        }
    }

    #[test]
    fn large_writes_are_split_into_pieces_of_half_the_limit() {
        let (mut writer, mut reader) = shared(8);
        writer.push(Bytes::from_static(b"0123456"));
        let mut sizes = Vec::new();
        while let Poll::Ready(Some(Ok(piece))) = read(&mut reader) {
            sizes.push(piece.len());
        }
        assert_eq!(sizes, vec![4, 3]);
    }
}
