//! The secured hop to the exporter, against a real exporter-toolkit server: Debian's
//! `prometheus-node-exporter` 1.5 with a `--web.config.file` that requires TLS, a client
//! certificate (`RequireAndVerifyClientCert`) and basic auth, the same toolkit and file format
//! windows_exporter reads. Only its `loadavg` collector runs, to keep it cheap.
//!
//! Each test makes its own CA and certificates with the openssl CLI and its own bcrypt hash with
//! `htpasswd -nbBC 10` (Debian's apache2-utils), starts its own exporter on its own 127.0.0.x
//! address, and checks what a scraper of the proxy sees: the scrape and `/ready` pass with the
//! right settings, and each wrong one is a 502 (a 503 on `/ready`) that names its cause.

// All but one test need Debian tools and are `cfg(unix)`; on Windows the helpers only they use are unused.
#![cfg_attr(not(unix), allow(dead_code, unused_imports))]

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use http::StatusCode;
use support::certificates::{self, Issued, Leaf, Pki, Role};
use support::{FakeExporter, ProxyProcess, Scraped, reply, run_to_exit, within};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const NODE_EXPORTER: &str = "/usr/bin/prometheus-node-exporter";
const USER: &str = "prometheus";
const PASSWORD: &str = "correct horse battery staple";

/// A running node_exporter serving HTTPS on `ip`. Killed on drop.
struct NodeExporter {
    _child: Child,
    ip: String,
    port: u16,
}

impl NodeExporter {
    /// Starts it on `ip` with `web_config`; waits for its "TLS is enabled" log line.
    async fn start(ip: &str, web_config: &Path) -> NodeExporter {
        // node_exporter cannot report the port it bound, so pick a free one; retry if another
        // process takes it in between.
        for _ in 0..5 {
            let port = std::net::TcpListener::bind((ip, 0)).unwrap().local_addr().unwrap().port();
            let mut child = Command::new(NODE_EXPORTER)
                .arg(format!("--web.listen-address={ip}:{port}"))
                .arg(format!("--web.config.file={}", web_config.display()))
                .args(["--collector.disable-defaults", "--collector.loadavg", "--log.level=info"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .expect("run /usr/bin/prometheus-node-exporter (Debian package prometheus-node-exporter)");
            let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
            let mut log = Vec::new();
            let started = within("node_exporter to start", async {
                while let Ok(Some(line)) = lines.next_line().await {
                    let enabled = line.contains("TLS is enabled");
                    log.push(line);
                    if enabled {
                        return true;
                    }
                }
                false
            })
            .await;
            if started {
                // Keep draining its log so it never blocks on a full pipe.
                tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
                return NodeExporter { _child: child, ip: ip.to_owned(), port };
            }
            assert!(
                log.iter().any(|l| l.contains("address already in use")),
                "node_exporter failed:\n{}",
                log.join("\n")
            );
        }
        panic!("no free port for node_exporter on {ip}");
    }
}

/// One test's certificates and exporter web config.
struct Bed {
    /// The exporter's CA (`pki.ca`), which signs both its server certificate and the proxy's
    /// client certificate; other files of the test go in its directory.
    pki: Pki,
    client: Issued,
}

impl Bed {
    /// A CA, a client certificate it signs, and the bcrypt'd password in a file.
    fn new() -> Bed {
        let pki = Pki::new("exporter");
        let client = pki.issue("proxy-client", &Leaf::client("windows-exporter-proxy", 0x5eed_0001));
        std::fs::write(pki.path("password"), format!("{PASSWORD}\n")).unwrap();
        Bed { pki, client }
    }

    /// A server certificate for `sans`, and a web config requiring TLS with it, a client
    /// certificate from this bed's CA, and basic auth for [`USER`].
    fn web_config(&self, sans: &[&str]) -> PathBuf {
        let server = self.pki.issue("exporter", &Leaf::new(Role::Server, "windows_exporter", sans, 0x5eed_0002));
        let hash = bcrypt(PASSWORD);
        let config = format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {}\nbasic_auth_users:\n  {USER}: '{hash}'\n",
            server.certificate.display(),
            server.key.display(),
            self.pki.ca.display(),
        );
        let path = self.pki.path("web-config.yml");
        std::fs::write(&path, config).unwrap();
        path
    }

    fn password_file(&self) -> String {
        self.pki.path("password").display().to_string()
    }

    /// Every hop variable set right for `exporter`, with `overrides` replacing or adding some
    /// (an empty value removes one).
    fn vars(&self, exporter: &NodeExporter, overrides: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut vars: Vec<(String, String)> = [
            ("PROXY_HOSTIP", exporter.ip.clone()),
            ("PROXY_PORT", exporter.port.to_string()),
            ("PROXY_EXPORTER_SCHEME", "https".to_owned()),
            ("PROXY_EXPORTER_CA_FILE", self.pki.ca.display().to_string()),
            ("PROXY_EXPORTER_CLIENT_CERT_FILE", self.client.certificate.display().to_string()),
            ("PROXY_EXPORTER_CLIENT_KEY_FILE", self.client.key.display().to_string()),
            ("PROXY_EXPORTER_BASIC_AUTH_USERNAME", USER.to_owned()),
            ("PROXY_EXPORTER_BASIC_AUTH_PASSWORD_FILE", self.password_file()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        for (name, value) in overrides {
            vars.retain(|(k, _)| k != name);
            if !value.is_empty() {
                vars.push((name.to_string(), value.to_string()));
            }
        }
        vars
    }

    async fn proxy(&self, exporter: &NodeExporter, overrides: &[(&str, &str)]) -> ProxyProcess {
        let vars = self.vars(exporter, overrides);
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        ProxyProcess::start(&vars).await
    }
}

/// A bcrypt hash of `password` at cost 10, as exporter-toolkit's docs make one.
fn bcrypt(password: &str) -> String {
    let output = std::process::Command::new("htpasswd")
        .args(["-nbBC", "10", "", password])
        .output()
        .expect("run htpasswd (Debian package apache2-utils)");
    assert!(output.status.success(), "htpasswd: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap().trim().trim_start_matches(':').to_owned()
}

async fn scrape(proxy: &ProxyProcess) -> Scraped {
    support::get(proxy.addr, "/metrics").await
}

fn assert_bad_gateway(scraped: &Scraped, needles: &[&str]) {
    let text = scraped.text();
    assert_eq!(scraped.status, StatusCode::BAD_GATEWAY, "{text}");
    assert_eq!(text.trim_end().lines().count(), 1, "one line: {text}");
    for needle in needles {
        assert!(text.contains(needle), "{needle:?} not in {text:?}");
    }
}

#[cfg(unix)] // openssl CLI, htpasswd, node-exporter: Debian tools, not on Windows (.github/workflows/ci.yml)
#[tokio::test]
async fn scrapes_and_ready_pass_with_tls_a_client_certificate_and_basic_auth() {
    let bed = Bed::new();
    // An IP-only certificate: the server name defaults to PROXY_HOSTIP, an IP address.
    let exporter = NodeExporter::start("127.0.0.21", &bed.web_config(&["IP:127.0.0.21"])).await;
    let proxy = bed.proxy(&exporter, &[]).await;

    // /ready first: with no scrape yet it must probe the exporter, which answers 401 to a probe
    // without the proxy's credentials.
    let ready = support::get(proxy.addr, "/ready").await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.text());
    assert!(ready.text().starts_with("ready: exporter https://127.0.0.21:"), "{}", ready.text());

    let scraped = scrape(&proxy).await;
    assert_eq!(scraped.status, StatusCode::OK, "{}", scraped.text());
    assert!(scraped.text().lines().any(|l| l.starts_with("node_load1 ")), "{}", scraped.text());

    // The CA bundle and the client certificate show their expiry, as openssl reads it.
    let metrics = support::own_metrics(&mut support::Client::connect(proxy.addr).await).await;
    for file in [&bed.pki.ca, &bed.client.certificate] {
        let series =
            format!("windows_exporter_proxy_tls_certificate_expiry_timestamp_seconds{{file=\"{}\"}}", file.display());
        assert_eq!(support::metric(&metrics, &series), certificates::not_after(file) as f64, "{series}");
    }
}

#[cfg(unix)] // openssl CLI, htpasswd, node-exporter: Debian tools, not on Windows (.github/workflows/ci.yml)
#[tokio::test]
async fn the_server_name_setting_replaces_the_host_ip_for_a_shared_certificate() {
    let bed = Bed::new();
    let exporter = NodeExporter::start("127.0.0.22", &bed.web_config(&["DNS:windows-exporter.nodes.internal"])).await;

    let named = bed.proxy(&exporter, &[("PROXY_EXPORTER_SERVER_NAME", "windows-exporter.nodes.internal")]).await;
    assert_eq!(scrape(&named).await.status, StatusCode::OK);
    assert_eq!(support::get(named.addr, "/ready").await.status, StatusCode::OK);

    // Without it the proxy checks the certificate against 127.0.0.22, which it does not name.
    let by_ip = bed.proxy(&exporter, &[]).await;
    assert_bad_gateway(&scrape(&by_ip).await, &["name mismatch", "PROXY_EXPORTER_SERVER_NAME", "127.0.0.22"]);
}

#[cfg(unix)] // openssl CLI, htpasswd, node-exporter: Debian tools, not on Windows (.github/workflows/ci.yml)
#[tokio::test]
async fn an_exporter_certificate_from_another_ca_is_a_502_unknown_ca() {
    let bed = Bed::new();
    let exporter = NodeExporter::start("127.0.0.23", &bed.web_config(&["IP:127.0.0.23"])).await;
    let other = bed.pki.other_ca("some-other");

    let proxy = bed.proxy(&exporter, &[("PROXY_EXPORTER_CA_FILE", other.certificate.to_str().unwrap())]).await;

    assert_bad_gateway(&scrape(&proxy).await, &["unknown CA", "PROXY_EXPORTER_CA_FILE"]);
    let ready = support::get(proxy.addr, "/ready").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(ready.text().contains("unknown CA"), "{}", ready.text());
}

#[cfg(unix)] // openssl CLI, htpasswd, node-exporter: Debian tools, not on Windows (.github/workflows/ci.yml)
#[tokio::test]
async fn no_client_certificate_is_a_502_client_certificate_required() {
    let bed = Bed::new();
    let exporter = NodeExporter::start("127.0.0.24", &bed.web_config(&["IP:127.0.0.24"])).await;

    let proxy =
        bed.proxy(&exporter, &[("PROXY_EXPORTER_CLIENT_CERT_FILE", ""), ("PROXY_EXPORTER_CLIENT_KEY_FILE", "")]).await;

    assert_bad_gateway(&scrape(&proxy).await, &["client certificate required", "PROXY_EXPORTER_CLIENT_CERT_FILE"]);
}

#[cfg(unix)] // openssl CLI, htpasswd, node-exporter: Debian tools, not on Windows (.github/workflows/ci.yml)
#[tokio::test]
async fn a_client_certificate_the_exporter_does_not_trust_is_a_502_naming_it() {
    let bed = Bed::new();
    let exporter = NodeExporter::start("127.0.0.25", &bed.web_config(&["IP:127.0.0.25"])).await;
    let stranger = bed.pki.other_ca("stranger").issue("stranger", &Leaf::client("stranger", 0x5eed_0003));

    let proxy = bed
        .proxy(
            &exporter,
            &[
                ("PROXY_EXPORTER_CLIENT_CERT_FILE", stranger.certificate.to_str().unwrap()),
                ("PROXY_EXPORTER_CLIENT_KEY_FILE", stranger.key.to_str().unwrap()),
            ],
        )
        .await;

    assert_bad_gateway(&scrape(&proxy).await, &["client certificate", "rejected", "PROXY_EXPORTER_CLIENT_CERT_FILE"]);
}

#[cfg(unix)] // openssl CLI, htpasswd, node-exporter: Debian tools, not on Windows (.github/workflows/ci.yml)
#[tokio::test]
async fn a_wrong_password_is_a_502_naming_the_proxy_credential_settings() {
    let bed = Bed::new();
    let exporter = NodeExporter::start("127.0.0.26", &bed.web_config(&["IP:127.0.0.26"])).await;
    let wrong = bed.pki.path("wrong-password");
    std::fs::write(&wrong, "Tr0ub4dor&3\n").unwrap();

    let proxy = bed.proxy(&exporter, &[("PROXY_EXPORTER_BASIC_AUTH_PASSWORD_FILE", wrong.to_str().unwrap())]).await;

    let scraped = scrape(&proxy).await;
    assert_bad_gateway(
        &scraped,
        &["401", "PROXY_EXPORTER_BASIC_AUTH_USERNAME", "PROXY_EXPORTER_BASIC_AUTH_PASSWORD_FILE"],
    );
    assert!(!scraped.text().contains("Tr0ub4dor"), "the password leaked: {}", scraped.text());
    assert!(!scraped.headers.contains_key("www-authenticate"), "the exporter's challenge reached the scraper");
    let ready = support::get(proxy.addr, "/ready").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE, "{}", ready.text());
    assert!(ready.text().contains("PROXY_EXPORTER_BASIC_AUTH_PASSWORD_FILE"), "{}", ready.text());
    assert!(proxy.log.iter().all(|l| !l.contains("Tr0ub4dor")), "the password is in the log");
}

#[cfg(unix)] // openssl CLI, htpasswd, node-exporter: Debian tools, not on Windows (.github/workflows/ci.yml)
#[tokio::test]
async fn no_credentials_at_all_is_a_502_saying_the_proxy_sends_none() {
    let bed = Bed::new();
    let exporter = NodeExporter::start("127.0.0.27", &bed.web_config(&["IP:127.0.0.27"])).await;

    let proxy = bed
        .proxy(
            &exporter,
            &[("PROXY_EXPORTER_BASIC_AUTH_USERNAME", ""), ("PROXY_EXPORTER_BASIC_AUTH_PASSWORD_FILE", "")],
        )
        .await;

    // The scraper's own credentials are not what failed: the message points at the proxy's.
    let scraped = support::Client::connect(proxy.addr).await.get("/metrics", &[]).await;
    assert_bad_gateway(&scraped, &["401", "sends no exporter credentials", "PROXY_EXPORTER_BASIC_AUTH_USERNAME"]);
}

#[cfg(unix)] // openssl CLI, htpasswd, node-exporter: Debian tools, not on Windows (.github/workflows/ci.yml)
#[tokio::test]
async fn insecure_skip_verify_connects_to_any_certificate_and_warns() {
    let bed = Bed::new();
    let exporter = NodeExporter::start("127.0.0.28", &bed.web_config(&["DNS:unrelated.example"])).await;

    let proxy =
        bed.proxy(&exporter, &[("PROXY_EXPORTER_CA_FILE", ""), ("PROXY_EXPORTER_INSECURE_SKIP_VERIFY", "true")]).await;

    assert_eq!(scrape(&proxy).await.status, StatusCode::OK);
    // Logged at start, before the listening line.
    let warning = proxy
        .log
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["variable"] == "PROXY_EXPORTER_INSECURE_SKIP_VERIFY");
    let warning = warning.unwrap_or_else(|| panic!("no warning naming the variable in\n{}", proxy.log.join("\n")));
    assert_eq!(warning["level"], "WARN", "{warning}");
}

#[cfg(unix)] // openssl CLI, htpasswd, node-exporter: Debian tools, not on Windows (.github/workflows/ci.yml)
#[tokio::test]
async fn a_replaced_client_certificate_is_used_and_connections_made_with_the_old_one_are_dropped() {
    let bed = Bed::new();
    let exporter = NodeExporter::start("127.0.0.29", &bed.web_config(&["IP:127.0.0.29"])).await;
    let (mut proxy, mut client, live_cert, live_key) = live_client_certificate(&bed, &exporter).await;

    // A key that does not match: the old pair stays in use, the failure is counted and logged.
    let other = bed.pki.issue("unrelated", &Leaf::client("unrelated", 0x5eed_0004));
    std::fs::copy(&other.key, &live_key).unwrap();
    let failures = "windows_exporter_proxy_tls_reload_failures_total";
    proxy.wait_for_metrics("the broken pair to be counted", |m| support::metric(m, failures) == 1.0).await;
    let warning =
        proxy.wait_for_log("the reload failure warning", |l| l["variable"] == "PROXY_EXPORTER_CLIENT_KEY_FILE").await;
    assert_eq!(warning["level"], "WARN", "{warning}");
    assert_eq!(client.get("/metrics", &[]).await.status, StatusCode::OK, "the old pair stopped working");

    // A certificate the exporter does not trust: once the proxy loads it, the kept-alive
    // connection that was made with the good one must go, or scrapes would keep passing on it.
    // A serial of eight bytes with the top bit set: the log must print it as openssl does.
    let stranger = bed.pki.other_ca("stranger").issue("stranger", &Leaf::client("stranger", 0xe1a5_0000_0000_0005));
    replace(&stranger, &live_cert, &live_key);
    let refused = scrape_until(&mut client, "the stranger certificate to be used", StatusCode::BAD_GATEWAY).await;
    assert!(refused.text().contains("PROXY_EXPORTER_CLIENT_CERT_FILE"), "{}", refused.text());
    let reloaded =
        proxy.wait_for_message("exporter client certificate reloaded; connections made with the old one closed").await;
    assert_eq!(reloaded["serial"], stranger.serial_hex().as_str(), "{reloaded}");

    // And back to a trusted one.
    let renewed = bed.pki.issue("proxy-client-renewed", &Leaf::client("windows-exporter-proxy", 0x5eed_0006));
    replace(&renewed, &live_cert, &live_key);
    scrape_until(&mut client, "the renewed certificate to be used", StatusCode::OK).await;
}

#[cfg(unix)] // openssl CLI, htpasswd, node-exporter: Debian tools, not on Windows (.github/workflows/ci.yml)
#[tokio::test]
async fn a_client_certificate_outside_its_validity_is_not_used_while_the_current_one_is_valid() {
    let bed = Bed::new();
    let exporter = NodeExporter::start("127.0.0.33", &bed.web_config(&["IP:127.0.0.33"])).await;
    let (mut proxy, mut client, live_cert, live_key) = live_client_certificate(&bed, &exporter).await;

    // Issued by the CA the exporter trusts, but expired: the exporter would refuse it.
    let expired = bed.pki.issue(
        "expired-client",
        &Leaf {
            validity: Some(("20200101000000Z", "20200201000000Z")),
            ..Leaf::client("windows-exporter-proxy", 0x5eed_0007)
        },
    );
    replace(&expired, &live_cert, &live_key);
    let failures = "windows_exporter_proxy_tls_reload_failures_total";
    proxy.wait_for_metrics("the expired pair to be counted", |m| support::metric(m, failures) == 1.0).await;
    let warning =
        proxy.wait_for_log("the expired pair's warning", |l| l["variable"] == "PROXY_EXPORTER_CLIENT_CERT_FILE").await;
    assert_eq!(warning["level"], "WARN", "{warning}");
    assert!(warning["error"].as_str().unwrap().starts_with("has expired"), "{warning}");
    // A new connection, so the certificate presented is the one in use now.
    let mut fresh = support::Client::connect(proxy.addr).await;
    assert_eq!(fresh.get("/metrics", &[]).await.status, StatusCode::OK, "the valid pair stays in use");
    assert!(!proxy.log.iter().any(|l| l.contains("exporter client certificate reloaded")));

    let renewed = bed.pki.issue("proxy-client-renewed", &Leaf::client("windows-exporter-proxy", 0x5eed_0008));
    replace(&renewed, &live_cert, &live_key);
    let reloaded =
        proxy.wait_for_message("exporter client certificate reloaded; connections made with the old one closed").await;
    assert_eq!(reloaded["serial"], renewed.serial_hex().as_str(), "{reloaded}");
    scrape_until(&mut client, "the renewed certificate to be used", StatusCode::OK).await;
}

/// A proxy in front of `exporter` that reads its client certificate from files the test swaps
/// (a copy of the bed's client pair), and a client whose first scrape through it succeeded.
#[cfg(unix)]
async fn live_client_certificate(
    bed: &Bed,
    exporter: &NodeExporter,
) -> (ProxyProcess, support::Client, std::path::PathBuf, std::path::PathBuf) {
    let live_cert = bed.pki.path("live-client.crt");
    let live_key = bed.pki.path("live-client.key");
    std::fs::copy(&bed.client.certificate, &live_cert).unwrap();
    std::fs::copy(&bed.client.key, &live_key).unwrap();
    let proxy = bed
        .proxy(
            exporter,
            &[
                ("PROXY_EXPORTER_CLIENT_CERT_FILE", live_cert.to_str().unwrap()),
                ("PROXY_EXPORTER_CLIENT_KEY_FILE", live_key.to_str().unwrap()),
            ],
        )
        .await;
    let mut client = support::Client::connect(proxy.addr).await;
    assert_eq!(client.get("/metrics", &[]).await.status, StatusCode::OK);
    (proxy, client, live_cert, live_key)
}

/// Replaces the files at `cert` and `key` by `leaf`'s with a rename each, as an editor or
/// cert-manager's CSI driver does.
fn replace(leaf: &Issued, cert: &Path, key: &Path) {
    for (from, to) in [(&leaf.key, key), (&leaf.certificate, cert)] {
        let staged = to.with_extension("new");
        std::fs::copy(from, &staged).unwrap();
        std::fs::rename(&staged, to).unwrap();
    }
}

/// Scrapes on `client` until the answer has `status`, within the support timeout.
async fn scrape_until(client: &mut support::Client, what: &str, status: StatusCode) -> Scraped {
    within(what, async {
        loop {
            let scraped = client.get("/metrics", &[]).await;
            if scraped.status == status {
                return scraped;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    })
    .await
}

#[cfg(unix)] // openssl CLI, htpasswd, node-exporter: Debian tools, not on Windows (.github/workflows/ci.yml)
#[tokio::test]
async fn the_exporter_gets_the_proxy_credentials_never_the_scrapers() {
    let mut exporter = FakeExporter::start(|_| async { reply(StatusCode::OK, &[], "up 1\n") }).await;
    let bed = Bed::new();
    let proxy = ProxyProcess::start(&[
        ("PROXY_HOSTIP", "127.0.0.1"),
        ("PROXY_PORT", &exporter.port()),
        ("PROXY_EXPORTER_BASIC_AUTH_USERNAME", USER),
        ("PROXY_EXPORTER_BASIC_AUTH_PASSWORD_FILE", &bed.password_file()),
    ])
    .await;

    let mut client = support::Client::connect(proxy.addr).await;
    let scraped = client.get("/metrics", &[("authorization", "Bearer the-scrapers-service-account-token")]).await;
    assert_eq!(scraped.status, StatusCode::OK);
    assert_eq!(support::get(proxy.addr, "/ready").await.status, StatusCode::OK);

    let expected = format!("Basic {}", base64(format!("{USER}:{PASSWORD}").as_bytes()));
    let seen = exporter.pending_requests();
    assert!(!seen.is_empty());
    for request in seen {
        let values: Vec<_> = request.headers.get_all("authorization").iter().collect();
        assert_eq!(values, vec![expected.as_str()], "{} carried {values:?}", request.uri);
    }
}

#[cfg(unix)] // openssl CLI, htpasswd, node-exporter: Debian tools, not on Windows (.github/workflows/ci.yml)
#[tokio::test]
async fn hop_settings_that_cannot_work_exit_64_naming_the_variable() {
    let bed = Bed::new();
    let base = [("PROXY_HOSTIP", "127.0.0.1"), ("PROXY_EXPORTER_SCHEME", "https")];
    let ca = bed.pki.ca.to_str().unwrap();
    let cert = bed.client.certificate.to_str().unwrap();
    let key = bed.client.key.to_str().unwrap();
    let missing = bed.pki.path("absent.pem");
    let missing = missing.to_str().unwrap();
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("PROXY_EXPORTER_SCHEME", "ftp")], r#"PROXY_EXPORTER_SCHEME="ftp" is not valid"#),
        (&[], "PROXY_EXPORTER_CA_FILE is required"),
        (&[("PROXY_EXPORTER_CA_FILE", missing)], "PROXY_EXPORTER_CA_FILE="),
        (
            &[("PROXY_EXPORTER_CA_FILE", ca), ("PROXY_EXPORTER_CLIENT_CERT_FILE", cert)],
            "PROXY_EXPORTER_CLIENT_KEY_FILE",
        ),
        (&[("PROXY_EXPORTER_CA_FILE", ca), ("PROXY_EXPORTER_CLIENT_KEY_FILE", key)], "PROXY_EXPORTER_CLIENT_CERT_FILE"),
        (
            &[
                ("PROXY_EXPORTER_CA_FILE", ca),
                ("PROXY_EXPORTER_CLIENT_CERT_FILE", cert),
                ("PROXY_EXPORTER_CLIENT_KEY_FILE", ca),
            ],
            "PROXY_EXPORTER_CLIENT_KEY_FILE=",
        ),
        (
            &[("PROXY_EXPORTER_CA_FILE", ca), ("PROXY_EXPORTER_INSECURE_SKIP_VERIFY", "yes please")],
            "PROXY_EXPORTER_INSECURE_SKIP_VERIFY=\"yes please\"",
        ),
        (
            &[("PROXY_EXPORTER_CA_FILE", ca), ("PROXY_EXPORTER_SERVER_NAME", "not a name")],
            "PROXY_EXPORTER_SERVER_NAME=\"not a name\"",
        ),
        (
            &[("PROXY_EXPORTER_CA_FILE", ca), ("PROXY_EXPORTER_BASIC_AUTH_USERNAME", USER)],
            "PROXY_EXPORTER_BASIC_AUTH_PASSWORD_FILE",
        ),
        (
            &[
                ("PROXY_EXPORTER_CA_FILE", ca),
                ("PROXY_EXPORTER_BASIC_AUTH_USERNAME", USER),
                ("PROXY_EXPORTER_BASIC_AUTH_PASSWORD_FILE", missing),
            ],
            "PROXY_EXPORTER_BASIC_AUTH_PASSWORD_FILE=",
        ),
        (&[("PROXY_EXPORTER_SCHEME", "http"), ("PROXY_EXPORTER_CA_FILE", ca)], "PROXY_EXPORTER_CA_FILE"),
    ];
    for (extra, expected) in cases {
        let mut vars: Vec<(&str, &str)> = base.to_vec();
        for (name, value) in extra.iter() {
            vars.retain(|(k, _)| k != name);
            vars.push((name, value));
        }
        let output = run_to_exit(&[], &vars).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(64), "{vars:?}: {stderr}");
        assert!(stderr.contains(expected), "{vars:?}: {expected:?} not in {stderr:?}");
        assert!(
            output.stdout.is_empty(),
            "{vars:?} logged before exiting: {}",
            String::from_utf8_lossy(&output.stdout)
        );
    }
}

/// Standard base64 with padding, as RFC 7617 wants in `Authorization: Basic`.
fn base64(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

#[cfg(unix)] // openssl CLI, htpasswd, node-exporter: Debian tools, not on Windows (.github/workflows/ci.yml)
#[tokio::test]
async fn a_changed_password_file_is_used_without_a_restart() {
    let mut exporter = FakeExporter::start(|_| async { reply(StatusCode::OK, &[], "up 1\n") }).await;
    let bed = Bed::new();
    let proxy = ProxyProcess::start(&[
        ("PROXY_HOSTIP", "127.0.0.1"),
        ("PROXY_PORT", &exporter.port()),
        ("PROXY_EXPORTER_BASIC_AUTH_USERNAME", USER),
        ("PROXY_EXPORTER_BASIC_AUTH_PASSWORD_FILE", &bed.password_file()),
    ])
    .await;
    let mut client = support::Client::connect(proxy.addr).await;
    assert_eq!(client.get("/metrics", &[]).await.status, StatusCode::OK);

    // The kubelet's way: a new file renamed over the old one.
    let staged = bed.pki.path("password.new");
    std::fs::write(&staged, "rotated-password\n").unwrap();
    std::fs::rename(&staged, bed.pki.path("password")).unwrap();

    let expected = format!("Basic {}", base64(format!("{USER}:rotated-password").as_bytes()));
    within("the new password to be sent", async {
        loop {
            assert_eq!(client.get("/metrics", &[]).await.status, StatusCode::OK);
            let seen = exporter.next_request().await;
            if seen.headers["authorization"] == expected.as_str() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn an_exporter_401_is_the_scrapers_only_when_it_answered_the_scrapers_own_credentials() {
    let exporter = FakeExporter::start(|_| async {
        reply(StatusCode::UNAUTHORIZED, &[("www-authenticate", "Basic realm=\"windows_exporter\"")], "Unauthorized\n")
    })
    .await;
    let proxy = ProxyProcess::start(&[("PROXY_HOSTIP", "127.0.0.1"), ("PROXY_PORT", &exporter.port())]).await;
    let mut client = support::Client::connect(proxy.addr).await;

    // No proxy credential of its own, so the scraper's Authorization went through: its answer.
    let forwarded = client.get("/metrics", &[("authorization", "Basic d3Jvbmc6d3Jvbmc=")]).await;
    assert_eq!(forwarded.status, StatusCode::UNAUTHORIZED);
    assert!(forwarded.headers.contains_key("www-authenticate"));

    // No credential at all: the proxy's settings are what is missing.
    let bare = client.get("/metrics", &[]).await;
    assert_bad_gateway(&bare, &["401 Unauthorized", "sends no exporter credentials"]);
}
