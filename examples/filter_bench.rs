//! The filter stage's cost on one core, over an in-memory body: no sockets, no runtime, only
//! the stage ([`Filtering`]) polled frame by frame as hyper would poll it.
//!
//! The body is a large realistic scrape: the real windows_exporter 0.13 scrape in
//! `bench/fixtures` (cs and service collectors: 3,556 `windows_service_*` series) followed by the
//! `process` collector's 16 families (v0.31 names and labels, values synthesised) for
//! `--processes` processes (default 600: about 80 pods' worth), 22 series each. It reports, per
//! mode, input MB/s, milliseconds per scrape and bytes out:
//!
//! - `keep-all`: `PROXY_METRIC_KEEP=.+`, every line parsed and kept (the parsing cost);
//! - `drop-process-service`: `PROXY_METRIC_DROP=windows_(process|service)_.+`;
//! - `series-drop`: `PROXY_SERIES_DROP` with the issue's two selectors (labels read per sample);
//! - `gzip-exporter` (keep-all and drop-process-service): the exporter gzips (level 6, as Go's
//!   default), the proxy decodes, filters and gzips again (level 1); the exporter's own gzip
//!   time is shown apart (`exporter gzip`) and comes on top;
//! - `gzip-proxy` (the same two): the exporter sends identity, the proxy filters and gzips what
//!   is kept (level 1).
//!
//! Then a 512 MiB stream (the body repeated) through drop-process-service, with the process's
//! peak RSS before and after: flat, since nothing is held but the chunk in hand.
//!
//! `cargo run --release --example filter_bench [-- --processes N --seconds S --stream-mib M]`;
//! `-- --write PATH` writes the body to PATH and stops (`bench/run --filter-only` serves it).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::io::Write as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame};
use windows_exporter_proxy::filter::body::Filtering;
use windows_exporter_proxy::filter::{FilterSettings, anchored, selector};
use windows_exporter_proxy::telemetry::Telemetry;

const SERVICE_SCRAPE: &[u8] = include_bytes!("../bench/fixtures/windows_exporter-0.13-cs-service.prom");
/// What the exporter client reads at most at once.
const CHUNK: usize = 64 * 1024;

/// An in-memory body: its chunks, then the end.
struct Chunks {
    chunks: VecDeque<Bytes>,
    /// Chunks still to hand out by cycling over `cycle` (the long stream), after `chunks`.
    cycle: Vec<Bytes>,
    left: u64,
}

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if let Some(chunk) = this.chunks.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        if this.left == 0 || this.cycle.is_empty() {
            return Poll::Ready(None);
        }
        let chunk = this.cycle[(this.left % this.cycle.len() as u64) as usize].clone();
        this.left -= 1;
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }
}

fn chunks(body: &[u8]) -> Vec<Bytes> {
    body.chunks(CHUNK).map(Bytes::copy_from_slice).collect()
}

/// The `process` collector's families for `n` processes.
fn processes(n: usize) -> String {
    const NAMES: [&str; 12] = [
        "svchost",
        "kubelet",
        "containerd",
        "csrss",
        "powershell",
        "dotnet",
        "w3wp",
        "java",
        "conhost",
        "lsass",
        "windows-exporter",
        "CExecSvc",
    ];
    let families: [(&str, &str, &str, &[&str]); 16] = [
        ("windows_process_cpu_time_total", "counter", "Returns elapsed CPU time in seconds", &["privileged", "user"]),
        ("windows_process_handles", "gauge", "Total number of handles the process has open", &[]),
        (
            "windows_process_io_bytes_total",
            "counter",
            "Bytes issued to I/O operations in different modes",
            &["other", "read", "write"],
        ),
        (
            "windows_process_io_operations_total",
            "counter",
            "I/O operations issued in different modes",
            &["other", "read", "write"],
        ),
        ("windows_process_page_faults_total", "counter", "Page faults by the threads executing in this process", &[]),
        (
            "windows_process_page_file_bytes",
            "gauge",
            "Current number of bytes this process has used in the paging file(s)",
            &[],
        ),
        (
            "windows_process_pool_bytes",
            "gauge",
            "Pool Bytes is the last observed number of bytes in the paged or nonpaged pool",
            &["nonpaged", "paged"],
        ),
        ("windows_process_priority_base", "gauge", "Current base priority of this process", &[]),
        (
            "windows_process_private_bytes",
            "gauge",
            "Current number of bytes this process has allocated that cannot be shared with other processes",
            &[],
        ),
        ("windows_process_start_time", "gauge", "Time of process start", &[]),
        ("windows_process_threads", "gauge", "Number of threads currently active in this process", &[]),
        (
            "windows_process_virtual_bytes",
            "gauge",
            "Current size, in bytes, of the virtual address space that the process is using",
            &[],
        ),
        (
            "windows_process_working_set_bytes",
            "gauge",
            "Maximum number of bytes in the working set of this process at any point in time",
            &[],
        ),
        (
            "windows_process_working_set_peak_bytes",
            "gauge",
            "Maximum size, in bytes, of the Working Set of this process at any point in time",
            &[],
        ),
        (
            "windows_process_working_set_private_bytes",
            "gauge",
            "Size of the working set, in bytes, that is use for this process only",
            &[],
        ),
        ("windows_process_info", "gauge", "Process information", &[]),
    ];
    let mut text = String::new();
    for (name, kind, help, modes) in families {
        let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for i in 0..n {
            let process = NAMES[i % NAMES.len()];
            let pid = 1000 + i * 4;
            if name == "windows_process_info" {
                let _ = writeln!(
                    text,
                    "{name}{{cmdline=\"C:\\\\Windows\\\\system32\\\\{process}.exe -k pod{i} --config \\\"C:\\\\k\\\\{process}.yaml\\\"\",creating_process_id=\"{}\",owner=\"NT AUTHORITY\\\\SYSTEM\",process=\"{process}\",process_group_id=\"{}\",process_id=\"{pid}\"}} 1",
                    pid / 2,
                    i % 7
                );
            } else if modes.is_empty() {
                let _ =
                    writeln!(text, "{name}{{process=\"{process}\",process_id=\"{pid}\"}} {}", 1.5e6 + i as f64 * 917.0);
            } else {
                for mode in modes {
                    let label = if name.contains("pool") { "pool" } else { "mode" };
                    let _ = writeln!(
                        text,
                        "{name}{{{label}=\"{mode}\",process=\"{process}\",process_id=\"{pid}\"}} {}",
                        3.25e4 + i as f64
                    );
                }
            }
        }
    }
    text
}

fn settings(mode: &str) -> FilterSettings {
    match mode {
        "keep-all" => FilterSettings { keep: Some(anchored(".+").unwrap()), ..Default::default() },
        "series-drop" => FilterSettings {
            series_drop: selector::parse_list(
                r#"windows_process_cpu_time_total{process!~"kubelet|containerd|windows-exporter.*"}; {__name__=~"windows_service_.+", start_mode="disabled"}"#,
            )
            .unwrap(),
            ..Default::default()
        },
        _ => FilterSettings { drop: Some(anchored("windows_(process|service)_.+").unwrap()), ..Default::default() },
    }
}

/// Runs one body through the stage; the bytes out.
fn run(filter: &Arc<FilterSettings>, body: Chunks, gzip_in: bool, gzip_out: bool, telemetry: &Arc<Telemetry>) -> u64 {
    let mut stage = Filtering::new(filter.clone(), body, gzip_in, gzip_out, telemetry.clone());
    let mut cx = Context::from_waker(Waker::noop());
    let mut out = 0;
    loop {
        match Pin::new(&mut stage).poll_frame(&mut cx) {
            Poll::Ready(Some(Ok(frame))) => out += frame.data_ref().map_or(0, |d| d.len() as u64),
            Poll::Ready(Some(Err(error))) => panic!("the stage failed: {error}"),
            Poll::Ready(None) => return out,
            Poll::Pending => unreachable!("an in-memory body is always ready"),
        }
    }
}

/// Runs `once` for at least `seconds`; the mean time of one run and its result.
fn timed(seconds: f64, mut once: impl FnMut() -> u64) -> (Duration, u64) {
    let start = Instant::now();
    let mut runs = 0u32;
    let mut out = 0;
    while runs < 3 || start.elapsed().as_secs_f64() < seconds {
        out = std::hint::black_box(once());
        runs += 1;
    }
    (start.elapsed() / runs, out)
}

/// Peak resident memory of this process (`VmHWM`), in KiB; 0 where `/proc` is absent.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

fn gzip(data: &[u8], level: u32) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str, default: f64| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let processes_n = arg("--processes", 600.0) as usize;
    let seconds = arg("--seconds", 2.0);
    let stream_mib = arg("--stream-mib", 512.0) as u64;

    let mut body = SERVICE_SCRAPE.to_vec();
    body.extend_from_slice(processes(processes_n).as_bytes());
    let lines = body.iter().filter(|&&b| b == b'\n').count();
    if let Some(path) = args.iter().position(|a| a == "--write").and_then(|i| args.get(i + 1)) {
        // bench/filter.py serves this body from its exporter stand-in.
        std::fs::write(path, &body).expect("write the body");
        return;
    }
    let plain = chunks(&body);
    let gzipped = gzip(&body, 6);
    let telemetry = Arc::new(Telemetry::new());
    println!(
        "body: {} bytes, {lines} lines ({processes_n} processes); gzip level 6: {} bytes",
        body.len(),
        gzipped.len()
    );
    println!("{:<34} {:>10} {:>12} {:>12}", "mode", "MB/s in", "ms/scrape", "bytes out");
    let report = |mode: &str, (took, out): (Duration, u64)| {
        let mbps = body.len() as f64 / took.as_secs_f64() / 1e6;
        println!("{mode:<34} {mbps:>10.0} {:>12.3} {out:>12}", took.as_secs_f64() * 1e3);
    };
    let body_of = |chunks: &[Bytes]| Chunks { chunks: chunks.iter().cloned().collect(), cycle: Vec::new(), left: 0 };
    for mode in ["keep-all", "drop-process-service", "series-drop"] {
        let filter = Arc::new(settings(mode));
        report(mode, timed(seconds, || run(&filter, body_of(&plain), false, false, &telemetry)));
    }
    let exporter_gzip = timed(seconds, || gzip(&body, 6).len() as u64).0;
    println!(
        "{:<34} {:>10} {:>12.3} (the exporter's own gzip of the whole body, level 6, in Rust's miniz_oxide)",
        "exporter gzip",
        "",
        exporter_gzip.as_secs_f64() * 1e3
    );
    let gz_chunks = chunks(&gzipped);
    for mode in ["keep-all", "drop-process-service"] {
        let filter = Arc::new(settings(mode));
        report(
            &format!("{mode} gzip-exporter"),
            timed(seconds, || run(&filter, body_of(&gz_chunks), true, true, &telemetry)),
        );
        report(
            &format!("{mode} gzip-proxy"),
            timed(seconds, || run(&filter, body_of(&plain), false, true, &telemetry)),
        );
    }
    let filter = Arc::new(settings("drop-process-service"));

    if stream_mib > 0 {
        let before = peak_rss_kib();
        let n = stream_mib * 1024 * 1024 / CHUNK as u64;
        let start = Instant::now();
        let out =
            run(&filter, Chunks { chunks: VecDeque::new(), cycle: plain.clone(), left: n }, false, false, &telemetry);
        let took = start.elapsed().as_secs_f64();
        println!(
            "stream {stream_mib} MiB drop-process-service: {:.0} MB/s, {out} bytes out, peak RSS {before} KiB before, {} KiB after",
            (n * CHUNK as u64) as f64 / took / 1e6,
            peak_rss_kib()
        );
    }
}
