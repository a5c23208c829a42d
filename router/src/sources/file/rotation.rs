//! Rotation, truncation and deletion: what a new look at a path means for the file the source
//! knows there, without I/O and without reading the clock.
//!
//! [`decide`] takes what the source knows about a path ([`Known`]: the file's identity, how far
//! it was read, whether the source holds it open) and what it sees there now ([`Observed`]: a
//! `stat` of the path and the first bytes of the file found), and answers an [`Action`]:
//! - the same file, grown: read on ([`Action::Grew`]); not grown: [`Action::Unchanged`];
//! - the same file, but shorter than what was read, or (held open) with other first bytes:
//!   copytruncate, or truncated and rewritten: read it again from 0, with a warning
//!   ([`Action::Truncated`]);
//! - another file at the path while the old one is held open: rename-and-create rotation
//!   ([`Action::Rotated`]): the old file is *retired* ([`Retired`]: read to its end first, then
//!   on as the writer may still append to it, until `rotate_wait` has passed, then a last read
//!   to its end and closed), and the new one is read from 0;
//! - nothing at the path while the old one is held open: renamed away or deleted
//!   ([`Action::Gone`]): retired in the same way (a deleted file is read to its end, then
//!   closed);
//! - another file at the path, or the same inode with other first bytes, when the old one is
//!   not held open (known from a checkpoint, or closed for `max_open_files`): a different file
//!   ([`Action::Replaced`]), read from 0; the old checkpoint is not its (inode reuse is not
//!   taken for the old file); nothing there: [`Action::Vanished`].
//!
//! What can be lost (checked by `tests::every_line_is_read_once_across_rotations`, a simulated
//! logger and logrotate): with copytruncate, whatever the source had not read when the file was
//! truncated, which includes the lines written between logrotate's copy and its truncate (they
//! are only in the copy, which the source does not read unless `include` matches it); and what
//! was not read of a file that left the path (renamed or deleted) while the source did not hold
//! it open: before the source first opened it, after it was closed for `max_open_files`, or
//! across a restart. Nothing else: a file held open is read to its end, and a checkpoint is
//! never taken for another file.
//!
//! Data a writer appends to a retired file after the new file was opened is read after some of
//! the new file's records: order holds within each file, not across a rotation.

use std::time::{Duration, Instant};

use crate::sources::file::identity::{FileId, HeadMatch, Identity};

/// What the source knows about the file at a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Known {
    /// The file.
    pub identity: Identity,
    /// Bytes of it already read.
    pub offset: u64,
    /// Whether the source holds it open (then it lives on whatever happens to the path).
    pub open: bool,
}

/// What a new look at the path found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed<'a> {
    /// No file (`ENOENT`).
    Missing,
    /// A file (symlinks followed): its device and inode, size, and first bytes (as many as
    /// it has, up to [`super::identity::FINGERPRINT_BYTES`]).
    Present {
        /// Device and inode.
        id: FileId,
        /// Its size.
        size: u64,
        /// Its first bytes.
        head: &'a [u8],
    },
}

/// What to do about the path (module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The same file, no bigger than what was read.
    Unchanged,
    /// The same file, grown: read `from..to`.
    Grew {
        /// Where reading goes on (the known offset).
        from: u64,
        /// Its size now.
        to: u64,
    },
    /// The same file, truncated (or truncated and rewritten): read it again from 0 and warn.
    Truncated {
        /// Its size now.
        size: u64,
    },
    /// Another file is at the path while the old one is open: retire the old one, read the
    /// new one from 0.
    Rotated {
        /// The new file.
        id: FileId,
    },
    /// Nothing at the path while the old file is open: retire it.
    Gone,
    /// A different file than the one known (not open): read it from 0, as a new file.
    Replaced {
        /// The new file.
        id: FileId,
    },
    /// Nothing at the path and the known file is not open: nothing to read.
    Vanished,
}

/// What a new look at a path means for the file known there (module docs).
pub fn decide(known: &Known, seen: &Observed<'_>) -> Action {
    let (id, size, head) = match *seen {
        Observed::Missing if known.open => return Action::Gone,
        Observed::Missing => return Action::Vanished,
        Observed::Present { id, size, head } => (id, size, head),
    };
    if id != known.identity.id {
        return if known.open {
            Action::Rotated { id }
        } else {
            Action::Replaced { id }
        };
    }
    match known.identity.fingerprint.compare(head) {
        // Other first bytes at the inode held open: truncated and rewritten (possibly past
        // the offset already, which a size check alone would miss).
        HeadMatch::Different if known.open => Action::Truncated { size },
        // Not held open: the inode may have been reused by another file.
        HeadMatch::Different => Action::Replaced { id },
        HeadMatch::Shorter => Action::Truncated { size },
        HeadMatch::Same if size < known.offset => Action::Truncated { size },
        HeadMatch::Same if size > known.offset => Action::Grew {
            from: known.offset,
            to: size,
        },
        HeadMatch::Same => Action::Unchanged,
    }
}

/// A file no longer at its path (rotated away or deleted) that is still held open: read to its
/// end before the path's new file, and kept open to catch late writes until `rotate_wait` has
/// passed. It is read by [`decide`] on its descriptor's own `fstat` and first bytes, so a file
/// truncated (and written again) just before it left the path is read again from 0 too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retired {
    /// The file.
    pub identity: Identity,
    /// When to read it to its end one last time and close it.
    pub close_at: Instant,
}

impl Retired {
    /// `identity` retired at `now`, kept open for `rotate_wait`.
    pub fn new(identity: Identity, now: Instant, rotate_wait: Duration) -> Retired {
        Retired {
            identity,
            close_at: now + rotate_wait,
        }
    }

    /// Whether to do the last read and close it, at `now`.
    pub fn close_due(&self, now: Instant) -> bool {
        now >= self.close_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: FileId = FileId { dev: 1, ino: 100 };
    const NEW: FileId = FileId { dev: 1, ino: 101 };
    const HEAD: &[u8] = b"2024-05-01 10:00:00 INFO first line of the old file\n";

    fn known(offset: u64, open: bool) -> Known {
        Known {
            identity: Identity::new(OLD, HEAD),
            offset,
            open,
        }
    }

    fn present(id: FileId, size: u64, head: &[u8]) -> Observed<'_> {
        Observed::Present { id, size, head }
    }

    #[test]
    fn the_same_file_grown_is_read_on_and_unchanged_is_left() {
        let k = known(500, true);
        assert_eq!(
            decide(&k, &present(OLD, 800, HEAD)),
            Action::Grew { from: 500, to: 800 }
        );
        assert_eq!(decide(&k, &present(OLD, 500, HEAD)), Action::Unchanged);
        // From a checkpoint (not open), the same.
        let k = known(500, false);
        assert_eq!(
            decide(&k, &present(OLD, 501, HEAD)),
            Action::Grew { from: 500, to: 501 }
        );
    }

    #[test]
    fn rename_and_create_retires_the_open_file_and_reads_the_new_one() {
        let k = known(500, true);
        let new_head = b"2024-05-01 11:00:00 INFO first line of the new file\n";
        assert_eq!(
            decide(&k, &present(NEW, 52, new_head)),
            Action::Rotated { id: NEW }
        );
        // Even a new file with the same first bytes: another inode is another file.
        assert_eq!(
            decide(&k, &present(NEW, 52, HEAD)),
            Action::Rotated { id: NEW }
        );
    }

    #[test]
    fn copytruncate_reads_again_from_zero() {
        let k = known(500, true);
        // Truncated to nothing.
        assert_eq!(
            decide(&k, &present(OLD, 0, b"")),
            Action::Truncated { size: 0 }
        );
        // Truncated, then written to below the offset with the same first line.
        assert_eq!(
            decide(&k, &present(OLD, 300, HEAD)),
            Action::Truncated { size: 300 }
        );
        // Truncated and rewritten past the offset before the source looked: the first bytes
        // tell.
        let rewritten = b"2024-05-01 10:05:00 INFO written after the truncate\n";
        assert_eq!(
            decide(&k, &present(OLD, 900, rewritten)),
            Action::Truncated { size: 900 }
        );
    }

    #[test]
    fn a_file_deleted_or_renamed_away_while_open_is_retired() {
        assert_eq!(decide(&known(500, true), &Observed::Missing), Action::Gone);
        assert_eq!(
            decide(&known(500, false), &Observed::Missing),
            Action::Vanished
        );
    }

    #[test]
    fn inode_reuse_with_other_first_bytes_is_a_new_file() {
        // Known from a checkpoint: inode 100 read to 500. The file was deleted and another
        // created that got inode 100.
        let k = known(500, false);
        let other = b"2024-05-02 08:00:00 INFO a different file, longer than the old head\n";
        assert_eq!(
            decide(&k, &present(OLD, 5000, other)),
            Action::Replaced { id: OLD }
        );
        // A different inode at the path: a different file too.
        assert_eq!(
            decide(&k, &present(NEW, 10, b"x\n")),
            Action::Replaced { id: NEW }
        );
    }

    #[test]
    fn a_short_fingerprint_still_tells_truncation_from_growth() {
        // Known when the file had 4 bytes; it has grown since.
        let k = Known {
            identity: Identity::new(OLD, b"abc\n"),
            offset: 4,
            open: true,
        };
        assert_eq!(
            decide(&k, &present(OLD, 8, b"abc\ndef\n")),
            Action::Grew { from: 4, to: 8 }
        );
        assert_eq!(
            decide(&k, &present(OLD, 2, b"ab")),
            Action::Truncated { size: 2 }
        );
    }

    #[test]
    fn a_retired_file_is_closed_after_rotate_wait() {
        let t0 = Instant::now();
        let r = Retired::new(Identity::new(OLD, HEAD), t0, Duration::from_secs(5));
        assert!(!r.close_due(t0 + Duration::from_millis(4999)));
        assert!(r.close_due(t0 + Duration::from_secs(5)));
    }

    /// A file of the simulated file system.
    struct SimFile {
        id: FileId,
        data: Vec<u8>,
    }

    /// The file the simulated source knows at the path; `file` is the simulation's ground
    /// truth (which `SimFile` it is), never used to decide.
    #[derive(Clone, Copy)]
    struct Cur {
        known: Known,
        file: usize,
    }

    /// One path written by a logger and rotated every way, and a source that looks at it
    /// with [`decide`] and does what it answers.
    struct Sim {
        files: Vec<SimFile>,
        at_path: Option<usize>,
        /// The file renamed away last and when (the logger may still append to it).
        renamed: Option<(usize, u64)>,
        next_ino: u64,
        next_line: u64,
        tick: u64,
        t0: Instant,
        cur: Option<Cur>,
        /// Retired files: which, how far read, until when.
        retired: Vec<(usize, Known, Retired)>,
        /// Lines read (each once, in file order).
        got: Vec<u64>,
        /// Lines that may be missing, and why.
        may_lose: std::collections::BTreeMap<u64, &'static str>,
        truncations: usize,
        /// The source's file, truncated since the source last looked (its offset is stale).
        stale: Option<usize>,
    }

    const WAIT: Duration = Duration::from_secs(5);

    fn lines_in(bytes: &[u8]) -> Vec<u64> {
        bytes
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| std::str::from_utf8(&l[1..]).unwrap().parse().unwrap())
            .collect()
    }

    impl Sim {
        fn now(&self) -> Instant {
            self.t0 + Duration::from_secs(self.tick)
        }

        fn create(&mut self, ino: Option<u64>) {
            let ino = ino.unwrap_or_else(|| {
                self.next_ino += 1;
                self.next_ino
            });
            self.files.push(SimFile {
                id: FileId { dev: 1, ino },
                data: Vec::new(),
            });
            self.at_path = Some(self.files.len() - 1);
        }

        fn append(&mut self, file: usize, lines: u64) {
            for _ in 0..lines {
                let line = format!("L{}\n", self.next_line);
                self.next_line += 1;
                self.files[file].data.extend_from_slice(line.as_bytes());
            }
        }

        /// Whether the source holds `file` open, and how far it read it.
        fn held(&self, file: usize) -> Option<u64> {
            let cur = self
                .cur
                .filter(|c| c.file == file && c.known.open)
                .map(|c| c.known.offset);
            cur.or_else(|| {
                self.retired
                    .iter()
                    .find(|r| r.0 == file)
                    .map(|r| r.1.offset)
            })
        }

        /// How far the source read `file` of the path, as far as what is in it now goes.
        fn cur_offset(&self, file: usize) -> u64 {
            match self.cur {
                Some(c) if c.file == file && self.stale != Some(file) => c.known.offset,
                _ => 0,
            }
        }

        /// The lines of `file` after `offset`, which the source can no longer reach.
        fn lose(&mut self, file: usize, offset: u64, why: &'static str) {
            for l in lines_in(&self.files[file].data[offset as usize..]) {
                self.may_lose.insert(l, why);
            }
        }

        /// `file` leaves the path (renamed away or deleted): unless the source holds it, what
        /// it did not read is out of its reach.
        fn leaves(&mut self, file: usize) {
            if self.held(file).is_none() {
                let offset = self.cur_offset(file);
                self.lose(file, offset, "left the path while not open");
            }
        }

        fn read(&mut self, file: usize, from: u64) -> u64 {
            let data = &self.files[file].data;
            self.got.extend(lines_in(&data[from as usize..]));
            data.len() as u64
        }

        fn head(&self, file: usize) -> &[u8] {
            let d = &self.files[file].data;
            &d[..d
                .len()
                .min(crate::sources::file::identity::FINGERPRINT_BYTES)]
        }

        /// Starts reading the path's file from 0.
        fn take_new(&mut self, file: usize) {
            if self.stale == Some(file) {
                self.stale = None;
            }
            let identity = Identity::new(self.files[file].id, self.head(file));
            let offset = self.read(file, 0);
            let identity = Identity {
                fingerprint: identity
                    .fingerprint
                    .extend(self.head(file))
                    .unwrap_or(identity.fingerprint),
                ..identity
            };
            self.cur = Some(Cur {
                known: Known {
                    identity,
                    offset,
                    open: true,
                },
                file,
            });
        }

        /// Reads an open file through its descriptor: `decide` on its own `fstat` and first
        /// bytes (it may have been truncated before it left the path).
        fn drain(&mut self, file: usize, known: Known) -> Known {
            let seen = Observed::Present {
                id: self.files[file].id,
                size: self.files[file].data.len() as u64,
                head: self.head(file),
            };
            match decide(&known, &seen) {
                Action::Unchanged => known,
                Action::Grew { from, .. } => Known {
                    offset: self.read(file, from),
                    ..known
                },
                Action::Truncated { .. } => {
                    self.truncations += 1;
                    if self.stale == Some(file) {
                        self.stale = None;
                    }
                    let identity = Identity::new(self.files[file].id, self.head(file));
                    Known {
                        identity,
                        offset: self.read(file, 0),
                        open: true,
                    }
                }
                other => panic!("a descriptor's own file answered {other:?}"),
            }
        }

        fn retire(&mut self, c: Cur) {
            // Read to its end first, then keep it for late writes.
            let known = self.drain(c.file, c.known);
            let r = Retired::new(known.identity, self.now(), WAIT);
            self.retired.push((c.file, known, r));
        }

        /// The source looks at the path and at its retired files.
        fn observe(&mut self) {
            let now = self.now();
            let mut retired = std::mem::take(&mut self.retired);
            retired.retain_mut(|(file, known, r)| {
                *known = self.drain(*file, *known);
                !r.close_due(now)
            });
            self.retired = retired;
            let Some(c) = self.cur else {
                if let Some(f) = self.at_path {
                    self.take_new(f);
                }
                return;
            };
            let seen = match self.at_path {
                None => Observed::Missing,
                Some(f) => Observed::Present {
                    id: self.files[f].id,
                    size: self.files[f].data.len() as u64,
                    head: self.head(f),
                },
            };
            match decide(&c.known, &seen) {
                Action::Unchanged => {}
                Action::Grew { from, to } => {
                    let f = self.at_path.unwrap();
                    assert_ne!(self.stale, Some(f), "a truncation taken for growth");
                    assert_eq!(from, c.known.offset);
                    assert_eq!(to, self.files[f].data.len() as u64);
                    let offset = self.read(f, from);
                    let fp = c.known.identity.fingerprint;
                    let fingerprint = fp.extend(self.head(f)).unwrap_or(fp);
                    let identity = Identity {
                        fingerprint,
                        ..c.known.identity
                    };
                    self.cur = Some(Cur {
                        known: Known {
                            identity,
                            offset,
                            open: true,
                        },
                        file: f,
                    });
                }
                Action::Truncated { .. } => {
                    self.truncations += 1;
                    self.take_new(self.at_path.unwrap());
                }
                Action::Rotated { id } => {
                    assert!(c.known.open);
                    self.retire(c);
                    let f = self.at_path.unwrap();
                    assert_eq!(id, self.files[f].id);
                    self.take_new(f);
                }
                Action::Gone => {
                    self.retire(c);
                    self.cur = None;
                }
                Action::Replaced { id } => {
                    assert!(!c.known.open);
                    let f = self.at_path.unwrap();
                    assert_eq!(id, self.files[f].id);
                    self.take_new(f);
                }
                Action::Vanished => self.cur = None,
            }
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Append(u64),
        LateAppend(u64),
        RenameCreate,
        CopyTruncate,
        Delete,
        Create,
        ReuseInode,
        Restart,
        Look,
    }

    fn any_op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (1u64..5).prop_map(Op::Append),
            1 => (1u64..3).prop_map(Op::LateAppend),
            1 => Just(Op::RenameCreate),
            1 => Just(Op::CopyTruncate),
            1 => Just(Op::Delete),
            1 => Just(Op::Create),
            1 => Just(Op::ReuseInode),
            1 => Just(Op::Restart),
            4 => Just(Op::Look),
        ]
    }

    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// A logger writes numbered lines to one path while it is rotated by rename-and-create
        /// and by copytruncate, deleted, recreated (also on a reused inode) and the source
        /// restarts from its offsets: every line is read exactly once, but for the lines the
        /// source could not reach (unread when copytruncate cut them off, or in a file that
        /// left the path while the source did not hold it open).
        #[test]
        fn every_line_is_read_once_across_rotations(
            ops in proptest::collection::vec(any_op(), 1..80),
        ) {
            let mut sim = Sim {
                files: Vec::new(),
                at_path: None,
                renamed: None,
                next_ino: 100,
                next_line: 0,
                tick: 0,
                t0: Instant::now(),
                cur: None,
                retired: Vec::new(),
                got: Vec::new(),
                may_lose: Default::default(),
                truncations: 0,
                stale: None,
            };
            sim.create(None);
            for op in ops {
                sim.tick += 1;
                match op {
                    Op::Append(n) => {
                        if sim.at_path.is_none() {
                            sim.create(None);
                        }
                        sim.append(sim.at_path.unwrap(), n);
                    }
                    Op::LateAppend(n) => {
                        // The logger has not reopened yet: it appends to the renamed file.
                        if let Some((f, at)) = sim.renamed
                            && sim.tick <= at + 2
                        {
                            let start = sim.files[f].data.len() as u64;
                            sim.append(f, n);
                            if sim.held(f).is_none() {
                                sim.lose(f, start, "appended to a file not held");
                            }
                        }
                    }
                    Op::RenameCreate => {
                        if let Some(f) = sim.at_path {
                            sim.leaves(f);
                            sim.renamed = Some((f, sim.tick));
                            sim.create(None);
                        }
                    }
                    Op::CopyTruncate => {
                        if let Some(f) = sim.at_path {
                            let offset = sim.cur_offset(f);
                            sim.lose(f, offset, "unread when copytruncate cut it");
                            sim.files[f].data.clear();
                            // (Read from 0, it is read from 0 again all the same.)
                            if offset > 0 {
                                sim.stale = Some(f);
                            }
                        }
                    }
                    Op::Delete => {
                        if let Some(f) = sim.at_path.take() {
                            sim.leaves(f);
                        }
                    }
                    Op::Create => {
                        if sim.at_path.is_none() {
                            sim.create(None);
                        }
                    }
                    Op::ReuseInode => {
                        // A new file gets the inode of a deleted file: one that no file held open
                        // has (an open file's inode is never reused).
                        if sim.at_path.is_none() {
                            let in_use = |ino: u64| {
                                (0..sim.files.len())
                                    .any(|g| sim.files[g].id.ino == ino && sim.held(g).is_some())
                            };
                            let free = (0..sim.files.len())
                                .rev()
                                .find(|&f| !in_use(sim.files[f].id.ino));
                            if let Some(f) = free {
                                sim.create(Some(sim.files[f].id.ino));
                                let new = sim.at_path.unwrap();
                                sim.append(new, 1);
                            }
                        }
                    }
                    Op::Restart => {
                        // Only offsets survive; rotated files are no longer found.
                        for (f, known, _) in std::mem::take(&mut sim.retired) {
                            sim.lose(f, known.offset, "retired when the source restarted");
                        }
                        if let Some(c) = sim.cur {
                            if sim.at_path != Some(c.file) {
                                // Gone from the path before the source noticed.
                                let offset = sim.cur_offset(c.file);
                                sim.lose(c.file, offset, "left the path, then a restart");
                            }
                            sim.cur = Some(Cur {
                                known: Known { open: false, ..c.known },
                                ..c
                            });
                        }
                        sim.renamed = None;
                    }
                    Op::Look => sim.observe(),
                }
            }
            // A last look, then time for the retired files to be drained and closed.
            sim.observe();
            sim.tick += WAIT.as_secs();
            sim.observe();
            prop_assert!(sim.retired.is_empty());
            let mut seen = std::collections::BTreeSet::new();
            for &l in &sim.got {
                prop_assert!(seen.insert(l), "line {} read twice", l);
            }
            for l in 0..sim.next_line {
                if !seen.contains(&l) {
                    prop_assert!(
                        sim.may_lose.contains_key(&l),
                        "line {} lost without a reason", l
                    );
                }
            }
        }
    }
}
