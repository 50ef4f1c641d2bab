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
//!
//! The same handler serves `/metrics/slow` ([`collectors::Route`]): the scraper's query is
//! rewritten into the `collect[]` the route and the operator allow ([`collectors`]), the
//! `PROXY_MAX_INFLIGHT` slots are shared by the two routes under [`schedule`]'s rules, and the
//! proxy's own metrics carry the `route`.

pub mod coalesce;
pub mod collectors;
mod error;
pub mod learn;
pub mod schedule;
pub mod stream;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::uri::PathAndQuery;
use http::{HeaderMap, Method, Request, Response};
use tokio::sync::Notify;
use tokio::time::Instant;

pub use error::ScrapeError;

use crate::deadline::{self, MIN_DEADLINE, SCRAPE_TIMEOUT, ScrapeBudget, SendDeadline};
use crate::exporter::{Exporter, ExporterError};
use crate::filter::{self, ExporterBody, FilterSettings};
use crate::hangup::HangUp;
use crate::headers;
use crate::response::{ResponseBody, streamed};
use crate::telemetry::{GaugeGuard, Telemetry};

use coalesce::key::Identity;
use coalesce::{Coalescer, Coalescing, Joined, Member};
use collectors::{CollectSettings, Rewrite, Route};
use learn::Learner;
use schedule::{Schedule, Ticket};
use stream::{Held, ScrapeRecord, ScrapeStream, Source};

/// The exporter path every scrape goes to.
pub const METRICS_PATH: &str = "/metrics";

/// The scraper a scrape answers: when it asked, and how to hang up on it (its connection's
/// [`HangUp`], absent outside a connection) when its body cannot be finished while hyper is not
/// polling it.
struct Scraper {
    started: Instant,
    route: Route,
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
    schedule: Arc<Schedule>,
    collectors: CollectSettings,
    learner: Arc<Learner>,
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
            schedule: Arc::new(Schedule::new(settings.max_inflight, false)),
            collectors: CollectSettings::default(),
            learner: Arc::default(),
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

    /// With the collectors `collectors` decides (`PROXY_COLLECT` and the rest).
    pub fn with_collectors(self, collectors: CollectSettings) -> Scrape {
        // Two routes share the slots only when there is a slow one.
        let schedule = Arc::new(Schedule::new(self.schedule.max_inflight(), collectors.has_slow_route()));
        Scrape { collectors, schedule, ..self }
    }

    /// Whether `/metrics/slow` is served (`PROXY_SLOW_COLLECT` set).
    pub fn has_slow_route(&self) -> bool {
        self.collectors.has_slow_route()
    }

    /// Serves one scrape on `route`. Every failure becomes a response here.
    pub async fn serve<B>(&self, route: Route, request: Request<B>) -> Response<ResponseBody> {
        let started = Instant::now();
        let budget =
            ScrapeBudget::from_header(request.headers().get(&SCRAPE_TIMEOUT), self.margin, self.default_timeout);
        let deadline = started + budget.timeout;
        let mut port = None;
        match self.answer(route, request, started, deadline, &budget, &mut port).await {
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
                error.respond(exporter, route.path(), &self.telemetry)
            }
        }
    }

    /// The scrape up to the exporter's response headers; `port` is where it went first, for the
    /// failure's message.
    async fn answer<B>(
        &self,
        route: Route,
        request: Request<B>,
        started: Instant,
        deadline: Instant,
        budget: &ScrapeBudget,
        port: &mut Option<u16>,
    ) -> Result<Response<ResponseBody>, ScrapeError> {
        let (parts, _body) = request.into_parts();
        let scraper = Scraper { started, route, hang_up: parts.extensions.get::<HangUp>().map(|HangUp(h)| h.clone()) };
        let rewrite = self.collectors.rewrite(route, parts.uri.query(), None).map_err(ScrapeError::NotAllowed)?;
        let to = *port.insert(self.port(deadline, budget).await?);
        let (path, learned) = match rewrite {
            Rewrite::Query(query) => (exporter_path(query.as_deref()), false),
            Rewrite::NeedsEnabledSet => {
                (self.with_enabled_set(route, parts.uri.query(), to, deadline, budget).await?, true)
            }
        };
        let outgoing = self.outgoing(parts, budget, path);
        let response = match &self.coalescer {
            Some(coalescer) => self.answer_shared(coalescer, outgoing, to, scraper, deadline, budget).await,
            None => self.answer_alone(outgoing, to, scraper, deadline, budget).await,
        }?;
        if learned && response.status() == http::StatusCode::BAD_REQUEST {
            tracing::warn!("the exporter refused the learned collectors; learning them again on the next scrape");
            self.learner.forget();
        }
        Ok(response)
    }

    /// The exporter's path and query for `/metrics` without `collect[]` when only the exporter
    /// knows what it runs: the learned enabled set minus the slow collectors ([`learn`]).
    async fn with_enabled_set(
        &self,
        route: Route,
        query: Option<&str>,
        port: u16,
        deadline: Instant,
        budget: &ScrapeBudget,
    ) -> Result<PathAndQuery, ScrapeError> {
        let context = || learn::Context {
            exporter: self.exporter.clone(),
            telemetry: self.telemetry.clone(),
            schedule: self.schedule.clone(),
            port,
        };
        let enabled = self.learner.enabled(context, deadline, budget).await?;
        match self.collectors.rewrite(route, query, Some(&enabled)).map_err(ScrapeError::NotAllowed)? {
            Rewrite::Query(query) => Ok(exporter_path(query.as_deref())),
            Rewrite::NeedsEnabledSet => unreachable!("the enabled set was given"),
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
        let schedule::Slot { permit: slot, ticket } = self.wait_for_slot(scraper.route, deadline, budget).await?;
        time_left(deadline, budget)?;
        let inflight = GaugeGuard::new(self.telemetry.inflight());
        let route = scraper.route.path();
        let answer =
            tokio::time::timeout_at(deadline, send(&self.exporter, &self.telemetry, &outgoing, port, deadline, route))
                .await
                .map_err(|_elapsed| no_answer(budget))?
                .map_err(ScrapeError::Exporter)?;
        drop(ticket);
        let (parts, body) = answer.into_parts();
        let record = self.record(parts.status, &scraper, Some(Held { slot, inflight }));
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
        let mut member = self.member(coalescer, scraper.route, Arc::new(outgoing), port, deadline, budget).await?;
        let head = match tokio::time::timeout_at(deadline, member.answer()).await {
            Err(_elapsed) => return Err(no_answer(budget)),
            Ok(Err(Some(error))) => return Err(ScrapeError::Exporter(error)),
            // The request's task is gone without an answer: only while the runtime stops.
            Ok(Err(None)) => return Err(no_answer(budget)),
            Ok(Ok(head)) => head,
        };
        let record = self.record(head.status, &scraper, None);
        let source = Source::Shared(member.into_body(), coalescer.limit());
        let body = ScrapeStream::new(source, deadline, record, scraper.hang_up);
        Ok(Response::from_parts(head, streamed(body)))
    }

    /// Joins the identical exporter request in flight; else waits (within the deadline) for a
    /// slot and starts one, joining instead if an identical one starts meanwhile.
    #[allow(clippy::too_many_arguments)] // the route joins the scrape's own deadline, port and key
    async fn member(
        &self,
        coalescer: &Coalescer,
        route: Route,
        outgoing: Arc<Outgoing>,
        port: u16,
        deadline: Instant,
        budget: &ScrapeBudget,
    ) -> Result<Member, ScrapeError> {
        if let Some(member) = coalescer.join(&*outgoing) {
            self.telemetry.scrape_coalesced(route.path());
            return Ok(member);
        }
        // A free slot is taken at once, with nothing armed.
        if route == Route::Fast
            && let Some(slot) = self.schedule.try_fast()
        {
            return self.start(coalescer, route, slot, outgoing, port, deadline, budget);
        }
        loop {
            // Armed before looking, so a registration between the look and the wait is not missed.
            let (registered, _registration) = coalescer.registered();
            tokio::pin!(registered);
            registered.as_mut().enable();
            if let Some(member) = coalescer.join(&*outgoing) {
                self.telemetry.scrape_coalesced(route.path());
                return Ok(member);
            }
            let _waiting = GaugeGuard::new(self.telemetry.waiting());
            tokio::select! {
                // In this order: no random start (a thread-local RNG draw), and a free slot is
                // taken first. The schedule keeps the deadline itself.
                biased;
                slot = self.schedule.slot(route, deadline, budget, &self.telemetry) => {
                    return self.start(coalescer, route, slot?, outgoing, port, deadline, budget);
                }
                () = &mut registered => continue,
            }
        }
    }

    /// Starts the exporter request with the `slot` obtained (or joins an identical one started
    /// meanwhile), if there is still time for it.
    #[allow(clippy::too_many_arguments)] // the route joins the scrape's own deadline, port and request
    fn start(
        &self,
        coalescer: &Coalescer,
        route: Route,
        slot: schedule::Slot,
        outgoing: Arc<Outgoing>,
        port: u16,
        deadline: Instant,
        budget: &ScrapeBudget,
    ) -> Result<Member, ScrapeError> {
        time_left(deadline, budget)?;
        let inflight = GaugeGuard::new(self.telemetry.inflight());
        let schedule::Slot { permit, ticket } = slot;
        let send = self.send_owned(outgoing.clone(), port, deadline, route, ticket);
        let (member, joined) = coalescer.start(outgoing, permit, inflight, send);
        if joined == Joined::Shared {
            self.telemetry.scrape_coalesced(route.path());
        }
        Ok(member)
    }

    /// What the stream records when the scrape ends.
    fn record(&self, status: http::StatusCode, scraper: &Scraper, held: Option<Held>) -> ScrapeRecord {
        if status.is_server_error() {
            let upstream = self.exporter.current_label();
            tracing::warn!(%upstream, status = status.as_u16(), "exporter answered with a server error");
        }
        ScrapeRecord {
            telemetry: self.telemetry.clone(),
            upstream: self.exporter.current_label().clone(),
            status: status.as_u16(),
            route: scraper.route.path(),
            started: scraper.started,
            held,
        }
    }

    /// Waits, within the deadline, for an exporter slot on `route` ([`schedule`]).
    async fn wait_for_slot(
        &self,
        route: Route,
        deadline: Instant,
        budget: &ScrapeBudget,
    ) -> Result<schedule::Slot, ScrapeError> {
        // A free slot is taken at once, with no timer.
        if route == Route::Fast
            && let Some(slot) = self.schedule.try_fast()
        {
            return Ok(slot);
        }
        let _waiting = GaugeGuard::new(self.telemetry.waiting());
        self.schedule.slot(route, deadline, budget, &self.telemetry).await
    }

    /// What goes to the exporter: the scraper's method on `path` (the exporter's `/metrics` with
    /// the query as [`collectors`] rewrote it), its end-to-end headers, `Host` set to the
    /// exporter, and the proxy's own budget as the scrape timeout (what identical scrapes share;
    /// [`send_to`] replaces it with the time left when the request goes out).
    fn outgoing(&self, scraper: http::request::Parts, budget: &ScrapeBudget, path: PathAndQuery) -> Outgoing {
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
    /// for the exporter's port after a refusal. The schedule's `ticket` is given up with the
    /// response headers, when the exporter's collection is over.
    fn send_owned(
        &self,
        outgoing: Arc<Outgoing>,
        port: u16,
        deadline: Instant,
        route: Route,
        ticket: Ticket,
    ) -> impl Future<Output = Result<Response<ExporterBody>, ExporterError>> + Send + 'static {
        let (exporter, telemetry) = (self.exporter.clone(), self.telemetry.clone());
        async move {
            let answer = send(&exporter, &telemetry, &outgoing, port, deadline, route.path()).await;
            drop(ticket);
            answer
        }
    }
}

/// The exporter's `/metrics` with `query`.
fn exporter_path(query: Option<&str>) -> PathAndQuery {
    query.map_or(Ok(PathAndQuery::from_static(METRICS_PATH)), |q| format!("{METRICS_PATH}?{q}").parse()).expect(
        "a query that parsed in the request, or one of its parameters and collector names, parses after the path",
    )
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
    route: &'static str,
) -> Result<Response<ExporterBody>, ExporterError> {
    let discovery = exporter.discovery();
    match send_to(exporter, telemetry, outgoing, port, deadline, route).await {
        Err(ExporterError::Refused) if discovery.is_list() => {
            discovery.refused(port);
            match discovery.port(deadline).await {
                Ok(next) if left_for_a_request(deadline).is_some() => {
                    send_to(exporter, telemetry, outgoing, next, deadline, route).await
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
    route: &'static str,
) -> Result<Response<ExporterBody>, ExporterError> {
    let request = || {
        let mut headers = outgoing.headers.clone();
        headers.insert(&SCRAPE_TIMEOUT, deadline::header_value(deadline.saturating_duration_since(Instant::now())));
        if outgoing.filter.is_some() {
            headers.insert(http::header::ACCEPT_ENCODING, http::HeaderValue::from_static("identity"));
        }
        exporter.request(port, outgoing.method.clone(), outgoing.path.clone(), headers)
    };
    telemetry.exporter_request_sent(route);
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

/// What identical scrapes compare (`coalesce::key`).
impl Identity for Outgoing {
    fn method(&self) -> &Method {
        &self.method
    }

    fn path_and_query(&self) -> &PathAndQuery {
        &self.path
    }

    fn headers(&self) -> &HeaderMap {
        &self.headers
    }
}
