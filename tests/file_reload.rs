//! Files the proxy re-reads while it runs, black-box: the real binary with its htpasswd file
//! (`PROXY_BASIC_AUTH_FILE`) and its client CA bundle (`PROXY_CLIENT_CA_FILE`) in a directory laid
//! out as the kubelet lays out a Secret volume (`name -> ..data/name`, `..data -> ..TIMESTAMP`),
//! rotated the kubelet's way (a new timestamped directory, then `..data` swapped with a rename).
//!
//! A rotated file is used without a restart: a new htpasswd from the next request on (a user
//! removed is refused even though the proxy remembered their password), a new CA from the next
//! handshake on (a client certificate from the old CA is refused). A broken file keeps the old
//! content, with one warning and one count in `windows_exporter_proxy_reload_failures_total{file}`,
//! however many times it is looked at again. The outcomes of the proxy's looks are read from its
//! trace lines (`windows_exporter_proxy::reload=trace`), so nothing here sleeps.
//! The serving pair's and the exporter hop's rotations are tests/tls_serving.rs and
//! tests/exporter_tls.rs.

// A Secret volume's symlinks, and the files made with openssl and htpasswd: Unix only (the
// Windows build's reloading is the same code, exercised by the unit tests in src/reload.rs).
#![cfg(unix)]

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use http::StatusCode;
use support::certificates::{Leaf, Pki};
use support::tls::{TlsClient, alert_received};
use support::{Client, FakeExporter, ProxyProcess, metric};

const PLAIN: &str = "# HELP up\nup 1\n";
const LOG: &str = "info,windows_exporter_proxy::reload=trace";

/// A Secret volume as the kubelet writes it: each file a symlink through `..data`.
struct SecretVolume {
    dir: PathBuf,
    version: usize,
}

impl SecretVolume {
    /// A volume in `dir` holding `files`.
    fn new(dir: PathBuf, files: &[(&str, &[u8])]) -> SecretVolume {
        std::fs::create_dir_all(&dir).unwrap();
        let mut volume = SecretVolume { dir, version: 0 };
        volume.update(files);
        for (name, _) in files {
            std::os::unix::fs::symlink(Path::new("..data").join(name), volume.dir.join(name)).unwrap();
        }
        volume
    }

    /// The path a pod reads `name` at.
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// New contents, the kubelet's way: a new directory, then `..data` swapped atomically.
    fn update(&mut self, files: &[(&str, &[u8])]) {
        self.version += 1;
        let version = format!("..2026_12_07_00_00_{:02}.{}", self.version, std::process::id());
        std::fs::create_dir(self.dir.join(&version)).unwrap();
        for (name, content) in files {
            std::fs::write(self.dir.join(&version).join(name), content).unwrap();
        }
        let staged = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&version, &staged).unwrap();
        std::fs::rename(&staged, self.dir.join("..data")).unwrap();
    }
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

/// `user:bcrypt` lines at cost 4 (fast; the proxy takes any cost htpasswd writes).
fn htpasswd(users: &[(&str, &str)]) -> Vec<u8> {
    users
        .iter()
        .map(|(user, password)| format!("{user}:{}\n", bcrypt::hash(password, 4).unwrap()))
        .collect::<String>()
        .into_bytes()
}

async fn status(addr: SocketAddr, user: &str, password: &str) -> StatusCode {
    Client::connect(addr).await.get("/metrics", &[("authorization", &basic(user, password))]).await.status
}

/// Waits for the trace line of a look at the files described as `what` with `outcome`.
async fn wait_for_outcome(proxy: &mut ProxyProcess, what: &str, outcome: &str) -> serde_json::Value {
    proxy
        .wait_for_log(&format!("a look at the {what} with outcome {outcome}"), |l| {
            l["what"] == what && l["outcome"] == outcome
        })
        .await
}

fn failures(file: &Path) -> String {
    format!("windows_exporter_proxy_reload_failures_total{{file=\"{}\"}}", file.display())
}

#[tokio::test]
async fn a_rotated_htpasswd_file_applies_to_the_next_request_and_a_broken_one_keeps_the_old_users() {
    let pki = Pki::new("htpasswd-reload");
    let mut volume = SecretVolume::new(pki.path("basic-auth"), &[("auth", &htpasswd(&[("alice", "pw-a")]))]);
    let file = volume.path("auth");
    let exporter = FakeExporter::serving(Bytes::from_static(PLAIN.as_bytes()), "text/plain; version=0.0.4").await;
    let port = exporter.port();
    let mut proxy = ProxyProcess::start(&[
        ("PROXY_HOSTIP", "127.0.0.1"),
        ("PROXY_PORT", &port),
        ("PROXY_AUTH", "basic"),
        ("PROXY_ALLOW_PLAINTEXT_CREDENTIALS", "true"),
        ("PROXY_BASIC_AUTH_FILE", file.to_str().unwrap()),
        ("RUST_LOG", LOG),
    ])
    .await;
    // Allowed, and so remembered for minutes.
    assert_eq!(status(proxy.addr, "alice", "pw-a").await, StatusCode::OK);
    assert_eq!(status(proxy.addr, "bob", "pw-b").await, StatusCode::UNAUTHORIZED);

    // Alice leaves, Bob joins.
    volume.update(&[("auth", &htpasswd(&[("bob", "pw-b")]))]);
    let reloaded =
        proxy.wait_for_message("htpasswd file reloaded; the next request is checked against its users").await;
    assert_eq!(reloaded["variable"], "PROXY_BASIC_AUTH_FILE", "{reloaded}");
    assert_eq!(reloaded["file"], file.to_str().unwrap(), "{reloaded}");
    assert_eq!(status(proxy.addr, "bob", "pw-b").await, StatusCode::OK);
    assert_eq!(status(proxy.addr, "alice", "pw-a").await, StatusCode::UNAUTHORIZED, "a removed user still got in");

    // A hash htpasswd -B would not write: refused, and Bob keeps working.
    volume.update(&[("auth", b"carol:plain-text-secret\n")]);
    let warning = proxy.wait_for_message("new htpasswd file cannot be used; the previous users stay in use").await;
    assert_eq!(warning["level"], "WARN", "{warning}");
    assert_eq!(warning["variable"], "PROXY_BASIC_AUTH_FILE", "{warning}");
    let error = warning["error"].as_str().unwrap();
    assert!(error.starts_with("line 1: the hash for user \"carol\""), "{warning}");
    assert!(!error.contains("plain-text-secret"), "the secret reached the log: {warning}");
    // Looked at again and again: nothing more is said or counted.
    wait_for_outcome(&mut proxy, "htpasswd file", "StillRejected").await;
    wait_for_outcome(&mut proxy, "htpasswd file", "StillRejected").await;
    assert_eq!(status(proxy.addr, "bob", "pw-b").await, StatusCode::OK, "the previous users stay in use");
    assert_eq!(status(proxy.addr, "carol", "plain-text-secret").await, StatusCode::UNAUTHORIZED);
    let warnings = proxy.log.iter().filter(|l| l.contains("new htpasswd file cannot be used")).count();
    assert_eq!(warnings, 1, "a broken file is logged once");
    let mut client = Client::connect(proxy.addr).await;
    let scraped = client.get("/proxy/metrics", &[("authorization", &basic("bob", "pw-b"))]).await;
    assert_eq!(scraped.status, StatusCode::OK);
    let metrics = support::parse_metrics(&scraped.text());
    assert_eq!(metric(&metrics, &failures(&file)), 1.0, "{}", scraped.text());
    assert!(!proxy.log.iter().any(|l| l.contains("$2")), "a hash reached the log");
}

#[tokio::test]
async fn a_rotated_client_ca_applies_to_new_handshakes_and_a_broken_one_keeps_the_old_ca() {
    let pki = Pki::new("client-ca-reload");
    let server = pki.issue("server", &Leaf::server(0x200));
    let old_client = pki.issue("old-client", &Leaf::client("prometheus", 0x201));
    let new_ca = pki.other_ca("rotated");
    let new_client = new_ca.issue("new-client", &Leaf::client("prometheus", 0x202));
    let mut volume = SecretVolume::new(pki.path("client-ca"), &[("ca.crt", &std::fs::read(&pki.ca).unwrap())]);
    let ca_file = volume.path("ca.crt");
    let exporter = FakeExporter::serving(Bytes::from_static(PLAIN.as_bytes()), "text/plain; version=0.0.4").await;
    let port = exporter.port();
    let mut proxy = ProxyProcess::start(&[
        ("PROXY_HOSTIP", "127.0.0.1"),
        ("PROXY_PORT", &port),
        ("PROXY_TLS_CERT_FILE", server.chain.to_str().unwrap()),
        ("PROXY_TLS_KEY_FILE", server.key.to_str().unwrap()),
        ("PROXY_CLIENT_CA_FILE", ca_file.to_str().unwrap()),
        ("PROXY_AUTH", "client-cert"),
        ("RUST_LOG", LOG),
    ])
    .await;
    // TLS 1.2, so a refused certificate fails the handshake itself with the alert.
    let client = |chain: &Path, key: &Path| {
        TlsClient { versions: vec![&rustls::version::TLS12], ..TlsClient::new(&pki.ca) }.with_identity(chain, key)
    };
    let old = client(&old_client.chain, &old_client.key);
    let new = client(&new_client.chain, &new_client.key);
    assert_eq!(old.get(proxy.addr, "/metrics").await.unwrap().0.status, StatusCode::OK);
    let refused = new.connect(proxy.addr).await.expect_err("the new CA is not trusted yet");
    assert_eq!(alert_received(&refused), Some(rustls::AlertDescription::UnknownCA), "{refused:?}");

    volume.update(&[("ca.crt", &std::fs::read(&new_ca.certificate).unwrap())]);
    let reloaded =
        proxy.wait_for_message("client CA bundle reloaded; new handshakes verify client certificates against it").await;
    assert_eq!(reloaded["variable"], "PROXY_CLIENT_CA_FILE", "{reloaded}");
    assert_eq!(new.get(proxy.addr, "/metrics").await.unwrap().0.status, StatusCode::OK);
    let refused = old.connect(proxy.addr).await.expect_err("a certificate from the old CA is refused");
    assert_eq!(alert_received(&refused), Some(rustls::AlertDescription::UnknownCA), "{refused:?}");

    // Not a certificate at all: the rotated CA stays in use.
    volume.update(&[("ca.crt", b"not a certificate\n")]);
    let warning = proxy.wait_for_message("new client CA bundle cannot be used; the previous one stays in use").await;
    assert_eq!(warning["level"], "WARN", "{warning}");
    assert_eq!(warning["variable"], "PROXY_CLIENT_CA_FILE", "{warning}");
    assert_eq!(warning["file"], ca_file.to_str().unwrap(), "{warning}");
    assert!(warning["error"].as_str().unwrap().starts_with("has no CERTIFICATE PEM block"), "{warning}");
    wait_for_outcome(&mut proxy, "client CA bundle", "StillRejected").await;
    wait_for_outcome(&mut proxy, "client CA bundle", "StillRejected").await;
    assert_eq!(new.get(proxy.addr, "/metrics").await.unwrap().0.status, StatusCode::OK, "the rotated CA stays in use");
    assert!(old.connect(proxy.addr).await.is_err(), "the broken file brought back no old CA");
    let warnings = proxy.log.iter().filter(|l| l.contains("new client CA bundle cannot be used")).count();
    assert_eq!(warnings, 1, "a broken file is logged once");
    let metrics = new.own_metrics(proxy.addr, &[]).await;
    assert_eq!(metric(&metrics, &failures(&ca_file)), 1.0);
}
