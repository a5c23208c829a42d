//! A sink's disk buffer, wired in front of the sink: batches from the sink's queue are appended
//! to the [`DiskLog`], read back in order and handed to the sink through a second (small) queue;
//! an entry is acknowledged in the log once the sink is done with every record of it (written,
//! or dead-lettered), which the [`Hold`] on the read-back batch reports when it is dropped.
//!
//! Two threads share the log under one lock: the *writer* takes batches from the sink's queue,
//! appends them (applying `when_full`), syncs by the fsync policy and lets the batch go (so a
//! source waiting for its records to be `durable` hears of it); the *reader* hands entries to
//! the sink, recovered ones first. When the sink's queue closes, the writer waits until every
//! entry is acknowledged, then closes the log (persisting the ack point), so a clean stop leaves
//! nothing to deliver again.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use bytes::Bytes;

use crate::buffer::batch as batch_codec;
use crate::buffer::{AppendError, BufferConfig, DiskLog, Fsync, WhenFull};
use crate::core::accounting::Counters;
use crate::core::dead_letter::DeadLetter;
use crate::core::rate_limit::Repeats;
use crate::core::record::{Batch, Hold};
use crate::topology::DeadLetterTx;
use crate::topology::queue::{Closed, Receiver, Sender, TimedOut};

struct State {
    log: DiskLog,
    /// The sink's queue has closed: nothing more will be appended.
    inbound_closed: bool,
    /// Holds of sources that wait for delivery, by entry id.
    waiting: HashMap<u64, Vec<Hold>>,
    /// The batches of the newest entries, oldest first (at most [`RECENT_BYTES_MAX`]): the
    /// reader hands these to the sink as they are instead of reading the entry back.
    recent: VecDeque<(u64, Batch)>,
    recent_bytes: u64,
}

/// Bytes of recently appended batches kept for the reader.
pub const RECENT_BYTES_MAX: u64 = 8 << 20;

struct Shared {
    name: String,
    state: Mutex<State>,
    /// Signalled on every append, acknowledgement and close.
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Updates are single calls into the log plus plain assignments: a poisoned lock (a
        // panic elsewhere) still holds a usable log.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Acknowledges entry `id` when dropped: the sink is done with all of its records.
struct Receipt {
    id: u64,
    shared: Arc<Shared>,
}

impl Drop for Receipt {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        if let Err(e) = st.log.ack(self.id) {
            tracing::error!("disk buffer of sink `{}`: {e}", self.shared.name);
        }
        st.waiting.remove(&self.id);
        drop(st);
        self.shared.changed.notify_all();
    }
}

/// Opens the buffer of sink `name` and runs it: reads `rx` (the sink's queue) into the log and
/// the log into `to_sink`, until `rx` closes and every entry is acknowledged. `counters` are the
/// buffer's own (`buffers.NAME`: `records_in` the records recovered at start, `bytes_in` the
/// bytes appended to the log files, `dropped` the records refused when full); `sink_counters`
/// are the sink's (records the buffer dead-letters count there).
pub fn run(
    name: &str,
    cfg: &BufferConfig,
    rx: Receiver<Batch>,
    to_sink: Sender<Batch>,
    dead: DeadLetterTx,
    counters: Arc<Counters>,
    sink_counters: Arc<Counters>,
) -> anyhow::Result<()> {
    let (log, recovery) = DiskLog::open(&cfg.dir, cfg.log_config())
        .map_err(|e| anyhow::anyhow!("disk buffer of sink `{name}`: {e}"))?;
    for damage in &recovery.damages {
        tracing::warn!("disk buffer of sink `{name}`: {damage}");
    }
    if recovery.entries > 0 {
        tracing::info!(
            "disk buffer of sink `{name}` ({}): {} records from an earlier run are delivered first",
            cfg.dir.display(),
            recovery.records
        );
    }
    counters.add_in(recovery.records, 0);
    let shared = Arc::new(Shared {
        name: name.to_owned(),
        state: Mutex::new(State {
            log,
            inbound_closed: false,
            waiting: HashMap::new(),
            recent: VecDeque::new(),
            recent_bytes: 0,
        }),
        changed: Condvar::new(),
    });
    let reader = {
        let shared = shared.clone();
        let dead = dead.clone();
        let sink_counters = sink_counters.clone();
        std::thread::Builder::new()
            .name(format!("buf-{name}").chars().take(15).collect())
            .spawn(move || read_into_sink(&shared, &to_sink, &dead, &sink_counters))
            .map_err(|e| anyhow::anyhow!("cannot start a thread: {e}"))?
    };
    // With `fsync = "always"` the writer syncs each entry before letting its batch go; otherwise
    // a syncer thread does the periodic syncs, so appends never wait for the disk.
    let syncer = if cfg.fsync == Fsync::Always {
        None
    } else {
        let shared = shared.clone();
        let started = std::thread::Builder::new()
            .name(format!("sync-{name}").chars().take(15).collect())
            .spawn(move || sync_periodically(&shared));
        match started {
            Ok(handle) => Some(handle),
            Err(e) => {
                let _ = reader.join();
                return Err(anyhow::anyhow!("cannot start a thread: {e}"));
            }
        }
    };
    let written = write_from_queue(&shared, cfg, &rx, &dead, &counters, &sink_counters);
    let mut st = shared.lock();
    st.inbound_closed = true;
    shared.changed.notify_all();
    drop(st);
    // The final sync below must not run beside one of the syncer's.
    if let Some(syncer) = syncer {
        let _ = syncer.join();
    }
    let mut st = shared.lock();
    // Everything appended is acknowledged once the sink has dealt with it (written or
    // dead-lettered); a sink that failed dead-letters what it is given, so this ends.
    while st.log.pending_entries() > 0 {
        st = shared
            .changed
            .wait(st)
            .unwrap_or_else(PoisonError::into_inner);
    }
    // Persist the ack point: a clean stop leaves nothing to deliver again.
    let synced = st.log.sync();
    drop(st);
    let _ = reader.join();
    synced.map_err(|e| anyhow::anyhow!("disk buffer of sink `{name}`: {e}"))?;
    written
}

/// The writer: appends every batch from `rx` until it closes.
fn write_from_queue(
    shared: &Shared,
    cfg: &BufferConfig,
    rx: &Receiver<Batch>,
    dead: &DeadLetterTx,
    counters: &Counters,
    sink_counters: &Counters,
) -> anyhow::Result<()> {
    let mut warnings = Repeats::new(1, Instant::now());
    let mut owned = Vec::new();
    loop {
        let deadline = if cfg.fsync == Fsync::Always {
            shared.lock().log.sync_deadline(Instant::now())
        } else {
            None
        };
        let next = match deadline {
            Some(at) => match rx.blocking_recv_until(at) {
                Ok(b) => b,
                Err(TimedOut) => {
                    if cfg.fsync == Fsync::Always {
                        sync_if_due(shared);
                    }
                    continue;
                }
            },
            None => rx.blocking_recv(),
        };
        let Some(mut batch) = next else { return Ok(()) };
        batch.clear_routes();
        // Pieces are appended (or refused) one by one; the hold is let go once every piece is
        // durable, or kept per piece until delivered.
        let hold = batch.take_hold();
        for piece in fitting(batch, piece_target(cfg), &mut owned) {
            append_piece(
                shared,
                cfg,
                piece,
                hold.as_ref(),
                dead,
                counters,
                sink_counters,
                &mut warnings,
                &mut owned,
            )?;
        }
        drop(hold);
    }
}

/// Entries are kept to at most a quarter of `max_bytes` (so a sink can deliver one while the
/// next is appended), within the format's limit.
fn piece_target(cfg: &BufferConfig) -> u64 {
    (cfg.max_bytes / 4).min(crate::buffer::format::MAX_ENTRY_BYTES as u64)
}

/// Cuts `batch` into pieces, in order, whose buffer entries are at most `target` bytes. A piece
/// holds at least one record, so a record larger than `target` goes alone (the log refuses it
/// only if it exceeds the buffer's limit). Halves until it fits: an ordinary batch is one piece.
fn fitting(batch: Batch, target: u64, owned: &mut Vec<Vec<u8>>) -> Vec<Batch> {
    let mut todo = vec![batch];
    let mut out = Vec::new();
    while let Some(mut b) = todo.pop() {
        let bytes = crate::buffer::format::entry_len(&batch_codec::encode(&b, owned));
        if bytes <= target || b.len() <= 1 {
            out.push(b);
        } else {
            let rest = b.split_off(b.len() / 2);
            todo.push(rest);
            todo.push(b);
        }
    }
    out
}

/// Appends one piece of a batch to the log (waiting for room with `when_full = "block"`), or
/// dead-letters it when it is refused.
#[allow(clippy::too_many_arguments)]
fn append_piece(
    shared: &Shared,
    cfg: &BufferConfig,
    batch: Batch,
    hold: Option<&Hold>,
    dead: &DeadLetterTx,
    counters: &Counters,
    sink_counters: &Counters,
    warnings: &mut Repeats,
    owned: &mut Vec<Vec<u8>>,
) -> anyhow::Result<()> {
    let name = &shared.name;
    {
        let records = crate::buffer::batch::encode(&batch, owned);
        let mut st = shared.lock();
        let outcome = loop {
            match st.log.append(&records) {
                Ok(appended) => break Ok(appended),
                Err(AppendError::Full { .. }) if cfg.when_full == WhenFull::Block => {
                    // Backpressure: wait for acknowledgements to free a segment. The sink's
                    // queue fills meanwhile, and the sources slow down.
                    st = shared
                        .changed
                        .wait(st)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                Err(e @ AppendError::Full { .. }) => {
                    counters.add_dropped(batch.len() as u64);
                    break Err(format!(
                        "disk buffer full (when_full = \"drop_newest\"): {e}"
                    ));
                }
                Err(e) => break Err(format!("disk buffer: {e}")),
            }
        };
        drop(records);
        let refused = match outcome {
            Ok(appended) => {
                counters.add_in(0, appended.bytes);
                if let Some(hold) = hold
                    && hold.until_delivered
                {
                    st.waiting
                        .entry(appended.id)
                        .or_default()
                        .push(hold.clone());
                }
                // Kept for the reader, which then need not read the entry back.
                st.recent_bytes += batch.retained_bytes();
                st.recent.push_back((appended.id, batch));
                while st.recent_bytes > RECENT_BYTES_MAX
                    && let Some((_, old)) = st.recent.pop_front()
                {
                    st.recent_bytes -= old.retained_bytes();
                }
                shared.changed.notify_all();
                None
            }
            Err(reason) => Some((reason, batch)),
        };
        drop(st);
        if refused.is_none() && cfg.fsync == Fsync::Always {
            sync_if_due(shared);
        } else {
            // The syncer may be waiting for the first entry since its last sync.
            shared.changed.notify_all();
        }
        if let Some((reason, batch)) = refused {
            let reason = format!("sink `{name}`: {reason}");
            if let Some(suppressed) = warnings.admit(Instant::now()) {
                tracing::warn!(suppressed, "{reason}; the batch is dead-lettered");
            }
            dead.send(DeadLetter::from_whole_batch(&batch, &reason), sink_counters)
                .map_err(|e| anyhow::anyhow!("sink `{name}`: {e}"))?;
        }
    }
    Ok(())
}

/// Syncs the log if the fsync policy says it is time, without holding the lock through the
/// fsyncs (the reader and the sink's acknowledgements go on meanwhile).
fn sync_if_due(shared: &Shared) {
    let job = shared.lock().log.begin_sync(Instant::now());
    let result = match job {
        Ok(Some(job)) => {
            let done = job.run();
            shared.lock().log.end_sync(&job, done)
        }
        Ok(None) => Ok(()),
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        tracing::error!("disk buffer of sink `{}`: {e}", shared.name);
    }
}

/// The syncer: syncs whenever the log says a sync is due, until the sink's queue has closed.
fn sync_periodically(shared: &Shared) {
    let mut st = shared.lock();
    while !st.inbound_closed {
        let now = Instant::now();
        match st.log.sync_deadline(now) {
            Some(at) if at <= now => {
                drop(st);
                sync_if_due(shared);
                st = shared.lock();
            }
            Some(at) => {
                st = shared
                    .changed
                    .wait_timeout(st, at - now)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            None => {
                st = shared
                    .changed
                    .wait(st)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        }
    }
}

/// The reader: hands every entry to the sink, in order, until the writer is done and every
/// entry has been handed out. If the sink is gone, its records are dead-lettered.
fn read_into_sink(
    shared: &Arc<Shared>,
    to_sink: &Sender<Batch>,
    dead: &DeadLetterTx,
    sink_counters: &Counters,
) {
    let name = &shared.name;
    loop {
        let next = {
            let mut st = shared.lock();
            loop {
                if let Some(id) = st.log.peek_next_id() {
                    // Batches of entries acknowledged before they were handed out (or handed
                    // out from the file) are of no more use.
                    while st.recent.front().is_some_and(|(r, _)| *r < id) {
                        if let Some((_, old)) = st.recent.pop_front() {
                            st.recent_bytes -= old.retained_bytes();
                        }
                    }
                    if st.recent.front().is_some_and(|(r, _)| *r == id)
                        && let Some((_, batch)) = st.recent.pop_front()
                    {
                        st.recent_bytes -= batch.retained_bytes();
                        st.log.skip_next();
                        break Some((id, Next::Kept(batch)));
                    }
                }
                match st.log.read_next() {
                    Ok(Some(e)) => break Some((e.id, Next::Read(e))),
                    Ok(None) if st.inbound_closed => break None,
                    Ok(None) => {}
                    // An entry that cannot be read back is counted as acknowledged by the log;
                    // the ones after it are still delivered.
                    Err(e) => {
                        tracing::error!("disk buffer of sink `{name}`: {e}");
                        continue;
                    }
                }
                st = shared
                    .changed
                    .wait(st)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        };
        let Some((id, next)) = next else { return };
        let receipt = Hold {
            token: Arc::new(Receipt {
                id,
                shared: shared.clone(),
            }),
            until_delivered: true,
        };
        let entry = match next {
            Next::Kept(batch) => {
                send_to_sink(name, batch.with_hold(receipt), to_sink, dead, sink_counters);
                continue;
            }
            Next::Read(entry) => entry,
        };
        let decoded = match batch_codec::decode(&entry.data, &entry.spans) {
            Ok(d) => d,
            Err(e) => {
                // The entry's checksum held, so this is a bug or a foreign writer: deliver the
                // payloads without their metadata rather than lose them.
                tracing::error!("disk buffer of sink `{name}`: entry {}: {e}", entry.id);
                batch_codec::Decoded {
                    spans: entry.spans.get(1..).unwrap_or_default().to_vec(),
                    source: None,
                    arrival_unix_nanos: None,
                    meta: None,
                }
            }
        };
        let origin = batch_codec::origin(&decoded, name, unix_nanos(), Instant::now());
        let mut batch = Batch::new(Bytes::from(entry.data), decoded.spans, origin);
        if let Some(meta) = decoded.meta {
            batch = batch.with_metadata(meta);
        }
        send_to_sink(name, batch.with_hold(receipt), to_sink, dead, sink_counters);
    }
}

/// The next entry for the sink, as the reader finds it.
enum Next {
    /// Appended moments ago: the batch itself, still in memory.
    Kept(Batch),
    /// Read back from the log's file.
    Read(crate::buffer::ReadEntry),
}

/// Passes a batch to the sink; dead-letters it if the sink is gone (it failed).
fn send_to_sink(
    name: &str,
    batch: Batch,
    to_sink: &Sender<Batch>,
    dead: &DeadLetterTx,
    sink_counters: &Counters,
) {
    if let Err(Closed(batch)) = to_sink.blocking_send(batch) {
        let reason = format!("sink `{name}` is not accepting records (it failed)");
        let _ = dead.send(DeadLetter::from_whole_batch(&batch, &reason), sink_counters);
    }
}

fn unix_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::record::{Origin, PositionBase, Span};

    fn batch(lens: &[usize]) -> Batch {
        let mut data = Vec::new();
        let mut spans = Vec::new();
        for (i, &len) in lens.iter().enumerate() {
            let start = data.len() as u32;
            data.extend(std::iter::repeat_n(b'a' + (i % 26) as u8, len));
            spans.push(Span {
                start,
                end: data.len() as u32,
            });
            data.push(b'\n');
        }
        let origin = Origin {
            source: Arc::from("in"),
            arrival_unix_nanos: 1,
            arrival: Instant::now(),
            position: PositionBase::Line(1),
        };
        Batch::new(Bytes::from(data), spans, origin)
    }

    fn payloads(b: &Batch) -> Vec<Vec<u8>> {
        b.records().map(|r| r.payload.to_vec()).collect()
    }

    #[test]
    fn a_batch_larger_than_an_entry_may_be_is_cut_in_order() {
        let mut owned = Vec::new();
        // 1000 records of 100..400 bytes (~250 KB), and one of 50 KB in the middle.
        let mut lens: Vec<usize> = (0..1000).map(|i| 100 + i * 7 % 300).collect();
        lens[500] = 50_000;
        let whole = batch(&lens);
        let target = 32 << 10;
        let pieces = fitting(whole.clone(), target, &mut owned);
        assert!(pieces.len() >= 8, "{} pieces", pieces.len());
        let mut joined = Vec::new();
        for p in &pieces {
            let bytes = crate::buffer::format::entry_len(&batch_codec::encode(p, &mut owned));
            assert!(
                bytes <= target || p.len() == 1,
                "a piece of {} records takes {bytes} bytes",
                p.len()
            );
            joined.extend(payloads(p));
        }
        assert_eq!(joined, payloads(&whole));
        // A batch that fits stays whole.
        assert_eq!(fitting(batch(&[10, 20, 30]), target, &mut owned).len(), 1);
    }
}
