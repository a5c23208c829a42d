//! What change notifications ask of the reader, without I/O.
//!
//! Owns four decisions of `watch = "events"` (README "Tailing files"):
//! - [`roots`]: which directories to watch for a set of include patterns (the literal
//!   directory before the first wildcard; recursively when a wildcard is in a directory part);
//! - [`Interest`]: which paths the source reads (include minus exclude patterns), and so which
//!   writes the watcher's thread need not even note: a write to a file no pattern matches (the
//!   sink's own output next to the log, another program's log in `/var/log`) wakes nobody
//!   unless a rotated file or a symlinked one is being read;
//! - [`Pending`]: the changes noted by the watcher's thread and not handled yet, bounded: past
//!   [`MAX_PENDING`] distinct paths (or when the kernel's queue overflowed) they collapse into
//!   one full rescan, so memory does not grow with the rate of events;
//! - [`look`]: what one noted change means: look again at one known path, check the rotated
//!   files still being read, rescan the include patterns, or nothing.
//!
//! The periodic rescan (`rescan_interval`) stays behind this as a safety net (events missed on
//! network file systems, directories that do not exist yet).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The paths a source reads: its include patterns minus its exclude patterns (an exclude
/// pattern without a `/` is matched against the file name alone).
#[derive(Debug, Clone, Default)]
pub struct Interest {
    include: Vec<glob::Pattern>,
    exclude: Vec<(glob::Pattern, bool)>,
}

impl Interest {
    /// The interest of `include` minus `exclude` (patterns that do not parse are left out: the
    /// config reader rejects them first).
    pub fn new(include: &[String], exclude: &[String]) -> Interest {
        Interest {
            include: include
                .iter()
                .filter_map(|p| glob::Pattern::new(p).ok())
                .collect(),
            exclude: exclude
                .iter()
                .filter_map(|p| Some((glob::Pattern::new(p).ok()?, p.contains('/'))))
                .collect(),
        }
    }

    /// Whether an exclude pattern matches `path`.
    pub fn excluded(&self, path: &Path) -> bool {
        let name = path.file_name().map(Path::new);
        self.exclude.iter().any(|(p, whole)| {
            if *whole {
                p.matches_path(path)
            } else {
                name.is_some_and(|n| p.matches_path(n))
            }
        })
    }

    /// Whether the include patterns (minus excludes) match `path`.
    pub fn matches(&self, path: &Path) -> bool {
        let opts = glob::MatchOptions {
            require_literal_separator: true,
            ..glob::MatchOptions::new()
        };
        self.include.iter().any(|p| p.matches_path_with(path, opts)) && !self.excluded(path)
    }

    /// Whether a `change` at `path`, as the watcher reports it, is worth noting when every
    /// path the source reads is matched (`every_write`: some file is read that no pattern
    /// may match, a file rotated away or found through a symlink, so every write counts). A
    /// write to a path no pattern matches is not; anything else is. A root `.` (a pattern
    /// without a directory) reports `./name` for the pattern's `name`.
    pub fn worth_noting(&self, path: &Path, change: Change, every_write: bool) -> bool {
        change != Change::Data
            || every_write
            || self.matches(path)
            || path.strip_prefix("./").is_ok_and(|p| self.matches(p))
    }
}

/// Most distinct paths noted between two looks before they collapse into a rescan.
pub const MAX_PENDING: usize = 4096;

/// How the file source learns that files changed (`watch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchMode {
    /// Change notifications (inotify), with a rescan every `rescan_interval` as a safety net.
    Events,
    /// Only the rescan every `rescan_interval`.
    Poll,
}

impl WatchMode {
    /// The rescan interval when `rescan_interval_ms` is not set: 10 s behind events, 1 s when
    /// polling.
    pub fn default_rescan_ms(self) -> u64 {
        match self {
            WatchMode::Events => 10_000,
            WatchMode::Poll => 1_000,
        }
    }
}

/// A change as the watcher reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// A file's content changed (written or truncated).
    Data,
    /// A file or directory was created, renamed or deleted.
    Name,
    /// A directory was created (files in it may not have been reported).
    Directory,
    /// Anything else (metadata, access): nothing to do.
    Other,
}

/// What the reader does about one noted change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Look {
    /// Nothing.
    Nothing,
    /// Look again at this known path (grown, truncated, replaced).
    Path,
    /// Check the rotated or deleted files still being read through their descriptors (a
    /// writer may still write to a file renamed away).
    Retired,
    /// Expand the include patterns and look at every path.
    Rescan,
}

/// What a `change` at a path means: `known` when the source reads the file at that path,
/// `matched` when the include patterns (minus excludes) match it.
pub fn look(change: Change, known: bool, matched: bool) -> Look {
    match change {
        Change::Other => Look::Nothing,
        Change::Directory => Look::Rescan,
        Change::Data if known => Look::Path,
        Change::Data | Change::Name if matched || known => Look::Rescan,
        Change::Data | Change::Name => Look::Retired,
    }
}

/// Changes noted and not handled yet (module docs): per path, the strongest change.
#[derive(Debug, Default)]
pub struct Pending {
    paths: BTreeMap<PathBuf, Change>,
    overflow: bool,
}

/// What [`Pending::take`] hands over.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Noted {
    /// Every path must be looked at again (too many changes, or the kernel lost some).
    pub rescan: bool,
    /// The paths changed, each with its strongest change.
    pub paths: Vec<(PathBuf, Change)>,
}

impl Pending {
    /// Notes a change at `path`.
    pub fn note(&mut self, path: &Path, change: Change) {
        if self.overflow || change == Change::Other {
            return;
        }
        if let Some(c) = self.paths.get_mut(path) {
            *c = strongest(*c, change);
            return;
        }
        if self.paths.len() >= MAX_PENDING {
            self.lost();
            return;
        }
        self.paths.insert(path.to_owned(), change);
    }

    /// Changes were lost (the kernel's queue overflowed): everything is looked at.
    pub fn lost(&mut self) {
        self.overflow = true;
        self.paths.clear();
    }

    /// Whether nothing is noted.
    pub fn is_empty(&self) -> bool {
        !self.overflow && self.paths.is_empty()
    }

    /// Hands over what is noted and starts afresh.
    pub fn take(&mut self) -> Noted {
        let rescan = std::mem::take(&mut self.overflow);
        Noted {
            rescan,
            paths: std::mem::take(&mut self.paths).into_iter().collect(),
        }
    }
}

fn strongest(a: Change, b: Change) -> Change {
    let rank = |c| match c {
        Change::Other => 0,
        Change::Data => 1,
        Change::Name => 2,
        Change::Directory => 3,
    };
    if rank(b) > rank(a) { b } else { a }
}

/// One directory to watch for the include patterns.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Root {
    /// The directory.
    pub dir: PathBuf,
    /// Whether its subdirectories are watched too.
    pub recursive: bool,
}

fn is_wild(part: &str) -> bool {
    part.contains(['*', '?', '['])
}

/// The directories to watch for `include` (module docs), without duplicates: a directory
/// watched recursively covers the ones below it.
pub fn roots(include: &[String]) -> Vec<Root> {
    let mut out: Vec<Root> = Vec::new();
    for pattern in include {
        let parts: Vec<&str> = pattern.split('/').collect();
        let first_wild = parts.iter().position(|p| is_wild(p));
        let (literal, recursive) = match first_wild {
            // A wildcard in a directory part: everything below the literal part.
            Some(i) if i + 1 < parts.len() => (&parts[..i], true),
            Some(i) => (&parts[..i], false),
            // No wildcard: the file's directory.
            None => (&parts[..parts.len().saturating_sub(1)], false),
        };
        let mut dir = literal.join("/");
        if dir.is_empty() {
            dir = if pattern.starts_with('/') { "/" } else { "." }.to_owned();
        }
        out.push(Root {
            dir: PathBuf::from(dir),
            recursive,
        });
    }
    out.sort();
    out.dedup();
    let covered = |r: &Root, all: &[Root]| {
        all.iter().any(|o| {
            o != r && o.recursive && r.dir.starts_with(&o.dir) && (o.dir != r.dir || !r.recursive)
        })
    };
    let all = out.clone();
    out.retain(|r| !covered(r, &all));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn root(dir: &str, recursive: bool) -> Root {
        Root {
            dir: PathBuf::from(dir),
            recursive,
        }
    }

    #[test]
    fn roots_are_the_literal_directories_recursive_past_a_wild_directory() {
        let r = |p: &[&str]| roots(&p.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>());
        assert_eq!(r(&["/var/log/app/*.log"]), [root("/var/log/app", false)]);
        assert_eq!(r(&["/var/log/app.log"]), [root("/var/log", false)]);
        assert_eq!(r(&["/var/log/**/*.log"]), [root("/var/log", true)]);
        assert_eq!(r(&["/var/*/x/a.log"]), [root("/var", true)]);
        assert_eq!(r(&["*.log"]), [root(".", false)]);
        assert_eq!(r(&["logs/**/*.log"]), [root("logs", true)]);
        assert_eq!(r(&["/*.log"]), [root("/", false)]);
        // Covered by a recursive root; duplicates once.
        assert_eq!(
            r(&[
                "/a/**/*.log",
                "/a/b/*.log",
                "/a/c.log",
                "/d/*.log",
                "/d/*.txt"
            ]),
            [root("/a", true), root("/d", false)]
        );
        assert_eq!(
            r(&["/a/*.log", "/a/*/x.log"]),
            [root("/a", true)],
            "the recursive watch of a directory covers the plain one"
        );
    }

    #[test]
    fn only_writes_to_unmatched_paths_are_not_worth_noting() {
        let i = Interest::new(
            &["/var/log/app/*.log".to_owned(), "*.txt".to_owned()],
            &["*.gz".to_owned(), "/var/log/app/skip.log".to_owned()],
        );
        let p = Path::new;
        assert!(i.worth_noting(p("/var/log/app/a.log"), Change::Data, false));
        assert!(i.worth_noting(p("./notes.txt"), Change::Data, false));
        assert!(i.worth_noting(p("notes.txt"), Change::Data, false));
        for other in [
            "/var/log/app/out.ndjson",
            "/var/log/app/skip.log",
            "/var/log/syslog",
        ] {
            assert!(!i.worth_noting(p(other), Change::Data, false), "{other}");
            assert!(i.worth_noting(p(other), Change::Data, true), "{other}");
            assert!(i.worth_noting(p(other), Change::Name, false), "{other}");
            assert!(
                i.worth_noting(p(other), Change::Directory, false),
                "{other}"
            );
        }
        // A separator is matched literally; a `/` in an exclude pattern matches the whole path.
        assert!(!i.matches(p("/var/log/app/sub/a.log")));
        assert!(i.excluded(p("/x/a.log.gz")));
        assert!(!i.excluded(p("/x/skip.log")));
    }

    #[test]
    fn a_change_asks_for_the_least_that_covers_it() {
        use Change::*;
        assert_eq!(look(Data, true, true), Look::Path);
        assert_eq!(look(Data, false, true), Look::Rescan);
        assert_eq!(look(Data, false, false), Look::Retired);
        assert_eq!(look(Name, true, true), Look::Rescan);
        assert_eq!(look(Name, false, true), Look::Rescan);
        assert_eq!(look(Name, false, false), Look::Retired);
        assert_eq!(look(Directory, false, false), Look::Rescan);
        assert_eq!(look(Other, true, true), Look::Nothing);
    }

    proptest! {
        /// Any changes at any paths: at most MAX_PENDING paths are kept, each with its
        /// strongest change; past the bound everything collapses into one rescan, and
        /// `take` starts afresh.
        #[test]
        fn pending_is_bounded_and_keeps_the_strongest_change(
            notes in proptest::collection::vec((0u32..6000, 0u8..4), 0..9000),
        ) {
            let mut p = Pending::default();
            let mut want: BTreeMap<PathBuf, Change> = BTreeMap::new();
            let mut lost = false;
            for (n, c) in &notes {
                let change = [Change::Other, Change::Data, Change::Name, Change::Directory]
                    [*c as usize];
                let path = PathBuf::from(format!("/l/{n}"));
                p.note(&path, change);
                if change == Change::Other || lost {
                    continue;
                }
                if !want.contains_key(&path) && want.len() >= MAX_PENDING {
                    lost = true;
                    want.clear();
                    continue;
                }
                let e = want.entry(path).or_insert(change);
                *e = strongest(*e, change);
                prop_assert!(p.paths.len() <= MAX_PENDING);
            }
            prop_assert_eq!(p.is_empty(), !lost && want.is_empty());
            let noted = p.take();
            prop_assert_eq!(noted.rescan, lost);
            prop_assert_eq!(noted.paths, want.into_iter().collect::<Vec<_>>());
            prop_assert!(p.is_empty());
            prop_assert_eq!(p.take(), Noted::default());
        }
    }
}
