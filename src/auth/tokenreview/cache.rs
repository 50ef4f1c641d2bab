//! The review cache: remembered outcomes with a time to live, bounded by eviction, and one review
//! in flight per key.
//!
//! kube-rbac-proxy (through client-go's delegating authenticator and authorizer) remembers
//! TokenReview outcomes for 2 minutes and SubjectAccessReview outcomes for 5 minutes when allowed
//! and 30 seconds when denied; the caller gives each outcome's time to live. Errors are never
//! remembered: the next request asks the API server again.
//!
//! Concurrent requests with the same key share one review: the first starts it on its own task
//! (so a scraper that hangs up does not cancel the others' review), later ones wait for its
//! result. Prometheus HA pairs and a retrying scraper otherwise send identical reviews at once.
//!
//! **Bounded by eviction, in two segments.** The caller says which outcomes are worth protecting
//! (for TokenReviews: the token authenticated). Those live in the protected segment, at most
//! [`PROTECTED_ENTRIES`]; every other outcome (an invalid token's denial) lives in the probation
//! segment, at most [`PROBATION_ENTRIES`]. A full segment evicts its least recently used entry to
//! make room, so the cache never stops storing, and a flood of junk tokens only churns probation:
//! it can never push out a token that authenticated. An expired entry stays (until evicted) so
//! that the next review of its key can be told the key is *known*: a token that authenticated
//! before, whose review the caller lets past its limit ([`super::limit`]).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

/// Protected entries (outcomes the caller protects: tokens that authenticated). A real cluster
/// has a few Prometheus replicas and service accounts, each token one entry; 1024 leaves room for
/// hourly token rotation on hundreds of scrapers.
pub const PROTECTED_ENTRIES: usize = 1024;
/// Probation entries (every other outcome: invalid tokens). Junk churns only these.
pub const PROBATION_ENTRIES: usize = 4096;

/// A review's result as waiters see it: the outcome or the cause of the failure (for the log).
pub type Shared<V> = Result<V, Arc<str>>;

/// Which part of the cache an entry lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Segment {
    Probation = 0,
    Protected = 1,
}

struct Entry<V> {
    value: V,
    until: Instant,
    segment: Segment,
    /// When it was last stored or read, on the cache's own clock: its place in the LRU order.
    used: u64,
}

struct Inner<K, V> {
    entries: HashMap<K, Entry<V>>,
    in_flight: HashMap<K, watch::Receiver<Option<Shared<V>>>>,
    /// Per segment, keys by last use, oldest first.
    order: [BTreeMap<u64, K>; 2],
    clock: u64,
}

/// Remembered outcomes of one kind of review.
pub struct ReviewCache<K, V> {
    inner: Mutex<Inner<K, V>>,
    capacity: [usize; 2],
}

impl<K, V> Default for ReviewCache<K, V> {
    fn default() -> Self {
        ReviewCache::with_capacity(PROTECTED_ENTRIES, PROBATION_ENTRIES)
    }
}

impl<K, V> ReviewCache<K, V> {
    /// A cache of at most `protected` plus `probation` entries.
    pub fn with_capacity(protected: usize, probation: usize) -> Self {
        ReviewCache {
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                in_flight: HashMap::new(),
                order: [BTreeMap::new(), BTreeMap::new()],
                clock: 0,
            }),
            capacity: [probation.max(1), protected.max(1)],
        }
    }
}

impl<K, V> ReviewCache<K, V>
where
    K: Hash + Eq + Clone + Send + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// The remembered outcome for `key`, or the result of the review in flight for it, or the
    /// result of `review`, started now on its own task and remembered for `ttl(&outcome)`. Every
    /// outcome is protected and every review admitted.
    pub async fn get_or_review<F, Fut>(self: &Arc<Self>, key: K, ttl: fn(&V) -> Duration, review: F) -> Shared<V>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, String>> + Send + 'static,
    {
        self.get_or_review_admitted(key, ttl, |_| true, |_| true, review).await.expect("every review is admitted")
    }

    /// Like [`get_or_review`](Self::get_or_review), but a new review is started only if
    /// `admit(known)` says so, `known` being whether the key's last outcome was protected (its
    /// entry may have expired); `None` when it was not admitted. Outcomes for which
    /// `protect(&outcome)` holds go to the protected segment, others to probation.
    pub async fn get_or_review_admitted<F, Fut>(
        self: &Arc<Self>,
        key: K,
        ttl: fn(&V) -> Duration,
        protect: fn(&V) -> bool,
        admit: impl FnOnce(bool) -> bool,
        review: F,
    ) -> Option<Shared<V>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, String>> + Send + 'static,
    {
        let mut receiver = {
            let mut guard = self.inner.lock().expect("no panics while locked");
            let inner = &mut *guard;
            let now = Instant::now();
            let mut known = false;
            if let Some(entry) = inner.entries.get_mut(&key) {
                if entry.until > now {
                    inner.clock += 1;
                    inner.order[entry.segment as usize].remove(&entry.used);
                    inner.order[entry.segment as usize].insert(inner.clock, key.clone());
                    entry.used = inner.clock;
                    return Some(Ok(entry.value.clone()));
                }
                known = entry.segment == Segment::Protected;
            }
            match inner.in_flight.get(&key) {
                Some(receiver) => receiver.clone(),
                None => {
                    if !admit(known) {
                        return None;
                    }
                    let (sender, receiver) = watch::channel(None);
                    inner.in_flight.insert(key.clone(), receiver.clone());
                    let cache = self.clone();
                    let future = review();
                    tokio::spawn(async move {
                        let result = future.await.map_err(Arc::from);
                        cache.finish(key, &result, ttl, protect);
                        let _ = sender.send(Some(result));
                    });
                    receiver
                }
            }
        };
        Some(match receiver.wait_for(Option::is_some).await {
            Ok(result) => result.clone().expect("waited for Some"),
            Err(_) => Err(Arc::from("the review task ended without a result")),
        })
    }

    /// Stores a finished review: the outcome until its TTL in its segment, evicting that
    /// segment's least recently used entry when it is full; nothing for an error (an expired
    /// entry for the key stays, and with it whether the key is known).
    fn finish(&self, key: K, result: &Shared<V>, ttl: fn(&V) -> Duration, protect: fn(&V) -> bool) {
        let mut guard = self.inner.lock().expect("no panics while locked");
        let inner = &mut *guard;
        inner.in_flight.remove(&key);
        let Ok(value) = result else { return };
        if let Some(old) = inner.entries.remove(&key) {
            inner.order[old.segment as usize].remove(&old.used);
        }
        let segment = if protect(value) { Segment::Protected } else { Segment::Probation };
        let order = &mut inner.order[segment as usize];
        while order.len() >= self.capacity[segment as usize] {
            let Some((_, oldest)) = order.pop_first() else { break };
            inner.entries.remove(&oldest);
        }
        inner.clock += 1;
        order.insert(inner.clock, key.clone());
        inner.entries.insert(
            key,
            Entry { value: value.clone(), until: Instant::now() + ttl(value), segment, used: inner.clock },
        );
    }

    /// Outcomes remembered (expired ones included, until evicted) or in flight now.
    pub fn len(&self) -> usize {
        let inner = self.inner.lock().expect("no panics while locked");
        inner.entries.len() + inner.in_flight.len()
    }

    /// Whether nothing is remembered or in flight.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::sync::oneshot;

    fn minute(_: &bool) -> Duration {
        Duration::from_secs(60)
    }

    fn by_outcome(allowed: &bool) -> Duration {
        if *allowed { Duration::from_secs(300) } else { Duration::from_secs(30) }
    }

    #[tokio::test(start_paused = true)]
    async fn outcomes_are_remembered_for_their_ttl() {
        let cache = Arc::new(ReviewCache::<u8, bool>::default());
        let reviews = Arc::new(AtomicUsize::new(0));
        let review = |answer: bool| {
            let reviews = reviews.clone();
            move || async move {
                reviews.fetch_add(1, Ordering::SeqCst);
                Ok(answer)
            }
        };
        assert_eq!(cache.get_or_review(1, by_outcome, review(true)).await, Ok(true));
        assert_eq!(cache.get_or_review(2, by_outcome, review(false)).await, Ok(false));
        assert_eq!(cache.get_or_review(1, by_outcome, review(false)).await, Ok(true));
        assert_eq!(reviews.load(Ordering::SeqCst), 2);
        tokio::time::advance(Duration::from_secs(31)).await;
        assert_eq!(cache.get_or_review(1, by_outcome, review(false)).await, Ok(true), "allow still remembered");
        assert_eq!(cache.get_or_review(2, by_outcome, review(true)).await, Ok(true), "deny expired");
        assert_eq!(reviews.load(Ordering::SeqCst), 3);
        tokio::time::advance(Duration::from_secs(270)).await;
        assert_eq!(cache.get_or_review(1, by_outcome, review(false)).await, Ok(false), "allow expired");
    }

    #[tokio::test]
    async fn errors_are_never_remembered() {
        let cache = Arc::new(ReviewCache::<u8, bool>::default());
        let failed = cache.get_or_review(1, minute, || async { Err("500 from the API server".to_string()) }).await;
        assert_eq!(failed.unwrap_err().as_ref(), "500 from the API server");
        assert!(cache.is_empty());
        assert_eq!(cache.get_or_review(1, minute, || async { Ok(true) }).await, Ok(true));
    }

    #[tokio::test]
    async fn concurrent_requests_share_one_review_even_if_the_first_goes_away() {
        let cache = Arc::new(ReviewCache::<u8, bool>::default());
        let reviews = Arc::new(AtomicUsize::new(0));
        let (release, released) = oneshot::channel::<()>();
        let counted = reviews.clone();
        let first = {
            let cache = cache.clone();
            tokio::spawn(async move {
                cache
                    .get_or_review(7, minute, move || async move {
                        counted.fetch_add(1, Ordering::SeqCst);
                        released.await.unwrap();
                        Ok(true)
                    })
                    .await
            })
        };
        // Wait until the review is in flight.
        while cache.is_empty() {
            tokio::task::yield_now().await;
        }
        let waiters: Vec<_> = (0..5)
            .map(|_| {
                let cache = cache.clone();
                let reviews = reviews.clone();
                tokio::spawn(async move {
                    cache
                        .get_or_review(7, minute, move || async move {
                            reviews.fetch_add(1, Ordering::SeqCst);
                            Ok(false)
                        })
                        .await
                })
            })
            .collect();
        first.abort();
        release.send(()).unwrap();
        for waiter in waiters {
            assert_eq!(waiter.await.unwrap(), Ok(true));
        }
        assert_eq!(reviews.load(Ordering::SeqCst), 1);
    }

    fn authenticated(valid: &bool) -> bool {
        *valid
    }

    /// Looks `key` up in `cache` with reviews answering `answer`, counted in `reviews`; records
    /// whether the review was asked for a known key.
    async fn look_up(
        cache: &Arc<ReviewCache<u32, bool>>,
        key: u32,
        answer: bool,
        reviews: &Arc<AtomicUsize>,
        known: &Mutex<Vec<bool>>,
    ) -> Option<Shared<bool>> {
        let counted = reviews.clone();
        cache
            .get_or_review_admitted(
                key,
                minute,
                authenticated,
                |k| {
                    known.lock().unwrap().push(k);
                    true
                },
                move || async move {
                    counted.fetch_add(1, Ordering::SeqCst);
                    Ok(answer)
                },
            )
            .await
    }

    #[tokio::test(start_paused = true)]
    async fn junk_evicts_junk_but_never_an_authenticated_entry_and_storing_never_stops() {
        let cache = Arc::new(ReviewCache::<u32, bool>::with_capacity(2, 3));
        let (reviews, known) = (Arc::new(AtomicUsize::new(0)), Mutex::new(Vec::new()));
        assert_eq!(look_up(&cache, 1, true, &reviews, &known).await, Some(Ok(true)));
        // A flood of junk, far past the probation segment's size.
        for junk in 100..200 {
            assert_eq!(look_up(&cache, junk, false, &reviews, &known).await, Some(Ok(false)));
        }
        assert_eq!(reviews.load(Ordering::SeqCst), 101);
        assert_eq!(cache.len(), 1 + 3, "bounded: the protected entry and a full probation");
        // The authenticated entry survived the flood.
        assert_eq!(look_up(&cache, 1, false, &reviews, &known).await, Some(Ok(true)));
        // The newest junk is stored (evicting the oldest), not dropped: no second review.
        assert_eq!(look_up(&cache, 199, true, &reviews, &known).await, Some(Ok(false)));
        assert_eq!(reviews.load(Ordering::SeqCst), 101);
        // The oldest junk was evicted: a second review.
        assert_eq!(look_up(&cache, 100, false, &reviews, &known).await, Some(Ok(false)));
        assert_eq!(reviews.load(Ordering::SeqCst), 102);
        // Protected entries evict each other, least recently used first.
        look_up(&cache, 2, true, &reviews, &known).await;
        look_up(&cache, 1, true, &reviews, &known).await; // a hit: 1 is now the most recent
        look_up(&cache, 3, true, &reviews, &known).await; // evicts 2
        let before = reviews.load(Ordering::SeqCst);
        look_up(&cache, 1, true, &reviews, &known).await;
        assert_eq!(reviews.load(Ordering::SeqCst), before, "1 stayed");
        look_up(&cache, 2, true, &reviews, &known).await;
        assert_eq!(reviews.load(Ordering::SeqCst), before + 1, "2 was evicted");
    }

    #[tokio::test(start_paused = true)]
    async fn an_expired_authenticated_key_is_known_to_the_admission_and_junk_is_not() {
        let cache = Arc::new(ReviewCache::<u32, bool>::with_capacity(2, 3));
        let (reviews, known) = (Arc::new(AtomicUsize::new(0)), Mutex::new(Vec::new()));
        look_up(&cache, 1, true, &reviews, &known).await;
        look_up(&cache, 2, false, &reviews, &known).await;
        tokio::time::advance(Duration::from_secs(61)).await;
        // Even when a review fails, the key stays known.
        let failed = cache
            .get_or_review_admitted(1, minute, authenticated, |k| k, || async { Err("API server down".to_string()) })
            .await;
        assert_eq!(failed.unwrap().unwrap_err().as_ref(), "API server down");
        look_up(&cache, 1, true, &reviews, &known).await;
        look_up(&cache, 2, false, &reviews, &known).await;
        look_up(&cache, 3, false, &reviews, &known).await;
        assert_eq!(*known.lock().unwrap(), vec![false, false, true, false, false]);
        // Not admitted: no review, no entry, None.
        let refused = cache.get_or_review_admitted(4, minute, authenticated, |_| false, || async { Ok(true) }).await;
        assert_eq!(refused, None);
        assert_eq!(cache.len(), 3);
    }
}
