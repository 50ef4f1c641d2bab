//! A real scraper over HTTPS: Debian's Prometheus scrapes the proxy with `scheme: https`, once
//! trusting the CA with `server_name`, once also presenting a client certificate, and in each
//! wrong way an operator could configure it. The targets API must show the right ones up and each
//! wrong one down with its reason, as an operator would read it in the targets page.
// Not on Windows: runs Debian's prometheus, with certificates from the openssl CLI
// (see .github/workflows/ci.yml).
#![cfg(unix)]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use support::certificates::{Leaf, Pki};
use support::prometheus::Prometheus;
use support::{FakeExporter, ProxyProcess, within};

/// Each job's target health and last error, once every target has been scraped at least once.
async fn scraped_targets(prometheus: &mut Prometheus, jobs: usize) -> Option<BTreeMap<String, (String, String)>> {
    let seen = prometheus.targets().await;
    (seen.len() == jobs && seen.values().all(|(health, _)| health != "unknown")).then_some(seen)
}

#[tokio::test]
async fn prometheus_scrapes_over_https_and_says_why_each_wrong_setting_fails() {
    let pki = Pki::new("prometheus");
    let server = pki.issue("server", &Leaf::server(0x81));
    let scraper = pki.issue("prometheus", &Leaf::client("prometheus", 0x82));
    let stranger = Pki::new("stranger");
    let impostor = stranger.issue("impostor", &Leaf::client("prometheus", 0x83));

    let exporter = FakeExporter::serving(support::windows_sample(), "text/plain; version=0.0.4; charset=utf-8").await;
    let proxy = ProxyProcess::start(&[
        ("PROXY_HOSTIP", "127.0.0.1"),
        ("PROXY_PORT", &exporter.port()),
        ("PROXY_TLS_CERT_FILE", server.chain.to_str().unwrap()),
        ("PROXY_TLS_KEY_FILE", server.key.to_str().unwrap()),
        ("PROXY_CLIENT_CA_FILE", pki.ca.to_str().unwrap()),
    ])
    .await;

    let (ca, other_ca) = (pki.ca.display(), stranger.ca.display());
    let (cert, key) = (scraper.chain.display(), scraper.key.display());
    let (bad_cert, bad_key) = (impostor.chain.display(), impostor.key.display());
    let target = proxy.addr;
    let job = |name: &str, scheme: &str, tls: String| {
        format!(
            "- {{job_name: {name}, scheme: {scheme}, tls_config: {{{tls}}}, static_configs: [{{targets: ['{target}']}}]}}"
        )
    };
    let jobs = [
        job("ca_and_server_name", "https", format!("ca_file: '{ca}', server_name: proxy.test")),
        job(
            "client_certificate",
            "https",
            format!("ca_file: '{ca}', server_name: proxy.test, cert_file: '{cert}', key_file: '{key}'"),
        ),
        job("unknown_ca", "https", format!("ca_file: '{other_ca}', server_name: proxy.test")),
        job("wrong_server_name", "https", format!("ca_file: '{ca}', server_name: wrong.test")),
        job(
            "untrusted_client_certificate",
            "https",
            format!("ca_file: '{ca}', server_name: proxy.test, cert_file: '{bad_cert}', key_file: '{bad_key}'"),
        ),
        job("plain_http", "http", String::new()),
    ];
    let config = format!("global: {{scrape_interval: 1s, scrape_timeout: 1s}}\nscrape_configs:\n{}\n", jobs.join("\n"));
    let mut prometheus = Prometheus::start("tls", &config);

    let targets = within("Prometheus to scrape every target once", async {
        loop {
            if let Some(targets) = scraped_targets(&mut prometheus, jobs.len()).await {
                return targets;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    drop(prometheus);

    let health = |job: &str| targets.get(job).unwrap_or_else(|| panic!("no target for {job}: {targets:?}"));
    for job in ["ca_and_server_name", "client_certificate"] {
        assert_eq!(health(job).0, "up", "{job}: {:?}", health(job));
    }
    // Go's crypto/tls words, as the targets page shows them.
    for (job, reason) in [
        ("unknown_ca", "certificate signed by unknown authority"),
        ("wrong_server_name", "certificate is valid for proxy.test"),
        ("untrusted_client_certificate", "remote error: tls:"),
        ("plain_http", "server returned HTTP status 400 Bad Request"),
    ] {
        let (state, error) = health(job);
        assert_eq!(state, "down", "{job}: {error}");
        assert!(error.contains(reason), "{job}: expected {reason:?} in {error:?}");
    }
}
