//! The parsers: one per kind of value, all of the shape [`Parser`].
//!
//! A parser sees the value with surrounding white space trimmed and returns the checked value or
//! the reason it cannot be used, written for an operator ("not a port number; use 1-65535"); the
//! caller prefixes the variable and its value, so every message reads
//! `PROXY_PORT="abc" is not valid: not a port number; use 1-65535`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::deadline::{MAX_DEADLINE, MIN_DEADLINE};
use crate::exporter::discovery::Ports;
use crate::tls::acceptor::MinVersion;

/// Every parser's signature.
pub type Parser<T> = fn(&str) -> Result<T, String>;

/// hyper's smallest read buffer; a smaller header limit cannot be enforced.
pub const MIN_HEADER_BYTES: usize = 8192;
/// Longest accepted duration setting: an hour is already far past any scrape.
const MAX_SECONDS: f64 = 3600.0;
/// Largest accepted count setting.
const MAX_COUNT: usize = 1 << 20;

/// The exporter host as it goes into a URI authority: IPv6 bracketed, DNS names lowercased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host(pub String);

/// An IPv4 or IPv6 address (brackets optional) or an RFC 1123 DNS name.
pub fn host(value: &str) -> Result<Host, String> {
    let unbracketed = value.strip_prefix('[').and_then(|v| v.strip_suffix(']')).unwrap_or(value);
    if let Ok(ip) = unbracketed.parse::<IpAddr>() {
        return Ok(Host(match ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        }));
    }
    if value.contains(':') {
        return Err("looks like an address with a port or a malformed IPv6 address; give the host only and the port in PROXY_PORT".into());
    }
    if is_dns_name(value) {
        return Ok(Host(value.to_ascii_lowercase()));
    }
    Err("not an IPv4 address, an IPv6 address or a DNS name".into())
}

/// RFC 1123 host name: dot-separated labels of letters, digits and inner hyphens.
fn is_dns_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// A TCP port, 1-65535.
pub fn port(value: &str) -> Result<u16, String> {
    match value.parse::<u32>() {
        Ok(0) => Err("port 0 cannot be dialled; use 1-65535".into()),
        Ok(port) => u16::try_from(port).map_err(|_| "out of range; use 1-65535".into()),
        Err(_) => Err("not a port number; use 1-65535".into()),
    }
}

/// One port, or a comma-separated list of ports tried in that order (exporter port discovery).
/// A single port reads exactly as [`port`] does.
pub fn ports(value: &str) -> Result<Ports, String> {
    if !value.contains(',') {
        return Ports::new(vec![port(value)?]);
    }
    let mut ports = Vec::new();
    for entry in value.split(',').map(str::trim) {
        if entry.is_empty() {
            return Err("the list has an empty entry; write ports like 19100,19182,9182".into());
        }
        ports.push(port(entry).map_err(|reason| format!("{entry:?} in the list: {reason}"))?);
    }
    Ports::new(ports)
}

/// `IP:PORT`.
pub fn socket_address(value: &str) -> Result<SocketAddr, String> {
    value
        .parse::<SocketAddr>()
        .map_err(|_| "not a socket address; write IP:PORT such as 0.0.0.0:9100 or [::]:9100".into())
}

/// Seconds, fractions allowed, zero included, at most an hour.
pub fn seconds(value: &str) -> Result<Duration, String> {
    let seconds: f64 = value.parse().map_err(|_| "not a number of seconds such as 10 or 0.5".to_owned())?;
    if !seconds.is_finite() || seconds < 0.0 {
        return Err("must be a finite, non-negative number of seconds".into());
    }
    if seconds > MAX_SECONDS {
        return Err(format!("must be at most {MAX_SECONDS} seconds"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Seconds, more than zero.
pub fn positive_seconds(value: &str) -> Result<Duration, String> {
    let duration = seconds(value)?;
    if duration.is_zero() {
        return Err("must be more than 0 seconds".into());
    }
    Ok(duration)
}

/// A scrape deadline: within the bounds the deadline logic uses for every scrape.
pub fn scrape_deadline(value: &str) -> Result<Duration, String> {
    let duration = seconds(value)?;
    if duration < MIN_DEADLINE || duration > MAX_DEADLINE {
        return Err(format!(
            "must be from {} to {} seconds, the range every scrape deadline is held to",
            MIN_DEADLINE.as_secs_f64(),
            MAX_DEADLINE.as_secs_f64()
        ));
    }
    Ok(duration)
}

fn count_from(value: &str, min: usize) -> Result<usize, String> {
    let count: usize = value.parse().map_err(|_| "not a whole number".to_owned())?;
    if count < min {
        return Err(format!("must be at least {min}"));
    }
    if count > MAX_COUNT {
        return Err(format!("must be at most {MAX_COUNT}"));
    }
    Ok(count)
}

/// A whole number, at least 1.
pub fn count(value: &str) -> Result<usize, String> {
    count_from(value, 1)
}

/// A request head size limit in bytes, at least [`MIN_HEADER_BYTES`].
pub fn header_bytes(value: &str) -> Result<usize, String> {
    count_from(value, MIN_HEADER_BYTES)
}

/// `true` or `false` (also `1`/`0`, `yes`/`no`, any case).
pub fn boolean(value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err("use true or false".into()),
    }
}

/// `http` or `https` (any case): how the proxy talks to the exporter.
pub fn exporter_scheme(value: &str) -> Result<crate::exporter::settings::ExporterScheme, String> {
    use crate::exporter::settings::ExporterScheme;
    match value.to_ascii_lowercase().as_str() {
        "http" => Ok(ExporterScheme::Http),
        "https" => Ok(ExporterScheme::Https),
        _ => Err("use http or https".into()),
    }
}

/// A TLS server name: a DNS name, or an IP address (IPv6 with or without brackets), which is
/// then checked against the certificate's IP SANs.
pub fn server_name(value: &str) -> Result<rustls_pki_types::ServerName<'static>, String> {
    let unbracketed = value.strip_prefix('[').and_then(|v| v.strip_suffix(']')).unwrap_or(value);
    rustls_pki_types::ServerName::try_from(unbracketed.to_ascii_lowercase())
        .map_err(|_| "not a DNS name or an IP address".into())
}

/// A comma-separated list of non-empty items, white space around each trimmed.
pub fn list(value: &str) -> Result<Vec<String>, String> {
    let items: Vec<String> = value.split(',').map(|item| item.trim().to_owned()).collect();
    if items.iter().any(String::is_empty) {
        return Err("an empty item in the comma-separated list".into());
    }
    Ok(items)
}

/// A file path, as given (relative paths are from the working directory). Whether the file can
/// be read and holds what it should is for the concept's settings to check, naming the variable.
pub fn file_path(value: &str) -> Result<PathBuf, String> {
    Ok(PathBuf::from(value))
}

/// `1.2` or `1.3`; also as exporter-toolkit (`VersionTLS12`), nginx (`TLSv1.2`) and others
/// spell it.
pub fn tls_version(value: &str) -> Result<MinVersion, String> {
    let lower = value.to_ascii_lowercase();
    let lower = lower.strip_prefix("version").unwrap_or(&lower);
    let number = lower.strip_prefix("tlsv").or_else(|| lower.strip_prefix("tls")).unwrap_or(lower);
    match number.trim_start_matches(['_', ' ']) {
        "1.2" | "12" | "1_2" => Ok(MinVersion::Tls12),
        "1.3" | "13" | "1_3" => Ok(MinVersion::Tls13),
        "1.0" | "1.1" | "10" | "11" | "1_0" | "1_1" => {
            Err("TLS 1.0 and 1.1 are not supported (rustls never implemented them); use 1.2 or 1.3".into())
        }
        _ => Err("use 1.2 or 1.3".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_lists_keep_their_order_and_name_the_bad_entry() {
        assert_eq!(ports("9182").unwrap().single(), Some(9182));
        assert_eq!(ports("19100, 19182,9182").unwrap().to_string(), "19100,19182,9182");
        for (value, reason) in [
            ("abc", "not a port number; use 1-65535"),
            ("9182,abc", r#""abc" in the list: not a port number; use 1-65535"#),
            ("9182,0", r#""0" in the list: port 0 cannot be dialled; use 1-65535"#),
            ("9182,70000", r#""70000" in the list: out of range; use 1-65535"#),
            ("9182,", "the list has an empty entry; write ports like 19100,19182,9182"),
            (",9182", "the list has an empty entry; write ports like 19100,19182,9182"),
            ("9182,19182,9182", "port 9182 is listed twice"),
        ] {
            assert_eq!(ports(value).unwrap_err(), reason, "{value}");
        }
    }

    #[test]
    fn lists_reject_empty_items() {
        assert_eq!(list("a, b").unwrap(), vec!["a", "b"]);
        assert!(list("a,,b").is_err());
        assert!(list("a,").is_err());
    }

    #[test]
    fn booleans_take_the_usual_spellings() {
        assert_eq!(boolean("TRUE"), Ok(true));
        assert_eq!(boolean("no"), Ok(false));
        assert!(boolean("maybe").is_err());
    }

    #[test]
    fn tls_versions_in_the_spellings_operators_copy() {
        for spelling in ["1.2", "TLS1.2", "tlsv1.2", "TLS12", "VersionTLS12"] {
            assert_eq!(tls_version(spelling), Ok(MinVersion::Tls12), "{spelling}");
        }
        assert_eq!(tls_version("1.3"), Ok(MinVersion::Tls13));
        assert_eq!(tls_version("VersionTLS13"), Ok(MinVersion::Tls13));
        assert_eq!(tls_version("1.4"), Err("use 1.2 or 1.3".to_owned()));
        assert!(tls_version("1.1").unwrap_err().contains("not supported"));
    }

    #[test]
    fn scrape_deadlines_stay_within_the_deadline_bounds() {
        assert_eq!(scrape_deadline("0.25"), Ok(MIN_DEADLINE));
        assert_eq!(scrape_deadline("300"), Ok(MAX_DEADLINE));
        assert!(scrape_deadline("0.1").unwrap_err().contains("from 0.25 to 300 seconds"));
        assert!(scrape_deadline("301").is_err());
    }
}
