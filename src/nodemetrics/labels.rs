//! A kept sample's labels: names and values as the exporter wrote them (values still escaped),
//! so a value copied to a node_exporter label is written back byte for byte.

use std::fmt;

use crate::exposition::Sample;

/// Label pairs in the order written; values keep their escapes (`\\`, `\"`, `\n`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Labels(Vec<(String, String)>);

impl Labels {
    /// A sample's labels, values as written; `None` when they do not parse.
    pub fn from_sample(sample: &Sample<'_>) -> Option<Labels> {
        let mut pairs = Vec::new();
        for label in sample.labels() {
            let label = label.ok()?;
            let name = std::str::from_utf8(label.name).ok()?;
            let raw = std::str::from_utf8(label.raw).ok()?;
            pairs.push((name.to_owned(), raw.to_owned()));
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
    use crate::exposition::{Line, parse};

    fn labels(line: &[u8]) -> Labels {
        let Line::Sample(sample) = parse(line) else { panic!("not a sample") };
        Labels::from_sample(&sample).unwrap()
    }

    #[test]
    fn escaped_values_stay_escaped() {
        let labels = labels(br#"x{nic="Intel(R) \"x\" }{ #2",volume="C:"} 1"#);
        assert_eq!(labels.get("nic"), Some(r#"Intel(R) \"x\" }{ #2"#));
        assert_eq!(labels.get("volume"), Some("C:"));
        assert_eq!(labels.to_string(), r#"nic="Intel(R) \"x\" }{ #2",volume="C:""#);
    }

    #[test]
    fn order_does_not_matter_for_equality_except() {
        let a = labels(br#"x{core="0,0",mode="idle"} 1"#);
        let b = labels(br#"x{mode="dpc",core="0,0",} 1"#);
        assert!(a.equal_except(&b, "mode"));
        assert!(!a.equal_except(&labels(br#"x{core="0,1",mode="dpc"} 1"#), "mode"));
        let Line::Sample(bad) = parse(br#"x{a=b} 1"#) else { panic!() };
        assert!(Labels::from_sample(&bad).is_none());
    }
}
