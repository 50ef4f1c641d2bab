//! Configuration: the only place that reads the environment.
//!
//! Every setting is a `PROXY_*` variable (plus `RUST_LOG`), listed once in [`variables`]. They are
//! read once at start-up into a [`Config`] that holds only checked types. Every problem is
//! collected, so an operator sees all bad variables at once, each message naming the variable and
//! its value: `PROXY_PORT="abc" is not valid: not a port number; use 1-65535`. `main` then exits
//! with [`EXIT_USAGE`] before anything binds.
//!
//! The table drives the parse: [`Reader`] runs each variable's [`parse::Parser`] on its value or
//! its default, so each name is written once, in [`variables`]. (envy, which read the variables
//! into a struct of strings, was dropped: that struct repeated every name and did no work the
//! parsers do not do, and serde stops at the first error where operators need all of them.) A
//! concept with several variables and rules between them (TLS, authentication, the exporter hop)
//! gets a settings file of its own beside this one. Each settings type lives with the module
//! that consumes it (`tls::acceptor::TlsSettings`, `auth::AuthSettings`,
//! `exporter::settings::ExporterSettings`, `scrape::ScrapeSettings`, `server::Settings`): this
//! module sits on top, reads the environment and fills them, and no module below imports it.
//!
//! Tests feed [`Config::from_vars`] a list of pairs instead of changing the process environment;
//! clippy's `disallowed-methods` keeps every other module from reading it.

pub mod auth;
pub mod coalesce;
pub mod collect;
pub mod exporter;
pub mod filter;
pub mod parse;
pub mod tls;
pub mod variables;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use http::uri::Authority;
use tracing_subscriber::filter::Targets;

use crate::auth::AuthSettings;
use crate::connection::Limits;
use crate::exporter::discovery::Ports;
use crate::exporter::settings::ExporterSettings;
use crate::filter::FilterSettings;
use crate::logging::{self, LogFormat};
use crate::scrape::ScrapeSettings;
use crate::scrape::coalesce::Coalescing;
use crate::scrape::collectors::CollectSettings;
use crate::server;
use crate::tls::acceptor::{Acceptor, TlsSettings};
use parse::{Host, Parser};
use variables::{self as var, WhenUnset};
pub use variables::{VARIABLES, Variable};

/// Exit code for a configuration error (BSD `EX_USAGE`).
pub const EXIT_USAGE: i32 = 64;

/// The prefix shared by every variable this proxy reads (but `RUST_LOG`).
pub const PREFIX: &str = "PROXY_";

/// The checked configuration. Built only by [`Config::from_vars`].
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the exporter listens, e.g. `10.240.0.4:9182` or `[fd00::4]:9182`; with a port list,
    /// its first port.
    pub exporter: Authority,
    /// The ports `PROXY_PORT` names, in order: one, or a list to find the exporter on.
    pub exporter_ports: Ports,
    /// Where this proxy listens.
    pub listen: SocketAddr,
    /// Deadline for a scrape that carries no timeout header.
    pub scrape_timeout: Duration,
    /// Taken off the scraper's own timeout.
    pub timeout_margin: Duration,
    /// TCP connect timeout to the exporter.
    pub connect_timeout: Duration,
    /// Concurrent exporter requests.
    pub max_inflight: usize,
    /// Coalescing of identical concurrent scrapes.
    pub coalesce: Coalescing,
    /// Which collectors scrapes run (`PROXY_COLLECT`, `PROXY_COLLECT_ALLOW`, `PROXY_SLOW_COLLECT`).
    pub collect: CollectSettings,
    /// The filter stage (`PROXY_METRIC_KEEP`, `PROXY_METRIC_DROP`, `PROXY_SERIES_DROP`,
    /// `PROXY_MAX_SERIES`); all unset: none.
    pub filter: FilterSettings,
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
    /// How the exporter is reached: plain or TLS, the proxy's credentials.
    pub hop: ExporterSettings,
    /// HTTPS on the listener; `None`: plain HTTP.
    pub tls: Option<TlsSettings>,
    /// Log format.
    pub log_format: LogFormat,
    /// Log levels, from `RUST_LOG`.
    pub log_filter: Targets,
    /// Who may scrape, and whether the scraper's `Authorization` reaches the exporter.
    pub auth: AuthSettings,
    /// `PROXY_*` variables that were set but are not ours: likely typos, worth a warning.
    pub unknown_variables: Vec<String>,
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

impl ConfigError {
    /// `variable`'s `value` cannot be used, for `reason`.
    pub fn invalid(variable: &Variable, value: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid { name: variable.name.to_owned(), value: value.to_owned(), reason: reason.into() }
    }
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

impl Config {
    /// Reads the process environment, once. Non-UTF-8 values are reported, not panicked on.
    #[allow(clippy::disallowed_methods)] // the one reader of the environment
    pub fn from_env() -> Result<Config, ConfigErrors> {
        Config::from_os_vars(std::env::vars_os())
    }

    /// Like [`Config::from_vars`], for variables that may not be valid Unicode.
    pub fn from_os_vars(vars: impl IntoIterator<Item = (OsString, OsString)>) -> Result<Config, ConfigErrors> {
        let mut errors = Vec::new();
        let mut utf8 = Vec::new();
        for (name, value) in vars {
            let name = name.to_string_lossy().into_owned();
            if !is_ours(&name) {
                continue;
            }
            match value.into_string() {
                Ok(value) => utf8.push((name, value)),
                Err(value) => errors.push(ConfigError::Invalid {
                    name,
                    value: value.to_string_lossy().into_owned(),
                    reason: "not valid UTF-8".into(),
                }),
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

    /// Builds a `Config` from `(name, value)` pairs. Names other than `PROXY_*` and `RUST_LOG`
    /// are ignored; unknown `PROXY_*` names are kept in [`Config::unknown_variables`] for a
    /// warning (Kubernetes service links inject `<SERVICE>_PORT`-style variables that are not
    /// ours).
    pub fn from_vars<I, K, V>(vars: I) -> Result<Config, ConfigErrors>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let mut values = Reader::new(vars);
        let host = values.required(&var::HOSTIP, parse::host, HOSTIP_HINT);
        let exporter_ports = values.value(&var::PORT, parse::ports);
        let port = exporter_ports.first();
        let config = Config {
            exporter: Authority::from_static("unset:1"),
            exporter_ports,
            listen: values.value(&var::LISTEN, parse::socket_address),
            scrape_timeout: values.value(&var::SCRAPE_TIMEOUT_SECONDS, parse::scrape_deadline),
            timeout_margin: values.value(&var::TIMEOUT_MARGIN_SECONDS, parse::seconds),
            connect_timeout: values.value(&var::CONNECT_TIMEOUT_SECONDS, parse::positive_seconds),
            max_inflight: values.value(&var::MAX_INFLIGHT, parse::count),
            coalesce: coalesce::settings(&mut values),
            collect: collect::settings(&mut values),
            filter: filter::settings(&mut values),
            max_connections: values.value(&var::MAX_CONNECTIONS, parse::count),
            header_read_timeout: values.value(&var::HEADER_READ_TIMEOUT_SECONDS, parse::positive_seconds),
            idle_timeout: values.value(&var::IDLE_TIMEOUT_SECONDS, parse::positive_seconds),
            max_header_bytes: values.value(&var::MAX_HEADER_BYTES, parse::header_bytes),
            shutdown_grace: values.value(&var::SHUTDOWN_GRACE_SECONDS, parse::seconds),
            ready_max_age: values.value(&var::READY_MAX_AGE_SECONDS, parse::positive_seconds),
            hop: Default::default(),
            tls: tls::settings(&mut values),
            log_format: values.value(&var::LOG_FORMAT, logging::format),
            log_filter: values.value(&var::RUST_LOG, logging::filter),
            auth: Default::default(),
            unknown_variables: values.unknown.clone(),
        };
        let hop = exporter::settings(&mut values, host.as_ref());
        let auth = auth::settings(&mut values, auth_context(hop.as_ref(), config.tls.as_ref()));
        let exporter = host.and_then(|host| values.record(&var::HOSTIP, exporter_authority(&host, port)));
        values.finish()?;
        let exporter = exporter.expect("a missing or bad host was recorded as an error");
        let hop = hop.expect("a problem with the hop settings was recorded as an error");
        Ok(Config { exporter, hop, auth, ..config })
    }
}

impl Config {
    /// The settings of the `/metrics` handler.
    pub fn scrape_settings(&self) -> ScrapeSettings {
        ScrapeSettings {
            max_inflight: self.max_inflight,
            scrape_timeout: self.scrape_timeout,
            timeout_margin: self.timeout_margin,
            coalesce: self.coalesce,
            forward_authorization: self.auth.forward_authorization,
        }
    }

    /// The server's settings, serving HTTPS through `tls` when given.
    pub fn server_settings(&self, tls: Option<Acceptor>) -> server::Settings {
        server::Settings {
            limits: Limits {
                header_read_timeout: self.header_read_timeout,
                idle_timeout: self.idle_timeout,
                max_header_bytes: self.max_header_bytes,
            },
            max_connections: self.max_connections,
            shutdown_grace: self.shutdown_grace,
            tls,
        }
    }
}

const HOSTIP_HINT: &str = "set it to the node's IP, in Kubernetes from the downward API: fieldRef status.hostIP";

/// Ours: every `PROXY_*` name, and the few others in the table (`RUST_LOG`, the
/// `KUBERNETES_SERVICE_*` pair Kubernetes sets in every pod).
fn is_ours(name: &str) -> bool {
    name.starts_with(PREFIX) || is_known(name)
}

/// What the authentication rules need to know from the other settings: whether `PROXY_LISTEN`
/// serves HTTPS and asks for client certificates (`config/tls.rs`), and whether the proxy sends
/// exporter credentials of its own (`auto` forwarding, `config/exporter.rs`).
fn auth_context(hop: Option<&ExporterSettings>, tls: Option<&TlsSettings>) -> auth::Context {
    auth::Context {
        serving_tls: tls.is_some(),
        client_ca: tls.is_some_and(|tls| tls.client_ca_file.is_some()),
        exporter_credentials: hop.is_some_and(ExporterSettings::sends_credentials),
    }
}

fn is_known(name: &str) -> bool {
    VARIABLES.iter().any(|v| v.name == name)
}

fn exporter_authority(host: &Host, port: u16) -> Result<Authority, (String, String)> {
    format!("{}:{port}", host.0).parse().map_err(|_| (host.0.clone(), "cannot be used as a URI host".to_owned()))
}

/// Runs each variable's parser on its value or default, recording every error instead of
/// stopping at the first. Settings files of other concepts use it the same way.
pub struct Reader {
    set: BTreeMap<String, String>,
    unknown: Vec<String>,
    errors: Vec<ConfigError>,
}

impl Reader {
    /// The variables that are ours and set to something other than white space.
    pub fn new<I, K, V>(vars: I) -> Reader
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let mut unknown = Vec::new();
        let mut set = BTreeMap::new();
        for (name, value) in vars {
            let (name, value) = (name.into(), value.into());
            if !is_ours(&name) {
                continue;
            }
            if !is_known(&name) {
                unknown.push(name);
            } else if !value.trim().is_empty() {
                // Empty counts as unset: Kubernetes renders `value: ""` for a missing Helm value.
                set.insert(name, value);
            }
        }
        unknown.sort();
        Reader { set, unknown, errors: Vec::new() }
    }

    /// Whether `variable` is set (and not empty).
    pub fn is_set(&self, variable: &Variable) -> bool {
        self.set.contains_key(variable.name)
    }

    /// The raw value as set, if set.
    pub fn raw(&self, variable: &Variable) -> Option<&str> {
        self.set.get(variable.name).map(String::as_str)
    }

    /// The value of a variable with a default. When the value is bad, the error is recorded and
    /// the default's value stands in, so the remaining variables are still checked.
    pub fn value<T>(&mut self, variable: &Variable, parse: Parser<T>) -> T {
        let WhenUnset::Value(default) = variable.default else {
            panic!("{} has no default; use Reader::optional or Reader::required", variable.name)
        };
        if let Some(value) = self.parsed(variable, parse) {
            return value;
        }
        parse(default).unwrap_or_else(|reason| panic!("the default of {} does not parse: {reason}", variable.name))
    }

    /// The value of a variable that may be unset; `None` when unset or bad (the error recorded).
    pub fn optional<T>(&mut self, variable: &Variable, parse: Parser<T>) -> Option<T> {
        self.parsed(variable, parse)
    }

    /// The value of a variable that must be set; `None` when unset or bad (the error recorded).
    pub fn required<T>(&mut self, variable: &'static Variable, parse: Parser<T>, hint: &'static str) -> Option<T> {
        if !self.is_set(variable) {
            self.errors.push(ConfigError::Missing { name: variable.name, hint });
            return None;
        }
        self.parsed(variable, parse)
    }

    /// Records a rule between variables that does not hold.
    pub fn error(&mut self, error: ConfigError) {
        self.errors.push(error);
    }

    /// Records the result of a later check of `variable`'s value: `Err((value, reason))` as an
    /// error against it, a pass as its value.
    pub fn record<T>(&mut self, variable: &Variable, result: Result<T, (String, String)>) -> Option<T> {
        result.map_err(|(value, reason)| self.errors.push(ConfigError::invalid(variable, &value, reason))).ok()
    }

    /// Every error recorded, if any.
    pub fn finish(self) -> Result<(), ConfigErrors> {
        if self.errors.is_empty() { Ok(()) } else { Err(ConfigErrors(self.errors)) }
    }

    fn parsed<T>(&mut self, variable: &Variable, parse: Parser<T>) -> Option<T> {
        let raw = self.set.get(variable.name)?;
        match parse(raw.trim()) {
            Ok(value) => Some(value),
            Err(reason) => {
                self.errors.push(ConfigError::invalid(variable, raw, reason));
                None
            }
        }
    }
}

#[cfg(test)]
mod tests;
