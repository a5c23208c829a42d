//! The service-independent parts of an AWS sink's thread: a seed for jitter, a timer, latency,
//! and dead-lettering. Both the Kinesis and the Firehose sink hold a user record as a [`Ticket`]
//! (its batch and its index there) while it is pending or in flight.

use std::sync::Arc;
use std::time::Instant;

use hdrhistogram::Histogram;

use crate::core::accounting::Counters;
use crate::core::dead_letter::DeadLetter;
use crate::core::record::Batch;
use crate::topology::DeadLetterTx;
use crate::topology::queue::Receiver;

/// A user record's handle: its batch and its index there.
pub type Ticket = (Arc<Batch>, usize);

/// A seed for random keys and jitter (not for anything secret).
pub fn seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 32)
}

/// Sleeps until `at`; never returns for `None` (for a `select!` branch guarded on `is_some`).
pub async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
    }
}

/// Records the arrival-to-now latency of each written record.
pub fn record_latency<'a>(h: &mut Histogram<u64>, tickets: impl IntoIterator<Item = &'a Ticket>) {
    let high = h.high();
    for (batch, _) in tickets {
        let us = u64::try_from(batch.origin().arrival.elapsed().as_micros())
            .unwrap_or(u64::MAX)
            .clamp(1, high);
        let _ = h.record(us);
    }
}

/// Sends records to the dead-letter sink, grouped by batch (so positions are found in one pass).
pub fn dead_letter(
    tickets: impl IntoIterator<Item = Ticket>,
    reason: &str,
    dead: &DeadLetterTx,
    counters: &Counters,
) {
    let mut groups: Vec<(Arc<Batch>, Vec<usize>)> = Vec::new();
    for (batch, i) in tickets {
        // Records come in arrival order, so the batch is almost always the last one seen.
        let found = match groups.last_mut() {
            Some((b, idx)) if Arc::ptr_eq(b, &batch) => Some(idx),
            _ => groups
                .iter_mut()
                .find(|(b, _)| Arc::ptr_eq(b, &batch))
                .map(|(_, idx)| idx),
        };
        match found {
            Some(idx) => idx.push(i),
            None => groups.push((batch, vec![i])),
        }
    }
    for (batch, mut idx) in groups {
        idx.sort_unstable();
        if let Err(e) = dead.send(DeadLetter::from_batch(&batch, &idx, reason), counters) {
            tracing::error!("{e}");
        }
    }
}

/// Handles a fatal error: dead-letters what the sink held and what was queued, closes the
/// queue, and returns the error to report.
pub fn fail(
    name: &str,
    reason: String,
    held: impl IntoIterator<Item = Ticket>,
    rx: &Receiver<Batch>,
    dead: &DeadLetterTx,
    counters: &Counters,
) -> anyhow::Error {
    let error = anyhow::anyhow!(reason).context(format!("sink `{name}` failed"));
    let reason = format!("{error:#}");
    dead_letter(held, &reason, dead, counters);
    for batch in rx.close() {
        let _ = dead.send(DeadLetter::from_whole_batch(&batch, &reason), counters);
    }
    error
}
