//! The `windows-exporter-proxy` binary: flags, configuration, logging, bind, serve, exit code.
//! Everything else is in the library; see `lib.rs` for the map.
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::sync::Arc;

use windows_exporter_proxy::auth;
use windows_exporter_proxy::cli::{self, Command};
use windows_exporter_proxy::config::{Config, EXIT_USAGE};
use windows_exporter_proxy::exporter::settings::Trust;
use windows_exporter_proxy::exporter::{Exporter, reload};
use windows_exporter_proxy::health::Readiness;
use windows_exporter_proxy::logging;
use windows_exporter_proxy::router::App;
use windows_exporter_proxy::scrape::Scrape;
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
    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(%error, listen = %config.listen, "cannot listen on PROXY_LISTEN");
            return exit(1);
        }
    };
    let local = listener.local_addr().map_or_else(|_| config.listen.to_string(), |a| a.to_string());

    let exporter = Exporter::with_ports(
        config.exporter.clone(),
        config.exporter_ports.clone(),
        config.connect_timeout,
        &config.hop,
        telemetry.exporter_port().clone(),
    );
    hop_started(&config, &exporter, &telemetry);
    let readiness = Arc::new(Readiness::new(exporter.clone(), config.ready_max_age));
    let scrape = Scrape::new(&config.scrape_settings(), exporter.clone(), telemetry.clone());
    let auth = match auth::build(&config.auth, &telemetry) {
        Some(auth) => {
            tracing::info!(methods = ?auth.methods().iter().map(|m| m.name()).collect::<Vec<_>>(), "authenticating scrapes of /metrics and /proxy/metrics");
            Some(auth)
        }
        None => None,
    };
    if config.auth.plaintext_credentials {
        tracing::warn!(
            "PROXY_ALLOW_PLAINTEXT_CREDENTIALS=true: scrapers' passwords or tokens cross the network in clear text"
        );
    }
    let app = Arc::new(App { scrape, readiness, telemetry, auth });
    let settings = config.server_settings(tls);

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

/// The hop's start-up: the skip-verify warning, the expiry of its certificate files, and the
/// watch on the files it re-reads.
fn hop_started(config: &Config, exporter: &Exporter, telemetry: &Telemetry) {
    let hop = &config.hop;
    if let Some(tls) = &hop.tls {
        match &tls.trust {
            Trust::InsecureSkipVerify => tracing::warn!(
                variable = "PROXY_EXPORTER_INSECURE_SKIP_VERIFY",
                "the exporter's certificate is not verified: whoever answers on the exporter's address gets the scrapes and the proxy's exporter credentials"
            ),
            Trust::Bundle { file, certificates, .. } => telemetry.tls().certificates_loaded(file, certificates),
        }
        if let Some(identity) = &tls.identity {
            telemetry.tls().certificate_loaded(&identity.cert_file, identity.loaded.not_after);
        }
    }
    let watched = reload::Watched {
        identity: hop.tls.as_ref().and_then(|t| t.identity.as_ref()).map(|i| (i.cert_file.clone(), i.key_file.clone())),
        password: hop.basic_auth.as_ref().map(|b| (b.username.clone(), b.password_file.clone())),
    };
    reload::spawn(exporter.clone(), watched, telemetry.tls().clone());
}

fn exit(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).expect("exit codes fit in a byte"))
}
