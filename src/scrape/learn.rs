//! Learning the exporter's enabled collectors, for `/metrics` without `collect[]` when
//! `PROXY_SLOW_COLLECT` is set and `PROXY_COLLECT` is not (why and how: [`super::collectors`]).
//!
//! One learning runs at a time, on its own task with its own deadline
//! ([`super::collectors::LEARN_TIMEOUT`]), so a scrape whose deadline passes while it waits does
//! not cancel it; every scrape that needs the set waits for it within its own deadline. A failed
//! learning is remembered for [`RETRY_AFTER`]: scrapes in that time get its error at once, so an
//! exporter that fails full collections is not sent one per scrape.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http::header::ACCEPT;
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue, Method};
use http_body_util::{BodyExt, Limited};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::deadline::{self, SCRAPE_TIMEOUT, ScrapeBudget};
use crate::exporter::Exporter;
use crate::scrape::collectors::{LEARN_TIMEOUT, Route, enabled_set};
use crate::scrape::schedule::Schedule;
use crate::scrape::{METRICS_PATH, ScrapeError};
use crate::telemetry::Telemetry;

/// The largest learning scrape read (a busy node's full scrape is a few MB).
const MAX_LEARN_BYTES: usize = 64 << 20;

/// How long a failed learning is remembered before a scrape tries again.
pub const RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(30);

/// What is known of the enabled set.
#[derive(Debug, Clone)]
enum Learned {
    Unknown,
    Failed(String, Instant),
    Known(Arc<[String]>),
}

/// The learned set and the one learning in flight.
pub struct Learner {
    state: watch::Sender<Learned>,
    running: AtomicBool,
}

impl Default for Learner {
    fn default() -> Self {
        Learner { state: watch::Sender::new(Learned::Unknown), running: AtomicBool::new(false) }
    }
}

/// What a learning needs from the scrape handler.
pub struct Context {
    /// The exporter.
    pub exporter: Exporter,
    /// Counts the learning and its exporter request.
    pub telemetry: Arc<Telemetry>,
    /// A learning is a slow collection.
    pub schedule: Arc<Schedule>,
    /// Where the exporter is now.
    pub port: u16,
}

impl Learner {
    /// The set, when known.
    pub fn known(&self) -> Option<Arc<[String]>> {
        match &*self.state.borrow() {
            Learned::Known(set) => Some(set.clone()),
            _ => None,
        }
    }

    /// Forgets the set (the exporter refused a scrape that used it); the next scrape learns again.
    pub fn forget(&self) {
        self.state.send_if_modified(|state| {
            let known = matches!(state, Learned::Known(_));
            if known {
                *state = Learned::Unknown;
            }
            known
        });
    }

    /// The set: known, or learned now (one learning at a time), waiting within `deadline`.
    pub async fn enabled(
        self: &Arc<Self>,
        context: impl FnOnce() -> Context,
        deadline: Instant,
        budget: &ScrapeBudget,
    ) -> Result<Arc<[String]>, ScrapeError> {
        if let Some(set) = self.known() {
            return Ok(set);
        }
        if let Learned::Failed(error, at) = &*self.state.borrow() {
            if at.elapsed() < RETRY_AFTER {
                return Err(ScrapeError::LearningFailed(error.clone()));
            }
        }
        if !self.running.swap(true, Ordering::AcqRel) {
            self.state.send_replace(Learned::Unknown);
            tokio::spawn(self.clone().learn(context()));
        }
        let mut state = self.state.subscribe();
        let learned = tokio::time::timeout_at(deadline, state.wait_for(|s| !matches!(s, Learned::Unknown))).await;
        match learned {
            Ok(Ok(learned)) => match &*learned {
                Learned::Known(set) => Ok(set.clone()),
                Learned::Failed(error, _) => Err(ScrapeError::LearningFailed(error.clone())),
                Learned::Unknown => unreachable!("waited for anything but Unknown"),
            },
            _ => Err(ScrapeError::StillLearning { timeout: budget.timeout }),
        }
    }

    async fn learn(self: Arc<Self>, context: Context) {
        let learned = match learn(&context).await {
            Ok(set) => {
                tracing::info!(collectors = %set.join(","), "learned the exporter's enabled collectors");
                context.telemetry.collector_set_learned("ok");
                Learned::Known(set.into())
            }
            Err(error) => {
                tracing::warn!(%error, "could not learn the exporter's enabled collectors");
                context.telemetry.collector_set_learned("failed");
                Learned::Failed(error, Instant::now())
            }
        };
        self.running.store(false, Ordering::Release);
        self.state.send_replace(learned);
    }
}

/// One full collection, read for `windows_exporter_collector_success`.
async fn learn(context: &Context) -> Result<Vec<String>, String> {
    let deadline = Instant::now() + LEARN_TIMEOUT;
    let budget = ScrapeBudget { timeout: LEARN_TIMEOUT, from_scraper: false };
    let slot = context.schedule.slow(deadline, &budget).await.map_err(|error| error.to_string())?;
    let mut headers = HeaderMap::new();
    headers.insert(ACCEPT, HeaderValue::from_static("text/plain; version=0.0.4"));
    headers.insert(&SCRAPE_TIMEOUT, deadline::header_value(deadline.saturating_duration_since(Instant::now())));
    let request = context.exporter.request(context.port, Method::GET, PathAndQuery::from_static(METRICS_PATH), headers);
    context.telemetry.exporter_request_sent(Route::Fast.path());
    let response = tokio::time::timeout_at(deadline, context.exporter.send(request))
        .await
        .map_err(|_elapsed| format!("no answer within {LEARN_TIMEOUT:?}"))?
        .map_err(|error| error.to_string())?;
    // The collection is over once the headers are here; the body holds only the slot.
    drop(slot.ticket);
    if !response.status().is_success() {
        return Err(format!("the exporter answered {}", response.status()));
    }
    let body = tokio::time::timeout_at(deadline, Limited::new(response.into_body(), MAX_LEARN_BYTES).collect())
        .await
        .map_err(|_elapsed| format!("the body did not finish within {LEARN_TIMEOUT:?}"))?
        .map_err(|error| format!("reading the body: {error}"))?
        .to_bytes();
    drop(slot.permit);
    let set = enabled_set(&String::from_utf8_lossy(&body));
    if set.is_empty() {
        return Err("its full scrape has no windows_exporter_collector_success series".to_owned());
    }
    Ok(set)
}
