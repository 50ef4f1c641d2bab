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

/// The slow path as the chart's monitors scrape it: one job label, `/metrics` and `/metrics/slow`
/// told apart by `metrics_path`, the slow endpoint on a longer interval and timeout, and the
/// monitors' sample and label limits. Both targets are up, and each route's samples come from its
/// own collectors only.
#[tokio::test]
async fn prometheus_scrapes_both_routes_each_with_its_own_collectors() {
    use support::collecting_exporter::{CollectingExporter, Slow};
    let enabled = ["cpu", "logical_disk", "memory", "os", "process", "service"];
    let exporter =
        CollectingExporter::start(&enabled, &["process", "service"], Slow::Take(Duration::from_millis(200))).await;
    let proxy = ProxyProcess::start(&[
        ("PROXY_HOSTIP", "127.0.0.1"),
        ("PROXY_PORT", &exporter.port()),
        ("PROXY_SLOW_COLLECT", "process,service"),
    ])
    .await;

    let job = |name: &str, path: &str, timing: &str| {
        [
            format!("- job_name: {name}"),
            format!("  metrics_path: {path}"),
            format!("  {timing}"),
            "  sample_limit: 50000".to_owned(),
            "  label_limit: 30".to_owned(),
            format!("  static_configs: [{{targets: ['{}']}}]", proxy.addr),
            "  relabel_configs:".to_owned(),
            "  - {target_label: job, replacement: windows-exporter-proxy}".to_owned(),
            "  - {source_labels: [__metrics_path__], target_label: metrics_path}".to_owned(),
        ]
        .join("\n")
    };
    let config = [
        "global: {scrape_interval: 1s, scrape_timeout: 1s}".to_owned(),
        "scrape_configs:".to_owned(),
        job("fast", "/metrics", "scrape_interval: 1s"),
        // The monitors' 120 s / 60 s, scaled down.
        job("slow", "/metrics/slow", "scrape_interval: 2s\n  scrape_timeout: 2s"),
    ]
    .join("\n");
    let mut prometheus = Prometheus::start("slow-path", &config);

    let series = |json: &serde_json::Value| -> Vec<(String, String, String)> {
        json["data"]["result"]
            .as_array()
            .map(|results| {
                results
                    .iter()
                    .map(|r| {
                        let label = |name: &str| r["metric"][name].as_str().unwrap_or_default().to_owned();
                        (
                            label("__name__"),
                            label("metrics_path"),
                            r["value"][1].as_str().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let query = "/api/v1/query?query=%7B__name__%3D~%22up%7Cwindows_.%2B_sample%22%7D";
    let found = within("Prometheus to scrape both routes", async {
        loop {
            if let Some(json) = prometheus.api(query).await {
                let found = series(&json);
                if found.iter().filter(|(name, ..)| name == "up").count() == 2 && found.len() == 2 + enabled.len() {
                    return found;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    drop(prometheus);
    let mut by_path: Vec<(String, String)> =
        found.iter().filter(|(name, ..)| name != "up").map(|(name, path, _)| (name.clone(), path.clone())).collect();
    by_path.sort();
    let expected: Vec<(String, String)> = [
        ("windows_cpu_sample", "/metrics"),
        ("windows_logical_disk_sample", "/metrics"),
        ("windows_memory_sample", "/metrics"),
        ("windows_os_sample", "/metrics"),
        ("windows_process_sample", "/metrics/slow"),
        ("windows_service_sample", "/metrics/slow"),
    ]
    .iter()
    .map(|(n, p)| (n.to_string(), p.to_string()))
    .collect();
    assert_eq!(by_path, expected, "{found:?}");
    for (name, path, value) in &found {
        if name == "up" {
            assert_eq!(value, "1", "up{{metrics_path={path:?}}}");
        }
    }
}
