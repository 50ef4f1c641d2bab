//! The response body type every handler returns, and the small responses the proxy writes itself.
//!
//! A leaf: [`ResponseBody`] is a boxed body, so this module knows nothing of what a handler
//! streams. A local answer is a single buffer, sent in one write; a scrape boxes the exporter's
//! body streamed through `scrape::stream` with [`streamed`] (as hyper's own proxy example boxes
//! its bodies: one allocation per scrape, noise next to a 100 KB-2 MB body). Neither is ever
//! collected in memory.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;

/// The error a response body ends with: the handler's own error, boxed (hyper only logs it and
/// aborts the connection).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of every response the proxy sends.
pub type ResponseBody = UnsyncBoxBody<Bytes, BoxError>;

/// A handler's streamed body as a [`ResponseBody`].
pub fn streamed<B>(body: B) -> ResponseBody
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// A small local answer, sent in one write (`None` once sent).
struct Local(Option<Bytes>);

impl Body for Local {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.get_mut().0.take().map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.0.as_ref().map_or(0, |b| b.len() as u64))
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
    let mut response = Response::new(streamed(Local(Some(body.into()))));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Local answers describe this instant; a cache in between must not replay them.
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_text_is_one_line_with_exact_length() {
        let response = text(StatusCode::BAD_GATEWAY, "exporter refused");
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(response.body().size_hint().exact(), Some(17));
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"exporter refused\n");
    }
}
