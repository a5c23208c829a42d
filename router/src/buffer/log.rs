//! [`DiskLog`]: the segmented, acknowledged log over one directory.
//!
//! The log hands entries out in id order ([`DiskLog::read_next`]) and forgets them only when they
//! are acknowledged ([`DiskLog::ack`], in any order). A segment file is deleted once every entry in
//! it is acknowledged and the log has moved on to a newer segment. The lowest unacknowledged id
//! (the *ack point*) is written to the file `acked` (atomically, by rename) whenever the log
//! syncs, so after a restart entries below it are not delivered again. The log reads no clock and
//! starts no thread: the caller passes `now` to [`DiskLog::maybe_sync`]. Every file operation
//! goes through a [`LogFs`] ([`RealFs`] unless [`DiskLog::open_on`] is given another).
//!
//! # When the disk fails
//!
//! - **Append** (a write, or with [`Fsync::Always`] its fsync, or creating a segment): the entry
//!   is not appended and [`AppendError::Io`] names the file and the operation
//!   ([`AppendError::is_disk_full`] tells a full disk from other errors). The bytes written are
//!   cut off again when the file allows it; either way the segment is finished and the next
//!   entry starts a new one, so a torn entry is never followed by another, and a scan (at the
//!   next start) stops before it. The failed entry's id is never used again.
//! - **Sync** ([`SyncJob::run`]: segments, the ack file, the directory): the error names the
//!   file; what the job was to sync is synced by the next job, which is due only after
//!   [`retry_delay`] (doubling up to 5 s), so a disk that keeps failing is not retried in a
//!   loop. The ack point is persisted only by a job that succeeded.
//! - **Read back** ([`DiskLog::read_next`]): [`BufferError::Unreadable`]; the entry is not
//!   delivered in this run, the ack point stays below it and its segment is kept, so the next
//!   start reads it again (or moves it aside if its bytes are bad).
//! - **Open**: a directory that cannot be created or listed, or a segment that cannot be read
//!   ([`BufferError::Read`]), is an error: the log does not start without entries it cannot
//!   see. An ack file that cannot be read only means every entry found is delivered again.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::batch;
use super::evict::{self, EntryState, Fate, SegmentView, Slot};
use super::format::{self, MAX_ENTRY_BYTES};
use super::fs::{LogFile, LogFs, OpenMode, RealFs, is_disk_full};
use super::segment::{self, EntryLoc, SegmentWriter};
use super::with_sink::{self, LeftWithSink};
use crate::core::record::Span;

/// The name of the file holding the persisted ack point.
pub const ACK_FILE: &str = "acked";

/// The temporary file the ack point is written to before it is renamed to [`ACK_FILE`].
pub const ACK_TMP_FILE: &str = "acked.tmp";

/// The file listing the entries of deleted segments the sink had taken and not acknowledged
/// (see [`super::with_sink`]); absent when there are none.
pub const LEFT_FILE: &str = "with-sink";

/// The temporary file the list is written to before it is renamed to [`LEFT_FILE`].
pub const LEFT_TMP_FILE: &str = "with-sink.tmp";

/// The default interval of [`Fsync::Interval`].
pub const DEFAULT_FSYNC_INTERVAL: Duration = Duration::from_millis(100);

/// The default size at which the log starts a new segment (16 MiB).
pub const DEFAULT_SEGMENT_BYTES: u64 = 16 << 20;

/// The default bound on live segment bytes (1 GiB).
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;

/// The wait after the first failure of a retried disk operation (see [`retry_delay`]).
pub const RETRY_DELAY_MIN: Duration = Duration::from_millis(100);

/// The longest wait between two tries of a failing disk operation.
pub const RETRY_DELAY_MAX: Duration = Duration::from_secs(5);

const ACK_MAGIC: [u8; 4] = *b"ERBA";
const ACK_FILE_BYTES: usize = 20;

/// How long to wait before trying a disk operation again after `failures` failures in a row:
/// nothing for none, then [`RETRY_DELAY_MIN`] doubling with each failure, at most
/// [`RETRY_DELAY_MAX`].
pub fn retry_delay(failures: u32) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let factor = 1u32.checked_shl(failures - 1).unwrap_or(u32::MAX);
    RETRY_DELAY_MIN.saturating_mul(factor).min(RETRY_DELAY_MAX)
}

/// When written entries are forced to the disk (`fdatasync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// After every append: an appended entry survives a power loss.
    Always,
    /// By [`DiskLog::maybe_sync`] at most this often (and when a segment is finished): a power
    /// loss may lose the entries of the last interval; a process crash loses nothing.
    Interval(Duration),
    /// Never by the log itself (only by an explicit [`DiskLog::sync`] or [`DiskLog::close`]);
    /// the ack point is still written every [`DEFAULT_FSYNC_INTERVAL`], without fsync.
    Never,
}

impl Default for Fsync {
    fn default() -> Fsync {
        Fsync::Interval(DEFAULT_FSYNC_INTERVAL)
    }
}

/// Settings of a [`DiskLog`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogConfig {
    /// The most bytes of live segments (entries not yet deleted with their segment).
    pub max_bytes: u64,
    /// A segment is finished once the next entry would take it past this size.
    pub segment_bytes: u64,
    /// When entries are forced to the disk.
    pub fsync: Fsync,
}

impl Default for LogConfig {
    fn default() -> LogConfig {
        LogConfig {
            max_bytes: DEFAULT_MAX_BYTES,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            fsync: Fsync::default(),
        }
    }
}

/// A failure of the buffer's own files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BufferError {
    /// The buffer directory cannot be created or listed.
    #[error("buffer directory {}: {source}", path.display())]
    Dir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A file operation failed.
    #[error("buffer: cannot {op} {}: {source}", path.display())]
    Io {
        /// What was being done (`"create"`, `"write"`, `"sync"`, ...).
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A segment could not be read when the log was opened. The log does not open: skipping
    /// the segment would lose its entries, and deleting or moving it would decide for the
    /// operator.
    #[error(
        "buffer: cannot read {} at offset {offset}: {source}; the buffer does not start without \
         its entries (repair the disk, or move the file out of the buffer directory to give \
         them up)",
        path.display()
    )]
    Read {
        /// The segment file.
        path: PathBuf,
        /// Where reading failed (0: opening it or reading its length).
        offset: u64,
        /// The cause.
        source: io::Error,
    },
    /// An entry that was valid when written or recovered cannot be read back now. It is not
    /// delivered in this run (it counts as done, so the sink's work can end); the ack point
    /// stays below it and its segment is kept, so the next start reads it again.
    #[error(
        "buffer: entry {id} at offset {offset} of {} cannot be read ({reason}); it is not \
         delivered now, and its segment is kept for the next start",
        path.display()
    )]
    Unreadable {
        /// The segment file.
        path: PathBuf,
        /// Offset of the entry.
        offset: u64,
        /// The entry id.
        id: u64,
        /// What went wrong.
        reason: String,
    },
}

impl BufferError {
    /// True when the disk is full (or a quota exhausted): space may come back, unlike after
    /// other errors.
    pub fn is_disk_full(&self) -> bool {
        match self {
            BufferError::Io { source, .. } | BufferError::Dir { source, .. } => {
                is_disk_full(source)
            }
            _ => false,
        }
    }
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> BufferError + 'a {
    move |source| BufferError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Why [`DiskLog::append`] did not append.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppendError {
    /// The entry does not fit under `max_bytes` now; it may once entries are acknowledged.
    /// The caller applies its `when_full` policy (wait, or drop the batch).
    #[error("buffer full: {live_bytes} of {max_bytes} bytes in use, entry needs {entry_bytes}")]
    Full {
        /// Bytes the entry needs.
        entry_bytes: u64,
        /// Bytes of live segments.
        live_bytes: u64,
        /// The bound.
        max_bytes: u64,
    },
    /// The entry can never fit (larger than `max_bytes` or than the format allows).
    #[error("batch of {entry_bytes} bytes can never fit in a buffer of {max_bytes} bytes")]
    TooLarge {
        /// Bytes the entry needs.
        entry_bytes: u64,
        /// The smaller of `max_bytes` and the format's limit.
        max_bytes: u64,
    },
    /// Writing failed; nothing was appended (see the module docs).
    #[error(transparent)]
    Io(#[from] BufferError),
}

impl AppendError {
    /// True when writing failed because the disk is full: like [`AppendError::Full`], it may
    /// pass once acknowledged segments are deleted.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, AppendError::Io(e) if e.is_disk_full())
    }
}

/// An appended entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Its id.
    pub id: u64,
    /// Bytes it takes on disk.
    pub bytes: u64,
}

/// An entry read back: its bytes and a [`Span`] per record, ready for
/// [`crate::core::record::Batch::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadEntry {
    /// The entry id (pass it to [`DiskLog::ack`] once the sink has delivered the records).
    pub id: u64,
    /// The whole entry as stored (header included).
    pub data: Vec<u8>,
    /// Where each record's payload is in `data`.
    pub spans: Vec<Span>,
}

impl ReadEntry {
    /// The record payloads.
    pub fn records(&self) -> impl Iterator<Item = &[u8]> {
        self.spans.iter().map(|s| {
            self.data
                .get(s.start as usize..s.end as usize)
                .unwrap_or_default()
        })
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// True when the entry has no records.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }
}

/// One damaged place found by [`DiskLog::open`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveredDamage {
    /// The damaged file.
    pub file: PathBuf,
    /// Offset of the first bad byte; the bytes before it were kept.
    pub offset: u64,
    /// Bytes from `offset` to the end of the file.
    pub len: u64,
    /// What was wrong.
    pub reason: String,
    /// Where the bad bytes are now (`<segment>.damaged-<offset>`); `None` when moving them
    /// failed (the file is then left as it was, only its good prefix is used, and the log never
    /// deletes it).
    pub moved_to: Option<PathBuf>,
}

impl std::fmt::Display for RecoveredDamage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: damaged at offset {} ({} bytes: {})",
            self.file.display(),
            self.offset,
            self.len,
            self.reason
        )?;
        match &self.moved_to {
            Some(p) => write!(f, "; moved to {}", p.display()),
            None => f.write_str("; could not be moved aside"),
        }
    }
}

/// What [`DiskLog::open`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Segments kept (holding unacknowledged entries).
    pub segments: usize,
    /// Unacknowledged entries recovered: they are read first.
    pub entries: u64,
    /// Records in those entries.
    pub records: u64,
    /// Entries found below the persisted ack point (already delivered; not read again).
    pub acked_entries: u64,
    /// The persisted ack point (the lowest unacknowledged id when it was written).
    pub ack_point: u64,
    /// Every damaged place, in file order.
    pub damages: Vec<RecoveredDamage>,
    /// Files in the directory that are not the buffer's; left alone.
    pub ignored: Vec<PathBuf>,
    /// Entries an earlier run had handed to the sink from segments `drop_oldest` then deleted,
    /// that the sink had not acknowledged when that run ended (their only copy was in its
    /// memory): lost, and to be counted as dropped (ids increasing). Some of them may have been
    /// delivered after all, when the acknowledgement came after the last sync.
    pub lost_with_sink: Vec<EntryLoc>,
}

#[derive(Debug)]
struct Segment {
    path: PathBuf,
    bytes: u64,
    /// Entries not acknowledged when the segment was loaded, plus those appended since.
    entries: Vec<Slot>,
    /// Entries still [`EntryState::Pending`].
    unacked: usize,
    /// Entries that could not be read back: the segment stays (in the log and on disk).
    unreadable: usize,
    /// Every entry before this index is acknowledged.
    first_unacked: usize,
    /// Damaged bytes that could not be moved aside are still in the file: never delete it.
    keep_file: bool,
}

impl Segment {
    fn new(path: PathBuf, bytes: u64, entries: Vec<Slot>, keep_file: bool) -> Segment {
        Segment {
            path,
            bytes,
            unacked: entries.len(),
            entries,
            unreadable: 0,
            first_unacked: 0,
            keep_file,
        }
    }
}

/// A segment file to sync: its first id, the open file, its path.
type ToSync = (u64, Arc<dyn LogFile>, PathBuf);

/// The disk buffer of one sink: an append-only segmented log with acknowledgements.
///
/// Guarantees (see the module docs of [`crate::buffer`]): entries are read in id order, each
/// at least once; after a restart, entries at or above the persisted ack point are read again.
#[derive(Debug)]
pub struct DiskLog {
    fs: Arc<dyn LogFs>,
    dir: PathBuf,
    cfg: LogConfig,
    /// By first id; the last one is the active segment when `active` is set.
    segments: BTreeMap<u64, Segment>,
    active: Option<SegmentWriter>,
    next_id: u64,
    /// Every entry below this id has been handed out.
    read_cursor: u64,
    live_bytes: u64,
    pending: usize,
    unsynced: bool,
    /// Finished segments whose last entries were not synced yet (with `Fsync::Interval`): the
    /// next sync does them, unless they were deleted (fully delivered) by then.
    sealed_unsynced: Vec<ToSync>,
    dir_dirty: bool,
    persisted_ack: u64,
    last_sync: Option<Instant>,
    /// Syncs that failed in a row: the next one waits [`retry_delay`] of it.
    sync_failures: u32,
    reader: Option<(u64, Arc<dyn LogFile>)>,
    scratch: Vec<u8>,
    /// Entries of deleted segments the sink has and has not acknowledged (persisted in
    /// [`LEFT_FILE`]).
    with_sink: LeftWithSink,
    /// `with_sink` changed since it was last written (the next sync writes it).
    with_sink_dirty: bool,
}

impl DiskLog {
    /// Opens (creating if needed) the log in `dir` on the real file system and recovers what
    /// it holds (see [`DiskLog::open_on`]).
    pub fn open(dir: &Path, cfg: LogConfig) -> Result<(DiskLog, Recovery), BufferError> {
        DiskLog::open_on(Arc::new(RealFs), dir, cfg)
    }

    /// Opens (creating if needed) the log in `dir`, reaching its files through `fs`, and
    /// recovers what it holds.
    ///
    /// Damage never stops the open: a segment with a bad tail keeps its good prefix and the bad
    /// bytes are copied to `<segment>.damaged-<offset>` before the segment is cut; a segment
    /// with no good prefix is renamed to `<segment>.damaged-0`. Each is logged as a warning and
    /// listed in [`Recovery::damages`]; a file whose damage cannot be moved aside is left as it
    /// is and never deleted. A directory that cannot be created or listed, and a segment that
    /// cannot be read ([`BufferError::Read`]), are errors: an I/O error says nothing about the
    /// entries, and going on without them would lose them.
    pub fn open_on(
        fs: Arc<dyn LogFs>,
        dir: &Path,
        cfg: LogConfig,
    ) -> Result<(DiskLog, Recovery), BufferError> {
        let dir_err = |source| BufferError::Dir {
            path: dir.to_path_buf(),
            source,
        };
        fs.create_dir_all(dir).map_err(dir_err)?;
        let listing = fs.list(dir).map_err(dir_err)?;
        let mut recovery = Recovery::default();
        let mut names: Vec<(u64, PathBuf)> = Vec::new();
        for item in listing {
            let path = dir.join(&item.name);
            let name = item.name.to_string_lossy();
            match segment::parse_segment_name(&name) {
                Some(id) if item.is_file => names.push((id, path)),
                _ if name == ACK_FILE
                    || name == ACK_TMP_FILE
                    || name == LEFT_FILE
                    || name == LEFT_TMP_FILE
                    || name.contains(".damaged-") => {}
                _ => recovery.ignored.push(path),
            }
        }
        names.sort();
        recovery.ignored.sort();

        let ack_path = dir.join(ACK_FILE);
        let ack_point = match read_ack_file(&*fs, &ack_path) {
            Ok(v) => v,
            Err(reason) => {
                recovery.damages.push(RecoveredDamage {
                    file: ack_path.clone(),
                    offset: 0,
                    len: file_len(&*fs, &ack_path),
                    reason: format!("{reason}; every entry found is delivered again"),
                    moved_to: None,
                });
                0
            }
        };
        recovery.ack_point = ack_point;

        let mut segments = BTreeMap::new();
        // Segment files with nothing to deliver, deleted once the ids they hold are safe.
        let mut spent = Vec::new();
        let mut next_id = ack_point;
        let mut live_bytes = 0;
        let mut pending = 0;
        // The lowest id the next segment's entries may have.
        let mut min_id = 0u64;
        for (first_id, path) in names {
            next_id = next_id.max(first_id.saturating_add(1));
            min_id = min_id.max(first_id);
            let Some(Recovered {
                entries,
                good_len: bytes,
                keep_file,
            }) = recover_segment(&*fs, &path, min_id, &mut recovery)?
            else {
                continue;
            };
            if let Some(last) = entries.last() {
                next_id = next_id.max(last.id.saturating_add(1));
                min_id = last.id.saturating_add(1);
            }
            let total = entries.len() as u64;
            let entries: Vec<Slot> = entries
                .into_iter()
                .filter(|e| e.id >= ack_point)
                .map(|loc| Slot {
                    loc,
                    state: EntryState::Pending,
                })
                .collect();
            recovery.acked_entries += total - entries.len() as u64;
            if entries.is_empty() {
                // Fully acknowledged (or empty): nothing to deliver.
                if !keep_file {
                    spent.push(path);
                }
                continue;
            }
            recovery.segments += 1;
            recovery.entries += entries.len() as u64;
            recovery.records += entries
                .iter()
                .map(|s| u64::from(s.loc.records))
                .sum::<u64>();
            live_bytes += bytes;
            pending += entries.len();
            segments.insert(first_id, Segment::new(path, bytes, entries, keep_file));
        }
        let mut persisted_ack = ack_point;
        if segments.is_empty() && next_id > ack_point && !spent.is_empty() {
            // The files about to go are all that says which ids were used (entries `drop_oldest`
            // deleted before the ack point was persisted): the ack point takes it over first, so
            // ids keep increasing across starts. If it cannot, the files stay for the next start.
            let durable = cfg.fsync != Fsync::Never;
            let written = write_ack_file(&*fs, dir, next_id, durable).and_then(|()| {
                if durable {
                    fs.sync_dir(dir).map_err(io_err("sync", dir))
                } else {
                    Ok(())
                }
            });
            match written {
                Ok(()) => persisted_ack = next_id,
                Err(e) => {
                    tracing::warn!(
                        "disk buffer: {e}; the spent segment files are left for the next start"
                    );
                    spent.clear();
                }
            }
        }
        for path in spent {
            if let Err(e) = fs.remove_file(&path) {
                tracing::warn!(
                    file = %path.display(),
                    error = %e,
                    "cannot delete an acknowledged buffer segment"
                );
            }
        }
        let left_path = dir.join(LEFT_FILE);
        if let Some(listed) = read_left_file(&*fs, &left_path, &mut recovery) {
            // Entries found again in a segment (its deletion did not happen) are delivered from
            // there; the rest were lost with the sink's memory.
            recovery.lost_with_sink = with_sink::settle(&listed, |id| {
                segments.range(..=id).next_back().is_some_and(|(_, seg)| {
                    seg.entries.binary_search_by_key(&id, |s| s.loc.id).is_ok()
                })
            });
            // They are counted by this run: the list goes, so the next start does not count
            // them again.
            let removed = fs.remove_file(&left_path).and_then(|()| {
                if cfg.fsync == Fsync::Never {
                    Ok(())
                } else {
                    fs.sync_dir(dir)
                }
            });
            if let Err(e) = removed {
                tracing::warn!(
                    file = %left_path.display(),
                    error = %e,
                    "disk buffer: cannot delete the list of entries left with the sink; the next \
                     start counts them as dropped again"
                );
            }
        }
        for d in &recovery.damages {
            tracing::warn!("disk buffer: {d}");
        }
        let log = DiskLog {
            fs,
            dir: dir.to_path_buf(),
            cfg,
            segments,
            active: None,
            next_id,
            read_cursor: 0,
            live_bytes,
            pending,
            unsynced: false,
            sealed_unsynced: Vec::new(),
            dir_dirty: false,
            persisted_ack,
            last_sync: None,
            sync_failures: 0,
            reader: None,
            scratch: Vec::new(),
            with_sink: LeftWithSink::default(),
            with_sink_dirty: false,
        };
        Ok((log, recovery))
    }

    /// Appends one batch as one entry and returns its id.
    ///
    /// With [`Fsync::Always`] the entry (and its segment's name) is on the disk when this
    /// returns. `Full` leaves the log unchanged: the caller waits for acknowledgements
    /// (`block`), drops the batch (`drop_newest`) or deletes the oldest segments
    /// ([`DiskLog::drop_oldest`]) and tries again (`drop_oldest`). `Io` means nothing was appended (see the
    /// module docs): the caller decides whether to try again.
    pub fn append(&mut self, records: &[&[u8]]) -> Result<Appended, AppendError> {
        let entry_bytes = format::entry_len(records);
        let limit = self.cfg.max_bytes.min(MAX_ENTRY_BYTES as u64);
        if entry_bytes > limit {
            return Err(AppendError::TooLarge {
                entry_bytes,
                max_bytes: limit,
            });
        }
        if self.live_bytes + entry_bytes > self.cfg.max_bytes {
            // The active segment counts even when all of it is acknowledged: finish it.
            if self.active_fully_acked() {
                self.seal_active()?;
            }
            if self.live_bytes + entry_bytes > self.cfg.max_bytes {
                return Err(AppendError::Full {
                    entry_bytes,
                    live_bytes: self.live_bytes,
                    max_bytes: self.cfg.max_bytes,
                });
            }
        }
        if let Some(w) = &self.active
            && !w.is_empty()
            && w.len() + entry_bytes > self.cfg.segment_bytes
        {
            self.seal_active()?;
        }
        self.scratch.clear();
        let id = self.next_id;
        let len = match format::encode_entry(id, records, &mut self.scratch) {
            Ok(len) => len,
            Err(_) => {
                return Err(AppendError::TooLarge {
                    entry_bytes,
                    max_bytes: limit,
                });
            }
        };
        let offset = match self.write_entry(id) {
            Ok(offset) => offset,
            Err(e) => {
                // Its bytes may be on disk (a torn write, a file that could not be cut back or
                // removed): the id is never used again, so no two entries ever share one.
                self.next_id = id + 1;
                return Err(e.into());
            }
        };
        let always = self.cfg.fsync == Fsync::Always;
        let last = last_segment_id(&self.segments);
        if let Some(seg) = last.and_then(|k| self.segments.get_mut(&k)) {
            let (user_records, arrival) =
                batch::summary(records.first().copied(), records.len() as u32);
            seg.entries.push(Slot {
                loc: EntryLoc {
                    id,
                    offset,
                    len: len as u32,
                    records: user_records,
                    arrival,
                },
                state: EntryState::Pending,
            });
            seg.unacked += 1;
            seg.bytes += len as u64;
        }
        self.live_bytes += len as u64;
        self.pending += 1;
        self.next_id += 1;
        self.unsynced = !always;
        Ok(Appended {
            id,
            bytes: len as u64,
        })
    }

    /// Writes the encoded entry (`scratch`) to the active segment, starting one if there is
    /// none, and with [`Fsync::Always`] syncs it. Returns its offset. On an error the segment
    /// is finished (never appended to again).
    fn write_entry(&mut self, id: u64) -> Result<u64, BufferError> {
        if self.active.is_none() {
            self.start_segment(id)?;
        }
        let always = self.cfg.fsync == Fsync::Always;
        let Some(w) = self.active.as_mut() else {
            let path = segment::segment_path(&self.dir, id);
            let source = io::Error::other("no active segment");
            return Err(BufferError::Io {
                op: "write",
                path,
                source,
            });
        };
        let written = match w.append(&self.scratch) {
            Ok(offset) if always => match w.sync() {
                Ok(()) => Ok(offset),
                Err(e) => {
                    // Not durable: not appended. (Linux may drop the pages of a failed fsync
                    // and report success next time, so a retry would prove nothing.)
                    let _ = w.truncate(offset);
                    Err(("sync", e))
                }
            },
            Ok(offset) => Ok(offset),
            Err(e) => Err(("write", e)),
        };
        match written {
            Ok(offset) => Ok(offset),
            Err((op, source)) => {
                let err = BufferError::Io {
                    op,
                    path: w.path().to_path_buf(),
                    source,
                };
                // Never append after bytes that may be torn: the next entry starts a segment.
                if let Err(e) = self.seal_active() {
                    tracing::warn!("disk buffer: {e}");
                }
                Err(err)
            }
        }
    }

    /// Creates the segment whose first entry is `id` and makes it the active one. With
    /// [`Fsync::Always`] the directory is synced first (an entry that survives a power loss
    /// needs its file's name to survive too); if that fails, the new file is removed again.
    fn start_segment(&mut self, id: u64) -> Result<(), BufferError> {
        let path = segment::segment_path(&self.dir, id);
        let w = SegmentWriter::create(&*self.fs, &self.dir, id).map_err(io_err("create", &path))?;
        if self.cfg.fsync == Fsync::Always {
            if let Err(source) = self.fs.sync_dir(&self.dir) {
                drop(w);
                if let Err(e) = self.fs.remove_file(&path) {
                    tracing::warn!(
                        file = %path.display(),
                        error = %e,
                        "cannot remove an empty buffer segment"
                    );
                }
                return Err(BufferError::Io {
                    op: "sync",
                    path: self.dir.clone(),
                    source,
                });
            }
            self.dir_dirty = false;
        } else {
            self.dir_dirty = true;
        }
        self.segments
            .insert(id, Segment::new(path, 0, Vec::new(), false));
        self.active = Some(w);
        Ok(())
    }

    /// The id of the entry [`DiskLog::read_next`] would hand out next, without reading it.
    pub fn peek_next_id(&self) -> Option<u64> {
        let (seg_id, index) = self.find_unread()?;
        Some(self.segments.get(&seg_id)?.entries.get(index)?.loc.id)
    }

    /// Hands out the next entry without reading it back, for a caller that still has its
    /// records in memory (it appended them a moment ago). Returns its id, which is then
    /// acknowledged as usual.
    pub fn skip_next(&mut self) -> Option<u64> {
        let id = self.peek_next_id()?;
        self.read_cursor = id + 1;
        Some(id)
    }

    /// The next entry not yet handed out, in id order (recovered entries first); `None` when
    /// every entry has been handed out.
    ///
    /// An entry that cannot be read back (an I/O error, or the disk changed under the log) is
    /// [`BufferError::Unreadable`]: it counts as done for this run (it is not handed out
    /// again, and [`DiskLog::pending_entries`] no longer counts it), but the ack point never
    /// passes it and its segment is kept, so the next start reads it again. The next call goes
    /// on with the entry after it.
    pub fn read_next(&mut self) -> Result<Option<ReadEntry>, BufferError> {
        let Some((seg_id, index)) = self.find_unread() else {
            return Ok(None);
        };
        let Some(seg) = self.segments.get(&seg_id) else {
            return Ok(None);
        };
        let loc = seg.entries[index].loc;
        let path = seg.path.clone();
        self.read_cursor = loc.id + 1;
        match self.read_at(seg_id, &path, loc) {
            Ok(entry) => Ok(Some(entry)),
            Err(reason) => {
                self.reader = None;
                self.give_up(seg_id, index);
                Err(BufferError::Unreadable {
                    path,
                    offset: loc.offset,
                    id: loc.id,
                    reason,
                })
            }
        }
    }

    /// The reader's position: every pending entry below it has been handed out.
    pub fn read_cursor(&self) -> u64 {
        self.read_cursor
    }

    /// Hands out every unacknowledged entry again, from the lowest (e.g. after the sink lost
    /// batches it had taken).
    pub fn rewind(&mut self) {
        self.read_cursor = 0;
    }

    /// Acknowledges entry `id` (in any order). Returns `false` when `id` is unknown or was
    /// already acknowledged. An entry of a segment `drop_oldest` deleted while the sink had it
    /// is struck off the list of entries left with the sink (written by the next sync). A
    /// finished segment whose entries are all acknowledged is deleted;
    /// an error deleting it (naming the file) leaves the acknowledgement in place.
    pub fn ack(&mut self, id: u64) -> Result<bool, BufferError> {
        if !self.with_sink.is_empty() && self.with_sink.remove(id) {
            // Its segment was deleted by `drop_oldest`; struck off the list at the next sync.
            self.with_sink_dirty = true;
            return Ok(true);
        }
        let active = self.active_first_id();
        let Some((&first, seg)) = self.segments.range_mut(..=id).next_back() else {
            return Ok(false);
        };
        let Ok(i) = seg.entries.binary_search_by_key(&id, |s| s.loc.id) else {
            return Ok(false);
        };
        if seg.entries[i].state != EntryState::Pending {
            return Ok(false);
        }
        seg.entries[i].state = EntryState::Acked;
        seg.unacked -= 1;
        self.pending -= 1;
        while seg
            .entries
            .get(seg.first_unacked)
            .is_some_and(|s| s.state == EntryState::Acked)
        {
            seg.first_unacked += 1;
        }
        if seg.unacked == 0 && active != Some(first) {
            self.retire_segment(first)?;
        }
        Ok(true)
    }

    /// Deletes the oldest segments, whole, until at least `need` bytes are freed (all of them
    /// when that is not enough), for `when_full = "drop_oldest"`; [`evict::plan`] decides.
    /// The active segment is finished first if it must go too. Entries of a deleted segment
    /// that were not handed out yet (and those that could not be read back) are dropped and
    /// counted in the answer; entries handed out and not yet acknowledged stay with the sink,
    /// which acknowledges them as usual. Those are listed in [`LEFT_FILE`] (written, and with
    /// a durable fsync policy synced with its directory, before any segment is deleted; when
    /// that fails, e.g. on a full disk, it is tried again right after the deletion and then at
    /// every sync) until the sink acknowledges them, and the next start counts those still
    /// listed as dropped ([`Recovery::lost_with_sink`]). The reader goes on with the first
    /// pending entry of the oldest segment kept. The ack point moves past what was deleted
    /// (persisted by the next sync). When every segment goes, an empty one is started at once
    /// so that entry ids keep increasing across a crash before that sync (`keep_ids`). A file that cannot be
    /// deleted is logged and left behind: its entries are below the ack point, so a start after
    /// the next sync skips them.
    pub fn drop_oldest(&mut self, need: u64) -> evict::Plan {
        let views = self.segments.iter().map(|(&first_id, seg)| SegmentView {
            first_id,
            bytes: seg.bytes,
            entries: &seg.entries,
        });
        let plan = evict::plan(views, self.read_cursor, need);
        let doomed: Vec<u64> = self.segments.keys().take(plan.segments).copied().collect();
        let mut unlisted = None;
        if plan.left_with_sink > 0 {
            for seg in self.segments.values().take(plan.segments) {
                for s in &seg.entries {
                    if evict::fate(s, self.read_cursor) == Fate::LeftWithSink {
                        self.with_sink.insert(s.loc);
                    }
                }
            }
            self.with_sink_dirty = true;
            unlisted = self.write_left(true).err();
        }
        let active = self.active_first_id();
        for first in doomed {
            if Some(first) == active {
                // Its entries go: nothing of it needs syncing.
                self.active = None;
                self.unsynced = false;
            }
            let Some(seg) = self.segments.remove(&first) else {
                continue;
            };
            self.live_bytes -= seg.bytes;
            self.pending -= seg.unacked;
            if self.reader.as_ref().is_some_and(|(k, _)| *k == first) {
                self.reader = None;
            }
            if seg.keep_file {
                continue;
            }
            self.dir_dirty = true;
            if let Err(e) = self.fs.remove_file(&seg.path) {
                tracing::warn!(
                    file = %seg.path.display(),
                    error = %e,
                    "disk buffer: cannot delete a dropped segment; its entries are not delivered"
                );
            }
        }
        self.sealed_unsynced
            .retain(|(first, _, _)| self.segments.contains_key(first));
        self.keep_ids();
        if let Some(first) = unlisted {
            // The deletion freed space: a full disk may take the list now.
            if let Err(e) = self.write_left(true) {
                tracing::error!(
                    "disk buffer: {first}; then: {e}; {} entries the sink holds from deleted \
                     segments are not listed yet (tried again at every sync): a crash before \
                     that would lose them uncounted",
                    plan.left_with_sink
                );
            }
        }
        plan
    }

    /// Writes the list of entries left with the sink (deletes it when empty), atomically
    /// (through [`LEFT_TMP_FILE`] and a rename), synced unless the policy is `Never`, and with
    /// `dir_too` syncs the directory as well (so the rename is on the disk before a segment is
    /// deleted). Done under the caller's lock: it happens only after a drop, while the sink
    /// still holds entries of deleted segments, and the file holds at most what the sink holds.
    fn write_left(&mut self, dir_too: bool) -> Result<(), BufferError> {
        let durable = self.cfg.fsync != Fsync::Never;
        let path = self.dir.join(LEFT_FILE);
        if self.with_sink.is_empty() {
            match self.fs.remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("delete", &path)(e)),
            }
        } else {
            let bytes = self.with_sink.encode();
            write_atomically(
                &*self.fs,
                &self.dir,
                LEFT_TMP_FILE,
                LEFT_FILE,
                &bytes,
                durable,
            )?;
        }
        if durable && dir_too {
            self.fs
                .sync_dir(&self.dir)
                .map_err(io_err("sync", &self.dir))?;
        }
        self.with_sink_dirty = false;
        Ok(())
    }

    /// Entries of deleted segments the sink has and has not acknowledged yet (listed in
    /// [`LEFT_FILE`]).
    pub fn left_with_sink(&self) -> usize {
        self.with_sink.len()
    }

    /// Whether entry `id` is one of [`DiskLog::left_with_sink`].
    pub fn is_left_with_sink(&self, id: u64) -> bool {
        self.with_sink.contains(id)
    }

    /// Marks the entry at `index` of segment `seg_id` unreadable (see [`DiskLog::read_next`]).
    fn give_up(&mut self, seg_id: u64, index: usize) {
        let Some(seg) = self.segments.get_mut(&seg_id) else {
            return;
        };
        let Some(slot) = seg.entries.get_mut(index) else {
            return;
        };
        if slot.state != EntryState::Pending {
            return;
        }
        slot.state = EntryState::Unreadable;
        seg.unacked -= 1;
        seg.unreadable += 1;
        self.pending -= 1;
    }

    /// Syncs when the fsync policy says it is time: for [`Fsync::Interval`] once the interval has
    /// passed since the last sync; for [`Fsync::Always`] whenever the ack point moved (entries
    /// are synced by `append`); for [`Fsync::Never`] it only writes the ack point (without fsync)
    /// every [`DEFAULT_FSYNC_INTERVAL`]. After a failed sync the next waits [`retry_delay`].
    /// Returns whether it did anything.
    pub fn maybe_sync(&mut self, now: Instant) -> Result<bool, BufferError> {
        let Some(job) = self.begin_sync(now) else {
            return Ok(false);
        };
        let done = job.run();
        self.end_sync(&job, done)?;
        Ok(true)
    }

    /// How long after a sync the next one is due: the policy's interval, or longer after
    /// failures ([`retry_delay`]).
    fn sync_interval(&self) -> Duration {
        let interval = match self.cfg.fsync {
            Fsync::Always => Duration::ZERO,
            Fsync::Interval(d) => d,
            Fsync::Never => DEFAULT_FSYNC_INTERVAL,
        };
        interval.max(retry_delay(self.sync_failures))
    }

    /// [`DiskLog::maybe_sync`] in three steps, for a caller that keeps the log under a lock and
    /// must not hold it through an fsync (appends, reads and acknowledgements would all wait):
    /// take the work under the lock (`None`: nothing is due), [`SyncJob::run`] it without the
    /// lock, then hand the outcome to [`DiskLog::end_sync`] under the lock again. Entries
    /// appended meanwhile are synced by the next job. One job at a time.
    pub fn begin_sync(&mut self, now: Instant) -> Option<SyncJob> {
        let due = self
            .last_sync
            .is_none_or(|t| now.saturating_duration_since(t) >= self.sync_interval());
        if !due || !self.needs_sync() {
            return None;
        }
        self.last_sync = Some(now);
        let durable = self.cfg.fsync != Fsync::Never;
        // Only what is not delivered yet needs protecting: a finished segment deleted since (all
        // of it acknowledged) is skipped, and so is the active one when all of it is.
        Some(self.take_job(durable, true))
    }

    /// The work of a sync, taken out of the log: the segments to sync (with `durable`), the ack
    /// point to write if it moved, and whether to sync the directory.
    fn take_job(&mut self, durable: bool, skip_delivered: bool) -> SyncJob {
        let mut segments: Vec<ToSync> = Vec::new();
        if durable {
            segments = std::mem::take(&mut self.sealed_unsynced)
                .into_iter()
                .filter(|(first, _, _)| self.segments.contains_key(first))
                .collect();
        }
        if self.unsynced {
            if durable
                && !(skip_delivered && self.active_fully_acked())
                && let (Some(first), Some(w)) = (self.active_first_id(), self.active.as_ref())
            {
                segments.push((first, w.file(), w.path().to_path_buf()));
            }
            self.unsynced = !durable;
        }
        let ack = self.ack_point();
        let ack = (ack != self.persisted_ack).then_some(ack);
        let sync_dir = durable && (self.dir_dirty || ack.is_some());
        if sync_dir {
            self.dir_dirty = false;
        } else if ack.is_some() {
            self.dir_dirty = true;
        }
        SyncJob {
            fs: self.fs.clone(),
            segments,
            dir: self.dir.clone(),
            ack,
            durable,
            sync_dir,
        }
    }

    /// Takes the outcome of a [`SyncJob`] (see [`DiskLog::begin_sync`]). After a failure, what
    /// the job was to do is left for the next job, which waits [`retry_delay`].
    pub fn end_sync(
        &mut self,
        job: &SyncJob,
        result: Result<(), BufferError>,
    ) -> Result<(), BufferError> {
        match result {
            Ok(()) => {
                let failures = std::mem::take(&mut self.sync_failures);
                if let Some(ack) = job.ack {
                    self.persisted_ack = self.persisted_ack.max(ack);
                }
                // Entries struck off the list since it was written (or a list a drop could not
                // write). Under the lock, unlike the job: a drop writes the list under it too.
                if self.with_sink_dirty
                    && let Err(e) = self.write_left(false)
                {
                    self.sync_failures = failures.saturating_add(1);
                    return Err(e);
                }
                Ok(())
            }
            Err(e) => {
                self.sync_failures = self.sync_failures.saturating_add(1);
                let active = self.active_first_id();
                for (first, file, path) in &job.segments {
                    if Some(*first) == active {
                        self.unsynced = true;
                    } else if self.segments.contains_key(first)
                        && !self.sealed_unsynced.iter().any(|(f, _, _)| f == first)
                    {
                        self.sealed_unsynced
                            .push((*first, file.clone(), path.clone()));
                    }
                }
                if job.sync_dir || job.ack.is_some() {
                    self.dir_dirty = true;
                }
                Err(e)
            }
        }
    }

    /// When [`DiskLog::maybe_sync`] next has work, for a caller's timer: `None` when nothing
    /// waits to be synced, `now` when the work is due already.
    pub fn sync_deadline(&self, now: Instant) -> Option<Instant> {
        if !self.needs_sync() {
            return None;
        }
        let interval = self.sync_interval();
        Some(self.last_sync.map_or(now, |t| (t + interval).max(now)))
    }

    /// Syncs that failed in a row (0 after a sync that succeeded).
    pub fn sync_failures(&self) -> u32 {
        self.sync_failures
    }

    /// Forces appended entries to the disk and persists the ack point, whatever the policy.
    pub fn sync(&mut self) -> Result<(), BufferError> {
        self.flush(true)
    }

    /// Syncs (as [`DiskLog::sync`]) and closes the log.
    pub fn close(mut self) -> Result<(), BufferError> {
        self.sync()
    }

    /// Bytes of live segments (what `max_bytes` bounds).
    pub fn bytes(&self) -> u64 {
        self.live_bytes
    }

    /// Entries appended or recovered and not yet acknowledged (nor found unreadable).
    pub fn pending_entries(&self) -> usize {
        self.pending
    }

    /// The id the next appended entry gets.
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// The lowest id not acknowledged (an unreadable entry counts as not acknowledged); the
    /// next appended id when everything is acknowledged.
    pub fn ack_point(&self) -> u64 {
        for seg in self.segments.values() {
            if let Some(s) = seg.entries[seg.first_unacked..]
                .iter()
                .find(|s| s.state != EntryState::Acked)
            {
                return s.loc.id;
            }
        }
        self.next_id
    }

    /// The directory of the log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn needs_sync(&self) -> bool {
        let data = self.cfg.fsync != Fsync::Never
            && (self.unsynced || self.dir_dirty || !self.sealed_unsynced.is_empty());
        data || self.with_sink_dirty || self.ack_point() != self.persisted_ack
    }

    fn flush(&mut self, durable: bool) -> Result<(), BufferError> {
        let job = self.take_job(durable, false);
        let done = job.run();
        self.end_sync(&job, done)
    }

    fn active_first_id(&self) -> Option<u64> {
        self.active
            .as_ref()
            .and_then(|_| last_segment_id(&self.segments))
    }

    fn active_fully_acked(&self) -> bool {
        self.active_first_id()
            .and_then(|k| self.segments.get(&k))
            .is_some_and(|s| s.unacked == 0)
    }

    /// Finishes the active segment: syncs it (unless the policy is `Never`) and deletes it
    /// when nothing in it waits for an acknowledgement.
    fn seal_active(&mut self) -> Result<(), BufferError> {
        let Some(first) = self.active_first_id() else {
            return Ok(());
        };
        let Some(w) = self.active.take() else {
            return Ok(());
        };
        let fully_acked = self.segments.get(&first).is_some_and(|s| s.unacked == 0);
        let mut synced = Ok(());
        if self.unsynced && !fully_acked {
            match self.cfg.fsync {
                Fsync::Never => {}
                // Leave it to the next periodic sync: by then it may be delivered and gone.
                Fsync::Interval(_) => {
                    self.sealed_unsynced
                        .push((first, w.file(), w.path().to_path_buf()));
                }
                Fsync::Always => synced = w.sync().map_err(io_err("sync", w.path())),
            }
        }
        self.unsynced = false;
        drop(w);
        if fully_acked {
            self.retire_segment(first)?;
        }
        synced
    }

    /// Forgets a finished segment whose entries are all acknowledged and deletes its file;
    /// keeps the segment when one of its entries could not be read back (for the next start),
    /// and keeps the file when damaged bytes could not be moved out of it.
    fn retire_segment(&mut self, first: u64) -> Result<(), BufferError> {
        if self.segments.get(&first).is_some_and(|s| s.unreadable > 0) {
            return Ok(());
        }
        let Some(seg) = self.segments.remove(&first) else {
            return Ok(());
        };
        self.live_bytes -= seg.bytes;
        if self.reader.as_ref().is_some_and(|(k, _)| *k == first) {
            self.reader = None;
        }
        if seg.keep_file {
            return Ok(());
        }
        self.dir_dirty = true;
        let removed = self
            .fs
            .remove_file(&seg.path)
            .map_err(io_err("delete", &seg.path));
        self.keep_ids();
        removed
    }

    /// After the last segment file was deleted: starts an empty segment named `next_id` when
    /// the persisted ack point is below it, since a start finds the next id from the segment
    /// files and the ack point, and would otherwise give out the deleted entries' ids again
    /// (of entries `drop_oldest` counted, or acknowledged). A failure is logged: it costs only
    /// that guarantee (as would a kill between the deletion and this).
    fn keep_ids(&mut self) {
        if !self.segments.is_empty() || self.active.is_some() || self.next_id <= self.persisted_ack
        {
            return;
        }
        if let Err(e) = self.start_segment(self.next_id) {
            tracing::warn!(
                "disk buffer: every segment is gone and the next cannot be started ({e}); a \
                 crash before the next sync would number new entries from the last persisted \
                 acknowledgement"
            );
        }
    }

    fn find_unread(&self) -> Option<(u64, usize)> {
        let cursor = self.read_cursor;
        let start = self
            .segments
            .range(..=cursor)
            .next_back()
            .map_or(0, |(k, _)| *k);
        for (k, seg) in self.segments.range(start..) {
            let from = seg.entries.partition_point(|s| s.loc.id < cursor);
            if let Some(j) = seg.entries[from..]
                .iter()
                .position(|s| s.state == EntryState::Pending)
            {
                return Some((*k, from + j));
            }
        }
        None
    }

    fn read_at(&mut self, seg_id: u64, path: &Path, loc: EntryLoc) -> Result<ReadEntry, String> {
        let file = match &self.reader {
            Some((k, f)) if *k == seg_id => f.clone(),
            _ => {
                let f = self
                    .fs
                    .open(path, OpenMode::Read)
                    .map_err(|e| format!("cannot open: {e}"))?;
                self.reader = Some((seg_id, f.clone()));
                f
            }
        };
        let mut data = vec![0u8; loc.len as usize];
        file.read_exact_at(&mut data, loc.offset)
            .map_err(|e| format!("cannot read: {e}"))?;
        let (entry, _) = format::decode_entry(&data).map_err(|e| e.to_string())?;
        if entry.id != loc.id {
            return Err(format!("found entry id {} instead", entry.id));
        }
        let mut spans = Vec::with_capacity(entry.len());
        let mut records = entry.records();
        while let Some((start, payload)) = records.next_with_offset() {
            spans.push(Span {
                start: start as u32,
                end: (start + payload.len()) as u32,
            });
        }
        Ok(ReadEntry {
            id: loc.id,
            data,
            spans,
        })
    }
}

impl Drop for DiskLog {
    /// Best effort: persists the ack point (and syncs unless the policy is `Never`). Call
    /// [`DiskLog::close`] to see errors.
    fn drop(&mut self) {
        let _ = self.flush(self.cfg.fsync != Fsync::Never);
    }
}

fn last_segment_id(segments: &BTreeMap<u64, Segment>) -> Option<u64> {
    segments.keys().next_back().copied()
}

/// `<segment>.damaged-<offset>` beside the segment.
pub fn damaged_path(segment: &Path, offset: u64) -> PathBuf {
    let mut name = segment.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".damaged-{offset}"));
    segment.with_file_name(name)
}

/// What [`recover_segment`] kept of a segment.
struct Recovered {
    /// Valid entries, ids increasing.
    entries: Vec<EntryLoc>,
    /// Bytes of the good prefix.
    good_len: u64,
    /// Bad bytes are still in the file (moving them aside failed): never delete it.
    keep_file: bool,
}

/// Scans one segment, moves its damage aside and returns its valid entries (all with ids at
/// least `min_id`); `None` when nothing of it is usable (it was moved aside, or left alone
/// when that failed). A segment that cannot be read is an error ([`BufferError::Read`]).
fn recover_segment(
    fs: &dyn LogFs,
    path: &Path,
    min_id: u64,
    recovery: &mut Recovery,
) -> Result<Option<Recovered>, BufferError> {
    let scan = segment::scan_segment(fs, path).map_err(|f| BufferError::Read {
        path: path.to_path_buf(),
        offset: f.offset,
        source: f.source,
    })?;
    let mut entries = scan.entries;
    let mut damage = scan.damage.map(|d| (d.offset, d.len, d.reason.to_string()));
    // Entries must continue the ids of the segments before (and of the file name).
    if let Some(i) = entries.iter().position(|e| e.id < min_id) {
        let offset = entries[i].offset;
        let end = scan.good_len + damage.as_ref().map_or(0, |d| d.1);
        damage = Some((
            offset,
            end - offset,
            format!(
                "entry id {} is below {min_id}, the ids already seen",
                entries[i].id
            ),
        ));
        entries.truncate(i);
    }
    let good_len = entries.last().map_or(0, |e| e.offset + u64::from(e.len));
    let mut keep_file = false;
    if let Some((offset, len, reason)) = damage {
        let moved_to = match move_aside(fs, path, offset, len) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!(
                    file = %path.display(),
                    error = %e,
                    "cannot move damaged buffer bytes aside"
                );
                None
            }
        };
        keep_file = moved_to.is_none();
        recovery.damages.push(RecoveredDamage {
            file: path.to_path_buf(),
            offset,
            len,
            reason,
            moved_to,
        });
        if offset == 0 {
            return Ok(None);
        }
    }
    Ok(Some(Recovered {
        entries,
        good_len,
        keep_file,
    }))
}

/// Moves the bytes from `offset` to the end of `path` to `<path>.damaged-<offset>`: renames the
/// whole file when `offset` is 0, else copies the tail, syncs the copy and cuts the segment. If
/// the copy fails, it is removed and the segment left as it was.
fn move_aside(fs: &dyn LogFs, path: &Path, offset: u64, len: u64) -> io::Result<PathBuf> {
    let aside = damaged_path(path, offset);
    if offset == 0 {
        fs.rename(path, &aside)?;
        return Ok(aside);
    }
    let src = fs.open(path, OpenMode::ReadWrite)?;
    if let Err(e) = copy_tail(fs, &*src, offset, len, &aside) {
        let _ = fs.remove_file(&aside);
        return Err(e);
    }
    src.set_len(offset)?;
    src.sync_all()?;
    Ok(aside)
}

/// Copies `len` bytes of `src` from `offset` to a new file `to`, 64 KiB at a time, and syncs it.
fn copy_tail(
    fs: &dyn LogFs,
    src: &dyn LogFile,
    offset: u64,
    len: u64,
    to: &Path,
) -> io::Result<()> {
    const CHUNK: u64 = 64 << 10;
    let dst = fs.open(to, OpenMode::Truncate)?;
    let mut buf = vec![0u8; len.min(CHUNK) as usize];
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(CHUNK) as usize;
        src.read_exact_at(&mut buf[..n], offset + done)?;
        dst.write_all(&buf[..n])?;
        done += n as u64;
    }
    dst.sync_all()
}

/// The length of a file, or 0 when it cannot be had (for reports).
fn file_len(fs: &dyn LogFs, path: &Path) -> u64 {
    fs.open(path, OpenMode::Read)
        .and_then(|f| f.size())
        .unwrap_or(0)
}

/// The persisted ack point: 0 when there is no ack file; `Err` (why) when it cannot be read or
/// is not valid.
fn read_ack_file(fs: &dyn LogFs, path: &Path) -> Result<u64, String> {
    let file = match fs.open(path, OpenMode::Read) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(format!("cannot open: {e}")),
    };
    let len = file.size().map_err(|e| format!("cannot read: {e}"))?;
    if len != ACK_FILE_BYTES as u64 {
        return Err("not a valid ack file".into());
    }
    let mut bytes = [0u8; ACK_FILE_BYTES];
    file.read_exact_at(&mut bytes, 0)
        .map_err(|e| format!("cannot read: {e}"))?;
    let valid = bytes[0..4] == ACK_MAGIC
        && bytes[4..8] == [1, 0, 0, 0]
        && bytes[16..20] == crc32fast::hash(&bytes[0..16]).to_le_bytes();
    if !valid {
        return Err("not a valid ack file".into());
    }
    let mut id = [0u8; 8];
    id.copy_from_slice(&bytes[8..16]);
    Ok(u64::from_le_bytes(id))
}

/// The file work of one sync (see [`DiskLog::begin_sync`]).
#[derive(Debug)]
pub struct SyncJob {
    fs: Arc<dyn LogFs>,
    segments: Vec<ToSync>,
    dir: PathBuf,
    ack: Option<u64>,
    durable: bool,
    sync_dir: bool,
}

impl SyncJob {
    /// Syncs the segments, writes the ack point and syncs the directory, as the job says; stops
    /// at the first error (naming the file and the operation).
    pub fn run(&self) -> Result<(), BufferError> {
        for (_, file, path) in &self.segments {
            file.sync_data().map_err(io_err("sync", path))?;
        }
        if let Some(ack) = self.ack {
            write_ack_file(&*self.fs, &self.dir, ack, self.durable)?;
        }
        if self.sync_dir {
            self.fs
                .sync_dir(&self.dir)
                .map_err(io_err("sync", &self.dir))?;
        }
        Ok(())
    }
}

/// Writes the ack point to [`ACK_TMP_FILE`] (synced when `durable`) and renames it to
/// [`ACK_FILE`]: a failure at any step leaves the old ack file as it was.
fn write_ack_file(fs: &dyn LogFs, dir: &Path, ack: u64, durable: bool) -> Result<(), BufferError> {
    let mut bytes = Vec::with_capacity(ACK_FILE_BYTES);
    bytes.extend_from_slice(&ACK_MAGIC);
    bytes.extend_from_slice(&[1, 0, 0, 0]);
    bytes.extend_from_slice(&ack.to_le_bytes());
    bytes.extend_from_slice(&crc32fast::hash(&bytes).to_le_bytes());
    write_atomically(fs, dir, ACK_TMP_FILE, ACK_FILE, &bytes, durable)
}

/// Writes `bytes` to `dir/tmp` (synced when `durable`) and renames it to `dir/name`: a failure
/// at any step leaves the old file as it was.
fn write_atomically(
    fs: &dyn LogFs,
    dir: &Path,
    tmp: &str,
    name: &str,
    bytes: &[u8],
    durable: bool,
) -> Result<(), BufferError> {
    let tmp = dir.join(tmp);
    let f = fs
        .open(&tmp, OpenMode::Truncate)
        .map_err(io_err("create", &tmp))?;
    f.write_all(bytes).map_err(io_err("write", &tmp))?;
    if durable {
        f.sync_all().map_err(io_err("sync", &tmp))?;
    }
    drop(f);
    fs.rename(&tmp, &dir.join(name))
        .map_err(io_err("rename", &tmp))
}

/// The list of entries left with the sink an earlier run persisted: `None` when there is
/// none; when it cannot be read or is not valid, the damage is reported in `recovery` (the bad
/// file is moved aside when possible) and `None` returned: those entries cannot be counted.
fn read_left_file(fs: &dyn LogFs, path: &Path, recovery: &mut Recovery) -> Option<LeftWithSink> {
    const MAX_BYTES: u64 = 16 + (with_sink::ENTRY_BYTES * with_sink::MAX_ENTRIES) as u64;
    let read = || -> Result<Option<LeftWithSink>, String> {
        let file = match fs.open(path, OpenMode::Read) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot open: {e}")),
        };
        let len = file.size().map_err(|e| format!("cannot read: {e}"))?;
        if len > MAX_BYTES {
            return Err(format!("{len} bytes, more than a list can hold"));
        }
        let mut bytes = vec![0u8; len as usize];
        file.read_exact_at(&mut bytes, 0)
            .map_err(|e| format!("cannot read: {e}"))?;
        LeftWithSink::decode(&bytes).map(Some)
    };
    match read() {
        Ok(list) => list,
        Err(reason) => {
            let len = file_len(fs, path);
            let moved_to = move_aside(fs, path, 0, len).ok();
            recovery.damages.push(RecoveredDamage {
                file: path.to_path_buf(),
                offset: 0,
                len,
                reason: format!(
                    "{reason}; records the sink held from deleted segments when the last run \
                     ended cannot be counted"
                ),
                moved_to,
            });
            None
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use std::collections::BTreeSet;
    use std::fs;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_sync_done_in_steps_persists_the_ack_point_and_lets_appends_go_on() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = LogConfig {
            max_bytes: 1 << 20,
            segment_bytes: 64 << 10,
            fsync: Fsync::Interval(Duration::from_millis(100)),
        };
        let (mut log, _) = DiskLog::open(dir.path(), cfg).unwrap();
        let t0 = Instant::now();
        let a = log.append(&[b"one"]).unwrap();
        let job = log.begin_sync(t0).expect("due: never synced");
        // Not due again within the interval, even with a new append.
        let b = log.append(&[b"two"]).unwrap();
        assert!(log.begin_sync(t0 + Duration::from_millis(1)).is_none());
        let done = job.run();
        log.end_sync(&job, done).unwrap();
        // The second append still waits for a sync.
        assert!(log.sync_deadline(t0).is_some());
        assert!(log.read_next().unwrap().is_some());
        log.ack(a.id).unwrap();
        let job = log.begin_sync(t0 + Duration::from_millis(100)).unwrap();
        let done = job.run();
        log.end_sync(&job, done).unwrap();
        drop(log);
        // Only `b` is delivered again after a restart: the ack point was persisted.
        let (mut log, rec) = DiskLog::open(dir.path(), cfg).unwrap();
        assert_eq!(rec.ack_point, b.id);
        let e = log.read_next().unwrap().unwrap();
        assert_eq!(e.id, b.id);
        assert!(log.read_next().unwrap().is_none());
    }

    /// Two records of 10 bytes: a 60-byte entry.
    fn rec(id: u64) -> [Vec<u8>; 2] {
        [
            format!("rec-{id:06}").into_bytes(),
            format!("two-{id:06}").into_bytes(),
        ]
    }

    fn append(log: &mut DiskLog, id: u64) -> Appended {
        let [a, b] = rec(id);
        log.append(&[&a, &b]).unwrap()
    }

    fn cfg(segment_bytes: u64, max_bytes: u64) -> LogConfig {
        LogConfig {
            max_bytes,
            segment_bytes,
            fsync: Fsync::Interval(Duration::from_millis(100)),
        }
    }

    fn files(dir: &Path, suffix: &str) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(suffix) || (suffix.is_empty() && !n.is_empty()))
            .collect();
        v.sort();
        v
    }

    fn read_ids(log: &mut DiskLog) -> Vec<u64> {
        let mut ids = Vec::new();
        while let Some(e) = log.read_next().unwrap() {
            let [a, b] = rec(e.id);
            assert_eq!(e.records().collect::<Vec<_>>(), vec![&a[..], &b[..]]);
            ids.push(e.id);
        }
        ids
    }

    #[test]
    fn append_read_ack_across_segment_rolls() {
        let dir = tempfile::tempdir().unwrap();
        // Three 60-byte entries per segment.
        let (mut log, rec0) = DiskLog::open(dir.path(), cfg(180, 1 << 20)).unwrap();
        assert_eq!(rec0, Recovery::default());
        for i in 0..10 {
            let a = append(&mut log, i);
            assert_eq!(a, Appended { id: i, bytes: 60 });
        }
        assert_eq!(log.bytes(), 600);
        assert_eq!(log.pending_entries(), 10);
        assert_eq!(
            files(dir.path(), ".seg"),
            [0, 3, 6, 9].map(|i| format!("{i:020}.seg"))
        );
        assert_eq!(read_ids(&mut log), (0..10).collect::<Vec<_>>());
        assert_eq!(log.read_next().unwrap(), None);

        // Out of order: a segment goes once all of it is acknowledged.
        for id in [4, 3] {
            assert!(log.ack(id).unwrap());
        }
        assert!(!log.ack(3).unwrap(), "a second ack is a no-op");
        assert!(!log.ack(99).unwrap(), "an unknown id is a no-op");
        assert_eq!(files(dir.path(), ".seg").len(), 4);
        assert!(log.ack(5).unwrap());
        assert_eq!(
            files(dir.path(), ".seg"),
            [0, 6, 9].map(|i| format!("{i:020}.seg"))
        );
        assert_eq!(log.bytes(), 420);
        assert_eq!(log.ack_point(), 0);
        for id in [0, 1, 2, 6, 7, 8, 9] {
            assert!(log.ack(id).unwrap());
        }
        // The active segment stays (it is still appended to) even when all of it is acknowledged.
        assert_eq!(files(dir.path(), ".seg"), [format!("{:020}.seg", 9)]);
        assert_eq!(
            (log.pending_entries(), log.bytes(), log.ack_point()),
            (0, 60, 10)
        );
        assert_eq!(append(&mut log, 10).id, 10);
        assert_eq!(read_ids(&mut log), vec![10]);
    }

    #[test]
    fn restart_delivers_unacked_entries_first_and_not_acked_ones() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = DiskLog::open(dir.path(), cfg(180, 1 << 20)).unwrap();
        for i in 0..8 {
            append(&mut log, i);
        }
        assert_eq!(read_ids(&mut log).len(), 8);
        for id in [0, 1, 2, 3, 5] {
            log.ack(id).unwrap();
        }
        drop(log); // persists the ack point 4

        let (mut log, rec) = DiskLog::open(dir.path(), cfg(180, 1 << 20)).unwrap();
        assert_eq!(rec.ack_point, 4);
        assert!(rec.damages.is_empty());
        // 5 was acknowledged above the ack point: delivered again (the documented bound).
        assert_eq!((rec.entries, rec.records, rec.acked_entries), (4, 8, 1));
        assert_eq!(log.pending_entries(), 4);
        assert_eq!(append(&mut log, 8).id, 8);
        assert_eq!(read_ids(&mut log), vec![4, 5, 6, 7, 8]);
        for id in 4..9 {
            log.ack(id).unwrap();
        }
        log.close().unwrap();

        let (mut log, rec) = DiskLog::open(dir.path(), cfg(180, 1 << 20)).unwrap();
        assert_eq!((rec.ack_point, rec.entries, rec.segments), (9, 0, 0));
        assert_eq!(read_ids(&mut log), Vec::<u64>::new());
        assert_eq!(
            append(&mut log, 9).id,
            9,
            "ids continue after the ack point"
        );
        assert_eq!(files(dir.path(), ".seg"), [format!("{:020}.seg", 9)]);
    }

    #[test]
    fn crash_redelivers_only_acks_after_the_last_persisted_point() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = DiskLog::open(dir.path(), cfg(1 << 20, 1 << 20)).unwrap();
        for i in 0..6 {
            append(&mut log, i);
        }
        read_ids(&mut log);
        log.ack(0).unwrap();
        log.ack(1).unwrap();
        log.sync().unwrap();
        log.ack(2).unwrap();
        log.ack(3).unwrap();
        std::mem::forget(log); // a crash: no drop, no sync

        let (mut log, rec) = DiskLog::open(dir.path(), cfg(1 << 20, 1 << 20)).unwrap();
        assert_eq!(rec.ack_point, 2);
        assert_eq!(read_ids(&mut log), vec![2, 3, 4, 5]);
    }

    #[test]
    fn torn_tail_keeps_the_good_prefix_and_moves_the_rest_aside() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = DiskLog::open(dir.path(), cfg(1 << 20, 1 << 20)).unwrap();
        for i in 0..3 {
            append(&mut log, i);
        }
        log.close().unwrap();
        let seg = segment::segment_path(dir.path(), 0);
        let full = fs::read(&seg).unwrap();
        // A crash in the middle of writing the third entry.
        fs::write(&seg, &full[..120 + 25]).unwrap();

        let (mut log, rec) = DiskLog::open(dir.path(), cfg(1 << 20, 1 << 20)).unwrap();
        assert_eq!(rec.damages.len(), 1);
        let d = &rec.damages[0];
        assert_eq!(
            (d.file.as_path(), d.offset, d.len),
            (seg.as_path(), 120, 25)
        );
        assert!(d.reason.contains("truncated"), "{}", d.reason);
        let aside = dir.path().join(format!("{:020}.seg.damaged-120", 0));
        assert_eq!(d.moved_to.as_deref(), Some(aside.as_path()));
        assert!(d.to_string().contains("offset 120"), "{d}");
        assert_eq!(fs::read(&aside).unwrap(), &full[120..145]);
        assert_eq!(fs::metadata(&seg).unwrap().len(), 120);
        assert_eq!((rec.entries, rec.records), (2, 4));
        assert_eq!(read_ids(&mut log), vec![0, 1]);
        // New entries go to a new segment, after the recovered ones.
        assert_eq!(append(&mut log, 2).id, 2);
        assert_eq!(read_ids(&mut log), vec![2]);
        drop(log);
        let (_, rec) = DiskLog::open(dir.path(), cfg(1 << 20, 1 << 20)).unwrap();
        assert!(rec.damages.is_empty(), "{:?}", rec.damages);
        assert_eq!(rec.entries, 3);
    }

    #[test]
    fn corrupt_byte_moves_the_rest_of_its_segment_aside_and_later_segments_load() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = DiskLog::open(dir.path(), cfg(180, 1 << 20)).unwrap();
        for i in 0..9 {
            append(&mut log, i);
        }
        log.close().unwrap();
        let seg = segment::segment_path(dir.path(), 3);
        let mut bytes = fs::read(&seg).unwrap();
        bytes[60 + 40] ^= 0x01; // a payload byte of entry 4
        fs::write(&seg, &bytes).unwrap();

        let (mut log, rec) = DiskLog::open(dir.path(), cfg(180, 1 << 20)).unwrap();
        assert_eq!(rec.damages.len(), 1);
        let d = &rec.damages[0];
        assert_eq!(
            (d.file.as_path(), d.offset, d.len),
            (seg.as_path(), 60, 120)
        );
        assert!(d.reason.contains("checksum"), "{}", d.reason);
        let aside = dir.path().join(format!("{:020}.seg.damaged-60", 3));
        assert_eq!(fs::read(&aside).unwrap(), &bytes[60..]);
        assert_eq!(rec.entries, 7);
        assert_eq!(read_ids(&mut log), vec![0, 1, 2, 3, 6, 7, 8]);
    }

    #[test]
    fn max_bytes_gives_full_until_acks_free_a_segment() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = DiskLog::open(dir.path(), cfg(120, 240)).unwrap();
        for i in 0..4 {
            append(&mut log, i);
        }
        let [a, b] = rec(4);
        let full = log.append(&[&a, &b]);
        assert!(
            matches!(
                full,
                Err(AppendError::Full {
                    entry_bytes: 60,
                    live_bytes: 240,
                    max_bytes: 240
                })
            ),
            "{full:?}"
        );
        assert_eq!(log.next_id(), 4, "Full changes nothing");
        let huge = vec![0u8; 300];
        assert!(matches!(
            log.append(&[&huge]),
            Err(AppendError::TooLarge { .. })
        ));
        log.ack(0).unwrap();
        assert!(matches!(
            log.append(&[&a, &b]),
            Err(AppendError::Full { .. })
        ));
        log.ack(1).unwrap(); // the first segment goes
        assert_eq!(log.bytes(), 120);
        assert_eq!(log.append(&[&a, &b]).unwrap().id, 4);
    }

    /// `drop_oldest` with the reader inside the oldest segment: the segment goes whole; the
    /// entries handed out stay with the sink (acknowledged to nothing), the others are counted
    /// as dropped; the reader goes on with the next kept entry; a restart sees none of it.
    #[test]
    fn dropping_the_oldest_segment_under_the_reader_moves_it_on_and_counts_exactly() {
        let dir = tempfile::tempdir().unwrap();
        // Three 60-byte entries per segment, four segments at most.
        let (mut log, _) = DiskLog::open(dir.path(), cfg(180, 720)).unwrap();
        for i in 0..12 {
            append(&mut log, i);
        }
        let [a, b] = rec(12);
        let Err(AppendError::Full {
            entry_bytes,
            live_bytes,
            max_bytes,
        }) = log.append(&[&a, &b])
        else {
            panic!("not full")
        };
        assert_eq!(log.read_next().unwrap().unwrap().id, 0);
        assert_eq!(log.read_next().unwrap().unwrap().id, 1);
        log.ack(0).unwrap();
        let p = log.drop_oldest(live_bytes + entry_bytes - max_bytes);
        assert_eq!((p.segments, p.freed, p.left_with_sink), (1, 180, 1));
        assert_eq!(
            (p.dropped.entries, p.dropped.records, p.dropped.bytes),
            (1, 2, 60)
        );
        assert_eq!(p.dropped.ids, Some((2, 2)));
        assert_eq!(p.dropped.arrivals, None, "bare entries record no arrival");
        assert!(!segment::segment_path(dir.path(), 0).exists());
        assert_eq!((log.bytes(), log.pending_entries()), (540, 9));
        assert_eq!(log.append(&[&a, &b]).unwrap().id, 12);
        // Entry 1 is with the sink: its acknowledgement strikes it off the list.
        assert!(log.is_left_with_sink(1));
        assert!(log.ack(1).unwrap());
        assert!(!log.ack(1).unwrap());
        assert_eq!(log.ack_point(), 3);
        assert_eq!(read_ids(&mut log), (3..13).collect::<Vec<_>>());
        log.close().unwrap();
        let (mut log, rec) = DiskLog::open(dir.path(), cfg(180, 720)).unwrap();
        assert_eq!((rec.ack_point, rec.entries, rec.records), (3, 10, 20));
        assert_eq!(read_ids(&mut log), (3..13).collect::<Vec<_>>());
    }

    /// `drop_oldest` deletes every segment and the process dies twice before the ack point is
    /// synced: the ids of the dropped entries are never given out again.
    #[test]
    fn ids_keep_increasing_when_a_drop_empties_the_log_and_starts_crash() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = DiskLog::open(dir.path(), cfg(240, 240)).unwrap();
        for i in 0..4 {
            append(&mut log, i);
        }
        assert_eq!(log.drop_oldest(60).dropped.entries, 4);
        log.crash();
        let (log, rec) = DiskLog::open(dir.path(), cfg(240, 240)).unwrap();
        assert_eq!((rec.ack_point, rec.entries), (0, 0), "the file read");
        assert!(log.next_id() >= 4, "{}", log.next_id());
        // The start took the ids over into the ack point before deleting the empty segment.
        assert!(files(dir.path(), ".seg").is_empty());
        let first = log.next_id();
        log.crash();
        let (mut log, rec) = DiskLog::open(dir.path(), cfg(240, 240)).unwrap();
        assert_eq!(rec.ack_point, first);
        assert_eq!(append(&mut log, 9).id, first);
    }

    /// With one segment as large as the buffer, the active segment itself goes.
    #[test]
    fn dropping_may_take_the_active_segment_and_appending_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = DiskLog::open(dir.path(), cfg(240, 240)).unwrap();
        for i in 0..4 {
            append(&mut log, i);
        }
        let p = log.drop_oldest(60);
        assert_eq!(
            (p.segments, p.dropped.entries, p.dropped.records),
            (1, 4, 8)
        );
        assert_eq!((log.bytes(), log.pending_entries()), (0, 0));
        // An empty segment keeps the ids: a crash now must not number entries from 0 again.
        assert_eq!(files(dir.path(), ".seg"), [format!("{:020}.seg", 4)]);
        assert_eq!(append(&mut log, 4).id, 4);
        assert_eq!(files(dir.path(), ".seg"), [format!("{:020}.seg", 4)]);
        assert_eq!(read_ids(&mut log), vec![4]);
        // Nothing to drop: an empty plan.
        log.ack(4).unwrap();
        assert_eq!(log.drop_oldest(0).segments, 0);
    }

    /// Entries written from batches count their payloads (not the batch header) and keep their
    /// arrival time, also when recovered at the next start.
    #[test]
    fn batch_entries_count_their_records_and_arrival_across_a_restart() {
        use crate::core::record::{Batch, Origin, PositionBase};
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = DiskLog::open(dir.path(), cfg(1 << 20, 1 << 20)).unwrap();
        let mut owned = Vec::new();
        for (i, at) in [(0u32, 30u64), (1, 10), (2, 20)] {
            let data = bytes::Bytes::from(vec![b'x'; 10]);
            let spans = (0..=i)
                .map(|j| Span {
                    start: j,
                    end: j + 1,
                })
                .collect();
            let origin = Origin {
                source: std::sync::Arc::from("in"),
                arrival_unix_nanos: at,
                arrival: Instant::now(),
                position: PositionBase::None,
            };
            let b = Batch::new(data, spans, origin);
            log.append(&batch::encode(&b, &mut owned)).unwrap();
        }
        log.close().unwrap();
        let (mut log, rec) = DiskLog::open(dir.path(), cfg(1 << 20, 1 << 20)).unwrap();
        assert_eq!((rec.entries, rec.records), (3, 6));
        let p = log.drop_oldest(1);
        assert_eq!((p.dropped.records, p.dropped.arrivals), (6, Some((10, 30))));
    }

    /// A crash (no sync) after a drop: the deleted segments do not come back, the kept entries
    /// are delivered again, in order.
    #[test]
    fn a_crash_after_a_drop_does_not_bring_the_dropped_entries_back() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = DiskLog::open(dir.path(), cfg(180, 720)).unwrap();
        for i in 0..12 {
            append(&mut log, i);
        }
        log.sync().unwrap();
        let p = log.drop_oldest(200);
        assert_eq!((p.segments, p.dropped.entries), (2, 6));
        std::mem::forget(log); // the ack point on disk is still 0
        let (mut log, rec) = DiskLog::open(dir.path(), cfg(180, 720)).unwrap();
        assert_eq!((rec.ack_point, rec.entries), (0, 6));
        assert_eq!(read_ids(&mut log), (6..12).collect::<Vec<_>>());
    }

    /// Entries the sink holds when their segment is deleted are listed (before the deletion),
    /// struck off when acknowledged (persisted by the next sync), and those still listed at a
    /// crash are counted at the next start, once.
    #[test]
    fn entries_left_with_the_sink_are_counted_after_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let left = dir.path().join(LEFT_FILE);
        let (mut log, _) = DiskLog::open(dir.path(), cfg(180, 360)).unwrap();
        for i in 0..6 {
            append(&mut log, i);
        }
        // The sink takes 0..4 and is done with 0.
        for id in 0..4 {
            assert_eq!(log.read_next().unwrap().unwrap().id, id);
        }
        log.ack(0).unwrap();
        log.sync().unwrap();
        let p = log.drop_oldest(1);
        assert_eq!((p.segments, p.left_with_sink, p.dropped.entries), (1, 2, 0));
        assert_eq!(log.left_with_sink(), 2);
        assert!(log.is_left_with_sink(1) && log.is_left_with_sink(2));
        assert!(!segment::segment_path(dir.path(), 0).exists());
        let listed = LeftWithSink::decode(&fs::read(&left).unwrap()).unwrap();
        assert_eq!(listed.iter().map(|e| e.id).collect::<Vec<_>>(), [1, 2]);
        // Acknowledged: struck off, but only in memory until the next sync.
        assert!(log.ack(1).unwrap());
        assert!(!log.ack(1).unwrap());
        assert_eq!(log.left_with_sink(), 1);
        assert!(
            log.sync_deadline(Instant::now()).is_some(),
            "the list waits for a sync"
        );
        log.crash(); // kill -9: 1 was delivered (an overcount), 2 is lost
        let (mut log, rec) = DiskLog::open(dir.path(), cfg(180, 360)).unwrap();
        let lost: Vec<_> = rec.lost_with_sink.iter().map(|e| e.id).collect();
        assert_eq!(lost, [1, 2]);
        assert_eq!(rec.lost_with_sink[0].records, 2);
        assert_eq!(rec.lost_with_sink[0].len, 60);
        assert!(!left.exists(), "counted by this start only");
        assert_eq!(rec.entries, 3, "3..6 recovered");
        // The same again, with the acknowledgement synced before the crash.
        let ids = read_ids(&mut log);
        assert_eq!(ids, [3, 4, 5]);
        for i in 6..9 {
            append(&mut log, i);
        }
        let p = log.drop_oldest(1);
        assert_eq!(p.left_with_sink, 3);
        assert!(log.ack(4).unwrap());
        log.sync().unwrap();
        let listed = LeftWithSink::decode(&fs::read(&left).unwrap()).unwrap();
        assert_eq!(listed.iter().map(|e| e.id).collect::<Vec<_>>(), [3, 5]);
        log.crash();
        let (mut log, rec) = DiskLog::open(dir.path(), cfg(180, 360)).unwrap();
        let lost: Vec<_> = rec.lost_with_sink.iter().map(|e| e.id).collect();
        assert_eq!(lost, [3, 5]);
        assert_eq!(read_ids(&mut log), [6, 7, 8]);
        // A clean stop with the sink done: no list, nothing counted.
        for i in 6..9 {
            log.ack(i).unwrap();
        }
        log.close().unwrap();
        assert!(!left.exists());
        let (_, rec) = DiskLog::open(dir.path(), cfg(180, 360)).unwrap();
        assert!(rec.lost_with_sink.is_empty());
        assert_eq!(rec.entries, 0);
    }

    /// A crash after the list was written but before the segment was deleted: the entries are
    /// recovered from the segment and delivered, not counted.
    #[test]
    fn a_listed_entry_found_again_in_its_segment_is_delivered_not_counted() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = DiskLog::open(dir.path(), cfg(180, 360)).unwrap();
        for i in 0..6 {
            append(&mut log, i);
        }
        assert_eq!(read_ids(&mut log).len(), 6);
        log.sync().unwrap();
        let seg = segment::segment_path(dir.path(), 0);
        let kept = fs::read(&seg).unwrap();
        assert_eq!(log.drop_oldest(1).left_with_sink, 3);
        log.crash();
        fs::write(&seg, kept).unwrap(); // as if the deletion had not happened
        let (mut log, rec) = DiskLog::open(dir.path(), cfg(180, 360)).unwrap();
        assert!(rec.lost_with_sink.is_empty(), "{:?}", rec.lost_with_sink);
        assert_eq!(read_ids(&mut log), (0..6).collect::<Vec<_>>());
    }

    /// A damaged list is moved aside and reported: the router starts, those entries cannot be
    /// counted.
    #[test]
    fn a_damaged_list_is_reported_and_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let left = dir.path().join(LEFT_FILE);
        fs::write(&left, b"ERBW garbage").unwrap();
        let (_, rec) = DiskLog::open(dir.path(), cfg(180, 360)).unwrap();
        assert!(rec.lost_with_sink.is_empty());
        assert_eq!(rec.damages.len(), 1, "{:?}", rec.damages);
        assert!(rec.damages[0].file.ends_with(LEFT_FILE));
        assert!(
            rec.damages[0].reason.contains("cannot be counted"),
            "{}",
            rec.damages[0]
        );
        assert!(!left.exists());
        assert!(dir.path().join(format!("{LEFT_FILE}.damaged-0")).exists());
        assert!(rec.ignored.is_empty());
    }

    /// A list the drop cannot write (a full disk) is written right after the segment is
    /// deleted.
    #[test]
    fn a_list_that_cannot_be_written_before_the_deletion_is_written_after_it() {
        use crate::buffer::faulty::{ENOSPC, Fault, FaultyFs, Op};
        let dir = tempfile::tempdir().unwrap();
        let faulty = FaultyFs::new();
        let (mut log, _) = DiskLog::open_on(faulty.arc(), dir.path(), cfg(180, 360)).unwrap();
        for i in 0..6 {
            append(&mut log, i);
        }
        assert_eq!(read_ids(&mut log).len(), 6);
        faulty.inject(Fault::new(Op::Write, ENOSPC).on(LEFT_TMP_FILE));
        assert_eq!(log.drop_oldest(1).left_with_sink, 3);
        assert_eq!(faulty.calls(Op::Write, LEFT_TMP_FILE), 2, "tried twice");
        assert!(!segment::segment_path(dir.path(), 0).exists());
        let listed = LeftWithSink::decode(&fs::read(dir.path().join(LEFT_FILE)).unwrap()).unwrap();
        assert_eq!(listed.len(), 3);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Append,
        Read,
        Ack(usize),
        Drop(u64),
        Sync,
        /// The process dies: nothing is synced, the sink's memory is gone.
        Crash,
    }

    impl DiskLog {
        /// Dies as a killed process would: nothing synced or persisted, its files closed.
        fn crash(mut self) {
            self.active = None;
            self.reader = None;
            self.sealed_unsynced.clear();
            std::mem::forget(self);
        }

        /// Ids of the pending entries in the log (for tests).
        fn pending_ids(&self) -> BTreeSet<u64> {
            self.segments
                .values()
                .flat_map(|s| s.entries.iter())
                .filter(|s| s.state == EntryState::Pending)
                .map(|s| s.loc.id)
                .collect()
        }
    }

    proptest! {
        /// Appends (dropping the oldest when full, as the writer does), reads, acknowledgements
        /// in any order, drops, syncs and crashes (the sink loses what it held), at random:
        /// within a run entries are handed out in id order and never twice, no entry counted
        /// dropped is handed out after that, and at the end every appended entry was delivered
        /// or counted dropped (none lost uncounted), none counted twice; an entry counted
        /// dropped that was delivered too is one the sink acknowledged after its segment was
        /// deleted (the documented overcount). Without a crash: exactly once.
        #[test]
        fn drops_count_every_record_once_and_never_redeliver(
            ops in proptest::collection::vec(
                prop_oneof![
                    8 => Just(Op::Append),
                    6 => Just(Op::Read),
                    4 => (0usize..8).prop_map(Op::Ack),
                    2 => (0u64..400).prop_map(Op::Drop),
                    1 => Just(Op::Sync),
                    1 => Just(Op::Crash),
                ],
                1..160,
            )
        ) {
            let dir = tempfile::tempdir().unwrap();
            let (mut log, _) = DiskLog::open(dir.path(), cfg(180, 600)).unwrap();
            let mut appended = BTreeSet::new();
            let mut with_sink: Vec<u64> = Vec::new();
            let mut delivered: Vec<u64> = Vec::new();
            let mut handed: Vec<u64> = Vec::new();
            let mut dropped = BTreeSet::new();
            let mut dropped_records = 0u64;
            let mut acked_while_listed = BTreeSet::new();
            let mut crashed = false;
            let mut delivered_before_crash = BTreeSet::new();
            // One drop: what it counts are exactly the pending entries not handed out that it
            // deletes; what it lists are exactly the handed-out ones it deletes.
            let drop_oldest = |log: &mut DiskLog,
                        need: u64,
                        handed: &[u64],
                        dropped: &mut BTreeSet<u64>,
                        records: &mut u64|
             -> Result<(), TestCaseError> {
                let before = log.pending_ids();
                let p = log.drop_oldest(need);
                let after = log.pending_ids();
                let mut gone = 0;
                for id in before.difference(&after) {
                    if handed.contains(id) {
                        prop_assert!(log.is_left_with_sink(*id), "{id} not listed");
                    } else {
                        prop_assert!(dropped.insert(*id), "{id} counted twice");
                        gone += 1;
                    }
                }
                prop_assert_eq!(p.dropped.entries, gone);
                *records += p.dropped.records;
                Ok(())
            };
            for op in ops {
                match op {
                    Op::Append => {
                        let id = log.next_id();
                        let [a, b] = rec(id);
                        match log.append(&[&a, &b]) {
                            Ok(x) => prop_assert_eq!(x.id, id),
                            Err(AppendError::Full { entry_bytes, live_bytes, max_bytes }) => {
                                drop_oldest(&mut log, live_bytes + entry_bytes - max_bytes, &handed,
                                    &mut dropped, &mut dropped_records)?;
                                prop_assert_eq!(log.append(&[&a, &b]).unwrap().id, id);
                            }
                            Err(e) => panic!("{e}"),
                        }
                        appended.insert(id);
                    }
                    Op::Read => {
                        if let Some(e) = log.read_next().unwrap() {
                            let [a, b] = rec(e.id);
                            prop_assert_eq!(e.records().collect::<Vec<_>>(), vec![&a[..], &b[..]]);
                            prop_assert!(handed.last().is_none_or(|&l| l < e.id), "order");
                            prop_assert!(!dropped.contains(&e.id), "{} counted dropped", e.id);
                            handed.push(e.id);
                            with_sink.push(e.id);
                        }
                    }
                    Op::Ack(i) if !with_sink.is_empty() => {
                        let id = with_sink.remove(i % with_sink.len());
                        if log.is_left_with_sink(id) {
                            acked_while_listed.insert(id);
                        }
                        prop_assert!(log.ack(id).unwrap());
                        prop_assert!(!log.is_left_with_sink(id));
                        delivered.push(id);
                    }
                    Op::Ack(_) => {}
                    Op::Drop(need) => {
                        drop_oldest(&mut log, need, &handed, &mut dropped, &mut dropped_records)?;
                    }
                    Op::Sync => log.sync().unwrap(),
                    Op::Crash => {
                        crashed = true;
                        // Delivered, maybe not persisted: may come back and be lost again.
                        delivered_before_crash.extend(delivered.iter().copied());
                        log.crash();
                        with_sink.clear();
                        handed.clear();
                        let (reopened, rec) = DiskLog::open(dir.path(), cfg(180, 600)).unwrap();
                        log = reopened;
                        prop_assert!(rec.damages.is_empty(), "{:?}", rec.damages);
                        for e in &rec.lost_with_sink {
                            prop_assert!(dropped.insert(e.id), "{} counted twice", e.id);
                            dropped_records += u64::from(e.records);
                        }
                        prop_assert!(!dir.path().join(LEFT_FILE).exists(), "counted once");
                        prop_assert!(log.pending_ids().iter().all(|id| !dropped.contains(id)));
                    }
                }
                prop_assert!(log.bytes() <= 600);
            }
            // The sink delivers what it has and what is left; then a clean stop.
            for id in with_sink.drain(..) {
                if log.is_left_with_sink(id) {
                    acked_while_listed.insert(id);
                }
                prop_assert!(log.ack(id).unwrap());
                delivered.push(id);
            }
            while let Some(e) = log.read_next().unwrap() {
                prop_assert!(handed.last().is_none_or(|&l| l < e.id));
                prop_assert!(!dropped.contains(&e.id));
                handed.push(e.id);
                prop_assert!(log.ack(e.id).unwrap());
                delivered.push(e.id);
            }
            prop_assert_eq!(log.left_with_sink(), 0);
            log.close().unwrap();
            prop_assert!(!dir.path().join(LEFT_FILE).exists());
            prop_assert_eq!(dropped_records, 2 * dropped.len() as u64);
            let mut once = delivered.clone();
            once.sort_unstable();
            once.dedup();
            if !crashed {
                prop_assert_eq!(once.len(), delivered.len(), "delivered twice");
            }
            let once: BTreeSet<u64> = once.into_iter().collect();
            let uncounted: Vec<_> = appended
                .iter()
                .filter(|id| !once.contains(*id) && !dropped.contains(*id))
                .collect();
            prop_assert!(uncounted.is_empty(), "lost uncounted: {uncounted:?}");
            let both: BTreeSet<u64> = once.intersection(&dropped).copied().collect();
            let acked_unpersisted: BTreeSet<u64> =
                acked_while_listed.union(&delivered_before_crash).copied().collect();
            prop_assert!(
                both.is_subset(&acked_unpersisted),
                "counted dropped and delivered: {both:?}"
            );
            if !crashed {
                prop_assert!(both.is_empty());
            }
            prop_assert!(once.iter().chain(&dropped).all(|id| appended.contains(id)));
            // A clean stop leaves nothing listed and nothing to deliver.
            let (_, rec) = DiskLog::open(dir.path(), cfg(180, 600)).unwrap();
            prop_assert!(rec.lost_with_sink.is_empty());
            prop_assert_eq!(rec.entries, 0);
        }
    }

    #[test]
    fn a_fully_acknowledged_active_segment_is_reclaimed_when_full() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = DiskLog::open(dir.path(), cfg(1 << 20, 120)).unwrap();
        for i in 0..2 {
            append(&mut log, i);
            log.ack(i).unwrap();
        }
        assert_eq!(log.bytes(), 120);
        assert_eq!(append(&mut log, 2).id, 2);
        assert_eq!(log.bytes(), 60);
        assert_eq!(files(dir.path(), ".seg"), [format!("{:020}.seg", 2)]);
    }

    #[test]
    fn garbage_in_the_directory_does_not_stop_open() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = DiskLog::open(dir.path(), cfg(1 << 20, 1 << 20)).unwrap();
        append(&mut log, 0);
        log.close().unwrap();
        fs::write(dir.path().join("notes.txt"), "hello").unwrap();
        fs::write(segment::segment_path(dir.path(), 7), "not a segment at all").unwrap();
        fs::write(dir.path().join(ACK_FILE), "junk").unwrap();
        fs::create_dir(dir.path().join(format!("{:020}.seg", 9))).unwrap();

        let (mut log, rec) = DiskLog::open(dir.path(), cfg(1 << 20, 1 << 20)).unwrap();
        assert_eq!(rec.ignored.len(), 2, "{:?}", rec.ignored);
        assert_eq!(rec.damages.len(), 2, "{:?}", rec.damages);
        assert!(rec.damages[0].file.ends_with(ACK_FILE));
        let d = &rec.damages[1];
        assert_eq!((d.offset, d.len), (0, 20));
        assert!(dir.path().join(format!("{:020}.seg.damaged-0", 7)).exists());
        assert!(!segment::segment_path(dir.path(), 7).exists());
        assert_eq!(read_ids(&mut log), vec![0]);
        assert_eq!(
            append(&mut log, 8).id,
            8,
            "ids continue past every segment name"
        );
        log.ack(0).unwrap();
        log.close().unwrap();
        let (_, rec) = DiskLog::open(dir.path(), cfg(1 << 20, 1 << 20)).unwrap();
        assert!(rec.damages.is_empty(), "{:?}", rec.damages);
        assert_eq!(rec.ack_point, 8);
    }

    #[test]
    fn an_unusable_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        fs::write(&file, "x").unwrap();
        let err = DiskLog::open(&file, LogConfig::default()).unwrap_err();
        assert!(matches!(err, BufferError::Dir { .. }));
        assert!(err.to_string().contains(&*file.to_string_lossy()), "{err}");
    }

    #[test]
    fn an_entry_damaged_after_open_is_kept_for_the_next_start_and_reading_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = DiskLog::open(dir.path(), cfg(1 << 20, 1 << 20)).unwrap();
        for i in 0..3 {
            append(&mut log, i);
        }
        // Reopened (as after a restart): the entries are read back from the file.
        drop(log);
        let (mut log, _) = DiskLog::open(dir.path(), cfg(1 << 20, 1 << 20)).unwrap();
        let seg = segment::segment_path(dir.path(), 0);
        let mut bytes = fs::read(&seg).unwrap();
        bytes[60 + 30] ^= 0xff;
        fs::write(&seg, &bytes).unwrap();
        assert_eq!(log.read_next().unwrap().unwrap().id, 0);
        let err = log.read_next().unwrap_err();
        assert!(
            matches!(
                err,
                BufferError::Unreadable {
                    id: 1,
                    offset: 60,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains(&*seg.to_string_lossy()), "{err}");
        assert_eq!(log.read_next().unwrap().unwrap().id, 2);
        assert_eq!(log.pending_entries(), 2);
        // Done for this run: not handed out again, not waited for.
        for id in [0, 2] {
            assert!(log.ack(id).unwrap());
        }
        assert!(!log.ack(1).unwrap());
        log.rewind();
        assert_eq!(log.read_next().unwrap(), None);
        assert_eq!(log.pending_entries(), 0);
        // But not acknowledged: the ack point stays below it and the segment stays.
        assert_eq!(log.ack_point(), 1);
        assert!(seg.exists());
        log.close().unwrap();
        let (_, rec) = DiskLog::open(dir.path(), cfg(1 << 20, 1 << 20)).unwrap();
        assert_eq!(rec.ack_point, 1);
        assert_eq!(rec.damages.len(), 1, "{:?}", rec.damages);
        assert_eq!(rec.damages[0].offset, 60);
        assert!(
            dir.path()
                .join(format!("{:020}.seg.damaged-60", 0))
                .exists()
        );
    }

    #[test]
    fn skipped_entries_are_handed_out_once_and_acknowledged_as_usual() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = DiskLog::open(dir.path(), cfg(1 << 20, 1 << 20)).unwrap();
        for i in 0..4 {
            append(&mut log, i);
        }
        assert_eq!(log.peek_next_id(), Some(0));
        assert_eq!(log.skip_next(), Some(0));
        assert_eq!(log.read_next().unwrap().unwrap().id, 1);
        assert_eq!(log.skip_next(), Some(2));
        assert_eq!(log.peek_next_id(), Some(3));
        assert_eq!(log.read_next().unwrap().unwrap().id, 3);
        assert_eq!(log.skip_next(), None);
        for id in 0..4 {
            assert!(log.ack(id).unwrap());
        }
        assert_eq!(log.pending_entries(), 0);
        // Skipped but not acknowledged: handed out again after a rewind.
        append(&mut log, 4);
        assert_eq!(log.skip_next(), Some(4));
        log.rewind();
        assert_eq!(log.read_next().unwrap().unwrap().id, 4);
    }

    #[test]
    fn rewind_hands_out_unacknowledged_entries_again() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = DiskLog::open(dir.path(), cfg(120, 1 << 20)).unwrap();
        for i in 0..5 {
            append(&mut log, i);
        }
        assert_eq!(read_ids(&mut log).len(), 5);
        log.ack(1).unwrap();
        log.ack(2).unwrap();
        log.rewind();
        assert_eq!(read_ids(&mut log), vec![0, 3, 4]);
    }

    #[test]
    fn fsync_policy_decides_with_the_time_passed_in() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let (mut log, _) = DiskLog::open(dir.path(), cfg(1 << 20, 1 << 20)).unwrap();
        assert!(!log.maybe_sync(t0).unwrap(), "nothing to sync");
        assert_eq!(log.sync_deadline(t0), None);
        append(&mut log, 0);
        assert_eq!(log.sync_deadline(t0), Some(t0));
        assert!(log.maybe_sync(t0).unwrap());
        append(&mut log, 1);
        assert_eq!(log.sync_deadline(t0), Some(t0 + ms(100)));
        assert!(!log.maybe_sync(t0 + ms(50)).unwrap());
        assert!(log.maybe_sync(t0 + ms(100)).unwrap());
        assert!(!log.maybe_sync(t0 + ms(300)).unwrap(), "nothing new");
        read_ids(&mut log);
        log.ack(0).unwrap();
        assert!(log.maybe_sync(t0 + ms(300)).unwrap(), "the ack point moved");
        assert_eq!(read_ack_file(&RealFs, &dir.path().join(ACK_FILE)), Ok(1));
        drop(log);

        let never = LogConfig {
            fsync: Fsync::Never,
            ..cfg(1 << 20, 1 << 20)
        };
        let (mut log, _) = DiskLog::open(dir.path(), never).unwrap();
        append(&mut log, 2);
        assert!(!log.maybe_sync(t0).unwrap(), "never syncs entries");
        read_ids(&mut log);
        log.ack(1).unwrap();
        assert!(log.maybe_sync(t0).unwrap(), "still writes the ack point");
        assert_eq!(read_ack_file(&RealFs, &dir.path().join(ACK_FILE)), Ok(2));
        drop(log);

        let always = LogConfig {
            fsync: Fsync::Always,
            ..cfg(1 << 20, 1 << 20)
        };
        let (mut log, _) = DiskLog::open(dir.path(), always).unwrap();
        append(&mut log, 3);
        assert!(!log.maybe_sync(t0).unwrap(), "append synced already");
    }
}
