//! Stages: per-record filter, enrich and route steps between the sources and the sinks.
//!
//! A [`Stage`] works on a whole batch in place. [`run_stages`] is the stage thread: it takes
//! batches from the stage queue, runs every stage in pipeline order, counts what each stage let
//! through, dropped and dead-lettered, and hands the result to the dispatcher.

pub mod builtin;
pub mod wasm;

use std::sync::Arc;

use crate::core::accounting::Counters;
use crate::core::dead_letter::DeadLetter;
use crate::core::record::Batch;
use crate::topology::queue::Receiver;
use crate::topology::{DeadLetterClosed, DeadLetterTx, Dispatcher};

/// One processing step.
pub trait Stage: Send {
    /// Processes a batch in place: removes records it drops, sets routes, and moves records it
    /// cannot process out of the batch into `dead` (with a reason). An error stops the router
    /// (the batch is then dead-lettered whole by the caller).
    fn process(&mut self, batch: &mut Batch, dead: &mut Vec<DeadLetter>) -> Result<(), StageError>;
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

/// A stage with its name and counters.
pub struct NamedStage {
    /// Config name, e.g. `stages[0]` or the stage's `name`.
    pub name: String,
    /// The stage.
    pub stage: Box<dyn Stage>,
    /// Its counters.
    pub counters: Arc<Counters>,
}

/// The stage thread: runs until the stage queue closes.
pub fn run_stages(
    mut stages: Vec<NamedStage>,
    rx: Receiver<Batch>,
    dispatcher: Dispatcher,
    dead: DeadLetterTx,
) -> Result<(), StagesFailed> {
    let mut letters = Vec::new();
    while let Some(mut batch) = rx.blocking_recv() {
        for s in &mut stages {
            if batch.is_empty() {
                break;
            }
            let (n_in, bytes_in) = (batch.len() as u64, batch.payload_bytes());
            let original = batch.clone();
            if let Err(e) = s.stage.process(&mut batch, &mut letters) {
                // Nothing of this batch or of what is queued behind it is lost: all of it is
                // dead-lettered with the stage's error before the thread ends.
                let reason = e.0.clone();
                s.counters.add_in(n_in, bytes_in);
                dead.send(
                    DeadLetter::from_whole_batch(&original, &reason),
                    &s.counters,
                )?;
                for queued in rx.close() {
                    dead.send(DeadLetter::from_whole_batch(&queued, &reason), &s.counters)?;
                }
                return Err(e.into());
            }
            let n_dead = letters.len() as u64;
            let n_out = batch.len() as u64;
            s.counters.add_in(n_in, bytes_in);
            s.counters.add_out(n_out, batch.payload_bytes());
            s.counters.add_dropped(n_in.saturating_sub(n_out + n_dead));
            dead.send(std::mem::take(&mut letters), &s.counters)?;
        }
        dispatcher.dispatch(batch)?;
    }
    Ok(())
}
