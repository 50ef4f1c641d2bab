//! `/metrics` passes the exporter's answer through unchanged: status, end-to-end headers and
//! body bytes, for plain text, OpenMetrics and gzip, with the query string intact and the
//! scraper's end-to-end request headers forwarded.

mod support;

use http::{Method, StatusCode};
use support::scenarios::{self, Native};
use support::{Client, FakeExporter, ProxyProcess, reply, windows_sample};

const TEXT_0_0_4: &str = "text/plain; version=0.0.4; charset=utf-8";

async fn proxy_for(exporter: &FakeExporter) -> ProxyProcess {
    ProxyProcess::start(&[("PROXY_HOSTIP", "127.0.0.1"), ("PROXY_PORT", &exporter.port())]).await
}

#[tokio::test]
async fn body_and_content_type_are_byte_identical() {
    scenarios::metrics_body_and_content_type_are_byte_identical(&Native).await;
}

#[tokio::test]
async fn gzip_body_passes_compressed_and_unchanged() {
    scenarios::gzip_body_passes_compressed_and_unchanged(&Native).await;
}

#[tokio::test]
async fn openmetrics_answer_keeps_its_content_type_parameters() {
    let om = support::fixture("openmetrics-alltypes.om.txt");
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    let exporter = FakeExporter::serving(om.clone(), content_type).await;
    let proxy = proxy_for(&exporter).await;

    let scraped = Client::connect(proxy.addr)
        .await
        .get("/metrics", &[("accept", "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5")])
        .await;

    assert_eq!(scraped.headers["content-type"], content_type);
    assert!(scraped.body == om);
}

#[tokio::test]
async fn query_string_reaches_the_exporter_unchanged() {
    let mut exporter = FakeExporter::serving("x 1\n".into(), TEXT_0_0_4).await;
    let proxy = proxy_for(&exporter).await;
    let query = "/metrics?collect[]=cpu&collect[]=logical_disk&x=%2Fa%20b";

    let scraped = support::get(proxy.addr, query).await;

    assert_eq!(scraped.status, StatusCode::OK);
    let seen = exporter.next_request().await;
    assert_eq!(seen.uri.path(), "/metrics");
    assert_eq!(seen.uri.query(), Some("collect[]=cpu&collect[]=logical_disk&x=%2Fa%20b"));
}

#[tokio::test]
async fn end_to_end_request_headers_are_forwarded_and_hop_by_hop_stripped() {
    let mut exporter = FakeExporter::serving("x 1\n".into(), TEXT_0_0_4).await;
    let proxy = proxy_for(&exporter).await;

    Client::connect(proxy.addr)
        .await
        .get(
            "/metrics",
            &[
                ("accept", "application/openmetrics-text;version=1.0.0"),
                ("accept-encoding", "gzip"),
                ("user-agent", "Prometheus/2.42.0"),
                ("authorization", "Bearer secret"),
                ("x-prometheus-scrape-timeout-seconds", "10"),
                ("connection", "keep-alive, x-hop"),
                ("x-hop", "must not pass"),
                ("keep-alive", "timeout=5"),
                ("proxy-authorization", "Basic eDp5"),
                ("te", "trailers"),
                ("upgrade", "h2c"),
            ],
        )
        .await;

    let seen = exporter.next_request().await;
    let h = &seen.headers;
    assert_eq!(h["accept"], "application/openmetrics-text;version=1.0.0");
    assert_eq!(h["accept-encoding"], "gzip");
    assert_eq!(h["user-agent"], "Prometheus/2.42.0");
    assert_eq!(h["authorization"], "Bearer secret");
    assert_eq!(h["host"], format!("127.0.0.1:{}", exporter.port()));
    // The exporter is told the proxy's own budget: the scraper's 10 s minus the 0.5 s margin
    // (what is left of it as the request goes out).
    support::assert_told_budget(h, 9.5);
    for hop in ["x-hop", "keep-alive", "proxy-authorization", "te", "upgrade"] {
        assert!(!h.contains_key(hop), "{hop} reached the exporter");
    }
    if let Some(connection) = h.get("connection") {
        assert!(!connection.to_str().unwrap().contains("x-hop"), "the scraper's Connection header was forwarded");
    }
}

#[tokio::test]
async fn malformed_scrape_timeout_is_replaced_by_the_default_budget() {
    let mut exporter = FakeExporter::serving("x 1\n".into(), TEXT_0_0_4).await;
    let proxy = ProxyProcess::start(&[
        ("PROXY_HOSTIP", "127.0.0.1"),
        ("PROXY_PORT", &exporter.port()),
        ("PROXY_SCRAPE_TIMEOUT_SECONDS", "7"),
    ])
    .await;

    Client::connect(proxy.addr).await.get("/metrics", &[("x-prometheus-scrape-timeout-seconds", "10s")]).await;
    support::get(proxy.addr, "/metrics").await;

    support::assert_told_budget(&exporter.next_request().await.headers, 7.0);
    support::assert_told_budget(&exporter.next_request().await.headers, 7.0);
}

#[tokio::test]
async fn hop_by_hop_response_headers_are_stripped_and_the_rest_kept() {
    let exporter = FakeExporter::start(|_| async {
        reply(
            StatusCode::OK,
            &[
                ("content-type", TEXT_0_0_4),
                ("connection", "x-internal"),
                ("x-internal", "hop"),
                ("keep-alive", "timeout=60"),
                ("proxy-authenticate", "Basic"),
                ("x-exporter", "kept"),
                ("cache-control", "no-cache"),
            ],
            "x 1\n",
        )
    })
    .await;
    let proxy = proxy_for(&exporter).await;

    let scraped = support::get(proxy.addr, "/metrics").await;

    assert_eq!(scraped.headers["x-exporter"], "kept");
    assert_eq!(scraped.headers["cache-control"], "no-cache");
    for hop in ["x-internal", "keep-alive", "proxy-authenticate"] {
        assert!(!scraped.headers.contains_key(hop), "{hop} reached the scraper");
    }
}

#[tokio::test]
async fn exporter_status_and_body_pass_through() {
    let exporter = FakeExporter::start(|_| async {
        reply(StatusCode::SERVICE_UNAVAILABLE, &[("content-type", "text/plain")], "collector wmi failed\n")
    })
    .await;
    let proxy = proxy_for(&exporter).await;

    let scraped = support::get(proxy.addr, "/metrics").await;

    assert_eq!(scraped.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(scraped.text(), "collector wmi failed\n");
}

#[tokio::test]
async fn head_is_forwarded_as_head() {
    let mut exporter = FakeExporter::serving(windows_sample(), TEXT_0_0_4).await;
    let proxy = proxy_for(&exporter).await;

    let response = Client::connect(proxy.addr).await.send(Method::HEAD, "/metrics", &[]).await.unwrap();
    let scraped = support::read_all(response).await.unwrap();

    assert_eq!(exporter.next_request().await.method, Method::HEAD);
    assert_eq!(scraped.status, StatusCode::OK);
    assert_eq!(scraped.headers["content-length"], windows_sample().len().to_string());
    assert!(scraped.body.is_empty());
}

#[tokio::test]
async fn upstream_connections_are_reused_between_scrapes() {
    let mut exporter = FakeExporter::serving(windows_sample(), TEXT_0_0_4).await;
    let proxy = proxy_for(&exporter).await;

    for _ in 0..5 {
        assert_eq!(support::get(proxy.addr, "/metrics").await.status, StatusCode::OK);
    }

    let requests = exporter.pending_requests();
    assert_eq!(requests.len(), 5);
    assert!(requests.iter().all(|r| r.connection == 1), "each scrape opened a new exporter connection: {requests:?}");
    assert_eq!(exporter.connections(), 1);
}

#[tokio::test]
async fn absolute_form_target_still_goes_to_the_configured_exporter() {
    let mut exporter = FakeExporter::serving("x 1\n".into(), TEXT_0_0_4).await;
    let elsewhere = FakeExporter::serving("elsewhere 1\n".into(), TEXT_0_0_4).await;
    let proxy = proxy_for(&exporter).await;

    let mut client = Client::connect(proxy.addr).await;
    let target = format!("http://127.0.0.1:{}/metrics?collect[]=cpu", elsewhere.port());
    let scraped = client.get(&target, &[]).await;

    assert_eq!(scraped.text(), "x 1\n");
    assert_eq!(exporter.next_request().await.uri.query(), Some("collect[]=cpu"));
    assert_eq!(elsewhere.connections(), 0, "the proxy connected to a host named in the request");
}
