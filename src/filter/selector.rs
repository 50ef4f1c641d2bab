//! PromQL series selectors (`PROXY_SERIES_DROP`): `name{label="v", other=~"re", ...}`, parsed by a
//! small hand parser of the selector grammar only, and matched against one sample line.
//!
//! The grammar, as Prometheus 3 reads a vector selector without range or offset: an optional
//! metric name, then optionally `{` matchers separated by commas (a trailing comma allowed) `}`.
//! A matcher is a label name (or a quoted one), one of `=` `!=` `=~` `!~`, and a string in
//! double quotes, single quotes (both with Go's escapes) or backticks (raw); a quoted string
//! alone in the braces is the metric name. Regexes are fully anchored, as PromQL anchors them.
//! As in PromQL, a selector must have a matcher that does not match the empty string.
//!
//! Why not a PromQL crate: `promql-parser` parses the whole language through an LR parser
//! generator's runtime and its dependencies, to use a twentieth of it here; the selector grammar
//! is the few functions below, fuzzed (`fuzz/fuzz_targets/selector.rs`).

use std::fmt;

use regex::bytes::{Regex, RegexBuilder};

use crate::exposition::{BadLabels, Sample};

/// How a matcher compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `=`.
    Equal,
    /// `!=`.
    NotEqual,
    /// `=~`.
    Matches,
    /// `!~`.
    NotMatches,
}

/// One `label op "value"` of a selector.
#[derive(Debug, Clone)]
pub struct Matcher {
    /// The label; `__name__` for the metric name.
    pub label: String,
    /// The comparison.
    pub op: Op,
    /// The value as unquoted.
    pub value: String,
    regex: Option<Regex>,
}

impl Matcher {
    fn new(label: String, op: Op, value: String) -> Result<Matcher, String> {
        let regex = match op {
            Op::Matches | Op::NotMatches => {
                Some(anchored(&value).map_err(|why| format!("bad regex {value:?}: {why}"))?)
            }
            Op::Equal | Op::NotEqual => None,
        };
        Ok(Matcher { label, op, value, regex })
    }

    /// Whether a label value (empty when the label is absent) satisfies the matcher.
    pub fn matches(&self, value: &[u8]) -> bool {
        match (self.op, &self.regex) {
            (Op::Equal, _) => value == self.value.as_bytes(),
            (Op::NotEqual, _) => value != self.value.as_bytes(),
            (Op::Matches, Some(regex)) => regex.is_match(value),
            (Op::NotMatches, Some(regex)) => !regex.is_match(value),
            (Op::Matches | Op::NotMatches, None) => unreachable!("a regex matcher always has its regex"),
        }
    }
}

/// `re` fully anchored, as PromQL and relabelling anchor it (`^(?:re)$`), in ASCII mode: `\d`,
/// `\w`, `\s` and `[[:alpha:]]` are ASCII as in Go's RE2, a non-ASCII literal matches its UTF-8
/// bytes, and Unicode classes (`\p{L}`) are refused (the build carries no Unicode tables).
pub fn anchored(re: &str) -> Result<Regex, String> {
    RegexBuilder::new(&format!("^(?:{re})$")).unicode(false).build().map_err(|error| {
        let text = error.to_string();
        text.lines().last().unwrap_or_default().trim().to_owned()
    })
}

/// A parsed series selector.
#[derive(Debug, Clone)]
pub struct Selector {
    text: String,
    /// The matchers, the metric name's first.
    matchers: Vec<Matcher>,
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Selector {
    /// Parses one selector; the error says what is wrong and where.
    pub fn parse(text: &str) -> Result<Selector, String> {
        let mut parser = Parser { text, at: 0 };
        let mut matchers = Vec::new();
        parser.blanks();
        if parser.peek().is_some_and(is_name_start) {
            let name = parser.name(true);
            matchers.push(Matcher::new("__name__".into(), Op::Equal, name.to_owned())?);
        }
        parser.blanks();
        if parser.eat('{') {
            loop {
                parser.blanks();
                if parser.eat('}') {
                    break;
                }
                matchers.push(parser.matcher()?);
                parser.blanks();
                if parser.eat(',') {
                    continue;
                }
                if parser.eat('}') {
                    break;
                }
                return Err(parser.expected("',' or '}'"));
            }
        }
        parser.blanks();
        if parser.at < text.len() {
            return Err(
                parser.expected("the end of the selector (only series selectors: no range, offset or function)")
            );
        }
        if matchers.is_empty() {
            return Err("an empty selector".into());
        }
        if matchers.iter().all(|m| m.matches(b"")) {
            return Err("a selector needs at least one matcher that does not match the empty string".into());
        }
        if matchers.iter().filter(|m| m.label == "__name__" && m.op == Op::Equal).count() > 1 {
            return Err("the metric name is given twice".into());
        }
        // The name first: it is the cheapest to read and the most selective.
        matchers.sort_by_key(|m| m.label != "__name__");
        Ok(Selector { text: text.trim().to_owned(), matchers })
    }

    /// Whether `sample` is selected: every matcher holds (an absent label reads as empty).
    pub fn matches(&self, sample: &Sample<'_>) -> Result<bool, BadLabels> {
        Ok(self.matches_name(sample.name) && self.matches_labels(sample)?)
    }

    /// Whether the metric-name matchers hold for `name` (the same for every sample of a name,
    /// so a caller may remember it).
    pub fn matches_name(&self, name: &[u8]) -> bool {
        self.matchers.iter().filter(|m| m.label == "__name__").all(|m| m.matches(name))
    }

    /// Whether the label matchers (all but the name's) hold for `sample`.
    pub fn matches_labels(&self, sample: &Sample<'_>) -> Result<bool, BadLabels> {
        for matcher in self.matchers.iter().filter(|m| m.label != "__name__") {
            let mut value = None;
            for label in sample.labels() {
                let label = label?;
                if label.name == matcher.label.as_bytes() {
                    value = Some(label.value());
                    break;
                }
            }
            if !matcher.matches(value.as_deref().unwrap_or_default()) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The matchers, the metric name's first.
    pub fn matchers(&self) -> &[Matcher] {
        &self.matchers
    }
}

/// `;`-separated selectors (`PROXY_SERIES_DROP`); empty parts are skipped. The error names the
/// selector that does not parse.
pub fn parse_list(text: &str) -> Result<Vec<Selector>, String> {
    let mut selectors = Vec::new();
    for part in split_outside_quotes(text) {
        if part.trim().is_empty() {
            continue;
        }
        selectors.push(Selector::parse(part).map_err(|why| format!("selector {:?}: {why}", part.trim()))?);
    }
    if selectors.is_empty() {
        return Err("no selector".into());
    }
    Ok(selectors)
}

/// `text` cut at each `;` that is not inside a quoted string.
fn split_outside_quotes(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quote, mut escaped) = (0, None, false);
    for (i, c) in text.char_indices() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' && q != '`' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None if c == '"' || c == '\'' || c == '`' => quote = Some(c),
            None if c == ';' => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            None => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

struct Parser<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<char> {
        self.text[self.at..].chars().next()
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.at += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn blanks(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.at += self.peek().map_or(0, char::len_utf8);
        }
    }

    fn expected(&self, what: &str) -> String {
        match self.peek() {
            Some(c) => format!("expected {what} at byte {}, found {c:?}", self.at),
            None => format!("expected {what} at the end"),
        }
    }

    /// A metric name (with colons) or a label name.
    fn name(&mut self, metric: bool) -> &'a str {
        let start = self.at;
        while let Some(c) = self.peek() {
            let ok = c.is_ascii_alphanumeric() || c == '_' || (metric && c == ':');
            if !ok || (self.at == start && c.is_ascii_digit()) {
                break;
            }
            self.at += 1;
        }
        &self.text[start..self.at]
    }

    fn matcher(&mut self) -> Result<Matcher, String> {
        let label = match self.peek() {
            Some('"' | '\'' | '`') => {
                let quoted = self.string()?;
                self.blanks();
                if !matches!(self.peek(), Some('=' | '!')) {
                    // A quoted string alone is the metric name.
                    return Matcher::new("__name__".into(), Op::Equal, quoted);
                }
                quoted
            }
            Some(c) if c.is_ascii_alphabetic() || c == '_' => self.name(false).to_owned(),
            _ => return Err(self.expected("a label name")),
        };
        self.blanks();
        let op = if self.eat('=') {
            if self.eat('~') { Op::Matches } else { Op::Equal }
        } else if self.eat('!') {
            if self.eat('=') {
                Op::NotEqual
            } else if self.eat('~') {
                Op::NotMatches
            } else {
                return Err(self.expected("'=' or '~' after '!'"));
            }
        } else {
            return Err(self.expected("one of = != =~ !~"));
        };
        self.blanks();
        let value = self.string()?;
        Matcher::new(label, op, value)
    }

    /// A quoted string, unescaped.
    fn string(&mut self) -> Result<String, String> {
        let Some(quote @ ('"' | '\'' | '`')) = self.peek() else {
            return Err(self.expected("a quoted string"));
        };
        self.at += 1;
        let mut out = String::new();
        loop {
            let Some(c) = self.peek() else { return Err(format!("a string opened with {quote} is never closed")) };
            self.at += c.len_utf8();
            if c == quote {
                return Ok(out);
            }
            if c != '\\' || quote == '`' {
                out.push(c);
                continue;
            }
            let Some(e) = self.peek() else { return Err("a string ends with a lone backslash".into()) };
            self.at += e.len_utf8();
            match e {
                'a' => out.push('\u{7}'),
                'b' => out.push('\u{8}'),
                'f' => out.push('\u{c}'),
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                'v' => out.push('\u{b}'),
                '\\' | '"' | '\'' => out.push(e),
                'x' => out.push(self.code(2, 16)?),
                'u' => out.push(self.code(4, 16)?),
                'U' => out.push(self.code(8, 16)?),
                '0'..='7' => {
                    self.at -= 1;
                    out.push(self.code(3, 8)?);
                }
                other => return Err(format!("unknown escape \\{other} in a string")),
            }
        }
    }

    /// `digits` digits in `radix` as one character.
    fn code(&mut self, digits: usize, radix: u32) -> Result<char, String> {
        let text = self.text.get(self.at..self.at + digits).ok_or("a string ends inside an escape")?;
        let code = u32::from_str_radix(text, radix).map_err(|_| format!("bad escape digits {text:?}"))?;
        self.at += digits;
        char::from_u32(code).ok_or_else(|| format!("escape {text:?} is not a character"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposition::{Line, parse};

    fn selects(selector: &str, line: &str) -> bool {
        let selector = Selector::parse(selector).unwrap();
        let Line::Sample(sample) = parse(line.as_bytes()) else { panic!("{line} is not a sample") };
        selector.matches(&sample).unwrap()
    }

    #[test]
    fn the_issue_examples() {
        let s = r#"windows_process_cpu_time_total{process!~"kubelet|containerd|windows-exporter.*"}"#;
        assert!(selects(s, r#"windows_process_cpu_time_total{process="svchost",mode="user"} 1"#));
        assert!(!selects(s, r#"windows_process_cpu_time_total{process="kubelet",mode="user"} 1"#));
        assert!(!selects(s, r#"windows_process_cpu_time_total{process="windows-exporter-x",mode="user"} 1"#));
        assert!(!selects(s, r#"windows_process_handles{process="svchost"} 1"#));
        let s = r#"{__name__=~"windows_service_.+", start_mode="disabled"}"#;
        assert!(selects(s, r#"windows_service_state{name="a",start_mode="disabled",state="running"} 0"#));
        assert!(!selects(s, r#"windows_service_state{name="a",start_mode="auto",state="running"} 0"#));
        assert!(!selects(s, r#"windows_cpu_time_total{start_mode="disabled"} 0"#));
    }

    #[test]
    fn absent_labels_read_as_empty_and_values_are_unescaped() {
        assert!(selects(r#"up{job=""}"#, "up 1"));
        assert!(!selects(r#"up{job!=""}"#, "up 1"));
        assert!(selects(r#"a{v="x\"y\\z\n"}"#, r#"a{v="x\"y\\z\n"} 1"#));
        assert!(selects(r#"a{v='x"y'}"#, r#"a{v="x\"y"} 1"#));
        assert!(selects(r#"a{v=`x\d`}"#, r#"a{v="x\\d"} 1"#));
        assert!(selects(r#"{"a", v="1"}"#, r#"a{v="1"} 1"#));
        assert!(selects(r#"a{"v"="1",}"#, r#"a{v="1"} 1"#));
    }

    #[test]
    fn regexes_are_anchored() {
        assert!(!selects(r#"{__name__=~"windows_service"}"#, "windows_service_state 1"));
        assert!(selects(r#"{__name__=~"windows_service.*"}"#, "windows_service_state 1"));
    }

    #[test]
    fn bad_selectors_say_why() {
        for (text, why) in [
            ("", "empty"),
            ("{}", "empty"),
            (r#"{a=""}"#, "does not match the empty string"),
            (r#"{a=~".*"}"#, "does not match the empty string"),
            ("up[5m]", "no range"),
            ("rate(up[5m])", "no range"),
            (r#"up{a="b"#, "never closed"),
            (r#"up{a=~"("}"#, "bad regex"),
            (r#"up{a~"b"}"#, "one of = != =~ !~"),
            (r#"up{a="b" c="d"}"#, "',' or '}'"),
            (r#"up{a="\q"}"#, "unknown escape"),
            (r#"up{"b"}"#, "given twice"),
        ] {
            let error = Selector::parse(text).unwrap_err();
            assert!(error.contains(why), "{text}: {error}");
        }
    }

    #[test]
    fn lists_split_outside_quotes_and_name_the_bad_one() {
        let list = parse_list(r#"a{x=";"} ; b ;"#).unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].to_string(), r#"a{x=";"}"#);
        let error = parse_list(r#"a; b{"#).unwrap_err();
        assert!(error.starts_with(r#"selector "b{": "#), "{error}");
        assert!(parse_list(" ; ").is_err());
    }
}
