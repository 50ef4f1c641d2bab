//! The `/metrics` handler: one scrape, from the scraper's request to the start of the streamed
//! answer.
//!
//! A scrape reads as its steps: work out its deadline, wait (within it) for one of
//! `PROXY_MAX_INFLIGHT` exporter slots, build the exporter request with the scraper's end-to-end
//! headers, send it (one retry on a stale pooled connection), and answer with the exporter's
//! status, headers and body unchanged but for hop-by-hop headers. The body is streamed by
//! [`stream`]; the proxy never decompresses, recompresses or parses it, unless a filter is set
//! ([`crate::filter`], wrapped in `send_to`: the one hook). Every failure is a
//! [`ScrapeError`], logged, counted and answered in one place.
//!
//! The slot guard protects the host: windows_exporter's WMI and PDH collectors are expensive, and
//! since v0.31 it serialises collections anyway, so a burst of scrapes would only queue inside
//! the exporter where nobody can see it. Here the queue is visible
//! (`windows_exporter_proxy_waiting_scrapes`) and bounded by each scrape's own deadline; a scrape
//! that gets no slot in time is answered 503 so the scraper records a clear failure.
//!
//! With `PROXY_COALESCE` (the default), identical scrapes in flight at once share one exporter
//! request, one slot and one collection ([`coalesce`]); each still keeps its own deadline. With a
//! `PROXY_PORT` list, the port comes from [`crate::exporter::discovery`] first.

pub mod coalesce;
mod error;
pub mod stream;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::uri::PathAndQuery;
use http::{HeaderMap, Method, Request, Response};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

pub use error::ScrapeError;

use crate::deadline::{self, MIN_DEADLINE, SCRAPE_TIMEOUT, ScrapeBudget, SendDeadline};
use crate::exporter::{Exporter, ExporterError};
use crate::filter::{self, ExporterBody, FilterSettings};
use crate::hangup::HangUp;
use crate::headers;
use crate::response::{ResponseBody, streamed};
use crate::telemetry::{GaugeGuard, Telemetry};

use coalesce::key::ScrapeKey;
use coalesce::{Coalescer, Coalescing, Joined, Member};
use stream::{Held, ScrapeRecord, ScrapeStream, Source};

/// The exporter path every scrape goes to.
pub const METRICS_PATH: &str = "/metrics";

/// The scraper a scrape answers: when it asked, and how to hang up on it (its connection's
/// [`HangUp`], absent outside a connection) when its body cannot be finished while hyper is not
/// polling it.
struct Scraper {
    started: Instant,
    hang_up: Option<Arc<Notify>>,
}

/// The `/metrics` handler's settings, filled by `config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScrapeSettings {
    /// Concurrent exporter requests (`PROXY_MAX_INFLIGHT`).
    pub max_inflight: usize,
    /// Deadline for a scrape that carries no timeout header.
    pub scrape_timeout: Duration,
    /// Taken off the scraper's own timeout.
    pub timeout_margin: Duration,
    /// Coalescing of identical concurrent scrapes.
    pub coalesce: Coalescing,
    /// Whether the scraper's `Authorization` goes to the exporter.
    pub forward_authorization: bool,
}

/// The `/metrics` handler and what it shares between scrapes.
pub struct Scrape {
    exporter: Exporter,
    slots: Arc<Semaphore>,
    max_inflight: usize,
    default_timeout: Duration,
    margin: Duration,
    telemetry: Arc<Telemetry>,
    /// `None` with `PROXY_COALESCE=false`.
    coalescer: Option<Coalescer>,
    forward_authorization: bool,
    /// `None` without filter settings: the exporter's body passes untouched.
    filter: Option<Arc<FilterSettings>>,
}

impl Scrape {
    /// Scrapes of `exporter` with the limits in `settings`.
    pub fn new(settings: &ScrapeSettings, exporter: Exporter, telemetry: Arc<Telemetry>) -> Scrape {
        Scrape {
            exporter,
            slots: Arc::new(Semaphore::new(settings.max_inflight)),
            max_inflight: settings.max_inflight,
            default_timeout: settings.scrape_timeout,
            margin: settings.timeout_margin,
            telemetry,
            coalescer: settings.coalesce.enabled.then(|| Coalescer::new(settings.coalesce.max_buffer_bytes)),
            forward_authorization: settings.forward_authorization,
            filter: None,
        }
    }

    /// Scrapes whose exporter bodies go through the filter stage ([`crate::filter`]) when
    /// `settings` sets anything; one filter for every route. Under coalescing it runs once per
    /// shared exporter body, before the body fans out.
    pub fn with_filter(mut self, settings: FilterSettings) -> Scrape {
        self.filter = settings.is_active().then(|| Arc::new(settings));
        self
    }

    /// Serves one scrape. Every failure becomes a response here.
    pub async fn serve<B>(&self, request: Request<B>) -> Response<ResponseBody> {
        let started = Instant::now();
        let budget =
            ScrapeBudget::from_header(request.headers().get(&SCRAPE_TIMEOUT), self.margin, self.default_timeout);
        let deadline = started + budget.timeout;
        let mut port = None;
        match self.answer(request, started, deadline, &budget, &mut port).await {
            Ok(mut response) => {
                // The scraper must have taken the whole answer by the scrape's deadline.
                response.extensions_mut().insert(SendDeadline(deadline));
                response
            }
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

    /// The scrape up to the exporter's response headers; `port` is where it went first, for the
    /// failure's message.
    async fn answer<B>(
        &self,
        request: Request<B>,
        started: Instant,
        deadline: Instant,
        budget: &ScrapeBudget,
        port: &mut Option<u16>,
    ) -> Result<Response<ResponseBody>, ScrapeError> {
        let (parts, _body) = request.into_parts();
        let scraper = Scraper { started, hang_up: parts.extensions.get::<HangUp>().map(|HangUp(h)| h.clone()) };
        let outgoing = self.outgoing(parts, budget);
        let to = *port.insert(self.port(deadline, budget).await?);
        match &self.coalescer {
            Some(coalescer) => self.answer_shared(coalescer, outgoing, to, scraper, deadline, budget).await,
            None => self.answer_alone(outgoing, to, scraper, deadline, budget).await,
        }
    }

    /// The exporter's port: at once when known, else after a discovery round, within the deadline.
    /// A scrape waiting for a discovery round counts as waiting.
    async fn port(&self, deadline: Instant, budget: &ScrapeBudget) -> Result<u16, ScrapeError> {
        let discovery = self.exporter.discovery();
        let _waiting = discovery.is_list().then(|| GaugeGuard::new(self.telemetry.waiting()));
        discovery.port(deadline).await.map_err(|error| ScrapeError::NoPort { error, timeout: budget.timeout })
    }

    /// A scrape with an exporter request of its own (`PROXY_COALESCE=false`).
    async fn answer_alone(
        &self,
        outgoing: Outgoing,
        port: u16,
        scraper: Scraper,
        deadline: Instant,
        budget: &ScrapeBudget,
    ) -> Result<Response<ResponseBody>, ScrapeError> {
        let slot = self.wait_for_slot(deadline, budget).await?;
        time_left(deadline, budget)?;
        let inflight = GaugeGuard::new(self.telemetry.inflight());
        let answer =
            tokio::time::timeout_at(deadline, send(&self.exporter, &self.telemetry, &outgoing, port, deadline))
                .await
                .map_err(|_elapsed| no_answer(budget))?
                .map_err(ScrapeError::Exporter)?;
        let (parts, body) = answer.into_parts();
        let record = self.record(parts.status, scraper.started, Some(Held { slot, inflight }));
        Ok(Response::from_parts(
            parts,
            streamed(ScrapeStream::new(Source::Exporter(body), deadline, record, scraper.hang_up)),
        ))
    }

    /// A scrape served from the identical exporter request in flight, or from a new one that
    /// later identical scrapes can join. Its deadline is its own either way.
    async fn answer_shared(
        &self,
        coalescer: &Coalescer,
        outgoing: Outgoing,
        port: u16,
        scraper: Scraper,
        deadline: Instant,
        budget: &ScrapeBudget,
    ) -> Result<Response<ResponseBody>, ScrapeError> {
        let key = ScrapeKey::new(&outgoing.method, outgoing.path.as_str(), &outgoing.headers);
        let mut member = self.member(coalescer, key, outgoing, port, deadline, budget).await?;
        let answer = match tokio::time::timeout_at(deadline, member.answer()).await {
            Err(_elapsed) => return Err(no_answer(budget)),
            Ok(Err(Some(error))) => return Err(ScrapeError::Exporter(error)),
            // The request's task is gone without an answer: only while the runtime stops.
            Ok(Err(None)) => return Err(no_answer(budget)),
            Ok(Ok(answer)) => answer,
        };
        let mut response = Response::new(());
        *response.status_mut() = answer.status;
        *response.version_mut() = answer.version;
        *response.headers_mut() = answer.headers.clone();
        let record = self.record(answer.status, scraper.started, None);
        let source = Source::Shared(member.into_reader(), coalescer.limit());
        let body = ScrapeStream::new(source, deadline, record, scraper.hang_up);
        Ok(response.map(|()| streamed(body)))
    }

    /// Joins the identical exporter request in flight; else waits (within the deadline) for a
    /// slot and starts one, joining instead if an identical one starts meanwhile.
    async fn member(
        &self,
        coalescer: &Coalescer,
        key: ScrapeKey,
        outgoing: Outgoing,
        port: u16,
        deadline: Instant,
        budget: &ScrapeBudget,
    ) -> Result<Member, ScrapeError> {
        loop {
            // Armed before looking, so a registration between the look and the wait is not missed.
            let registered = coalescer.registered();
            tokio::pin!(registered);
            registered.as_mut().enable();
            if let Some(member) = coalescer.join(&key) {
                self.telemetry.scrape_coalesced();
                return Ok(member);
            }
            let _waiting = GaugeGuard::new(self.telemetry.waiting());
            tokio::select! {
                // In this order: no random start (a thread-local RNG draw), and a free slot is
                // taken without arming the deadline's timer.
                biased;
                permit = self.slots.clone().acquire_owned() => {
                    let slot = permit.expect("the semaphore is never closed");
                    time_left(deadline, budget)?;
                    let inflight = GaugeGuard::new(self.telemetry.inflight());
                    let (member, joined) = coalescer.start(key, slot, inflight, self.send_owned(outgoing, port, deadline));
                    if joined == Joined::Shared {
                        self.telemetry.scrape_coalesced();
                    }
                    return Ok(member);
                }
                () = &mut registered => continue,
                () = tokio::time::sleep_until(deadline) => {
                    return Err(ScrapeError::NoSlot { max_inflight: self.max_inflight, timeout: budget.timeout });
                }
            }
        }
    }

    /// What the stream records when the scrape ends.
    fn record(&self, status: http::StatusCode, started: Instant, held: Option<Held>) -> ScrapeRecord {
        if status.is_server_error() {
            let upstream = self.exporter.current_label();
            tracing::warn!(%upstream, status = status.as_u16(), "exporter answered with a server error");
        }
        ScrapeRecord {
            telemetry: self.telemetry.clone(),
            upstream: self.exporter.current_label().clone(),
            status: status.as_u16(),
            started,
            held,
        }
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
    /// scrape timeout (what identical scrapes share; [`send_to`] replaces it with the time left
    /// when the request goes out).
    fn outgoing(&self, scraper: http::request::Parts, budget: &ScrapeBudget) -> Outgoing {
        let path = scraper
            .uri
            .query()
            .map_or(Ok(PathAndQuery::from_static(METRICS_PATH)), |q| format!("{METRICS_PATH}?{q}").parse())
            .expect("a query that parsed in the request parses after the same path");
        let mut headers = headers::for_upstream_request(scraper.headers);
        // PROXY_FORWARD_AUTHORIZATION: false whenever PROXY_AUTH checked a credential, so a
        // scraper's password or token never reaches the exporter.
        if !self.forward_authorization {
            headers.remove(http::header::AUTHORIZATION);
        }
        headers.insert(&SCRAPE_TIMEOUT, budget.header_value());
        if self.filter.is_some() {
            // The filter reads text: no protobuf. (Accept-Encoding stays the scraper's here, so
            // coalescing still tells gzip from identity scrapers; `send_to` asks for identity.)
            let accept = filter::body::text_only_accept(headers.get(http::header::ACCEPT));
            headers.insert(http::header::ACCEPT, accept);
        }
        Outgoing { method: scraper.method, path, headers, filter: self.filter.clone() }
    }

    /// [`send`] as a future that owns what it needs, for a shared request's own task.
    /// The deadline is that of the scrape that started the request: it bounds a second look
    /// for the exporter's port after a refusal.
    fn send_owned(
        &self,
        outgoing: Outgoing,
        port: u16,
        deadline: Instant,
    ) -> impl Future<Output = Result<Response<ExporterBody>, ExporterError>> + Send + 'static {
        let (exporter, telemetry) = (self.exporter.clone(), self.telemetry.clone());
        async move { send(&exporter, &telemetry, &outgoing, port, deadline).await }
    }
}

/// The 504 for a scrape whose deadline passed before the exporter's response head.
fn no_answer(budget: &ScrapeBudget) -> ScrapeError {
    ScrapeError::NoAnswer { timeout: budget.timeout, from_scraper: budget.from_scraper }
}

/// The time left before `deadline`, if an exporter request sent now could still be answered
/// in it: at least [`MIN_DEADLINE`].
fn left_for_a_request(deadline: Instant) -> Option<Duration> {
    Some(deadline.saturating_duration_since(Instant::now())).filter(|left| *left >= MIN_DEADLINE)
}

/// Checked once a scrape holds its exporter slot, before it sends anything: a request that
/// cannot be answered in time is a collection on the node that nobody waits for, so it is never
/// sent, and the scrape gets a 504 instead.
fn time_left(deadline: Instant, budget: &ScrapeBudget) -> Result<(), ScrapeError> {
    match left_for_a_request(deadline) {
        Some(_) => Ok(()),
        None => Err(ScrapeError::NoTimeLeft {
            left: deadline.saturating_duration_since(Instant::now()),
            timeout: budget.timeout,
        }),
    }
}

/// Sends one scrape's exporter request to `port`. With a `PROXY_PORT` list, a refusal means the
/// exporter stopped or moved: the port is looked for again, once and before `deadline`, and the
/// request sent where the exporter answers now (a failed second look, or one that leaves less
/// than [`MIN_DEADLINE`], leaves the refusal as the answer).
async fn send(
    exporter: &Exporter,
    telemetry: &Arc<Telemetry>,
    outgoing: &Outgoing,
    port: u16,
    deadline: Instant,
) -> Result<Response<ExporterBody>, ExporterError> {
    let discovery = exporter.discovery();
    match send_to(exporter, telemetry, outgoing, port, deadline).await {
        Err(ExporterError::Refused) if discovery.is_list() => {
            discovery.refused(port);
            match discovery.port(deadline).await {
                Ok(next) if left_for_a_request(deadline).is_some() => {
                    send_to(exporter, telemetry, outgoing, next, deadline).await
                }
                _ => Err(ExporterError::Refused),
            }
        }
        other => other,
    }
}

/// Sends one exporter request to `port` and counts it; a pooled connection that the exporter
/// closed just as the request went out gets one fresh attempt (scrapes are idempotent GETs),
/// when at least [`MIN_DEADLINE`] is still left. Each attempt tells the exporter the time left
/// before `deadline`. The answer comes back with its headers ready for the scraper and its time
/// to headers recorded, and its body wrapped in the filter when there is one.
async fn send_to(
    exporter: &Exporter,
    telemetry: &Arc<Telemetry>,
    outgoing: &Outgoing,
    port: u16,
    deadline: Instant,
) -> Result<Response<ExporterBody>, ExporterError> {
    let request = || {
        let mut headers = outgoing.headers.clone();
        headers.insert(&SCRAPE_TIMEOUT, deadline::header_value(deadline.saturating_duration_since(Instant::now())));
        if outgoing.filter.is_some() {
            headers.insert(http::header::ACCEPT_ENCODING, http::HeaderValue::from_static("identity"));
        }
        exporter.request(port, outgoing.method.clone(), outgoing.path.clone(), headers)
    };
    telemetry.exporter_request_sent();
    let sent = Instant::now();
    let mut answer = match exporter.send(request()).await {
        Err(error) if error.is_stale_connection() && left_for_a_request(deadline).is_some() => {
            tracing::debug!(upstream = %exporter.label(port), %error, "retrying scrape on a fresh connection");
            exporter.send(request()).await
        }
        other => other,
    }?;
    telemetry.upstream_responded(sent.elapsed());
    headers::for_scraper(answer.headers_mut());
    let gzip = outgoing.filter.is_some() && filter::body::accepts_gzip(&outgoing.headers);
    Ok(filter::body::wrap(outgoing.filter.as_ref(), answer, gzip, telemetry))
}

/// The exporter request for one scrape, kept so a retry can send it again.
struct Outgoing {
    method: Method,
    path: PathAndQuery,
    headers: HeaderMap,
    /// The filter its body goes through, if any.
    filter: Option<Arc<FilterSettings>>,
}
