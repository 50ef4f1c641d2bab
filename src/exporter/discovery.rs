//! Which of `PROXY_PORT`'s ports the exporter answers on.
//!
//! `PROXY_PORT` is one port or an ordered list (`19100,19182,9182`: AKS's node-image exporter,
//! AKS's extension-managed exporter, windows_exporter's own default). With one port nothing here
//! probes: that port is always the one in use, exactly as before lists existed. With a list the
//! proxy uses the first port on which an exporter answers, and keeps it until a connection to it
//! is refused; then it looks again, from the first port.
//!
//! "An exporter answers" means any HTTP response to `GET /health` (windows_exporter answers it
//! without running a collector). The status does not matter: an exporter with basic auth answers
//! 401 and one that only speaks TLS answers a plain request with Go's 400 "Client sent an HTTP
//! request to an HTTPS server"; either is the operator's exporter, and passing its answer on tells
//! them more than skipping it would. A reply that is not HTTP, a connection closed without a
//! reply, or no reply within the probe limit means something else owns the port: it is skipped,
//! and its reason is kept for the 502 if no port answers.
//!
//! Looking is single-flight: one round at a time, run in its own task so it finishes even when
//! the scrape that started it gives up; every other caller waits for that round, each within its
//! own deadline and never past it. A round that found nothing is remembered for
//! [`FAILURE_MEMORY`], like `/ready`'s failed probe, so a burst of scrapes against a node with no
//! exporter sends one probe per port, not one per scrape.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::watch;
use tokio::time::Instant;

/// A round in which no port answered is not repeated for this long (the same interval as
/// `/ready`'s remembered probe failure).
pub const FAILURE_MEMORY: Duration = Duration::from_secs(1);

/// The ports `PROXY_PORT` names, in the order they are tried: at least one, none twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ports(Arc<[u16]>);

impl Ports {
    /// The list as given, or why it cannot be used.
    pub fn new(ports: Vec<u16>) -> Result<Ports, String> {
        if ports.is_empty() {
            return Err("no port given".to_owned());
        }
        if let Some(twice) = ports.iter().enumerate().find_map(|(i, p)| ports[..i].contains(p).then_some(*p)) {
            return Err(format!("port {twice} is listed twice"));
        }
        Ok(Ports(ports.into()))
    }

    /// The one port, when only one is configured (no discovery then).
    pub fn single(&self) -> Option<u16> {
        match *self.0 {
            [port] => Some(port),
            _ => None,
        }
    }

    /// The first port: the one a single-port configuration uses.
    pub fn first(&self) -> u16 {
        self.0[0]
    }

    /// The ports in order.
    pub fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        self.0.iter().copied()
    }
}

/// `19100,19182,9182`: as `PROXY_PORT` writes them.
impl fmt::Display for Ports {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, port) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{port}")?;
        }
        Ok(())
    }
}

/// One port's failed probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The port probed.
    pub port: u16,
    /// Why it did not count as an exporter, as an operator would say it.
    pub reason: String,
}

/// Why no port can be used for a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscoveryError {
    /// The latest round probed every port and none answered (502).
    #[error("no exporter answered on any of ports {}: {}", ports_of(.0), reasons(.0))]
    NoneAnswered(Arc<[Attempt]>),
    /// The caller's deadline passed while a round was still probing (504).
    #[error("still probing ports {0} for the exporter when the deadline passed")]
    StillProbing(Ports),
}

fn ports_of(attempts: &[Attempt]) -> String {
    attempts.iter().map(|a| a.port.to_string()).collect::<Vec<_>>().join(",")
}

fn reasons(attempts: &[Attempt]) -> String {
    attempts.iter().map(|a| format!("{} {}", a.port, a.reason)).collect::<Vec<_>>().join("; ")
}

/// Probes one port: `Ok` when an exporter answered `GET /health` with any HTTP response, else
/// the reason. [`Discovery`] bounds it in time itself.
pub type Probe = Arc<dyn Fn(u16) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// What is known about the ports.
#[derive(Debug, Clone)]
enum State {
    /// Nothing yet, or the port in use refused a connection: the next caller starts a round.
    Unknown { last: Option<u16> },
    /// A round is probing the ports.
    Probing { last: Option<u16> },
    /// The exporter answers on this port.
    Selected(u16),
    /// The round that ended `at` found no exporter on any port.
    NoneAnswered { at: Instant, attempts: Arc<[Attempt]>, last: Option<u16> },
}

/// The port in use and the search for it. Cheap to clone; clones share the state.
#[derive(Clone)]
pub struct Discovery {
    inner: Arc<Inner>,
}

struct Inner {
    ports: Ports,
    probe: Probe,
    probe_limit: Duration,
    /// `http://host`, for log lines.
    host: Arc<str>,
    gauge: Gauge,
    state: watch::Sender<State>,
    /// Whether the latest round found nothing (to warn once, not every round).
    failing: AtomicBool,
}

impl Discovery {
    /// Discovery over `ports` on `host` (`http://10.240.0.4`, for logs), each probe given at most
    /// `probe_limit`; `gauge` shows the port in use (0 while none answers). With a single port
    /// that port is in use from the start and `probe` is never called.
    pub fn new(ports: Ports, host: Arc<str>, probe: Probe, probe_limit: Duration, gauge: Gauge) -> Discovery {
        let state = match ports.single() {
            Some(port) => {
                gauge.set(i64::from(port));
                State::Selected(port)
            }
            None => State::Unknown { last: None },
        };
        let state = watch::channel(state).0;
        Discovery {
            inner: Arc::new(Inner { ports, probe, probe_limit, host, gauge, state, failing: AtomicBool::new(false) }),
        }
    }

    /// The configured ports.
    pub fn ports(&self) -> &Ports {
        &self.inner.ports
    }

    /// Whether there is more than one port to choose from.
    pub fn is_list(&self) -> bool {
        self.inner.ports.single().is_none()
    }

    /// The port in use now, if an exporter is known to answer on one.
    pub fn current(&self) -> Option<u16> {
        match *self.inner.state.borrow() {
            State::Selected(port) => Some(port),
            _ => None,
        }
    }

    /// Starts the first round at once (with a list), so the log says which port answers before
    /// the first scrape arrives.
    pub fn start(&self) {
        self.begin_round();
    }

    /// The port to send a request to. Waits for a round in progress (starting one if nothing is
    /// known) but never past `deadline`.
    pub async fn port(&self, deadline: Instant) -> Result<u16, DiscoveryError> {
        if let Some(port) = self.inner.ports.single() {
            return Ok(port);
        }
        let mut state = self.inner.state.subscribe();
        loop {
            let now = state.borrow_and_update().clone();
            match now {
                State::Selected(port) => return Ok(port),
                State::NoneAnswered { at, attempts, .. } if at.elapsed() < FAILURE_MEMORY => {
                    return Err(DiscoveryError::NoneAnswered(attempts));
                }
                State::Probing { .. } => match tokio::time::timeout_at(deadline, state.changed()).await {
                    Ok(changed) => changed.expect("the state's sender lives as long as any Discovery"),
                    Err(_elapsed) => return Err(DiscoveryError::StillProbing(self.inner.ports.clone())),
                },
                State::Unknown { .. } | State::NoneAnswered { .. } => self.begin_round(),
            }
        }
    }

    /// A connection to `port` was refused: with a list, stop using it so the next request looks
    /// again. With one port, or if another port is already in use, nothing changes.
    pub fn refused(&self, port: u16) {
        if !self.is_list() {
            return;
        }
        let lost = self.inner.state.send_if_modified(|state| match state {
            State::Selected(current) if *current == port => {
                *state = State::Unknown { last: Some(port) };
                true
            }
            _ => false,
        });
        if lost {
            self.inner.gauge.set(0);
            tracing::warn!(port, ports = %self.inner.ports, "exporter port refused a connection; looking for the exporter again");
        }
    }

    /// Moves to `Probing` and spawns the round, unless a round is running or the last one failed
    /// too recently: the state change is the single-flight guard.
    fn begin_round(&self) {
        let mut last_port = None;
        let begun = self.inner.state.send_if_modified(|state| {
            let last = match state {
                State::Unknown { last } => *last,
                State::NoneAnswered { at, last, .. } if at.elapsed() >= FAILURE_MEMORY => *last,
                _ => return false,
            };
            last_port = last;
            *state = State::Probing { last };
            true
        });
        if begun {
            tracing::debug!(ports = %self.inner.ports, last = ?last_port, "probing exporter ports");
            tokio::spawn(self.inner.clone().round());
        }
    }
}

impl Inner {
    /// Probes the ports in order and records the first that answers, or every reason.
    async fn round(self: Arc<Self>) {
        let mut attempts = Vec::new();
        for port in self.ports.iter() {
            let reason = match tokio::time::timeout(self.probe_limit, (self.probe)(port)).await {
                Ok(Ok(())) => return self.selected(port),
                Ok(Err(reason)) => reason,
                Err(_elapsed) => format!("no answer to GET /health within {:?}", self.probe_limit),
            };
            tracing::debug!(port, %reason, "exporter port did not answer");
            attempts.push(Attempt { port, reason });
        }
        self.none_answered(attempts.into());
    }

    fn selected(&self, port: u16) {
        let mut previous = None;
        self.state.send_modify(|state| {
            previous = match state {
                State::Probing { last } => *last,
                _ => None,
            };
            *state = State::Selected(port);
        });
        self.gauge.set(i64::from(port));
        self.failing.store(false, Ordering::Relaxed);
        let upstream = format!("{}:{port}", self.host);
        match previous {
            Some(old) if old != port => {
                tracing::info!(old, new = port, %upstream, ports = %self.ports, "exporter port changed")
            }
            _ => tracing::info!(port, %upstream, ports = %self.ports, "exporter port selected"),
        }
    }

    fn none_answered(&self, attempts: Arc<[Attempt]>) {
        self.state.send_modify(|state| {
            let last = match state {
                State::Probing { last } => *last,
                _ => None,
            };
            *state = State::NoneAnswered { at: Instant::now(), attempts: attempts.clone(), last };
        });
        self.gauge.set(0);
        let error = DiscoveryError::NoneAnswered(attempts);
        // One warning when the exporter goes missing; the rounds that follow while nothing
        // changes would only repeat it (and every failed scrape logs its own 502 anyway).
        if self.failing.swap(true, Ordering::Relaxed) {
            tracing::debug!(host = %self.host, %error, "no exporter port answered");
        } else {
            tracing::warn!(host = %self.host, %error, "no exporter port answered");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Mutex;

    /// What each port does when probed.
    #[derive(Clone, Copy)]
    enum Port {
        Answers,
        Refuses,
        Hangs,
    }

    /// A probe whose ports behave as the test says, recording every probe in order.
    struct FakePorts {
        behaviour: Mutex<HashMap<u16, Port>>,
        probed: Mutex<Vec<u16>>,
    }

    impl FakePorts {
        fn new(ports: &[(u16, Port)]) -> Arc<FakePorts> {
            Arc::new(FakePorts {
                behaviour: Mutex::new(ports.iter().copied().collect()),
                probed: Mutex::new(Vec::new()),
            })
        }

        fn set(&self, port: u16, behaviour: Port) {
            self.behaviour.lock().unwrap().insert(port, behaviour);
        }

        fn probed(&self) -> Vec<u16> {
            std::mem::take(&mut *self.probed.lock().unwrap())
        }

        fn probe(self: &Arc<Self>) -> Probe {
            let ports = self.clone();
            Arc::new(move |port| {
                ports.probed.lock().unwrap().push(port);
                let behaviour = ports.behaviour.lock().unwrap().get(&port).copied().unwrap_or(Port::Refuses);
                Box::pin(async move {
                    match behaviour {
                        Port::Answers => Ok(()),
                        Port::Refuses => Err("connection refused".to_owned()),
                        Port::Hangs => std::future::pending().await,
                    }
                })
            })
        }
    }

    const LIMIT: Duration = Duration::from_secs(2);

    fn discovery(ports: &[u16], fake: &Arc<FakePorts>) -> (Discovery, Gauge) {
        let gauge = Gauge::default();
        let ports = Ports::new(ports.to_vec()).unwrap();
        (Discovery::new(ports, Arc::from("http://10.0.0.4"), fake.probe(), LIMIT, gauge.clone()), gauge)
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(10)
    }

    #[test]
    fn ports_keep_their_order_and_refuse_repeats() {
        let ports = Ports::new(vec![19100, 19182, 9182]).unwrap();
        assert_eq!(ports.to_string(), "19100,19182,9182");
        assert_eq!(ports.single(), None);
        assert_eq!(Ports::new(vec![9182]).unwrap().single(), Some(9182));
        assert_eq!(Ports::new(vec![9182, 1, 9182]).unwrap_err(), "port 9182 is listed twice");
        assert_eq!(Ports::new(vec![]).unwrap_err(), "no port given");
    }

    #[tokio::test(start_paused = true)]
    async fn a_single_port_is_in_use_from_the_start_and_never_probed() {
        let fake = FakePorts::new(&[]);
        let (discovery, gauge) = discovery(&[9182], &fake);
        discovery.start();
        assert_eq!(discovery.current(), Some(9182));
        assert_eq!(gauge.get(), 9182);
        discovery.refused(9182);
        assert_eq!(discovery.port(Instant::now()).await, Ok(9182));
        assert_eq!(fake.probed(), Vec::<u16>::new());
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_port_that_answers_is_used() {
        let fake = FakePorts::new(&[(19182, Port::Answers), (9182, Port::Answers)]);
        let (discovery, gauge) = discovery(&[19100, 19182, 9182], &fake);
        assert_eq!(gauge.get(), 0);
        assert_eq!(discovery.port(soon()).await, Ok(19182));
        assert_eq!(fake.probed(), vec![19100, 19182]);
        assert_eq!(discovery.current(), Some(19182));
        assert_eq!(gauge.get(), 19182);
        // Known now: no more probes.
        assert_eq!(discovery.port(soon()).await, Ok(19182));
        assert_eq!(fake.probed(), Vec::<u16>::new());
    }

    #[tokio::test(start_paused = true)]
    async fn many_callers_during_a_round_share_it() {
        let fake = FakePorts::new(&[(19100, Port::Hangs), (9182, Port::Answers)]);
        let (discovery, _) = discovery(&[19100, 19182, 9182], &fake);
        let callers: Vec<_> = (0..50)
            .map(|_| {
                let discovery = discovery.clone();
                tokio::spawn(async move { discovery.port(soon()).await })
            })
            .collect();
        for caller in callers {
            assert_eq!(caller.await.unwrap(), Ok(9182));
        }
        assert_eq!(fake.probed(), vec![19100, 19182, 9182], "one probe per port for 50 callers");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_round_names_every_port_and_is_remembered() {
        let fake = FakePorts::new(&[(9182, Port::Hangs)]);
        let (discovery, gauge) = discovery(&[19100, 19182, 9182], &fake);
        let error = discovery.port(soon()).await.unwrap_err();
        assert_eq!(
            error.to_string(),
            "no exporter answered on any of ports 19100,19182,9182: 19100 connection refused; \
             19182 connection refused; 9182 no answer to GET /health within 2s"
        );
        assert_eq!(fake.probed(), vec![19100, 19182, 9182]);
        assert_eq!(gauge.get(), 0);

        // Within FAILURE_MEMORY the failure is the answer; no probe.
        let again = discovery.port(soon()).await.unwrap_err();
        assert_eq!(again, error);
        assert_eq!(fake.probed(), Vec::<u16>::new());

        tokio::time::advance(FAILURE_MEMORY).await;
        fake.set(19182, Port::Answers);
        assert_eq!(discovery.port(soon()).await, Ok(19182));
        assert_eq!(fake.probed(), vec![19100, 19182]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_caller_waits_for_a_round_only_until_its_deadline() {
        let fake = FakePorts::new(&[(19100, Port::Hangs), (9182, Port::Answers)]);
        let (discovery, _) = discovery(&[19100, 9182], &fake);
        let started = Instant::now();
        let deadline = started + Duration::from_millis(300);
        assert_eq!(
            discovery.port(deadline).await,
            Err(DiscoveryError::StillProbing(Ports::new(vec![19100, 9182]).unwrap()))
        );
        assert_eq!(Instant::now(), deadline, "gave up exactly at its deadline");
        // The round carried on without the caller and found the exporter.
        assert_eq!(discovery.port(soon()).await, Ok(9182));
        assert_eq!(Instant::now(), started + LIMIT);
        assert_eq!(fake.probed(), vec![19100, 9182]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_port_is_dropped_and_the_next_caller_looks_again() {
        let fake = FakePorts::new(&[(19182, Port::Answers)]);
        let (discovery, gauge) = discovery(&[19100, 19182, 9182], &fake);
        discovery.start();
        assert_eq!(discovery.port(soon()).await, Ok(19182));
        fake.probed();

        // The exporter moved: 19182 refuses, 19100 answers.
        fake.set(19182, Port::Refuses);
        fake.set(19100, Port::Answers);
        discovery.refused(9182); // not the port in use: ignored
        assert_eq!(discovery.current(), Some(19182));
        discovery.refused(19182);
        assert_eq!(discovery.current(), None);
        assert_eq!(gauge.get(), 0);
        assert_eq!(discovery.port(soon()).await, Ok(19100));
        assert_eq!(fake.probed(), vec![19100]);
        assert_eq!(gauge.get(), 19100);
    }
}
