//! A kept sample's labels: names and values as the exporter wrote them (values still escaped),
//! so a value copied to a node_exporter label is written back byte for byte.

use std::fmt;

/// Label pairs in the order written; values keep their escapes (`\\`, `\"`, `\n`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Labels(Vec<(String, String)>);

/// Splits what follows a sample's `{`: the text up to the closing `}` (quotes and escapes
/// respected) and what follows it; `None` when the braces are not closed.
pub fn split(after_brace: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, &b) in after_brace.iter().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b'}' if !quoted => return Some((&after_brace[..i], &after_brace[i + 1..])),
            _ => {}
        }
    }
    None
}

impl Labels {
    /// The pairs of `name="value",...` (a trailing comma and spaces allowed); `None` when
    /// malformed.
    pub fn parse(text: &[u8]) -> Option<Labels> {
        let text = std::str::from_utf8(text).ok()?;
        let mut pairs = Vec::new();
        let mut rest = text.trim_start();
        while !rest.is_empty() {
            let eq = rest.find('=')?;
            let name = rest[..eq].trim();
            let after = rest[eq + 1..].trim_start().strip_prefix('"')?;
            let mut end = None;
            let mut escaped = false;
            for (i, c) in after.char_indices() {
                match c {
                    _ if escaped => escaped = false,
                    '\\' => escaped = true,
                    '"' => {
                        end = Some(i);
                        break;
                    }
                    _ => {}
                }
            }
            let end = end?;
            if name.is_empty() {
                return None;
            }
            pairs.push((name.to_owned(), after[..end].to_owned()));
            rest = after[end + 1..].trim_start();
            rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
        }
        Some(Labels(pairs))
    }

    /// The value of `name`, escaped as written.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Sets `name` to `value` (escaped already), replacing it if present.
    pub fn set(&mut self, name: &str, value: &str) {
        match self.0.iter_mut().find(|(n, _)| n == name) {
            Some((_, v)) => value.clone_into(v),
            None => self.0.push((name.to_owned(), value.to_owned())),
        }
    }

    /// `to` gets the value of `from` when that is not empty, as PromQL's
    /// `label_replace(x, to, "$1", from, "(.+)")`.
    pub fn copy(&mut self, to: &str, from: &str) {
        if let Some(value) = self.get(from).filter(|v| !v.is_empty()).map(str::to_owned) {
            self.set(to, &value);
        }
    }

    /// Removes `name`.
    pub fn remove(&mut self, name: &str) {
        self.0.retain(|(n, _)| n != name);
    }

    /// Whether both have the same labels, `except` aside (order does not matter).
    pub fn equal_except(&self, other: &Labels, except: &str) -> bool {
        let mine = self.0.iter().filter(|(n, _)| n != except);
        let theirs = other.0.iter().filter(|(n, _)| n != except).count();
        mine.clone().count() == theirs && mine.clone().all(|(n, v)| other.get(n) == Some(v.as_str()))
    }

    /// Sorts by name, as node_exporter writes labels; empty values are left out, as in PromQL.
    pub fn sort(&mut self) {
        self.0.retain(|(_, v)| !v.is_empty());
        self.0.sort();
    }
}

impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (name, value)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{name}=\"{value}\"")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_values_stay_escaped_and_braces_inside_quotes_do_not_end_the_set() {
        let line = br#"nic="Intel(R) \"x\" }{ #2",volume="C:"} 1"#;
        let (inside, rest) = split(line).unwrap();
        assert_eq!(rest, b" 1");
        let labels = Labels::parse(inside).unwrap();
        assert_eq!(labels.get("nic"), Some(r#"Intel(R) \"x\" }{ #2"#));
        assert_eq!(labels.get("volume"), Some("C:"));
        assert_eq!(labels.to_string(), r#"nic="Intel(R) \"x\" }{ #2",volume="C:""#);
    }

    #[test]
    fn order_does_not_matter_for_equality_except() {
        let a = Labels::parse(br#"core="0,0",mode="idle""#).unwrap();
        let b = Labels::parse(br#"mode="dpc",core="0,0","#).unwrap();
        assert!(a.equal_except(&b, "mode"));
        assert!(!a.equal_except(&Labels::parse(br#"core="0,1",mode="dpc""#).unwrap(), "mode"));
        assert!(split(br#"a="}"#).is_none());
        assert!(Labels::parse(br#"a=b"#).is_none());
    }
}
