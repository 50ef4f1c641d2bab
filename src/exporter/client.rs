//! The pooled HTTP/1.1 client that talks to the exporter, over plain HTTP or TLS ([`super::tls`]),
//! with the proxy's own credentials ([`super::credentials`]). It knows how to reach the exporter,
//! not where: [`super::Exporter`] picks the address.
//!
//! Connections are kept alive between scrapes, for less than windows_exporter's 60 s idle cut-off
//! so the pool drops them before the exporter does. Nagle's algorithm is off: a scrape is a
//! small request followed by a burst of response, and Nagle plus delayed ACKs cost tens of
//! milliseconds per scrape.
//!
//! The pool is the proxy's own (`Pool`): it talks to one host, so a short list of idle
//! `hyper::client::conn::http1` senders does what hyper-util's legacy `Client` did (whose pool
//! hashed its `(scheme, authority)` key three times per request, about 3,000 instructions per
//! scrape, BENCHMARKS.md): connections are made by the same connectors (hyper-util's
//! `HttpConnector`, hyper-rustls' `HttpsConnector`), go on the list (at most [`POOL_MAX_IDLE`])
//! as soon as their response head arrives and are taken again only once that response has been
//! read to the end (no task per request waits for that, as the legacy client's did), and one last
//! used [`POOL_IDLE_TIMEOUT`] ago is never used again (it is dropped, which closes it, at the next
//! request, or closed by the exporter). A request that a kept connection could not even send (the
//! exporter closed it meanwhile) goes out once more on a fresh connection, as the legacy client
//! did.

use std::error::Error as StdError;
use std::io;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::{self, Authority, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, header};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_rustls::{FixedServerNameResolver, HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::sign::CertifiedKey;
use rustls_pki_types::ServerName;
use tower_service::Service;

use super::credentials::Credentials;
use super::error::{ExporterError, innermost, sources};
use super::settings::{ExporterSettings, Trust};
use super::tls::{self, HopContext};

/// Idle pooled connections are closed after this: below windows_exporter's 60 s server timeout.
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(50);
/// Idle connections kept per exporter.
pub const POOL_MAX_IDLE: usize = 8;
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

/// The pool of connections to the exporter; clones share it.
type Transport = Arc<Pool>;

/// One of the exporter's addresses as requests carry it: the authority for the URI and the same
/// text as the `Host` header, made once.
pub struct Target {
    authority: Authority,
    host: HeaderValue,
}

impl Target {
    /// The target at `authority`.
    pub fn new(authority: Authority) -> Target {
        let host = HeaderValue::from_str(authority.as_str()).expect("an authority is a valid header value");
        Target { authority, host }
    }
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
        target: &Target,
        method: Method,
        path_and_query: PathAndQuery,
        mut headers: HeaderMap,
    ) -> Request<Empty<Bytes>> {
        let mut uri = uri::Parts::default();
        uri.scheme = Some(self.scheme.clone());
        uri.authority = Some(target.authority.clone());
        uri.path_and_query = Some(path_and_query);
        let uri = Uri::from_parts(uri).expect("scheme, checked authority and parsed path form a valid URI");
        headers.insert(header::HOST, target.host.clone());
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
        let response = current.transport.send(request).await.map_err(|e| self.classify(&e))?;
        let status = response.status();
        if (status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN) && !scrapers {
            return Err(ExporterError::Unauthorized { status, sent });
        }
        Ok(response)
    }

    fn classify(&self, failure: &Failure) -> ExporterError {
        let error: &(dyn StdError + 'static) = match failure {
            Failure::Connect(error) => &**error,
            Failure::Send(error) => error,
        };
        if let (Some(setup), Some(cause)) = (&self.tls, tls::find_tls_error(error)) {
            return ExporterError::Tls(tls::explain(cause, &setup.context));
        }
        let io_kind = sources(error).find_map(|e| e.downcast_ref::<io::Error>()).map(io::Error::kind);
        if let Failure::Connect(_) = failure {
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

/// A pool: plain when `tls` is `None`. Both kinds use the same TCP connector settings.
fn transport(tls: Option<&TlsSetup>, identity: Option<Arc<CertifiedKey>>, connect_timeout: Duration) -> Transport {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(connect_timeout));
    connector.set_keepalive(Some(Duration::from_secs(30)));
    let mut handshake = http1::Builder::new();
    handshake.read_buf_exact_size(Some(READ_BUF_SIZE));
    let Some(tls) = tls else {
        connector.enforce_http(true);
        return Arc::new(Pool { connector: Connector::Plain(connector), handshake, idle: Mutex::default() });
    };
    connector.enforce_http(false);
    let https = HttpsConnectorBuilder::new()
        .with_tls_config(tls::client_config(&tls.trust, identity))
        .https_only()
        .with_server_name_resolver(FixedServerNameResolver::new(tls.server_name.clone()))
        .enable_http1()
        .wrap_connector(connector);
    Arc::new(Pool { connector: Connector::Tls(https), handshake, idle: Mutex::default() })
}

/// Why a request got no response head: no connection, or the connection failed it.
enum Failure {
    /// The connector failed (TCP connect, its timeout, the TLS handshake).
    Connect(Box<dyn StdError + Send + Sync>),
    /// The connection failed before or while the response head came.
    Send(hyper::Error),
}

/// How connections are made: over plain TCP or over TLS.
enum Connector {
    Plain(HttpConnector),
    Tls(HttpsConnector<HttpConnector>),
}

/// The exporter connections of one client (one identity): the kept ones in a short list, the
/// most recently used last.
struct Pool {
    connector: Connector,
    handshake: http1::Builder,
    idle: Mutex<Vec<Idle>>,
}

/// A kept connection: idle, or still reading the response of the request it was last used for
/// (sent at `since`).
struct Idle {
    authority: Authority,
    sender: SendRequest<Empty<Bytes>>,
    since: Instant,
}

impl Pool {
    /// Sends `request` (its URI absolute, as [`HopClient::request`] builds it) on an idle
    /// connection to its authority, or on a new one, and waits for the response head. The
    /// connection is kept with the response head; it takes the next request once the response
    /// has been read.
    async fn send(&self, mut request: Request<Empty<Bytes>>) -> Result<Response<Incoming>, Failure> {
        let authority = request.uri().authority().expect("an exporter request names its authority").clone();
        let uri = std::mem::take(request.uri_mut());
        // HTTP/1 to an origin server: the request line carries the path and query only.
        *request.uri_mut() = Uri::from(uri.path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/")));
        let now = Instant::now();
        let (mut sender, reused) = match self.checkout(&authority, now) {
            Some(sender) => (sender, true),
            None => (self.connect(uri.clone()).await?, false),
        };
        let response = match sender.try_send_request(request).await {
            Ok(response) => response,
            Err(mut error) => match error.take_message() {
                // A kept connection the exporter closed before the request went out: once more
                // on a fresh one, as hyper-util's client did.
                Some(request) if reused => {
                    sender = self.connect(uri).await?;
                    sender.send_request(request).await.map_err(Failure::Send)?
                }
                _ => return Err(Failure::Send(error.into_error())),
            },
        };
        self.keep(authority, sender, now);
        Ok(response)
    }

    /// The most recently kept connection to `authority` that can take a request now (its last
    /// response read to the end); closed, expired and other-port ones are dropped, busy ones
    /// stay.
    fn checkout(&self, authority: &Authority, now: Instant) -> Option<SendRequest<Empty<Bytes>>> {
        let mut idle = self.idle.lock().expect("the pool lock is never poisoned");
        idle.retain(|entry| {
            !entry.sender.is_closed()
                && now.saturating_duration_since(entry.since) < POOL_IDLE_TIMEOUT
                && entry.authority == *authority
        });
        let ready = idle.iter().rposition(|entry| entry.sender.is_ready())?;
        Some(idle.remove(ready).sender)
    }

    /// Keeps `sender`, whose response is still being read, for a later request if there is
    /// room: it can take one once that response has been read to the end (a connection whose
    /// response is cut short closes, and is dropped at the next checkout).
    fn keep(&self, authority: Authority, sender: SendRequest<Empty<Bytes>>, since: Instant) {
        let mut idle = self.idle.lock().expect("the pool lock is never poisoned");
        if idle.len() < POOL_MAX_IDLE {
            idle.push(Idle { authority, sender, since });
        }
    }

    /// A new connection to `uri`'s authority, its task spawned.
    async fn connect(&self, uri: Uri) -> Result<SendRequest<Empty<Bytes>>, Failure> {
        match &self.connector {
            Connector::Plain(connector) => {
                let io = connector.clone().call(uri).await.map_err(|e| Failure::Connect(Box::new(e)))?;
                self.start(io).await
            }
            Connector::Tls(connector) => self.start(connector.clone().call(uri).await.map_err(Failure::Connect)?).await,
        }
    }

    /// The HTTP/1 connection over `io`, driven by a task of its own until it closes.
    async fn start<T>(&self, io: T) -> Result<SendRequest<Empty<Bytes>>, Failure>
    where
        T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let (sender, connection) = self.handshake.handshake(io).await.map_err(Failure::Send)?;
        tokio::spawn(async move {
            // Its failure reaches the request it fails; an idle connection's end is no news.
            let _ = connection.await;
        });
        Ok(sender)
    }
}
