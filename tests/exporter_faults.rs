//! Exporter faults: for each way windows_exporter can misbehave, what the scraper sees (status and
//! a one-line body naming the exporter and the cause, or a visibly incomplete body), the warning
//! the proxy logs, and that `/health` keeps answering promptly on another connection while the
//! fault is in progress.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use support::scenarios::{self, Native};
use support::{
    Client, ExporterBody, FakeExporter, HeldScrape, ProxyProcess, health_within, read_all, reply, streaming_reply,
    within,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// How fast `/health` must answer while a fault is in progress: a bound on a health check.
const HEALTH: Duration = Duration::from_secs(1);
const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
/// A scraper's timeout header for a 0.5 s proxy deadline (1 s minus the default 0.5 s margin).
const ONE_SECOND: (&str, &str) = ("x-prometheus-scrape-timeout-seconds", "1");

async fn proxy_on(port: u16) -> ProxyProcess {
    ProxyProcess::start(&[("PROXY_HOSTIP", "127.0.0.1"), ("PROXY_PORT", &port.to_string())]).await
}

fn is_warning(line: &serde_json::Value, message: &str) -> bool {
    line["level"] == "WARN" && line["message"] == message
}

/// A scrape's outcome counter, read from `/proxy/metrics`.
async fn scrapes_total(proxy: &ProxyProcess, outcome: &str, status: u16) -> f64 {
    let series =
        format!("windows_exporter_proxy_scrapes_total{{outcome=\"{outcome}\",status=\"{status}\",route=\"/metrics\"}}");
    let mut client = Client::connect(proxy.addr).await;
    support::metric(&support::own_metrics(&mut client).await, &series)
}

#[tokio::test]
async fn refused_connection_is_502_naming_the_exporter() {
    let proxy = scenarios::refused_connection_is_502_naming_the_exporter(&Native).await;
    health_within(proxy.addr, HEALTH).await;
}

#[tokio::test]
async fn exporter_that_never_answers_gets_504_before_the_scrapers_deadline() {
    let mut exporter = FakeExporter::start(|_| std::future::pending::<http::Response<ExporterBody>>()).await;
    let mut proxy = proxy_on(exporter.addr.port()).await;
    let fd_baseline = proxy.fd_baseline().await;

    let addr = proxy.addr;
    let scrape = tokio::spawn(async move { Client::connect(addr).await.get("/metrics", &[ONE_SECOND]).await });
    let seen = exporter.next_request().await;
    health_within(proxy.addr, HEALTH).await;
    // The scraper said 1 s; the scraper's own deadline bounds the wait (generously).
    let scraped = support::within_for(Duration::from_secs(5), "the 504", scrape).await.unwrap();

    // The proxy's budget, 0.5 s, as much of it as is left when the request goes out.
    support::assert_told_budget(&seen.headers, 0.5);
    assert_eq!(scraped.status, StatusCode::GATEWAY_TIMEOUT);
    let body = scraped.text();
    assert_eq!(body.trim_end().lines().count(), 1, "{body:?}");
    assert!(body.starts_with(&format!("http://{}: no response within 500ms", exporter.addr)), "{body:?}");
    assert!(body.contains("the scraper's timeout minus PROXY_TIMEOUT_MARGIN_SECONDS"), "{body:?}");
    let line = proxy
        .wait_for_log("the timeout warning", |l| {
            is_warning(l, "scrape failed: exporter sent no response headers before the deadline")
        })
        .await;
    assert_eq!(line["timeout_ms"], 500);
    // The proxy gave up on the exporter's connection too.
    exporter.connection_closed().await;
    assert_eq!(scrapes_total(&proxy, "timeout", 504).await, 1.0);
    proxy.wait_until_settled(fd_baseline).await;
}

/// Reads a streamed response to its end or first error, returning the bytes read and the error.
async fn read_until_error(response: http::Response<hyper::body::Incoming>) -> (Vec<u8>, Option<hyper::Error>) {
    let mut body = response.into_body();
    let mut read = Vec::new();
    loop {
        match within("the next body frame", body.frame()).await {
            None => return (read, None),
            Some(Err(error)) => return (read, Some(error)),
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    read.extend_from_slice(data);
                }
            }
        }
    }
}

#[tokio::test]
async fn exporter_stalling_mid_body_leaves_the_scraper_an_incomplete_body() {
    for framing in [Framing::ContentLength, Framing::Chunked] {
        let mut held = HeldScrape::with_headers(&framing.headers()).await;
        let mut proxy = proxy_on(held.exporter.addr.port()).await;
        let fd_baseline = proxy.fd_baseline().await;

        let mut client = Client::connect(proxy.addr).await;
        let response = client.send(Method::GET, "/metrics", &[ONE_SECOND]).await.expect("response headers");
        assert_eq!(response.status(), StatusCode::OK, "{framing:?}");
        // Held and silent from here on: the body stalls.
        held.started().await;
        let reading = tokio::spawn(read_until_error(response));
        health_within(proxy.addr, HEALTH).await;
        let (read, error) = within("the cut-off", reading).await.unwrap();

        assert_eq!(read, HeldScrape::FIRST, "{framing:?}");
        assert!(error.is_some(), "{framing:?}: the stalled body ended cleanly; a scraper would store a partial scrape");
        let line = proxy
            .wait_for_log("the mid-body warning", |l| {
                is_warning(l, "scrape failed mid-body; scraper connection aborted")
            })
            .await;
        assert_eq!(line["outcome"], "timeout", "{framing:?}");
        held.exporter.connection_closed().await;
        assert_eq!(scrapes_total(&proxy, "timeout", 200).await, 1.0);
        proxy.wait_until_settled(fd_baseline).await;
    }
}

#[derive(Debug, Clone, Copy)]
enum Framing {
    ContentLength,
    Chunked,
}

impl Framing {
    /// Response headers for a body promised to be 1,000 bytes (or of unknown length).
    fn headers(self) -> Vec<(&'static str, &'static str)> {
        match self {
            Framing::ContentLength => vec![("content-type", TEXT), ("content-length", "1000")],
            Framing::Chunked => vec![("content-type", TEXT)],
        }
    }
}

#[tokio::test]
async fn slowly_dripped_body_that_finishes_in_time_succeeds() {
    let lines: Vec<String> = (0..20).map(|i| format!("drip_metric{{n=\"{i}\"}} {i}\n")).collect();
    let expected = lines.concat();
    let exporter = FakeExporter::start(move |_| {
        let (mut sender, response) = streaming_reply(&[("content-type", TEXT)]);
        let lines = lines.clone();
        tokio::spawn(async move {
            for line in lines {
                // The fault itself: the exporter takes its time over every line.
                tokio::time::sleep(Duration::from_millis(25)).await;
                sender.send_data(Bytes::from(line)).await.unwrap();
            }
        });
        async move { response }
    })
    .await;
    let proxy = proxy_on(exporter.addr.port()).await;

    let scrape = tokio::spawn({
        let addr = proxy.addr;
        async move { Client::connect(addr).await.get("/metrics", &[("x-prometheus-scrape-timeout-seconds", "10")]).await }
    });
    health_within(proxy.addr, HEALTH).await;
    let scraped = within("the dripped scrape", scrape).await.unwrap();

    assert_eq!(scraped.status, StatusCode::OK);
    assert_eq!(scraped.text(), expected);
    assert_eq!(scrapes_total(&proxy, "ok", 200).await, 1.0);
}

#[tokio::test]
async fn exporter_reset_mid_body_is_an_error_for_the_scraper() {
    for framing in [Framing::ContentLength, Framing::Chunked] {
        let mut held = HeldScrape::with_headers(&framing.headers()).await;
        let mut proxy = proxy_on(held.exporter.addr.port()).await;
        let fd_baseline = proxy.fd_baseline().await;

        let mut client = Client::connect(proxy.addr).await;
        let response = client.send(Method::GET, "/metrics", &[]).await.expect("response headers");
        let mut body = response.into_body();
        let first = within("the first bytes", body.frame()).await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&first[..], HeldScrape::FIRST, "{framing:?}");
        held.started().await;
        health_within(proxy.addr, HEALTH).await;
        // Reset once the test has seen the first bytes arrive and checked /health.
        held.abort();
        let rest = within("the rest of the body", body.collect()).await;

        assert!(rest.is_err(), "{framing:?}: a reset exporter gave the scraper a body that ends cleanly");
        let line = proxy
            .wait_for_log("the mid-body warning", |l| {
                is_warning(l, "scrape failed mid-body; scraper connection aborted")
            })
            .await;
        assert_eq!(line["outcome"], "aborted", "{framing:?}");
        // One line says it all, cause included: the failure is not logged a second time.
        assert!(line["error"].as_str().unwrap().starts_with("exporter connection failed mid-body"), "{line}");
        held.exporter.connection_closed().await;
        assert_eq!(scrapes_total(&proxy, "aborted", 200).await, 1.0);
        proxy.wait_until_settled(fd_baseline).await;
    }
}

/// A TCP server that reads a request and answers with `reply` (not HTTP), then closes.
async fn raw_exporter(reply: &'static [u8]) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { continue };
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let _ = stream.write_all(reply).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (addr, task)
}

#[tokio::test]
async fn non_http_reply_is_502_not_valid_http() {
    let (addr, _task) = raw_exporter(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n\r\n").await;
    let mut proxy = proxy_on(addr.port()).await;

    let scraped = Client::connect(proxy.addr).await.get("/metrics", &[]).await;
    health_within(proxy.addr, HEALTH).await;

    assert_eq!(scraped.status, StatusCode::BAD_GATEWAY);
    let body = scraped.text();
    assert_eq!(body.trim_end().lines().count(), 1, "{body:?}");
    assert!(body.starts_with(&format!("http://{addr}: reply is not valid HTTP")), "{body:?}");
    let line = proxy
        .wait_for_log("the protocol warning", |l| is_warning(l, "scrape failed: exporter unreachable or reply invalid"))
        .await;
    assert!(line["error"].as_str().unwrap().starts_with("reply is not valid HTTP"), "{line}");
    assert_eq!(scrapes_total(&proxy, "upstream_error", 502).await, 1.0);
}

#[tokio::test]
async fn exporter_server_error_passes_through() {
    let body = "collector wmi failed: timeout\n";
    let exporter = FakeExporter::start(move |_| async move {
        reply(StatusCode::INTERNAL_SERVER_ERROR, &[("content-type", "text/plain; charset=utf-8")], body)
    })
    .await;
    let mut proxy = proxy_on(exporter.addr.port()).await;

    let scraped = Client::connect(proxy.addr).await.get("/metrics", &[]).await;
    health_within(proxy.addr, HEALTH).await;

    assert_eq!(scraped.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(scraped.text(), body);
    let line = proxy
        .wait_for_log("the server error warning", |l| is_warning(l, "exporter answered with a server error"))
        .await;
    assert_eq!(line["status"], 500);
    // The scrape itself went through: the outcome is ok, the status label tells the story.
    assert_eq!(scrapes_total(&proxy, "ok", 500).await, 1.0);
}

#[tokio::test]
async fn oversized_response_headers_are_502() {
    // Past hyper's ~400 KB limit on a response head: the proxy must not buffer without bound.
    let huge = "a".repeat(1024 * 1024);
    let exporter = FakeExporter::start(move |_| {
        let huge = huge.clone();
        async move { reply(StatusCode::OK, &[("content-type", TEXT), ("x-huge", &huge)], "x 1\n") }
    })
    .await;
    let mut proxy = proxy_on(exporter.addr.port()).await;

    let scraped = Client::connect(proxy.addr).await.get("/metrics", &[]).await;
    health_within(proxy.addr, HEALTH).await;

    assert_eq!(scraped.status, StatusCode::BAD_GATEWAY);
    let body = scraped.text();
    assert!(body.starts_with(&format!("http://{}: reply is not valid HTTP", exporter.addr)), "{body:?}");
    assert!(body.contains("too large"), "{body:?}");
    proxy
        .wait_for_log("the protocol warning", |l| is_warning(l, "scrape failed: exporter unreachable or reply invalid"))
        .await;
}

/// A raw HTTP exporter whose every connection answers one request with keep-alive and then
/// misbehaves as `stale` says.
async fn one_answer_per_connection(
    stale: Stale,
) -> (std::net::SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = connections.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { continue };
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                if !matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {
                    return;
                }
                let body = "up 1\n";
                let head = format!("HTTP/1.1 200 OK\r\ncontent-type: {TEXT}\r\ncontent-length: {}\r\n\r\n", body.len());
                let _ = stream.write_all(format!("{head}{body}").as_bytes()).await;
                match stale {
                    // Closes as soon as the response is out: the pool sees the FIN while idle.
                    Stale::ClosesAfterResponse => {}
                    // Keeps the connection open, then hangs up on the next request unanswered:
                    // the race where a request goes out on a connection the exporter is closing.
                    Stale::HangsUpOnNextRequest => {
                        let _ = stream.read(&mut buf).await;
                    }
                }
                drop(stream);
            });
        }
    });
    (addr, connections)
}

#[derive(Debug, Clone, Copy)]
enum Stale {
    ClosesAfterResponse,
    HangsUpOnNextRequest,
}

#[tokio::test]
async fn exporter_closing_pooled_connections_does_not_fail_the_next_scrape() {
    for stale in [Stale::ClosesAfterResponse, Stale::HangsUpOnNextRequest] {
        let (addr, connections) = one_answer_per_connection(stale).await;
        let proxy = proxy_on(addr.port()).await;
        let mut client = Client::connect(proxy.addr).await;

        for scrape in 1..=5 {
            let scraped = client.get("/metrics", &[]).await;
            assert_eq!(scraped.status, StatusCode::OK, "{stale:?} scrape {scrape}: {}", scraped.text());
            assert_eq!(scraped.text(), "up 1\n", "{stale:?} scrape {scrape}");
        }
        assert!(connections.load(std::sync::atomic::Ordering::SeqCst) >= 5, "{stale:?}");
        assert_eq!(scrapes_total(&proxy, "ok", 200).await, 5.0, "{stale:?}");
    }
}

#[tokio::test]
async fn connect_timeout_is_502_naming_the_firewall() {
    // A listener that never accepts, with its backlog full: the kernel drops further SYNs, so
    // the proxy's connect hangs as it would behind a firewall that drops packets.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..8 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        match tokio::time::timeout(Duration::from_millis(200), socket.connect(addr)).await {
            Ok(Ok(stream)) => fillers.push(stream),
            _ => break,
        }
    }
    let mut proxy = ProxyProcess::start(&[
        ("PROXY_HOSTIP", "127.0.0.1"),
        ("PROXY_PORT", &addr.port().to_string()),
        ("PROXY_CONNECT_TIMEOUT_SECONDS", "0.5"),
    ])
    .await;

    let scraped = Client::connect(proxy.addr).await.get("/metrics", &[]).await;
    health_within(proxy.addr, HEALTH).await;

    assert_eq!(scraped.status, StatusCode::BAD_GATEWAY);
    let body = scraped.text();
    assert!(body.starts_with(&format!("http://{addr}: connect timed out after 500ms")), "{body:?}");
    assert!(body.contains("firewall"), "{body:?}");
    proxy
        .wait_for_log("the connect warning", |l| is_warning(l, "scrape failed: exporter unreachable or reply invalid"))
        .await;
    drop(listener);
}

#[tokio::test]
async fn a_reply_with_both_content_length_and_transfer_encoding_is_never_passed_on_short() {
    // RFC 9112 6.1: Transfer-Encoding overrides Content-Length, and an intermediary MUST remove
    // the received Content-Length. Before the fix the scraper got `content-length: 5`, `abcde`
    // and a clean keep-alive 200: a silently partial scrape.
    const BODY: &str = "abcdefghijklmnopqrstuvwxyz0123";
    const CHUNKED: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\
        Transfer-Encoding: chunked\r\n\r\n14\r\nabcdefghijklmnopqrst\r\na\r\nuvwxyz0123\r\n0\r\n\r\n";
    const IDENTITY: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\
        Transfer-Encoding: identity\r\n\r\nabcdefghijklmnopqrstuvwxyz0123";
    for (name, reply) in [("chunked", CHUNKED), ("identity", IDENTITY)] {
        let (addr, _task) = raw_exporter(reply).await;
        for coalesce in ["true", "false"] {
            let port = addr.port().to_string();
            let proxy = ProxyProcess::start(&[
                ("PROXY_HOSTIP", "127.0.0.1"),
                ("PROXY_PORT", port.as_str()),
                ("PROXY_COALESCE", coalesce),
            ])
            .await;
            let mut client = Client::connect(proxy.addr).await;
            let response = client.send(Method::GET, "/metrics", &[]).await.unwrap();
            let status = response.status();
            let length = response.headers().get("content-length").cloned();
            let read = read_all(response).await;
            let what = format!("Transfer-Encoding: {name}, PROXY_COALESCE={coalesce}");
            if status == StatusCode::OK {
                // Passed on: all of it, never framed by the exporter's Content-Length.
                let scraped = read.unwrap_or_else(|e| panic!("{what}: {e}"));
                assert_eq!(scraped.text(), BODY, "{what}");
                assert!(length.as_ref().is_none_or(|l| l == "30"), "{what}: content-length {length:?}");
            } else {
                // Or refused as an invalid reply, as HAProxy does for the identity form.
                assert_eq!(status, StatusCode::BAD_GATEWAY, "{what}");
            }
        }
    }
}
