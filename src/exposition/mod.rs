//! The Prometheus text exposition formats (0.0.4 and OpenMetrics 1.0), one line at a time: a
//! leaf that imports nothing from the crate.
//!
//! - [`LineSplitter`] ([`lines`]) turns a body's chunks into complete lines, zero-copy within a
//!   chunk, carrying a line cut by a chunk boundary, with a bound on the longest line.
//! - [`parse`] ([`line`](mod@line)) says what one line is: `# HELP`, `# TYPE`, `# UNIT`, `# EOF`, another
//!   comment, blank, or a sample, whose name is read at once and its labels only on demand.
//! - [`belongs_to`] and [`counter_spelling`] say which family a sample belongs to: a family's
//!   samples are its name with a suffix (`_total`, `_bucket`, `_sum`, ...), and a counter family
//!   is spelt `x_total` in 0.0.4 and `x` in OpenMetrics.

pub mod line;
pub mod lines;

use std::borrow::Cow;

pub use line::{BadLabels, Kind, Label, Labels, Line, Sample, parse, unescape};
pub use lines::{LineSplitter, LineTooLong, Span, Split, content};

/// The suffixes a sample's name may add to its family's name: counters (`_total`, `_created`),
/// histograms and summaries (`_bucket`, `_sum`, `_count`, `_created`), gauge histograms
/// (`_gcount`, `_gsum`), info (`_info`).
pub const SUFFIXES: [&[u8]; 8] =
    [b"_total", b"_bucket", b"_sum", b"_count", b"_created", b"_info", b"_gcount", b"_gsum"];

/// Whether a sample named `sample` belongs to the family named `family`: the same name, or the
/// family's name and one of [`SUFFIXES`].
pub fn belongs_to(sample: &[u8], family: &[u8]) -> bool {
    match sample.strip_prefix(family) {
        Some(b"") => true,
        Some(suffix) => SUFFIXES.contains(&suffix),
        None => false,
    }
}

/// A counter family's other spelling: `x` for `x_total` (as 0.0.4 names it, OpenMetrics' name)
/// and `x_total` for `x` (OpenMetrics' name, as 0.0.4 names it).
pub fn counter_spelling(family: &[u8]) -> Cow<'_, [u8]> {
    match family.strip_suffix(b"_total") {
        Some(bare) => Cow::Borrowed(bare),
        None => Cow::Owned([family, b"_total"].concat()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_belong_to_their_family_by_suffix() {
        assert!(belongs_to(b"x_total", b"x_total"));
        assert!(belongs_to(b"x_total", b"x"));
        assert!(belongs_to(b"x_created", b"x"));
        assert!(belongs_to(b"h_bucket", b"h"));
        assert!(belongs_to(b"h_sum", b"h"));
        assert!(belongs_to(b"h_count", b"h"));
        assert!(belongs_to(b"g_gcount", b"g"));
        assert!(belongs_to(b"g_gsum", b"g"));
        assert!(belongs_to(b"build_info", b"build"));
        assert!(!belongs_to(b"x_totals", b"x"));
        assert!(!belongs_to(b"xy_total", b"x"));
        assert!(!belongs_to(b"x", b"x_total"));
        assert!(!belongs_to(b"x_bucket_sum", b"x"));
    }

    #[test]
    fn a_counter_has_two_spellings() {
        assert_eq!(counter_spelling(b"windows_cpu_time_total").as_ref(), b"windows_cpu_time");
        assert_eq!(counter_spelling(b"windows_cpu_time").as_ref(), b"windows_cpu_time_total");
    }

    #[test]
    fn a_body_in_one_byte_chunks_parses_as_a_whole() {
        let body = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"}\\\"#\"} 1\n# EOF\n";
        let mut splitter = LineSplitter::new(1 << 10);
        let mut kinds = Vec::new();
        for chunk in body.as_bytes().chunks(1) {
            for span in splitter.split(chunk) {
                let span = span.unwrap();
                let line = content(span.bytes(chunk));
                kinds.push(match parse(line) {
                    Line::Help { .. } => "help",
                    Line::Type { kind: Kind::Counter, .. } => "type",
                    Line::Sample(s) if s.labels().next().unwrap().unwrap().value().as_ref() == b"}\"#" => "sample",
                    Line::Eof => "eof",
                    other => panic!("{other:?}"),
                });
            }
        }
        assert_eq!(kinds, ["help", "type", "sample", "eof"]);
    }
}
