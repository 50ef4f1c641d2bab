//! A model check of the shared body: any sequence of writer and reader steps is played against
//! the real [`super`] types while a plain model (bytes written, bytes each reader received)
//! says what must have happened. Used by the exhaustive and random unit tests below and by the
//! `coalesce_buffer` fuzz target (`fuzz/fuzz_targets/coalesce_buffer.rs`).
//!
//! What every step checks:
//! - each reader has received exactly a prefix of the bytes written, in order, never a byte twice;
//! - a clean end only after `finish`, and only with every byte; `Failed` only after the writer
//!   failed or went away, and only once every byte before the failure was delivered;
//! - a reader is cut ([`ReadError::Lagged`]) exactly when a write left it more than `limit`
//!   bytes behind, and a write of at most [`BodyWriter::largest_piece`] bytes that the writer
//!   was given room for never cuts the fastest reader;
//! - the buffer holds at most `limit` bytes and every live reader's next byte is held;
//! - joining works exactly while nothing has ended, someone reads, and byte 0 is still held;
//! - room and abandonment are what the positions say, and a reader or writer that was told
//!   "pending" is woken once that changes (no lost wake-ups).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use bytes::Bytes;

use super::{BodyReader, BodyWriter, End, Joiner, ReadError, Room, lock, shared};

/// Readers a sequence can address.
const MAX_READERS: usize = 4;

/// One step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// The writer appends this many bytes.
    Push(u16),
    /// The writer finishes the body.
    Finish,
    /// The writer fails the body.
    Fail,
    /// The writer is dropped without finishing.
    DropWriter,
    /// A new scraper tries to join.
    Join,
    /// Reader `n` (modulo the readers there are) polls once.
    Read(u8),
    /// Reader `n` goes away.
    Drop(u8),
    /// The writer asks for room.
    PollRoom,
}

/// Decodes fuzzer input: the first byte chooses the limit, each further byte one step.
pub fn decode(data: &[u8]) -> (u64, Vec<Op>) {
    let Some((&first, rest)) = data.split_first() else { return (2, Vec::new()) };
    let limit = 2 + u64::from(first % 64);
    let ops = rest
        .iter()
        .map(|&b| {
            let arg = b >> 3;
            match b & 7 {
                0 | 1 => Op::Push(u16::from(arg) * (limit as u16) / 16),
                // The body ends on about one step in 40, so most sequences stream a while first.
                2 if arg >= 24 => match arg % 3 {
                    0 => Op::Finish,
                    1 => Op::Fail,
                    _ => Op::DropWriter,
                },
                2 => Op::Push(1),
                3 => Op::Join,
                4 | 5 => Op::Read(arg),
                6 => Op::Drop(arg),
                _ => Op::PollRoom,
            }
        })
        .collect();
    (limit, ops)
}

#[derive(Default)]
struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl Flag {
    fn take(&self) -> bool {
        self.0.swap(false, Ordering::SeqCst)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    End,
    Failed,
    Lagged,
}

struct Reader {
    reader: BodyReader,
    received: Vec<u8>,
    seen: Option<Seen>,
    /// The model's verdict: a write left it more than `limit` behind.
    must_be_cut: bool,
    /// It was told "pending" and has not been woken since.
    waiting: bool,
    flag: Arc<Flag>,
}

/// How the writer ended, in the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Written {
    Open,
    Finished,
    Failed,
}

struct Model {
    limit: u64,
    writer: Option<BodyWriter>,
    joiner: Joiner,
    written: Vec<u8>,
    ended: Written,
    readers: Vec<Reader>,
    writer_waiting: bool,
    writer_flag: Arc<Flag>,
}

/// The byte at offset `i` of the body: distinct enough that reordering, a repeat or a gap shows.
fn byte_at(i: usize) -> u8 {
    (i.wrapping_mul(31) % 251) as u8
}

/// Plays `ops` on a buffer of `limit` bytes; panics on the first broken rule.
pub fn check(limit: u64, ops: &[Op]) {
    let (writer, first) = shared(limit);
    let limit = limit.max(2);
    let mut model = Model {
        limit,
        joiner: writer.joiner(),
        writer: Some(writer),
        written: Vec::new(),
        ended: Written::Open,
        readers: Vec::new(),
        writer_waiting: false,
        writer_flag: Arc::new(Flag::default()),
    };
    model.add(first);
    model.invariants();
    for (step, &op) in ops.iter().enumerate() {
        model.step(op, step);
        model.invariants();
    }
    // Drain: whatever happened, every reader still there reaches an end consistent with the model.
    for i in 0..model.readers.len() {
        for _ in 0..(model.written.len() + 2) {
            model.read(i, usize::MAX);
        }
    }
    if model.ended != Written::Open {
        for r in &model.readers {
            assert!(r.seen.is_some(), "a reader of an ended body did not reach its end");
        }
    }
}

impl Model {
    fn add(&mut self, reader: BodyReader) {
        if self.readers.len() < MAX_READERS {
            self.readers.push(Reader {
                reader,
                received: Vec::new(),
                seen: None,
                must_be_cut: false,
                waiting: false,
                flag: Arc::new(Flag::default()),
            });
        }
    }

    fn live(&self) -> usize {
        self.readers.iter().filter(|r| !r.must_be_cut).count()
    }

    fn fastest(&self) -> Option<usize> {
        self.readers.iter().filter(|r| !r.must_be_cut).map(|r| r.received.len()).max()
    }

    fn step(&mut self, op: Op, step: usize) {
        match op {
            Op::Push(n) => {
                if self.writer.is_none() || self.ended != Written::Open {
                    return;
                }
                let fastest = self.fastest();
                let writer = self.writer.as_mut().expect("checked above");
                let room = lock(&writer.state).room();
                let start = self.written.len();
                self.written.extend((start..start + usize::from(n)).map(byte_at));
                let cut = writer.push(Bytes::copy_from_slice(&self.written[start..]));
                let mut expected_cut = 0;
                for r in &mut self.readers {
                    if !r.must_be_cut && (self.written.len() - r.received.len()) as u64 > self.limit {
                        r.must_be_cut = true;
                        expected_cut += 1;
                    }
                }
                assert_eq!(cut, expected_cut, "step {step}: readers cut by a push of {n}");
                if room == Some(Room::Ready) && u64::from(n) <= self.limit / 2 {
                    let fastest = fastest.expect("room means a live reader");
                    assert!(
                        self.readers.iter().any(|r| !r.must_be_cut && r.received.len() == fastest),
                        "step {step}: a push the writer had room for cut the fastest reader"
                    );
                }
                self.wakes_after_news(step);
            }
            Op::Finish | Op::Fail | Op::DropWriter => {
                let Some(writer) = self.writer.take() else { return };
                match op {
                    Op::Finish => {
                        writer.finish();
                        self.ended = Written::Finished;
                    }
                    Op::Fail => {
                        writer.fail("exporter reset");
                        self.ended = Written::Failed;
                    }
                    _ => {
                        drop(writer);
                        self.ended = Written::Failed;
                    }
                }
                self.wakes_after_news(step);
            }
            Op::Join => {
                let expected =
                    self.ended == Written::Open && self.live() > 0 && self.written.len() as u64 <= self.limit;
                assert_eq!(self.joiner.is_joinable(), expected, "step {step}: joinable");
                match self.joiner.join() {
                    Some(reader) => {
                        assert!(expected, "step {step}: joined when it should not have");
                        self.add(reader);
                    }
                    None => assert!(!expected, "step {step}: could not join when it should have"),
                }
            }
            Op::Read(n) => {
                if !self.readers.is_empty() {
                    let i = usize::from(n) % self.readers.len();
                    self.read(i, step);
                }
            }
            Op::Drop(n) => {
                if !self.readers.is_empty() {
                    let i = usize::from(n) % self.readers.len();
                    let was_fastest_or_last = !self.readers[i].must_be_cut;
                    self.readers.remove(i);
                    if was_fastest_or_last {
                        self.writer_wakes_if_it_may_go(step);
                    }
                }
            }
            Op::PollRoom => {
                let expected = match self.fastest() {
                    None => Poll::Ready(Room::Abandoned),
                    Some(f) if ((self.written.len() - f) as u64) < self.limit / 2 => Poll::Ready(Room::Ready),
                    Some(_) => Poll::Pending,
                };
                let live = self.live();
                let Some(writer) = self.writer.as_mut() else { return };
                let waker = Waker::from(self.writer_flag.clone());
                let got = writer.poll_room(&mut Context::from_waker(&waker));
                assert_eq!(got, expected, "step {step}: room");
                let abandoned = writer.poll_abandoned(&mut Context::from_waker(&waker));
                assert_eq!(abandoned.is_ready(), live == 0, "step {step}: abandoned");
                self.writer_flag.take();
                self.writer_waiting = got.is_pending();
            }
        }
    }

    /// Reader `i` polls once and the answer is checked against the model.
    fn read(&mut self, i: usize, step: usize) {
        let written = self.written.len();
        let ended = self.ended;
        let r = &mut self.readers[i];
        if r.seen.is_some() {
            return;
        }
        let waker = Waker::from(r.flag.clone());
        let got = r.reader.poll_next(&mut Context::from_waker(&waker));
        r.flag.take();
        r.waiting = false;
        match got {
            Poll::Ready(Some(Ok(piece))) => {
                assert!(!r.must_be_cut, "step {step}: a reader that must be cut got data");
                assert!(!piece.is_empty(), "step {step}: an empty piece");
                assert!(piece.len() as u64 <= self.limit / 2, "step {step}: a piece over half the limit");
                let from = r.received.len();
                assert!(from + piece.len() <= written, "step {step}: read past the bytes written");
                assert_eq!(&piece[..], &self.written[from..from + piece.len()], "step {step}: wrong bytes");
                r.received.extend_from_slice(&piece);
                assert_eq!(r.reader.received(), r.received.len() as u64);
                self.writer_wakes_if_it_may_go(step);
            }
            Poll::Ready(None) => {
                assert!(!r.must_be_cut, "step {step}: a cut reader ended cleanly");
                assert_eq!(ended, Written::Finished, "step {step}: a clean end before finish");
                assert_eq!(r.received.len(), written, "step {step}: a clean end before the last byte");
                r.seen = Some(Seen::End);
            }
            Poll::Ready(Some(Err(ReadError::Lagged))) => {
                assert!(r.must_be_cut, "step {step}: cut without having fallen behind");
                r.seen = Some(Seen::Lagged);
            }
            Poll::Ready(Some(Err(ReadError::Failed(_)))) => {
                assert!(!r.must_be_cut, "step {step}: a cut reader saw failure instead of lag");
                assert_eq!(ended, Written::Failed, "step {step}: failure without a failed writer");
                assert_eq!(r.received.len(), written, "step {step}: failure before the last byte was delivered");
                r.seen = Some(Seen::Failed);
            }
            Poll::Pending => {
                assert!(!r.must_be_cut, "step {step}: a cut reader was told to wait");
                assert_eq!(r.received.len(), written, "step {step}: pending with bytes to read");
                assert_eq!(ended, Written::Open, "step {step}: pending after the end");
                r.waiting = true;
            }
        }
    }

    /// After a push or an end: every reader that was told to wait has been woken.
    fn wakes_after_news(&mut self, step: usize) {
        for r in &mut self.readers {
            if r.waiting {
                assert!(r.flag.take(), "step {step}: a waiting reader was not woken");
                r.waiting = false;
            }
        }
    }

    /// After a read or a drop: a writer told to wait is woken if it may now go (or must stop).
    fn writer_wakes_if_it_may_go(&mut self, step: usize) {
        if !self.writer_waiting || self.writer.is_none() {
            return;
        }
        let may_go = match self.fastest() {
            None => true,
            Some(f) => ((self.written.len() - f) as u64) < self.limit / 2,
        };
        if may_go {
            assert!(self.writer_flag.take(), "step {step}: a waiting writer was not woken");
            self.writer_waiting = false;
        }
    }

    fn invariants(&self) {
        let state = lock(&self.joiner.state);
        let head = self.written.len() as u64;
        assert_eq!(state.head, head);
        assert!(state.head - state.base <= self.limit, "holds {} bytes, limit {}", state.head - state.base, self.limit);
        let held: u64 = state.pieces.iter().map(|p| p.len() as u64).sum();
        assert_eq!(held, state.head - state.base, "pieces add up to what is held");
        assert_eq!(state.live, self.live(), "live readers");
        for r in &self.readers {
            if !r.must_be_cut {
                assert!(r.received.len() as u64 >= state.base, "a live reader's next byte was dropped");
            }
        }
        let ended = match state.end {
            None => Written::Open,
            Some(End::Complete) => Written::Finished,
            Some(End::Failed) => Written::Failed,
        };
        assert_eq!(ended, self.ended);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every sequence of up to `depth` steps from `alphabet`.
    fn exhaustive(limit: u64, alphabet: &[Op], depth: usize) -> usize {
        let mut count = 0;
        let mut seq = Vec::with_capacity(depth);
        fn go(limit: u64, alphabet: &[Op], depth: usize, seq: &mut Vec<Op>, count: &mut usize) {
            check(limit, seq);
            *count += 1;
            if seq.len() == depth {
                return;
            }
            for &op in alphabet {
                seq.push(op);
                go(limit, alphabet, depth, seq, count);
                seq.pop();
            }
        }
        go(limit, alphabet, depth, &mut seq, &mut count);
        count
    }

    #[test]
    fn every_interleaving_of_up_to_five_steps_keeps_the_rules() {
        // limit 6: pieces of at most 3, room while the fastest is under 3 behind; the push
        // sizes hit "within", "exactly at" and "past" the limit.
        let alphabet = [
            Op::Push(2),
            Op::Push(4),
            Op::Push(7),
            Op::Join,
            Op::Read(0),
            Op::Read(1),
            Op::Read(2),
            Op::Drop(1),
            Op::PollRoom,
            Op::Finish,
            Op::Fail,
        ];
        let sequences = exhaustive(6, &alphabet, 5);
        assert_eq!(sequences, (0..=5).map(|k| alphabet.len().pow(k)).sum::<usize>());
    }

    #[test]
    fn long_random_interleavings_keep_the_rules() {
        // xorshift64: deterministic, so a failure is reproducible from the printed seed.
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for run in 0..3000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut x = seed;
            let bytes: Vec<u8> = (0..400)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let (limit, ops) = decode(&bytes);
            let result = std::panic::catch_unwind(|| check(limit, &ops));
            assert!(result.is_ok(), "run {run}, seed {seed:#x}: limit {limit}, ops {ops:?}");
        }
    }
}
