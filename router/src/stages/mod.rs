//! Stages: per-record filter, enrich and route steps between the sources and the sinks.
//!
//! A [`Stage`] works on a whole batch in place. [`run_stages`] is the stage thread: it takes
//! batches from the stage queue, runs every stage in pipeline order, counts what each stage let
//! through, dropped and dead-lettered, and hands the result to the dispatcher. With
//! `pipeline.stage_workers` above one, several workers (each with its own stage objects) do
//! this in parallel and [`pool`] puts their results back in queue order. A reload hands the
//! running stage thread its next stages and dispatcher through a [`Handoff`].

pub mod builtin;
pub mod pool;
pub mod wasm;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::core::accounting::Counters;
use crate::core::dead_letter::DeadLetter;
use crate::core::record::Batch;
use crate::queue::{Interrupter, Receiver};
use crate::topology::{DeadLetterClosed, DeadLetterTx, Dispatcher};

/// One processing step.
pub trait Stage: Send {
    /// Processes a batch in place: removes records it drops, sets routes, and moves records it
    /// cannot process out of the batch into `dead` (with a reason). An error stops the router
    /// (the batch is then dead-lettered whole by the caller).
    fn process(&mut self, batch: &mut Batch, dead: &mut Vec<DeadLetter>) -> Result<(), StageError>;

    /// What the last call of `process` made and took in beyond passing records on one to one,
    /// reset by the call (zero for stages that never do).
    fn take_tally(&mut self) -> Tally {
        Tally::default()
    }

    /// When the stage next wants [`Stage::tick`] (aggregate stages), or `None` for never.
    fn next_tick(&self) -> Option<Instant> {
        None
    }

    /// Called once [`Stage::next_tick`] is due: the records the stage emits now (they go
    /// through the stages after it).
    fn tick(&mut self, _now: Instant) -> Vec<Batch> {
        Vec::new()
    }

    /// Called once at shutdown (after the last batch) and before a reload switches to new
    /// stages: everything the stage still holds, emitted.
    fn flush(&mut self) -> Vec<Batch> {
        Vec::new()
    }
}

/// Records a stage made beyond one per input and inputs it took in without passing them on or
/// dropping them, for one call: the stage's `records_in + created == records_out + dropped +
/// dead_lettered + absorbed`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// Outputs beyond the first of each input (transform), or records emitted (aggregate).
    pub created: u64,
    /// Inputs merged into another's output (transform) or taken into state (aggregate).
    pub absorbed: u64,
}

/// A stage failed in a way that must stop the router (e.g. `on_error = "fail"`).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StageError(pub String);

/// Why the stage thread ended early.
#[derive(Debug, thiserror::Error)]
pub enum StagesFailed {
    /// A stage failed.
    #[error(transparent)]
    Stage(#[from] StageError),
    /// The dead-letter sink is gone.
    #[error(transparent)]
    DeadLetter(#[from] DeadLetterClosed),
}

/// A stage with its name and counters. Each stage worker has its own `stage`; `counters` are
/// shared by all workers' copies of the same stage.
pub struct NamedStage {
    /// Config name, e.g. `stages[0]` or the stage's `name`.
    pub name: String,
    /// The stage.
    pub stage: Box<dyn Stage>,
    /// Its counters.
    pub counters: Arc<Counters>,
}

/// The stage thread: runs until the stage queue closes. `workers` holds one set of stages per
/// worker (the same stages in the same order, sharing their counters); with more than one set,
/// the sets run on threads of their own and batches still reach the dispatcher in the order
/// they were queued (see [`pool`]). With one set this is a plain loop on the calling thread.
///
/// When `handoff` is given a [`Generation`], the workers finish and dispatch the batches they
/// hold, then the next generation's stages and dispatcher take over the same queue: every batch
/// goes through one generation's stages and that generation's dispatcher (whose route masks
/// those stages computed), none is skipped or repeated.
pub fn run_stages(
    mut workers: Vec<Vec<NamedStage>>,
    rx: Receiver<Batch>,
    mut dispatcher: Dispatcher,
    dead: DeadLetterTx,
    handoff: Arc<Handoff>,
) -> Result<(), StagesFailed> {
    let _ended = EndOnDrop(&handoff);
    loop {
        let mut returned = pool::run(workers, &rx, &dispatcher, &dead, &handoff.flag)?;
        let Some((next, asked)) = handoff.take() else {
            // The queue closed: what stages still hold goes out before the sinks close.
            if let Some(first) = returned.first_mut() {
                flush_stages(first, &dispatcher, &dead)?;
            }
            return Ok(());
        };
        if next.stages.is_some()
            && let Some(first) = returned.first_mut()
        {
            // These stages are being replaced: what they hold goes out through them and the
            // dispatcher their route masks were made for.
            flush_stages(first, &dispatcher, &dead)?;
        }
        dispatcher = (next.rewire)(dispatcher);
        workers = next.stages.unwrap_or(returned);
        let _ = next.done.send(asked.elapsed());
    }
}

/// Marks the hand-off ended when the stage thread returns (or unwinds), so a reload does not
/// wait for a thread that is gone.
struct EndOnDrop<'a>(&'a Handoff);

impl Drop for EndOnDrop<'_> {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// The next stages and dispatcher for a running stage thread (made by a reload).
pub struct Generation {
    /// New stage sets (one per worker), or `None` to keep the running ones.
    pub stages: Option<Vec<Vec<NamedStage>>>,
    /// Makes the next dispatcher out of the current one (keeping the ports of unchanged sinks).
    pub rewire: Box<dyn FnOnce(Dispatcher) -> Dispatcher + Send>,
    /// Told, with the time the stages stopped taking batches, once the new generation runs.
    pub done: tokio::sync::oneshot::Sender<Duration>,
}

/// Passes a [`Generation`] to the stage thread that reads one stage queue.
pub struct Handoff {
    /// Set while a generation waits: the workers stop taking batches.
    flag: AtomicBool,
    state: Mutex<HandoffState>,
    wake: Interrupter<Batch>,
}

struct HandoffState {
    next: Option<(Generation, Instant)>,
    /// The stage thread has returned.
    ended: bool,
}

impl Handoff {
    /// A hand-off for the stage thread reading `rx`.
    pub fn new(rx: &Receiver<Batch>) -> Arc<Handoff> {
        Arc::new(Handoff {
            flag: AtomicBool::new(false),
            state: Mutex::new(HandoffState {
                next: None,
                ended: false,
            }),
            wake: rx.interrupter(),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, HandoffState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Gives `next` to the stage thread, which switches to it once the batches its workers
    /// hold are dispatched. Hands `next` back if the stage thread has already returned.
    pub fn hand(&self, next: Generation) -> Result<(), Generation> {
        let mut st = self.state();
        if st.ended {
            return Err(next);
        }
        st.next = Some((next, Instant::now()));
        self.flag.store(true, Ordering::Release);
        drop(st);
        self.wake.interrupt();
        Ok(())
    }

    fn take(&self) -> Option<(Generation, Instant)> {
        let mut st = self.state();
        self.flag.store(false, Ordering::Release);
        st.next.take()
    }

    fn end(&self) {
        let mut st = self.state();
        st.ended = true;
        // A generation that came too late: dropping it closes the queues of the sinks it
        // started, so they end too.
        st.next = None;
    }
}

/// What became of one batch in [`run_batch`].
enum Outcome {
    /// It went through every stage.
    Done(Batch),
    /// Stage `stage` failed on it; `input` is the batch as that stage got it (already counted
    /// in by the stage). Dead letters the stage made for it were discarded: the whole `input`
    /// is to be dead-lettered.
    Failed {
        stage: usize,
        input: Batch,
        error: StageError,
    },
    /// `stop` said to stop before the next stage: the batch as the stages so far left it.
    Stopped(Batch),
}

/// Flushes every stage in pipeline order (one set of stages: workers' copies of a stage share
/// what they hold), each one's output going through the stages after it, and dispatches it.
fn flush_stages(
    stages: &mut [NamedStage],
    dispatcher: &Dispatcher,
    dead: &DeadLetterTx,
) -> Result<(), StagesFailed> {
    let mut letters = Vec::new();
    for i in 0..stages.len() {
        let out = stages[i].stage.flush();
        for outcome in emitted(stages, i, out, &mut letters, dead, || false)? {
            match outcome {
                Outcome::Done(b) | Outcome::Stopped(b) => dispatcher.dispatch(b)?,
                Outcome::Failed {
                    stage,
                    input,
                    error,
                } => {
                    let counters = stages[stage].counters.clone();
                    dead.send(DeadLetter::from_whole_batch(&input, &error.0), &counters)?;
                    return Err(error.into());
                }
            }
        }
    }
    Ok(())
}

/// Counts the batches stage `i` emitted (by `tick` or `flush`: created and passed on by it)
/// and runs each through the stages after it. A failure's `stage` is an index into `stages`.
fn emitted(
    stages: &mut [NamedStage],
    i: usize,
    batches: Vec<Batch>,
    letters: &mut Vec<DeadLetter>,
    dead: &DeadLetterTx,
    stop: impl Fn() -> bool + Copy,
) -> Result<Vec<Outcome>, DeadLetterClosed> {
    let mut out = Vec::with_capacity(batches.len());
    for b in batches {
        let c = &stages[i].counters;
        let n = b.len() as u64;
        c.created.fetch_add(n, Ordering::Relaxed);
        c.add_out(n, b.payload_bytes());
        out.push(
            match run_batch(&mut stages[i + 1..], b, letters, dead, stop)? {
                Outcome::Failed {
                    stage,
                    input,
                    error,
                } => Outcome::Failed {
                    stage: stage + i + 1,
                    input,
                    error,
                },
                other => other,
            },
        );
    }
    Ok(out)
}

/// Runs every stage on `batch` in pipeline order, counting what each let through, dropped and
/// dead-lettered, and sending the stages' dead letters. `stop` is asked before each stage.
fn run_batch(
    stages: &mut [NamedStage],
    mut batch: Batch,
    letters: &mut Vec<DeadLetter>,
    dead: &DeadLetterTx,
    stop: impl Fn() -> bool,
) -> Result<Outcome, DeadLetterClosed> {
    for (i, s) in stages.iter_mut().enumerate() {
        if batch.is_empty() {
            break;
        }
        if stop() {
            return Ok(Outcome::Stopped(batch));
        }
        let (n_in, bytes_in) = (batch.len() as u64, batch.payload_bytes());
        let original = batch.clone();
        let processed = s.stage.process(&mut batch, letters);
        let tally = s.stage.take_tally();
        if let Err(error) = processed {
            s.counters.add_in(n_in, bytes_in);
            letters.clear();
            return Ok(Outcome::Failed {
                stage: i,
                input: original,
                error,
            });
        }
        let n_dead = letters.len() as u64;
        let n_out = batch.len() as u64;
        s.counters.add_in(n_in, bytes_in);
        s.counters.add_out(n_out, batch.payload_bytes());
        s.counters
            .created
            .fetch_add(tally.created, Ordering::Relaxed);
        s.counters
            .absorbed
            .fetch_add(tally.absorbed, Ordering::Relaxed);
        s.counters
            .add_dropped((n_in + tally.created).saturating_sub(n_out + n_dead + tally.absorbed));
        dead.send(std::mem::take(letters), &s.counters)?;
    }
    Ok(Outcome::Done(batch))
}
