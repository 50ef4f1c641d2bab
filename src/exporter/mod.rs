//! The exporter: its address (the port in use, found by [`discovery`] when `PROXY_PORT` lists
//! several), the pooled HTTP/1.1 client that talks to it over plain HTTP or TLS ([`tls`]) with
//! the proxy's own credentials ([`credentials`]), the hop's files re-read while running
//! ([`reload`]), and when it last answered (which `/ready` reads).
//!
//! Connections are kept alive between scrapes, for less than windows_exporter's 60 s idle cut-off
//! so the pool drops them before the exporter does. Nagle's algorithm is off: a scrape is a
//! small request followed by a burst of response, and Nagle plus delayed ACKs cost tens of
//! milliseconds per scrape.

pub mod credentials;
pub mod discovery;
mod error;
pub mod reload;
pub mod settings;
pub mod tls;

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
use prometheus_client::metrics::gauge::Gauge;
use rustls::sign::CertifiedKey;
use rustls_pki_types::ServerName;

use crate::timestamp::Timestamp;
use credentials::Credentials;
use discovery::{Discovery, Ports, Probe};
pub use error::ExporterError;
pub(crate) use error::{innermost, sources};
use settings::{ExporterSettings, Trust};
use tls::HopContext;

/// A readiness probe of the exporter gives up after this long in all (connect included), so
/// `/ready` answers 503 with a reason inside the kubelet's probe timeout (3 s in our manifests)
/// instead of the kubelet timing out with none.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

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

/// The exporter's addresses, which port is in use, and a client for it. Cheap to clone.
#[derive(Clone)]
pub struct Exporter {
    /// Per configured port, in order: its authority and its `scheme://host:port` label.
    addresses: Arc<[(u16, Authority, Arc<str>)]>,
    /// `scheme://host`, for messages about every port.
    host_label: Arc<str>,
    discovery: Discovery,
    scheme: Scheme,
    connect_timeout: Duration,
    /// What a TLS client is made from, kept to make a new one when the client certificate
    /// changes.
    tls: Option<Arc<TlsSetup>>,
    /// The client and credentials in use, replaced whole when the hop's files change. A request
    /// takes the current one (a lock held for a clone of an `Arc`), so a swap never waits for a
    /// scrape.
    current: Arc<RwLock<Arc<Current>>>,
    last_answer: Arc<Timestamp>,
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

impl Exporter {
    /// A plain-HTTP client for `authority` with the given connect timeout.
    pub fn new(authority: Authority, connect_timeout: Duration) -> Exporter {
        Exporter::with_hop(authority, connect_timeout, &ExporterSettings::default())
    }

    /// A client for `authority` (one port) as `hop` says: plain or TLS, with or without
    /// credentials.
    pub fn with_hop(authority: Authority, connect_timeout: Duration, hop: &ExporterSettings) -> Exporter {
        let port = authority.port_u16().expect("a configured exporter authority has a port");
        let ports = Ports::new(vec![port]).expect("one port is a valid list");
        Exporter::with_ports(authority, ports, connect_timeout, hop, Gauge::default())
    }

    /// A client for the exporter at `first`'s host on `ports` (`first` carries the host and the
    /// first port), as `hop` says; `port_gauge` shows the port in use.
    pub fn with_ports(
        first: Authority,
        ports: Ports,
        connect_timeout: Duration,
        hop: &ExporterSettings,
        port_gauge: Gauge,
    ) -> Exporter {
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
        let host = first.host();
        let addresses = ports
            .iter()
            .map(|port| {
                let authority = format!("{host}:{port}").parse().expect("the checked host with a port is an authority");
                (port, authority, Arc::from(format!("{scheme}://{host}:{port}").as_str()))
            })
            .collect();
        let host_label: Arc<str> = Arc::from(format!("{scheme}://{host}").as_str());
        let transport = transport(tls.as_deref(), identity.clone(), connect_timeout);
        let current = Arc::new(RwLock::new(Arc::new(Current { transport, identity, credentials })));
        // The probes' copy of the exporter gets a discovery of its own that never probes: it only
        // sends, and holding the real discovery would make the two hold each other.
        let fixed = Ports::new(vec![ports.first()]).expect("one port is a valid list");
        let never: Probe = Arc::new(|_| Box::pin(async { Err("not probed".to_owned()) }));
        let prober = Exporter {
            addresses,
            host_label: host_label.clone(),
            discovery: Discovery::new(fixed, host_label.clone(), never, PROBE_TIMEOUT, Gauge::default()),
            scheme,
            connect_timeout,
            tls,
            current,
            last_answer: Arc::new(Timestamp::unset()),
        };
        let probing = prober.clone();
        let probe: Probe = Arc::new(move |port| {
            let exporter = probing.clone();
            Box::pin(async move { exporter.probe(port).await })
        });
        // A port gets the connect timeout to accept, and at least /ready's probe time to answer.
        let probe_limit = connect_timeout.max(PROBE_TIMEOUT);
        Exporter { discovery: Discovery::new(ports, host_label, probe, probe_limit, port_gauge), ..prober }
    }

    /// Which port is in use, and the search for one.
    pub fn discovery(&self) -> &Discovery {
        &self.discovery
    }

    /// Discovery's probe of one port: any HTTP answer to `GET /health` counts, a 401 or 403 to
    /// the proxy's credentials included (an exporter with basic auth answered).
    async fn probe(&self, port: u16) -> Result<(), String> {
        let request = self.request(port, Method::GET, PathAndQuery::from_static("/health"), HeaderMap::new());
        match self.send(request).await {
            Ok(_) | Err(ExporterError::Unauthorized { .. }) => Ok(()),
            Err(error) => Err(error.to_string()),
        }
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

    /// `http://host:port` or `https://host:port` for one of the configured ports, for messages
    /// and log fields.
    pub fn label(&self, port: u16) -> &Arc<str> {
        &self.address(port).2
    }

    /// `scheme://host`, for messages about every port.
    pub fn host_label(&self) -> &Arc<str> {
        &self.host_label
    }

    /// The exporter as a message names it when no request has picked a port: the port in use
    /// (the only port, with one), else the host.
    pub fn current_label(&self) -> &Arc<str> {
        match self.discovery.current() {
            Some(port) => self.label(port),
            None => self.host_label(),
        }
    }

    fn address(&self, port: u16) -> &(u16, Authority, Arc<str>) {
        self.addresses.iter().find(|(p, _, _)| *p == port).expect("only configured ports are dialled")
    }

    /// A bodiless request to the exporter on `port` for `path_and_query` (taken from a
    /// scraper's request or fixed): the URI and `Host` always name the exporter, so a scraper can
    /// never choose another host. The proxy's own credentials, if it has them, replace any
    /// `Authorization` in `headers`: a credential meant for the proxy never reaches the exporter.
    pub fn request(
        &self,
        port: u16,
        method: Method,
        path_and_query: PathAndQuery,
        mut headers: HeaderMap,
    ) -> Request<Empty<Bytes>> {
        let authority = &self.address(port).1;
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

    /// Sends one request and waits for the response headers. Any HTTP answer counts as the
    /// exporter answering, but a 401 or 403 to the proxy's own credentials (or to none) is
    /// [`ExporterError::Unauthorized`]: a failure of the proxy's settings, not the scraper's, and
    /// no sign of a healthy hop. Only when the request carried the scraper's own
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
        self.last_answer.advance_to_now();
        Ok(response)
    }

    /// When the exporter last answered a request (a discovery probe included), if ever.
    pub fn last_answer(&self) -> &Timestamp {
        &self.last_answer
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_keeps_path_and_query_and_pins_the_host() {
        let exporter = Exporter::new("10.0.0.4:9182".parse().unwrap(), Duration::from_secs(1));
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("elsewhere:80"));
        let request =
            exporter.request(9182, Method::GET, "/metrics?collect[]=cpu&collect[]=os".parse().unwrap(), headers);
        assert_eq!(request.uri().to_string(), "http://10.0.0.4:9182/metrics?collect[]=cpu&collect[]=os");
        assert_eq!(request.headers()[header::HOST], "10.0.0.4:9182");
        assert_eq!(exporter.label(9182).as_ref(), "http://10.0.0.4:9182");
        assert_eq!(exporter.current_label().as_ref(), "http://10.0.0.4:9182");
    }

    #[test]
    fn ipv6_exporter_is_bracketed() {
        let exporter = Exporter::new("[fd00::4]:9182".parse().unwrap(), Duration::from_secs(1));
        let request = exporter.request(9182, Method::HEAD, "/metrics".parse().unwrap(), HeaderMap::new());
        assert_eq!(request.uri().to_string(), "http://[fd00::4]:9182/metrics");
        assert_eq!(request.headers()[header::HOST], "[fd00::4]:9182");
    }

    #[test]
    fn every_listed_port_has_its_address_and_the_host_names_them_all() {
        let ports = Ports::new(vec![19100, 9182]).unwrap();
        let exporter = Exporter::with_ports(
            "[fd00::4]:19100".parse().unwrap(),
            ports,
            Duration::from_secs(1),
            &ExporterSettings::default(),
            Gauge::default(),
        );
        let request = exporter.request(9182, Method::GET, "/metrics".parse().unwrap(), HeaderMap::new());
        assert_eq!(request.uri().to_string(), "http://[fd00::4]:9182/metrics");
        assert_eq!(exporter.label(19100).as_ref(), "http://[fd00::4]:19100");
        // No port answered yet: messages name the host.
        assert_eq!(exporter.current_label().as_ref(), "http://[fd00::4]");
    }

    #[test]
    fn the_proxys_credentials_replace_the_scrapers() {
        let exporter = Exporter::new("10.0.0.4:9182".parse().unwrap(), Duration::from_secs(1));
        exporter.set_credentials(Credentials::basic("Aladdin", "open sesame"));
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer scrapers-token"));
        let request = exporter.request(9182, Method::GET, "/metrics".parse().unwrap(), headers);
        let values: Vec<_> = request.headers().get_all(header::AUTHORIZATION).iter().collect();
        assert_eq!(values, vec!["Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="]);
    }
}
