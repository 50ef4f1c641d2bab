//! One line of a text exposition (format 0.0.4 or OpenMetrics), parsed without copying:
//! [`parse`] tells what the line is, and for a sample takes only its name. The labels are read
//! on demand ([`Sample::labels`]), with their values unescaped only when asked
//! ([`Label::value`]); the value, timestamp and exemplar are left as text ([`Sample::rest`]).
//! A filter that decides by family name never looks past the name.

use std::borrow::Cow;

/// What a `# TYPE` line says a family is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `counter`.
    Counter,
    /// `gauge`.
    Gauge,
    /// `histogram`.
    Histogram,
    /// `gaugehistogram` (OpenMetrics).
    GaugeHistogram,
    /// `summary`.
    Summary,
    /// `info` (OpenMetrics).
    Info,
    /// `stateset` (OpenMetrics).
    StateSet,
    /// `untyped` (0.0.4) or `unknown` (OpenMetrics).
    Unknown,
    /// Any other word.
    Other,
}

impl Kind {
    fn from_word(word: &[u8]) -> Kind {
        match word {
            b"counter" => Kind::Counter,
            b"gauge" => Kind::Gauge,
            b"histogram" => Kind::Histogram,
            b"gaugehistogram" => Kind::GaugeHistogram,
            b"summary" => Kind::Summary,
            b"info" => Kind::Info,
            b"stateset" => Kind::StateSet,
            b"untyped" | b"unknown" => Kind::Unknown,
            _ => Kind::Other,
        }
    }
}

/// One line, without its newline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line<'a> {
    /// Empty, or only spaces and tabs.
    Blank,
    /// `# HELP name text` (the text still escaped).
    Help {
        /// The family.
        family: &'a [u8],
        /// The docstring as written.
        text: &'a [u8],
    },
    /// `# TYPE name kind`.
    Type {
        /// The family.
        family: &'a [u8],
        /// Its kind.
        kind: Kind,
    },
    /// `# UNIT name unit` (OpenMetrics).
    Unit {
        /// The family.
        family: &'a [u8],
        /// The unit.
        unit: &'a [u8],
    },
    /// `# EOF` (OpenMetrics: the last line).
    Eof,
    /// Any other line starting with `#`.
    Comment(&'a [u8]),
    /// A sample.
    Sample(Sample<'a>),
}

/// A sample line: its name, and the rest unread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample<'a> {
    /// The metric name (`windows_cpu_time_total`); empty if the line starts with `{`.
    pub name: &'a [u8],
    /// Everything after the name: `{labels} value [timestamp] [# exemplar]`.
    pub after_name: &'a [u8],
}

/// A label pair of a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Label<'a> {
    /// The label name.
    pub name: &'a [u8],
    /// The value as written between its quotes, escapes and all.
    pub raw: &'a [u8],
}

/// A sample's labels that do not parse: an unclosed brace or quote, a missing `=`, ...
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed labels: {0}")]
pub struct BadLabels(pub &'static str);

/// Parses one line, given without its newline (see [`super::content`]).
pub fn parse(line: &[u8]) -> Line<'_> {
    let line = trim_start(line);
    match line.first() {
        None => Line::Blank,
        Some(b'#') => comment(line),
        Some(_) => {
            let end = line.iter().position(|&b| matches!(b, b'{' | b' ' | b'\t')).unwrap_or(line.len());
            Line::Sample(Sample { name: &line[..end], after_name: &line[end..] })
        }
    }
}

fn trim_start(text: &[u8]) -> &[u8] {
    let start = text.iter().position(|&b| b != b' ' && b != b'\t').unwrap_or(text.len());
    &text[start..]
}

/// The next word of `text` (up to a space or tab) and what follows it, its separator skipped.
fn word(text: &[u8]) -> (&[u8], &[u8]) {
    let text = trim_start(text);
    let end = text.iter().position(|&b| b == b' ' || b == b'\t').unwrap_or(text.len());
    let rest = &text[end..];
    (&text[..end], if rest.is_empty() { rest } else { &rest[1..] })
}

fn comment(line: &[u8]) -> Line<'_> {
    let body = &line[1..];
    // Only `# KEYWORD`, with a space after the `#`, is a keyword.
    if !body.starts_with(b" ") {
        return Line::Comment(line);
    }
    let (keyword, rest) = word(body);
    match keyword {
        b"HELP" | b"TYPE" | b"UNIT" => {
            let (family, rest) = word(rest);
            if family.is_empty() {
                return Line::Comment(line);
            }
            match keyword {
                b"HELP" => Line::Help { family, text: rest },
                b"TYPE" => Line::Type { family, kind: Kind::from_word(word(rest).0) },
                _ => Line::Unit { family, unit: word(rest).0 },
            }
        }
        b"EOF" if trim_start(rest).is_empty() => Line::Eof,
        _ => Line::Comment(line),
    }
}

impl<'a> Sample<'a> {
    /// The label pairs, in order. An error ends the iteration.
    pub fn labels(&self) -> Labels<'a> {
        let text = trim_start(self.after_name);
        match text.strip_prefix(b"{") {
            Some(inner) => Labels { text: inner, done: false, end: None },
            None => Labels { text: b"", done: true, end: Some(text) },
        }
    }

    /// What follows the labels (the value, timestamp, exemplar), its leading blanks skipped.
    pub fn rest(&self) -> Result<&'a [u8], BadLabels> {
        let mut labels = self.labels();
        for label in labels.by_ref() {
            label?;
        }
        Ok(trim_start(labels.end.unwrap_or_default()))
    }

    /// The sample's value as written (`1`, `1.5e+06`, `NaN`, `+Inf`).
    pub fn value(&self) -> Result<&'a [u8], BadLabels> {
        Ok(word(self.rest()?).0)
    }
}

/// The labels of a [`Sample`].
#[derive(Debug, Clone)]
pub struct Labels<'a> {
    text: &'a [u8],
    done: bool,
    /// After the closing brace, once reached.
    end: Option<&'a [u8]>,
}

impl<'a> Labels<'a> {
    fn fail(&mut self, why: &'static str) -> Option<Result<Label<'a>, BadLabels>> {
        self.done = true;
        Some(Err(BadLabels(why)))
    }
}

impl<'a> Iterator for Labels<'a> {
    type Item = Result<Label<'a>, BadLabels>;

    fn next(&mut self) -> Option<Result<Label<'a>, BadLabels>> {
        if self.done {
            return None;
        }
        let text = trim_start(self.text);
        if let Some(after) = text.strip_prefix(b"}") {
            self.done = true;
            self.end = Some(after);
            return None;
        }
        let Some(equals) = text.iter().position(|&b| b == b'=') else { return self.fail("no '=' after a label name") };
        let name = trim_end(&text[..equals]);
        if name.is_empty() || name.iter().any(|&b| matches!(b, b'"' | b',' | b'}' | b'{' | b' ' | b'\t')) {
            return self.fail("a label name is empty or has a quote, comma, brace or blank");
        }
        let Some(quoted) = trim_start(&text[equals + 1..]).strip_prefix(b"\"") else {
            return self.fail("a label value does not start with '\"'");
        };
        // The closing quote: the first one not escaped by a backslash.
        let mut at = 0;
        let close = loop {
            match memchr::memchr2(b'"', b'\\', &quoted[at..]) {
                None => return self.fail("a label value has no closing '\"'"),
                Some(i) if quoted[at + i] == b'"' => break at + i,
                Some(i) if at + i + 1 < quoted.len() => at += i + 2,
                Some(_) => return self.fail("a label value ends with a lone backslash"),
            }
        };
        let raw = &quoted[..close];
        let after = trim_start(&quoted[close + 1..]);
        self.text = match after.first() {
            Some(b',') => &after[1..],
            Some(b'}') => after,
            _ => return self.fail("a label value is followed by neither ',' nor '}'"),
        };
        Some(Ok(Label { name, raw }))
    }
}

fn trim_end(text: &[u8]) -> &[u8] {
    let end = text.iter().rposition(|&b| b != b' ' && b != b'\t').map_or(0, |i| i + 1);
    &text[..end]
}

impl<'a> Label<'a> {
    /// The value with `\\`, `\"` and `\n` unescaped; borrowed when it has no backslash. Any
    /// other escaped character stands for itself, as Prometheus reads it.
    pub fn value(&self) -> Cow<'a, [u8]> {
        unescape(self.raw)
    }
}

/// `text` with `\\`, `\"` and `\n` unescaped (borrowed when there is nothing to unescape).
pub fn unescape(text: &[u8]) -> Cow<'_, [u8]> {
    let Some(first) = memchr::memchr(b'\\', text) else { return Cow::Borrowed(text) };
    let mut out = Vec::with_capacity(text.len());
    out.extend_from_slice(&text[..first]);
    let mut bytes = text[first..].iter();
    while let Some(&b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match bytes.next() {
            Some(b'n') => out.push(b'\n'),
            Some(&other) => out.push(other),
            None => out.push(b'\\'),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(line: &str) -> Sample<'_> {
        match parse(line.as_bytes()) {
            Line::Sample(sample) => sample,
            other => panic!("{line:?} is {other:?}"),
        }
    }

    fn pairs(line: &str) -> Result<Vec<(String, String)>, BadLabels> {
        sample(line)
            .labels()
            .map(|label| {
                label.map(|l| {
                    (String::from_utf8(l.name.to_vec()).unwrap(), String::from_utf8(l.value().into_owned()).unwrap())
                })
            })
            .collect()
    }

    #[test]
    fn metadata_lines() {
        assert_eq!(
            parse(b"# HELP windows_cpu_time_total Time that processor spent in different modes (dpc, idle, interrupt, privileged, user)"),
            Line::Help {
                family: b"windows_cpu_time_total",
                text: b"Time that processor spent in different modes (dpc, idle, interrupt, privileged, user)"
            }
        );
        assert_eq!(
            parse(b"# TYPE windows_cpu_time_total counter"),
            Line::Type { family: b"windows_cpu_time_total", kind: Kind::Counter }
        );
        assert_eq!(parse(b"# TYPE x gaugehistogram"), Line::Type { family: b"x", kind: Kind::GaugeHistogram });
        assert_eq!(parse(b"# TYPE x untyped"), Line::Type { family: b"x", kind: Kind::Unknown });
        assert_eq!(parse(b"# TYPE x"), Line::Type { family: b"x", kind: Kind::Other });
        assert_eq!(parse(b"# UNIT x_seconds seconds"), Line::Unit { family: b"x_seconds", unit: b"seconds" });
        assert_eq!(parse(b"# HELP x"), Line::Help { family: b"x", text: b"" });
        assert_eq!(parse(b"# EOF"), Line::Eof);
        assert_eq!(parse(b"# EOF x"), Line::Comment(b"# EOF x"));
        assert_eq!(parse(b"#HELP x y"), Line::Comment(b"#HELP x y"));
        assert_eq!(parse(b"# HELP"), Line::Comment(b"# HELP"));
        assert_eq!(parse(b"# just a note"), Line::Comment(b"# just a note"));
        assert_eq!(parse(b""), Line::Blank);
        assert_eq!(parse(b" \t"), Line::Blank);
    }

    #[test]
    fn a_sample_is_read_to_its_name_only_until_asked() {
        let s = sample("windows_cpu_time_total{core=\"0,0\",mode=\"dpc\"} 2.953125 1700000000000");
        assert_eq!(s.name, b"windows_cpu_time_total");
        assert_eq!(s.rest().unwrap(), b"2.953125 1700000000000");
        assert_eq!(s.value().unwrap(), b"2.953125");
        assert_eq!(
            pairs("a{core=\"0,0\",mode=\"dpc\"} 1").unwrap(),
            [("core".into(), "0,0".into()), ("mode".into(), "dpc".into())]
        );
        let s = sample("up 1");
        assert_eq!((s.name, s.value().unwrap()), (&b"up"[..], &b"1"[..]));
        assert_eq!(sample("up{} 1").value().unwrap(), b"1");
        assert_eq!(sample("up {a=\"b\"} 1").value().unwrap(), b"1");
        assert_eq!(sample("  up 1").name, b"up");
    }

    #[test]
    fn quoted_values_may_hold_braces_commas_hashes_quotes_and_newlines() {
        let line = r#"windows_service_info{display_name="a} \"b\", #c\\d\ne",name="x"} 1 # {trace_id="1"} 2"#;
        let labels = pairs(line).unwrap();
        assert_eq!(labels[0], ("display_name".into(), "a} \"b\", #c\\d\ne".into()));
        assert_eq!(labels[1], ("name".into(), "x".into()));
        assert_eq!(sample(line).rest().unwrap(), br#"1 # {trace_id="1"} 2"#);
        assert_eq!(sample(line).value().unwrap(), b"1");
        // Trailing comma and blanks are allowed.
        assert_eq!(pairs("a{ b = \"1\" , } 2").unwrap(), [("b".into(), "1".into())]);
    }

    #[test]
    fn unescaping_borrows_when_there_is_nothing_to_do() {
        assert!(matches!(unescape(b"plain"), Cow::Borrowed(_)));
        assert_eq!(unescape(br#"a\\b\"c\nd\x"#).as_ref(), b"a\\b\"c\ndx");
    }

    #[test]
    fn malformed_labels_are_errors_not_panics() {
        for line in [
            "a{b} 1",
            "a{b=c} 1",
            "a{b=\"c} 1",
            "a{b=\"c\" d=\"e\"} 1",
            "a{=\"c\"} 1",
            "a{b=\"c\\",
            "a{b=\"c\"",
            "a{\"b\"=\"c\"} 1",
        ] {
            assert!(pairs(line).is_err(), "{line}");
            assert!(sample(line).rest().is_err(), "{line}");
        }
    }
}
