//! Which scrapes are the same exporter request: the identity two scrapes must share before one
//! exporter answer may serve both.
//!
//! The key is taken from the request the proxy would send the exporter, not from what the
//! scraper sent, so it is exactly what the exporter would see: the method (GET and HEAD never
//! share), the path and query byte for byte (a different `collect[]` is a different answer), and
//! every forwarded header that can change the answer:
//! - `Accept`: OpenMetrics versus Prometheus text;
//! - `Accept-Encoding`: gzip versus identity;
//! - `Authorization`: an exporter behind authentication may answer differently per credential;
//! - `X-Prometheus-Scrape-Timeout-Seconds`: the proxy's budget, which windows_exporter uses to
//!   time out collectors, so a shorter budget can mean a different (partial) answer.
//!
//! Other forwarded headers (`User-Agent`, tracing headers) do not change what windows_exporter
//! returns; the exporter sees the first scraper's. Header values are compared exactly, every
//! occurrence in order. The key holds credentials, so its `Debug` never shows `Authorization`.

use std::fmt;

use bytes::Bytes;
use http::header::{ACCEPT, ACCEPT_ENCODING, AUTHORIZATION};
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderName, HeaderValue, Method};

use crate::deadline::SCRAPE_TIMEOUT;

/// The forwarded headers that take part in the key, in a fixed order.
const VARYING: [&HeaderName; 3] = [&ACCEPT, &ACCEPT_ENCODING, &AUTHORIZATION];

/// The identity of an exporter request.
///
/// It is built for every scrape and compared with the few requests in flight (never hashed), so
/// it allocates nothing for a scrape like Prometheus' (the path is the request's own, shared;
/// each header's first value sits in place; only a repeated header takes a vector).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ScrapeKey {
    method: Method,
    path_and_query: PathAndQuery,
    /// The first value of each of [`VARYING`] and then of the scrape timeout.
    first: [Option<HeaderValue>; 4],
    /// Every further value, in order, each with the index of its name (0-3).
    more: Vec<(u8, HeaderValue)>,
}

impl ScrapeKey {
    /// The key of an exporter request with this method, path and query, and forwarded headers.
    pub fn new(method: &Method, path_and_query: &str, headers: &HeaderMap) -> ScrapeKey {
        let path = PathAndQuery::from_maybe_shared(Bytes::copy_from_slice(path_and_query.as_bytes()))
            .expect("a path and query the proxy built");
        ScrapeKey::of(method, &path, headers)
    }

    /// [`ScrapeKey::new`] for a path already parsed (shared, not copied).
    pub fn of(method: &Method, path_and_query: &PathAndQuery, headers: &HeaderMap) -> ScrapeKey {
        let names = [VARYING[0], VARYING[1], VARYING[2], &SCRAPE_TIMEOUT];
        let mut first: [Option<HeaderValue>; 4] = Default::default();
        let mut more = Vec::new();
        for (i, name) in (0u8..).zip(names) {
            let mut values = headers.get_all(name).iter();
            first[usize::from(i)] = values.next().cloned();
            more.extend(values.map(|value| (i, value.clone())));
        }
        ScrapeKey { method: method.clone(), path_and_query: path_and_query.clone(), first, more }
    }

    /// The values of the key's header number `i` (see [`ScrapeKey::first`]).
    fn values(&self, i: u8) -> Vec<&HeaderValue> {
        let more = self.more.iter().filter(|(n, _)| *n == i).map(|(_, value)| value);
        self.first[usize::from(i)].iter().chain(more).collect()
    }
}

/// An exporter request as coalescing sees it: what the proxy would send the exporter. A scrape
/// in flight is registered with its own request (shared, not copied), and the key is compared only
/// when there is something to compare it with, so a lone scrape builds no key at all.
pub trait Identity: Send + Sync + 'static {
    /// The method.
    fn method(&self) -> &Method;
    /// The path and query.
    fn path_and_query(&self) -> &PathAndQuery;
    /// The headers forwarded to the exporter.
    fn headers(&self) -> &HeaderMap;

    /// This request's [`ScrapeKey`].
    fn key(&self) -> ScrapeKey {
        ScrapeKey::of(self.method(), self.path_and_query(), self.headers())
    }
}

/// Whether `a` and `b` have equal [`ScrapeKey`]s, without building either: the same method, path
/// and query, and the same values of each varying header and of the scrape timeout, in order.
pub fn same(a: &dyn Identity, b: &dyn Identity) -> bool {
    let names = [VARYING[0], VARYING[1], VARYING[2], &SCRAPE_TIMEOUT];
    a.method() == b.method()
        && a.path_and_query() == b.path_and_query()
        && names.into_iter().all(|name| a.headers().get_all(name).iter().eq(b.headers().get_all(name).iter()))
}

impl fmt::Debug for ScrapeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScrapeKey")
            .field("method", &self.method)
            .field("path_and_query", &self.path_and_query.as_str())
            .field("accept", &self.values(0))
            .field("accept_encoding", &self.values(1))
            .field("authorization", &if self.values(2).is_empty() { "none" } else { "<redacted>" })
            .field("scrape_timeout", &self.values(3))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap()))
            .collect()
    }

    fn prometheus() -> Vec<(&'static str, &'static str)> {
        vec![
            ("accept", PROMETHEUS_ACCEPT),
            ("accept-encoding", "gzip"),
            ("user-agent", "Prometheus/2.42.0"),
            ("x-prometheus-scrape-timeout-seconds", "9.500"),
        ]
    }

    fn key(method: Method, path: &str, pairs: &[(&str, &str)]) -> ScrapeKey {
        ScrapeKey::new(&method, path, &headers(pairs))
    }

    #[test]
    fn an_ha_pair_of_the_same_prometheus_shares_and_the_user_agent_does_not_matter() {
        let mut other = prometheus();
        other[2] = ("user-agent", "Prometheus/2.53.0");
        assert_eq!(key(Method::GET, "/metrics", &prometheus()), key(Method::GET, "/metrics", &other));
    }

    #[test]
    fn every_part_that_can_change_the_answer_separates() {
        let base = key(Method::GET, "/metrics", &prometheus());
        let variants = [
            key(Method::HEAD, "/metrics", &prometheus()),
            key(Method::GET, "/metrics?collect[]=cpu", &prometheus()),
            key(
                Method::GET,
                "/metrics",
                &[("accept", PROMETHEUS_ACCEPT), ("x-prometheus-scrape-timeout-seconds", "9.500")],
            ),
            key(
                Method::GET,
                "/metrics",
                &[
                    ("accept", "text/plain"),
                    ("accept-encoding", "gzip"),
                    ("x-prometheus-scrape-timeout-seconds", "9.500"),
                ],
            ),
            key(
                Method::GET,
                "/metrics",
                &[
                    ("accept", PROMETHEUS_ACCEPT),
                    ("accept-encoding", "gzip"),
                    ("x-prometheus-scrape-timeout-seconds", "4.500"),
                ],
            ),
            key(Method::GET, "/metrics", &[prometheus(), vec![("authorization", "Bearer a")]].concat()),
        ];
        for (i, variant) in variants.iter().enumerate() {
            assert_ne!(&base, variant, "variant {i}");
        }
        assert_ne!(
            key(Method::GET, "/metrics", &[("authorization", "Bearer a")]),
            key(Method::GET, "/metrics", &[("authorization", "Bearer b")])
        );
        assert_ne!(
            key(Method::GET, "/metrics?collect[]=cpu&collect[]=os", &[]),
            key(Method::GET, "/metrics?collect[]=os&collect[]=cpu", &[])
        );
    }

    struct Plain(Method, PathAndQuery, HeaderMap);

    impl Identity for Plain {
        fn method(&self) -> &Method {
            &self.0
        }
        fn path_and_query(&self) -> &PathAndQuery {
            &self.1
        }
        fn headers(&self) -> &HeaderMap {
            &self.2
        }
    }

    #[test]
    fn comparing_requests_says_what_comparing_their_keys_says() {
        let variants: Vec<Plain> = [
            (Method::GET, "/metrics", prometheus()),
            (Method::GET, "/metrics", [prometheus(), vec![("user-agent", "other")]].concat()),
            (Method::HEAD, "/metrics", prometheus()),
            (Method::GET, "/metrics?collect[]=cpu", prometheus()),
            (Method::GET, "/metrics", vec![("accept", "text/plain")]),
            (Method::GET, "/metrics", vec![("accept", "text/plain"), ("accept", "text/html")]),
            (Method::GET, "/metrics", vec![("accept", "text/html"), ("accept", "text/plain")]),
            (Method::GET, "/metrics", vec![("x-prometheus-scrape-timeout-seconds", "4.500")]),
            (Method::GET, "/metrics", vec![("authorization", "Bearer a")]),
            (Method::GET, "/metrics", vec![]),
        ]
        .into_iter()
        .map(|(method, path, pairs)| Plain(method, path.parse().unwrap(), headers(&pairs)))
        .collect();
        for a in &variants {
            for b in &variants {
                assert_eq!(same(a, b), a.key() == b.key(), "{:?} and {:?}", a.key(), b.key());
            }
        }
        assert!(same(&variants[0], &variants[1]), "the user agent does not matter");
    }

    #[test]
    fn debug_never_shows_credentials() {
        let shown = format!("{:?}", key(Method::GET, "/metrics", &[("authorization", "Bearer s3cr3t")]));
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }
}
