//! Stage workers: N threads, each with its own set of stages, with the output kept in input order.
//!
//! A worker takes the next batch from the stage queue and numbers it, both under the `intake`
//! lock, so numbers follow queue order. It runs its own stages on the batch (no lock held) and
//! hands the result to the [`Reorder`] buffer. Whichever worker finds the next batch in order
//! ready becomes the dispatching worker: it passes batches to the dispatcher one by one, in
//! order, until the next one is not finished yet. Only one worker dispatches at a time, so the
//! sinks see batches in queue order. At most N batches are between the queue and the dispatcher
//! (taken, running, finished and waiting, or being dispatched): a worker waits for room before
//! it takes another, so a slow batch holds back at most N - 1 finished ones.
//!
//! A fatal stage error on batch `s` keeps the guarantees of the single stage thread: `s` is
//! dead-lettered whole (as its stage got it), the stage queue is closed and what was queued is
//! dead-lettered, batches after `s` that workers hold or have finished are dead-lettered as they
//! are, and batches before `s` are still processed and dispatched in order. The workers then
//! stop and the error of the earliest failed batch is returned, once.
//!
//! With one worker the loop runs on the calling thread, exactly like a plain loop over the queue.
//!
//! A hand-off (a reload replacing the stages or the dispatcher) sets `handoff`: workers stop
//! taking batches, finish and dispatch the ones they hold, and [`run`] returns every worker's
//! stages, leaving what is still queued in the queue for the next set of workers.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use crate::core::accounting::Counters;
use crate::core::dead_letter::DeadLetter;
use crate::core::record::Batch;
use crate::core::reorder::Reorder;
use crate::queue::{Receiver, block_on_until};
use crate::stages::{NamedStage, Outcome, StageError, StagesFailed, emitted, run_batch};
use crate::topology::{DeadLetterTx, Dispatcher};

/// Runs `workers.len()` stage workers (the calling thread is the first) until the queue closes,
/// `handoff` is set (then every batch taken has been dispatched when it returns), or a stage
/// fails. Gives the workers' stages back.
pub(super) fn run(
    workers: Vec<Vec<NamedStage>>,
    rx: &Receiver<Batch>,
    dispatcher: &Dispatcher,
    dead: &DeadLetterTx,
    handoff: &AtomicBool,
) -> Result<Vec<Vec<NamedStage>>, StagesFailed> {
    let counters: Vec<Arc<Counters>> = workers
        .first()
        .map(|set| set.iter().map(|s| s.counters.clone()).collect())
        .unwrap_or_default();
    let pool = Pool {
        rx,
        handoff,
        dispatcher,
        dead,
        counters,
        intake: Mutex::new(()),
        state: Mutex::new(State {
            order: Reorder::new(workers.len()),
            dispatching: false,
            failure: None,
        }),
        room: Condvar::new(),
        failed_at: AtomicU64::new(NOT_FAILED),
    };
    let mut sets = workers.into_iter();
    let first = sets.next().unwrap_or_default();
    let returned = std::thread::scope(|scope| {
        let mut others = Vec::new();
        for (i, stages) in sets.enumerate() {
            let pool = &pool;
            let started = std::thread::Builder::new()
                .name(format!("stages-{}", i + 1))
                .spawn_scoped(scope, move || pool.work(stages));
            match started {
                Ok(handle) => others.push(handle),
                Err(e) => tracing::warn!(
                    "cannot start stage worker {}: {e}; running with fewer",
                    i + 1
                ),
            }
        }
        let mut returned = vec![pool.work(first)];
        // A worker that panicked has failed the pool (see `PanicGuard`); its stages are gone.
        returned.extend(others.into_iter().filter_map(|h| h.join().ok()));
        returned
    });
    match pool.lock().failure.take() {
        Some(f) => Err(f.error),
        None => Ok(returned),
    }
}

/// What a worker takes.
// One lives on a worker's stack between taking and running it: no point boxing the batch.
#[allow(clippy::large_enum_variant)]
enum Work {
    /// The next batch of the queue.
    Batch(Batch),
    /// A stage's tick is due.
    Tick,
}

/// `failed_at` while no batch has failed.
const NOT_FAILED: u64 = u64::MAX;

struct Pool<'a> {
    rx: &'a Receiver<Batch>,
    /// Set to stop taking batches (a hand-off).
    handoff: &'a AtomicBool,
    dispatcher: &'a Dispatcher,
    dead: &'a DeadLetterTx,
    /// Each stage's counters (shared by all workers): what is dead-lettered because a stage
    /// failed counts as dead-lettered by that stage.
    counters: Vec<Arc<Counters>>,
    /// Held while taking a batch and numbering it, so numbers follow queue order.
    intake: Mutex<()>,
    state: Mutex<State>,
    /// Signalled when room frees up in the window, and when a batch fails.
    room: Condvar,
    /// The sequence number of the earliest failed batch ([`NOT_FAILED`] while none has):
    /// workers read it between stages without taking the lock.
    failed_at: AtomicU64,
}

struct State {
    order: Reorder<Batch>,
    /// A worker is passing batches to the dispatcher.
    dispatching: bool,
    /// The earliest failure (by sequence number).
    failure: Option<Failure>,
}

struct Failure {
    seq: u64,
    /// The failing stage.
    stage: usize,
    /// The dead letters' reason.
    reason: String,
    error: StagesFailed,
}

/// Fails the pool if a worker panics while it holds batch `seq`, so that the other workers
/// stop instead of waiting for that batch forever.
struct PanicGuard<'p, 'a> {
    pool: &'p Pool<'a>,
    seq: u64,
}

impl Drop for PanicGuard<'_, '_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let reason = "internal error: a stage worker panicked".to_owned();
            let error = StagesFailed::Stage(StageError(reason.clone()));
            self.pool.fail(self.seq, 0, reason, error, None);
        }
    }
}

impl Pool<'_> {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update under this lock is a few plain assignments and calls into `Reorder`,
        // which does not panic: a poisoned lock still holds consistent state.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One worker: takes, processes and completes batches until the queue closes, a hand-off,
    /// or the run fails. Gives its stages back.
    fn work(&self, mut stages: Vec<NamedStage>) -> Vec<NamedStage> {
        let mut letters = Vec::new();
        loop {
            let due = stages.iter().filter_map(|s| s.stage.next_tick()).min();
            let Some((seq, work)) = self.take(due) else {
                break;
            };
            let _guard = PanicGuard { pool: self, seq };
            let stop = || self.failed_at.load(Ordering::Relaxed) < seq;
            let batch = match work {
                Work::Batch(b) => b,
                Work::Tick => {
                    self.tick(seq, &mut stages, &mut letters);
                    continue;
                }
            };
            match run_batch(&mut stages, batch, &mut letters, self.dead, stop) {
                Ok(Outcome::Done(batch)) => self.complete(seq, batch),
                Ok(Outcome::Failed {
                    stage,
                    input,
                    error,
                }) => {
                    let reason = error.0.clone();
                    self.fail(seq, stage, reason, error.into(), Some(input));
                }
                Ok(Outcome::Stopped(batch)) => self.dead_letter_behind(batch),
                Err(e) => {
                    let reason = e.to_string();
                    self.fail(seq, 0, reason, e.into(), None);
                }
            }
        }
        stages
    }

    /// Work item `seq` is a tick: every stage whose tick is due emits, each one's records go
    /// through the stages after it, and what comes out is completed as one batch.
    fn tick(
        &self,
        seq: u64,
        stages: &mut [NamedStage],
        letters: &mut Vec<crate::core::dead_letter::DeadLetter>,
    ) {
        let now = Instant::now();
        let stop = || self.failed_at.load(Ordering::Relaxed) < seq;
        let mut done = Vec::new();
        let mut failed = None;
        for i in 0..stages.len() {
            if stages[i].stage.next_tick().is_none_or(|t| t > now) {
                continue;
            }
            let out = stages[i].stage.tick(now);
            match emitted(stages, i, out, letters, self.dead, stop) {
                Ok(outcomes) => {
                    for o in outcomes {
                        match o {
                            Outcome::Done(b) | Outcome::Stopped(b) => done.push(b),
                            Outcome::Failed {
                                stage,
                                input,
                                error,
                            } => {
                                if failed.is_none() {
                                    failed = Some((stage, input, error));
                                } else {
                                    done.push(input);
                                }
                            }
                        }
                    }
                }
                Err(e) => {
                    let reason = e.to_string();
                    self.fail(seq, 0, reason, e.into(), None);
                    return;
                }
            }
        }
        if let Some((stage, input, error)) = failed {
            let reason = error.0.clone();
            self.fail(seq, stage, reason, error.into(), Some(input));
            for b in done {
                self.dead_letter_behind(b);
            }
            return;
        }
        let origin = crate::core::record::Origin {
            source: Arc::from("tick"),
            arrival_unix_nanos: 0,
            arrival: now,
            position: crate::core::record::PositionBase::None,
        };
        let batch =
            crate::stages::wasm::emit::concat(done, origin.clone(), self.dispatcher.default_mask())
                .unwrap_or_else(|| Batch::new(bytes::Bytes::new(), Vec::new(), origin));
        self.complete(seq, batch);
    }

    /// The next work item and its sequence number, once there is room in the window: a batch,
    /// or a tick once `due` has come (checked before waiting for a batch, so ticks keep their
    /// time under load). `None` when the queue is closed and drained, on a hand-off, or when
    /// a batch failed.
    fn take(&self, due: Option<Instant>) -> Option<(u64, Work)> {
        let _turn = self.intake.lock().unwrap_or_else(|e| e.into_inner());
        {
            let mut st = self.lock();
            while !st.order.can_issue() {
                if st.failure.is_some() {
                    return None;
                }
                st = self.room.wait(st).unwrap_or_else(|e| e.into_inner());
            }
            if st.failure.is_some() {
                return None;
            }
        }
        // Waiting for input without the state lock: other workers go on completing and
        // dispatching. Nobody else issues meanwhile (we hold `intake`), so the room is ours.
        let work = match due {
            None => Work::Batch(self.rx.blocking_recv_unless(self.handoff).ok()??),
            Some(due) if Instant::now() >= due => Work::Tick,
            Some(due) => match block_on_until(self.rx.recv_unless(self.handoff), due) {
                None => Work::Tick,
                Some(received) => Work::Batch(received.ok()??),
            },
        };
        let seq = self.lock().order.issue();
        Some((seq, work))
    }

    /// Batch `seq` went through every stage: buffers it, and if nobody is dispatching,
    /// dispatches every batch that is ready in order.
    fn complete(&self, seq: u64, batch: Batch) {
        let mut st = self.lock();
        if let Err(batch) = st.order.complete(seq, batch) {
            // An earlier batch failed after this one was taken.
            drop(st);
            self.dead_letter_behind(batch);
            return;
        }
        if st.dispatching {
            // The dispatching worker will find it.
            return;
        }
        st.dispatching = true;
        while let Some((seq, batch)) = st.order.pop() {
            drop(st);
            let sent = self.dispatcher.dispatch(batch);
            st = self.lock();
            st.order.settle();
            self.room.notify_all();
            if let Err(e) = sent {
                st.dispatching = false;
                drop(st);
                // Nothing after this batch can be delivered or dead-lettered any more.
                let reason = e.to_string();
                self.fail(seq + 1, 0, reason, e.into(), None);
                return;
            }
        }
        st.dispatching = false;
    }

    /// Batch `seq` failed at `stage`: dead-letters `input` (the batch as that stage got it),
    /// cuts the stream at `seq`, dead-letters finished batches after it, and on the first
    /// failure closes the stage queue and dead-letters what was queued. Keeps the error of the
    /// earliest failed batch.
    fn fail(
        &self,
        seq: u64,
        stage: usize,
        reason: String,
        mut error: StagesFailed,
        input: Option<Batch>,
    ) {
        let counters = self.counters.get(stage).cloned().unwrap_or_default();
        if let Some(input) = input
            && let Err(e) = self
                .dead
                .send(DeadLetter::from_whole_batch(&input, &reason), &counters)
        {
            error = e.into();
        }
        let (behind, first) = {
            let mut st = self.lock();
            let first = st.failure.is_none();
            let behind = st.order.cut(seq);
            if st.failure.as_ref().is_none_or(|f| seq < f.seq) {
                st.failure = Some(Failure {
                    seq,
                    stage,
                    reason: reason.clone(),
                    error,
                });
            }
            self.failed_at.fetch_min(seq, Ordering::Relaxed);
            (behind, first)
        };
        self.room.notify_all();
        // If the dead-letter sink is gone these sends fail too; the records are then reported
        // as neither delivered nor dead-lettered (in flight) when the router exits.
        for (_, batch) in behind {
            let _ = self
                .dead
                .send(DeadLetter::from_whole_batch(&batch, &reason), &counters);
        }
        if first {
            for queued in self.rx.close() {
                let _ = self
                    .dead
                    .send(DeadLetter::from_whole_batch(&queued, &reason), &counters);
            }
        }
    }

    /// Dead-letters a batch taken after the batch that failed, as the stages left it, with the
    /// failure's reason, counted against the failing stage.
    fn dead_letter_behind(&self, batch: Batch) {
        let (stage, reason) = match &self.lock().failure {
            Some(f) => (f.stage, f.reason.clone()),
            None => (0, "the stages stopped".to_owned()),
        };
        let counters = self.counters.get(stage).cloned().unwrap_or_default();
        let _ = self
            .dead
            .send(DeadLetter::from_whole_batch(&batch, &reason), &counters);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::record::{Origin, PositionBase, Span};
    use crate::queue::{Limits, queue};
    use crate::stages::Stage;
    use crate::topology::{DeadLetters, PortPlan, SinkPort};
    use bytes::Bytes;
    use std::time::{Duration, Instant};

    /// A batch of one record whose payload is `n` in decimal.
    fn batch(n: u64) -> Batch {
        let text = n.to_string();
        let end = text.len() as u32;
        Batch::new(
            Bytes::from(text),
            vec![Span { start: 0, end }],
            Origin {
                source: Arc::from("test"),
                arrival_unix_nanos: 0,
                arrival: Instant::now(),
                position: PositionBase::None,
            },
        )
    }

    fn number(payload: &[u8]) -> u64 {
        std::str::from_utf8(payload).unwrap().parse().unwrap()
    }

    /// Takes an uneven, deterministic time per batch (`slow` takes much longer), and fails on
    /// the batches in `fail`.
    struct Jitter {
        fail: Vec<u64>,
        slow: Option<u64>,
    }

    impl Stage for Jitter {
        fn process(
            &mut self,
            batch: &mut Batch,
            _dead: &mut Vec<DeadLetter>,
        ) -> Result<(), StageError> {
            let n = number(batch.payload(0));
            let us = if Some(n) == self.slow {
                20_000
            } else {
                n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56
            };
            std::thread::sleep(Duration::from_micros(us));
            if self.fail.contains(&n) {
                return Err(StageError(format!("batch {n} failed")));
            }
            Ok(())
        }
    }

    struct Seen {
        dispatched: Vec<u64>,
        dead: Vec<u64>,
        refused: Vec<u64>,
        result: Result<(), StagesFailed>,
    }

    /// Feeds batches 0..n through `workers` workers running [`Jitter`], as the topology wires
    /// them: a small stage queue, a dispatcher with one sink queue, a dead-letter queue.
    fn run_pool(workers: usize, n: u64, fail: &[u64], slow: Option<u64>) -> Seen {
        let limits = Limits {
            records_max: 8,
            bytes_max: 1 << 20,
        };
        let big = Limits {
            records_max: 1 << 20,
            bytes_max: 1 << 30,
        };
        let (stage_tx, stage_rx) = queue::<Batch>(limits);
        let (sink_tx, sink_rx) = queue::<Batch>(big);
        let (dl_tx, dl_rx) = queue::<DeadLetters>(big);
        let dead = DeadLetterTx::new(dl_tx);
        let counters = Arc::new(Counters::default());
        let dispatcher = Dispatcher::new(
            vec![SinkPort {
                name: Arc::from("out"),
                tx: sink_tx,
                counters: Arc::new(Counters::default()),
            }],
            1,
            Arc::new(Counters::default()),
            dead.clone(),
        );
        let sets = (0..workers)
            .map(|_| {
                vec![NamedStage {
                    name: "jitter".into(),
                    stage: Box::new(Jitter {
                        fail: fail.to_vec(),
                        slow,
                    }),
                    counters: counters.clone(),
                }]
            })
            .collect();
        std::thread::scope(|s| {
            let producer = s.spawn(move || {
                let mut refused = Vec::new();
                for k in 0..n {
                    if let Err(crate::queue::Closed(b)) = stage_tx.blocking_send(batch(k)) {
                        refused.push(number(b.payload(0)));
                    }
                }
                refused
            });
            let sink = s.spawn(move || {
                let mut got = Vec::new();
                while let Some(b) = sink_rx.blocking_recv() {
                    got.extend((0..b.len()).map(|i| number(b.payload(i))));
                }
                got
            });
            let letters = s.spawn(move || {
                let mut got = Vec::new();
                while let Some(DeadLetters(ls)) = dl_rx.blocking_recv() {
                    got.extend(ls.iter().map(|l| number(&l.payload)));
                }
                got
            });
            let result =
                run(sets, &stage_rx, &dispatcher, &dead, &AtomicBool::new(false)).map(|_| ());
            drop((stage_rx, dispatcher, dead));
            Seen {
                dispatched: sink.join().unwrap(),
                dead: letters.join().unwrap(),
                refused: producer.join().unwrap(),
                result,
            }
        })
    }

    /// Feeds batches 0..n into a stage thread (`workers` workers running [`Jitter`]) that
    /// dispatches to sink `a`; after batch `switch_after` is queued, hands it a generation
    /// whose dispatcher sends to sink `b` instead. Returns what `a` and `b` got and the pause.
    fn run_with_handoff(
        workers: usize,
        n: u64,
        switch_after: u64,
    ) -> (Vec<u64>, Vec<u64>, Duration) {
        let limits = Limits {
            records_max: 8,
            bytes_max: 1 << 20,
        };
        let big = Limits {
            records_max: 1 << 20,
            bytes_max: 1 << 30,
        };
        let (stage_tx, stage_rx) = queue::<Batch>(limits);
        let (a_tx, a_rx) = queue::<Batch>(big);
        let (b_tx, b_rx) = queue::<Batch>(big);
        let (dl_tx, _dl_rx) = queue::<DeadLetters>(big);
        let dead = DeadLetterTx::new(dl_tx);
        let port = |name: &str, tx| SinkPort {
            name: Arc::from(name),
            tx,
            counters: Arc::new(Counters::default()),
        };
        let dispatcher = Dispatcher::new(
            vec![port("a", a_tx)],
            1,
            Arc::new(Counters::default()),
            dead.clone(),
        );
        let counters = Arc::new(Counters::default());
        let sets = |slow| -> Vec<Vec<NamedStage>> {
            (0..workers)
                .map(|_| {
                    vec![NamedStage {
                        name: "jitter".into(),
                        stage: Box::new(Jitter {
                            fail: Vec::new(),
                            slow,
                        }),
                        counters: counters.clone(),
                    }]
                })
                .collect()
        };
        let handoff = crate::stages::Handoff::new(&stage_rx);
        let first = sets(Some(switch_after));
        let mut second = Some(sets(None));
        std::thread::scope(|s| {
            let stages = {
                let handoff = handoff.clone();
                let dead = dead.clone();
                s.spawn(move || {
                    crate::stages::run_stages(first, stage_rx, dispatcher, dead, handoff)
                })
            };
            let a = s.spawn(move || {
                let mut got = Vec::new();
                while let Some(b) = a_rx.blocking_recv() {
                    got.extend((0..b.len()).map(|i| number(b.payload(i))));
                }
                got
            });
            let b = s.spawn(move || {
                let mut got = Vec::new();
                while let Some(b) = b_rx.blocking_recv() {
                    got.extend((0..b.len()).map(|i| number(b.payload(i))));
                }
                got
            });
            let mut switched = None;
            for k in 0..n {
                stage_tx.blocking_send(batch(k)).unwrap();
                if k == switch_after {
                    let (done, rx) = tokio::sync::oneshot::channel();
                    let b_port = port("b", b_tx.clone());
                    let generation = crate::stages::Generation {
                        stages: second.take(),
                        rewire: Box::new(move |d: Dispatcher| {
                            d.rewire(vec![PortPlan::New(b_port)], 1)
                        }),
                        done,
                    };
                    assert!(handoff.hand(generation).is_ok());
                    switched = Some(rx);
                }
            }
            drop((stage_tx, b_tx, dead));
            stages.join().unwrap().unwrap();
            let pause = switched
                .map(|rx| crate::queue::block_on(rx).unwrap())
                .unwrap_or_default();
            // The stage thread has ended: a late generation is handed back.
            let (done, _rx) = tokio::sync::oneshot::channel();
            let late = crate::stages::Generation {
                stages: None,
                rewire: Box::new(|d| d),
                done,
            };
            assert!(handoff.hand(late).is_err());
            (a.join().unwrap(), b.join().unwrap(), pause)
        })
    }

    #[test]
    fn a_handoff_switches_between_two_batches_without_losing_or_repeating_any() {
        for workers in [1, 2, 4] {
            for switch_after in [0, 5, 150] {
                let (a, b, _pause) = run_with_handoff(workers, 300, switch_after);
                let mut all = a.clone();
                all.extend(&b);
                assert_eq!(
                    all,
                    (0..300).collect::<Vec<_>>(),
                    "{workers} workers, switch after {switch_after}"
                );
                // The first generation took nothing queued after the hand-off.
                assert!(
                    a.len() as u64 <= switch_after + 1,
                    "{workers}: a got {}",
                    a.len()
                );
                assert!(!b.is_empty());
            }
        }
    }

    #[test]
    fn workers_dispatch_in_queue_order() {
        for workers in [1, 2, 4, 8] {
            let seen = run_pool(workers, 600, &[], Some(17));
            assert!(seen.result.is_ok());
            assert_eq!(seen.dispatched, (0..600).collect::<Vec<_>>(), "{workers}");
            assert!(seen.dead.is_empty() && seen.refused.is_empty());
        }
    }

    #[test]
    fn a_failure_dispatches_what_came_before_and_dead_letters_the_rest_once() {
        for workers in [1, 2, 4, 8] {
            // 100 is slow, so the later failures (103, 105) happen first in time; the error
            // reported is still that of 100, the earliest in queue order.
            let seen = run_pool(workers, 400, &[100, 103, 105], Some(100));
            match &seen.result {
                Err(StagesFailed::Stage(e)) => assert_eq!(e.0, "batch 100 failed"),
                Err(e) => panic!("{workers} workers: {e}"),
                Ok(()) => panic!("{workers} workers: no error"),
            }
            assert_eq!(seen.dispatched, (0..100).collect::<Vec<_>>(), "{workers}");
            let mut rest: Vec<u64> = seen.dead.iter().chain(&seen.refused).copied().collect();
            rest.sort_unstable();
            assert_eq!(rest, (100..400).collect::<Vec<_>>(), "{workers} workers");
        }
    }
}
