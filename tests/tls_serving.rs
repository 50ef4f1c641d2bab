//! HTTPS on the listener, as scrapers and the kubelet see it: bad TLS settings stop the proxy
//! with exit 64 before it binds; certificates rotate the kubelet's way and in place without a
//! restart; a broken new pair, or one outside its validity, keeps the old one serving; the header-read deadline covers the
//! handshake; probes and scrapes work over HTTPS; ALPN, minimum version and client certificates
//! behave as documented. Certificates are made per test with the openssl CLI.
// Not on Windows: every test makes certificates with the openssl CLI
// (see .github/workflows/ci.yml).
#![cfg(unix)]

mod support;

use std::path::Path;
#[cfg(unix)]
use std::path::PathBuf;
use std::time::Duration;

use support::certificates::{self, KeyFormat, Leaf, Pki};
use support::tls::TlsClient;
use support::{FakeExporter, ProxyProcess, metric, run_to_exit, within, within_for};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const EX_USAGE: i32 = 64;

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn stderr_lines(output: &std::process::Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stderr).lines().map(str::to_owned).collect()
}

/// Runs the binary with `vars` (and a host), expects exit 64 with one stderr line that starts
/// with `expected`, and nothing on stdout (nothing was logged, so nothing bound).
async fn expect_usage_error(vars: &[(&str, &str)], expected: &str) {
    let mut all = vec![("PROXY_HOSTIP", "127.0.0.1"), ("PROXY_LISTEN", "127.0.0.1:0")];
    all.extend_from_slice(vars);
    let output = run_to_exit(&[], &all).await;
    let lines = stderr_lines(&output);
    assert_eq!(output.status.code(), Some(EX_USAGE), "{vars:?}: {lines:?}");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with(expected), "expected {expected:?}, got {lines:?}");
    assert!(output.stdout.is_empty(), "logged before exiting: {}", String::from_utf8_lossy(&output.stdout));
}

#[tokio::test]
async fn every_unusable_tls_setting_exits_64_naming_the_variable() {
    let pki = Pki::new("config");
    let good = pki.issue("good", &Leaf::server(1));
    let other = pki.issue("other", &Leaf::server(2));
    let (cert, key) = (path(&good.chain), path(&good.key));

    expect_usage_error(&[("PROXY_TLS_CERT_FILE", cert)], "PROXY_TLS_KEY_FILE is required but not set").await;
    expect_usage_error(&[("PROXY_TLS_KEY_FILE", key)], "PROXY_TLS_CERT_FILE is required but not set").await;

    let missing = pki.dir.join("absent.crt");
    expect_usage_error(
        &[("PROXY_TLS_CERT_FILE", path(&missing)), ("PROXY_TLS_KEY_FILE", key)],
        &format!("PROXY_TLS_CERT_FILE={:?} is not valid: cannot read it: ", path(&missing)),
    )
    .await;

    let text = pki.dir.join("notes.txt");
    std::fs::write(&text, "this is not PEM\n").unwrap();
    expect_usage_error(
        &[("PROXY_TLS_CERT_FILE", cert), ("PROXY_TLS_KEY_FILE", path(&text))],
        &format!("PROXY_TLS_KEY_FILE={:?} is not valid: has no unencrypted private key", path(&text)),
    )
    .await;
    // The swap operators make: key and certificate in each other's variable.
    expect_usage_error(
        &[("PROXY_TLS_CERT_FILE", key), ("PROXY_TLS_KEY_FILE", cert)],
        &format!("PROXY_TLS_CERT_FILE={key:?} is not valid: has no CERTIFICATE PEM block (found PRIVATE KEY)"),
    )
    .await;

    expect_usage_error(
        &[("PROXY_TLS_CERT_FILE", cert), ("PROXY_TLS_KEY_FILE", path(&other.key))],
        &format!(
            "PROXY_TLS_KEY_FILE={:?} is not valid: does not match the certificate in PROXY_TLS_CERT_FILE",
            path(&other.key)
        ),
    )
    .await;

    // What PowerShell 5's `Get-Content tls.crt > tls.crt` and Notepad's "UTF-8 with BOM" write.
    let pem = std::fs::read(&good.chain).unwrap();
    let utf16: Vec<u8> = [0xff, 0xfe].into_iter().chain(pem.iter().flat_map(|&b| [b, 0])).collect();
    let utf8: Vec<u8> = [0xef, 0xbb, 0xbf].into_iter().chain(pem.iter().copied()).collect();
    for (bytes, bom) in [(utf16, "UTF-16 LE"), (utf8, "UTF-8")] {
        let file = pki.dir.join("bom.crt");
        std::fs::write(&file, bytes).unwrap();
        expect_usage_error(
            &[("PROXY_TLS_CERT_FILE", path(&file)), ("PROXY_TLS_KEY_FILE", key)],
            &format!("PROXY_TLS_CERT_FILE={:?} is not valid: starts with a {bom} byte-order mark", path(&file)),
        )
        .await;
    }

    expect_usage_error(
        &[("PROXY_TLS_CERT_FILE", cert), ("PROXY_TLS_KEY_FILE", key), ("PROXY_TLS_MIN_VERSION", "1.1")],
        r#"PROXY_TLS_MIN_VERSION="1.1" is not valid: TLS 1.0 and 1.1 are not supported"#,
    )
    .await;
    expect_usage_error(
        &[("PROXY_TLS_MIN_VERSION", "1.3")],
        r#"PROXY_TLS_MIN_VERSION="1.3" is not valid: applies to HTTPS only"#,
    )
    .await;
    expect_usage_error(
        &[("PROXY_CLIENT_CA_FILE", path(&pki.ca))],
        &format!("PROXY_CLIENT_CA_FILE={:?} is not valid: applies to HTTPS only", path(&pki.ca)),
    )
    .await;
    expect_usage_error(
        &[("PROXY_TLS_CERT_FILE", cert), ("PROXY_TLS_KEY_FILE", key), ("PROXY_CLIENT_CA_FILE", key)],
        &format!("PROXY_CLIENT_CA_FILE={key:?} is not valid: has no CERTIFICATE PEM block"),
    )
    .await;
}

/// A proxy serving `certificate` and `key` in front of an exporter that answers `ok`, logging
/// at `log` (`info` unless a test needs the reload thread's trace lines).
async fn https_proxy(
    certificate: &Path,
    key: &Path,
    extra: &[(&str, &str)],
    log: &str,
) -> (ProxyProcess, FakeExporter) {
    let exporter = FakeExporter::serving("windows_cpu_time_total 1\n".into(), "text/plain; version=0.0.4").await;
    let port = exporter.port();
    let mut vars = vec![
        ("PROXY_HOSTIP", "127.0.0.1"),
        ("PROXY_PORT", port.as_str()),
        ("PROXY_TLS_CERT_FILE", path(certificate)),
        ("PROXY_TLS_KEY_FILE", path(key)),
        ("RUST_LOG", log),
    ];
    vars.extend_from_slice(extra);
    (ProxyProcess::start(&vars).await, exporter)
}

#[tokio::test]
async fn probes_and_scrapes_over_https_without_credentials_and_http_1_1_only() {
    let pki = Pki::new("serve");
    let server = pki.issue("server", &Leaf::server(0x51));
    // A client CA makes the handshake ask for a certificate; the kubelet's probes send none.
    let (proxy, _exporter) =
        https_proxy(&server.chain, &server.key, &[("PROXY_CLIENT_CA_FILE", path(&pki.ca))], "info").await;
    let client = TlsClient::new(&pki.ca);

    for probe in ["/health", "/ready"] {
        let (answer, handshake) = client.get(proxy.addr, probe).await.unwrap();
        assert_eq!(answer.status, 200, "{probe}: {}", answer.text());
        assert_eq!(handshake.leaf, server.leaf_der());
        assert_eq!(handshake.alpn.as_deref(), Some(&b"http/1.1"[..]));
    }
    let (scrape, _) = client.get(proxy.addr, "/metrics").await.unwrap();
    assert_eq!(scrape.status, 200);
    assert_eq!(scrape.text(), "windows_cpu_time_total 1\n");

    // A client that offers h2 and http/1.1 gets http/1.1; one that offers only h2 is refused.
    let both = TlsClient { alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()], ..client.clone() };
    assert_eq!(both.connect(proxy.addr).await.unwrap().1.alpn.as_deref(), Some(&b"http/1.1"[..]));
    let h2 = TlsClient { alpn: vec![b"h2".to_vec()], ..client.clone() };
    let error = h2.connect(proxy.addr).await.unwrap_err();
    assert!(error.to_string().contains("NoApplicationProtocol"), "{error}");
    let none = TlsClient { alpn: Vec::new(), ..client.clone() };
    assert_eq!(none.get(proxy.addr, "/health").await.unwrap().0.status, 200);

    // Plain HTTP to the HTTPS port: a 400 that says why, as Go servers answer.
    let (head, _) = support::raw_exchange(proxy.addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", support::WAIT).await;
    assert!(head.starts_with("HTTP/1.0 400 Bad Request"), "{head}");
    assert!(head.contains("Client sent an HTTP request to an HTTPS server."), "{head}");

    let metrics = client.own_metrics(proxy.addr, &[]).await;
    assert_eq!(
        metric(&metrics, r#"windows_exporter_proxy_tls_handshake_failures_total{reason="no_application_protocol"}"#),
        1.0
    );
    assert_eq!(metric(&metrics, r#"windows_exporter_proxy_tls_handshake_failures_total{reason="not_tls"}"#), 1.0);
    // A chain expires with its first certificate to expire (here the CA, made a moment earlier).
    let chain_expiry = certificates::not_after(&server.certificate).min(certificates::not_after(&pki.ca));
    for (file, expiry) in [(&server.chain, chain_expiry), (&pki.ca, certificates::not_after(&pki.ca))] {
        let series =
            format!(r#"windows_exporter_proxy_tls_certificate_expiry_timestamp_seconds{{file="{}"}}"#, file.display());
        assert_eq!(metric(&metrics, &series), expiry as f64, "{series}");
    }
}

/// A Secret volume as the kubelet writes it: `..data` points at a timestamped directory, and
/// `tls.crt`/`tls.key` point through `..data`.
#[cfg(unix)]
struct SecretVolume {
    dir: PathBuf,
    generation: usize,
}

#[cfg(unix)]
impl SecretVolume {
    fn new(pki: &Pki, pair: &certificates::Issued) -> SecretVolume {
        let dir = pki.dir.join("volume");
        std::fs::create_dir_all(&dir).unwrap();
        let mut volume = SecretVolume { dir, generation: 0 };
        volume.update(pair);
        std::os::unix::fs::symlink("..data/tls.crt", volume.certificate()).unwrap();
        std::os::unix::fs::symlink("..data/tls.key", volume.key()).unwrap();
        volume
    }

    /// The kubelet's AtomicWriter: new directory, new `..data_tmp` link renamed over `..data`,
    /// old directory removed.
    fn update(&mut self, pair: &certificates::Issued) {
        self.generation += 1;
        let name = format!("..2026_12_01_00_00_0{}.{}", self.generation, std::process::id());
        let generation = self.dir.join(&name);
        std::fs::create_dir(&generation).unwrap();
        // The leaf alone, as a self-signed issuer's Secret holds it (the chain's earliest
        // notAfter would be the CA's).
        std::fs::copy(&pair.certificate, generation.join("tls.crt")).unwrap();
        std::fs::copy(&pair.key, generation.join("tls.key")).unwrap();
        let old = std::fs::read_link(self.dir.join("..data")).ok();
        std::os::unix::fs::symlink(&name, self.dir.join("..data_tmp")).unwrap();
        std::fs::rename(self.dir.join("..data_tmp"), self.dir.join("..data")).unwrap();
        if let Some(old) = old {
            std::fs::remove_dir_all(self.dir.join(old)).unwrap();
        }
    }

    fn certificate(&self) -> PathBuf {
        self.dir.join("tls.crt")
    }

    fn key(&self) -> PathBuf {
        self.dir.join("tls.key")
    }
}

/// Waits for the reload log line of the certificate with `serial` (decimal, as issued), within
/// the 10 s the issue allows.
async fn wait_for_reload(proxy: &mut ProxyProcess, serial: u64) {
    let hex = format!("{serial:02x}");
    proxy
        .wait_for_log_within(Duration::from_secs(10), "the rotated certificate to be picked up", |l| {
            l["message"] == "certificate reloaded" && l["serial"] == hex.as_str()
        })
        .await;
}

#[cfg(unix)] // symlinks; the kubelet does the same on Windows nodes, but wine runs no test here
#[tokio::test]
async fn a_kubelet_secret_update_is_served_on_the_next_handshake() {
    let pki = Pki::new("kubelet");
    let first = pki.issue("first", &Leaf::server(0x11));
    let second = pki.issue("second", &Leaf { days: 60, key: KeyFormat::RsaPkcs1, ..Leaf::server(0x22) });
    let mut volume = SecretVolume::new(&pki, &first);
    let (mut proxy, _exporter) = https_proxy(&volume.certificate(), &volume.key(), &[], "info").await;
    let client = TlsClient::new(&pki.ca);
    assert_eq!(client.connect(proxy.addr).await.unwrap().1.leaf, first.leaf_der());
    // A connection kept alive across the rotation keeps working.
    let (kept, _) = client.connect(proxy.addr).await.unwrap();

    volume.update(&second);
    wait_for_reload(&mut proxy, 0x22).await;
    let (answer, handshake) = client.get(proxy.addr, "/health").await.unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(handshake.leaf, second.leaf_der(), "the next handshake presents the new certificate");
    drop(kept);

    let metrics = client.own_metrics(proxy.addr, &[]).await;
    let series = format!(
        r#"windows_exporter_proxy_tls_certificate_expiry_timestamp_seconds{{file="{}"}}"#,
        volume.certificate().display()
    );
    assert_eq!(
        metric(&metrics, &series),
        certificates::not_after(&second.certificate) as f64,
        "the gauge shows the new notAfter"
    );
    assert_eq!(metric(&metrics, "windows_exporter_proxy_tls_reload_failures_total"), 0.0);
}

#[tokio::test]
async fn files_replaced_in_place_are_served_and_a_broken_pair_keeps_the_old_one() {
    let pki = Pki::new("inplace");
    let first = pki.issue("first", &Leaf::server(0x31));
    let second = pki.issue("second", &Leaf { key: KeyFormat::EcSec1, ..Leaf::server(0x32) });
    let third = pki.issue("third", &Leaf::server(0x33));
    let dir = pki.dir.join("tls");
    std::fs::create_dir(&dir).unwrap();
    let (certificate, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::copy(&first.chain, &certificate).unwrap();
    std::fs::copy(&first.key, &key).unwrap();
    let (mut proxy, _exporter) =
        https_proxy(&certificate, &key, &[], "info,windows_exporter_proxy::tls::resolver=trace").await;
    let client = TlsClient::new(&pki.ca);

    // In place, as `cp` or a Windows file copy does: certificate first, then key.
    std::fs::copy(&second.chain, &certificate).unwrap();
    std::fs::copy(&second.key, &key).unwrap();
    wait_for_reload(&mut proxy, 0x32).await;
    assert_eq!(client.connect(proxy.addr).await.unwrap().1.leaf, second.leaf_der());

    // A broken pair: the third certificate with the second key.
    std::fs::copy(&third.chain, &certificate).unwrap();
    let warning = proxy
        .wait_for_log("the broken pair to be reported", |l| {
            l["message"] == "new certificate files cannot be used; the previous certificate stays in use"
        })
        .await;
    assert_eq!(warning["level"], "WARN");
    assert_eq!(warning["file"], path(&key), "{warning}");
    assert!(warning["error"].as_str().unwrap().starts_with("does not match the certificate"), "{warning}");
    // Later looks at the same broken files say nothing more.
    proxy.wait_for_log("another look at the broken files", |l| l["outcome"] == "StillRejected").await;
    assert_eq!(client.connect(proxy.addr).await.unwrap().1.leaf, second.leaf_der(), "the old pair still serves");
    let metrics = client.own_metrics(proxy.addr, &[]).await;
    assert_eq!(metric(&metrics, "windows_exporter_proxy_tls_reload_failures_total"), 1.0);

    // The writer catches up with the key: the third pair serves.
    std::fs::copy(&third.key, &key).unwrap();
    wait_for_reload(&mut proxy, 0x33).await;
    assert_eq!(client.connect(proxy.addr).await.unwrap().1.leaf, third.leaf_der());
    let warnings = proxy.log.iter().filter(|l| l.contains("new certificate files cannot be used")).count();
    assert_eq!(warnings, 1, "a broken pair is logged once");
    let metrics = client.own_metrics(proxy.addr, &[]).await;
    assert_eq!(metric(&metrics, "windows_exporter_proxy_tls_reload_failures_total"), 1.0);
}

#[tokio::test]
async fn a_rotation_to_a_certificate_outside_its_validity_keeps_the_valid_one() {
    let pki = Pki::new("validity");
    let valid = pki.issue("valid", &Leaf::server(0x41));
    let expired =
        pki.issue("expired", &Leaf { validity: Some(("20200101000000Z", "20200201000000Z")), ..Leaf::server(0x42) });
    let early =
        pki.issue("early", &Leaf { validity: Some(("20900101000000Z", "20910101000000Z")), ..Leaf::server(0x43) });
    let next = pki.issue("next", &Leaf::server(0x44));
    let dir = pki.dir.join("tls");
    std::fs::create_dir(&dir).unwrap();
    let (certificate, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    // Leaves alone: the chain's window would include the CA's.
    std::fs::copy(&valid.certificate, &certificate).unwrap();
    std::fs::copy(&valid.key, &key).unwrap();
    let (mut proxy, _exporter) = https_proxy(&certificate, &key, &[], "info").await;
    let client = TlsClient::new(&pki.ca);
    assert_eq!(client.connect(proxy.addr).await.unwrap().1.leaf, valid.leaf_der());

    for (n, (pair, reason)) in [(&expired, "has expired"), (&early, "is not valid yet")].into_iter().enumerate() {
        std::fs::copy(&pair.certificate, &certificate).unwrap();
        std::fs::copy(&pair.key, &key).unwrap();
        let warning = proxy
            .wait_for_log("the unusable certificate to be reported", |l| {
                l["message"] == "new certificate files cannot be used; the previous certificate stays in use"
                    && l["error"].as_str().is_some_and(|e| e.starts_with(reason))
            })
            .await;
        assert_eq!(warning["level"], "WARN");
        assert_eq!(warning["file"], path(&certificate), "{warning}");
        assert!(warning["error"].as_str().unwrap().ends_with("while the certificate in use is still valid"));
        let (answer, handshake) = client.get(proxy.addr, "/health").await.unwrap();
        assert_eq!(answer.status, 200);
        assert_eq!(handshake.leaf, valid.leaf_der(), "{reason}: the valid certificate still serves");
        let metrics = client.own_metrics(proxy.addr, &[]).await;
        assert_eq!(metric(&metrics, "windows_exporter_proxy_tls_reload_failures_total"), (n + 1) as f64);
    }
    assert!(!proxy.log.iter().any(|l| l.contains("certificate reloaded")), "neither was ever served");

    std::fs::copy(&next.certificate, &certificate).unwrap();
    std::fs::copy(&next.key, &key).unwrap();
    wait_for_reload(&mut proxy, 0x44).await;
    assert_eq!(client.connect(proxy.addr).await.unwrap().1.leaf, next.leaf_der());
    let warnings = proxy.log.iter().filter(|l| l.contains("new certificate files cannot be used")).count();
    assert_eq!(warnings, 2, "each unusable pair is logged once");
}

/// Reads until the proxy closes the connection; true for EOF or reset.
async fn closed_by_proxy(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 256];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return true,
            Ok(_) => {}
        }
    }
}

#[tokio::test]
async fn the_header_deadline_covers_the_handshake() {
    let pki = Pki::new("slow");
    let server = pki.issue("server", &Leaf::server(0x41));
    let (proxy, _exporter) =
        https_proxy(&server.chain, &server.key, &[("PROXY_HEADER_READ_TIMEOUT_SECONDS", "1")], "info").await;
    let client = TlsClient::new(&pki.ca);

    // Connects and says nothing.
    let mut silent = TcpStream::connect(proxy.addr).await.unwrap();
    assert!(within("the proxy to close a silent connection", closed_by_proxy(&mut silent)).await);

    // Trickles a ClientHello a byte at a time: never finishes within the deadline.
    let mut slow = TcpStream::connect(proxy.addr).await.unwrap();
    let trickle = async {
        for byte in [0x16u8, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03].iter().cycle() {
            if slow.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    within("the proxy to cut a trickling handshake", trickle).await;

    // Finishes the handshake, then sends no request: the same deadline still runs.
    let (mut idle_tls, _) = client.connect(proxy.addr).await.unwrap();
    let mut buf = [0u8; 64];
    let read = within("the proxy to close a TLS connection with no request", idle_tls.read(&mut buf)).await;
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");

    let metrics = client.own_metrics(proxy.addr, &[]).await;
    assert_eq!(metric(&metrics, r#"windows_exporter_proxy_tls_handshake_failures_total{reason="timeout"}"#), 2.0);
    assert_eq!(metric(&metrics, r#"windows_exporter_proxy_connections_closed_total{reason="header_timeout"}"#), 3.0);
    // Still serving, and quickly: /health never waited on the stuck connections.
    within_for(Duration::from_secs(5), "/health", client.get(proxy.addr, "/health")).await.unwrap();
}

#[tokio::test]
async fn client_certificates_are_asked_for_and_a_bad_one_fails_the_handshake() {
    let pki = Pki::new("mtls");
    let server = pki.issue("server", &Leaf::server(0x61));
    let prometheus = pki.issue("prometheus", &Leaf::client("prometheus", 0x62));
    let stranger_ca = Pki::new("stranger");
    let stranger = stranger_ca.issue("stranger", &Leaf::client("prometheus", 0x63));
    let (proxy, _exporter) =
        https_proxy(&server.chain, &server.key, &[("PROXY_CLIENT_CA_FILE", path(&pki.ca))], "info").await;

    let trusted = TlsClient::new(&pki.ca).with_identity(&prometheus.chain, &prometheus.key);
    assert_eq!(trusted.get(proxy.addr, "/metrics").await.unwrap().0.status, 200);
    let anonymous = TlsClient::new(&pki.ca);
    assert_eq!(anonymous.get(proxy.addr, "/metrics").await.unwrap().0.status, 200);

    let untrusted = TlsClient::new(&pki.ca).with_identity(&stranger.chain, &stranger.key);
    assert!(untrusted.get(proxy.addr, "/metrics").await.is_err(), "a certificate from another CA is refused");
    let metrics = anonymous.own_metrics(proxy.addr, &[]).await;
    assert_eq!(
        metric(&metrics, r#"windows_exporter_proxy_tls_handshake_failures_total{reason="bad_client_certificate"}"#),
        1.0
    );
}

#[tokio::test]
async fn the_minimum_version_is_enforced() {
    let pki = Pki::new("versions");
    let server = pki.issue("server", &Leaf::server(0x71));
    let tls12_only = TlsClient { versions: vec![&rustls::version::TLS12], ..TlsClient::new(&pki.ca) };

    let (default, _exporter) = https_proxy(&server.chain, &server.key, &[], "info").await;
    let (answer, handshake) = tls12_only.get(default.addr, "/health").await.unwrap();
    assert_eq!((answer.status.as_u16(), handshake.version), (200, rustls::ProtocolVersion::TLSv1_2));
    assert_eq!(
        TlsClient::new(&pki.ca).connect(default.addr).await.unwrap().1.version,
        rustls::ProtocolVersion::TLSv1_3
    );

    let (strict, _exporter) =
        https_proxy(&server.chain, &server.key, &[("PROXY_TLS_MIN_VERSION", "1.3")], "info").await;
    assert!(tls12_only.connect(strict.addr).await.is_err());
    let metrics = TlsClient::new(&pki.ca).own_metrics(strict.addr, &[]).await;
    assert_eq!(
        metric(&metrics, r#"windows_exporter_proxy_tls_handshake_failures_total{reason="protocol_version"}"#),
        1.0
    );
}
