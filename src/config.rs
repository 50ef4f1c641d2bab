//! Configuration: the only place that reads the environment.
//!
//! Every setting is a `PROXY_*` variable (plus `RUST_LOG`, read by [`crate::logging`]). They are
//! read once at start-up into a [`Config`] that holds only checked types. Every problem is
//! collected, so an operator sees all bad variables at once, each message naming the variable and
//! its value: `PROXY_PORT="abc" is not valid: not a number`. `main` then exits with
//! [`EXIT_USAGE`] before anything binds.
//!
//! Tests feed [`Config::from_vars`] a list of pairs instead of changing the process environment.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use http::uri::Authority;
use serde::Deserialize;

/// Exit code for a configuration error (BSD `EX_USAGE`).
pub const EXIT_USAGE: i32 = 64;

/// The prefix shared by every variable this proxy reads.
pub const PREFIX: &str = "PROXY_";

/// One documented variable: what `--help` and the README list.
pub struct Variable {
    /// Full name, e.g. `PROXY_PORT`.
    pub name: &'static str,
    /// Default as the operator would write it, or `None` when required.
    pub default: Option<&'static str>,
    /// One line on what it controls.
    pub help: &'static str,
}

/// Every variable, in the order `--help` shows them. The defaults here are the only copy: an
/// unset variable takes its default string and goes through the same parser as a set one.
pub const VARIABLES: &[Variable] = &[
    Variable {
        name: "PROXY_HOSTIP",
        default: None,
        help: "exporter host: the node's IP from the downward API (status.hostIP); IPv4, IPv6 or DNS name",
    },
    Variable { name: "PROXY_PORT", default: Some("9182"), help: "exporter port (windows_exporter's default is 9182)" },
    Variable {
        name: "PROXY_LISTEN",
        default: Some("0.0.0.0:9100"),
        help: "socket address to listen on ([::]:9100 for IPv6)",
    },
    Variable {
        name: "PROXY_SCRAPE_TIMEOUT_SECONDS",
        default: Some("10"),
        help: "scrape deadline when the scraper sends no X-Prometheus-Scrape-Timeout-Seconds",
    },
    Variable {
        name: "PROXY_TIMEOUT_MARGIN_SECONDS",
        default: Some("0.5"),
        help: "taken off the scraper's timeout so the proxy answers 504 before the scraper gives up",
    },
    Variable { name: "PROXY_CONNECT_TIMEOUT_SECONDS", default: Some("2"), help: "TCP connect timeout to the exporter" },
    Variable {
        name: "PROXY_MAX_INFLIGHT",
        default: Some("2"),
        help: "concurrent scrapes sent to the exporter; more wait within their deadline, then get 503",
    },
    Variable {
        name: "PROXY_MAX_CONNECTIONS",
        default: Some("1024"),
        help: "concurrent client connections; more wait in the listen backlog",
    },
    Variable {
        name: "PROXY_HEADER_READ_TIMEOUT_SECONDS",
        default: Some("5"),
        help: "a client must finish its request headers this long after connecting or after its first byte",
    },
    Variable {
        name: "PROXY_IDLE_TIMEOUT_SECONDS",
        default: Some("75"),
        help: "idle keep-alive client connections are closed after this",
    },
    Variable {
        name: "PROXY_MAX_HEADER_BYTES",
        default: Some("16384"),
        help: "request line and headers larger than this get 431 (at least 8192)",
    },
    Variable {
        name: "PROXY_SHUTDOWN_GRACE_SECONDS",
        default: Some("20"),
        help: "on stop, in-flight scrapes get this long to finish (keep below terminationGracePeriodSeconds)",
    },
    Variable {
        name: "PROXY_READY_MAX_AGE_SECONDS",
        default: Some("30"),
        help: "/ready answers 200 while the exporter answered within this long",
    },
    Variable { name: "PROXY_LOG_FORMAT", default: Some("text"), help: "log format on stdout: text or json" },
];

/// hyper's smallest read buffer; a smaller header limit cannot be enforced.
const MIN_HEADER_BYTES: usize = 8192;
/// Longest accepted duration setting: an hour is already far past any scrape.
const MAX_SECONDS: f64 = 3600.0;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

/// The checked configuration. Built only by [`Config::from_vars`].
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the exporter listens, e.g. `10.240.0.4:9182` or `[fd00::4]:9182`.
    pub upstream: Authority,
    /// Where this proxy listens.
    pub listen: SocketAddr,
    /// Deadline for a scrape that carries no timeout header.
    pub scrape_timeout: Duration,
    /// Taken off the scraper's own timeout.
    pub timeout_margin: Duration,
    /// TCP connect timeout to the exporter.
    pub connect_timeout: Duration,
    /// Concurrent upstream scrapes.
    pub max_inflight: usize,
    /// Concurrent client connections.
    pub max_connections: usize,
    /// Time a client has to send its request headers.
    pub header_read_timeout: Duration,
    /// Idle keep-alive client connections are closed after this.
    pub idle_timeout: Duration,
    /// Request header size limit in bytes.
    pub max_header_bytes: usize,
    /// Drain period on stop.
    pub shutdown_grace: Duration,
    /// How recent an exporter answer must be for `/ready` to say 200.
    pub ready_max_age: Duration,
    /// Log format.
    pub log_format: LogFormat,
}

/// One bad variable. Displayed as `NAME="value" is not valid: reason`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A required variable is absent or empty.
    #[error("{name} is required but not set: {hint}")]
    Missing {
        /// Variable name.
        name: &'static str,
        /// What to set it to.
        hint: &'static str,
    },
    /// A variable is set to something unusable.
    #[error("{name}={value:?} is not valid: {reason}")]
    Invalid {
        /// Variable name.
        name: String,
        /// The value as given.
        value: String,
        /// Why it cannot be used.
        reason: String,
    },
}

/// All configuration problems found in one pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// The variables' shape, as envy reads them: every value a raw string, parsed below by helpers
/// that can name the variable in their errors.
#[derive(Debug, Default, Deserialize)]
struct RawConfig {
    hostip: Option<String>,
    port: Option<String>,
    listen: Option<String>,
    scrape_timeout_seconds: Option<String>,
    timeout_margin_seconds: Option<String>,
    connect_timeout_seconds: Option<String>,
    max_inflight: Option<String>,
    max_connections: Option<String>,
    header_read_timeout_seconds: Option<String>,
    idle_timeout_seconds: Option<String>,
    max_header_bytes: Option<String>,
    shutdown_grace_seconds: Option<String>,
    ready_max_age_seconds: Option<String>,
    log_format: Option<String>,
}

impl Config {
    /// Reads the process environment. Non-UTF-8 values are reported, not panicked on.
    pub fn from_env() -> Result<Config, ConfigErrors> {
        Config::from_os_vars(std::env::vars_os())
    }

    /// Like [`Config::from_vars`], for variables that may not be valid Unicode.
    pub fn from_os_vars(vars: impl IntoIterator<Item = (OsString, OsString)>) -> Result<Config, ConfigErrors> {
        let mut errors = Vec::new();
        let mut utf8 = Vec::new();
        for (name, value) in vars {
            let name = name.to_string_lossy().into_owned();
            if !name.starts_with(PREFIX) {
                continue;
            }
            match value.into_string() {
                Ok(value) => utf8.push((name, value)),
                Err(value) => errors.push(invalid(&name, &value.to_string_lossy(), "not valid UTF-8")),
            }
        }
        match (Config::from_vars(utf8), errors.is_empty()) {
            (Ok(config), true) => Ok(config),
            (Ok(_), false) => Err(ConfigErrors(errors)),
            (Err(ConfigErrors(more)), _) => {
                errors.extend(more);
                Err(ConfigErrors(errors))
            }
        }
    }

    /// Builds a `Config` from `(name, value)` pairs. Names without the `PROXY_` prefix are
    /// ignored; unknown `PROXY_*` names are ignored too (Kubernetes service links inject
    /// `<SERVICE>_PORT`-style variables that are not ours) and reported by [`unknown_variables`].
    pub fn from_vars<I, K, V>(vars: I) -> Result<Config, ConfigErrors>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let vars: BTreeMap<String, String> = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .filter(|(k, _)| k.starts_with(PREFIX) && is_known(k))
            .collect();
        let raw: RawConfig = envy::prefixed(PREFIX)
            .from_iter(vars)
            .expect("every field is an optional string, so deserialising cannot fail");

        let mut errors = Vec::new();
        let mut check = Check { errors: &mut errors };

        let host = check.keep(parse_host(raw.hostip.as_deref()));
        let port = check.keep(parse_port("PROXY_PORT", or_default("PROXY_PORT", raw.port.as_deref())));
        let listen = check.keep(parse_listen(or_default("PROXY_LISTEN", raw.listen.as_deref())));
        let scrape_timeout = check.seconds("PROXY_SCRAPE_TIMEOUT_SECONDS", raw.scrape_timeout_seconds, Positive);
        let timeout_margin = check.seconds("PROXY_TIMEOUT_MARGIN_SECONDS", raw.timeout_margin_seconds, ZeroAllowed);
        let connect_timeout = check.seconds("PROXY_CONNECT_TIMEOUT_SECONDS", raw.connect_timeout_seconds, Positive);
        let max_inflight = check.count("PROXY_MAX_INFLIGHT", raw.max_inflight, 1);
        let max_connections = check.count("PROXY_MAX_CONNECTIONS", raw.max_connections, 1);
        let header_read_timeout =
            check.seconds("PROXY_HEADER_READ_TIMEOUT_SECONDS", raw.header_read_timeout_seconds, Positive);
        let idle_timeout = check.seconds("PROXY_IDLE_TIMEOUT_SECONDS", raw.idle_timeout_seconds, Positive);
        let max_header_bytes = check.count("PROXY_MAX_HEADER_BYTES", raw.max_header_bytes, MIN_HEADER_BYTES);
        let shutdown_grace = check.seconds("PROXY_SHUTDOWN_GRACE_SECONDS", raw.shutdown_grace_seconds, ZeroAllowed);
        let ready_max_age = check.seconds("PROXY_READY_MAX_AGE_SECONDS", raw.ready_max_age_seconds, Positive);
        let log_format = check.keep(parse_log_format(or_default("PROXY_LOG_FORMAT", raw.log_format.as_deref())));

        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        let (Some(host), Some(port)) = (host, port) else {
            unreachable!("a missing value was recorded as an error above")
        };
        let upstream = upstream_authority(&host, port).map_err(|error| ConfigErrors(vec![error]))?;
        // Every check returned Some when `errors` is empty.
        let missing = "recorded as an error when absent";
        Ok(Config {
            upstream,
            listen: listen.expect(missing),
            scrape_timeout: scrape_timeout.expect(missing),
            timeout_margin: timeout_margin.expect(missing),
            connect_timeout: connect_timeout.expect(missing),
            max_inflight: max_inflight.expect(missing),
            max_connections: max_connections.expect(missing),
            header_read_timeout: header_read_timeout.expect(missing),
            idle_timeout: idle_timeout.expect(missing),
            max_header_bytes: max_header_bytes.expect(missing),
            shutdown_grace: shutdown_grace.expect(missing),
            ready_max_age: ready_max_age.expect(missing),
            log_format: log_format.expect(missing),
        })
    }
}

/// `PROXY_*` names in `names` that this proxy does not read: likely typos, worth a warning.
pub fn unknown_variables<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    names.into_iter().filter(|name| name.starts_with(PREFIX) && !is_known(name)).collect()
}

/// Runs the parsers, recording every error instead of stopping at the first.
struct Check<'a> {
    errors: &'a mut Vec<ConfigError>,
}

impl Check<'_> {
    /// The value, or `None` with the error recorded.
    fn keep<T>(&mut self, result: Result<T, ConfigError>) -> Option<T> {
        result.map_err(|error| self.errors.push(error)).ok()
    }

    fn seconds(&mut self, name: &str, raw: Option<String>, lower: Lower) -> Option<Duration> {
        self.keep(parse_seconds(name, or_default(name, raw.as_deref()), lower))
    }

    fn count(&mut self, name: &str, raw: Option<String>, min: usize) -> Option<usize> {
        self.keep(parse_count(name, or_default(name, raw.as_deref()), min))
    }
}

/// The value as set, or the variable's documented default when unset or empty.
fn or_default<'a>(name: &str, value: Option<&'a str>) -> &'a str {
    non_empty(value).unwrap_or_else(|| {
        VARIABLES
            .iter()
            .find(|v| v.name == name)
            .and_then(|v| v.default)
            .unwrap_or_else(|| panic!("{name} is in VARIABLES with a default"))
    })
}

fn is_known(name: &str) -> bool {
    VARIABLES.iter().any(|v| v.name == name)
}

fn invalid(name: &str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { name: name.to_owned(), value: value.to_owned(), reason: reason.into() }
}

/// Empty values count as unset: Kubernetes renders `value: ""` for a missing Helm value.
fn non_empty(value: Option<&str>) -> Option<&str> {
    value.filter(|v| !v.trim().is_empty())
}

/// The exporter host as it goes into a URI authority: IPv6 bracketed, names checked.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Host(String);

fn parse_host(value: Option<&str>) -> Result<Host, ConfigError> {
    const NAME: &str = "PROXY_HOSTIP";
    let Some(value) = non_empty(value) else {
        return Err(ConfigError::Missing {
            name: NAME,
            hint: "set it to the node's IP, in Kubernetes from the downward API: fieldRef status.hostIP",
        });
    };
    let trimmed = value.trim();
    let unbracketed = trimmed.strip_prefix('[').and_then(|v| v.strip_suffix(']')).unwrap_or(trimmed);
    if let Ok(ip) = unbracketed.parse::<IpAddr>() {
        return Ok(Host(match ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        }));
    }
    if trimmed.contains(':') {
        return Err(invalid(
            NAME,
            value,
            "looks like an address with a port or a malformed IPv6 address; give the host only and the port in PROXY_PORT",
        ));
    }
    if is_dns_name(trimmed) {
        return Ok(Host(trimmed.to_ascii_lowercase()));
    }
    Err(invalid(NAME, value, "not an IPv4 address, an IPv6 address or a DNS name"))
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

fn parse_port(name: &str, value: &str) -> Result<u16, ConfigError> {
    match value.trim().parse::<u32>() {
        Ok(0) => Err(invalid(name, value, "port 0 cannot be dialled; use 1-65535")),
        Ok(port) => u16::try_from(port).map_err(|_| invalid(name, value, "out of range; use 1-65535")),
        Err(_) => Err(invalid(name, value, "not a port number; use 1-65535")),
    }
}

fn parse_listen(value: &str) -> Result<SocketAddr, ConfigError> {
    value.trim().parse::<SocketAddr>().map_err(|_| {
        invalid("PROXY_LISTEN", value, "not a socket address; write IP:PORT such as 0.0.0.0:9100 or [::]:9100")
    })
}

/// Whether a duration may be zero.
#[derive(Clone, Copy)]
enum Lower {
    Positive,
    ZeroAllowed,
}
use Lower::{Positive, ZeroAllowed};

fn parse_seconds(name: &str, value: &str, lower: Lower) -> Result<Duration, ConfigError> {
    let seconds: f64 =
        value.trim().parse().map_err(|_| invalid(name, value, "not a number of seconds such as 10 or 0.5"))?;
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(invalid(name, value, "must be a finite, non-negative number of seconds"));
    }
    if seconds == 0.0 && matches!(lower, Positive) {
        return Err(invalid(name, value, "must be more than 0 seconds"));
    }
    if seconds > MAX_SECONDS {
        return Err(invalid(name, value, format!("must be at most {MAX_SECONDS} seconds")));
    }
    Ok(Duration::from_secs_f64(seconds))
}

fn parse_count(name: &str, value: &str, min: usize) -> Result<usize, ConfigError> {
    let count: usize = value.trim().parse().map_err(|_| invalid(name, value, "not a whole number"))?;
    if count < min {
        return Err(invalid(name, value, format!("must be at least {min}")));
    }
    if count > 1 << 20 {
        return Err(invalid(name, value, "must be at most 1048576"));
    }
    Ok(count)
}

fn parse_log_format(value: &str) -> Result<LogFormat, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err(invalid("PROXY_LOG_FORMAT", value, "use text or json")),
    }
}

fn upstream_authority(host: &Host, port: u16) -> Result<Authority, ConfigError> {
    let text = format!("{}:{port}", host.0);
    text.parse().map_err(|_| invalid("PROXY_HOSTIP", &host.0, "cannot be used as a URI host"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigErrors> {
        Config::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    fn messages(vars: &[(&str, &str)]) -> Vec<String> {
        config(vars).unwrap_err().0.iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn defaults_apply_when_only_the_host_is_set() {
        let c = config(&[("PROXY_HOSTIP", "10.240.0.4")]).unwrap();
        assert_eq!(c.upstream.as_str(), "10.240.0.4:9182");
        assert_eq!(c.listen, "0.0.0.0:9100".parse().unwrap());
        assert_eq!(c.scrape_timeout, Duration::from_secs(10));
        assert_eq!(c.timeout_margin, Duration::from_millis(500));
        assert_eq!(c.max_inflight, 2);
        assert_eq!(c.shutdown_grace, Duration::from_secs(20));
        assert_eq!(c.log_format, LogFormat::Text);
    }

    #[test]
    fn help_table_defaults_are_what_the_config_uses() {
        let defaults: Vec<(&str, &str)> = VARIABLES.iter().filter_map(|v| Some((v.name, v.default?))).collect();
        let c = config(&[("PROXY_HOSTIP", "h")]).unwrap();
        let expected = [
            ("PROXY_PORT", c.upstream.port_u16().unwrap().to_string()),
            ("PROXY_LISTEN", c.listen.to_string()),
            ("PROXY_SCRAPE_TIMEOUT_SECONDS", c.scrape_timeout.as_secs_f64().to_string()),
            ("PROXY_TIMEOUT_MARGIN_SECONDS", c.timeout_margin.as_secs_f64().to_string()),
            ("PROXY_CONNECT_TIMEOUT_SECONDS", c.connect_timeout.as_secs_f64().to_string()),
            ("PROXY_MAX_INFLIGHT", c.max_inflight.to_string()),
            ("PROXY_MAX_CONNECTIONS", c.max_connections.to_string()),
            ("PROXY_HEADER_READ_TIMEOUT_SECONDS", c.header_read_timeout.as_secs_f64().to_string()),
            ("PROXY_IDLE_TIMEOUT_SECONDS", c.idle_timeout.as_secs_f64().to_string()),
            ("PROXY_MAX_HEADER_BYTES", c.max_header_bytes.to_string()),
            ("PROXY_SHUTDOWN_GRACE_SECONDS", c.shutdown_grace.as_secs_f64().to_string()),
            ("PROXY_READY_MAX_AGE_SECONDS", c.ready_max_age.as_secs_f64().to_string()),
            ("PROXY_LOG_FORMAT", "text".to_string()),
        ];
        assert_eq!(defaults.len(), expected.len());
        for (name, value) in expected {
            let documented = defaults.iter().find(|(n, _)| *n == name).expect(name).1;
            assert_eq!(documented, value, "{name}");
        }
    }

    #[test]
    fn missing_hostip_names_the_variable() {
        let m = messages(&[]);
        assert_eq!(m.len(), 1);
        assert!(m[0].starts_with("PROXY_HOSTIP is required"), "{m:?}");
    }

    #[test]
    fn empty_hostip_counts_as_missing() {
        assert!(messages(&[("PROXY_HOSTIP", "  ")])[0].starts_with("PROXY_HOSTIP is required"));
    }

    #[test]
    fn bad_port_names_variable_and_value() {
        assert_eq!(
            messages(&[("PROXY_HOSTIP", "10.0.0.1"), ("PROXY_PORT", "abc")]),
            vec![r#"PROXY_PORT="abc" is not valid: not a port number; use 1-65535"#]
        );
    }

    #[test]
    fn port_zero_and_out_of_range_are_rejected() {
        for port in ["0", "65536", "-1", "99999999999"] {
            let m = messages(&[("PROXY_HOSTIP", "10.0.0.1"), ("PROXY_PORT", port)]);
            assert!(m[0].starts_with(&format!("PROXY_PORT=\"{port}\" is not valid")), "{m:?}");
        }
        assert_eq!(config(&[("PROXY_HOSTIP", "h"), ("PROXY_PORT", "65535")]).unwrap().upstream.as_str(), "h:65535");
    }

    #[test]
    fn every_error_is_reported_at_once() {
        let m = messages(&[("PROXY_PORT", "x"), ("PROXY_LISTEN", "9100"), ("PROXY_LOG_FORMAT", "xml")]);
        assert_eq!(m.len(), 4, "{m:?}");
        assert!(m.iter().any(|e| e.starts_with("PROXY_LISTEN=\"9100\"")));
        assert!(m.iter().any(|e| e.starts_with("PROXY_LOG_FORMAT=\"xml\"")));
    }

    #[test]
    fn ipv6_host_is_bracketed_in_the_authority() {
        let c = config(&[("PROXY_HOSTIP", "fd00::4"), ("PROXY_PORT", "9100")]).unwrap();
        assert_eq!(c.upstream.as_str(), "[fd00::4]:9100");
        let c = config(&[("PROXY_HOSTIP", "[fd00::4]")]).unwrap();
        assert_eq!(c.upstream.as_str(), "[fd00::4]:9182");
    }

    #[test]
    fn dns_names_are_accepted_and_junk_is_not() {
        assert_eq!(config(&[("PROXY_HOSTIP", "Node-1.internal")]).unwrap().upstream.as_str(), "node-1.internal:9182");
        for bad in ["10.0.0.1:9182", "http://10.0.0.1", "a b", "-x", "a..b", "host/path", "x@y"] {
            let m = messages(&[("PROXY_HOSTIP", bad)]);
            assert!(m[0].starts_with(&format!("PROXY_HOSTIP={bad:?} is not valid")), "{m:?}");
        }
    }

    #[test]
    fn listen_accepts_ipv4_and_ipv6() {
        let c = config(&[("PROXY_HOSTIP", "h"), ("PROXY_LISTEN", "[::]:9100")]).unwrap();
        assert_eq!(c.listen, "[::]:9100".parse().unwrap());
    }

    #[test]
    fn seconds_accept_fractions_and_reject_nonsense() {
        let c = config(&[("PROXY_HOSTIP", "h"), ("PROXY_SCRAPE_TIMEOUT_SECONDS", "2.5")]).unwrap();
        assert_eq!(c.scrape_timeout, Duration::from_millis(2500));
        let c = config(&[("PROXY_HOSTIP", "h"), ("PROXY_TIMEOUT_MARGIN_SECONDS", "0")]).unwrap();
        assert_eq!(c.timeout_margin, Duration::ZERO);
        for bad in ["0", "-1", "NaN", "inf", "10s", "1e9"] {
            let m = messages(&[("PROXY_HOSTIP", "h"), ("PROXY_SCRAPE_TIMEOUT_SECONDS", bad)]);
            assert!(m[0].starts_with(&format!("PROXY_SCRAPE_TIMEOUT_SECONDS={bad:?}")), "{m:?}");
        }
    }

    #[test]
    fn counts_have_lower_bounds() {
        let m = messages(&[("PROXY_HOSTIP", "h"), ("PROXY_MAX_INFLIGHT", "0"), ("PROXY_MAX_HEADER_BYTES", "1024")]);
        assert_eq!(m.len(), 2);
        assert!(m[0].contains("at least 1"));
        assert!(m[1].contains("at least 8192"));
    }

    #[test]
    fn unknown_proxy_variables_are_ignored_but_listed() {
        let c = config(&[("PROXY_HOSTIP", "h"), ("PROXY_SERVICE_HOST", "10.0.0.9")]);
        assert!(c.is_ok());
        assert_eq!(unknown_variables(["PROXY_HOST_IP", "PROXY_PORT", "PATH"]), vec!["PROXY_HOST_IP"]);
    }

    #[cfg(unix)]
    #[test]
    fn non_utf8_values_are_reported_not_panicked_on() {
        use std::os::unix::ffi::OsStringExt;
        let vars = vec![
            (OsString::from("PROXY_HOSTIP"), OsString::from("h")),
            (OsString::from("PROXY_PORT"), OsString::from_vec(vec![0x39, 0xff])),
        ];
        let m = Config::from_os_vars(vars).unwrap_err().to_string();
        assert!(m.starts_with("PROXY_PORT=\"9\u{fffd}\" is not valid: not valid UTF-8"), "{m}");
    }
}
