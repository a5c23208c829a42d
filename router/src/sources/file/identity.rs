//! What makes a file the same file: its device and inode, and a fingerprint of its first bytes.
//!
//! Paths change (rotation renames files) and inodes are reused (a file deleted, another created
//! that gets the freed inode), so neither alone says which file a checkpoint belongs to. A file
//! is known by `(device, inode)` plus a [`Fingerprint`]: the XXH3-64 hash of its first
//! [`FINGERPRINT_BYTES`] bytes, and how many bytes that was.
//!
//! The rule for short files: a file shorter than [`FINGERPRINT_BYTES`] is fingerprinted by what
//! it has (an empty file by nothing). To compare, the file's first `len` bytes now are hashed,
//! `len` being the known fingerprint's length ([`Fingerprint::compare`]); once the file has
//! grown past `len` (and its first `len` bytes still match), the fingerprint is taken again
//! over more bytes ([`Fingerprint::extend`]), up to [`FINGERPRINT_BYTES`]. So a short file is
//! still told apart from another file that reused its inode, unless the other file begins with
//! the same bytes; an empty file is known by device and inode alone. Reading the first bytes
//! is the I/O side's job: at most [`FINGERPRINT_BYTES`] with one `pread`.

use serde::{Deserialize, Serialize};

/// How many of a file's first bytes its fingerprint covers, at most.
pub const FINGERPRINT_BYTES: usize = 1024;

/// A file's device and inode numbers (`st_dev`, `st_ino`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FileId {
    /// Device number.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
}

/// A hash of a file's first `len` bytes (module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Fingerprint {
    /// How many bytes were hashed (at most [`FINGERPRINT_BYTES`]).
    pub len: u32,
    /// XXH3-64 of those bytes.
    pub hash: u64,
}

/// How a file's first bytes now compare with a known fingerprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadMatch {
    /// Its first `len` bytes hash the same: as far as can be told, the same content.
    Same,
    /// They differ: other content (another file, or this one truncated and rewritten).
    Different,
    /// It now has fewer than `len` bytes: it was truncated (or is another, shorter file).
    Shorter,
}

impl Fingerprint {
    /// The fingerprint of a file whose first bytes are `head` (only the first
    /// [`FINGERPRINT_BYTES`] count; give fewer when the file is shorter).
    pub fn of(head: &[u8]) -> Fingerprint {
        let head = &head[..head.len().min(FINGERPRINT_BYTES)];
        Fingerprint {
            len: head.len() as u32,
            hash: xxhash_rust::xxh3::xxh3_64(head),
        }
    }

    /// Whether it covers [`FINGERPRINT_BYTES`] (a full one never changes).
    pub fn is_full(&self) -> bool {
        self.len as usize >= FINGERPRINT_BYTES
    }

    /// Compares with the file's first bytes now, `head` (as many as the file has, up to
    /// [`FINGERPRINT_BYTES`]).
    pub fn compare(&self, head: &[u8]) -> HeadMatch {
        let len = self.len as usize;
        if head.len() < len {
            return HeadMatch::Shorter;
        }
        if xxhash_rust::xxh3::xxh3_64(&head[..len]) == self.hash {
            HeadMatch::Same
        } else {
            HeadMatch::Different
        }
    }

    /// A longer fingerprint over `head` when this one is not full, `head` is longer and its
    /// first `len` bytes match; `None` otherwise (keep this one).
    pub fn extend(&self, head: &[u8]) -> Option<Fingerprint> {
        let more = head.len().min(FINGERPRINT_BYTES) > self.len as usize;
        (more && self.compare(head) == HeadMatch::Same).then(|| Fingerprint::of(head))
    }
}

/// A file as the source knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Identity {
    /// Device and inode.
    #[serde(flatten)]
    pub id: FileId,
    /// Its first bytes.
    pub fingerprint: Fingerprint,
}

impl Identity {
    /// The identity of file `id` whose first bytes are `head`.
    pub fn new(id: FileId, head: &[u8]) -> Identity {
        Identity {
            id,
            fingerprint: Fingerprint::of(head),
        }
    }

    /// Whether file `id` with first bytes `head` is this file (same device and inode, and
    /// its first bytes match as far as known).
    pub fn is(&self, id: FileId, head: &[u8]) -> bool {
        self.id == id && self.fingerprint.compare(head) == HeadMatch::Same
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: FileId = FileId { dev: 1, ino: 7 };

    #[test]
    fn only_the_first_kilobyte_counts() {
        let mut a = vec![b'x'; 4096];
        let f = Fingerprint::of(&a);
        assert_eq!(f.len as usize, FINGERPRINT_BYTES);
        assert!(f.is_full());
        a[2000] = b'y';
        assert_eq!(Fingerprint::of(&a), f);
        assert_eq!(f.compare(&a), HeadMatch::Same);
        a[10] = b'y';
        assert_eq!(f.compare(&a), HeadMatch::Different);
        assert_eq!(f.compare(&a[..100]), HeadMatch::Shorter);
        assert_eq!(f.extend(&a), None);
    }

    #[test]
    fn a_short_file_is_compared_by_what_it_had_and_extended_as_it_grows() {
        let f = Fingerprint::of(b"2024-05-01 start\n");
        assert_eq!(f.len, 17);
        assert!(!f.is_full());
        let grown = b"2024-05-01 start\n2024-05-01 more\n";
        assert_eq!(f.compare(grown), HeadMatch::Same);
        let g = f.extend(grown).unwrap();
        assert_eq!(g.len as usize, grown.len());
        // Not extended over other content, nor when there is nothing more.
        assert_eq!(f.extend(b"1999-01-01 other content"), None);
        assert_eq!(f.extend(b"2024-05-01 start\n"), None);
        // An empty file matches anything: device and inode alone decide.
        let empty = Fingerprint::of(b"");
        assert_eq!(empty.compare(b"anything"), HeadMatch::Same);
    }

    #[test]
    fn a_reused_inode_with_other_content_is_another_file() {
        let old = Identity::new(A, b"old file's first line\n");
        assert!(old.is(A, b"old file's first line\nand more"));
        assert!(!old.is(A, b"new file's first line\n"));
        assert!(!old.is(FileId { dev: 1, ino: 8 }, b"old file's first line\n"));
    }
}
