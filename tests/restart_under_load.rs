//! Restarting under load loses nothing but what was in flight: scrapers hammer proxy A, A gets
//! SIGTERM and drains, B starts on the same port. Every scrape either succeeded completely (the
//! exporter's exact bytes) or failed with a connection error; none returned a truncated body as
//! a success, and none got an error status from the proxy.

#![cfg(unix)]

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use support::{FakeExporter, ProxyProcess, closed_port, streaming_reply, windows_sample, within};
use tokio::net::TcpStream;

/// What one scrape attempt came to.
#[derive(Debug)]
enum Attempt {
    /// A response with its complete body.
    Answered(StatusCode, Bytes),
    /// The connection failed before or during the response (refused, reset, closed).
    ConnectionError(String),
}

/// A scraper that keeps its connection alive until it fails, then reconnects, as Prometheus does.
async fn scraper(addr: SocketAddr, stop: Arc<AtomicBool>, ok: Arc<AtomicUsize>) -> Vec<Attempt> {
    let mut attempts = Vec::new();
    let mut sender: Option<hyper::client::conn::http1::SendRequest<Empty<Bytes>>> = None;
    while !stop.load(Ordering::SeqCst) {
        if sender.as_ref().is_none_or(|s| s.is_closed()) {
            match TcpStream::connect(addr).await {
                Ok(stream) => match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
                    Ok((s, connection)) => {
                        tokio::spawn(connection);
                        sender = Some(s);
                    }
                    Err(e) => attempts.push(Attempt::ConnectionError(e.to_string())),
                },
                Err(e) => {
                    attempts.push(Attempt::ConnectionError(e.to_string()));
                    // Nothing listens during the restart gap; don't spin on refused connects.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            continue;
        }
        let s = sender.as_mut().unwrap();
        let request = Request::get("/metrics").header("host", addr.to_string()).body(Empty::new()).unwrap();
        let attempt = async {
            s.ready().await?;
            let response = s.send_request(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>((status, body))
        };
        match within("a scrape under load", attempt).await {
            Ok((status, body)) => {
                if status == StatusCode::OK {
                    ok.fetch_add(1, Ordering::SeqCst);
                }
                attempts.push(Attempt::Answered(status, body));
            }
            Err(e) => {
                attempts.push(Attempt::ConnectionError(e.to_string()));
                sender = None;
            }
        }
    }
    attempts
}

async fn wait_for_successes(ok: &AtomicUsize, at_least: usize) {
    within("scrapes to succeed", async {
        while ok.load(Ordering::SeqCst) < at_least {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_on_the_same_port_loses_only_in_flight_scrapes() {
    let sample = windows_sample();
    // The body goes out in four chunks a few milliseconds apart (chunked framing), so scrapes
    // are mid-body when the signal lands.
    let body = sample.clone();
    let exporter = FakeExporter::start(move |_| {
        let (mut sender, response) = streaming_reply(&[("content-type", "text/plain; version=0.0.4")]);
        let body = body.clone();
        tokio::spawn(async move {
            let quarter = body.len() / 4 + 1;
            for chunk in body.chunks(quarter) {
                tokio::time::sleep(Duration::from_millis(2)).await;
                if sender.send_data(body.slice_ref(chunk)).await.is_err() {
                    return;
                }
            }
        });
        async move { response }
    })
    .await;
    let listen = format!("127.0.0.1:{}", closed_port());
    let vars = [("PROXY_HOSTIP", "127.0.0.1"), ("PROXY_PORT", &exporter.port()), ("PROXY_LISTEN", listen.as_str())];
    let mut a = ProxyProcess::start(&vars).await;

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let scrapers: Vec<_> = (0..4).map(|_| tokio::spawn(scraper(a.addr, stop.clone(), ok.clone()))).collect();
    wait_for_successes(&ok, 50).await;

    a.signal(libc::SIGTERM);
    let status = a.exit_status().await;
    assert_eq!(status.code(), Some(0), "A did not drain cleanly: {status:?}");
    let served_by_a = ok.load(Ordering::SeqCst);
    let b = ProxyProcess::start(&vars).await;
    assert_eq!(b.addr, a.addr);
    wait_for_successes(&ok, served_by_a + 50).await;
    stop.store(true, Ordering::SeqCst);

    let mut answered = 0;
    let mut errors = Vec::new();
    for task in scrapers {
        for attempt in within("a scraper to stop", task).await.unwrap() {
            match attempt {
                Attempt::Answered(status, body) => {
                    assert_eq!(
                        status,
                        StatusCode::OK,
                        "the proxy answered an error: {}",
                        String::from_utf8_lossy(&body)
                    );
                    assert_eq!(body.len(), sample.len(), "a truncated body was returned as a success");
                    assert!(body == sample, "a corrupted body was returned as a success");
                    answered += 1;
                }
                Attempt::ConnectionError(e) => errors.push(e),
            }
        }
    }
    assert!(answered >= served_by_a + 50);
    eprintln!("{answered} complete scrapes, {} connection errors around the restart", errors.len());
}
