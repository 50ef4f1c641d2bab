//! The exporter: its address book (the host, each configured port's address, and the port in
//! use, found by [`discovery`] when `PROXY_PORT` lists several) and when it last answered (which
//! `/ready` reads). Requests go through the pooled [`client`] (plain HTTP or TLS ([`tls`]), with
//! the proxy's own credentials ([`credentials`])), as the hop's [`settings`] say; the hop's files
//! are re-read while running ([`reload`]).

pub mod client;
pub mod credentials;
pub mod discovery;
mod error;
pub mod reload;
pub mod settings;
pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery};
use http::{HeaderMap, Method, Request, Response};
use http_body_util::Empty;
use hyper::body::Incoming;
use prometheus_client::metrics::gauge::Gauge;
use rustls::sign::CertifiedKey;

use crate::timestamp::Timestamp;
use crate::tls::metrics::TlsMetrics;
use client::{HopClient, Target};
use credentials::Credentials;
use discovery::{Discovery, Ports, Probe};
pub use error::ExporterError;
pub(crate) use error::innermost;
use settings::{ExporterSettings, Trust};

/// A readiness probe of the exporter gives up after this long in all (connect included), so
/// `/ready` answers 503 with a reason inside the kubelet's probe timeout (3 s in our manifests)
/// instead of the kubelet timing out with none.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Per configured port, in order: its port, its authority and its `scheme://host:port` label.
type Addresses = Arc<[(u16, Target, Arc<str>)]>;

/// The exporter's addresses, which port is in use, and a client for it. Cheap to clone.
#[derive(Clone)]
pub struct Exporter {
    addresses: Addresses,
    /// `scheme://host`, for messages about every port.
    host_label: Arc<str>,
    discovery: Discovery,
    client: HopClient,
    last_answer: Arc<Timestamp>,
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
        let client = HopClient::new(hop, connect_timeout);
        let scheme = client.scheme().clone();
        let host = first.host();
        let addresses: Addresses = ports
            .iter()
            .map(|port| {
                let authority = format!("{host}:{port}").parse().expect("the checked host with a port is an authority");
                (port, Target::new(authority), Arc::from(format!("{scheme}://{host}:{port}").as_str()))
            })
            .collect();
        let host_label: Arc<str> = Arc::from(format!("{scheme}://{host}").as_str());
        // The probe holds the client and the addresses, not the exporter: it only sends, and
        // holding the discovery it serves would make the two hold each other.
        let (probing, book) = (client.clone(), addresses.clone());
        let probe: Probe = Arc::new(move |port| {
            let (client, addresses) = (probing.clone(), book.clone());
            Box::pin(async move { probe(&client, &addresses, port).await })
        });
        // A port gets the connect timeout to accept, and at least /ready's probe time to answer.
        let probe_limit = connect_timeout.max(PROBE_TIMEOUT);
        Exporter {
            addresses,
            discovery: Discovery::new(ports, host_label.clone(), probe, probe_limit, port_gauge),
            host_label,
            client,
            last_answer: Arc::new(Timestamp::unset()),
        }
    }

    /// The hop's start-up, once: the skip-verify warning, the expiry of its certificate files in
    /// `metrics`, and the watch on the files it re-reads.
    pub fn hop_started(&self, hop: &ExporterSettings, metrics: &TlsMetrics) {
        if let Some(tls) = &hop.tls {
            match &tls.trust {
                Trust::InsecureSkipVerify => tracing::warn!(
                    variable = "PROXY_EXPORTER_INSECURE_SKIP_VERIFY",
                    "the exporter's certificate is not verified: whoever answers on the exporter's address gets the scrapes and the proxy's exporter credentials"
                ),
                Trust::Bundle { file, certificates, .. } => metrics.certificates_loaded(file, certificates),
            }
            if let Some(identity) = &tls.identity {
                metrics.certificate_loaded(&identity.cert_file, identity.loaded.not_after);
            }
        }
        let watched = reload::Watched {
            identity: hop
                .tls
                .as_ref()
                .and_then(|t| t.identity.as_ref())
                .map(|i| (i.cert_file.clone(), i.key_file.clone(), i.loaded.clone())),
            password: hop
                .basic_auth
                .as_ref()
                .map(|b| (b.username.clone(), b.password_file.clone(), b.password.clone())),
        };
        reload::spawn(self, watched, metrics);
    }

    /// Which port is in use, and the search for one.
    pub fn discovery(&self) -> &Discovery {
        &self.discovery
    }

    /// Presents `identity` on new connections from now on. The old pool goes with the old
    /// client: its idle connections close at once, one in use when its scrape ends, so no
    /// connection made with the old certificate is used again.
    pub fn set_identity(&self, identity: Arc<CertifiedKey>) {
        self.client.set_identity(identity);
    }

    /// Sends `credentials` on every request from now on (connections are kept).
    pub fn set_credentials(&self, credentials: Credentials) {
        self.client.set_credentials(credentials);
    }

    /// `http://host:port` or `https://host:port` for one of the configured ports, for messages
    /// and log fields.
    pub fn label(&self, port: u16) -> &Arc<str> {
        &address(&self.addresses, port).2
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

    /// A bodiless request to the exporter on `port` for `path_and_query`: see
    /// [`HopClient::request`].
    pub fn request(
        &self,
        port: u16,
        method: Method,
        path_and_query: PathAndQuery,
        headers: HeaderMap,
    ) -> Request<Empty<Bytes>> {
        self.client.request(&address(&self.addresses, port).1, method, path_and_query, headers)
    }

    /// Sends one request and waits for the response headers: see [`HopClient::send`]. Any HTTP
    /// answer counts as the exporter answering but [`ExporterError::Unauthorized`], which is no
    /// sign of a healthy hop.
    pub async fn send(&self, request: Request<Empty<Bytes>>) -> Result<Response<Incoming>, ExporterError> {
        let response = self.client.send(request).await?;
        self.last_answer.advance_to_now();
        Ok(response)
    }

    /// When the exporter last answered a request sent through [`Exporter::send`] (a scrape or
    /// `/ready`'s probe; discovery's probes are not counted), if ever.
    pub fn last_answer(&self) -> &Timestamp {
        &self.last_answer
    }
}

/// The address of one of the configured ports.
fn address(addresses: &Addresses, port: u16) -> &(u16, Target, Arc<str>) {
    addresses.iter().find(|(p, _, _)| *p == port).expect("only configured ports are dialled")
}

/// Discovery's probe of one port: any HTTP answer to `GET /health` counts, a 401 or 403 to
/// the proxy's credentials included (an exporter with basic auth answered).
async fn probe(client: &HopClient, addresses: &Addresses, port: u16) -> Result<(), String> {
    let target = &address(addresses, port).1;
    let request = client.request(target, Method::GET, PathAndQuery::from_static("/health"), HeaderMap::new());
    match client.send(request).await {
        Ok(_) | Err(ExporterError::Unauthorized { .. }) => Ok(()),
        Err(error) => Err(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderValue, header};

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
