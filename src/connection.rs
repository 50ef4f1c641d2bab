//! One client connection: HTTP/1.1 with the server-side limits, the idle timeout, and the part
//! it plays in a graceful drain.
//!
//! Two clocks guard a connection, both kept here rather than in hyper:
//! - **Header read**: from the moment a connection opens, or the first byte of a later request
//!   arrives, the client has `PROXY_HEADER_READ_TIMEOUT_SECONDS` to finish the request head; a
//!   client that trickles headers (slowloris) or connects and says nothing is cut off. hyper's
//!   own header-read timeout cannot be used for this: it also runs while a kept-alive connection
//!   waits for its next request, so it would close every idle connection after a few seconds.
//! - **Idle**: a connection that has moved no bytes for `PROXY_IDLE_TIMEOUT_SECONDS` is closed
//!   gracefully (a response still streaming finishes first), or at once when a write to it is
//!   stuck.
//!
//! And a deadline on every write, as nginx's `send_timeout` and HAProxy's `timeout client` give
//! one: **send**. Each response has a time by which the client must have taken it: a scrape its
//! scrape deadline ([`SendDeadline`], which the scrape sets), a local answer the header-read
//! timeout from when it was made (a client gets as long to take a small answer as it had to send
//! its request). A write that is still blocked at that time fails, and the connection closes. A
//! client that pipelines requests and never reads its answers would otherwise hold its
//! connection, and its `PROXY_MAX_CONNECTIONS` slot, for ever: enough of them and `/health` is
//! never accepted again. While the proxy drains, a write blocked for the header-read timeout
//! fails too, so such a client cannot hold a drain past its grace period.
//!
//! And one signal: **hang-up** ([`HangUp`], in every request's extensions). hyper polls a response
//! body only while the client's socket takes bytes, so a scraper that stops reading mid-body would
//! never learn that a shared body cut it off. The shared body signals the hang-up
//! (`scrape::coalesce::buffer`) and the connection closes at once, dropping the response, which
//! records why. A body unfinished at its deadline while the scraper does not read is closed by
//! the send deadline below, and counted as cut too.
//!
//! The header size limit (431) is hyper's. On drain, idle connections close at once and busy ones
//! after their response. Every close the proxy asks for is counted by reason
//! (`windows_exporter_proxy_connections_closed_total{reason}`).
//!
//! The bytes a client has not read yet may all sit in the kernel's socket buffers, where the
//! proxy cannot tell them from bytes read: a response small enough to fit there is handed over
//! whole, and its connection then idles until the idle timeout like any kept-alive one.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{Notify, watch};
use tokio::time::{Instant, Sleep};

use crate::deadline::SendDeadline;
use crate::hangup::HangUp;
use crate::response::{BoxError, ResponseBody};
use crate::router::App;
use crate::telemetry::CloseReason;
use crate::timestamp::Timestamp;
use crate::tls::ClientCertificate;
use crate::tls::acceptor::{self, Acceptor};
use crate::tls::metrics::HandshakeFailure;

/// How often a connection that is closing behind a streaming response re-checks its clocks.
const OVERDUE_RECHECK: Duration = Duration::from_secs(1);

/// Server-side limits for every connection.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Time to receive a request's headers, from the connection's start or the request's first byte.
    pub header_read_timeout: Duration,
    /// Quiet time after which a kept-alive connection is closed.
    pub idle_timeout: Duration,
    /// Largest request head in bytes.
    pub max_header_bytes: usize,
}

/// Serves `stream` until the client closes it, a timeout ends it, or a drain finishes it. With
/// `tls`, the TLS handshake comes first, inside the header-read deadline of the first request.
pub async fn serve(
    stream: TcpStream,
    tls: Option<Acceptor>,
    app: Arc<App>,
    limits: Limits,
    mut drain: watch::Receiver<bool>,
) {
    let clock = Arc::new(Clock::new(limits.header_read_timeout));
    let deadline = Instant::now() + limits.header_read_timeout;
    let Some(acceptor) = tls else {
        return serve_http(stream, None, clock, app, limits, drain).await;
    };
    // The first request head is due header_read_timeout after the TCP accept, handshake
    // included: a client that connects and sends nothing, or trickles its ClientHello, is cut
    // off like a slowloris.
    let stream = tokio::select! {
        accepted = acceptor.accept(stream, deadline) => match accepted {
            Ok(stream) => stream,
            Err(HandshakeFailure::timeout) => {
                app.telemetry.connection_closed(CloseReason::header_timeout);
                return;
            }
            Err(_) => return,
        },
        _ = drain.changed() => {
            app.telemetry.connection_closed(CloseReason::drain);
            return;
        }
    };
    let client_certificate = acceptor::client_certificate(&stream);
    serve_http(stream, client_certificate, clock, app, limits, drain).await;
}

/// HTTP/1.1 on an established stream (TCP, or TLS after the handshake).
async fn serve_http<S>(
    stream: S,
    client_certificate: Option<ClientCertificate>,
    clock: Arc<Clock>,
    app: Arc<App>,
    limits: Limits,
    mut drain: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let telemetry = app.telemetry.clone();
    let io = TokioIo::new(ActivityIo::new(stream, clock.clone()));
    let service_clock = clock.clone();
    let hang_up = HangUp(Arc::new(Notify::new()));
    let service_hang_up = hang_up.clone();
    let service = service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
        service_clock.head_received();
        request.extensions_mut().insert(service_hang_up.clone());
        if let Some(certificate) = &client_certificate {
            // What `auth` reads to authorize by client certificate.
            request.extensions_mut().insert(certificate.clone());
        }
        let guard = InFlight::new(service_clock.clone());
        let app = app.clone();
        let clock = service_clock.clone();
        async move {
            let response = app.handle(request).await;
            clock.response_due(response.extensions().get::<SendDeadline>());
            Ok::<_, std::convert::Infallible>(response.map(|body| CountedBody { body, _in_flight: guard }))
        }
    });
    let connection = http1::Builder::new()
        .header_read_timeout(None)
        .max_buf_size(limits.max_header_bytes)
        .keep_alive(true)
        .serve_connection(io, service);
    tokio::pin!(connection);

    let mut closing = false;
    // Why the proxy asked the connection to close, counted when it has.
    let mut closed_by = None;
    loop {
        let (mut deadline, watching) = clock.next_deadline(&limits);
        if closing && watching == Watching::Head && clock.head_overdue(Instant::now(), limits.header_read_timeout) {
            // Already asked to close behind a streaming response: look again later, do not spin.
            deadline = Instant::now() + OVERDUE_RECHECK;
        }
        tokio::select! {
            result = connection.as_mut() => {
                if clock.send_timed_out() && clock.in_flight() > 0 {
                    // The body itself was unfinished at its deadline: its scrape records why.
                    tracing::debug!("closing connection: its response was cut off (past its deadline)");
                    telemetry.connection_closed(CloseReason::cut);
                } else if clock.send_timed_out() {
                    tracing::debug!("closing connection: the client took no bytes before its send deadline");
                    telemetry.connection_closed(CloseReason::send_timeout);
                } else if let Some(reason) = closed_by {
                    telemetry.connection_closed(reason);
                }
                if let Err(error) = result {
                    // Client-side trouble (reset, malformed request): hyper already answered what
                    // it could; nothing here affects other connections.
                    tracing::debug!(%error, "connection ended with an error");
                }
                return;
            }
            _ = drain.changed(), if !closing => {
                closing = true;
                closed_by = Some(CloseReason::drain);
                // A write stuck now fails after the short send deadline (see ActivityIo); hyper
                // retries its pending write when polled next, which is where that starts.
                clock.draining.store(true, Ordering::Relaxed);
                connection.as_mut().graceful_shutdown();
            }
            // A request started arriving: its header deadline may be sooner than the idle one.
            _ = clock.head_started.notified() => {}
            // A response cannot be completed and hyper is not polling it (the scraper stopped
            // reading): close now; dropping the connection drops the response, which records why.
            _ = hang_up.0.notified() => {
                tracing::debug!("closing connection: its response was cut off (lagged, or past its deadline)");
                telemetry.connection_closed(CloseReason::cut);
                return;
            }
            _ = tokio::time::sleep_until(deadline), if !(closing && watching == Watching::Idle) => {
                let now = Instant::now();
                match watching {
                    Watching::Head if clock.head_overdue(now, limits.header_read_timeout) => {
                        if clock.in_flight() == 0 {
                            tracing::debug!(timeout_ms = limits.header_read_timeout.as_millis() as u64, "closing connection: request headers not received in time");
                            telemetry.connection_closed(CloseReason::header_timeout);
                            return;
                        }
                        // A pipelined request trickles in behind a response still streaming:
                        // let that response finish, then close.
                        closing = true;
                        closed_by = Some(CloseReason::header_timeout);
                        connection.as_mut().graceful_shutdown();
                    }
                    Watching::Idle if clock.quiet_for(now) >= limits.idle_timeout && clock.write_blocked() => {
                        // Nothing moved for the idle timeout because the client takes nothing:
                        // a graceful close would wait for that write for ever.
                        tracing::debug!(idle_ms = clock.quiet_for(now).as_millis() as u64, "closing idle connection stuck writing");
                        telemetry.connection_closed(CloseReason::idle);
                        return;
                    }
                    Watching::Idle if clock.quiet_for(now) >= limits.idle_timeout => {
                        tracing::debug!(idle_ms = clock.quiet_for(now).as_millis() as u64, "closing idle connection");
                        closing = true;
                        closed_by = Some(CloseReason::idle);
                        connection.as_mut().graceful_shutdown();
                    }
                    _ => {}
                }
            }
        }
    }
}

/// Which deadline the connection loop is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Watching {
    /// A request head has started (or the connection is new) and must be complete in time.
    Head,
    /// Nothing is arriving; the connection may idle until the idle timeout.
    Idle,
}

/// When a connection last moved bytes, whether a request head is on its way, and by when the
/// client must take the response being written.
struct Clock {
    /// The last read or write.
    last_activity: Timestamp,
    /// When the pending request head began; unset when none is pending.
    head_since: Timestamp,
    /// Signalled when a request head begins.
    head_started: Notify,
    /// Requests whose response has not finished.
    in_flight: AtomicUsize,
    /// By when the latest response must be written; unset before the first.
    write_due: Timestamp,
    /// Since when a write has been blocked; unset while writes go through.
    blocked_since: Timestamp,
    /// The header-read timeout: a local answer's send deadline, and a blocked write's in a drain.
    short: Duration,
    /// The proxy is draining.
    draining: AtomicBool,
    /// A write failed at its send deadline.
    send_timed_out: AtomicBool,
}

impl Clock {
    /// A new connection: its first request head is due from now; `short` is the header-read
    /// timeout.
    fn new(short: Duration) -> Clock {
        Clock {
            last_activity: Timestamp::now(),
            head_since: Timestamp::now(),
            head_started: Notify::new(),
            in_flight: AtomicUsize::new(0),
            write_due: Timestamp::unset(),
            blocked_since: Timestamp::unset(),
            short,
            draining: AtomicBool::new(false),
            send_timed_out: AtomicBool::new(false),
        }
    }

    /// A response was made: the client must have taken it by `deadline` (a scrape's), or by
    /// the short send deadline from now (a local answer).
    fn response_due(&self, deadline: Option<&SendDeadline>) {
        self.write_due.set(deadline.map_or_else(|| Instant::now() + self.short, |SendDeadline(at)| *at));
    }

    /// A write could not go through: when the blocked write must fail, counted from when it
    /// first blocked. `None` before any response (nothing is due).
    fn send_limit(&self, now: Instant) -> Option<Instant> {
        let since = if self.blocked_since.set_now_if_unset() { now } else { self.blocked_since.get().unwrap_or(now) };
        let draining = self.draining.load(Ordering::Relaxed).then(|| since + self.short);
        match (self.write_due.get(), draining) {
            (Some(due), Some(drain)) => Some(due.min(drain)),
            (due, drain) => due.or(drain),
        }
    }

    fn write_blocked(&self) -> bool {
        self.blocked_since.get().is_some()
    }

    fn send_timed_out(&self) -> bool {
        self.send_timed_out.load(Ordering::Relaxed)
    }

    /// Bytes arrived: the start of a request head, unless one is already pending.
    fn bytes_read(&self) {
        self.last_activity.set_now();
        if self.head_since.set_now_if_unset() {
            self.head_started.notify_one();
        }
    }

    fn bytes_written(&self) {
        self.last_activity.set_now();
        self.blocked_since.clear();
    }

    /// hyper parsed a complete request head.
    fn head_received(&self) {
        self.head_since.clear();
    }

    fn head_overdue(&self, now: Instant, timeout: Duration) -> bool {
        self.head_since.get().is_some_and(|since| now >= since + timeout)
    }

    fn last_activity(&self) -> Instant {
        self.last_activity.get().expect("set when the connection opens")
    }

    fn quiet_for(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.last_activity())
    }

    fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// The next moment the connection loop must look at the clocks, and why.
    fn next_deadline(&self, limits: &Limits) -> (Instant, Watching) {
        let idle = self.last_activity() + limits.idle_timeout;
        match self.head_since.get() {
            None => (idle, Watching::Idle),
            Some(since) => {
                let head = since + limits.header_read_timeout;
                if head <= idle { (head, Watching::Head) } else { (idle, Watching::Idle) }
            }
        }
    }
}

/// Counts a request as in flight until its response body is finished or dropped.
struct InFlight(Arc<Clock>);

impl InFlight {
    fn new(clock: Arc<Clock>) -> InFlight {
        clock.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(clock)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that keeps its request counted as in flight while it lives.
struct CountedBody {
    body: ResponseBody,
    _in_flight: InFlight,
}

impl Body for CountedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The client socket, reporting reads and writes to the connection's [`Clock`], and failing a
/// write that is still blocked at its send deadline.
struct ActivityIo<S> {
    inner: S,
    clock: Arc<Clock>,
    /// Armed while a write is blocked, for the time it must fail.
    send_deadline: Pin<Box<Sleep>>,
}

impl<S> ActivityIo<S> {
    fn new(inner: S, clock: Arc<Clock>) -> ActivityIo<S> {
        // Armed (reset) only when a write blocks; until then it is never polled.
        ActivityIo { inner, clock, send_deadline: Box::pin(tokio::time::sleep_until(Instant::now())) }
    }

    /// What a write to the inner socket did: bytes taken are reported to the clock; a write that
    /// could not go through waits, but only until the send deadline.
    fn wrote(&mut self, cx: &mut Context<'_>, result: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        match result {
            Poll::Pending => self.blocked(cx),
            result => {
                if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
                    self.clock.bytes_written();
                }
                result
            }
        }
    }

    /// The inner socket cannot take bytes now: wait for it, but only until the send deadline.
    fn blocked<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let Some(limit) = self.clock.send_limit(Instant::now()) else { return Poll::Pending };
        if self.send_deadline.deadline() != limit {
            self.send_deadline.as_mut().reset(limit);
        }
        match self.send_deadline.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => {
                self.clock.send_timed_out.store(true, Ordering::Relaxed);
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client took no bytes before its send deadline",
                )))
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ActivityIo<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.clock.bytes_read();
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ActivityIo<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.wrote(cx, result)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.wrote(cx, result)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    // A TLS stream writes its buffered records on flush and shutdown: they block like writes.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Pending => this.blocked(cx),
            result => {
                if matches!(result, Poll::Ready(Ok(()))) {
                    this.clock.blocked_since.clear();
                }
                result
            }
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_shutdown(cx) {
            Poll::Pending => this.blocked(cx),
            result => result,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        header_read_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(75),
        max_header_bytes: 8192,
    };

    #[tokio::test(start_paused = true)]
    async fn a_new_connection_owes_its_first_head_within_the_header_timeout() {
        let opened = Instant::now();
        let clock = Clock::new(LIMITS.header_read_timeout);
        let (deadline, watching) = clock.next_deadline(&LIMITS);
        assert_eq!(watching, Watching::Head);
        assert_eq!(deadline, opened + LIMITS.header_read_timeout);
    }

    #[tokio::test(start_paused = true)]
    async fn between_requests_only_the_idle_timeout_runs() {
        let opened = Instant::now();
        let clock = Clock::new(LIMITS.header_read_timeout);
        clock.bytes_read();
        clock.head_received();
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(!clock.head_overdue(Instant::now(), LIMITS.header_read_timeout));
        let (deadline, watching) = clock.next_deadline(&LIMITS);
        assert_eq!(watching, Watching::Idle);
        assert_eq!(deadline, opened + LIMITS.idle_timeout);
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_byte_of_a_later_request_starts_its_header_clock() {
        let clock = Clock::new(LIMITS.header_read_timeout);
        clock.head_received();
        tokio::time::advance(Duration::from_secs(30)).await;
        clock.bytes_read();
        let started = Instant::now();
        tokio::time::advance(Duration::from_secs(1)).await;
        clock.bytes_read(); // more bytes of the same head do not restart the clock
        let (deadline, watching) = clock.next_deadline(&LIMITS);
        assert_eq!(watching, Watching::Head);
        assert_eq!(deadline, started + LIMITS.header_read_timeout);
        assert!(clock.head_overdue(started + LIMITS.header_read_timeout, LIMITS.header_read_timeout));
    }
}
