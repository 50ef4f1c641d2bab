//! What `/proxy/metrics` and the logs tell an operator beyond the scrape counts: the exposition
//! format is negotiated as Prometheus client libraries do (and passes `promtool check metrics`),
//! connections the proxy closes are counted by reason, and JSON log lines carry the connection's
//! `peer`.

mod support;

use std::time::Duration;

use http::StatusCode;
use support::{Client, ProxyProcess, closed_port, raw_exchange};

const OPENMETRICS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

async fn proxy(extra: &[(&str, &str)]) -> ProxyProcess {
    let port = closed_port().to_string();
    let mut vars = vec![("PROXY_HOSTIP", "127.0.0.1"), ("PROXY_PORT", port.as_str())];
    vars.extend_from_slice(extra);
    ProxyProcess::start(&vars).await
}

#[tokio::test]
async fn own_metrics_are_text_unless_the_scraper_accepts_openmetrics() {
    let proxy = proxy(&[]).await;
    let mut client = Client::connect(proxy.addr).await;

    let text = client.get("/proxy/metrics", &[]).await;
    assert_eq!(text.headers["content-type"], "text/plain; version=0.0.4; charset=utf-8");
    assert!(text.text().contains("# TYPE windows_exporter_proxy_streamed_bytes_total counter\n"), "{}", text.text());
    assert!(!text.text().contains("# EOF"));

    let om = client.get("/proxy/metrics", &[("accept", OPENMETRICS_ACCEPT)]).await;
    assert_eq!(om.headers["content-type"], "application/openmetrics-text; version=1.0.0; charset=utf-8");
    assert!(om.text().contains("# TYPE windows_exporter_proxy_streamed_bytes counter\n"), "{}", om.text());
    assert!(om.text().ends_with("# EOF\n"));
}

/// promtool reads the body as the text format; before negotiation it reported "no help text"
/// for every `_total` series of the OpenMetrics answer.
#[cfg(unix)] // promtool: a Debian tool, not on Windows (.github/workflows/ci.yml)
#[tokio::test]
async fn promtool_finds_nothing_to_complain_about() {
    let proxy = proxy(&[]).await;
    // A failed scrape, so the counter families have samples.
    assert_eq!(support::get(proxy.addr, "/metrics").await.status, StatusCode::BAD_GATEWAY);
    let body = support::get(proxy.addr, "/proxy/metrics").await.text();

    let said = support::prometheus::promtool_check_metrics(&body).await;
    assert!(said.trim().is_empty(), "promtool check metrics: {said}\n{body}");
}

#[tokio::test]
async fn connections_the_proxy_closes_are_counted_by_reason() {
    let proxy = proxy(&[("PROXY_HEADER_READ_TIMEOUT_SECONDS", "0.2"), ("PROXY_IDLE_TIMEOUT_SECONDS", "0.5")]).await;

    // Says nothing: cut by the header-read clock.
    let (_, closed) = raw_exchange(proxy.addr, b"", Duration::from_secs(10)).await;
    assert!(closed, "a silent connection was not closed");
    // A complete request, then quiet: closed as idle.
    let (answer, closed) =
        raw_exchange(proxy.addr, b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n", Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(closed, "an idle connection was not closed");

    let series = |reason: &str| format!("windows_exporter_proxy_connections_closed_total{{reason=\"{reason}\"}}");
    proxy
        .wait_for_metrics("both closes counted", |m| {
            support::metric(m, &series("header_timeout")) == 1.0 && support::metric(m, &series("idle")) == 1.0
        })
        .await;
}

#[tokio::test]
async fn json_log_lines_carry_the_connections_peer() {
    let mut proxy = proxy(&[]).await;
    let mut client = Client::connect(proxy.addr).await;
    let local = client.local_addr();
    assert_eq!(client.get("/metrics", &[]).await.status, StatusCode::BAD_GATEWAY);

    let line = proxy.wait_for_message("scrape failed: exporter unreachable or reply invalid").await;
    let spans = line["spans"].as_array().unwrap_or_else(|| panic!("no spans in {line}"));
    assert!(spans.iter().any(|s| s["name"] == "connection" && s["peer"] == local.to_string()), "{line}");
}
