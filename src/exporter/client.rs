//! The pooled HTTP/1.1 client that talks to the exporter, over plain HTTP or TLS ([`super::tls`]),
//! with the proxy's own credentials ([`super::credentials`]). It knows how to reach the exporter,
//! not where: [`super::Exporter`] picks the address.
//!
//! Connections are kept alive between scrapes, for less than windows_exporter's 60 s idle cut-off
//! so the pool drops them before the exporter does. Nagle's algorithm is off: a scrape is a
//! small request followed by a burst of response, and Nagle plus delayed ACKs cost tens of
//! milliseconds per scrape.

use std::io;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, header};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper_rustls::{FixedServerNameResolver, HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::sign::CertifiedKey;
use rustls_pki_types::ServerName;

use super::credentials::Credentials;
use super::error::{ExporterError, innermost, sources};
use super::settings::{ExporterSettings, Trust};
use super::tls::{self, HopContext};

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

/// The pooled client and the credentials it sends, as the hop's settings say. Cheap to clone: the
/// clones share one pool.
#[derive(Clone)]
pub struct HopClient {
    scheme: Scheme,
    connect_timeout: Duration,
    /// What a TLS client is made from, kept to make a new one when the client certificate
    /// changes.
    tls: Option<Arc<TlsSetup>>,
    /// The client and credentials in use, replaced whole when the hop's files change. A request
    /// takes the current one (a lock held for a clone of an `Arc`), so a swap never waits for a
    /// scrape.
    current: Arc<RwLock<Arc<Current>>>,
}

struct TlsSetup {
    trust: Trust,
    server_name: ServerName<'static>,
    context: HopContext,
}

struct Current {
    transport: Transport,
    identity: Option<Arc<CertifiedKey>>,
    credentials: Option<Credentials>,
}

/// A pooled client over plain TCP or over TLS. Two types, so plain HTTP keeps exactly the client
/// (and the performance) it had before TLS existed.
#[derive(Clone)]
enum Transport {
    Plain(Client<HttpConnector, Empty<Bytes>>),
    Tls(Client<HttpsConnector<HttpConnector>, Empty<Bytes>>),
}

impl HopClient {
    /// A client as `hop` says: plain or TLS, with or without credentials.
    pub fn new(hop: &ExporterSettings, connect_timeout: Duration) -> HopClient {
        let tls = hop.tls.as_ref().map(|tls| {
            Arc::new(TlsSetup {
                trust: tls.trust.clone(),
                server_name: tls.server_name.clone(),
                context: HopContext {
                    server_name: tls.server_name.to_str().into_owned(),
                    has_identity: tls.identity.is_some(),
                },
            })
        });
        let identity = hop.tls.as_ref().and_then(|tls| tls.identity.as_ref()).map(|i| i.loaded.certified.clone());
        let credentials = hop.basic_auth.as_ref().map(|b| Credentials::basic(&b.username, &b.password));
        let scheme = if tls.is_some() { Scheme::HTTPS } else { Scheme::HTTP };
        let transport = transport(tls.as_deref(), identity.clone(), connect_timeout);
        let current = Arc::new(RwLock::new(Arc::new(Current { transport, identity, credentials })));
        HopClient { scheme, connect_timeout, tls, current }
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &Scheme {
        &self.scheme
    }

    /// Presents `identity` on new connections from now on. The old pool goes with the old
    /// client: its idle connections close at once, one in use when its scrape ends, so no
    /// connection made with the old certificate is used again.
    pub fn set_identity(&self, identity: Arc<CertifiedKey>) {
        let mut current = self.current.write().expect("the hop lock is never poisoned");
        let transport = transport(self.tls.as_deref(), Some(identity.clone()), self.connect_timeout);
        *current = Arc::new(Current { transport, identity: Some(identity), credentials: current.credentials.clone() });
    }

    /// Sends `credentials` on every request from now on (connections are kept).
    pub fn set_credentials(&self, credentials: Credentials) {
        let mut current = self.current.write().expect("the hop lock is never poisoned");
        *current = Arc::new(Current {
            transport: current.transport.clone(),
            identity: current.identity.clone(),
            credentials: Some(credentials),
        });
    }

    fn current(&self) -> Arc<Current> {
        self.current.read().expect("the hop lock is never poisoned").clone()
    }

    /// A bodiless request to the exporter at `authority` for `path_and_query` (taken from a
    /// scraper's request or fixed): the URI and `Host` always name the exporter, so a scraper can
    /// never choose another host. The proxy's own credentials, if it has them, replace any
    /// `Authorization` in `headers`: a credential meant for the proxy never reaches the exporter.
    pub fn request(
        &self,
        authority: &Authority,
        method: Method,
        path_and_query: PathAndQuery,
        mut headers: HeaderMap,
    ) -> Request<Empty<Bytes>> {
        let uri = Uri::builder()
            .scheme(self.scheme.clone())
            .authority(authority.clone())
            .path_and_query(path_and_query)
            .build()
            .expect("scheme, checked authority and parsed path form a valid URI");
        headers.insert(
            header::HOST,
            HeaderValue::from_str(authority.as_str()).expect("an authority is a valid header value"),
        );
        if let Some(credentials) = &self.current().credentials {
            headers.insert(header::AUTHORIZATION, credentials.authorization().clone());
        }
        let mut request = Request::new(Empty::new());
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        *request.headers_mut() = headers;
        request
    }

    /// Sends one request and waits for the response headers. A 401 or 403 to the proxy's own
    /// credentials (or to none) is [`ExporterError::Unauthorized`]: a failure of the proxy's
    /// settings, not the scraper's. Only when the request carried the scraper's own
    /// `Authorization` (forwarded because the proxy has none of its own) is it the scraper's
    /// answer, passed through.
    pub async fn send(&self, request: Request<Empty<Bytes>>) -> Result<Response<Incoming>, ExporterError> {
        let current = self.current();
        let sent = current.credentials.is_some();
        let scrapers = !sent && request.headers().contains_key(header::AUTHORIZATION);
        let response = match &current.transport {
            Transport::Plain(client) => client.request(request).await,
            Transport::Tls(client) => client.request(request).await,
        }
        .map_err(|e| self.classify(&e))?;
        let status = response.status();
        if (status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN) && !scrapers {
            return Err(ExporterError::Unauthorized { status, sent });
        }
        Ok(response)
    }

    fn classify(&self, error: &hyper_util::client::legacy::Error) -> ExporterError {
        if let (Some(setup), Some(cause)) = (&self.tls, tls::find_tls_error(error)) {
            return ExporterError::Tls(tls::explain(cause, &setup.context));
        }
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

/// A pooled client: plain when `tls` is `None`. Both kinds use the same TCP connector settings.
fn transport(tls: Option<&TlsSetup>, identity: Option<Arc<CertifiedKey>>, connect_timeout: Duration) -> Transport {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(connect_timeout));
    connector.set_keepalive(Some(Duration::from_secs(30)));
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .pool_max_idle_per_host(POOL_MAX_IDLE)
        .http1_read_buf_exact_size(READ_BUF_SIZE);
    let Some(tls) = tls else {
        connector.enforce_http(true);
        return Transport::Plain(builder.build(connector));
    };
    connector.enforce_http(false);
    let https = HttpsConnectorBuilder::new()
        .with_tls_config(tls::client_config(&tls.trust, identity))
        .https_only()
        .with_server_name_resolver(FixedServerNameResolver::new(tls.server_name.clone()))
        .enable_http1()
        .wrap_connector(connector);
    Transport::Tls(builder.build(https))
}
