//! A flood of distinct junk bearer tokens (issue 24), black-box: the real binary with
//! `PROXY_AUTH=tokenreview` against the fake API server (tests/support/kube_api.rs), which counts
//! every TokenReview. The reviews junk causes stay within the limit's burst and rate, the flood is
//! refused with 503 and `Retry-After`, counted and logged in aggregate, and a token that
//! authenticated before keeps scraping during the flood without a review per scrape.
//!
//! That the TokenReview cache evicts junk instead of refusing to store, and never evicts a token
//! that authenticated, is a unit test with paused time in `src/auth/tokenreview/cache.rs`.
// Not on Windows: the fake API server's certificates come from the openssl CLI
// (see .github/workflows/ci.yml).
#![cfg(unix)]

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;
use support::kube_api::{FakeKubeApi, Review, Script};
use support::{Client, FakeExporter, metric, within_for};

/// The documented limit (README, `tokenreview`): reviews of tokens never seen authenticated, a
/// burst of 16, then 2 a second.
const BURST: u32 = 16;
const PER_SECOND: u32 = 2;
/// Distinct junk tokens sent.
const JUNK: usize = 3000;
/// Connections sending them at once.
const SENDERS: usize = 16;
/// Each sender scrapes with the good token after this many junk requests.
const GOOD_EVERY: usize = 25;

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[tokio::test]
async fn junk_tokens_cause_a_bounded_number_of_reviews_and_a_known_token_keeps_scraping() {
    let exporter = FakeExporter::serving(Bytes::from_static(b"up 1\n"), "text/plain; version=0.0.4").await;
    let mut api = FakeKubeApi::start().await;
    let mut proxy = api.proxy(&exporter, &[]).await;

    // Before the flood: Prometheus authenticates, and so does a user RBAC denies (its 403 log
    // lines, at info, mark how far the log has been read).
    let mut client = Client::connect(proxy.addr).await;
    assert_eq!(client.get("/metrics", &[("authorization", &bearer(Script::GOOD))]).await.status, StatusCode::OK);
    let refused_403 = |l: &serde_json::Value| l["message"] == "scrape refused: not authorized (403)";
    let denied = bearer(Script::DENIED);
    assert_eq!(client.get("/metrics", &[("authorization", &denied)]).await.status, StatusCode::FORBIDDEN);
    proxy.wait_for_log("the first 403", refused_403).await;
    let reviews_before = api.token_reviews();
    assert_eq!(reviews_before, 2);

    let started = Instant::now();
    let senders: Vec<_> = (0..SENDERS)
        .map(|sender| {
            let addr = proxy.addr;
            tokio::spawn(async move {
                let mut client = Client::connect(addr).await;
                let (mut refused, mut limited, mut good) = (0, 0, 0);
                for n in (sender..JUNK).step_by(SENDERS) {
                    let junk = bearer(&format!("junk-{n:05}.flood"));
                    let answer = client.get("/metrics", &[("authorization", &junk)]).await;
                    match answer.status {
                        StatusCode::UNAUTHORIZED => refused += 1,
                        StatusCode::SERVICE_UNAVAILABLE => {
                            assert_eq!(answer.headers["retry-after"], "1", "{:?}", answer.headers);
                            limited += 1;
                        }
                        other => panic!("junk token answered {other}: {}", answer.text()),
                    }
                    if n / SENDERS % GOOD_EVERY == 0 {
                        let answer = client.get("/metrics", &[("authorization", &bearer(Script::GOOD))]).await;
                        assert_eq!(answer.status, StatusCode::OK, "the known token during the flood");
                        good += 1;
                    }
                }
                (refused, limited, good)
            })
        })
        .collect();
    let (mut refused, mut limited, mut good) = (0, 0, 0);
    within_for(Duration::from_secs(120), "the flood to be answered", async {
        for sender in senders {
            let (r, l, g) = sender.await.unwrap();
            (refused, limited, good) = (refused + r, limited + l, good + g);
        }
    })
    .await;
    let elapsed = started.elapsed();
    assert_eq!(refused + limited, JUNK);
    assert!(good >= SENDERS * 4, "{good} good scrapes");

    // The reviews the flood caused: at most the burst and the rate over its duration.
    let bound = BURST as f64 + PER_SECOND as f64 * elapsed.as_secs_f64() + 1.0;
    let junk_reviews = api.token_reviews() - reviews_before;
    assert!(
        (junk_reviews as f64) <= bound,
        "{junk_reviews} TokenReviews for {JUNK} junk tokens in {elapsed:?}; the limit allows {bound}"
    );
    assert_eq!(junk_reviews, refused, "every junk token reviewed was refused 401, the others 503");
    let good_reviews = api
        .pending_reviews()
        .into_iter()
        .filter(|r| matches!(r, Review::Token { review, .. } if review.spec.token.as_deref() == Some(Script::GOOD)))
        .count();
    assert_eq!(good_reviews, 1, "{good} scrapes with the known token during the flood, one review before it");

    // Counted, and logged in aggregate rather than once per junk token.
    assert_eq!(client.get("/metrics", &[("authorization", &denied)]).await.status, StatusCode::FORBIDDEN);
    proxy.wait_for_log("the second 403, after the flood", refused_403).await;
    let warnings = proxy.log.iter().filter(|l| l.contains("too many bearer tokens")).count();
    let most = 1 + elapsed.as_secs() as usize / 10;
    assert!((1..=most).contains(&warnings), "{warnings} limit warnings in {elapsed:?}");
    let scraped = client.get("/proxy/metrics", &[("authorization", &bearer(Script::GOOD))]).await;
    let metrics = support::parse_metrics(&scraped.text());
    let decisions = |outcome: &str| {
        metric(
            &metrics,
            &format!("windows_exporter_proxy_auth_decisions_total{{method=\"tokenreview\",outcome=\"{outcome}\"}}"),
        )
    };
    assert_eq!(decisions("limited"), limited as f64);
    assert_eq!(decisions("unauthenticated"), refused as f64);
}
