//! A real scraper with credentials: Debian's Prometheus scrapes the proxy with `basic_auth` and a
//! password file, and with a service-account-style token file on the `tokenreview` path (against
//! the fake API server of tests/support/kube_api.rs). Each right variant is up; each wrong one is
//! down with its reason in the targets API.
//!
//! Written before serving TLS reached this branch, so the proxy serves plain HTTP with
//! `PROXY_ALLOW_PLAINTEXT_CREDENTIALS=true`; the credentials and answers are the same as over
//! HTTPS (an HTTPS variant is still to do).

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use support::kube_api::{self, FakeKubeApi, Script};
use support::prometheus::Prometheus;
use support::{FakeExporter, ProxyProcess};

#[tokio::test]
async fn prometheus_with_basic_auth_and_token_files_is_up_and_wrong_credentials_are_down() {
    let exporter = FakeExporter::serving(Bytes::from_static(b"up 1\n"), "text/plain; version=0.0.4").await;
    let mut api = FakeKubeApi::start().await;
    let dir = api.pki.dir.join("prometheus");
    std::fs::create_dir_all(&dir).unwrap();

    let htpasswd = std::process::Command::new("htpasswd")
        .args(["-nbBC", "10", "prometheus", "scrape-password"])
        .output()
        .expect("run htpasswd (apache2-utils)");
    assert!(htpasswd.status.success());
    std::fs::write(dir.join("htpasswd"), &htpasswd.stdout).unwrap();
    for (name, content) in [
        ("password", "scrape-password\n"),
        ("wrong-password", "not-the-password\n"),
        ("token", Script::GOOD),
        ("denied-token", Script::DENIED),
        ("invalid-token", Script::INVALID),
        ("error-token", Script::ERROR),
    ] {
        std::fs::write(dir.join(name), content).unwrap();
    }

    let port = exporter.port();
    let htpasswd_file = dir.join("htpasswd").display().to_string();
    let mut vars: Vec<(&str, String)> = vec![
        ("PROXY_HOSTIP", "127.0.0.1".into()),
        ("PROXY_PORT", port),
        ("PROXY_AUTH", "basic,tokenreview".into()),
        ("PROXY_BASIC_AUTH_FILE", htpasswd_file),
        ("PROXY_ALLOW_PLAINTEXT_CREDENTIALS", "true".into()),
    ];
    vars.extend(api.vars());
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let proxy = ProxyProcess::start(&vars).await;

    let file = |name: &str| dir.join(name).display().to_string();
    let target = proxy.addr;
    let jobs = [
        format!(
            "- {{job_name: basic, basic_auth: {{username: prometheus, password_file: '{}'}}, static_configs: [{{targets: ['{target}']}}]}}",
            file("password")
        ),
        format!(
            "- {{job_name: basic-wrong-password, basic_auth: {{username: prometheus, password_file: '{}'}}, static_configs: [{{targets: ['{target}']}}]}}",
            file("wrong-password")
        ),
        format!(
            "- {{job_name: basic-unknown-user, basic_auth: {{username: grafana, password_file: '{}'}}, static_configs: [{{targets: ['{target}']}}]}}",
            file("password")
        ),
        format!("- {{job_name: no-credentials, static_configs: [{{targets: ['{target}']}}]}}"),
        // kube-prometheus' ServiceMonitor bearerTokenFile renders as bearer_token_file.
        format!(
            "- {{job_name: token, bearer_token_file: '{}', static_configs: [{{targets: ['{target}']}}]}}",
            file("token")
        ),
        format!(
            "- {{job_name: token-denied, authorization: {{credentials_file: '{}'}}, static_configs: [{{targets: ['{target}']}}]}}",
            file("denied-token")
        ),
        format!(
            "- {{job_name: token-invalid, authorization: {{credentials_file: '{}'}}, static_configs: [{{targets: ['{target}']}}]}}",
            file("invalid-token")
        ),
        format!(
            "- {{job_name: token-api-error, authorization: {{credentials_file: '{}'}}, static_configs: [{{targets: ['{target}']}}]}}",
            file("error-token")
        ),
        format!(
            "- {{job_name: own-metrics, metrics_path: /proxy/metrics, bearer_token_file: '{}', static_configs: [{{targets: ['{target}']}}]}}",
            file("token")
        ),
    ];
    let config = format!("global: {{scrape_interval: 1s, scrape_timeout: 1s}}\nscrape_configs:\n{}\n", jobs.join("\n"));
    let mut prometheus = Prometheus::start("auth", &config);

    let expected: BTreeMap<&str, (&str, &str)> = BTreeMap::from([
        ("basic", ("up", "")),
        ("basic-wrong-password", ("down", "401 Unauthorized")),
        ("basic-unknown-user", ("down", "401 Unauthorized")),
        ("no-credentials", ("down", "401 Unauthorized")),
        ("token", ("up", "")),
        ("token-denied", ("down", "403 Forbidden")),
        ("token-invalid", ("down", "401 Unauthorized")),
        ("token-api-error", ("down", "503 Service Unavailable")),
        ("own-metrics", ("up", "")),
    ]);
    let deadline = tokio::time::Instant::now() + support::WAIT;
    let seen = loop {
        let now = prometheus.targets().await;
        let done = now.len() == expected.len()
            && expected
                .iter()
                .all(|(job, (health, reason))| now.get(*job).is_some_and(|(h, e)| h == health && e.contains(reason)));
        if done || tokio::time::Instant::now() > deadline {
            break now;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    drop(prometheus);
    for (job, (health, reason)) in &expected {
        let (h, e) = seen.get(*job).unwrap_or_else(|| panic!("{job} missing from the targets: {seen:?}"));
        assert_eq!(h, health, "{job}: {e}");
        assert!(e.contains(reason), "{job}: {e:?} lacks {reason:?}");
    }
    // Reviews were cached: Prometheus scraped two jobs with the good token every second, and
    // the API server reviewed that token once.
    let good = api
        .pending_reviews()
        .into_iter()
        .filter(|r| matches!(r, kube_api::Review::Token { review, .. } if review.spec.token.as_deref() == Some(Script::GOOD)))
        .count();
    assert_eq!(good, 1, "TokenReviews of the good token");
}
