//! The hop's settings: how the proxy reaches windows_exporter (plain or TLS, which certificates
//! it trusts, its own client certificate and basic-auth login). `config/exporter.rs` reads and
//! checks the `PROXY_EXPORTER_*` variables into them; the client ([`super::Exporter`]), its TLS
//! configuration ([`super::tls`]) and the file watch ([`super::reload`]) consume them.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls_pki_types::{CertificateDer, ServerName};

use crate::tls::certificate::KeyPair;

/// How the proxy reaches the exporter, checked.
#[derive(Debug, Clone, Default)]
pub struct ExporterSettings {
    /// `Some` for `https`.
    pub tls: Option<HopTls>,
    /// The credentials the proxy sends on every exporter request, if any.
    pub basic_auth: Option<ExporterLogin>,
}

/// TLS to the exporter.
#[derive(Debug, Clone)]
pub struct HopTls {
    /// Which certificates are accepted from the exporter.
    pub trust: Trust,
    /// Checked against the exporter's certificate and sent as SNI (DNS names only).
    pub server_name: ServerName<'static>,
    /// The proxy's client certificate, if it has one.
    pub identity: Option<ClientIdentity>,
}

/// Which exporter certificates are accepted.
#[derive(Debug, Clone)]
pub enum Trust {
    /// Those that chain to one of these CAs (from `PROXY_EXPORTER_CA_FILE`).
    Bundle {
        /// The file, for the expiry metric and messages.
        file: PathBuf,
        /// Its certificates.
        certificates: Vec<CertificateDer<'static>>,
        /// The same, as trust anchors.
        roots: Arc<RootCertStore>,
    },
    /// Any (`PROXY_EXPORTER_INSECURE_SKIP_VERIFY=true`).
    InsecureSkipVerify,
}

/// The proxy's client certificate: its files (re-read when they change) and what they held at
/// start.
#[derive(Debug, Clone)]
pub struct ClientIdentity {
    /// `PROXY_EXPORTER_CLIENT_CERT_FILE`.
    pub cert_file: PathBuf,
    /// `PROXY_EXPORTER_CLIENT_KEY_FILE`.
    pub key_file: PathBuf,
    /// The pair as loaded at start.
    pub loaded: KeyPair,
}

/// The proxy's own basic-auth login to the exporter (scrapers' logins to the proxy are checked
/// by `auth::basic`, a different thing).
#[derive(Clone)]
pub struct ExporterLogin {
    /// `PROXY_EXPORTER_BASIC_AUTH_USERNAME`.
    pub username: String,
    /// `PROXY_EXPORTER_BASIC_AUTH_PASSWORD_FILE`.
    pub password_file: PathBuf,
    /// The file's first line.
    pub password: String,
}

impl fmt::Debug for ExporterLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the password.
        f.debug_struct("ExporterLogin")
            .field("username", &self.username)
            .field("password_file", &self.password_file)
            .finish_non_exhaustive()
    }
}

impl ExporterSettings {
    /// Whether the proxy authenticates itself to the exporter (basic auth or a client
    /// certificate): then `PROXY_FORWARD_AUTHORIZATION=auto` forwards no scraper credential.
    pub fn sends_credentials(&self) -> bool {
        self.basic_auth.is_some() || self.tls.as_ref().is_some_and(|tls| tls.identity.is_some())
    }
}

/// How the proxy talks to the exporter, as `PROXY_EXPORTER_SCHEME` says (the client turns it into
/// an `http::uri::Scheme` for its URIs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExporterScheme {
    /// Plain HTTP.
    Http,
    /// HTTPS.
    Https,
}
