//! Certificates made at test time with the `openssl` CLI: a CA per test, and leaf certificates it
//! issues (server or client, EC or RSA, PKCS#8, SEC1 or PKCS#1 keys, chosen serials and SANs).
//! `pki.rs` (the exporter hop's tests) is the same idea with another API; the two should become
//! one module.
//!
//! Every file lives in a directory of its own, removed when the [`Pki`] is dropped. Nothing is
//! committed: a test that needs a certificate makes it, so none ever expires in the repository.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// How a leaf's private key is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFormat {
    /// P-256, `PRIVATE KEY` (what cert-manager writes by default for ECDSA).
    EcPkcs8,
    /// P-256, `EC PRIVATE KEY`.
    EcSec1,
    /// RSA 2048, `RSA PRIVATE KEY`.
    RsaPkcs1,
}

/// What to issue.
#[derive(Debug, Clone)]
pub struct Leaf {
    /// Subject common name.
    pub common_name: String,
    /// subjectAltName entries as openssl writes them: `DNS:proxy.test`, `IP:127.0.0.1`, `URI:...`.
    pub sans: Vec<String>,
    /// Serial number (hex is how it shows in `openssl x509 -serial`).
    pub serial: u64,
    /// Validity in days from now.
    pub days: u32,
    /// Key type and encoding.
    pub key: KeyFormat,
}

impl Leaf {
    /// A server certificate for `proxy.test` and 127.0.0.1.
    pub fn server(serial: u64) -> Leaf {
        Leaf {
            common_name: "proxy.test".into(),
            sans: vec!["DNS:proxy.test".into(), "IP:127.0.0.1".into()],
            serial,
            days: 30,
            key: KeyFormat::EcPkcs8,
        }
    }

    /// A client certificate named `common_name`, with that name as a DNS SAN too.
    pub fn client(common_name: &str, serial: u64) -> Leaf {
        Leaf {
            common_name: common_name.into(),
            sans: vec![format!("DNS:{common_name}")],
            serial,
            days: 30,
            key: KeyFormat::EcPkcs8,
        }
    }
}

/// An issued certificate's files.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The leaf, then the CA (a chain, leaf first).
    pub chain: PathBuf,
    /// The leaf alone.
    pub certificate: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

impl Issued {
    /// The leaf's DER, for comparing with what a handshake presented.
    pub fn leaf_der(&self) -> Vec<u8> {
        der_of(&self.certificate)
    }
}

/// The DER of the first certificate in a PEM file (read with `openssl x509`, not the proxy's
/// own loader).
pub fn der_of(pem: &Path) -> Vec<u8> {
    let output = Command::new("openssl")
        .args(["x509", "-outform", "der", "-in"])
        .arg(pem)
        .output()
        .expect("the openssl CLI is installed");
    assert!(output.status.success(), "openssl x509: {}", String::from_utf8_lossy(&output.stderr));
    output.stdout
}

/// A CA in a scratch directory.
pub struct Pki {
    /// The directory holding every file.
    pub dir: PathBuf,
    /// The CA certificate (PEM), what a client trusts.
    pub ca: PathBuf,
    ca_key: PathBuf,
}

static COUNT: AtomicUsize = AtomicUsize::new(0);

impl Pki {
    /// A new CA named `name`.
    pub fn new(name: &str) -> Pki {
        let n = COUNT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("wep-pki-{}-{name}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (ca, ca_key) = (dir.join("ca.pem"), dir.join("ca.key"));
        openssl(&dir, &["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key"]);
        openssl(
            &dir,
            &[
                "req",
                "-x509",
                "-new",
                "-key",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "30",
                "-subj",
                &format!("/CN={name} test CA"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        Pki { dir, ca, ca_key }
    }

    /// Issues `leaf` into files named after `name` (`NAME.crt`, `NAME.chain.crt`, `NAME.key`).
    pub fn issue(&self, name: &str, leaf: &Leaf) -> Issued {
        let key = format!("{name}.key");
        match leaf.key {
            KeyFormat::EcPkcs8 => openssl(
                &self.dir,
                &["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", &key],
            ),
            KeyFormat::EcSec1 => {
                openssl(&self.dir, &["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", &key])
            }
            KeyFormat::RsaPkcs1 => openssl(&self.dir, &["genrsa", "-traditional", "-out", &key, "2048"]),
        }
        let extensions = format!("{name}.ext");
        let mut ext = String::from("basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\n");
        if !leaf.sans.is_empty() {
            ext.push_str(&format!("subjectAltName={}\n", leaf.sans.join(",")));
        }
        std::fs::write(self.dir.join(&extensions), ext).unwrap();
        let csr = format!("{name}.csr");
        openssl(&self.dir, &["req", "-new", "-key", &key, "-subj", &format!("/CN={}", leaf.common_name), "-out", &csr]);
        let certificate = format!("{name}.crt");
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                self.ca.to_str().unwrap(),
                "-CAkey",
                self.ca_key.to_str().unwrap(),
                "-set_serial",
                &leaf.serial.to_string(),
                "-days",
                &leaf.days.to_string(),
                "-extfile",
                &extensions,
                "-out",
                &certificate,
            ],
        );
        let chain = self.dir.join(format!("{name}.chain.crt"));
        let mut pem = std::fs::read(self.dir.join(&certificate)).unwrap();
        pem.extend(std::fs::read(&self.ca).unwrap());
        std::fs::write(&chain, pem).unwrap();
        Issued { chain, certificate: self.dir.join(certificate), key: self.dir.join(key) }
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl").args(args).current_dir(dir).output().expect("the openssl CLI is installed");
    assert!(output.status.success(), "openssl {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr));
}

/// `notAfter` of a PEM certificate in Unix seconds, as openssl reads it.
pub fn not_after(pem: &Path) -> i64 {
    let output = Command::new("openssl")
        .args(["x509", "-noout", "-enddate", "-dateopt", "iso_8601", "-in"])
        .arg(pem)
        .output()
        .expect("the openssl CLI is installed");
    let text = String::from_utf8(output.stdout).unwrap();
    // notAfter=2026-12-31 23:59:59Z
    let date = text.trim().strip_prefix("notAfter=").unwrap_or_else(|| panic!("openssl -enddate said {text:?}"));
    let output = Command::new("date").args(["-u", "-d", date, "+%s"]).output().expect("date(1)");
    String::from_utf8(output.stdout).unwrap().trim().parse().unwrap()
}
