//! `FaultyFs` (test builds only): the real file system ([`RealFs`]), except that chosen
//! operations fail with chosen errors — a full disk (`ENOSPC`), an I/O error (`EIO`) — on the
//! nth matching call or from then on, and a write can stop short (a prefix reaches the file)
//! before it fails. It also counts the calls, so a test can tell how often something was tried.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::fs::{DirItem, LogFile, LogFs, OpenMode, RealFs};

/// `ENOSPC`: no space left on device.
pub const ENOSPC: i32 = rustix::io::Errno::NOSPC.raw_os_error();
/// `EIO`: input/output error.
pub const EIO: i32 = rustix::io::Errno::IO.raw_os_error();

/// A file operation, as faults and call counts name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// [`LogFs::create_dir_all`].
    CreateDir,
    /// [`LogFs::list`].
    List,
    /// [`LogFs::open`], any mode.
    Open,
    /// [`LogFs::rename`] (the path is the source).
    Rename,
    /// [`LogFs::remove_file`].
    Remove,
    /// [`LogFs::sync_dir`].
    SyncDir,
    /// [`LogFile::write_all`].
    Write,
    /// [`LogFile::read_exact_at`].
    Read,
    /// [`LogFile::size`].
    Size,
    /// [`LogFile::set_len`].
    SetLen,
    /// [`LogFile::sync_data`].
    SyncData,
    /// [`LogFile::sync_all`].
    SyncAll,
}

/// One injected fault: which calls fail, and how.
#[derive(Debug, Clone)]
pub struct Fault {
    op: Op,
    /// Only calls on paths whose file name contains this.
    name: Option<String>,
    /// The first failing call is the nth matching one (1-based) after the fault is injected.
    nth: u64,
    /// Every matching call from the nth on fails (else only the nth).
    forever: bool,
    errno: i32,
    /// For writes: bytes written before the error.
    short: Option<usize>,
    seen: u64,
}

impl Fault {
    /// The next call of `op` (on any file) fails with `errno`.
    pub fn new(op: Op, errno: i32) -> Fault {
        Fault {
            op,
            name: None,
            nth: 1,
            forever: false,
            errno,
            short: None,
            seen: 0,
        }
    }

    /// Only calls on files whose name contains `part` (e.g. `".seg"`, `"acked.tmp"`).
    pub fn on(mut self, part: &str) -> Fault {
        self.name = Some(part.to_owned());
        self
    }

    /// The nth matching call fails (1-based), not the first.
    pub fn nth(mut self, n: u64) -> Fault {
        self.nth = n.max(1);
        self
    }

    /// Every matching call fails (from the nth on), until [`FaultyFs::clear`].
    pub fn forever(mut self) -> Fault {
        self.forever = true;
        self
    }

    /// For [`Op::Write`]: the first `n` bytes reach the file before the error.
    pub fn short(mut self, n: usize) -> Fault {
        self.short = Some(n);
        self
    }

    fn matches(&self, op: Op, path: &Path) -> bool {
        self.op == op
            && self.name.as_ref().is_none_or(|part| {
                path.file_name()
                    .is_some_and(|n| n.to_string_lossy().contains(part.as_str()))
            })
    }
}

#[derive(Debug, Default)]
struct State {
    faults: Vec<Fault>,
    /// Calls by operation and file name.
    calls: HashMap<(Op, String), u64>,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    /// Signalled on every call.
    called: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts the call and answers whether it fails: `Err((error, short))`.
    fn check(&self, op: Op, path: &Path) -> Result<(), (io::Error, Option<usize>)> {
        let mut st = self.lock();
        let name = path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        *st.calls.entry((op, name)).or_default() += 1;
        self.called.notify_all();
        for f in st.faults.iter_mut().filter(|f| f.matches(op, path)) {
            f.seen += 1;
            if f.seen == f.nth || (f.forever && f.seen > f.nth) {
                return Err((io::Error::from_raw_os_error(f.errno), f.short));
            }
        }
        Ok(())
    }

    fn fail(&self, op: Op, path: &Path) -> io::Result<()> {
        self.check(op, path).map_err(|(e, _)| e)
    }
}

/// The real file system with injected faults.
#[derive(Debug, Clone, Default)]
pub struct FaultyFs {
    shared: Arc<Shared>,
}

impl FaultyFs {
    /// No faults yet.
    pub fn new() -> FaultyFs {
        FaultyFs::default()
    }

    /// Adds a fault; it counts matching calls from now on.
    pub fn inject(&self, fault: Fault) {
        self.shared.lock().faults.push(fault);
    }

    /// Removes every fault: from now on every call goes through.
    pub fn clear(&self) {
        self.shared.lock().faults.clear();
    }

    /// Calls of `op` so far on files whose name contains `part`.
    pub fn calls(&self, op: Op, part: &str) -> u64 {
        count(&self.shared.lock(), op, part)
    }

    /// Waits (at most `timeout`) until there have been `n` calls of `op` on files whose name
    /// contains `part`; returns whether there were.
    pub fn wait_calls(&self, op: Op, part: &str, n: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.lock();
        while count(&st, op, part) < n {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            st = self
                .shared
                .called
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }

    /// This file system as the log takes it.
    pub fn arc(&self) -> Arc<dyn LogFs> {
        Arc::new(self.clone())
    }
}

fn count(st: &State, op: Op, part: &str) -> u64 {
    st.calls
        .iter()
        .filter(|((o, name), _)| *o == op && name.contains(part))
        .map(|(_, n)| n)
        .sum()
}

impl LogFs for FaultyFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.shared.fail(Op::CreateDir, dir)?;
        RealFs.create_dir_all(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<DirItem>> {
        self.shared.fail(Op::List, dir)?;
        RealFs.list(dir)
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn LogFile>> {
        self.shared.fail(Op::Open, path)?;
        Ok(Arc::new(FaultyFile {
            inner: RealFs.open(path, mode)?,
            path: path.to_path_buf(),
            shared: self.shared.clone(),
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.shared.fail(Op::Rename, from)?;
        RealFs.rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.shared.fail(Op::Remove, path)?;
        RealFs.remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.shared.fail(Op::SyncDir, dir)?;
        RealFs.sync_dir(dir)
    }
}

#[derive(Debug)]
struct FaultyFile {
    inner: Arc<dyn LogFile>,
    path: PathBuf,
    shared: Arc<Shared>,
}

impl LogFile for FaultyFile {
    fn write_all(&self, buf: &[u8]) -> io::Result<()> {
        match self.shared.check(Op::Write, &self.path) {
            Ok(()) => self.inner.write_all(buf),
            Err((e, short)) => {
                if let Some(n) = short {
                    self.inner.write_all(&buf[..n.min(buf.len())])?;
                }
                Err(e)
            }
        }
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.shared.fail(Op::Read, &self.path)?;
        self.inner.read_exact_at(buf, offset)
    }

    fn size(&self) -> io::Result<u64> {
        self.shared.fail(Op::Size, &self.path)?;
        self.inner.size()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.shared.fail(Op::SetLen, &self.path)?;
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.shared.fail(Op::SyncData, &self.path)?;
        self.inner.sync_data()
    }

    fn sync_all(&self) -> io::Result<()> {
        self.shared.fail(Op::SyncAll, &self.path)?;
        self.inner.sync_all()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn faults_hit_the_chosen_calls_and_calls_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let fs = FaultyFs::new();
        fs.inject(Fault::new(Op::Write, ENOSPC).on(".seg").nth(2));
        fs.inject(Fault::new(Op::SyncData, EIO).forever());
        let a = fs
            .open(&dir.path().join("a.seg"), OpenMode::CreateNew)
            .unwrap();
        let b = fs
            .open(&dir.path().join("b.txt"), OpenMode::CreateNew)
            .unwrap();
        a.write_all(b"one").unwrap();
        b.write_all(b"x").unwrap();
        let e = a.write_all(b"two").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(ENOSPC));
        assert!(super::super::fs::is_disk_full(&e));
        a.write_all(b"three").unwrap();
        for _ in 0..3 {
            assert_eq!(a.sync_data().unwrap_err().raw_os_error(), Some(EIO));
        }
        assert_eq!(fs.calls(Op::Write, ".seg"), 3);
        assert_eq!(fs.calls(Op::Write, ""), 4);
        assert_eq!(fs.calls(Op::SyncData, "a.seg"), 3);
        assert!(fs.wait_calls(Op::Write, ".seg", 3, Duration::ZERO));
        assert!(!fs.wait_calls(Op::Write, ".seg", 4, Duration::from_millis(1)));
        fs.clear();
        a.sync_data().unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("a.seg")).unwrap(),
            b"onethree"
        );
    }

    #[test]
    fn a_short_write_leaves_a_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let fs = FaultyFs::new();
        fs.inject(Fault::new(Op::Write, EIO).short(4));
        let p = dir.path().join("f");
        let f = fs.open(&p, OpenMode::CreateNew).unwrap();
        let e = f.write_all(b"abcdefgh").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(EIO));
        assert_eq!(std::fs::read(&p).unwrap(), b"abcd");
    }
}
