//! One client connection: HTTP/1.1 with the server-side limits, the idle timeout, and the part
//! it plays in a graceful drain.
//!
//! hyper enforces the header-read timeout (a client must finish its request headers in time,
//! which cuts off slowloris-style trickling) and the header size limit (431). It has no idle
//! timeout for kept-alive connections waiting for their next request, so [`ActivityIo`] records
//! the last read or write and the connection is closed gracefully once it has been quiet for the
//! idle timeout. On drain, idle connections close at once and busy ones after their response.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::router::App;

/// Server-side limits for every connection.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Time to receive a request's headers.
    pub header_read_timeout: Duration,
    /// Quiet time after which a kept-alive connection is closed.
    pub idle_timeout: Duration,
    /// Largest request head in bytes.
    pub max_header_bytes: usize,
}

/// Serves `stream` until the client closes it, it idles out, or a drain finishes it.
pub async fn serve(stream: TcpStream, app: Arc<App>, limits: Limits, mut drain: watch::Receiver<bool>) {
    let epoch = Instant::now();
    let activity = Arc::new(AtomicU64::new(0));
    let io = TokioIo::new(ActivityIo { inner: stream, epoch, last: activity.clone() });
    let service = service_fn(move |request| {
        let app = app.clone();
        async move { Ok::<_, std::convert::Infallible>(app.handle(request).await) }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes)
        .keep_alive(true)
        .serve_connection(io, service);
    tokio::pin!(connection);

    let quiet_since =
        |now: Instant| now.saturating_duration_since(epoch + Duration::from_millis(activity.load(Ordering::Relaxed)));
    let mut idle_check = Box::pin(tokio::time::sleep(limits.idle_timeout));
    let mut closing = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    // Client-side trouble (reset, timeout, malformed request): hyper already
                    // answered what it could; nothing here affects other connections.
                    tracing::debug!(%error, "connection ended with an error");
                }
                return;
            }
            _ = drain.changed(), if !closing => {
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
            _ = idle_check.as_mut(), if !closing => {
                let quiet = quiet_since(Instant::now());
                if quiet >= limits.idle_timeout {
                    tracing::debug!(idle_ms = quiet.as_millis() as u64, "closing idle connection");
                    closing = true;
                    // Closes now if idle; a response still streaming finishes first.
                    connection.as_mut().graceful_shutdown();
                } else {
                    idle_check.as_mut().reset(Instant::now() + (limits.idle_timeout - quiet));
                }
            }
        }
    }
}

/// A stream that remembers when it last moved bytes, in milliseconds after `epoch`.
struct ActivityIo {
    inner: TcpStream,
    epoch: Instant,
    last: Arc<AtomicU64>,
}

impl ActivityIo {
    fn touch(&self) {
        self.last.store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

impl AsyncRead for ActivityIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.touch();
        }
        result
    }
}

impl AsyncWrite for ActivityIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            this.touch();
        }
        result
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            this.touch();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
