//! A stand-in for windows_exporter on a machine without Windows: serves a real windows_exporter
//! scrape (tests/fixtures, see SOURCES.md there) on `/metrics`, gzipped when the scraper accepts
//! gzip, and `{"status":"ok"}` on `/health`, like windows_exporter does.
//!
//! `cargo run --example sample_exporter` listens on 127.0.0.1:9182, windows_exporter's port;
//! `SAMPLE_EXPORTER_LISTEN` changes that.

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

const SAMPLE: &[u8] = include_bytes!("../tests/fixtures/windows_exporter-0.13-cs-service.prom");

#[tokio::main(flavor = "current_thread")]
#[allow(clippy::disallowed_methods)] // the example exporter's own setting, not the proxy's
async fn main() -> std::io::Result<()> {
    let listen: SocketAddr = std::env::var("SAMPLE_EXPORTER_LISTEN")
        .unwrap_or_else(|_| "127.0.0.1:9182".to_owned())
        .parse()
        .expect("SAMPLE_EXPORTER_LISTEN is a socket address such as 127.0.0.1:9182");
    let plain = Bytes::from_static(SAMPLE);
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(SAMPLE)?;
    let gzipped = Bytes::from(encoder.finish()?);

    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("sample exporter serving a real windows_exporter scrape on http://{}/metrics", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let (plain, gzipped) = (plain.clone(), gzipped.clone());
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let response = answer(&request, &plain, &gzipped);
                async move { Ok::<_, Infallible>(response) }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

fn answer(request: &Request<Incoming>, plain: &Bytes, gzipped: &Bytes) -> Response<Full<Bytes>> {
    let builder = Response::builder();
    match request.uri().path() {
        "/health" => builder.header(header::CONTENT_TYPE, "application/json").body(Full::from("{\"status\":\"ok\"}")),
        "/metrics" => {
            let gzip = request
                .headers()
                .get(header::ACCEPT_ENCODING)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("gzip"));
            let builder = builder
                .header(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")
                .header(header::VARY, "Accept-Encoding");
            if gzip {
                builder.header(header::CONTENT_ENCODING, "gzip").body(Full::new(gzipped.clone()))
            } else {
                builder.body(Full::new(plain.clone()))
            }
        }
        _ => builder.status(StatusCode::NOT_FOUND).body(Full::from("not found\n")),
    }
    .expect("static headers form a valid response")
}
