//! The TLS side of the listener: the rustls server configuration and the handshake of one
//! connection.
//!
//! - HTTP/1.1 only: ALPN offers `http/1.1`; a client offering only other protocols (h2) fails
//!   the handshake, one offering none is served.
//! - TLS 1.2 and 1.3, or 1.3 only (`PROXY_TLS_MIN_VERSION`), with rustls' default cipher suites
//!   (all AEAD with forward secrecy, as exporter-toolkit's defaults).
//! - With `PROXY_CLIENT_CA_FILE` the handshake asks for a client certificate without requiring
//!   one (the kubelet's probes send none); a certificate that is presented must verify against
//!   that CA, or the handshake fails. The file is re-read when it changes ([`crate::reload`]): a
//!   new bundle that loads applies to the next handshake (a new rustls configuration, so no
//!   session made under the old CA is resumed); one that does not keeps the old CA, with one
//!   warning and a count in `windows_exporter_proxy_reload_failures_total{file}`.
//! - The handshake runs inside the connection's header-read deadline: a client that connects
//!   and sends nothing, or trickles its ClientHello, is cut off like a slowloris.
//! - Plain HTTP sent to the HTTPS port gets `400` with a line saying so (what Go servers answer),
//!   so a Prometheus target configured with `scheme: http` shows a reason rather than a reset.
//!
//! Failures are counted by [`HandshakeFailure`] and logged at debug only: port scanners and
//! load-balancer TCP checks would otherwise fill the log.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, Weak};

use rustls::server::danger::ClientCertVerifier;
use rustls::server::{NoClientAuth, WebPkiClientVerifier};
use rustls::{InvalidMessage, PeerIncompatible, ServerConfig};
use rustls_pki_types::CertificateDer;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;

use crate::reload::{self, Content, Describe, File, Loaded, Rejection, Watch};
use crate::tls::certificate::{self, CertificateError, PairFile};
use crate::tls::metrics::{HandshakeFailure, TlsMetrics};
use crate::tls::resolver::WatchedKeyPair;
use crate::tls::x509::CertificateInfo;
use crate::tls::{ClientCertificate, provider};

/// How the client CA bundle shows in reload log lines.
const CLIENT_CA: Describe = Describe {
    what: "client CA bundle",
    reloaded: "client CA bundle reloaded; new handshakes verify client certificates against it",
    rejected: "new client CA bundle cannot be used; the previous one stays in use",
};

/// The ALPN protocol served.
pub const ALPN_HTTP_1_1: &[u8] = b"http/1.1";

/// What Go's `net/http` answers plain HTTP on a TLS port; Prometheus shows the status.
const PLAIN_HTTP_ANSWER: &[u8] =
    b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nClient sent an HTTP request to an HTTPS server.\n";

/// The oldest TLS version the listener accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MinVersion {
    /// TLS 1.2 and 1.3.
    Tls12,
    /// TLS 1.3 only.
    Tls13,
}

/// The checked HTTPS settings; present only when the listener serves HTTPS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// The certificate chain, leaf first (`PROXY_TLS_CERT_FILE`).
    pub certificate_file: PathBuf,
    /// Its private key (`PROXY_TLS_KEY_FILE`).
    pub key_file: PathBuf,
    /// Oldest version accepted (`PROXY_TLS_MIN_VERSION`).
    pub min_version: MinVersion,
    /// CA bundle for client certificates (`PROXY_CLIENT_CA_FILE`); `None`: none asked for.
    pub client_ca_file: Option<PathBuf>,
}

/// Accepts TLS on client connections.
#[derive(Clone)]
pub struct Acceptor {
    /// The configuration in use, replaced whole when the client CA bundle changes; a handshake
    /// takes the current one when it starts.
    inner: Arc<RwLock<tokio_rustls::TlsAcceptor>>,
    metrics: TlsMetrics,
}

impl Acceptor {
    /// The listener's TLS from its checked settings: loads the certificate and key and the
    /// client CA, and starts watching them for rotation. The settings were checked moments
    /// ago, so an error here means the files changed in between; it reads like a config error.
    pub fn load(settings: &TlsSettings, metrics: &TlsMetrics) -> Result<Acceptor, String> {
        let certificate = WatchedKeyPair::load(
            &settings.certificate_file,
            &settings.key_file,
            "serving certificate",
            metrics.clone(),
        )
        .map_err(|error| {
            let (name, path) = match error.file {
                PairFile::Certificate => ("PROXY_TLS_CERT_FILE", &settings.certificate_file),
                PairFile::Key => ("PROXY_TLS_KEY_FILE", &settings.key_file),
            };
            format!("{name}={:?} is not valid: {error}", path.display().to_string())
        })?;
        certificate.watch().map_err(|error| format!("cannot start the certificate reload thread: {error}"))?;
        let Some(ca_file) = &settings.client_ca_file else {
            return Ok(Acceptor::new(certificate, settings.min_version, None, metrics.clone()));
        };
        let invalid = |error: CertificateError| {
            format!("PROXY_CLIENT_CA_FILE={:?} is not valid: {error}", ca_file.display().to_string())
        };
        let files = vec![File::new("PROXY_CLIENT_CA_FILE", ca_file)];
        let (watch, contents) = Watch::open(CLIENT_CA, files, metrics.reloads().clone());
        let (certificates, verifier) = client_ca(contents).map_err(invalid)?;
        metrics.certificates_loaded(ca_file, &certificates);
        let acceptor = Acceptor::new(certificate.clone(), settings.min_version, Some(verifier), metrics.clone());
        acceptor
            .watch_client_ca(watch, certificate, settings.min_version)
            .map_err(|error| format!("cannot start the client CA reload thread: {error}"))?;
        Ok(acceptor)
    }

    /// Serves `certificate`; `client_verifier` from [`client_verifier`] when client certificates
    /// are asked for.
    pub fn new(
        certificate: Arc<WatchedKeyPair>,
        min_version: MinVersion,
        client_verifier: Option<Arc<dyn ClientCertVerifier>>,
        metrics: TlsMetrics,
    ) -> Acceptor {
        let inner = tokio_rustls::TlsAcceptor::from(server_config(certificate, min_version, client_verifier));
        Acceptor { inner: Arc::new(RwLock::new(inner)), metrics }
    }

    /// Re-reads the client CA bundle `watch` holds for as long as this acceptor is in use, and
    /// installs a new bundle that loads into a new configuration.
    fn watch_client_ca(
        &self,
        watch: Watch,
        certificate: Arc<WatchedKeyPair>,
        min_version: MinVersion,
    ) -> io::Result<()> {
        let inner: Weak<RwLock<tokio_rustls::TlsAcceptor>> = Arc::downgrade(&self.inner);
        let metrics = self.metrics.clone();
        reload::spawn("client-ca", move || {
            let inner = inner.upgrade()?;
            let outcome = watch.read(|contents| {
                let (certificates, verifier) = client_ca(contents).map_err(|error| Rejection::new(0, error))?;
                let config = server_config(certificate.clone(), min_version, Some(verifier));
                *inner.write().expect("no code panics while holding the lock") =
                    tokio_rustls::TlsAcceptor::from(config);
                metrics.certificates_loaded(&watch.files()[0].path, &certificates);
                let first = certificates.first().and_then(|der| CertificateInfo::parse(der).ok());
                Ok(Loaded {
                    serial: first.map(|info| reload::serial(&info.serial)),
                    not_after: certificate::earliest_expiry(&certificates),
                })
            });
            Some(outcome)
        })
    }

    /// Completes the handshake on `stream` by `deadline`. A failure is counted, logged at debug
    /// and returned; the caller just drops the connection.
    pub async fn accept(&self, stream: TcpStream, deadline: Instant) -> Result<TlsStream<TcpStream>, HandshakeFailure> {
        let result = tokio::time::timeout_at(deadline, self.handshake(stream)).await;
        let (reason, error) = match result {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err((reason, error))) => (reason, error),
            Err(_) => (HandshakeFailure::timeout, None),
        };
        self.metrics.handshake_failed(reason);
        match error {
            Some(error) => tracing::debug!(?reason, %error, "TLS handshake failed"),
            None => tracing::debug!(?reason, "TLS handshake failed"),
        }
        Err(reason)
    }

    async fn handshake(
        &self,
        mut stream: TcpStream,
    ) -> Result<TlsStream<TcpStream>, (HandshakeFailure, Option<io::Error>)> {
        // A TLS connection starts with a handshake record (0x16); HTTP with a method's letter.
        let mut first = [0u8; 1];
        match stream.peek(&mut first).await {
            Ok(0) => return Err((HandshakeFailure::closed, None)),
            Ok(_) if first[0].is_ascii_uppercase() => {
                let _ = stream.write_all(PLAIN_HTTP_ANSWER).await;
                let _ = stream.shutdown().await;
                return Err((HandshakeFailure::not_tls, None));
            }
            Ok(_) => {}
            Err(error) => return Err((HandshakeFailure::closed, Some(error))),
        }
        let acceptor = self.inner.read().expect("no code panics while holding the lock").clone();
        acceptor.accept(stream).await.map_err(|error| (classify(&error), Some(error)))
    }
}

/// The verified certificate the client presented on `stream`, if any.
pub fn client_certificate(stream: &TlsStream<TcpStream>) -> Option<ClientCertificate> {
    let (_, connection) = stream.get_ref();
    let leaf = connection.peer_certificates()?.first()?;
    Some(ClientCertificate(Arc::new(leaf.clone().into_owned())))
}

/// The listener's rustls configuration: `certificate` served, `client_verifier` (when client
/// certificates are asked for), `min_version`, ALPN `http/1.1`.
fn server_config(
    certificate: Arc<WatchedKeyPair>,
    min_version: MinVersion,
    client_verifier: Option<Arc<dyn ClientCertVerifier>>,
) -> Arc<ServerConfig> {
    let versions: &[&rustls::SupportedProtocolVersion] = match min_version {
        MinVersion::Tls12 => &[&rustls::version::TLS12, &rustls::version::TLS13],
        MinVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .expect("aws-lc-rs supports TLS 1.2 and 1.3")
        .with_client_cert_verifier(client_verifier.unwrap_or_else(|| Arc::new(NoClientAuth)))
        .with_cert_resolver(certificate);
    config.alpn_protocols = vec![ALPN_HTTP_1_1.to_vec()];
    Arc::new(config)
}

/// A verifier that asks for a client certificate, accepts its absence, and requires one that is
/// presented to chain to a certificate in `ca_file`.
pub fn client_verifier(ca_file: &Path, metrics: &TlsMetrics) -> Result<Arc<dyn ClientCertVerifier>, CertificateError> {
    let certificates = certificate::read_certificates(ca_file)?;
    let verifier = verifier_for(&certificates)?;
    metrics.certificates_loaded(ca_file, &certificates);
    Ok(verifier)
}

/// The CA bundle in one file's contents, and its verifier.
fn client_ca(
    contents: Vec<Content>,
) -> Result<(Vec<CertificateDer<'static>>, Arc<dyn ClientCertVerifier>), CertificateError> {
    let pem = contents.into_iter().next().expect("one file").map_err(CertificateError::Read)?;
    let certificates = certificate::parse_certificates(&pem)?;
    let verifier = verifier_for(&certificates)?;
    Ok((certificates, verifier))
}

fn verifier_for(certificates: &[CertificateDer<'static>]) -> Result<Arc<dyn ClientCertVerifier>, CertificateError> {
    let roots = certificate::trust_store(certificates)?;
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .allow_unauthenticated()
        .build()
        .map_err(|error| CertificateError::Trust(format!("cannot verify client certificates with it: {error}")))
}

/// The reason label for a failed handshake.
fn classify(error: &io::Error) -> HandshakeFailure {
    let Some(tls) = error.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) else {
        return HandshakeFailure::closed;
    };
    match tls {
        rustls::Error::PeerIncompatible(
            PeerIncompatible::SupportedVersionsExtensionRequired
            | PeerIncompatible::Tls12NotOffered
            | PeerIncompatible::Tls12NotOfferedOrEnabled
            | PeerIncompatible::Tls13RequiredForQuic
            // What a TLS 1.0 or 1.1 ClientHello lacks first.
            | PeerIncompatible::SignatureAlgorithmsExtensionRequired,
        ) => HandshakeFailure::protocol_version,
        rustls::Error::PeerIncompatible(_) => HandshakeFailure::no_shared_parameters,
        rustls::Error::NoApplicationProtocol => HandshakeFailure::no_application_protocol,
        rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => {
            HandshakeFailure::bad_client_certificate
        }
        rustls::Error::AlertReceived(_) => HandshakeFailure::rejected_by_client,
        // Not a TLS record at all (junk, or a protocol other than HTTP).
        rustls::Error::InvalidMessage(InvalidMessage::InvalidContentType | InvalidMessage::UnknownProtocolVersion) => {
            HandshakeFailure::not_tls
        }
        _ => HandshakeFailure::other,
    }
}
