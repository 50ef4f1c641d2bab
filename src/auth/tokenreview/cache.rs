//! The review cache: remembered outcomes with a time to live, and one review in flight per key.
//!
//! kube-rbac-proxy (through client-go's delegating authenticator and authorizer) remembers
//! TokenReview outcomes for 2 minutes and SubjectAccessReview outcomes for 5 minutes when allowed
//! and 30 seconds when denied; the caller gives each outcome's time to live. Errors are never
//! remembered: the next request asks the API server again.
//!
//! Concurrent requests with the same key share one review: the first starts it on its own task
//! (so a scraper that hangs up does not cancel the others' review), later ones wait for its
//! result. Prometheus HA pairs and a retrying scraper otherwise send identical reviews at once.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

/// At most this many remembered outcomes; past it, expired ones are dropped, and while still
/// full nothing more is remembered (reviews still work, just uncached).
const MAX_ENTRIES: usize = 4096;

/// A review's result as waiters see it: the outcome or the cause of the failure (for the log).
pub type Shared<V> = Result<V, Arc<str>>;

enum Slot<V> {
    Ready { value: V, until: Instant },
    InFlight(watch::Receiver<Option<Shared<V>>>),
}

/// Remembered outcomes of one kind of review.
pub struct ReviewCache<K, V> {
    slots: Mutex<HashMap<K, Slot<V>>>,
}

impl<K, V> Default for ReviewCache<K, V> {
    fn default() -> Self {
        ReviewCache { slots: Mutex::new(HashMap::new()) }
    }
}

impl<K, V> ReviewCache<K, V>
where
    K: Hash + Eq + Clone + Send + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// The remembered outcome for `key`, or the result of the review in flight for it, or the
    /// result of `review`, started now on its own task and remembered for `ttl(&outcome)`.
    pub async fn get_or_review<F, Fut>(self: &Arc<Self>, key: K, ttl: fn(&V) -> Duration, review: F) -> Shared<V>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, String>> + Send + 'static,
    {
        let mut receiver = {
            let mut slots = self.slots.lock().expect("no panics while locked");
            match slots.get(&key) {
                Some(Slot::Ready { value, until }) if *until > Instant::now() => return Ok(value.clone()),
                Some(Slot::InFlight(receiver)) => receiver.clone(),
                _ => {
                    let (sender, receiver) = watch::channel(None);
                    slots.insert(key.clone(), Slot::InFlight(receiver.clone()));
                    let cache = self.clone();
                    let future = review();
                    tokio::spawn(async move {
                        let result = future.await.map_err(Arc::from);
                        cache.finish(key, &result, ttl);
                        let _ = sender.send(Some(result));
                    });
                    receiver
                }
            }
        };
        match receiver.wait_for(Option::is_some).await {
            Ok(result) => result.clone().expect("waited for Some"),
            Err(_) => Err(Arc::from("the review task ended without a result")),
        }
    }

    /// Stores a finished review: the outcome until its TTL, or nothing for an error.
    fn finish(&self, key: K, result: &Shared<V>, ttl: fn(&V) -> Duration) {
        let mut slots = self.slots.lock().expect("no panics while locked");
        slots.remove(&key);
        let Ok(value) = result else { return };
        if slots.len() >= MAX_ENTRIES {
            let now = Instant::now();
            slots.retain(|_, slot| {
                matches!(slot, Slot::InFlight(_)) || matches!(slot, Slot::Ready { until, .. } if *until > now)
            });
        }
        if slots.len() < MAX_ENTRIES {
            slots.insert(key, Slot::Ready { value: value.clone(), until: Instant::now() + ttl(value) });
        }
    }

    /// Outcomes remembered or in flight now.
    pub fn len(&self) -> usize {
        self.slots.lock().expect("no panics while locked").len()
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
}
