//! The per-line loop: [`LineFilter`] takes the exporter's body a chunk at a time and gives back
//! what is kept, in order, zero-copy where it can (consecutive kept lines of a chunk leave as one
//! slice of it).
//!
//! Which family a line is in: a `# HELP`, `# TYPE` or `# UNIT` line names its family; a sample
//! is in the current family when its name is the family's name or the family's name with one of
//! the sample suffixes ([`exposition::belongs_to`]), and otherwise starts a family of its own
//! name (an untyped sample without metadata). A family is decided once, by its name and kind:
//! at its `# TYPE` line, or at its first sample, blank, comment or other family's line if it has
//! none. Until then its `# HELP`/`# UNIT` lines (and any comment or blank between them) are held,
//! then released or dropped with the family (comments and blanks are always kept: they belong to
//! no family). Within a kept family, each sample is checked against the series selectors.
//! `# EOF` is always kept, and stays last because nothing follows it.
//!
//! This is the one place every line passes: the node_exporter names' [`Observer`] (issue 22,
//! `PROXY_NODE_METRICS`) sees every sample the exporter sent, before the filter decides, and its
//! families are written at the body's end: before `# EOF` (OpenMetrics), or after the last line.
//! Two fast paths skip the parse (and so the observer) for the samples of a decided family when
//! no selector needs their labels (`LineFilter::pass_family` for a run of them,
//! `LineFilter::same_family` for one); they are off for a family the observer reads.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use crate::exposition::{self, Kind, Line, LineSplitter, LineTooLong, Span, Split};
use crate::nodemetrics::{self, Format, Observer};

use super::{FilterSettings, NameCache};

/// Why the filter stopped the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StageError {
    /// More sample lines kept than `PROXY_MAX_SERIES`.
    #[error("PROXY_MAX_SERIES={limit} exceeded: {reached} series after filtering")]
    TooManySeries {
        /// The limit.
        limit: u64,
        /// The count when the scrape was stopped (the limit plus one).
        reached: u64,
    },
    /// A line longer than the bound.
    #[error(transparent)]
    LineTooLong(#[from] LineTooLong),
}

/// The longest line the filter reads: far past any real exposition line (a windows_exporter
/// service's display name is a few hundred bytes), small enough to bound the carried line.
pub const MAX_LINE: usize = 1 << 20;

/// Where the current family stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    /// No family yet (the body's start).
    None,
    /// Named by `# HELP`/`# UNIT`, waiting for its `# TYPE` or its first sample.
    Undecided,
    /// Its lines go out.
    Keep,
    /// Its lines are dropped.
    Drop,
}

/// The filtered body so far of one chunk: pieces in order.
#[derive(Debug, Default)]
pub struct Output {
    pieces: Vec<Bytes>,
    /// The kept run of lines of the chunk in hand not yet in `pieces`.
    run: Option<(usize, usize)>,
}

impl Output {
    fn flush(&mut self, chunk: &Bytes) {
        if let Some((start, end)) = self.run.take() {
            self.pieces.push(chunk.slice(start..end));
        }
    }

    fn keep(&mut self, chunk: &Bytes, span: Span) {
        match span {
            Span::Chunk(range) => match &mut self.run {
                Some((_, end)) if *end == range.start => *end = range.end,
                _ => {
                    self.flush(chunk);
                    self.run = Some((range.start, range.end));
                }
            },
            Span::Carried(line) => {
                self.flush(chunk);
                self.pieces.push(line);
            }
        }
    }

    fn push(&mut self, chunk: &Bytes, line: Bytes) {
        self.flush(chunk);
        self.pieces.push(line);
    }

    /// The pieces, every run flushed.
    pub fn take(&mut self, chunk: &Bytes) -> Vec<Bytes> {
        self.flush(chunk);
        std::mem::take(&mut self.pieces)
    }

    /// The pieces as one buffer: the piece itself when there is one, else a copy of them all.
    pub fn into_one(pieces: Vec<Bytes>) -> Option<Bytes> {
        match pieces.len() {
            0 => None,
            1 => pieces.into_iter().next(),
            _ => {
                let mut all = BytesMut::with_capacity(pieces.iter().map(Bytes::len).sum());
                for piece in &pieces {
                    all.extend_from_slice(piece);
                }
                Some(all.freeze())
            }
        }
    }
}

/// Whether `text` is a sample line of `family` by its start alone: the family's name, or that and a
/// sample suffix, then `{` or a blank.
fn is_sample_of(text: &[u8], family: &[u8]) -> bool {
    let Some(rest) = text.strip_prefix(family) else { return false };
    let delimited = |rest: &[u8]| matches!(rest.first(), Some(b'{' | b' ' | b'\t'));
    delimited(rest) || exposition::SUFFIXES.iter().any(|suffix| rest.strip_prefix(*suffix).is_some_and(delimited))
}

/// What to do with one line.
enum Action {
    Keep,
    Drop,
    /// Held until the family is decided; `true` when it is the family's own metadata.
    Hold(bool),
}

/// The filter's state over one body.
#[derive(Debug)]
pub struct LineFilter {
    filter: Arc<FilterSettings>,
    splitter: LineSplitter,
    family: Vec<u8>,
    decision: Decision,
    /// Lines held while the family is undecided, each with whether it is the family's metadata.
    held: Vec<(Bytes, bool)>,
    kept: u64,
    dropped: u64,
    names: NameCache,
    /// With `PROXY_NODE_METRICS`: the samples the node mapping reads; taken when rendered.
    nodes: Option<Observer>,
    /// Whether the observer reads the current family's samples (then no fast path skips them).
    observed: bool,
}

impl LineFilter {
    /// A filter for one body.
    pub fn new(filter: Arc<FilterSettings>) -> LineFilter {
        LineFilter {
            splitter: LineSplitter::new(MAX_LINE),
            family: Vec::new(),
            decision: Decision::None,
            held: Vec::new(),
            kept: 0,
            dropped: 0,
            names: NameCache::default(),
            nodes: filter.node_metrics.is_on().then(Observer::new),
            observed: false,
            filter,
        }
    }

    /// Sample lines kept and dropped so far.
    pub fn counts(&self) -> (u64, u64) {
        (self.kept, self.dropped)
    }

    /// Filters one chunk into `out`; what it kept is [`Output::take`]n with the same chunk.
    pub fn chunk(&mut self, chunk: &Bytes, out: &mut Output) -> Result<(), StageError> {
        let mut splitter = std::mem::replace(&mut self.splitter, LineSplitter::new(1));
        let result = (|| {
            let mut split = splitter.split(chunk);
            loop {
                self.pass_family(chunk, &mut split, out)?;
                match split.next() {
                    None => return Ok(()),
                    Some(span) => self.line(chunk, span?, out)?,
                }
            }
        })();
        self.splitter = splitter;
        result
    }

    /// The body's end: a last line without a newline, then the held lines of an undecided family.
    pub fn finish(&mut self, out: &mut Output) -> Result<(), StageError> {
        let empty = Bytes::new();
        let unterminated = self.splitter.finish();
        let newline = unterminated.is_some();
        if let Some(last) = unterminated {
            self.line(&empty, Span::Carried(last), out)?;
        }
        self.settle(&empty, None, out);
        if let Some(nodes) = self.nodes.take() {
            let text = nodes.render(Format::Text);
            if !text.is_empty() {
                out.push(&empty, Bytes::from(if newline { format!("\n{text}") } else { text }));
            }
        }
        out.flush(&empty);
        Ok(())
    }

    fn line(&mut self, chunk: &Bytes, span: Span, out: &mut Output) -> Result<(), StageError> {
        let action = {
            let text = exposition::content(span.bytes(chunk));
            match self.same_family(text) {
                Some(action) => action?,
                None => {
                    let line = exposition::parse(text);
                    self.action(chunk, &line, out)?
                }
            }
        };
        match action {
            Action::Keep => out.keep(chunk, span),
            Action::Drop => {}
            Action::Hold(meta) => {
                let line = match span {
                    Span::Chunk(range) => chunk.slice(range),
                    Span::Carried(line) => line,
                };
                self.held.push((line, meta));
            }
        }
        Ok(())
    }

    fn action(&mut self, chunk: &Bytes, line: &Line<'_>, out: &mut Output) -> Result<Action, StageError> {
        Ok(match *line {
            Line::Blank | Line::Comment(_) if self.decision == Decision::Undecided => Action::Hold(false),
            Line::Blank | Line::Comment(_) => Action::Keep,
            Line::Eof => {
                self.settle(chunk, None, out);
                if let Some(text) = self.nodes.take().map(|n| n.render(Format::OpenMetrics)).filter(|t| !t.is_empty()) {
                    out.push(chunk, Bytes::from(text));
                }
                Action::Keep
            }
            Line::Help { family, .. } | Line::Unit { family, .. } => {
                if family == self.family.as_slice() && self.decision != Decision::None {
                    match self.decision {
                        Decision::Keep => Action::Keep,
                        Decision::Drop => Action::Drop,
                        _ => Action::Hold(true),
                    }
                } else {
                    self.settle(chunk, None, out);
                    self.start(family);
                    Action::Hold(true)
                }
            }
            Line::Type { family, kind } => {
                if family != self.family.as_slice() || self.decision == Decision::None {
                    self.settle(chunk, None, out);
                    self.start(family);
                }
                self.settle(chunk, Some(kind), out);
                self.verdict()
            }
            Line::Sample(sample) => {
                if let Some(nodes) = &mut self.nodes {
                    nodes.observe(&sample);
                }
                if self.decision == Decision::None || !exposition::belongs_to(sample.name, &self.family) {
                    self.settle(chunk, None, out);
                    self.start(sample.name);
                }
                self.settle(chunk, None, out);
                let keep = self.decision == Decision::Keep && !self.filter.drops_series(&sample, &mut self.names);
                if !keep {
                    self.dropped += 1;
                    return Ok(Action::Drop);
                }
                self.count_kept(1)?;
                Action::Keep
            }
        })
    }

    /// How the current family's samples are decided without parsing them: `Some(keep)` once the
    /// family is decided, no selector has to read their labels and the node mapping does not
    /// read them; `None`: each sample goes through [`LineFilter::action`].
    fn fast_decision(&self) -> Option<bool> {
        if self.observed || self.family.is_empty() {
            return None;
        }
        match self.decision {
            Decision::Keep if self.filter.series_drop.is_empty() => Some(true),
            Decision::Drop => Some(false),
            _ => None,
        }
    }

    /// Counts `n` more kept sample lines; past `PROXY_MAX_SERIES` the body stops, the count
    /// reached being the limit plus one.
    fn count_kept(&mut self, n: u64) -> Result<(), StageError> {
        if let Some(limit) = self.filter.max_series.filter(|limit| self.kept + n > *limit) {
            self.kept = limit + 1;
            return Err(StageError::TooManySeries { limit, reached: self.kept });
        }
        self.kept += n;
        Ok(())
    }

    /// Passes the run of lines ahead that [`LineFilter::same_family`] would decide alike (the
    /// decided family's samples, no selector to read), with one count and one range for all.
    fn pass_family(&mut self, chunk: &Bytes, split: &mut Split<'_>, out: &mut Output) -> Result<(), StageError> {
        let Some(keep) = self.fast_decision() else { return Ok(()) };
        let family = self.family.as_slice();
        let (passed, range) = split.pass_while(|text| is_sample_of(text, family));
        if passed == 0 {
            return Ok(());
        }
        if !keep {
            self.dropped += passed;
            return Ok(());
        }
        self.count_kept(passed)?;
        out.keep(chunk, Span::Chunk(range));
        Ok(())
    }

    /// The common case, without parsing: a sample of the decided current family that needs no
    /// selector, its name being the family's name or that and a suffix, then `{` or a blank.
    /// `None`: anything else, for `LineFilter::action`.
    fn same_family(&mut self, text: &[u8]) -> Option<Result<Action, StageError>> {
        let keep = self.fast_decision()?;
        if !is_sample_of(text, &self.family) {
            return None;
        }
        if !keep {
            self.dropped += 1;
            return Some(Ok(Action::Drop));
        }
        Some(self.count_kept(1).map(|()| Action::Keep))
    }

    fn verdict(&self) -> Action {
        if self.decision == Decision::Drop { Action::Drop } else { Action::Keep }
    }

    fn start(&mut self, family: &[u8]) {
        self.observed = self.nodes.is_some() && nodemetrics::reads_family(family);
        self.family.clear();
        self.family.extend_from_slice(family);
        self.decision = Decision::Undecided;
    }

    /// Decides an undecided family (with its kind when known) and releases or drops what it held.
    fn settle(&mut self, chunk: &Bytes, kind: Option<Kind>, out: &mut Output) {
        if self.decision != Decision::Undecided {
            return;
        }
        let keep = self.filter.keeps_family(&self.family, kind);
        self.decision = if keep { Decision::Keep } else { Decision::Drop };
        for (line, meta) in self.held.drain(..) {
            if keep || !meta {
                out.push(chunk, line);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::{FilterSettings, anchored, selector};

    fn run(settings: &FilterSettings, body: &str, size: usize) -> Result<String, StageError> {
        let mut stage = LineFilter::new(Arc::new(settings.clone()));
        let mut out = Output::default();
        let mut text = Vec::new();
        for chunk in body.as_bytes().chunks(size) {
            let chunk = Bytes::copy_from_slice(chunk);
            stage.chunk(&chunk, &mut out)?;
            text.extend(out.take(&chunk).iter().flat_map(|b| b.to_vec()));
        }
        stage.finish(&mut out)?;
        text.extend(out.take(&Bytes::new()).iter().flat_map(|b| b.to_vec()));
        Ok(String::from_utf8(text).unwrap())
    }

    const BODY: &str = "# HELP windows_cpu_time_total Time.\n# TYPE windows_cpu_time_total counter\n\
        windows_cpu_time_total{core=\"0,0\",mode=\"idle\"} 1\n\
        # HELP windows_service_state The state.\n# note inside\n# TYPE windows_service_state gauge\n\
        windows_service_state{name=\"a}b\",state=\"running\"} 1\n\
        windows_service_state{name=\"x\\\"y\",state=\"stopped\"} 0\n\
        \n\
        # HELP h A histogram.\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3\nh_count 2\n\
        untyped_one 5\n# EOF\n";

    #[test]
    fn dropped_families_go_with_their_metadata_and_comments_stay() {
        let s = FilterSettings { drop: Some(anchored("windows_service_.+|h").unwrap()), ..Default::default() };
        let expected = "# HELP windows_cpu_time_total Time.\n# TYPE windows_cpu_time_total counter\n\
            windows_cpu_time_total{core=\"0,0\",mode=\"idle\"} 1\n# note inside\n\nuntyped_one 5\n# EOF\n";
        for size in 1..=BODY.len() {
            assert_eq!(run(&s, BODY, size).unwrap(), expected, "chunks of {size}");
        }
    }

    #[test]
    fn keep_all_is_the_body_itself() {
        let s = FilterSettings { keep: Some(anchored(".*").unwrap()), ..Default::default() };
        for size in [1, 2, 7, 64, BODY.len()] {
            assert_eq!(run(&s, BODY, size).unwrap(), BODY);
        }
        // A last line without a newline is kept as it is.
        assert_eq!(run(&s, "a 1\nb 2", 3).unwrap(), "a 1\nb 2");
    }

    #[test]
    fn counters_match_by_the_openmetrics_spelling_too() {
        let s = FilterSettings { keep: Some(anchored("windows_cpu_time|h").unwrap()), ..Default::default() };
        let out = run(&s, BODY, 5).unwrap();
        assert!(out.starts_with("# HELP windows_cpu_time_total"), "{out}");
        assert!(out.contains("h_count 2\n") && !out.contains("windows_service") && !out.contains("untyped_one"));
        assert!(out.ends_with("# EOF\n"));
    }

    #[test]
    fn series_selectors_drop_samples_of_kept_families() {
        let s = FilterSettings {
            series_drop: selector::parse_list(r#"windows_service_state{name="a}b"}; {__name__="h_bucket",le="1"}"#)
                .unwrap(),
            ..Default::default()
        };
        let out = run(&s, BODY, 3).unwrap();
        assert!(!out.contains("a}b") && out.contains("x\\\"y") && !out.contains("le=\"1\"") && out.contains("+Inf"));
    }

    #[test]
    fn the_cap_counts_kept_samples_only() {
        let s = FilterSettings {
            drop: Some(anchored("windows_service_state").unwrap()),
            max_series: Some(6),
            ..Default::default()
        };
        assert!(run(&s, BODY, 4).is_ok(), "exactly the limit is fine");
        let s = FilterSettings { max_series: Some(5), ..s };
        assert_eq!(run(&s, BODY, 4), Err(StageError::TooManySeries { limit: 5, reached: 6 }));
        assert_eq!(
            StageError::TooManySeries { limit: 6, reached: 7 }.to_string(),
            "PROXY_MAX_SERIES=6 exceeded: 7 series after filtering"
        );
    }

    #[test]
    fn node_metrics_are_written_at_the_end_and_before_eof_whatever_the_chunks() {
        let cpu = "# TYPE windows_cpu_time_total counter\nwindows_cpu_time_total{core=\"0,0\",mode=\"idle\"} 7\n";
        let node = "node_cpu_seconds_total{cpu=\"0,0\",mode=\"idle\",os=\"windows\"} 7\n";
        let append = FilterSettings { node_metrics: crate::nodemetrics::Mode::Append, ..Default::default() };
        let only = FilterSettings { node_metrics: crate::nodemetrics::Mode::Only, ..Default::default() };
        let text = format!("{cpu}up 1\n");
        let open = format!("{cpu}up 1\n# EOF\n");
        for size in 1..=open.len() {
            let out = run(&append, &text, size).unwrap();
            assert!(out.starts_with(&text) && out.ends_with(node), "chunks of {size}: {out}");
            let out = run(&append, &open, size).unwrap();
            assert!(
                out.contains("# TYPE node_cpu_seconds counter\n") && out.ends_with(&format!("{node}# EOF\n")),
                "{out}"
            );
            let out = run(&only, &open, size).unwrap();
            assert!(out.starts_with("up 1\n# HELP node_cpu_seconds ") && !out.contains("windows_cpu"), "{out}");
        }
        // A last line without its newline gets one before the families.
        assert!(run(&append, &format!("{cpu}up 1"), 4).unwrap().contains("up 1\n# HELP node_cpu_seconds_total"));
        assert_eq!(run(&append, "up 1\n", 2).unwrap(), "up 1\n");
    }
}
