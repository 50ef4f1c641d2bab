//! A real Prometheus server (Debian's `prometheus` 2.42) for the tests that need a real scraper:
//! it runs with the test's configuration in a directory of its own, answers its HTTP API on a
//! loopback port, and is killed (and its directory removed) on drop. A server that exits early
//! fails the test with its log.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;

use tokio::process::{Child, Command};

/// One running Prometheus.
pub struct Prometheus {
    /// Its HTTP API.
    pub web: SocketAddr,
    child: Child,
    dir: PathBuf,
    config: String,
}

impl Prometheus {
    /// Starts Prometheus with `config` (a `prometheus.yml`) in a new directory named after `name`.
    pub fn start(name: &str, config: &str) -> Prometheus {
        Prometheus::start_with(name, config, &[])
    }

    /// Like [`Prometheus::start`], with more flags: `--enable-feature=agent` (then its storage is
    /// `--storage.agent.path`, as agent mode refuses the TSDB flags) or
    /// `--web.enable-remote-write-receiver`.
    pub fn start_with(name: &str, config: &str, flags: &[&str]) -> Prometheus {
        let dir = std::env::temp_dir().join(format!("wep-prometheus-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let web: SocketAddr = format!("127.0.0.1:{}", super::closed_port()).parse().unwrap();
        let storage = if flags.contains(&"--enable-feature=agent") { "agent" } else { "tsdb" };
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.{storage}.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={web}"))
            .args(flags)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("Debian's prometheus is installed (bash .ci/install)");
        Prometheus { web, child, dir, config: config.to_owned() }
    }

    /// Fails the test, with Prometheus's log and configuration, if it has exited.
    pub fn check_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            let log = std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default();
            panic!("prometheus exited with {status}:\n{log}\nconfig:\n{}", self.config);
        }
    }

    /// `GET path_and_query` on the HTTP API, as JSON; `None` while it is not answering yet.
    pub async fn api(&mut self, path_and_query: &str) -> Option<serde_json::Value> {
        self.check_running();
        let stream = tokio::net::TcpStream::connect(self.web).await.ok()?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.ok()?;
        tokio::spawn(connection);
        let request = http::Request::get(path_and_query)
            .header("host", self.web.to_string())
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let response = sender.send_request(request).await.ok()?;
        let body = super::read_all(response).await.ok()?;
        serde_json::from_slice(&body.body).ok()
    }

    /// An instant query's result: `(job, value)` per series.
    pub async fn query(&mut self, query: &str) -> Vec<(String, f64)> {
        let Some(json) = self.api(&format!("/api/v1/query?query={}", encode(query))).await else { return Vec::new() };
        json["data"]["result"]
            .as_array()
            .map(|results| {
                results
                    .iter()
                    .map(|r| {
                        let job = r["metric"]["job"].as_str().unwrap_or_default().to_owned();
                        let value = r["value"][1].as_str().unwrap_or("NaN").parse().unwrap_or(f64::NAN);
                        (job, value)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// An instant query at `time` (Unix seconds): each series' labels (`__name__` left out) and
    /// value; `None` while the API does not answer or the query fails.
    pub async fn query_at(&mut self, query: &str, time: f64) -> Option<Vec<(BTreeMap<String, String>, f64)>> {
        let json = self.api(&format!("/api/v1/query?query={}&time={time:.3}", encode(query))).await?;
        if json["status"] != "success" {
            panic!("query {query} failed: {json}");
        }
        let results = json["data"]["result"].as_array()?;
        Some(
            results
                .iter()
                .map(|r| {
                    let labels = r["metric"]
                        .as_object()
                        .map(|m| {
                            m.iter()
                                .filter(|(k, _)| *k != "__name__")
                                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                                .collect()
                        })
                        .unwrap_or_default();
                    (labels, r["value"][1].as_str().unwrap_or("NaN").parse().unwrap_or(f64::NAN))
                })
                .collect(),
        )
    }

    /// `job -> (health, lastError)` of the active targets, as the targets page shows them.
    pub async fn targets(&mut self) -> BTreeMap<String, (String, String)> {
        let Some(json) = self.api("/api/v1/targets?state=active").await else { return BTreeMap::new() };
        json["data"]["activeTargets"]
            .as_array()
            .map(|targets| {
                targets
                    .iter()
                    .map(|t| {
                        let job = t["labels"]["job"].as_str().unwrap_or_default().to_owned();
                        let health = t["health"].as_str().unwrap_or_default().to_owned();
                        let error = t["lastError"].as_str().unwrap_or_default().to_owned();
                        (job, (health, error))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A query string value, percent-encoded.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"_.-".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }
        })
        .collect()
}

/// What `promtool check metrics` (Debian's `prometheus` package, installed by `.ci/install`)
/// prints about `text`, its stdout and stderr together: empty when it finds nothing to say.
/// A promtool that fails without saying why fails the test.
pub async fn promtool_check_metrics(text: &str) -> String {
    use tokio::io::AsyncWriteExt;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool from Debian's prometheus package is installed (bash .ci/install)");
    let mut stdin = child.stdin.take().expect("promtool's stdin is piped");
    stdin.write_all(text.as_bytes()).await.expect("promtool reads its stdin");
    drop(stdin);
    let output = super::within("promtool", child.wait_with_output()).await.expect("promtool ran");
    let said = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success() || !said.trim().is_empty(), "promtool failed silently");
    said
}
