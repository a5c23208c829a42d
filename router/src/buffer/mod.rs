//! Disk buffers: a sink's records kept on local disk until the sink has delivered them.
//!
//! This module owns the files of one buffer directory and nothing else: it starts no thread,
//! reads no clock (`now` is passed in) and knows no sink. The wiring (a sink task that appends
//! batches, reads them back, acknowledges delivered ones and applies [`WhenFull`]) lives with
//! the sinks.
//!
//! - [`format`](mod@format) (pure): one entry per batch, with a header checksum and a body
//!   checksum.
//! - [`segment`]: segment files `<first_id:020>.seg`, written append-only, and
//!   [`segment::scan_segment`], which stops at the first bad entry.
//! - [`log`](mod@log): [`DiskLog`], the segmented log with out-of-order acknowledgements, the
//!   `max_bytes` bound, the fsync policy ([`Fsync`]), recovery at open and what happens when
//!   the disk fails.
//! - [`evict`] (pure): which of the oldest segments `when_full = "drop_oldest"` deletes, and
//!   what that drops ([`DiskLog::drop_oldest`] does it).
//! - [`with_sink`] (pure): the list of entries of deleted segments the sink still holds, its
//!   file, and what the next start counts of it as dropped.
//! - [`batch`]: a batch as an entry's records, and what an entry holds ([`batch::summary`]:
//!   its records and arrival time, kept per entry so drops are counted without reading back).
//! - [`fs`](mod@fs): [`LogFs`], every file operation of the log and its segments, and
//!   [`RealFs`] over `std::fs`; tests use a fault-injecting one (`faulty.rs`) to fill the disk
//!   and fail writes, fsyncs and reads.
//!
//! # On disk
//!
//! ```text
//! <dir>/00000000000000000000.seg          entries 0.. (the file name is the first entry id)
//! <dir>/00000000000000000412.seg          entries 412..; the newest is the one appended to
//! <dir>/acked                             the ack point: b"ERBA", 1u8, 0, 0, 0, u64 LE, CRC-32 LE
//! <dir>/with-sink                         entries of deleted segments the sink still holds
//!                                         (only after a drop_oldest; see [`with_sink`])
//! <dir>/00000000000000000412.seg.damaged-8192   bad bytes moved aside by recovery
//! ```
//!
//! An entry (all integers little-endian; see [`format`](mod@format)):
//!
//! ```text
//! magic "ERBL" | version 1 | flags 0 | reserved 0 0 | body_len u32 | body_crc u32 | header_crc u32
//! id u64 | count u32 | count * (len u32, payload)
//! ```
//!
//! Entry ids increase strictly across the whole log, also across restarts and crashes: a start
//! takes the next id from the segment files and the ack point, so when the last segment file
//! goes (acknowledged, or deleted by `drop_oldest`) ahead of the persisted ack point, an empty
//! segment is started at once, and a start that deletes the last spent files persists the ack
//! point first. A segment is never appended to again once
//! the log has moved on (after a restart the log always starts a new segment), and it is deleted
//! when all of its entries are acknowledged. The ack point (the lowest unacknowledged id) is
//! written to `acked` through `acked.tmp` and a rename, whenever the log syncs.
//!
//! # Guarantees
//!
//! - **At least once.** An entry leaves the log only through [`DiskLog::ack`]. After a restart
//!   every entry at or above the persisted ack point is read again, before any new entry.
//! - **Duplicate bound.** After a crash, the entries read again although they were delivered
//!   are those acknowledged after the ack point was last persisted (at most one sync interval of
//!   acknowledgements, plus, since acknowledgements may come out of order, acknowledged entries
//!   above a still-unacknowledged one), plus the entries that were in flight to the sink.
//! - **Loss bound.** With [`Fsync::Always`] an appended entry survives a power loss. With
//!   [`Fsync::Interval`] a power loss may lose the entries appended during the last interval
//!   (a sync covers what is not delivered yet: a finished segment is synced by the next
//!   periodic sync unless all of it was acknowledged and deleted by then, and the active one is
//!   skipped when all of it is acknowledged, so a sink that keeps up costs few disk writes);
//!   with [`Fsync::Never`] whatever the OS had not written. A process crash loses nothing
//!   (entries are written to the file, not kept in a user-space buffer).
//! - **Damage does not stop the router.** Recovery keeps the good prefix of each segment, moves
//!   the bad bytes aside and reports each place with file and offset ([`Recovery`]). An entry
//!   that cannot be read back later is not delivered in that run, with an error naming it
//!   ([`BufferError::Unreadable`]); entries after it are still delivered, and the ack point
//!   stays below it, so the next start reads it again (or moves its bytes aside).
//! - **Bounded.** Live segment bytes never exceed `max_bytes`: [`DiskLog::append`] answers
//!   [`AppendError::Full`] instead, and the caller applies [`WhenFull`]. A segment is freed only
//!   when all of it is acknowledged, so one old unacknowledged entry holds its whole segment,
//!   or, with [`WhenFull::DropOldest`], when [`DiskLog::drop_oldest`] deletes it whole: its
//!   entries not handed out are dropped (not delivered, counted with their records, bytes, ids
//!   and arrival times), the ack point moves past them, and the reader goes on with the oldest
//!   entry kept. This is the one way an entry leaves the log unacknowledged.
//! - **Every drop is counted.** Entries of a deleted segment that the sink holds (handed out,
//!   not acknowledged) are delivered or dead-lettered by the sink; until it acknowledges them
//!   they are listed in `with-sink`, written before the segment is deleted, so those a crash
//!   takes from the sink's memory are counted as dropped at the next start
//!   ([`Recovery::lost_with_sink`]). An entry acknowledged after the last sync is counted too
//!   although it was delivered: the overcount is bounded like the duplicates.
//! - **Disk failures lose nothing acknowledged.** A write or fsync that fails (a full disk,
//!   an I/O error) appends nothing: the error names the file and the operation, and the
//!   caller keeps the batch (the sink's buffer waits and tries again on a full disk with
//!   `when_full = "block"`, and dead-letters it otherwise). With [`Fsync::Always`] an entry is
//!   appended only once its fsync (and its new segment's directory entry) succeeded. A failed
//!   periodic sync is tried again after a growing delay ([`log::retry_delay`], at most 5 s),
//!   never in a loop; the ack point is persisted only by a sync that succeeded, so a failure
//!   there costs duplicates after a restart, never entries. A segment that cannot be read at
//!   open stops the open ([`BufferError::Read`]) rather than be skipped.

pub mod batch;
pub mod evict;
#[cfg(test)]
mod faults;
#[cfg(test)]
pub(crate) mod faulty;
pub mod format;
pub mod fs;
pub mod log;
pub mod segment;
pub mod with_sink;

use std::path::PathBuf;
use std::time::Duration;

use crate::config::reader::{Diagnostics, Section};

pub use fs::{LogFs, RealFs};
pub use log::{
    AppendError, Appended, BufferError, DiskLog, Fsync, LogConfig, ReadEntry, RecoveredDamage,
    Recovery, SyncJob,
};

/// What a sink does with a batch when its buffer is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WhenFull {
    /// Wait until acknowledgements make room: backpressure reaches the sources.
    #[default]
    Block,
    /// Drop the new batch (counted, and dead-lettered), keep what is buffered.
    DropNewest,
    /// Delete the oldest segments, whole, to make room (the records in them that the sink has
    /// not taken are counted as dropped; see [`evict`]): the newest records keep coming in.
    DropOldest,
}

/// Settings of one sink's disk buffer (the `buffer` table of a sink).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BufferConfig {
    /// The buffer's own directory (one per sink).
    pub dir: PathBuf,
    /// The most bytes of live segments.
    pub max_bytes: u64,
    /// Size at which a new segment is started.
    pub segment_bytes: u64,
    /// What to do with a batch when the buffer is full.
    pub when_full: WhenFull,
    /// When written entries are forced to the disk.
    pub fsync: Fsync,
}

impl BufferConfig {
    /// Reads a buffer table: `dir` (required), `max_bytes` (default 1GiB), `segment_bytes`
    /// (16MiB), `when_full` (`"block"`, `"drop_newest"` or `"drop_oldest"`), `fsync` (`"always"`, `"interval"`
    /// or `"never"`), `fsync_interval_ms` (100, only with `fsync = "interval"`).
    pub fn parse(s: &mut Section<'_>, d: &mut Diagnostics) -> Option<BufferConfig> {
        let dir = s.required_str(d, "dir");
        if let Some(dir) = &dir
            && dir.value.is_empty()
        {
            d.error(&dir.spot, "dir must not be empty");
        }
        let max_bytes = s.size_or(
            d,
            "max_bytes",
            log::DEFAULT_MAX_BYTES,
            (1 << 20)..=(1 << 50),
        );
        let segment_bytes = s.size_or(
            d,
            "segment_bytes",
            log::DEFAULT_SEGMENT_BYTES,
            (4 << 10)..=(1 << 30),
        );
        if segment_bytes > max_bytes {
            d.error(
                &s.spot_of("segment_bytes"),
                format!(
                    "segment_bytes ({segment_bytes}) must not be larger than max_bytes \
                     ({max_bytes})"
                ),
            );
        }
        let when_full = match s.choice(
            d,
            "when_full",
            &["block", "drop_newest", "drop_oldest"],
            "block",
        ) {
            "drop_newest" => WhenFull::DropNewest,
            "drop_oldest" => WhenFull::DropOldest,
            _ => WhenFull::Block,
        };
        let policy = s.choice(d, "fsync", &["always", "interval", "never"], "interval");
        let interval_given = s.has("fsync_interval_ms");
        let interval_ms = s.int_or(d, "fsync_interval_ms", 100, 1..=60_000);
        if interval_given && policy != "interval" {
            d.error(
                &s.spot_of("fsync_interval_ms"),
                format!(
                    "fsync_interval_ms only applies with fsync = \"interval\" (not {policy:?})"
                ),
            );
        }
        let fsync = match policy {
            "always" => Fsync::Always,
            "never" => Fsync::Never,
            _ => Fsync::Interval(Duration::from_millis(interval_ms)),
        };
        let dir = dir?;
        Some(BufferConfig {
            dir: PathBuf::from(dir.value),
            max_bytes,
            segment_bytes,
            when_full,
            fsync,
        })
    }

    /// The settings of the [`DiskLog`].
    pub fn log_config(&self) -> LogConfig {
        LogConfig {
            max_bytes: self.max_bytes,
            segment_bytes: self.segment_bytes,
            fsync: self.fsync,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::reader::{Origin, parse_document};

    fn parse(text: &str) -> Result<BufferConfig, Vec<String>> {
        let doc = parse_document("t.toml", text).unwrap();
        let origin = Origin::File {
            name: "t.toml".into(),
            text: Arc::from(text),
        };
        let mut d = Diagnostics::new();
        let mut s = Section::root(doc.as_table(), origin, "sinks.out.buffer");
        let c = BufferConfig::parse(&mut s, &mut d);
        s.finish(&mut d);
        match (d.finish(()), c) {
            (Ok(()), Some(c)) => Ok(c),
            (Err(e), _) => Err(e.0.iter().map(ToString::to_string).collect()),
            (Ok(()), None) => Err(vec!["no config and no error".into()]),
        }
    }

    #[test]
    fn defaults() {
        let c = parse("dir = \"/var/lib/er/out\"\n").unwrap();
        assert_eq!(
            c,
            BufferConfig {
                dir: "/var/lib/er/out".into(),
                max_bytes: 1 << 30,
                segment_bytes: 16 << 20,
                when_full: WhenFull::Block,
                fsync: Fsync::Interval(Duration::from_millis(100)),
            }
        );
        assert_eq!(c.log_config().fsync, Fsync::default());
    }

    #[test]
    fn every_key() {
        let c = parse(
            "dir = \"b\"\nmax_bytes = \"64MiB\"\nsegment_bytes = \"1MiB\"\n\
             when_full = \"drop_newest\"\nfsync = \"interval\"\nfsync_interval_ms = 5\n",
        )
        .unwrap();
        assert_eq!(c.max_bytes, 64 << 20);
        assert_eq!(c.segment_bytes, 1 << 20);
        assert_eq!(c.when_full, WhenFull::DropNewest);
        assert_eq!(c.fsync, Fsync::Interval(Duration::from_millis(5)));
        let c = parse("dir = \"b\"\nwhen_full = \"drop_oldest\"\n").unwrap();
        assert_eq!(c.when_full, WhenFull::DropOldest);
        let c = parse("dir = \"b\"\nfsync = \"always\"\n").unwrap();
        assert_eq!(c.fsync, Fsync::Always);
        let c = parse("dir = \"b\"\nfsync = \"never\"\n").unwrap();
        assert_eq!(c.fsync, Fsync::Never);
    }

    #[test]
    fn every_problem_is_reported() {
        let errs = parse(
            "max_bytes = \"2MiB\"\nsegment_bytes = \"4MiB\"\nwhen_full = \"drop_all\"\n\
             fsync = \"never\"\nfsync_interval_ms = 10\nflush = 1\n",
        )
        .unwrap_err();
        let want = [
            "missing required key `sinks.out.buffer.dir`",
            "t.toml:2:17: `sinks.out.buffer.segment_bytes`: segment_bytes (4194304) must not",
            "t.toml:3:13: `sinks.out.buffer.when_full`: unknown value \"drop_all\"",
            "t.toml:5:21: `sinks.out.buffer.fsync_interval_ms`: fsync_interval_ms only applies",
            "`sinks.out.buffer.flush`: unknown key `flush`",
        ];
        for w in want {
            assert!(
                errs.iter().any(|e| e.contains(w)),
                "no error contains {w:?}:\n{}",
                errs.join("\n")
            );
        }
        assert_eq!(errs.len(), want.len(), "{errs:#?}");
        let errs = parse("dir = \"\"\n").unwrap_err();
        assert!(errs[0].contains("dir must not be empty"), "{errs:?}");
    }
}
