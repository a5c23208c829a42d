//! How a plugin stage spends its calls on one batch: which records go into each call, how the
//! records that make the plugin fail are isolated, and when the stage stops calling a plugin
//! that keeps failing. Pure: the calls themselves, the clock and what is done with the
//! outcomes are behind [`Calls`], so all of it is tested with scripted fakes.
//!
//! - A batch is cut into call ranges of at most `batch_records_max` records and
//!   `batch_bytes_max` payload bytes ([`ranges`]; a larger record goes alone).
//! - A range whose call traps, times out or hits the memory cap is re-run in halves, left first,
//!   until the failing records are found, spending at most `isolate_failed_calls_max` failed
//!   calls on the range; past that, what is still unresolved fails whole (the reason says it
//!   was not isolated). A contract violation or an instance that could not be made fails its
//!   range whole: splitting would not tell anything.
//! - Every failed call counts towards the stage's [`Breaker`]; a range with at least one
//!   successful call and no more failures than the isolation budget is healthy and resets the
//!   count. While the breaker is open no call is made: ranges fail whole at once, with a reason
//!   saying the stage is tripped. When the cool-down is over, the first call is a probe of at
//!   most [`PROBE_RECORDS`] records.
//!
//! Bounds, per call range of `n` records (`F` = `isolate_failed_calls_max`): at most `F` failed
//! calls and `F + 1` successful ones, so at most `2F + 1` calls, each within `timeout_ms` (plus
//! an instance's start-up after a failure).

use std::ops::Range;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::core::breaker::{Admit, Breaker, Tripped};
use crate::core::record::Span;

/// Records in the probe call made when a tripped stage's cool-down is over.
pub const PROBE_RECORDS: usize = 16;

/// What kind of failure a call had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The plugin trapped.
    Trap,
    /// The call ran past `timeout_ms`.
    Timeout,
    /// The plugin needed more than `memory_max_bytes`.
    Memory,
    /// The answer broke the contract (or was too large).
    Violation,
    /// No instance could be made to call.
    Restart,
}

impl FailureKind {
    /// Whether re-running fewer records can find the ones to blame.
    fn isolatable(self) -> bool {
        matches!(
            self,
            FailureKind::Trap | FailureKind::Timeout | FailureKind::Memory
        )
    }
}

/// A failed call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What happened.
    pub kind: FailureKind,
    /// In words, for the records' reason (already safe to print).
    pub message: String,
}

/// The stage side of the driver: makes calls and takes their outcomes.
pub trait Calls {
    /// A successful call's answer.
    type Answer;
    /// The current time.
    fn now(&self) -> Instant;
    /// Calls the plugin on records `range` of the batch.
    fn call(&mut self, range: Range<usize>) -> Result<Self::Answer, Failure>;
    /// The answer for `range` is to be applied.
    fn answered(&mut self, range: Range<usize>, answer: Self::Answer);
    /// The records `range` failed and follow `on_error`, for `reason`.
    fn failed(&mut self, range: Range<usize>, reason: String);
    /// The breaker opened (to be logged).
    fn tripped(&mut self, failures: u32, cooldown: Duration, last: &Failure);
    /// A probe succeeded and the breaker closed (to be logged).
    fn resumed(&mut self);
}

/// Splits a batch's records into call ranges of at most `records_max` records and
/// `bytes_max` payload bytes (a record larger than `bytes_max` goes alone).
pub fn ranges(spans: &[Span], records_max: usize, bytes_max: u64) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0u64;
    for (i, s) in spans.iter().enumerate() {
        let len = s.len() as u64;
        if i > start && (i - start >= records_max || bytes + len > bytes_max) {
            out.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += len;
    }
    if start < spans.len() {
        out.push(start..spans.len());
    }
    out
}

/// Runs the calls for `ranges` (in order; each range's records are decided before the next
/// range's), isolating failing records within `isolate_failed_calls_max` failed calls per
/// range, under `breaker`.
pub fn run<C: Calls>(
    ranges: impl IntoIterator<Item = Range<usize>>,
    calls: &mut C,
    breaker: &Mutex<Breaker>,
    isolate_failed_calls_max: u32,
) {
    let lock = || breaker.lock().unwrap_or_else(PoisonError::into_inner);
    for top in ranges {
        let mut pending = vec![top];
        let mut failed = 0u32;
        let mut succeeded = false;
        while let Some(mut range) = pending.pop() {
            if range.is_empty() {
                continue;
            }
            let now = calls.now();
            let admit = lock().admit(now);
            let probing = match admit {
                Admit::Call => false,
                Admit::Probe => {
                    if range.len() > PROBE_RECORDS {
                        pending.push(range.start + PROBE_RECORDS..range.end);
                        range = range.start..range.start + PROBE_RECORDS;
                    }
                    true
                }
                Admit::Skip { until } => {
                    let when = match until {
                        Some(u) => format!(
                            "calls resume in {:.1} s",
                            u.saturating_duration_since(now).as_secs_f64()
                        ),
                        None => "another worker is probing the plugin".to_owned(),
                    };
                    calls.failed(
                        range,
                        format!("the stage is tripped (its plugin kept failing); {when}"),
                    );
                    continue;
                }
            };
            match calls.call(range.clone()) {
                Ok(answer) => {
                    succeeded = true;
                    if probing && lock().healthy() {
                        calls.resumed();
                    }
                    calls.answered(range, answer);
                }
                Err(failure) => {
                    failed += 1;
                    let tripped = lock().failed(calls.now());
                    if let Tripped::Opened { failures, cooldown } = tripped {
                        calls.tripped(failures, cooldown, &failure);
                    }
                    let splittable = failure.kind.isolatable() && range.len() > 1;
                    if splittable && failed < isolate_failed_calls_max && tripped == Tripped::No {
                        let mid = range.start + range.len() / 2;
                        pending.push(mid..range.end);
                        pending.push(range.start..mid);
                    } else {
                        let reason = if !splittable {
                            failure.message
                        } else if tripped != Tripped::No {
                            format!(
                                "{} (one of {} records; not isolated: the stage tripped)",
                                failure.message,
                                range.len()
                            )
                        } else {
                            format!(
                                "{} (one of {} records; not isolated: the range took \
                                 {failed} failed calls, isolate_failed_calls_max = \
                                 {isolate_failed_calls_max})",
                                failure.message,
                                range.len()
                            )
                        };
                        calls.failed(range, reason);
                    }
                }
            }
        }
        if succeeded && failed <= isolate_failed_calls_max && lock().healthy() {
            calls.resumed();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    /// A scripted plugin: records in `poison` make any call containing them fail with `kind`;
    /// `fail_all` makes every call fail; `multi_fail` makes every call of more than one record
    /// fail. Each call advances a virtual clock by `call_ms`.
    struct Fake {
        now: Instant,
        call_ms: u64,
        poison: BTreeSet<usize>,
        kind: FailureKind,
        fail_all: bool,
        multi_fail: bool,
        calls: Vec<Range<usize>>,
        failed_calls: usize,
        answered: Vec<Range<usize>>,
        failed: Vec<(Range<usize>, String)>,
        trips: Vec<(u32, Duration)>,
        resumed: usize,
    }

    impl Fake {
        fn new() -> Fake {
            Fake {
                now: Instant::now(),
                call_ms: 1,
                poison: BTreeSet::new(),
                kind: FailureKind::Trap,
                fail_all: false,
                multi_fail: false,
                calls: vec![],
                failed_calls: 0,
                answered: vec![],
                failed: vec![],
                trips: vec![],
                resumed: 0,
            }
        }

        /// Every record's fate: answered, or failed with the reason.
        fn fates(&self, n: usize) -> Vec<Option<Result<(), String>>> {
            let mut f = vec![None; n];
            for r in &self.answered {
                for i in r.clone() {
                    assert!(f[i].is_none(), "record {i} decided twice");
                    f[i] = Some(Ok(()));
                }
            }
            for (r, why) in &self.failed {
                for i in r.clone() {
                    assert!(f[i].is_none(), "record {i} decided twice");
                    f[i] = Some(Err(why.clone()));
                }
            }
            f
        }
    }

    impl Calls for Fake {
        type Answer = ();
        fn now(&self) -> Instant {
            self.now
        }
        fn call(&mut self, range: Range<usize>) -> Result<(), Failure> {
            self.now += Duration::from_millis(self.call_ms);
            self.calls.push(range.clone());
            let fails = self.fail_all
                || (self.multi_fail && range.len() > 1)
                || range.clone().any(|i| self.poison.contains(&i));
            if fails {
                self.failed_calls += 1;
                Err(Failure {
                    kind: self.kind,
                    message: "boom".into(),
                })
            } else {
                Ok(())
            }
        }
        fn answered(&mut self, range: Range<usize>, _: ()) {
            self.answered.push(range);
        }
        fn failed(&mut self, range: Range<usize>, reason: String) {
            self.failed.push((range, reason));
        }
        fn tripped(&mut self, failures: u32, cooldown: Duration, _: &Failure) {
            self.trips.push((failures, cooldown));
        }
        fn resumed(&mut self) {
            self.resumed += 1;
        }
    }

    fn breaker() -> Mutex<Breaker> {
        Mutex::new(Breaker::new(32, Duration::from_secs(5)))
    }

    fn spans(lens: &[u32]) -> Vec<Span> {
        let mut at = 0;
        lens.iter()
            .map(|&l| {
                let s = Span {
                    start: at,
                    end: at + l,
                };
                at += l + 1;
                s
            })
            .collect()
    }

    #[test]
    fn ranges_respect_records_and_bytes() {
        let s = spans(&[10, 10, 10, 10, 100, 10]);
        assert_eq!(ranges(&s, 3, 1000), vec![0..3, 3..6]);
        assert_eq!(ranges(&s, 10, 25), vec![0..2, 2..4, 4..5, 5..6]);
        assert_eq!(ranges(&[], 3, 10), Vec::<Range<usize>>::new());
    }

    #[test]
    fn one_poison_record_is_isolated_without_tripping() {
        for p in [0, 1, 511, 1023] {
            let mut f = Fake::new();
            f.poison.insert(p);
            let b = breaker();
            run(std::iter::once(0..1024), &mut f, &b, 32);
            let fates = f.fates(1024);
            for (i, fate) in fates.iter().enumerate() {
                assert_eq!(fate.as_ref().unwrap().is_ok(), i != p, "record {i}");
            }
            assert_eq!(f.failed[0].1, "boom");
            assert!(f.failed_calls <= 11, "{}", f.failed_calls);
            assert!(f.trips.is_empty());
            assert!(!b.lock().unwrap().is_open());
        }
    }

    #[test]
    fn a_violation_fails_its_whole_range_without_splitting() {
        let mut f = Fake::new();
        f.poison.insert(3);
        f.kind = FailureKind::Violation;
        run([0..8, 8..16], &mut f, &breaker(), 32);
        assert_eq!(f.calls, vec![0..8, 8..16]);
        assert_eq!(f.failed, vec![(0..8, "boom".to_owned())]);
        assert_eq!(f.answered, vec![8..16]);
    }

    #[test]
    fn a_plugin_that_always_fails_trips_the_breaker_and_is_not_called_during_the_cooldown() {
        let mut f = Fake::new();
        f.fail_all = true;
        f.kind = FailureKind::Timeout;
        f.call_ms = 100;
        let b = breaker();
        let ranges: Vec<_> = (0..100).map(|i| i * 1024..(i + 1) * 1024).collect();
        run(ranges, &mut f, &b, 32);
        // Tripped after 32 failed calls; nothing called after that (the fake's clock moves
        // only when called, so the cool-down never ends).
        assert_eq!(f.failed_calls, 32);
        assert_eq!(f.trips, vec![(32, Duration::from_secs(5))]);
        let fates = f.fates(100 * 1024);
        assert!(fates.iter().all(|x| matches!(x, Some(Err(_)))));
        assert!(
            f.failed
                .last()
                .unwrap()
                .1
                .starts_with("the stage is tripped")
        );
    }

    #[test]
    fn a_plugin_failing_every_call_of_many_records_costs_a_bounded_number_of_calls() {
        // The review's case: bisection down to single records (2n - 1 calls for n records).
        let mut f = Fake::new();
        f.multi_fail = true;
        let b = breaker();
        run(std::iter::once(0..1024), &mut f, &b, 32);
        assert!(f.calls.len() <= 2 * 32 + 1, "{} calls", f.calls.len());
        assert_eq!(f.failed_calls, 32);
        let fates = f.fates(1024);
        assert!(fates.iter().all(Option::is_some));
        assert!(
            f.failed
                .iter()
                .any(|(_, why)| why.contains("not isolated: the stage tripped"))
        );
    }

    #[test]
    fn after_the_cooldown_a_small_probe_is_made_and_success_resumes() {
        let mut f = Fake::new();
        f.fail_all = true;
        let b = Mutex::new(Breaker::new(2, Duration::from_secs(5)));
        run(std::iter::once(0..1), &mut f, &b, 32);
        run(std::iter::once(1..2), &mut f, &b, 32);
        assert_eq!(f.trips.len(), 1);
        f.fail_all = false;
        f.now += Duration::from_secs(5);
        run(std::iter::once(2..100), &mut f, &b, 32);
        assert_eq!(f.calls[2], 2..2 + PROBE_RECORDS);
        assert_eq!(f.calls[3], 2 + PROBE_RECORDS..100);
        assert_eq!(f.resumed, 1);
        assert!(!b.lock().unwrap().is_open());
    }

    #[test]
    fn a_failed_probe_reopens_for_longer() {
        let mut f = Fake::new();
        f.fail_all = true;
        let b = Mutex::new(Breaker::new(1, Duration::from_secs(5)));
        run(std::iter::once(0..1), &mut f, &b, 32);
        f.now += Duration::from_secs(5);
        run(std::iter::once(1..50), &mut f, &b, 32);
        assert_eq!(f.calls, vec![0..1, 1..1 + PROBE_RECORDS]);
        assert_eq!(
            f.trips,
            vec![(1, Duration::from_secs(5)), (1, Duration::from_secs(10))]
        );
        assert!(f.fates(50).iter().all(|x| matches!(x, Some(Err(_)))));
    }

    proptest! {
        /// Every record is decided exactly once; with few enough poison records, exactly the
        /// poison ones fail; the calls per range stay within 2F + 1.
        #[test]
        fn every_record_is_decided_once(
            n in 1usize..300,
            poison in proptest::collection::btree_set(0usize..300, 0..6),
            size in 1usize..64,
            f_max in 11u32..40,
        ) {
            let mut f = Fake::new();
            f.poison = poison.iter().copied().filter(|&p| p < n).collect();
            let b = Mutex::new(Breaker::new(1000, Duration::from_secs(5)));
            let rs: Vec<_> = (0..n).step_by(size).map(|s| s..(s + size).min(n)).collect();
            let count = rs.len();
            run(rs, &mut f, &b, f_max);
            let fates = f.fates(n);
            prop_assert!(fates.iter().all(Option::is_some));
            prop_assert!(f.calls.len() <= count * (2 * f_max as usize + 1));
            // Up to 5 poison records in a range of < 64 take at most 5 * 7 failed calls; with
            // a budget at least that, they are isolated exactly.
            if f_max as usize >= 5 * 7 {
                for (i, fate) in fates.iter().enumerate() {
                    prop_assert_eq!(fate.as_ref().unwrap().is_ok(), !f.poison.contains(&i));
                }
            }
        }
    }
}
