//! TLS on the hop to the exporter: the rustls client configuration, and what a failed
//! handshake means in an operator's words.
//!
//! Only the CAs in `PROXY_EXPORTER_CA_FILE` are trusted, never the system store: the exporter's
//! certificate comes from the cluster's own CA, and a public CA vouching for some name is no
//! reason to send it the proxy's credentials. The name checked is the configured server name (an
//! IP address is checked against IP SANs, as Go's crypto/tls and Prometheus do). The proxy's client
//! certificate, if any, is presented whenever the exporter asks for one
//! (exporter-toolkit's `RequireAndVerifyClientCert`). No ALPN is offered (hyper-rustls leaves it
//! empty for an HTTP/1.1-only client), so an exporter-toolkit server, which enables h2 by
//! default, answers in HTTP/1.1.
//!
//! The connector is hyper-rustls's `HttpsConnector` around the same `HttpConnector` plain HTTP
//! uses (connect timeout, no Nagle, keepalive): it is the rustls team's glue between hyper-util's
//! connector and hyper's connections (the pool is [`super::client`]'s own), and takes a fixed
//! server name, where tokio-rustls alone would need our own connector service and stream type
//! implementing hyper's `Read`/`Write`.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::sign::CertifiedKey;
use rustls::{AlertDescription, CertificateError, ClientConfig, DigitallySignedStruct, Error, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::exporter::settings::Trust;

/// A client configuration for the exporter: `trust` decides which certificates are accepted,
/// `identity` is presented when the exporter asks for a client certificate.
pub fn client_config(trust: &Trust, identity: Option<Arc<CertifiedKey>>) -> ClientConfig {
    let provider = crate::tls::provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("the aws-lc-rs provider supports rustls' default protocol versions");
    let builder = match trust {
        Trust::Bundle { roots, .. } => {
            let verifier = WebPkiServerVerifier::builder_with_provider(roots.clone(), provider)
                .build()
                .expect("the configuration check made sure the bundle has trust anchors");
            builder.with_webpki_verifier(verifier)
        }
        Trust::InsecureSkipVerify => {
            builder.dangerous().with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        }
    };
    match identity {
        Some(key) => builder.with_client_cert_resolver(Arc::new(Identity(key))),
        None => builder.with_no_client_auth(),
    }
}

/// Always presents the one client certificate the proxy has. A new certificate gets a new
/// configuration (and a new connection pool), so this never changes under a connection.
struct Identity(Arc<CertifiedKey>);

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key, whatever a later rustls prints for it.
        f.write_str("Identity(..)")
    }
}

impl ResolvesClientCert for Identity {
    fn resolve(&self, _root_hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// `PROXY_EXPORTER_INSECURE_SKIP_VERIFY=true`: any certificate for any name is accepted. The
/// handshake signatures are still checked, so the connection is at least encrypted to whoever
/// holds the presented certificate's key.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// What the hop needs to explain a TLS failure: the name it checked and whether it had a client
/// certificate to offer.
#[derive(Debug, Clone)]
pub struct HopContext {
    /// The server name checked against the exporter's certificate.
    pub server_name: String,
    /// Whether the proxy has a client certificate.
    pub has_identity: bool,
}

/// A TLS failure on the hop, as one line that names the cause and the setting to check.
pub fn explain(error: &Error, context: &HopContext) -> String {
    match error {
        Error::InvalidCertificate(cause) => explain_certificate(cause, context),
        Error::AlertReceived(alert) => explain_alert(*alert, context),
        Error::InvalidMessage(_) | Error::InappropriateMessage { .. } | Error::InappropriateHandshakeMessage { .. } => {
            format!(
                "TLS handshake failed: the exporter's reply is not TLS ({error}); does it serve HTTPS, or should PROXY_EXPORTER_SCHEME be http?"
            )
        }
        Error::PeerIncompatible(_) | Error::NoCertificatesPresented => {
            format!("TLS handshake failed: the exporter's TLS is incompatible with the proxy's: {error}")
        }
        other => format!("TLS handshake failed: {other}"),
    }
}

fn explain_certificate(cause: &CertificateError, context: &HopContext) -> String {
    match cause {
        CertificateError::UnknownIssuer => {
            "TLS: unknown CA: the exporter's certificate is not signed by a CA in PROXY_EXPORTER_CA_FILE".to_owned()
        }
        CertificateError::NotValidForName => format!(
            "TLS: name mismatch: the exporter's certificate is not valid for {} (PROXY_EXPORTER_SERVER_NAME, default PROXY_HOSTIP)",
            context.server_name
        ),
        CertificateError::NotValidForNameContext { presented, .. } => format!(
            "TLS: name mismatch: the exporter's certificate is for {} and not for {} (PROXY_EXPORTER_SERVER_NAME, default PROXY_HOSTIP)",
            if presented.is_empty() { "no name".to_owned() } else { presented.join(", ") },
            context.server_name
        ),
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            "TLS: the exporter's certificate has expired".to_owned()
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "TLS: the exporter's certificate is not valid yet (is the node's clock right?)".to_owned()
        }
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            "TLS: the exporter's certificate is not for TLS servers (extendedKeyUsage lacks serverAuth)".to_owned()
        }
        other => format!("TLS: the exporter's certificate is not valid: {}", Error::InvalidCertificate(other.clone())),
    }
}

fn explain_alert(alert: AlertDescription, context: &HopContext) -> String {
    use AlertDescription as A;
    match (alert, context.has_identity) {
        // TLS 1.3 defines certificate_required for a client that presents nothing; Go's
        // crypto/tls (exporter-toolkit) and TLS 1.2 servers may send bad_certificate or
        // handshake_failure instead.
        (A::CertificateRequired, false) | (A::BadCertificate | A::HandshakeFailure, false) => {
            "TLS: client certificate required: the exporter asks for one and the proxy has none; set PROXY_EXPORTER_CLIENT_CERT_FILE and PROXY_EXPORTER_CLIENT_KEY_FILE".to_owned()
        }
        (
            A::CertificateRequired
            | A::BadCertificate
            | A::UnknownCA
            | A::CertificateUnknown
            | A::CertificateExpired
            | A::CertificateRevoked
            | A::UnsupportedCertificate
            | A::AccessDenied,
            true,
        ) => format!(
            "TLS: the exporter rejected the proxy's client certificate ({alert:?} alert): is PROXY_EXPORTER_CLIENT_CERT_FILE signed by the CA in the exporter's client_ca_file?"
        ),
        (other, _) => format!("TLS: the exporter ended the handshake with a {other:?} alert"),
    }
}

/// The rustls error somewhere in `error`'s chain of causes, if any. tokio-rustls wraps it in an
/// `io::Error` and hyper-rustls wraps that in another; `io::Error::source()` skips the error it
/// wraps, so each `io::Error` is opened with `get_ref()` instead.
pub fn find_tls_error<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a Error> {
    let mut next = Some(error);
    while let Some(current) = next {
        if let Some(tls) = current.downcast_ref::<Error>() {
            return Some(tls);
        }
        next = match current.downcast_ref::<std::io::Error>() {
            Some(io) => io.get_ref().map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => current.source(),
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(has_identity: bool) -> HopContext {
        HopContext { server_name: "10.240.0.4".to_owned(), has_identity }
    }

    #[test]
    fn each_cause_names_the_setting_to_check() {
        let unknown = explain(&Error::InvalidCertificate(CertificateError::UnknownIssuer), &context(true));
        assert!(unknown.contains("unknown CA") && unknown.contains("PROXY_EXPORTER_CA_FILE"), "{unknown}");
        let name = explain(
            &Error::InvalidCertificate(CertificateError::NotValidForNameContext {
                expected: ServerName::try_from("10.240.0.4").unwrap(),
                presented: vec!["DnsName(\"exporter.internal\")".to_owned()],
            }),
            &context(true),
        );
        assert!(name.contains("name mismatch") && name.contains("10.240.0.4"), "{name}");
        let required = explain(&Error::AlertReceived(AlertDescription::CertificateRequired), &context(false));
        assert!(required.contains("client certificate required"), "{required}");
        let rejected = explain(&Error::AlertReceived(AlertDescription::BadCertificate), &context(true));
        assert!(rejected.contains("rejected the proxy's client certificate"), "{rejected}");
    }

    #[test]
    fn the_rustls_error_is_found_inside_io_errors() {
        let inner = Error::AlertReceived(AlertDescription::BadCertificate);
        // As hyper-rustls hands it over: tokio-rustls' io::Error inside another.
        let io = std::io::Error::other(std::io::Error::new(std::io::ErrorKind::InvalidData, inner));
        let found = find_tls_error(&io).expect("found");
        assert_eq!(found, &Error::AlertReceived(AlertDescription::BadCertificate));
        assert!(find_tls_error(&std::io::Error::other("no")).is_none());
    }
}
