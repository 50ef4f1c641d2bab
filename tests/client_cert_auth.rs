//! `PROXY_AUTH=client-cert` end to end, black-box: the real binary serving HTTPS
//! (`PROXY_TLS_CERT_FILE`/`PROXY_TLS_KEY_FILE`) with `PROXY_CLIENT_CA_FILE` and
//! `PROXY_CLIENT_ALLOWED_NAMES`, scraped by a rustls client (tests/support/tls.rs) presenting
//! certificates made per test with the openssl CLI (tests/support/certificates.rs).
//!
//! What a scraper sees: no certificate is a 401 on the protected paths while `/health` and
//! `/ready` stay open; a certificate from another CA fails the handshake with a TLS alert (no
//! HTTP answer at all) and is counted; an allowed DNS, IP or URI SAN, or the CN of a certificate
//! without SANs, is served the exporter's body; a verified certificate with none of the allowed
//! names is a 403; without `PROXY_CLIENT_ALLOWED_NAMES` every verified certificate is served; with
//! `client-cert,basic` either credential is enough. Every decision shows in
//! `windows_exporter_proxy_auth_decisions_total{method,outcome}`.
// Not on Windows: every test makes certificates with the openssl CLI, and htpasswd files
// (see .github/workflows/ci.yml).
#![cfg(unix)]

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;

use http::StatusCode;
use support::certificates::{Issued, Leaf, Pki, Role};
use support::tls::{TlsClient, alert_received};
use support::{FakeExporter, ProxyProcess, metric};
use tokio::io::AsyncReadExt;

const BODY: &str = "# HELP windows_cs_hostname Labelled system hostname information.\nwindows_cs_hostname 1\n";
const CHALLENGE: &str = "ClientCertificate realm=\"windows-exporter-proxy\"";
const BASIC_CHALLENGE: &str = "Basic realm=\"windows-exporter-proxy\", charset=\"UTF-8\"";

/// The allowed names of these tests: one of each kind the proxy matches.
const ALLOWED: &str =
    "prometheus.monitoring.svc,10.1.2.3,spiffe://cluster.local/ns/monitoring/sa/prometheus-k8s,scraper-by-cn";

/// A CA, the proxy's server certificate, client certificates for each case, and the exporter.
struct Bed {
    pki: Pki,
    server: Issued,
    exporter: FakeExporter,
}

impl Bed {
    async fn new(name: &str) -> Bed {
        let pki = Pki::new(name);
        let server = pki.issue("server", &Leaf::server(0x100));
        let exporter = FakeExporter::serving(BODY.into(), "text/plain; version=0.0.4").await;
        Bed { pki, server, exporter }
    }

    /// A client certificate from this bed's CA.
    fn client(&self, file: &str, common_name: &str, sans: &[&str], serial: u64) -> TlsClient {
        let issued = self.pki.issue(file, &Leaf::new(Role::Client, common_name, sans, serial));
        self.anonymous().with_identity(&issued.chain, &issued.key)
    }

    /// A client that trusts the proxy and presents no certificate.
    fn anonymous(&self) -> TlsClient {
        TlsClient::new(&self.pki.ca)
    }

    /// The proxy serving HTTPS in front of the exporter, asking for client certificates from
    /// this bed's CA, with `PROXY_AUTH=auth` and `extra`.
    async fn proxy(&self, auth: &str, extra: &[(&str, &str)]) -> ProxyProcess {
        let port = self.exporter.port();
        let mut vars = vec![
            ("PROXY_HOSTIP", "127.0.0.1"),
            ("PROXY_PORT", port.as_str()),
            ("PROXY_TLS_CERT_FILE", self.server.chain.to_str().unwrap()),
            ("PROXY_TLS_KEY_FILE", self.server.key.to_str().unwrap()),
            ("PROXY_CLIENT_CA_FILE", self.pki.ca.to_str().unwrap()),
            ("PROXY_AUTH", auth),
        ];
        vars.extend_from_slice(extra);
        ProxyProcess::start(&vars).await
    }
}

/// `GET path` as `client`; the handshake must succeed.
async fn get(client: &TlsClient, addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> support::Scraped {
    client.get_with(addr, path, headers).await.unwrap_or_else(|e| panic!("GET {path}: {e}")).0
}

fn challenges(scraped: &support::Scraped) -> Vec<&str> {
    scraped.headers.get_all("www-authenticate").iter().map(|v| v.to_str().unwrap()).collect()
}

fn decisions(metrics: &HashMap<String, f64>, method: &str, outcome: &str) -> f64 {
    metric(
        metrics,
        &format!("windows_exporter_proxy_auth_decisions_total{{method=\"{method}\",outcome=\"{outcome}\"}}"),
    )
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

#[tokio::test]
async fn without_a_client_certificate_scrapes_are_401_and_probes_are_open() {
    let mut bed = Bed::new("no-cert").await;
    let proxy = bed.proxy("client-cert", &[("PROXY_CLIENT_ALLOWED_NAMES", ALLOWED)]).await;
    let anonymous = bed.anonymous();

    for path in ["/metrics", "/proxy/metrics"] {
        let refused = get(&anonymous, proxy.addr, path, &[]).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{path}: {}", refused.text());
        assert_eq!(challenges(&refused), [CHALLENGE], "{path}");
        assert!(refused.text().contains("PROXY_AUTH=client-cert"), "{path}: {}", refused.text());
    }
    // A password is no substitute when only client-cert is listed.
    let with_password = get(&anonymous, proxy.addr, "/metrics", &[("authorization", &basic("u", "p"))]).await;
    assert_eq!(with_password.status, StatusCode::UNAUTHORIZED);
    assert!(bed.exporter.pending_requests().is_empty(), "a refused scrape reached the exporter");
    assert_eq!(bed.exporter.connections(), 0);

    // The kubelet's probes present no certificate.
    let health = get(&anonymous, proxy.addr, "/health", &[]).await;
    assert_eq!((health.status, health.text().trim_end()), (StatusCode::OK, "ok"));
    let ready = get(&anonymous, proxy.addr, "/ready", &[]).await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.text());

    let prometheus = bed.client("prometheus", "prometheus", &["DNS:prometheus.monitoring.svc"], 0x101);
    let metrics = prometheus.own_metrics(proxy.addr, &[]).await;
    assert_eq!(decisions(&metrics, "none", "unauthenticated"), 3.0, "three requests without a usable credential");
    assert_eq!(decisions(&metrics, "client-cert", "allowed"), 1.0, "this metrics read");
}

#[tokio::test]
async fn a_certificate_from_another_ca_fails_the_handshake_with_an_alert_and_is_counted() {
    let bed = Bed::new("handshake").await;
    let proxy = bed.proxy("client-cert", &[("PROXY_CLIENT_ALLOWED_NAMES", ALLOWED)]).await;
    // The right name, from a CA the proxy does not trust.
    let stranger = bed.pki.other_ca("stranger").issue("stranger", &Leaf::client("prometheus.monitoring.svc", 0x102));

    // TLS 1.2: the server checks the certificate before its Finished, so the handshake itself fails.
    let tls12 = TlsClient { versions: vec![&rustls::version::TLS12], ..bed.anonymous() }
        .with_identity(&stranger.chain, &stranger.key);
    let error = tls12.connect(proxy.addr).await.expect_err("the TLS 1.2 handshake fails");
    assert_eq!(alert_received(&error), Some(rustls::AlertDescription::UnknownCA), "{error:?}");

    // TLS 1.3: the client's side of the handshake completes before the server has read its
    // certificate; the alert is the first and only thing it then receives (reading before
    // writing, so the proxy closes with nothing unread and the alert cannot be lost to a reset).
    let tls13 = TlsClient { versions: vec![&rustls::version::TLS13], ..bed.anonymous() }
        .with_identity(&stranger.chain, &stranger.key);
    let (mut stream, _) = tls13.connect(proxy.addr).await.expect("the client's half of a TLS 1.3 handshake");
    let mut buf = [0u8; 1024];
    let read = support::within("the proxy's alert", stream.read(&mut buf)).await;
    let error = read.expect_err("an alert, not an HTTP answer or a clean close");
    assert_eq!(alert_received(&error), Some(rustls::AlertDescription::UnknownCA), "{error:?}");

    let prometheus = bed.client("prometheus", "prometheus", &["DNS:prometheus.monitoring.svc"], 0x103);
    let metrics = prometheus.own_metrics(proxy.addr, &[]).await;
    assert_eq!(
        metric(&metrics, r#"windows_exporter_proxy_tls_handshake_failures_total{reason="bad_client_certificate"}"#),
        2.0
    );
    // No request was read, so nothing was decided and nothing reached the exporter.
    assert_eq!(decisions(&metrics, "client-cert", "forbidden") + decisions(&metrics, "none", "unauthenticated"), 0.0);
    assert_eq!(bed.exporter.connections(), 0);
}

#[tokio::test]
async fn an_allowed_dns_ip_or_uri_san_or_cn_is_served_and_other_names_are_403() {
    let mut bed = Bed::new("names").await;
    let proxy = bed.proxy("client-cert", &[("PROXY_CLIENT_ALLOWED_NAMES", ALLOWED)]).await;

    let allowed = [
        // DNS names compare without case.
        ("dns", bed.client("dns", "dns-holder", &["DNS:Prometheus.Monitoring.SVC"], 0x110)),
        ("ip", bed.client("ip", "ip-holder", &["IP:10.1.2.3"], 0x111)),
        (
            "uri",
            bed.client("uri", "uri-holder", &["URI:spiffe://cluster.local/ns/monitoring/sa/prometheus-k8s"], 0x112),
        ),
        // No subjectAltName at all: the CN is the name (kube-rbac-proxy's --allowed-names).
        ("cn", bed.client("cn", "scraper-by-cn", &[], 0x113)),
    ];
    for (case, client) in &allowed {
        let served = get(client, proxy.addr, "/metrics", &[]).await;
        assert_eq!(served.status, StatusCode::OK, "{case}: {}", served.text());
        assert_eq!(served.text(), BODY, "{case}");
        assert_eq!(bed.exporter.next_request().await.uri.path(), "/metrics", "{case}");
    }

    let grafana = bed.client(
        "grafana",
        "grafana",
        &["DNS:grafana.monitoring.svc", "IP:10.1.2.4", "URI:spiffe://cluster.local/ns/monitoring/sa/grafana"],
        0x120,
    );
    // Near misses: a longer DNS name, and the allowed CN in another case (CNs compare exactly).
    let near_miss = bed.client("near-miss", "Scraper-By-CN", &["DNS:prometheus.monitoring.svc.evil"], 0x121);
    // The body names the certificate by its first name, so the operator sees whom to allow.
    for (client, path, shown) in [
        (&grafana, "/metrics", "grafana.monitoring.svc"),
        (&grafana, "/proxy/metrics", "grafana.monitoring.svc"),
        (&near_miss, "/metrics", "prometheus.monitoring.svc.evil"),
    ] {
        let refused = get(client, proxy.addr, path, &[]).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{shown} {path}: {}", refused.text());
        let text = refused.text();
        assert!(text.contains("PROXY_CLIENT_ALLOWED_NAMES") && text.contains(shown), "{shown}: {text}");
        assert!(refused.headers.get("www-authenticate").is_none(), "a 403 is not a challenge");
    }
    assert!(bed.exporter.pending_requests().is_empty(), "a refused scrape reached the exporter");

    let metrics = allowed[0].1.own_metrics(proxy.addr, &[]).await;
    assert_eq!(decisions(&metrics, "client-cert", "allowed"), 5.0, "four scrapes and this metrics read");
    assert_eq!(decisions(&metrics, "client-cert", "forbidden"), 3.0);
}

#[tokio::test]
async fn without_allowed_names_every_verified_certificate_is_served() {
    let bed = Bed::new("any").await;
    let proxy = bed.proxy("client-cert", &[]).await;
    let grafana = bed.client("grafana", "grafana", &["DNS:grafana.monitoring.svc"], 0x130);
    let cn_only = bed.client("cn", "anyone", &[], 0x131);
    for (case, client) in [("grafana", &grafana), ("CN only", &cn_only)] {
        let served = get(client, proxy.addr, "/metrics", &[]).await;
        assert_eq!((served.status, served.text().as_str()), (StatusCode::OK, BODY), "{case}");
    }
    let refused = get(&bed.anonymous(), proxy.addr, "/metrics", &[]).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "a verified certificate is still required");
}

#[tokio::test]
async fn with_client_cert_and_basic_either_credential_is_enough() {
    let mut bed = Bed::new("either").await;
    let htpasswd = std::process::Command::new("htpasswd")
        .args(["-nbBC", "10", "prometheus", "scrape-password"])
        .output()
        .expect("run htpasswd (apache2-utils)");
    assert!(htpasswd.status.success());
    let htpasswd_file = bed.pki.path("htpasswd");
    std::fs::write(&htpasswd_file, &htpasswd.stdout).unwrap();
    let proxy = bed
        .proxy(
            "client-cert,basic",
            &[("PROXY_CLIENT_ALLOWED_NAMES", ALLOWED), ("PROXY_BASIC_AUTH_FILE", htpasswd_file.to_str().unwrap())],
        )
        .await;
    let anonymous = bed.anonymous();
    let prometheus = bed.client("prometheus", "prometheus", &["DNS:prometheus.monitoring.svc"], 0x140);
    let grafana = bed.client("grafana", "grafana", &["DNS:grafana.monitoring.svc"], 0x141);
    let (right, wrong) = (basic("prometheus", "scrape-password"), basic("prometheus", "guess"));

    let nothing = get(&anonymous, proxy.addr, "/metrics", &[]).await;
    assert_eq!(nothing.status, StatusCode::UNAUTHORIZED);
    assert_eq!(challenges(&nothing), [CHALLENGE, BASIC_CHALLENGE], "one challenge per method, in PROXY_AUTH order");

    let cases: [(&str, &TlsClient, Option<&str>, StatusCode); 6] = [
        ("no certificate, right password", &anonymous, Some(&right), StatusCode::OK),
        ("no certificate, wrong password", &anonymous, Some(&wrong), StatusCode::UNAUTHORIZED),
        ("allowed certificate, no password", &prometheus, None, StatusCode::OK),
        ("certificate not allowed, no password", &grafana, None, StatusCode::FORBIDDEN),
        ("certificate not allowed, right password", &grafana, Some(&right), StatusCode::OK),
        // The more actionable answer wins: the certificate was valid, only not allowed.
        ("certificate not allowed, wrong password", &grafana, Some(&wrong), StatusCode::FORBIDDEN),
    ];
    for (case, client, authorization, expected) in cases {
        let headers: Vec<(&str, &str)> = authorization.iter().map(|a| ("authorization", *a)).collect();
        let answer = get(client, proxy.addr, "/metrics", &headers).await;
        assert_eq!(answer.status, expected, "{case}: {}", answer.text());
        if expected == StatusCode::OK {
            assert_eq!(answer.text(), BODY, "{case}");
            let seen = bed.exporter.next_request().await;
            assert!(seen.headers.get("authorization").is_none(), "{case}: the password reached the exporter");
        }
    }
    assert!(bed.exporter.pending_requests().is_empty(), "a refused scrape reached the exporter");

    let metrics = anonymous.own_metrics(proxy.addr, &[("authorization", &right)]).await;
    for (method, outcome, count) in [
        ("none", "unauthenticated", 1.0),
        ("basic", "allowed", 3.0), // two scrapes and this metrics read
        ("basic", "unauthenticated", 1.0),
        ("client-cert", "allowed", 1.0),
        ("client-cert", "forbidden", 2.0),
    ] {
        assert_eq!(decisions(&metrics, method, outcome), count, "{method} {outcome}");
    }
}
