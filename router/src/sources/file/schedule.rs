//! Fair reading across files under `max_open_files`, without I/O.
//!
//! Owns which files are open and whose turn it is to read. Files with unread bytes (*ready*)
//! wait in one round-robin queue; a turn reads at most one quantum of a file (the reader's
//! chunk), and a file with more to read goes to the back of the queue. So a file written
//! faster than it can be read gets one quantum per round like every other ready file: with `n`
//! files ready, a file that becomes ready is read within `n` turns, whatever the others do.
//!
//! At most `max_open_files` files are open. To open one at the cap, the scheduler closes the
//! least recently used open file that has nothing to read (it is reopened once it has); only if
//! every open file is ready does it close the least recently used of those (reopened at its
//! next turn: with more ready files than descriptors, fairness costs an `open` per turn).
//! *Pinned* files (rotated or deleted files being drained within `rotate_wait`, which could not
//! be opened again) count towards the cap but are never closed by the scheduler; when every
//! descriptor is held by a pinned file, the next turn is [`Turn::Wait`] until one is closed.
//! Finding a file to close is O(1) (two `lru` lists: open files with and without bytes to read).

use std::collections::hash_map::RandomState;
use std::collections::{HashSet, VecDeque};
use std::hash::Hash;

use lru::LruCache;

/// What to do next (see [`Schedule::turn`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Turn<K> {
    /// Read up to one quantum of this open file, then call [`Schedule::done`].
    Read {
        /// The file.
        file: K,
    },
    /// Close `close` first (when given), open `file`, read up to one quantum of it, then call
    /// [`Schedule::done`] (or [`Schedule::forget`] if opening failed).
    Open {
        /// The file to open.
        file: K,
        /// A file to close first, to stay within `max_open_files`.
        close: Option<K>,
    },
    /// Files are ready but every descriptor is held by a pinned file: wait for one to close.
    Wait,
}

/// The round-robin schedule of one source's files `K` (module docs).
pub struct Schedule<K: Hash + Eq + Clone> {
    max_open: usize,
    /// Ready files in turn order.
    queue: VecDeque<K>,
    queued: HashSet<K>,
    /// Open files not in the queue, least recently used first out.
    idle: LruCache<K, (), RandomState>,
    /// Open files in the queue.
    busy: LruCache<K, (), RandomState>,
    /// Open files never closed by the schedule.
    pinned: HashSet<K>,
}

impl<K: Hash + Eq + Clone> Schedule<K> {
    /// No file known; at most `max_open_files` (at least 1) open at once.
    pub fn new(max_open_files: usize) -> Schedule<K> {
        Schedule {
            max_open: max_open_files.max(1),
            queue: VecDeque::new(),
            queued: HashSet::new(),
            idle: LruCache::unbounded_with_hasher(RandomState::new()),
            busy: LruCache::unbounded_with_hasher(RandomState::new()),
            pinned: HashSet::new(),
        }
    }

    /// How many files are open.
    pub fn open_files(&self) -> usize {
        self.idle.len() + self.busy.len() + self.pinned.len()
    }

    /// Whether `file` is open.
    pub fn is_open(&self, file: &K) -> bool {
        self.idle.contains(file) || self.busy.contains(file) || self.pinned.contains(file)
    }

    /// How many files wait for a turn.
    pub fn ready_files(&self) -> usize {
        self.queue.len()
    }

    /// `file` has bytes to read (it grew, appeared, or was truncated): it gets a turn.
    pub fn ready(&mut self, file: K) {
        if !self.queued.insert(file.clone()) {
            return;
        }
        if self.idle.pop(&file).is_some() {
            self.busy.put(file.clone(), ());
        }
        self.queue.push_back(file);
    }

    /// Whose turn it is (`None`: no file is ready). The file leaves the queue; it comes back
    /// with [`Schedule::done`] if it has more to read.
    pub fn turn(&mut self) -> Option<Turn<K>> {
        let file = self.queue.pop_front()?;
        if self.busy.pop(&file).is_some() || self.idle.contains(&file) {
            self.queued.remove(&file);
            self.idle.put(file.clone(), ());
            return Some(Turn::Read { file });
        }
        if self.pinned.contains(&file) {
            self.queued.remove(&file);
            return Some(Turn::Read { file });
        }
        let close = if self.open_files() < self.max_open {
            None
        } else {
            match self.idle.pop_lru().or_else(|| self.busy.pop_lru()) {
                Some((victim, ())) => Some(victim),
                None => {
                    // Every descriptor is pinned: keep the turn.
                    self.queue.push_front(file);
                    return Some(Turn::Wait);
                }
            }
        };
        self.queued.remove(&file);
        self.idle.put(file.clone(), ());
        Some(Turn::Open { file, close })
    }

    /// `file`'s turn is over; `more`: it has bytes left to read (it goes to the back of the
    /// queue).
    pub fn done(&mut self, file: K, more: bool) {
        if more {
            self.ready(file);
        }
    }

    /// `file` is never closed by the schedule (it must be open); [`Schedule::forget`] ends that.
    pub fn pin(&mut self, file: K) {
        if self.idle.pop(&file).is_some() || self.busy.pop(&file).is_some() {
            self.pinned.insert(file);
        }
    }

    /// `file` was closed by the source, or is gone: forgotten.
    pub fn forget(&mut self, file: &K) {
        self.idle.pop(file);
        self.busy.pop(file);
        self.pinned.remove(file);
        if self.queued.remove(file) {
            self.queue.retain(|f| f != file);
        }
    }
}

impl<K: Hash + Eq + Clone> std::fmt::Debug for Schedule<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schedule")
            .field("open_files", &self.open_files())
            .field("ready_files", &self.queue.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    /// The source's side: which files it holds open, checked against every answer.
    struct Model {
        max_open: usize,
        open: HashSet<u32>,
    }

    impl Model {
        /// Carries out `turn`; the file read, if any.
        fn apply(&mut self, turn: Turn<u32>) -> Result<Option<u32>, TestCaseError> {
            match turn {
                Turn::Read { file } => {
                    prop_assert!(self.open.contains(&file), "read of closed {file}");
                    Ok(Some(file))
                }
                Turn::Open { file, close } => {
                    if let Some(c) = close {
                        prop_assert!(self.open.remove(&c), "close of closed {c}");
                    }
                    prop_assert!(self.open.insert(file), "open of open {file}");
                    prop_assert!(self.open.len() <= self.max_open);
                    Ok(Some(file))
                }
                Turn::Wait => Ok(None),
            }
        }
    }

    #[test]
    fn one_busy_file_does_not_starve_the_others() {
        let mut s = Schedule::new(4);
        let mut m = Model {
            max_open: 4,
            open: HashSet::new(),
        };
        // File 0 always has more; files 1..=9 each have 2 quanta, ready from the start.
        let mut left: HashMap<u32, u32> = (1..10).map(|f| (f, 2)).collect();
        s.ready(0);
        for f in 1..10 {
            s.ready(f);
        }
        let mut turns_of_0 = 0;
        for turn in 0..40 {
            let file = m.apply(s.turn().unwrap()).unwrap().unwrap();
            if file == 0 {
                turns_of_0 += 1;
                s.done(0, true);
                continue;
            }
            let n = left.get_mut(&file).unwrap();
            *n -= 1;
            s.done(file, *n > 0);
            if left.values().all(|n| *n == 0) {
                // 18 quanta of the others took 18 + (rounds) turns: file 0 had one per round.
                assert_eq!(turn + 1, 18 + turns_of_0);
                assert_eq!(turns_of_0, 2);
                return;
            }
        }
        panic!("the others were starved: {left:?}");
    }

    #[test]
    fn an_idle_file_is_closed_before_a_busy_one() {
        let mut s = Schedule::new(2);
        s.ready(1);
        s.ready(2);
        assert_eq!(
            s.turn(),
            Some(Turn::Open {
                file: 1,
                close: None
            })
        );
        s.done(1, false);
        assert_eq!(
            s.turn(),
            Some(Turn::Open {
                file: 2,
                close: None
            })
        );
        s.done(2, true);
        s.ready(3);
        // 1 has nothing to read: it is closed, not 2 (which has).
        assert_eq!(s.turn(), Some(Turn::Read { file: 2 }));
        s.done(2, true);
        assert_eq!(
            s.turn(),
            Some(Turn::Open {
                file: 3,
                close: Some(1)
            })
        );
        assert_eq!(s.open_files(), 2);
    }

    #[test]
    fn pinned_files_are_never_closed_and_full_pins_wait() {
        let mut s = Schedule::new(1);
        s.ready(1);
        assert_eq!(
            s.turn(),
            Some(Turn::Open {
                file: 1,
                close: None
            })
        );
        s.done(1, false);
        s.pin(1);
        s.ready(2);
        assert_eq!(s.turn(), Some(Turn::Wait));
        assert_eq!(s.ready_files(), 1);
        // The rotated file is drained and closed: 2 gets its descriptor.
        s.forget(&1);
        assert_eq!(
            s.turn(),
            Some(Turn::Open {
                file: 2,
                close: None
            })
        );
        assert!(!s.is_open(&1));
    }

    proptest! {
        /// Whatever becomes ready and whatever each turn leaves: never more than
        /// `max_open_files` open, never a read of a closed file, and a ready file is read
        /// within as many turns as there were files ready before it.
        #[test]
        fn open_files_stay_capped_and_every_ready_file_gets_its_turn(
            max_open in 1usize..6,
            events in proptest::collection::vec(
                (0u32..12, any::<bool>(), proptest::bool::weighted(0.05)),
                1..300,
            ),
        ) {
            let mut s = Schedule::new(max_open);
            let mut m = Model { max_open, open: HashSet::new() };
            // For each queued file: how many turns may pass before it is read.
            let mut waiting: HashMap<u32, usize> = HashMap::new();
            for (file, more, forget) in events {
                if forget {
                    s.forget(&file);
                    m.open.remove(&file);
                    waiting.remove(&file);
                    continue;
                }
                let ahead = s.ready_files();
                waiting.entry(file).or_insert(ahead);
                s.ready(file);
                // One turn per event.
                let Some(turn) = s.turn() else { continue };
                let Some(read) = m.apply(turn)? else { continue };
                prop_assert!(waiting.remove(&read).is_some(), "{read} was not ready");
                for (f, budget) in waiting.iter_mut() {
                    prop_assert!(*budget > 0, "{f} waited past its turn");
                    *budget -= 1;
                }
                prop_assert_eq!(s.open_files(), m.open.len());
                if more {
                    waiting.insert(read, s.ready_files());
                }
                s.done(read, more);
            }
        }
    }
}
