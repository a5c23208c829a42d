//! The file sink's decisions, without I/O and without reading the clock (`now` is an argument).
//!
//! Owns which output files are open and what is known of each (its size, when it was opened,
//! whether it was written since its last fsync), and answers the sink's questions:
//! - [`Planner::step`]: for the next records of one path, *open* the file (closing the least
//!   recently used one first when `max_open_files` are open), *rotate* it (it is due by age, or
//!   the next record does not fit in `rotate_bytes`), or *write* so many records to it;
//! - [`Planner::wrote`]: how long to wait before writing more, for the rate limit;
//! - [`Planner::take_aged`], [`Planner::fsync_due`], [`Planner::sync_after_batch`]: timed work;
//! - [`Planner::next_deadline`]: when the sink driver must wake the sink for it.
//!
//! The open files are an LRU map (the `lru` crate: a hash map whose entries are linked in use
//! order), so finding, touching and evicting a file are O(1) whatever `max_open_files` is; the
//! files due for age rotation are an ordered index, so the next deadline is O(log n). The
//! planner holds each file's handle `H` (the sink's writer; any value in tests) but never uses
//! it: the sink executes the answers (`super`).

use std::collections::BTreeMap;
use std::collections::hash_map::RandomState;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lru::LruCache;

use crate::core::rate_limit::TokenBucket;
use crate::core::record::Span;
use crate::sinks::file::config::{FileSinkConfig, Fsync};
use crate::sinks::line_len;

/// The settings the planner decides by (taken from [`FileSinkConfig`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    /// Most files open at once (at least 1).
    pub max_open_files: usize,
    /// Rotate a file before it would exceed this many bytes; 0 = never.
    pub rotate_bytes: u64,
    /// Rotate a non-empty file this long after it was opened; `None` = never.
    pub rotate_age: Option<Duration>,
    /// When written data is forced to disk.
    pub fsync: Fsync,
    /// Bytes per second; 0 = unlimited.
    pub rate_limit_bytes_per_sec: u64,
    /// Written after each record.
    pub delimiter: Vec<u8>,
    /// The delimiter only after records that do not already end with it.
    pub delimiter_if_missing: bool,
}

impl From<&FileSinkConfig> for Rules {
    fn from(cfg: &FileSinkConfig) -> Rules {
        Rules {
            max_open_files: cfg.max_open_files,
            rotate_bytes: cfg.rotate_bytes,
            rotate_age: cfg.rotate_age,
            fsync: cfg.fsync,
            rate_limit_bytes_per_sec: cfg.rate_limit_bytes_per_sec,
            delimiter: cfg.delimiter.clone(),
            delimiter_if_missing: cfg.delimiter_if_missing,
        }
    }
}

/// Why a file is rotated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    /// The next record does not fit in `rotate_bytes`.
    Size,
    /// The file is non-empty and was opened `rotate_age` ago or longer.
    Age,
}

/// What to do next for the records going to one path (see [`Planner::step`]).
#[derive(Debug)]
pub enum Step<'a, H> {
    /// The file is not open. Close `evict` first when given (the least recently used file, to
    /// stay within `max_open_files`; the planner has forgotten it), then open the file and tell
    /// the planner with [`Planner::opened`].
    Open {
        /// A file to finish and close before opening another.
        evict: Option<(PathBuf, H)>,
    },
    /// Close this file (the planner has forgotten it) and rename it to its next rotation name;
    /// the next step opens a fresh one.
    Rotate {
        /// The file's handle.
        file: H,
        /// Why.
        cause: Rotation,
    },
    /// Append the first `records` of the records given (at least one unless none were given),
    /// then tell the planner with [`Planner::wrote`].
    Write {
        /// How many records.
        records: usize,
        /// The file to append them to.
        file: &'a mut H,
    },
}

/// What the planner knows of one open file.
#[derive(Debug)]
struct Entry<H> {
    handle: H,
    /// Bytes in the file: its length when opened, plus what was written (uncompressed).
    size: u64,
    opened_at: Instant,
    /// Written since its last fsync.
    dirty: bool,
    /// The last write took fewer records than it was given: the next one did not fit, so the
    /// file is rotated before anything else goes in.
    full: bool,
    /// Its key in the age index, once it is non-empty (with `rotate_age` only).
    aging: Option<(Instant, u64)>,
}

/// The file sink's planner over file handles `H` (module docs).
pub struct Planner<H> {
    rules: Rules,
    /// Open files, most recently used first. A std `RandomState` (SipHash, randomly keyed): the
    /// paths come from record contents.
    files: LruCache<PathBuf, Entry<H>, RandomState>,
    /// Non-empty open files by the time they were opened (with `rotate_age` only).
    by_age: BTreeMap<(Instant, u64), PathBuf>,
    /// Tie-breaker of `by_age` keys.
    opened_count: u64,
    /// Open files with `dirty` set.
    dirty: usize,
    last_fsync: Instant,
    limiter: Option<TokenBucket>,
}

impl<H> Planner<H> {
    /// A planner with no file open, at `now`.
    pub fn new(rules: Rules, now: Instant) -> Planner<H> {
        let limiter = (rules.rate_limit_bytes_per_sec > 0).then(|| {
            // A burst of a tenth of a second keeps the rate smooth at any batch size.
            let rate = rules.rate_limit_bytes_per_sec;
            TokenBucket::new(rate, (rate / 10).max(1), now)
        });
        Planner {
            rules,
            files: LruCache::unbounded_with_hasher(RandomState::new()),
            by_age: BTreeMap::new(),
            opened_count: 0,
            dirty: 0,
            last_fsync: now,
            limiter,
        }
    }

    /// The next thing to do for `spans` of `data`, records for the file at `path`, at `now`.
    /// Counts as a use of the file (for the LRU). Records are never split: a file takes at
    /// least one record when it is empty, however large.
    pub fn step(&mut self, path: &Path, data: &[u8], spans: &[Span], now: Instant) -> Step<'_, H> {
        let rules = &self.rules;
        let decision = self.files.get_mut(path).map(|e| {
            if e.full {
                return Err(Rotation::Size);
            }
            if is_aged(rules, e, now) {
                return Err(Rotation::Age);
            }
            let n = if rules.rotate_bytes > 0 {
                records_fitting(
                    data,
                    spans,
                    (&rules.delimiter, rules.delimiter_if_missing),
                    rules.rotate_bytes.saturating_sub(e.size),
                    e.size == 0,
                )
            } else {
                spans.len()
            };
            if n == 0 && !spans.is_empty() {
                return Err(Rotation::Size);
            }
            e.full = n < spans.len();
            Ok(n)
        });
        match decision {
            None => {
                let evict = if self.files.len() >= self.rules.max_open_files {
                    self.pop_lru()
                } else {
                    None
                };
                Step::Open { evict }
            }
            Some(Err(cause)) => match self.remove(path) {
                Some(file) => Step::Rotate { file, cause },
                None => Step::Open { evict: None },
            },
            Some(Ok(records)) => match self.files.peek_mut(path) {
                Some(e) => Step::Write {
                    records,
                    file: &mut e.handle,
                },
                None => Step::Open { evict: None },
            },
        }
    }

    /// The file at `path` was opened at `now` (after [`Step::Open`]) and is `size` bytes long;
    /// it becomes the most recently used. A file already open under that path is replaced and
    /// returned (the sink never does that: it opens only when told to).
    pub fn opened(&mut self, path: PathBuf, handle: H, size: u64, now: Instant) -> Option<H> {
        let old = self.remove(&path);
        let mut entry = Entry {
            handle,
            size,
            opened_at: now,
            dirty: false,
            full: false,
            aging: None,
        };
        if size > 0 {
            start_aging(
                &self.rules,
                &mut self.by_age,
                &mut self.opened_count,
                &path,
                &mut entry,
            );
        }
        self.files.put(path, entry);
        old
    }

    /// `bytes` were appended to the file at `path` (after [`Step::Write`]), at `now`. Returns
    /// how long to wait before the next write for the rate limit (zero without one).
    pub fn wrote(&mut self, path: &Path, bytes: u64, now: Instant) -> Duration {
        let Planner {
            rules,
            files,
            by_age,
            opened_count,
            dirty,
            limiter,
            ..
        } = self;
        // A peek: the step before this one was a use of the same file.
        if let Some(e) = files.peek_mut(path) {
            e.size += bytes;
            if !e.dirty {
                e.dirty = true;
                *dirty += 1;
            }
            if e.aging.is_none() && e.size > 0 {
                start_aging(rules, by_age, opened_count, path, e);
            }
        }
        match limiter {
            Some(limiter) => limiter.take_debt(bytes, now),
            None => Duration::ZERO,
        }
    }

    /// Whether [`Planner::wrote`] may ask for a wait (so the sink reads the clock after writing).
    pub fn limits_rate(&self) -> bool {
        self.limiter.is_some()
    }

    /// When the sink next has timed work: the earliest of the next interval fsync (only while
    /// a file is dirty) and the age rotation of the oldest non-empty file.
    pub fn next_deadline(&self) -> Option<Instant> {
        let fsync = match self.rules.fsync {
            Fsync::Interval(every) if self.dirty > 0 => Some(self.last_fsync + every),
            _ => None,
        };
        let age = self.rules.rotate_age.and_then(|age| {
            self.by_age
                .first_key_value()
                .map(|(&(opened_at, _), _)| opened_at + age)
        });
        match (fsync, age) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// A file due for age rotation at `now`, oldest first, forgotten by the planner: close and
    /// rename it, then ask again until `None`.
    pub fn take_aged(&mut self, now: Instant) -> Option<(PathBuf, H)> {
        let age = self.rules.rotate_age?;
        let (&(opened_at, _), _) = self.by_age.first_key_value()?;
        if now.saturating_duration_since(opened_at) < age {
            return None;
        }
        let (_, path) = self.by_age.pop_first()?;
        let handle = self.remove(&path)?;
        Some((path, handle))
    }

    /// Whether the interval fsync is due at `now` (with `fsync = interval`: the interval has
    /// passed since the last one).
    pub fn fsync_due(&self, now: Instant) -> bool {
        matches!(self.rules.fsync, Fsync::Interval(every)
            if now.saturating_duration_since(self.last_fsync) >= every)
    }

    /// Whether to sync the files written by a batch once it is written (`fsync = batch`).
    pub fn sync_after_batch(&self) -> bool {
        self.rules.fsync == Fsync::Batch && self.dirty > 0
    }

    /// Whether a file is synced when it is closed (any policy but `never`).
    pub fn sync_on_close(&self) -> bool {
        self.rules.fsync != Fsync::Never
    }

    /// Calls `sync` on every dirty file, marking each clean once it succeeded; stops at the
    /// first error. Then tell the planner with [`Planner::synced`].
    pub fn sync_dirty<E>(
        &mut self,
        mut sync: impl FnMut(&Path, &mut H) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.dirty == 0 {
            return Ok(());
        }
        for (path, e) in self.files.iter_mut() {
            if e.dirty {
                sync(path, &mut e.handle)?;
                e.dirty = false;
                self.dirty -= 1;
            }
        }
        Ok(())
    }

    /// Dirty files were synced at `now`: the next interval fsync is due an interval later.
    pub fn synced(&mut self, now: Instant) {
        self.last_fsync = now;
    }

    /// Every open file, for work on all of them (flushing compressors), in no particular order.
    pub fn files_mut(&mut self) -> impl Iterator<Item = (&Path, &mut H)> {
        self.files
            .iter_mut()
            .map(|(p, e)| (p.as_path(), &mut e.handle))
    }

    /// Forgets the least recently used open file and returns it (to close it), or `None`.
    pub fn pop_lru(&mut self) -> Option<(PathBuf, H)> {
        let (path, e) = self.files.pop_lru()?;
        Some((path, self.forget(e)))
    }

    /// How many files are open.
    pub fn open_files(&self) -> usize {
        self.files.len()
    }

    /// Removes the file at `path` from the open set and the indexes.
    fn remove(&mut self, path: &Path) -> Option<H> {
        let e = self.files.pop(path)?;
        Some(self.forget(e))
    }

    /// Takes a removed entry out of the dirty count and the age index.
    fn forget(&mut self, e: Entry<H>) -> H {
        if e.dirty {
            self.dirty -= 1;
        }
        if let Some(key) = e.aging {
            self.by_age.remove(&key);
        }
        e.handle
    }
}

impl<H> std::fmt::Debug for Planner<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Planner")
            .field("open_files", &self.files.len())
            .field("dirty", &self.dirty)
            .finish()
    }
}

/// Puts a non-empty file into the age index (with `rotate_age` only).
fn start_aging<H>(
    rules: &Rules,
    by_age: &mut BTreeMap<(Instant, u64), PathBuf>,
    opened_count: &mut u64,
    path: &Path,
    e: &mut Entry<H>,
) {
    if rules.rotate_age.is_some() {
        *opened_count += 1;
        let key = (e.opened_at, *opened_count);
        by_age.insert(key, path.to_owned());
        e.aging = Some(key);
    }
}

/// Whether a file is due for age rotation at `now`: non-empty and opened `rotate_age` ago.
fn is_aged<H>(rules: &Rules, e: &Entry<H>, now: Instant) -> bool {
    rules
        .rotate_age
        .is_some_and(|age| e.size > 0 && now.saturating_duration_since(e.opened_at) >= age)
}

/// How many of `spans` of `data`, as lines with a delimiter (and whether it is added only when
/// missing), fit in `room` bytes. A file that is still empty takes at least one record, however
/// large: records are never split.
pub fn records_fitting(
    data: &[u8],
    spans: &[Span],
    (delim, if_missing): (&[u8], bool),
    room: u64,
    file_empty: bool,
) -> usize {
    let mut used = 0u64;
    for (i, s) in spans.iter().enumerate() {
        let payload = data
            .get(s.start as usize..s.end as usize)
            .unwrap_or_default();
        used += line_len(payload, delim, if_missing) as u64;
        if used > room {
            return if i == 0 && file_empty { 1 } else { i };
        }
    }
    spans.len()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn rules() -> Rules {
        Rules {
            max_open_files: 64,
            rotate_bytes: 0,
            rotate_age: None,
            fsync: Fsync::Never,
            rate_limit_bytes_per_sec: 0,
            delimiter: b"\n".to_vec(),
            delimiter_if_missing: false,
        }
    }

    /// Records of the given payload lengths, each followed by a newline in `data` (outside its
    /// span).
    fn records(lens: &[usize]) -> (Vec<u8>, Vec<Span>) {
        let mut data = Vec::new();
        let mut spans = Vec::new();
        for &l in lens {
            let start = data.len() as u32;
            data.resize(data.len() + l, b'x');
            spans.push(Span {
                start,
                end: data.len() as u32,
            });
            data.push(b'\n');
        }
        (data, spans)
    }

    /// What a step answered, without the borrow.
    #[derive(Debug, PartialEq, Eq)]
    enum Did {
        Open(Option<(PathBuf, u32)>),
        Rotate(u32, Rotation),
        Write(usize, u32),
    }

    fn step(p: &mut Planner<u32>, path: &str, lens: &[usize], now: Instant) -> Did {
        let (data, spans) = records(lens);
        match p.step(Path::new(path), &data, &spans, now) {
            Step::Open { evict } => Did::Open(evict),
            Step::Rotate { file, cause } => Did::Rotate(file, cause),
            Step::Write { records, file } => Did::Write(records, *file),
        }
    }

    fn open(p: &mut Planner<u32>, path: &str, handle: u32, now: Instant) {
        assert_eq!(p.opened(PathBuf::from(path), handle, 0, now), None);
    }

    #[test]
    fn records_fitting_never_splits_and_takes_one_into_an_empty_file() {
        let (data, s) = records(&[4, 4, 4]);
        let nl: (&[u8], bool) = (b"\n", false);
        assert_eq!(records_fitting(&data, &s, nl, 10, false), 2);
        assert_eq!(records_fitting(&data, &s, nl, 9, false), 1);
        assert_eq!(records_fitting(&data, &s, nl, 4, false), 0);
        assert_eq!(records_fitting(&data, &s, nl, 4, true), 1);
        assert_eq!(records_fitting(&data, &s, nl, 100, false), 3);
        // Records that end with the delimiter take no extra byte when it is added only if
        // missing.
        let data = b"abc\ndef\nghi\n";
        let s: Vec<Span> = (0..3)
            .map(|i| Span {
                start: 4 * i,
                end: 4 * i + 4,
            })
            .collect();
        assert_eq!(&data[s[2].start as usize..s[2].end as usize], b"ghi\n");
        assert_eq!(records_fitting(data, &s, (b"\n", true), 12, false), 3);
        assert_eq!(records_fitting(data, &s, (b"\n", false), 12, false), 2);
    }

    #[test]
    fn the_least_recently_used_file_is_closed_for_a_new_one() {
        let t0 = Instant::now();
        let mut p = Planner::new(
            Rules {
                max_open_files: 3,
                ..rules()
            },
            t0,
        );
        for (h, path) in ["a", "b", "c"].into_iter().enumerate() {
            assert_eq!(step(&mut p, path, &[1], t0), Did::Open(None));
            open(&mut p, path, h as u32, t0);
        }
        // Using `a` makes `b` the least recently used.
        assert_eq!(step(&mut p, "a", &[1], t0), Did::Write(1, 0));
        assert_eq!(
            step(&mut p, "d", &[1], t0),
            Did::Open(Some(("b".into(), 1)))
        );
        assert_eq!(p.open_files(), 2);
        open(&mut p, "d", 3, t0);
        assert_eq!(
            step(&mut p, "b", &[1], t0),
            Did::Open(Some(("c".into(), 2)))
        );
        open(&mut p, "b", 4, t0);
        // Writing does not change the order beyond the step that planned it.
        assert_eq!(p.wrote(Path::new("a"), 2, t0), Duration::ZERO);
        let order: Vec<_> = std::iter::from_fn(|| p.pop_lru()).collect();
        assert_eq!(order, [("a".into(), 0), ("d".into(), 3), ("b".into(), 4)]);
    }

    #[test]
    fn size_rotation_fills_each_file_and_never_splits_a_record() {
        let t0 = Instant::now();
        let mut p = Planner::new(
            Rules {
                rotate_bytes: 10,
                ..rules()
            },
            t0,
        );
        assert_eq!(step(&mut p, "f", &[4, 4, 4], t0), Did::Open(None));
        open(&mut p, "f", 0, t0);
        // Two lines of 5 bytes fill the 10; the third is for the next file.
        assert_eq!(step(&mut p, "f", &[4, 4, 4], t0), Did::Write(2, 0));
        p.wrote(Path::new("f"), 10, t0);
        assert_eq!(step(&mut p, "f", &[4], t0), Did::Rotate(0, Rotation::Size));
        assert_eq!(step(&mut p, "f", &[4], t0), Did::Open(None));
        // A file opened with 8 bytes in it takes no 5-byte line.
        assert_eq!(p.opened(PathBuf::from("f"), 1, 8, t0), None);
        assert_eq!(step(&mut p, "f", &[4], t0), Did::Rotate(1, Rotation::Size));
        // A record larger than rotate_bytes gets an empty file of its own.
        open(&mut p, "f", 2, t0);
        assert_eq!(step(&mut p, "f", &[20, 0, 1], t0), Did::Write(1, 2));
        p.wrote(Path::new("f"), 21, t0);
        assert_eq!(
            step(&mut p, "f", &[0, 1], t0),
            Did::Rotate(2, Rotation::Size)
        );
    }

    #[test]
    fn a_file_that_took_part_of_the_records_is_rotated_even_for_an_empty_line() {
        // With an empty delimiter an empty record takes no room, but the file was full for the
        // record before it (here: one larger than rotate_bytes, alone in its file), so rotation
        // comes first, as it always has.
        let t0 = Instant::now();
        let mut p = Planner::new(
            Rules {
                rotate_bytes: 4,
                delimiter: Vec::new(),
                ..rules()
            },
            t0,
        );
        open(&mut p, "f", 0, t0);
        assert_eq!(step(&mut p, "f", &[5, 0], t0), Did::Write(1, 0));
        p.wrote(Path::new("f"), 5, t0);
        assert_eq!(step(&mut p, "f", &[0], t0), Did::Rotate(0, Rotation::Size));
        open(&mut p, "f", 1, t0);
        assert_eq!(step(&mut p, "f", &[0], t0), Did::Write(1, 1));
        // Without rotate_bytes everything goes in at once.
        let mut p = Planner::new(rules(), t0);
        open(&mut p, "f", 0, t0);
        assert_eq!(step(&mut p, "f", &[1000; 50], t0), Did::Write(50, 0));
    }

    #[test]
    fn age_rotation_is_due_exactly_rotate_age_after_opening_a_non_empty_file() {
        let t0 = Instant::now();
        let age = ms(100);
        let mut p = Planner::new(
            Rules {
                rotate_age: Some(age),
                ..rules()
            },
            t0,
        );
        open(&mut p, "a", 0, t0);
        // An empty file never ages.
        assert_eq!(p.next_deadline(), None);
        assert_eq!(p.take_aged(t0 + ms(1000)), None);
        assert_eq!(step(&mut p, "a", &[1], t0 + ms(1000)), Did::Write(1, 0));
        p.wrote(Path::new("a"), 2, t0 + ms(1000));
        // Its age counts from the open: overdue at once.
        assert_eq!(p.next_deadline(), Some(t0 + age));
        // A file opened with something in it ages from its open.
        assert_eq!(p.opened(PathBuf::from("b"), 1, 1, t0 + ms(1000)), None);
        let due_b = t0 + ms(1000) + age;
        assert_eq!(p.take_aged(t0 + ms(1000)), Some((PathBuf::from("a"), 0)));
        assert_eq!(p.next_deadline(), Some(due_b));
        let just_before = due_b - Duration::from_nanos(1);
        assert_eq!(p.take_aged(just_before), None);
        assert_eq!(step(&mut p, "b", &[1], just_before), Did::Write(1, 1));
        p.wrote(Path::new("b"), 2, just_before);
        assert_eq!(
            step(&mut p, "b", &[1], due_b),
            Did::Rotate(1, Rotation::Age)
        );
        assert_eq!(p.next_deadline(), None);
        // Closed files leave the index.
        open(&mut p, "c", 2, due_b);
        p.step(Path::new("c"), b"x", &[Span { start: 0, end: 1 }], due_b);
        p.wrote(Path::new("c"), 2, due_b);
        assert!(p.next_deadline().is_some());
        assert_eq!(p.pop_lru(), Some((PathBuf::from("c"), 2)));
        assert_eq!(p.next_deadline(), None);
        assert_eq!(p.take_aged(due_b + ms(10_000)), None);
    }

    #[test]
    fn interval_fsync_is_due_an_interval_after_the_last_while_a_file_is_dirty() {
        let t0 = Instant::now();
        let mut p = Planner::new(
            Rules {
                fsync: Fsync::Interval(ms(1000)),
                ..rules()
            },
            t0,
        );
        assert!(p.sync_on_close());
        open(&mut p, "a", 0, t0);
        open(&mut p, "b", 1, t0);
        assert_eq!(p.next_deadline(), None);
        // Written long after the last sync: due at once.
        let t5 = t0 + ms(5000);
        assert!(matches!(step(&mut p, "a", &[1], t5), Did::Write(1, 0)));
        p.wrote(Path::new("a"), 2, t5);
        assert_eq!(p.next_deadline(), Some(t0 + ms(1000)));
        assert!(p.fsync_due(t5));
        assert!(!p.sync_after_batch());
        let mut synced = Vec::new();
        p.sync_dirty(|path, h| {
            synced.push((path.to_owned(), *h));
            Ok::<(), ()>(())
        })
        .unwrap();
        assert_eq!(synced, [(PathBuf::from("a"), 0)]);
        p.synced(t5);
        assert_eq!(p.next_deadline(), None);
        assert!(!p.fsync_due(t5 + ms(999)));
        assert!(p.fsync_due(t5 + ms(1000)));
        // The next write is synced at most an interval after the last sync.
        let t = t5 + ms(500);
        step(&mut p, "b", &[1], t);
        p.wrote(Path::new("b"), 2, t);
        assert_eq!(p.next_deadline(), Some(t5 + ms(1000)));
        // A failed sync leaves the file dirty.
        assert_eq!(p.sync_dirty(|_, _| Err("EIO")), Err("EIO"));
        assert_eq!(p.next_deadline(), Some(t5 + ms(1000)));
        // A dirty file that is closed is synced by its close: no deadline is left for it.
        assert_eq!(p.pop_lru(), Some((PathBuf::from("a"), 0)));
        assert_eq!(p.pop_lru(), Some((PathBuf::from("b"), 1)));
        assert_eq!(p.next_deadline(), None);
    }

    #[test]
    fn batch_and_never_fsync() {
        let t0 = Instant::now();
        let mut p = Planner::new(
            Rules {
                fsync: Fsync::Batch,
                ..rules()
            },
            t0,
        );
        open(&mut p, "a", 0, t0);
        assert!(!p.sync_after_batch());
        step(&mut p, "a", &[1], t0);
        p.wrote(Path::new("a"), 2, t0);
        assert!(p.sync_after_batch());
        assert_eq!(p.next_deadline(), None);
        assert!(!p.fsync_due(t0 + ms(100_000)));
        p.sync_dirty(|_, _| Ok::<(), ()>(())).unwrap();
        assert!(!p.sync_after_batch());
        assert!(p.sync_on_close());
        let mut p: Planner<u32> = Planner::new(rules(), t0);
        open(&mut p, "a", 0, t0);
        step(&mut p, "a", &[1], t0);
        p.wrote(Path::new("a"), 2, t0);
        assert!(!p.sync_after_batch() && !p.sync_on_close());
        assert!(!p.fsync_due(t0 + ms(100_000)));
        assert_eq!(p.next_deadline(), None);
    }

    #[test]
    fn the_rate_limit_asks_for_the_token_buckets_wait() {
        let t0 = Instant::now();
        let mut p = Planner::new(
            Rules {
                rate_limit_bytes_per_sec: 1000,
                ..rules()
            },
            t0,
        );
        assert!(p.limits_rate());
        open(&mut p, "a", 0, t0);
        // A burst of a tenth of a second, then 1 ms per byte of debt.
        assert_eq!(p.wrote(Path::new("a"), 100, t0), Duration::ZERO);
        assert_eq!(p.wrote(Path::new("a"), 50, t0), ms(50));
        assert_eq!(p.wrote(Path::new("a"), 10, t0 + ms(50)), ms(10));
        // Unlimited: never a wait.
        let mut p: Planner<u32> = Planner::new(rules(), t0);
        assert!(!p.limits_rate());
        assert_eq!(p.wrote(Path::new("a"), u64::MAX, t0), Duration::ZERO);
    }

    /// `total <= burst + rate * elapsed`, exactly.
    fn within_rate(total: u64, burst: u64, rate: u64, elapsed: Duration) -> bool {
        u128::from(total) * 1_000_000_000
            <= u128::from(burst) * 1_000_000_000 + u128::from(rate) * elapsed.as_nanos()
    }

    proptest! {
        #[test]
        fn a_writer_that_waits_as_told_never_exceeds_the_rate(
            rate in 1u64..100_000,
            writes in proptest::collection::vec((0u64..200_000, 0u64..50), 1..60),
        ) {
            let t0 = Instant::now();
            let mut p: Planner<u32> = Planner::new(
                Rules { rate_limit_bytes_per_sec: rate, ..rules() },
                t0,
            );
            let burst = (rate / 10).max(1);
            let (mut now, mut total) = (t0, 0u64);
            for (bytes, gap_ms) in writes {
                now += ms(gap_ms);
                total += bytes;
                now += p.wrote(Path::new("a"), bytes, now);
                prop_assert!(
                    within_rate(total, burst, rate, now - t0),
                    "{} bytes in {:?}", total, now - t0
                );
            }
        }

        #[test]
        fn a_writer_that_is_never_idle_gets_exactly_the_rate(
            rate in 1u64..100_000,
            writes in proptest::collection::vec(0u64..200_000, 1..60),
        ) {
            // Without idle time no token is lost to a full bucket, so once the burst is spent
            // the time taken is what the bytes need at the rate, rounded up to a nanosecond.
            let t0 = Instant::now();
            let mut p: Planner<u32> = Planner::new(
                Rules { rate_limit_bytes_per_sec: rate, ..rules() },
                t0,
            );
            let burst = (rate / 10).max(1);
            let (mut now, mut total) = (t0, 0u64);
            for bytes in writes {
                total += bytes;
                let wait = p.wrote(Path::new("a"), bytes, now);
                now += wait;
                let needed_ns =
                    u128::from(total.saturating_sub(burst)) * 1_000_000_000 / u128::from(rate);
                let took_ns = (now - t0).as_nanos();
                prop_assert!(took_ns >= needed_ns, "{} ns for {} bytes", took_ns, total);
                prop_assert!(took_ns <= needed_ns + 1, "{} ns for {} bytes", took_ns, total);
            }
        }
    }

    /// One open file as the simulation sees it.
    #[derive(Debug)]
    struct SimFile {
        path: PathBuf,
        handle: u32,
        opened_at: Instant,
        dirty: bool,
    }

    /// The file sink's I/O side, simulated: it executes the planner's answers on a model disk
    /// in virtual time (like `super::FileSink` and its driver) and checks every answer against
    /// what the rules say it must be. A file is its lines, as (record id, bytes).
    struct Sim {
        p: Planner<u32>,
        rules: Rules,
        t0: Instant,
        now: Instant,
        /// Open files, least recently used first.
        open: Vec<SimFile>,
        handles: u32,
        /// The file at each path.
        disk: BTreeMap<PathBuf, Vec<(u32, u64)>>,
        /// Files rotated away from each path, in order.
        rotated: BTreeMap<PathBuf, Vec<Vec<(u32, u64)>>>,
        /// Every record sent to each path, in order.
        sent: BTreeMap<PathBuf, Vec<(u32, u64)>>,
        records: u32,
        last_fsync: Instant,
        written: u64,
    }

    impl Sim {
        fn new(rules: Rules) -> Sim {
            let t0 = Instant::now();
            Sim {
                p: Planner::new(rules.clone(), t0),
                rules,
                t0,
                now: t0,
                open: Vec::new(),
                handles: 0,
                disk: BTreeMap::new(),
                rotated: BTreeMap::new(),
                sent: BTreeMap::new(),
                records: 0,
                last_fsync: t0,
                written: 0,
            }
        }

        fn size(&self, path: &Path) -> u64 {
            self.disk
                .get(path)
                .map_or(0, |f| f.iter().map(|l| l.1).sum())
        }

        fn at(&self, path: &Path) -> Option<usize> {
            self.open.iter().position(|f| f.path == path)
        }

        fn aged(&self, f: &SimFile, now: Instant) -> bool {
            self.rules
                .rotate_age
                .is_some_and(|age| self.size(&f.path) > 0 && now - f.opened_at >= age)
        }

        /// When the sink must be woken, computed from the model.
        fn deadline(&self) -> Option<Instant> {
            let fsync = match self.rules.fsync {
                Fsync::Interval(every) if self.open.iter().any(|f| f.dirty) => {
                    Some(self.last_fsync + every)
                }
                _ => None,
            };
            let age = self.rules.rotate_age.and_then(|age| {
                self.open
                    .iter()
                    .filter(|f| self.size(&f.path) > 0)
                    .map(|f| f.opened_at + age)
                    .min()
            });
            [fsync, age].into_iter().flatten().min()
        }

        fn close(&mut self, path: &Path, handle: u32) -> Result<(), TestCaseError> {
            let i = self
                .at(path)
                .ok_or_else(|| TestCaseError::fail("closing a closed file"))?;
            prop_assert_eq!(self.open[i].handle, handle);
            self.open.remove(i);
            Ok(())
        }

        fn rotate(&mut self, path: &Path, handle: u32) -> Result<(), TestCaseError> {
            self.close(path, handle)?;
            let file = self.disk.remove(path).unwrap_or_default();
            self.rotated.entry(path.to_owned()).or_default().push(file);
            Ok(())
        }

        /// Writes records of `lens` to `path` as `write_group` does, then what the driver does
        /// after a batch.
        fn write(&mut self, path: &Path, lens: &[usize]) -> Result<(), TestCaseError> {
            let (data, spans) = records(lens);
            let ids: Vec<(u32, u64)> = lens
                .iter()
                .map(|&l| {
                    self.records += 1;
                    (self.records, (l + self.rules.delimiter.len()) as u64)
                })
                .collect();
            self.sent.entry(path.to_owned()).or_default().extend(&ids);
            let mut done = 0;
            let mut steps = 0;
            while done < spans.len() {
                steps += 1;
                prop_assert!(steps <= 3 * spans.len() + 3, "no progress");
                let now = self.now;
                let i = self.at(path);
                let size = self.size(path);
                let aged = i.is_some_and(|i| self.aged(&self.open[i], now));
                let next = ids[done].1;
                match self.p.step(path, &data, &spans[done..], now) {
                    Step::Open { evict } => {
                        prop_assert!(i.is_none(), "told to open an open file");
                        let full = self.open.len() >= self.rules.max_open_files;
                        match evict {
                            Some((lru, h)) => {
                                prop_assert!(full);
                                // Always the least recently used.
                                prop_assert_eq!(&lru, &self.open[0].path);
                                self.close(&lru, h)?;
                            }
                            None => prop_assert!(!full, "{} open, none closed", self.open.len()),
                        }
                        self.handles += 1;
                        let handle = self.handles;
                        let size = self.size(path);
                        prop_assert!(self.p.opened(path.to_owned(), handle, size, now).is_none());
                        self.open.push(SimFile {
                            path: path.to_owned(),
                            handle,
                            opened_at: now,
                            dirty: false,
                        });
                    }
                    Step::Rotate { file, cause } => {
                        let i = i.ok_or_else(|| TestCaseError::fail("rotating a closed file"))?;
                        match cause {
                            Rotation::Age => prop_assert!(aged),
                            Rotation::Size => {
                                // Only when the next record does not fit. (The file may
                                // hold only empty records, with an empty delimiter: then it
                                // is 0 bytes long and rotated all the same, as it always was.)
                                prop_assert!(self.rules.rotate_bytes > 0);
                                prop_assert!(size + next > self.rules.rotate_bytes);
                            }
                        }
                        let h = self.open[i].handle;
                        prop_assert_eq!(file, h);
                        self.rotate(path, h)?;
                    }
                    Step::Write { records, file } => {
                        let i = i.ok_or_else(|| TestCaseError::fail("writing a closed file"))?;
                        prop_assert_eq!(*file, self.open[i].handle);
                        prop_assert!(!aged, "an aged file is written to");
                        prop_assert!(records >= 1);
                        let part = &ids[done..done + records];
                        let bytes: u64 = part.iter().map(|l| l.1).sum();
                        if self.rules.rotate_bytes > 0 {
                            // Within rotate_bytes, unless one record alone does not fit
                            // (or nothing is added: empty records, with an empty delimiter).
                            prop_assert!(
                                size + bytes <= self.rules.rotate_bytes
                                    || (size == 0 && records == 1)
                                    || bytes == 0
                            );
                        } else {
                            prop_assert_eq!(records, spans.len() - done);
                        }
                        self.disk.entry(path.to_owned()).or_default().extend(part);
                        done += records;
                        // The use moves it to the most recent end.
                        let mut f = self.open.remove(i);
                        f.dirty = true;
                        self.open.push(f);
                        let wait = self.p.wrote(path, bytes, now);
                        self.written += bytes;
                        if self.rules.rate_limit_bytes_per_sec == 0 {
                            prop_assert_eq!(wait, Duration::ZERO);
                        }
                        self.now += wait;
                        let rate = self.rules.rate_limit_bytes_per_sec;
                        if rate > 0 {
                            let burst = (rate / 10).max(1);
                            prop_assert!(within_rate(
                                self.written,
                                burst,
                                rate,
                                self.now - self.t0
                            ));
                        }
                    }
                }
                prop_assert!(self.p.open_files() <= self.rules.max_open_files);
                prop_assert_eq!(self.p.open_files(), self.open.len());
            }
            let dirty = self.open.iter().any(|f| f.dirty);
            prop_assert_eq!(
                self.p.sync_after_batch(),
                self.rules.fsync == Fsync::Batch && dirty
            );
            if self.p.sync_after_batch() {
                self.sync()?;
            }
            prop_assert_eq!(self.p.next_deadline(), self.deadline());
            if self.p.next_deadline().is_some_and(|d| d <= self.now) {
                self.on_timer()?;
            }
            Ok(())
        }

        /// Syncs the dirty files; exactly those are visited.
        fn sync(&mut self) -> Result<(), TestCaseError> {
            let mut visited = Vec::new();
            self.p
                .sync_dirty(|path, h| {
                    visited.push((path.to_owned(), *h));
                    Ok::<(), ()>(())
                })
                .map_err(|()| TestCaseError::fail("sync"))?;
            let mut dirty: Vec<(PathBuf, u32)> = self
                .open
                .iter_mut()
                .filter(|f| f.dirty)
                .map(|f| {
                    f.dirty = false;
                    (f.path.clone(), f.handle)
                })
                .collect();
            visited.sort();
            dirty.sort();
            prop_assert_eq!(visited, dirty);
            self.p.synced(self.now);
            self.last_fsync = self.now;
            Ok(())
        }

        /// The driver's timed work at `self.now`: exactly the files due rotate by age, and
        /// the interval fsync runs exactly when due.
        fn on_timer(&mut self) -> Result<(), TestCaseError> {
            let now = self.now;
            let mut due: Vec<u32> = self
                .open
                .iter()
                .filter(|f| self.aged(f, now))
                .map(|f| f.handle)
                .collect();
            let mut aged = Vec::new();
            while let Some((path, h)) = self.p.take_aged(now) {
                aged.push(h);
                self.rotate(&path, h)?;
            }
            due.sort_unstable();
            aged.sort_unstable();
            prop_assert_eq!(aged, due);
            let fsync_due = matches!(self.rules.fsync, Fsync::Interval(every)
                if now - self.last_fsync >= every);
            prop_assert_eq!(self.p.fsync_due(now), fsync_due);
            if fsync_due {
                self.sync()?;
            }
            prop_assert_eq!(self.p.next_deadline(), self.deadline());
            Ok(())
        }

        /// Checks, without doing it, that timed work at `self.now` would do nothing.
        fn on_timer_has_nothing_to_do(&self) -> Result<(), TestCaseError> {
            prop_assert!(!self.open.iter().any(|f| self.aged(f, self.now)));
            prop_assert!(!self.p.fsync_due(self.now) || !self.open.iter().any(|f| f.dirty));
            Ok(())
        }

        /// Lets `by` pass, waking the sink at every deadline on the way as the driver does
        /// (unless `busy`: then the driver was busy and timed work waits for the next batch,
        /// whose writes find the aged files).
        fn pass(&mut self, by: Duration, busy: bool) -> Result<(), TestCaseError> {
            let until = self.now + by;
            if busy {
                self.now = until;
                return Ok(());
            }
            while let Some(d) = self.p.next_deadline().filter(|&d| d <= until) {
                if d > self.now {
                    // A nanosecond before its deadline nothing is due yet.
                    self.now = d - Duration::from_nanos(1);
                    self.on_timer_has_nothing_to_do()?;
                    self.now = d;
                }
                self.on_timer()?;
                prop_assert!(self.p.next_deadline().is_none_or(|n| n > self.now));
            }
            self.now = until;
            Ok(())
        }

        /// Closes everything in LRU order and checks what each path's files hold.
        fn finish(mut self) -> Result<(), TestCaseError> {
            while let Some((path, h)) = self.p.pop_lru() {
                prop_assert_eq!(&path, &self.open[0].path);
                self.close(&path, h)?;
            }
            prop_assert!(self.open.is_empty());
            prop_assert_eq!(self.p.next_deadline(), None);
            for (path, sent) in &self.sent {
                let mut files = self.rotated.remove(path).unwrap_or_default();
                files.extend(self.disk.remove(path));
                // No record lost, duplicated or reordered.
                let all: Vec<(u32, u64)> = files.iter().flatten().copied().collect();
                prop_assert_eq!(&all, sent);
                for f in &files {
                    let bytes: u64 = f.iter().map(|l| l.1).sum();
                    if self.rules.rotate_bytes > 0 {
                        // Over the limit only by a single record (empty records take no
                        // room, with an empty delimiter).
                        let sized = f.iter().filter(|l| l.1 > 0).count();
                        prop_assert!(bytes <= self.rules.rotate_bytes || sized == 1);
                    }
                    // Rotation never leaves an empty file behind.
                    prop_assert!(!f.is_empty());
                }
            }
            Ok(())
        }
    }

    fn any_rules() -> impl Strategy<Value = Rules> {
        (
            1usize..5,
            prop_oneof![Just(0u64), 1u64..200],
            proptest::option::of(1u64..60),
            prop_oneof![
                Just(Fsync::Never),
                Just(Fsync::Batch),
                (1u64..40).prop_map(|n| Fsync::Interval(ms(n)))
            ],
            prop_oneof![Just(0u64), 1_000u64..100_000],
            prop_oneof![Just(&b"\n"[..]), Just(&b""[..]), Just(&b"\r\n"[..])],
        )
            .prop_map(
                |(max_open_files, rotate_bytes, age, fsync, rate, delimiter)| Rules {
                    max_open_files,
                    rotate_bytes,
                    rotate_age: age.map(ms),
                    fsync,
                    rate_limit_bytes_per_sec: rate,
                    delimiter: delimiter.to_vec(),
                    delimiter_if_missing: false,
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn random_writes_to_random_paths_keep_every_rule(
            rules in any_rules(),
            ops in proptest::collection::vec(
                (
                    0u64..40,
                    proptest::bool::weighted(0.2),
                    0usize..7,
                    proptest::collection::vec(0usize..60, 0..12),
                ),
                1..80,
            ),
        ) {
            let mut sim = Sim::new(rules);
            for (gap_ms, busy, path, lens) in ops {
                sim.pass(ms(gap_ms), busy)?;
                if !lens.is_empty() {
                    sim.write(&PathBuf::from(format!("out/{path}.log")), &lens)?;
                }
            }
            sim.finish()?;
        }
    }
}
