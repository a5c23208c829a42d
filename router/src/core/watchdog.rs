//! The watchdog's decision: is the pipeline healthy enough to tell the service manager it is
//! alive, or is it wedged?
//!
//! The supervisor looks at the pipeline every half watchdog interval and hands [`Watchdog::observe`]
//! two numbers read from the counters ([`Progress::of`]):
//! - `moved`: a running count of records moved by any component (read, passed on, written,
//!   dropped, dead-lettered) plus calls made to a service (AWS sinks: every `PutRecords` /
//!   `PutRecordBatch`, answered or failed). It grows whenever anything happens to a record, and
//!   while a sink retries against a destination that is down.
//! - `backlog`: records read but not yet written, dead-lettered or dropped
//!   ([`Totals::in_flight`](crate::core::accounting::Totals::in_flight)).
//!
//! **Wedged**, precisely: at an observation at `now`, the backlog is above zero, and it has been
//! above zero at every observation since the last one at which `moved` changed (or the backlog
//! was zero), and that last one is more than `stall` ago. In words: records wait, and for longer
//! than `stall` nothing moved and no call was made. An idle pipeline (nothing in flight) is
//! healthy however long it idles; a pipeline whose sink is down but retrying is healthy (it makes
//! calls); one whose sink thread hangs in a system call, or whose stage or dispatcher deadlocked,
//! is wedged once `stall` has passed. Answers from a network source refusing clients (HTTP 503)
//! are not progress: they happen just as well when the pipeline behind is stuck.
//!
//! Time is an argument; nothing here reads a clock.

use std::time::{Duration, Instant};

use crate::core::accounting::Snapshot;

/// What the decision reads from the pipeline at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    /// Records moved by any component plus service calls made, summed (wrapping).
    pub moved: u64,
    /// Records read and not yet written, dead-lettered or dropped.
    pub backlog: u64,
}

impl Progress {
    /// The progress numbers of a counter snapshot.
    pub fn of(snapshot: &Snapshot) -> Progress {
        let moved = snapshot.components.iter().fold(0u64, |sum, c| {
            let v = &c.counters;
            let calls = c.request_latency_us.map_or(0, |q| q.count);
            sum.wrapping_add(v.records_in)
                .wrapping_add(v.records_out)
                .wrapping_add(v.dropped)
                .wrapping_add(v.dead_lettered)
                .wrapping_add(calls)
        });
        let backlog = u64::try_from(snapshot.totals.in_flight().max(0)).unwrap_or(u64::MAX);
        Progress { moved, backlog }
    }
}

/// What to do about the watchdog now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing waits: tell the service manager all is well.
    Idle,
    /// Records are moving (or moved within the stall time): all is well.
    Moving,
    /// Records have waited without anything moving for `for_` (more than the stall time): do
    /// not tell the service manager anything; it will restart the router.
    Wedged {
        /// How long nothing has moved.
        for_: Duration,
        /// Records waiting.
        backlog: u64,
    },
}

impl Verdict {
    /// True when the watchdog should be petted.
    pub fn healthy(self) -> bool {
        !matches!(self, Verdict::Wedged { .. })
    }
}

/// The watchdog's memory between observations.
#[derive(Debug, Clone)]
pub struct Watchdog {
    stall: Duration,
    /// `moved` at the last observation.
    last_moved: Option<u64>,
    /// The last observation at which something moved or nothing waited.
    since: Option<Instant>,
}

impl Watchdog {
    /// A watchdog that calls the pipeline wedged after `stall` without progress while records
    /// wait.
    pub fn new(stall: Duration) -> Watchdog {
        Watchdog {
            stall,
            last_moved: None,
            since: None,
        }
    }

    /// The stall time.
    pub fn stall(&self) -> Duration {
        self.stall
    }

    /// Takes an observation at `now` (observations come in time order) and says what it means.
    pub fn observe(&mut self, now: Instant, p: Progress) -> Verdict {
        let changed = self.last_moved != Some(p.moved);
        self.last_moved = Some(p.moved);
        if p.backlog == 0 {
            self.since = Some(now);
            return Verdict::Idle;
        }
        if changed {
            self.since = Some(now);
        }
        let since = *self.since.get_or_insert(now);
        let quiet = now.saturating_duration_since(since);
        if quiet > self.stall {
            Verdict::Wedged {
                for_: quiet,
                backlog: p.backlog,
            }
        } else {
            Verdict::Moving
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::accounting::{Kind, Registry};

    const STALL: Duration = Duration::from_secs(10);

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    fn p(moved: u64, backlog: u64) -> Progress {
        Progress { moved, backlog }
    }

    #[test]
    fn an_idle_pipeline_is_healthy_however_long_it_idles() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(STALL);
        for s in 0..1000 {
            assert_eq!(w.observe(at(t0, s * 5_000), p(7, 0)), Verdict::Idle);
        }
    }

    #[test]
    fn records_waiting_without_progress_for_more_than_the_stall_time_is_wedged() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(STALL);
        assert_eq!(w.observe(at(t0, 0), p(0, 0)), Verdict::Idle);
        // Records arrive (moved changes) and then nothing moves.
        assert_eq!(w.observe(at(t0, 1_000), p(100, 50)), Verdict::Moving);
        assert_eq!(w.observe(at(t0, 6_000), p(100, 50)), Verdict::Moving);
        // Exactly the stall time is not yet more than it.
        assert_eq!(w.observe(at(t0, 11_000), p(100, 50)), Verdict::Moving);
        assert_eq!(
            w.observe(at(t0, 11_001), p(100, 50)),
            Verdict::Wedged {
                for_: Duration::from_millis(10_001),
                backlog: 50
            }
        );
        assert!(!w.observe(at(t0, 60_000), p(100, 50)).healthy());
        // One record moves: healthy again, and the stall clock restarts.
        assert_eq!(w.observe(at(t0, 61_000), p(101, 49)), Verdict::Moving);
        assert_eq!(w.observe(at(t0, 71_000), p(101, 49)), Verdict::Moving);
        assert!(!w.observe(at(t0, 71_500), p(101, 49)).healthy());
        // Everything drains: idle.
        assert_eq!(w.observe(at(t0, 72_000), p(150, 0)), Verdict::Idle);
    }

    #[test]
    fn steady_progress_is_healthy_even_with_a_standing_backlog() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(STALL);
        // A sink that is down but retries: a call every 5 s, nothing written, backlog growing.
        for s in 0..100 {
            let v = w.observe(at(t0, s * 5_000), p(s, 1_000 + s));
            assert_eq!(v, Verdict::Moving, "at {s}");
        }
    }

    #[test]
    fn the_first_observation_with_a_backlog_starts_the_clock() {
        // Started with records already waiting (a disk buffer recovered): the stall time counts
        // from the first look.
        let t0 = Instant::now();
        let mut w = Watchdog::new(STALL);
        assert_eq!(w.observe(at(t0, 0), p(5, 5)), Verdict::Moving);
        assert_eq!(w.observe(at(t0, 10_000), p(5, 5)), Verdict::Moving);
        assert!(!w.observe(at(t0, 10_001), p(5, 5)).healthy());
    }

    #[test]
    fn an_observation_with_nothing_waiting_restarts_the_stall_clock() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(STALL);
        assert_eq!(w.observe(at(t0, 0), p(1, 1)), Verdict::Moving);
        assert_eq!(w.observe(at(t0, 9_000), p(1, 0)), Verdict::Idle);
        // The same `moved` with a backlog again: the stall time counts from the idle look.
        assert_eq!(w.observe(at(t0, 18_000), p(1, 1)), Verdict::Moving);
        assert_eq!(w.observe(at(t0, 19_000), p(1, 1)), Verdict::Moving);
        assert_eq!(
            w.observe(at(t0, 19_001), p(1, 1)),
            Verdict::Wedged {
                for_: Duration::from_millis(10_001),
                backlog: 1
            }
        );
    }

    #[test]
    fn progress_counts_records_moved_and_calls_but_not_refusals() {
        let r = Registry::new();
        let src = r.register("sources.web", Kind::Source);
        let sink = r.register("sinks.k", Kind::Sink);
        let before = Progress::of(&r.snapshot());
        assert_eq!(before, p(0, 0));
        src.add_in(10, 100);
        let read = Progress::of(&r.snapshot());
        assert_eq!(read, p(10, 10));
        // A client refused with 503: not progress.
        src.count_response("503");
        assert_eq!(Progress::of(&r.snapshot()), read);
        // A failed call to the service: progress (the sink is trying).
        sink.record_request_latency(1_000);
        assert_eq!(Progress::of(&r.snapshot()), p(11, 10));
        sink.add_in(10, 100);
        sink.add_out(10, 100);
        assert_eq!(Progress::of(&r.snapshot()), p(31, 0));
    }
}
