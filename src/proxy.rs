//! The `/metrics` pass-through.
//!
//! One scrape: work out its deadline, wait (within it) for one of `PROXY_MAX_INFLIGHT` exporter
//! slots, send the request with the scraper's end-to-end headers to the exporter, and stream the
//! answer back with status, headers and body unchanged but for hop-by-hop headers. The proxy
//! never decompresses, recompresses or parses the body.
//!
//! The slot guard protects the host: windows_exporter's WMI and PDH collectors are expensive, and
//! since v0.31 it serialises collections anyway, so a burst of scrapes would only queue inside
//! the exporter where nobody can see it. Here the queue is visible
//! (`windows_exporter_proxy_waiting_scrapes`) and bounded by each scrape's own deadline; a scrape
//! that gets no slot in time is answered 503 so the scraper records a clear failure.

use std::sync::Arc;
use std::time::Instant;

use http::uri::PathAndQuery;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant as TokioInstant;

use crate::config::Config;
use crate::deadline::{SCRAPE_TIMEOUT_HEADER, ScrapeBudget};
use crate::headers;
use crate::health::Readiness;
use crate::response::{self, ResponseBody};
use crate::stream::{ScrapeRecord, ScrapeStream};
use crate::telemetry::{GaugeGuard, Outcome, Telemetry};
use crate::upstream::{Upstream, UpstreamError};

/// The exporter path every scrape goes to.
pub const METRICS_PATH: &str = "/metrics";

/// The `/metrics` handler and what it shares between scrapes.
pub struct Proxy {
    upstream: Upstream,
    slots: Arc<Semaphore>,
    max_inflight: usize,
    default_timeout: std::time::Duration,
    margin: std::time::Duration,
    telemetry: Arc<Telemetry>,
    readiness: Arc<Readiness>,
}

impl Proxy {
    /// A proxy to `upstream` with the limits in `config`.
    pub fn new(config: &Config, upstream: Upstream, telemetry: Arc<Telemetry>, readiness: Arc<Readiness>) -> Proxy {
        Proxy {
            upstream,
            slots: Arc::new(Semaphore::new(config.max_inflight)),
            max_inflight: config.max_inflight,
            default_timeout: config.scrape_timeout,
            margin: config.timeout_margin,
            telemetry,
            readiness,
        }
    }

    /// Serves one scrape. Every failure becomes a response here.
    pub async fn scrape<B>(&self, request: Request<B>) -> Response<ResponseBody> {
        let started = Instant::now();
        let budget =
            ScrapeBudget::from_header(request.headers().get(SCRAPE_TIMEOUT_HEADER), self.margin, self.default_timeout);
        let deadline = TokioInstant::now() + budget.timeout;

        let slot = match self.wait_for_slot(deadline, &budget).await {
            Ok(slot) => slot,
            Err(rejected) => return rejected,
        };
        let inflight = GaugeGuard::new(self.telemetry.inflight());
        let (parts, _body) = request.into_parts();
        let outgoing = self.outgoing(parts, &budget);

        let sent = Instant::now();
        match tokio::time::timeout_at(deadline, self.send(&outgoing)).await {
            Err(_elapsed) => self.no_answer_in_time(&budget),
            Ok(Err(error)) => {
                let upstream = self.upstream.label();
                tracing::warn!(%upstream, %error, "scrape failed: exporter unreachable or reply invalid");
                self.failed(Outcome::upstream_error, StatusCode::BAD_GATEWAY, format!("{upstream}: {error}"))
            }
            Ok(Ok(answer)) => {
                self.telemetry.upstream_responded(sent.elapsed());
                self.readiness.exporter_answered();
                let (mut parts, body) = answer.into_parts();
                headers::remove_hop_by_hop(&mut parts.headers);
                if parts.status.is_server_error() {
                    let upstream = self.upstream.label();
                    tracing::warn!(%upstream, status = parts.status.as_u16(), "exporter answered with a server error");
                }
                let record = ScrapeRecord {
                    telemetry: self.telemetry.clone(),
                    upstream: self.upstream.label().clone(),
                    status: parts.status.as_u16(),
                    started,
                    slot,
                    inflight,
                };
                Response::from_parts(parts, ResponseBody::Scrape(ScrapeStream::new(body, deadline, record)))
            }
        }
    }

    /// Waits, within the deadline, for an exporter slot; past it, the 503 answer.
    async fn wait_for_slot(
        &self,
        deadline: TokioInstant,
        budget: &ScrapeBudget,
    ) -> Result<OwnedSemaphorePermit, Response<ResponseBody>> {
        let _waiting = GaugeGuard::new(self.telemetry.waiting());
        match tokio::time::timeout_at(deadline, self.slots.clone().acquire_owned()).await {
            Ok(permit) => Ok(permit.expect("the semaphore is never closed")),
            Err(_) => {
                let upstream = self.upstream.label();
                tracing::warn!(%upstream, max_inflight = self.max_inflight, timeout_ms = budget.timeout.as_millis() as u64, "scrape rejected: no exporter slot before the deadline");
                Err(self.failed(
                    Outcome::rejected,
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "{upstream}: {} scrapes already in flight (PROXY_MAX_INFLIGHT) and none finished within {:?}",
                        self.max_inflight, budget.timeout
                    ),
                ))
            }
        }
    }

    /// What goes to the exporter: the scraper's method and query on the exporter's `/metrics`,
    /// its end-to-end headers, `Host` set to the exporter, and the proxy's own budget as the
    /// scrape timeout.
    fn outgoing(&self, scraper: http::request::Parts, budget: &ScrapeBudget) -> Outgoing {
        let path = scraper
            .uri
            .query()
            .map_or(Ok(PathAndQuery::from_static(METRICS_PATH)), |q| format!("{METRICS_PATH}?{q}").parse())
            .expect("a query that parsed in the request parses after the same path");
        let mut headers = headers::for_upstream_request(scraper.headers);
        headers.insert(SCRAPE_TIMEOUT_HEADER, budget.header_value());
        Outgoing { method: scraper.method, path, headers }
    }

    /// Sends the scrape; a pooled connection that the exporter closed just as the request went
    /// out gets one fresh attempt (scrapes are idempotent GETs).
    async fn send(&self, outgoing: &Outgoing) -> Result<Response<Incoming>, UpstreamError> {
        let request =
            || self.upstream.request(outgoing.method.clone(), outgoing.path.clone(), outgoing.headers.clone());
        match self.upstream.send(request()).await {
            Err(error) if error.is_stale_connection() => {
                tracing::debug!(upstream = %self.upstream.label(), %error, "retrying scrape on a fresh connection");
                self.upstream.send(request()).await
            }
            other => other,
        }
    }

    /// The 504 answer.
    fn no_answer_in_time(&self, budget: &ScrapeBudget) -> Response<ResponseBody> {
        let upstream = self.upstream.label();
        let source = if budget.from_scraper {
            "the scraper's timeout minus PROXY_TIMEOUT_MARGIN_SECONDS"
        } else {
            "PROXY_SCRAPE_TIMEOUT_SECONDS"
        };
        tracing::warn!(%upstream, timeout_ms = budget.timeout.as_millis() as u64, "scrape failed: exporter sent no response headers before the deadline");
        self.failed(
            Outcome::timeout,
            StatusCode::GATEWAY_TIMEOUT,
            format!("{upstream}: no response within {:?} ({source})", budget.timeout),
        )
    }

    fn failed(&self, outcome: Outcome, status: StatusCode, line: String) -> Response<ResponseBody> {
        self.telemetry.scrape_finished(outcome, status.as_u16());
        response::text(status, line)
    }
}

/// The exporter request for one scrape, kept so a retry can send it again.
struct Outgoing {
    method: Method,
    path: PathAndQuery,
    headers: HeaderMap,
}
