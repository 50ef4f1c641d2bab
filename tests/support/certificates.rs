//! Certificates made at test time with the `openssl` CLI (the one Debian ships): a scratch
//! directory per test holding a CA ([`Pki`]), as many further CAs as the test needs ([`Ca`], for
//! "a certificate from another CA"), and the leaf certificates they issue ([`Leaf`]: server or
//! client, EC or RSA, PKCS#8, SEC1 or PKCS#1 keys, chosen serials, SANs or none, valid from now
//! or between fixed dates in the past or the future).
//!
//! Leaves are X.509 v3 with the extensions verifiers insist on (webpki and Go's crypto/x509
//! alike): `basicConstraints`, `keyUsage`, `extendedKeyUsage` for the [`Role`], and the subject
//! alternative names given.
//!
//! Every file lives in the [`Pki`]'s directory, removed when it is dropped; a test writes its
//! other files (htpasswd, password and token files, web configs) there too ([`Pki::path`]).
//! Nothing is committed: a test that needs a certificate makes it, so none ever expires in the
//! repository.

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

/// What a leaf certificate is for: its `extendedKeyUsage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A TLS server (`serverAuth`).
    Server,
    /// A TLS client (`clientAuth`).
    Client,
}

/// What to issue.
#[derive(Debug, Clone)]
pub struct Leaf {
    /// Subject common name.
    pub common_name: String,
    /// subjectAltName entries as openssl writes them: `DNS:proxy.test`, `IP:127.0.0.1`, `URI:...`.
    /// Empty: no subjectAltName extension at all (a CN-only certificate).
    pub sans: Vec<String>,
    /// Serial number (hex is how it shows in `openssl x509 -serial`).
    pub serial: u64,
    /// Validity in days from now.
    pub days: u32,
    /// Fixed `notBefore` and `notAfter` instead of `days` from now, as `openssl ca` takes them
    /// (`YYYYMMDDHHMMSSZ`): a certificate already expired, or not valid yet.
    pub validity: Option<(&'static str, &'static str)>,
    /// Key type and encoding.
    pub key: KeyFormat,
    /// Server or client.
    pub role: Role,
}

impl Leaf {
    /// A leaf for `role` with common name `common_name` and `sans` (openssl syntax), valid for
    /// 30 days, with a P-256 PKCS#8 key.
    pub fn new(role: Role, common_name: &str, sans: &[&str], serial: u64) -> Leaf {
        Leaf {
            common_name: common_name.into(),
            sans: sans.iter().map(|s| s.to_string()).collect(),
            serial,
            days: 30,
            validity: None,
            key: KeyFormat::EcPkcs8,
            role,
        }
    }

    /// A server certificate for `proxy.test` and 127.0.0.1.
    pub fn server(serial: u64) -> Leaf {
        Leaf::new(Role::Server, "proxy.test", &["DNS:proxy.test", "IP:127.0.0.1"], serial)
    }

    /// A client certificate named `common_name`, with that name as a DNS SAN too.
    pub fn client(common_name: &str, serial: u64) -> Leaf {
        Leaf::new(Role::Client, common_name, &[&format!("DNS:{common_name}")], serial)
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

    /// The serial number as `openssl x509 -serial` prints it (upper-case hex), read back from
    /// the file rather than formatted here.
    pub fn serial_hex(&self) -> String {
        let printed = openssl_in(Path::new("."), &["x509", "-noout", "-serial", "-in", path_str(&self.certificate)]);
        printed.trim().strip_prefix("serial=").expect("openssl prints serial=HEX").to_owned()
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

/// A certificate authority that issues leaves into its [`Pki`]'s directory.
pub struct Ca {
    dir: PathBuf,
    /// The CA certificate (PEM): what a peer trusts.
    pub certificate: PathBuf,
    key: PathBuf,
}

impl Ca {
    /// A self-signed CA with common name `NAME test CA N`, written to `FILE.pem` and `FILE.key`.
    /// N counts the CAs made in this process: two CAs never share a subject, so a leaf from one
    /// is "unknown issuer" to the other, never "bad signature" from a same-named anchor.
    fn create(dir: &Path, name: &str, file: &str) -> Ca {
        static CAS: AtomicUsize = AtomicUsize::new(0);
        let n = CAS.fetch_add(1, Ordering::Relaxed);
        let (certificate, key) = (dir.join(format!("{file}.pem")), dir.join(format!("{file}.key")));
        openssl_in(dir, &["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", path_str(&key)]);
        openssl_in(
            dir,
            &[
                "req",
                "-x509",
                "-new",
                "-key",
                path_str(&key),
                "-out",
                path_str(&certificate),
                "-days",
                "30",
                "-subj",
                &format!("/CN={name} test CA {n}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        Ca { dir: dir.to_owned(), certificate, key }
    }

    /// Issues `leaf` into files named after `name` (`NAME.crt`, `NAME.chain.crt`, `NAME.key`).
    pub fn issue(&self, name: &str, leaf: &Leaf) -> Issued {
        let key = format!("{name}.key");
        match leaf.key {
            KeyFormat::EcPkcs8 => openssl_in(
                &self.dir,
                &["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", &key],
            ),
            KeyFormat::EcSec1 => {
                openssl_in(&self.dir, &["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", &key])
            }
            KeyFormat::RsaPkcs1 => openssl_in(&self.dir, &["genrsa", "-traditional", "-out", &key, "2048"]),
        };
        let usage = match leaf.role {
            Role::Server => "serverAuth",
            Role::Client => "clientAuth",
        };
        let mut ext = format!(
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage={usage}\n"
        );
        if !leaf.sans.is_empty() {
            ext.push_str(&format!("subjectAltName={}\n", leaf.sans.join(",")));
        }
        let extensions = format!("{name}.ext");
        std::fs::write(self.dir.join(&extensions), ext).unwrap();
        let csr = format!("{name}.csr");
        openssl_in(
            &self.dir,
            &["req", "-new", "-key", &key, "-subj", &format!("/CN={}", leaf.common_name), "-out", &csr],
        );
        let certificate = format!("{name}.crt");
        if let Some((not_before, not_after)) = leaf.validity {
            self.issue_with_dates(name, leaf.serial, (not_before, not_after), &csr, &extensions, &certificate);
        } else {
            self.issue_for_days(leaf, &csr, &extensions, &certificate);
        }
        let chain = self.dir.join(format!("{name}.chain.crt"));
        let mut pem = std::fs::read(self.dir.join(&certificate)).unwrap();
        pem.extend(std::fs::read(&self.certificate).unwrap());
        std::fs::write(&chain, pem).unwrap();
        Issued { chain, certificate: self.dir.join(certificate), key: self.dir.join(key) }
    }

    /// `openssl x509 -req -days`: valid from now.
    fn issue_for_days(&self, leaf: &Leaf, csr: &str, extensions: &str, certificate: &str) {
        openssl_in(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                csr,
                "-CA",
                path_str(&self.certificate),
                "-CAkey",
                path_str(&self.key),
                "-set_serial",
                &leaf.serial.to_string(),
                "-days",
                &leaf.days.to_string(),
                "-extfile",
                extensions,
                "-out",
                certificate,
            ],
        );
    }

    /// `openssl ca -startdate -enddate`: OpenSSL 3.0's `x509` has no way to set either date
    /// (`-not_before`/`-not_after` came in 3.4), `ca` has, given a config, a database and a serial
    /// file of its own.
    fn issue_with_dates(
        &self,
        name: &str,
        serial: u64,
        (not_before, not_after): (&str, &str),
        csr: &str,
        extensions: &str,
        certificate: &str,
    ) {
        let config = format!("{name}.ca.cnf");
        std::fs::write(
            self.dir.join(&config),
            format!(
                "[ca]\ndefault_ca = test\n[test]\ndatabase = {name}.index\nnew_certs_dir = {name}.issued\n\
                 serial = {name}.serial\ndefault_md = sha256\npolicy = any\nunique_subject = no\n\
                 [any]\ncommonName = supplied\n"
            ),
        )
        .unwrap();
        std::fs::write(self.dir.join(format!("{name}.index")), "").unwrap();
        std::fs::create_dir_all(self.dir.join(format!("{name}.issued"))).unwrap();
        // An even number of hex digits, as openssl reads a serial file.
        let hex = format!("{serial:X}");
        let hex = if hex.len() % 2 == 1 { format!("0{hex}") } else { hex };
        std::fs::write(self.dir.join(format!("{name}.serial")), format!("{hex}\n")).unwrap();
        openssl_in(
            &self.dir,
            &[
                "ca",
                "-batch",
                "-notext",
                "-config",
                &config,
                "-cert",
                path_str(&self.certificate),
                "-keyfile",
                path_str(&self.key),
                "-in",
                csr,
                "-extfile",
                extensions,
                "-startdate",
                not_before,
                "-enddate",
                not_after,
                "-out",
                certificate,
            ],
        );
    }
}

/// A scratch directory with a CA in it.
pub struct Pki {
    /// The directory holding every file.
    pub dir: PathBuf,
    /// The CA certificate (PEM), what a client trusts.
    pub ca: PathBuf,
    authority: Ca,
}

static COUNT: AtomicUsize = AtomicUsize::new(0);

impl Pki {
    /// A new directory and a CA named `name` in it (`ca.pem`).
    pub fn new(name: &str) -> Pki {
        let n = COUNT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("wep-pki-{}-{name}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let authority = Ca::create(&dir, name, "ca");
        Pki { dir, ca: authority.certificate.clone(), authority }
    }

    /// Issues `leaf` from this directory's CA (see [`Ca::issue`]).
    pub fn issue(&self, name: &str, leaf: &Leaf) -> Issued {
        self.authority.issue(name, leaf)
    }

    /// Another CA named `name` in the same directory (`NAME-ca.pem`), unrelated to [`Pki::ca`].
    pub fn other_ca(&self, name: &str) -> Ca {
        Ca::create(&self.dir, name, &format!("{name}-ca"))
    }

    /// A path in the directory, for the other files a test writes next to the certificates.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `openssl args` in `dir` and returns its stdout; fails the test with openssl's stderr.
fn openssl_in(dir: &Path, args: &[&str]) -> String {
    let output =
        Command::new("openssl").args(args).current_dir(dir).output().expect("run openssl (Debian package openssl)");
    assert!(output.status.success(), "openssl {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
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
