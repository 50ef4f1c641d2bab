//! The proxy's own metrics, served on `GET /proxy/metrics`.
//!
//! Everything an operator needs to tell "the exporter is slow" from "the proxy is struggling":
//! scrapes by outcome, status and route (`/metrics`, `/metrics/slow`), the waits of `/metrics`
//! scrapes behind slow collections, learnings of the exporter's enabled collectors, time to the
//! exporter's response headers, bytes streamed,
//! exporter requests sent and scrapes served from another scrape's request (coalescing),
//! exporter requests in flight and scrapes waiting for a slot, open client connections and why the proxy closed
//! them, and build info. All names start with `windows_exporter_proxy_`.
//!
//! The format is negotiated as Prometheus client libraries do: OpenMetrics when the scraper's
//! `Accept` asks for it, else the text format 0.0.4 (what `promtool check metrics` and older
//! scrapers read).

use std::sync::OnceLock;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::reload::ReloadFailures;
use crate::tls::metrics::TlsMetrics;

/// How a scrape through the proxy ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)] // label values are written as Prometheus expects them
pub enum ScrapeOutcome {
    /// The whole body reached the scraper.
    ok,
    /// The exporter refused, could not be reached or sent something that is not HTTP (502).
    upstream_error,
    /// No response headers before the deadline (504), or the body did not finish by it.
    timeout,
    /// The exporter reset or closed the connection mid-body; the scraper's connection was aborted.
    aborted,
    /// The scraper went away before the body was complete.
    client_gone,
    /// No exporter slot freed up within the deadline (503, `PROXY_MAX_INFLIGHT`).
    rejected,
    /// The scraper fell more than `PROXY_COALESCE_MAX_BUFFER_BYTES` behind the shared exporter
    /// request it was served from and was cut off.
    lagged,
    /// More series than `PROXY_MAX_SERIES` after filtering; the scraper's connection was aborted.
    series_limit,
    /// The scraper's `collect[]` named no collector its route may run (400).
    refused,
}

/// Labels of `windows_exporter_proxy_scrapes_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ScrapeLabels {
    outcome: ScrapeOutcome,
    status: u16,
    route: &'static str,
}

/// The route nearly every scrape takes (`Route::Fast`'s path).
const FAST_ROUTE: &str = "/metrics";
/// What nearly every scrape ends as.
const USUAL_SCRAPE: ScrapeLabels = ScrapeLabels { outcome: ScrapeOutcome::ok, status: 200, route: FAST_ROUTE };

/// Labels of the per-route counters: `route` is `/metrics` or `/metrics/slow`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

/// Labels of `windows_exporter_proxy_collector_set_learnings_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct LearningLabels {
    outcome: &'static str,
}

/// How a request's authentication ended: the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)] // label values are written as Prometheus expects them
pub enum AuthOutcome {
    /// Served.
    allowed,
    /// 401.
    unauthenticated,
    /// 403.
    forbidden,
    /// 503.
    unavailable,
    /// 503 with `Retry-After`: over the limit of reviews for unknown tokens.
    limited,
}

/// Labels of `windows_exporter_proxy_auth_decisions_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct DecisionLabels {
    /// The deciding method's name, or `none`.
    pub method: &'static str,
    /// How it ended.
    pub outcome: AuthOutcome,
}

/// Why the proxy closed a client connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)] // label values are written as Prometheus expects them
pub enum CloseReason {
    /// The request head did not arrive within `PROXY_HEADER_READ_TIMEOUT_SECONDS`.
    header_timeout,
    /// Nothing moved for `PROXY_IDLE_TIMEOUT_SECONDS`.
    idle,
    /// The proxy is stopping.
    drain,
    /// A response that could not be finished while its scraper had stopped reading: cut for
    /// lagging behind a shared body, or unfinished at its scrape deadline.
    cut,
    /// A write to the client still blocked at its send deadline: the response's scrape deadline,
    /// or `PROXY_HEADER_READ_TIMEOUT_SECONDS` for a local answer and during a drain.
    send_timeout,
}

/// Labels of `windows_exporter_proxy_connections_closed_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CloseLabels {
    reason: CloseReason,
}

/// Labels of `windows_exporter_proxy_filtered_samples_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct FilterLabels {
    /// `kept` or `dropped`.
    action: &'static str,
}

/// Labels of `windows_exporter_proxy_build_info`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

/// The registry and handles to every metric. Shared by reference; all updates are atomic.
pub struct Telemetry {
    registry: Registry,
    scrapes: Family<ScrapeLabels, Counter>,
    upstream_seconds: Histogram,
    streamed_bytes: Counter<u64, AtomicU64>,
    inflight: Gauge,
    waiting: Gauge,
    connections: Gauge,
    closed: Family<CloseLabels, Counter>,
    tls: TlsMetrics,
    reloads: ReloadFailures,
    exporter_requests: Family<RouteLabels, Counter>,
    coalesced: Family<RouteLabels, Counter>,
    slow_wait: Histogram,
    learnings: Family<LearningLabels, Counter>,
    exporter_port: Gauge,
    auth_decisions: Family<DecisionLabels, Counter>,
    filtered_samples: Family<FilterLabels, Counter>,
    usual: Usual,
}

/// Handles on the series nearly every scrape counts, taken from their families the first time
/// they are counted (so a series still appears only once counted): a family's lookup hashes the
/// labels (SipHash) under a lock, about 250 instructions a time.
#[derive(Default)]
struct Usual {
    /// `scrapes{outcome="ok",status="200",route="/metrics"}`.
    scrape_ok: OnceLock<Counter>,
    /// `exporter_requests{route="/metrics"}`.
    sent: OnceLock<Counter>,
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry::new()
    }
}

impl Telemetry {
    /// Registers every metric.
    pub fn new() -> Telemetry {
        let mut registry = Registry::with_prefix("windows_exporter_proxy");
        let scrapes = Family::<ScrapeLabels, Counter>::default();
        registry.register(
            "scrapes",
            "Scrapes of /metrics and /metrics/slow by outcome, the status sent to the scraper and route",
            scrapes.clone(),
        );
        // windows_exporter takes from tens of milliseconds to tens of seconds on a busy node.
        let upstream_seconds = Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]);
        registry.register(
            "upstream_response_seconds",
            "Time from sending a scrape to the exporter to receiving its response headers",
            upstream_seconds.clone(),
        );
        let streamed_bytes = Counter::<u64, AtomicU64>::default();
        registry.register(
            "streamed_bytes",
            "Response body bytes streamed from the exporter to scrapers",
            streamed_bytes.clone(),
        );
        let inflight = Gauge::default();
        registry.register(
            "inflight_scrapes",
            "Exporter requests holding a PROXY_MAX_INFLIGHT slot now (a shared request counts once)",
            inflight.clone(),
        );
        let waiting = Gauge::default();
        registry.register(
            "waiting_scrapes",
            "Scrapes waiting for an exporter slot (PROXY_MAX_INFLIGHT)",
            waiting.clone(),
        );
        let connections = Gauge::default();
        registry.register("client_connections", "Open client connections", connections.clone());
        let closed = Family::<CloseLabels, Counter>::default();
        registry.register(
            "connections_closed",
            "Client connections the proxy closed, by reason (header_timeout, idle, drain, cut)",
            closed.clone(),
        );
        let exporter_requests = Family::<RouteLabels, Counter>::default();
        registry.register(
            "exporter_requests",
            "Requests sent to the exporter for scrapes, by route; with PROXY_COALESCE, one per group of identical concurrent scrapes",
            exporter_requests.clone(),
        );
        let coalesced = Family::<RouteLabels, Counter>::default();
        registry.register(
            "coalesced_scrapes",
            "Scrapes served from another scrape's exporter request instead of one of their own (PROXY_COALESCE), by route",
            coalesced.clone(),
        );
        let slow_wait = Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]);
        registry.register(
            "slow_wait_seconds",
            "Time a /metrics scrape holding a slot waited for a running /metrics/slow collection to finish (windows_exporter runs one collection at a time)",
            slow_wait.clone(),
        );
        let learnings = Family::<LearningLabels, Counter>::default();
        registry.register(
            "collector_set_learnings",
            "Full collections sent to learn the exporter's enabled collectors (PROXY_SLOW_COLLECT without PROXY_COLLECT), by outcome",
            learnings.clone(),
        );
        let exporter_port = Gauge::default();
        registry.register(
            "exporter_port",
            "Port scrapes go to (PROXY_PORT; with a list, the first that answered); 0 while no listed port answers",
            exporter_port.clone(),
        );
        let build = Family::<BuildLabels, Gauge>::default();
        build.get_or_create(&BuildLabels { version: env!("CARGO_PKG_VERSION") }).set(1);
        registry.register("build_info", "Always 1; the version label says which build runs", build);
        let reloads = ReloadFailures::register(&mut registry);
        let tls = TlsMetrics::register(&mut registry).with_reloads(reloads.clone());
        let auth_decisions = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "auth_decisions",
            "Requests to /metrics and /proxy/metrics by the PROXY_AUTH method that decided (none: no credential) and outcome",
            auth_decisions.clone(),
        );
        let filtered_samples = Family::<FilterLabels, Counter>::default();
        registry.register(
            "filtered_samples",
            "Sample lines of exporter bodies the filter kept and dropped (PROXY_METRIC_KEEP, PROXY_METRIC_DROP, PROXY_SERIES_DROP); a shared body counts once",
            filtered_samples.clone(),
        );
        Telemetry {
            filtered_samples,
            registry,
            scrapes,
            upstream_seconds,
            streamed_bytes,
            inflight,
            waiting,
            connections,
            closed,
            exporter_requests,
            coalesced,
            slow_wait,
            learnings,
            tls,
            reloads,
            exporter_port,
            auth_decisions,
            usual: Usual::default(),
        }
    }

    /// Counts one finished scrape on `route` (`/metrics` or `/metrics/slow`).
    pub fn scrape_finished(&self, outcome: ScrapeOutcome, status: u16, route: &'static str) {
        let labels = ScrapeLabels { outcome, status, route };
        if labels == USUAL_SCRAPE {
            self.usual.scrape_ok.get_or_init(|| self.scrapes.get_or_create(&labels).clone()).inc();
            return;
        }
        self.scrapes.get_or_create(&labels).inc();
    }

    /// Records the time to the exporter's response headers.
    pub fn upstream_responded(&self, elapsed: Duration) {
        self.upstream_seconds.observe(elapsed.as_secs_f64());
    }

    /// Counts body bytes passed to a scraper.
    pub fn streamed(&self, bytes: u64) {
        self.streamed_bytes.inc_by(bytes);
    }

    /// Counts one request sent to the exporter for a scrape (a retry on a stale pooled
    /// connection is the same request).
    pub fn exporter_request_sent(&self, route: &'static str) {
        if route == FAST_ROUTE {
            self.usual.sent.get_or_init(|| self.exporter_requests.get_or_create(&RouteLabels { route }).clone()).inc();
            return;
        }
        self.exporter_requests.get_or_create(&RouteLabels { route }).inc();
    }

    /// Counts one exporter body's sample lines through the filter.
    pub fn filtered_samples(&self, kept: u64, dropped: u64) {
        self.filtered_samples.get_or_create(&FilterLabels { action: "kept" }).inc_by(kept);
        self.filtered_samples.get_or_create(&FilterLabels { action: "dropped" }).inc_by(dropped);
    }

    /// Counts one scrape on `route` served from another scrape's exporter request.
    pub fn scrape_coalesced(&self, route: &'static str) {
        self.coalesced.get_or_create(&RouteLabels { route }).inc();
    }

    /// Records how long a `/metrics` scrape waited for a running slow collection.
    pub fn waited_behind_slow(&self, waited: Duration) {
        self.slow_wait.observe(waited.as_secs_f64());
    }

    /// Counts one learning of the exporter's enabled collectors: `ok` or `failed`.
    pub fn collector_set_learned(&self, outcome: &'static str) {
        self.learnings.get_or_create(&LearningLabels { outcome }).inc();
    }

    /// The in-flight scrape gauge.
    pub fn inflight(&self) -> &Gauge {
        &self.inflight
    }

    /// The gauge of scrapes waiting for a slot.
    pub fn waiting(&self) -> &Gauge {
        &self.waiting
    }

    /// The authentication decision counters, which [`crate::auth::Auth`] increments.
    pub fn auth_decisions(&self) -> &Family<DecisionLabels, Counter> {
        &self.auth_decisions
    }

    /// The open client connection gauge.
    pub fn connections(&self) -> &Gauge {
        &self.connections
    }

    /// The gauge of the exporter port in use, kept by [`crate::exporter::discovery::Discovery`].
    pub fn exporter_port(&self) -> &Gauge {
        &self.exporter_port
    }

    /// Counts a connection the proxy closed.
    pub fn connection_closed(&self, reason: CloseReason) {
        self.closed.get_or_create(&CloseLabels { reason }).inc();
    }

    /// Failed reloads of re-read files, by file.
    pub fn reloads(&self) -> &ReloadFailures {
        &self.reloads
    }

    /// The TLS metrics: certificate expiry per file, handshake and reload failures.
    pub fn tls(&self) -> &TlsMetrics {
        &self.tls
    }

    /// The metrics in `format`.
    pub fn encode(&self, format: Format) -> String {
        let mut out = String::with_capacity(4096);
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        match format {
            Format::OpenMetrics => out,
            Format::Text => openmetrics_to_text(&out),
        }
    }
}

/// The exposition formats `/proxy/metrics` speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0.0 text.
    OpenMetrics,
    /// The Prometheus text format 0.0.4.
    Text,
}

impl Format {
    /// OpenMetrics when an `Accept` media range asks for it with a non-zero quality, as the
    /// Prometheus client libraries negotiate; else text 0.0.4.
    pub fn from_accept(accept: Option<&http::HeaderValue>) -> Format {
        let Some(accept) = accept.and_then(|v| v.to_str().ok()) else { return Format::Text };
        let wants_openmetrics = accept.split(',').any(|range| {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default();
            let quality = parts.filter_map(|p| p.strip_prefix("q=")).find_map(|q| q.parse::<f32>().ok()).unwrap_or(1.0);
            media.eq_ignore_ascii_case("application/openmetrics-text") && quality > 0.0
        });
        if wants_openmetrics { Format::OpenMetrics } else { Format::Text }
    }

    /// The `Content-Type` of an answer in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// prometheus-client writes only OpenMetrics. The text format differs, for the metric types used
/// here, in three ways: a counter's `# HELP` and `# TYPE` name its sample (`_total`), there is no
/// `# UNIT`, and no `# EOF`.
fn openmetrics_to_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> =
        openmetrics.lines().filter_map(|line| line.strip_prefix("# TYPE ")?.strip_suffix(" counter")).collect();
    let mut out = String::with_capacity(openmetrics.len() + 16 * counters.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            counters.contains(name).then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(line) => out.push_str(line.trim_end()),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// Adds one to a gauge for as long as it lives.
pub struct GaugeGuard(Gauge);

impl GaugeGuard {
    /// Increments `gauge` now and decrements it on drop.
    pub fn new(gauge: &Gauge) -> GaugeGuard {
        gauge.inc();
        GaugeGuard(gauge.clone())
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_every_family_with_the_prefix() {
        let t = Telemetry::new();
        t.scrape_finished(ScrapeOutcome::timeout, 504, "/metrics");
        t.upstream_responded(Duration::from_millis(30));
        t.streamed(1234);
        let _g = GaugeGuard::new(t.inflight());
        t.connection_closed(CloseReason::idle);
        let text = t.encode(Format::OpenMetrics);
        for line in [
            "windows_exporter_proxy_scrapes_total{outcome=\"timeout\",status=\"504\",route=\"/metrics\"} 1",
            "windows_exporter_proxy_upstream_response_seconds_count 1",
            "windows_exporter_proxy_streamed_bytes_total 1234",
            "windows_exporter_proxy_inflight_scrapes 1",
            "windows_exporter_proxy_waiting_scrapes 0",
            "windows_exporter_proxy_client_connections 0",
            "windows_exporter_proxy_exporter_port 0",
            "windows_exporter_proxy_connections_closed_total{reason=\"idle\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        assert!(
            text.contains(&format!("windows_exporter_proxy_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION")))
        );
    }

    #[test]
    fn the_usual_series_appear_once_counted_and_count_with_their_families() {
        let t = Telemetry::new();
        let text = t.encode(Format::OpenMetrics);
        assert!(!text.contains("outcome=\"ok\""), "counted before any scrape:\n{text}");
        assert!(!text.contains("exporter_requests_total{"), "counted before any request:\n{text}");
        for _ in 0..3 {
            t.scrape_finished(ScrapeOutcome::ok, 200, "/metrics");
            t.exporter_request_sent("/metrics");
        }
        t.scrape_finished(ScrapeOutcome::ok, 200, "/metrics/slow");
        t.exporter_request_sent("/metrics/slow");
        let text = t.encode(Format::OpenMetrics);
        for line in [
            "windows_exporter_proxy_scrapes_total{outcome=\"ok\",status=\"200\",route=\"/metrics\"} 3",
            "windows_exporter_proxy_scrapes_total{outcome=\"ok\",status=\"200\",route=\"/metrics/slow\"} 1",
            "windows_exporter_proxy_exporter_requests_total{route=\"/metrics\"} 3",
            "windows_exporter_proxy_exporter_requests_total{route=\"/metrics/slow\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn gauge_guard_returns_the_gauge_to_its_baseline() {
        let t = Telemetry::new();
        {
            let _a = GaugeGuard::new(t.waiting());
            let _b = GaugeGuard::new(t.waiting());
            assert_eq!(t.waiting().get(), 2);
        }
        assert_eq!(t.waiting().get(), 0);
    }

    #[test]
    fn text_format_names_counters_by_their_sample_and_has_no_eof() {
        let t = Telemetry::new();
        t.scrape_finished(ScrapeOutcome::ok, 200, "/metrics");
        let text = t.encode(Format::Text);
        assert!(text.contains("# TYPE windows_exporter_proxy_scrapes_total counter\n"), "{text}");
        assert!(text.contains("# HELP windows_exporter_proxy_scrapes_total Scrapes of /metrics"), "{text}");
        assert!(text.contains("# TYPE windows_exporter_proxy_inflight_scrapes gauge\n"), "{text}");
        assert!(!text.contains("# EOF"), "{text}");
        assert!(t.encode(Format::OpenMetrics).ends_with("# EOF\n"));
    }

    #[test]
    fn openmetrics_only_when_the_scraper_asks_for_it() {
        let accept = |v: &'static str| Format::from_accept(Some(&http::HeaderValue::from_static(v)));
        assert_eq!(Format::from_accept(None), Format::Text);
        assert_eq!(accept("text/plain;version=0.0.4"), Format::Text);
        assert_eq!(
            accept("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"),
            Format::OpenMetrics
        );
        assert_eq!(accept("application/openmetrics-text; q=0, text/plain"), Format::Text);
        assert_eq!(accept("*/*"), Format::Text);
    }
}
