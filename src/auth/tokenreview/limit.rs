//! How many TokenReviews tokens the proxy has never seen authenticate may cause: a token bucket.
//!
//! Every distinct bearer token is a TokenReview (its outcome is cached, but a new token misses
//! the cache), so without a limit anyone who can reach the port makes the proxy send the API
//! server as many reviews as they send junk tokens. A review of a token whose key is *known* (it
//! authenticated before; its cache entry may have expired, see [`super::cache`]) bypasses the
//! limit, so a flood never starves the scrapers the proxy already knows. Every other review takes
//! a token from a bucket of [`BURST`] refilled at [`PER_SECOND`]; with the bucket empty the
//! request is answered 503 with `Retry-After` at once, without a review, and counted as
//! `outcome="limited"` in `windows_exporter_proxy_auth_decisions_total`.
//!
//! Why these numbers. A real cluster has a few Prometheus replicas and service accounts, each
//! with its own token, reviewed once per TTL once known. Unknown tokens come from a proxy start
//! (every scraper at once: a handful, rarely ten, so [`BURST`] takes them all), a kubelet's
//! rotation of a projected token (about hourly per pod), or a misconfigured scraper (its
//! denial is cached, so one review per TTL). All of that is far below [`PER_SECOND`] sustained.
//! A flood of junk tokens, by contrast, is held to 2 reviews a second per proxy (per node),
//! where it used to be one review per request (about 720 a second on one node in issue 24). A
//! scraper whose new token arrives during a flood may be refused a few times until it wins a
//! review; Prometheus retries at its next scrape.
//!
//! Refusals are logged at warn at most once every [`LOG_EVERY`], with how many there were, not
//! once per junk request.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Reviews of unknown tokens that may be sent at once after a quiet spell.
pub const BURST: u32 = 16;
/// Reviews of unknown tokens per second, sustained.
pub const PER_SECOND: u32 = 2;
/// At most one warning about refusals this often.
pub const LOG_EVERY: Duration = Duration::from_secs(10);
/// The `Retry-After` of a refusal, in seconds: a bucket token is back by then.
pub const RETRY_AFTER_SECONDS: u32 = 1_u32.div_ceil(PER_SECOND);

/// The bucket.
pub struct ReviewLimit {
    burst: f64,
    per_second: f64,
    state: Mutex<Bucket>,
}

struct Bucket {
    tokens: f64,
    refilled: Instant,
    /// Refusals not yet reported in a log line.
    refused: u64,
    logged: Option<Instant>,
}

impl Default for ReviewLimit {
    fn default() -> Self {
        ReviewLimit::new(BURST, PER_SECOND)
    }
}

impl ReviewLimit {
    /// A full bucket of `burst` refilled at `per_second`.
    pub fn new(burst: u32, per_second: u32) -> ReviewLimit {
        ReviewLimit {
            burst: f64::from(burst),
            per_second: f64::from(per_second),
            state: Mutex::new(Bucket { tokens: f64::from(burst), refilled: Instant::now(), refused: 0, logged: None }),
        }
    }

    /// Whether a review may be sent now for a token that is `known` (always) or not (when the
    /// bucket has a token left, which it takes).
    pub fn admit(&self, known: bool) -> bool {
        if known {
            return true;
        }
        let mut bucket = self.state.lock().expect("no panics while locked");
        let now = Instant::now();
        let elapsed = now.duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_second).min(self.burst);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return true;
        }
        bucket.refused += 1;
        if bucket.logged.is_none_or(|at| now.duration_since(at) >= LOG_EVERY) {
            tracing::warn!(
                refused = bucket.refused,
                burst = BURST,
                per_second = PER_SECOND,
                "tokenreview: too many bearer tokens the proxy has not seen authenticate; requests refused with 503 instead of a TokenReview (counted as outcome=\"limited\"); known tokens are not limited"
            );
            bucket.refused = 0;
            bucket.logged = Some(now);
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn unknown_tokens_get_the_burst_then_the_rate_and_known_ones_always_pass() {
        let limit = ReviewLimit::new(3, 2);
        assert_eq!((0..10).filter(|_| limit.admit(false)).count(), 3, "the burst");
        assert!((0..100).all(|_| limit.admit(true)), "known tokens are never limited");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!((0..10).filter(|_| limit.admit(false)).count(), 2, "the rate");
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!((0..10).filter(|_| limit.admit(false)).count(), 3, "never more than the burst");
    }

    #[test]
    fn retry_after_is_at_least_a_second() {
        assert_eq!(RETRY_AFTER_SECONDS, 1);
    }
}
