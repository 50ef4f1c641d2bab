//! The server: accept loop, connection cap, and graceful drain.
//!
//! [`run`] takes a bound listener and a source of stop requests as arguments, so tests run it on
//! `127.0.0.1:0` and `main` runs it with the OS signals. On the first stop request it stops
//! accepting, asks every connection to finish (idle ones close at once, in-flight scrapes run to
//! their end) and waits up to the grace period; a second request or the end of the grace period
//! cuts the drain short.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{Semaphore, mpsc, watch};

use crate::connection::{self, Limits};
use crate::router::App;
use crate::telemetry::GaugeGuard;
use crate::tls::acceptor::Acceptor;

/// Back-off after a failed `accept` (for example EMFILE), so the loop does not spin.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// Server settings beyond the per-connection [`Limits`].
#[derive(Clone)]
pub struct Settings {
    /// Per-connection limits.
    pub limits: Limits,
    /// Concurrent client connections.
    pub max_connections: usize,
    /// How long a drain may take.
    pub shutdown_grace: Duration,
    /// HTTPS: the handshake every connection starts with; `None` serves plain HTTP.
    pub tls: Option<Acceptor>,
}

/// Binds `addr` with room for `backlog` connections in the listen queue (the kernel may cap it:
/// `net.core.somaxconn`, 4096 on current Linux). Connections past `PROXY_MAX_CONNECTIONS` wait
/// there, their handshakes completed by the kernel, until a slot frees; with the default queue
/// of 128 (mio's, as std's) a burst of them was dropped, and each client retried a second later.
pub fn listen(addr: SocketAddr, backlog: usize) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    // What std's and mio's bind do on Unix, so a restarted proxy rebinds at once; not on
    // Windows, where SO_REUSEADDR would let another process take the port.
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(u32::try_from(backlog).unwrap_or(u32::MAX))
}

/// How the server stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Every connection finished within the grace period.
    Drained,
    /// The grace period ended with connections still open; they were closed.
    GraceExpired {
        /// Connections still open.
        open: usize,
    },
    /// A second stop request ended the drain.
    Interrupted {
        /// Connections still open.
        open: usize,
    },
}

/// Serves `listener` until a stop request arrives on `stops`, then drains.
///
/// Each message names the request (`SIGTERM`, ...): the first starts the drain, a second one
/// interrupts it. A closed channel counts as a stop request.
pub async fn run(
    listener: TcpListener,
    app: Arc<App>,
    settings: Settings,
    mut stops: mpsc::Receiver<&'static str>,
) -> Stopped {
    let mut next_stop = async move || stops.recv().await.unwrap_or("stop channel closed");
    let slots = Arc::new(Semaphore::new(settings.max_connections));
    let (drain_tx, drain_rx) = watch::channel(false);

    let signal = loop {
        let permit = tokio::select! {
            signal = next_stop() => break signal,
            permit = slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let (stream, peer) = tokio::select! {
            signal = next_stop() => break signal,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accept failed; backing off");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                    continue;
                }
            },
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, %peer, "cannot disable Nagle on client socket");
        }
        let app = app.clone();
        let drain = drain_rx.clone();
        let limits = settings.limits;
        let tls = settings.tls.clone();
        let span = tracing::info_span!("connection", %peer);
        tokio::spawn(tracing::Instrument::instrument(
            async move {
                let _open = GaugeGuard::new(app.telemetry.connections());
                connection::serve(stream, tls, app.clone(), limits, drain).await;
                drop(permit);
            },
            span,
        ));
    };

    drop(listener);
    drop(drain_rx);
    let open = || drain_tx.receiver_count();
    tracing::info!(
        signal,
        open_connections = open(),
        grace_ms = settings.shutdown_grace.as_millis() as u64,
        "stop requested; draining"
    );
    let _ = drain_tx.send(true);

    let drained = drain_tx.closed();
    tokio::pin!(drained);
    tokio::select! {
        _ = &mut drained => {
            tracing::info!("drained; exiting");
            Stopped::Drained
        }
        _ = tokio::time::sleep(settings.shutdown_grace) => {
            tracing::warn!(open_connections = open(), "grace period over; closing what is left");
            Stopped::GraceExpired { open: open() }
        }
        signal = next_stop() => {
            tracing::warn!(signal, open_connections = open(), "second stop request; exiting now");
            Stopped::Interrupted { open: open() }
        }
    }
}
