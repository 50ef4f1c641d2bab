//! Soak driver (run by `bench/soak`): many scrapes through the real proxy binary against an
//! in-process fake exporter that misbehaves now and then, sampling the proxy's RSS, open file
//! descriptors and threads from /proc as it goes, and reporting whether they stayed flat.
//!
//! Usage: `soak <proxy-binary> [scrapes] [sample-every]` (defaults 100000 and 1000). Linux only.
//!
//! Exporter faults, by request number: slow response headers (150 ms), a reset mid-body, a body
//! dripped in chunks, `Connection: close` after answering, a connection dropped without an
//! answer (the proxy retries it once), and every 5,000 scrapes a 50 ms window in which nothing
//! listens (refused connections).

use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;

type Body = BoxBody<Bytes, std::io::Error>;

const CONCURRENCY: usize = 4;
const REFUSE_EVERY: usize = 5000;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let binary = args.get(1).expect("usage: soak <proxy-binary> [scrapes] [sample-every]").clone();
    let total: usize = args.get(2).map_or(100_000, |a| a.parse().expect("scrapes"));
    let every: usize = args.get(3).map_or(1000, |a| a.parse().expect("sample-every"));
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(soak(binary, total, every));
}

fn sample_body() -> Bytes {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/windows_exporter-0.13-cs-service.prom");
    Bytes::from(std::fs::read(path).expect("read the windows_exporter sample"))
}

/// The exporter: an accept loop that can be taken down and brought back on the same port.
struct Exporter {
    addr: SocketAddr,
    body: Bytes,
    requests: Arc<AtomicU64>,
    accept: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Exporter {
    async fn start(body: Bytes) -> Arc<Exporter> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let exporter = Arc::new(Exporter {
            addr: listener.local_addr().unwrap(),
            body,
            requests: Arc::new(AtomicU64::new(0)),
            accept: Mutex::new(None),
        });
        exporter.serve(listener).await;
        exporter
    }

    async fn serve(self: &Arc<Self>, listener: TcpListener) {
        let this = self.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let this = this.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |_request: Request<Incoming>| {
                        let n = this.requests.fetch_add(1, Ordering::Relaxed);
                        let body = this.body.clone();
                        async move { Ok::<_, Infallible>(respond(n, body).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        *self.accept.lock().await = Some(task);
    }

    /// Nothing listens for `gap`, then the same port serves again.
    async fn refuse_for(self: &Arc<Self>, gap: Duration) {
        if let Some(task) = self.accept.lock().await.take() {
            task.abort();
            let _ = task.await;
        }
        tokio::time::sleep(gap).await;
        let listener = TcpListener::bind(self.addr).await.expect("rebind the exporter port");
        self.serve(listener).await;
    }
}

async fn respond(n: u64, body: Bytes) -> Response<Body> {
    let ok = |body: Body| {
        let mut response = Response::new(body);
        response.headers_mut().insert("content-type", "text/plain; version=0.0.4; charset=utf-8".parse().unwrap());
        response
    };
    match n % 100 {
        // Slow response headers.
        7 => {
            tokio::time::sleep(Duration::from_millis(150)).await;
            ok(Full::new(body).map_err(|never| match never {}).boxed())
        }
        // Reset mid-body.
        13 => {
            let (mut sender, channel) = http_body_util::Channel::<Bytes, std::io::Error>::new(2);
            tokio::spawn(async move {
                let _ = sender.send_data(body.slice(..body.len() / 2)).await;
                sender.abort(std::io::Error::other("reset"));
            });
            ok(channel.boxed())
        }
        // Dripped body.
        29 => {
            let (mut sender, channel) = http_body_util::Channel::<Bytes, std::io::Error>::new(2);
            tokio::spawn(async move {
                for chunk in body.chunks(body.len() / 5 + 1) {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    if sender.send_data(body.slice_ref(chunk)).await.is_err() {
                        return;
                    }
                }
            });
            ok(channel.boxed())
        }
        // Answers, then closes the connection the proxy's pool holds.
        41 => {
            let mut response = ok(Full::new(body).map_err(|never| match never {}).boxed());
            response.headers_mut().insert("connection", "close".parse().unwrap());
            response
        }
        _ => ok(Full::new(body).map_err(|never| match never {}).boxed()),
    }
}

#[derive(Default)]
struct Tally {
    ok: AtomicUsize,
    bad_gateway: AtomicUsize,
    unavailable: AtomicUsize,
    gateway_timeout: AtomicUsize,
    other_status: AtomicUsize,
    cut_off: AtomicUsize,
    connection_errors: AtomicUsize,
    short_success: AtomicUsize,
}

struct Sample {
    scrapes: usize,
    rss: u64,
    fds: usize,
    threads: u64,
}

fn proc_status(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(&format!("{field}:"))).unwrap();
    let mut words = line.split_whitespace().skip(1);
    let value: u64 = words.next().unwrap().parse().unwrap();
    if words.next() == Some("kB") { value * 1024 } else { value }
}

fn sample(pid: u32, scrapes: usize) -> Sample {
    Sample {
        scrapes,
        rss: proc_status(pid, "VmRSS"),
        fds: std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count(),
        threads: proc_status(pid, "Threads"),
    }
}

async fn soak(binary: String, total: usize, every: usize) {
    let body = sample_body();
    let exporter = Exporter::start(body.clone()).await;
    let mut child = Command::new(&binary)
        .env_clear()
        .env("PROXY_HOSTIP", "127.0.0.1")
        .env("PROXY_PORT", exporter.addr.port().to_string())
        .env("PROXY_LISTEN", "127.0.0.1:0")
        .env("PROXY_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the proxy");
    let pid = child.id();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let proxy: SocketAddr = loop {
        let line = lines.next().expect("the proxy exited").unwrap();
        let value: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if value["message"] == "listening" {
            break value["listen"].as_str().unwrap().parse().unwrap();
        }
    };
    // Keep draining the proxy's log so it never blocks on a full pipe; count warnings.
    let warnings = Arc::new(AtomicUsize::new(0));
    let counted = warnings.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if line.contains("\"level\":\"WARN\"") {
                counted.fetch_add(1, Ordering::Relaxed);
            }
        }
    });

    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let tally = Arc::new(Tally::default());
    let samples = Arc::new(std::sync::Mutex::new(vec![sample(pid, 0)]));
    let mut workers = Vec::new();
    for _ in 0..CONCURRENCY {
        let (next, done, tally, samples, exporter, body) =
            (next.clone(), done.clone(), tally.clone(), samples.clone(), exporter.clone(), body.clone());
        workers.push(tokio::spawn(async move {
            let mut sender: Option<hyper::client::conn::http1::SendRequest<Empty<Bytes>>> = None;
            while next.fetch_add(1, Ordering::Relaxed) < total {
                if sender.as_ref().is_none_or(|s| s.is_closed()) {
                    let stream = TcpStream::connect(proxy).await.expect("connect to the proxy");
                    let (s, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
                    tokio::spawn(connection);
                    sender = Some(s);
                }
                let s = sender.as_mut().unwrap();
                let request = Request::get("/metrics")
                    .header("host", proxy.to_string())
                    .header("x-prometheus-scrape-timeout-seconds", "2")
                    .body(Empty::new())
                    .unwrap();
                let result = async {
                    s.ready().await?;
                    s.send_request(request).await
                }
                .await;
                match result {
                    Err(_) => {
                        tally.connection_errors.fetch_add(1, Ordering::Relaxed);
                        sender = None;
                    }
                    Ok(response) => {
                        let status = response.status();
                        match response.into_body().collect().await {
                            Err(_) => {
                                tally.cut_off.fetch_add(1, Ordering::Relaxed);
                                sender = None;
                            }
                            Ok(got) => {
                                let got = got.to_bytes();
                                let counter = match status {
                                    StatusCode::OK if got == body => &tally.ok,
                                    StatusCode::OK => &tally.short_success,
                                    StatusCode::BAD_GATEWAY => &tally.bad_gateway,
                                    StatusCode::SERVICE_UNAVAILABLE => &tally.unavailable,
                                    StatusCode::GATEWAY_TIMEOUT => &tally.gateway_timeout,
                                    _ => &tally.other_status,
                                };
                                counter.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                }
                let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                if n % every == 0 {
                    samples.lock().unwrap().push(sample(pid, n));
                }
                if n % REFUSE_EVERY == 0 {
                    exporter.refuse_for(Duration::from_millis(50)).await;
                }
            }
        }));
    }
    for worker in workers {
        worker.await.unwrap();
    }
    let elapsed = started.elapsed();
    let _ = child.kill();
    let _ = child.wait();

    report(&samples.lock().unwrap(), &tally, elapsed, total, warnings.load(Ordering::Relaxed));
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let v: Vec<f64> = values.collect();
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

fn report(samples: &[Sample], tally: &Tally, elapsed: Duration, total: usize, warnings: usize) {
    // Skip the sample taken before any scrape: start-up RSS is not the steady state.
    let steady = &samples[1..];
    let quarter = (steady.len() / 4).max(1);
    let (first, last) = (&steady[..quarter], &steady[steady.len() - quarter..]);
    let mib = |b: f64| b / (1024.0 * 1024.0);
    let rss = (mean(first.iter().map(|s| s.rss as f64)), mean(last.iter().map(|s| s.rss as f64)));
    let fds = (mean(first.iter().map(|s| s.fds as f64)), mean(last.iter().map(|s| s.fds as f64)));
    let threads = (mean(first.iter().map(|s| s.threads as f64)), mean(last.iter().map(|s| s.threads as f64)));
    // Flat: RSS within 10% (or 1 MiB), fds within 2 (pooled connections come and go), threads equal.
    let rss_flat = rss.1 <= rss.0 * 1.10 || rss.1 - rss.0 <= 1024.0 * 1024.0;
    let fds_flat = fds.1 <= fds.0 + 2.0;
    let threads_flat = threads.1 <= threads.0;
    let load = |c: &AtomicUsize| c.load(Ordering::Relaxed);

    println!("| | value |");
    println!("|---|---|");
    println!(
        "| scrapes | {total} in {:.0} s ({:.0}/s, {CONCURRENCY} concurrent) |",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );
    println!("| complete 200 | {} |", load(&tally.ok));
    println!(
        "| 502 / 503 / 504 / other status | {} / {} / {} / {} |",
        load(&tally.bad_gateway),
        load(&tally.unavailable),
        load(&tally.gateway_timeout),
        load(&tally.other_status)
    );
    println!("| body cut off (scraper saw an error) | {} |", load(&tally.cut_off));
    println!("| connection errors | {} |", load(&tally.connection_errors));
    println!("| 200 with a wrong or short body | {} |", load(&tally.short_success));
    println!("| proxy warnings logged | {warnings} |");
    println!(
        "| RSS first / last quartile | {:.1} / {:.1} MiB ({}) |",
        mib(rss.0),
        mib(rss.1),
        if rss_flat { "flat" } else { "GROWING" }
    );
    println!(
        "| open fds first / last quartile | {:.1} / {:.1} ({}) |",
        fds.0,
        fds.1,
        if fds_flat { "flat" } else { "GROWING" }
    );
    println!(
        "| threads first / last quartile | {:.1} / {:.1} ({}) |",
        threads.0,
        threads.1,
        if threads_flat { "flat" } else { "GROWING" }
    );
    println!(
        "| samples | {} (every {} scrapes); RSS min/max {:.1}/{:.1} MiB, fds min/max {}/{} |",
        samples.len(),
        samples.get(1).map_or(0, |s| s.scrapes),
        mib(steady.iter().map(|s| s.rss).min().unwrap_or(0) as f64),
        mib(steady.iter().map(|s| s.rss).max().unwrap_or(0) as f64),
        steady.iter().map(|s| s.fds).min().unwrap_or(0),
        steady.iter().map(|s| s.fds).max().unwrap_or(0)
    );
    let flat = rss_flat && fds_flat && threads_flat && load(&tally.short_success) == 0;
    println!();
    println!("verdict: {}", if flat { "FLAT" } else { "NOT FLAT" });
    if !flat {
        std::process::exit(1);
    }
}
