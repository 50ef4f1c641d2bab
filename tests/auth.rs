//! Who may scrape, black-box: the real binary with `PROXY_AUTH`, a fake exporter, and for
//! `tokenreview` a fake Kubernetes API server over TLS (tests/support/kube_api.rs) whose request
//! and answer bodies are k8s-openapi's own types.
//!
//! Most tests here serve plain HTTP with `PROXY_ALLOW_PLAINTEXT_CREDENTIALS=true` (what that
//! setting allows and warns about is tested too): what `basic` and `tokenreview` decide does not
//! depend on the transport. Over HTTPS, the last test here shows that no credential the proxy
//! checked reaches the exporter in any mode; `client-cert` end to end is tests/client_cert_auth.rs,
//! and a real Prometheus with each kind of credential is tests/prometheus_auth.rs.

// Most tests need Debian tools and are `cfg(unix)`; on Windows the helpers only they use are unused.
#![cfg_attr(not(unix), allow(dead_code, unused_imports))]

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;
use support::kube_api::{FakeKubeApi, OTHER_USER, PROMETHEUS_USER, Review, Script};
use support::{Client, FakeExporter, ProxyProcess, Scraped, metric, run_to_exit};

const PLAIN: &str = "# HELP up\nup 1\n";

async fn exporter() -> FakeExporter {
    FakeExporter::serving(Bytes::from_static(PLAIN.as_bytes()), "text/plain; version=0.0.4").await
}

async fn scrape(proxy: &ProxyProcess, path: &str, token: Option<&str>) -> Scraped {
    let authorization = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = authorization.iter().map(|a| ("authorization", a.as_str())).collect();
    Client::connect(proxy.addr).await.get(path, &headers).await
}

/// The proxy's own metrics, read with a credential `PROXY_AUTH` accepts.
async fn own_metrics_with(client: &mut Client, headers: &[(&str, &str)]) -> std::collections::HashMap<String, f64> {
    let scraped = client.get("/proxy/metrics", headers).await;
    assert_eq!(scraped.status, StatusCode::OK, "/proxy/metrics: {}", scraped.text());
    support::parse_metrics(&scraped.text())
}

fn token_review(review: Review) -> (k8s_openapi::api::authentication::v1::TokenReview, String) {
    match review {
        Review::Token { review, proxy_token } => (review, proxy_token),
        other => panic!("expected a TokenReview, got {other:?}"),
    }
}

fn access_review(review: Review) -> (k8s_openapi::api::authorization::v1::SubjectAccessReview, String) {
    match review {
        Review::Access { review, proxy_token } => (review, proxy_token),
        other => panic!("expected a SubjectAccessReview, got {other:?}"),
    }
}

#[cfg(unix)] // openssl CLI, htpasswd: Debian tools, not on Windows (.github/workflows/ci.yml)
#[tokio::test]
async fn an_allowed_token_scrapes_and_the_exporter_never_sees_it() {
    let mut exporter = exporter().await;
    let mut api = FakeKubeApi::start().await;
    let proxy = api.proxy(&exporter, &[]).await;

    let scraped = scrape(&proxy, "/metrics", Some(Script::GOOD)).await;
    assert_eq!(scraped.status, StatusCode::OK, "{}", scraped.text());
    assert_eq!(scraped.text(), PLAIN);

    let (review, proxy_token) = token_review(api.next_review().await);
    assert_eq!(proxy_token, "proxy-sa-token-1", "the proxy authenticates with its own token");
    assert_eq!(review.spec.token.as_deref(), Some(Script::GOOD));
    assert_eq!(review.spec.audiences, None, "no audiences unless PROXY_TOKENREVIEW_AUDIENCES");
    let (access, proxy_token) = access_review(api.next_review().await);
    assert_eq!(proxy_token, "proxy-sa-token-1");
    assert_eq!(access.spec.user.as_deref(), Some(PROMETHEUS_USER));
    assert_eq!(access.spec.uid.as_deref(), Some(format!("uid-of-{PROMETHEUS_USER}").as_str()));
    assert_eq!(
        access.spec.groups.as_deref(),
        Some(&["system:serviceaccounts".to_string(), "system:authenticated".to_string()][..])
    );
    assert!(access.spec.extra.as_ref().is_some_and(|e| e.contains_key("authentication.kubernetes.io/pod-name")));
    let attributes = access.spec.non_resource_attributes.expect("a non-resource review");
    assert_eq!((attributes.path.as_deref(), attributes.verb.as_deref()), (Some("/metrics"), Some("get")));
    assert!(access.spec.resource_attributes.is_none());

    let seen = exporter.next_request().await;
    assert!(seen.headers.get("authorization").is_none(), "the checked token reached the exporter: {seen:?}");
}

#[cfg(unix)] // openssl CLI, htpasswd: Debian tools, not on Windows (.github/workflows/ci.yml)
#[tokio::test]
async fn each_refusal_has_its_status_and_none_reaches_the_exporter() {
    let mut exporter = exporter().await;
    let api = FakeKubeApi::start().await;
    let mut proxy = api.proxy(&exporter, &[]).await;

    let none = scrape(&proxy, "/metrics", None).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert_eq!(none.headers["www-authenticate"], "Bearer realm=\"windows-exporter-proxy\"");

    let invalid = scrape(&proxy, "/metrics", Some(Script::INVALID)).await;
    assert_eq!(invalid.status, StatusCode::UNAUTHORIZED);
    assert!(invalid.headers.contains_key("www-authenticate"));

    let denied = scrape(&proxy, "/metrics", Some(Script::DENIED)).await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN, "{}", denied.text());
    assert!(denied.text().contains(OTHER_USER), "{}", denied.text());

    let failed = scrape(&proxy, "/metrics", Some(Script::ERROR)).await;
    assert_eq!(failed.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(!failed.text().contains("etcdserver"), "the cause is for the log only: {}", failed.text());
    let logged =
        proxy.wait_for_log("the 503's cause", |l| l["error"].as_str().is_some_and(|e| e.contains("etcdserver"))).await;
    assert_eq!(logged["level"], "WARN");

    let basic = Client::connect(proxy.addr).await.get("/metrics", &[("authorization", "Basic dTpw")]).await;
    assert_eq!(basic.status, StatusCode::UNAUTHORIZED, "basic is not listed");

    assert!(exporter.pending_requests().is_empty(), "a refused scrape reached the exporter");
    assert_eq!(exporter.connections(), 0);

    let mut client = Client::connect(proxy.addr).await;
    let protected = client.get("/proxy/metrics", &[]).await;
    assert_eq!(protected.status, StatusCode::UNAUTHORIZED, "/proxy/metrics is protected too");
    let authorization = format!("Bearer {}", Script::GOOD);
    let own = client.get("/proxy/metrics", &[("authorization", &authorization)]).await;
    assert_eq!(own.status, StatusCode::OK);
    let text = own.text();
    for (outcome, count) in [("unauthenticated", 1), ("forbidden", 1), ("unavailable", 1), ("allowed", 1)] {
        let line = format!(
            "windows_exporter_proxy_auth_decisions_total{{method=\"tokenreview\",outcome=\"{outcome}\"}} {count}"
        );
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }
    let none_line = "windows_exporter_proxy_auth_decisions_total{method=\"none\",outcome=\"unauthenticated\"} 3";
    assert!(text.lines().any(|l| l == none_line), "missing {none_line:?} in\n{text}");
}

#[cfg(unix)] // openssl CLI, htpasswd: Debian tools, not on Windows (.github/workflows/ci.yml)
#[tokio::test]
async fn a_hung_api_server_gives_503_within_the_review_timeout() {
    let exporter = exporter().await;
    let api = FakeKubeApi::start().await;
    let mut proxy = api.proxy(&exporter, &[]).await;
    let started = Instant::now();
    let hung = scrape(&proxy, "/metrics", Some(Script::HANG)).await;
    assert_eq!(hung.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(started.elapsed() < Duration::from_secs(9), "took {:?}", started.elapsed());
    proxy
        .wait_for_log("the timeout's cause", |l| {
            l["error"].as_str().is_some_and(|e| e.contains("no answer from the API server"))
        })
        .await;
}

#[cfg(unix)] // openssl CLI, htpasswd: Debian tools, not on Windows (.github/workflows/ci.yml)
#[tokio::test]
async fn outcomes_are_cached_and_errors_are_not() {
    let exporter = exporter().await;
    let api = FakeKubeApi::start().await;
    let proxy = api.proxy(&exporter, &[]).await;

    for _ in 0..3 {
        assert_eq!(scrape(&proxy, "/metrics", Some(Script::GOOD)).await.status, StatusCode::OK);
    }
    assert_eq!((api.token_reviews(), api.access_reviews()), (1, 1), "one review of each kind for three scrapes");

    // Another token of the same user: a new TokenReview, but the same SubjectAccessReview.
    assert_eq!(scrape(&proxy, "/metrics", Some(Script::GOOD_TOO)).await.status, StatusCode::OK);
    assert_eq!((api.token_reviews(), api.access_reviews()), (2, 1));
    // Another path is another SubjectAccessReview.
    assert_eq!(scrape(&proxy, "/proxy/metrics", Some(Script::GOOD)).await.status, StatusCode::OK);
    assert_eq!((api.token_reviews(), api.access_reviews()), (2, 2));

    for _ in 0..2 {
        assert_eq!(scrape(&proxy, "/metrics", Some(Script::DENIED)).await.status, StatusCode::FORBIDDEN);
        assert_eq!(scrape(&proxy, "/metrics", Some(Script::INVALID)).await.status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!((api.token_reviews(), api.access_reviews()), (4, 3), "denials and invalid tokens are cached too");

    for _ in 0..2 {
        assert_eq!(scrape(&proxy, "/metrics", Some(Script::ERROR)).await.status, StatusCode::SERVICE_UNAVAILABLE);
    }
    assert_eq!(api.token_reviews(), 6, "an error is never cached: each try asks again");
}

#[cfg(unix)] // openssl CLI, htpasswd: Debian tools, not on Windows (.github/workflows/ci.yml)
#[tokio::test]
async fn concurrent_identical_requests_share_one_review() {
    let exporter = exporter().await;
    let api = FakeKubeApi::start().await;
    let proxy = api.proxy(&exporter, &[]).await;

    let scrapes: Vec<_> = (0..5)
        .map(|_| {
            let addr = proxy.addr;
            tokio::spawn(async move {
                let authorization = format!("Bearer {}", Script::GATED);
                Client::connect(addr).await.get("/metrics", &[("authorization", &authorization)]).await.status
            })
        })
        .collect();
    // Every scrape is waiting once the review is held; more reviews would show up here.
    support::within("the first review to arrive", async {
        while api.token_reviews() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    // The proxy accepted all five requests (their connections are counted) before we let go.
    let mut client = Client::connect(proxy.addr).await;
    let auth = format!("Bearer {}", Script::GOOD);
    support::within("all five scrapers to be connected", async {
        loop {
            let metrics = own_metrics_with(&mut client, &[("authorization", &auth)]).await;
            if metric(&metrics, "windows_exporter_proxy_client_connections") >= 6.0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    api.open_gate(100);
    for scrape in scrapes {
        assert_eq!(scrape.await.unwrap(), StatusCode::OK);
    }
    // GOOD's own review for /proxy/metrics is one; the five GATED scrapes shared one.
    assert_eq!(api.token_reviews(), 2, "five concurrent scrapes with one token sent one TokenReview");
}

#[cfg(unix)] // openssl CLI, htpasswd: Debian tools, not on Windows (.github/workflows/ci.yml)
#[tokio::test]
async fn a_rotated_proxy_token_is_used_for_the_next_review() {
    let exporter = exporter().await;
    let mut api = FakeKubeApi::start().await;
    let proxy = api.proxy(&exporter, &[]).await;

    assert_eq!(scrape(&proxy, "/metrics", Some(Script::GOOD)).await.status, StatusCode::OK);
    api.rotate_proxy_token("proxy-sa-token-2");
    // GOOD_TOO is not cached: it needs a new TokenReview, which must carry the new token.
    assert_eq!(scrape(&proxy, "/metrics", Some(Script::GOOD_TOO)).await.status, StatusCode::OK);
    let tokens: Vec<String> = api
        .pending_reviews()
        .into_iter()
        .map(|r| match r {
            Review::Token { proxy_token, .. } | Review::Access { proxy_token, .. } => proxy_token,
        })
        .collect();
    assert_eq!(tokens, vec!["proxy-sa-token-1", "proxy-sa-token-1", "proxy-sa-token-2"]);
}

#[cfg(unix)] // openssl CLI, htpasswd: Debian tools, not on Windows (.github/workflows/ci.yml)
#[tokio::test]
async fn authz_users_replace_subject_access_reviews_and_audiences_are_sent() {
    let exporter = exporter().await;
    let mut api = FakeKubeApi::start().await;
    let users = format!("{PROMETHEUS_USER},system:serviceaccount:x:y");
    let proxy = api
        .proxy(
            &exporter,
            &[
                ("PROXY_AUTHZ_USERS", &users),
                ("PROXY_TOKENREVIEW_AUDIENCES", "windows-exporter-proxy, https://kubernetes.default.svc"),
            ],
        )
        .await;
    assert_eq!(scrape(&proxy, "/metrics", Some(Script::GOOD)).await.status, StatusCode::OK);
    assert_eq!(scrape(&proxy, "/metrics", Some(Script::DENIED)).await.status, StatusCode::FORBIDDEN);
    assert_eq!(api.access_reviews(), 0, "PROXY_AUTHZ_USERS decides without SubjectAccessReviews");
    let (review, _) = token_review(api.next_review().await);
    assert_eq!(
        review.spec.audiences,
        Some(vec!["windows-exporter-proxy".to_string(), "https://kubernetes.default.svc".to_string()])
    );
}

#[cfg(unix)] // openssl CLI, htpasswd: Debian tools, not on Windows (.github/workflows/ci.yml)
#[tokio::test]
async fn a_token_for_another_audience_is_unauthenticated() {
    let exporter = exporter().await;
    let api = FakeKubeApi::start().await;
    // The fake answers with the asked audiences minus "other-audience": none left means the token
    // is not for us.
    let proxy = api.proxy(&exporter, &[("PROXY_TOKENREVIEW_AUDIENCES", "other-audience")]).await;
    assert_eq!(scrape(&proxy, "/metrics", Some(Script::GOOD)).await.status, StatusCode::UNAUTHORIZED);
}

#[cfg(unix)] // openssl CLI, htpasswd: Debian tools, not on Windows (.github/workflows/ci.yml)
#[tokio::test]
async fn an_api_server_with_a_certificate_from_another_ca_is_unavailable() {
    let exporter = exporter().await;
    let api = FakeKubeApi::start().await;
    let other = support::certificates::Pki::new("other");
    let ca = other.ca.display().to_string();
    let mut proxy = api.proxy(&exporter, &[("PROXY_KUBE_CA_FILE", &ca)]).await;
    assert_eq!(scrape(&proxy, "/metrics", Some(Script::GOOD)).await.status, StatusCode::SERVICE_UNAVAILABLE);
    proxy
        .wait_for_log("the certificate failure", |l| {
            l["error"].as_str().is_some_and(|e| e.contains("invalid peer certificate"))
        })
        .await;
    assert_eq!(api.token_reviews(), 0, "the token never went to an API server the proxy does not trust");
}

#[cfg(unix)] // openssl CLI, htpasswd: Debian tools, not on Windows (.github/workflows/ci.yml)
#[tokio::test]
async fn health_and_ready_stay_open() {
    let exporter = exporter().await;
    let api = FakeKubeApi::start().await;
    let proxy = api.proxy(&exporter, &[]).await;
    assert_eq!(support::get(proxy.addr, "/health").await.status, StatusCode::OK);
    assert_eq!(support::get(proxy.addr, "/ready").await.status, StatusCode::OK);
    assert_eq!(api.token_reviews(), 0);
}

// ---------------------------------------------------------------------------------------------
// basic

/// An htpasswd file made by Apache's own tool, as an operator would.
fn htpasswd_file(dir: &std::path::Path, user: &str, password: &str) -> PathBuf {
    let output = std::process::Command::new("htpasswd")
        .args(["-nbBC", "10", user, password])
        .output()
        .expect("run htpasswd (apache2-utils)");
    assert!(output.status.success());
    let file = dir.join("htpasswd");
    std::fs::write(&file, &output.stdout).unwrap();
    file
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wep-auth-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

/// The proxy with `PROXY_AUTH=basic` against the htpasswd `file`, over plain HTTP, in front of
/// `exporter`, plus `extra` variables.
#[cfg(unix)]
async fn basic_proxy(exporter: &FakeExporter, file: &std::path::Path, extra: &[(&str, &str)]) -> ProxyProcess {
    let (port, file_var) = (exporter.port(), file.display().to_string());
    let mut vars = vec![
        ("PROXY_HOSTIP", "127.0.0.1"),
        ("PROXY_PORT", port.as_str()),
        ("PROXY_AUTH", "basic"),
        ("PROXY_BASIC_AUTH_FILE", file_var.as_str()),
        ("PROXY_ALLOW_PLAINTEXT_CREDENTIALS", "true"),
    ];
    vars.extend_from_slice(extra);
    ProxyProcess::start(&vars).await
}

#[cfg(unix)] // openssl CLI, htpasswd: Debian tools, not on Windows (.github/workflows/ci.yml)
#[tokio::test]
async fn basic_allows_the_right_password_only_and_never_forwards_it() {
    let mut exporter = exporter().await;
    let dir = temp_dir("basic");
    let file = htpasswd_file(&dir, "prometheus", "correct horse");
    // Forwarding asked for: still, the credential the proxy checked is never sent on.
    let proxy = basic_proxy(&exporter, &file, &[("PROXY_FORWARD_AUTHORIZATION", "true")]).await;
    let mut client = Client::connect(proxy.addr).await;
    for (user, password) in [("prometheus", "wrong"), ("nobody", "correct horse"), ("PROMETHEUS", "correct horse")] {
        let refused = client.get("/metrics", &[("authorization", &basic(user, password))]).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{user}:{password}");
        assert_eq!(refused.headers["www-authenticate"], "Basic realm=\"windows-exporter-proxy\", charset=\"UTF-8\"");
    }
    assert!(exporter.pending_requests().is_empty());
    let right = basic("prometheus", "correct horse");
    for _ in 0..2 {
        let served = client.get("/metrics", &[("authorization", &right)]).await;
        assert_eq!(served.status, StatusCode::OK);
        assert!(exporter.next_request().await.headers.get("authorization").is_none());
    }
    let metrics = own_metrics_with(&mut client, &[("authorization", &right)]).await;
    assert_eq!(
        metric(&metrics, "windows_exporter_proxy_auth_decisions_total{method=\"basic\",outcome=\"unauthenticated\"}"),
        3.0
    );
    assert_eq!(
        metric(&metrics, "windows_exporter_proxy_auth_decisions_total{method=\"basic\",outcome=\"allowed\"}"),
        3.0
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[cfg(unix)] // openssl CLI, htpasswd: Debian tools, not on Windows (.github/workflows/ci.yml)
#[tokio::test]
async fn an_unknown_user_costs_about_as_much_as_a_wrong_password() {
    // Not a timing assertion on the machine's speed: both answers pay one bcrypt at cost 10, so
    // the unknown user must not come back in a small fraction of the known user's time.
    let exporter = exporter().await;
    let dir = temp_dir("basic-timing");
    let file = htpasswd_file(&dir, "prometheus", "pw");
    let proxy = basic_proxy(&exporter, &file, &[]).await;
    let mut client = Client::connect(proxy.addr).await;
    let fastest = |times: &mut Vec<Duration>| times.iter().min().copied().unwrap();
    let (mut known, mut unknown) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        for (user, times) in [("prometheus", &mut known), ("nobody", &mut unknown)] {
            let started = Instant::now();
            assert_eq!(
                client.get("/metrics", &[("authorization", &basic(user, "bad"))]).await.status,
                StatusCode::UNAUTHORIZED
            );
            times.push(started.elapsed());
        }
    }
    let (known, unknown) = (fastest(&mut known), fastest(&mut unknown));
    assert!(unknown * 3 > known, "unknown user {unknown:?} vs wrong password {known:?}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[cfg(unix)] // openssl CLI, htpasswd: Debian tools, not on Windows (.github/workflows/ci.yml)
#[tokio::test]
async fn a_password_longer_than_bcrypts_72_bytes_is_refused_even_with_the_right_prefix() {
    // htpasswd -B hashes only the first 72 bytes, and bcrypt compares only those, so 72 'a's and
    // 72 'a's + "b" have the same hash; only the exact 72 bytes may pass.
    let mut exporter = exporter().await;
    let dir = temp_dir("basic-72");
    let a72 = "a".repeat(72);
    let file = htpasswd_file(&dir, "prometheus", &a72);
    let proxy = basic_proxy(&exporter, &file, &[]).await;
    let mut client = Client::connect(proxy.addr).await;
    let right = basic("prometheus", &a72);
    for password in [format!("{a72}b"), format!("{a72}{}", "z".repeat(100))] {
        let refused = client.get("/metrics", &[("authorization", &basic("prometheus", &password))]).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{} bytes", password.len());
    }
    assert!(exporter.pending_requests().is_empty());
    assert_eq!(client.get("/metrics", &[("authorization", &right)]).await.status, StatusCode::OK);
    exporter.next_request().await;
    // Still refused once the exact password is remembered.
    let refused = client.get("/metrics", &[("authorization", &basic("prometheus", &format!("{a72}b")))]).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    let metrics = own_metrics_with(&mut client, &[("authorization", &right)]).await;
    assert_eq!(
        metric(&metrics, "windows_exporter_proxy_auth_decisions_total{method=\"basic\",outcome=\"unauthenticated\"}"),
        3.0
    );
    std::fs::remove_dir_all(dir).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Forwarding without PROXY_AUTH

#[tokio::test]
async fn without_auth_the_authorization_is_forwarded_unless_told_not_to() {
    for (forward, expected) in [(None, Some("Bearer for-the-exporter")), (Some("false"), None)] {
        let mut exporter = exporter().await;
        let port = exporter.port();
        let mut vars = vec![("PROXY_HOSTIP", "127.0.0.1"), ("PROXY_PORT", port.as_str())];
        if let Some(forward) = forward {
            vars.push(("PROXY_FORWARD_AUTHORIZATION", forward));
        }
        let proxy = ProxyProcess::start(&vars).await;
        let scraped =
            Client::connect(proxy.addr).await.get("/metrics", &[("authorization", "Bearer for-the-exporter")]).await;
        assert_eq!(scraped.status, StatusCode::OK);
        let seen = exporter.next_request().await;
        assert_eq!(seen.headers.get("authorization").map(|v| v.to_str().unwrap()), expected, "{forward:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Configuration

async fn config_errors(vars: &[(&str, &str)]) -> String {
    let mut all = vec![("PROXY_HOSTIP", "127.0.0.1")];
    all.extend_from_slice(vars);
    let output = run_to_exit(&[], &all).await;
    assert_eq!(output.status.code(), Some(64), "{vars:?}: {output:?}");
    String::from_utf8(output.stderr).unwrap()
}

#[tokio::test]
async fn bad_auth_configuration_exits_64_naming_the_variable() {
    let dir = temp_dir("config");
    let md5 = dir.join("md5");
    std::fs::write(&md5, "# scrapers\nprometheus:$apr1$x0ewrVFf$9E5Ct6fCFLtYBkUlEN4mD.\n").unwrap();
    let md5 = md5.display().to_string();
    // bcrypt's parser accepts this (cost "4", a 53-byte salt and digest); byte 7 falls inside
    // the "é", where the proxy's shape check once sliced the text and panicked.
    let split_character = dir.join("split-character");
    std::fs::write(&split_character, "prometheus:$2y$4$\u{e9}EapHHrg9BJ2/9z/kQPGe7vMgjh8dguW8LSbDEWzEXEGJkQlNuLG\n")
        .unwrap();
    let split_character = split_character.display().to_string();
    let plaintext = [("PROXY_ALLOW_PLAINTEXT_CREDENTIALS", "true")];
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![("PROXY_AUTH", "oauth")], "PROXY_AUTH=\"oauth\" is not valid"),
        (vec![("PROXY_AUTH", "basic"), plaintext[0]], "PROXY_BASIC_AUTH_FILE is required"),
        (vec![("PROXY_BASIC_AUTH_FILE", "/etc/htpasswd")], "is a setting of basic, which PROXY_AUTH does not list"),
        (vec![("PROXY_AUTHZ_USERS", "a")], "is a setting of tokenreview, which PROXY_AUTH does not list"),
        (vec![("PROXY_AUTH", "client-cert")], "PROXY_CLIENT_CA_FILE is required"),
        (vec![("PROXY_AUTH", "tokenreview"), plaintext[0]], "KUBERNETES_SERVICE_HOST is required"),
        (vec![("PROXY_AUTH", "basic"), ("PROXY_BASIC_AUTH_FILE", &md5)], "over plain HTTP"),
        (
            vec![("PROXY_AUTH", "basic"), ("PROXY_BASIC_AUTH_FILE", &md5), plaintext[0]],
            "line 2: the hash for user \"prometheus\" is MD5 ($apr1$), not bcrypt",
        ),
        (
            vec![("PROXY_AUTH", "basic"), ("PROXY_BASIC_AUTH_FILE", &split_character), plaintext[0]],
            "line 1: the bcrypt hash for user \"prometheus\" is malformed",
        ),
        (
            vec![("PROXY_AUTH", "tokenreview"), plaintext[0], ("PROXY_KUBE_API_URL", "http://10.96.0.1")],
            "PROXY_KUBE_API_URL=\"http://10.96.0.1\" is not valid: must start with https://",
        ),
        (vec![("PROXY_FORWARD_AUTHORIZATION", "sometimes")], "use auto, true or false"),
    ];
    for (vars, expected) in cases {
        let stderr = config_errors(&vars).await;
        assert!(stderr.contains(expected), "{vars:?}: expected {expected:?} in {stderr}");
        for hash in ["9E5Ct6fCFLtYBkUlEN4mD", "kQPGe7vMgjh8dguW8LSbDEWzEXEGJkQlNuLG"] {
            assert!(!stderr.contains(hash), "a hash reached the output: {stderr}");
        }
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[cfg(unix)] // openssl CLI, htpasswd: Debian tools, not on Windows (.github/workflows/ci.yml)
#[tokio::test]
async fn tokenreview_files_are_checked_at_start() {
    let api = FakeKubeApi::start().await;
    let missing = api.pki.path("no-such-token").display().to_string();
    let not_pem = api.token_file.display().to_string();
    let base = [("PROXY_AUTH", "tokenreview"), ("PROXY_ALLOW_PLAINTEXT_CREDENTIALS", "true")];
    let url = api.url();
    let ca = api.pki.ca.display().to_string();
    let mut vars = base.to_vec();
    vars.extend([
        ("PROXY_KUBE_API_URL", url.as_str()),
        ("PROXY_KUBE_TOKEN_FILE", missing.as_str()),
        ("PROXY_KUBE_CA_FILE", ca.as_str()),
    ]);
    assert!(config_errors(&vars).await.contains("PROXY_KUBE_TOKEN_FILE="));
    let mut vars = base.to_vec();
    vars.extend([
        ("PROXY_KUBE_API_URL", url.as_str()),
        ("PROXY_KUBE_TOKEN_FILE", not_pem.as_str()),
        ("PROXY_KUBE_CA_FILE", not_pem.as_str()),
    ]);
    let stderr = config_errors(&vars).await;
    assert!(stderr.contains("PROXY_KUBE_CA_FILE=") && stderr.contains("has no CERTIFICATE PEM block"), "{stderr}");
    assert!(!stderr.contains("proxy-sa-token-1"), "the token reached the output: {stderr}");
}

#[cfg(unix)] // openssl CLI, htpasswd: Debian tools, not on Windows (.github/workflows/ci.yml)
#[tokio::test]
async fn kubernetes_service_variables_locate_the_api_server() {
    let exporter = exporter().await;
    let api = FakeKubeApi::start().await;
    let (port, api_port) = (exporter.port(), api.addr.port().to_string());
    let (token, ca) = (api.token_file.display().to_string(), api.pki.ca.display().to_string());
    let proxy = ProxyProcess::start(&[
        ("PROXY_HOSTIP", "127.0.0.1"),
        ("PROXY_PORT", &port),
        ("PROXY_AUTH", "tokenreview"),
        ("PROXY_ALLOW_PLAINTEXT_CREDENTIALS", "true"),
        ("KUBERNETES_SERVICE_HOST", "127.0.0.1"),
        ("KUBERNETES_SERVICE_PORT", &api_port),
        ("PROXY_KUBE_TOKEN_FILE", &token),
        ("PROXY_KUBE_CA_FILE", &ca),
    ])
    .await;
    assert_eq!(scrape(&proxy, "/metrics", Some(Script::GOOD)).await.status, StatusCode::OK);
    assert_eq!(api.token_reviews(), 1);
}

#[cfg(unix)] // openssl CLI, htpasswd: Debian tools, not on Windows (.github/workflows/ci.yml)
#[tokio::test]
async fn the_plaintext_allowance_warns_at_start() {
    let exporter = exporter().await;
    let api = FakeKubeApi::start().await;
    let proxy = api.proxy(&exporter, &[]).await;
    let warning = proxy
        .log
        .iter()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|l| l["message"].as_str().is_some_and(|m| m.contains("PROXY_ALLOW_PLAINTEXT_CREDENTIALS=true")))
        .unwrap_or_else(|| panic!("no plaintext warning before listening: {:?}", proxy.log));
    assert_eq!(warning["level"], "WARN");
}

#[tokio::test]
async fn auto_forwarding_stops_when_the_proxy_sends_its_own_exporter_credential() {
    let mut exporter = exporter().await;
    let dir = temp_dir("exporter-credential");
    std::fs::write(dir.join("password"), "proxy-password\n").unwrap();
    let (port, password) = (exporter.port(), dir.join("password").display().to_string());
    let proxy = ProxyProcess::start(&[
        ("PROXY_HOSTIP", "127.0.0.1"),
        ("PROXY_PORT", &port),
        ("PROXY_EXPORTER_BASIC_AUTH_USERNAME", "proxy"),
        ("PROXY_EXPORTER_BASIC_AUTH_PASSWORD_FILE", &password),
    ])
    .await;
    let scraped = Client::connect(proxy.addr).await.get("/metrics", &[("authorization", "Bearer scraper-token")]).await;
    assert_eq!(scraped.status, StatusCode::OK);
    let seen = exporter.next_request().await;
    assert_eq!(
        seen.headers["authorization"],
        basic("proxy", "proxy-password").as_str(),
        "the proxy's own, not the scraper's"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Over HTTPS: no credential the proxy checked reaches the exporter

/// For every mode that checks the scraper's `Authorization` (basic, tokenreview, and basic next
/// to client-cert, whether or not the certificate already decided), with
/// `PROXY_FORWARD_AUTHORIZATION` unset and `true`, the exporter's request carries none. The
/// control row shows the table can see a forwarded header: client-cert alone checks no
/// `Authorization`, so with `true` the scraper's own header is the exporter's business.
#[cfg(unix)] // openssl CLI, htpasswd: Debian tools, not on Windows (.github/workflows/ci.yml)
#[tokio::test]
async fn over_https_no_checked_credential_reaches_the_exporter_in_any_mode() {
    use support::certificates::{Leaf, Pki};
    use support::tls::TlsClient;

    let pki = Pki::new("never-forwarded");
    let server = pki.issue("server", &Leaf::server(0x200));
    let scraper = pki.issue("prometheus", &Leaf::client("prometheus", 0x201));
    let htpasswd = htpasswd_file(&pki.dir, "prometheus", "scrape-password");
    let api = FakeKubeApi::start().await;
    let (right_basic, good_token) = (basic("prometheus", "scrape-password"), format!("Bearer {}", Script::GOOD));
    let anonymous = TlsClient::new(&pki.ca);
    let with_certificate = anonymous.clone().with_identity(&scraper.chain, &scraper.key);

    let (htpasswd_var, ca_var) = (htpasswd.display().to_string(), pki.ca.display().to_string());
    let basic_vars = [("PROXY_BASIC_AUTH_FILE", htpasswd_var.as_str())];
    let client_cert_basic_vars = [("PROXY_BASIC_AUTH_FILE", htpasswd_var.as_str()), ("PROXY_CLIENT_CA_FILE", &ca_var)];
    let api_vars = api.vars();
    let tokenreview_vars: Vec<(&str, &str)> = api_vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let client_cert_vars = [("PROXY_CLIENT_CA_FILE", ca_var.as_str())];

    /// One mode: `PROXY_AUTH`, its settings, the scraper, its `Authorization`, and whether the
    /// exporter gets that header with `PROXY_FORWARD_AUTHORIZATION=true`.
    struct Row<'a> {
        auth: &'a str,
        settings: &'a [(&'a str, &'a str)],
        scraper: &'a TlsClient,
        authorization: &'a str,
        forwarded_with_true: bool,
    }
    let row = |auth, settings, scraper, authorization, forwarded_with_true| Row {
        auth,
        settings,
        scraper,
        authorization,
        forwarded_with_true,
    };
    let rows = [
        row("basic", &basic_vars, &anonymous, &right_basic, false),
        row("tokenreview", &tokenreview_vars, &anonymous, &good_token, false),
        row("client-cert,basic", &client_cert_basic_vars, &anonymous, &right_basic, false),
        row("client-cert,basic", &client_cert_basic_vars, &with_certificate, &right_basic, false),
        row("client-cert", &client_cert_vars, &with_certificate, "Bearer for-the-exporter", true),
    ];
    for Row { auth, settings, scraper, authorization, forwarded_with_true } in rows {
        for forward in [None, Some("true")] {
            let case = format!("PROXY_AUTH={auth} certificate={} forward={forward:?}", scraper.identity.is_some());
            let mut exporter = exporter().await;
            let port = exporter.port();
            let mut vars = vec![
                ("PROXY_HOSTIP", "127.0.0.1"),
                ("PROXY_PORT", port.as_str()),
                ("PROXY_TLS_CERT_FILE", server.chain.to_str().unwrap()),
                ("PROXY_TLS_KEY_FILE", server.key.to_str().unwrap()),
                ("PROXY_AUTH", auth),
            ];
            vars.extend_from_slice(settings);
            vars.extend(forward.map(|f| ("PROXY_FORWARD_AUTHORIZATION", f)));
            let proxy = ProxyProcess::start(&vars).await;

            let (scraped, _) =
                scraper.get_with(proxy.addr, "/metrics", &[("authorization", authorization)]).await.unwrap();
            assert_eq!(scraped.status, StatusCode::OK, "{case}: {}", scraped.text());
            assert_eq!(scraped.text(), PLAIN, "{case}");
            let seen = exporter.next_request().await;
            let expected = (forward.is_some() && forwarded_with_true).then_some(authorization);
            assert_eq!(seen.headers.get("authorization").map(|v| v.to_str().unwrap()), expected, "{case}");
        }
    }
}
