//! `Reorder`: hands out sequence numbers to parallel workers and releases their results strictly
//! in sequence order, with a bounded number of items in flight.
//!
//! The stage workers (see `stages::pool`) take batches from one queue in turn, each numbered with
//! [`Reorder::issue`]; they finish in any order and hand their results back with
//! [`Reorder::complete`]; [`Reorder::pop`] gives the results back in the order the batches were
//! taken, and [`Reorder::settle`] says a popped result has been passed on. At most `window`
//! items are issued and not yet settled ([`Reorder::can_issue`] says whether one more may be
//! taken), so the buffer of finished items waiting for a slower one never grows past the window.
//!
//! A failure ([`Reorder::cut`]) stops the stream at one sequence number: items before it are
//! still released in order; it, and everything after it, never are (finished ones are handed back
//! to the caller to dispose of).
//!
//! Pure state: no threads, locks or clocks; the caller brings those.

use std::collections::VecDeque;

/// Sequence numbering and reordering for a pool of workers.
#[derive(Debug)]
pub struct Reorder<T> {
    window: u64,
    /// The next sequence number to issue.
    issued: u64,
    /// The next sequence number to release (everything below it has been popped).
    released: u64,
    /// How many popped items have been settled.
    settled: u64,
    /// Finished items from `released` on, indexed by `seq - released`.
    done: VecDeque<Option<T>>,
    /// Nothing at or after this sequence number is released.
    cut: Option<u64>,
}

impl<T> Reorder<T> {
    /// At most `window` items (at least 1) in flight between [`Reorder::issue`] and
    /// [`Reorder::settle`].
    pub fn new(window: usize) -> Reorder<T> {
        Reorder {
            window: window.max(1) as u64,
            issued: 0,
            released: 0,
            settled: 0,
            done: VecDeque::new(),
            cut: None,
        }
    }

    /// The window.
    pub fn window(&self) -> usize {
        self.window as usize
    }

    /// Whether one more item may be taken: fewer than `window` in flight and no cut.
    pub fn can_issue(&self) -> bool {
        self.cut.is_none() && self.in_flight() < self.window
    }

    /// Numbers the next item. Call only when [`Reorder::can_issue`] said yes (the caller may
    /// take the item in between, as long as nobody else issues meanwhile).
    pub fn issue(&mut self) -> u64 {
        let seq = self.issued;
        self.issued += 1;
        seq
    }

    /// Items issued and not yet settled.
    pub fn in_flight(&self) -> u64 {
        self.issued - self.settled
    }

    /// Items finished and waiting for an earlier one.
    pub fn buffered(&self) -> usize {
        self.done.iter().filter(|d| d.is_some()).count()
    }

    /// Where the stream was cut, if it was.
    pub fn cut_at(&self) -> Option<u64> {
        self.cut
    }

    /// Item `seq` is finished. Hands it back (`Err`) if it will never be released: it is at or
    /// after the cut, or was not issued, or was already completed.
    pub fn complete(&mut self, seq: u64, item: T) -> Result<(), T> {
        if seq >= self.issued || seq < self.released || self.cut.is_some_and(|c| seq >= c) {
            return Err(item);
        }
        let i = (seq - self.released) as usize;
        if self.done.len() <= i {
            self.done.resize_with(i + 1, || None);
        }
        match &mut self.done[i] {
            Some(_) => Err(item),
            slot => {
                *slot = Some(item);
                Ok(())
            }
        }
    }

    /// The next item in sequence order, if it is finished.
    pub fn pop(&mut self) -> Option<(u64, T)> {
        if self.cut.is_some_and(|c| self.released >= c) {
            return None;
        }
        match self.done.front_mut() {
            Some(slot @ Some(_)) => {
                let item = slot.take()?;
                self.done.pop_front();
                let seq = self.released;
                self.released += 1;
                Some((seq, item))
            }
            _ => None,
        }
    }

    /// A popped item has been passed on: its place in the window is free.
    pub fn settle(&mut self) {
        if self.settled < self.released {
            self.settled += 1;
        }
    }

    /// Item `seq` failed: it and everything after it are never released, and nothing more is
    /// issued. Returns the finished items this takes back, in sequence order. A second cut
    /// keeps the earlier of the two. Items already released stay released (a cut before
    /// `released` is taken as a cut at `released`).
    pub fn cut(&mut self, seq: u64) -> Vec<(u64, T)> {
        let seq = seq.max(self.released);
        let at = self.cut.map_or(seq, |c| c.min(seq));
        self.cut = Some(at);
        let keep = (at - self.released) as usize;
        if self.done.len() <= keep {
            return Vec::new();
        }
        let base = self.released + keep as u64;
        self.done
            .drain(keep..)
            .enumerate()
            .filter_map(|(k, d)| d.map(|item| (base + k as u64, item)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};

    #[test]
    fn releases_in_sequence_order_within_the_window() {
        let mut r = Reorder::new(3);
        assert!(r.can_issue());
        let (a, b, c) = (r.issue(), r.issue(), r.issue());
        assert_eq!((a, b, c), (0, 1, 2));
        assert!(!r.can_issue(), "three in flight fill a window of three");
        r.complete(c, "c").unwrap();
        r.complete(b, "b").unwrap();
        assert_eq!(r.pop(), None, "0 is not finished");
        assert_eq!(r.buffered(), 2);
        r.complete(a, "a").unwrap();
        assert_eq!(r.pop(), Some((0, "a")));
        assert!(!r.can_issue(), "popped but not settled still counts");
        r.settle();
        assert!(r.can_issue());
        assert_eq!(r.pop(), Some((1, "b")));
        assert_eq!(r.pop(), Some((2, "c")));
        assert_eq!(r.pop(), None);
        r.settle();
        r.settle();
        r.settle();
        assert_eq!(r.in_flight(), 0);
        assert_eq!(r.complete(1, "again"), Err("again"));
        assert_eq!(r.complete(7, "never issued"), Err("never issued"));
    }

    #[test]
    fn a_cut_releases_what_came_before_and_hands_back_what_came_after() {
        let mut r = Reorder::new(5);
        for _ in 0..5 {
            r.issue();
        }
        r.complete(4, 4).unwrap();
        r.complete(1, 1).unwrap();
        r.complete(3, 3).unwrap();
        // 2 fails: 3 and 4 come back, 0 and 1 are still released once 0 is done.
        assert_eq!(r.cut(2), vec![(3, 3), (4, 4)]);
        assert!(!r.can_issue());
        assert_eq!(r.pop(), None);
        r.complete(0, 0).unwrap();
        assert_eq!(r.pop(), Some((0, 0)));
        assert_eq!(r.pop(), Some((1, 1)));
        assert_eq!(r.pop(), None);
        assert_eq!(r.complete(2, 2), Err(2));
        // A later failure behind the cut changes nothing; an earlier one moves it.
        assert_eq!(r.cut(4), vec![]);
        assert_eq!(r.cut_at(), Some(2));
        // Below what was released: taken as a cut at the release point.
        assert_eq!(r.cut(0), vec![]);
        assert_eq!(r.cut_at(), Some(2));
    }

    /// What a simulated run saw.
    struct Run {
        released: Vec<u64>,
        handed_back: Vec<u64>,
        failed: Option<u64>,
        issued: u64,
        max_in_flight: u64,
        max_buffered: usize,
    }

    /// `workers` simulated workers take `items` in turn and finish them in an order `seed`
    /// chooses; the worker holding `fail_at` (if any) fails instead of finishing. A release
    /// is settled at a random later step.
    fn simulate(seed: u64, window: usize, workers: usize, items: u64, fail_at: Option<u64>) -> Run {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut r = Reorder::new(window);
        let mut busy: Vec<u64> = Vec::new();
        let mut unsettled = 0u32;
        let mut run = Run {
            released: Vec::new(),
            handed_back: Vec::new(),
            failed: None,
            issued: 0,
            max_in_flight: 0,
            max_buffered: 0,
        };
        let mut taken = 0u64;
        let mut steps = 0;
        while (taken < items && r.cut_at().is_none()) || !busy.is_empty() || unsettled > 0 {
            steps += 1;
            assert!(steps < 1_000_000, "no progress");
            match rng.random_range(0..3u32) {
                0 if busy.len() < workers && taken < items && r.can_issue() => {
                    let seq = r.issue();
                    assert_eq!(seq, taken, "issued in taking order");
                    taken += 1;
                    busy.push(seq);
                }
                1 if !busy.is_empty() => {
                    let seq = busy.swap_remove(rng.random_range(0..busy.len()));
                    if Some(seq) == fail_at {
                        run.failed = Some(seq);
                        run.handed_back.extend(r.cut(seq).into_iter().map(|(s, v)| {
                            assert_eq!(s, v);
                            s
                        }));
                    } else if let Err(v) = r.complete(seq, seq) {
                        run.handed_back.push(v);
                    }
                    while let Some((s, v)) = r.pop() {
                        assert_eq!(s, v);
                        run.released.push(v);
                        unsettled += 1;
                    }
                }
                2 if unsettled > 0 => {
                    r.settle();
                    unsettled -= 1;
                }
                _ => {}
            }
            run.max_in_flight = run.max_in_flight.max(r.in_flight());
            run.max_buffered = run.max_buffered.max(r.buffered());
        }
        run.issued = taken;
        run
    }

    proptest! {
        /// Whatever order the workers finish in, the output order is the input order, every
        /// item comes out exactly once, and in flight never exceeds the window.
        #[test]
        fn output_order_is_input_order_for_any_completion_order(
            seed: u64,
            window in 1usize..9,
            workers in 1usize..9,
            items in 0u64..400,
        ) {
            let run = simulate(seed, window, workers, items, None);
            prop_assert_eq!(run.issued, items);
            prop_assert_eq!(run.released, (0..items).collect::<Vec<_>>());
            prop_assert!(run.handed_back.is_empty());
            prop_assert!(run.max_in_flight <= window as u64);
            prop_assert!(run.max_buffered < window.max(1));
        }

        /// With a failure: exactly the items before it are released, in order; every item
        /// taken after it is handed back; none is both or neither.
        #[test]
        fn a_failure_releases_exactly_what_came_before_it(
            seed: u64,
            window in 1usize..9,
            workers in 1usize..9,
            items in 1u64..300,
            fail in 0u64..300,
        ) {
            let fail_at = fail % items;
            let run = simulate(seed, window, workers, items, Some(fail_at));
            prop_assert_eq!(run.failed, Some(fail_at));
            prop_assert_eq!(run.released, (0..fail_at).collect::<Vec<_>>());
            let mut back = run.handed_back.clone();
            back.sort_unstable();
            prop_assert_eq!(back, (fail_at + 1..run.issued).collect::<Vec<_>>());
            prop_assert!(run.max_in_flight <= window as u64);
        }
    }
}
