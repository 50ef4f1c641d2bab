//! A drain that cannot finish is cut short: a second stop signal ends it at once, and the grace
//! period ends it on its own. Either way the proxy exits 1 (not every scrape was served) and the
//! stuck scraper sees a failed response, never a clean one.

#![cfg(unix)]

mod support;

use std::time::Duration;

use http::Method;
use http_body_util::BodyExt;
use support::{Client, HeldScrape, ProxyProcess, within, within_for};

#[tokio::test]
async fn second_signal_ends_the_drain_promptly_with_exit_1() {
    // The exporter sends a first line and then stalls for as long as `held` lives.
    let mut held = HeldScrape::start().await;
    let mut proxy = ProxyProcess::start(&[("PROXY_HOSTIP", "127.0.0.1"), ("PROXY_PORT", &held.exporter.port())]).await;
    let response = Client::connect(proxy.addr).await.send(Method::GET, "/metrics", &[]).await.unwrap();
    held.started().await;

    proxy.signal(libc::SIGTERM);
    let draining = proxy.wait_for_message("stop requested; draining").await;
    assert_eq!(draining["open_connections"], 1);
    proxy.signal(libc::SIGTERM);
    let line = proxy.wait_for_message("second stop request; exiting now").await;
    assert_eq!(line["level"], "WARN");
    // Default grace is 20 s; "promptly" is a generous 5 s.
    let status = within_for(Duration::from_secs(5), "exit after the second signal", proxy.exit_status()).await;

    assert_eq!(status.code(), Some(1), "{status:?}");
    let body = within("the cut-off body", response.into_body().collect()).await;
    assert!(body.is_err(), "the stuck scrape ended with a clean (truncated) body");
}

#[tokio::test]
async fn grace_period_ends_a_stuck_drain_with_exit_1() {
    let mut held = HeldScrape::start().await;
    let mut proxy = ProxyProcess::start(&[
        ("PROXY_HOSTIP", "127.0.0.1"),
        ("PROXY_PORT", &held.exporter.port()),
        ("PROXY_SHUTDOWN_GRACE_SECONDS", "1"),
    ])
    .await;
    let response = Client::connect(proxy.addr).await.send(Method::GET, "/metrics", &[]).await.unwrap();
    held.started().await;

    proxy.signal(libc::SIGTERM);
    proxy.wait_for_message("stop requested; draining").await;
    // Grace 1 s plus a generous 5 s.
    let status = within_for(Duration::from_secs(6), "exit after the grace period", proxy.exit_status()).await;

    assert_eq!(status.code(), Some(1), "{status:?}");
    let line = proxy.wait_for_message("grace period over; closing what is left").await;
    assert_eq!(line["open_connections"], 1);
    let body = within("the cut-off body", response.into_body().collect()).await;
    assert!(body.is_err(), "the stuck scrape ended with a clean (truncated) body");
}
