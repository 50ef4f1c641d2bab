//! `/proxy/metrics` tells an operator what the proxy did: scrapes by outcome and status, time
//! to the exporter's headers, bytes streamed, in-flight scrapes and build info.

mod support;

use http::StatusCode;
use support::{FakeExporter, ProxyProcess, closed_port, metric};

fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn successful_scrapes_are_counted_with_bytes_and_latency() {
    let body = support::windows_sample();
    let exporter = FakeExporter::serving(body.clone(), "text/plain").await;
    let proxy = ProxyProcess::start(&[("PROXY_HOSTIP", "127.0.0.1"), ("PROXY_PORT", &exporter.port())]).await;

    for _ in 0..3 {
        assert_eq!(support::get(proxy.addr, "/metrics").await.status, StatusCode::OK);
    }
    let own = support::get(proxy.addr, "/proxy/metrics").await;
    assert_eq!(own.status, StatusCode::OK);
    // No Accept header: the text format 0.0.4 (tests/telemetry_format.rs covers the negotiation).
    assert_eq!(own.headers["content-type"], "text/plain; version=0.0.4; charset=utf-8");
    // The three scrapers' connections close on the proxy's side a moment after their responses
    // end: wait for the gauge to show only the connection asking, then read every value from the
    // scrape that showed it.
    let metrics = proxy
        .wait_for_metrics("the three scrapers' connections to be closed", |m| {
            metric(m, "windows_exporter_proxy_client_connections") == 1.0
        })
        .await;
    let value = |series: &str| metrics.get(series).copied();
    assert_eq!(value(r#"windows_exporter_proxy_scrapes_total{outcome="ok",status="200",route="/metrics"}"#), Some(3.0));
    assert_eq!(value("windows_exporter_proxy_streamed_bytes_total"), Some(3.0 * body.len() as f64));
    assert_eq!(value("windows_exporter_proxy_upstream_response_seconds_count"), Some(3.0));
    assert_eq!(value("windows_exporter_proxy_inflight_scrapes"), Some(0.0));
    assert_eq!(value("windows_exporter_proxy_waiting_scrapes"), Some(0.0));
    assert_eq!(value("windows_exporter_proxy_client_connections"), Some(1.0));
    let build = format!(r#"windows_exporter_proxy_build_info{{version="{}"}}"#, env!("CARGO_PKG_VERSION"));
    assert_eq!(value(&build), Some(1.0));
}

#[tokio::test]
async fn failed_scrapes_are_counted_by_outcome() {
    let port = closed_port().to_string();
    let proxy = ProxyProcess::start(&[("PROXY_HOSTIP", "127.0.0.1"), ("PROXY_PORT", &port)]).await;

    assert_eq!(support::get(proxy.addr, "/metrics").await.status, StatusCode::BAD_GATEWAY);
    let text = support::get(proxy.addr, "/proxy/metrics").await.text();

    assert_eq!(
        sample(
            &text,
            r#"windows_exporter_proxy_scrapes_total{outcome="upstream_error",status="502",route="/metrics"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, r#"windows_exporter_proxy_scrapes_total{outcome="ok",status="200",route="/metrics"}"#),
        None
    );
}
