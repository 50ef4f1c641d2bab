//! Who gets one of the `PROXY_MAX_INFLIGHT` exporter slots, and when, now that two routes share
//! them: `/metrics` (fast) and `/metrics/slow` (the expensive collectors, `PROXY_SLOW_COLLECT`).
//!
//! windows_exporter runs one collection at a time (a process-wide lock since v0.31), and its
//! collection is over by the time it sends its response headers (promhttp gathers every
//! collector first, then writes). So a collection, as scheduled here, runs from sending the
//! exporter request to its response headers; the body that follows holds a slot but no lock.
//! The rules:
//!
//! - Fast scrapes take slots as before: first come, first served, within their deadline.
//! - At most one slow collection runs at a time, and it starts only when no fast scrape is
//!   waiting for a slot or collecting. A slow scrape that is queued for a slot steps back when a
//!   fast one arrives, so a fast scrape never queues behind a slow one that has not started.
//! - A fast scrape that holds a slot while a slow collection runs waits for it in the proxy
//!   instead of in the exporter's lock: the wait is inside its own deadline (a deadline that
//!   passes there is a 504 and no collection is sent that nobody waits for), it counts in
//!   `windows_exporter_proxy_waiting_scrapes`, and its length is recorded in
//!   `windows_exporter_proxy_slow_wait_seconds`.
//!
//! Without `PROXY_SLOW_COLLECT` there is one route and nothing to share: a scrape takes a slot
//! as it always did, and the schedule keeps no state and takes no lock.
//!
//! Slow scrapes can therefore starve while fast ones keep arriving back to back; each still
//! gets its 503 at its own deadline. With Prometheus's intervals (fast every 15-30 s, slow every
//! 1-2 minutes) the exporter is idle most of the time and both get through.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::deadline::ScrapeBudget;
use crate::scrape::ScrapeError;
use crate::scrape::collectors::Route;
use crate::telemetry::Telemetry;

/// The slots and who is using them.
pub struct Schedule {
    slots: Arc<Semaphore>,
    max_inflight: usize,
    /// `None` without a slow route.
    shared: Option<Arc<Shared>>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    /// Woken whenever [`State`] changes.
    changed: Notify,
}

#[derive(Default)]
struct State {
    /// Fast scrapes waiting for a slot, or holding one up to their exporter's response headers.
    fast_pending: usize,
    /// Whether a slow collection is running (sent, no response headers yet).
    slow_collecting: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A slot, and the scrape's place in the schedule until its exporter's response headers.
pub struct Slot {
    /// The exporter slot, held until the body ends.
    pub permit: OwnedSemaphorePermit,
    /// Held by the exporter request until its response headers (the end of the collection).
    pub ticket: Ticket,
}

/// A fast scrape's or a slow collection's place in the schedule; dropping it gives the place up.
pub struct Ticket {
    /// `None` without a slow route: there is no place to give up.
    shared: Option<Arc<Shared>>,
    route: Route,
}

impl Ticket {
    fn fast(shared: &Arc<Shared>) -> Ticket {
        shared.lock().fast_pending += 1;
        shared.changed.notify_waiters();
        Ticket { shared: Some(shared.clone()), route: Route::Fast }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let Some(shared) = &self.shared else { return };
        {
            let mut state = shared.lock();
            match self.route {
                Route::Fast => state.fast_pending -= 1,
                Route::Slow => state.slow_collecting = false,
            }
        }
        shared.changed.notify_waiters();
    }
}

impl Schedule {
    /// `max_inflight` slots, shared by both routes when there is a slow one.
    pub fn new(max_inflight: usize, slow_route: bool) -> Schedule {
        let shared = slow_route.then(Arc::default);
        Schedule { slots: Arc::new(Semaphore::new(max_inflight)), max_inflight, shared }
    }

    /// `PROXY_MAX_INFLIGHT`.
    pub fn max_inflight(&self) -> usize {
        self.max_inflight
    }

    /// A fast scrape's slot at once, with nothing armed, when one is free and no slow
    /// collection runs; else `None` (then [`Schedule::slot`] waits). The semaphore is fair: a
    /// slot is free only while nobody waits for one.
    pub fn try_fast(&self) -> Option<Slot> {
        if let Some(shared) = &self.shared
            && shared.lock().slow_collecting
        {
            return None;
        }
        let permit = self.slots.clone().try_acquire_owned().ok()?;
        let ticket = match &self.shared {
            Some(shared) => Ticket::fast(shared),
            None => Ticket { shared: None, route: Route::Fast },
        };
        Some(Slot { permit, ticket })
    }

    /// Waits, within `deadline`, for a slot on `route` under the rules above.
    pub async fn slot(
        &self,
        route: Route,
        deadline: Instant,
        budget: &ScrapeBudget,
        telemetry: &Telemetry,
    ) -> Result<Slot, ScrapeError> {
        match route {
            Route::Fast => self.fast(deadline, budget, telemetry).await,
            Route::Slow => self.slow(deadline, budget).await,
        }
    }

    fn no_slot(&self, budget: &ScrapeBudget) -> ScrapeError {
        ScrapeError::NoSlot { max_inflight: self.max_inflight, timeout: budget.timeout }
    }

    async fn fast(&self, deadline: Instant, budget: &ScrapeBudget, telemetry: &Telemetry) -> Result<Slot, ScrapeError> {
        let Some(shared) = &self.shared else {
            return match until(deadline, self.slots.clone().acquire_owned()).await {
                Some(permit) => Ok(Slot {
                    permit: permit.expect("the semaphore is never closed"),
                    ticket: Ticket { shared: None, route: Route::Fast },
                }),
                None => Err(self.no_slot(budget)),
            };
        };
        let ticket = Ticket::fast(shared);
        let permit = match tokio::time::timeout_at(deadline, self.slots.clone().acquire_owned()).await {
            Ok(permit) => permit.expect("the semaphore is never closed"),
            Err(_elapsed) => return Err(self.no_slot(budget)),
        };
        let holding = Instant::now();
        let mut waited = false;
        loop {
            let changed = shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if !shared.lock().slow_collecting {
                break;
            }
            waited = true;
            if until(deadline, changed).await.is_none() {
                telemetry.waited_behind_slow(holding.elapsed());
                return Err(ScrapeError::BehindSlow { waited: holding.elapsed(), timeout: budget.timeout });
            }
        }
        if waited {
            telemetry.waited_behind_slow(holding.elapsed());
        }
        Ok(Slot { permit, ticket })
    }

    /// A slot for one slow collection (a `/metrics/slow` scrape, or learning the enabled set).
    pub async fn slow(&self, deadline: Instant, budget: &ScrapeBudget) -> Result<Slot, ScrapeError> {
        let shared = self.shared.as_ref().expect("a slow collection only with a slow route");
        loop {
            let changed = shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let clear = |state: &State| state.fast_pending == 0 && !state.slow_collecting;
            if !clear(&shared.lock()) {
                until(deadline, changed).await.ok_or_else(|| self.no_slot(budget))?;
                continue;
            }
            tokio::select! {
                biased;
                // A fast scrape arrived (or something else changed): step back and look again.
                () = &mut changed => continue,
                permit = self.slots.clone().acquire_owned() => {
                    let permit = permit.expect("the semaphore is never closed");
                    let mut state = shared.lock();
                    if clear(&state) {
                        state.slow_collecting = true;
                        drop(state);
                        return Ok(Slot { permit, ticket: Ticket { shared: Some(shared.clone()), route: Route::Slow } });
                    }
                }
                () = tokio::time::sleep_until(deadline) => return Err(self.no_slot(budget)),
            }
        }
    }
}

/// `future`'s output, or `None` once `deadline` passes.
async fn until<T>(deadline: Instant, future: impl Future<Output = T>) -> Option<T> {
    tokio::time::timeout_at(deadline, future).await.ok()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn budget() -> ScrapeBudget {
        ScrapeBudget { timeout: Duration::from_secs(10), from_scraper: false }
    }

    #[tokio::test(start_paused = true)]
    async fn a_fast_scrape_goes_before_a_queued_slow_one() {
        let schedule = Arc::new(Schedule::new(1, true));
        let telemetry = Arc::new(Telemetry::new());
        let deadline = Instant::now() + Duration::from_secs(10);
        let first = schedule.slot(Route::Fast, deadline, &budget(), &telemetry).await.unwrap();
        // The slow one queues while the fast one collects.
        let slow = tokio::spawn({
            let schedule = schedule.clone();
            async move { schedule.slow(deadline, &budget()).await.map(|slot| slot.permit) }
        });
        tokio::task::yield_now().await;
        drop(first.ticket);
        // A second fast scrape arrives before the first one's slot is free.
        let fast = tokio::spawn({
            let (schedule, telemetry) = (schedule.clone(), telemetry.clone());
            async move { schedule.slot(Route::Fast, deadline, &budget(), &telemetry).await.map(|slot| slot.permit) }
        });
        tokio::task::yield_now().await;
        drop(first.permit);
        let fast = fast.await.unwrap().expect("the fast scrape gets the slot");
        tokio::task::yield_now().await;
        assert!(!slow.is_finished(), "the slow one waits for the fast one");
        drop(fast);
        assert!(slow.await.unwrap().is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_fast_scrape_waits_for_a_running_slow_collection_within_its_deadline() {
        let schedule = Schedule::new(2, true);
        let telemetry = Telemetry::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        let slow = schedule.slow(deadline, &budget()).await.unwrap();
        let short = Instant::now() + Duration::from_secs(1);
        let error = schedule.slot(Route::Fast, short, &budget(), &telemetry).await.err().unwrap();
        assert!(matches!(error, ScrapeError::BehindSlow { .. }), "{error}");
        drop(slow.ticket);
        assert!(schedule.slot(Route::Fast, deadline, &budget(), &telemetry).await.is_ok());
    }
}
