//! The proxy's objects, wired from a checked [`Config`]: the exporter client, the handlers behind
//! the router, and the server's settings. `main` builds them here and so does the in-process
//! test, so the two cannot drift apart.
//!
//! This sits on top with `config`: it is the one place that hands each module its own settings.

use std::sync::Arc;

use crate::auth;
use crate::config::Config;
use crate::exporter::Exporter;
use crate::health::Readiness;
use crate::router::App;
use crate::scrape::Scrape;
use crate::server;
use crate::telemetry::Telemetry;
use crate::tls::acceptor::Acceptor;

/// What [`server::run`] serves, and the exporter it reaches.
pub struct Proxy {
    /// The handlers behind the router.
    pub app: Arc<App>,
    /// The server's settings.
    pub settings: server::Settings,
    /// The exporter, for `main`'s start-up line and the start of port discovery.
    pub exporter: Exporter,
}

impl Proxy {
    /// Builds the proxy `config` describes, counting into `telemetry` and serving HTTPS through
    /// `tls` when given. Starts the hop (its warnings, certificate expiry metrics and file watch)
    /// and logs the authentication chain; port discovery is left to the caller.
    pub fn build(config: &Config, telemetry: Arc<Telemetry>, tls: Option<Acceptor>) -> Proxy {
        let exporter = Exporter::with_ports(
            config.exporter.clone(),
            config.exporter_ports.clone(),
            config.connect_timeout,
            &config.hop,
            telemetry.exporter_port().clone(),
        );
        exporter.hop_started(&config.hop, telemetry.tls());
        let readiness = Arc::new(Readiness::new(exporter.clone(), config.ready_max_age));
        let scrape = Scrape::new(&config.scrape_settings(), exporter.clone(), telemetry.clone())
            .with_collectors(config.collect.clone())
            .with_filter(config.filter.clone());
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
        Proxy { app, settings, exporter }
    }
}
