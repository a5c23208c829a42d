//! The file source's reader: one thread that finds files, reads them, and passes batches on.
//!
//! Owns the I/O of the file source; every decision is asked of the pure parts
//! ([`super::rotation::decide`], [`super::schedule::Schedule`], [`super::partial::PartialLine`],
//! [`super::multiline::Joiner`], [`super::checkpoint::Ledger`]). The loop:
//! - with `watch = "events"`, the [`Watcher`] notes changes; a write to a known file makes the
//!   reader look at that path alone (`stat` and its first bytes); a file created, renamed or
//!   deleted where the patterns match asks for a rescan (at most every [`MIN_EVENT_RESCAN`]);
//!   a change elsewhere only has the rotated files still open checked. Nothing noted, nothing
//!   done: the thread sleeps in `poll` until a change, a timer or shutdown. Changes are taken
//!   at most every [`MIN_CHANGE_LOOK`] (10 ms): a steady writer's appends are read in one
//!   batch per look rather than one per `write`, and the first change after a quiet spell is
//!   taken at once;
//! - every `rescan_interval` (and when changes ask), the include patterns are expanded (minus
//!   excludes) and each path is `stat`ed and its first bytes read; [`decide`] says what
//!   changed; a file with bytes to read gets a turn in the [`Schedule`]. A rescan is a
//!   directory listing and one `stat` and one 1 KiB `pread` per file; with `watch = "poll"` it
//!   is the only way changes are found (new lines within one `rescan_interval`, 1 s);
//! - a turn reads at most [`READ_BYTES`] of one file, frames complete lines (byte offsets into
//!   the file, so checkpoints and dead letters can say where), joins them with `multiline`, and
//!   passes the records on as one batch with the attribute `file` (the path);
//! - each batch carries a [`Hold`] (for `ack = "durable" | "delivered"`; with `queued` it counts
//!   as done once queued): when it is dropped, the batch's range of the file is acknowledged to
//!   its [`Ledger`], and the committed offsets are written to the checkpoint file every
//!   `checkpoint_interval` and at shutdown;
//! - at shutdown, reading stops, the source's queue sender is dropped (so the pipeline drains),
//!   and the source waits (at most `shutdown_grace`) for the batches in flight to be
//!   acknowledged before writing the checkpoint file a last time. An unterminated line or a
//!   multi-line record still pending is not passed on: the checkpoint stays before it, and it is
//!   read again, whole, at the next start.
//!
//! Memory: reads go into the source's read buffers ([`READ_BYTES`] each, recycled once the sinks
//! dropped every chunk cut from them, as stdin does, without zeroing); a file has one only while
//! it has more to read. Between reads a file holds only what is still needed (a pending
//! multi-line record, at most `multiline.max_bytes` unless one longer line, and an unterminated
//! line, at most `max_record_bytes`), copied out of the read buffer; a longer line is skipped
//! as it is read and dead-lettered with its first `max_record_bytes`.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};

use crate::core::accounting::Counters;
use crate::core::dead_letter::DeadLetter;
use crate::core::framing::json_errors;
use crate::core::record::{Batch, Hold, Origin, Position, PositionBase, RecordMeta, Span};
use crate::shutdown::Shutdown;
use crate::sources::AckMode;
use crate::sources::file::checkpoint::{self, Book, Ticket};
use crate::sources::file::config::{FileSourceConfig, StartAt};
use crate::sources::file::identity::{FINGERPRINT_BYTES, FileId, Identity};
use crate::sources::file::multiline::{Joined, Joiner, Line, MultilineRules};
use crate::sources::file::partial::PartialLine;
use crate::sources::file::rotation::{Action, Known, Observed, Retired, decide};
use crate::sources::file::schedule::{Schedule, Turn};
use crate::sources::file::watch::{Change, Interest, Look, WatchMode, look, roots};
use crate::sources::file::watcher::{WatchError, Watcher};
use crate::sources::stdin::{BufferPool, Framing, read_fd};
use crate::topology::{DeadLetterClosed, DeadLetterTx, Outlet};

/// Most bytes one turn reads of one file (the schedule's quantum).
pub const READ_BYTES: usize = 256 << 10;

/// Most turns between two looks at timers, acknowledgements and shutdown.
const TURNS_PER_ROUND: usize = 64;

/// Rescans asked for by change notifications (a file created, renamed or deleted) are at most
/// this often; the periodic one is every `rescan_interval`.
pub const MIN_EVENT_RESCAN: Duration = Duration::from_millis(50);

/// Changes noted by the watcher are looked at most this often: under a stream of writes, what
/// is appended meanwhile is read as one (fewer wake-ups of every thread, larger batches); the
/// first write after a quiet spell is looked at at once.
pub const MIN_CHANGE_LOOK: Duration = Duration::from_millis(10);

/// The longest rescan interval when change notifications fail and the source polls.
pub const POLL_FALLBACK: Duration = Duration::from_secs(1);

/// Seconds since the Unix epoch (0 before it).
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Why the file source stopped.
#[derive(Debug, thiserror::Error)]
pub enum FileSourceError {
    /// The checkpoint directory cannot be made.
    #[error("source `{source_name}`: checkpoint_dir {}: {error}", dir.display())]
    CheckpointDir {
        /// The source.
        source_name: String,
        /// The directory.
        dir: PathBuf,
        /// The I/O error.
        error: io::Error,
    },
    /// Waiting for shutdown failed.
    #[error("source `{source_name}`: waiting: {error}")]
    Wait {
        /// The source.
        source_name: String,
        /// The I/O error.
        error: io::Error,
    },
    /// The dead-letter sink is gone.
    #[error("source `{0}`: {1}")]
    DeadLetter(String, DeadLetterClosed),
}

/// Acknowledges a batch's range of its file when the last batch holding it is dropped.
struct Ack {
    tx: mpsc::Sender<(FileId, Ticket)>,
    file: FileId,
    ticket: Ticket,
}

impl Drop for Ack {
    fn drop(&mut self) {
        let _ = self.tx.send((self.file, self.ticket));
    }
}

/// A line longer than `max_record_bytes` being skipped.
#[derive(Debug)]
struct Skip {
    start: u64,
    size: u64,
    prefix: Vec<u8>,
    /// The last byte dropped was a CR (part of the line end if an LF follows).
    ends_cr: bool,
}

/// One file the source knows.
struct Tracked {
    path: PathBuf,
    identity: Identity,
    file: Option<File>,
    retired: Option<Retired>,
    /// File offset of `buf[0]`.
    base: u64,
    /// Bytes read and still needed (a pending record, an unterminated line).
    buf: BytesMut,
    /// `buf` is one of the source's read buffers (back to [`FileSource::pool`] when done).
    pooled: bool,
    /// Offset of the next line to frame.
    framed: u64,
    skip: Option<Skip>,
    partial: PartialLine,
    joiner: Option<Joiner>,
    meta: RecordMeta,
    /// Its size when last looked at (for `bytes_behind`).
    size: u64,
    /// Lines still to skip at its beginning (`skip_header_lines`).
    header_left: u64,
}

impl Tracked {
    fn read_to(&self) -> u64 {
        self.base + self.buf.len() as u64
    }

    /// The first byte not passed on yet: the committed offset never goes past it.
    fn needed(&self) -> u64 {
        let mut n = self.framed;
        if let Some(p) = self.joiner.as_ref().and_then(Joiner::pending_start) {
            n = n.min(p);
        }
        if let Some(s) = &self.skip {
            n = n.min(s.start);
        }
        n
    }
}

/// Records and dead letters found in one file, not passed on yet.
#[derive(Default)]
struct Found {
    records: Vec<(u64, u64)>,
    letters: Vec<DeadLetter>,
}

/// The file source (module docs).
pub struct FileSource {
    name: Arc<str>,
    cfg: FileSourceConfig,
    counters: Arc<Counters>,
    outlet: Option<Outlet>,
    dead: Option<DeadLetterTx>,
    shutdown: Shutdown,
    grace: Duration,
    rules: Option<MultilineRules>,
    checkpoint_path: PathBuf,
    book: Book,
    files: HashMap<FileId, Tracked>,
    paths: HashMap<PathBuf, FileId>,
    schedule: Schedule<FileId>,
    acks_tx: mpsc::Sender<(FileId, Ticket)>,
    acks: mpsc::Receiver<(FileId, Ticket)>,
    persisted: Option<Vec<checkpoint::Checkpoint>>,
    scanned_once: bool,
    /// Change notifications (`watch = "events"` while they work).
    watcher: Option<Watcher>,
    /// The paths read (include minus exclude patterns), to match paths changes are noted at.
    interest: Interest,
    /// Every path the last rescan found is matched by [`Self::interest`] (the watcher may
    /// then leave writes elsewhere unnoted).
    scanned_paths_match: bool,
    /// Real paths of symlinked files, to the paths (links) they are known by.
    aliases: HashMap<PathBuf, PathBuf>,
    /// Files not read because of `ignore_older_than`: their identity and size then.
    ignored: HashMap<PathBuf, (FileId, u64)>,
    rescan_interval: Duration,
    last_scan: Option<Instant>,
    /// Read buffers of [`READ_BYTES`], recycled once the sinks dropped every chunk cut from
    /// them (no page faults or zeroing of fresh memory per read).
    pool: BufferPool,
    /// Stops this source alone (a reload removing or changing it).
    stop: Option<Shutdown>,
    /// When changes were last noted and looked at ([`MIN_CHANGE_LOOK`]).
    last_change_look: Option<Instant>,
}

impl FileSource {
    /// A source named `name` passing batches to `outlet` until `shutdown`; at shutdown it waits
    /// at most `grace` for its batches to be acknowledged. Reads the checkpoint file (a damaged
    /// one is reported and ignored: files start per `start_at`) and makes `checkpoint_dir`.
    pub fn new(
        name: &str,
        cfg: FileSourceConfig,
        counters: Arc<Counters>,
        outlet: Outlet,
        dead: DeadLetterTx,
        shutdown: Shutdown,
        grace: Duration,
    ) -> Result<FileSource, FileSourceError> {
        std::fs::create_dir_all(&cfg.checkpoint_dir).map_err(|error| {
            FileSourceError::CheckpointDir {
                source_name: name.to_owned(),
                dir: cfg.checkpoint_dir.clone(),
                error,
            }
        })?;
        let checkpoint_path = cfg.checkpoint_dir.join(format!("{name}.json"));
        counters
            .file_source
            .store(1, std::sync::atomic::Ordering::Relaxed);
        let loaded = match checkpoint::load(&checkpoint_path) {
            Ok(c) => c.unwrap_or_default(),
            Err(e) => {
                tracing::error!(
                    "source `{name}`: {e}; ignoring it: files are read per start_at as if seen \
                     for the first time (it is replaced at the next checkpoint)"
                );
                Vec::new()
            }
        };
        let rules = cfg.multiline.as_ref().and_then(|m| {
            // Checked when the config was read.
            let start_pattern = super::multiline::compile_start_pattern(&m.start_pattern).ok()?;
            Some(MultilineRules {
                start_pattern,
                max_lines: m.max_lines,
                max_bytes: m.max_bytes,
                timeout: m.timeout,
            })
        });
        let interest = Interest::new(&cfg.include, &cfg.exclude);
        let (acks_tx, acks) = mpsc::channel();
        let cfg_rescan = cfg.rescan_interval;
        Ok(FileSource {
            name: Arc::from(name),
            schedule: Schedule::new(cfg.max_open_files),
            cfg,
            counters,
            outlet: Some(outlet),
            dead: Some(dead),
            shutdown,
            grace,
            rules,
            checkpoint_path,
            book: Book::new(loaded, unix_now()),
            files: HashMap::new(),
            paths: HashMap::new(),
            acks_tx,
            acks,
            persisted: None,
            scanned_once: false,
            watcher: None,
            interest,
            scanned_paths_match: true,
            aliases: HashMap::new(),
            ignored: HashMap::new(),
            rescan_interval: cfg_rescan,
            last_scan: None,
            pool: BufferPool::new(READ_BYTES),
            stop: None,
            last_change_look: None,
        })
    }

    /// Also stops when `stop` is triggered (a reload removing or replacing this source alone);
    /// it stops the same way as at shutdown, checkpoint written.
    pub fn with_stop(mut self, stop: Shutdown) -> FileSource {
        self.stop = Some(stop);
        self
    }

    fn stopping(&self) -> bool {
        self.shutdown.is_triggered() || self.stop.as_ref().is_some_and(Shutdown::is_triggered)
    }

    /// Reads until shutdown (module docs).
    pub fn run(mut self) -> Result<(), FileSourceError> {
        let wait_err = |name: &Arc<str>, error| FileSourceError::Wait {
            source_name: name.to_string(),
            error,
        };
        let wake = self
            .shutdown
            .wake_fd()
            .map_err(|e| wait_err(&self.name, e))?;
        let stop_wake = match &self.stop {
            Some(s) => Some(s.wake_fd().map_err(|e| wait_err(&self.name, e))?),
            None => None,
        };
        if self.cfg.watch == WatchMode::Events {
            match Watcher::new(self.interest.clone()) {
                Ok(w) => self.watcher = Some(w),
                Err(e) => self.poll_instead(&e),
            }
        }
        let mut next_scan = Instant::now();
        let mut next_persist = Instant::now() + self.cfg.checkpoint_interval;
        while !self.stopping() {
            let now = Instant::now();
            if self.take_changes(now) {
                let soon = self.last_scan.map_or(now, |t| t + MIN_EVENT_RESCAN);
                next_scan = next_scan.min(soon.max(now));
            }
            if now >= next_scan {
                let first = !self.scanned_once;
                self.scan(now)?;
                self.last_scan = Some(now);
                next_scan = now + self.rescan_interval;
                if first {
                    tracing::info!(
                        "source `{}` watching {} files (checkpoints in {})",
                        self.name,
                        self.files.len(),
                        self.checkpoint_path.display()
                    );
                }
            }
            self.timers(now)?;
            self.take_acks();
            let mut turns = 0;
            while turns < TURNS_PER_ROUND && !self.stopping() {
                match self.schedule.turn() {
                    Some(Turn::Read { file }) => self.read_turn(file, None)?,
                    Some(Turn::Open { file, close }) => self.read_turn(file, Some(close))?,
                    Some(Turn::Wait) | None => break,
                }
                turns += 1;
            }
            self.take_acks();
            let now = Instant::now();
            if now >= next_persist {
                self.persist();
                self.publish();
                next_persist = now + self.cfg.checkpoint_interval;
            }
            if turns == TURNS_PER_ROUND || self.schedule.ready_files() > 0 && turns > 0 {
                continue;
            }
            let mut until = next_scan.min(next_persist);
            let mut retired = false;
            for t in self.files.values() {
                retired |= t.retired.is_some();
                let deadlines = [
                    t.partial.deadline(),
                    t.joiner.as_ref().and_then(Joiner::deadline),
                    t.retired.map(|r| r.close_at),
                ];
                for d in deadlines.into_iter().flatten() {
                    until = until.min(d);
                }
            }
            if let Some(w) = &self.watcher {
                w.note_every_write(
                    retired || !self.aliases.is_empty() || !self.scanned_paths_match,
                );
            }
            let mut fds = vec![wake.as_fd()];
            fds.extend(stop_wake.as_ref().map(|f| f.as_fd()));
            let stops = fds.len();
            fds.extend(self.watcher.as_ref().map(Watcher::fd));
            let timeout = until.saturating_duration_since(Instant::now());
            let ready = wait(&fds, timeout).map_err(|e| wait_err(&self.name, e))?;
            let changed = ready.get(stops).copied().unwrap_or(false);
            let rest = self
                .last_change_look
                .map(|t| (t + MIN_CHANGE_LOOK).saturating_duration_since(Instant::now()));
            if changed && let Some(rest) = rest.filter(|r| !r.is_zero()) {
                // Changes again soon after the last look: the rest of `MIN_CHANGE_LOOK`
                // first (shutdown and a stop still end it), so what is written meanwhile is
                // read at once.
                wait(&fds[..stops], rest).map_err(|e| wait_err(&self.name, e))?;
            }
        }
        self.stop();
        Ok(())
    }

    /// Stops reading: closes the source's queue, waits for what is in flight, writes the
    /// checkpoint file.
    fn stop(mut self) {
        self.outlet = None;
        self.dead = None;
        // Files that left their paths are not found again at the next start: their
        // checkpoints would only be kept for ever.
        let retired: Vec<FileId> = self
            .files
            .iter()
            .filter(|(k, t)| t.retired.is_some() && !self.paths.values().any(|p| p == *k))
            .map(|(k, _)| *k)
            .collect();
        for key in retired {
            self.book.forget(key);
        }
        self.files.clear();
        let deadline = Instant::now() + self.grace;
        loop {
            self.take_acks();
            let in_flight: usize = self
                .book_in_flight()
                .into_iter()
                .map(|(_, n)| n)
                .sum::<usize>();
            if in_flight == 0 {
                break;
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                tracing::warn!(
                    "source `{}`: {in_flight} batches not acknowledged within the shutdown \
                     grace; they are read again at the next start",
                    self.name
                );
                break;
            };
            match self.acks.recv_timeout(left) {
                Ok((file, ticket)) => {
                    if let Some(l) = self.book.ledger(file) {
                        l.ack(ticket);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                // Not possible: the source holds a sender.
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        self.persist();
    }

    fn book_in_flight(&mut self) -> Vec<(FileId, usize)> {
        let ids = self.book.ids();
        ids.into_iter()
            .filter_map(|id| self.book.ledger(id).map(|l| (id, l.in_flight())))
            .collect()
    }

    fn take_acks(&mut self) {
        while let Ok((file, ticket)) = self.acks.try_recv() {
            if let Some(l) = self.book.ledger(file) {
                l.ack(ticket);
            }
        }
    }

    /// Writes the checkpoint file if anything changed since the last write.
    fn persist(&mut self) {
        let snapshot = self.book.snapshot(unix_now());
        if self.persisted.as_ref() == Some(&snapshot) {
            return;
        }
        let written = checkpoint::encode(&snapshot)
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                checkpoint::write_atomic(&self.checkpoint_path, &bytes).map_err(|e| e.to_string())
            });
        match written {
            Ok(()) => self.persisted = Some(snapshot),
            Err(e) => tracing::warn!(
                "source `{}`: writing the checkpoint: {e} (tried again in {:?})",
                self.name,
                self.cfg.checkpoint_interval
            ),
        }
    }

    fn excluded(&self, path: &Path) -> bool {
        self.interest.excluded(path)
    }

    /// Whether the include patterns (minus excludes) match `path`.
    fn matches(&self, path: &Path) -> bool {
        self.interest.matches(path)
    }

    /// Change notifications failed: warn and poll (every `rescan_interval`, at most
    /// [`POLL_FALLBACK`]).
    fn poll_instead(&mut self, e: &WatchError) {
        self.watcher = None;
        self.rescan_interval = self.rescan_interval.min(POLL_FALLBACK);
        tracing::warn!(
            "source `{}`: change notifications unavailable ({e}); polling every {:?} instead",
            self.name,
            self.rescan_interval
        );
    }

    /// Watches the directories of the include patterns not watched yet (a missing one is
    /// tried again at the next rescan).
    fn ensure_watches(&mut self) {
        let Some(w) = self.watcher.as_mut() else {
            return;
        };
        for root in roots(&self.cfg.include) {
            if let Err(e) = w.watch(&root.dir, root.recursive) {
                self.poll_instead(&e);
                return;
            }
        }
    }

    /// Handles the changes noted since the last call; `true` when they ask for a rescan.
    fn take_changes(&mut self, now: Instant) -> bool {
        let Some(w) = self.watcher.as_ref() else {
            return false;
        };
        let noted = w.take();
        if noted.rescan || !noted.paths.is_empty() {
            self.last_change_look = Some(now);
        }
        let mut rescan = noted.rescan;
        let mut retired = false;
        let mut head = Vec::with_capacity(FINGERPRINT_BYTES);
        for (path, change) in noted.paths {
            // A root `.` (a pattern without a directory) reports `./name`, which `glob` gives
            // as `name`; a pattern written `./dir/*` keeps the `./`.
            let path = match path.strip_prefix("./") {
                Ok(p) if !self.paths.contains_key(&path) && !self.matches(&path) => p.to_owned(),
                _ => path,
            };
            if change != Change::Data
                && let Some(w) = self.watcher.as_mut()
                && w.watches(&path)
            {
                // A watched directory renamed or deleted: watched again when it is back.
                w.unwatched(&path);
                rescan = true;
            }
            let path = if self.paths.contains_key(&path) {
                path
            } else {
                self.aliases.get(&path).cloned().unwrap_or(path)
            };
            let known = self.paths.contains_key(&path);
            let matched = known || self.matches(&path);
            match look(change, known, matched) {
                Look::Nothing => {}
                Look::Path => rescan |= !self.look_at(&path, now, &mut head),
                Look::Retired => retired = true,
                Look::Rescan => rescan = true,
            }
        }
        if retired && !rescan {
            self.check_retired();
        }
        rescan
    }

    /// Looks again at one known path; `false` when it is not a file there any more (a rescan
    /// sorts that out).
    fn look_at(&mut self, path: &Path, now: Instant, head: &mut Vec<u8>) -> bool {
        let Some(key) = self.paths.get(path).copied() else {
            return false;
        };
        let Ok(meta) = std::fs::metadata(path) else {
            return false;
        };
        if !meta.is_file() {
            return false;
        }
        let id = FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        };
        self.look_again(key, path, id, meta.len(), now, head);
        true
    }

    /// Rotated or deleted files still read through their descriptors: ready when they grew.
    fn check_retired(&mut self) {
        let retired: Vec<FileId> = self
            .files
            .iter()
            .filter(|(_, t)| t.retired.is_some())
            .map(|(k, _)| *k)
            .collect();
        for key in retired {
            let Some(t) = self.files.get_mut(&key) else {
                continue;
            };
            let Some(f) = &t.file else { continue };
            if let Ok(meta) = f.metadata() {
                t.size = meta.len();
                if meta.len() > t.read_to() {
                    self.schedule.ready(key);
                }
            }
        }
    }

    /// Updates the gauges: files watched, bytes behind.
    fn publish(&mut self) {
        use std::sync::atomic::Ordering::Relaxed;
        let mut behind = 0u64;
        for (key, t) in &self.files {
            let size = t.size.max(t.read_to());
            if let Some(l) = self.book.ledger(*key) {
                behind += size.saturating_sub(l.committed());
            }
        }
        self.counters
            .file_watched
            .store(self.files.len() as u64, Relaxed);
        self.counters.file_bytes_behind.store(behind, Relaxed);
    }

    /// The paths the include patterns match now, minus excludes.
    fn expand(&self) -> BTreeSet<PathBuf> {
        let mut out = BTreeSet::new();
        for pattern in &self.cfg.include {
            let Ok(paths) = glob::glob(pattern) else {
                continue;
            };
            for p in paths.flatten() {
                if !self.excluded(&p) {
                    out.insert(p);
                }
            }
        }
        out
    }

    /// Looks at every path (module docs): new files, grown, truncated, rotated, gone.
    fn scan(&mut self, now: Instant) -> Result<(), FileSourceError> {
        let first = !self.scanned_once;
        self.scanned_once = true;
        self.ensure_watches();
        let paths = self.expand();
        self.scanned_paths_match = paths.iter().all(|p| self.matches(p));
        if !self.scanned_paths_match
            && let Some(w) = &self.watcher
        {
            w.note_every_write(true);
        }
        let mut head = Vec::with_capacity(FINGERPRINT_BYTES);
        let wall = SystemTime::now();
        for path in &paths {
            // Symlinks are followed to the file.
            let Ok(meta) = std::fs::metadata(path) else {
                continue;
            };
            if !meta.is_file() {
                continue;
            }
            let id = FileId {
                dev: meta.dev(),
                ino: meta.ino(),
            };
            let size = meta.len();
            match self.paths.get(path).copied() {
                Some(key) => self.look_again(key, path, id, size, now, &mut head),
                None => {
                    let old = self.cfg.ignore_older_than.is_some_and(|age| {
                        meta.modified()
                            .ok()
                            .and_then(|m| wall.duration_since(m).ok())
                            .is_some_and(|d| d > age)
                    });
                    if old && !self.book.knows(id) {
                        let at = match self.ignored.get(path) {
                            Some((was, at)) if *was == id && *at <= size => *at,
                            _ => size,
                        };
                        self.ignored.insert(path.clone(), (id, at));
                        continue;
                    }
                    if read_head(None, path, &mut head).is_err() {
                        continue;
                    }
                    // Written to since it was ignored: what was there then is still not read.
                    let from = self
                        .ignored
                        .remove(path)
                        .filter(|(was, at)| *was == id && *at <= size)
                        .map(|(_, at)| at);
                    self.found(path, id, size, &head, first, from);
                    self.follow_link(path);
                }
            }
        }
        self.ignored.retain(|p, _| paths.contains(p));
        let pruned = self.book.prune(unix_now(), self.cfg.forget_after.as_secs());
        if pruned > 0 {
            tracing::info!(
                "source `{}`: dropped the checkpoints of {pruned} files not found for {:?}",
                self.name,
                self.cfg.forget_after
            );
        }
        // Paths no longer matched (deleted, renamed away, now excluded).
        let gone: Vec<(PathBuf, FileId)> = self
            .paths
            .iter()
            .filter(|(p, _)| !paths.contains(*p))
            .map(|(p, k)| (p.clone(), *k))
            .collect();
        for (path, key) in gone {
            self.paths.remove(&path);
            if self.paths.values().any(|k| *k == key) {
                continue;
            }
            match self.files.get(&key).map(|t| t.file.is_some()) {
                Some(true) => self.retire(key, now),
                Some(false) => {
                    self.files.remove(&key);
                    self.schedule.forget(&key);
                    self.book.forget(key);
                }
                None => {}
            }
        }
        self.check_retired();
        let paths = &self.paths;
        self.aliases.retain(|_, link| paths.contains_key(link));
        self.publish();
        Ok(())
    }

    /// A file found through a symlink: its real directory is watched too, and changes noted
    /// at its real path count for the link.
    fn follow_link(&mut self, path: &Path) {
        let Some(w) = self.watcher.as_mut() else {
            return;
        };
        if !std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
            return;
        }
        let Ok(real) = std::fs::canonicalize(path) else {
            return;
        };
        if let Some(dir) = real.parent()
            && let Err(e) = w.watch(dir, false)
        {
            self.poll_instead(&e);
            return;
        }
        self.aliases.insert(real, path.to_owned());
        w.note_every_write(true);
    }

    /// A path not known before: a new file, a checkpointed one, or one known at another path.
    /// `from`: where to start when the book has no checkpoint of it (it was ignored as old).
    fn found(
        &mut self,
        path: &Path,
        id: FileId,
        size: u64,
        head: &[u8],
        first: bool,
        from: Option<u64>,
    ) {
        if let Some(t) = self.files.get(&id) {
            if t.identity.is(id, head) {
                // The same file at another path (renamed within the include patterns): read
                // on where it was, known by its new path from now on.
                let identity = t.identity;
                self.paths.insert(path.to_owned(), id);
                let fresh = self.tracked(path, identity, 0);
                if let Some(t) = self.files.get_mut(&id) {
                    t.path = fresh.path;
                    t.meta = fresh.meta;
                }
                self.book.update(identity, path);
                return;
            }
            // Its inode was reused: the old file is gone.
            self.drop_file(id);
        }
        let identity = Identity::new(id, head);
        let start = match self.book.offset_of(id, head) {
            Some(offset) if offset <= size => offset,
            Some(offset) => {
                tracing::warn!(
                    "source `{}`: {} is shorter ({size} bytes) than its checkpoint ({offset}); \
                     reading it again from the beginning",
                    self.name,
                    path.display()
                );
                0
            }
            None if from.is_some() => from.unwrap_or(0),
            None if first && self.cfg.start_at == StartAt::End => size,
            None => 0,
        };
        self.book.track(identity, path, start);
        let mut t = self.tracked(path, identity, start);
        t.size = size;
        if start > 0 && self.cfg.skip_header_lines > 0 {
            // Read on from a checkpoint (or its end): the header lines begun before `start`
            // were skipped then; the rest of them still are (a stop in the middle of them).
            t.header_left = match header_left(path, id, start, self.cfg.skip_header_lines) {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(
                        "source `{}`: {}: counting its header lines: {e}; none skipped",
                        self.name,
                        path.display()
                    );
                    0
                }
            };
        }
        self.files.insert(id, t);
        self.paths.insert(path.to_owned(), id);
        if size > start {
            self.schedule.ready(id);
        }
    }

    fn tracked(&self, path: &Path, identity: Identity, start: u64) -> Tracked {
        let attrs: Arc<[(Box<str>, Box<str>)]> =
            vec![("file".into(), path.to_string_lossy().into())].into();
        Tracked {
            path: path.to_owned(),
            identity,
            file: None,
            retired: None,
            base: start,
            buf: BytesMut::new(),
            pooled: false,
            framed: start,
            skip: None,
            partial: PartialLine::new(self.cfg.partial_line_timeout),
            joiner: self.rules.clone().map(Joiner::new),
            meta: RecordMeta {
                attributes: attrs,
                ..RecordMeta::default()
            },
            size: start,
            // From a later offset: `found` counts what is left of the header.
            header_left: if start == 0 {
                self.cfg.skip_header_lines
            } else {
                0
            },
        }
    }

    /// Forgets a file entirely (closed, unscheduled, out of the book and the path map).
    fn drop_file(&mut self, key: FileId) {
        self.files.remove(&key);
        self.schedule.forget(&key);
        self.book.forget(key);
        self.paths.retain(|_, k| *k != key);
    }

    /// A known path looked at again: [`decide`] says what happened.
    fn look_again(
        &mut self,
        key: FileId,
        path: &Path,
        id: FileId,
        size: u64,
        now: Instant,
        head: &mut Vec<u8>,
    ) {
        let Some(t) = self.files.get(&key) else {
            self.paths.remove(path);
            return;
        };
        // Through the descriptor when the path still has the open file.
        let through = t.file.as_ref().filter(|_| id == key);
        if read_head(through, path, head).is_err() {
            return;
        }
        if id == key
            && let Some(t) = self.files.get_mut(&key)
        {
            t.size = size;
        }
        let Some(t) = self.files.get(&key) else {
            return;
        };
        let known = Known {
            identity: t.identity,
            offset: t.read_to(),
            open: t.file.is_some(),
        };
        match decide(&known, &Observed::Present { id, size, head }) {
            Action::Unchanged => {}
            Action::Grew { .. } => {
                if let Some(longer) = t.identity.fingerprint.extend(head) {
                    let identity = Identity {
                        id: key,
                        fingerprint: longer,
                    };
                    self.book.update(identity, path);
                    if let Some(t) = self.files.get_mut(&key) {
                        t.identity = identity;
                    }
                }
                self.schedule.ready(key);
            }
            Action::Truncated { size } => {
                tracing::warn!(
                    "source `{}`: {} was truncated (copytruncate?) to {size} bytes; reading it \
                     again from the beginning",
                    self.name,
                    path.display()
                );
                self.counters
                    .file_truncations
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                // What was read and held is passed on first; it is still the file's content.
                let _ = self.finish_file(key, now);
                let identity = Identity::new(key, head);
                self.book.track(identity, path, 0);
                let mut fresh = self.tracked(path, identity, 0);
                // A writer going on after a truncation writes no header again.
                fresh.header_left = 0;
                fresh.size = size;
                if let Some(t) = self.files.get_mut(&key) {
                    fresh.file = t.file.take();
                    if let Some(f) = &mut fresh.file
                        && f.seek(SeekFrom::Start(0)).is_err()
                    {
                        fresh.file = None;
                        self.schedule.forget(&key);
                    }
                    *t = fresh;
                }
                if size > 0 {
                    self.schedule.ready(key);
                }
            }
            Action::Rotated { .. } => {
                self.paths.remove(path);
                self.retire(key, now);
                self.found(path, id, size, head, false, None);
            }
            Action::Replaced { .. } => {
                self.paths.remove(path);
                if !self.paths.values().any(|k| *k == key) {
                    self.drop_file(key);
                }
                self.found(path, id, size, head, false, None);
            }
            Action::Gone | Action::Vanished => {}
        }
    }

    /// An open file left its path: read it to its end, and on until `rotate_wait`.
    fn retire(&mut self, key: FileId, now: Instant) {
        let Some(t) = self.files.get_mut(&key) else {
            return;
        };
        if t.retired.is_some() {
            return;
        }
        t.retired = Some(Retired::new(t.identity, now, self.cfg.rotate_wait));
        // Written to at a path no pattern may match: every write counts until it is closed.
        if let Some(w) = &self.watcher {
            w.note_every_write(true);
        }
        self.counters
            .file_rotations
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.schedule.pin(key);
        self.schedule.ready(key);
    }

    /// Due partial lines, multi-line records and retired files.
    fn timers(&mut self, now: Instant) -> Result<(), FileSourceError> {
        let keys: Vec<FileId> = self.files.keys().copied().collect();
        for key in keys {
            let Some(t) = self.files.get_mut(&key) else {
                continue;
            };
            let mut found = Found::default();
            if t.skip.is_none()
                && let Some(r) = t.partial.due(now)
            {
                t.framed = r.end;
                let line = Line {
                    start: r.start,
                    end: r.end,
                    next: r.end,
                };
                push_line(t, line, now, &mut found);
            }
            if let Some(j) = t.joiner.as_mut()
                && let Some(r) = j.flush_due(now)
            {
                push_joined(r, &mut found);
            }
            self.pass_on(key, found)?;
            let close = self
                .files
                .get(&key)
                .and_then(|t| t.retired)
                .is_some_and(|r| r.close_due(now));
            if close {
                // A last read to its end, then closed.
                while self.read_once(key, now)? {}
                self.finish_file(key, now)?;
                self.schedule.forget(&key);
                let still_at_a_path = self.paths.values().any(|k| *k == key);
                if still_at_a_path {
                    if let Some(t) = self.files.get_mut(&key) {
                        t.retired = None;
                        t.file = None;
                    }
                } else {
                    self.files.remove(&key);
                    self.book.forget(key);
                }
            }
        }
        Ok(())
    }

    /// Passes on what is held of a file that ends for good (or is read again from 0).
    fn finish_file(&mut self, key: FileId, now: Instant) -> Result<(), FileSourceError> {
        let Some(t) = self.files.get_mut(&key) else {
            return Ok(());
        };
        let mut found = Found::default();
        if t.skip.is_none()
            && let Some(r) = t.partial.finish()
        {
            t.framed = r.end;
            let line = Line {
                start: r.start,
                end: r.end,
                next: r.end,
            };
            push_line(t, line, now, &mut found);
        }
        if let Some(r) = t.joiner.as_mut().and_then(Joiner::finish) {
            push_joined(r, &mut found);
        }
        self.pass_on(key, found)
    }

    /// One turn of the schedule for `key` (`open`: open it first, closing that file).
    fn read_turn(
        &mut self,
        key: FileId,
        open: Option<Option<FileId>>,
    ) -> Result<(), FileSourceError> {
        if let Some(c) = open.flatten().and_then(|c| self.files.get_mut(&c)) {
            // Closed for `max_open_files`: what it held is given up and read again when it is
            // reopened, so closed files hold no memory.
            c.file = None;
            if c.skip.is_none() {
                let n = c.needed();
                recycle(&mut self.pool, c);
                c.base = n;
                c.framed = n;
                c.partial = PartialLine::new(self.cfg.partial_line_timeout);
                c.joiner = self.rules.clone().map(Joiner::new);
            }
        }
        let Some(t) = self.files.get_mut(&key) else {
            self.schedule.forget(&key);
            return Ok(());
        };
        // Opened on `Turn::Open` (or if it was closed meanwhile).
        if t.file.is_none() {
            match open_at(&t.path, key, t.read_to()) {
                Ok(f) => t.file = Some(f),
                Err(e) => {
                    tracing::debug!(
                        "source `{}`: cannot open {}: {e}",
                        self.name,
                        t.path.display()
                    );
                    self.schedule.forget(&key);
                    return Ok(());
                }
            }
        }
        let more = self.read_once(key, Instant::now())?;
        self.schedule.done(key, more);
        Ok(())
    }

    /// Reads up to [`READ_BYTES`] of `key` and passes its records on; `true` when the read
    /// filled the room it had (there may be more).
    fn read_once(&mut self, key: FileId, now: Instant) -> Result<bool, FileSourceError> {
        let max_record = self.cfg.max_record_bytes;
        let Some(t) = self.files.get_mut(&key) else {
            return Ok(false);
        };
        if t.file.is_none() {
            return Ok(false);
        }
        make_room(&mut self.pool, t);
        let want = (t.buf.capacity() - t.buf.len()).min(READ_BYTES);
        let Some(f) = t.file.as_ref() else {
            return Ok(false);
        };
        let n = match read_fd(f.as_fd(), &mut t.buf, want) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!("source `{}`: reading {}: {e}", self.name, t.path.display());
                0
            }
        };
        let mut found = Found::default();
        frame(t, max_record, &self.name, now, &mut found);
        self.pass_on(key, found)?;
        let more = n == want;
        if !more && let Some(t) = self.files.get_mut(&key) {
            // Read to its end for now: what is held moves out of the read buffer.
            keep_held(&mut self.pool, t);
        }
        Ok(more)
    }

    /// Passes `found` on from file `key`: one batch of its records (with the file's range as
    /// its ticket) and its dead letters.
    fn pass_on(&mut self, key: FileId, found: Found) -> Result<(), FileSourceError> {
        let Some(t) = self.files.get_mut(&key) else {
            return Ok(());
        };
        let needed = t.needed();
        // The bytes before what is still needed are done with.
        let cut = needed.clamp(t.base, t.read_to());
        let chunk_base = t.base;
        let data: Bytes = t.buf.split_to((cut - t.base) as usize).freeze();
        t.base = cut;
        if t.skip.is_some() {
            // The rest is the line being skipped.
            t.base += t.buf.len() as u64;
            t.buf.clear();
            t.framed = t.base;
        }
        if t.buf.is_empty() {
            // Nothing held: give the memory back (idle files hold none).
            recycle(&mut self.pool, t);
        }
        let meta = t.meta.clone();
        let Some(ledger) = self.book.ledger(key) else {
            return Ok(());
        };
        if needed <= ledger.sent() && found.records.is_empty() && found.letters.is_empty() {
            return Ok(());
        }
        let ticket = ledger.send(needed);
        let dl_err = |e| FileSourceError::DeadLetter(self.name.to_string(), e);
        let arrival = Instant::now();
        let arrival_unix_nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        let mut letters = found.letters;
        for l in &mut letters {
            l.arrival_unix_nanos = arrival_unix_nanos;
        }
        let records = found.records;
        let bytes: u64 = records.iter().map(|(s, e)| e - s).sum();
        self.counters
            .add_in((records.len() + letters.len()) as u64, bytes);
        let Some(dead) = self.dead.as_ref() else {
            return Ok(());
        };
        if !letters.is_empty() {
            dead.send(letters, &self.counters).map_err(dl_err)?;
        }
        let spans: Vec<Span> = records
            .iter()
            .filter(|(s, e)| *s >= chunk_base && *e <= cut && s <= e)
            .map(|(s, e)| Span {
                start: (s - chunk_base) as u32,
                end: (e - chunk_base) as u32,
            })
            .collect();
        debug_assert_eq!(spans.len(), records.len());
        let origin = Origin {
            source: self.name.clone(),
            arrival_unix_nanos,
            arrival,
            position: PositionBase::None,
        };
        let mut batch = Batch::new(data, spans, origin).with_shared_meta(meta);
        if self.cfg.framing == Framing::Json && !batch.is_empty() {
            let bad = json_errors(batch.data(), batch.spans());
            if !bad.is_empty() {
                let mut keep = vec![true; batch.len()];
                let letters = bad
                    .iter()
                    .map(|(i, msg)| {
                        keep[*i] = false;
                        let reason = format!(
                            "source `{}`: file {} offset {}: {msg}",
                            self.name,
                            t_path(&self.files, key),
                            chunk_base + u64::from(batch.spans()[*i].start)
                        );
                        DeadLetter::of_record(&batch, *i, Position::None, reason)
                    })
                    .collect();
                batch.retain_mask(&keep);
                dead.send(letters, &self.counters).map_err(dl_err)?;
            }
        }
        if batch.is_empty() {
            if let Some(l) = self.book.ledger(key) {
                l.ack(ticket);
            }
            return Ok(());
        }
        self.counters
            .add_out(batch.len() as u64, batch.payload_bytes());
        let queued = self.cfg.ack == AckMode::Queued;
        if !queued {
            batch = batch.with_hold(Hold {
                token: Arc::new(Ack {
                    tx: self.acks_tx.clone(),
                    file: key,
                    ticket,
                }),
                until_delivered: self.cfg.ack == AckMode::Delivered,
            });
        }
        let Some(outlet) = self.outlet.as_ref() else {
            return Ok(());
        };
        outlet.emit(batch, dead, &self.counters).map_err(dl_err)?;
        if queued && let Some(l) = self.book.ledger(key) {
            l.ack(ticket);
        }
        Ok(())
    }
}

/// Makes room in `t.buf` for a read of at least half of [`READ_BYTES`]: what is held (a
/// partial line, a pending record) moves to a recycled buffer, or, when it is long, the buffer
/// grows (bounded by `max_record_bytes` and `multiline.max_bytes`).
fn make_room(pool: &mut BufferPool, t: &mut Tracked) {
    if t.buf.capacity() - t.buf.len() >= READ_BYTES / 2 {
        return;
    }
    if t.buf.len() <= READ_BYTES / 2 {
        let mut next = pool.take();
        next.extend_from_slice(&t.buf);
        recycle(pool, t);
        t.buf = next;
        t.pooled = true;
    } else {
        t.buf.reserve(READ_BYTES);
        t.pooled = false;
    }
}

/// Empties `t.buf`, giving a read buffer back to the pool.
fn recycle(pool: &mut BufferPool, t: &mut Tracked) {
    let mut old = std::mem::take(&mut t.buf);
    if std::mem::take(&mut t.pooled) {
        old.clear();
        pool.give_back(old);
    }
}

/// A file read to its end for now: what it holds moves to memory of its own size and the read
/// buffer goes back to the pool, so a file waiting for more holds only what it must.
fn keep_held(pool: &mut BufferPool, t: &mut Tracked) {
    if t.pooled {
        let held = BytesMut::from(&t.buf[..]);
        recycle(pool, t);
        t.buf = held;
    }
}

fn t_path(files: &HashMap<FileId, Tracked>, key: FileId) -> String {
    files
        .get(&key)
        .map_or_else(String::new, |t| t.path.display().to_string())
}

/// Frames the complete lines of `t` read so far (module docs: offsets, too-long lines).
fn frame(t: &mut Tracked, max_record: usize, source: &Arc<str>, now: Instant, found: &mut Found) {
    // A line being skipped: drop bytes up to its end.
    if let Some(skip) = &mut t.skip {
        match memchr::memchr(b'\n', &t.buf) {
            Some(i) => {
                let cr = if i > 0 {
                    t.buf[i - 1] == b'\r'
                } else {
                    skip.ends_cr
                };
                skip.size = (skip.size + i as u64).saturating_sub(u64::from(cr));
                if let Some(skip) = t.skip.take() {
                    if t.header_left > 0 {
                        // A header line, however long: skipped, not a dead letter.
                        t.header_left -= 1;
                    } else {
                        found
                            .letters
                            .push(too_long(source, &t.path, skip, max_record));
                    }
                }
                let _ = t.buf.split_to(i + 1);
                t.base += i as u64 + 1;
                t.framed = t.base;
            }
            None => {
                skip.size += t.buf.len() as u64;
                if let Some(&last) = t.buf.last() {
                    skip.ends_cr = last == b'\r';
                }
                t.base += t.buf.len() as u64;
                t.framed = t.base;
                t.buf.clear();
                return;
            }
        }
    }
    loop {
        let rel = (t.framed - t.base) as usize;
        let Some(i) = memchr::memchr(b'\n', &t.buf[rel..]) else {
            break;
        };
        let nl = t.framed + i as u64;
        let end = if i > 0 && t.buf[rel + i - 1] == b'\r' {
            nl - 1
        } else {
            nl
        };
        let line = Line {
            start: t.framed,
            end,
            next: nl + 1,
        };
        t.framed = nl + 1;
        if end - line.start > max_record as u64 {
            if t.header_left > 0 {
                // A header line, however long: skipped, not a dead letter.
                t.header_left -= 1;
                continue;
            }
            let from = (line.start - t.base) as usize;
            let skip = Skip {
                start: line.start,
                size: end - line.start,
                prefix: t.buf[from..from + max_record].to_vec(),
                ends_cr: false,
            };
            found
                .letters
                .push(too_long(source, &t.path, skip, max_record));
            continue;
        }
        push_line(t, line, now, found);
    }
    let tail = t.read_to() - t.framed;
    if tail > max_record as u64 + 1 {
        // Too long already: what is held before it is passed on, then it is skipped (its bytes
        // are dropped by `pass_on`, which comes next).
        if let Some(r) = t.joiner.as_mut().and_then(Joiner::finish) {
            push_joined(r, found);
        }
        let rel = (t.framed - t.base) as usize;
        t.partial.observe(t.framed, t.framed, now);
        t.skip = Some(Skip {
            start: t.framed,
            size: tail,
            prefix: t.buf[rel..rel + max_record].to_vec(),
            ends_cr: t.buf.last() == Some(&b'\r'),
        });
    } else {
        let read = t.read_to();
        t.partial.observe(t.framed, read, now);
    }
}

/// Adds one complete line: a record, or a line for the joiner.
fn push_line(t: &mut Tracked, line: Line, now: Instant, found: &mut Found) {
    if t.header_left > 0 {
        // `skip_header_lines`: not a record (the checkpoint passes it like one).
        t.header_left -= 1;
        return;
    }
    match t.joiner.as_mut() {
        Some(j) => {
            let from = (line.start - t.base) as usize;
            let to = (line.end - t.base) as usize;
            let mut out = Vec::new();
            j.push(line, &t.buf[from..to], now, &mut out);
            for r in out {
                push_joined(r, found);
            }
        }
        // Empty lines are skipped.
        None if line.end > line.start => found.records.push((line.start, line.end)),
        None => {}
    }
}

fn push_joined(r: Joined, found: &mut Found) {
    if !r.is_empty() {
        found.records.push((r.start, r.end));
    }
}

/// The dead letter of a line longer than `max_record_bytes`: which file, where, how long.
fn too_long(source: &Arc<str>, path: &Path, skip: Skip, max_record: usize) -> DeadLetter {
    DeadLetter {
        reason: format!(
            "source `{source}`: file {} offset {}: record of {} bytes exceeds max_record_bytes \
             ({max_record})",
            path.display(),
            skip.start,
            skip.size
        ),
        source: source.clone(),
        position: Position::None,
        size: skip.size,
        payload: Bytes::from(skip.prefix),
        truncated: true,
        arrival_unix_nanos: 0,
    }
}

/// Counts the lines begun in the first bytes of a file, fed in order (pure; for
/// `skip_header_lines`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct LinesBegun {
    /// Line ends (LF) seen.
    ends: u64,
    /// The bytes fed so far end inside a line.
    mid_line: bool,
}

impl LinesBegun {
    fn feed(&mut self, bytes: &[u8]) {
        self.ends += memchr::memchr_iter(b'\n', bytes).count() as u64;
        if let Some(&last) = bytes.last() {
            self.mid_line = last != b'\n';
        }
    }

    /// Lines begun: a line cut at the end of what was fed counts (the reader passes a line on
    /// unterminated only after `partial_line_timeout`, and then it was counted as a line).
    fn count(&self) -> u64 {
        self.ends + u64::from(self.mid_line)
    }

    /// Of `skip` header lines, how many are still to come after the bytes fed.
    fn header_left(&self, skip: u64) -> u64 {
        skip.saturating_sub(self.count())
    }
}

/// How many of the first `skip` lines of file `id` at `path` are still to be skipped when it
/// is read from `start`: reads its first bytes until `skip` line ends or `start`.
fn header_left(path: &Path, id: FileId, start: u64, skip: u64) -> io::Result<u64> {
    let f = File::open(path)?;
    let meta = f.metadata()?;
    if meta.dev() != id.dev || meta.ino() != id.ino {
        return Err(io::Error::other("another file is at the path now"));
    }
    let mut begun = LinesBegun::default();
    let mut buf = vec![0u8; 64 << 10];
    let mut at = 0u64;
    while at < start && begun.ends < skip {
        let want = buf
            .len()
            .min(usize::try_from(start - at).unwrap_or(usize::MAX));
        let n = match f.read_at(&mut buf[..want], at) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        begun.feed(&buf[..n]);
        at += n as u64;
    }
    Ok(begun.header_left(skip))
}

/// Reads the first bytes of a file (through `open` if given, else by opening `path`).
fn read_head(open: Option<&File>, path: &Path, head: &mut Vec<u8>) -> io::Result<()> {
    let opened;
    let f = match open {
        Some(f) => f,
        None => {
            opened = File::open(path)?;
            &opened
        }
    };
    head.clear();
    head.resize(FINGERPRINT_BYTES, 0);
    let mut n = 0;
    while n < FINGERPRINT_BYTES {
        match f.read_at(&mut head[n..], n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    head.truncate(n);
    Ok(())
}

/// Opens `path` if it is still file `id`, positioned at `offset`.
fn open_at(path: &Path, id: FileId, offset: u64) -> io::Result<File> {
    let mut f = File::open(path)?;
    let meta = f.metadata()?;
    if meta.dev() != id.dev || meta.ino() != id.ino {
        return Err(io::Error::other("another file is at the path now"));
    }
    f.seek(SeekFrom::Start(offset))?;
    Ok(f)
}

/// Waits for `timeout`, or less if one of `fds` becomes readable (shutdown triggered, this
/// source stopped, a change noted); which of them are readable.
fn wait(fds: &[BorrowedFd<'_>], timeout: Duration) -> io::Result<Vec<bool>> {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let ts = Timespec::try_from(timeout).unwrap_or(Timespec {
        tv_sec: 1,
        tv_nsec: 0,
    });
    let mut fds: Vec<PollFd<'_>> = fds.iter().map(|f| PollFd::new(f, PollFlags::IN)).collect();
    match poll(&mut fds, Some(&ts)) {
        Ok(_) => Ok(fds.iter().map(|f| !f.revents().is_empty()).collect()),
        Err(rustix::io::Errno::INTR) => Ok(vec![false; fds.len()]),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::{Limits, queue};
    use crate::sources::file::config::StartAt;
    use std::io::Write as _;

    type Rx<T> = crate::queue::Receiver<T>;

    /// A source reading `path` from its beginning with `max_record_bytes = max`.
    fn source(
        dir: &Path,
        path: &Path,
        max: usize,
    ) -> (FileSource, Rx<Batch>, Rx<crate::topology::DeadLetters>) {
        source_with(dir, path, max, |_| {})
    }

    /// [`source`] with `change` made to its config.
    fn source_with(
        dir: &Path,
        path: &Path,
        max: usize,
        change: impl FnOnce(&mut FileSourceConfig),
    ) -> (FileSource, Rx<Batch>, Rx<crate::topology::DeadLetters>) {
        let limits = Limits {
            records_max: 1 << 30,
            bytes_max: 1 << 40,
        };
        let (tx, rx) = queue::<Batch>(limits);
        let (dead_tx, dead_rx) = queue(limits);
        let cfg = FileSourceConfig {
            include: vec![path.display().to_string()],
            start_at: StartAt::Beginning,
            checkpoint_dir: dir.join("state"),
            max_record_bytes: max,
            partial_line_timeout: Duration::from_secs(3600),
            ..FileSourceConfig::default()
        };
        let mut cfg = cfg;
        change(&mut cfg);
        let src = FileSource::new(
            "logs",
            cfg,
            Arc::new(Counters::default()),
            Outlet::Stages(tx),
            DeadLetterTx::new(dead_tx),
            Shutdown::new(),
            Duration::from_secs(1),
        )
        .unwrap();
        (src, rx, dead_rx)
    }

    /// One rescan and every turn it gives.
    fn pump(src: &mut FileSource) {
        src.scan(Instant::now()).unwrap();
        while let Some(turn) = src.schedule.turn() {
            match turn {
                Turn::Read { file } => src.read_turn(file, None).unwrap(),
                Turn::Open { file, close } => src.read_turn(file, Some(close)).unwrap(),
                Turn::Wait => break,
            }
        }
    }

    fn payloads(rx: &Rx<Batch>) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(b) = rx.try_recv() {
            out.extend(
                b.records()
                    .map(|r| String::from_utf8_lossy(r.payload).into_owned()),
            );
        }
        out
    }

    fn gauge(v: &std::sync::atomic::AtomicU64) -> u64 {
        v.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Files watched and bytes behind follow what is read and acknowledged; a truncation and
    /// a rotation are counted once each.
    #[test]
    fn metrics_count_files_backlog_rotations_and_truncations() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        let mut file = std::fs::File::create(&path).unwrap();
        let (mut src, rx, _dead) = source_with(dir.path(), &path, 100, |c| {
            c.ack = AckMode::Delivered;
        });
        file.write_all(&b"line\n".repeat(40)).unwrap();
        pump(&mut src);
        src.publish();
        let c = src.counters.clone();
        assert_eq!(gauge(&c.file_watched), 1);
        assert_eq!(gauge(&c.file_source), 1);
        // Read and passed on, not acknowledged: the batch (its Hold) is still in the queue.
        assert_eq!(gauge(&c.file_bytes_behind), 200);
        assert_eq!(payloads(&rx).len(), 40);
        src.take_acks();
        src.publish();
        assert_eq!(gauge(&c.file_bytes_behind), 0);
        // copytruncate: counted, read again from 0.
        file.set_len(0).unwrap();
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        file.write_all(b"after\n").unwrap();
        pump(&mut src);
        assert_eq!(gauge(&c.file_truncations), 1);
        assert_eq!(payloads(&rx), ["after"]);
        // Rename-and-create: counted; both files are known until rotate_wait.
        std::fs::rename(&path, dir.path().join("app.log.1")).unwrap();
        file.write_all(b"late\n").unwrap();
        std::fs::write(&path, "new\n").unwrap();
        pump(&mut src);
        pump(&mut src);
        assert_eq!(gauge(&c.file_rotations), 1);
        assert_eq!(gauge(&c.file_truncations), 1);
        let mut got = payloads(&rx);
        got.sort();
        assert_eq!(got, ["late", "new"]);
        src.take_acks();
        src.publish();
        assert_eq!(gauge(&c.file_watched), 2);
        assert_eq!(gauge(&c.file_bytes_behind), 0);
    }

    #[test]
    fn skip_header_lines_skips_the_first_lines_of_a_file_read_from_its_beginning() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.csv");
        let mut file = std::fs::File::create(&path).unwrap();
        let (mut src, rx, _dead) = source_with(dir.path(), &path, 100, |c| {
            c.skip_header_lines = 2;
        });
        // The header arrives in pieces.
        file.write_all(b"id,name\r\n# units").unwrap();
        pump(&mut src);
        file.write_all(b": none\n1,a\n2,b\n").unwrap();
        pump(&mut src);
        assert_eq!(payloads(&rx), ["1,a", "2,b"]);
        src.take_acks();
        assert_eq!(src.book.snapshot(0)[0].offset, 31);
        // Truncated and written on: a writer going on writes no header again.
        file.set_len(0).unwrap();
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        file.write_all(b"3,c\n").unwrap();
        pump(&mut src);
        assert_eq!(payloads(&rx), ["3,c"]);
    }

    #[test]
    fn lines_begun_counts_line_ends_empty_lines_and_a_cut_last_line() {
        let mut b = LinesBegun::default();
        assert_eq!(b.header_left(2), 2);
        b.feed(b"id,name\r\n");
        assert_eq!((b.count(), b.header_left(2)), (1, 1));
        b.feed(b"# un");
        assert_eq!((b.count(), b.header_left(3)), (2, 1));
        b.feed(b"");
        assert_eq!(b.count(), 2);
        b.feed(b"its\n\n");
        assert_eq!((b.count(), b.header_left(2)), (3, 0));
    }

    /// Stopped with one of two header lines read (and, the second time, the second one half
    /// written): after each restart the rest of the header is skipped, and no data line.
    #[test]
    fn skip_header_lines_goes_on_after_a_restart_in_the_middle_of_the_header() {
        for second in [&b""[..], b"# un"] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("data.csv");
            let mut file = std::fs::File::create(&path).unwrap();
            let header = |c: &mut FileSourceConfig| c.skip_header_lines = 2;
            let (mut src, rx, _dead) = source_with(dir.path(), &path, 100, header);
            file.write_all(b"id,name\n").unwrap();
            file.write_all(second).unwrap();
            pump(&mut src);
            src.stop();
            assert!(payloads(&rx).is_empty());
            let (mut src, rx, _dead) = source_with(dir.path(), &path, 100, header);
            file.write_all(&b"# units: none\n1,a\n2,b\n"[second.len()..])
                .unwrap();
            pump(&mut src);
            assert_eq!(payloads(&rx), ["1,a", "2,b"]);
            src.stop();
            // Past the header: nothing more is skipped.
            let (mut src, rx, _dead) = source_with(dir.path(), &path, 100, header);
            file.write_all(b"3,c\n").unwrap();
            pump(&mut src);
            assert_eq!(payloads(&rx), ["3,c"]);
        }
    }

    /// A header line longer than `max_record_bytes` is a header line all the same: skipped, not
    /// a dead letter, whether it is longer than one read or not.
    #[test]
    fn a_header_line_over_max_record_bytes_is_skipped_without_a_dead_letter() {
        for long in [150usize, READ_BYTES + 10] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("data.csv");
            let mut file = std::fs::File::create(&path).unwrap();
            let (mut src, rx, dead_rx) = source_with(dir.path(), &path, 100, |c| {
                c.skip_header_lines = 1;
            });
            file.write_all(&vec![b'h'; long]).unwrap();
            file.write_all(b"\n1,a\n").unwrap();
            pump(&mut src);
            assert_eq!(payloads(&rx), ["1,a"]);
            assert!(dead_rx.try_recv().is_none());
        }
    }

    #[test]
    fn files_older_than_ignore_older_than_are_read_only_from_their_next_write() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("old.log");
        let fresh = dir.path().join("fresh.log");
        std::fs::write(&old, "stale\n").unwrap();
        std::fs::write(&fresh, "recent\n").unwrap();
        let day_ago = SystemTime::now() - Duration::from_secs(24 * 3600);
        std::fs::File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(day_ago)
            .unwrap();
        let pattern = dir.path().join("*.log");
        let (mut src, rx, _dead) = source_with(dir.path(), &pattern, 100, |c| {
            c.ignore_older_than = Some(Duration::from_secs(3600));
        });
        pump(&mut src);
        assert_eq!(payloads(&rx), ["recent"]);
        assert_eq!(src.files.len(), 1);
        pump(&mut src);
        assert!(payloads(&rx).is_empty());
        // Written to again: only what is new is read.
        let mut f = std::fs::OpenOptions::new().append(true).open(&old).unwrap();
        f.write_all(b"alive\n").unwrap();
        pump(&mut src);
        assert_eq!(payloads(&rx), ["alive"]);
    }

    #[test]
    fn a_skipped_line_whose_crlf_is_split_between_reads_has_its_size_without_the_cr() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        let mut file = std::fs::File::create(&path).unwrap();
        let (mut src, rx, dead_rx) = source(dir.path(), &path, 100);
        file.write_all(&[b'x'; 150]).unwrap();
        file.write_all(b"\r").unwrap();
        pump(&mut src);
        file.write_all(b"\nok\n").unwrap();
        pump(&mut src);
        let letters = dead_rx.try_recv().unwrap().0;
        assert_eq!(letters.len(), 1);
        assert_eq!(letters[0].size, 150);
        assert!(letters[0].reason.contains("offset 0: record of 150 bytes"));
        let batch = rx.try_recv().unwrap();
        assert_eq!(batch.payload(0), b"ok");
    }

    /// Lines of many lengths (some over `max_record_bytes`, some empty, some CRLF) written in
    /// pieces that end anywhere, read after each piece: every line is a record once, or a dead
    /// letter naming its offset and size; lines longer than a read are skipped as they come.
    #[test]
    fn lines_written_in_any_pieces_are_framed_by_offset_exactly_once() {
        let max = 100usize;
        for seed in 0..32u64 {
            let mut rng = seed;
            let mut next = move |n: u64| {
                rng = rng
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                (rng >> 33) % n
            };
            let mut data = Vec::new();
            let mut want_records = Vec::new();
            let mut want_letters = Vec::new();
            for i in 0..3000u64 {
                let len = match next(10) {
                    0 => 101 + next(700) as usize,
                    1 if i % 7 == 0 => (300 << 10) + next(1000) as usize,
                    2 => 0,
                    _ => next(101) as usize,
                };
                let start = data.len() as u64;
                let line: Vec<u8> = (0..len)
                    .map(|k| b'a' + ((i as usize + k) % 26) as u8)
                    .collect();
                data.extend_from_slice(&line);
                data.extend_from_slice(if next(4) == 0 { b"\r\n" } else { b"\n" });
                if len > max {
                    want_letters.push((start, len as u64));
                } else if len > 0 {
                    want_records.push(line);
                }
            }
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("app.log");
            let mut file = std::fs::File::create(&path).unwrap();
            let (mut src, rx, dead_rx) = source(dir.path(), &path, max);
            let mut at = 0;
            while at < data.len() {
                let big = next(3) == 0;
                let piece =
                    (1 + next(if big { 400_000 } else { 300 }) as usize).min(data.len() - at);
                file.write_all(&data[at..at + piece]).unwrap();
                at += piece;
                pump(&mut src);
            }
            let mut got_records = Vec::new();
            while let Some(batch) = rx.try_recv() {
                assert_eq!(
                    batch.record(0).attribute("file"),
                    Some(path.to_str().unwrap())
                );
                got_records.extend(batch.records().map(|r| r.payload.to_vec()));
            }
            let mut got_letters = Vec::new();
            while let Some(letters) = dead_rx.try_recv() {
                for l in letters.0 {
                    let offset: u64 = l
                        .reason
                        .split("offset ")
                        .nth(1)
                        .and_then(|s| s.split(':').next())
                        .and_then(|s| s.parse().ok())
                        .unwrap_or_else(|| panic!("{}", l.reason));
                    assert_eq!(l.payload.len(), max);
                    got_letters.push((offset, l.size));
                }
            }
            assert_eq!(got_records.len(), want_records.len(), "seed {seed}");
            assert!(got_records == want_records, "seed {seed}: records differ");
            assert_eq!(got_letters, want_letters, "seed {seed}");
            // Everything is passed on: the checkpoint is at the end of the file.
            src.take_acks();
            let snapshot = src.book.snapshot(0);
            assert_eq!(snapshot.len(), 1);
            assert_eq!(snapshot[0].offset, data.len() as u64, "seed {seed}");
        }
    }
}
