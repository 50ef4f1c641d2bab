//! The table of every variable the proxy reads: name, default and one line of help.
//!
//! Each variable is written once, as a `const` here; `--help`, the README table (checked by
//! `tests/readme.rs`), the parser in [`super::Config::from_vars`] and the unknown-variable warning
//! all use these constants. An unset variable takes its default string and goes through the same
//! parser as a set one, so a default cannot drift from what the parser accepts.

/// One documented variable.
#[derive(Debug, Clone, Copy)]
pub struct Variable {
    /// Full name, e.g. `PROXY_PORT`.
    pub name: &'static str,
    /// What applies when it is unset or empty.
    pub default: WhenUnset,
    /// One line on what it controls.
    pub help: &'static str,
}

/// What an unset variable means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenUnset {
    /// It must be set.
    Required,
    /// Unset is a meaning of its own (a feature left off), shown as `unset`.
    Unset,
    /// This value, as the operator would write it.
    Value(&'static str),
}

impl Variable {
    const fn new(name: &'static str, default: WhenUnset, help: &'static str) -> Variable {
        Variable { name, default, help }
    }

    /// The default as `--help` and the README show it: `required`, `unset` or the value.
    pub fn default_text(&self) -> &'static str {
        match self.default {
            WhenUnset::Required => "required",
            WhenUnset::Unset => "unset",
            WhenUnset::Value(value) => value,
        }
    }
}

use WhenUnset::{Required, Unset, Value};

/// `PROXY_HOSTIP`.
pub const HOSTIP: Variable = Variable::new(
    "PROXY_HOSTIP",
    Required,
    "exporter host: the node's IP from the downward API (status.hostIP); IPv4, IPv6 or DNS name",
);
/// `PROXY_PORT`.
pub const PORT: Variable = Variable::new(
    "PROXY_PORT",
    Value("9182"),
    "exporter port, or ports in order (19100,19182,9182): the first that answers GET /health is used",
);
/// `PROXY_LISTEN`.
pub const LISTEN: Variable =
    Variable::new("PROXY_LISTEN", Value("0.0.0.0:9100"), "socket address to listen on ([::]:9100 for IPv6)");
/// `PROXY_TLS_CERT_FILE`.
pub const TLS_CERT_FILE: Variable = Variable::new(
    "PROXY_TLS_CERT_FILE",
    Unset,
    "PEM certificate chain, leaf first; with PROXY_TLS_KEY_FILE the listener serves HTTPS (reloaded when the files change)",
);
/// `PROXY_TLS_KEY_FILE`.
pub const TLS_KEY_FILE: Variable = Variable::new(
    "PROXY_TLS_KEY_FILE",
    Unset,
    "PEM private key of PROXY_TLS_CERT_FILE: PKCS#8, PKCS#1 or SEC1, unencrypted",
);
/// `PROXY_TLS_MIN_VERSION`.
pub const TLS_MIN_VERSION: Variable =
    Variable::new("PROXY_TLS_MIN_VERSION", Value("1.2"), "oldest TLS version the listener accepts: 1.2 or 1.3");
/// `PROXY_CLIENT_CA_FILE`.
pub const CLIENT_CA_FILE: Variable = Variable::new(
    "PROXY_CLIENT_CA_FILE",
    Unset,
    "PEM CA bundle: HTTPS asks for a client certificate (optional) and one presented must chain to it (re-read when it changes)",
);
/// `PROXY_SCRAPE_TIMEOUT_SECONDS`.
pub const SCRAPE_TIMEOUT_SECONDS: Variable = Variable::new(
    "PROXY_SCRAPE_TIMEOUT_SECONDS",
    Value("10"),
    "scrape deadline when the scraper sends no X-Prometheus-Scrape-Timeout-Seconds (0.25-300)",
);
/// `PROXY_TIMEOUT_MARGIN_SECONDS`.
pub const TIMEOUT_MARGIN_SECONDS: Variable = Variable::new(
    "PROXY_TIMEOUT_MARGIN_SECONDS",
    Value("0.5"),
    "taken off the scraper's timeout so the proxy answers 504 before the scraper gives up",
);
/// `PROXY_CONNECT_TIMEOUT_SECONDS`.
pub const CONNECT_TIMEOUT_SECONDS: Variable =
    Variable::new("PROXY_CONNECT_TIMEOUT_SECONDS", Value("2"), "TCP connect timeout to the exporter");
/// `PROXY_EXPORTER_SCHEME`.
pub const EXPORTER_SCHEME: Variable = Variable::new(
    "PROXY_EXPORTER_SCHEME",
    Value("http"),
    "http or https to the exporter (https for a windows_exporter --web.config.file with tls_server_config)",
);
/// `PROXY_EXPORTER_CA_FILE`.
pub const EXPORTER_CA_FILE: Variable = Variable::new(
    "PROXY_EXPORTER_CA_FILE",
    Unset,
    "PEM bundle of the CAs that sign the exporter's certificate, the only ones trusted; required for https",
);
/// `PROXY_EXPORTER_INSECURE_SKIP_VERIFY`.
pub const EXPORTER_INSECURE_SKIP_VERIFY: Variable = Variable::new(
    "PROXY_EXPORTER_INSECURE_SKIP_VERIFY",
    Value("false"),
    "true: accept any exporter certificate for any name instead of PROXY_EXPORTER_CA_FILE (warns; for trying things out)",
);
/// `PROXY_EXPORTER_SERVER_NAME`.
pub const EXPORTER_SERVER_NAME: Variable = Variable::new(
    "PROXY_EXPORTER_SERVER_NAME",
    Unset,
    "DNS name or IP the exporter's certificate must carry; unset: PROXY_HOSTIP",
);
/// `PROXY_EXPORTER_CLIENT_CERT_FILE`.
pub const EXPORTER_CLIENT_CERT_FILE: Variable = Variable::new(
    "PROXY_EXPORTER_CLIENT_CERT_FILE",
    Unset,
    "PEM certificate chain the proxy presents to the exporter (client_auth_type RequireAndVerifyClientCert); re-read on change",
);
/// `PROXY_EXPORTER_CLIENT_KEY_FILE`.
pub const EXPORTER_CLIENT_KEY_FILE: Variable = Variable::new(
    "PROXY_EXPORTER_CLIENT_KEY_FILE",
    Unset,
    "its PEM private key (PKCS#8, PKCS#1 or SEC1); re-read on change",
);
/// `PROXY_EXPORTER_BASIC_AUTH_USERNAME`.
pub const EXPORTER_BASIC_AUTH_USERNAME: Variable = Variable::new(
    "PROXY_EXPORTER_BASIC_AUTH_USERNAME",
    Unset,
    "basic-auth user the proxy sends on every exporter request (the exporter's basic_auth_users)",
);
/// `PROXY_EXPORTER_BASIC_AUTH_PASSWORD_FILE`.
pub const EXPORTER_BASIC_AUTH_PASSWORD_FILE: Variable = Variable::new(
    "PROXY_EXPORTER_BASIC_AUTH_PASSWORD_FILE",
    Unset,
    "file whose first line is that user's password; re-read on change",
);
/// `PROXY_MAX_INFLIGHT`.
pub const MAX_INFLIGHT: Variable = Variable::new(
    "PROXY_MAX_INFLIGHT",
    Value("2"),
    "concurrent scrapes sent to the exporter; more wait within their deadline, then get 503",
);
/// `PROXY_COALESCE`.
pub const COALESCE: Variable = Variable::new(
    "PROXY_COALESCE",
    Value("true"),
    "identical scrapes in flight at once share one exporter request and its one collection: true or false",
);
/// `PROXY_COALESCE_MAX_BUFFER_BYTES`.
pub const COALESCE_MAX_BUFFER_BYTES: Variable = Variable::new(
    "PROXY_COALESCE_MAX_BUFFER_BYTES",
    Value("2097152"),
    "body bytes a shared exporter request holds; a scraper further behind is cut off (at least 262144)",
);
/// `PROXY_COLLECT`.
pub const COLLECT: Variable = Variable::new(
    "PROXY_COLLECT",
    Unset,
    "comma list of collectors a /metrics scrape without collect[] runs, sent to the exporter as collect[] in this order",
);
/// `PROXY_COLLECT_ALLOW`.
pub const COLLECT_ALLOW: Variable = Variable::new(
    "PROXY_COLLECT_ALLOW",
    Unset,
    "comma list a scraper's collect[] is cut down to (none left: 400); default with PROXY_COLLECT: it plus PROXY_SLOW_COLLECT",
);
/// `PROXY_SLOW_COLLECT`.
pub const SLOW_COLLECT: Variable = Variable::new(
    "PROXY_SLOW_COLLECT",
    Unset,
    "comma list of expensive collectors (process,service) served on /metrics/slow and never on /metrics; unset: no /metrics/slow",
);
/// `PROXY_METRIC_KEEP`.
pub const METRIC_KEEP: Variable = Variable::new(
    "PROXY_METRIC_KEEP",
    Unset,
    "regex (anchored) of metric family names kept; either spelling of a counter (x_total, x) matches; unset: all",
);
/// `PROXY_METRIC_DROP`.
pub const METRIC_DROP: Variable = Variable::new(
    "PROXY_METRIC_DROP",
    Unset,
    "regex (anchored) of metric family names dropped, with their HELP/TYPE/UNIT lines and every sample",
);
/// `PROXY_SERIES_DROP`.
pub const SERIES_DROP: Variable =
    Variable::new("PROXY_SERIES_DROP", Unset, "PromQL series selectors, ;-separated: samples matching any are dropped");
/// `PROXY_MAX_SERIES`.
pub const MAX_SERIES: Variable = Variable::new(
    "PROXY_MAX_SERIES",
    Unset,
    "a scrape with more sample lines than this after filtering fails (as sample_limit fails it)",
);
/// `PROXY_NODE_METRICS`.
pub const NODE_METRICS: Variable = Variable::new(
    "PROXY_NODE_METRICS",
    Value("off"),
    "off, append (add node_exporter-named families computed from the scrape) or only (and leave out the windows_* ones they read)",
);
/// `PROXY_MAX_CONNECTIONS`.
pub const MAX_CONNECTIONS: Variable = Variable::new(
    "PROXY_MAX_CONNECTIONS",
    Value("1024"),
    "concurrent client connections; more wait in the listen backlog",
);
/// `PROXY_HEADER_READ_TIMEOUT_SECONDS`.
pub const HEADER_READ_TIMEOUT_SECONDS: Variable = Variable::new(
    "PROXY_HEADER_READ_TIMEOUT_SECONDS",
    Value("5"),
    "a client must finish its request headers this long after connecting or after its first byte",
);
/// `PROXY_IDLE_TIMEOUT_SECONDS`.
pub const IDLE_TIMEOUT_SECONDS: Variable = Variable::new(
    "PROXY_IDLE_TIMEOUT_SECONDS",
    Value("75"),
    "idle keep-alive client connections are closed after this",
);
/// `PROXY_MAX_HEADER_BYTES`.
pub const MAX_HEADER_BYTES: Variable = Variable::new(
    "PROXY_MAX_HEADER_BYTES",
    Value("16384"),
    "request line and headers larger than this get 431 (at least 8192)",
);
/// `PROXY_SHUTDOWN_GRACE_SECONDS`.
pub const SHUTDOWN_GRACE_SECONDS: Variable = Variable::new(
    "PROXY_SHUTDOWN_GRACE_SECONDS",
    Value("20"),
    "on stop, in-flight scrapes get this long to finish (keep below terminationGracePeriodSeconds)",
);
/// `PROXY_READY_MAX_AGE_SECONDS`.
pub const READY_MAX_AGE_SECONDS: Variable = Variable::new(
    "PROXY_READY_MAX_AGE_SECONDS",
    Value("30"),
    "/ready answers 200 while the exporter answered within this long",
);
/// `PROXY_AUTH`.
pub const AUTH: Variable = Variable::new(
    "PROXY_AUTH",
    Unset,
    "who may scrape /metrics and /proxy/metrics: comma list of client-cert, basic, tokenreview; unset: anyone",
);
/// `PROXY_CLIENT_ALLOWED_NAMES`.
pub const CLIENT_ALLOWED_NAMES: Variable = Variable::new(
    "PROXY_CLIENT_ALLOWED_NAMES",
    Unset,
    "client-cert: comma list of names a client certificate must carry (DNS/URI/IP SAN or CN); unset: any verified one",
);
/// `PROXY_BASIC_AUTH_FILE`.
pub const BASIC_AUTH_FILE: Variable = Variable::new(
    "PROXY_BASIC_AUTH_FILE",
    Unset,
    "basic: htpasswd file of user:bcrypt-hash lines, as htpasswd -nbBC 10 user password writes them (re-read when it changes)",
);
/// `PROXY_KUBE_API_URL`.
pub const KUBE_API_URL: Variable = Variable::new(
    "PROXY_KUBE_API_URL",
    Unset,
    "tokenreview: the API server; unset: https://KUBERNETES_SERVICE_HOST:KUBERNETES_SERVICE_PORT",
);
/// `PROXY_KUBE_TOKEN_FILE`.
pub const KUBE_TOKEN_FILE: Variable = Variable::new(
    "PROXY_KUBE_TOKEN_FILE",
    Value("/var/run/secrets/kubernetes.io/serviceaccount/token"),
    "tokenreview: the proxy's own service-account token, read again for each API request (rotation)",
);
/// `PROXY_KUBE_CA_FILE`.
pub const KUBE_CA_FILE: Variable = Variable::new(
    "PROXY_KUBE_CA_FILE",
    Value("/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"),
    "tokenreview: the only CA trusted for the API server's certificate",
);
/// `PROXY_TOKENREVIEW_AUDIENCES`.
pub const TOKENREVIEW_AUDIENCES: Variable = Variable::new(
    "PROXY_TOKENREVIEW_AUDIENCES",
    Unset,
    "tokenreview: comma list of audiences a token must be valid for; unset: the API server's own",
);
/// `PROXY_AUTHZ_USERS`.
pub const AUTHZ_USERS: Variable = Variable::new(
    "PROXY_AUTHZ_USERS",
    Unset,
    "tokenreview: comma list of user names allowed, checked instead of sending SubjectAccessReviews",
);
/// `PROXY_ALLOW_PLAINTEXT_CREDENTIALS`.
pub const ALLOW_PLAINTEXT_CREDENTIALS: Variable = Variable::new(
    "PROXY_ALLOW_PLAINTEXT_CREDENTIALS",
    Value("false"),
    "true lets basic and tokenreview run without serving TLS (passwords and tokens in clear; warns)",
);
/// `PROXY_FORWARD_AUTHORIZATION`.
pub const FORWARD_AUTHORIZATION: Variable = Variable::new(
    "PROXY_FORWARD_AUTHORIZATION",
    Value("auto"),
    "send the scraper's Authorization to the exporter: auto (only if the proxy checks none and sends none), true, false",
);
/// `KUBERNETES_SERVICE_HOST`.
pub const KUBERNETES_SERVICE_HOST: Variable = Variable::new(
    "KUBERNETES_SERVICE_HOST",
    Unset,
    "set by Kubernetes in every pod: the API server's address, for tokenreview",
);
/// `KUBERNETES_SERVICE_PORT`.
pub const KUBERNETES_SERVICE_PORT: Variable = Variable::new(
    "KUBERNETES_SERVICE_PORT",
    Unset,
    "set by Kubernetes in every pod: the API server's port, for tokenreview",
);
/// `PROXY_LOG_FORMAT`.
pub const LOG_FORMAT: Variable = Variable::new("PROXY_LOG_FORMAT", Value("text"), "log format on stdout: text or json");
/// `RUST_LOG`.
pub const RUST_LOG: Variable =
    Variable::new("RUST_LOG", Value("info"), "log level or targets, e.g. debug or windows_exporter_proxy=debug");

/// Every variable, in the order `--help` and the README show them.
pub const VARIABLES: &[Variable] = &[
    HOSTIP,
    PORT,
    LISTEN,
    TLS_CERT_FILE,
    TLS_KEY_FILE,
    TLS_MIN_VERSION,
    CLIENT_CA_FILE,
    SCRAPE_TIMEOUT_SECONDS,
    TIMEOUT_MARGIN_SECONDS,
    CONNECT_TIMEOUT_SECONDS,
    EXPORTER_SCHEME,
    EXPORTER_CA_FILE,
    EXPORTER_INSECURE_SKIP_VERIFY,
    EXPORTER_SERVER_NAME,
    EXPORTER_CLIENT_CERT_FILE,
    EXPORTER_CLIENT_KEY_FILE,
    EXPORTER_BASIC_AUTH_USERNAME,
    EXPORTER_BASIC_AUTH_PASSWORD_FILE,
    MAX_INFLIGHT,
    COALESCE,
    COALESCE_MAX_BUFFER_BYTES,
    COLLECT,
    COLLECT_ALLOW,
    SLOW_COLLECT,
    METRIC_KEEP,
    METRIC_DROP,
    SERIES_DROP,
    MAX_SERIES,
    NODE_METRICS,
    MAX_CONNECTIONS,
    HEADER_READ_TIMEOUT_SECONDS,
    IDLE_TIMEOUT_SECONDS,
    MAX_HEADER_BYTES,
    SHUTDOWN_GRACE_SECONDS,
    READY_MAX_AGE_SECONDS,
    AUTH,
    CLIENT_ALLOWED_NAMES,
    BASIC_AUTH_FILE,
    KUBE_API_URL,
    KUBE_TOKEN_FILE,
    KUBE_CA_FILE,
    TOKENREVIEW_AUDIENCES,
    AUTHZ_USERS,
    ALLOW_PLAINTEXT_CREDENTIALS,
    FORWARD_AUTHORIZATION,
    KUBERNETES_SERVICE_HOST,
    KUBERNETES_SERVICE_PORT,
    LOG_FORMAT,
    RUST_LOG,
];
