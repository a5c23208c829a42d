//! The file operations of a disk buffer, behind [`LogFs`] and [`LogFile`]: [`RealFs`] does them
//! with `std::fs`; tests put `FaultyFs` (in `buffer/faulty.rs`, test builds only) in its place
//! to make a disk fill up, a write stop short, an fsync or a read fail, where they choose.
//!
//! This is every file operation of the log and its segments: creating and listing the
//! directory, opening, appending to, reading, cutting and syncing files, syncing the directory,
//! renaming and deleting. Each is one call of the operating system (or as few as `std` makes
//! it), so the log's system calls are the same as when it used `std::fs` directly: an append
//! is one `write` of the encoded entry.

use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

/// How [`LogFs::open`] opens a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// An existing file, for reading.
    Read,
    /// An existing file, for reading and writing (cutting it).
    ReadWrite,
    /// A new file for writing; fails if the path exists.
    CreateNew,
    /// A file for writing, created or emptied.
    Truncate,
}

/// One name in a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirItem {
    /// The file name.
    pub name: OsString,
    /// Whether it is a regular file (not a directory or anything else).
    pub is_file: bool,
}

/// The file system as the disk buffer uses it.
pub trait LogFs: Send + Sync + fmt::Debug {
    /// Creates `dir` and its parents if they do not exist.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Every name in `dir`; any error while listing is an error (nothing is skipped).
    fn list(&self, dir: &Path) -> io::Result<Vec<DirItem>>;
    /// Opens `path`.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn LogFile>>;
    /// Renames `from` to `to`, replacing `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Deletes the file `path`.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Forces the directory's entries (names created, renamed, deleted) to the disk.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// An open file. Shared (`Arc`) so that one thread can sync a segment while another appends
/// to it: every method takes `&self`.
pub trait LogFile: Send + Sync + fmt::Debug {
    /// Writes all of `buf` at the file's position (the end, for a file only appended to). On an
    /// error, a prefix of `buf` may have been written.
    fn write_all(&self, buf: &[u8]) -> io::Result<()>;
    /// Reads exactly `buf.len()` bytes at `offset`.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// The file's length in bytes.
    fn size(&self) -> io::Result<u64>;
    /// Cuts (or extends) the file to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Forces the file's data to the disk (`fdatasync`).
    fn sync_data(&self) -> io::Result<()>;
    /// Forces the file's data and metadata to the disk (`fsync`).
    fn sync_all(&self) -> io::Result<()>;
}

/// The real file system (`std::fs`).
#[derive(Debug, Clone, Copy, Default)]
pub struct RealFs;

impl LogFs for RealFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<DirItem>> {
        let mut items = Vec::new();
        for item in fs::read_dir(dir)? {
            let item = item?;
            items.push(DirItem {
                name: item.file_name(),
                is_file: item.file_type()?.is_file(),
            });
        }
        Ok(items)
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn LogFile>> {
        let mut o = OpenOptions::new();
        match mode {
            OpenMode::Read => o.read(true),
            OpenMode::ReadWrite => o.read(true).write(true),
            OpenMode::CreateNew => o.write(true).create_new(true),
            OpenMode::Truncate => o.write(true).create(true).truncate(true),
        };
        Ok(Arc::new(RealFile(o.open(path)?)))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

/// A file of [`RealFs`].
#[derive(Debug)]
pub struct RealFile(File);

impl LogFile for RealFile {
    fn write_all(&self, buf: &[u8]) -> io::Result<()> {
        (&self.0).write_all(buf)
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.0.read_exact_at(buf, offset)
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn sync_all(&self) -> io::Result<()> {
        self.0.sync_all()
    }
}

/// True for the errors of a full disk (`ENOSPC`) or an exhausted quota (`EDQUOT`): space may
/// come back (acknowledged segments are deleted), unlike after other I/O errors.
pub fn is_disk_full(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn real_files_do_what_the_log_needs() {
        let dir = tempfile::tempdir().unwrap();
        let fs = RealFs;
        let sub = dir.path().join("a/b");
        fs.create_dir_all(&sub).unwrap();
        let p = sub.join("f");
        let f = fs.open(&p, OpenMode::CreateNew).unwrap();
        assert!(fs.open(&p, OpenMode::CreateNew).is_err(), "create_new");
        f.write_all(b"hello world").unwrap();
        f.sync_data().unwrap();
        assert_eq!(f.size().unwrap(), 11);
        let r = fs.open(&p, OpenMode::Read).unwrap();
        let mut buf = [0u8; 5];
        r.read_exact_at(&mut buf, 6).unwrap();
        assert_eq!(&buf, b"world");
        assert!(r.read_exact_at(&mut buf, 8).is_err(), "past the end");
        fs.open(&p, OpenMode::ReadWrite)
            .unwrap()
            .set_len(5)
            .unwrap();
        assert_eq!(r.size().unwrap(), 5);
        fs.create_dir_all(&sub.join("d")).unwrap();
        let mut names = fs.list(&sub).unwrap();
        names.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(
            names,
            vec![
                DirItem {
                    name: "d".into(),
                    is_file: false
                },
                DirItem {
                    name: "f".into(),
                    is_file: true
                }
            ]
        );
        let q = sub.join("g");
        fs.rename(&p, &q).unwrap();
        fs.sync_dir(&sub).unwrap();
        let t = fs.open(&q, OpenMode::Truncate).unwrap();
        assert_eq!(t.size().unwrap(), 0);
        fs.remove_file(&q).unwrap();
        assert!(fs.list(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn disk_full_is_enospc_and_edquot_only() {
        let e = |errno: rustix::io::Errno| io::Error::from_raw_os_error(errno.raw_os_error());
        assert!(is_disk_full(&e(rustix::io::Errno::NOSPC)));
        assert!(is_disk_full(&e(rustix::io::Errno::DQUOT)));
        assert!(!is_disk_full(&e(rustix::io::Errno::IO)));
        assert!(!is_disk_full(&e(rustix::io::Errno::ROFS)));
    }
}
