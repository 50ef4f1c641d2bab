//! Files the proxy re-reads while it runs, one mechanism for all of them: the serving certificate
//! pair, `PROXY_CLIENT_CA_FILE`, the htpasswd file, and the exporter hop's client certificate and
//! password file. Operators rotate each of these Secrets, and expect what kube-rbac-proxy's
//! dynamic CA content gives them: the new content is picked up without a restart, and a bad file
//! keeps the old content in use, is logged once and counted.
//!
//! - **When.** A thread per watched set of files reads them every [`INTERVAL`]. A thread, not a
//!   task: file reads block (a network volume can stall), and the runtime has only one thread to
//!   serve scrapes with.
//! - **What counts as a change.** The contents, never the mtime: the kubelet updates a Secret
//!   volume by swapping a `..data` symlink (the files' own mtimes may not move), a copy may
//!   preserve the mtime and FAT rounds it to 2 s. A [`Watch`] keeps a SHA-256 of what is in use
//!   (not the bytes: keys and passwords are not kept a second time); a file that cannot be read
//!   counts as its error, so one that disappears and comes back is noticed.
//! - **A good new content** is handed to its owner's load function, which parses it and installs
//!   it (the next handshake or request uses it), then logged at info with the owner's message
//!   and the fields `what`, `variable`, `file`, and `serial` (as `openssl x509 -serial` prints
//!   it) and `not_after` for certificates.
//! - **A bad new content** keeps the old one in use. Files rewritten in place pass through broken
//!   states for a moment (certificate written, key not yet), so a bad content is reported only
//!   once it has stayed the same for two looks: then it is logged once at warn (`what`,
//!   `variable`, `file`, `error`: the reason, which never quotes a key, hash or password) and
//!   counted in `windows_exporter_proxy_reload_failures_total{file}`, and not again until the
//!   files change. A content that goes back to what is in use forgets the failure.
//!
//! This module is a leaf: its users ([`crate::tls`], [`crate::auth`], [`crate::exporter`]) bring
//! the parsing, and it knows nothing of certificates or passwords.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use aws_lc_rs::digest;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// How often every watched file is read: a rotation is picked up within this.
pub const INTERVAL: Duration = Duration::from_secs(2);

/// Files larger than this are refused without reading further: no certificate, key, CA bundle,
/// htpasswd or password file is.
pub const MAX_FILE_BYTES: u64 = 4 << 20;

/// What one look at a set of files found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// The files hold what is in use.
    Unchanged,
    /// New contents loaded and are in use now.
    Reloaded,
    /// The files changed into contents that do not load; waiting one more look in case they are
    /// still being written.
    Unsettled,
    /// The files hold contents that do not load, now reported (logged and counted).
    Rejected,
    /// The same unusable contents as last time, already reported.
    StillRejected,
}

/// One watched file: the variable that names it, and its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    /// The environment variable, for log lines (`PROXY_TLS_CERT_FILE`).
    pub variable: &'static str,
    /// The path as configured.
    pub path: PathBuf,
}

impl File {
    /// `variable` names `path`.
    pub fn new(variable: &'static str, path: impl Into<PathBuf>) -> File {
        File { variable, path: path.into() }
    }
}

/// One file's contents as one look read them, or why it could not be read.
pub type Content = std::io::Result<Vec<u8>>;

/// What a good new content was, for the info line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Loaded {
    /// A certificate's serial, from [`serial`].
    pub serial: Option<String>,
    /// A certificate's (or chain's, or bundle's earliest) `notAfter`, Unix seconds.
    pub not_after: Option<i64>,
}

/// Why new contents cannot be used: which of the watched files (its index) and the reason. The
/// reason never quotes a key, a hash or a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Index into the watched files of the one at fault.
    pub file: usize,
    /// What is wrong with it.
    pub reason: String,
}

impl Rejection {
    /// `reason` about the watched file at `file`.
    pub fn new(file: usize, reason: impl ToString) -> Rejection {
        Rejection { file, reason: reason.to_string() }
    }
}

/// What a set of files is, in the log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Describe {
    /// The `what` field: `serving certificate`, `htpasswd file`.
    pub what: &'static str,
    /// The info message when new contents are in use.
    pub reloaded: &'static str,
    /// The warn message when new contents cannot be used.
    pub rejected: &'static str,
}

/// A SHA-256 of a look's contents.
type Fingerprint = [u8; 32];

/// A set of files, what of them is in use, and the failure being watched.
pub struct Watch {
    describe: Describe,
    files: Vec<File>,
    failures: ReloadFailures,
    seen: Mutex<Seen>,
}

struct Seen {
    /// `None` after [`Watch::forget`]: whatever the files hold next is new.
    in_use: Option<Fingerprint>,
    /// Unusable contents seen once, reported when seen again.
    pending: Option<Fingerprint>,
    /// Unusable contents already reported.
    reported: Option<Fingerprint>,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch").field("what", &self.describe.what).field("files", &self.files).finish_non_exhaustive()
    }
}

impl Watch {
    /// Reads `files` once: the watch, which takes these contents as the ones in use, and the
    /// contents, for the owner's first load. An owner that keeps what it loaded earlier instead
    /// calls [`forget`](Self::forget) when these contents are not that. Each file's failure
    /// series starts at 0.
    pub fn open(describe: Describe, files: Vec<File>, failures: ReloadFailures) -> (Watch, Vec<Content>) {
        for file in &files {
            failures.start(&file.path);
        }
        let contents = read(&files);
        let seen = Seen { in_use: Some(fingerprint(&contents)), pending: None, reported: None };
        (Watch { describe, files, failures, seen: Mutex::new(seen) }, contents)
    }

    /// The watched files, in the order given.
    pub fn files(&self) -> &[File] {
        &self.files
    }

    /// The owner did not take the contents [`open`](Self::open) read (they changed since it
    /// loaded the files, or do not load): the next look treats whatever the files hold as new.
    pub fn forget(&self) {
        self.seen.lock().expect("no code panics while holding the lock").in_use = None;
    }

    /// Reads the files once. When they changed, `load` gets their contents and parses them; on
    /// success it has installed them. Logs and counts as the module documentation says, and
    /// logs the outcome at trace.
    pub fn read(&self, load: impl FnOnce(Vec<Content>) -> Result<Loaded, Rejection>) -> Reading {
        let outcome = self.look(load);
        tracing::trace!(what = self.describe.what, ?outcome, "files checked");
        outcome
    }

    fn look(&self, load: impl FnOnce(Vec<Content>) -> Result<Loaded, Rejection>) -> Reading {
        let contents = read(&self.files);
        let now = fingerprint(&contents);
        let mut seen = self.seen.lock().expect("no code panics while holding the lock");
        if seen.in_use == Some(now) {
            // Back to (or still at) what is in use: forget any broken state in between.
            seen.pending = None;
            seen.reported = None;
            return Reading::Unchanged;
        }
        // Loaded again on every look, even when already reported: a certificate refused as not
        // valid yet becomes valid with time.
        match load(contents) {
            Ok(loaded) => {
                *seen = Seen { in_use: Some(now), pending: None, reported: None };
                let file = &self.files[0];
                tracing::info!(
                    what = self.describe.what,
                    variable = file.variable,
                    file = %file.path.display(),
                    serial = loaded.serial.as_deref(),
                    not_after = loaded.not_after,
                    "{}",
                    self.describe.reloaded
                );
                Reading::Reloaded
            }
            Err(_) if seen.reported == Some(now) => Reading::StillRejected,
            Err(rejection) if seen.pending == Some(now) => {
                let file = &self.files[rejection.file.min(self.files.len() - 1)];
                tracing::warn!(
                    what = self.describe.what,
                    variable = file.variable,
                    file = %file.path.display(),
                    error = %rejection.reason,
                    "{}",
                    self.describe.rejected
                );
                self.failures.count(&file.path);
                seen.pending = None;
                seen.reported = Some(now);
                Reading::Rejected
            }
            Err(_) => {
                seen.pending = Some(now);
                Reading::Unsettled
            }
        }
    }
}

/// Starts a thread named `reload-{name}` that calls `poll` (a [`Watch::read`]) every
/// [`INTERVAL`] until it returns `None` (its owner is gone).
pub fn spawn(name: &'static str, mut poll: impl FnMut() -> Option<Reading> + Send + 'static) -> std::io::Result<()> {
    std::thread::Builder::new().name(format!("reload-{name}")).stack_size(512 << 10).spawn(move || {
        loop {
            std::thread::sleep(INTERVAL);
            if poll().is_none() {
                return;
            }
        }
    })?;
    Ok(())
}

/// A certificate serial as `openssl x509 -serial` prints it: upper-case hex, no separators. The
/// one way every reload line writes a serial.
pub fn serial(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

fn read(files: &[File]) -> Vec<Content> {
    files.iter().map(|file| read_file(&file.path)).collect()
}

fn read_file(path: &Path) -> Content {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(std::io::Error::other(format!("larger than {} MiB", MAX_FILE_BYTES >> 20)));
    }
    Ok(bytes)
}

/// Each file's length and bytes, or its error, hashed in order.
fn fingerprint(contents: &[Content]) -> Fingerprint {
    let mut context = digest::Context::new(&digest::SHA256);
    for content in contents {
        match content {
            Ok(bytes) => {
                context.update(&[1]);
                context.update(&(bytes.len() as u64).to_le_bytes());
                context.update(bytes);
            }
            Err(error) => {
                let text = error.to_string();
                context.update(&[0]);
                context.update(&(text.len() as u64).to_le_bytes());
                context.update(text.as_bytes());
            }
        }
    }
    context.finish().as_ref().try_into().expect("SHA-256 is 32 bytes")
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct FileLabels {
    file: String,
}

/// `windows_exporter_proxy_reload_failures_total{file}`: new contents of a re-read file that
/// could not be used (the previous contents stayed in use), by the file at fault. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct ReloadFailures(Family<FileLabels, Counter>);

impl ReloadFailures {
    /// Registers the counter in `registry` (the proxy's, prefixed `windows_exporter_proxy`).
    pub fn register(registry: &mut Registry) -> ReloadFailures {
        let failures = ReloadFailures::default();
        registry.register(
            "reload_failures",
            "New contents of a re-read file (certificate, key, CA bundle, htpasswd, password) that could not be used; the previous contents stayed in use",
            failures.0.clone(),
        );
        failures
    }

    /// Shows `file`'s series at 0, so an alert on its increase sees the first failure.
    fn start(&self, file: &Path) {
        let _ = self.0.get_or_create(&FileLabels { file: file.display().to_string() });
    }

    fn count(&self, file: &Path) {
        self.0.get_or_create(&FileLabels { file: file.display().to_string() }).inc();
    }

    /// The count for `file` so far.
    pub fn get(&self, file: &Path) -> u64 {
        self.0.get_or_create(&FileLabels { file: file.display().to_string() }).get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DESCRIBE: Describe = Describe { what: "test file", reloaded: "reloaded", rejected: "rejected" };

    /// A file in its own directory, removed when the test ends.
    struct Dir(PathBuf);

    impl Dir {
        fn new(test: &str, content: &str) -> Dir {
            let dir = std::env::temp_dir().join(format!("wep-reload-{}-{test}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let dir = Dir(dir);
            dir.write(content);
            dir
        }

        fn file(&self) -> PathBuf {
            self.0.join("file")
        }

        fn write(&self, content: &str) {
            std::fs::write(self.file(), content).unwrap();
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Loads contents that start with `good`.
    fn load(contents: Vec<Content>) -> Result<Loaded, Rejection> {
        match &contents[0] {
            Ok(bytes) if bytes.starts_with(b"good") => Ok(Loaded::default()),
            Ok(_) => Err(Rejection::new(0, "not good")),
            Err(error) => Err(Rejection::new(0, error)),
        }
    }

    #[test]
    fn the_same_contents_are_not_loaded_again() {
        let dir = Dir::new("same", "good 1");
        let (watch, contents) = Watch::open(DESCRIBE, vec![File::new("V", dir.file())], ReloadFailures::default());
        assert_eq!(contents[0].as_ref().unwrap(), b"good 1");
        assert_eq!(watch.read(|_| panic!("loaded")), Reading::Unchanged);
        dir.write("good 2");
        assert_eq!(watch.read(load), Reading::Reloaded);
        assert_eq!(watch.read(|_| panic!("loaded")), Reading::Unchanged);
    }

    #[test]
    fn bad_contents_are_reported_once_when_they_persist_and_counted() {
        let dir = Dir::new("bad", "good");
        let failures = ReloadFailures::default();
        let (watch, _) = Watch::open(DESCRIBE, vec![File::new("V", dir.file())], failures.clone());
        dir.write("bad 1");
        assert_eq!(watch.read(load), Reading::Unsettled);
        assert_eq!(watch.read(load), Reading::Rejected);
        assert_eq!(watch.read(load), Reading::StillRejected);
        assert_eq!(failures.get(&dir.file()), 1);
        // Another broken version gets its own report.
        dir.write("bad 2");
        assert_eq!(watch.read(load), Reading::Unsettled);
        assert_eq!(watch.read(load), Reading::Rejected);
        assert_eq!(failures.get(&dir.file()), 2);
        // Back to what is in use: nothing to load, the failure is forgotten.
        dir.write("good");
        assert_eq!(watch.read(|_| panic!("loaded")), Reading::Unchanged);
        dir.write("bad 2");
        assert_eq!(watch.read(load), Reading::Unsettled);
    }

    #[test]
    fn a_missing_file_is_a_change_and_its_return_too() {
        let dir = Dir::new("missing", "good");
        let (watch, _) = Watch::open(DESCRIBE, vec![File::new("V", dir.file())], ReloadFailures::default());
        std::fs::remove_file(dir.file()).unwrap();
        assert_eq!(watch.read(load), Reading::Unsettled);
        dir.write("good");
        assert_eq!(watch.read(|_| panic!("loaded")), Reading::Unchanged);
    }

    #[test]
    fn after_forget_the_same_contents_are_new() {
        let dir = Dir::new("forget", "good");
        let (watch, _) = Watch::open(DESCRIBE, vec![File::new("V", dir.file())], ReloadFailures::default());
        watch.forget();
        assert_eq!(watch.read(load), Reading::Reloaded);
        assert_eq!(watch.read(|_| panic!("loaded")), Reading::Unchanged);
    }

    #[test]
    fn serials_print_as_openssl_does() {
        assert_eq!(serial(&[0x0a, 0xff, 0x01]), "0AFF01");
    }
}
