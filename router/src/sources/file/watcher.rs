//! Change notifications for the file source (`watch = "events"`): the I/O half of
//! [`super::watch`].
//!
//! Owns one `notify` watcher (inotify on Linux) per source and an eventfd the reader waits on
//! beside the shutdown one. The watcher's thread only notes each change worth noting
//! ([`Interest::worth_noting`]: not a write to a path the source does not read) in the bounded
//! [`Pending`] and signals the eventfd; the reader takes what is noted and decides with
//! [`super::watch::look`]. Directories are watched once each; one that disappears is watched
//! again by the next full rescan that finds it.

use std::collections::HashSet;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use notify::event::{CreateKind, EventKind, ModifyKind};
use notify::{RecursiveMode, Watcher as _};

use crate::sources::file::watch::{Change, Interest, Noted, Pending};

/// Why watching could not start or go on.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The eventfd could not be made.
    #[error("eventfd: {0}")]
    EventFd(#[from] std::io::Error),
    /// The watcher could not be made or refused a directory (e.g. inotify's
    /// `max_user_watches` or `max_user_instances` reached).
    #[error("{0}")]
    Notify(#[from] notify::Error),
}

/// A source's change notifications (module docs).
pub struct Watcher {
    inner: notify::RecommendedWatcher,
    pending: Arc<Mutex<Pending>>,
    wake: Arc<OwnedFd>,
    watched: HashSet<PathBuf>,
    /// Every write is noted, matched or not (see [`Watcher::note_every_write`]).
    every_write: Arc<AtomicBool>,
}

/// The change a notification reports.
fn change_of(kind: &EventKind) -> Change {
    match kind {
        EventKind::Create(CreateKind::Folder) => Change::Directory,
        EventKind::Create(_) | EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(_)) => {
            Change::Name
        }
        EventKind::Modify(ModifyKind::Metadata(_)) | EventKind::Access(_) => Change::Other,
        EventKind::Modify(_) | EventKind::Any => Change::Data,
        EventKind::Other => Change::Other,
    }
}

impl Watcher {
    /// A watcher watching nothing yet, for a source reading the paths of `interest`; until
    /// told otherwise it notes every write.
    pub fn new(interest: Interest) -> Result<Watcher, WatchError> {
        use rustix::event::{EventfdFlags, eventfd};
        let wake = Arc::new(
            eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)
                .map_err(std::io::Error::from)?,
        );
        let pending = Arc::new(Mutex::new(Pending::default()));
        let every_write = Arc::new(AtomicBool::new(true));
        let (p, w, every) = (pending.clone(), wake.clone(), every_write.clone());
        let inner = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if let Ok(ev) = &res
                && !ev.need_rescan()
            {
                let change = change_of(&ev.kind);
                let every = every.load(Ordering::Acquire);
                if !ev
                    .paths
                    .iter()
                    .any(|path| interest.worth_noting(path, change, every))
                {
                    return;
                }
            }
            let mut p = p.lock().unwrap_or_else(PoisonError::into_inner);
            match res {
                Ok(ev) if ev.need_rescan() => p.lost(),
                Ok(ev) => {
                    let change = change_of(&ev.kind);
                    for path in &ev.paths {
                        p.note(path, change);
                    }
                }
                Err(_) => p.lost(),
            }
            let signal = !p.is_empty();
            drop(p);
            if signal {
                let _ = rustix::io::write(&*w, &1u64.to_ne_bytes());
            }
        })?;
        Ok(Watcher {
            inner,
            pending,
            wake,
            watched: HashSet::new(),
            every_write,
        })
    }

    /// Whether writes to paths the source's patterns do not match are noted too: needed while
    /// it reads a file that left its path (rotated, deleted) or one found through a symlink,
    /// or reads a path its patterns do not match.
    pub fn note_every_write(&self, every: bool) {
        self.every_write.store(every, Ordering::Release);
    }

    /// Watches `dir` (and below it when `recursive`) unless it is watched already; `Ok(false)`
    /// when it does not exist (yet).
    pub fn watch(&mut self, dir: &Path, recursive: bool) -> Result<bool, WatchError> {
        if self.watched.contains(dir) {
            return Ok(true);
        }
        if !dir.is_dir() {
            return Ok(false);
        }
        let mode = if recursive {
            RecursiveMode::Recursive
        } else {
            RecursiveMode::NonRecursive
        };
        match self.inner.watch(dir, mode) {
            Ok(()) => {
                self.watched.insert(dir.to_owned());
                Ok(true)
            }
            // Gone between the check and the watch.
            Err(notify::Error {
                kind: notify::ErrorKind::PathNotFound,
                ..
            }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether `dir` is watched.
    pub fn watches(&self, dir: &Path) -> bool {
        self.watched.contains(dir)
    }

    /// Forgets that `dir` is watched (it was deleted or renamed: watched again when found).
    pub fn unwatched(&mut self, dir: &Path) {
        if self.watched.remove(dir) {
            let _ = self.inner.unwatch(dir);
        }
    }

    /// The descriptor that becomes readable when a change is noted.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.wake.as_fd()
    }

    /// What was noted since the last call.
    pub fn take(&self) -> Noted {
        // Reset the eventfd first: a change noted after `take` signals it again.
        let mut buf = [0u8; 8];
        let _ = rustix::io::read(&*self.wake, &mut buf);
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// Waits (bounded) until the eventfd is readable and returns what was noted.
    fn next(w: &Watcher) -> Noted {
        use rustix::event::{PollFd, PollFlags, Timespec, poll};
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let fd = w.fd();
            let mut fds = [PollFd::new(&fd, PollFlags::IN)];
            let ts = Timespec {
                tv_sec: 1,
                tv_nsec: 0,
            };
            let _ = poll(&mut fds, Some(&ts));
            let n = w.take();
            if n.rescan || !n.paths.is_empty() {
                return n;
            }
            assert!(Instant::now() < deadline, "no change noted");
        }
    }

    /// Unless told to note every write, writes to paths the patterns do not match are not
    /// even signalled; creations are.
    #[test]
    fn writes_to_paths_not_read_are_left_unnoted_unless_every_write_counts() {
        use std::io::Write as _;
        let dir = tempfile::tempdir().unwrap();
        let pattern = dir.path().join("*.log").display().to_string();
        let mut w = Watcher::new(Interest::new(&[pattern], &[])).unwrap();
        w.note_every_write(false);
        assert!(w.watch(dir.path(), false).unwrap());
        let log = dir.path().join("a.log");
        let other = dir.path().join("out.ndjson");
        let mut o = std::fs::File::create(&other).unwrap();
        let mut l = std::fs::File::create(&log).unwrap();
        // Noted until `want` is seen; what was noted.
        let until = |want: &Path| {
            let mut seen: Vec<(PathBuf, Change)> = Vec::new();
            while !seen.iter().any(|(p, _)| p == want) {
                seen.extend(next(&w).paths);
            }
            seen
        };
        let mut created: Vec<(PathBuf, Change)> = Vec::new();
        while [&log, &other]
            .iter()
            .any(|f| !created.iter().any(|(p, _)| p == *f))
        {
            created.extend(next(&w).paths);
        }
        // The write to `other` comes first; only the log's is noted.
        o.write_all(b"x\n").unwrap();
        l.write_all(b"y\n").unwrap();
        let seen = until(&log);
        assert_eq!(seen, [(log.clone(), Change::Data)]);
        w.note_every_write(true);
        o.write_all(b"z\n").unwrap();
        assert_eq!(until(&other), [(other.clone(), Change::Data)]);
    }

    #[test]
    fn writes_creations_and_directories_are_noted_and_signalled() {
        use std::io::Write as _;
        let dir = tempfile::tempdir().unwrap();
        let mut w = Watcher::new(Interest::default()).unwrap();
        assert!(!w.watch(&dir.path().join("missing"), false).unwrap());
        assert!(w.watch(dir.path(), false).unwrap());
        let path = dir.path().join("a.log");
        let mut f = std::fs::File::create(&path).unwrap();
        let n = next(&w);
        assert!(n.paths.contains(&(path.clone(), Change::Name)), "{n:?}");
        f.write_all(b"x\n").unwrap();
        let n = next(&w);
        assert_eq!(n.paths, [(path.clone(), Change::Data)]);
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let n = next(&w);
        assert_eq!(n.paths, [(dir.path().join("sub"), Change::Directory)]);
        // Reading is not a change: after a read, only the next creation is noted.
        let _ = std::fs::read(&path).unwrap();
        let marker = dir.path().join("b.log");
        drop(std::fs::File::create(&marker).unwrap());
        let n = next(&w);
        assert_eq!(n.paths, [(marker, Change::Name)]);
    }
}
