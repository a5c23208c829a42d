//! Checkpoints: how far each file is safely read, what is persisted of it, and how.
//!
//! Owns three things:
//! - [`Ledger`], per file: the ranges of the file passed on and not yet acknowledged, and the
//!   *committed* offset: the end of the longest run of acknowledged ranges from where reading
//!   started. Acknowledgements (a batch's `Hold` dropped, per `ack`) may come in any order; the
//!   committed offset only moves past a range once it and every range before it are
//!   acknowledged. Only committed offsets are persisted, so a crash never skips a record that
//!   was not safe; what is re-read after a crash is at most what was in flight plus what was
//!   acknowledged since the last write of the checkpoint file.
//! - [`Book`]: the checkpoints of one source, keyed by device and inode: those loaded at start
//!   (kept until the source finds their files, so a file not seen yet keeps its offset) and the
//!   files being read; [`Book::snapshot`] is what to persist.
//! - The checkpoint file: JSON, versioned ([`CHECKPOINT_VERSION`]), written atomically by
//!   [`write_atomic`] (a temp file, fsync, rename, fsync of the directory), so a crash leaves the
//!   old file or the new one, never a mix. [`load`] answers a clear [`CheckpointError`] (which
//!   file, what was wrong) for a damaged file, so the source can start per `start_at` instead.
//!
//! A checkpoint's `path` is where the file was last seen, for people reading the file; the
//! identity (device, inode, fingerprint) is what decides. Paths that are not UTF-8 are written
//! with replacement characters.

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::sources::file::identity::{FINGERPRINT_BYTES, FileId, Identity};

/// The checkpoint file format this router writes and reads.
pub const CHECKPOINT_VERSION: u32 = 1;

/// Largest checkpoint file read (a file per source; about 150 bytes per file tailed).
pub const MAX_CHECKPOINT_BYTES: u64 = 64 << 20;

/// One file's checkpoint: everything before `offset` is safely passed on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The file.
    #[serde(flatten)]
    pub identity: Identity,
    /// Where it was last seen (informational).
    pub path: String,
    /// Bytes of it acknowledged.
    pub offset: u64,
    /// When the file was last found (Unix seconds, rounded down to the hour so an idle source
    /// does not rewrite the file), for dropping checkpoints of files long gone; absent in
    /// files written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seen: Option<u64>,
}

/// How finely [`Checkpoint::seen`] is kept: an hour.
pub const SEEN_GRANULARITY_S: u64 = 3600;

/// The checkpoint file's content.
#[derive(Debug, Serialize, Deserialize)]
struct FileV1 {
    version: u32,
    files: Vec<Checkpoint>,
}

/// Just the version, read first so a newer format is named as such.
#[derive(Debug, Deserialize)]
struct Header {
    version: u32,
}

/// A checkpoint file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("checkpoint file {}: {problem}", path.display())]
pub struct CheckpointError {
    /// The file.
    pub path: PathBuf,
    /// What was wrong.
    pub problem: Problem,
}

/// What was wrong with a checkpoint file.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    /// It could not be read.
    #[error("reading it: {0}")]
    Read(io::Error),
    /// It is larger than [`MAX_CHECKPOINT_BYTES`].
    #[error("it has {0} bytes, more than the {MAX_CHECKPOINT_BYTES} a checkpoint file may have")]
    TooLarge(u64),
    /// It is not checkpoint JSON.
    #[error("not checkpoint JSON at line {line}, column {column}: {message}")]
    Malformed {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What the parser expected.
        message: String,
    },
    /// Its version is not [`CHECKPOINT_VERSION`].
    #[error("format version {0}, but this router reads version {CHECKPOINT_VERSION}")]
    Version(u32),
    /// An entry makes no sense.
    #[error("entry {index}: {message}")]
    Invalid {
        /// 0-based index in `files`.
        index: usize,
        /// What is wrong with it.
        message: String,
    },
    /// Writing it failed at `step`.
    #[error("{step}: {error}")]
    Write {
        /// Which step of the atomic write.
        step: &'static str,
        /// The I/O error.
        error: io::Error,
    },
}

/// The checkpoint file's bytes for `files` (`Err` only if serde_json fails on these plain
/// structs, which it does not: never written as an empty file).
pub fn encode(files: &[Checkpoint]) -> Result<Vec<u8>, serde_json::Error> {
    #[derive(Serialize)]
    struct Out<'a> {
        version: u32,
        files: &'a [Checkpoint],
    }
    let out = Out {
        version: CHECKPOINT_VERSION,
        files,
    };
    let mut bytes = serde_json::to_vec_pretty(&out)?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// The checkpoints in `bytes`, read from the file at `path` (named in errors).
pub fn decode(path: &Path, bytes: &[u8]) -> Result<Vec<Checkpoint>, CheckpointError> {
    let err = |problem| CheckpointError {
        path: path.to_owned(),
        problem,
    };
    let malformed = |e: serde_json::Error| {
        err(Problem::Malformed {
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })
    };
    let header: Header = serde_json::from_slice(bytes).map_err(malformed)?;
    if header.version != CHECKPOINT_VERSION {
        return Err(err(Problem::Version(header.version)));
    }
    let file: FileV1 = serde_json::from_slice(bytes).map_err(malformed)?;
    let mut seen = BTreeMap::new();
    for (index, c) in file.files.iter().enumerate() {
        let invalid = |message: String| err(Problem::Invalid { index, message });
        if c.identity.fingerprint.len as usize > FINGERPRINT_BYTES {
            return Err(invalid(format!(
                "a fingerprint over {} bytes (at most {FINGERPRINT_BYTES})",
                c.identity.fingerprint.len
            )));
        }
        if let Some(first) = seen.insert(c.identity.id, index) {
            return Err(invalid(format!(
                "device {} inode {} again (first in entry {first})",
                c.identity.id.dev, c.identity.id.ino
            )));
        }
    }
    Ok(file.files)
}

/// Reads the checkpoint file at `path`: `Ok(None)` when there is none yet.
pub fn load(path: &Path) -> Result<Option<Vec<Checkpoint>>, CheckpointError> {
    let err = |problem| CheckpointError {
        path: path.to_owned(),
        problem,
    };
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(err(Problem::Read(e))),
    };
    let size = file.metadata().map_err(|e| err(Problem::Read(e)))?.len();
    if size > MAX_CHECKPOINT_BYTES {
        return Err(err(Problem::TooLarge(size)));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    // At most one byte past the limit is read, should the file grow meanwhile.
    file.take(MAX_CHECKPOINT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| err(Problem::Read(e)))?;
    if bytes.len() as u64 > MAX_CHECKPOINT_BYTES {
        return Err(err(Problem::TooLarge(bytes.len() as u64)));
    }
    decode(path, &bytes).map(Some)
}

/// Replaces the file at `path` with `bytes` atomically: writes `<path>.tmp`, syncs it, renames
/// it over `path`, syncs the directory. After a crash, `path` holds the old or the new bytes.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    let fail = |step| {
        move |error| CheckpointError {
            path: path.to_owned(),
            problem: Problem::Write { step, error },
        }
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::File::create(&tmp).map_err(fail("creating the temporary file"))?;
    f.write_all(bytes)
        .map_err(fail("writing the temporary file"))?;
    f.sync_all().map_err(fail("syncing the temporary file"))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(fail("renaming the temporary file"))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(fail("syncing the directory"))
}

/// A range of a file passed on, to acknowledge with [`Ledger::ack`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    generation: u32,
    seq: u64,
}

/// One file's ranges in flight and its committed offset (module docs).
///
/// Holds one entry per range in flight: as many as the pipeline's bounded queues let batches be
/// in flight, never more.
#[derive(Debug, Clone)]
pub struct Ledger {
    /// Bumped by [`Ledger::restart`]: older tickets no longer count.
    generation: u32,
    committed: u64,
    /// End of the last range passed on.
    sent: u64,
    /// Sequence number of `pending[0]`.
    first_seq: u64,
    /// Ends of the ranges in flight, in order, and whether each is acknowledged.
    pending: VecDeque<(u64, bool)>,
}

impl Ledger {
    /// Nothing in flight; everything before `offset` is committed (a checkpoint, or where
    /// reading starts).
    pub fn new(offset: u64) -> Ledger {
        Ledger {
            generation: 0,
            committed: offset,
            sent: offset,
            first_seq: 0,
            pending: VecDeque::new(),
        }
    }

    /// The file's bytes from the end of the last range up to `end` are passed on (records,
    /// and any dead-lettered or skipped lines between them). `end` below that end counts as it.
    pub fn send(&mut self, end: u64) -> Ticket {
        self.sent = self.sent.max(end);
        self.pending.push_back((self.sent, false));
        Ticket {
            generation: self.generation,
            seq: self.first_seq + self.pending.len() as u64 - 1,
        }
    }

    /// The range of `ticket` is acknowledged (in any order; again, or from before a restart:
    /// ignored).
    pub fn ack(&mut self, ticket: Ticket) {
        if ticket.generation != self.generation || ticket.seq < self.first_seq {
            return;
        }
        if let Some(entry) = self.pending.get_mut((ticket.seq - self.first_seq) as usize) {
            entry.1 = true;
        }
        while let Some(&(end, true)) = self.pending.front() {
            self.committed = end;
            self.pending.pop_front();
            self.first_seq += 1;
        }
    }

    /// Everything before this is acknowledged.
    pub fn committed(&self) -> u64 {
        self.committed
    }

    /// End of the last range passed on.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Ranges in flight.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// The file is read again from `offset` (it was truncated): what was in flight no longer
    /// counts (it cannot be read again), and `offset` is committed.
    pub fn restart(&mut self, offset: u64) {
        self.generation = self.generation.wrapping_add(1);
        self.committed = offset;
        self.sent = offset;
        self.first_seq = 0;
        self.pending.clear();
    }
}

/// A file in the [`Book`].
#[derive(Debug, Clone)]
struct Entry {
    identity: Identity,
    path: String,
    ledger: Ledger,
    /// Last found (Unix seconds), for entries not live.
    seen: u64,
    /// Found by this run (tracked since it started).
    live: bool,
}

/// One source's checkpoints (module docs).
#[derive(Debug, Clone, Default)]
pub struct Book {
    files: BTreeMap<FileId, Entry>,
}

impl Book {
    /// The checkpoints loaded at start (each committed at its offset) at `now` (Unix seconds:
    /// when an entry that does not say when its file was last found counts as found).
    pub fn new(loaded: Vec<Checkpoint>, now: u64) -> Book {
        let files = loaded
            .into_iter()
            .map(|c| {
                let entry = Entry {
                    identity: c.identity,
                    path: c.path,
                    ledger: Ledger::new(c.offset),
                    seen: c.seen.unwrap_or(now),
                    live: false,
                };
                (c.identity.id, entry)
            })
            .collect();
        Book { files }
    }

    /// The committed offset of file `id` with first bytes `head`, if the book has that file
    /// (same device and inode *and* matching first bytes: a reused inode is not the old file).
    pub fn offset_of(&self, id: FileId, head: &[u8]) -> Option<u64> {
        let e = self.files.get(&id)?;
        e.identity.is(id, head).then(|| e.ledger.committed())
    }

    /// Starts (or restarts, for a truncated or replaced file) tracking `identity`, seen at
    /// `path`, from `offset`. An entry for another file with the same device and inode is
    /// replaced.
    pub fn track(&mut self, identity: Identity, path: &Path, offset: u64) -> &mut Ledger {
        let path = path.to_string_lossy().into_owned();
        let e = self.files.entry(identity.id).or_insert_with(|| Entry {
            identity,
            path: path.clone(),
            ledger: Ledger::new(offset),
            seen: 0,
            live: true,
        });
        e.live = true;
        e.identity = identity;
        e.path = path;
        e.ledger.restart(offset);
        &mut e.ledger
    }

    /// The ledger of file `id`.
    pub fn ledger(&mut self, id: FileId) -> Option<&mut Ledger> {
        self.files.get_mut(&id).map(|e| &mut e.ledger)
    }

    /// File `id` has a longer fingerprint or was seen at another path.
    pub fn update(&mut self, identity: Identity, path: &Path) {
        if let Some(e) = self.files.get_mut(&identity.id) {
            e.identity = identity;
            e.path = path.to_string_lossy().into_owned();
        }
    }

    /// Forgets file `id` (gone for good).
    pub fn forget(&mut self, id: FileId) {
        self.files.remove(&id);
    }

    /// Whether the book has a checkpoint of file `id` (whatever its first bytes).
    pub fn knows(&self, id: FileId) -> bool {
        self.files.contains_key(&id)
    }

    /// The files in the book.
    pub fn ids(&self) -> Vec<FileId> {
        self.files.keys().copied().collect()
    }

    /// Drops the checkpoints loaded at start whose files this run has not found and that
    /// were last found more than `forget_after` seconds before `now` (Unix seconds); answers
    /// how many.
    pub fn prune(&mut self, now: u64, forget_after: u64) -> usize {
        let before = self.files.len();
        self.files
            .retain(|_, e| e.live || now.saturating_sub(e.seen) <= forget_after);
        before - self.files.len()
    }

    /// What to persist at `now` (Unix seconds): every file's committed offset, and when it was
    /// last found ([`SEEN_GRANULARITY_S`]).
    pub fn snapshot(&self, now: u64) -> Vec<Checkpoint> {
        let hour = now - now % SEEN_GRANULARITY_S;
        self.files
            .values()
            .map(|e| Checkpoint {
                identity: e.identity,
                path: e.path.clone(),
                offset: e.ledger.committed(),
                seen: Some(if e.live { hour } else { e.seen }),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cp(ino: u64, head: &[u8], path: &str, offset: u64) -> Checkpoint {
        Checkpoint {
            identity: Identity::new(FileId { dev: 2049, ino }, head),
            path: path.into(),
            offset,
            seen: None,
        }
    }

    #[test]
    fn checkpoints_survive_an_atomic_write_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("source.json");
        assert!(load(&path).unwrap().is_none());
        let files = vec![
            cp(11, b"first line\n", "/var/log/app.log", 4096),
            cp(12, b"", "/var/log/empty.log", 0),
        ];
        write_atomic(&path, &encode(&files).unwrap()).unwrap();
        assert_eq!(load(&path).unwrap().unwrap(), files);
        // Replaced whole; no temporary file left behind.
        let fewer = vec![cp(11, b"first line\n", "/var/log/app.log", 8192)];
        write_atomic(&path, &encode(&fewer).unwrap()).unwrap();
        assert_eq!(load(&path).unwrap().unwrap(), fewer);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["source.json"]);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"version\": 1"), "{text}");
        assert!(text.contains("\"ino\": 11"), "{text}");
    }

    #[test]
    fn a_damaged_checkpoint_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("source.json");
        let good = encode(&[cp(11, b"x", "/a", 10)]).unwrap();
        let problem = |bytes: &[u8]| {
            std::fs::write(&path, bytes).unwrap();
            let e = load(&path).unwrap_err();
            assert_eq!(e.path, path);
            let text = e.to_string();
            assert!(text.contains(&*path.to_string_lossy()), "{text}");
            (e.problem, text)
        };
        // Cut short by a crash of something else writing it.
        let (p, text) = problem(&good[..good.len() / 2]);
        assert!(matches!(p, Problem::Malformed { .. }), "{text}");
        assert!(text.contains("line "), "{text}");
        let (p, _) = problem(b"\0\0\0\0");
        assert!(matches!(p, Problem::Malformed { line: 1, .. }));
        let (p, text) = problem(br#"{"version": 7, "files": []}"#);
        assert!(matches!(p, Problem::Version(7)), "{text}");
        assert!(text.contains("version 7"), "{text}");
        let (p, _) = problem(br#"{"files": []}"#);
        assert!(matches!(p, Problem::Malformed { .. }));
        let (p, _) = problem(br#"{"version": 1, "files": [{"dev": 1, "ino": 2}]}"#);
        assert!(matches!(p, Problem::Malformed { .. }));
        let twice = encode(&[cp(11, b"x", "/a", 10), cp(11, b"y", "/b", 20)]).unwrap();
        let (p, text) = problem(&twice);
        assert!(matches!(p, Problem::Invalid { index: 1, .. }), "{text}");
        assert!(text.contains("inode 11 again"), "{text}");
        let long = r#"{"version": 1, "files": [{"dev": 1, "ino": 2,
            "fingerprint": {"len": 5000, "hash": 3}, "path": "/a", "offset": 0}]}"#;
        let (p, _) = problem(long.as_bytes());
        assert!(matches!(p, Problem::Invalid { index: 0, .. }));
        // Too large: refused before reading (a sparse file).
        std::fs::File::create(&path)
            .unwrap()
            .set_len(MAX_CHECKPOINT_BYTES + 1)
            .unwrap();
        assert!(matches!(
            load(&path).unwrap_err().problem,
            Problem::TooLarge(_)
        ));
        // A directory where the file should be.
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        assert!(load(&sub).is_err());
    }

    #[test]
    fn a_failed_atomic_write_names_its_step_and_leaves_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("source.json");
        write_atomic(&path, b"old").unwrap();
        // The temporary file's name is taken by a directory: creating it fails.
        std::fs::create_dir(dir.path().join("source.json.tmp")).unwrap();
        let e = write_atomic(&path, b"new").unwrap_err();
        assert!(
            matches!(
                e.problem,
                Problem::Write {
                    step: "creating the temporary file",
                    ..
                }
            ),
            "{e}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
    }

    #[test]
    fn the_committed_offset_waits_for_every_earlier_range() {
        let mut l = Ledger::new(100);
        let a = l.send(200);
        let b = l.send(300);
        let c = l.send(450);
        assert_eq!((l.committed(), l.sent(), l.in_flight()), (100, 450, 3));
        l.ack(c);
        l.ack(b);
        assert_eq!(l.committed(), 100);
        l.ack(a);
        assert_eq!((l.committed(), l.in_flight()), (450, 0));
        // Acknowledged twice: nothing changes.
        l.ack(a);
        assert_eq!(l.committed(), 450);
    }

    #[test]
    fn after_a_truncation_old_acknowledgements_do_not_count() {
        let mut l = Ledger::new(0);
        let old = l.send(5000);
        l.restart(0);
        let new = l.send(40);
        l.ack(old);
        assert_eq!(l.committed(), 0);
        l.ack(new);
        assert_eq!(l.committed(), 40);
    }

    #[test]
    fn the_book_keeps_unseen_files_and_refuses_a_reused_inode() {
        let head = b"2024-05-01 first line\n";
        let mut book = Book::new(
            vec![cp(11, head, "/var/log/a.log", 700), cp(12, b"z", "/b", 5)],
            0,
        );
        let a = FileId { dev: 2049, ino: 11 };
        assert_eq!(book.offset_of(a, b"2024-05-01 first line\nmore"), Some(700));
        assert_eq!(book.offset_of(a, b"another file at inode 11\n"), None);
        // Reading a.log on; file 12 not seen yet keeps its checkpoint.
        let t = book.ledger(a).unwrap().send(900);
        assert_eq!(book.snapshot(0)[0].offset, 700);
        book.ledger(a).unwrap().ack(t);
        let snap = book.snapshot(0);
        assert_eq!((snap[0].offset, snap[1].offset), (900, 5));
        // Inode 11 reused by another file: tracked anew from 0.
        let other = Identity::new(a, b"another file at inode 11\n");
        book.track(other, Path::new("/var/log/a.log"), 0);
        assert_eq!(book.snapshot(0)[0].identity, other);
        assert_eq!(book.snapshot(0)[0].offset, 0);
        book.forget(a);
        assert_eq!(book.snapshot(0).len(), 1);
    }

    #[test]
    fn checkpoints_of_files_not_found_for_forget_after_are_dropped() {
        let day = 24 * 3600;
        let mut old = cp(11, b"a", "/old", 7);
        old.seen = Some(10 * day);
        // Written before `seen` existed: counts as found when loaded.
        let legacy = cp(12, b"b", "/legacy", 8);
        let mut live = cp(13, b"c", "/live", 9);
        live.seen = Some(day);
        let mut book = Book::new(vec![old, legacy, live], 12 * day + 5);
        book.track(
            Identity::new(FileId { dev: 2049, ino: 13 }, b"c"),
            Path::new("/live"),
            9,
        );
        assert!(book.knows(FileId { dev: 2049, ino: 12 }));
        // Within a week nothing goes; the live file is found again, so its time moves on.
        assert_eq!(book.prune(12 * day + 5, 7 * day), 0);
        let snap = book.snapshot(12 * day + 5);
        let seen: Vec<_> = snap.iter().map(|c| c.seen).collect();
        assert_eq!(seen, [Some(10 * day), Some(12 * day + 5), Some(12 * day)]);
        // The file last found on day 10 is dropped after day 17; the legacy one after day 19;
        // the live one never.
        assert_eq!(book.prune(17 * day + 1, 7 * day), 1);
        assert!(!book.knows(FileId { dev: 2049, ino: 11 }));
        assert_eq!(book.prune(30 * day, 7 * day), 1);
        assert_eq!(book.ids(), [FileId { dev: 2049, ino: 13 }]);
        // And it survives a write and a load.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        let snap = book.snapshot(30 * day + 7);
        write_atomic(&path, &encode(&snap).unwrap()).unwrap();
        assert_eq!(load(&path).unwrap().unwrap()[0].seen, Some(30 * day));
    }

    proptest! {
        /// For any ranges and any order of acknowledgement, the committed offset is the end of
        /// the longest run of acknowledged ranges from the start: it never passes a range not
        /// acknowledged, and it never goes back.
        #[test]
        fn committed_is_the_longest_acknowledged_prefix(
            lens in proptest::collection::vec(0u64..1000, 1..60),
            order in proptest::collection::vec(any::<proptest::sample::Index>(), 1..60),
            start in 0u64..10_000,
        ) {
            let mut l = Ledger::new(start);
            let mut ends = Vec::new();
            let mut tickets = Vec::new();
            for len in &lens {
                let end = l.sent() + len;
                tickets.push(l.send(end));
                ends.push(end);
            }
            let mut acked = vec![false; lens.len()];
            let mut last = l.committed();
            for i in order.iter().map(|ix| ix.index(lens.len())) {
                l.ack(tickets[i]);
                acked[i] = true;
                let run = acked.iter().take_while(|a| **a).count();
                let want = if run == 0 { start } else { ends[run - 1] };
                prop_assert_eq!(l.committed(), want);
                prop_assert!(l.committed() >= last);
                last = l.committed();
                prop_assert_eq!(l.in_flight(), lens.len() - run);
            }
        }
    }
}
