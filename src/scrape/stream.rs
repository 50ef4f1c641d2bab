//! The streamed scrape body: the exporter's response body passed frame by frame to the scraper,
//! straight from the scrape's own exporter connection or, when coalescing shares one exporter
//! request between scrapers, from this scraper's cursor on the shared body
//! ([`crate::scrape::coalesce::buffer`]).
//!
//! It never buffers more than the frame in hand (the shared body has its own bound), so memory
//! does not grow with body size. It also
//! enforces the rest of the scrape deadline on the body, counts the bytes, and, when the body
//! cannot be completed (exporter reset, stall past the deadline), returns an error so hyper
//! aborts the scraper's connection: the scraper then sees an incomplete response, never a
//! truncated body that looks complete. When it ends, however it ends, it records the scrape's
//! outcome exactly once (a failure through [`ScrapeError::record_mid_body`], its one log line)
//! and gives its exporter slot back.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::{Notify, OwnedSemaphorePermit};
use tokio::time::{Instant, Sleep};

use crate::exporter::innermost;
use crate::filter::ExporterBody;
use crate::scrape::ScrapeError;
use crate::scrape::coalesce::SharedBody;
use crate::scrape::coalesce::buffer::ReadError;
use crate::telemetry::{GaugeGuard, ScrapeOutcome, Telemetry};

/// Everything recorded when a scrape ends.
pub struct ScrapeRecord {
    /// Shared metrics.
    pub telemetry: Arc<Telemetry>,
    /// The exporter, for log lines.
    pub upstream: Arc<str>,
    /// Status sent to the scraper.
    pub status: u16,
    /// The `route` label: `/metrics` or `/metrics/slow`.
    pub route: &'static str,
    /// When the scrape arrived.
    pub started: Instant,
    /// The slot and gauge of a scrape's own exporter request, released when the body ends (a
    /// shared request's task holds its own).
    pub held: Option<Held>,
}

/// What a scrape with an exporter request of its own holds until its body ends.
pub struct Held {
    /// The exporter slot.
    pub slot: OwnedSemaphorePermit,
    /// Keeps the in-flight gauge raised.
    pub inflight: GaugeGuard,
}

/// Where the body comes from.
pub enum Source {
    /// The scrape's own exporter request (`PROXY_COALESCE=false`).
    Exporter(ExporterBody),
    /// The body under coalescing (the scrape's own while nobody shares it, else its cursor on
    /// a shared exporter request's buffer), and the buffer bound (for the message when it falls
    /// behind).
    Shared(SharedBody, u64),
}

/// The exporter's body on its way to the scraper.
pub struct ScrapeStream {
    body: Source,
    /// Fires only while hyper polls the body; the connection's send deadline covers the rest.
    deadline: Pin<Box<Sleep>>,
    bytes: u64,
    record: Option<ScrapeRecord>,
}

impl ScrapeStream {
    /// Streams `body`, cutting it off at `deadline`. hyper polls a body only while the scraper's
    /// socket takes bytes, so a scraper that stops reading would hold the response (and, without
    /// coalescing, its exporter slot) past the deadline, and would not learn that a shared body
    /// cut it for lagging. The deadline is the response's send deadline too (the scrape sets
    /// `deadline::SendDeadline`): a write still blocked then fails and the connection closes,
    /// dropping this body. With `hang_up` (its connection's, see `hangup::HangUp`), a shared
    /// body's writer signals the cut, and the connection closes at once.
    pub fn new(body: Source, deadline: Instant, record: ScrapeRecord, hang_up: Option<Arc<Notify>>) -> ScrapeStream {
        if let (Source::Shared(reader, _), Some(hang_up)) = (&body, &hang_up) {
            reader.hang_up_when_cut(hang_up.clone());
        }
        ScrapeStream { body, deadline: Box::pin(tokio::time::sleep_until(deadline)), bytes: 0, record: Some(record) }
    }

    /// Records how the scrape ended, once: the first call wins.
    fn finish(&mut self, ending: Result<ScrapeOutcome, &ScrapeError>) {
        let Some(record) = self.record.take() else { return };
        let elapsed = record.started.elapsed();
        let elapsed_ms = elapsed.as_millis() as u64;
        match ending {
            Err(error) => error.record_mid_body(
                &record.upstream,
                record.route,
                record.status,
                self.bytes,
                elapsed,
                &record.telemetry,
            ),
            Ok(outcome) => {
                record.telemetry.scrape_finished(outcome, record.status, record.route);
                if outcome == ScrapeOutcome::client_gone {
                    tracing::info!(
                        upstream = %record.upstream, bytes = self.bytes, elapsed_ms,
                        "scraper disconnected mid-body; its exporter request goes on only while another scraper shares it"
                    );
                } else {
                    tracing::debug!(upstream = %record.upstream, status = record.status, bytes = self.bytes, elapsed_ms, "scrape done");
                }
            }
        }
    }

    fn fail(&mut self, error: ScrapeError) -> Poll<Option<Result<Frame<Bytes>, ScrapeError>>> {
        self.finish(Err(&error));
        Poll::Ready(Some(Err(error)))
    }
}

impl Body for ScrapeStream {
    type Data = Bytes;
    type Error = ScrapeError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, ScrapeError>>> {
        let this = self.get_mut();
        let polled = match &mut this.body {
            Source::Exporter(body) => Pin::new(body).poll_frame(cx).map(|next| {
                next.map(|frame| {
                    frame.map_err(|error| ScrapeError::body_failed(innermost(&error), error.is_series_limit()))
                })
            }),
            Source::Shared(reader, limit) => reader.poll_next(cx).map(|next| {
                next.map(|piece| {
                    piece.map(Frame::data).map_err(|error| match error {
                        ReadError::Failed(failure) => {
                            ScrapeError::body_failed(failure.reason.to_string(), failure.series_limit)
                        }
                        ReadError::Lagged => ScrapeError::Lagged { limit: *limit },
                    })
                })
            }),
        };
        match polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let n = data.len() as u64;
                    this.bytes += n;
                    if let Some(record) = &this.record {
                        record.telemetry.streamed(n);
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => this.fail(error),
            Poll::Ready(None) => {
                this.finish(Ok(ScrapeOutcome::ok));
                Poll::Ready(None)
            }
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => this.fail(ScrapeError::BodyDeadline),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.body {
            Source::Exporter(body) => body.is_end_stream(),
            Source::Shared(reader, _) => reader.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.body {
            Source::Exporter(body) => body.size_hint(),
            // The exporter's Content-Length, if it sent one, is among the headers passed on.
            Source::Shared(..) => SizeHint::default(),
        }
    }
}

impl Drop for ScrapeStream {
    fn drop(&mut self) {
        // Dropped before its end: either nothing was left to send (HEAD, empty body) or the
        // scraper went away, which drops its own exporter connection, or its cursor on a
        // shared one (the shared request goes on while others read it). A cursor the writer cut
        // is dropped when `connection` hangs up on its scraper, which had stopped reading: that
        // is the cut, not the scraper going away; one unfinished at its deadline was closed by
        // the connection's send deadline.
        let ending = match &self.body {
            Source::Shared(reader, limit) if reader.is_cut() => Err(ScrapeError::Lagged { limit: *limit }),
            _ if self.is_end_stream() => Ok(ScrapeOutcome::ok),
            _ if Instant::now() >= self.deadline.deadline() => Err(ScrapeError::BodyDeadline),
            _ => Ok(ScrapeOutcome::client_gone),
        };
        self.finish(ending.as_ref().copied());
    }
}
