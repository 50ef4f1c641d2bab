//! TLS: serving HTTPS with rustls, and the certificate files every TLS setting of the proxy reads.
//!
//! | module | owns |
//! |---|---|
//! | [`acceptor`] | the listener's rustls configuration (ALPN `http/1.1`, min version, client certificates) and one connection's handshake |
//! | [`resolver`] | a certificate and key on disk, reloaded when they change (kubelet `..data` swap or in place) |
//! | [`certificate`] | PEM files: chains and bundles, PKCS#8/PKCS#1/SEC1 keys, a key checked against its certificate |
//! | [`x509`] | the fields read from a certificate: serial, `notAfter`, common name, subject alternative names |
//! | [`metrics`] | the TLS metrics on `/proxy/metrics`: certificate expiry per file, handshake and reload failures |
//!
//! The crypto provider is aws-lc-rs (rustls' default): it cross-builds for
//! `x86_64-pc-windows-gnu` with only the mingw toolchain and keeps the `.exe`'s import list to the
//! DLLs nanoserver ships (`windows/allowed-imports.txt`); ring would add `bcrypt.dll` and
//! `advapi32.dll`. Everything here uses [`provider`] explicitly rather than a process-wide default,
//! so no code path depends on which crate happened to install one first.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls_pki_types::CertificateDer;

pub mod acceptor;
pub mod certificate;
pub mod metrics;
pub mod resolver;
pub mod x509;

/// The crypto provider for every TLS configuration the proxy builds (serving and the exporter hop).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The verified certificate a client presented in the TLS handshake (the leaf), put into each
/// request's extensions by `connection` for HTTPS connections whose client sent one; absent
/// otherwise. Cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate(pub Arc<CertificateDer<'static>>);
