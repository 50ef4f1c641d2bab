//! windows-exporter-proxy: a small streaming reverse proxy that lets Prometheus scrape a Windows
//! node's `windows_exporter` through a pod on that node.
//!
//! The binary (`src/main.rs`) is a thin shell: [`config::Config::from_env`], logging, bind,
//! [`proxy::Proxy::build`], then [`server::run`] until the OS asks it to stop. Everything else
//! lives here, one concept a module, in layers: a module imports only from the layers below it,
//! and no two modules import each other (`tests/layering.rs` checks both). Top to bottom, in the
//! order a request meets them:
//!
//! | module | owns |
//! |---|---|
//! | [`config`] | the only reader of the environment: the table of variables, their parsers, a checked [`config::Config`] that fills each module's own settings type |
//! | [`proxy`] | the wiring: the objects `main` (and the in-process test) builds from a `Config` |
//! | [`server`] | the listener and its queue, accept loop, connection cap, graceful drain |
//! | [`connection`] | one client connection: HTTP/1.1 limits, header-read and idle clocks, the send deadline on every write, its part in a drain |
//! | [`router`] | which endpoint a request is for (`/metrics/slow` only with `PROXY_SLOW_COLLECT`), and the 400 (Host), 404 and 405 answers |
//! | [`auth`] | who may scrape: the `PROXY_AUTH` chain of client-cert, basic and tokenreview, and its [`auth::AuthSettings`] |
//! | [`health`] | `/health` (liveness) and `/ready` (readiness, cached exporter check) |
//! | [`scrape`] | the `/metrics` and `/metrics/slow` handler: deadline, in-flight slot, exporter request, answer; [`scrape::ScrapeError`]; [`scrape::collectors`]: the `collect[]` the operator allows, per route, and its [`scrape::collectors::CollectSettings`]; [`scrape::schedule`]: how the two routes share the slots; [`scrape::learn`]: the exporter's enabled collectors; [`scrape::stream`]: the streamed body (deadline, byte counting, abort on failure); [`scrape::coalesce`]: identical concurrent scrapes share one exporter request (driven by the scrape that started it until a second one joins, then by a task of its own with a shared buffer) |
//! | [`filter`] | what leaves the node (off by default): family keep/drop regexes, series selectors, the series cap, as a streaming stage around the exporter's body, once per exporter body; its [`filter::FilterSettings`] |
//! | [`exporter`] | the exporter's address book and when it last answered; [`exporter::client`]: the pooled client (plain or TLS, with the proxy's own credentials); [`exporter::discovery`]: which of `PROXY_PORT`'s ports answers; [`exporter::settings`]: the hop's settings |
//! | [`telemetry`] | the proxy's own metrics, served on `/proxy/metrics` |
//! | [`nodemetrics`] | `PROXY_NODE_METRICS`: node_exporter-named families computed from the exporter's samples as they stream past, [`nodemetrics::table`], the mapping the recording rules are rendered from, and [`nodemetrics::guard`], which keeps derived counters from going backwards |
//! | [`tls`] | HTTPS: the handshake and its [`tls::acceptor::TlsSettings`], the reloading certificate, certificate files, the TLS metrics |
//!
//! and the leaves they share:
//!
//! | module | owns |
//! |---|---|
//! | [`response`] | the response body type (boxed) and small local responses |
//! | [`hangup`] | [`hangup::HangUp`], how a cut-off response closes its connection |
//! | [`headers`] | hop-by-hop header filtering, both directions |
//! | [`exposition`] | the text exposition formats (0.0.4, OpenMetrics) a line at a time: the line splitter over a body's chunks, the zero-copy line parser, which family a sample belongs to |
//! | [`deadline`] | the per-scrape deadline from `X-Prometheus-Scrape-Timeout-Seconds`, the time left told to the exporter, and [`deadline::SendDeadline`] |
//! | [`timestamp`] | [`timestamp::Timestamp`], an atomic "when did this last happen" |
//! | [`reload`] | files re-read while running (certificates, CA bundles, htpasswd, password): one watch, one interval, one log format, `_reload_failures_total{file}` |
//! | [`cli`] | command-line flags (`--help`, `--version`) |
//! | [`logging`] | the tracing subscriber: text or JSON on stdout, level from `RUST_LOG` |
//! | [`shutdown`] | the OS stop signals: SIGTERM/SIGINT on Unix, console events on Windows |
#![forbid(unsafe_code)]

pub mod auth;
pub mod config;
pub mod connection;
pub mod exporter;
pub mod filter;
pub mod health;
pub mod nodemetrics;
pub mod proxy;
pub mod router;
pub mod scrape;
pub mod server;
pub mod telemetry;
pub mod tls;

pub mod cli;
pub mod deadline;
pub mod exposition;
pub mod hangup;
pub mod headers;
pub mod logging;
pub mod reload;
pub mod response;
pub mod shutdown;
pub mod timestamp;
