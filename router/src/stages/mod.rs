//! Stages: per-record filter, enrich and route steps between the sources and the sinks.
//!
//! A [`Stage`] works on a whole batch in place. [`run_stages`] is the stage thread: it takes
//! batches from the stage queue, runs every stage in pipeline order, counts what each stage let
//! through, dropped and dead-lettered, and hands the result to the dispatcher.

pub mod builtin;

use std::sync::Arc;

use crate::core::accounting::Counters;
use crate::core::dead_letter::DeadLetter;
use crate::core::record::Batch;
use crate::topology::queue::Receiver;
use crate::topology::{DeadLetterClosed, DeadLetterTx, Dispatcher};

/// One processing step.
pub trait Stage: Send {
    /// Processes a batch in place: removes records it drops, sets routes, and moves records it
    /// cannot process out of the batch into `dead` (with a reason).
    fn process(&mut self, batch: &mut Batch, dead: &mut Vec<DeadLetter>);
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
) -> Result<(), DeadLetterClosed> {
    let mut letters = Vec::new();
    while let Some(mut batch) = rx.blocking_recv() {
        for s in &mut stages {
            if batch.is_empty() {
                break;
            }
            let (n_in, bytes_in) = (batch.len() as u64, batch.payload_bytes());
            s.stage.process(&mut batch, &mut letters);
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
