//! The `windows-exporter-proxy` binary: flags, configuration, logging, bind, serve, exit code.
//! Everything else is in the library; see `lib.rs` for the map.
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::sync::Arc;

use windows_exporter_proxy::cli::{self, Command};
use windows_exporter_proxy::config::{Config, EXIT_USAGE};
use windows_exporter_proxy::logging;
use windows_exporter_proxy::proxy::Proxy;
use windows_exporter_proxy::server::{self, Stopped};
use windows_exporter_proxy::shutdown::StopSignals;
use windows_exporter_proxy::telemetry::Telemetry;
use windows_exporter_proxy::tls::acceptor::Acceptor;

fn main() -> ExitCode {
    match cli::parse(std::env::args().skip(1)) {
        Command::Run => {}
        Command::Help => {
            print!("{}", cli::help());
            return ExitCode::SUCCESS;
        }
        Command::Version => {
            println!("{}", cli::version());
            return ExitCode::SUCCESS;
        }
        Command::Unknown(arg) => {
            eprintln!("unknown argument {arg:?}: configuration comes from PROXY_* variables; see --help");
            return exit(EXIT_USAGE);
        }
    }

    let config = match Config::from_env() {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{errors}");
            return exit(EXIT_USAGE);
        }
    };
    logging::init(config.log_format, config.log_filter.clone());

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a single-threaded tokio runtime builds");
    runtime.block_on(serve(config))
}

async fn serve(config: Config) -> ExitCode {
    for name in &config.unknown_variables {
        tracing::warn!(variable = %name, "ignoring unknown PROXY_ variable; see --help for the list");
    }

    let mut signals = match StopSignals::install() {
        Ok(signals) => signals,
        Err(error) => {
            tracing::error!(%error, "cannot install stop signal handlers");
            return exit(1);
        }
    };
    let telemetry = Arc::new(Telemetry::new());
    // Before binding: files that changed into something unusable since the configuration was
    // checked are a configuration error too.
    let tls = match &config.tls {
        None => None,
        Some(settings) => match Acceptor::load(settings, telemetry.tls()) {
            Ok(acceptor) => Some(acceptor),
            Err(error) => {
                eprintln!("{error}");
                return exit(EXIT_USAGE);
            }
        },
    };
    let listener = match server::listen(config.listen, config.max_connections) {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(%error, listen = %config.listen, "cannot listen on PROXY_LISTEN");
            return exit(1);
        }
    };
    let local = listener.local_addr().map_or_else(|_| config.listen.to_string(), |a| a.to_string());

    let Proxy { app, settings, exporter } = Proxy::build(&config, telemetry, tls);

    // With one port the line reads as it always has; with a list it names the host and the
    // ports, and discovery logs the port it picks.
    let ports = exporter.discovery().is_list().then(|| config.exporter_ports.to_string());
    tracing::info!(
        listen = %local,
        scheme = if config.tls.is_some() { "https" } else { "http" },
        upstream = %exporter.current_label(),
        ports,
        version = env!("CARGO_PKG_VERSION"),
        scrape_timeout_s = config.scrape_timeout.as_secs_f64(),
        timeout_margin_s = config.timeout_margin.as_secs_f64(),
        connect_timeout_s = config.connect_timeout.as_secs_f64(),
        max_inflight = config.max_inflight,
        coalesce = config.coalesce.enabled,
        coalesce_max_buffer_bytes = config.coalesce.max_buffer_bytes,
        max_connections = config.max_connections,
        header_read_timeout_s = config.header_read_timeout.as_secs_f64(),
        idle_timeout_s = config.idle_timeout.as_secs_f64(),
        max_header_bytes = config.max_header_bytes,
        shutdown_grace_s = config.shutdown_grace.as_secs_f64(),
        ready_max_age_s = config.ready_max_age.as_secs_f64(),
        "listening"
    );
    exporter.discovery().start();

    let (stop_tx, stop_rx) = tokio::sync::mpsc::channel(2);
    tokio::spawn(async move {
        loop {
            if stop_tx.send(signals.recv().await).await.is_err() {
                break;
            }
        }
    });
    match server::run(listener, app, settings, stop_rx).await {
        Stopped::Drained => ExitCode::SUCCESS,
        Stopped::GraceExpired { .. } | Stopped::Interrupted { .. } => exit(1),
    }
}

fn exit(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).expect("exit codes fit in a byte"))
}
