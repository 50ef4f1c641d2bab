//! The per-scrape deadline.
//!
//! Prometheus tells every target how long it will wait, in `X-Prometheus-Scrape-Timeout-Seconds`.
//! The proxy must answer before that, so it takes a margin off and clamps the result to sane
//! bounds; a scrape without the header (or with a malformed one) gets the configured default.
//!
//! The exporter is told the time the proxy really has left, not the scraper's budget: the
//! forwarded header is rewritten, as each exporter request goes out, to what is left of the
//! deadline computed here, always well-formed. A scrape that waited for a slot or a port tells
//! the exporter only what remains after the wait. windows_exporter subtracts its own margin from
//! that value for its collectors, so it answers with partial data before the proxy would give
//! up, and a malformed scraper value can never reach it (windows_exporter issues #2001, #2177
//! made every collector time out on one). Below [`MIN_DEADLINE`] left, no exporter request is
//! sent at all: it could not be answered in time, and every request is a collection on the node.
//!
//! The deadline also bounds the answer's delivery: [`SendDeadline`] tells the scraper's
//! connection by when the response must have been taken by the scraper.

use std::time::Duration;

use http::{HeaderName, HeaderValue};
use tokio::time::Instant;

/// The request header Prometheus sets on every scrape.
pub const SCRAPE_TIMEOUT_HEADER: &str = "x-prometheus-scrape-timeout-seconds";

/// [`SCRAPE_TIMEOUT_HEADER`] as a header name, so a lookup or insert does not parse it again.
pub static SCRAPE_TIMEOUT: HeaderName = HeaderName::from_static(SCRAPE_TIMEOUT_HEADER);

/// The shortest deadline the proxy will use: below this a scrape cannot succeed anyway.
pub const MIN_DEADLINE: Duration = Duration::from_millis(250);
/// The longest deadline the proxy will use, whatever the scraper says.
pub const MAX_DEADLINE: Duration = Duration::from_secs(300);

/// How long one scrape may take, and where that figure came from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScrapeBudget {
    /// Time from receiving the request to the end of the response body.
    pub timeout: Duration,
    /// Whether the scraper's header set it (false: the configured default).
    pub from_scraper: bool,
}

impl ScrapeBudget {
    /// The budget for a scrape whose timeout header has this value.
    pub fn from_header(header: Option<&HeaderValue>, margin: Duration, default: Duration) -> ScrapeBudget {
        match header.and_then(parse_seconds) {
            Some(scraper) => ScrapeBudget {
                timeout: scraper.saturating_sub(margin).clamp(MIN_DEADLINE, MAX_DEADLINE),
                from_scraper: true,
            },
            None => ScrapeBudget { timeout: default.clamp(MIN_DEADLINE, MAX_DEADLINE), from_scraper: false },
        }
    }

    /// This budget as the header's value: what identical scrapes share (`scrape::coalesce::key`).
    pub fn header_value(&self) -> HeaderValue {
        header_value(self.timeout)
    }
}

/// The header value forwarded to the exporter: `left` in seconds, millisecond precision.
pub fn header_value(left: Duration) -> HeaderValue {
    // Written by hand into a stack buffer: `format!` and `from_str` cost two allocations and the
    // formatting machinery on every exporter request (BENCHMARKS.md, instructions per scrape).
    let millis = u64::try_from(left.as_millis()).unwrap_or(u64::MAX);
    let mut text = [0u8; 24];
    let mut at = text.len();
    let mut push = |byte: u8| {
        at -= 1;
        text[at] = byte;
    };
    let digit = |n: u64| b'0' + (n % 10) as u8;
    push(digit(millis));
    push(digit(millis / 10));
    push(digit(millis / 100));
    push(b'.');
    let mut seconds = millis / 1000;
    loop {
        push(digit(seconds));
        seconds /= 10;
        if seconds == 0 {
            break;
        }
    }
    HeaderValue::from_bytes(&text[at..]).expect("digits and a dot are a valid header value")
}

/// In a response's extensions: by when the scraper must have taken the whole response. A
/// scrape sets its own deadline; a response without one (a local answer) gets the connection's
/// short send deadline. See `connection`.
#[derive(Debug, Clone, Copy)]
pub struct SendDeadline(pub Instant);

/// Anything above this is treated as this, before clamping (and `Duration` cannot overflow).
const UNREASONABLE_SECONDS: f64 = 1e6;

/// Seconds as Prometheus writes them (`10`, `9.5`); anything else is treated as absent.
fn parse_seconds(value: &HeaderValue) -> Option<Duration> {
    let seconds: f64 = value.to_str().ok()?.trim().parse().ok()?;
    (seconds.is_finite() && seconds > 0.0).then(|| Duration::from_secs_f64(seconds.min(UNREASONABLE_SECONDS)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MARGIN: Duration = Duration::from_millis(500);
    const DEFAULT: Duration = Duration::from_secs(10);

    fn budget(value: Option<&str>) -> ScrapeBudget {
        let header = value.map(|v| HeaderValue::from_str(v).unwrap());
        ScrapeBudget::from_header(header.as_ref(), MARGIN, DEFAULT)
    }

    #[test]
    fn scraper_timeout_minus_margin() {
        assert_eq!(budget(Some("10")), ScrapeBudget { timeout: Duration::from_millis(9500), from_scraper: true });
        assert_eq!(budget(Some("2.25")).timeout, Duration::from_millis(1750));
    }

    #[test]
    fn absent_or_malformed_header_uses_the_default() {
        for value in [None, Some(""), Some("abc"), Some("-3"), Some("0"), Some("NaN"), Some("inf"), Some("10s")] {
            assert_eq!(budget(value), ScrapeBudget { timeout: DEFAULT, from_scraper: false }, "{value:?}");
        }
    }

    #[test]
    fn result_is_clamped() {
        assert_eq!(budget(Some("0.3")).timeout, MIN_DEADLINE);
        assert_eq!(budget(Some("100000")).timeout, MAX_DEADLINE);
        assert_eq!(budget(Some("1e300")).timeout, MAX_DEADLINE);
    }

    #[test]
    fn forwarded_value_is_the_budget_in_seconds() {
        assert_eq!(budget(Some("10")).header_value(), "9.500");
        assert_eq!(budget(Some("garbage")).header_value(), "10.000");
        assert_eq!(budget(Some("0.3")).header_value(), "0.250");
        assert_eq!(header_value(Duration::from_micros(1_234_567)), "1.234");
    }
}
