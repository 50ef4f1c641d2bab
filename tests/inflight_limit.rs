//! The concurrency guard: at most `PROXY_MAX_INFLIGHT` scrapes reach the exporter at once. A
//! scrape past the limit waits for a slot within its own deadline, then gets 503 naming the
//! setting; the gauges show who holds a slot and who waits.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::StatusCode;
use support::{Client, FakeExporter, ProxyProcess, Scraped, metric, reply, within};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
const INFLIGHT: &str = "windows_exporter_proxy_inflight_scrapes";
const WAITING: &str = "windows_exporter_proxy_waiting_scrapes";

/// An exporter that holds every request until the test releases it through the sender it hands
/// over on `held`.
async fn holding_exporter() -> (FakeExporter, mpsc::UnboundedReceiver<oneshot::Sender<()>>) {
    let (held_tx, held) = mpsc::unbounded_channel();
    let exporter = FakeExporter::start(move |_| {
        let (release, released) = oneshot::channel::<()>();
        held_tx.send(release).unwrap();
        async move {
            let _ = released.await;
            reply(StatusCode::OK, &[("content-type", TEXT)], Bytes::from_static(b"up 1\n"))
        }
    })
    .await;
    (exporter, held)
}

async fn proxy_for(exporter: &FakeExporter) -> ProxyProcess {
    ProxyProcess::start(&[("PROXY_HOSTIP", "127.0.0.1"), ("PROXY_PORT", &exporter.port()), ("PROXY_MAX_INFLIGHT", "2")])
        .await
}

/// One scrape. Each asks for a different `collect[]`, so that coalescing (on by default) never
/// serves two of them from one exporter request: every scrape here needs a slot of its own.
fn scrape(proxy: &ProxyProcess, timeout: Option<&'static str>) -> JoinHandle<Scraped> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let path = format!("/metrics?collect[]=c{}", NEXT.fetch_add(1, Ordering::Relaxed));
    let addr = proxy.addr;
    tokio::spawn(async move {
        let headers: Vec<(&str, &str)> =
            timeout.map(|t| ("x-prometheus-scrape-timeout-seconds", t)).into_iter().collect();
        Client::connect(addr).await.get(&path, &headers).await
    })
}

fn gauges(m: &HashMap<String, f64>) -> (f64, f64) {
    (metric(m, INFLIGHT), metric(m, WAITING))
}

#[tokio::test]
async fn third_scrape_waits_for_a_slot_and_proceeds_when_one_frees() {
    let (mut exporter, mut held) = holding_exporter().await;
    let proxy = proxy_for(&exporter).await;

    let first = scrape(&proxy, None);
    let second = scrape(&proxy, None);
    let release_a = within("the first held request", held.recv()).await.unwrap();
    let release_b = within("the second held request", held.recv()).await.unwrap();
    let third = scrape(&proxy, None);
    // The third is queued in the proxy, not at the exporter.
    proxy.wait_for_metrics("two in flight and one waiting", |m| gauges(m) == (2.0, 1.0)).await;
    assert_eq!(exporter.pending_requests().len(), 2, "the exporter saw more than PROXY_MAX_INFLIGHT scrapes");
    assert!(held.try_recv().is_err(), "a third request reached the exporter");

    release_a.send(()).unwrap();
    let release_c = within("the third request to reach the exporter", held.recv()).await.unwrap();
    proxy.wait_for_metrics("two in flight, none waiting", |m| gauges(m) == (2.0, 0.0)).await;
    assert_eq!(exporter.pending_requests().len(), 1);

    release_b.send(()).unwrap();
    release_c.send(()).unwrap();
    for task in [first, second, third] {
        let scraped = within("a scrape", task).await.unwrap();
        assert_eq!(scraped.status, StatusCode::OK);
        assert_eq!(scraped.text(), "up 1\n");
    }
    let m = proxy.wait_for_metrics("all slots free", |m| gauges(m) == (0.0, 0.0)).await;
    assert_eq!(
        metric(&m, "windows_exporter_proxy_scrapes_total{outcome=\"ok\",status=\"200\",route=\"/metrics\"}"),
        3.0
    );
}

#[tokio::test]
async fn scrape_with_no_slot_before_its_deadline_gets_503_naming_the_setting() {
    let (exporter, mut held) = holding_exporter().await;
    let mut proxy = proxy_for(&exporter).await;

    let first = scrape(&proxy, None);
    let second = scrape(&proxy, None);
    let release_a = within("the first held request", held.recv()).await.unwrap();
    let release_b = within("the second held request", held.recv()).await.unwrap();
    // 1 s scraper timeout: 0.5 s proxy deadline, spent waiting for a slot.
    let third = within("the rejected scrape", scrape(&proxy, Some("1"))).await.unwrap();

    assert_eq!(third.status, StatusCode::SERVICE_UNAVAILABLE);
    let body = third.text();
    assert_eq!(body.trim_end().lines().count(), 1, "{body:?}");
    assert!(body.starts_with(&format!("http://{}: 2 scrapes already in flight (PROXY_MAX_INFLIGHT)", exporter.addr)));
    let line = proxy.wait_for_message("scrape rejected: no exporter slot before the deadline").await;
    assert_eq!(line["level"], "WARN");
    assert_eq!(line["max_inflight"], 2);
    assert!(held.try_recv().is_err(), "the rejected scrape reached the exporter");
    let m = proxy.wait_for_metrics("two in flight, none waiting", |m| gauges(m) == (2.0, 0.0)).await;
    assert_eq!(
        metric(&m, "windows_exporter_proxy_scrapes_total{outcome=\"rejected\",status=\"503\",route=\"/metrics\"}"),
        1.0
    );

    release_a.send(()).unwrap();
    release_b.send(()).unwrap();
    for task in [first, second] {
        assert_eq!(within("a held scrape", task).await.unwrap().status, StatusCode::OK);
    }
    proxy.wait_for_metrics("all slots free", |m| gauges(m) == (0.0, 0.0)).await;
}

#[tokio::test]
async fn scraper_giving_up_while_waiting_leaves_the_queue() {
    let (exporter, mut held) = holding_exporter().await;
    let proxy = proxy_for(&exporter).await;

    let first = scrape(&proxy, None);
    let second = scrape(&proxy, None);
    let release_a = within("the first held request", held.recv()).await.unwrap();
    let release_b = within("the second held request", held.recv()).await.unwrap();
    let impatient = scrape(&proxy, None);
    proxy.wait_for_metrics("one waiting", |m| gauges(m) == (2.0, 1.0)).await;
    impatient.abort();
    // The scraper's connection closes; its place in the queue must go with it.
    proxy.wait_for_metrics("nobody waiting", |m| gauges(m) == (2.0, 0.0)).await;

    release_a.send(()).unwrap();
    release_b.send(()).unwrap();
    for task in [first, second] {
        assert_eq!(within("a held scrape", task).await.unwrap().status, StatusCode::OK);
    }
    let m = proxy.wait_for_metrics("all slots free", |m| gauges(m) == (0.0, 0.0)).await;
    assert!(held.try_recv().is_err(), "the abandoned scrape reached the exporter");
    assert_eq!(
        metric(&m, "windows_exporter_proxy_scrapes_total{outcome=\"ok\",status=\"200\",route=\"/metrics\"}"),
        2.0
    );
}

/// An exporter that holds every request until released, and hands the test each request's
/// `X-Prometheus-Scrape-Timeout-Seconds` with its release.
async fn holding_exporter_telling_timeouts() -> (FakeExporter, mpsc::UnboundedReceiver<(f64, oneshot::Sender<()>)>) {
    let (held_tx, held) = mpsc::unbounded_channel();
    let exporter = FakeExporter::start(move |request| {
        let timeout: f64 = request.headers()["x-prometheus-scrape-timeout-seconds"].to_str().unwrap().parse().unwrap();
        let (release, released) = oneshot::channel::<()>();
        held_tx.send((timeout, release)).unwrap();
        async move {
            let _ = released.await;
            reply(StatusCode::OK, &[("content-type", TEXT)], Bytes::from_static(b"up 1\n"))
        }
    })
    .await;
    (exporter, held)
}

/// A proxy with one exporter slot, held by a first scrape, and a second scrape with the scraper
/// timeout `timeout` waiting for it (seen in the gauges). The exporter holds every request until
/// released, and hands over each request's timeout header with its release. Every part must be
/// kept alive by the test: dropping the proxy or the exporter ends the scrapes.
struct OneSlotTaken {
    held: mpsc::UnboundedReceiver<(f64, oneshot::Sender<()>)>,
    proxy: ProxyProcess,
    first: JoinHandle<Scraped>,
    release_first: oneshot::Sender<()>,
    second: JoinHandle<Scraped>,
    exporter: FakeExporter,
}

async fn one_slot_taken_and_a_scrape_waiting(timeout: &'static str) -> OneSlotTaken {
    let (exporter, mut held) = holding_exporter_telling_timeouts().await;
    let proxy = ProxyProcess::start(&[
        ("PROXY_HOSTIP", "127.0.0.1"),
        ("PROXY_PORT", &exporter.port()),
        ("PROXY_MAX_INFLIGHT", "1"),
    ])
    .await;
    let first = scrape(&proxy, None);
    let (_, release_first) = within("the first held request", held.recv()).await.unwrap();
    let second = scrape(&proxy, Some(timeout));
    proxy.wait_for_metrics("the second scrape waiting", |m| gauges(m) == (1.0, 1.0)).await;
    OneSlotTaken { held, proxy, first, release_first, second, exporter }
}

#[tokio::test]
async fn a_scrape_that_waited_for_a_slot_tells_the_exporter_only_the_time_it_has_left() {
    // Before the fix the exporter was told the whole budget whatever the wait, and let its
    // collectors run to a deadline nobody waited for.
    // 10 s scraper timeout: a 9.5 s budget, of which it spends at least 1 s waiting.
    let OneSlotTaken { mut held, proxy: _proxy, first, release_first, second, exporter: _exporter } =
        one_slot_taken_and_a_scrape_waiting("10").await;
    let waiting_since = tokio::time::Instant::now();
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    release_first.send(()).unwrap();
    let (told, release_second) = within("the second request", held.recv()).await.unwrap();
    let waited = waiting_since.elapsed().as_secs_f64();
    assert!(told <= 9.5 - waited + 0.001, "told the exporter {told} s after waiting {waited} s of a 9.5 s budget");
    assert!(told > 0.25, "{told}");
    release_second.send(()).unwrap();
    for task in [first, second] {
        assert_eq!(within("a scrape", task).await.unwrap().status, StatusCode::OK);
    }
}

#[tokio::test]
async fn a_scrape_with_no_time_left_when_its_slot_frees_never_reaches_the_exporter() {
    // Before the fix a scrape sent its exporter request however little of its deadline was
    // left, and then abandoned it: a collection on the node that nobody waited for.
    // 1.5 s scraper timeout: a 1 s budget. Its slot frees after at least 0.85 s of it, with at
    // most 0.15 s left: below the 0.25 s the proxy needs at the least.
    let OneSlotTaken { mut held, proxy, first, release_first, second, exporter: _exporter } =
        one_slot_taken_and_a_scrape_waiting("1.5").await;
    tokio::time::sleep(std::time::Duration::from_millis(850)).await;
    release_first.send(()).unwrap();
    let second = within("the second scrape", second).await.unwrap();
    assert!(
        second.status == StatusCode::GATEWAY_TIMEOUT || second.status == StatusCode::SERVICE_UNAVAILABLE,
        "{:?}: {}",
        second.status,
        second.text()
    );
    assert_eq!(within("the first scrape", first).await.unwrap().status, StatusCode::OK);
    proxy.wait_for_metrics("all slots free", |m| gauges(m) == (0.0, 0.0)).await;
    assert!(held.try_recv().is_err(), "a request with no time left reached the exporter");
}
