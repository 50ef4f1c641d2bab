//! `router::route` with arbitrary methods and paths never panics, and only the exact endpoint
//! spellings ever route anywhere.
#![no_main]

use http::Method;
use libfuzzer_sys::fuzz_target;
use windows_exporter_proxy::router::{Rejection, Route, route};

fuzz_target!(|input: (Vec<u8>, Vec<u8>)| {
    let (method, path) = input;
    let Ok(method) = Method::from_bytes(&method) else { return };
    let path = String::from_utf8_lossy(&path);
    match route(&method, &path) {
        Ok(route) => {
            let expected = match route {
                Route::Health => "/health",
                Route::Ready => "/ready",
                Route::Metrics => "/metrics",
                Route::SlowMetrics => "/metrics/slow",
                Route::ProxyMetrics => "/proxy/metrics",
            };
            assert_eq!(path, expected);
            assert!(method == Method::GET || method == Method::HEAD);
        }
        Err(Rejection::MethodNotAllowed(allow)) => assert!(allow.starts_with("GET")),
        Err(Rejection::NotFound) => {}
    }
    // The full request path through http's URI parser, as hyper would hand it over.
    if let Ok(uri) = path.parse::<http::Uri>() {
        let _ = route(&method, uri.path());
    }
});
