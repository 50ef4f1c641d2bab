//! The TLS side of the listener: the rustls server configuration and the handshake of one
//! connection.
//!
//! - HTTP/1.1 only: ALPN offers `http/1.1`; a client offering only other protocols (h2) fails
//!   the handshake, one offering none is served.
//! - TLS 1.2 and 1.3, or 1.3 only (`PROXY_TLS_MIN_VERSION`), with rustls' default cipher suites
//!   (all AEAD with forward secrecy, as exporter-toolkit's defaults).
//! - With `PROXY_CLIENT_CA_FILE` the handshake asks for a client certificate without requiring
//!   one (the kubelet's probes send none); a certificate that is presented must verify against
//!   that CA, or the handshake fails.
//! - The handshake runs inside the connection's header-read deadline: a client that connects
//!   and sends nothing, or trickles its ClientHello, is cut off like a slowloris.
//! - Plain HTTP sent to the HTTPS port gets `400` with a line saying so (what Go servers answer),
//!   so a Prometheus target configured with `scheme: http` shows a reason rather than a reset.
//!
//! Failures are counted by [`HandshakeFailure`] and logged at debug only: port scanners and
//! load-balancer TCP checks would otherwise fill the log.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::server::danger::ClientCertVerifier;
use rustls::server::{NoClientAuth, WebPkiClientVerifier};
use rustls::{InvalidMessage, PeerIncompatible, RootCertStore, ServerConfig};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;

use crate::tls::certificate::{self, CertificateError, PairFile};
use crate::tls::metrics::{HandshakeFailure, TlsMetrics};
use crate::tls::resolver::{POLL_INTERVAL, WatchedKeyPair};
use crate::tls::{ClientCertificate, provider};

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
    inner: tokio_rustls::TlsAcceptor,
    metrics: TlsMetrics,
}

impl Acceptor {
    /// The listener's TLS from its checked settings: loads the certificate and key and starts
    /// watching them for rotation, and loads the client CA. The settings were checked moments
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
        certificate
            .watch(POLL_INTERVAL)
            .map_err(|error| format!("cannot start the certificate reload thread: {error}"))?;
        let client_verifier = match &settings.client_ca_file {
            None => None,
            Some(ca_file) => Some(client_verifier(ca_file, metrics).map_err(|error| {
                format!("PROXY_CLIENT_CA_FILE={:?} is not valid: {error}", ca_file.display().to_string())
            })?),
        };
        Ok(Acceptor::new(certificate, settings.min_version, client_verifier, metrics.clone()))
    }

    /// Serves `certificate`; `client_verifier` from [`client_verifier`] when client certificates
    /// are asked for.
    pub fn new(
        certificate: Arc<WatchedKeyPair>,
        min_version: MinVersion,
        client_verifier: Option<Arc<dyn ClientCertVerifier>>,
        metrics: TlsMetrics,
    ) -> Acceptor {
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
        Acceptor { inner: tokio_rustls::TlsAcceptor::from(Arc::new(config)), metrics }
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
        self.inner.accept(stream).await.map_err(|error| (classify(&error), Some(error)))
    }
}

/// The verified certificate the client presented on `stream`, if any.
pub fn client_certificate(stream: &TlsStream<TcpStream>) -> Option<ClientCertificate> {
    let (_, connection) = stream.get_ref();
    let leaf = connection.peer_certificates()?.first()?;
    Some(ClientCertificate(Arc::new(leaf.clone().into_owned())))
}

/// A verifier that asks for a client certificate, accepts its absence, and requires one that is
/// presented to chain to a certificate in `ca_file`.
pub fn client_verifier(ca_file: &Path, metrics: &TlsMetrics) -> Result<Arc<dyn ClientCertVerifier>, CertificateError> {
    let certificates = certificate::read_certificates(ca_file)?;
    let mut roots = RootCertStore::empty();
    for (i, der) in certificates.iter().enumerate() {
        roots.add(der.clone()).map_err(|error| CertificateError::Certificate {
            index: i + 1,
            reason: format!("cannot be a trust anchor: {error}"),
        })?;
    }
    metrics.certificates_loaded(ca_file, &certificates);
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .allow_unauthenticated()
        .build()
        .map_err(|error| CertificateError::Key(format!("cannot verify client certificates with it: {error}")))
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
