//! [`ExporterError`]: why the exporter could not be asked, as an operator would say it.

use std::time::Duration;

use http::StatusCode;

/// Why the exporter could not be asked, as an operator would say it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ExporterError {
    /// Nothing listens on the exporter's port (RST on connect).
    #[error("connection refused: is windows_exporter running and listening on this port?")]
    Refused,
    /// The TCP connect did not finish in time.
    #[error("connect timed out after {0:?}: is the node firewall open to the pod network?")]
    ConnectTimeout(Duration),
    /// Any other connect failure (unreachable network, DNS).
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The exporter sent something that is not an HTTP response.
    #[error("reply is not valid HTTP: {0}")]
    Protocol(String),
    /// The connection closed or failed before response headers arrived.
    #[error("connection closed before a response: {0}")]
    Closed(String),
    /// The TLS handshake failed; the message names the cause and the setting to check.
    #[error("{0}")]
    Tls(String),
    /// The exporter answered 401 or 403 to the proxy's own credentials, or to none: a problem
    /// of the proxy's exporter settings, so never passed through as if the scraper had failed.
    #[error("{}", unauthorized(*.status, *.sent))]
    Unauthorized {
        /// 401 or 403.
        status: StatusCode,
        /// Whether the proxy sent credentials of its own.
        sent: bool,
    },
}

fn unauthorized(status: StatusCode, sent: bool) -> String {
    let status = format!("{} {}", status.as_u16(), status.canonical_reason().unwrap_or_default());
    if sent {
        format!(
            "the exporter answered {status} to the proxy's own credentials: check PROXY_EXPORTER_BASIC_AUTH_USERNAME and PROXY_EXPORTER_BASIC_AUTH_PASSWORD_FILE against its web-config basic_auth_users"
        )
    } else {
        format!(
            "the exporter answered {status} and the proxy sends no exporter credentials: set PROXY_EXPORTER_BASIC_AUTH_USERNAME and PROXY_EXPORTER_BASIC_AUTH_PASSWORD_FILE"
        )
    }
}

impl ExporterError {
    /// Whether a fresh attempt may succeed where this one failed: the pooled connection was
    /// closed by the exporter as the request went out.
    pub fn is_stale_connection(&self) -> bool {
        matches!(self, ExporterError::Closed(_))
    }
}

/// The error and its chain of causes.
pub(crate) fn sources<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(error), |e: &&'a (dyn std::error::Error + 'static)| (*e).source())
}

/// The most specific message in the chain, e.g. "connection reset by peer (os error 104)".
pub(crate) fn innermost(error: &(dyn std::error::Error + 'static)) -> String {
    let mut last = error;
    while let Some(next) = last.source() {
        last = next;
    }
    last.to_string()
}
