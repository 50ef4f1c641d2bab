//! Header filtering for a proxy hop (RFC 9110 section 7.6.1).
//!
//! Hop-by-hop headers describe one connection, not the message: `Connection` and every header it
//! names, `Keep-Alive`, `Proxy-*`, `TE`, `Trailer`, `Transfer-Encoding` and `Upgrade`. They are
//! removed in both directions. Everything else passes unchanged, so `Accept`,
//! `Accept-Encoding`, `Authorization`, `Content-Encoding`, `Content-Type` and `Vary` reach the
//! other side byte for byte.

use http::HeaderMap;
use http::header::{self, HeaderName};

/// Headers that are hop-by-hop whatever `Connection` says.
static HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    HeaderName::from_static("keep-alive"),
];

/// Removes hop-by-hop headers in place: the fixed set, `Proxy-*`, and the names `Connection`
/// lists.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names present finds the few to remove (usually none, or `Connection`):
    // a removal per name of the fixed set would hash and look up each, on every request and
    // every answer (BENCHMARKS.md, instructions per scrape).
    let fixed = |name: &HeaderName| HOP_BY_HOP.contains(name) || name.as_str().starts_with("proxy-");
    if !headers.keys().any(fixed) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    let present: Vec<HeaderName> = headers.keys().filter(|name| fixed(name) || named.contains(name)).cloned().collect();
    for name in present {
        headers.remove(name);
    }
}

/// Prepares the exporter's response headers for the scraper: hop-by-hop removed, and with them
/// `Content-Length` when the exporter also sent `Transfer-Encoding`. RFC 9112 6.1: the
/// transfer coding overrides the length, and an intermediary MUST remove the received
/// `Content-Length`; passed on, it would frame the decoded body short, and the scraper would
/// take the first bytes for a complete scrape.
pub fn for_scraper(headers: &mut HeaderMap) {
    if headers.contains_key(header::TRANSFER_ENCODING) {
        headers.remove(header::CONTENT_LENGTH);
    }
    remove_hop_by_hop(headers);
}

/// Prepares a scraper's request headers for the exporter: hop-by-hop removed, and the headers that
/// describe a request body removed too, because the proxy never forwards one (a stray
/// `Content-Length` would make the exporter wait for bytes that never come).
pub fn for_upstream_request(mut headers: HeaderMap) -> HeaderMap {
    remove_hop_by_hop(&mut headers);
    headers.remove(header::CONTENT_LENGTH);
    headers.remove(header::EXPECT);
    headers.remove(header::HOST);
    headers
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap()))
            .collect()
    }

    #[test]
    fn fixed_hop_by_hop_set_is_removed() {
        let mut h = map(&[
            ("connection", "keep-alive"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("trailer", "x"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("proxy-authorization", "Basic x"),
            ("proxy-connection", "keep-alive"),
            ("accept", "text/plain"),
        ]);
        remove_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert_eq!(h["accept"], "text/plain");
    }

    #[test]
    fn headers_named_by_connection_are_removed() {
        let mut h = map(&[
            ("connection", "X-Secret, close"),
            ("connection", "x-other"),
            ("x-secret", "1"),
            ("x-other", "2"),
            ("x-kept", "3"),
        ]);
        remove_hop_by_hop(&mut h);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), vec!["x-kept"]);
    }

    #[test]
    fn end_to_end_headers_pass_unchanged() {
        let pairs = [
            ("accept", "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"),
            ("accept-encoding", "gzip"),
            ("authorization", "Bearer t"),
            ("user-agent", "Prometheus/2.42.0"),
            ("x-prometheus-scrape-timeout-seconds", "10"),
            ("content-encoding", "gzip"),
            ("vary", "Accept-Encoding"),
        ];
        let mut h = map(&pairs);
        remove_hop_by_hop(&mut h);
        assert_eq!(h, map(&pairs));
    }

    #[test]
    fn upstream_request_drops_host_and_body_framing() {
        let h = for_upstream_request(map(&[
            ("host", "proxy:9100"),
            ("content-length", "5"),
            ("expect", "100-continue"),
            ("accept", "*/*"),
        ]));
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), vec!["accept"]);
    }

    #[test]
    fn a_response_framed_by_transfer_encoding_loses_its_content_length() {
        let mut h = map(&[("content-length", "5"), ("transfer-encoding", "chunked"), ("content-type", "text/plain")]);
        for_scraper(&mut h);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), vec!["content-type"]);
        let mut h = map(&[("content-length", "5"), ("content-type", "text/plain")]);
        for_scraper(&mut h);
        assert_eq!(h.len(), 2, "a Content-Length alone stays");
    }

    #[test]
    fn malformed_connection_values_do_not_panic() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_bytes(b"\xff, ,,").unwrap());
        h.insert("x", HeaderValue::from_static("1"));
        remove_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
    }
}
