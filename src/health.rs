//! `/health` and `/ready`: what the kubelet probes.
//!
//! `/health` (liveness) answers from the proxy alone and never touches the exporter: a node whose
//! exporter is down must not get its proxy restarted in a loop.
//!
//! `/ready` (readiness) says whether the exporter answered recently: any scrape that got response
//! headers counts, and so does a probe of the exporter's cheap `/health` endpoint (any HTTP
//! answer proves it is serving; windows_exporter's `/health` runs no collector). Probes are
//! single-flight and a failure is remembered for [`PROBE_RETRY_INTERVAL`], so however often
//! `/ready` is asked, the exporter sees at most one probe at a time and a few per second. With a
//! `PROXY_PORT` list the probe goes to the port in use, found first if none is (a discovery round
//! probes `/health` itself), and the body says which port of the list answered.

use std::time::Duration;

use http::uri::PathAndQuery;
use http::{HeaderMap, Method, StatusCode};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::exporter::{Exporter, ExporterError, PROBE_TIMEOUT};
use crate::response::{self, ResponseBody};

/// A failed readiness probe is not repeated for this long.
pub const PROBE_RETRY_INTERVAL: Duration = Duration::from_secs(1);
/// Liveness: the proxy is up and serving.
pub fn health() -> http::Response<ResponseBody> {
    response::text(StatusCode::OK, "ok")
}

/// Readiness state: the exporter (which knows when it last answered), and the last probe failure.
pub struct Readiness {
    exporter: Exporter,
    max_age: Duration,
    /// Held while probing; remembers the last failure and when it happened.
    probe: Mutex<Option<(Instant, String)>>,
}

impl Readiness {
    /// Readiness for `exporter`: ready while it answered within `max_age`.
    pub fn new(exporter: Exporter, max_age: Duration) -> Readiness {
        Readiness { exporter, max_age, probe: Mutex::new(None) }
    }

    /// How long ago the exporter last answered, if it ever did.
    fn answer_age(&self) -> Option<Duration> {
        self.exporter.last_answer().elapsed()
    }

    fn fresh(&self) -> Option<Duration> {
        self.answer_age().filter(|age| *age <= self.max_age)
    }

    /// Answers `/ready`.
    pub async fn ready(&self) -> http::Response<ResponseBody> {
        if let Some(age) = self.fresh() {
            return self.ready_response(age);
        }
        let mut last_failure = self.probe.lock().await;
        // Another request may have probed while this one waited for the lock.
        if let Some(age) = self.fresh() {
            return self.ready_response(age);
        }
        if let Some((at, reason)) = last_failure.as_ref() {
            if at.elapsed() < PROBE_RETRY_INTERVAL {
                return self.not_ready(reason);
            }
        }
        match self.probe_exporter().await {
            Ok(()) => {
                *last_failure = None;
                self.ready_response(self.answer_age().unwrap_or_default())
            }
            Err(reason) => {
                let response = self.not_ready(&reason);
                *last_failure = Some((Instant::now(), reason));
                response
            }
        }
    }

    /// Probes `/health` on the port in use, within [`PROBE_TIMEOUT`] in all. With a port list and
    /// none in use it waits for (or starts) a discovery round, whose own probe counts; a refused
    /// port is given up so the next request looks again.
    async fn probe_exporter(&self) -> Result<(), String> {
        let deadline = Instant::now() + PROBE_TIMEOUT;
        let discovery = self.exporter.discovery();
        let port = discovery.port(deadline).await.map_err(|error| error.to_string())?;
        if self.fresh().is_some() {
            return Ok(());
        }
        let request = self.exporter.request(port, Method::GET, PathAndQuery::from_static("/health"), HeaderMap::new());
        match tokio::time::timeout_at(deadline, self.exporter.send(request)).await {
            Ok(Ok(_response)) => Ok(()),
            Ok(Err(error)) => {
                if matches!(error, ExporterError::Refused) {
                    discovery.refused(port);
                }
                Err(error.to_string())
            }
            Err(_) => Err(format!("no answer within {:?}", PROBE_TIMEOUT)),
        }
    }

    /// The exporter as `/ready` names it: `http://host:port` as always with one port; with a
    /// list also which port of it answers, or every port while none does.
    fn exporter_name(&self) -> String {
        let discovery = self.exporter.discovery();
        if !discovery.is_list() {
            return self.exporter.current_label().to_string();
        }
        match discovery.current() {
            Some(port) => format!("{} (port {port} of {})", self.exporter.label(port), discovery.ports()),
            None => format!("{} (ports {})", self.exporter.host_label(), discovery.ports()),
        }
    }

    fn ready_response(&self, age: Duration) -> http::Response<ResponseBody> {
        response::text(
            StatusCode::OK,
            format!("ready: exporter {} answered {}s ago", self.exporter_name(), age.as_secs()),
        )
    }

    fn not_ready(&self, reason: &str) -> http::Response<ResponseBody> {
        let since = match self.answer_age() {
            Some(age) => format!("last answer {}s ago", age.as_secs()),
            None => "never answered".to_owned(),
        };
        response::text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: exporter {} {since}; probe of /health: {reason}", self.exporter_name()),
        )
    }
}
