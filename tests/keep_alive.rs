//! Kept-alive scraper connections: between requests only the idle timeout runs, so a connection
//! Prometheus reuses every scrape interval is not cut by the (much shorter) header-read timeout.

mod support;

use support::{ProxyProcess, closed_port, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends one request and reads exactly its response (small, with Content-Length).
async fn exchange(stream: &mut TcpStream, path: &str) -> String {
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: proxy\r\n\r\n").as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let n = within("a response", stream.read(&mut buf)).await.unwrap();
        assert!(n > 0, "connection closed before the response ended");
        response.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&response);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize =
                head.lines().find_map(|l| l.strip_prefix("content-length: ")).expect("content-length").parse().unwrap();
            if body.len() >= length {
                return text.into_owned();
            }
        }
    }
}

#[tokio::test]
async fn an_idle_kept_alive_connection_outlives_the_header_timeout_and_ends_at_the_idle_timeout() {
    let port = closed_port().to_string();
    let mut proxy = ProxyProcess::start(&[
        ("PROXY_HOSTIP", "127.0.0.1"),
        ("PROXY_PORT", &port),
        ("PROXY_HEADER_READ_TIMEOUT_SECONDS", "0.2"),
        ("PROXY_IDLE_TIMEOUT_SECONDS", "1.5"),
        ("RUST_LOG", "windows_exporter_proxy=debug"),
    ])
    .await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();

    assert!(exchange(&mut stream, "/health").await.starts_with("HTTP/1.1 200"));
    // The server closes the connection (EOF) only when its idle clock runs out...
    let mut rest = Vec::new();
    let read = within("the proxy to close the idle connection", stream.read_to_end(&mut rest)).await.unwrap();
    assert_eq!(read, 0);

    // ...and says so: closed for idleness after at least the idle timeout, not for headers.
    let closed = proxy
        .wait_for_log("the idle close", |l| {
            l["message"] == "closing idle connection"
                || l["message"] == "closing connection: request headers not received in time"
        })
        .await;
    assert_eq!(closed["message"], "closing idle connection", "{closed}");
    assert!(closed["idle_ms"].as_u64().unwrap() >= 1500, "{closed}");
}

#[tokio::test]
async fn a_second_request_after_a_pause_uses_the_same_connection() {
    let port = closed_port().to_string();
    let mut proxy = ProxyProcess::start(&[
        ("PROXY_HOSTIP", "127.0.0.1"),
        ("PROXY_PORT", &port),
        ("PROXY_HEADER_READ_TIMEOUT_SECONDS", "0.2"),
        ("RUST_LOG", "windows_exporter_proxy=debug"),
    ])
    .await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    assert!(exchange(&mut stream, "/health").await.starts_with("HTTP/1.1 200"));

    // Let well over one header timeout pass on the proxy's clock: a fresh connection that says
    // nothing is cut after 0.2 s, and its close is logged; wait for that log line.
    let _silent = TcpStream::connect(proxy.addr).await.unwrap();
    proxy.wait_for_message("closing connection: request headers not received in time").await;

    // The first connection, idle all that time, still serves.
    assert!(exchange(&mut stream, "/health").await.starts_with("HTTP/1.1 200"));
}
