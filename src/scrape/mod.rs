//! The `/metrics` handler: one scrape, from the scraper's request to the start of the streamed
//! answer.
//!
//! A scrape reads as its steps: work out its deadline, wait (within it) for one of
//! `PROXY_MAX_INFLIGHT` exporter slots, build the exporter request with the scraper's end-to-end
//! headers, send it to the exporter's port (found first when `PROXY_PORT` lists several; a port
//! that refuses is looked for again once) with one retry on a stale pooled connection, and answer
//! with the exporter's status, headers and body unchanged but for hop-by-hop headers. The body
//! is streamed by [`crate::stream`]; the proxy never decompresses, recompresses or parses it.
//! Every failure is a [`ScrapeError`], logged, counted and answered in one place.
//!
//! The slot guard protects the host: windows_exporter's WMI and PDH collectors are expensive, and
//! since v0.31 it serialises collections anyway, so a burst of scrapes would only queue inside
//! the exporter where nobody can see it. Here the queue is visible
//! (`windows_exporter_proxy_waiting_scrapes`) and bounded by each scrape's own deadline; a scrape
//! that gets no slot in time is answered 503 so the scraper records a clear failure.

mod error;

use std::sync::Arc;
use std::time::Duration;

use http::uri::PathAndQuery;
use http::{HeaderMap, Method, Request, Response};
use hyper::body::Incoming;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

pub use error::ScrapeError;

use crate::config::Config;
use crate::deadline::{SCRAPE_TIMEOUT_HEADER, ScrapeBudget};
use crate::exporter::{Exporter, ExporterError};
use crate::headers;
use crate::response::ResponseBody;
use crate::stream::{ScrapeRecord, ScrapeStream};
use crate::telemetry::{GaugeGuard, Telemetry};

/// The exporter path every scrape goes to.
pub const METRICS_PATH: &str = "/metrics";

/// The `/metrics` handler and what it shares between scrapes.
pub struct Scrape {
    exporter: Exporter,
    slots: Arc<Semaphore>,
    max_inflight: usize,
    default_timeout: Duration,
    margin: Duration,
    telemetry: Arc<Telemetry>,
}

impl Scrape {
    /// Scrapes of `exporter` with the limits in `config`.
    pub fn new(config: &Config, exporter: Exporter, telemetry: Arc<Telemetry>) -> Scrape {
        Scrape {
            exporter,
            slots: Arc::new(Semaphore::new(config.max_inflight)),
            max_inflight: config.max_inflight,
            default_timeout: config.scrape_timeout,
            margin: config.timeout_margin,
            telemetry,
        }
    }

    /// Serves one scrape. Every failure becomes a response here.
    pub async fn serve<B>(&self, request: Request<B>) -> Response<ResponseBody> {
        let started = Instant::now();
        let budget =
            ScrapeBudget::from_header(request.headers().get(SCRAPE_TIMEOUT_HEADER), self.margin, self.default_timeout);
        let deadline = started + budget.timeout;
        let mut port = None;
        match self.answer(request, started, deadline, &budget, &mut port).await {
            Ok(response) => response,
            Err(error) => {
                let exporter = match (&error, port) {
                    (ScrapeError::NoPort { .. }, _) => self.exporter.host_label(),
                    (_, Some(port)) => self.exporter.label(port),
                    (_, None) => self.exporter.current_label(),
                };
                error.respond(exporter, &self.telemetry)
            }
        }
    }

    /// The scrape up to the exporter's response headers; `port` is where it went, for the
    /// failure's message.
    async fn answer<B>(
        &self,
        request: Request<B>,
        started: Instant,
        deadline: Instant,
        budget: &ScrapeBudget,
        port: &mut Option<u16>,
    ) -> Result<Response<ResponseBody>, ScrapeError> {
        let slot = self.wait_for_slot(deadline, budget).await?;
        let inflight = GaugeGuard::new(self.telemetry.inflight());
        let (parts, _body) = request.into_parts();
        let outgoing = self.outgoing(parts, budget);

        let discovery = self.exporter.discovery();
        let mut to = *port.insert(self.port(deadline, budget).await?);
        let mut sent = Instant::now();
        let mut result = tokio::time::timeout_at(deadline, self.send(&outgoing, to)).await;
        // With a port list, a refusal means the exporter stopped or moved: look again, once and
        // within the deadline, and send the scrape where it answers now.
        if discovery.is_list() && matches!(result, Ok(Err(ExporterError::Refused))) {
            discovery.refused(to);
            to = *port.insert(self.port(deadline, budget).await?);
            sent = Instant::now();
            result = tokio::time::timeout_at(deadline, self.send(&outgoing, to)).await;
        }
        let answer = result
            .map_err(|_elapsed| ScrapeError::NoAnswer { timeout: budget.timeout, from_scraper: budget.from_scraper })?
            .map_err(ScrapeError::Exporter)?;
        self.telemetry.upstream_responded(sent.elapsed());
        let upstream = self.exporter.label(to);
        let (mut parts, body) = answer.into_parts();
        headers::remove_hop_by_hop(&mut parts.headers);
        if parts.status.is_server_error() {
            tracing::warn!(%upstream, status = parts.status.as_u16(), "exporter answered with a server error");
        }
        let record = ScrapeRecord {
            telemetry: self.telemetry.clone(),
            upstream: upstream.clone(),
            status: parts.status.as_u16(),
            started,
            slot,
            inflight,
        };
        Ok(Response::from_parts(parts, ResponseBody::Scrape(ScrapeStream::new(body, deadline, record))))
    }

    /// The exporter's port: at once when known, else after a discovery round, within the deadline.
    async fn port(&self, deadline: Instant, budget: &ScrapeBudget) -> Result<u16, ScrapeError> {
        let discovery = self.exporter.discovery();
        discovery.port(deadline).await.map_err(|error| ScrapeError::NoPort { error, timeout: budget.timeout })
    }

    /// Waits, within the deadline, for an exporter slot.
    async fn wait_for_slot(
        &self,
        deadline: Instant,
        budget: &ScrapeBudget,
    ) -> Result<OwnedSemaphorePermit, ScrapeError> {
        let _waiting = GaugeGuard::new(self.telemetry.waiting());
        match tokio::time::timeout_at(deadline, self.slots.clone().acquire_owned()).await {
            Ok(permit) => Ok(permit.expect("the semaphore is never closed")),
            Err(_) => Err(ScrapeError::NoSlot { max_inflight: self.max_inflight, timeout: budget.timeout }),
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
    async fn send(&self, outgoing: &Outgoing, port: u16) -> Result<Response<Incoming>, ExporterError> {
        let request =
            || self.exporter.request(port, outgoing.method.clone(), outgoing.path.clone(), outgoing.headers.clone());
        match self.exporter.send(request()).await {
            Err(error) if error.is_stale_connection() => {
                tracing::debug!(upstream = %self.exporter.label(port), %error, "retrying scrape on a fresh connection");
                self.exporter.send(request()).await
            }
            other => other,
        }
    }
}

/// The exporter request for one scrape, kept so a retry can send it again.
struct Outgoing {
    method: Method,
    path: PathAndQuery,
    headers: HeaderMap,
}
