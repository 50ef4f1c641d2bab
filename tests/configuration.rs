//! Configuration errors are caught before anything binds: one stderr line per bad variable,
//! naming it and its value, and exit code 64. `--help` and `--version` answer without config.

mod support;

use support::run_to_exit;
use support::scenarios::{self, Native};

const EX_USAGE: i32 = 64;

fn stderr_lines(output: &std::process::Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stderr).lines().map(str::to_owned).collect()
}

#[tokio::test]
async fn missing_hostip_names_the_variable_and_exits_64() {
    scenarios::missing_hostip_names_the_variable_and_exits_64(&Native).await;
}

#[tokio::test]
async fn bad_port_names_the_variable_and_its_value() {
    scenarios::bad_port_names_the_variable_and_its_value(&Native).await;
}

#[tokio::test]
async fn port_zero_and_out_of_range_ports_are_invalid_upstream_ports() {
    for port in ["0", "65536", "70000"] {
        let output = run_to_exit(&[], &[("PROXY_HOSTIP", "10.240.0.4"), ("PROXY_PORT", port)]).await;
        assert_eq!(output.status.code(), Some(EX_USAGE), "PROXY_PORT={port}");
        let lines = stderr_lines(&output);
        assert!(lines[0].starts_with(&format!("PROXY_PORT=\"{port}\" is not valid")), "{lines:?}");
    }
}

#[tokio::test]
async fn a_bad_node_metrics_mode_names_the_variable_and_exits_64() {
    let output = run_to_exit(&[], &[("PROXY_HOSTIP", "10.240.0.4"), ("PROXY_NODE_METRICS", "yes")]).await;
    assert_eq!(output.status.code(), Some(EX_USAGE));
    assert_eq!(stderr_lines(&output), ["PROXY_NODE_METRICS=\"yes\" is not valid: use off, append or only"]);
}

#[tokio::test]
async fn every_bad_variable_is_reported_in_one_run() {
    let output = run_to_exit(
        &[],
        &[
            ("PROXY_HOSTIP", "10.0.0.1:9182"),
            ("PROXY_LISTEN", "9100"),
            ("PROXY_SCRAPE_TIMEOUT_SECONDS", "ten"),
            ("RUST_LOG", "windows_exporter_proxy=loud"),
        ],
    )
    .await;

    assert_eq!(output.status.code(), Some(EX_USAGE));
    let lines = stderr_lines(&output);
    assert_eq!(lines.len(), 4, "{lines:?}");
    for prefix in [
        "PROXY_HOSTIP=\"10.0.0.1:9182\" is not valid",
        "PROXY_LISTEN=\"9100\" is not valid",
        "PROXY_SCRAPE_TIMEOUT_SECONDS=\"ten\" is not valid",
        "RUST_LOG=\"windows_exporter_proxy=loud\" is not valid",
    ] {
        assert!(lines.iter().any(|l| l.starts_with(prefix)), "no line starts with {prefix:?}: {lines:?}");
    }
}

#[tokio::test]
async fn configuration_is_checked_before_binding() {
    // The listen port is taken: had the proxy tried to bind first, it would fail with a bind
    // error (exit 1) instead of the configuration error.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = taken.local_addr().unwrap().to_string();

    let output = run_to_exit(&[], &[("PROXY_LISTEN", &listen), ("PROXY_PORT", "0")]).await;

    assert_eq!(output.status.code(), Some(EX_USAGE));
    assert_eq!(stderr_lines(&output).len(), 2);
}

#[tokio::test]
async fn a_taken_listen_address_is_a_clear_runtime_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = taken.local_addr().unwrap().to_string();

    let output =
        run_to_exit(&[], &[("PROXY_HOSTIP", "127.0.0.1"), ("PROXY_LISTEN", &listen), ("PROXY_LOG_FORMAT", "json")])
            .await;

    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line =
        stdout.lines().find(|l| l.contains("cannot listen")).unwrap_or_else(|| panic!("no error line in {stdout}"));
    let value: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(value["listen"], listen);
}

#[tokio::test]
async fn help_lists_every_variable_with_its_default() {
    let output = run_to_exit(&["--help"], &[]).await;

    assert_eq!(output.status.code(), Some(0));
    let help = String::from_utf8(output.stdout).unwrap();
    for (name, default) in [
        ("PROXY_HOSTIP", "(required)"),
        ("PROXY_PORT", "(default 9182)"),
        ("PROXY_LISTEN", "(default 0.0.0.0:9100)"),
        ("PROXY_SCRAPE_TIMEOUT_SECONDS", "(default 10)"),
        ("PROXY_MAX_INFLIGHT", "(default 2)"),
        ("PROXY_SHUTDOWN_GRACE_SECONDS", "(default 20)"),
        ("PROXY_LOG_FORMAT", "(default text)"),
        ("RUST_LOG", "(default info)"),
    ] {
        let line = help.lines().find(|l| l.trim_start().starts_with(name)).unwrap_or_else(|| panic!("{name} missing"));
        assert!(line.ends_with(default), "{line}");
    }
}

#[tokio::test]
async fn version_prints_the_crate_version() {
    scenarios::version_prints_the_crate_version(&Native).await;
}

#[tokio::test]
async fn unknown_arguments_are_usage_errors() {
    let output = run_to_exit(&["--port", "9100"], &[("PROXY_HOSTIP", "127.0.0.1")]).await;

    assert_eq!(output.status.code(), Some(EX_USAGE));
    assert!(stderr_lines(&output)[0].starts_with("unknown argument \"--port\""));
}
