//! The few fields of an X.509 certificate the proxy reads: serial, `notBefore` and `notAfter`,
//! subject common name and subject alternative names (DNS, URI, IP).
//!
//! Hand-written DER instead of a general X.509 crate: these fields are all the proxy needs
//! (the expiry gauge, refusing a rotation to a certificate outside its validity,
//! client-certificate authorization, the serial in logs), rustls' own
//! verifier (webpki) already checks signatures, validity and names on every handshake, and a full
//! parser (x509-parser with nom, asn1-rs, der-parser, oid-registry, time) costs more .exe size
//! than this whole module (measured: see the commit that added it). The reader is strict DER
//! (definite lengths only) and rejects what it does not understand instead of guessing.

use std::net::IpAddr;

/// `2.5.29.17`, subjectAltName.
const OID_SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];
/// `2.5.4.3`, commonName.
const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];

// Universal tags.
const BOOLEAN: u8 = 0x01;
const INTEGER: u8 = 0x02;
const OCTET_STRING: u8 = 0x04;
const OID: u8 = 0x06;
const UTF8_STRING: u8 = 0x0c;
const PRINTABLE_STRING: u8 = 0x13;
const TELETEX_STRING: u8 = 0x14;
const IA5_STRING: u8 = 0x16;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
const UNIVERSAL_STRING: u8 = 0x1c;
const BMP_STRING: u8 = 0x1e;
const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
// Context-specific tags in a certificate.
const VERSION: u8 = 0xa0; // [0] EXPLICIT
const ISSUER_UID: u8 = 0x81; // [1] IMPLICIT
const SUBJECT_UID: u8 = 0x82; // [2] IMPLICIT
const EXTENSIONS: u8 = 0xa3; // [3] EXPLICIT
// GeneralName choices (IMPLICIT).
const SAN_DNS: u8 = 0x82; // [2] dNSName
const SAN_URI: u8 = 0x86; // [6] uniformResourceIdentifier
const SAN_IP: u8 = 0x87; // [7] iPAddress

/// A subject alternative name the proxy understands.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SubjectName {
    /// `dNSName`, as written (may be a wildcard such as `*.nodes.example`).
    Dns(String),
    /// `uniformResourceIdentifier`, e.g. a SPIFFE ID.
    Uri(String),
    /// `iPAddress`.
    Ip(IpAddr),
}

/// What the proxy reads from one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateInfo {
    /// The serial number's big-endian bytes, as encoded (a leading zero byte kept off).
    pub serial: Vec<u8>,
    /// `notBefore` in seconds since the Unix epoch (UTC).
    pub not_before: i64,
    /// `notAfter` in seconds since the Unix epoch (UTC).
    pub not_after: i64,
    /// The subject's first common name, if it has one.
    pub common_name: Option<String>,
    /// Subject alternative names of the kinds in [`SubjectName`], in certificate order; others
    /// (email, directory names, ...) are left out.
    pub names: Vec<SubjectName>,
}

impl CertificateInfo {
    /// Reads the fields from a DER certificate; the error says what is malformed.
    pub fn parse(der: &[u8]) -> Result<CertificateInfo, String> {
        let mut outer = Reader::new(der);
        let mut certificate = outer.expect(SEQUENCE, "certificate")?;
        outer.end("certificate")?;
        let mut tbs = certificate.expect(SEQUENCE, "tbsCertificate")?;
        if tbs.peek() == Some(VERSION) {
            tbs.any("version")?;
        }
        let serial = tbs.expect(INTEGER, "serialNumber")?.rest();
        let serial = match serial {
            [0, rest @ ..] if !rest.is_empty() => rest.to_vec(),
            _ => serial.to_vec(),
        };
        tbs.expect(SEQUENCE, "signature algorithm")?;
        tbs.expect(SEQUENCE, "issuer")?;
        let mut validity = tbs.expect(SEQUENCE, "validity")?;
        let not_before = time(&mut validity, "notBefore")?;
        let not_after = time(&mut validity, "notAfter")?;
        let subject = tbs.expect(SEQUENCE, "subject")?;
        tbs.expect(SEQUENCE, "subjectPublicKeyInfo")?;
        let mut names = Vec::new();
        while let Some(tag) = tbs.peek() {
            let mut field = tbs.any("optional field")?;
            match tag {
                ISSUER_UID | SUBJECT_UID => {}
                EXTENSIONS => {
                    let mut extensions = field.expect(SEQUENCE, "extensions")?;
                    while !extensions.is_empty() {
                        let mut extension = extensions.expect(SEQUENCE, "extension")?;
                        let id = extension.expect(OID, "extension id")?.rest();
                        if extension.peek() == Some(BOOLEAN) {
                            extension.any("critical")?;
                        }
                        let value = extension.expect(OCTET_STRING, "extension value")?.rest();
                        if id == OID_SUBJECT_ALT_NAME {
                            names = subject_alt_names(value)?;
                        }
                    }
                }
                _ => return Err(format!("unexpected field with tag {tag:#04x} in tbsCertificate")),
            }
        }
        Ok(CertificateInfo { serial, not_before, not_after, common_name: common_name(subject)?, names })
    }

    /// The serial in the colon-separated lower-case hex `openssl x509 -text` shows. Log lines write
    /// serials as `openssl x509 -serial` does, with [`crate::reload::serial`].
    pub fn serial_hex(&self) -> String {
        self.serial.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
    }
}

fn subject_alt_names(value: &[u8]) -> Result<Vec<SubjectName>, String> {
    let mut outer = Reader::new(value);
    let mut list = outer.expect(SEQUENCE, "subjectAltName")?;
    outer.end("subjectAltName")?;
    let mut names = Vec::new();
    while let Some(tag) = list.peek() {
        let bytes = list.any("GeneralName")?.rest();
        let text = || String::from_utf8(bytes.to_vec()).map_err(|_| "a SAN is not ASCII text".to_owned());
        match tag {
            SAN_DNS => names.push(SubjectName::Dns(text()?)),
            SAN_URI => names.push(SubjectName::Uri(text()?)),
            SAN_IP => names.push(SubjectName::Ip(match bytes.len() {
                4 => IpAddr::from(<[u8; 4]>::try_from(bytes).expect("length checked")),
                16 => IpAddr::from(<[u8; 16]>::try_from(bytes).expect("length checked")),
                n => return Err(format!("an IP address SAN has {n} bytes, not 4 or 16")),
            })),
            _ => {}
        }
    }
    Ok(names)
}

/// The first commonName in a Name (SEQUENCE OF SET OF AttributeTypeAndValue).
fn common_name(mut name: Reader<'_>) -> Result<Option<String>, String> {
    while !name.is_empty() {
        let mut rdn = name.expect(SET, "relative distinguished name")?;
        while !rdn.is_empty() {
            let mut attribute = rdn.expect(SEQUENCE, "attribute")?;
            let id = attribute.expect(OID, "attribute type")?.rest();
            let tag = attribute.peek();
            let value = attribute.any("attribute value")?.rest();
            if id == OID_COMMON_NAME {
                return directory_string(tag, value).map(Some);
            }
        }
    }
    Ok(None)
}

fn directory_string(tag: Option<u8>, bytes: &[u8]) -> Result<String, String> {
    match tag {
        Some(UTF8_STRING | PRINTABLE_STRING | IA5_STRING) => {
            String::from_utf8(bytes.to_vec()).map_err(|_| "the common name is not valid UTF-8".to_owned())
        }
        // T.61 in theory; in practice Latin-1, which maps byte for byte onto the first 256 chars.
        Some(TELETEX_STRING) => Ok(bytes.iter().map(|&b| char::from(b)).collect()),
        Some(BMP_STRING) if bytes.len() % 2 == 0 => {
            let units: Vec<u16> = bytes.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
            String::from_utf16(&units).map_err(|_| "the common name is not valid UTF-16".to_owned())
        }
        Some(UNIVERSAL_STRING) if bytes.len() % 4 == 0 => bytes
            .chunks_exact(4)
            .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
            .collect::<Option<String>>()
            .ok_or_else(|| "the common name is not valid UTF-32".to_owned()),
        _ => Err("the common name is not a string".to_owned()),
    }
}

/// A Time (UTCTime or GeneralizedTime, `Z` only as DER requires) as Unix seconds.
fn time(reader: &mut Reader<'_>, field: &str) -> Result<i64, String> {
    let tag = reader.peek();
    let bytes = reader.any(field)?.rest();
    let digits = |range: std::ops::Range<usize>| -> Result<i64, String> {
        let part = bytes.get(range).ok_or_else(|| format!("{field} is too short"))?;
        if !part.iter().all(u8::is_ascii_digit) {
            return Err(format!("{field} has a non-digit"));
        }
        Ok(part.iter().fold(0, |n, d| n * 10 + i64::from(d - b'0')))
    };
    let (year, rest) = match (tag, bytes.len()) {
        // YYMMDDHHMMSSZ; RFC 5280: 50-99 are 19xx, 00-49 are 20xx.
        (Some(UTC_TIME), 13) => {
            let yy = digits(0..2)?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, 2)
        }
        // YYYYMMDDHHMMSSZ
        (Some(GENERALIZED_TIME), 15) => (digits(0..4)?, 4),
        _ => return Err(format!("{field} is not a UTCTime or GeneralizedTime in UTC")),
    };
    if bytes.last() != Some(&b'Z') {
        return Err(format!("{field} is not in UTC"));
    }
    let (month, day) = (digits(rest..rest + 2)?, digits(rest + 2..rest + 4)?);
    let (hour, minute, second) =
        (digits(rest + 4..rest + 6)?, digits(rest + 6..rest + 8)?, digits(rest + 8..rest + 10)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return Err(format!("{field} is not a real date"));
    }
    Ok(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Unix seconds as `2026-12-01T15:27:07Z`, for log lines and messages about validity.
pub fn format_utc(seconds: i64) -> String {
    let (days, second_of_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    // Howard Hinnant's `civil_from_days`, the inverse of `days_from_civil` below.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    let (hour, minute, second) = (second_of_day / 3600, second_of_day / 60 % 60, second_of_day % 60);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z")
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// A cursor over DER TLVs.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes }
    }

    fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.first().copied()
    }

    /// What is left, consumed.
    fn rest(self) -> &'a [u8] {
        self.bytes
    }

    fn end(&self, what: &str) -> Result<(), String> {
        if self.is_empty() { Ok(()) } else { Err(format!("bytes after the {what}")) }
    }

    /// The next TLV's contents, whatever its tag.
    fn any(&mut self, what: &str) -> Result<Reader<'a>, String> {
        let truncated = || format!("the {what} is truncated");
        let [_tag, first, rest @ ..] = self.bytes else { return Err(truncated()) };
        let (length, rest) = match *first {
            short @ 0..=0x7f => (usize::from(short), rest),
            0x80 => return Err(format!("the {what} has an indefinite length, which DER forbids")),
            long => {
                let count = usize::from(long & 0x7f);
                if count > 4 || rest.len() < count {
                    return Err(truncated());
                }
                let (length, rest) = rest.split_at(count);
                (length.iter().fold(0usize, |n, b| (n << 8) | usize::from(*b)), rest)
            }
        };
        if rest.len() < length {
            return Err(truncated());
        }
        let (contents, after) = rest.split_at(length);
        self.bytes = after;
        Ok(Reader::new(contents))
    }

    /// The next TLV's contents, which must have `tag`.
    fn expect(&mut self, tag: u8, what: &str) -> Result<Reader<'a>, String> {
        match self.peek() {
            Some(found) if found == tag => self.any(what),
            Some(found) => Err(format!("expected the {what} (tag {tag:#04x}), found tag {found:#04x}")),
            None => Err(format!("the {what} is missing")),
        }
    }
}

#[cfg(test)]
mod tests {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;

    use super::*;

    fn der(pem: &str) -> Vec<u8> {
        CertificateDer::from_pem_slice(pem.as_bytes()).unwrap().to_vec()
    }

    #[test]
    fn reads_serial_expiry_common_name_and_every_kind_of_san() {
        let info = CertificateInfo::parse(&der(include_str!("testdata/leaf-ec.pem"))).unwrap();
        assert_eq!(info.serial, vec![0x12, 0x34, 0xab, 0xcd]);
        assert_eq!(info.serial_hex(), "12:34:ab:cd");
        // `date -u -d "Nov 28 15:27:07 2036" +%s`: the UTCTime path.
        assert_eq!(info.not_after, 2_111_498_827);
        // `date -u -d "Dec  1 15:27:07 2026" +%s`.
        assert_eq!(info.not_before, 1_796_138_827);
        assert_eq!(info.common_name.as_deref(), Some("proxy.example"));
        assert_eq!(
            info.names,
            vec![
                SubjectName::Dns("proxy.example".into()),
                SubjectName::Dns("*.nodes.example".into()),
                SubjectName::Ip("127.0.0.1".parse().unwrap()),
                SubjectName::Ip("::1".parse().unwrap()),
                SubjectName::Uri("spiffe://cluster.local/ns/monitoring/sa/prometheus".into()),
            ]
        );
    }

    #[test]
    fn a_generalized_time_after_2049_and_a_twenty_byte_serial() {
        let info = CertificateInfo::parse(&der(include_str!("testdata/ca.pem"))).unwrap();
        // `date -u -d "Apr 18 15:27:06 2054" +%s`.
        assert_eq!(info.not_after, 2_660_138_826);
        assert_eq!(info.serial.len(), 20);
        assert_eq!(info.common_name.as_deref(), Some("Test CA"));
        assert!(info.names.is_empty());
    }

    #[test]
    fn a_certificate_without_sans_has_only_its_common_name() {
        let info = CertificateInfo::parse(&der(include_str!("testdata/leaf-rsa.pem"))).unwrap();
        assert_eq!(info.serial, vec![7]);
        assert_eq!(info.common_name.as_deref(), Some("node-exporter"));
        assert!(info.names.is_empty());
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let der = der(include_str!("testdata/leaf-ec.pem"));
        for len in 0..der.len() {
            assert!(CertificateInfo::parse(&der[..len]).is_err(), "accepted {len} of {} bytes", der.len());
        }
        let mut longer = der.clone();
        longer.push(0);
        assert_eq!(CertificateInfo::parse(&longer).unwrap_err(), "bytes after the certificate");
    }

    #[test]
    fn unix_seconds_format_like_date_does() {
        // `date -u -d @N +%Y-%m-%dT%H:%M:%SZ`
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(1_796_138_827), "2026-12-01T15:27:07Z");
        assert_eq!(format_utc(2_660_138_826), "2054-04-18T15:27:06Z");
        assert_eq!(format_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_utc(-1), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn civil_dates_convert_like_date_does() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        // `date -u -d 2024-02-29 +%s` / 86400.
        assert_eq!(days_from_civil(2024, 2, 29), 19_782);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
    }
}
