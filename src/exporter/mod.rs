//! The exporter: its address, the pooled HTTP/1.1 client that talks to it, and when it last
//! answered (which `/ready` reads).
//!
//! Connections are kept alive between scrapes, for less than windows_exporter's 60 s idle cut-off
//! so the pool drops them before the exporter does. Nagle's algorithm is off: a scrape is a
//! small request followed by a burst of response, and Nagle plus delayed ACKs cost tens of
//! milliseconds per scrape.

mod error;

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

use crate::timestamp::Timestamp;
pub use error::ExporterError;
pub(crate) use error::{innermost, sources};

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

/// The exporter's address and a client for it. Cheap to clone.
#[derive(Clone)]
pub struct Exporter {
    authority: Authority,
    label: Arc<str>,
    client: Client<HttpConnector, Empty<Bytes>>,
    connect_timeout: Duration,
    last_answer: Arc<Timestamp>,
}

impl Exporter {
    /// A client for `authority` with the given connect timeout.
    pub fn new(authority: Authority, connect_timeout: Duration) -> Exporter {
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
        Exporter { authority, label, client, connect_timeout, last_answer: Arc::new(Timestamp::unset()) }
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

    /// Sends one request and waits for the response headers. Any HTTP answer, whatever its
    /// status, counts as the exporter answering.
    pub async fn send(&self, request: Request<Empty<Bytes>>) -> Result<Response<Incoming>, ExporterError> {
        let response = self.client.request(request).await.map_err(|e| self.classify(&e))?;
        self.last_answer.advance_to_now();
        Ok(response)
    }

    /// When the exporter last answered a request, if ever.
    pub fn last_answer(&self) -> &Timestamp {
        &self.last_answer
    }

    fn classify(&self, error: &hyper_util::client::legacy::Error) -> ExporterError {
        let io_kind = sources(error).find_map(|e| e.downcast_ref::<io::Error>()).map(io::Error::kind);
        if error.is_connect() {
            return match io_kind {
                Some(io::ErrorKind::ConnectionRefused) => ExporterError::Refused,
                Some(io::ErrorKind::TimedOut) => ExporterError::ConnectTimeout(self.connect_timeout),
                _ => ExporterError::Connect(innermost(error)),
            };
        }
        match sources(error).find_map(|e| e.downcast_ref::<hyper::Error>()) {
            Some(h) if h.is_parse() || h.is_parse_status() || h.is_parse_too_large() => {
                ExporterError::Protocol(innermost(error))
            }
            _ => ExporterError::Closed(innermost(error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_keeps_path_and_query_and_pins_the_host() {
        let exporter = Exporter::new("10.0.0.4:9182".parse().unwrap(), Duration::from_secs(1));
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("elsewhere:80"));
        let request = exporter.request(Method::GET, "/metrics?collect[]=cpu&collect[]=os".parse().unwrap(), headers);
        assert_eq!(request.uri().to_string(), "http://10.0.0.4:9182/metrics?collect[]=cpu&collect[]=os");
        assert_eq!(request.headers()[header::HOST], "10.0.0.4:9182");
        assert_eq!(exporter.label().as_ref(), "http://10.0.0.4:9182");
    }

    #[test]
    fn ipv6_exporter_is_bracketed() {
        let exporter = Exporter::new("[fd00::4]:9182".parse().unwrap(), Duration::from_secs(1));
        let request = exporter.request(Method::HEAD, "/metrics".parse().unwrap(), HeaderMap::new());
        assert_eq!(request.uri().to_string(), "http://[fd00::4]:9182/metrics");
        assert_eq!(request.headers()[header::HOST], "[fd00::4]:9182");
    }
}
