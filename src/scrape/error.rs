//! [`ScrapeError`]: every way a scrape can fail, and the one place each failure is logged,
//! counted and answered.
//!
//! A failure before the response headers becomes the scraper's answer (502, 503 or 504, with a
//! one-line body naming the exporter and what to check). A failure mid-body cannot change the
//! status already sent: the body ends with this error, so hyper aborts the scraper's connection
//! and the scraper sees an incomplete response, never a short body that looks complete. Either
//! way the failure writes exactly one log line and one count.

use std::time::Duration;

use http::{Response, StatusCode};

use crate::exporter::ExporterError;
use crate::exporter::discovery::DiscoveryError;
use crate::response::{self, ResponseBody};
use crate::scrape::collectors::NothingAllowed;
use crate::telemetry::{ScrapeOutcome, Telemetry};

/// Why a scrape failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ScrapeError {
    /// Every exporter slot stayed taken until the deadline (503).
    #[error("{max_inflight} scrapes already in flight (PROXY_MAX_INFLIGHT) and none finished within {timeout:?}")]
    NoSlot {
        /// `PROXY_MAX_INFLIGHT`.
        max_inflight: usize,
        /// The scrape's whole budget.
        timeout: Duration,
    },
    /// The exporter could not be asked, or did not answer in HTTP (502).
    #[error("{0}")]
    Exporter(ExporterError),
    /// With a `PROXY_PORT` list: no listed port answered (502), or the deadline passed while the
    /// ports were still being probed (504).
    #[error("{}", no_port(error, *timeout))]
    NoPort {
        /// What discovery found.
        error: DiscoveryError,
        /// The scrape's whole budget.
        timeout: Duration,
    },
    /// The exporter sent no response headers before the deadline (504).
    #[error("no response within {timeout:?} ({})", budget_source(*from_scraper))]
    NoAnswer {
        /// The scrape's whole budget.
        timeout: Duration,
        /// Whether the budget came from the scraper's timeout header.
        from_scraper: bool,
    },
    /// An exporter slot freed with less than `deadline::MIN_DEADLINE` of the deadline left: no
    /// exporter request was sent, since it could not be answered in time (504).
    #[error(
        "no exporter request sent: {left:?} of the {timeout:?} deadline left when an exporter slot freed, below the {:?} an answer needs",
        crate::deadline::MIN_DEADLINE
    )]
    NoTimeLeft {
        /// What was left of the deadline.
        left: Duration,
        /// The scrape's whole budget.
        timeout: Duration,
    },
    /// A `/metrics` scrape held its slot behind a running `/metrics/slow` collection until the
    /// deadline (504); no exporter request was sent.
    #[error(
        "no exporter request sent: waited {waited:?} for a /metrics/slow collection to finish (windows_exporter runs one at a time) and the {timeout:?} deadline passed"
    )]
    BehindSlow {
        /// How long it waited.
        waited: Duration,
        /// The scrape's whole budget.
        timeout: Duration,
    },
    /// The scraper's `collect[]` leaves no collector this route may run (400); the exporter
    /// sees nothing.
    #[error("{0}")]
    NotAllowed(NothingAllowed),
    /// The exporter's enabled collectors were still being learned at the deadline (503).
    #[error(
        "still learning the exporter's enabled collectors (PROXY_SLOW_COLLECT without PROXY_COLLECT) at the {timeout:?} deadline; set PROXY_COLLECT to skip this"
    )]
    StillLearning {
        /// The scrape's whole budget.
        timeout: Duration,
    },
    /// Learning the exporter's enabled collectors failed (502).
    #[error("could not learn the exporter's enabled collectors: {0}")]
    LearningFailed(String),
    /// The exporter's connection failed mid-body (the scraper's connection is aborted).
    #[error("exporter connection failed mid-body: {0}")]
    BodyFailed(String),
    /// The filter kept more series than `PROXY_MAX_SERIES` (the scraper's connection is
    /// aborted, as Prometheus' `sample_limit` fails a scrape). The message names the limit and
    /// the count reached.
    #[error("{0}")]
    SeriesLimit(String),
    /// The body was not complete by the deadline (the scraper's connection is aborted).
    #[error("scrape deadline passed mid-body")]
    BodyDeadline,
    /// The scraper fell more than `PROXY_COALESCE_MAX_BUFFER_BYTES` behind the shared exporter
    /// request it was served from (its connection is aborted; the others go on).
    #[error("scraper fell more than PROXY_COALESCE_MAX_BUFFER_BYTES ({limit} bytes) behind the exporter")]
    Lagged {
        /// `PROXY_COALESCE_MAX_BUFFER_BYTES`.
        limit: u64,
    },
}

fn no_port(error: &DiscoveryError, timeout: Duration) -> String {
    match error {
        DiscoveryError::NoneAnswered(_) => error.to_string(),
        DiscoveryError::StillProbing(_) => format!("{error} ({timeout:?})"),
    }
}

fn budget_source(from_scraper: bool) -> &'static str {
    if from_scraper {
        "the scraper's timeout minus PROXY_TIMEOUT_MARGIN_SECONDS"
    } else {
        "PROXY_SCRAPE_TIMEOUT_SECONDS"
    }
}

impl ScrapeError {
    /// A mid-body failure with this message: the series cap's (`series_limit`), or the exporter
    /// body's.
    pub fn body_failed(reason: String, series_limit: bool) -> ScrapeError {
        if series_limit { ScrapeError::SeriesLimit(reason) } else { ScrapeError::BodyFailed(reason) }
    }

    /// What it counts as in `windows_exporter_proxy_scrapes_total`.
    pub fn outcome(&self) -> ScrapeOutcome {
        match self {
            ScrapeError::NoSlot { .. } => ScrapeOutcome::rejected,
            ScrapeError::Exporter(_) => ScrapeOutcome::upstream_error,
            ScrapeError::NoPort { error: DiscoveryError::NoneAnswered(_), .. } => ScrapeOutcome::upstream_error,
            ScrapeError::NoPort { error: DiscoveryError::StillProbing(_), .. } => ScrapeOutcome::timeout,
            ScrapeError::NoAnswer { .. }
            | ScrapeError::NoTimeLeft { .. }
            | ScrapeError::BehindSlow { .. }
            | ScrapeError::BodyDeadline => ScrapeOutcome::timeout,
            ScrapeError::NotAllowed(_) => ScrapeOutcome::refused,
            ScrapeError::StillLearning { .. } => ScrapeOutcome::rejected,
            ScrapeError::LearningFailed(_) => ScrapeOutcome::upstream_error,
            ScrapeError::BodyFailed(_) => ScrapeOutcome::aborted,
            ScrapeError::Lagged { .. } => ScrapeOutcome::lagged,
            ScrapeError::SeriesLimit(_) => ScrapeOutcome::series_limit,
        }
    }

    /// The status the scraper gets; mid-body failures keep the status already sent.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ScrapeError::NoSlot { .. } => Some(StatusCode::SERVICE_UNAVAILABLE),
            ScrapeError::Exporter(_) => Some(StatusCode::BAD_GATEWAY),
            ScrapeError::NoPort { error: DiscoveryError::NoneAnswered(_), .. } => Some(StatusCode::BAD_GATEWAY),
            ScrapeError::NoPort { error: DiscoveryError::StillProbing(_), .. } => Some(StatusCode::GATEWAY_TIMEOUT),
            ScrapeError::NoAnswer { .. } | ScrapeError::NoTimeLeft { .. } | ScrapeError::BehindSlow { .. } => {
                Some(StatusCode::GATEWAY_TIMEOUT)
            }
            ScrapeError::NotAllowed(_) => Some(StatusCode::BAD_REQUEST),
            ScrapeError::StillLearning { .. } => Some(StatusCode::SERVICE_UNAVAILABLE),
            ScrapeError::LearningFailed(_) => Some(StatusCode::BAD_GATEWAY),
            ScrapeError::BodyFailed(_)
            | ScrapeError::BodyDeadline
            | ScrapeError::Lagged { .. }
            | ScrapeError::SeriesLimit(_) => None,
        }
    }

    /// Logs, counts and answers a failure before the response headers.
    pub fn respond(self, exporter: &str, route: &'static str, telemetry: &Telemetry) -> Response<ResponseBody> {
        let status = self.status().expect("only failures before the headers are answered with a response");
        match &self {
            ScrapeError::NoSlot { max_inflight, timeout } => tracing::warn!(
                upstream = exporter,
                max_inflight,
                timeout_ms = timeout.as_millis() as u64,
                "scrape rejected: no exporter slot before the deadline"
            ),
            ScrapeError::Exporter(error) => {
                tracing::warn!(upstream = exporter, %error, "scrape failed: exporter unreachable or reply invalid")
            }
            ScrapeError::NoPort { error: error @ DiscoveryError::NoneAnswered(_), .. } => {
                tracing::warn!(upstream = exporter, %error, "scrape failed: no exporter port answered")
            }
            ScrapeError::NoPort { error: error @ DiscoveryError::StillProbing(_), timeout } => tracing::warn!(
                upstream = exporter,
                %error,
                timeout_ms = timeout.as_millis() as u64,
                "scrape failed: exporter ports still being probed at the deadline"
            ),
            ScrapeError::NoAnswer { timeout, .. } => tracing::warn!(
                upstream = exporter,
                timeout_ms = timeout.as_millis() as u64,
                "scrape failed: exporter sent no response headers before the deadline"
            ),
            ScrapeError::NoTimeLeft { left, timeout } => tracing::warn!(
                upstream = exporter,
                left_ms = left.as_millis() as u64,
                timeout_ms = timeout.as_millis() as u64,
                "scrape failed: too little of the deadline left to ask the exporter"
            ),
            ScrapeError::BehindSlow { waited, timeout } => tracing::warn!(
                upstream = exporter,
                waited_ms = waited.as_millis() as u64,
                timeout_ms = timeout.as_millis() as u64,
                "scrape failed: deadline passed behind a running /metrics/slow collection"
            ),
            ScrapeError::NotAllowed(refused) => {
                tracing::info!(upstream = exporter, route, %refused, "scrape refused: collect[] names no allowed collector")
            }
            ScrapeError::StillLearning { timeout } => tracing::warn!(
                upstream = exporter,
                timeout_ms = timeout.as_millis() as u64,
                "scrape failed: the exporter's enabled collectors are still being learned"
            ),
            ScrapeError::LearningFailed(error) => {
                tracing::warn!(upstream = exporter, %error, "scrape failed: could not learn the exporter's enabled collectors")
            }
            ScrapeError::BodyFailed(_)
            | ScrapeError::BodyDeadline
            | ScrapeError::Lagged { .. }
            | ScrapeError::SeriesLimit(_) => {
                unreachable!("mid-body failures have no status")
            }
        }
        telemetry.scrape_finished(self.outcome(), status.as_u16(), route);
        response::text(status, format!("{exporter}: {self}"))
    }

    /// Logs and counts a failure mid-body; the body then ends with this error.
    pub fn record_mid_body(
        &self,
        exporter: &str,
        route: &'static str,
        status: u16,
        bytes: u64,
        elapsed: Duration,
        telemetry: &Telemetry,
    ) {
        let outcome = self.outcome();
        tracing::warn!(
            upstream = exporter,
            ?outcome,
            error = %self,
            bytes,
            elapsed_ms = elapsed.as_millis() as u64,
            "scrape failed mid-body; scraper connection aborted"
        );
        telemetry.scrape_finished(outcome, status, route);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::exporter::discovery::Ports;

    #[test]
    fn each_failure_knows_its_status_and_outcome() {
        let cases = [
            (
                ScrapeError::NoSlot { max_inflight: 2, timeout: Duration::from_secs(1) },
                Some(503),
                ScrapeOutcome::rejected,
            ),
            (ScrapeError::Exporter(ExporterError::Refused), Some(502), ScrapeOutcome::upstream_error),
            (
                ScrapeError::NoAnswer { timeout: Duration::from_secs(1), from_scraper: true },
                Some(504),
                ScrapeOutcome::timeout,
            ),
            (ScrapeError::BodyFailed("reset".into()), None, ScrapeOutcome::aborted),
            (ScrapeError::body_failed("reset".into(), false), None, ScrapeOutcome::aborted),
            (ScrapeError::body_failed("PROXY_MAX_SERIES=5 exceeded".into(), true), None, ScrapeOutcome::series_limit),
            (
                ScrapeError::NoPort {
                    error: DiscoveryError::NoneAnswered(vec![].into()),
                    timeout: Duration::from_secs(1),
                },
                Some(502),
                ScrapeOutcome::upstream_error,
            ),
            (
                ScrapeError::NoPort {
                    error: DiscoveryError::StillProbing(Ports::new(vec![19100, 9182]).unwrap()),
                    timeout: Duration::from_secs(1),
                },
                Some(504),
                ScrapeOutcome::timeout,
            ),
            (ScrapeError::BodyDeadline, None, ScrapeOutcome::timeout),
            (ScrapeError::Lagged { limit: 262144 }, None, ScrapeOutcome::lagged),
        ];
        for (error, status, outcome) in cases {
            assert_eq!(error.status().map(|s| s.as_u16()), status, "{error}");
            assert_eq!(error.outcome(), outcome, "{error}");
        }
    }

    #[tokio::test]
    async fn an_answered_failure_is_counted_once_with_a_one_line_body() {
        use http_body_util::BodyExt;
        let telemetry = Telemetry::new();
        let error = ScrapeError::NoAnswer { timeout: Duration::from_millis(9500), from_scraper: false };
        let response = error.respond("http://10.0.0.4:9182", "/metrics", &telemetry);
        assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"http://10.0.0.4:9182: no response within 9.5s (PROXY_SCRAPE_TIMEOUT_SECONDS)\n");
        assert!(
            telemetry.encode(crate::telemetry::Format::Text).contains(
                "windows_exporter_proxy_scrapes_total{outcome=\"timeout\",status=\"504\",route=\"/metrics\"} 1"
            )
        );
    }
}
