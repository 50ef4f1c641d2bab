//! Lines out of a body that arrives in chunks: [`LineSplitter`] finds the newlines with `memchr`
//! and hands out each complete line, carrying a line cut by a chunk boundary (anywhere, even a
//! chunk of one byte) over to the next chunk. A line wholly inside a chunk is handed out as a
//! range of that chunk, never copied; only a carried line is assembled, once.
//!
//! The longest line is bounded ([`LineSplitter::new`]): a longer one is a [`LineTooLong`] error,
//! so a body without newlines cannot grow the carried buffer without limit.

use std::ops::Range;

use bytes::{Bytes, BytesMut};

/// A line longer than the splitter's bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a line of the exposition is longer than {max} bytes")]
pub struct LineTooLong {
    /// The bound, in bytes (newline included).
    pub max: usize,
}

/// Where a complete line is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Span {
    /// Inside the chunk being split: its range, the newline included.
    Chunk(Range<usize>),
    /// Carried over from earlier chunks and completed by this one (or by the end of the body):
    /// the whole line, its newline included if it had one.
    Carried(Bytes),
}

impl Span {
    /// The line's bytes with its newline, `chunk` being the chunk being split.
    pub fn bytes<'a>(&'a self, chunk: &'a [u8]) -> &'a [u8] {
        match self {
            Span::Chunk(range) => &chunk[range.clone()],
            Span::Carried(line) => line,
        }
    }
}

/// The line without its end: the trailing `\n` (and a `\r` before it) removed.
pub fn content(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Splits chunks into complete lines, carrying a partial line from one chunk to the next.
#[derive(Debug)]
pub struct LineSplitter {
    partial: BytesMut,
    max: usize,
}

impl LineSplitter {
    /// A splitter that refuses lines longer than `max_line` bytes (newline included).
    pub fn new(max_line: usize) -> LineSplitter {
        LineSplitter { partial: BytesMut::new(), max: max_line.max(1) }
    }

    /// The complete lines that `chunk` ends, in order. The lines are [`Span::Chunk`] ranges of
    /// `chunk` except the first, which is [`Span::Carried`] when an earlier chunk had started
    /// it. What follows the last newline is kept for the next chunk. Iterate to the end (or to
    /// the first error): what the iterator has not reached is not seen again.
    pub fn split<'a>(&'a mut self, chunk: &'a [u8]) -> Split<'a> {
        Split { splitter: self, chunk, at: 0, done: false }
    }

    /// The body's end: the last line if it had no newline (a carried, unfinished line).
    pub fn finish(&mut self) -> Option<Bytes> {
        (!self.partial.is_empty()).then(|| self.partial.split().freeze())
    }

    /// Bytes of an unfinished line held for the next chunk.
    pub fn carried(&self) -> usize {
        self.partial.len()
    }
}

/// The lines of one chunk ([`LineSplitter::split`]).
pub struct Split<'a> {
    splitter: &'a mut LineSplitter,
    chunk: &'a [u8],
    at: usize,
    done: bool,
}

impl Split<'_> {
    /// Passes over the complete lines of the chunk, from where the split stands, while `pass`
    /// holds for them (each given without its line end), and returns how many it passed and the
    /// range of the chunk they cover (newlines included). It stops, without taking it, at the
    /// first line `pass` refuses, and before a line carried from an earlier chunk, the chunk's
    /// unfinished tail or a line longer than the bound: those are for [`Iterator::next`].
    pub fn pass_while(&mut self, mut pass: impl FnMut(&[u8]) -> bool) -> (u64, Range<usize>) {
        let start = self.at;
        let mut passed = 0;
        if self.done || !self.splitter.partial.is_empty() {
            return (0, start..start);
        }
        while let Some(i) = memchr::memchr(b'\n', &self.chunk[self.at..]) {
            let end = self.at + i + 1;
            if end - self.at > self.splitter.max || !pass(content(&self.chunk[self.at..end])) {
                break;
            }
            self.at = end;
            passed += 1;
        }
        (passed, start..self.at)
    }
}

impl Iterator for Split<'_> {
    type Item = Result<Span, LineTooLong>;

    fn next(&mut self) -> Option<Result<Span, LineTooLong>> {
        if self.done {
            return None;
        }
        let max = self.splitter.max;
        let Some(newline) = memchr::memchr(b'\n', &self.chunk[self.at..]).map(|i| self.at + i) else {
            // No newline left: the rest starts (or continues) a line finished by a later chunk.
            self.done = true;
            let rest = &self.chunk[self.at..];
            if self.splitter.partial.len() + rest.len() > max {
                self.splitter.partial.clear();
                return Some(Err(LineTooLong { max }));
            }
            self.splitter.partial.extend_from_slice(rest);
            return None;
        };
        let start = self.at;
        self.at = newline + 1;
        if self.splitter.partial.is_empty() {
            if self.at - start > max {
                self.done = true;
                return Some(Err(LineTooLong { max }));
            }
            return Some(Ok(Span::Chunk(start..self.at)));
        }
        if self.splitter.partial.len() + (self.at - start) > max {
            self.done = true;
            self.splitter.partial.clear();
            return Some(Err(LineTooLong { max }));
        }
        self.splitter.partial.extend_from_slice(&self.chunk[start..self.at]);
        Some(Ok(Span::Carried(self.splitter.partial.split().freeze())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every line of `body` when it arrives in chunks of `size` bytes.
    fn lines(body: &[u8], size: usize, max: usize) -> Result<Vec<Vec<u8>>, LineTooLong> {
        let mut splitter = LineSplitter::new(max);
        let mut out = Vec::new();
        for chunk in body.chunks(size) {
            for span in splitter.split(chunk) {
                out.push(span?.bytes(chunk).to_vec());
            }
        }
        out.extend(splitter.finish().map(|last| last.to_vec()));
        Ok(out)
    }

    #[test]
    fn every_chunk_size_gives_the_same_lines() {
        let body = b"# HELP a x\n# TYPE a counter\na_total{x=\"}\\n\"} 1\n\nb 2\nlast";
        let whole = lines(body, body.len(), 1024).unwrap();
        assert_eq!(whole.len(), 6);
        assert_eq!(whole[2], b"a_total{x=\"}\\n\"} 1\n");
        assert_eq!(whole[5], b"last");
        for size in 1..body.len() {
            assert_eq!(lines(body, size, 1024).unwrap(), whole, "chunks of {size}");
        }
    }

    #[test]
    fn a_line_inside_a_chunk_is_a_range_of_it() {
        let mut splitter = LineSplitter::new(100);
        let spans: Vec<Span> = splitter.split(b"ab\ncd\ne").map(Result::unwrap).collect();
        assert_eq!(spans, [Span::Chunk(0..3), Span::Chunk(3..6)]);
        assert_eq!(splitter.carried(), 1);
        let spans: Vec<Span> = splitter.split(b"f\ng\n").map(Result::unwrap).collect();
        assert_eq!(spans, [Span::Carried(Bytes::from_static(b"ef\n")), Span::Chunk(2..4)]);
        assert_eq!(splitter.finish(), None);
    }

    #[test]
    fn a_line_longer_than_the_bound_is_an_error_wherever_it_is_cut() {
        let body = b"short\n0123456789\nshort\n";
        for size in 1..=body.len() {
            assert_eq!(lines(body, size, 10), Err(LineTooLong { max: 10 }), "chunks of {size}");
            assert_eq!(lines(body, size, 11).unwrap().len(), 3, "chunks of {size}");
        }
        // An unfinished line past the bound fails before its newline arrives.
        let mut splitter = LineSplitter::new(4);
        assert!(splitter.split(b"abc").next().is_none());
        assert_eq!(splitter.split(b"de").next(), Some(Err(LineTooLong { max: 4 })));
    }

    #[test]
    fn passing_lines_stops_at_the_first_refused_and_leaves_it_to_next() {
        let mut splitter = LineSplitter::new(100);
        let mut split = splitter.split(b"a 1\na 2\nb 3\na 4");
        assert_eq!(split.pass_while(|line| line.starts_with(b"a ")), (2, 0..8));
        assert_eq!(split.pass_while(|line| line.starts_with(b"a ")), (0, 8..8));
        assert_eq!(split.next(), Some(Ok(Span::Chunk(8..12))));
        // The unfinished tail is never passed.
        assert_eq!(split.pass_while(|_| true), (0, 12..12));
        assert_eq!(split.next(), None);
        // Nor a carried line.
        let mut split = splitter.split(b"5\na 6\n");
        assert_eq!(split.pass_while(|_| true), (0, 0..0));
        assert_eq!(split.next(), Some(Ok(Span::Carried(Bytes::from_static(b"a 45\n")))));
        assert_eq!(split.pass_while(|_| true), (1, 2..6));
    }

    #[test]
    fn content_drops_the_line_end() {
        assert_eq!(content(b"a 1\r\n"), b"a 1");
        assert_eq!(content(b"a 1\n"), b"a 1");
        assert_eq!(content(b"a 1"), b"a 1");
    }
}
