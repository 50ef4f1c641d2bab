//! Derived counters never go backwards: [`Guard`] keeps, per derived series, the last value this
//! process wrote, and writes `max(last, new)`.
//!
//! A derived counter is a difference of counters the exporter read at slightly different moments
//! (`privileged - interrupt - dpc`, `now - boot - idle`): from one scrape to the next it can dip
//! by milliseconds, which Prometheus reads as a counter reset (a rate spike of the whole value).
//! Held at its last value, it stays level instead and catches up on the next scrape.
//!
//! Only the series of the last render are kept, so the state is as big as one scrape's derived
//! series. Under coalescing one render serves every waiting scraper; concurrent renders each
//! take the lock once, and `max` gives the same answer in any order.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

/// The last value written per derived series (its family name and labels, as written).
#[derive(Debug, Default)]
pub struct Guard {
    last: Mutex<HashMap<String, f64>>,
}

static PROCESS: LazyLock<Arc<Guard>> = LazyLock::new(Arc::default);

impl Guard {
    /// The process's guard: every body's renders share it.
    pub fn process() -> Arc<Guard> {
        PROCESS.clone()
    }

    /// Each series' value, never below what was last written for it; remembers these series
    /// (and forgets the others).
    pub fn hold(&self, series: &mut [(String, f64)]) {
        let mut last = self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut next = HashMap::with_capacity(series.len());
        for (key, value) in series.iter_mut() {
            if let Some(before) = last.get(key.as_str()) {
                // f64::max keeps the number when one side is NaN.
                *value = value.max(*before);
            }
            next.insert(std::mem::take(key), *value);
        }
        *last = next;
    }

    /// How many series are remembered (for tests).
    pub fn len(&self) -> usize {
        self.last.lock().map(|last| last.len()).unwrap_or_default()
    }

    /// Whether no series is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hold(guard: &Guard, values: &[(&str, f64)]) -> Vec<f64> {
        let mut series: Vec<(String, f64)> = values.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect();
        guard.hold(&mut series);
        series.into_iter().map(|(_, v)| v).collect()
    }

    #[test]
    fn a_dip_stays_level_and_growth_passes() {
        let guard = Guard::default();
        assert_eq!(hold(&guard, &[("a", 10.0), ("b", 5.0)]), [10.0, 5.0]);
        assert_eq!(hold(&guard, &[("a", 9.998), ("b", 6.0)]), [10.0, 6.0]);
        assert_eq!(hold(&guard, &[("a", 10.5), ("b", 6.0)]), [10.5, 6.0]);
    }

    #[test]
    fn only_the_last_renders_series_are_kept() {
        let guard = Guard::default();
        hold(&guard, &[("a", 10.0), ("b", 5.0)]);
        hold(&guard, &[("b", 6.0)]);
        assert_eq!(guard.len(), 1);
        // "a" was forgotten: it starts again from what the exporter gives.
        assert_eq!(hold(&guard, &[("a", 3.0)]), [3.0]);
    }

    #[test]
    fn concurrent_renders_in_either_order_agree() {
        for order in [[1.0, 2.0], [2.0, 1.0]] {
            let guard = Guard::default();
            hold(&guard, &[("a", 1.5)]);
            let first = hold(&guard, &[("a", order[0])]);
            let second = hold(&guard, &[("a", order[1])]);
            assert_eq!(first[0].max(second[0]), 2.0);
            assert!(second[0] >= first[0]);
        }
    }
}
