//! A fake windows_exporter that honours `collect[]` as the real one does
//! (`internal/httphandler/httphandler.go` and `pkg/collector/handler.go` at 589ec15):
//!
//! - `collect[]` is read with Go's `r.URL.Query()`: key and value percent-decoded (`+` a space),
//!   each repeated parameter one collector, no comma splitting, a pair that does not decode
//!   dropped. None at all means every enabled collector.
//! - A name that is not enabled is answered 400 `Couldn't create filtered metrics handler: ...
//!   unknown collector NAME`, and nothing is collected.
//! - Collections are serialised behind one process-wide lock (`concurrencyMu`, v0.31+), taken
//!   before any collector runs and released before the response headers (promhttp gathers first).
//! - Each collector run adds `windows_exporter_collector_duration_seconds`,
//!   `windows_exporter_collector_success` and one sample of its own (`windows_NAME_sample 1`) to
//!   the body.
//!
//! Slow collectors take [`Slow::Take`] each, or are [`Slow::Held`] until the test releases
//! their collection, for tests that must know exactly what runs when.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;
use tokio::sync::{Mutex, Semaphore, mpsc};

use super::{FakeExporter, reply, within};

/// How long a slow collector takes.
#[derive(Debug, Clone, Copy)]
pub enum Slow {
    /// This long, each.
    Take(Duration),
    /// Until [`CollectingExporter::release`]: a collection with any slow collector waits for one
    /// release, holding the exporter's lock.
    Held,
}

/// One collection the exporter ran: its collectors in order, when it took the lock and when it
/// released it.
#[derive(Debug, Clone)]
pub struct Collection {
    pub collectors: Vec<String>,
    pub started: Instant,
    pub ended: Instant,
}

/// The exporter and what it has collected.
pub struct CollectingExporter {
    pub exporter: FakeExporter,
    started: mpsc::UnboundedReceiver<Vec<String>>,
    collections: mpsc::UnboundedReceiver<Collection>,
    gate: Arc<Semaphore>,
}

/// A fast collector's time: small, but not nothing.
const FAST: Duration = Duration::from_millis(5);

impl CollectingExporter {
    /// An exporter with `enabled` collectors, of which `slow` are slow as `how`.
    pub async fn start(enabled: &[&str], slow: &[&str], how: Slow) -> CollectingExporter {
        let enabled: Arc<Vec<String>> = Arc::new(enabled.iter().map(|s| s.to_string()).collect());
        let slow: Arc<Vec<String>> = Arc::new(slow.iter().map(|s| s.to_string()).collect());
        let lock = Arc::new(Mutex::new(()));
        let gate = Arc::new(Semaphore::new(0));
        let (started_tx, started) = mpsc::unbounded_channel();
        let (collections_tx, collections) = mpsc::unbounded_channel();
        let handler_gate = gate.clone();
        let exporter = FakeExporter::start(move |request| {
            let (enabled, slow, lock, gate) = (enabled.clone(), slow.clone(), lock.clone(), handler_gate.clone());
            let (started_tx, collections_tx) = (started_tx.clone(), collections_tx.clone());
            async move {
                if request.uri().path() == "/health" {
                    return reply(StatusCode::OK, &[("content-type", "application/json")], r#"{"status":"ok"}"#);
                }
                let requested = collect_params(request.uri().query().unwrap_or_default());
                if let Some(unknown) = requested.iter().find(|name| !enabled.contains(name)) {
                    return reply(
                        StatusCode::BAD_REQUEST,
                        &[("content-type", "text/plain; charset=utf-8")],
                        format!(
                            "Couldn't create filtered metrics handler: couldn't create collector handler: failed to create handler with collectors: unknown collector {unknown}"
                        ),
                    );
                }
                let run: Vec<String> = if requested.is_empty() { enabled.to_vec() } else { requested };
                let guard = lock.lock().await;
                let began = Instant::now();
                let _ = started_tx.send(run.clone());
                let has_slow = run.iter().any(|name| slow.contains(name));
                if has_slow && matches!(how, Slow::Held) {
                    gate.acquire().await.expect("the gate is never closed").forget();
                }
                let mut body = String::new();
                for name in &run {
                    let took = match (slow.contains(name), how) {
                        (true, Slow::Take(time)) => time,
                        (true, Slow::Held) => Duration::ZERO,
                        (false, _) => FAST,
                    };
                    tokio::time::sleep(took).await;
                    body.push_str(&format!(
                        "windows_exporter_collector_duration_seconds{{collector=\"{name}\"}} {}\n\
                         windows_exporter_collector_success{{collector=\"{name}\"}} 1\n\
                         windows_exporter_collector_timeout{{collector=\"{name}\"}} 0\n\
                         windows_{name}_sample 1\n",
                        took.as_secs_f64()
                    ));
                }
                let _ = collections_tx.send(Collection { collectors: run, started: began, ended: Instant::now() });
                drop(guard);
                reply(StatusCode::OK, &[("content-type", "text/plain; version=0.0.4; charset=utf-8")], Bytes::from(body))
            }
        })
        .await;
        CollectingExporter { exporter, started, collections, gate }
    }

    /// The port, as a string for `PROXY_PORT`.
    pub fn port(&self) -> String {
        self.exporter.port()
    }

    /// The collectors of the next collection to take the exporter's lock.
    pub async fn next_started(&mut self) -> Vec<String> {
        within("a collection to start", self.started.recv()).await.expect("the exporter is running")
    }

    /// The next collection to finish.
    pub async fn next_collection(&mut self) -> Collection {
        within("a collection to finish", self.collections.recv()).await.expect("the exporter is running")
    }

    /// Collections started and not yet taken by [`CollectingExporter::next_started`].
    pub fn started_so_far(&mut self) -> Vec<Vec<String>> {
        let mut all = Vec::new();
        while let Ok(run) = self.started.try_recv() {
            all.push(run);
        }
        all
    }

    /// Lets one held slow collection finish.
    pub fn release(&self) {
        self.gate.add_permits(1);
    }
}

/// The `collect[]` values of `query` as Go's `url.ParseQuery` finds them.
pub fn collect_params(query: &str) -> Vec<String> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty() && !pair.contains(';'))
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (unescape(key)? == "collect[]").then(|| unescape(value)).flatten()
        })
        .collect()
}

/// Go's `url.QueryUnescape`.
fn unescape(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The collectors whose samples (`windows_NAME_sample`) a scrape body carries, in order.
pub fn collected(body: &str) -> Vec<String> {
    body.lines()
        .filter_map(|line| line.strip_prefix("windows_")?.strip_suffix("_sample 1").map(str::to_owned))
        .collect()
}
