//! The stage as an HTTP body: [`Filtered`] wraps the exporter's body. Without a filter it is
//! [`Filtered::Plain`], which passes every frame as it comes; with one, each data frame goes
//! through the [`LineFilter`] and what is kept leaves as one frame (the chunk's own bytes when
//! the lines kept are consecutive).
//!
//! Encoding. The exporter is asked for identity (`Accept-Encoding: identity`, set by the scrape)
//! and, when the scraper accepts gzip, the kept bytes are gzipped here (level 1): compressing
//! only what is kept costs less than the exporter compressing everything and the proxy
//! decompressing it all to filter and compressing again (BENCHMARKS.md, "Filter"). An exporter
//! that answers gzip anyway is decoded. Either way `Content-Length` goes (the length changes) and
//! `Content-Encoding` says what the scraper gets.
//!
//! When the stage stops the body (the series cap, an over-long line, a bad gzip stream), the
//! body ends with an error, so the scraper's connection is aborted: a failed scrape, never a
//! truncated one. Sample counts go to `/proxy/metrics` once per exporter body, however it ends.

use std::io::Write;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use flate2::Compression;
use flate2::write::{GzDecoder, GzEncoder};
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, Response};
use http_body::{Body, Frame, SizeHint};

use super::FilterSettings;
use super::stage::{LineFilter, Output, StageError};
use crate::telemetry::Telemetry;

/// The exporter's body as scrapes read it: as it came, or through the filter.
pub type ExporterBody = Filtered<hyper::body::Incoming>;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a filtered body failed.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    /// The exporter's body failed (reset, closed early): its own error, unchanged.
    #[error(transparent)]
    Body(BoxError),
    /// The stage stopped the body.
    #[error(transparent)]
    Stage(#[from] StageError),
    /// The exporter's gzip stream does not decode.
    #[error("the exporter's gzip body does not decode: {0}")]
    Gzip(std::io::Error),
    /// The exporter's answer is not text the filter can read.
    #[error("the exporter answered {0}, which the filter cannot read (text formats only)")]
    NotText(String),
}

impl FilterError {
    /// Whether it is the series cap (`PROXY_MAX_SERIES`), which fails a scrape as its own
    /// outcome, not as a broken exporter body.
    pub fn is_series_limit(&self) -> bool {
        matches!(self, FilterError::Stage(StageError::TooManySeries { .. }))
    }
}

/// The exporter's body, filtered or not.
pub enum Filtered<B> {
    /// No filter: the body as it is.
    Plain(B),
    /// Through the filter.
    Filtering(Box<Filtering<B>>),
}

/// A body going through the filter.
pub struct Filtering<B> {
    body: B,
    stage: LineFilter,
    out: Output,
    decoder: Option<GzDecoder<Vec<u8>>>,
    encoder: Option<GzEncoder<Vec<u8>>>,
    /// Set when the answer cannot be filtered: the body fails at once with it.
    refused: Option<FilterError>,
    ready: Option<Bytes>,
    ended: bool,
    telemetry: Arc<Telemetry>,
    counted: bool,
}

/// Whether a scraper's `Accept-Encoding` takes gzip (`gzip` or `*` without `q=0`).
pub fn accepts_gzip(headers: &http::HeaderMap) -> bool {
    headers.get_all(http::header::ACCEPT_ENCODING).iter().filter_map(|v| v.to_str().ok()).any(|value| {
        value.split(',').any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or_default();
            let refused = parts.any(|p| p.replace(' ', "").eq_ignore_ascii_case("q=0") || p == "q=0.0");
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
    })
}

/// An `Accept` without protobuf, for the exporter when filtering is on: the scraper's text
/// choices in their order, or 0.0.4 text when it offered nothing else.
pub fn text_only_accept(accept: Option<&HeaderValue>) -> HeaderValue {
    let text = accept.and_then(|v| v.to_str().ok()).unwrap_or_default();
    let kept: Vec<&str> = text
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty() && !t.contains("application/vnd.google.protobuf"))
        .collect();
    if kept.is_empty() {
        return HeaderValue::from_static("text/plain;version=0.0.4");
    }
    HeaderValue::from_str(&kept.join(",")).unwrap_or_else(|_| HeaderValue::from_static("text/plain;version=0.0.4"))
}

/// The exporter's answer for the scraper: unchanged without `filter` (or for a status other than
/// 2xx, which is the exporter's own message); else its body through the filter, gzipped when
/// `gzip`.
pub fn wrap<B>(
    filter: Option<&Arc<FilterSettings>>,
    answer: Response<B>,
    gzip: bool,
    telemetry: &Arc<Telemetry>,
) -> Response<Filtered<B>> {
    let Some(filter) = filter.filter(|_| answer.status().is_success()) else { return answer.map(Filtered::Plain) };
    let (mut parts, body) = answer.into_parts();
    let mut refused = None;
    if let Some(kind) = parts.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) {
        if kind.starts_with("application/vnd.google.protobuf") {
            refused = Some(FilterError::NotText(kind.to_owned()));
        }
    }
    let gzip_in = match parts.headers.get(CONTENT_ENCODING).map(HeaderValue::as_bytes) {
        None => false,
        Some(coding) if coding.eq_ignore_ascii_case(b"identity") => false,
        Some(coding) if coding.eq_ignore_ascii_case(b"gzip") => true,
        Some(coding) => {
            refused = Some(FilterError::NotText(format!("Content-Encoding {}", String::from_utf8_lossy(coding))));
            false
        }
    };
    parts.headers.remove(CONTENT_LENGTH);
    parts.headers.remove(CONTENT_ENCODING);
    if gzip {
        parts.headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    let mut filtering = Filtering::new(filter.clone(), body, gzip_in, gzip, telemetry.clone());
    filtering.refused = refused;
    Response::from_parts(parts, Filtered::Filtering(Box::new(filtering)))
}

impl<B> Filtering<B> {
    /// A filter over `body`, gzip-decoded when `gzip_in`, its output gzipped when `gzip_out`
    /// ([`wrap`] makes one from a response; benchmarks and tests use it alone).
    pub fn new(filter: Arc<FilterSettings>, body: B, gzip_in: bool, gzip_out: bool, telemetry: Arc<Telemetry>) -> Self {
        Filtering {
            body,
            stage: LineFilter::new(filter),
            out: Output::default(),
            decoder: gzip_in.then(|| GzDecoder::new(Vec::new())),
            encoder: gzip_out.then(|| GzEncoder::new(Vec::new(), Compression::fast())),
            refused: None,
            ready: None,
            ended: false,
            telemetry,
            counted: false,
        }
    }

    /// Filters one frame's data; what is ready to leave is in `self.ready`.
    fn feed(&mut self, data: Bytes) -> Result<(), FilterError> {
        let data = match &mut self.decoder {
            None => data,
            Some(decoder) => {
                decoder.write_all(&data).map_err(FilterError::Gzip)?;
                Bytes::from(std::mem::take(decoder.get_mut()))
            }
        };
        self.stage.chunk(&data, &mut self.out)?;
        let pieces = self.out.take(&data);
        self.emit(pieces)
    }

    /// The exporter's body ended: the stage's last lines, the encoder's trailer.
    fn end(&mut self) -> Result<(), FilterError> {
        let mut pieces = Vec::new();
        if let Some(decoder) = &mut self.decoder {
            decoder.try_finish().map_err(FilterError::Gzip)?;
            let rest = Bytes::from(std::mem::take(decoder.get_mut()));
            self.stage.chunk(&rest, &mut self.out)?;
            pieces = self.out.take(&rest);
        }
        self.stage.finish(&mut self.out)?;
        pieces.extend(self.out.take(&Bytes::new()));
        self.emit(pieces)?;
        if let Some(encoder) = &mut self.encoder {
            encoder.try_finish().map_err(FilterError::Gzip)?;
            let tail = std::mem::take(encoder.get_mut());
            self.ready = join(self.ready.take(), Bytes::from(tail));
        }
        Ok(())
    }

    fn emit(&mut self, pieces: Vec<Bytes>) -> Result<(), FilterError> {
        let Some(encoder) = &mut self.encoder else {
            self.ready = Output::into_one(pieces);
            return Ok(());
        };
        for piece in &pieces {
            encoder.write_all(piece).map_err(FilterError::Gzip)?;
        }
        let compressed = std::mem::take(encoder.get_mut());
        self.ready = (!compressed.is_empty()).then(|| Bytes::from(compressed));
        Ok(())
    }

    /// Counts the body's samples, once.
    fn count(&mut self) {
        if !self.counted {
            self.counted = true;
            let (kept, dropped) = self.stage.counts();
            self.telemetry.filtered_samples(kept, dropped);
        }
    }

    /// Sample lines kept and dropped so far.
    pub fn counts(&self) -> (u64, u64) {
        self.stage.counts()
    }
}

fn join(first: Option<Bytes>, second: Bytes) -> Option<Bytes> {
    match first {
        None if second.is_empty() => None,
        None => Some(second),
        Some(first) => Output::into_one(vec![first, second]),
    }
}

impl<B> Drop for Filtering<B> {
    fn drop(&mut self) {
        self.count();
    }
}

impl<B> Body for Filtering<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = FilterError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, FilterError>>> {
        let this = self.get_mut();
        if let Some(refused) = this.refused.take() {
            this.ended = true;
            return Poll::Ready(Some(Err(refused)));
        }
        loop {
            if let Some(data) = this.ready.take() {
                return Poll::Ready(Some(Ok(Frame::data(data))));
            }
            if this.ended {
                this.count();
                return Poll::Ready(None);
            }
            let step = match ready!(Pin::new(&mut this.body).poll_frame(cx)) {
                None => {
                    this.ended = true;
                    this.end()
                }
                Some(Err(error)) => Err(FilterError::Body(error.into())),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => this.feed(data),
                    // Trailers carry no body bytes; windows_exporter sends none.
                    Err(_trailers) => Ok(()),
                },
            };
            if let Err(error) = step {
                this.ended = true;
                this.ready = None;
                this.count();
                return Poll::Ready(Some(Err(error)));
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended && self.ready.is_none() && self.refused.is_none()
    }
}

impl<B> Body for Filtered<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = FilterError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, FilterError>>> {
        match self.get_mut() {
            Filtered::Plain(body) => Pin::new(body)
                .poll_frame(cx)
                .map(|next| next.map(|frame| frame.map_err(|e| FilterError::Body(e.into())))),
            Filtered::Filtering(filtering) => Pin::new(filtering.as_mut()).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Filtered::Plain(body) => body.is_end_stream(),
            Filtered::Filtering(filtering) => filtering.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Filtered::Plain(body) => body.size_hint(),
            Filtered::Filtering(_) => SizeHint::default(),
        }
    }
}
