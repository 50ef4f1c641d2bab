//! Certificate and key files: PEM chains (leaf first) and bundles, PKCS#8, PKCS#1 and SEC1
//! private keys, and a certificate paired with its key.
//!
//! Every loader reads the whole file once and says exactly what is wrong with it, in words an
//! operator can act on: a byte-order mark (what PowerShell 5 and Windows editors write), a DER
//! file where PEM is expected, an encrypted key, a key that belongs to another certificate.
//! The errors never quote key material; the caller adds the variable and the path
//! (`PROXY_TLS_KEY_FILE="/tls/tls.key" is not valid: ...`).
//!
//! This is the one PEM loader of the proxy: serving TLS, client-certificate authorities, the
//! exporter hop's CA bundle and client certificate all read their files here.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::{self, PemObject, SectionKind};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::tls::x509::CertificateInfo;

/// Files larger than this are refused unread: a certificate bundle is kilobytes (Mozilla's whole
/// CA bundle is about 220 KiB), so anything bigger is the wrong file (or `/dev/zero`).
pub const MAX_FILE_BYTES: u64 = 4 << 20;

/// Why a certificate or key file cannot be used. The message names no path and quotes no key
/// bytes.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    /// The file cannot be opened or read.
    #[error("cannot read it: {0}")]
    Read(std::io::Error),
    /// Larger than [`MAX_FILE_BYTES`].
    #[error("is larger than {} MiB, which no certificate or key file is", MAX_FILE_BYTES >> 20)]
    TooLarge,
    /// The file starts with a byte-order mark.
    #[error(
        "starts with a {0} byte-order mark (PowerShell 5 redirection and Out-File, and some Windows editors, write one); PEM must be plain ASCII: re-save it without a BOM, e.g. Set-Content -Encoding ascii"
    )]
    ByteOrderMark(Bom),
    /// The file is binary DER, not PEM text.
    #[error("looks like binary DER, not PEM text; convert it, e.g. openssl x509 -inform der -outform pem")]
    Der,
    /// The PEM text is malformed.
    #[error("is not valid PEM: {0}")]
    Pem(&'static str),
    /// No block of the wanted kind.
    #[error("has no {wanted} PEM block{}", found_labels(.found))]
    Missing {
        /// What the file should hold, e.g. `CERTIFICATE`.
        wanted: &'static str,
        /// The BEGIN labels the file does hold (labels only, never contents).
        found: Vec<String>,
    },
    /// A CERTIFICATE block does not hold an X.509 certificate.
    #[error("certificate {index} (counting from 1) is not a valid X.509 certificate: {reason}")]
    Certificate {
        /// Position in the file, from 1.
        index: usize,
        /// What is malformed.
        reason: String,
    },
    /// A certificate of a CA bundle cannot be a trust anchor, or the bundle cannot verify.
    #[error("cannot be used as a CA bundle: {0}")]
    Trust(String),
    /// The key parses as PEM but the crypto provider cannot use it.
    #[error("the private key cannot be used: {0}")]
    Key(String),
    /// The key is not the one the certificate was issued for.
    #[error("does not match the certificate (its public key is not the certificate's)")]
    Mismatch,
    /// A rotation to a chain that is outside its validity now, while the one in use is inside
    /// its own (see [`replacement`]).
    #[error(
        "{} (valid from {} to {}, now {}), while the certificate in use is still valid",
        if .now < .not_before { "is not valid yet" } else { "has expired" },
        crate::tls::x509::format_utc(*.not_before),
        crate::tls::x509::format_utc(*.not_after),
        crate::tls::x509::format_utc(*.now)
    )]
    NotValidNow {
        /// The chain's latest `notBefore`, Unix seconds.
        not_before: i64,
        /// The chain's earliest `notAfter`, Unix seconds.
        not_after: i64,
        /// The time of the check, Unix seconds.
        now: i64,
    },
}

fn found_labels(found: &[String]) -> String {
    match found.is_empty() {
        true => String::new(),
        false => format!(" (found {})", found.join(", ")),
    }
}

/// The byte-order marks Windows tools put at the start of text files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bom {
    /// `EF BB BF`.
    Utf8,
    /// `FF FE`: what PowerShell 5's `>` writes.
    Utf16Le,
    /// `FE FF`.
    Utf16Be,
}

impl fmt::Display for Bom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Bom::Utf8 => "UTF-8",
            Bom::Utf16Le => "UTF-16 LE",
            Bom::Utf16Be => "UTF-16 BE",
        })
    }
}

impl Bom {
    /// The mark `bytes` start with, if any.
    pub fn detect(bytes: &[u8]) -> Option<Bom> {
        match bytes {
            [0xef, 0xbb, 0xbf, ..] => Some(Bom::Utf8),
            [0xff, 0xfe, ..] => Some(Bom::Utf16Le),
            [0xfe, 0xff, ..] => Some(Bom::Utf16Be),
            _ => None,
        }
    }
}

/// Every certificate in a PEM file, in file order: a chain (leaf first) or a CA bundle.
///
/// Each one is checked to be a readable X.509 certificate, so a damaged block is reported at
/// load time, not at the first handshake.
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, CertificateError> {
    parse_certificates(&read_pem(path)?)
}

/// [`read_certificates`] for a file already read with [`read_pem`].
pub fn parse_certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, CertificateError> {
    check_text(pem)?;
    let mut certificates = Vec::new();
    for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(pem) {
        let (kind, der) = section.map_err(pem_error)?;
        if kind == SectionKind::Certificate {
            if let Err(reason) = CertificateInfo::parse(&der) {
                return Err(CertificateError::Certificate { index: certificates.len() + 1, reason });
            }
            certificates.push(CertificateDer::from(der));
        }
    }
    if certificates.is_empty() {
        return Err(CertificateError::Missing { wanted: "CERTIFICATE", found: labels(pem) });
    }
    Ok(certificates)
}

/// The first private key in a PEM file: PKCS#8 (`PRIVATE KEY`), PKCS#1 (`RSA PRIVATE KEY`) or
/// SEC1 (`EC PRIVATE KEY`). Other blocks (a certificate in a combined file) are skipped.
pub fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, CertificateError> {
    parse_private_key(&read_pem(path)?)
}

/// [`read_private_key`] for a file already read with [`read_pem`].
pub fn parse_private_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, CertificateError> {
    check_text(pem)?;
    for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(pem) {
        let (kind, der) = section.map_err(pem_error)?;
        if let Some(key) = PrivateKeyDer::from_pem(kind, der) {
            return Ok(key);
        }
    }
    Err(CertificateError::Missing {
        wanted: "unencrypted private key (PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)",
        found: labels(pem),
    })
}

/// Which file of a pair a [`PairError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairFile {
    /// The certificate chain.
    Certificate,
    /// The private key.
    Key,
}

/// Why a certificate and key pair cannot be served.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct PairError {
    /// The file at fault (a mismatch is reported against the key).
    pub file: PairFile,
    /// What is wrong with it.
    pub error: CertificateError,
}

/// A certificate chain with its private key, checked to belong together.
#[derive(Clone)]
pub struct KeyPair {
    /// What rustls serves (or presents, on the client side).
    pub certified: Arc<CertifiedKey>,
    /// The leaf certificate's fields.
    pub leaf: CertificateInfo,
    /// The latest `notBefore` in the chain, Unix seconds: when this pair starts working.
    pub not_before: i64,
    /// The earliest `notAfter` in the chain, Unix seconds: when this pair stops working.
    pub not_after: i64,
}

impl KeyPair {
    /// Whether every certificate of the chain is inside its validity at `now` (Unix seconds).
    pub fn is_valid_at(&self, now: i64) -> bool {
        self.not_before <= now && now < self.not_after
    }
}

/// The time now in Unix seconds, as certificate validity is compared with it.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// Whether a reloaded pair may replace the one in use (`current`) at `now`: it may, unless it is
/// outside its validity (expired, or not valid yet) while `current` is inside its own. Then the
/// new pair would only make every new handshake fail where the current one still works, so it is
/// refused like a pair that does not load. When the current one is outside its validity too, the
/// new one is taken: there is nothing better to serve. Start-up does not come here: an expired
/// certificate still starts, with a warning.
pub fn replacement(new: KeyPair, current: &KeyPair, now: i64) -> Result<KeyPair, PairError> {
    if new.is_valid_at(now) || !current.is_valid_at(now) {
        return Ok(new);
    }
    Err(PairError {
        file: PairFile::Certificate,
        error: CertificateError::NotValidNow { not_before: new.not_before, not_after: new.not_after, now },
    })
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key, whatever a later rustls prints for it.
        f.debug_struct("KeyPair").field("leaf", &self.leaf).field("not_after", &self.not_after).finish()
    }
}

/// Loads a chain and its key and checks that the key is the leaf's.
pub fn read_key_pair(certificate_file: &Path, key_file: &Path) -> Result<KeyPair, PairError> {
    let certificate_pem = read_pem(certificate_file).map_err(in_file(PairFile::Certificate))?;
    let key_pem = read_pem(key_file).map_err(in_file(PairFile::Key))?;
    parse_key_pair(&certificate_pem, &key_pem)
}

/// [`read_key_pair`] for files already read with [`read_pem`].
pub fn parse_key_pair(certificate_pem: &[u8], key_pem: &[u8]) -> Result<KeyPair, PairError> {
    let chain = parse_certificates(certificate_pem).map_err(in_file(PairFile::Certificate))?;
    let key = parse_private_key(key_pem).map_err(in_file(PairFile::Key))?;
    key_pair(chain, &key)
}

fn in_file(file: PairFile) -> impl Fn(CertificateError) -> PairError {
    move |error| PairError { file, error }
}

/// Pairs an already loaded chain (leaf first) with its key.
pub fn key_pair(chain: Vec<CertificateDer<'static>>, key: &PrivateKeyDer<'_>) -> Result<KeyPair, PairError> {
    let infos = chain
        .iter()
        .enumerate()
        .map(|(i, der)| {
            CertificateInfo::parse(der).map_err(|reason| CertificateError::Certificate { index: i + 1, reason })
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(in_file(PairFile::Certificate))?;
    let not_before = infos.iter().map(|i| i.not_before).max().unwrap_or(i64::MIN);
    let (Some(leaf), Some(not_after)) = (infos.first().cloned(), infos.iter().map(|i| i.not_after).min()) else {
        return Err(PairError {
            file: PairFile::Certificate,
            error: CertificateError::Missing { wanted: "CERTIFICATE", found: Vec::new() },
        });
    };
    let signing_key = rustls::crypto::aws_lc_rs::sign::any_supported_type(key)
        // rustls' message names the key type it could not parse; it holds no key bytes.
        .map_err(|error| PairError { file: PairFile::Key, error: CertificateError::Key(error.to_string()) })?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err(PairError { file: PairFile::Key, error: CertificateError::Mismatch });
        }
        // webpki could not parse the leaf (an X.509 v1 certificate, say): rustls could not
        // serve it either.
        Err(error) => {
            return Err(PairError {
                file: PairFile::Certificate,
                error: CertificateError::Certificate { index: 1, reason: format!("rustls cannot use it: {error}") },
            });
        }
    }
    Ok(KeyPair { certified: Arc::new(certified), leaf, not_before, not_after })
}

/// A CA bundle as trust anchors: the one builder for every trust store the proxy makes (client
/// certificates, the exporter's certificate, the Kubernetes API server's). The error names the
/// certificate (counting from 1) that cannot be one.
pub fn trust_store(certificates: &[CertificateDer<'static>]) -> Result<RootCertStore, CertificateError> {
    let mut roots = RootCertStore::empty();
    for (index, certificate) in certificates.iter().enumerate() {
        roots.add(certificate.clone()).map_err(|error| {
            CertificateError::Trust(format!(
                "certificate {} (counting from 1) cannot be a trust anchor: {error}",
                index + 1
            ))
        })?;
    }
    Ok(roots)
}

/// The earliest `notAfter` of `certificates`, Unix seconds: the number the expiry gauge shows
/// for a file (a chain stops working when its first certificate expires; a bundle needs
/// attention then too).
pub fn earliest_expiry(certificates: &[CertificateDer<'_>]) -> Option<i64> {
    certificates.iter().filter_map(|der| CertificateInfo::parse(der).ok()).map(|info| info.not_after).min()
}

/// A PEM file's bytes, refused when larger than [`MAX_FILE_BYTES`]. The `parse_*` functions
/// check the text itself.
pub fn read_pem(path: &Path) -> Result<Vec<u8>, CertificateError> {
    let file = File::open(path).map_err(CertificateError::Read)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(CertificateError::Read)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(CertificateError::TooLarge);
    }
    Ok(bytes)
}

/// Refuses text the PEM reader would misread: with a BOM it silently skips the first block (the
/// mark glues itself to the first BEGIN line), and binary DER holds no block at all.
fn check_text(bytes: &[u8]) -> Result<(), CertificateError> {
    if let Some(bom) = Bom::detect(bytes) {
        return Err(CertificateError::ByteOrderMark(bom));
    }
    // Every DER certificate and key starts with a SEQUENCE tag and a long length.
    if let [0x30, 0x81..=0x84, ..] = bytes {
        return Err(CertificateError::Der);
    }
    Ok(())
}

fn pem_error(error: pem::Error) -> CertificateError {
    // Our own words: pem::Error's Display can quote a line of the file.
    CertificateError::Pem(match error {
        pem::Error::MissingSectionEnd { .. } => "a block has no END line",
        pem::Error::IllegalSectionStart { .. } => "a BEGIN line is malformed",
        pem::Error::Base64Decode(_) => "a block's base64 is damaged",
        pem::Error::SectionTooLarge => "a block is too large",
        _ => "it cannot be decoded",
    })
}

/// The labels of the file's BEGIN lines (`-----BEGIN X-----` gives `X`), for "found ..." hints.
fn labels(text: &[u8]) -> Vec<String> {
    let mut labels: Vec<String> = text
        .split(|&b| b == b'\n')
        .filter_map(|line| line.trim_ascii().strip_prefix(b"-----BEGIN ")?.strip_suffix(b"-----"))
        .filter(|label| {
            label.len() <= 64 && label.iter().all(|b| b.is_ascii_uppercase() || *b == b' ' || b.is_ascii_digit())
        })
        .map(|label| String::from_utf8_lossy(label).into_owned())
        .collect();
    labels.dedup();
    labels
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn testdata(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src/tls/testdata").join(name)
    }

    /// A scratch file with `bytes`, removed when the test ends.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str, bytes: &[u8]) -> Scratch {
            let dir = std::env::temp_dir().join(format!("wep-certificate-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join(name);
            std::fs::write(&path, bytes).unwrap();
            Scratch(path)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn message(result: Result<impl fmt::Debug, CertificateError>) -> String {
        result.unwrap_err().to_string()
    }

    #[test]
    fn a_chain_is_read_leaf_first() {
        let chain = read_certificates(&testdata("chain-ec.pem")).unwrap();
        assert_eq!(chain.len(), 2);
        assert_eq!(CertificateInfo::parse(&chain[0]).unwrap().common_name.as_deref(), Some("proxy.example"));
        assert_eq!(CertificateInfo::parse(&chain[1]).unwrap().common_name.as_deref(), Some("Test CA"));
        assert_eq!(earliest_expiry(&chain), Some(2_111_498_827));
    }

    #[test]
    fn pkcs8_pkcs1_and_sec1_keys_load_and_match_their_certificates() {
        for (certificate, key, format) in [
            ("chain-ec.pem", "leaf-ec.pkcs8.pem", "pkcs8"),
            ("leaf-ec.pem", "leaf-ec.sec1.pem", "sec1"),
            ("leaf-rsa.pem", "leaf-rsa.pkcs1.pem", "pkcs1"),
        ] {
            let key_der = read_private_key(&testdata(key)).unwrap();
            let expected = match format {
                "pkcs8" => matches!(key_der, PrivateKeyDer::Pkcs8(_)),
                "sec1" => matches!(key_der, PrivateKeyDer::Sec1(_)),
                _ => matches!(key_der, PrivateKeyDer::Pkcs1(_)),
            };
            assert!(expected, "{key} read as {key_der:?}");
            let pair = read_key_pair(&testdata(certificate), &testdata(key)).unwrap();
            assert_eq!(pair.not_after, 2_111_498_827, "{certificate}");
        }
    }

    #[test]
    fn a_key_for_another_certificate_is_a_mismatch_reported_against_the_key() {
        let error = read_key_pair(&testdata("leaf-rsa.pem"), &testdata("leaf-ec.sec1.pem")).unwrap_err();
        assert_eq!(error.file, PairFile::Key);
        assert!(matches!(error.error, CertificateError::Mismatch), "{error}");
        assert_eq!(error.to_string(), "does not match the certificate (its public key is not the certificate's)");
    }

    #[test]
    fn every_byte_order_mark_is_named() {
        let pem = std::fs::read(testdata("leaf-ec.pem")).unwrap();
        let utf16le: Vec<u8> = [0xff, 0xfe].into_iter().chain(pem.iter().flat_map(|&b| [b, 0])).collect();
        let utf16be: Vec<u8> = [0xfe, 0xff].into_iter().chain(pem.iter().flat_map(|&b| [0, b])).collect();
        let utf8: Vec<u8> = [0xef, 0xbb, 0xbf].into_iter().chain(pem.iter().copied()).collect();
        for (bytes, name) in [(utf8, "UTF-8"), (utf16le, "UTF-16 LE"), (utf16be, "UTF-16 BE")] {
            let file = Scratch::new(&format!("bom-{name}.pem"), &bytes);
            let m = message(read_certificates(&file.0));
            assert!(m.starts_with(&format!("starts with a {name} byte-order mark")), "{m}");
            let m = message(read_private_key(&file.0));
            assert!(m.contains(&format!("{name} byte-order mark")), "{m}");
        }
    }

    #[test]
    fn a_file_without_the_wanted_block_says_what_it_found() {
        // The classic swap: key in the certificate variable and the other way round.
        let m = message(read_certificates(&testdata("leaf-ec.pkcs8.pem")));
        assert_eq!(m, "has no CERTIFICATE PEM block (found PRIVATE KEY)");
        let m = message(read_private_key(&testdata("leaf-ec.pem")));
        assert!(m.starts_with("has no unencrypted private key"), "{m}");
        assert!(m.ends_with("(found CERTIFICATE)"), "{m}");
        let empty = Scratch::new("empty.pem", b"");
        assert_eq!(message(read_certificates(&empty.0)), "has no CERTIFICATE PEM block");
    }

    #[test]
    fn an_encrypted_key_is_named_without_its_contents() {
        let file = Scratch::new(
            "encrypted.pem",
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIFHDBOBgkqhkiG9w0BBQ0wQTApBgkqhkiG9w0BBQwwHAQI\n-----END ENCRYPTED PRIVATE KEY-----\n",
        );
        let m = message(read_private_key(&file.0));
        assert!(m.ends_with("(found ENCRYPTED PRIVATE KEY)"), "{m}");
        assert!(!m.contains("MIIF"), "{m}");
    }

    #[test]
    fn der_and_damaged_pem_get_their_own_messages() {
        let pem = std::fs::read_to_string(testdata("leaf-ec.pem")).unwrap();
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        let file = Scratch::new("leaf.der", &der);
        assert!(message(read_certificates(&file.0)).starts_with("looks like binary DER"));

        let unterminated = Scratch::new("cut.pem", pem.lines().take(4).collect::<Vec<_>>().join("\n").as_bytes());
        assert_eq!(message(read_certificates(&unterminated.0)), "is not valid PEM: a block has no END line");

        // Valid base64, but not a certificate inside.
        let junk = Scratch::new("junk.pem", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
        let m = message(read_certificates(&junk.0));
        assert!(m.starts_with("certificate 1 (counting from 1) is not a valid X.509 certificate"), "{m}");
    }

    #[test]
    fn a_missing_file_and_a_directory_cannot_be_read() {
        assert!(message(read_certificates(&testdata("absent.pem"))).starts_with("cannot read it: "));
        assert!(message(read_private_key(&testdata(""))).starts_with("cannot read it: "));
    }

    #[test]
    fn key_pair_debug_shows_no_key() {
        let pair = read_key_pair(&testdata("leaf-ec.pem"), &testdata("leaf-ec.sec1.pem")).unwrap();
        let shown = format!("{pair:?}");
        assert!(shown.contains("not_after: 2111498827"), "{shown}");
        assert!(!shown.contains("key"), "{shown}");
    }

    #[test]
    fn a_replacement_outside_its_validity_is_refused_only_while_the_current_pair_is_valid() {
        let pair = |not_before, not_after| KeyPair {
            not_before,
            not_after,
            ..read_key_pair(&testdata("leaf-ec.pem"), &testdata("leaf-ec.sec1.pem")).unwrap()
        };
        let (current, valid, expired, early) = (pair(100, 200), pair(150, 300), pair(0, 120), pair(180, 400));
        assert_eq!(replacement(valid, &current, 160).unwrap().not_after, 300);
        let refused = replacement(expired.clone(), &current, 160).unwrap_err();
        assert_eq!(refused.file, PairFile::Certificate);
        assert_eq!(
            refused.to_string(),
            "has expired (valid from 1970-01-01T00:00:00Z to 1970-01-01T00:02:00Z, now 1970-01-01T00:02:40Z), \
             while the certificate in use is still valid"
        );
        let refused = replacement(early.clone(), &current, 160).unwrap_err().to_string();
        assert!(refused.starts_with("is not valid yet (valid from 1970-01-01T00:03:00Z"), "{refused}");
        // Once the current pair is outside its own validity, anything is better or no worse.
        assert_eq!(replacement(expired, &current, 250).unwrap().not_after, 120);
        assert_eq!(replacement(early, &current, 50).unwrap().not_after, 400);
    }
}
