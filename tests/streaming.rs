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

/// Reads peak RSS from /proc: Linux only.
#[cfg(target_os = "linux")]
mod constant_memory {
    use bytes::Bytes;
    use support::{FakeExporter, streaming_reply};

    use super::*;

    /// Peak resident memory of a process, from /proc (Linux).
    fn peak_rss_kib(pid: u32) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM in /proc/pid/status");
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    #[tokio::test]
    async fn a_512_mib_body_streams_through_in_a_few_mib() {
        const CHUNK: usize = 64 * 1024;
        const TOTAL: usize = 512 * 1024 * 1024;
        let chunk = Bytes::from(vec![b'#'; CHUNK]);
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
        let before = peak_rss_kib(proxy.pid());

        let response = Client::connect(proxy.addr)
            .await
            .send(Method::GET, "/metrics", &[("x-prometheus-scrape-timeout-seconds", "120")])
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let mut body = response.into_body();
        let mut received = 0usize;
        while let Some(frame) = within("the next chunk", body.frame()).await {
            received += frame.expect("the body completes").into_data().map_or(0, |d| d.len());
        }
        within("the exporter to finish sending", sent_rx.recv()).await;

        assert_eq!(received, TOTAL);
        let growth_kib = peak_rss_kib(proxy.pid()).saturating_sub(before);
        assert!(growth_kib < 8 * 1024, "peak RSS grew by {growth_kib} KiB while streaming 512 MiB");
    }
}
