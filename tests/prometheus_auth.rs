//! A real scraper with credentials over HTTPS: Debian's Prometheus 2.42 scrapes the proxy with
//! `scheme: https` and `tls_config: {ca_file, server_name}` (a CA made for the test with the
//! openssl CLI), and with each kind of credential a ServiceMonitor can give it: `basic_auth` with
//! a `password_file`; a service-account-style token file (`bearer_token_file`, what
//! kube-prometheus' `bearerTokenFile` renders to, and `authorization.credentials_file`) on the
//! `tokenreview` path against the fake API server of tests/support/kube_api.rs; and a client
//! certificate (`tls_config.cert_file`/`key_file`). One proxy has
//! `PROXY_AUTH=client-cert,basic,tokenreview` and `PROXY_CLIENT_ALLOWED_NAMES`, as an operator
//! offering every kind of scraper a way in would configure it.
//!
//! Each right variant is up; each wrong one is down with its reason in the targets API, as the
//! operator would read it on the targets page. The token reviews are cached: the good token,
//! scraped by several jobs every second, is reviewed once.
// Not on Windows: runs Debian's prometheus, with certificates from the openssl CLI and
// htpasswd files (see .github/workflows/ci.yml).
#![cfg(unix)]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use support::certificates::{Leaf, Pki};
use support::kube_api::{FakeKubeApi, Review, Script};
use support::prometheus::Prometheus;
use support::{FakeExporter, ProxyProcess};

#[tokio::test]
async fn prometheus_over_https_with_each_credential_is_up_and_each_wrong_one_is_down() {
    let exporter = FakeExporter::serving(Bytes::from_static(b"up 1\n"), "text/plain; version=0.0.4").await;
    let mut api = FakeKubeApi::start().await;
    let pki = Pki::new("prometheus-auth");
    let server = pki.issue("server", &Leaf::server(0x300));
    let allowed = pki.issue("prometheus", &Leaf::client("prometheus.monitoring.svc", 0x301));
    let not_allowed = pki.issue("grafana", &Leaf::client("grafana.monitoring.svc", 0x302));

    let htpasswd = std::process::Command::new("htpasswd")
        .args(["-nbBC", "10", "prometheus", "scrape-password"])
        .output()
        .expect("run htpasswd (apache2-utils)");
    assert!(htpasswd.status.success());
    std::fs::write(pki.path("htpasswd"), &htpasswd.stdout).unwrap();
    for (name, content) in [
        ("password", "scrape-password\n"),
        ("wrong-password", "not-the-password\n"),
        ("token", Script::GOOD),
        ("denied-token", Script::DENIED),
        ("invalid-token", Script::INVALID),
        ("error-token", Script::ERROR),
    ] {
        std::fs::write(pki.path(name), content).unwrap();
    }
    let file = |name: &str| pki.path(name).display().to_string();

    let port = exporter.port();
    let mut vars: Vec<(&str, String)> = vec![
        ("PROXY_HOSTIP", "127.0.0.1".into()),
        ("PROXY_PORT", port),
        ("PROXY_TLS_CERT_FILE", server.chain.display().to_string()),
        ("PROXY_TLS_KEY_FILE", server.key.display().to_string()),
        ("PROXY_AUTH", "client-cert,basic,tokenreview".into()),
        ("PROXY_CLIENT_CA_FILE", pki.ca.display().to_string()),
        ("PROXY_CLIENT_ALLOWED_NAMES", "prometheus.monitoring.svc".into()),
        ("PROXY_BASIC_AUTH_FILE", file("htpasswd")),
    ];
    vars.extend(api.vars());
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let proxy = ProxyProcess::start(&vars).await;

    let target = proxy.addr;
    let ca = pki.ca.display();
    // `tls` is added to tls_config, `credentials` to the job.
    let job = |name: &str, path: &str, tls: String, credentials: String| {
        format!(
            "- {{job_name: {name}, scheme: https, metrics_path: {path}, \
             tls_config: {{ca_file: '{ca}', server_name: proxy.test{tls}}}, {credentials}\
             static_configs: [{{targets: ['{target}']}}]}}"
        )
    };
    let basic =
        |user: &str, password: &str| format!("basic_auth: {{username: {user}, password_file: '{}'}}, ", file(password));
    let bearer_token_file = |token: &str| format!("bearer_token_file: '{}', ", file(token));
    let credentials_file = |token: &str| format!("authorization: {{credentials_file: '{}'}}, ", file(token));
    let certificate = |issued: &support::certificates::Issued| {
        format!(", cert_file: '{}', key_file: '{}'", issued.chain.display(), issued.key.display())
    };
    let none = String::new;
    let jobs = [
        job("basic", "/metrics", none(), basic("prometheus", "password")),
        job("basic-wrong-password", "/metrics", none(), basic("prometheus", "wrong-password")),
        job("basic-unknown-user", "/metrics", none(), basic("grafana", "password")),
        job("no-credentials", "/metrics", none(), none()),
        // kube-prometheus' ServiceMonitor bearerTokenFile renders as bearer_token_file.
        job("token", "/metrics", none(), bearer_token_file("token")),
        job("token-authorization", "/metrics", none(), credentials_file("token")),
        job("token-denied", "/metrics", none(), credentials_file("denied-token")),
        job("token-invalid", "/metrics", none(), credentials_file("invalid-token")),
        job("token-api-error", "/metrics", none(), credentials_file("error-token")),
        job("own-metrics", "/proxy/metrics", none(), bearer_token_file("token")),
        job("client-certificate", "/metrics", certificate(&allowed), none()),
        job("client-certificate-not-allowed", "/metrics", certificate(&not_allowed), none()),
    ];
    let config = format!("global: {{scrape_interval: 1s, scrape_timeout: 1s}}\nscrape_configs:\n{}\n", jobs.join("\n"));
    let mut prometheus = Prometheus::start("auth", &config);

    let expected: BTreeMap<&str, (&str, &str)> = BTreeMap::from([
        ("basic", ("up", "")),
        ("basic-wrong-password", ("down", "401 Unauthorized")),
        ("basic-unknown-user", ("down", "401 Unauthorized")),
        ("no-credentials", ("down", "401 Unauthorized")),
        ("token", ("up", "")),
        ("token-authorization", ("up", "")),
        ("token-denied", ("down", "403 Forbidden")),
        ("token-invalid", ("down", "401 Unauthorized")),
        ("token-api-error", ("down", "503 Service Unavailable")),
        ("own-metrics", ("up", "")),
        ("client-certificate", ("up", "")),
        ("client-certificate-not-allowed", ("down", "403 Forbidden")),
    ]);
    let matches = |seen: &BTreeMap<String, (String, String)>| {
        seen.len() == expected.len()
            && expected
                .iter()
                .all(|(job, (health, reason))| seen.get(*job).is_some_and(|(h, e)| h == health && e.contains(reason)))
    };
    // Polls the targets API until every target shows what is expected; after support::WAIT, fails
    // with what the targets API showed last.
    let deadline = tokio::time::Instant::now() + support::WAIT;
    let mut seen = BTreeMap::new();
    while !matches(&seen) {
        if tokio::time::Instant::now() > deadline {
            panic!(
                "after {:?} the targets API shows (job: health, last error)\n{seen:#?}\nexpected (job: health, error contains)\n{expected:#?}",
                support::WAIT
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        seen = prometheus.targets().await;
    }
    drop(prometheus);

    // Reviews were cached: Prometheus scraped three jobs with the good token every second, and
    // the API server reviewed that token once.
    let good = api
        .pending_reviews()
        .into_iter()
        .filter(|r| matches!(r, Review::Token { review, .. } if review.spec.token.as_deref() == Some(Script::GOOD)))
        .count();
    assert_eq!(good, 1, "TokenReviews of the good token");
}
