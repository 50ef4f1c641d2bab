//! Identical concurrent scrapes share one exporter request, against the real binary.
//!
//! To make scrapes concurrent without timing luck, the fake exporter holds its answer until the
//! test releases it, and the test releases it only once the proxy's own metrics say every
//! scraper has joined (`windows_exporter_proxy_coalesced_scrapes_total`) or, for separate
//! requests, once the exporter has seen each of them.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use support::{Client, FakeExporter, ProxyProcess, metric, read_all, streaming_reply, within};
use tokio::sync::watch;

const EXPORTER_REQUESTS: &str = "windows_exporter_proxy_exporter_requests_total{route=\"/metrics\"}";
const COALESCED: &str = "windows_exporter_proxy_coalesced_scrapes_total{route=\"/metrics\"}";
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

fn scrapes(outcome: &str, status: u16) -> String {
    format!("windows_exporter_proxy_scrapes_total{{outcome=\"{outcome}\",status=\"{status}\",route=\"/metrics\"}}")
}

/// What the held exporter does once released.
#[derive(Clone)]
enum Script {
    /// Headers, then `body` in chunks of `chunk` bytes.
    Serve { body: Bytes, chunk: usize },
    /// Headers and `first` at once (before release), then, on release, `rest`.
    FirstThenRest { first: Bytes, rest: Bytes },
    /// Headers and `first` at once, then, on release, a reset mid-body.
    FirstThenReset { first: Bytes },
}

/// A fake exporter that holds every answer (or the rest of it) until [`Held::release`].
struct Held {
    exporter: FakeExporter,
    release: watch::Sender<bool>,
    /// Answers whose body the exporter finished sending.
    sent: Arc<AtomicUsize>,
}

impl Held {
    async fn start(script: Script) -> Held {
        let (release, released) = watch::channel(false);
        let sent = Arc::new(AtomicUsize::new(0));
        let done = sent.clone();
        let exporter = FakeExporter::start(move |_| {
            let script = script.clone();
            let mut released = released.clone();
            let done = done.clone();
            async move {
                let (mut sender, response) = streaming_reply(&[("content-type", CONTENT_TYPE)]);
                match script {
                    Script::Serve { body, chunk } => {
                        released.wait_for(|r| *r).await.unwrap();
                        tokio::spawn(async move {
                            for piece in body.chunks(chunk) {
                                if sender.send_data(body.slice_ref(piece)).await.is_err() {
                                    return;
                                }
                            }
                            done.fetch_add(1, Ordering::SeqCst);
                        });
                    }
                    Script::FirstThenRest { first, rest } => {
                        tokio::spawn(async move {
                            sender.send_data(first).await.unwrap();
                            released.wait_for(|r| *r).await.unwrap();
                            sender.send_data(rest).await.unwrap();
                            done.fetch_add(1, Ordering::SeqCst);
                        });
                    }
                    Script::FirstThenReset { first } => {
                        tokio::spawn(async move {
                            sender.send_data(first).await.unwrap();
                            released.wait_for(|r| *r).await.unwrap();
                            sender.abort(std::io::Error::other("exporter reset"));
                        });
                    }
                }
                response
            }
        })
        .await;
        Held { exporter, release, sent }
    }
}

async fn proxy_for(exporter: &FakeExporter, extra: &[(&str, &str)]) -> ProxyProcess {
    let port = exporter.port();
    let mut vars = vec![("PROXY_HOSTIP", "127.0.0.1"), ("PROXY_PORT", port.as_str())];
    vars.extend_from_slice(extra);
    ProxyProcess::start(&vars).await
}

/// `n` scrapes, each on its own connection, sent at once; their responses as they come.
fn scrape_all(
    proxy: &ProxyProcess,
    n: usize,
    headers: &'static [(&'static str, &'static str)],
) -> Vec<tokio::task::JoinHandle<Result<Response<Incoming>, hyper::Error>>> {
    (0..n)
        .map(|_| {
            let addr = proxy.addr;
            tokio::spawn(async move { Client::connect(addr).await.send(Method::GET, "/metrics", headers).await })
        })
        .collect()
}

async fn wait_coalesced(proxy: &ProxyProcess, n: usize) -> HashMap<String, f64> {
    proxy.wait_for_metrics(&format!("{n} scrapes joined"), |m| metric(m, COALESCED) == n as f64).await
}

async fn identical_scrapes_share_one_request(n: usize) {
    let body = support::windows_sample();
    let held = Held::start(Script::Serve { body: body.clone(), chunk: 16 * 1024 }).await;
    // One slot: n scrapes can only all be served if they share one exporter request.
    let proxy = proxy_for(&held.exporter, &[("PROXY_MAX_INFLIGHT", "1")]).await;
    let Held { mut exporter, release, .. } = held;

    let scrapers = scrape_all(&proxy, n, &[("accept-encoding", "identity")]);
    exporter.next_request().await;
    let joined = wait_coalesced(&proxy, n - 1).await;
    assert_eq!(metric(&joined, "windows_exporter_proxy_inflight_scrapes"), 1.0, "one exporter request in flight");
    release.send_replace(true);

    for scraper in scrapers {
        let scraped = read_all(within("a scraper's response", scraper).await.unwrap().unwrap()).await.unwrap();
        assert_eq!(scraped.status, StatusCode::OK);
        assert_eq!(scraped.headers["content-type"], CONTENT_TYPE);
        assert!(scraped.body == body, "a body differs from what the exporter sent ({} bytes)", scraped.body.len());
    }
    assert!(exporter.pending_requests().is_empty(), "the exporter saw more than one request");
    let metrics = proxy.wait_for_metrics("every scrape counted", |m| metric(m, &scrapes("ok", 200)) == n as f64).await;
    assert_eq!(metric(&metrics, EXPORTER_REQUESTS), 1.0);
    assert_eq!(metric(&metrics, COALESCED), (n - 1) as f64);
}

#[tokio::test]
async fn two_identical_scrapes_make_one_exporter_request() {
    identical_scrapes_share_one_request(2).await;
}

#[tokio::test]
async fn five_identical_scrapes_make_one_exporter_request() {
    identical_scrapes_share_one_request(5).await;
}

#[tokio::test]
async fn fifty_identical_scrapes_make_one_exporter_request() {
    identical_scrapes_share_one_request(50).await;
}

#[tokio::test]
async fn scrapes_that_differ_in_method_encoding_or_collect_get_separate_requests() {
    let held = Held::start(Script::Serve { body: support::windows_sample(), chunk: 64 * 1024 }).await;
    let proxy = proxy_for(&held.exporter, &[("PROXY_MAX_INFLIGHT", "8")]).await;
    let Held { mut exporter, release, .. } = held;

    let send = |method: Method, path: &'static str, headers: &'static [(&'static str, &'static str)]| {
        let addr = proxy.addr;
        tokio::spawn(async move { Client::connect(addr).await.send(method, path, headers).await })
    };
    let gzip: &[(&str, &str)] = &[("accept-encoding", "gzip")];
    let scrapers = [
        send(Method::GET, "/metrics", gzip),
        send(Method::GET, "/metrics", &[("accept-encoding", "identity")]),
        send(Method::GET, "/metrics?collect[]=cpu", gzip),
        send(Method::GET, "/metrics", &[("accept-encoding", "gzip"), ("accept", "application/openmetrics-text")]),
        send(Method::HEAD, "/metrics", gzip),
    ];
    let mut seen = Vec::new();
    for _ in 0..5 {
        let request = exporter.next_request().await;
        let encoding = request.headers.get("accept-encoding").map(|v| v.to_str().unwrap().to_owned());
        let accept = request.headers.get("accept").map(|v| v.to_str().unwrap().to_owned());
        seen.push((request.method, request.uri.to_string(), encoding, accept));
    }
    // The same as the first: it must join, not reach the exporter.
    let again = send(Method::GET, "/metrics", gzip);
    wait_coalesced(&proxy, 1).await;
    release.send_replace(true);
    for scraper in scrapers.into_iter().chain([again]) {
        let scraped = read_all(within("a response", scraper).await.unwrap().unwrap()).await.unwrap();
        assert_eq!(scraped.status, StatusCode::OK);
    }

    seen.sort_by_key(|s| format!("{s:?}"));
    let gz = Some("gzip".to_owned());
    let mut expected = vec![
        (Method::GET, "/metrics".to_owned(), gz.clone(), None),
        (Method::GET, "/metrics".to_owned(), Some("identity".to_owned()), None),
        (Method::GET, "/metrics?collect[]=cpu".to_owned(), gz.clone(), None),
        (Method::GET, "/metrics".to_owned(), gz.clone(), Some("application/openmetrics-text".to_owned())),
        (Method::HEAD, "/metrics".to_owned(), gz, None),
    ];
    expected.sort_by_key(|s| format!("{s:?}"));
    assert_eq!(seen, expected);
    assert!(exporter.pending_requests().is_empty(), "the identical sixth scrape reached the exporter");
    let metrics = proxy.wait_for_metrics("six scrapes counted", |m| metric(m, &scrapes("ok", 200)) == 6.0).await;
    assert_eq!(metric(&metrics, EXPORTER_REQUESTS), 5.0);
}

#[tokio::test]
async fn a_reset_mid_body_aborts_every_scraper() {
    let held = Held::start(Script::FirstThenReset { first: Bytes::from_static(b"windows_cpu_time_total 1\n") }).await;
    let proxy = proxy_for(&held.exporter, &[]).await;
    let Held { mut exporter, release, .. } = held;

    let scrapers = scrape_all(&proxy, 3, &[]);
    exporter.next_request().await;
    wait_coalesced(&proxy, 2).await;
    release.send_replace(true);
    for scraper in scrapers {
        let response = within("a response", scraper).await.unwrap().unwrap();
        assert_eq!(response.status(), StatusCode::OK, "the head came before the reset");
        assert!(read_all(response).await.is_err(), "a body cut by the exporter's reset must not end cleanly");
    }
    let metrics = proxy.wait_for_metrics("three aborts", |m| metric(m, &scrapes("aborted", 200)) == 3.0).await;
    assert_eq!(metric(&metrics, EXPORTER_REQUESTS), 1.0);
    assert_eq!(metric(&metrics, &scrapes("ok", 200)), 0.0);
}

#[tokio::test]
async fn the_first_scraper_hanging_up_leaves_the_others_complete() {
    let first = Bytes::from_static(b"windows_os_info 1\n");
    let rest = support::windows_sample();
    let held = Held::start(Script::FirstThenRest { first: first.clone(), rest: rest.clone() }).await;
    let proxy = proxy_for(&held.exporter, &[]).await;
    let Held { mut exporter, release, sent, .. } = held;

    // The first scraper starts the exporter request and reads the first bytes...
    let mut starter = Client::connect(proxy.addr).await;
    let mut response = starter.send(Method::GET, "/metrics", &[]).await.unwrap();
    exporter.next_request().await;
    let chunk = within("the first chunk", response.body_mut().frame()).await.unwrap().unwrap();
    assert_eq!(chunk.into_data().unwrap(), first);
    // ...two more join it...
    let others = scrape_all(&proxy, 2, &[]);
    wait_coalesced(&proxy, 2).await;
    // ...and the first hangs up before the rest comes.
    drop(response);
    drop(starter);
    proxy.wait_for_metrics("the first scraper's hang-up", |m| metric(m, &scrapes("client_gone", 200)) == 1.0).await;
    release.send_replace(true);

    let whole = [first, rest].concat();
    for scraper in others {
        let scraped = read_all(within("a response", scraper).await.unwrap().unwrap()).await.unwrap();
        assert!(scraped.body == whole, "a remaining scraper got {} of {} bytes", scraped.body.len(), whole.len());
    }
    assert_eq!(sent.load(Ordering::SeqCst), 1, "the exporter sent its whole body");
    let metrics = proxy.wait_for_metrics("two complete scrapes", |m| metric(m, &scrapes("ok", 200)) == 2.0).await;
    assert_eq!(metric(&metrics, EXPORTER_REQUESTS), 1.0);
}

#[tokio::test]
async fn a_late_joiner_gets_the_whole_body() {
    let first =
        Bytes::from_static(b"# HELP windows_cs_logical_processors ProcessorInformation.NumberOfLogicalProcessors\n");
    let rest = support::windows_sample();
    let held = Held::start(Script::FirstThenRest { first: first.clone(), rest: rest.clone() }).await;
    let proxy = proxy_for(&held.exporter, &[]).await;
    let Held { mut exporter, release, .. } = held;

    let mut early = Client::connect(proxy.addr).await.send(Method::GET, "/metrics", &[]).await.unwrap();
    exporter.next_request().await;
    let chunk = within("the first chunk", early.body_mut().frame()).await.unwrap().unwrap();
    assert_eq!(chunk.into_data().unwrap(), first);
    // Headers and the first bytes have gone out; this one arrives after them.
    let late = scrape_all(&proxy, 1, &[]).pop().unwrap();
    wait_coalesced(&proxy, 1).await;
    release.send_replace(true);

    let whole = [first.clone(), rest.clone()].concat();
    let late = read_all(within("the late response", late).await.unwrap().unwrap()).await.unwrap();
    assert!(late.body == whole, "the late joiner got {} of {} bytes", late.body.len(), whole.len());
    let early_rest = within("the early body", early.into_body().collect()).await.unwrap().to_bytes();
    assert!(early_rest == rest);
    assert!(exporter.pending_requests().is_empty(), "the late joiner reached the exporter");
}

#[tokio::test]
async fn with_coalescing_off_every_scrape_reaches_the_exporter() {
    let body = support::windows_sample();
    let held = Held::start(Script::Serve { body: body.clone(), chunk: 64 * 1024 }).await;
    let proxy = proxy_for(&held.exporter, &[("PROXY_COALESCE", "false"), ("PROXY_MAX_INFLIGHT", "5")]).await;
    let Held { mut exporter, release, .. } = held;

    let scrapers = scrape_all(&proxy, 5, &[]);
    // Held answers: all five are at the exporter at once.
    for _ in 0..5 {
        exporter.next_request().await;
    }
    release.send_replace(true);
    for scraper in scrapers {
        let scraped = read_all(within("a response", scraper).await.unwrap().unwrap()).await.unwrap();
        assert!(scraped.body == body);
    }
    let metrics = proxy.wait_for_metrics("five scrapes", |m| metric(m, &scrapes("ok", 200)) == 5.0).await;
    assert_eq!(metric(&metrics, EXPORTER_REQUESTS), 5.0);
    assert_eq!(metric(&metrics, COALESCED), 0.0);
}

#[tokio::test]
async fn a_failure_before_headers_reaches_every_waiting_scraper_as_the_same_502() {
    // An "exporter" that takes connections and closes them without answering once released.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let (release, released) = watch::channel(false);
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut released = released.clone();
            let seen_tx = seen_tx.clone();
            tokio::spawn(async move {
                use tokio::io::AsyncReadExt;
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let _ = seen_tx.send(());
                released.wait_for(|r| *r).await.unwrap();
                drop(stream);
            });
        }
    });
    let proxy = ProxyProcess::start(&[("PROXY_HOSTIP", "127.0.0.1"), ("PROXY_PORT", &port)]).await;

    let scrapers = scrape_all(&proxy, 3, &[]);
    within("the exporter to get a request", seen.recv()).await;
    wait_coalesced(&proxy, 2).await;
    release.send_replace(true);
    let mut bodies = Vec::new();
    for scraper in scrapers {
        let scraped = read_all(within("a response", scraper).await.unwrap().unwrap()).await.unwrap();
        assert_eq!(scraped.status, StatusCode::BAD_GATEWAY);
        bodies.push(scraped.text());
    }
    assert!(bodies.iter().all(|b| b == &bodies[0] && b.contains("connection closed")), "{bodies:?}");
    let metrics = proxy.wait_for_metrics("three 502s", |m| metric(m, &scrapes("upstream_error", 502)) == 3.0).await;
    assert_eq!(metric(&metrics, EXPORTER_REQUESTS), 1.0);
}

#[tokio::test]
async fn each_scraper_keeps_its_own_deadline() {
    let body = support::windows_sample();
    let held = Held::start(Script::Serve { body: body.clone(), chunk: 64 * 1024 }).await;
    let proxy = proxy_for(&held.exporter, &[]).await;
    let Held { mut exporter, release, .. } = held;
    // Budget 3 s each (3.5 s minus the 0.5 s margin): the same key, so they share.
    const TIMEOUT: &[(&str, &str)] = &[("x-prometheus-scrape-timeout-seconds", "3.5")];

    let early = scrape_all(&proxy, 1, TIMEOUT).pop().unwrap();
    exporter.next_request().await;
    // Not a synchronisation: the gap between the two arrivals is what puts the second
    // scraper's deadline 1.5 s after the first one's.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let late = scrape_all(&proxy, 1, TIMEOUT).pop().unwrap();
    wait_coalesced(&proxy, 1).await;

    let early = read_all(within("the early scraper's answer", early).await.unwrap().unwrap()).await.unwrap();
    assert_eq!(early.status, StatusCode::GATEWAY_TIMEOUT, "{}", early.text());
    release.send_replace(true);
    let late = read_all(within("the late scraper's answer", late).await.unwrap().unwrap()).await.unwrap();
    assert_eq!(late.status, StatusCode::OK);
    assert!(late.body == body);
    let metrics = proxy.wait_for_metrics("both counted", |m| metric(m, &scrapes("ok", 200)) == 1.0).await;
    assert_eq!(metric(&metrics, &scrapes("timeout", 504)), 1.0);
    assert_eq!(metric(&metrics, EXPORTER_REQUESTS), 1.0);
}

#[tokio::test]
async fn once_a_scrape_is_past_the_buffer_bound_an_identical_one_sends_its_own_request() {
    // The first scraper streams its request alone; once it has passed on more than the bound,
    // byte 0 is no longer at hand for a joiner, so the next identical scrape is a new request,
    // and the first goes on to its end.
    const LIMIT: usize = 256 * 1024;
    let sample = support::windows_sample();
    let first = Bytes::from([sample.clone(), sample.clone(), sample.clone()].concat());
    let rest = sample;
    let held = Held::start(Script::FirstThenRest { first: first.clone(), rest: rest.clone() }).await;
    let proxy = proxy_for(&held.exporter, &[("PROXY_COALESCE_MAX_BUFFER_BYTES", "262144")]).await;
    let Held { mut exporter, release, .. } = held;

    let early = Client::connect(proxy.addr).await.send(Method::GET, "/metrics", &[]).await.unwrap();
    exporter.next_request().await;
    let (_, mut early_body) = early.into_parts();
    let mut received = Vec::new();
    while received.len() <= LIMIT {
        let frame = within("the early body", early_body.frame()).await.unwrap().unwrap();
        received.extend_from_slice(&frame.into_data().unwrap());
    }
    let late = scrape_all(&proxy, 1, &[]).pop().unwrap();
    within("the late scrape's own exporter request", exporter.next_request()).await;
    release.send_replace(true);

    let whole = [first, rest].concat();
    let late = read_all(within("the late response", late).await.unwrap().unwrap()).await.unwrap();
    assert!(late.body == whole, "the late scraper got {} of {} bytes", late.body.len(), whole.len());
    let early_rest = within("the early body's rest", early_body.collect()).await.unwrap().to_bytes();
    received.extend_from_slice(&early_rest);
    assert!(received == whole, "the early scraper got {} of {} bytes", received.len(), whole.len());
    let metrics = proxy.wait_for_metrics("both counted", |m| metric(m, &scrapes("ok", 200)) == 2.0).await;
    assert_eq!(metric(&metrics, EXPORTER_REQUESTS), 2.0);
    assert_eq!(metric(&metrics, COALESCED), 0.0);
}

/// Linux only: reads the proxy's peak RSS from /proc.
#[cfg(target_os = "linux")]
mod bounded {
    use super::*;

    #[tokio::test]
    async fn a_slow_scraper_past_the_buffer_bound_is_cut_while_a_fast_one_completes() {
        const TOTAL: usize = 32 * 1024 * 1024;
        let body = Bytes::from(vec![b'#'; TOTAL]);
        let held = Held::start(Script::Serve { body: body.clone(), chunk: 64 * 1024 }).await;
        let mut proxy = proxy_for(&held.exporter, &[("PROXY_COALESCE_MAX_BUFFER_BYTES", "262144")]).await;
        let Held { mut exporter, release, sent } = held;
        assert_eq!(support::get(proxy.addr, "/health").await.status, StatusCode::OK);
        let before = support::proc_status(proxy.pid(), "VmHWM");

        let timeout: &'static [(&'static str, &'static str)] = &[("x-prometheus-scrape-timeout-seconds", "120")];
        let fast = scrape_all(&proxy, 1, timeout).pop().unwrap();
        exporter.next_request().await;
        // The slow scraper: a small receive window, and it reads nothing until the end.
        let mut slow_scraper = Client::with_small_receive_window(proxy.addr).await;
        // The task hands the client back with the head, so its connection outlives the body.
        let slow = tokio::spawn(async move {
            let head = slow_scraper.send(Method::GET, "/metrics", timeout).await;
            (slow_scraper, head)
        });
        wait_coalesced(&proxy, 1).await;
        release.send_replace(true);

        let fast = read_all(within("the fast scraper", fast).await.unwrap().unwrap()).await.unwrap();
        assert_eq!(fast.body.len(), TOTAL, "the fast scraper got the whole body");
        assert_eq!(sent.load(Ordering::SeqCst), 1, "the exporter sent everything, not held back by the slow one");
        let cut = proxy.wait_for_log("the lagged scraper's log line", |l| l["outcome"] == "lagged").await;
        assert!(cut["error"].as_str().unwrap().contains("PROXY_COALESCE_MAX_BUFFER_BYTES"), "{cut}");

        let (_slow_scraper, slow) = within("the slow scraper's head", slow).await.unwrap();
        let slow = slow.unwrap();
        let (_, mut slow_body) = slow.into_parts();
        let mut received = 0usize;
        let ended = within("the slow body to end", async {
            loop {
                match slow_body.frame().await {
                    Some(Ok(frame)) => received += frame.into_data().map_or(0, |d| d.len()),
                    Some(Err(_)) => return Err(()),
                    None => return Ok(()),
                }
            }
        })
        .await;
        assert!(ended.is_err(), "the slow scraper must see its connection cut, not a clean end");
        assert!(received < TOTAL, "the slow scraper got {received} bytes");
        let metrics = proxy.wait_for_metrics("the cut counted", |m| metric(m, &scrapes("lagged", 200)) == 1.0).await;
        assert_eq!(metric(&metrics, &scrapes("ok", 200)), 1.0);
        assert_eq!(metric(&metrics, EXPORTER_REQUESTS), 1.0);
        let growth = support::proc_status(proxy.pid(), "VmHWM").saturating_sub(before);
        assert!(growth < 8 * 1024 * 1024, "peak RSS grew by {growth} bytes for a 32 MiB body");
    }
}

#[tokio::test]
async fn a_content_length_answer_ends_the_scrape_with_its_last_byte_and_the_exporter_connection_is_reused() {
    // Through the shared path, a Content-Length answer (what the bench's upstream sends) ends as
    // a complete scrape, never a hang-up, and the exporter connection goes back to the pool.
    let body = support::windows_sample();
    let mut exporter = FakeExporter::serving(body.clone(), CONTENT_TYPE).await;
    let proxy = proxy_for(&exporter, &[]).await;
    let mut client = Client::connect(proxy.addr).await;
    for _ in 0..3 {
        let scraped = client.get("/metrics", &[]).await;
        assert_eq!(scraped.headers["content-length"], body.len().to_string());
        assert!(scraped.body == body);
    }
    let metrics = proxy.wait_for_metrics("three complete scrapes", |m| metric(m, &scrapes("ok", 200)) == 3.0).await;
    assert_eq!(metric(&metrics, &scrapes("client_gone", 200)), 0.0);
    let connections: Vec<usize> = exporter.pending_requests().iter().map(|r| r.connection).collect();
    assert_eq!(connections, vec![1, 1, 1], "every scrape on the one pooled exporter connection");
}
