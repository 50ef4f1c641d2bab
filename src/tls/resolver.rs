//! A certificate and key pair on disk that is reloaded when its files change, without a restart.
//!
//! Kubernetes updates a Secret volume by writing a new timestamped directory and swapping the
//! `..data` symlink that `tls.crt` and `tls.key` point through; other tools rewrite the files in
//! place. Neither sends a signal the proxy could wait for on every platform, so a thread reads
//! both files every [`POLL_INTERVAL`] and compares their contents with what is serving (a few KiB:
//! cheaper and surer than trusting mtimes, which a copy may preserve and FAT rounds to 2 s).
//!
//! - A new pair that loads is used for the next handshake, logged at info with its serial, and
//!   its expiry goes to the gauge.
//! - A new pair that does not load (a key for another certificate, a truncated file) keeps the
//!   previous pair serving. Files rewritten in place pass through such states for a moment
//!   (certificate written, key not yet), so a broken pair is only reported once it has stayed
//!   the same for two polls; then it is logged once (warn) and counted in
//!   `windows_exporter_proxy_tls_reload_failures_total`, and not again until the files change.
//! - A new pair that loads but is outside its validity now (expired, or not valid yet) is treated
//!   the same way while the pair serving is still valid: it would only make every new handshake
//!   fail ([`certificate::replacement`]). Go, nginx and kube-rbac-proxy serve it anyway. Once the
//!   serving pair is outside its own validity too, or the new one comes inside its own (a
//!   `notBefore` a little in the future), the next poll takes it.
//!
//! [`WatchedKeyPair`] is rustls' certificate resolver on both sides: it serves the listener and
//! presents the client certificate on the exporter hop.

use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use rustls::SignatureScheme;
use rustls::client::ResolvesClientCert;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::tls::certificate::{self, KeyPair, PairError, PairFile};
use crate::tls::metrics::TlsMetrics;

/// How often the files are read. Rotation is picked up within this (the issue allows 10 s).
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// What one look at the files found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    /// The files hold what is serving.
    Unchanged,
    /// A new pair loaded and is serving now.
    Reloaded,
    /// The files changed into a pair that does not load; waiting one more poll in case they are
    /// still being written.
    Unsettled,
    /// The files hold a pair that does not load, now reported (logged and counted).
    Rejected,
    /// The same unusable pair as last time, already reported.
    StillRejected,
}

/// A certificate chain and key from two files, reloaded when they change.
pub struct WatchedKeyPair {
    certificate_file: PathBuf,
    key_file: PathBuf,
    /// What the pair is for, in log lines: `serving certificate`, `exporter client certificate`.
    purpose: &'static str,
    metrics: TlsMetrics,
    current: RwLock<Arc<KeyPair>>,
    /// Bumped on every reload, so a client can tell its pooled connections were made with an
    /// older certificate.
    generation: AtomicU64,
    seen: Mutex<Seen>,
}

/// Fingerprints of file contents, for telling what changed.
struct Seen {
    serving: u64,
    /// Unusable contents seen once, reported when seen again.
    pending: Option<u64>,
    /// Unusable contents already reported.
    reported: Option<u64>,
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
        let (fingerprint, pair) = read(certificate_file, key_file);
        let pair = pair?;
        tracing::info!(
            purpose,
            file = %certificate_file.display(),
            serial = %pair.leaf.serial_hex(),
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
            seen: Mutex::new(Seen { serving: fingerprint, pending: None, reported: None }),
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
    pub fn check(&self) -> Reload {
        let (fingerprint, pair) = read(&self.certificate_file, &self.key_file);
        let mut seen = self.seen.lock().expect("no code panics while holding the lock");
        if fingerprint == seen.serving {
            // Back to (or still at) what serves: forget any broken state in between.
            seen.pending = None;
            seen.reported = None;
            return Reload::Unchanged;
        }
        let pair = pair.and_then(|new| certificate::replacement(new, &self.current(), certificate::unix_now()));
        match pair {
            Ok(pair) => {
                let (serial, not_after) = (pair.leaf.serial_hex(), pair.not_after);
                warn_if_expired(self.purpose, &self.certificate_file, &pair);
                // Swapped before it is logged or counted: whoever reads the log line and connects
                // gets the new pair.
                *self.current.write().expect("no code panics while holding the lock") = Arc::new(pair);
                self.generation.fetch_add(1, Ordering::AcqRel);
                *seen = Seen { serving: fingerprint, pending: None, reported: None };
                self.metrics.certificate_loaded(&self.certificate_file, not_after);
                tracing::info!(
                    purpose = self.purpose,
                    file = %self.certificate_file.display(),
                    %serial,
                    not_after,
                    "certificate reloaded"
                );
                Reload::Reloaded
            }
            Err(_) if seen.reported == Some(fingerprint) => Reload::StillRejected,
            Err(error) if seen.pending == Some(fingerprint) => {
                let file = match error.file {
                    PairFile::Certificate => &self.certificate_file,
                    PairFile::Key => &self.key_file,
                };
                tracing::warn!(
                    purpose = self.purpose,
                    file = %file.display(),
                    %error,
                    "new certificate files cannot be used; the previous certificate stays in use"
                );
                self.metrics.reload_failed();
                seen.pending = None;
                seen.reported = Some(fingerprint);
                Reload::Rejected
            }
            Err(_) => {
                seen.pending = Some(fingerprint);
                Reload::Unsettled
            }
        }
    }

    /// Starts a thread that calls [`check`](Self::check) every `interval` for as long as the
    /// pair is in use elsewhere. A thread, not a task: file reads block, and the runtime has
    /// only one thread to serve scrapes with.
    pub fn watch(self: &Arc<Self>, interval: Duration) -> std::io::Result<()> {
        let pair: Weak<WatchedKeyPair> = Arc::downgrade(self);
        std::thread::Builder::new().name("certificate-reload".into()).stack_size(256 << 10).spawn(move || {
            loop {
                std::thread::sleep(interval);
                let Some(pair) = pair.upgrade() else { return };
                let outcome = pair.check();
                tracing::trace!(purpose = pair.purpose, ?outcome, "certificate files checked");
            }
        })?;
        Ok(())
    }
}

/// Both files' contents, fingerprinted (read errors included, so a file that disappears and comes
/// back unchanged is noticed), and the pair they make.
fn read(certificate_file: &Path, key_file: &Path) -> (u64, Result<KeyPair, PairError>) {
    let certificate = certificate::read_pem(certificate_file);
    let key = certificate::read_pem(key_file);
    let mut hasher = DefaultHasher::new();
    for contents in [&certificate, &key] {
        match contents {
            Ok(bytes) => bytes.hash(&mut hasher),
            Err(error) => error.to_string().hash(&mut hasher),
        }
    }
    let pair = match (certificate, key) {
        (Ok(certificate), Ok(key)) => certificate::parse_key_pair(&certificate, &key),
        (Err(error), _) => Err(PairError { file: PairFile::Certificate, error }),
        (_, Err(error)) => Err(PairError { file: PairFile::Key, error }),
    };
    (hasher.finish(), pair)
}

/// Go and exporter-toolkit serve an expired certificate without a word; at least say so.
fn warn_if_expired(purpose: &'static str, file: &Path, pair: &KeyPair) {
    if pair.not_after <= certificate::unix_now() {
        tracing::warn!(purpose, file = %file.display(), not_after = pair.not_after, "certificate has expired; clients will refuse it");
    }
}

impl ResolvesServerCert for WatchedKeyPair {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current().certified.clone())
    }
}

impl ResolvesClientCert for WatchedKeyPair {
    fn resolve(&self, _root_hint_subjects: &[&[u8]], _sigschemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.current().certified.clone())
    }

    fn has_certs(&self) -> bool {
        true
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
        assert_eq!(pair.check(), Reload::Unchanged);
        files.write("leaf-rsa.pem", "leaf-rsa.pkcs1.pem");
        assert_eq!(pair.check(), Reload::Reloaded);
        assert_eq!(serial(&pair), vec![7]);
        assert_eq!(pair.generation(), 1);
        assert_eq!(pair.check(), Reload::Unchanged);
    }

    #[test]
    fn a_broken_pair_keeps_the_old_one_and_is_reported_once() {
        let files = Files::new("broken", "leaf-ec.pem", "leaf-ec.sec1.pem");
        let pair = files.load();
        // Half-way through an in-place rewrite: new certificate, old key.
        std::fs::write(files.certificate(), testdata("leaf-rsa.pem")).unwrap();
        assert_eq!(pair.check(), Reload::Unsettled);
        assert_eq!(pair.check(), Reload::Rejected);
        assert_eq!(pair.check(), Reload::StillRejected);
        assert_eq!(serial(&pair), vec![0x12, 0x34, 0xab, 0xcd]);
        assert_eq!(pair.generation(), 0);
        // The writer finishes: the pair is good again and serves.
        std::fs::write(files.key(), testdata("leaf-rsa.pkcs1.pem")).unwrap();
        assert_eq!(pair.check(), Reload::Reloaded);
        assert_eq!(serial(&pair), vec![7]);
    }

    #[test]
    fn a_pair_that_is_fixed_before_the_second_look_is_never_reported() {
        let files = Files::new("fixed", "leaf-ec.pem", "leaf-ec.sec1.pem");
        let pair = files.load();
        std::fs::write(files.certificate(), testdata("leaf-rsa.pem")).unwrap();
        assert_eq!(pair.check(), Reload::Unsettled);
        std::fs::write(files.certificate(), testdata("leaf-ec.pem")).unwrap();
        assert_eq!(pair.check(), Reload::Unchanged);
    }

    #[test]
    fn deleted_files_keep_the_old_pair() {
        let files = Files::new("deleted", "leaf-ec.pem", "leaf-ec.sec1.pem");
        let pair = files.load();
        std::fs::remove_file(files.key()).unwrap();
        assert_eq!(pair.check(), Reload::Unsettled);
        assert_eq!(pair.check(), Reload::Rejected);
        assert_eq!(serial(&pair), vec![0x12, 0x34, 0xab, 0xcd]);
    }

    #[test]
    fn the_pair_resolves_on_both_sides() {
        let files = Files::new("resolve", "leaf-ec.pem", "leaf-ec.sec1.pem");
        let pair = files.load();
        assert!(ResolvesClientCert::has_certs(pair.as_ref()));
        let key = ResolvesClientCert::resolve(pair.as_ref(), &[], &[]).unwrap();
        assert!(Arc::ptr_eq(&key, &pair.current().certified));
    }
}
