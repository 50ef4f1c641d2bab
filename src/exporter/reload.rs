//! The hop's files, re-read while the proxy runs: the client certificate pair
//! (`PROXY_EXPORTER_CLIENT_CERT_FILE` / `_KEY_FILE`) and the password file
//! (`PROXY_EXPORTER_BASIC_AUTH_PASSWORD_FILE`), as Prometheus re-reads its `password_file`.
//!
//! Every [`RELOAD_INTERVAL`] the files' bytes are compared with those last used. Comparing
//! contents catches every way a file changes: the kubelet's `..data` symlink swap of a Secret
//! volume, cert-manager's csi-driver, an editor's rename or an in-place write that keeps the
//! mtime. The files are a few kilobytes on a local (usually tmpfs) volume, so reading them on
//! the runtime thread costs microseconds.
//!
//! A new certificate pair replaces the exporter's connection pool, so connections made with the
//! old certificate are dropped, not kept alive until the exporter's idle timeout (the exporter
//! checked the certificate once, at the handshake). A new password only changes the header.
//!
//! A broken new file keeps the old one in use. Files replaced one at a time (cert, then key) are
//! mismatched for a moment, so a failure is only reported when the same bytes still fail one
//! interval later: then it is logged once, at warn, and counted in
//! `windows_exporter_proxy_tls_reload_failures_total` (certificate pairs), until the files
//! change again. A new certificate that loads but is outside its validity now (expired, or not
//! valid yet) counts as broken while the one in use is still valid, as for the serving pair
//! ([`certificate::replacement`]): the exporter would refuse it at every new handshake.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::exporter::Exporter;
use crate::exporter::credentials::{Credentials, read_password};
use crate::tls::certificate;
use crate::tls::metrics::TlsMetrics;

/// How often the files are compared with those in use: a rotation is picked up within this.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(5);

/// What to watch.
pub struct Watched {
    /// The client certificate and key files.
    pub identity: Option<(PathBuf, PathBuf)>,
    /// The basic-auth username and its password file.
    pub password: Option<(String, PathBuf)>,
}

/// Watches `watched` for as long as the runtime runs, installing good new files into
/// `exporter`. Does nothing when there is nothing to watch.
pub fn spawn(exporter: Exporter, watched: Watched, metrics: TlsMetrics) {
    if watched.identity.is_none() && watched.password.is_none() {
        return;
    }
    // The pair in use, read again with the snapshot, to compare a new pair's validity with.
    let mut identity = watched
        .identity
        .map(|(cert, key)| (FileState::new(&[&cert, &key]), certificate::read_key_pair(&cert, &key).ok(), cert, key));
    let mut password = watched.password.map(|(user, file)| (FileState::new(&[&file]), user, file));
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(RELOAD_INTERVAL);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval.tick().await; // the first tick is immediate; the files were just loaded
        loop {
            interval.tick().await;
            if let Some((state, in_use, cert_file, key_file)) = identity.as_mut() {
                let load = || {
                    let new = certificate::read_key_pair(cert_file, key_file)?;
                    match in_use {
                        Some(current) => certificate::replacement(new, current, certificate::unix_now()),
                        None => Ok(new),
                    }
                };
                match state.compare(&[cert_file, key_file], load) {
                    Check::Unchanged => {}
                    Check::Loaded(pair) => {
                        *in_use = Some(pair.clone());
                        metrics.certificate_loaded(cert_file, pair.not_after);
                        exporter.set_identity(pair.certified.clone());
                        tracing::info!(
                            file = %cert_file.display(),
                            serial = %hex(&pair.leaf.serial),
                            "exporter client certificate reloaded; connections made with the old one closed"
                        );
                    }
                    Check::Failed(error) => {
                        metrics.reload_failed();
                        let name = match error.file {
                            certificate::PairFile::Certificate => "PROXY_EXPORTER_CLIENT_CERT_FILE",
                            certificate::PairFile::Key => "PROXY_EXPORTER_CLIENT_KEY_FILE",
                        };
                        tracing::warn!(variable = name, %error, "new exporter client certificate not used; the previous one stays in use");
                    }
                }
            }
            if let Some((state, username, file)) = password.as_mut() {
                let load = || read_password(file);
                match state.compare(&[file], load) {
                    Check::Unchanged => {}
                    Check::Loaded(new) => {
                        exporter.set_credentials(Credentials::basic(username, &new));
                        tracing::info!(file = %file.display(), "exporter password file reloaded");
                    }
                    Check::Failed(reason) => {
                        tracing::warn!(variable = "PROXY_EXPORTER_BASIC_AUTH_PASSWORD_FILE", error = %reason, "new exporter password not used; the previous one stays in use");
                    }
                }
            }
        }
    });
}

/// The outcome of one look at a set of files.
#[derive(Debug, PartialEq, Eq)]
enum Check<T, E> {
    /// Same bytes as in use, or a failure already reported or still settling.
    Unchanged,
    /// New bytes that loaded.
    Loaded(T),
    /// New bytes that still fail one interval later: report this once.
    Failed(E),
}

/// The files' contents (`None` for one that cannot be read right now).
type Snapshot = Vec<Option<Vec<u8>>>;

fn snapshot(files: &[&Path]) -> Snapshot {
    files.iter().map(|file| std::fs::read(file).ok()).collect()
}

/// What was last used, and a failing set of bytes being watched.
struct FileState {
    in_use: Snapshot,
    failing: Option<(Snapshot, bool)>,
}

impl FileState {
    fn new(files: &[&Path]) -> FileState {
        FileState { in_use: snapshot(files), failing: None }
    }

    fn compare<T, E>(&mut self, files: &[&PathBuf], load: impl FnOnce() -> Result<T, E>) -> Check<T, E> {
        let files: Vec<&Path> = files.iter().map(|f| f.as_path()).collect();
        self.judge(snapshot(&files), load)
    }

    fn judge<T, E>(&mut self, now: Snapshot, load: impl FnOnce() -> Result<T, E>) -> Check<T, E> {
        if now == self.in_use {
            self.failing = None;
            return Check::Unchanged;
        }
        match load() {
            Ok(loaded) => {
                self.in_use = now;
                self.failing = None;
                Check::Loaded(loaded)
            }
            Err(error) => match self.failing.as_mut() {
                Some((bytes, reported)) if *bytes == now => match std::mem::replace(reported, true) {
                    false => Check::Failed(error),
                    true => Check::Unchanged,
                },
                _ => {
                    self.failing = Some((now, false));
                    Check::Unchanged
                }
            },
        }
    }
}

/// A serial number as `openssl x509 -serial` prints it.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(s: &str) -> Snapshot {
        vec![Some(s.as_bytes().to_vec())]
    }

    #[test]
    fn same_bytes_are_not_reloaded() {
        let mut state = FileState { in_use: bytes("a"), failing: None };
        assert_eq!(state.judge(bytes("a"), || -> Result<(), ()> { panic!("loaded") }), Check::Unchanged);
        assert_eq!(state.judge(bytes("b"), || Ok::<_, ()>(2)), Check::Loaded(2));
        assert_eq!(state.judge(bytes("b"), || -> Result<(), ()> { panic!("loaded") }), Check::Unchanged);
    }

    #[test]
    fn a_failure_is_reported_once_after_it_persists_one_interval() {
        let mut state = FileState { in_use: bytes("good"), failing: None };
        assert_eq!(state.judge(bytes("half"), || Err::<(), _>("mismatch")), Check::Unchanged);
        assert_eq!(state.judge(bytes("half"), || Err::<(), _>("mismatch")), Check::Failed("mismatch"));
        assert_eq!(state.judge(bytes("half"), || Err::<(), _>("mismatch")), Check::Unchanged);
        // Another broken version gets its own report.
        assert_eq!(state.judge(bytes("worse"), || Err::<(), _>("x")), Check::Unchanged);
        assert_eq!(state.judge(bytes("worse"), || Err::<(), _>("x")), Check::Failed("x"));
        // A half-written pair that completes within the interval is never reported.
        assert_eq!(state.judge(bytes("new"), || Ok::<_, &str>(1)), Check::Loaded(1));
    }

    #[test]
    fn serials_print_as_openssl_does() {
        assert_eq!(hex(&[0x0a, 0xff, 0x01]), "0AFF01");
    }
}
