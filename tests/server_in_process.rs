//! `server::run` inside the test process, as its documentation promises it can be run: on
//! `127.0.0.1:0`, with the app built from a [`Config`] by `Proxy::build`, the function `main`
//! builds it with, and a stop channel in place of the OS signals. What it returns is checked directly: a stop with nothing
//! in flight drains, a stop during a held scrape waits for it and drains, and a second stop
//! during a held scrape ends the drain as `Interrupted`.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;

use http::{Method, StatusCode};
use support::{Client, FakeExporter, HeldScrape, within};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing_subscriber::layer::SubscriberExt;
use windows_exporter_proxy::config::Config;
use windows_exporter_proxy::proxy::Proxy;
use windows_exporter_proxy::server::{self, Stopped};
use windows_exporter_proxy::telemetry::Telemetry;

/// A running `server::run`: where it listens, how to ask it to stop, and what it returned.
struct Server {
    addr: SocketAddr,
    stops: mpsc::Sender<&'static str>,
    stopped: JoinHandle<Stopped>,
    /// The messages of the events it logs, to wait on as the black-box tests wait on log lines.
    messages: mpsc::UnboundedReceiver<String>,
    /// The app's metrics, readable after `run` returns.
    telemetry: Arc<Telemetry>,
    _log: tracing::subscriber::DefaultGuard,
}

impl Server {
    /// Builds the app from the configuration `main` would read for this exporter, and runs it.
    async fn start(exporter: &FakeExporter) -> Server {
        let (messages_tx, messages) = mpsc::unbounded_channel();
        // tokio::test's runtime runs every task on this thread, so the server's events reach it.
        let log = tracing::subscriber::set_default(tracing_subscriber::registry().with(Messages(messages_tx)));

        let config = Config::from_vars([("PROXY_HOSTIP", "127.0.0.1".to_owned()), ("PROXY_PORT", exporter.port())])
            .expect("a valid configuration");
        let telemetry = Arc::new(Telemetry::new());
        let Proxy { app, settings, .. } = Proxy::build(&config, telemetry.clone(), None);

        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().unwrap();
        let (stops, stop_rx) = mpsc::channel(2);
        let stopped = tokio::spawn(server::run(listener, app, settings, stop_rx));
        Server { addr, stops, stopped, messages, telemetry, _log: log }
    }

    async fn stop(&self, why: &'static str) {
        self.stops.send(why).await.expect("the server reads its stop channel");
    }

    /// Waits for an event whose message is `message`.
    async fn logged(&mut self, message: &str) {
        within(message, async {
            while let Some(seen) = self.messages.recv().await {
                if seen == message {
                    return;
                }
            }
            panic!("the log channel closed before {message:?}");
        })
        .await;
    }

    /// What `server::run` returned.
    async fn stopped(self) -> Stopped {
        within("server::run to return", self.stopped).await.expect("server::run did not panic")
    }
}

/// A tracing layer passing each event's message to a channel.
struct Messages(mpsc::UnboundedSender<String>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Messages {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Message(Option<String>);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0 = Some(format!("{value:?}"));
                }
            }
        }
        let mut message = Message(None);
        event.record(&mut message);
        if let Some(message) = message.0 {
            let _ = self.0.send(message);
        }
    }
}

#[tokio::test]
async fn a_scrape_passes_and_a_stop_with_nothing_in_flight_drains() {
    let sample = support::windows_sample();
    let exporter = FakeExporter::serving(sample.clone(), "text/plain; version=0.0.4").await;
    let server = Server::start(&exporter).await;

    let scraped = support::get(server.addr, "/metrics").await;
    assert_eq!(scraped.status, StatusCode::OK);
    assert!(scraped.body == sample, "the body differs from the exporter's");

    server.stop("test stop").await;
    let addr = server.addr;
    assert_eq!(server.stopped().await, Stopped::Drained);
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "still accepting after run returned");
}

#[tokio::test]
async fn a_stop_waits_for_a_held_scrape_then_drains() {
    let mut held = HeldScrape::start().await;
    let mut server = Server::start(&held.exporter).await;
    let response = Client::connect(server.addr).await.send(Method::GET, "/metrics", &[]).await.unwrap();
    held.started().await;

    server.stop("test stop").await;
    server.logged("stop requested; draining").await;
    assert!(!server.stopped.is_finished(), "run returned with a scrape in flight");

    held.release_and_expect_complete(response).await;
    let telemetry = server.telemetry.clone();
    assert_eq!(server.stopped().await, Stopped::Drained);
    // The drain asked that connection to close after its response: counted as such.
    let metrics = telemetry.encode(windows_exporter_proxy::telemetry::Format::Text);
    assert!(
        metrics.lines().any(|l| l == r#"windows_exporter_proxy_connections_closed_total{reason="drain"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_second_stop_during_a_held_scrape_interrupts_the_drain() {
    let mut held = HeldScrape::start().await;
    let mut server = Server::start(&held.exporter).await;
    let _response = Client::connect(server.addr).await.send(Method::GET, "/metrics", &[]).await.unwrap();
    held.started().await;

    server.stop("first stop").await;
    server.logged("stop requested; draining").await;
    server.stop("second stop").await;

    // The held scrape's connection is the one left open.
    assert_eq!(server.stopped().await, Stopped::Interrupted { open: 1 });
}
