//! A certificate and key pair on disk that is reloaded when its files change, without a restart:
//! the listener's serving certificate (`PROXY_TLS_CERT_FILE`, `PROXY_TLS_KEY_FILE`).
//!
//! The files are watched by [`crate::reload`], as every file the proxy re-reads: their contents
//! are compared with what is serving every [`POLL_INTERVAL`], whether the kubelet swapped its
//! `..data` symlink or a tool rewrote them in place.
//!
//! - A new pair that loads is used for the next handshake, logged at info with its serial, and
//!   its expiry goes to the gauge.
//! - A new pair that does not load (a key for another certificate, a truncated file) keeps the
//!   previous pair serving. Files rewritten in place pass through such states for a moment
//!   (certificate written, key not yet), so a broken pair is only reported once it has stayed
//!   the same for two polls; then it is logged once (warn) and counted in
//!   `windows_exporter_proxy_reload_failures_total{file}` and
//!   `windows_exporter_proxy_tls_reload_failures_total`, and not again until the files change.
//! - A new pair that loads but is outside its validity now (expired, or not valid yet) is treated
//!   the same way while the pair serving is still valid: it would only make every new handshake
//!   fail ([`certificate::replacement`]). Go, nginx and kube-rbac-proxy serve it anyway. Once the
//!   serving pair is outside its own validity too, or the new one comes inside its own (a
//!   `notBefore` a little in the future), the next poll takes it.
//!
//! [`WatchedKeyPair`] is rustls' server certificate resolver for the listener.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::reload::{self, Content, Describe, File, Loaded, Rejection, Watch};
use crate::tls::certificate::{self, CertificateError, KeyPair, PairError, PairFile};
use crate::tls::metrics::TlsMetrics;

/// How often the files are read: [`reload::INTERVAL`], as for every file the proxy re-reads.
pub const POLL_INTERVAL: Duration = reload::INTERVAL;

pub use crate::reload::Reading;

/// How the serving pair shows in reload log lines.
const DESCRIBE: Describe = Describe {
    what: "serving certificate",
    reloaded: "certificate reloaded",
    rejected: "new certificate files cannot be used; the previous certificate stays in use",
};

/// A certificate chain and key from two files, reloaded when they change.
pub struct WatchedKeyPair {
    certificate_file: PathBuf,
    key_file: PathBuf,
    /// What the pair is for, in log lines: `serving certificate`.
    purpose: &'static str,
    metrics: TlsMetrics,
    current: RwLock<Arc<KeyPair>>,
    /// Bumped on every reload, so a user can tell the pair changed.
    generation: AtomicU64,
    watch: Watch,
}

impl fmt::Debug for WatchedKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WatchedKeyPair")
            .field("certificate_file", &self.certificate_file)
            .field("key_file", &self.key_file)
            .field("purpose", &self.purpose)
            .finish_non_exhaustive()
    }
}

impl WatchedKeyPair {
    /// Loads the pair (the error says which file is wrong) and records its expiry.
    pub fn load(
        certificate_file: &Path,
        key_file: &Path,
        purpose: &'static str,
        metrics: TlsMetrics,
    ) -> Result<Arc<WatchedKeyPair>, PairError> {
        let files = vec![File::new("PROXY_TLS_CERT_FILE", certificate_file), File::new("PROXY_TLS_KEY_FILE", key_file)];
        let (watch, contents) = Watch::open(Describe { what: purpose, ..DESCRIBE }, files, metrics.reloads().clone());
        let pair = key_pair(contents)?;
        tracing::info!(
            what = purpose,
            file = %certificate_file.display(),
            serial = %reload::serial(&pair.leaf.serial),
            not_after = pair.not_after,
            "certificate loaded"
        );
        metrics.certificate_loaded(certificate_file, pair.not_after);
        warn_if_expired(purpose, certificate_file, &pair);
        Ok(Arc::new(WatchedKeyPair {
            certificate_file: certificate_file.to_owned(),
            key_file: key_file.to_owned(),
            purpose,
            metrics,
            current: RwLock::new(Arc::new(pair)),
            generation: AtomicU64::new(0),
            watch,
        }))
    }

    /// The pair in use now.
    pub fn current(&self) -> Arc<KeyPair> {
        self.current.read().expect("no code panics while holding the lock").clone()
    }

    /// How many times the pair has been replaced since loading.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Reads the files once and reloads or reports as the module documentation says.
    pub fn read(&self) -> Reading {
        let outcome = self.watch.read(|contents| {
            let rejection = |error: PairError| {
                let file = match error.file {
                    PairFile::Certificate => 0,
                    PairFile::Key => 1,
                };
                Rejection::new(file, error)
            };
            let pair = key_pair(contents).map_err(rejection)?;
            let pair = certificate::replacement(pair, &self.current(), certificate::unix_now()).map_err(rejection)?;
            let loaded = Loaded { serial: Some(reload::serial(&pair.leaf.serial)), not_after: Some(pair.not_after) };
            warn_if_expired(self.purpose, &self.certificate_file, &pair);
            let not_after = pair.not_after;
            // Swapped before it is logged: whoever reads the log line and connects gets the new
            // pair.
            *self.current.write().expect("no code panics while holding the lock") = Arc::new(pair);
            self.generation.fetch_add(1, Ordering::AcqRel);
            self.metrics.certificate_loaded(&self.certificate_file, not_after);
            Ok(loaded)
        });
        if outcome == Reading::Rejected {
            self.metrics.reload_failed();
        }
        outcome
    }

    /// Starts the [`reload`] thread that calls [`read`](Self::read) every [`POLL_INTERVAL`]
    /// for as long as the pair is in use elsewhere.
    pub fn watch(self: &Arc<Self>) -> std::io::Result<()> {
        let pair: Weak<WatchedKeyPair> = Arc::downgrade(self);
        reload::spawn("certificate", move || {
            let pair = pair.upgrade()?;
            let outcome = pair.read();
            // Under this module's target too, where operators and tests/tls_serving.rs look.
            tracing::trace!(what = pair.purpose, ?outcome, "certificate files checked");
            Some(outcome)
        })
    }
}

/// The pair in two files' contents (certificate, key).
fn key_pair(contents: Vec<Content>) -> Result<KeyPair, PairError> {
    let mut contents = contents.into_iter();
    let (certificate, key) = (contents.next().expect("two files"), contents.next().expect("two files"));
    match (certificate, key) {
        (Ok(certificate), Ok(key)) => certificate::parse_key_pair(&certificate, &key),
        (Err(error), _) => Err(PairError { file: PairFile::Certificate, error: CertificateError::Read(error) }),
        (_, Err(error)) => Err(PairError { file: PairFile::Key, error: CertificateError::Read(error) }),
    }
}

/// Go and exporter-toolkit serve an expired certificate without a word; at least say so.
fn warn_if_expired(purpose: &'static str, file: &Path, pair: &KeyPair) {
    if pair.not_after <= certificate::unix_now() {
        tracing::warn!(what = purpose, file = %file.display(), not_after = pair.not_after, "certificate has expired; clients will refuse it");
    }
}

impl ResolvesServerCert for WatchedKeyPair {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current().certified.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn testdata(name: &str) -> Vec<u8> {
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/tls/testdata").join(name)).unwrap()
    }

    /// A directory with `tls.crt` and `tls.key`, removed when the test ends.
    struct Files(PathBuf);

    impl Files {
        fn new(test: &str, certificate: &str, key: &str) -> Files {
            let dir = std::env::temp_dir().join(format!("wep-resolver-{}-{test}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let files = Files(dir);
            files.write(certificate, key);
            files
        }

        fn write(&self, certificate: &str, key: &str) {
            std::fs::write(self.certificate(), testdata(certificate)).unwrap();
            std::fs::write(self.key(), testdata(key)).unwrap();
        }

        fn certificate(&self) -> PathBuf {
            self.0.join("tls.crt")
        }

        fn key(&self) -> PathBuf {
            self.0.join("tls.key")
        }

        fn load(&self) -> Arc<WatchedKeyPair> {
            WatchedKeyPair::load(&self.certificate(), &self.key(), "test certificate", TlsMetrics::default()).unwrap()
        }
    }

    impl Drop for Files {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn serial(pair: &WatchedKeyPair) -> Vec<u8> {
        pair.current().leaf.serial.clone()
    }

    #[test]
    fn a_new_pair_serves_after_one_check() {
        let files = Files::new("new", "leaf-ec.pem", "leaf-ec.sec1.pem");
        let pair = files.load();
        assert_eq!(pair.read(), Reading::Unchanged);
        files.write("leaf-rsa.pem", "leaf-rsa.pkcs1.pem");
        assert_eq!(pair.read(), Reading::Reloaded);
        assert_eq!(serial(&pair), vec![7]);
        assert_eq!(pair.generation(), 1);
        assert_eq!(pair.read(), Reading::Unchanged);
    }

    #[test]
    fn a_broken_pair_keeps_the_old_one_and_is_reported_once() {
        let files = Files::new("broken", "leaf-ec.pem", "leaf-ec.sec1.pem");
        let pair = files.load();
        // Half-way through an in-place rewrite: new certificate, old key.
        std::fs::write(files.certificate(), testdata("leaf-rsa.pem")).unwrap();
        assert_eq!(pair.read(), Reading::Unsettled);
        assert_eq!(pair.read(), Reading::Rejected);
        assert_eq!(pair.read(), Reading::StillRejected);
        assert_eq!(serial(&pair), vec![0x12, 0x34, 0xab, 0xcd]);
        assert_eq!(pair.generation(), 0);
        // The writer finishes: the pair is good again and serves.
        std::fs::write(files.key(), testdata("leaf-rsa.pkcs1.pem")).unwrap();
        assert_eq!(pair.read(), Reading::Reloaded);
        assert_eq!(serial(&pair), vec![7]);
    }

    #[test]
    fn a_pair_that_is_fixed_before_the_second_look_is_never_reported() {
        let files = Files::new("fixed", "leaf-ec.pem", "leaf-ec.sec1.pem");
        let pair = files.load();
        std::fs::write(files.certificate(), testdata("leaf-rsa.pem")).unwrap();
        assert_eq!(pair.read(), Reading::Unsettled);
        std::fs::write(files.certificate(), testdata("leaf-ec.pem")).unwrap();
        assert_eq!(pair.read(), Reading::Unchanged);
    }

    #[test]
    fn deleted_files_keep_the_old_pair() {
        let files = Files::new("deleted", "leaf-ec.pem", "leaf-ec.sec1.pem");
        let pair = files.load();
        std::fs::remove_file(files.key()).unwrap();
        assert_eq!(pair.read(), Reading::Unsettled);
        assert_eq!(pair.read(), Reading::Rejected);
        assert_eq!(serial(&pair), vec![0x12, 0x34, 0xab, 0xcd]);
    }
}
