//! A real client: Debian's Prometheus server scrapes a fake exporter serving a real
//! windows_exporter scrape twice, once through the proxy and once directly, and its HTTP API
//! must show the proxied target up with exactly as many samples as the direct one.
// Not on Windows: runs Debian's prometheus (see .github/workflows/ci.yml).
#![cfg(unix)]

mod support;

use std::time::Duration;

use support::prometheus::Prometheus;
use support::{FakeExporter, ProxyProcess, within};

#[tokio::test]
async fn prometheus_scrapes_through_the_proxy_the_same_samples_as_directly() {
    let sample = support::windows_sample();
    let exporter = FakeExporter::serving(sample, "text/plain; version=0.0.4; charset=utf-8").await;
    let proxy = ProxyProcess::start(&[("PROXY_HOSTIP", "127.0.0.1"), ("PROXY_PORT", &exporter.port())]).await;

    let config = [
        "global: {scrape_interval: 1s, scrape_timeout: 1s}".to_owned(),
        "scrape_configs:".to_owned(),
        format!("- {{job_name: proxy, static_configs: [{{targets: ['{}']}}]}}", proxy.addr),
        format!("- {{job_name: direct, static_configs: [{{targets: ['{}']}}]}}", exporter.addr),
    ]
    .join("\n");
    let mut prometheus = Prometheus::start("passthrough", &config);

    // Poll the API (a socket) until both targets have been scraped at least once.
    let samples = within("Prometheus to scrape both targets", async {
        loop {
            let samples = prometheus.query("scrape_samples_scraped").await;
            if samples.len() == 2 && samples.iter().all(|(_, v)| *v > 0.0) {
                return samples;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    let up = prometheus.query("up{job=\"proxy\"}").await;
    drop(prometheus);
    let count = |job: &str| samples.iter().find(|(j, _)| j == job).map(|(_, v)| *v).unwrap();
    assert_eq!(up, vec![("proxy".to_owned(), 1.0)]);
    assert!(count("direct") > 3000.0, "the sample has thousands of series: {samples:?}");
    assert_eq!(count("proxy"), count("direct"), "{samples:?}");
}
