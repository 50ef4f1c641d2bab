//! Routing: which endpoint a request is for, and the answers for requests that fit none.
//!
//! Paths match exactly, with no normalisation: `/metrics/`, `//metrics`, `/./metrics` and
//! `/%6Detrics` are 404, so there is no second spelling of an endpoint to reason about. Only the
//! path and query of a request target are ever used; an absolute-form target
//! (`GET http://elsewhere/metrics`) is routed by its path and still goes to the configured
//! exporter, and `CONNECT` is refused, so the proxy can never be steered to another host.
//!
//! A request must carry one `Host` header (RFC 9112 3.2): an HTTP/1.1 request without one, or
//! any request with two or more, is answered 400 and its connection closed, as Go's net/http,
//! nginx and Envoy do. Its value is never used.

use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};

use crate::auth::Auth;
use crate::health::{self, Readiness};
use crate::response::{self, ResponseBody};
use crate::scrape::{self, Scrape};
use crate::telemetry::{self, Telemetry};
use crate::tls::ClientCertificate;

/// The endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `/health`: liveness.
    Health,
    /// `/ready`: readiness.
    Ready,
    /// `/metrics`: the exporter, streamed.
    Metrics,
    /// `/metrics/slow`: the slow collectors (`PROXY_SLOW_COLLECT`); 404 when unset.
    SlowMetrics,
    /// `/proxy/metrics`: the proxy's own metrics.
    ProxyMetrics,
}

/// A request that fits no endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// No such path (404).
    NotFound,
    /// The path exists but not for this method (405); the value is the `Allow` header.
    MethodNotAllowed(&'static str),
}

const GET_HEAD: &str = "GET, HEAD";
const GET: &str = "GET";

/// Routes a request by method and path alone.
pub fn route(method: &Method, path: &str) -> Result<Route, Rejection> {
    let (route, allow) = match path {
        "/health" => (Route::Health, GET_HEAD),
        "/ready" => (Route::Ready, GET_HEAD),
        "/metrics" => (Route::Metrics, GET_HEAD),
        "/metrics/slow" => (Route::SlowMetrics, GET_HEAD),
        "/proxy/metrics" => (Route::ProxyMetrics, GET),
        _ if method == Method::CONNECT => return Err(Rejection::MethodNotAllowed(GET_HEAD)),
        _ => return Err(Rejection::NotFound),
    };
    let allowed = *method == Method::GET || (*method == Method::HEAD && allow == GET_HEAD);
    if allowed { Ok(route) } else { Err(Rejection::MethodNotAllowed(allow)) }
}

/// Everything a request may need; one per process, shared by every connection.
pub struct App {
    /// The `/metrics` pass-through.
    pub scrape: Scrape,
    /// `/ready` state.
    pub readiness: Arc<Readiness>,
    /// The proxy's own metrics.
    pub telemetry: Arc<Telemetry>,
    /// Who may scrape `/metrics` and `/proxy/metrics`; `None` (no `PROXY_AUTH`): anyone.
    pub auth: Option<Auth>,
}

impl App {
    /// Answers one request. Never fails: every error is a response.
    pub async fn handle<B>(&self, request: Request<B>) -> Response<ResponseBody> {
        let path = request.uri().path();
        if !one_host(&request) {
            return bad_host();
        }
        let route = match route(request.method(), path) {
            Ok(Route::SlowMetrics) if !self.scrape.has_slow_route() => Err(Rejection::NotFound),
            route => route,
        };
        // /health and /ready stay open: the kubelet's probes send no credentials.
        if let (Ok(Route::Metrics | Route::SlowMetrics | Route::ProxyMetrics), Some(auth)) = (&route, &self.auth) {
            let decision = auth.decide(path, request.headers(), client_certificate(&request)).await;
            if !decision.is_allowed() {
                return auth.refusal(&decision);
            }
        }
        match route {
            Ok(Route::Health) => health::health(),
            Ok(Route::Ready) => self.readiness.ready().await,
            Ok(Route::Metrics) => self.scrape.serve(scrape::collectors::Route::Fast, request).await,
            Ok(Route::SlowMetrics) => self.scrape.serve(scrape::collectors::Route::Slow, request).await,
            Ok(Route::ProxyMetrics) => {
                let format = telemetry::Format::from_accept(request.headers().get(header::ACCEPT));
                response::with_type(StatusCode::OK, format.content_type(), self.telemetry.encode(format))
            }
            Err(rejection) => rejected(rejection, path),
        }
    }
}

/// Whether the request carries the one `Host` header RFC 9112 3.2 asks for (HTTP/1.0 may omit it).
fn one_host<B>(request: &Request<B>) -> bool {
    let mut hosts = request.headers().get_all(header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (_, Some(_)) => false,
        (Some(_), None) => true,
        (None, None) => request.version() < Version::HTTP_11,
    }
}

/// The 400 for a request without the one `Host` header; its connection is closed after it.
fn bad_host() -> Response<ResponseBody> {
    let mut response =
        response::text(StatusCode::BAD_REQUEST, "a request must carry exactly one Host header (RFC 9112 3.2)");
    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// The verified client certificate (DER) of the request's connection, if it presented one:
/// `connection` inserts [`ClientCertificate`] on HTTPS connections whose client sent one.
fn client_certificate<B>(request: &Request<B>) -> Option<&[u8]> {
    request.extensions().get::<ClientCertificate>().map(|certificate| certificate.0.as_ref().as_ref())
}

/// The response for a request that fits no endpoint.
pub fn rejected(rejection: Rejection, path: &str) -> Response<ResponseBody> {
    match rejection {
        Rejection::NotFound => response::text(
            StatusCode::NOT_FOUND,
            format!("no endpoint at {path:?}; try /metrics, /health, /ready or /proxy/metrics"),
        ),
        Rejection::MethodNotAllowed(allow) => {
            let mut response =
                response::text(StatusCode::METHOD_NOT_ALLOWED, format!("method not allowed; use {allow}"));
            response.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allow));
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_route_for_get_and_head() {
        for (path, expected) in [
            ("/health", Route::Health),
            ("/ready", Route::Ready),
            ("/metrics", Route::Metrics),
            ("/metrics/slow", Route::SlowMetrics),
        ] {
            assert_eq!(route(&Method::GET, path), Ok(expected));
            assert_eq!(route(&Method::HEAD, path), Ok(expected));
        }
        assert_eq!(route(&Method::GET, "/proxy/metrics"), Ok(Route::ProxyMetrics));
    }

    #[test]
    fn other_methods_get_405_with_allow() {
        for method in [Method::POST, Method::PUT, Method::DELETE, Method::OPTIONS, Method::PATCH, Method::TRACE] {
            assert_eq!(route(&method, "/metrics"), Err(Rejection::MethodNotAllowed("GET, HEAD")));
        }
        assert_eq!(route(&Method::HEAD, "/proxy/metrics"), Err(Rejection::MethodNotAllowed("GET")));
        assert_eq!(route(&Method::CONNECT, ""), Err(Rejection::MethodNotAllowed("GET, HEAD")));
    }

    #[test]
    fn http_1_1_needs_exactly_one_host() {
        let request = |version, hosts: &[&str]| {
            let mut builder = Request::get("/health").version(version);
            for host in hosts {
                builder = builder.header(header::HOST, *host);
            }
            builder.body(()).unwrap()
        };
        assert!(one_host(&request(Version::HTTP_11, &["a"])));
        assert!(!one_host(&request(Version::HTTP_11, &[])));
        assert!(!one_host(&request(Version::HTTP_11, &["a", "b"])));
        assert!(one_host(&request(Version::HTTP_10, &[])));
        assert!(!one_host(&request(Version::HTTP_10, &["a", "a"])));
    }

    #[test]
    fn other_spellings_of_a_path_are_not_found() {
        for path in
            ["/", "/metrics/", "//metrics", "/./metrics", "/x/../metrics", "/%6Detrics", "/METRICS", "/metrics%2F", "*"]
        {
            assert_eq!(route(&Method::GET, path), Err(Rejection::NotFound), "{path}");
        }
    }
}
