//! The body is streamed, never buffered: the scraper gets the first chunk while the exporter is
//! still holding back the rest, and a body far larger than the proxy's memory goes through with
//! the proxy's memory flat.

mod support;

use http::{Method, StatusCode};
use http_body_util::BodyExt;
use support::{Client, HeldScrape, ProxyProcess, within};

#[tokio::test]
async fn first_chunk_reaches_the_scraper_before_the_exporter_sends_the_rest() {
    let mut held = HeldScrape::start().await;
    let proxy = ProxyProcess::start(&[("PROXY_HOSTIP", "127.0.0.1"), ("PROXY_PORT", &held.exporter.port())]).await;

    let response = Client::connect(proxy.addr).await.send(Method::GET, "/metrics", &[]).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    // The exporter holds the rest back until released, so a buffering proxy would never get here.
    let first = within("the first chunk", body.frame()).await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(&first[..], HeldScrape::FIRST);

    held.release();
    let rest = within("the rest of the body", body.collect()).await.unwrap().to_bytes();
    assert_eq!(&rest[..], HeldScrape::REST);
}

/// Reads peak RSS from /proc: Linux only. The project's one test that pushes a large body.
#[cfg(target_os = "linux")]
mod constant_memory {
    use bytes::Bytes;
    use support::{FakeExporter, streaming_reply};

    use super::*;

    #[tokio::test]
    async fn a_512_mib_body_streams_through_in_a_few_mib() {
        const CHUNK: usize = 64 * 1024;
        const TOTAL: usize = 512 * 1024 * 1024;
        // Exporter-like text rather than filler, cut to 64 KiB chunks.
        let line = Bytes::from("windows_cpu_time_total{core=\"0,0\",mode=\"idle\"} 123456.789\n".repeat(1200));
        let chunk = line.slice(..CHUNK);
        let (sent_tx, mut sent_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let exporter = FakeExporter::start(move |_| {
            let chunk = chunk.clone();
            let sent_tx = sent_tx.clone();
            let (mut sender, response) =
                streaming_reply(&[("content-type", "text/plain"), ("content-length", &TOTAL.to_string())]);
            tokio::spawn(async move {
                for _ in 0..TOTAL / CHUNK {
                    if sender.send_data(chunk.clone()).await.is_err() {
                        return;
                    }
                }
                let _ = sent_tx.send(());
            });
            async move { response }
        })
        .await;
        let proxy = ProxyProcess::start(&[("PROXY_HOSTIP", "127.0.0.1"), ("PROXY_PORT", &exporter.port())]).await;
        // Warm up: one small exchange so start-up allocations are in the baseline.
        assert_eq!(support::get(proxy.addr, "/health").await.status, StatusCode::OK);
        let before = support::proc_status(proxy.pid(), "VmHWM");

        let response = Client::connect(proxy.addr)
            .await
            .send(Method::GET, "/metrics", &[("x-prometheus-scrape-timeout-seconds", "120")])
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        // The exporter's length passes through, so a scraper can tell a cut-off body.
        assert_eq!(response.headers()["content-length"], TOTAL.to_string());
        let mut body = response.into_body();
        let mut received = 0usize;
        while let Some(frame) = within("the next chunk", body.frame()).await {
            received += frame.expect("an intact body").into_data().map_or(0, |d| d.len());
        }
        within("the exporter to finish sending", sent_rx.recv()).await;
        let after = support::proc_status(proxy.pid(), "VmHWM");

        assert_eq!(received, TOTAL);
        let growth = after.saturating_sub(before);
        assert!(
            growth < 8 << 20,
            "peak RSS grew by {} KiB while streaming 512 MiB ({before} -> {after} bytes)",
            growth >> 10
        );
    }
}
