//! The filter stage: what leaves the node. Off by default; with any of `PROXY_METRIC_KEEP`,
//! `PROXY_METRIC_DROP`, `PROXY_SERIES_DROP` or `PROXY_MAX_SERIES` set, the exporter's body goes
//! through it on its way to the scraper, streaming, never held whole.
//!
//! - [`FilterSettings`]: the keep/drop regexes on family names, the series selectors
//!   ([`selector`]) and the series cap; `config` fills it.
//! - [`stage`]: the per-line loop over the body's chunks (which family a line is in, whether it
//!   is kept, the cap).
//! - [`body`]: the stage as an HTTP body around the exporter's, and the response head it needs
//!   (no `Content-Length`, its own `Content-Encoding`); without a filter the exporter's body
//!   passes as it is ([`body::Filtered::Plain`]).
//!
//! One filter serves every route that scrapes the exporter.

pub mod body;
pub mod selector;
pub mod stage;

use regex::bytes::Regex;

use crate::exposition::{self, Kind, Sample};
use crate::nodemetrics;

pub use body::{ExporterBody, FilterError, Filtered};
pub use selector::Selector;

/// The filter's settings, filled by `config`. All unset: no filter at all.
#[derive(Debug, Clone, Default)]
pub struct FilterSettings {
    /// `PROXY_METRIC_KEEP`: families kept, by name (anchored).
    pub keep: Option<Regex>,
    /// `PROXY_METRIC_DROP`: families dropped, by name (anchored).
    pub drop: Option<Regex>,
    /// `PROXY_SERIES_DROP`: samples matching any of these are dropped.
    pub series_drop: Vec<Selector>,
    /// `PROXY_MAX_SERIES`: more kept sample lines than this fail the scrape.
    pub max_series: Option<u64>,
    /// `PROXY_NODE_METRICS`: node_exporter-named families appended to the body (issue 22).
    pub node_metrics: nodemetrics::Mode,
}

impl FilterSettings {
    /// Whether any setting is given, so the stage runs at all.
    pub fn is_active(&self) -> bool {
        self.keep.is_some()
            || self.drop.is_some()
            || !self.series_drop.is_empty()
            || self.max_series.is_some()
            || self.node_metrics.is_on()
    }
}

/// A family-name regex as Prometheus anchors a relabel regex: `^(?:re)$` ([`selector::anchored`]).
pub fn anchored(re: &str) -> Result<Regex, String> {
    selector::anchored(re).map_err(|why| format!("not a regular expression: {why}"))
}

impl FilterSettings {
    /// Whether the family `name` of `kind` (`None`: not typed yet) is kept: it matches `keep` (or
    /// `keep` is unset) and does not match `drop`. A counter matches by either of its
    /// spellings (`x_total` in 0.0.4, `x` in OpenMetrics).
    pub fn keeps_family(&self, name: &[u8], kind: Option<Kind>) -> bool {
        let matches = |re: &Regex| {
            re.is_match(name) || (kind == Some(Kind::Counter) && re.is_match(&exposition::counter_spelling(name)))
        };
        self.keep.as_ref().is_none_or(matches)
            && !self.drop.as_ref().is_some_and(matches)
            && !std::str::from_utf8(name).is_ok_and(|name| self.node_metrics.drops_family(name))
    }

    /// Whether a sample of a kept family is dropped by a series selector. A sample whose labels
    /// do not parse is left for the scraper to refuse. `names` remembers, for the last sample
    /// name seen, which selectors' name matchers hold (consecutive samples share their name).
    pub fn drops_series(&self, sample: &Sample<'_>, names: &mut NameCache) -> bool {
        if self.series_drop.is_empty() {
            return false;
        }
        if names.name != sample.name {
            names.name.clear();
            names.name.extend_from_slice(sample.name);
            names.holds.clear();
            names.holds.extend(self.series_drop.iter().map(|s| s.matches_name(sample.name)));
        }
        self.series_drop
            .iter()
            .zip(&names.holds)
            .any(|(selector, holds)| *holds && selector.matches_labels(sample).unwrap_or(false))
    }
}

/// Which selectors' name matchers hold for the last sample name ([`FilterSettings::drops_series`]).
#[derive(Debug, Default)]
pub struct NameCache {
    name: Vec<u8>,
    holds: Vec<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(keep: Option<&str>, drop: Option<&str>) -> FilterSettings {
        FilterSettings {
            keep: keep.map(|k| anchored(k).unwrap()),
            drop: drop.map(|d| anchored(d).unwrap()),
            ..Default::default()
        }
    }

    #[test]
    fn families_match_by_either_counter_spelling() {
        let s = settings(None, Some("windows_cpu_time"));
        assert!(!s.keeps_family(b"windows_cpu_time_total", Some(Kind::Counter)));
        assert!(!s.keeps_family(b"windows_cpu_time", Some(Kind::Counter)));
        assert!(s.keeps_family(b"windows_cpu_time_total", Some(Kind::Gauge)));
        let s = settings(Some("windows_cpu_time_total|up"), None);
        assert!(s.keeps_family(b"windows_cpu_time", Some(Kind::Counter)));
        assert!(s.keeps_family(b"up", None));
        assert!(!s.keeps_family(b"windows_cpu_time", None));
    }

    #[test]
    fn only_the_series_cap_is_a_series_limit_failure() {
        use super::stage::StageError;
        assert!(FilterError::from(StageError::TooManySeries { limit: 6, reached: 7 }).is_series_limit());
        assert!(!FilterError::NotText("application/json".into()).is_series_limit());
        assert!(!FilterError::Gzip(std::io::Error::other("bad header")).is_series_limit());
        // A body error whose text looks like the cap's is still a body error.
        assert!(!FilterError::Body("PROXY_MAX_SERIES=6 exceeded: 7 series after filtering".into()).is_series_limit());
    }

    #[test]
    fn regexes_are_fully_anchored() {
        let s = settings(None, Some("windows_(process|service)_.*"));
        assert!(!s.keeps_family(b"windows_process_cpu_time_total", Some(Kind::Counter)));
        assert!(s.keeps_family(b"x_windows_process_a", None));
        assert!(anchored("(").unwrap_err().starts_with("not a regular expression"));
        // ASCII classes, as in Go's RE2; a non-ASCII literal still matches.
        let s = settings(None, Some(r"a\w+|caf\u{e9}_.*"));
        assert!(!s.keeps_family(b"a_b1", None));
        assert!(!s.keeps_family("caf\u{e9}_x".as_bytes(), None));
        assert!(s.keeps_family(b"a-", None));
        assert!(anchored(r"\p{L}").is_err());
        assert!(!FilterSettings::default().is_active());
    }
}
