//! `/health` never depends on the exporter; `/ready` reports whether the exporter answered
//! recently and probes it at most once at a time.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use support::scenarios::{self, Native};
use support::{FakeExporter, ProxyProcess, closed_port, reply, within_for};

#[tokio::test]
async fn health_is_200_even_when_the_exporter_is_down() {
    scenarios::health_answers_ok_with_the_exporter_down(&Native).await;
}

#[tokio::test]
async fn ready_is_503_with_the_reason_when_the_exporter_is_down() {
    let port = closed_port().to_string();
    let proxy = ProxyProcess::start(&[("PROXY_HOSTIP", "127.0.0.1"), ("PROXY_PORT", &port)]).await;

    let ready = support::get(proxy.addr, "/ready").await;

    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    let text = ready.text();
    assert!(text.contains(&format!("http://127.0.0.1:{port}")), "{text}");
    assert!(text.contains("never answered") && text.contains("connection refused"), "{text}");
}

#[tokio::test]
async fn ready_probes_the_exporter_health_endpoint_once_then_uses_the_cached_answer() {
    let mut exporter =
        FakeExporter::start(|_| async { reply(StatusCode::OK, &[], Bytes::from_static(b"{\"status\":\"ok\"}")) }).await;
    let proxy = ProxyProcess::start(&[("PROXY_HOSTIP", "127.0.0.1"), ("PROXY_PORT", &exporter.port())]).await;

    let asks = (0..20).map(|_| support::get(proxy.addr, "/ready"));
    let answers = futures_join_all(asks).await;

    assert!(answers.iter().all(|a| a.status == StatusCode::OK), "{answers:?}");
    assert!(answers[0].text().starts_with("ready: exporter http://127.0.0.1:"), "{}", answers[0].text());
    let probes = exporter.pending_requests();
    assert_eq!(probes.len(), 1, "20 readiness checks sent {} probes", probes.len());
    assert_eq!(probes[0].uri.path(), "/health");
}

#[tokio::test]
async fn a_successful_scrape_makes_the_proxy_ready_without_a_probe() {
    let mut exporter = FakeExporter::serving(Bytes::from_static(b"x 1\n"), "text/plain").await;
    let proxy = ProxyProcess::start(&[("PROXY_HOSTIP", "127.0.0.1"), ("PROXY_PORT", &exporter.port())]).await;

    assert_eq!(support::get(proxy.addr, "/metrics").await.status, StatusCode::OK);
    assert_eq!(support::get(proxy.addr, "/ready").await.status, StatusCode::OK);

    let paths: Vec<String> = exporter.pending_requests().iter().map(|r| r.uri.path().to_owned()).collect();
    assert_eq!(paths, vec!["/metrics"]);
}

#[tokio::test]
async fn ready_turns_503_when_the_last_answer_is_too_old() {
    let exporter = FakeExporter::serving(Bytes::from_static(b"x 1\n"), "text/plain").await;
    let port = exporter.port();
    let proxy = ProxyProcess::start(&[
        ("PROXY_HOSTIP", "127.0.0.1"),
        ("PROXY_PORT", &port),
        ("PROXY_READY_MAX_AGE_SECONDS", "0.2"),
    ])
    .await;
    assert_eq!(support::get(proxy.addr, "/metrics").await.status, StatusCode::OK);
    drop(exporter);

    // Poll until the answer ages out (bounded); the exporter is gone, so the probe fails.
    let stale = within_for(Duration::from_secs(10), "/ready to turn 503", async {
        loop {
            let ready = support::get(proxy.addr, "/ready").await;
            if ready.status == StatusCode::SERVICE_UNAVAILABLE {
                return ready;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(stale.text().contains("last answer"), "{}", stale.text());
}

async fn futures_join_all<F: std::future::Future<Output = support::Scraped> + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<support::Scraped> {
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.unwrap());
    }
    out
}

#[tokio::test]
async fn ready_gives_a_reason_before_the_kubelet_gives_up_on_a_hung_exporter() {
    // Accepts the probe and never answers.
    let exporter = FakeExporter::start(|_| std::future::pending()).await;
    let proxy = ProxyProcess::start(&[("PROXY_HOSTIP", "127.0.0.1"), ("PROXY_PORT", &exporter.port())]).await;

    // The kubelet's probe timeout in our manifests is 3 s: the answer must come inside it.
    let ready = within_for(Duration::from_secs(3), "/ready", support::get(proxy.addr, "/ready")).await;

    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(ready.text().contains("probe of /health: no answer within 2s"), "{}", ready.text());
}
