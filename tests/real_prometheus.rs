//! A real client: Debian's Prometheus server scrapes a fake exporter serving a real
//! windows_exporter scrape twice, once through the proxy and once directly, and its HTTP API
//! must show the proxied target up with exactly as many samples as the direct one.

mod support;

use std::process::Stdio;
use std::time::Duration;

use support::{FakeExporter, ProxyProcess, closed_port, within};
use tokio::process::Command;

/// Asks Prometheus's API for `query` and returns the value per `job`, if any.
async fn query(prometheus: std::net::SocketAddr, query: &str) -> Vec<(String, f64)> {
    let path = format!("/api/v1/query?query={}", query.replace('{', "%7B").replace('}', "%7D").replace('"', "%22"));
    let Ok(stream) = tokio::net::TcpStream::connect(prometheus).await else { return Vec::new() };
    let Ok((mut sender, connection)) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await
    else {
        return Vec::new();
    };
    tokio::spawn(connection);
    let request = http::Request::get(path)
        .header("host", prometheus.to_string())
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let Ok(response) = sender.send_request(request).await else { return Vec::new() };
    let Ok(body) = support::read_all(response).await else { return Vec::new() };
    let json: serde_json::Value = serde_json::from_slice(&body.body).unwrap_or_default();
    json["data"]["result"]
        .as_array()
        .map(|results| {
            results
                .iter()
                .map(|r| {
                    let job = r["metric"]["job"].as_str().unwrap_or_default().to_owned();
                    let value = r["value"][1].as_str().unwrap_or("NaN").parse().unwrap_or(f64::NAN);
                    (job, value)
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn prometheus_scrapes_through_the_proxy_the_same_samples_as_directly() {
    let sample = support::windows_sample();
    let exporter = FakeExporter::serving(sample, "text/plain; version=0.0.4; charset=utf-8").await;
    let proxy = ProxyProcess::start(&[("PROXY_HOSTIP", "127.0.0.1"), ("PROXY_PORT", &exporter.port())]).await;

    let dir = std::env::temp_dir().join(format!("wep-prometheus-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = [
        "global: {scrape_interval: 1s, scrape_timeout: 1s}".to_owned(),
        "scrape_configs:".to_owned(),
        format!("- {{job_name: proxy, static_configs: [{{targets: ['{}']}}]}}", proxy.addr),
        format!("- {{job_name: direct, static_configs: [{{targets: ['{}']}}]}}", exporter.addr),
    ]
    .join("\n");
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    let web: std::net::SocketAddr = format!("127.0.0.1:{}", closed_port()).parse().unwrap();
    let mut prometheus = Command::new("prometheus")
        .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address={web}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
        .kill_on_drop(true)
        .spawn()
        .expect("Debian's prometheus is installed (bash .ci/install)");

    // Poll the API (a socket) until both targets have been scraped at least once.
    let samples = within("Prometheus to scrape both targets", async {
        loop {
            if let Ok(Some(status)) = prometheus.try_wait() {
                let log = std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default();
                panic!("prometheus exited with {status}:\n{log}");
            }
            let samples = query(web, "scrape_samples_scraped").await;
            if samples.len() == 2 && samples.iter().all(|(_, v)| *v > 0.0) {
                return samples;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    let up = query(web, "up{job=\"proxy\"}").await;

    prometheus.kill().await.ok();
    std::fs::remove_dir_all(&dir).ok();
    let count = |job: &str| samples.iter().find(|(j, _)| j == job).map(|(_, v)| *v).unwrap();
    assert_eq!(up, vec![("proxy".to_owned(), 1.0)]);
    assert!(count("direct") > 3000.0, "the sample has thousands of series: {samples:?}");
    assert_eq!(count("proxy"), count("direct"), "{samples:?}");
}
