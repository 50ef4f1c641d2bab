//! Test support: a fake exporter that runs inside the test, a handle that runs the real proxy
//! binary, and a small HTTP client that shows what a scraper sees.
//!
//! Everything listens on 127.0.0.1:0. The proxy's bound address is read from its "listening"
//! log line, and tests wait on log lines, channels and sockets, each with a timeout, never on
//! bare sleeps.
#![allow(dead_code)] // each test binary uses a different part of this module

pub mod certificates;
pub mod collecting_exporter;
pub mod kube_api;
pub mod prometheus;
pub mod scenarios;
pub mod tls;

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// Generous bound for anything a test waits on: the machines are shared and slow at times.
pub const WAIT: Duration = Duration::from_secs(30);

/// Fails the test with `what` if `future` takes longer than [`WAIT`].
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    within_for(WAIT, what, future).await
}

/// Fails the test with `what` if `future` takes longer than `limit`.
pub async fn within_for<T>(limit: Duration, what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, future).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {limit:?} waiting for {what}"),
    }
}

/// A real scrape captured from windows_exporter (its source and licence are in
/// tests/fixtures/SOURCES.md).
pub fn windows_sample() -> Bytes {
    fixture("windows_exporter-0.13-cs-service.prom")
}

/// A file from tests/fixtures.
pub fn fixture(name: &str) -> Bytes {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display())))
}

// ---------------------------------------------------------------------------------------------
// The fake exporter

/// The body type the fake exporter answers with.
pub type ExporterBody = BoxBody<Bytes, std::io::Error>;
type Handler =
    Arc<dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = Response<ExporterBody>> + Send>> + Send + Sync>;

/// A request as the exporter saw it.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    /// Which TCP connection it came on (counting from 1).
    pub connection: usize,
}

/// An HTTP server on 127.0.0.1:0 playing the exporter, with a response the test chooses.
pub struct FakeExporter {
    pub addr: SocketAddr,
    requests: mpsc::UnboundedReceiver<SeenRequest>,
    connections: Arc<AtomicUsize>,
    closed: mpsc::UnboundedReceiver<usize>,
    task: tokio::task::JoinHandle<()>,
    /// Every connection's task, so dropping the exporter also drops its open connections.
    connection_tasks: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl FakeExporter {
    /// Serves every request with `handler`.
    pub async fn start<F, Fut>(handler: F) -> FakeExporter
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<ExporterBody>> + Send + 'static,
    {
        FakeExporter::start_on(0, handler).await
    }

    /// Like [`FakeExporter::start`] on a chosen port of 127.0.0.1 (0: any), for an exporter that
    /// appears on a port the proxy already knows (from [`closed_port`]).
    pub async fn start_on<F, Fut>(port: u16, handler: F) -> FakeExporter
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<ExporterBody>> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |request| Box::pin(handler(request)));
        let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("bind fake exporter");
        let addr = listener.local_addr().unwrap();
        let (seen_tx, requests) = mpsc::unbounded_channel();
        let (closed_tx, closed) = mpsc::unbounded_channel();
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = connections.clone();
        let connection_tasks = Arc::new(std::sync::Mutex::new(Vec::new()));
        let tasks = connection_tasks.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let connection = counter.fetch_add(1, Ordering::SeqCst) + 1;
                let handler = handler.clone();
                let seen_tx = seen_tx.clone();
                let closed_tx = closed_tx.clone();
                let connection_task = tokio::spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| {
                        let _ = seen_tx.send(SeenRequest {
                            method: request.method().clone(),
                            uri: request.uri().clone(),
                            headers: request.headers().clone(),
                            connection,
                        });
                        let reply = handler(request);
                        async move { Ok::<_, Infallible>(reply.await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                    let _ = closed_tx.send(connection);
                });
                tasks.lock().unwrap().push(connection_task.abort_handle());
            }
        });
        FakeExporter { addr, requests, connections, closed, task, connection_tasks }
    }

    /// Serves `body` with status 200 and `content_type` to every request.
    pub async fn serving(body: Bytes, content_type: &'static str) -> FakeExporter {
        FakeExporter::start(move |_| {
            let body = body.clone();
            async move { reply(StatusCode::OK, &[("content-type", content_type)], body) }
        })
        .await
    }

    /// The port, as a string for `PROXY_PORT`.
    pub fn port(&self) -> String {
        self.addr.port().to_string()
    }

    /// The next request the exporter received.
    pub async fn next_request(&mut self) -> SeenRequest {
        within("the exporter to receive a request", self.requests.recv()).await.expect("exporter stopped")
    }

    /// Requests received and not yet taken.
    pub fn pending_requests(&mut self) -> Vec<SeenRequest> {
        let mut all = Vec::new();
        while let Ok(r) = self.requests.try_recv() {
            all.push(r);
        }
        all
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Waits until some connection to the exporter has closed and returns its number.
    pub async fn connection_closed(&mut self) -> usize {
        within("an exporter connection to close", self.closed.recv()).await.expect("exporter stopped")
    }
}

impl Drop for FakeExporter {
    fn drop(&mut self) {
        self.task.abort();
        for connection in self.connection_tasks.lock().unwrap().drain(..) {
            connection.abort();
        }
    }
}

/// A complete response.
pub fn reply(status: StatusCode, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Response<ExporterBody> {
    let mut response = Response::new(Full::new(body.into()).map_err(|never| match never {}).boxed());
    *response.status_mut() = status;
    for (name, value) in headers {
        response.headers_mut().append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            http::HeaderValue::from_str(value).unwrap(),
        );
    }
    response
}

/// A response whose body the test sends chunk by chunk through the returned sender (or
/// aborts, which resets the exporter's connection mid-body).
pub fn streaming_reply(
    headers: &[(&str, &str)],
) -> (http_body_util::channel::Sender<Bytes, std::io::Error>, Response<ExporterBody>) {
    let (sender, body) = http_body_util::Channel::<Bytes, std::io::Error>::new(4);
    let mut response = Response::new(body.boxed());
    for (name, value) in headers {
        response.headers_mut().append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            http::HeaderValue::from_str(value).unwrap(),
        );
    }
    (sender, response)
}

/// gzip-compresses `data` as an exporter would.
pub fn gzip(data: &[u8]) -> Bytes {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    Bytes::from(encoder.finish().unwrap())
}

/// A TCP port on 127.0.0.1 with nothing listening on it (bound, then released).
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

// ---------------------------------------------------------------------------------------------
// The proxy under test

/// The proxy binary cargo built for these tests.
pub fn proxy_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_windows-exporter-proxy"))
}

/// A running proxy process. Killed on drop.
pub struct ProxyProcess {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    lines: mpsc::UnboundedReceiver<String>,
    /// Every log line read so far.
    pub log: Vec<String>,
}

impl ProxyProcess {
    /// Runs the real binary with only `vars` in its environment, plus
    /// `PROXY_LISTEN=127.0.0.1:0` and `PROXY_LOG_FORMAT=json` unless `vars` sets them.
    pub async fn start(vars: &[(&str, &str)]) -> ProxyProcess {
        ProxyProcess::start_command(Command::new(proxy_binary()), vars).await
    }

    /// Like [`ProxyProcess::start`] with a prepared command, for running the binary another
    /// way (under wine). The environment is cleared first; the command's own env is kept only
    /// if it was set after `env_clear` by the caller through `vars`.
    pub async fn start_command(command: Command, vars: &[(&str, &str)]) -> ProxyProcess {
        ProxyProcess::start_command_within(WAIT, command, vars).await
    }

    /// Like [`ProxyProcess::start_command`], allowing `startup` for the listening line (wine's
    /// first start on a busy machine can take longer than a native process).
    pub async fn start_command_within(startup: Duration, mut command: Command, vars: &[(&str, &str)]) -> ProxyProcess {
        let mut env: HashMap<&str, &str> =
            HashMap::from([("PROXY_LISTEN", "127.0.0.1:0"), ("PROXY_LOG_FORMAT", "json"), ("RUST_LOG", "info")]);
        env.extend(vars.iter().copied());
        command
            .env_clear()
            .envs(platform_env())
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("spawn the proxy");
        let (tx, lines) = mpsc::unbounded_channel();
        for reader in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut reader = BufReader::new(reader).lines();
                while let Ok(Some(line)) = reader.next_line().await {
                    let _ = tx.send(line);
                }
            });
        }
        let mut proxy = ProxyProcess { child, addr: "0.0.0.0:0".parse().unwrap(), lines, log: Vec::new() };
        let listening =
            proxy.wait_for_log_within(startup, "the proxy's listening line", |l| l["message"] == "listening").await;
        proxy.addr = listening["listen"].as_str().expect("listen field").parse().expect("listen is a socket address");
        proxy
    }

    /// `http://addr{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Waits for a JSON log line that `matches`, and returns it. Fails on exit or timeout.
    pub async fn wait_for_log(
        &mut self,
        what: &str,
        matches: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        self.wait_for_log_within(WAIT, what, matches).await
    }

    /// Like [`ProxyProcess::wait_for_log`] with its own time limit. A failure shows the log so far.
    pub async fn wait_for_log_within(
        &mut self,
        limit: Duration,
        what: &str,
        matches: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let found = tokio::time::timeout(limit, async {
            loop {
                let Some(line) = self.lines.recv().await else {
                    panic!("the proxy exited before logging {what}; log so far:\n{}", self.log.join("\n"))
                };
                self.log.push(line.clone());
                if let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) {
                    if matches(&value) {
                        return value;
                    }
                }
            }
        })
        .await;
        found.unwrap_or_else(|_| {
            panic!("timed out after {limit:?} waiting for {what}; log so far:\n{}", self.log.join("\n"))
        })
    }

    /// Waits for a log line whose message is `message`.
    pub async fn wait_for_message(&mut self, message: &str) -> serde_json::Value {
        self.wait_for_log(message, |l| l["message"] == message).await
    }

    /// Sends a Unix signal.
    #[cfg(unix)]
    #[allow(unsafe_code)] // kill(2): the one way to send SIGTERM/SIGINT; libc has no safe wrapper
    pub fn signal(&self, signal: i32) {
        let pid = self.child.id().expect("the proxy is running") as i32;
        // SAFETY: kill(2) with a live child's pid has no memory-safety preconditions.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "kill({pid}, {signal})");
    }

    /// After a stop request: waits for the drain to finish and checks that the exit code is 0.
    pub async fn expect_clean_drain(&mut self) {
        self.wait_for_message("drained; exiting").await;
        let status = self.exit_status().await;
        assert_eq!(status.code(), Some(0), "exit status {status:?}");
    }

    /// Waits for the process to exit.
    pub async fn exit_status(&mut self) -> ExitStatus {
        within("the proxy to exit", self.child.wait()).await.expect("wait for the proxy")
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("the proxy is running")
    }
}

/// What the operating system itself needs in an otherwise empty environment. On Windows that is
/// `SystemRoot`: without it Winsock cannot load its providers and every socket call fails
/// (WSAEPROVIDERFAILEDINIT, 10106), so no test of the binary could pass there. Every Windows
/// process, a container's included, has it. Nothing on Unix. (Known from twisted/twisted#10609 and
/// rust-lang/rust#31259; wine does not reproduce it, so only the native Windows CI shows it.)
#[allow(clippy::disallowed_methods)] // the test runner's own Windows directory, not the proxy's configuration
fn platform_env() -> Vec<(String, String)> {
    if cfg!(windows) {
        std::env::var("SystemRoot").map(|v| vec![("SystemRoot".to_owned(), v)]).unwrap_or_default()
    } else {
        Vec::new()
    }
}

/// Runs the binary to completion with only `vars` (and `args`) and returns its output.
pub async fn run_to_exit(args: &[&str], vars: &[(&str, &str)]) -> std::process::Output {
    let mut command = Command::new(proxy_binary());
    command
        .args(args)
        .env_clear()
        .envs(platform_env())
        .envs(vars.iter().copied())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    within("the proxy to exit", command.output()).await.expect("run the proxy")
}

// ---------------------------------------------------------------------------------------------
// A scraper's view

/// What a scraper received.
#[derive(Debug)]
pub struct Scraped {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Scraped {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Checks the `X-Prometheus-Scrape-Timeout-Seconds` an exporter request carried: the time left
/// of a `budget`-second deadline as the request went out, so at most the budget, and for a
/// scrape that waited for nothing, all but the moment it took to send (under 50 ms).
pub fn assert_told_budget(headers: &http::HeaderMap, budget: f64) {
    let value = headers["x-prometheus-scrape-timeout-seconds"].to_str().unwrap();
    let told: f64 = value.parse().unwrap();
    assert!(told <= budget && told > budget - 0.05, "told the exporter {value} s of a {budget} s budget");
}

/// An HTTP/1.1 connection to the proxy, as a scraper holds one.
pub struct Client {
    sender: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    addr: SocketAddr,
    local: SocketAddr,
}

impl Client {
    /// Opens one connection.
    pub async fn connect(addr: SocketAddr) -> Client {
        let stream = within("connect to the proxy", TcpStream::connect(addr)).await.expect("connect to the proxy");
        Client::over(stream, addr).await
    }

    /// Opens one connection with a 4 KiB receive buffer: a scraper that, once it stops reading,
    /// fills up quickly, so the proxy finds the socket full and hyper stops polling the body.
    pub async fn with_small_receive_window(addr: SocketAddr) -> Client {
        let socket = tokio::net::TcpSocket::new_v4().expect("a TCP socket");
        socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
        let stream = within("connect to the proxy", socket.connect(addr)).await.expect("connect to the proxy");
        Client::over(stream, addr).await
    }

    async fn over(stream: TcpStream, addr: SocketAddr) -> Client {
        let local = stream.local_addr().expect("a connected socket has a local address");
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("HTTP handshake");
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Client { sender, addr, local }
    }

    /// This end of the connection, as the proxy sees its peer.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Sends a request and returns the response with its body still streaming.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Response<Incoming>, hyper::Error> {
        let mut request = Request::builder().method(method).uri(path).header("host", self.addr.to_string());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        within("the connection to be ready", self.sender.ready()).await?;
        within("response headers", self.sender.send_request(request.body(Empty::new()).unwrap())).await
    }

    /// Sends a request and reads the whole response.
    pub async fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> Scraped {
        let response = self.send(Method::GET, path, headers).await.expect("response headers");
        read_all(response).await.expect("a complete body")
    }
}

/// Reads a response body to its end; an error means the body was cut off.
pub async fn read_all(response: Response<Incoming>) -> Result<Scraped, hyper::Error> {
    let (parts, body) = response.into_parts();
    let body = within("the response body", body.collect()).await?.to_bytes();
    Ok(Scraped { status: parts.status, headers: parts.headers, body })
}

/// One request on a fresh connection.
pub async fn get(addr: SocketAddr, path: &str) -> Scraped {
    Client::connect(addr).await.get(path, &[]).await
}

// ---------------------------------------------------------------------------------------------
// Resource checks and raw sockets (fault and abuse suites)

/// A `kB` field of `/proc/<pid>/status` (`VmHWM`, `VmRSS`), in bytes; or `Threads` as a count.
#[cfg(target_os = "linux")]
pub fn proc_status(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/<pid>/status");
    let line = status
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    let mut words = line.split_whitespace().skip(1);
    let value: u64 = words.next().and_then(|v| v.parse().ok()).expect("a number");
    if words.next() == Some("kB") { value * 1024 } else { value }
}

/// Open file descriptors of a process.
#[cfg(target_os = "linux")]
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).expect("read /proc/<pid>/fd").count()
}

/// The proxy's own metrics as `name{labels}` -> value, read on `client`'s connection.
pub async fn own_metrics(client: &mut Client) -> HashMap<String, f64> {
    let scraped = client.get("/proxy/metrics", &[]).await;
    assert_eq!(scraped.status, StatusCode::OK, "/proxy/metrics");
    parse_metrics(&scraped.text())
}

/// Prometheus text format as `name{labels}` -> value.
pub fn parse_metrics(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.rsplit_once(' ').and_then(|(k, v)| Some((k.to_string(), v.parse().ok()?))))
        .collect()
}

/// A metric value, 0 when the series does not exist yet.
pub fn metric(metrics: &HashMap<String, f64>, series: &str) -> f64 {
    metrics.get(series).copied().unwrap_or(0.0)
}

impl ProxyProcess {
    /// Polls `/proxy/metrics` on one connection until `done` holds for the metrics, failing
    /// after [`WAIT`]. Returns the metrics that satisfied it.
    pub async fn wait_for_metrics(
        &self,
        what: &str,
        done: impl Fn(&HashMap<String, f64>) -> bool,
    ) -> HashMap<String, f64> {
        let mut client = Client::connect(self.addr).await;
        within(what, async {
            loop {
                let metrics = own_metrics(&mut client).await;
                if done(&metrics) {
                    return metrics;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
    }

    /// Waits until no scrape is in flight or waiting, the only client connection is the one
    /// asking, and (on Linux) the process holds no more file descriptors than `fd_baseline`.
    pub async fn wait_until_settled(&self, fd_baseline: usize) {
        let pid = self.pid();
        let mut client = Client::connect(self.addr).await;
        let mut last = (HashMap::new(), 0);
        let settled = tokio::time::timeout(WAIT, async {
            loop {
                let metrics = own_metrics(&mut client).await;
                #[cfg(target_os = "linux")]
                let fds = fd_count(pid);
                #[cfg(not(target_os = "linux"))]
                let fds = {
                    let _ = pid;
                    0
                };
                if metric(&metrics, "windows_exporter_proxy_inflight_scrapes") == 0.0
                    && metric(&metrics, "windows_exporter_proxy_waiting_scrapes") == 0.0
                    && metric(&metrics, "windows_exporter_proxy_client_connections") == 1.0
                    && fds <= fd_baseline
                {
                    return;
                }
                last = (metrics, fds);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        if settled.is_err() {
            let (metrics, fds) = last;
            panic!(
                "the proxy did not settle: fds {fds} (baseline {fd_baseline}), inflight {}, waiting {}, connections {}",
                metric(&metrics, "windows_exporter_proxy_inflight_scrapes"),
                metric(&metrics, "windows_exporter_proxy_waiting_scrapes"),
                metric(&metrics, "windows_exporter_proxy_client_connections"),
            );
        }
    }

    /// Open file descriptors once the proxy has settled with exactly one client connection
    /// open (the one asking, as in [`ProxyProcess::wait_until_settled`]): that call's baseline.
    pub async fn fd_baseline(&self) -> usize {
        let pid = self.pid();
        let mut client = Client::connect(self.addr).await;
        within("the proxy to settle for a baseline", async {
            loop {
                let metrics = own_metrics(&mut client).await;
                if metric(&metrics, "windows_exporter_proxy_client_connections") == 1.0
                    && metric(&metrics, "windows_exporter_proxy_inflight_scrapes") == 0.0
                {
                    #[cfg(target_os = "linux")]
                    return fd_count(pid);
                    #[cfg(not(target_os = "linux"))]
                    return {
                        let _ = pid;
                        0
                    };
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
    }
}

/// Writes `request` on a fresh connection and reads until the proxy closes it or `limit`
/// passes (whichever is first). Returns what was read and whether the proxy closed.
pub async fn raw_exchange(addr: SocketAddr, request: &[u8], limit: Duration) -> (String, bool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = within("connect to the proxy", TcpStream::connect(addr)).await.expect("connect");
    stream.write_all(request).await.expect("write the request");
    let mut read = Vec::new();
    let mut buf = [0u8; 16384];
    let closed = tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => read.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .is_ok();
    (String::from_utf8_lossy(&read).into_owned(), closed)
}

/// Asks `/health` on a new connection and requires `200 ok` within `limit`: the proxy's
/// liveness must not depend on whatever else is going on.
pub async fn health_within(addr: SocketAddr, limit: Duration) {
    let scraped = within_for(limit, "/health on a new connection", async {
        let stream = TcpStream::connect(addr).await.expect("connect for /health");
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("HTTP handshake");
        tokio::spawn(connection);
        let request = Request::get("/health").header("host", addr.to_string()).body(Empty::<Bytes>::new()).unwrap();
        let response = sender.send_request(request).await.expect("/health response");
        read_all(response).await.expect("/health body")
    })
    .await;
    assert_eq!(scraped.status, StatusCode::OK);
    assert_eq!(scraped.text().trim_end(), "ok");
}

// ---------------------------------------------------------------------------------------------
// A scrape held open

/// The exporter's end of a streamed body: what [`streaming_reply`] returns.
pub type BodySender = http_body_util::channel::Sender<Bytes, std::io::Error>;

/// An exporter that answers every scrape with its headers and [`HeldScrape::FIRST`] at once, then
/// holds the body open until the test says what happens next: [`HeldScrape::release`] sends
/// [`HeldScrape::REST`] and ends the body, [`HeldScrape::abort`] resets the connection mid-body,
/// and doing nothing stalls it for as long as the `HeldScrape` lives. For what must happen while
/// a scrape is in flight: streaming without buffering, draining on stop, mid-body faults.
pub struct HeldScrape {
    pub exporter: FakeExporter,
    held: mpsc::UnboundedReceiver<BodySender>,
    body: Option<BodySender>,
}

impl HeldScrape {
    /// The first line, sent as soon as the scrape arrives.
    pub const FIRST: &'static [u8] = b"slow_collector_started 1\n";
    /// The rest, sent on release.
    pub const REST: &'static [u8] = b"slow_collector_done 1\n";

    /// Starts the exporter, answering Prometheus text format 0.0.4 of unknown length (chunked).
    pub async fn start() -> HeldScrape {
        HeldScrape::with_headers(&[("content-type", "text/plain; version=0.0.4")]).await
    }

    /// Starts the exporter, answering with `headers` (a `content-length` promises a length that
    /// the held body may never reach).
    pub async fn with_headers(headers: &[(&str, &str)]) -> HeldScrape {
        let headers: Vec<(String, String)> = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let (held_tx, held) = mpsc::unbounded_channel();
        let exporter = FakeExporter::start(move |_| {
            let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let (mut sender, response) = streaming_reply(&headers);
            let held_tx = held_tx.clone();
            async move {
                // The body channel has room for it, so this completes before the response goes out.
                sender.send_data(Bytes::from_static(HeldScrape::FIRST)).await.unwrap();
                let _ = held_tx.send(sender);
                response
            }
        })
        .await;
        HeldScrape { exporter, held, body: None }
    }

    /// Waits until a scrape has reached the exporter and its first line is on its way; the body
    /// is held from then on.
    pub async fn started(&mut self) {
        let sender = within("the held scrape to start", self.held.recv()).await.expect("the exporter is running");
        self.body = Some(sender);
    }

    /// The held body's sender, once the scrape has started.
    fn take_body(&mut self) -> BodySender {
        self.body
            .take()
            .or_else(|| self.held.try_recv().ok())
            .expect("the held scrape has started (and is released or aborted once)")
    }

    /// Lets the exporter send the rest and end the body.
    pub fn release(&mut self) {
        let mut sender = self.take_body();
        tokio::spawn(async move {
            // An error means the proxy hung up first, which the test itself checks.
            let _ = sender.send_data(Bytes::from_static(HeldScrape::REST)).await;
        });
    }

    /// Resets the exporter's connection mid-body.
    pub fn abort(&mut self) {
        self.take_body().abort(std::io::Error::other("exporter reset"));
    }

    /// The whole body the scraper must end up with.
    pub fn full_body() -> Vec<u8> {
        [HeldScrape::FIRST, HeldScrape::REST].concat()
    }

    /// Releases the rest and checks that the scraper's `response` ends complete.
    pub async fn release_and_expect_complete(&mut self, response: Response<Incoming>) {
        self.release();
        let body = within("the held scrape to finish", response.into_body().collect())
            .await
            .expect("a complete body")
            .to_bytes();
        assert_eq!(&body[..], HeldScrape::full_body());
    }
}
