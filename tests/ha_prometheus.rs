//! A real HA pair: two Debian Prometheus servers (different `external_labels`, the same scrape
//! config) scrape one proxy in front of a fake exporter that serialises collections the way
//! windows_exporter v0.31+ does: one at a time behind a process-wide lock, each taking
//! [`COLLECTION`], and run to the end even when the scraper has gone (as Go's collectors do).
//!
//! With coalescing on, both servers are served by one collection per interval, every scrape is
//! up and the proxy answers no 504. With `PROXY_COALESCE=false`, the same run needs two
//! collections per interval, which the serialised exporter cannot do in time: the contrast the
//! feature exists for. The counts are exact figures from the proxy's own metrics and the
//! exporter (not timings); the printed report (`--nocapture`) also shows collections per interval
//! and each server's scrape durations.
//!
//! Prometheus requires `scrape_timeout <= scrape_interval`, so with collections of a second or
//! more the interval is 2 s (timeout 2 s, the proxy's budget 1.75 s with a 0.25 s margin): one
//! 1.2 s collection fits, two in a row do not. Collections longer than half the interval also
//! mean the two servers' scrapes always overlap, whatever offsets Prometheus gives them.
// Not on Windows: runs Debian's prometheus (see .github/workflows/ci.yml).
#![cfg(unix)]

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::StatusCode;
use support::prometheus::Prometheus;
use support::{Client, FakeExporter, ProxyProcess, metric, own_metrics, reply, within_for};

/// How long one collection holds the exporter's lock.
const COLLECTION: Duration = Duration::from_millis(1200);
const INTERVAL_S: u64 = 2;
/// Scrapes each server makes in a run before it is measured.
const SCRAPES_EACH: f64 = 8.0;

/// The serialising exporter: collections started so far, and the exporter itself.
async fn serialising_exporter() -> (FakeExporter, Arc<AtomicUsize>) {
    let collections = Arc::new(AtomicUsize::new(0));
    let lock = Arc::new(tokio::sync::Mutex::new(()));
    let count = collections.clone();
    let sample = support::windows_sample();
    let exporter = FakeExporter::start(move |_| {
        let (lock, count, sample) = (lock.clone(), count.clone(), sample.clone());
        async move {
            // The collection is a task of its own: like windows_exporter's collectors it runs to
            // its end and holds the lock throughout, whether or not the scraper still waits.
            let collection = tokio::spawn(async move {
                let _lock = lock.lock_owned().await;
                count.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(COLLECTION).await;
                sample
            });
            let body = collection.await.expect("the collection task completes");
            reply(StatusCode::OK, &[("content-type", "text/plain; version=0.0.4; charset=utf-8")], body)
        }
    })
    .await;
    (exporter, collections)
}

/// One Prometheus of the pair, with its replica label.
struct Replica {
    prometheus: Prometheus,
}

impl Replica {
    fn start(replica: &'static str, target: SocketAddr, run: &str) -> Replica {
        let config = format!(
            "global: {{scrape_interval: {INTERVAL_S}s, scrape_timeout: {INTERVAL_S}s, external_labels: {{replica: {replica}}}}}\n\
             scrape_configs:\n- {{job_name: windows, static_configs: [{{targets: ['{target}']}}]}}\n"
        );
        Replica { prometheus: Prometheus::start(&format!("ha-{run}-{replica}"), &config) }
    }

    /// The first value of an instant query, if there is one yet.
    async fn value(&mut self, query: &str) -> Option<f64> {
        self.prometheus.query(query).await.first().map(|(_, value)| *value)
    }
}

/// What one run saw.
#[derive(Debug)]
struct Run {
    scrapes: f64,
    collections: usize,
    exporter_requests: f64,
    coalesced: f64,
    timeouts_504: f64,
    up: [f64; 2],
    up_samples: [f64; 2],
    max_duration_s: [f64; 2],
}

async fn run(coalesce: &str) -> Run {
    let (exporter, collections) = serialising_exporter().await;
    let proxy = ProxyProcess::start(&[
        ("PROXY_HOSTIP", "127.0.0.1"),
        ("PROXY_PORT", &exporter.port()),
        ("PROXY_COALESCE", coalesce),
        // Budget 1.75 s of Prometheus's 2 s: room for one 1.2 s collection on a busy machine.
        ("PROXY_TIMEOUT_MARGIN_SECONDS", "0.25"),
    ])
    .await;
    let mut servers = [Replica::start("a", proxy.addr, coalesce), Replica::start("b", proxy.addr, coalesce)];

    // Wait (on Prometheus's API) until both have made SCRAPES_EACH scrapes of the target.
    let limit = Duration::from_secs(INTERVAL_S * (SCRAPES_EACH as u64 + 10));
    within_for(limit, "both servers to make their scrapes", async {
        loop {
            let mut done = true;
            for server in &mut servers {
                let made = server.value("count_over_time(up{job=\"windows\"}[5m])").await.unwrap_or(0.0);
                done &= made >= SCRAPES_EACH;
            }
            if done {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
    .await;
    let metrics = own_metrics(&mut Client::connect(proxy.addr).await).await;
    let mut up = [0.0; 2];
    let mut up_samples = [0.0; 2];
    let mut max_duration_s = [0.0; 2];
    for (i, server) in servers.iter_mut().enumerate() {
        up[i] = server.value("sum_over_time(up{job=\"windows\"}[5m])").await.unwrap_or(f64::NAN);
        up_samples[i] = server.value("count_over_time(up{job=\"windows\"}[5m])").await.unwrap_or(f64::NAN);
        max_duration_s[i] =
            server.value("max_over_time(scrape_duration_seconds{job=\"windows\"}[5m])").await.unwrap_or(f64::NAN);
    }
    let scrapes: f64 =
        metrics.iter().filter(|(k, _)| k.starts_with("windows_exporter_proxy_scrapes_total{")).map(|(_, v)| v).sum();
    Run {
        scrapes,
        collections: collections.load(Ordering::SeqCst),
        exporter_requests: metric(&metrics, "windows_exporter_proxy_exporter_requests_total{route=\"/metrics\"}"),
        coalesced: metric(&metrics, "windows_exporter_proxy_coalesced_scrapes_total{route=\"/metrics\"}"),
        timeouts_504: metric(
            &metrics,
            "windows_exporter_proxy_scrapes_total{outcome=\"timeout\",status=\"504\",route=\"/metrics\"}",
        ),
        up,
        up_samples,
        max_duration_s,
    }
}

fn report(name: &str, run: &Run) {
    let intervals = run.up_samples[0].max(run.up_samples[1]);
    println!(
        "{name}: {} collections for {} scrapes by 2 servers over ~{intervals} intervals = {:.2} collections per interval; \
         exporter requests {}, coalesced {}, 504s {}; up {}/{} (a) {}/{} (b); max scrape duration {:.2} s (a) {:.2} s (b)",
        run.collections,
        run.scrapes,
        run.collections as f64 / intervals,
        run.exporter_requests,
        run.coalesced,
        run.timeouts_504,
        run.up[0],
        run.up_samples[0],
        run.up[1],
        run.up_samples[1],
        run.max_duration_s[0],
        run.max_duration_s[1],
    );
}

#[tokio::test]
async fn an_ha_pair_is_served_by_one_collection_per_interval() {
    let on = run("true").await;
    report("PROXY_COALESCE=true ", &on);
    let off = run("false").await;
    report("PROXY_COALESCE=false", &off);

    // Coalescing on: every scrape of both servers up, no 504, and the scrapes of one interval
    // served by one exporter request (each one coalesced scrape per request, give or take the
    // first and last interval).
    assert_eq!(on.up, on.up_samples, "every scrape of both servers is up: {on:?}");
    assert_eq!(on.timeouts_504, 0.0, "{on:?}");
    assert!(on.exporter_requests <= on.scrapes / 2.0 + 2.0, "one exporter request serves both servers: {on:?}");
    assert_eq!(on.exporter_requests + on.coalesced, on.scrapes, "{on:?}");
    assert!((on.collections as f64) <= on.exporter_requests + 1.0, "{on:?}");

    // Coalescing off: every scrape is its own exporter request and collection.
    assert_eq!(off.coalesced, 0.0, "{off:?}");
    assert!(off.exporter_requests >= off.scrapes - 2.0, "{off:?}");
    assert!(off.collections as f64 > on.collections as f64 * 1.3, "off needs more collections: {on:?} {off:?}");
}
