//! Test certificates, made at test time with the `openssl` CLI (the one Debian ships): a private
//! CA per test and leaf certificates it signs, for servers and for clients.
//!
//! Nothing is checked in: every run makes fresh keys in its own temporary directory, removed
//! when the [`Pki`] is dropped. Keys are P-256 in PKCS#8 (`BEGIN PRIVATE KEY`), what
//! `openssl req -newkey ec` writes. Leaves are X.509 v3 with the extensions verifiers insist on
//! (webpki and Go's crypto/x509 alike): `basicConstraints`, `keyUsage`, `extendedKeyUsage` for
//! the role, and the subject alternative names given.
//!
//! The `tls` work has its own `tests/support/pki.rs` for the serving tests (not on main when this
//! was written). Both are a CA per test issuing leaves into one temp directory with the openssl
//! CLI; once both are on main they should become one module. `tests/exporter_tls.rs`, `tests/auth.rs` and
//! `tests/prometheus_auth.rs` (through tests/support/kube_api.rs) use this one, each through
//! `#[path]`, so `support/mod.rs` is untouched.

#![allow(dead_code)] // each test binary uses a different part of this module

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// What a leaf certificate is for: its `extendedKeyUsage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A TLS server (`serverAuth`).
    Server,
    /// A TLS client (`clientAuth`).
    Client,
}

/// A temporary directory holding every file of one test's certificates.
pub struct Pki {
    dir: PathBuf,
}

impl Pki {
    /// A fresh, empty directory under the system temp dir.
    pub fn new() -> Pki {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "wep-pki-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the PKI directory");
        Pki { dir }
    }

    /// The directory, for other files a test writes next to the certificates.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A path in the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A self-signed CA named `name` (its CN), written to `name.crt` and `name.key`.
    pub fn ca(&self, name: &str) -> Ca {
        let cert = self.path(&format!("{name}.crt"));
        let key = self.path(&format!("{name}.key"));
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
            path_str(&key),
            "-out",
            path_str(&cert),
        ]);
        Ca { dir: self.dir.clone(), name: name.to_owned(), cert, key }
    }
}

impl Default for Pki {
    fn default() -> Pki {
        Pki::new()
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A certificate authority that signs leaves.
pub struct Ca {
    dir: PathBuf,
    /// Its name (the CN).
    pub name: String,
    /// The CA certificate (PEM): what a peer trusts.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

/// A leaf certificate and its key.
#[derive(Debug, Clone)]
pub struct Leaf {
    /// The certificate (PEM), leaf only.
    pub cert: PathBuf,
    /// The private key (PKCS#8 PEM).
    pub key: PathBuf,
    /// The serial number as `openssl x509 -serial` prints it (upper-case hex).
    pub serial: String,
}

impl Ca {
    /// Signs a new leaf for `role` with common name `cn` and `sans` (`openssl` syntax:
    /// `DNS:exporter.internal`, `IP:127.0.0.1`, `URI:spiffe://...`), valid for two days from
    /// now, written to `file.crt` and `file.key`.
    pub fn issue(&self, file: &str, role: Role, cn: &str, sans: &[&str]) -> Leaf {
        let cert = self.dir.join(format!("{file}.crt"));
        let key = self.dir.join(format!("{file}.key"));
        let csr = self.dir.join(format!("{file}.csr"));
        let ext = self.dir.join(format!("{file}.ext"));
        let usage = match role {
            Role::Server => "serverAuth",
            Role::Client => "clientAuth",
        };
        let mut extensions = vec![
            "basicConstraints=critical,CA:FALSE".to_owned(),
            "keyUsage=critical,digitalSignature".to_owned(),
            format!("extendedKeyUsage={usage}"),
        ];
        if !sans.is_empty() {
            extensions.push(format!("subjectAltName={}", sans.join(",")));
        }
        std::fs::write(&ext, extensions.join("\n") + "\n").expect("write the extensions file");
        openssl(&[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            &format!("/CN={cn}"),
            "-keyout",
            path_str(&key),
            "-out",
            path_str(&csr),
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            path_str(&csr),
            "-CA",
            path_str(&self.cert),
            "-CAkey",
            path_str(&self.key),
            "-extfile",
            path_str(&ext),
            "-days",
            "2",
            "-out",
            path_str(&cert),
        ]);
        let serial = openssl(&["x509", "-noout", "-serial", "-in", path_str(&cert)]);
        let serial = serial.trim().strip_prefix("serial=").expect("openssl prints serial=HEX").to_owned();
        Leaf { cert, key, serial }
    }
}

/// Runs `openssl args` and returns its stdout; fails the test with openssl's stderr.
pub fn openssl(args: &[&str]) -> String {
    let output = Command::new("openssl").args(args).output().expect("run openssl (Debian package openssl)");
    assert!(output.status.success(), "openssl {} failed: {}", args.join(" "), String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}
