//! Which collectors a scrape runs: the scraper's query rewritten into windows_exporter's
//! `collect[]` parameters, so the operator decides at the node what a scrape costs.
//!
//! windows_exporter reads `collect[]` with Go's `url.Values`: the key and every value
//! percent-decoded (`+` is a space), each repeated parameter one collector, no comma splitting,
//! none at all meaning every enabled collector, and an unknown or disabled name answered 400
//! "Couldn't create filtered metrics handler". This module reads a scraper's query the same way.
//!
//! - `PROXY_COLLECT`: a `/metrics` scrape that names no collector gets exactly these.
//! - `PROXY_COLLECT_ALLOW`: a scraper's own `collect[]` is cut down to these; none left is a 400
//!   naming them, and the exporter sees nothing. With `PROXY_COLLECT` set it defaults to
//!   `PROXY_COLLECT` plus `PROXY_SLOW_COLLECT`; a `/metrics` scrape without `collect[]` and with
//!   only an allow list gets the allow list (so it, too, never runs more than allowed).
//! - `PROXY_SLOW_COLLECT`: `/metrics/slow` runs these (a scraper's `collect[]` there is cut down
//!   to them). `/metrics` never runs one of them, whatever the scraper asks: its `collect[]` is
//!   cut down to the allowed collectors that are not slow.
//!
//! With none of them set the query passes byte for byte, as before. Otherwise the exporter gets
//! the scraper's other parameters unchanged, in order, followed by `collect[]=name` for each
//! collector in order (the names are `[a-z0-9_]`, so they need no escaping).
//!
//! **Learning the enabled set.** With `PROXY_SLOW_COLLECT` set and neither `PROXY_COLLECT` nor
//! `PROXY_COLLECT_ALLOW`, `/metrics` without `collect[]` means "everything the exporter has
//! enabled but the slow ones", and only the exporter knows what it has enabled. The only place it
//! says so is `windows_exporter_collector_success{collector=...}`, one series per collector that
//! ran, so learning it takes one full collection, slow collectors included. The proxy does that
//! once, on the first `/metrics` scrape that needs it, as a slow collection of its own (the slow
//! path's rules: one at a time, after waiting fast scrapes) with [`LEARN_TIMEOUT`]; no `/metrics`
//! scrape is ever sent without an explicit `collect[]` list, so none runs a slow collector,
//! before or after. Scrapes wait for the set within their own deadline (a first scrape may get
//! 503 while it is learned). Learning is counted in
//! `windows_exporter_proxy_collector_set_learnings_total{outcome}`, and the set is forgotten and
//! learned again when the exporter answers a scrape that used it with 400 (a collector was
//! disabled since). A collector enabled later is only picked up after a proxy restart: set
//! `PROXY_COLLECT` to say exactly what `/metrics` runs instead.

use std::borrow::Cow;
use std::time::Duration;

/// The collector settings, filled by `config` (checked there: valid names, no duplicates, the
/// allow list covers the configured collectors, nothing both fast and slow).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CollectSettings {
    /// `PROXY_COLLECT`: what `/metrics` runs when the scraper names nothing.
    pub fast: Option<Vec<String>>,
    /// `PROXY_SLOW_COLLECT`: what `/metrics/slow` runs; `None`: no slow route.
    pub slow: Option<Vec<String>>,
    /// `PROXY_COLLECT_ALLOW`, or its default: what a scraper may name.
    pub allow: Option<Vec<String>>,
}

/// The longest a learning collection may take (a full collection, slow collectors included).
pub const LEARN_TIMEOUT: Duration = Duration::from_secs(60);

/// The two scrape routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    /// `/metrics`.
    Fast,
    /// `/metrics/slow`.
    Slow,
}

impl Route {
    /// The path, also the `route` label of the proxy's own metrics.
    pub fn path(self) -> &'static str {
        match self {
            Route::Fast => "/metrics",
            Route::Slow => "/metrics/slow",
        }
    }
}

/// A scraper's `collect[]` that leaves nothing it may run: answered 400.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NothingAllowed {
    /// What the route allows; empty: anything but `slow`.
    pub allowed: Vec<String>,
    /// The slow collectors `/metrics` never runs.
    pub slow: Vec<String>,
}

impl std::fmt::Display for NothingAllowed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.allowed.is_empty() {
            write!(f, "no collector left to run here; any but {} (those run on /metrics/slow)", self.slow.join(","))
        } else {
            write!(f, "no collector left to run here; allowed: {}", self.allowed.join(","))
        }
    }
}

/// What goes to the exporter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rewrite<'q> {
    /// This query (`None`: no query).
    Query(Option<Cow<'q, str>>),
    /// `/metrics` without `collect[]` needs the learned enabled set first.
    NeedsEnabledSet,
}

impl CollectSettings {
    /// Whether any collector variable is set (else every query passes as it is).
    pub fn is_set(&self) -> bool {
        self.fast.is_some() || self.slow.is_some() || self.allow.is_some()
    }

    /// Whether `/metrics/slow` exists.
    pub fn has_slow_route(&self) -> bool {
        self.slow.is_some()
    }

    fn slow(&self) -> &[String] {
        self.slow.as_deref().unwrap_or_default()
    }

    /// The query the exporter gets for a scrape on `route` whose query is `query`; `enabled` is
    /// the learned enabled set, when known.
    pub fn rewrite<'q>(
        &self,
        route: Route,
        query: Option<&'q str>,
        enabled: Option<&[String]>,
    ) -> Result<Rewrite<'q>, NothingAllowed> {
        if !self.is_set() {
            return Ok(Rewrite::Query(query.map(Cow::Borrowed)));
        }
        let (requested, others) = split(query.unwrap_or_default());
        let slow = self.slow();
        let collectors: Vec<&str> = if requested.is_empty() {
            match (route, &self.fast, &self.allow, enabled) {
                (Route::Slow, ..) => slow.iter().map(String::as_str).collect(),
                (Route::Fast, Some(fast), ..) => fast.iter().map(String::as_str).collect(),
                (Route::Fast, None, Some(allow), _) => not_in(allow, slow),
                (Route::Fast, None, None, Some(enabled)) if self.slow.is_some() => {
                    let fast = not_in(enabled, slow);
                    if fast.is_empty() {
                        // Never an empty list: no collect[] at all would run every collector.
                        return Err(NothingAllowed { allowed: Vec::new(), slow: slow.to_vec() });
                    }
                    fast
                }
                (Route::Fast, None, None, None) if self.slow.is_some() => return Ok(Rewrite::NeedsEnabledSet),
                (Route::Fast, None, None, _) => return Ok(Rewrite::Query(query.map(Cow::Borrowed))),
            }
        } else {
            let allowed = |name: &str| match route {
                Route::Slow => slow.iter().any(|s| s == name),
                Route::Fast => {
                    self.allow.as_ref().is_none_or(|allow| allow.iter().any(|a| a == name))
                        && !slow.iter().any(|s| s == name)
                }
            };
            let mut kept: Vec<&str> = Vec::new();
            for name in requested.iter().map(Cow::as_ref) {
                if allowed(name) && !kept.contains(&name) {
                    kept.push(name);
                }
            }
            if kept.is_empty() {
                let allowed = match (route, &self.allow) {
                    (Route::Slow, _) => slow.to_vec(),
                    (Route::Fast, Some(allow)) => not_in(allow, slow).into_iter().map(str::to_owned).collect(),
                    (Route::Fast, None) => Vec::new(),
                };
                return Err(NothingAllowed { allowed, slow: slow.to_vec() });
            }
            return Ok(Rewrite::Query(Some(Cow::Owned(join(&others, &kept)))));
        };
        Ok(Rewrite::Query(Some(Cow::Owned(join(&others, &collectors)))))
    }
}

/// `names` without those in `slow`, in order.
fn not_in<'a>(names: &'a [String], slow: &[String]) -> Vec<&'a str> {
    names.iter().filter(|n| !slow.contains(n)).map(String::as_str).collect()
}

/// The query's `collect[]` values (decoded) and its other parameters (as sent).
fn split(query: &str) -> (Vec<Cow<'_, str>>, Vec<&str>) {
    let mut requested = Vec::new();
    let mut others = Vec::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match unescape(key) {
            Some(key) if key == "collect[]" => {
                // Go drops a pair it cannot decode; so does this (it never reaches the exporter).
                if let Some(value) = unescape(value) {
                    requested.push(value);
                }
            }
            _ => others.push(pair),
        }
    }
    (requested, others)
}

/// The other parameters, then one `collect[]` per collector.
fn join(others: &[&str], collectors: &[&str]) -> String {
    let mut query = String::with_capacity(64);
    for other in others {
        if !query.is_empty() {
            query.push('&');
        }
        query.push_str(other);
    }
    for name in collectors {
        if !query.is_empty() {
            query.push('&');
        }
        query.push_str("collect[]=");
        query.push_str(name);
    }
    query
}

/// Go's `url.QueryUnescape`: `%XX` escapes and `+` as a space; `None` for a bad escape.
fn unescape(s: &str) -> Option<Cow<'_, str>> {
    if !s.contains(['%', '+']) {
        return Some(Cow::Borrowed(s));
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

/// The collectors a windows_exporter scrape ran: the `collector` label of every
/// `windows_exporter_collector_success` sample (1 or 0: a failed collector is enabled too).
pub fn enabled_set(scrape: &str) -> Vec<String> {
    let mut enabled: Vec<String> = Vec::new();
    for line in scrape.lines() {
        let Some(labels) = line.strip_prefix("windows_exporter_collector_success{") else { continue };
        let Some(at) = labels.find("collector=\"") else { continue };
        let rest = &labels[at + "collector=\"".len()..];
        let Some(name) = rest.split('"').next() else { continue };
        if !name.is_empty() && !enabled.iter().any(|e| e == name) {
            enabled.push(name.to_owned());
        }
    }
    enabled
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(names: &str) -> Option<Vec<String>> {
        Some(names.split(',').map(str::to_owned).collect())
    }

    fn rewritten(settings: &CollectSettings, route: Route, query: Option<&str>) -> Option<String> {
        match settings.rewrite(route, query, None).unwrap() {
            Rewrite::Query(query) => query.map(Cow::into_owned),
            Rewrite::NeedsEnabledSet => panic!("needs the enabled set"),
        }
    }

    #[test]
    fn unset_passes_the_query_byte_for_byte() {
        let settings = CollectSettings::default();
        for query in [None, Some("collect%5B%5D=cpu&x=%zz"), Some("a=1&&b")] {
            assert_eq!(rewritten(&settings, Route::Fast, query).as_deref(), query);
        }
    }

    #[test]
    fn collect_is_injected_after_the_other_parameters() {
        let settings = CollectSettings { fast: list("cpu,os"), allow: list("cpu,os"), slow: None };
        assert_eq!(rewritten(&settings, Route::Fast, None).unwrap(), "collect[]=cpu&collect[]=os");
        assert_eq!(rewritten(&settings, Route::Fast, Some("debug=1")).unwrap(), "debug=1&collect[]=cpu&collect[]=os");
    }

    #[test]
    fn a_scrapers_collect_is_cut_down_raw_or_encoded() {
        let settings = CollectSettings { fast: list("cpu,os"), allow: list("cpu,os,memory"), slow: None };
        assert_eq!(
            rewritten(
                &settings,
                Route::Fast,
                Some("collect%5B%5D=memory&collect[]=process&collect%5b%5d=cpu&collect[]=cpu")
            )
            .unwrap(),
            "collect[]=memory&collect[]=cpu"
        );
        let refused = settings.rewrite(Route::Fast, Some("collect[]=process"), None).unwrap_err();
        assert_eq!(refused.allowed, ["cpu", "os", "memory"]);
        // An undecodable value is dropped, as Go's url.ParseQuery drops it: as if none was named.
        assert_eq!(rewritten(&settings, Route::Fast, Some("collect[]=%zz")).unwrap(), "collect[]=cpu&collect[]=os");
    }

    #[test]
    fn the_slow_route_runs_only_the_slow_collectors_and_metrics_never_does() {
        let settings =
            CollectSettings { fast: list("cpu"), slow: list("process,service"), allow: list("cpu,process,service") };
        assert_eq!(rewritten(&settings, Route::Slow, None).unwrap(), "collect[]=process&collect[]=service");
        assert_eq!(
            rewritten(&settings, Route::Slow, Some("collect[]=service&collect[]=cpu")).unwrap(),
            "collect[]=service"
        );
        assert!(settings.rewrite(Route::Fast, Some("collect[]=process"), None).is_err());
        assert!(settings.rewrite(Route::Slow, Some("collect[]=cpu"), None).is_err());
    }

    #[test]
    fn without_collect_the_fast_route_learns_the_enabled_set() {
        let settings = CollectSettings { fast: None, slow: list("process"), allow: None };
        assert_eq!(settings.rewrite(Route::Fast, None, None).unwrap(), Rewrite::NeedsEnabledSet);
        let enabled = ["cpu".to_owned(), "process".to_owned(), "os".to_owned()];
        let Rewrite::Query(Some(query)) = settings.rewrite(Route::Fast, None, Some(&enabled)).unwrap() else {
            panic!()
        };
        assert_eq!(query, "collect[]=cpu&collect[]=os");
        // An exporter that enables only slow collectors leaves /metrics nothing: refused, never
        // sent without collect[] (which would run them all).
        assert!(settings.rewrite(Route::Fast, None, Some(&["process".to_owned()])).is_err());
        // A scraper's own list needs no learning: anything but the slow ones.
        assert_eq!(
            rewritten(&settings, Route::Fast, Some("collect[]=process&collect[]=cpu")).unwrap(),
            "collect[]=cpu"
        );
    }

    #[test]
    fn the_enabled_set_is_read_from_collector_success() {
        let scrape = "# HELP x\nwindows_exporter_collector_success{collector=\"cpu\"} 1\n\
                      windows_exporter_collector_success{collector=\"process\"} 0\n\
                      windows_exporter_collector_duration_seconds{collector=\"os\"} 0.1\n";
        assert_eq!(enabled_set(scrape), ["cpu", "process"]);
    }
}
