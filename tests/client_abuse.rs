//! Client abuse: idle connections by the thousand, slowloris, oversized and smuggling-shaped
//! requests, requests naming other hosts, other spellings of paths, and scrapers that hang up
//! mid-body. After each the proxy is back to its baseline: no scrape in flight or waiting, no
//! extra client connection, no extra file descriptor. Nothing but well-formed `GET /metrics`
//! ever reaches the exporter, and nothing at all reaches any other host.

// They raise RLIMIT_NOFILE and read /proc/<pid>: Linux only. The Windows build is exercised
// by windows_under_wine.rs.
#![cfg(target_os = "linux")]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use support::{
    Client, FakeExporter, HeldScrape, ProxyProcess, SeenRequest, health_within, metric, raw_exchange, read_all, within,
    within_for,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HEALTH: Duration = Duration::from_secs(1);
const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

async fn exporter() -> FakeExporter {
    FakeExporter::serving(Bytes::from_static(b"x 1\n"), TEXT).await
}

/// The fd baseline after one scrape, so it counts the exporter connection the pool keeps.
async fn warm_baseline(proxy: &ProxyProcess) -> usize {
    let scraped = Client::connect(proxy.addr).await.get("/metrics", &[]).await;
    assert_eq!(scraped.status, StatusCode::OK);
    proxy.fd_baseline().await
}

async fn proxy_for(exporter: &FakeExporter, extra: &[(&str, &str)]) -> ProxyProcess {
    let port = exporter.port();
    let mut vars = vec![("PROXY_HOSTIP", "127.0.0.1"), ("PROXY_PORT", port.as_str())];
    vars.extend_from_slice(extra);
    ProxyProcess::start(&vars).await
}

/// The status line of the first response in `raw`, e.g. `HTTP/1.1 400 Bad Request`.
fn first_status(raw: &str) -> &str {
    raw.lines().next().unwrap_or("")
}

/// Raises this process's open-file soft limit to at least `want` (children inherit it).
#[cfg(unix)]
#[allow(unsafe_code)] // getrlimit(2)/setrlimit(2): libc has no safe wrapper
fn raise_nofile(want: u64) {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit write to / read from a valid rlimit struct we own.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) }, 0);
    if limit.rlim_cur >= want {
        return;
    }
    assert!(limit.rlim_max >= want, "the hard open-file limit {} is below {want}", limit.rlim_max);
    limit.rlim_cur = want;
    // SAFETY: as above.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
}

/// The proxy's own open-file soft limit.
fn proxy_nofile(pid: u32) -> u64 {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    line.split_whitespace().nth(3).unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_thousand_idle_connections_leave_health_answering() {
    raise_nofile(4096);
    let exporter = exporter().await;
    // The connections must all be open at once, so neither clock may close one while the test
    // runs. With the default 5 s header-read clock the first silent connections were cut once
    // opening the rest took longer than that: the listen backlog is 128, so on a busy machine
    // the kernel drops SYNs while the proxy is not accepting, and each drop costs the client a
    // 1 s retransmit. That clock has its own test below.
    let clocks = [("PROXY_HEADER_READ_TIMEOUT_SECONDS", "3600"), ("PROXY_IDLE_TIMEOUT_SECONDS", "3600")];
    let proxy = proxy_for(&exporter, &clocks).await;
    assert!(proxy_nofile(proxy.pid()) >= 1100, "the proxy cannot hold 1,000 connections with this ulimit -n");
    let fd_baseline = warm_baseline(&proxy).await;

    let mut idle = Vec::new();
    for _ in 0..1000 {
        idle.push(within("connect an idle client", TcpStream::connect(proxy.addr)).await.unwrap());
    }
    // All 1,000 accepted and counted (plus the connection asking).
    proxy
        .wait_for_metrics("1,000 idle connections to be accepted", |m| {
            metric(m, "windows_exporter_proxy_client_connections") >= 1001.0
        })
        .await;
    health_within(proxy.addr, HEALTH).await;
    let scraped = Client::connect(proxy.addr).await.get("/metrics", &[]).await;
    assert_eq!(scraped.status, StatusCode::OK);

    drop(idle);
    proxy.wait_until_settled(fd_baseline).await;
}

#[tokio::test]
async fn idle_connections_at_the_cap_are_cut_by_the_header_timeout_so_new_ones_get_served() {
    let exporter = exporter().await;
    let proxy =
        proxy_for(&exporter, &[("PROXY_MAX_CONNECTIONS", "8"), ("PROXY_HEADER_READ_TIMEOUT_SECONDS", "1")]).await;
    let fd_baseline = proxy.fd_baseline().await;

    let mut idle = Vec::new();
    for _ in 0..8 {
        idle.push(TcpStream::connect(proxy.addr).await.unwrap());
    }
    // Every slot is taken by a client that says nothing; a new client waits in the backlog until
    // the header-read timeout (1 s) frees slots. Generous bound: timeout plus 2 s.
    health_within(proxy.addr, Duration::from_secs(3)).await;
    for mut stream in idle {
        let mut buf = [0u8; 256];
        let read = within_for(Duration::from_secs(3), "an idle connection to be cut", stream.read(&mut buf)).await;
        assert!(matches!(read, Ok(0) | Err(_)) || String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 408"));
    }
    proxy.wait_until_settled(fd_baseline).await;
}

#[tokio::test]
async fn slowloris_is_cut_off_within_the_header_read_timeout() {
    let mut exporter = exporter().await;
    let proxy = proxy_for(&exporter, &[("PROXY_HEADER_READ_TIMEOUT_SECONDS", "1")]).await;
    let fd_baseline = proxy.fd_baseline().await;

    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let trickle = async {
        // One header byte every 100 ms, forever: only the proxy can end this.
        for byte in b"X-Slow: a".iter().cycle() {
            if stream.write_all(&[*byte]).await.is_err() {
                return;
            }
            let mut buf = [0u8; 256];
            if let Ok(read) = tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf)).await {
                assert!(!matches!(read, Ok(n) if n > 0 && !buf.starts_with(b"HTTP/1.1 408")), "unexpected answer");
                return;
            }
        }
    };
    // Header-read timeout 1 s; a generous 3 s bound proves the cut-off.
    within_for(Duration::from_secs(3), "the proxy to cut the slowloris client", trickle).await;
    health_within(proxy.addr, HEALTH).await;

    assert!(exporter.pending_requests().is_empty(), "a never-finished request reached the exporter");
    proxy.wait_until_settled(fd_baseline).await;
}

#[tokio::test]
async fn oversized_request_headers_get_431() {
    let mut exporter = exporter().await;
    let proxy = proxy_for(&exporter, &[]).await;
    let fd_baseline = proxy.fd_baseline().await;

    let huge = "a".repeat(20 * 1024);
    let request = format!("GET /metrics HTTP/1.1\r\nHost: x\r\nX-Huge: {huge}\r\n\r\n");
    let (raw, _) = raw_exchange(proxy.addr, request.as_bytes(), Duration::from_secs(3)).await;

    assert_eq!(first_status(&raw), "HTTP/1.1 431 Request Header Fields Too Large", "{raw:?}");
    assert!(exporter.pending_requests().is_empty());
    proxy.wait_until_settled(fd_baseline).await;
}

/// A request reached the exporter as the proxy should send it: `GET|HEAD /metrics`, no body
/// framing, nothing from a request body.
fn assert_clean(seen: &SeenRequest) {
    assert!(seen.method == Method::GET || seen.method == Method::HEAD, "{seen:?}");
    assert_eq!(seen.uri.path(), "/metrics", "{seen:?}");
    assert!(!seen.uri.to_string().contains("smuggled"), "a smuggled request reached the exporter: {seen:?}");
    for name in ["content-length", "transfer-encoding", "x-smuggled"] {
        assert!(!seen.headers.contains_key(name), "{name} reached the exporter: {seen:?}");
    }
}

#[tokio::test]
async fn smuggling_shaped_requests_are_refused_or_handled_safely() {
    let mut exporter = exporter().await;
    let proxy = proxy_for(&exporter, &[("PROXY_HEADER_READ_TIMEOUT_SECONDS", "1")]).await;
    let fd_baseline = warm_baseline(&proxy).await;
    exporter.pending_requests();
    let smuggled = "GET /metrics?smuggled=1 HTTP/1.1\r\nHost: x\r\nX-Smuggled: 1\r\n\r\n";

    // Framing every HTTP/1.1 server must refuse (400), and one it can only find bad after the
    // headers (an invalid chunk): that request is answered once, then the connection closes.
    let cases = [
        (
            format!(
                "GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello{smuggled}"
            ),
            400,
        ),
        (format!("GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 6\r\n\r\nhello{smuggled}"), 400),
        (format!("GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n{smuggled}"), 400),
        (format!("GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length : 5\r\n\r\nhello{smuggled}"), 400),
        (format!("GET /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n{smuggled}"), 400),
        (
            format!(
                "GET /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n{smuggled}"
            ),
            400,
        ),
        (format!("GET /metrics HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"), 400),
        (format!("GET /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{smuggled}"), 200),
    ];
    for (request, status) in &cases {
        let (raw, closed) = raw_exchange(proxy.addr, request.as_bytes(), Duration::from_secs(3)).await;
        assert!(first_status(&raw).starts_with(&format!("HTTP/1.1 {status} ")), "{request:?} -> {raw:?}");
        assert_eq!(raw.matches("HTTP/1.1 ").count(), 1, "{request:?}: the smuggled request was answered: {raw:?}");
        assert!(closed, "{request:?}: the connection stayed open after a framing error");
    }

    // Content-Length and Transfer-Encoding together: RFC 9112 6.1 says refuse, or let
    // Transfer-Encoding win and close the connection after answering. Either way the smuggled
    // request must not be answered.
    let both = format!(
        "GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}",
        5 + smuggled.len()
    );
    let (raw, closed) = raw_exchange(proxy.addr, both.as_bytes(), Duration::from_secs(3)).await;
    let status = first_status(&raw);
    assert!(status.starts_with("HTTP/1.1 400") || status.starts_with("HTTP/1.1 200"), "{raw:?}");
    assert_eq!(raw.matches("HTTP/1.1 ").count(), 1, "CL+TE: the smuggled request was answered: {raw:?}");
    assert!(closed, "CL+TE: the connection stayed open (RFC 9112 6.1 requires closing it)");

    // A GET with a chunked body followed by a pipelined GET: the body is never forwarded, and
    // the second request is answered as the request of its own that it is, still without a body.
    for seen in exporter.pending_requests() {
        assert_clean(&seen);
    }
    let pipelined = b"GET /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n\
        GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let (raw, _) = raw_exchange(proxy.addr, pipelined, Duration::from_secs(3)).await;
    assert_eq!(first_status(&raw), "HTTP/1.1 200 OK", "{raw:?}");
    assert_eq!(raw.matches("HTTP/1.1 200 OK").count(), 2, "{raw:?}");
    let seen = exporter.pending_requests();
    assert_eq!(seen.len(), 2, "{seen:?}");
    for request in &seen {
        assert_clean(request);
        assert_eq!(request.uri.query(), None, "{request:?}");
    }
    proxy.wait_until_settled(fd_baseline).await;
}

#[tokio::test]
async fn requests_naming_other_hosts_never_leave_for_them() {
    let mut exporter = exporter().await;
    let elsewhere = FakeExporter::serving(Bytes::from_static(b"elsewhere 1\n"), TEXT).await;
    let proxy = proxy_for(&exporter, &[("PROXY_HEADER_READ_TIMEOUT_SECONDS", "1")]).await;
    let fd_baseline = warm_baseline(&proxy).await;
    exporter.pending_requests();
    let other = elsewhere.addr;

    let cases = [
        // Absolute form: routed by its path, to the configured exporter.
        (format!("GET http://{other}/metrics HTTP/1.1\r\nHost: {other}\r\nConnection: close\r\n\r\n"), "200"),
        (format!("GET http://{other}/other HTTP/1.1\r\nHost: {other}\r\nConnection: close\r\n\r\n"), "404"),
        // A Host header naming another server changes nothing.
        (format!("GET /metrics HTTP/1.1\r\nHost: {other}\r\nConnection: close\r\n\r\n"), "200"),
        // CONNECT to another host: not a tunnel.
        (format!("CONNECT {other} HTTP/1.1\r\nHost: {other}\r\n\r\n"), "405"),
        (format!("CONNECT {ip}:443 HTTP/1.1\r\nHost: {ip}:443\r\n\r\n", ip = other.ip()), "405"),
    ];
    let mut forwarded = 0;
    for (request, status) in &cases {
        let (raw, _) = raw_exchange(proxy.addr, request.as_bytes(), Duration::from_secs(3)).await;
        assert!(first_status(&raw).starts_with(&format!("HTTP/1.1 {status}")), "{request:?} -> {raw:?}");
        assert!(!raw.contains("elsewhere 1"), "{request:?} fetched from the other server: {raw:?}");
        if *status == "200" {
            assert!(raw.ends_with("x 1\n"), "{raw:?}");
            forwarded += 1;
        }
    }

    assert_eq!(elsewhere.connections(), 0, "the other server was contacted");
    let seen = exporter.pending_requests();
    assert_eq!(seen.len(), forwarded);
    for request in &seen {
        assert_eq!(request.headers["host"], exporter.addr.to_string(), "{request:?}");
        assert_clean(request);
    }
    proxy.wait_until_settled(fd_baseline).await;
}

#[tokio::test]
async fn other_spellings_of_paths_are_404_and_reach_nothing() {
    let mut exporter = exporter().await;
    let proxy = proxy_for(&exporter, &[]).await;
    let fd_baseline = proxy.fd_baseline().await;

    for path in [
        "/./metrics",
        "/x/../metrics",
        "/metrics/../metrics",
        "/metrics/.",
        "//metrics",
        "/metrics//",
        "/metrics/",
        "/%2Fmetrics",
        "/%2fmetrics",
        "/metrics%2F",
        "/%6Detrics",
        "/metrics%00",
        "/metrics;x=1",
        "/proxy/../metrics",
        "/health/../metrics",
        "/METRICS",
        "*",
    ] {
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let (raw, _) = raw_exchange(proxy.addr, request.as_bytes(), Duration::from_secs(3)).await;
        let status = first_status(&raw);
        assert!(status.starts_with("HTTP/1.1 404") || status.starts_with("HTTP/1.1 400"), "{path}: {raw:?}");
    }

    assert!(exporter.pending_requests().is_empty(), "another spelling of a path reached the exporter");
    assert_eq!(exporter.connections(), 0);
    proxy.wait_until_settled(fd_baseline).await;
}

#[tokio::test]
async fn scraper_hanging_up_mid_body_drops_the_exporter_connection() {
    let mut held = HeldScrape::with_headers(&[("content-type", TEXT)]).await;
    let mut proxy = proxy_for(&held.exporter, &[]).await;
    let fd_baseline = proxy.fd_baseline().await;

    let mut client = Client::connect(proxy.addr).await;
    let response = client.send(Method::GET, "/metrics", &[]).await.unwrap();
    let mut body = response.into_body();
    let first = within("the first chunk", body.frame()).await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(&first[..], HeldScrape::FIRST);
    held.started().await;
    drop(body);
    drop(client);

    // The proxy notices and drops its exporter connection rather than reading the rest.
    held.exporter.connection_closed().await;
    let line = proxy
        .wait_for_message(
            "scraper disconnected mid-body; its exporter request goes on only while another scraper shares it",
        )
        .await;
    assert_eq!(line["upstream"], format!("http://{}", held.exporter.addr));
    let m = proxy
        .wait_for_metrics("the client_gone outcome", |m| {
            metric(m, "windows_exporter_proxy_scrapes_total{outcome=\"client_gone\",status=\"200\",route=\"/metrics\"}")
                == 1.0
        })
        .await;
    assert_eq!(
        metric(&m, "windows_exporter_proxy_scrapes_total{outcome=\"ok\",status=\"200\",route=\"/metrics\"}"),
        0.0
    );
    proxy.wait_until_settled(fd_baseline).await;
}

#[tokio::test]
async fn a_scraper_that_stops_reading_is_cut_at_its_deadline_and_its_exporter_slot_comes_back() {
    // 32 MiB: far more than the socket buffers and hyper's write queue hold, so the proxy's
    // writes stop once the scraper stops reading, and hyper stops polling the body.
    let body = Bytes::from(vec![b'#'; 32 * 1024 * 1024]);
    let exporter = FakeExporter::serving(body.clone(), TEXT).await;
    for coalesce in ["false", "true"] {
        let mut proxy = proxy_for(&exporter, &[("PROXY_MAX_INFLIGHT", "1"), ("PROXY_COALESCE", coalesce)]).await;
        let mut scraper = Client::with_small_receive_window(proxy.addr).await;
        // Prometheus' 2 s timeout: the proxy's budget is 1.5 s.
        let timeout = [("x-prometheus-scrape-timeout-seconds", "2")];
        let response = scraper.send(Method::GET, "/metrics", &timeout).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "PROXY_COALESCE={coalesce}");

        // It reads nothing more. At the deadline the proxy hangs up on it and says so once.
        let line = proxy.wait_for_log("the stalled scrape's timeout", |l| l["outcome"] == "timeout").await;
        assert!(line["bytes"].as_u64().unwrap() < body.len() as u64, "{line}");
        let ended = read_all(response).await;
        assert!(ended.is_err(), "PROXY_COALESCE={coalesce}: the cut body must not end cleanly");

        // The one exporter slot is free again: the next scrape gets the whole body.
        let next = support::get(proxy.addr, "/metrics").await;
        assert_eq!(next.status, StatusCode::OK);
        assert_eq!(next.body.len(), body.len(), "PROXY_COALESCE={coalesce}");
        let m = proxy
            .wait_for_metrics("the cut counted", |m| {
                metric(m, "windows_exporter_proxy_scrapes_total{outcome=\"ok\",status=\"200\",route=\"/metrics\"}")
                    == 1.0
            })
            .await;
        assert_eq!(
            metric(&m, "windows_exporter_proxy_scrapes_total{outcome=\"timeout\",status=\"200\",route=\"/metrics\"}"),
            1.0
        );
        assert_eq!(metric(&m, "windows_exporter_proxy_connections_closed_total{reason=\"cut\"}"), 1.0);
    }
}

/// A client that pipelines `count` copies of `request` on one connection and never reads an
/// answer, with a 4 KiB receive buffer: once its buffers are full the proxy's writes to it block,
/// the proxy stops reading, and so this client's writes stop too. The connection stays open for
/// as long as the returned value lives.
async fn pipelining_non_reader(addr: std::net::SocketAddr, request: &'static [u8], count: usize) -> StalledClient {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = within("connect a client that never reads", socket.connect(addr)).await.unwrap();
    let (reader, mut writer) = tokio::io::split(stream);
    let written = Arc::new(AtomicUsize::new(0));
    let progress = written.clone();
    let total = request.len() * count;
    let writing = tokio::spawn(async move {
        for piece in request.repeat(count).chunks(16 * 1024) {
            if writer.write_all(piece).await.is_err() {
                // The proxy closed the connection: it had stopped reading long before.
                progress.store(usize::MAX, Ordering::Relaxed);
                break;
            }
            progress.fetch_add(piece.len(), Ordering::Relaxed);
        }
        writer
    });
    StalledClient { _reader: reader, _writing: writing, written, total }
}

/// Keeps a never-reading client's connection open: neither half is dropped while it lives.
struct StalledClient {
    _reader: tokio::io::ReadHalf<TcpStream>,
    _writing: tokio::task::JoinHandle<tokio::io::WriteHalf<TcpStream>>,
    /// Bytes written so far; `usize::MAX` once the proxy closed the connection.
    written: Arc<AtomicUsize>,
    total: usize,
}

impl StalledClient {
    /// Waits until the proxy has stopped reading this client's requests: its writes made no
    /// progress for half a second while more remained to write (or the proxy has closed the
    /// connection since). The proxy is then blocked writing answers that nobody reads.
    async fn wait_until_stuck(&self) {
        within("the proxy to stop reading a client that never reads", async {
            let mut last = usize::MAX;
            loop {
                let now = self.written.load(Ordering::Relaxed);
                assert!(now != self.total, "every request was read: the proxy never blocked");
                if now == usize::MAX || (now == last && now > 0) {
                    return;
                }
                last = now;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
        .await;
    }
}

const PIPELINED_HEALTH: &[u8] = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n";

#[tokio::test]
async fn clients_that_pipeline_and_never_read_cannot_pin_every_connection_slot() {
    // Issue 24's reproduction: every connection slot taken by a client whose answers pile up
    // unread. Before the fix /health was never accepted again (the liveness probe fails and the
    // kubelet restarts the pod in a loop). A local answer now has a short send deadline (the
    // header-read timeout, 1 s here), after which the stuck connection is closed.
    let exporter = exporter().await;
    let proxy = proxy_for(
        &exporter,
        &[
            ("PROXY_MAX_CONNECTIONS", "4"),
            ("PROXY_HEADER_READ_TIMEOUT_SECONDS", "1"),
            ("PROXY_IDLE_TIMEOUT_SECONDS", "2"),
        ],
    )
    .await;
    let mut stalled = Vec::new();
    for _ in 0..4 {
        stalled.push(pipelining_non_reader(proxy.addr, PIPELINED_HEALTH, 1_000_000).await);
    }
    for client in &stalled {
        client.wait_until_stuck().await;
    }
    // The slots free up while the non-readers are still connected.
    health_within(proxy.addr, Duration::from_secs(10)).await;
    let m = proxy
        .wait_for_metrics("the stuck connections closed for their send deadline", |m| {
            metric(m, "windows_exporter_proxy_connections_closed_total{reason=\"send_timeout\"}") >= 4.0
        })
        .await;
    assert_eq!(metric(&m, "windows_exporter_proxy_connections_closed_total{reason=\"idle\"}"), 0.0);
    drop(stalled);
}

#[tokio::test]
async fn pipelined_scrapes_that_are_never_read_are_cut_by_their_scrape_deadline() {
    // Small bodies: each one is handed to hyper whole (the scrape's own deadline watchdog is off
    // by then) and the bytes pile up in hyper's write queue. The idle timeout (75 s by default)
    // used to wait for that write for ever.
    let exporter = FakeExporter::serving(Bytes::from(vec![b'#'; 4096]), TEXT).await;
    let proxy = proxy_for(&exporter, &[]).await;
    let started = tokio::time::Instant::now();
    const SCRAPE: &[u8] = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Prometheus-Scrape-Timeout-Seconds: 2\r\n\r\n";
    let stalled = pipelining_non_reader(proxy.addr, SCRAPE, 5_000).await;
    proxy
        .wait_for_metrics("the stuck scraper's connection closed", |m| {
            metric(m, "windows_exporter_proxy_connections_closed_total{reason=\"send_timeout\"}")
                + metric(m, "windows_exporter_proxy_connections_closed_total{reason=\"cut\"}")
                >= 1.0
        })
        .await;
    // Well before the idle timeout; the scrape budget is 1.5 s.
    assert!(started.elapsed() < Duration::from_secs(20), "closed after {:?}", started.elapsed());
    health_within(proxy.addr, HEALTH).await;
    drop(stalled);
}

#[cfg(unix)]
#[tokio::test]
async fn a_drain_with_a_client_that_never_reads_still_ends_cleanly() {
    let exporter = exporter().await;
    let mut proxy = proxy_for(&exporter, &[("PROXY_SHUTDOWN_GRACE_SECONDS", "5")]).await;
    let stalled = pipelining_non_reader(proxy.addr, PIPELINED_HEALTH, 1_000_000).await;
    // Its answers are piling up unread: the proxy has written all it can.
    stalled.wait_until_stuck().await;
    proxy.signal(libc::SIGTERM);
    // Before the fix: "grace period over; closing what is left" and exit 1.
    proxy.expect_clean_drain().await;
    let drained = proxy.log.iter().any(|l| l.contains("grace period over"));
    assert!(!drained, "the drain waited for the stuck client: {:?}", proxy.log);
    drop(stalled);
}

#[tokio::test]
async fn http_1_1_requests_need_exactly_one_host_header() {
    // RFC 9112 3.2: a server MUST answer 400 to an HTTP/1.1 request without Host and to any
    // request with more than one.
    let mut exporter = exporter().await;
    let proxy = proxy_for(&exporter, &[]).await;
    for request in [
        "GET /metrics HTTP/1.1\r\n\r\n",
        "GET /health HTTP/1.1\r\nConnection: close\r\n\r\n",
        "GET /metrics HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        "GET /metrics HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n",
    ] {
        let (raw, closed) = raw_exchange(proxy.addr, request.as_bytes(), Duration::from_secs(3)).await;
        assert!(first_status(&raw).ends_with(" 400 Bad Request"), "{request:?} -> {raw:?}");
        assert!(raw.contains("Host"), "the answer names the header: {raw:?}");
        assert!(closed, "{request:?}: the connection stayed open after a 400");
    }
    assert!(exporter.pending_requests().is_empty(), "a request without one Host reached the exporter");
    // HTTP/1.0 needs none.
    let (raw, _) = raw_exchange(proxy.addr, b"GET /metrics HTTP/1.0\r\n\r\n", Duration::from_secs(3)).await;
    assert!(raw.starts_with("HTTP/1.0 200 OK") || raw.starts_with("HTTP/1.1 200 OK"), "{raw:?}");
}

#[tokio::test]
async fn a_connection_stuck_writing_is_closed_at_the_idle_timeout_when_that_comes_first() {
    // A 120 s scrape deadline, a 2 s idle timeout: nothing moves on a connection whose client
    // takes nothing, so the idle timeout closes it. It used to ask hyper for a graceful close,
    // which waited for the blocked write for ever.
    let exporter = FakeExporter::serving(Bytes::from(vec![b'#'; 4096]), TEXT).await;
    let proxy = proxy_for(&exporter, &[("PROXY_IDLE_TIMEOUT_SECONDS", "2")]).await;
    const SCRAPE: &[u8] = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Prometheus-Scrape-Timeout-Seconds: 120\r\n\r\n";
    // 17 MB of requests: more than the socket buffers on both sides hold.
    let stalled = pipelining_non_reader(proxy.addr, SCRAPE, 200_000).await;
    stalled.wait_until_stuck().await;
    let m = proxy
        .wait_for_metrics("the stuck connection closed at the idle timeout", |m| {
            metric(m, "windows_exporter_proxy_connections_closed_total{reason=\"idle\"}") >= 1.0
        })
        .await;
    assert_eq!(metric(&m, "windows_exporter_proxy_connections_closed_total{reason=\"send_timeout\"}"), 0.0);
    drop(stalled);
}

#[tokio::test]
async fn connections_past_what_the_proxy_has_accepted_wait_in_the_listen_queue() {
    // While the proxy accepts nothing (stopped here; a busy single-threaded runtime in life), the
    // kernel completes handshakes into the listen queue. The queue held 128 (mio's default): the
    // 129th client's SYN was dropped and it retried a second later, then three, then seven. It
    // now holds PROXY_MAX_CONNECTIONS, as the README says.
    raise_nofile(4096);
    let exporter = exporter().await;
    let proxy = proxy_for(&exporter, &[("PROXY_MAX_CONNECTIONS", "600")]).await;
    proxy.signal(libc::SIGSTOP);
    let mut queued = Vec::new();
    within_for(Duration::from_secs(10), "500 connections to complete in the listen queue", async {
        for _ in 0..500 {
            queued.push(TcpStream::connect(proxy.addr).await.unwrap());
        }
    })
    .await;
    proxy.signal(libc::SIGCONT);
    health_within(proxy.addr, Duration::from_secs(5)).await;
    proxy
        .wait_for_metrics("the queued connections to be accepted", |m| {
            metric(m, "windows_exporter_proxy_client_connections") >= 501.0
        })
        .await;
    drop(queued);
}
