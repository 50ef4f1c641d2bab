//! [`Timestamp`]: "when did this last happen", shared between tasks without a lock.
//!
//! Connections record their last read and write, the exporter client its last answer. Each is
//! an optional [`tokio::time::Instant`] at millisecond resolution kept in one atomic, so the hot
//! path costs a relaxed store and tests can drive it with tokio's paused clock. Every "when" in
//! the proxy is a `tokio::time::Instant`; this is the only type that stores one atomically.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// An optional instant, readable and writable from any task.
#[derive(Debug)]
pub struct Timestamp {
    epoch: Instant,
    /// Milliseconds after `epoch`, plus one; 0 means unset.
    stamp: AtomicU64,
}

impl Timestamp {
    /// A timestamp that has not happened yet.
    pub fn unset() -> Timestamp {
        Timestamp { epoch: Instant::now(), stamp: AtomicU64::new(0) }
    }

    /// A timestamp set to now.
    pub fn now() -> Timestamp {
        Timestamp { epoch: Instant::now(), stamp: AtomicU64::new(1) }
    }

    fn stamp_now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    /// Sets it to `at` (an instant before this timestamp was made counts as that moment).
    pub fn set(&self, at: Instant) {
        let stamp = at.saturating_duration_since(self.epoch).as_millis() as u64 + 1;
        self.stamp.store(stamp, Ordering::Relaxed);
    }

    /// Sets it to now.
    pub fn set_now(&self) {
        self.stamp.store(self.stamp_now(), Ordering::Relaxed);
    }

    /// Sets it to now unless it is already set; true when this call set it.
    pub fn set_now_if_unset(&self) -> bool {
        self.stamp.compare_exchange(0, self.stamp_now(), Ordering::Relaxed, Ordering::Relaxed).is_ok()
    }

    /// Moves it forward to now; a concurrent later value wins.
    pub fn advance_to_now(&self) {
        self.stamp.fetch_max(self.stamp_now(), Ordering::Relaxed);
    }

    /// Unsets it.
    pub fn clear(&self) {
        self.stamp.store(0, Ordering::Relaxed);
    }

    /// The instant, if set.
    pub fn get(&self) -> Option<Instant> {
        match self.stamp.load(Ordering::Relaxed) {
            0 => None,
            stamp => Some(self.epoch + Duration::from_millis(stamp - 1)),
        }
    }

    /// How long ago it was, if set.
    pub fn elapsed(&self) -> Option<Duration> {
        self.get().map(|at| Instant::now().saturating_duration_since(at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn records_and_reports_the_instant() {
        let t = Timestamp::unset();
        assert_eq!(t.get(), None);
        tokio::time::advance(Duration::from_secs(3)).await;
        t.set_now();
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(t.elapsed(), Some(Duration::from_secs(2)));
        t.clear();
        assert_eq!(t.elapsed(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn set_if_unset_keeps_the_first_instant() {
        let t = Timestamp::unset();
        assert!(t.set_now_if_unset());
        let first = t.get();
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(!t.set_now_if_unset());
        assert_eq!(t.get(), first);
    }

    #[tokio::test(start_paused = true)]
    async fn holds_a_future_instant() {
        let t = Timestamp::unset();
        let later = Instant::now() + Duration::from_millis(1500);
        t.set(later);
        assert_eq!(t.get(), Some(later));
        t.set(Instant::now() - Duration::from_secs(1));
        assert_eq!(t.get(), Some(Instant::now()), "before the epoch counts as the epoch");
    }
}
