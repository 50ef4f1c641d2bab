//! The Windows build, run for real: the cross-compiled `.exe` under wine, on loopback, against
//! the same in-process fake exporter as the Linux suites. What a scraper sees must not depend on
//! which OS the proxy was built for: `/health`, byte-identical `/metrics` (plain and gzip), 502
//! when the exporter's port is closed, exit 64 naming the variable on bad configuration, and a
//! graceful drain on a console stop event.
//!
//! Ignored by default (they need wine and the Windows build); `scripts/test-windows` builds the
//! `.exe`, puts the test-only `bcryptprimitives.dll` shim beside it (see `windows/wine-shim/`),
//! boots a wine prefix once, and runs them with `--ignored`. Inputs, all required:
//! `WINDOWS_EXPORTER_PROXY_EXE` (the `.exe`), `WINEPREFIX`; optional `WINE` (default `wine`).

#![cfg(unix)]

mod support;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::StatusCode;
use support::scenarios::{self, Launcher, TEXT_0_0_4};
use support::{FakeExporter, ProxyProcess, windows_sample, within_for};
use tokio::process::Command;

/// A required input from the environment; a missing one fails the test, never skips it.
#[allow(clippy::disallowed_methods)] // the test harness's inputs, not the proxy's configuration
fn required(name: &str) -> OsString {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| panic!("{name} is not set: run scripts/test-windows, which sets it"))
}

/// `wine <exe>`, with the few variables wine itself needs. `ProxyProcess::start_command`
/// clears the environment, so they are passed as explicit variables; wine hands the Unix
/// environment to the Windows process, which is how the `PROXY_*` variables reach it.
struct Wine {
    program: OsString,
    exe: PathBuf,
    vars: Vec<(String, String)>,
}

impl Wine {
    #[allow(clippy::disallowed_methods)] // the test harness's inputs, not the proxy's configuration
    fn from_env() -> Wine {
        let exe = PathBuf::from(required("WINDOWS_EXPORTER_PROXY_EXE"));
        assert!(exe.is_file(), "WINDOWS_EXPORTER_PROXY_EXE={} is not a file", exe.display());
        let prefix = required("WINEPREFIX").into_string().expect("WINEPREFIX is UTF-8");
        let mut vars = vec![("WINEPREFIX".to_owned(), prefix), ("WINEDEBUG".to_owned(), "-all".to_owned())];
        for name in ["HOME", "PATH"] {
            let value = required(name).into_string().unwrap_or_else(|_| panic!("{name} is UTF-8"));
            vars.push((name.to_owned(), value));
        }
        Wine { program: std::env::var_os("WINE").unwrap_or_else(|| "wine".into()), exe, vars }
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        command.arg(&self.exe);
        command
    }

    /// wine's own variables followed by the test's.
    fn with<'a>(&'a self, vars: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).chain(vars.iter().copied()).collect()
    }
}

impl Launcher for Wine {
    /// Starts the proxy under wine and waits for its "listening" line (which names the port
    /// Windows gave it for `127.0.0.1:0`).
    async fn start(&self, vars: &[(&str, &str)]) -> ProxyProcess {
        ProxyProcess::start_command_within(WINE_STARTUP, self.command(), &self.with(vars)).await
    }

    /// Runs the proxy under wine to its exit, with only wine's variables, `args` and `vars`.
    ///
    /// Output goes to files, not pipes, and is read after the process exits: when a wine
    /// process is the first of a wineserver session, wine's helper processes (services.exe,
    /// explorer.exe, ...) inherit its standard handles and outlive it, so waiting for a pipe's
    /// end (what `Command::output` does) can wait for them instead of for the proxy.
    async fn run_to_exit(&self, args: &[&str], vars: &[(&str, &str)]) -> std::process::Output {
        let dir = std::env::temp_dir();
        let tag = format!("wine-test-{}-{}", std::process::id(), NEXT_RUN.fetch_add(1, Ordering::Relaxed));
        let (out_path, err_path) = (dir.join(format!("{tag}.stdout")), dir.join(format!("{tag}.stderr")));
        let mut command = self.command();
        command
            .args(args)
            .env_clear()
            .envs(self.with(vars))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out_path).expect("create stdout file"))
            .stderr(std::fs::File::create(&err_path).expect("create stderr file"))
            .kill_on_drop(true);
        let mut child = command.spawn().expect("run wine");
        let status =
            within_for(WINE_STARTUP, "the proxy under wine to exit", child.wait()).await.expect("wait for wine");
        let read = |path: &PathBuf| {
            let bytes = std::fs::read(path).expect("read captured output");
            let _ = std::fs::remove_file(path);
            bytes
        };
        std::process::Output { status, stdout: read(&out_path), stderr: read(&err_path) }
    }
}

/// How long the proxy under wine may take to log "listening": a wine process start costs seconds
/// on a busy 2-core machine (seen taking over 30 s once in CI with several tests starting at once).
const WINE_STARTUP: Duration = Duration::from_secs(120);

/// Numbers `run_to_exit`'s output files, which tests running in parallel must not share.
static NEXT_RUN: AtomicUsize = AtomicUsize::new(0);

#[tokio::test]
#[ignore = "needs wine and the Windows build; scripts/test-windows runs it"]
async fn health_answers_ok() {
    scenarios::health_answers_ok_with_the_exporter_down(&Wine::from_env()).await;
}

#[tokio::test]
#[ignore = "needs wine and the Windows build; scripts/test-windows runs it"]
async fn metrics_body_is_byte_identical() {
    scenarios::metrics_body_and_content_type_are_byte_identical(&Wine::from_env()).await;
}

#[tokio::test]
#[ignore = "needs wine and the Windows build; scripts/test-windows runs it"]
async fn gzip_metrics_pass_through_compressed_and_unchanged() {
    scenarios::gzip_body_passes_compressed_and_unchanged(&Wine::from_env()).await;
}

#[tokio::test]
#[ignore = "needs wine and the Windows build; scripts/test-windows runs it"]
async fn closed_exporter_port_gives_502_with_a_reason() {
    scenarios::refused_connection_is_502_naming_the_exporter(&Wine::from_env()).await;
}

#[tokio::test]
#[ignore = "needs wine and the Windows build; scripts/test-windows runs it"]
async fn missing_hostip_exits_64_and_names_the_variable() {
    scenarios::missing_hostip_names_the_variable_and_exits_64(&Wine::from_env()).await;
}

#[tokio::test]
#[ignore = "needs wine and the Windows build; scripts/test-windows runs it"]
async fn bad_port_exits_64_naming_variable_and_value() {
    scenarios::bad_port_names_the_variable_and_its_value(&Wine::from_env()).await;
}

/// wine turns SIGINT into CTRL_C_EVENT for the console process, so this drives the
/// `cfg(windows)` half of `src/shutdown.rs` (tokio's console ctrl handler), not the Unix one.
/// CTRL_SHUTDOWN_EVENT, which a stopping container sends, goes through the same tokio handler
/// machinery but cannot be raised under wine.
#[tokio::test]
#[ignore = "needs wine and the Windows build; scripts/test-windows runs it"]
async fn ctrl_c_lets_an_in_flight_scrape_finish_then_exits_0() {
    scenarios::stop_lets_an_in_flight_scrape_finish_then_exits_0(&Wine::from_env(), libc::SIGINT, "CTRL_C").await;
}

#[tokio::test]
#[ignore = "needs wine and the Windows build; scripts/test-windows runs it"]
async fn version_flag_prints_the_crate_version() {
    scenarios::version_prints_the_crate_version(&Wine::from_env()).await;
}

/// A Unix path as the Windows process sees it through wine's `Z:` drive (the whole Unix tree).
fn wine_path(path: &std::path::Path) -> String {
    format!("Z:{}", path.display()).replace('/', "\\")
}

/// HTTPS with the .exe's own crypto (aws-lc-rs, built by mingw): the handshake presents the
/// configured chain, and probes and scrapes answer over it exactly as on Linux.
#[tokio::test]
#[ignore = "needs wine and the Windows build; scripts/test-windows runs it"]
async fn https_health_and_metrics() {
    use support::certificates::{Leaf, Pki};
    use support::tls::TlsClient;

    let wine = Wine::from_env();
    let pki = Pki::new("wine");
    let server = pki.issue("server", &Leaf::server(0x77));
    let sample = windows_sample();
    let exporter = FakeExporter::serving(sample.clone(), TEXT_0_0_4).await;
    let (certificate, key) = (wine_path(&server.chain), wine_path(&server.key));
    let proxy = wine
        .start(&[
            ("PROXY_HOSTIP", "127.0.0.1"),
            ("PROXY_PORT", &exporter.port()),
            ("PROXY_TLS_CERT_FILE", &certificate),
            ("PROXY_TLS_KEY_FILE", &key),
        ])
        .await;
    let client = TlsClient::new(&pki.ca);

    let (health, handshake) = client.get(proxy.addr, "/health").await.unwrap();
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(handshake.leaf, server.leaf_der());
    assert_eq!(handshake.version, rustls::ProtocolVersion::TLSv1_3);
    let (metrics, _) = client.get(proxy.addr, "/metrics").await.unwrap();
    assert_eq!(metrics.status, StatusCode::OK);
    assert!(metrics.body == sample, "the body differs from the exporter's over HTTPS");
    let (own, _) = client.get(proxy.addr, "/proxy/metrics").await.unwrap();
    // The text format escapes the path's backslashes.
    let label = certificate.replace('\\', "\\\\");
    let expiry = format!("windows_exporter_proxy_tls_certificate_expiry_timestamp_seconds{{file=\"{label}\"}}");
    assert!(own.text().contains(&expiry), "{expiry} missing from\n{}", own.text());
}
