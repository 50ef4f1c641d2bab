//! Stopping: SIGTERM lets an in-flight scrape finish, refuses new connections, and exits 0.

#![cfg(unix)]

mod support;

use bytes::Bytes;
use http::StatusCode;
use support::scenarios::{self, Native};
use support::{Client, FakeExporter, ProxyProcess};

#[tokio::test]
async fn sigterm_lets_an_in_flight_scrape_finish_then_exits_0() {
    scenarios::stop_lets_an_in_flight_scrape_finish_then_exits_0(&Native, libc::SIGTERM, "SIGTERM").await;
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
