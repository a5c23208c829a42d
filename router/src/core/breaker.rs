//! The circuit breaker of a plugin stage: after too many failed calls with no sign of health it
//! stops the stage from calling its plugin for a cool-down, then lets one small probe call
//! through; a probe that succeeds closes it, one that fails opens it again for twice as long
//! (up to [`COOLDOWN_MAX`]).
//!
//! "Failed" is whatever the stage says (a trap, a timeout, the memory cap, a contract
//! violation, an instance that could not be made). What resets the count is the stage's
//! [`Breaker::healthy`]: a stage isolating a few poison records fails several calls in a row by
//! design, and only says it is healthy once a range of records was processed with at least
//! one successful call. Pure: time comes in as an argument.

use std::time::{Duration, Instant};

/// The longest cool-down, however many probes failed.
pub const COOLDOWN_MAX: Duration = Duration::from_secs(300);

/// Whether the stage may call its plugin now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Call as usual.
    Call,
    /// The cool-down is over: make one small probe call and report how it went.
    Probe,
    /// Do not call: the breaker is open (until `until`), or another worker's probe is running.
    Skip {
        /// When calls may resume (`None` while a probe is running).
        until: Option<Instant>,
    },
}

/// What a failure did to the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tripped {
    /// Not tripped (yet).
    No,
    /// It just opened for `cooldown` after `failures` failed calls.
    Opened {
        /// Failed calls counted since the last healthy range (or the failed probe: 1).
        failures: u32,
        /// How long calls stay off.
        cooldown: Duration,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed,
    Open { until: Instant },
    Probing,
}

/// A plugin stage's breaker (shared by its workers behind a lock).
#[derive(Debug, Clone)]
pub struct Breaker {
    threshold: u32,
    base: Duration,
    cooldown: Duration,
    failures: u32,
    state: State,
    trips: u64,
}

impl Breaker {
    /// A closed breaker that opens after `threshold` failed calls without a healthy range in
    /// between, for `cooldown` the first time.
    pub fn new(threshold: u32, cooldown: Duration) -> Breaker {
        Breaker {
            threshold: threshold.max(1),
            base: cooldown,
            cooldown,
            failures: 0,
            state: State::Closed,
            trips: 0,
        }
    }

    /// May the stage call now? A `Probe` answer moves the breaker to probing: the caller must
    /// report the probe's outcome ([`Breaker::healthy`] or [`Breaker::failed`]).
    pub fn admit(&mut self, now: Instant) -> Admit {
        match self.state {
            State::Closed => Admit::Call,
            State::Open { until } if now < until => Admit::Skip { until: Some(until) },
            State::Open { .. } => {
                self.state = State::Probing;
                Admit::Probe
            }
            State::Probing => Admit::Skip { until: None },
        }
    }

    /// A call failed.
    pub fn failed(&mut self, now: Instant) -> Tripped {
        match self.state {
            State::Probing => {
                self.cooldown = (self.cooldown * 2).min(COOLDOWN_MAX);
                self.open(now, 1)
            }
            State::Closed => {
                self.failures += 1;
                if self.failures >= self.threshold {
                    let failures = self.failures;
                    self.open(now, failures)
                } else {
                    Tripped::No
                }
            }
            // A call that started before another worker tripped the breaker.
            State::Open { .. } => Tripped::No,
        }
    }

    /// The stage processed a range with at least one successful call (or a probe succeeded):
    /// the failure count starts again and a probing breaker closes. True when this closed it.
    pub fn healthy(&mut self) -> bool {
        self.failures = 0;
        match self.state {
            State::Probing => {
                self.state = State::Closed;
                self.cooldown = self.base;
                true
            }
            _ => false,
        }
    }

    fn open(&mut self, now: Instant, failures: u32) -> Tripped {
        self.failures = 0;
        self.trips += 1;
        self.state = State::Open {
            until: now + self.cooldown,
        };
        Tripped::Opened {
            failures,
            cooldown: self.cooldown,
        }
    }

    /// True while calls are off (open or probing).
    pub fn is_open(&self) -> bool {
        !matches!(self.state, State::Closed)
    }

    /// How many times it opened.
    pub fn trips(&self) -> u64 {
        self.trips
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn opens_after_threshold_failures_and_probes_after_the_cooldown() {
        let t0 = Instant::now();
        let mut b = Breaker::new(3, s(10));
        assert_eq!(b.admit(t0), Admit::Call);
        assert_eq!(b.failed(t0), Tripped::No);
        assert_eq!(b.failed(t0), Tripped::No);
        assert_eq!(
            b.failed(t0),
            Tripped::Opened {
                failures: 3,
                cooldown: s(10)
            }
        );
        assert!(b.is_open());
        assert_eq!(
            b.admit(t0 + s(9)),
            Admit::Skip {
                until: Some(t0 + s(10))
            }
        );
        assert_eq!(b.admit(t0 + s(10)), Admit::Probe);
        // Only one probe at a time.
        assert_eq!(b.admit(t0 + s(10)), Admit::Skip { until: None });
        assert!(b.healthy());
        assert!(!b.is_open());
        assert_eq!(b.admit(t0 + s(10)), Admit::Call);
        assert_eq!(b.trips(), 1);
    }

    #[test]
    fn a_failed_probe_doubles_the_cooldown_up_to_the_maximum() {
        let t0 = Instant::now();
        let mut b = Breaker::new(1, s(100));
        let mut now = t0;
        let mut cooldowns = Vec::new();
        assert!(matches!(b.failed(now), Tripped::Opened { .. }));
        for _ in 0..4 {
            now += COOLDOWN_MAX;
            assert_eq!(b.admit(now), Admit::Probe);
            match b.failed(now) {
                Tripped::Opened { cooldown, failures } => {
                    assert_eq!(failures, 1);
                    cooldowns.push(cooldown.as_secs());
                }
                Tripped::No => panic!("a failed probe must reopen"),
            }
        }
        assert_eq!(cooldowns, vec![200, 300, 300, 300]);
        // A successful probe goes back to the first cool-down.
        now += COOLDOWN_MAX;
        assert_eq!(b.admit(now), Admit::Probe);
        assert!(b.healthy());
        assert_eq!(
            b.failed(now),
            Tripped::Opened {
                failures: 1,
                cooldown: s(100)
            }
        );
    }

    #[test]
    fn healthy_ranges_reset_the_count() {
        let t0 = Instant::now();
        let mut b = Breaker::new(3, s(1));
        for _ in 0..10 {
            assert_eq!(b.failed(t0), Tripped::No);
            assert_eq!(b.failed(t0), Tripped::No);
            assert!(!b.healthy());
        }
        assert!(!b.is_open());
    }

    #[test]
    fn failures_reported_while_open_change_nothing() {
        let t0 = Instant::now();
        let mut b = Breaker::new(1, s(5));
        assert!(matches!(b.failed(t0), Tripped::Opened { .. }));
        assert_eq!(b.failed(t0 + s(1)), Tripped::No);
        assert_eq!(b.admit(t0 + s(5)), Admit::Probe);
        assert_eq!(b.trips(), 1);
    }

    proptest! {
        /// Whatever happens, no call is admitted while open before its time, and at most one
        /// probe is outstanding.
        #[test]
        fn never_admits_during_a_cooldown(
            events in proptest::collection::vec((0u8..3, 0u64..20), 1..200),
        ) {
            let t0 = Instant::now();
            let mut now = t0;
            let mut b = Breaker::new(4, s(7));
            let mut open_until: Option<Instant> = None;
            let mut probing = false;
            for (e, dt) in events {
                now += Duration::from_millis(dt * 100);
                match e {
                    0 => match b.admit(now) {
                        Admit::Call => prop_assert!(open_until.is_none() && !probing),
                        Admit::Probe => {
                            prop_assert!(!probing);
                            prop_assert!(open_until.is_some_and(|u| now >= u));
                            probing = true;
                            open_until = None;
                        }
                        Admit::Skip { .. } => {
                            prop_assert!(probing || open_until.is_some_and(|u| now < u));
                        }
                    },
                    1 => {
                        if let Tripped::Opened { cooldown, .. } = b.failed(now) {
                            prop_assert!(open_until.is_none());
                            prop_assert!(cooldown >= s(7) && cooldown <= COOLDOWN_MAX);
                            open_until = Some(now + cooldown);
                            probing = false;
                        }
                    }
                    _ => {
                        if b.healthy() {
                            prop_assert!(probing);
                            probing = false;
                        }
                    }
                }
            }
        }
    }
}
