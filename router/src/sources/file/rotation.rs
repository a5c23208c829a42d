//! Rotation, truncation and deletion: what a new look at a path means for the file the source
//! knows there, without I/O and without reading the clock.
//!
//! [`decide`] takes what the source knows about a path ([`Known`]: the file's identity, how far
//! it was read, whether the source holds it open) and what it sees there now ([`Observed`]: a
//! `stat` of the path and the first bytes of the file found), and answers an [`Action`]:
//! - the same file, grown: read on ([`Action::Grew`]); not grown: [`Action::Unchanged`];
//! - the same file, but shorter than what was read, or (held open) with other first bytes:
//!   copytruncate, or truncated and rewritten: read it again from 0, with a warning
//!   ([`Action::Truncated`]). Lines written between logrotate's copy and its truncate are in
//!   neither file the source reads: the known gap of copytruncate;
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
//!   taken for the old file).
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
/// passed.
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
}
