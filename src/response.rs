//! The response body type every handler returns, and the small responses the proxy writes itself.
//!
//! One enum instead of a boxed trait object: a local answer is a single buffer, a scrape is the
//! exporter's body streamed through [`ScrapeStream`]. Neither is ever collected in memory.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body::{Body, Frame, SizeHint};

use crate::scrape::ScrapeError;
use crate::scrape::stream::ScrapeStream;

/// The body of every response the proxy sends.
pub enum ResponseBody {
    /// A small local answer, sent in one write (`None` once sent).
    Local(Option<Bytes>),
    /// The exporter's body, streamed.
    Scrape(ScrapeStream),
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = ScrapeError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, ScrapeError>>> {
        match self.get_mut() {
            ResponseBody::Local(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            ResponseBody::Scrape(stream) => Pin::new(stream).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Local(bytes) => bytes.is_none(),
            ResponseBody::Scrape(stream) => stream.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Local(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            ResponseBody::Scrape(stream) => stream.size_hint(),
        }
    }
}

/// A `text/plain` response with a one-line body (a newline is appended).
pub fn text(status: StatusCode, line: impl Into<String>) -> Response<ResponseBody> {
    let mut body = line.into();
    body.push('\n');
    with_type(status, "text/plain; charset=utf-8", body)
}

/// A response with the given content type and body.
pub fn with_type(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::Local(Some(body.into())));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Local answers describe this instant; a cache in between must not replay them.
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn local_text_is_one_line_with_exact_length() {
        let response = text(StatusCode::BAD_GATEWAY, "exporter refused");
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(response.body().size_hint().exact(), Some(17));
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"exporter refused\n");
    }
}
