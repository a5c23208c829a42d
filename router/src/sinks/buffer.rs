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
//!
//! With `when_full = "drop_oldest"` the writer deletes the oldest segments (see
//! [`crate::buffer::evict`]) until the batch fits, counts what that dropped in the buffer's
//! counters (`dropped_oldest`, `dropped_oldest_bytes`; not dead-lettered), lets go of the holds
//! of sources waiting for those records, and logs the drops at most once a second with the ids
//! and arrival times they covered. Entries the sink has taken stay with it; the log lists them
//! until the sink acknowledges them, and what an earlier run left listed (lost with the sink's
//! memory at a crash or a stop whose grace ran out) is counted as dropped at the start, as
//! recovered and then dropped (`records_in` and `dropped_oldest`), and logged with its ids.
//!
//! When the disk fails (`on_refused` decides): a full disk (`ENOSPC`, `EDQUOT`) is treated
//! like a full buffer — with `when_full = "block"` the writer keeps the batch and tries again
//! once an acknowledgement has freed a segment or after a delay doubling from 100 ms to 5 s
//! (the sources wait meanwhile); with `"drop_newest"` the batch is dropped and dead-lettered;
//! with `"drop_oldest"` the oldest segment is deleted and the append tried again (with nothing
//! left to delete, the batch is dropped and dead-lettered).
//! Any other write or fsync error dead-letters the batch with the error (naming the file and
//! the operation), like a batch that can never fit. Either way the source hears that the
//! batch is done only after it is in the log or in the dead letters. A failed periodic sync
//! is logged and tried again after a growing delay (see [`crate::buffer::log`]).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::buffer::batch as batch_codec;
use crate::buffer::evict::Tally;
use crate::buffer::log::retry_delay;
use crate::buffer::{AppendError, BufferConfig, DiskLog, Fsync, LogFs, RealFs, WhenFull};
use crate::core::accounting::Counters;
use crate::core::dead_letter::DeadLetter;
use crate::core::rate_limit::Repeats;
use crate::core::record::{Batch, Hold};
use crate::queue::{Closed, Receiver, Sender, TimedOut};
use crate::topology::DeadLetterTx;

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
/// bytes appended to the log files, `dropped` the records refused when full, `dropped_oldest`
/// those deleted with the oldest segments); `sink_counters` are the sink's (records the buffer
/// dead-letters count there).
pub fn run(
    name: &str,
    cfg: &BufferConfig,
    rx: Receiver<Batch>,
    to_sink: Sender<Batch>,
    dead: DeadLetterTx,
    counters: Arc<Counters>,
    sink_counters: Arc<Counters>,
) -> anyhow::Result<()> {
    let ends = Ends {
        rx,
        to_sink,
        dead,
        counters,
        sink_counters,
    };
    run_on(Arc::new(RealFs), name, cfg, ends)
}

/// What a buffer reads from, writes to and counts in (see [`run`]).
struct Ends {
    rx: Receiver<Batch>,
    to_sink: Sender<Batch>,
    dead: DeadLetterTx,
    counters: Arc<Counters>,
    sink_counters: Arc<Counters>,
}

/// [`run`], with the log's files reached through `fs`.
fn run_on(fs: Arc<dyn LogFs>, name: &str, cfg: &BufferConfig, ends: Ends) -> anyhow::Result<()> {
    let Ends {
        rx,
        to_sink,
        dead,
        counters,
        sink_counters,
    } = ends;
    let (log, recovery) = DiskLog::open_on(fs, &cfg.dir, cfg.log_config())
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
    count_lost_with_sink(name, &recovery.lost_with_sink, &counters);
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
    let written = Writer {
        shared: &shared,
        cfg,
        dead: &dead,
        counters: &counters,
        sink_counters: &sink_counters,
        warnings: Repeats::new(1, Instant::now()),
        unlogged: Tally::default(),
        drops: Repeats::new(1, Instant::now()),
        owned: Vec::new(),
    }
    .write_from_queue(&rx);
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
    // dead-lettered); a sink that failed dead-letters what it is given, so this ends. Entries
    // of deleted segments the sink holds are waited for too: the list of them is then empty,
    // so the next start counts nothing a clean stop delivered.
    while st.log.pending_entries() > 0 || st.log.left_with_sink() > 0 {
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

/// The writer: appends batches to the log.
struct Writer<'a> {
    shared: &'a Shared,
    cfg: &'a BufferConfig,
    dead: &'a DeadLetterTx,
    counters: &'a Counters,
    sink_counters: &'a Counters,
    warnings: Repeats,
    /// What `drop_oldest` deleted and was not logged yet (one line per second at most).
    unlogged: Tally,
    drops: Repeats,
    /// Scratch for encoding batches.
    owned: Vec<Vec<u8>>,
}

impl Writer<'_> {
    /// Appends every batch from `rx` until it closes, then logs drops not logged yet.
    fn write_from_queue(&mut self, rx: &Receiver<Batch>) -> anyhow::Result<()> {
        let written = self.write_all(rx);
        self.log_drops(true);
        written
    }

    /// Appends every batch from `rx` until it closes.
    fn write_all(&mut self, rx: &Receiver<Batch>) -> anyhow::Result<()> {
        let (shared, cfg) = (self.shared, self.cfg);
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
                        sync_if_due(shared);
                        continue;
                    }
                },
                None => rx.blocking_recv(),
            };
            let Some(mut batch) = next else { return Ok(()) };
            batch.clear_routes();
            // Pieces are appended (or refused) one by one; the hold is let go once every piece
            // is durable, or kept per piece until delivered.
            let hold = batch.take_hold();
            for piece in fitting(batch, piece_target(cfg), &mut self.owned) {
                self.append_piece(piece, hold.as_ref())?;
            }
            drop(hold);
        }
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

/// What the writer does with a batch the log refused ([`on_refused`]).
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    /// The buffer is full: wait until an acknowledgement frees room, then try again.
    WaitForAck,
    /// The disk is full: wait until acknowledgements free a segment, or this long at most,
    /// then try again.
    WaitForSpace(Duration),
    /// Drop the batch (counted as dropped by the buffer) and dead-letter it, with this reason.
    Drop(String),
    /// Delete the oldest segments to free at least this many bytes, then try again (when
    /// nothing is left to delete, the batch is dropped as with `Drop`, with this reason).
    DropOldest(u64, String),
    /// Dead-letter the batch, with this reason.
    DeadLetter(String),
}

/// Decides what happens to a batch the log refused with `e`, after `disk_full_tries` tries
/// that found the disk full: a full disk is a full buffer (`when_full` applies; waits grow
/// from 100 ms to 5 s, so a disk that stays full is not tried in a loop); a batch that can
/// never fit, and any other I/O error (it names the file and the operation), is dead-lettered.
fn on_refused(e: &AppendError, when_full: WhenFull, disk_full_tries: u32) -> Refusal {
    let full = matches!(e, AppendError::Full { .. });
    match when_full {
        WhenFull::Block if full => Refusal::WaitForAck,
        WhenFull::Block if e.is_disk_full() => {
            Refusal::WaitForSpace(retry_delay(disk_full_tries.saturating_add(1)))
        }
        WhenFull::DropNewest if full => Refusal::Drop(format!(
            "disk buffer full (when_full = \"drop_newest\"): {e}"
        )),
        WhenFull::DropNewest if e.is_disk_full() => {
            Refusal::Drop(format!("disk full (when_full = \"drop_newest\"): {e}"))
        }
        WhenFull::DropOldest => match *e {
            AppendError::Full {
                entry_bytes,
                live_bytes,
                max_bytes,
            } => Refusal::DropOldest(
                (live_bytes + entry_bytes).saturating_sub(max_bytes).max(1),
                format!(
                    "disk buffer full and nothing left to delete (when_full = \"drop_oldest\"): {e}"
                ),
            ),
            AppendError::Io(_) if e.is_disk_full() => Refusal::DropOldest(
                // One segment at least: the file system's free space is not the buffer's to know.
                1,
                format!("disk full and nothing left to delete (when_full = \"drop_oldest\"): {e}"),
            ),
            _ => Refusal::DeadLetter(format!("disk buffer: {e}")),
        },
        _ => Refusal::DeadLetter(format!("disk buffer: {e}")),
    }
}

impl Writer<'_> {
    /// Appends one piece of a batch to the log (waiting for room with `when_full = "block"`),
    /// or dead-letters it when it is refused.
    fn append_piece(&mut self, batch: Batch, hold: Option<&Hold>) -> anyhow::Result<()> {
        let (shared, cfg) = (self.shared, self.cfg);
        let name = &shared.name;
        let records = crate::buffer::batch::encode(&batch, &mut self.owned);
        let mut st = shared.lock();
        let mut disk_full_tries = 0u32;
        let outcome = loop {
            let refused = match st.log.append(&records) {
                Ok(appended) => break Ok(appended),
                Err(e) => e,
            };
            match on_refused(&refused, cfg.when_full, disk_full_tries) {
                Refusal::WaitForAck => {
                    // Backpressure: wait for acknowledgements to free a segment. The sink's
                    // queue fills meanwhile, and the sources slow down.
                    st = shared
                        .changed
                        .wait(st)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                Refusal::WaitForSpace(delay) => {
                    disk_full_tries += 1;
                    if let Some(suppressed) = self.warnings.admit(Instant::now()) {
                        tracing::warn!(
                            suppressed,
                            "sink `{name}`: disk buffer: {refused}; the disk is full: the batch \
                             waits (when_full = \"block\"), next try in {} ms",
                            delay.as_millis()
                        );
                    }
                    // Deleting an acknowledged segment frees space: try again then, or after
                    // the delay (space may be freed by others).
                    let bytes = st.log.bytes();
                    let until = Instant::now() + delay;
                    loop {
                        let now = Instant::now();
                        if now >= until || st.log.bytes() < bytes {
                            break;
                        }
                        st = shared
                            .changed
                            .wait_timeout(st, until - now)
                            .unwrap_or_else(PoisonError::into_inner)
                            .0;
                    }
                }
                Refusal::Drop(reason) => {
                    count_newest_dropped(self.counters, &batch, &records);
                    break Err(reason);
                }
                Refusal::DropOldest(need, reason) => {
                    let plan = st.log.drop_oldest(need);
                    if plan.segments == 0 {
                        count_newest_dropped(self.counters, &batch, &records);
                        break Err(reason);
                    }
                    forget_dropped(&mut st, &plan.dropped);
                    count_oldest_dropped(self.counters, &plan.dropped);
                    self.unlogged.merge(&plan.dropped);
                    // The append is tried again; each turn deletes a segment or ends the loop.
                }
                Refusal::DeadLetter(reason) => break Err(reason),
            }
        };
        drop(records);
        self.log_drops(false);
        let refused = match outcome {
            Ok(appended) => {
                self.counters.add_in(0, appended.bytes);
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
            if let Some(suppressed) = self.warnings.admit(Instant::now()) {
                tracing::warn!(suppressed, "{reason}; the batch is dead-lettered");
            }
            self.dead
                .send(
                    DeadLetter::from_whole_batch(&batch, &reason),
                    self.sink_counters,
                )
                .map_err(|e| anyhow::anyhow!("sink `{name}`: {e}"))?;
        }
        Ok(())
    }
}

impl Writer<'_> {
    /// Logs what `drop_oldest` deleted since the last line, at most once a second (or now, with
    /// `force`), with the ids and the arrival times it covered.
    fn log_drops(&mut self, force: bool) {
        if self.unlogged.is_empty() {
            return;
        }
        let admitted = self.drops.admit(Instant::now());
        if admitted.is_none() && !force {
            return;
        }
        let t = std::mem::take(&mut self.unlogged);
        tracing::warn!(
            "sink `{}`: {}",
            self.shared.name,
            describe_drop(&t, self.cfg.max_bytes)
        );
    }
}

/// Counts what an earlier run lost with the sink's memory (entries of segments `drop_oldest`
/// deleted while the sink held them, not acknowledged when that run ended): as recovered
/// (`records_in`) and dropped (`dropped_oldest`), so the accounting invariant of this run holds;
/// and logs them with their ids and arrival times.
fn count_lost_with_sink(
    name: &str,
    lost: &[crate::buffer::segment::EntryLoc],
    counters: &Counters,
) {
    if lost.is_empty() {
        return;
    }
    let t = crate::buffer::with_sink::tally(lost);
    counters.add_in(t.records, 0);
    count_oldest_dropped(counters, &t);
    let ids = crate::buffer::with_sink::id_ranges(lost.iter().map(|e| e.id), 32);
    let arrived = match t.arrivals {
        Some((from, to)) => format!("arrived from {} to {}", rfc3339(from), rfc3339(to)),
        None => "arrival times unknown".to_owned(),
    };
    tracing::warn!(
        "sink `{name}`: disk buffer (when_full = \"drop_oldest\"): {} records ({} entries, {} \
         bytes; entries {ids}; {arrived}) that the sink held from deleted segments were not \
         acknowledged when the last run ended: counted as dropped (some may have been delivered \
         just before it ended)",
        t.records,
        t.entries,
        t.bytes,
    );
}

/// Counts what `drop_oldest` deleted (`dropped_oldest`, `dropped_oldest_bytes`).
fn count_oldest_dropped(counters: &Counters, t: &Tally) {
    counters
        .dropped_oldest
        .fetch_add(t.records, Ordering::Relaxed);
    counters
        .dropped_oldest_bytes
        .fetch_add(t.bytes, Ordering::Relaxed);
}

/// Counts a batch the buffer refuses (`drop_newest`, or `drop_oldest` with nothing left to
/// delete): it is dead-lettered by the caller.
fn count_newest_dropped(counters: &Counters, batch: &Batch, records: &[&[u8]]) {
    counters.add_dropped(batch.len() as u64);
    counters
        .dropped_bytes
        .fetch_add(crate::buffer::format::entry_len(records), Ordering::Relaxed);
}

/// One line about records `drop_oldest` deleted: how many, their ids and when they arrived.
fn describe_drop(t: &Tally, max_bytes: u64) -> String {
    let mut line = format!(
        "disk buffer full ({max_bytes} bytes; when_full = \"drop_oldest\"): dropped the oldest \
         {} records ({} entries, {} bytes)",
        t.records, t.entries, t.bytes
    );
    if let Some((lo, hi)) = t.ids {
        line.push_str(&format!(", entries {lo} to {hi}"));
    }
    match t.arrivals {
        Some((from, to)) => line.push_str(&format!(
            ", which arrived from {} to {}",
            rfc3339(from),
            rfc3339(to)
        )),
        None => line.push_str(", arrival times unknown"),
    }
    line
}

fn rfc3339(unix_nanos: u64) -> String {
    chrono::DateTime::from_timestamp_nanos(i64::try_from(unix_nanos).unwrap_or(i64::MAX))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Lets go of what the buffer kept for entries `drop_oldest` deleted: the holds of sources
/// waiting for their delivery (they are done: dropped, and counted) and their batches kept for
/// the reader. Entries the sink has keep theirs until it acknowledges them.
fn forget_dropped(st: &mut State, dropped: &Tally) {
    let Some((lo, hi)) = dropped.ids else { return };
    let cursor = st.log.read_cursor();
    st.waiting
        .retain(|id, _| !(lo..=hi).contains(id) || *id < cursor);
    while st.recent.front().is_some_and(|(id, _)| *id <= hi) {
        if let Some((_, old)) = st.recent.pop_front() {
            st.recent_bytes -= old.retained_bytes();
        }
    }
}

/// Syncs the log if the fsync policy says it is time, without holding the lock through the
/// fsyncs (the reader and the sink's acknowledgements go on meanwhile). A failure is logged;
/// the log makes the next try wait (`retry_delay`).
fn sync_if_due(shared: &Shared) {
    let Some(job) = shared.lock().log.begin_sync(Instant::now()) else {
        return;
    };
    let done = job.run();
    let mut st = shared.lock();
    if let Err(e) = st.log.end_sync(&job, done) {
        let now = Instant::now();
        let next = st
            .log
            .sync_deadline(now)
            .map_or(Duration::ZERO, |at| at - now);
        tracing::error!(
            "disk buffer of sink `{}`: {e}; trying again in {} ms",
            shared.name,
            next.as_millis()
        );
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
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use std::path::{Path, PathBuf};
    use std::sync::mpsc;

    use super::*;
    use crate::buffer::faulty::{EIO, ENOSPC, Fault, FaultyFs, Op};
    use crate::buffer::segment::segment_path;
    use crate::buffer::{BufferError, log::ACK_FILE};
    use crate::core::record::{Origin, PositionBase, Span};
    use crate::queue::{Limits, queue};
    use crate::topology::DeadLetters;

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

    /// Long enough for anything that happens at all; only reached when a test fails.
    const LONG: Duration = Duration::from_secs(30);

    const INTERVAL: Fsync = Fsync::Interval(Duration::from_millis(100));

    fn config(dir: &Path, when_full: WhenFull, fsync: Fsync) -> BufferConfig {
        BufferConfig {
            dir: dir.to_path_buf(),
            max_bytes: 1 << 20,
            segment_bytes: 64 << 10,
            when_full,
            fsync,
        }
    }

    fn records(texts: &[&str]) -> Batch {
        let mut data = Vec::new();
        let mut spans = Vec::new();
        for t in texts {
            let start = data.len() as u32;
            data.extend_from_slice(t.as_bytes());
            spans.push(Span {
                start,
                end: data.len() as u32,
            });
        }
        let origin = Origin {
            source: Arc::from("in"),
            arrival_unix_nanos: 1,
            arrival: Instant::now(),
            position: PositionBase::Line(1),
        };
        Batch::new(Bytes::from(data), spans, origin)
    }

    fn texts(b: &Batch) -> Vec<String> {
        b.records()
            .map(|r| String::from_utf8_lossy(r.payload).into_owned())
            .collect()
    }

    /// Tells `released` when the last batch holding it is done with (a source waiting for
    /// `ack = "durable"`).
    struct Released(mpsc::Sender<()>);

    impl Drop for Released {
        fn drop(&mut self) {
            let _ = self.0.send(());
        }
    }

    fn durable(batch: Batch) -> (Batch, mpsc::Receiver<()>) {
        let (tx, rx) = mpsc::channel();
        let hold = Hold {
            token: Arc::new(Released(tx)),
            until_delivered: false,
        };
        (batch.with_hold(hold), rx)
    }

    /// A buffer running on `fs`, with the test as its source (`tx`), its sink (`sink`) and its
    /// dead-letter sink (`dead`).
    struct Harness {
        tx: Sender<Batch>,
        sink: Receiver<Batch>,
        dead: Receiver<DeadLetters>,
        counters: Arc<Counters>,
        sink_counters: Arc<Counters>,
        thread: std::thread::JoinHandle<anyhow::Result<()>>,
    }

    impl Harness {
        fn start(fs: &FaultyFs, cfg: BufferConfig) -> Harness {
            let limits = Limits {
                records_max: 1000,
                bytes_max: 1 << 20,
            };
            let (tx, rx) = queue(limits);
            let (to_sink, sink) = queue(limits);
            let (dead_tx, dead) = queue(limits);
            let counters = Arc::new(Counters::default());
            let sink_counters = Arc::new(Counters::default());
            let ends = Ends {
                rx,
                to_sink,
                dead: DeadLetterTx::new(dead_tx),
                counters: counters.clone(),
                sink_counters: sink_counters.clone(),
            };
            let fs = fs.arc();
            let thread = std::thread::spawn(move || run_on(fs, "out", &cfg, ends));
            Harness {
                tx,
                sink,
                dead,
                counters,
                sink_counters,
                thread,
            }
        }

        fn send(&self, batch: Batch) {
            self.tx.blocking_send(batch).map_err(|_| "closed").unwrap();
        }

        /// The next batch the sink gets.
        fn delivered(&self) -> Batch {
            self.sink
                .blocking_recv_until(Instant::now() + LONG)
                .unwrap()
                .unwrap()
        }

        /// The reasons of the next dead letters.
        fn dead_letters(&self) -> Vec<String> {
            let letters = self
                .dead
                .blocking_recv_until(Instant::now() + LONG)
                .unwrap()
                .unwrap();
            letters.0.into_iter().map(|l| l.reason).collect()
        }

        /// Closes the source, delivers what is left (returning it) and waits for the buffer
        /// to end.
        fn finish(self) -> (anyhow::Result<()>, Vec<Vec<String>>, Receiver<DeadLetters>) {
            drop(self.tx);
            let mut rest = Vec::new();
            while let Some(b) = self
                .sink
                .blocking_recv_until(Instant::now() + LONG)
                .unwrap()
            {
                rest.push(texts(&b));
            }
            (self.thread.join().unwrap(), rest, self.dead)
        }
    }

    fn seg0(dir: &Path) -> PathBuf {
        segment_path(dir, 0)
    }

    /// At most one try per 100 ms (the first retry delay), plus the first try and one more.
    fn assert_no_busy_loop(tries: u64, since: Instant) {
        let elapsed = since.elapsed();
        assert!(
            tries <= 2 + elapsed.as_millis() as u64 / 100,
            "{tries} tries in {elapsed:?}: tried in a loop"
        );
    }

    #[test]
    fn a_refused_append_is_decided_by_when_full_and_the_error() {
        let io = |errno: i32| {
            AppendError::Io(BufferError::Io {
                op: "write",
                path: PathBuf::from("/b/00000000000000000000.seg"),
                source: std::io::Error::from_raw_os_error(errno),
            })
        };
        let full = AppendError::Full {
            entry_bytes: 60,
            live_bytes: 100,
            max_bytes: 120,
        };
        let too_large = AppendError::TooLarge {
            entry_bytes: 200,
            max_bytes: 120,
        };
        let ms = Duration::from_millis;
        assert_eq!(on_refused(&full, WhenFull::Block, 0), Refusal::WaitForAck);
        let enospc = io(ENOSPC);
        for (tries, wait) in [(0, ms(100)), (1, ms(200)), (3, ms(800)), (40, ms(5000))] {
            assert_eq!(
                on_refused(&enospc, WhenFull::Block, tries),
                Refusal::WaitForSpace(wait)
            );
        }
        let Refusal::Drop(r) = on_refused(&full, WhenFull::DropNewest, 0) else {
            panic!("full, drop_newest")
        };
        assert!(
            r.contains("drop_newest") && r.contains("buffer full"),
            "{r}"
        );
        let Refusal::Drop(r) = on_refused(&enospc, WhenFull::DropNewest, 0) else {
            panic!("disk full, drop_newest")
        };
        assert!(
            r.contains("drop_newest") && r.contains("No space left"),
            "{r}"
        );
        let Refusal::DropOldest(need, r) = on_refused(&full, WhenFull::DropOldest, 0) else {
            panic!("full, drop_oldest")
        };
        assert_eq!(need, 40, "what the entry needs beyond max_bytes");
        assert!(r.contains("nothing left to delete"), "{r}");
        let Refusal::DropOldest(need, r) = on_refused(&enospc, WhenFull::DropOldest, 0) else {
            panic!("disk full, drop_oldest")
        };
        assert_eq!(need, 1, "at least one segment");
        assert!(r.contains("No space left"), "{r}");
        for when_full in [WhenFull::Block, WhenFull::DropNewest, WhenFull::DropOldest] {
            let Refusal::DeadLetter(r) = on_refused(&io(EIO), when_full, 0) else {
                panic!("EIO")
            };
            assert!(
                r.contains("cannot write /b/00000000000000000000.seg: Input/output error"),
                "{r}"
            );
            let Refusal::DeadLetter(r) = on_refused(&too_large, when_full, 0) else {
                panic!("too large")
            };
            assert!(r.contains("can never fit"), "{r}");
        }
    }

    /// A full disk with `when_full = "block"`: the batch waits (the source is not told it is
    /// safe, nothing is dead-lettered), tries come at growing intervals, and once there is room
    /// the batch is appended and delivered.
    #[test]
    fn a_full_disk_with_block_keeps_the_batch_until_there_is_room() {
        let dir = tempfile::tempdir().unwrap();
        let fs = FaultyFs::new();
        fs.inject(Fault::new(Op::Write, ENOSPC).on(".seg").forever());
        let h = Harness::start(&fs, config(dir.path(), WhenFull::Block, INTERVAL));
        let (batch, released) = durable(records(&["a", "b"]));
        let started = Instant::now();
        h.send(batch);
        assert!(fs.wait_calls(Op::Write, ".seg", 3, LONG));
        assert_no_busy_loop(fs.calls(Op::Write, ".seg"), started);
        assert!(
            released.try_recv().is_err(),
            "not safe while the disk is full"
        );
        assert!(h.sink.try_recv().is_none());
        assert!(h.dead.try_recv().is_none());
        fs.clear();
        released.recv_timeout(LONG).unwrap();
        assert_eq!(texts(&h.delivered()), ["a", "b"]);
        let counters = (h.counters.clone(), h.sink_counters.clone());
        let (result, rest, dead) = h.finish();
        result.unwrap();
        assert!(rest.is_empty() && dead.try_recv().is_none());
        assert_eq!(
            counters
                .0
                .dropped
                .load(std::sync::atomic::Ordering::Relaxed),
            0
        );
        assert_eq!(
            counters
                .1
                .dead_lettered
                .load(std::sync::atomic::Ordering::Relaxed),
            0
        );
    }

    /// A full disk with `when_full = "drop_newest"`: the batch is dropped (counted) and
    /// dead-lettered with the error; the next batch goes through.
    #[test]
    fn a_full_disk_with_drop_newest_dead_letters_the_batch() {
        let dir = tempfile::tempdir().unwrap();
        let fs = FaultyFs::new();
        fs.inject(Fault::new(Op::Write, ENOSPC).on(".seg"));
        let h = Harness::start(&fs, config(dir.path(), WhenFull::DropNewest, INTERVAL));
        let (batch, released) = durable(records(&["a"]));
        h.send(batch);
        let reasons = h.dead_letters();
        assert_eq!(reasons.len(), 1);
        let r = &reasons[0];
        assert!(
            r.contains("sink `out`: disk full (when_full = \"drop_newest\")"),
            "{r}"
        );
        assert!(r.contains(&*seg0(dir.path()).to_string_lossy()), "{r}");
        assert!(r.contains("No space left on device"), "{r}");
        released.recv_timeout(LONG).unwrap();
        h.send(records(&["b"]));
        assert_eq!(texts(&h.delivered()), ["b"]);
        assert_eq!(
            h.counters
                .dropped
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        h.finish().0.unwrap();
    }

    /// Any other write error dead-letters the batch with the error, naming the file and the
    /// operation. Here the write stops short and the file cannot be cut back: the sink never
    /// gets the torn entry, and the next batch is appended and delivered intact.
    #[test]
    fn a_write_error_dead_letters_the_batch_and_a_torn_entry_is_never_delivered() {
        let dir = tempfile::tempdir().unwrap();
        let fs = FaultyFs::new();
        let h = Harness::start(&fs, config(dir.path(), WhenFull::Block, INTERVAL));
        h.send(records(&["first"]));
        // Kept by the sink, so the segment stays and the torn bytes follow its entry.
        let first = h.delivered();
        fs.inject(Fault::new(Op::Write, EIO).on(".seg").short(10));
        fs.inject(Fault::new(Op::SetLen, EIO).on(".seg"));
        let (batch, released) = durable(records(&["torn"]));
        h.send(batch);
        let reasons = h.dead_letters();
        let r = &reasons[0];
        assert!(
            r.contains("sink `out`: disk buffer: buffer: cannot write"),
            "{r}"
        );
        assert!(r.contains(&*seg0(dir.path()).to_string_lossy()), "{r}");
        assert!(r.contains("Input/output error"), "{r}");
        released.recv_timeout(LONG).unwrap();
        h.send(records(&["after", "it"]));
        assert_eq!(texts(&h.delivered()), ["after", "it"]);
        drop(first);
        let (result, rest, _) = h.finish();
        result.unwrap();
        assert!(rest.is_empty(), "{rest:?}");
    }

    /// With `fsync = "always"`, a batch whose fsync fails is not reported safe by the buffer:
    /// it is dead-lettered with the error (and only then let go); the next batch goes through.
    #[test]
    fn with_always_a_failed_fsync_dead_letters_the_batch() {
        let dir = tempfile::tempdir().unwrap();
        let fs = FaultyFs::new();
        fs.inject(Fault::new(Op::SyncData, EIO).on(".seg"));
        let h = Harness::start(&fs, config(dir.path(), WhenFull::Block, Fsync::Always));
        let (batch, released) = durable(records(&["a"]));
        h.send(batch);
        let reasons = h.dead_letters();
        let r = &reasons[0];
        assert!(r.contains("cannot sync"), "{r}");
        assert!(r.contains(&*seg0(dir.path()).to_string_lossy()), "{r}");
        released.recv_timeout(LONG).unwrap();
        h.send(records(&["b"]));
        assert_eq!(texts(&h.delivered()), ["b"]);
        h.finish().0.unwrap();
    }

    /// Regression: with `fsync = "always"`, an ack file that cannot be written made the writer
    /// try again at once, in a busy loop. Now the tries come at growing intervals, appends go
    /// on, and once the disk recovers the ack point is written.
    #[test]
    fn with_always_a_failing_ack_file_does_not_make_the_writer_spin() {
        let dir = tempfile::tempdir().unwrap();
        let fs = FaultyFs::new();
        fs.inject(Fault::new(Op::Open, EIO).on("acked.tmp").forever());
        let h = Harness::start(&fs, config(dir.path(), WhenFull::Block, Fsync::Always));
        h.send(records(&["a"]));
        drop(h.delivered()); // acknowledged: the ack point moves
        let started = Instant::now();
        h.send(records(&["b"])); // the writer syncs the ack point after this append
        assert!(fs.wait_calls(Op::Open, "acked.tmp", 3, LONG));
        assert_no_busy_loop(fs.calls(Op::Open, "acked.tmp"), started);
        assert_eq!(texts(&h.delivered()), ["b"]);
        fs.clear();
        let (result, rest, _) = h.finish();
        result.unwrap();
        assert!(rest.is_empty());
        assert!(dir.path().join(ACK_FILE).exists());
    }

    /// A periodic fsync that keeps failing: the syncer tries at growing intervals, and batches
    /// are appended and delivered meanwhile.
    #[test]
    fn a_failing_periodic_sync_is_tried_at_growing_intervals_and_delivery_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let fs = FaultyFs::new();
        fs.inject(Fault::new(Op::SyncData, EIO).on(".seg").forever());
        let h = Harness::start(&fs, config(dir.path(), WhenFull::Block, INTERVAL));
        let started = Instant::now();
        h.send(records(&["a"]));
        h.send(records(&["b"]));
        // Kept by the sink (not delivered yet): the segment must be synced.
        let a = h.delivered();
        let b = h.delivered();
        assert_eq!((texts(&a), texts(&b)), (vec!["a".into()], vec!["b".into()]));
        assert!(fs.wait_calls(Op::SyncData, ".seg", 3, LONG));
        assert_no_busy_loop(fs.calls(Op::SyncData, ".seg"), started);
        fs.clear();
        drop((a, b));
        h.finish().0.unwrap();
    }

    /// A sync that fails when the buffer closes (the ack point cannot be written) ends the
    /// buffer with an error naming the sink, the file and the operation. Every batch was
    /// delivered; a restart would deliver them once more, never lose them.
    #[test]
    fn a_sync_failing_at_the_end_fails_the_buffer_with_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let fs = FaultyFs::new();
        fs.inject(Fault::new(Op::Rename, EIO).on("acked.tmp").forever());
        let h = Harness::start(&fs, config(dir.path(), WhenFull::Block, INTERVAL));
        h.send(records(&["a"]));
        drop(h.delivered());
        let (result, _, _) = h.finish();
        let e = format!("{:#}", result.unwrap_err());
        assert!(e.contains("disk buffer of sink `out`"), "{e}");
        assert!(e.contains("cannot rename"), "{e}");
        assert!(
            e.contains(&*dir.path().join("acked.tmp").to_string_lossy()),
            "{e}"
        );
        let (mut log, rec) = DiskLog::open(
            dir.path(),
            config(dir.path(), WhenFull::Block, INTERVAL).log_config(),
        )
        .unwrap();
        assert_eq!(rec.entries, 1, "delivered again after a restart");
        assert_eq!(log.read_next().unwrap().unwrap().id, 0);
    }

    /// The numbers of the records a sink got, in the order it got them.
    fn seqs(batches: &[Vec<String>]) -> Vec<u64> {
        batches
            .iter()
            .flatten()
            .map(|t| t[1..].parse().unwrap())
            .collect()
    }

    /// `when_full = "drop_oldest"` with a sink that takes nothing for a while: four times the
    /// buffer is offered; the oldest segments go, the writer never waits, and once the sink
    /// takes again it gets what it had taken, then the newest records, in order, with exactly
    /// as many records missing as were counted dropped, nothing dead-lettered.
    #[test]
    fn drop_oldest_keeps_the_newest_records_and_counts_what_it_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let fs = FaultyFs::new();
        let h = Harness::start(&fs, config(dir.path(), WhenFull::DropOldest, INTERVAL));
        const BATCHES: u64 = 400;
        const PER: u64 = 100;
        let payload = "x".repeat(90);
        for b in 0..BATCHES {
            let texts: Vec<String> = (0..PER)
                .map(|i| format!("r{:06}{payload}", b * PER + i))
                .collect();
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            h.send(records(&refs));
            if b == 9 {
                // The sink's queue (1000 records) is full before the buffer is.
                let until = Instant::now() + LONG;
                while h.sink.depth().records < 1000 && Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        // Every batch appended (one write each) before the sink takes again.
        assert!(fs.wait_calls(Op::Write, ".seg", BATCHES, LONG));
        let counters = (h.counters.clone(), h.sink_counters.clone());
        let (result, got, dead) = h.finish();
        result.unwrap();
        let got: Vec<Vec<String>> = got
            .into_iter()
            .map(|b| b.into_iter().map(|t| t[..7].to_owned()).collect())
            .collect();
        let seq = seqs(&got);
        let dropped = counters.0.dropped_oldest.load(Ordering::Relaxed);
        let total = BATCHES * PER;
        assert!(dropped > total / 2, "{dropped} dropped of {total}");
        assert_eq!(seq.len() as u64 + dropped, total, "delivered + dropped");
        assert!(seq.windows(2).all(|w| w[0] < w[1]), "out of order or twice");
        // Runs of consecutive records delivered: what the sink's queue held, then (when the
        // reader had read one more entry and waited with it for room in the queue) that one
        // entry, then the newest. Which entry the reader holds depends on when its thread ran:
        // the first after the queue's (one gap) or one read after some drops (two gaps).
        let mut runs: Vec<(u64, u64)> = Vec::new();
        for &s in &seq {
            match runs.last_mut() {
                Some((_, end)) if *end + 1 == s => *end = s,
                _ => runs.push((s, s)),
            }
        }
        assert!(
            matches!(runs.len(), 2 | 3),
            "one or two runs of dropped records: {runs:?}"
        );
        if let [_, (start, end), _] = runs[..] {
            assert!(
                start % PER == 0 && end - start + 1 == PER,
                "the middle run is the one entry the reader held: {runs:?}"
            );
        }
        assert_eq!(
            seq.first(),
            Some(&0),
            "what the sink had taken is delivered"
        );
        assert_eq!(seq.last(), Some(&(total - 1)), "the newest are delivered");
        let bytes = counters.0.dropped_oldest_bytes.load(Ordering::Relaxed);
        assert!(bytes > dropped * 90, "{bytes} bytes for {dropped} records");
        assert_eq!(counters.0.dropped.load(Ordering::Relaxed), 0);
        assert_eq!(counters.1.dead_lettered.load(Ordering::Relaxed), 0);
        assert!(dead.try_recv().is_none());
        // The log was left empty: a restart delivers nothing again.
        let (_, rec) = DiskLog::open(
            dir.path(),
            config(dir.path(), WhenFull::DropOldest, INTERVAL).log_config(),
        )
        .unwrap();
        assert_eq!(rec.entries, 0);
    }

    /// A crash while the sink held entries of segments `drop_oldest` had deleted: the next
    /// start counts them as recovered and dropped (the accounting invariant holds in that run),
    /// delivers the rest, and a clean stop leaves nothing listed.
    #[test]
    fn what_the_sink_held_from_deleted_segments_at_a_crash_is_counted_at_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), WhenFull::DropOldest, INTERVAL);
        let one_entry_a_segment = crate::buffer::LogConfig {
            segment_bytes: 1,
            ..cfg.log_config()
        };
        let (mut log, _) = DiskLog::open(dir.path(), one_entry_a_segment).unwrap();
        let mut owned = Vec::new();
        for i in 0..4 {
            let b = records(&[&format!("r{i}a"), &format!("r{i}b")]);
            log.append(&batch_codec::encode(&b, &mut owned)).unwrap();
        }
        // The sink has taken entries 0 and 1; their segments are deleted, then the crash.
        for id in 0..2 {
            assert_eq!(log.read_next().unwrap().unwrap().id, id);
        }
        for _ in 0..2 {
            assert_eq!(log.drop_oldest(1).left_with_sink, 1);
        }
        assert_eq!(log.left_with_sink(), 2);
        std::mem::forget(log);

        let h = Harness::start(&FaultyFs::new(), cfg);
        let counters = h.counters.clone();
        let (result, got, _) = h.finish();
        result.unwrap();
        assert_eq!(got.concat(), ["r2a", "r2b", "r3a", "r3b"]);
        let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let (recovered, dropped) = (get(&counters.records_in), get(&counters.dropped_oldest));
        assert_eq!((recovered, dropped), (8, 4));
        assert!(get(&counters.dropped_oldest_bytes) > 0);
        assert_eq!(recovered, 4 + dropped, "recovered = delivered + dropped");
        assert!(!dir.path().join(crate::buffer::log::LEFT_FILE).exists());
        let (_, rec) = DiskLog::open(dir.path(), cfg_log(dir.path())).unwrap();
        assert!(rec.lost_with_sink.is_empty(), "counted once");
    }

    fn cfg_log(dir: &Path) -> crate::buffer::LogConfig {
        config(dir, WhenFull::DropOldest, INTERVAL).log_config()
    }

    /// A full disk with `when_full = "drop_oldest"`: the oldest segment goes (what the sink
    /// has taken of it stays with the sink, the rest is counted dropped) and the batch is
    /// appended; with nothing left to delete, the batch is dropped and dead-lettered.
    #[test]
    fn a_full_disk_with_drop_oldest_deletes_the_oldest_segment_or_else_the_batch() {
        let dir = tempfile::tempdir().unwrap();
        let fs = FaultyFs::new();
        fs.inject(Fault::new(Op::Write, ENOSPC).on(".seg"));
        let h = Harness::start(&fs, config(dir.path(), WhenFull::DropOldest, INTERVAL));
        h.send(records(&["a"]));
        let reasons = h.dead_letters();
        assert!(
            reasons[0].contains("disk full and nothing left to delete"),
            "{reasons:?}"
        );
        assert_eq!(h.counters.dropped.load(Ordering::Relaxed), 1);
        // 1000 records fill the sink's queue; the reader then takes "b" (when is not
        // observable: both cases are checked); "c0" waits in the log.
        let filler = vec!["f"; 1000];
        h.send(records(&filler));
        let until = Instant::now() + LONG;
        while h.sink.depth().records < 1000 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(1));
        }
        h.send(records(&["b"]));
        h.send(records(&["c0"]));
        // Larger than a segment: the first segment (filler, b, c0) is finished before it.
        let big = "y".repeat(70 << 10);
        h.send(records(&[&big]));
        h.send(records(&["d"]));
        assert!(fs.wait_calls(Op::Write, ".seg", 6, LONG));
        fs.inject(Fault::new(Op::Write, ENOSPC).on(".seg"));
        h.send(records(&["e"]));
        assert!(fs.wait_calls(Op::Write, ".seg", 8, LONG));
        let counters = h.counters.clone();
        let (result, rest, dead) = h.finish();
        result.unwrap();
        let rest: Vec<String> = rest.into_iter().flatten().collect();
        let took_b = rest.get(1000).is_some_and(|t| t == "b");
        let short: Vec<&str> = rest.iter().map(|t| &t[..t.len().min(3)]).collect();
        assert_eq!(rest.len(), 1003 + usize::from(took_b), "{short:?}");
        assert!(
            rest[..1000].iter().all(|t| t == "f"),
            "the sink had the filler"
        );
        assert_eq!(
            rest[rest.len() - 3..],
            [big, "d".to_owned(), "e".to_owned()]
        );
        let dropped = counters.dropped_oldest.load(Ordering::Relaxed);
        assert_eq!(
            dropped,
            if took_b { 1 } else { 2 },
            "c0, and b unless taken"
        );
        assert_eq!(counters.dropped.load(Ordering::Relaxed), 1, "a");
        assert!(dead.try_recv().is_none());
    }
}
