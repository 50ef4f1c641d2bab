//! `PROXY_PORT` as an ordered list: the proxy uses the first port on which an exporter answers
//! `GET /health`, follows the exporter when its port starts refusing connections, says which port
//! it uses (log, `/ready`, `windows_exporter_proxy_exporter_port`), names every port when none
//! answers, and probes once per port however many scrapes arrive while it looks.
//!
//! Each test runs the real binary against fake exporters and closed ports on 127.0.0.1.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use support::{Client, FakeExporter, ProxyProcess, closed_port, metric, own_metrics, within};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

const BODY: &[u8] = b"windows_cpu_time_total{core=\"0,0\",mode=\"idle\"} 1\n";
const PORT_GAUGE: &str = "windows_exporter_proxy_exporter_port";

async fn exporter() -> FakeExporter {
    FakeExporter::serving(Bytes::from_static(BODY), "text/plain; version=0.0.4").await
}

async fn proxy_with_ports(ports: &[u16], more: &[(&str, &str)]) -> ProxyProcess {
    let list = ports.iter().map(u16::to_string).collect::<Vec<_>>().join(",");
    let mut vars = vec![("PROXY_HOSTIP", "127.0.0.1"), ("PROXY_PORT", list.as_str())];
    vars.extend_from_slice(more);
    ProxyProcess::start(&vars).await
}

/// Something that is not an HTTP server: it accepts, reports each connection, waits for the
/// test's go-ahead, answers with an SSH banner and closes.
struct NotHttp {
    port: u16,
    accepted: mpsc::UnboundedReceiver<()>,
    release: watch::Sender<bool>,
}

impl NotHttp {
    async fn start() -> NotHttp {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (accepted_tx, accepted) = mpsc::unbounded_channel();
        let (release, released) = watch::channel(false);
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else { continue };
                let _ = accepted_tx.send(());
                let mut released = released.clone();
                tokio::spawn(async move {
                    let _ = released.wait_for(|go| *go).await;
                    let _ = stream.write_all(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n").await;
                });
            }
        });
        NotHttp { port, accepted, release }
    }

    /// Lets every held connection (and any later one) get its banner.
    fn release(&self) {
        self.release.send_replace(true);
    }

    /// Connections accepted and not yet counted.
    fn connections(&mut self) -> usize {
        let mut n = 0;
        while self.accepted.try_recv().is_ok() {
            n += 1;
        }
        n
    }
}

fn probes(exporter: &mut FakeExporter) -> (usize, usize) {
    let seen = exporter.pending_requests();
    let health = seen.iter().filter(|r| r.uri.path() == "/health").count();
    let metrics = seen.iter().filter(|r| r.uri.path() == "/metrics").count();
    (health, metrics)
}

#[tokio::test]
async fn the_first_port_is_absent_and_the_second_answers() {
    let absent = closed_port();
    let mut exporter = exporter().await;
    let mut proxy = proxy_with_ports(&[absent, exporter.addr.port()], &[]).await;

    let selected = proxy.wait_for_message("exporter port selected").await;
    assert_eq!(selected["level"], "INFO");
    assert_eq!(selected["port"], exporter.addr.port());
    assert_eq!(selected["upstream"], format!("http://127.0.0.1:{}", exporter.port()));

    let scraped = support::get(proxy.addr, "/metrics").await;
    assert_eq!(scraped.status, StatusCode::OK);
    assert_eq!(&scraped.body[..], BODY);

    let ready = support::get(proxy.addr, "/ready").await;
    assert_eq!(ready.status, StatusCode::OK);
    let text = ready.text();
    assert!(text.contains(&format!("http://127.0.0.1:{}", exporter.port())), "{text}");
    assert!(text.contains(&format!("port {} of {absent},{}", exporter.port(), exporter.port())), "{text}");

    let metrics = own_metrics(&mut Client::connect(proxy.addr).await).await;
    assert_eq!(metric(&metrics, PORT_GAUGE), f64::from(exporter.addr.port()));
    // One probe at start; the scrape and /ready needed no other.
    assert_eq!(probes(&mut exporter), (1, 1));
}

#[tokio::test]
async fn a_port_where_something_else_listens_is_skipped() {
    let mut other = NotHttp::start().await;
    other.release();
    let mut exporter = exporter().await;
    let mut proxy = proxy_with_ports(&[other.port, exporter.addr.port()], &[]).await;

    let selected = proxy.wait_for_message("exporter port selected").await;
    assert_eq!(selected["port"], exporter.addr.port());
    assert_eq!(other.connections(), 1, "the SSH-like port was probed once");
    let scraped = support::get(proxy.addr, "/metrics").await;
    assert_eq!(scraped.status, StatusCode::OK);
    assert_eq!(probes(&mut exporter), (1, 1));
}

#[tokio::test]
async fn the_proxy_follows_the_exporter_to_another_port() {
    let first = exporter().await;
    let second_port = closed_port();
    let mut proxy = proxy_with_ports(&[first.addr.port(), second_port], &[]).await;
    let selected = proxy.wait_for_message("exporter port selected").await;
    assert_eq!(selected["port"], first.addr.port());
    let mut client = Client::connect(proxy.addr).await;
    assert_eq!(client.get("/metrics", &[]).await.status, StatusCode::OK);

    // The exporter moves: the old port now refuses, the new one answers.
    let first_port = first.addr.port();
    drop(first);
    let mut second = FakeExporter::start_on(second_port, |_| async {
        support::reply(StatusCode::OK, &[("content-type", "text/plain")], Bytes::from_static(BODY))
    })
    .await;

    let scraped = client.get("/metrics", &[]).await;
    assert_eq!(scraped.status, StatusCode::OK, "{}", scraped.text());
    assert_eq!(&scraped.body[..], BODY);
    // Log lines in the order they are written: the refusal, then the change.
    let refused = proxy.wait_for_log("the refused port's warning", |l| l["level"] == "WARN").await;
    assert_eq!(refused["message"], "exporter port refused a connection; looking for the exporter again");
    assert_eq!(refused["port"], first_port);
    let changed = proxy.wait_for_message("exporter port changed").await;
    assert_eq!(changed["level"], "INFO");
    assert_eq!(changed["old"], first_port);
    assert_eq!(changed["new"], second_port);
    assert_eq!(changed["upstream"], format!("http://127.0.0.1:{second_port}"));

    assert_eq!(client.get("/metrics", &[]).await.status, StatusCode::OK);
    let metrics = own_metrics(&mut client).await;
    assert_eq!(metric(&metrics, PORT_GAUGE), f64::from(second_port));
    assert!(support::get(proxy.addr, "/ready").await.text().contains(&format!("127.0.0.1:{second_port}")));
    // One probe found the new port; both later scrapes went there.
    assert_eq!(probes(&mut second), (1, 2));
}

#[tokio::test]
async fn with_no_exporter_on_any_port_the_502_names_every_port() {
    let ports = [closed_port(), closed_port(), closed_port()];
    let mut proxy = proxy_with_ports(&ports, &[]).await;
    let warning = proxy.wait_for_message("no exporter port answered").await;
    assert_eq!(warning["level"], "WARN");

    let scraped = support::get(proxy.addr, "/metrics").await;
    assert_eq!(scraped.status, StatusCode::BAD_GATEWAY);
    let body = scraped.text();
    assert_eq!(body.trim_end().lines().count(), 1, "one line: {body:?}");
    assert!(body.starts_with("http://127.0.0.1: no exporter answered on any of ports "), "{body}");
    for port in ports {
        assert!(body.contains(&format!("{port} connection refused")), "{port} missing in {body}");
    }

    let ready = support::get(proxy.addr, "/ready").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    for port in ports {
        assert!(ready.text().contains(&port.to_string()), "{}", ready.text());
    }
    let metrics = own_metrics(&mut Client::connect(proxy.addr).await).await;
    assert_eq!(metric(&metrics, PORT_GAUGE), 0.0);
    assert_eq!(
        metric(
            &metrics,
            r#"windows_exporter_proxy_scrapes_total{outcome="upstream_error",status="502",route="/metrics"}"#
        ),
        1.0
    );
}

#[tokio::test]
async fn fifty_scrapes_during_discovery_send_one_probe_per_port() {
    // The first port holds the probe until the test has all 50 scrapes waiting.
    let mut held = NotHttp::start().await;
    let mut exporter = exporter().await;
    let proxy = proxy_with_ports(
        &[held.port, exporter.addr.port()],
        // Room for a slow machine: the held probe must not time out before the release. Each
        // scrape goes to the exporter on its own, so the count below is of scrapes, not of
        // coalesced groups (tests/coalescing.rs covers those).
        &[("PROXY_CONNECT_TIMEOUT_SECONDS", "20"), ("PROXY_SCRAPE_TIMEOUT_SECONDS", "60"), ("PROXY_COALESCE", "false")],
    )
    .await;
    within("the start-up probe of the first port", held.accepted.recv()).await.unwrap();

    let scrapes: Vec<_> = (0..50)
        .map(|_| {
            let addr = proxy.addr;
            tokio::spawn(async move { support::get(addr, "/metrics").await })
        })
        .collect();
    proxy
        .wait_for_metrics("50 scrapes waiting for discovery", |m| {
            metric(m, "windows_exporter_proxy_inflight_scrapes") + metric(m, "windows_exporter_proxy_waiting_scrapes")
                == 50.0
        })
        .await;
    assert_eq!(exporter.pending_requests().len(), 0, "nothing reached the second port before the first gave up");
    held.release();

    for scrape in scrapes {
        let scraped = scrape.await.unwrap();
        assert_eq!(scraped.status, StatusCode::OK, "{}", scraped.text());
    }
    assert_eq!(held.connections(), 0, "no second probe of the first port");
    assert_eq!(probes(&mut exporter), (1, 50), "one /health probe, then the 50 scrapes");
    assert!(exporter.connections() <= 3, "{} connections: probe + PROXY_MAX_INFLIGHT", exporter.connections());
}

#[tokio::test]
async fn a_scrape_waits_for_discovery_only_until_its_deadline() {
    let mut held = NotHttp::start().await;
    let exporter = exporter().await;
    let proxy = proxy_with_ports(&[held.port, exporter.addr.port()], &[("PROXY_CONNECT_TIMEOUT_SECONDS", "20")]).await;
    within("the start-up probe of the first port", held.accepted.recv()).await.unwrap();

    // 1 s from the scraper minus the 0.5 s margin: 504 at 0.5 s while the round is still held.
    let mut client = Client::connect(proxy.addr).await;
    let started = std::time::Instant::now();
    let scraped = client.get("/metrics", &[("x-prometheus-scrape-timeout-seconds", "1")]).await;
    let elapsed = started.elapsed();
    assert_eq!(scraped.status, StatusCode::GATEWAY_TIMEOUT, "{}", scraped.text());
    let body = scraped.text();
    assert!(body.contains(&format!("still probing ports {},{}", held.port, exporter.port())), "{body}");
    assert!(elapsed >= Duration::from_millis(500), "answered before its deadline: {elapsed:?}");
    assert!(elapsed < Duration::from_secs(1), "answered after the scraper's own timeout: {elapsed:?}");
    let metrics = own_metrics(&mut client).await;
    assert_eq!(
        metric(&metrics, r#"windows_exporter_proxy_scrapes_total{outcome="timeout",status="504",route="/metrics"}"#),
        1.0
    );
    held.release();
}

#[tokio::test]
async fn a_single_port_is_never_probed_and_logs_as_before() {
    let mut exporter = exporter().await;
    let proxy = proxy_with_ports(&[exporter.addr.port()], &[]).await;

    assert_eq!(support::get(proxy.addr, "/metrics").await.status, StatusCode::OK);
    let metrics = own_metrics(&mut Client::connect(proxy.addr).await).await;
    assert_eq!(metric(&metrics, PORT_GAUGE), f64::from(exporter.addr.port()));
    let listening: serde_json::Value = proxy
        .log
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["message"] == "listening")
        .expect("the listening line");
    assert_eq!(listening["upstream"], format!("http://127.0.0.1:{}", exporter.port()));
    assert!(listening.get("ports").is_none(), "{listening}");
    assert_eq!(probes(&mut exporter), (0, 1), "no /health probe, only the scrape");
}

#[tokio::test]
async fn an_exporter_that_asks_for_credentials_counts_as_answering() {
    // windows_exporter with basic_auth_users answers every path, /health included, with 401.
    let mut exporter = FakeExporter::start(|_| async {
        support::reply(StatusCode::UNAUTHORIZED, &[("www-authenticate", "Basic realm=\"exporter\"")], "Unauthorized\n")
    })
    .await;
    let mut proxy = proxy_with_ports(&[closed_port(), exporter.addr.port()], &[]).await;

    let selected = proxy.wait_for_message("exporter port selected").await;
    assert_eq!(selected["port"], exporter.addr.port());
    let metrics = own_metrics(&mut Client::connect(proxy.addr).await).await;
    assert_eq!(metric(&metrics, PORT_GAUGE), f64::from(exporter.addr.port()));
    assert_eq!(probes(&mut exporter), (1, 0));
}
