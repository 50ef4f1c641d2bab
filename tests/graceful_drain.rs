//! Stopping: SIGTERM lets an in-flight scrape finish, refuses new connections, and exits 0.

#![cfg(unix)]

mod support;

use bytes::Bytes;
use http::{Method, StatusCode};
use support::{Client, FakeExporter, HeldScrape, ProxyProcess};

#[tokio::test]
async fn sigterm_lets_an_in_flight_scrape_finish_then_exits_0() {
    let mut held = HeldScrape::start().await;
    let mut proxy = ProxyProcess::start(&[("PROXY_HOSTIP", "127.0.0.1"), ("PROXY_PORT", &held.exporter.port())]).await;

    let response = Client::connect(proxy.addr).await.send(Method::GET, "/metrics", &[]).await.unwrap();
    held.started().await;

    proxy.signal(libc::SIGTERM);
    proxy.wait_for_message("stop requested; draining").await;
    // Stopped accepting: a new scraper is refused rather than left hanging.
    assert!(
        tokio::net::TcpStream::connect(proxy.addr).await.is_err(),
        "the proxy still accepts connections while draining"
    );

    held.release_and_expect_complete(response).await;
    proxy.expect_clean_drain().await;
}

#[tokio::test]
async fn sigint_with_nothing_in_flight_exits_0_at_once() {
    let exporter = FakeExporter::serving(Bytes::from_static(b"x 1\n"), "text/plain").await;
    let mut proxy = ProxyProcess::start(&[("PROXY_HOSTIP", "127.0.0.1"), ("PROXY_PORT", &exporter.port())]).await;
    // An idle kept-alive connection must not hold the drain up.
    let mut client = Client::connect(proxy.addr).await;
    assert_eq!(client.get("/metrics", &[]).await.status, StatusCode::OK);

    proxy.signal(libc::SIGINT);

    proxy.expect_clean_drain().await;
}
