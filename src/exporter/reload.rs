//! The hop's files, re-read while the proxy runs: the client certificate pair
//! (`PROXY_EXPORTER_CLIENT_CERT_FILE` / `_KEY_FILE`) and the password file
//! (`PROXY_EXPORTER_BASIC_AUTH_PASSWORD_FILE`), as Prometheus re-reads its `password_file`.
//!
//! Both are watched by [`crate::reload`], as every file the proxy re-reads: their contents are
//! compared with those in use every [`reload::INTERVAL`], and a bad new content keeps the old one,
//! is logged once and counted in `windows_exporter_proxy_reload_failures_total{file}` (a
//! certificate pair in `windows_exporter_proxy_tls_reload_failures_total` too).
//!
//! A new certificate pair replaces the exporter's connection pool, so connections made with the
//! old certificate are dropped, not kept alive until the exporter's idle timeout (the exporter
//! checked the certificate once, at the handshake). A new password only changes the header.
//!
//! A new certificate that loads but is outside its validity now (expired, or not valid yet)
//! counts as broken while the one in use is still valid, as for the serving pair
//! ([`certificate::replacement`]): the exporter would refuse it at every new handshake.

use std::path::PathBuf;
use std::sync::Mutex;

use crate::exporter::Exporter;
use crate::exporter::credentials::{Credentials, parse_password};
use crate::reload::{self, Content, Describe, File, Loaded, Rejection, Watch};
use crate::tls::certificate::{self, CertificateError, KeyPair, PairError, PairFile};
use crate::tls::metrics::TlsMetrics;

const IDENTITY: Describe = Describe {
    what: "exporter client certificate",
    reloaded: "exporter client certificate reloaded; connections made with the old one closed",
    rejected: "new exporter client certificate not used; the previous one stays in use",
};

const PASSWORD: Describe = Describe {
    what: "exporter password file",
    reloaded: "exporter password file reloaded",
    rejected: "new exporter password not used; the previous one stays in use",
};

/// What to watch.
pub struct Watched {
    /// The client certificate and key files, and the pair loaded from them at start.
    pub identity: Option<(PathBuf, PathBuf, KeyPair)>,
    /// The basic-auth username, its password file, and the password read at start.
    pub password: Option<(String, PathBuf, String)>,
}

/// Watches `watched` for as long as the process runs, installing good new files into
/// `exporter`. Does nothing when there is nothing to watch.
pub fn spawn(exporter: &Exporter, watched: Watched, metrics: &TlsMetrics) {
    if let Some((cert_file, key_file, loaded)) = watched.identity {
        let files = vec![
            File::new("PROXY_EXPORTER_CLIENT_CERT_FILE", cert_file),
            File::new("PROXY_EXPORTER_CLIENT_KEY_FILE", key_file),
        ];
        let (watch, contents) = Watch::open(IDENTITY, files, metrics.reloads().clone());
        if key_pair(contents).map_or(true, |now| now.certified.cert != loaded.certified.cert) {
            watch.forget();
        }
        let (exporter, metrics, in_use) = (exporter.clone(), metrics.clone(), Mutex::new(loaded));
        let started = reload::spawn("exporter-certificate", move || {
            let outcome = watch.read(|contents| {
                let mut in_use = in_use.lock().expect("no code panics while holding the lock");
                let pair = key_pair(contents)
                    .and_then(|new| certificate::replacement(new, &in_use, certificate::unix_now()))
                    .map_err(|error| Rejection::new(pair_file(&error), error))?;
                metrics.certificate_loaded(&watch.files()[0].path, pair.not_after);
                exporter.set_identity(pair.certified.clone());
                let loaded =
                    Loaded { serial: Some(reload::serial(&pair.leaf.serial)), not_after: Some(pair.not_after) };
                *in_use = pair;
                Ok(loaded)
            });
            if outcome == reload::Reading::Rejected {
                metrics.reload_failed();
            }
            Some(outcome)
        });
        if let Err(error) = started {
            tracing::error!(%error, "cannot start the exporter client certificate reload thread; rotations need a restart");
        }
    }
    if let Some((username, file, loaded)) = watched.password {
        let files = vec![File::new("PROXY_EXPORTER_BASIC_AUTH_PASSWORD_FILE", file)];
        let (watch, contents) = Watch::open(PASSWORD, files, metrics.reloads().clone());
        if password(contents).map_or(true, |now| now != loaded) {
            watch.forget();
        }
        let exporter = exporter.clone();
        let started = reload::spawn("exporter-password", move || {
            Some(watch.read(|contents| {
                let new = password(contents).map_err(|reason| Rejection::new(0, reason))?;
                exporter.set_credentials(Credentials::basic(&username, &new));
                Ok(Loaded::default())
            }))
        });
        if let Err(error) = started {
            tracing::error!(%error, "cannot start the exporter password reload thread; rotations need a restart");
        }
    }
}

/// Which of the two watched files a pair's error is about.
fn pair_file(error: &PairError) -> usize {
    match error.file {
        PairFile::Certificate => 0,
        PairFile::Key => 1,
    }
}

/// The pair in two files' contents (certificate, key).
fn key_pair(contents: Vec<Content>) -> Result<KeyPair, PairError> {
    let mut contents = contents.into_iter();
    match (contents.next().expect("two files"), contents.next().expect("two files")) {
        (Ok(certificate), Ok(key)) => certificate::parse_key_pair(&certificate, &key),
        (Err(error), _) => Err(PairError { file: PairFile::Certificate, error: CertificateError::Read(error) }),
        (_, Err(error)) => Err(PairError { file: PairFile::Key, error: CertificateError::Read(error) }),
    }
}

/// The password in one file's contents.
fn password(contents: Vec<Content>) -> Result<String, String> {
    let bytes = contents.into_iter().next().expect("one file").map_err(|error| format!("cannot read it: {error}"))?;
    parse_password(bytes)
}
