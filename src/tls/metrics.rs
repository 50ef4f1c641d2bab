//! The TLS metrics on `/proxy/metrics`.
//!
//! - `windows_exporter_proxy_tls_certificate_expiry_timestamp_seconds{file}`: for every
//!   certificate file the proxy has loaded (serving chain, client CA, exporter CA and client
//!   certificate), the earliest `notAfter` in it, in Unix seconds. Alert on
//!   `... - time() < 14 * 86400`. Updated on every successful (re)load, so a rotated certificate
//!   shows its new date.
//! - `windows_exporter_proxy_tls_handshake_failures_total{reason}`: failed handshakes on the
//!   listener, by [`HandshakeFailure`].
//! - `windows_exporter_proxy_tls_reload_failures_total`: certificate pair rotations (serving
//!   pair, exporter client certificate) that could not be used (the previous pair stayed in use).
//!   Kept for existing alerts; `windows_exporter_proxy_reload_failures_total{file}`
//!   ([`crate::reload::ReloadFailures`]) counts these and every other re-read file, by file.
//!
//! [`TlsMetrics`] is a cheap clone; hand one to whatever loads a certificate file.

use std::path::Path;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rustls_pki_types::CertificateDer;

use crate::reload::ReloadFailures;
use crate::tls::certificate;

/// Why a TLS handshake on the listener failed: the `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)] // label values are written as Prometheus expects them
pub enum HandshakeFailure {
    /// Not finished within `PROXY_HEADER_READ_TIMEOUT_SECONDS` (a silent or slow client).
    timeout,
    /// The client closed or reset the connection mid-handshake (TCP probes, port scanners).
    closed,
    /// The first bytes were not TLS: plain HTTP sent to the HTTPS port.
    not_tls,
    /// The client offered only versions below `PROXY_TLS_MIN_VERSION`.
    protocol_version,
    /// No cipher suite, key exchange group or signature scheme in common.
    no_shared_parameters,
    /// The client offered ALPN protocols but not `http/1.1` (for example h2 only).
    no_application_protocol,
    /// The client's certificate did not verify against `PROXY_CLIENT_CA_FILE`.
    bad_client_certificate,
    /// The client rejected the proxy's certificate (sent an alert: unknown CA, bad name, ...).
    rejected_by_client,
    /// Anything else (a malformed handshake message, ...).
    other,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct FileLabels {
    file: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabels {
    reason: HandshakeFailure,
}

/// Handles to the TLS metrics.
#[derive(Clone, Default)]
pub struct TlsMetrics {
    expiry: Family<FileLabels, Gauge>,
    handshake_failures: Family<ReasonLabels, Counter>,
    reload_failures: Counter,
    reloads: ReloadFailures,
}

impl TlsMetrics {
    /// Registers the TLS metrics in `registry` (the proxy's, prefixed `windows_exporter_proxy`).
    pub fn register(registry: &mut Registry) -> TlsMetrics {
        let metrics = TlsMetrics::default();
        registry.register(
            "tls_certificate_expiry_timestamp_seconds",
            "Earliest notAfter of the certificates in each certificate file the proxy loaded, in Unix seconds",
            metrics.expiry.clone(),
        );
        registry.register(
            "tls_handshake_failures",
            "Failed TLS handshakes on the listener by reason",
            metrics.handshake_failures.clone(),
        );
        registry.register(
            "tls_reload_failures",
            "Certificate rotations that could not be used; the previous certificate kept serving",
            metrics.reload_failures.clone(),
        );
        metrics
    }

    /// These handles, counting failed reloads of every file in `reloads` too.
    pub fn with_reloads(mut self, reloads: ReloadFailures) -> TlsMetrics {
        self.reloads = reloads;
        self
    }

    /// Where failed reloads are counted by file.
    pub fn reloads(&self) -> &ReloadFailures {
        &self.reloads
    }

    /// Records that `file` was (re)loaded and expires at `not_after` (Unix seconds).
    pub fn certificate_loaded(&self, file: &Path, not_after: i64) {
        self.expiry.get_or_create(&FileLabels { file: file.display().to_string() }).set(not_after);
    }

    /// Records a loaded file from its certificates (the earliest `notAfter` counts); a file
    /// whose certificates all fail to parse is left out.
    pub fn certificates_loaded(&self, file: &Path, certificates: &[CertificateDer<'_>]) {
        if let Some(not_after) = certificate::earliest_expiry(certificates) {
            self.certificate_loaded(file, not_after);
        }
    }

    /// Counts a failed handshake.
    pub fn handshake_failed(&self, reason: HandshakeFailure) {
        self.handshake_failures.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// Counts a certificate pair rotation that could not be used.
    pub fn reload_failed(&self) {
        self.reload_failures.inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_exposed_with_the_proxy_prefix() {
        let mut registry = Registry::with_prefix("windows_exporter_proxy");
        let metrics = TlsMetrics::register(&mut registry);
        metrics.certificate_loaded(Path::new("/tls/tls.crt"), 2_111_498_827);
        metrics.handshake_failed(HandshakeFailure::not_tls);
        metrics.handshake_failed(HandshakeFailure::not_tls);
        metrics.reload_failed();
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            "windows_exporter_proxy_tls_certificate_expiry_timestamp_seconds{file=\"/tls/tls.crt\"} 2111498827",
            "windows_exporter_proxy_tls_handshake_failures_total{reason=\"not_tls\"} 2",
            "windows_exporter_proxy_tls_reload_failures_total 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }
}
