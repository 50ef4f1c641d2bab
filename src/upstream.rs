//! The exporter: its address, and the pooled HTTP/1.1 client that talks to it.
//!
//! Connections are kept alive between scrapes, for less than windows_exporter's 60 s idle cut-off
//! so the pool drops them before the exporter does. Nagle's algorithm is off: a scrape is a
//! small request followed by a burst of response, and Nagle plus delayed ACKs cost tens of
//! milliseconds per scrape.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderValue, Method, Request, Response, Uri, header};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// Idle pooled connections are closed after this: below windows_exporter's 60 s server timeout.
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(50);
/// Idle connections kept per exporter.
const POOL_MAX_IDLE: usize = 8;
/// Size of every read from the exporter. hyper's default grows each connection's read buffer
/// up to about 400 KiB, and a body chunk still being written to the scraper pins a second one:
/// with many concurrent scrapes that was most of the proxy's memory (peak RSS 11-16 MiB at 16
/// connections) and it stalled other connections on a single-threaded runtime (p99 267 ms
/// with 4 MB bodies). 128 KiB kept throughput and halved that (bench/, BENCHMARKS.md).
const READ_BUF_SIZE: usize = 128 * 1024;

/// Why the exporter could not be asked, as an operator would say it.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
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
}

impl UpstreamError {
    /// Whether a fresh attempt may succeed where this one failed: the pooled connection was
    /// closed by the exporter as the request went out.
    pub fn is_stale_connection(&self) -> bool {
        matches!(self, UpstreamError::Closed(_))
    }
}

/// The exporter's address and a client for it. Cheap to clone.
#[derive(Clone)]
pub struct Upstream {
    authority: Authority,
    label: Arc<str>,
    client: Client<HttpConnector, Empty<Bytes>>,
    connect_timeout: Duration,
}

impl Upstream {
    /// A client for `authority` with the given connect timeout.
    pub fn new(authority: Authority, connect_timeout: Duration) -> Upstream {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(connect_timeout));
        connector.set_keepalive(Some(Duration::from_secs(30)));
        connector.enforce_http(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_max_idle_per_host(POOL_MAX_IDLE)
            .http1_read_buf_exact_size(READ_BUF_SIZE)
            .build(connector);
        let label = Arc::from(format!("http://{authority}").as_str());
        Upstream { authority, label, client, connect_timeout }
    }

    /// `http://host:port`, for messages and log fields.
    pub fn label(&self) -> &Arc<str> {
        &self.label
    }

    /// A bodiless request to the exporter for `path_and_query` (taken from a scraper's request
    /// or fixed): the URI and `Host` always name the exporter, so a scraper can never choose
    /// another host.
    pub fn request(
        &self,
        method: Method,
        path_and_query: PathAndQuery,
        mut headers: HeaderMap,
    ) -> Request<Empty<Bytes>> {
        let uri = Uri::builder()
            .scheme(Scheme::HTTP)
            .authority(self.authority.clone())
            .path_and_query(path_and_query)
            .build()
            .expect("scheme, checked authority and parsed path form a valid URI");
        headers.insert(
            header::HOST,
            HeaderValue::from_str(self.authority.as_str()).expect("an authority is a valid header value"),
        );
        let mut request = Request::new(Empty::new());
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        *request.headers_mut() = headers;
        request
    }

    /// Sends one request and waits for the response headers.
    pub async fn send(&self, request: Request<Empty<Bytes>>) -> Result<Response<Incoming>, UpstreamError> {
        self.client.request(request).await.map_err(|e| self.classify(&e))
    }

    fn classify(&self, error: &hyper_util::client::legacy::Error) -> UpstreamError {
        let io_kind = sources(error).find_map(|e| e.downcast_ref::<io::Error>()).map(io::Error::kind);
        if error.is_connect() {
            return match io_kind {
                Some(io::ErrorKind::ConnectionRefused) => UpstreamError::Refused,
                Some(io::ErrorKind::TimedOut) => UpstreamError::ConnectTimeout(self.connect_timeout),
                _ => UpstreamError::Connect(innermost(error)),
            };
        }
        match sources(error).find_map(|e| e.downcast_ref::<hyper::Error>()) {
            Some(h) if h.is_parse() || h.is_parse_status() || h.is_parse_too_large() => {
                UpstreamError::Protocol(innermost(error))
            }
            _ => UpstreamError::Closed(innermost(error)),
        }
    }
}

/// The error and its chain of causes.
fn sources<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(error), |e: &&'a (dyn std::error::Error + 'static)| (*e).source())
}

/// The most specific message in the chain, e.g. "connection reset by peer (os error 104)".
fn innermost(error: &(dyn std::error::Error + 'static)) -> String {
    let mut last = error;
    while let Some(next) = last.source() {
        last = next;
    }
    last.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_keeps_path_and_query_and_pins_the_host() {
        let upstream = Upstream::new("10.0.0.4:9182".parse().unwrap(), Duration::from_secs(1));
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("elsewhere:80"));
        let request = upstream.request(Method::GET, "/metrics?collect[]=cpu&collect[]=os".parse().unwrap(), headers);
        assert_eq!(request.uri().to_string(), "http://10.0.0.4:9182/metrics?collect[]=cpu&collect[]=os");
        assert_eq!(request.headers()[header::HOST], "10.0.0.4:9182");
        assert_eq!(upstream.label().as_ref(), "http://10.0.0.4:9182");
    }

    #[test]
    fn ipv6_upstream_is_bracketed() {
        let upstream = Upstream::new("[fd00::4]:9182".parse().unwrap(), Duration::from_secs(1));
        let request = upstream.request(Method::HEAD, "/metrics".parse().unwrap(), HeaderMap::new());
        assert_eq!(request.uri().to_string(), "http://[fd00::4]:9182/metrics");
        assert_eq!(request.headers()[header::HOST], "[fd00::4]:9182");
    }
}
