//! Test bodies that must hold for every build of the proxy: each takes a [`Launcher`] and is
//! called once with [`Native`] (the Linux suites) and once with the Windows `.exe` under wine
//! (tests/windows_under_wine.rs), so what a scraper sees cannot differ between them unnoticed.

use std::future::Future;
use std::process::Output;

use http::{Method, StatusCode};

use super::{Client, FakeExporter, ProxyProcess, closed_port, gzip, metric, reply, windows_sample};

/// How a test runs the proxy.
pub trait Launcher {
    /// Starts the proxy with `vars` (see [`ProxyProcess::start`]) and waits until it listens.
    fn start(&self, vars: &[(&str, &str)]) -> impl Future<Output = ProxyProcess>;
    /// Runs the proxy to its exit with `args` and only `vars` of the test's choosing.
    fn run_to_exit(&self, args: &[&str], vars: &[(&str, &str)]) -> impl Future<Output = Output>;
}

/// The binary cargo built for this machine.
pub struct Native;

impl Launcher for Native {
    async fn start(&self, vars: &[(&str, &str)]) -> ProxyProcess {
        ProxyProcess::start(vars).await
    }

    async fn run_to_exit(&self, args: &[&str], vars: &[(&str, &str)]) -> Output {
        super::run_to_exit(args, vars).await
    }
}

pub const TEXT_0_0_4: &str = "text/plain; version=0.0.4; charset=utf-8";
const EX_USAGE: i32 = 64;

async fn proxy_for(launcher: &impl Launcher, exporter_port: &str) -> ProxyProcess {
    launcher.start(&[("PROXY_HOSTIP", "127.0.0.1"), ("PROXY_PORT", exporter_port)]).await
}

fn stderr_lines(output: &Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stderr).lines().map(str::to_owned).collect()
}

/// `/health` is 200 `ok` (GET and HEAD) with the exporter's port closed: it never depends on it.
pub async fn health_answers_ok_with_the_exporter_down(launcher: &impl Launcher) {
    let proxy = proxy_for(launcher, &closed_port().to_string()).await;

    let health = super::get(proxy.addr, "/health").await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.text(), "ok\n");
    let head = Client::connect(proxy.addr).await.send(Method::HEAD, "/health", &[]).await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
}

/// `/metrics` gives the scraper the exporter's body byte for byte, with its content type.
pub async fn metrics_body_and_content_type_are_byte_identical(launcher: &impl Launcher) {
    let sample = windows_sample();
    let exporter = FakeExporter::serving(sample.clone(), TEXT_0_0_4).await;
    let proxy = proxy_for(launcher, &exporter.port()).await;

    let scraped = super::get(proxy.addr, "/metrics").await;

    assert_eq!(scraped.status, StatusCode::OK);
    assert_eq!(scraped.headers["content-type"], TEXT_0_0_4);
    assert_eq!(scraped.body.len(), sample.len());
    assert!(scraped.body == sample, "body differs from the exporter's");
}

/// A scraper asking for gzip gets the exporter's gzip body unchanged, with its headers.
pub async fn gzip_body_passes_compressed_and_unchanged(launcher: &impl Launcher) {
    let compressed = gzip(&windows_sample());
    let body = compressed.clone();
    // gzip only when asked for, as windows_exporter does.
    let mut exporter = FakeExporter::start(move |request| {
        let asked = request.headers().get("accept-encoding").is_some_and(|v| v.as_bytes() == b"gzip");
        let body = body.clone();
        async move {
            if asked {
                let headers = [("content-type", TEXT_0_0_4), ("content-encoding", "gzip"), ("vary", "Accept-Encoding")];
                reply(StatusCode::OK, &headers, body)
            } else {
                reply(StatusCode::NOT_ACCEPTABLE, &[], "this test only serves gzip\n")
            }
        }
    })
    .await;
    let proxy = proxy_for(launcher, &exporter.port()).await;

    let scraped = Client::connect(proxy.addr).await.get("/metrics", &[("accept-encoding", "gzip")]).await;

    assert_eq!(exporter.next_request().await.headers["accept-encoding"], "gzip");
    assert_eq!(scraped.status, StatusCode::OK);
    assert_eq!(scraped.headers["content-encoding"], "gzip");
    assert_eq!(scraped.headers["vary"], "Accept-Encoding");
    assert_eq!(scraped.headers["content-type"], TEXT_0_0_4);
    assert!(scraped.body == compressed, "gzip body was altered");
}

/// The exporter's port refuses connections: 502 with one line naming the exporter and the
/// cause, one warning saying the same, counted as `upstream_error`. Returns the proxy for
/// checks of the caller's own.
pub async fn refused_connection_is_502_naming_the_exporter(launcher: &impl Launcher) -> ProxyProcess {
    let port = closed_port();
    let mut proxy = proxy_for(launcher, &port.to_string()).await;

    let scraped = Client::connect(proxy.addr).await.get("/metrics", &[]).await;

    assert_eq!(scraped.status, StatusCode::BAD_GATEWAY);
    let body = scraped.text();
    assert_eq!(body.trim_end().lines().count(), 1, "one line: {body:?}");
    assert!(body.starts_with(&format!("http://127.0.0.1:{port}: connection refused")), "{body:?}");
    let line = proxy
        .wait_for_log("the refused warning", |l| {
            l["level"] == "WARN" && l["message"] == "scrape failed: exporter unreachable or reply invalid"
        })
        .await;
    assert_eq!(line["upstream"], format!("http://127.0.0.1:{port}"));
    assert!(line["error"].as_str().unwrap().starts_with("connection refused"), "{line}");
    let series = r#"windows_exporter_proxy_scrapes_total{outcome="upstream_error",status="502",route="/metrics"}"#;
    let metrics = proxy.wait_for_metrics("the upstream_error count", |m| metric(m, series) == 1.0).await;
    assert_eq!(metric(&metrics, series), 1.0);
    proxy
}

/// No `PROXY_HOSTIP`: one stderr line naming it, exit 64, nothing logged.
pub async fn missing_hostip_names_the_variable_and_exits_64(launcher: &impl Launcher) {
    let output = launcher.run_to_exit(&[], &[]).await;

    assert_eq!(output.status.code(), Some(EX_USAGE), "{output:?}");
    let lines = stderr_lines(&output);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("PROXY_HOSTIP is required but not set"), "{lines:?}");
    assert!(output.stdout.is_empty(), "logged before validating: {}", String::from_utf8_lossy(&output.stdout));
}

/// A bad `PROXY_PORT`: one stderr line naming the variable, its value and what is valid; exit 64.
pub async fn bad_port_names_the_variable_and_its_value(launcher: &impl Launcher) {
    let output = launcher.run_to_exit(&[], &[("PROXY_HOSTIP", "10.240.0.4"), ("PROXY_PORT", "abc")]).await;

    assert_eq!(output.status.code(), Some(EX_USAGE), "{output:?}");
    assert_eq!(stderr_lines(&output), vec![r#"PROXY_PORT="abc" is not valid: not a port number; use 1-65535"#]);
}

/// `--version` prints the crate's name and version and exits 0, without configuration.
pub async fn version_prints_the_crate_version(launcher: &impl Launcher) {
    let output = launcher.run_to_exit(&["--version"], &[]).await;

    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        format!("windows-exporter-proxy {}\n", env!("CARGO_PKG_VERSION"))
    );
}

/// A stop request (`signal`, which the proxy logs as `logged_as`) lets an in-flight scrape
/// finish, refuses new connections meanwhile, and ends in exit 0.
#[cfg(unix)]
pub async fn stop_lets_an_in_flight_scrape_finish_then_exits_0(launcher: &impl Launcher, signal: i32, logged_as: &str) {
    let mut held = super::HeldScrape::start().await;
    let mut proxy = proxy_for(launcher, &held.exporter.port()).await;

    let response = Client::connect(proxy.addr).await.send(Method::GET, "/metrics", &[]).await.unwrap();
    held.started().await;

    proxy.signal(signal);
    let stop = proxy.wait_for_message("stop requested; draining").await;
    assert_eq!(stop["signal"], logged_as, "{stop}");
    // Stopped accepting: a new scraper is refused rather than left hanging.
    assert!(
        tokio::net::TcpStream::connect(proxy.addr).await.is_err(),
        "the proxy still accepts connections while draining"
    );

    held.release_and_expect_complete(response).await;
    proxy.expect_clean_drain().await;
}
