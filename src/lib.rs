//! windows-exporter-proxy: a small streaming reverse proxy that lets Prometheus scrape a Windows
//! node's `windows_exporter` through a pod on that node.
//!
//! The binary (`src/main.rs`) is a thin shell: [`config::Config::from_env`], logging, bind, then
//! [`server::run`] until the OS asks it to stop. Everything else lives here, one concept a module,
//! listed in the order a request meets them:
//!
//! | module | owns |
//! |---|---|
//! | [`config`] | the only reader of the environment: the table of variables, their parsers, a checked [`config::Config`] |
//! | [`server`] | accept loop, connection cap, graceful drain |
//! | [`tls`] | HTTPS: the handshake, the reloading certificate, certificate files, the TLS metrics |
//! | [`connection`] | one client connection: HTTP/1.1 limits, header-read and idle clocks, the hang-up a stalled response signals, its part in a drain |
//! | [`router`] | which endpoint a request is for, and the 404/405 answers |
//! | [`auth`] | who may scrape: the `PROXY_AUTH` chain of client-cert, basic and tokenreview |
//! | [`scrape`] | the `/metrics` handler: deadline, in-flight slot, exporter request, answer; [`scrape::ScrapeError`]; [`scrape::coalesce`]: identical concurrent scrapes share one exporter request |
//! | [`exporter`] | the exporter's address, the pooled client (plain or TLS, with the proxy's own credentials), when it last answered; [`exporter::ExporterError`]; [`exporter::discovery`]: which of `PROXY_PORT`'s ports answers |
//! | [`stream`] | the streamed response body: deadline, byte counting, abort on failure |
//! | [`health`] | `/health` (liveness) and `/ready` (readiness, cached exporter check) |
//! | [`telemetry`] | the proxy's own metrics, served on `/proxy/metrics` |
//!
//! and the pieces they share:
//!
//! | module | owns |
//! |---|---|
//! | [`headers`] | hop-by-hop header filtering, both directions |
//! | [`deadline`] | the per-scrape deadline from `X-Prometheus-Scrape-Timeout-Seconds` |
//! | [`response`] | the response body type and small local responses |
//! | [`timestamp`] | [`timestamp::Timestamp`], an atomic "when did this last happen" |
//! | [`cli`] | command-line flags (`--help`, `--version`) |
//! | [`logging`] | the tracing subscriber: text or JSON on stdout, level from `RUST_LOG` |
//! | [`shutdown`] | the OS stop signals: SIGTERM/SIGINT on Unix, console events on Windows |
#![forbid(unsafe_code)]

pub mod auth;
pub mod config;
pub mod connection;
pub mod exporter;
pub mod health;
pub mod proxy;
pub mod router;
pub mod scrape;
pub mod server;
pub mod telemetry;
pub mod tls;

pub mod cli;
pub mod deadline;
pub mod hangup;
pub mod headers;
pub mod logging;
pub mod response;
pub mod shutdown;
pub mod timestamp;
