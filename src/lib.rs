//! windows-exporter-proxy: a small streaming reverse proxy that lets Prometheus scrape a Windows
//! node's `windows_exporter` through a pod on that node.
//!
//! The binary (`src/main.rs`) is a thin shell: logging, [`config::Config::from_env`], bind, then
//! [`server::run`] until the OS asks it to stop. Everything else lives here, one concept a module:
//!
//! | module | owns |
//! |---|---|
//! | [`cli`] | command-line flags (`--help`, `--version`) |
//! | [`config`] | the only reader of the environment; turns `PROXY_*` variables into a checked [`config::Config`] |
//! | [`logging`] | the tracing subscriber: text or JSON on stdout, level from `RUST_LOG` |
//! | [`server`] | accept loop, connection cap, graceful drain |
//! | [`connection`] | one client connection: HTTP/1.1 limits, idle timeout, its part in a drain |
//! | [`router`] | which endpoint a request is for, and the 404/405 answers |
//! | [`proxy`] | the `/metrics` pass-through: deadline, concurrency guard, upstream request |
//! | [`upstream`] | the pooled HTTP client and the exporter's address |
//! | [`headers`] | hop-by-hop header filtering, both directions |
//! | [`deadline`] | the per-scrape deadline from `X-Prometheus-Scrape-Timeout-Seconds` |
//! | [`stream`] | the streamed response body: deadline, byte counting, abort on failure |
//! | [`health`] | `/health` (liveness) and `/ready` (readiness, cached exporter check) |
//! | [`telemetry`] | the proxy's own metrics, served on `/proxy/metrics` |
//! | [`response`] | the response body type and small local responses |
//! | [`shutdown`] | the OS stop signals: SIGTERM/SIGINT on Unix, console events on Windows |
#![forbid(unsafe_code)]

pub mod cli;
pub mod config;
pub mod connection;
pub mod deadline;
pub mod headers;
pub mod health;
pub mod logging;
pub mod proxy;
pub mod response;
pub mod router;
pub mod server;
pub mod shutdown;
pub mod stream;
pub mod telemetry;
pub mod upstream;
