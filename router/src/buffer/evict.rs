//! Which segments `when_full = "drop_oldest"` deletes (pure: no I/O, no clock).
//!
//! [`plan`] is given the log's segments oldest first (each with its bytes and its entries'
//! states), the reader's position and the room needed, and answers how many of the oldest
//! segments to delete, whole, and what that drops. An entry of a deleted segment is:
//!
//! - **dropped** (counted: records, bytes, ids, arrival times) when it was not handed to the
//!   sink yet (at or above the reader's position, still pending), or when it could not be read
//!   back (it would otherwise wait for the next start);
//! - **left with the sink** when it was handed out and not acknowledged yet: the sink has its
//!   records in memory and writes or dead-letters them as usual (so they are counted there,
//!   never twice); only their copy on disk goes. The log lists them until the sink acknowledges
//!   them ([`super::with_sink`]), so that those a crash takes from the sink's memory are counted
//!   as dropped at the next start;
//! - already done when it was acknowledged.
//!
//! Segments are deleted oldest first and never in part, so no partial entry is ever left, and
//! the reader moves on to the first pending entry of the oldest segment kept.

use super::segment::EntryLoc;

/// Where an entry is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryState {
    /// Appended or recovered, not acknowledged.
    Pending,
    /// Acknowledged.
    Acked,
    /// Could not be read back: not delivered in this run, and never passed by the ack point.
    Unreadable,
}

/// One entry of a segment, as the log keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// Where it is and what it holds.
    pub loc: EntryLoc,
    /// Its state.
    pub state: EntryState,
}

/// A segment as [`plan`] sees it.
#[derive(Debug, Clone, Copy)]
pub struct SegmentView<'a> {
    /// Its first entry id (its name).
    pub first_id: u64,
    /// Bytes it takes (what deleting it frees).
    pub bytes: u64,
    /// Its entries, ids increasing (acknowledged entries of an earlier run may be missing).
    pub entries: &'a [Slot],
}

/// What a set of dropped entries held.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Entries dropped.
    pub entries: u64,
    /// Records in them.
    pub records: u64,
    /// Bytes of those entries as stored (headers included).
    pub bytes: u64,
    /// The lowest and highest id dropped.
    pub ids: Option<(u64, u64)>,
    /// The earliest and latest arrival time (Unix nanoseconds) of the entries that recorded one.
    pub arrivals: Option<(u64, u64)>,
}

impl Tally {
    /// Counts one more dropped entry.
    pub fn add(&mut self, loc: &EntryLoc) {
        self.entries += 1;
        self.records += u64::from(loc.records);
        self.bytes += u64::from(loc.len);
        self.ids = Some(match self.ids {
            None => (loc.id, loc.id),
            Some((lo, hi)) => (lo.min(loc.id), hi.max(loc.id)),
        });
        if let Some(t) = loc.arrival {
            self.arrivals = Some(match self.arrivals {
                None => (t, t),
                Some((lo, hi)) => (lo.min(t), hi.max(t)),
            });
        }
    }

    /// Adds another tally (e.g. to log many drops as one).
    pub fn merge(&mut self, other: &Tally) {
        self.entries += other.entries;
        self.records += other.records;
        self.bytes += other.bytes;
        let span = |a: Option<(u64, u64)>, b: Option<(u64, u64)>| match (a, b) {
            (Some((a0, a1)), Some((b0, b1))) => Some((a0.min(b0), a1.max(b1))),
            (a, b) => a.or(b),
        };
        self.ids = span(self.ids, other.ids);
        self.arrivals = span(self.arrivals, other.arrivals);
    }

    /// True when nothing was dropped.
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }
}

/// What [`plan`] decided.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Plan {
    /// How many of the oldest segments to delete.
    pub segments: usize,
    /// Bytes that frees.
    pub freed: u64,
    /// The entries dropped.
    pub dropped: Tally,
    /// Entries of the deleted segments the sink has and has not acknowledged yet: not dropped.
    pub left_with_sink: u64,
}

/// Decides which of the oldest `segments` (oldest first) to delete to free at least `need`
/// bytes: the fewest oldest ones whose bytes reach `need` (all of them when even that is not
/// enough; none when `need` is 0). `read_cursor` is the reader's position: every pending
/// entry below it has been handed to the sink.
pub fn plan<'a>(
    segments: impl IntoIterator<Item = SegmentView<'a>>,
    read_cursor: u64,
    need: u64,
) -> Plan {
    let mut p = Plan::default();
    for seg in segments {
        if p.freed >= need {
            break;
        }
        p.segments += 1;
        p.freed += seg.bytes;
        for s in seg.entries {
            match fate(s, read_cursor) {
                Fate::Done => {}
                Fate::LeftWithSink => p.left_with_sink += 1,
                Fate::Dropped => p.dropped.add(&s.loc),
            }
        }
    }
    p
}

/// What becomes of an entry when its segment is deleted (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Not handed to the sink (or unreadable): dropped, counted now.
    Dropped,
    /// Handed to the sink, not acknowledged: the sink still writes or dead-letters it; the log
    /// lists it ([`super::with_sink`]) until the sink acknowledges it.
    LeftWithSink,
    /// Acknowledged already.
    Done,
}

/// The [`Fate`] of entry `s` of a deleted segment, with the reader at `read_cursor`.
pub fn fate(s: &Slot, read_cursor: u64) -> Fate {
    match s.state {
        EntryState::Acked => Fate::Done,
        EntryState::Pending if s.loc.id < read_cursor => Fate::LeftWithSink,
        EntryState::Pending | EntryState::Unreadable => Fate::Dropped,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn slot(id: u64, records: u32, arrival: u64, state: EntryState) -> Slot {
        Slot {
            loc: EntryLoc {
                id,
                offset: 0,
                len: 100,
                records,
                arrival: Some(arrival),
            },
            state,
        }
    }

    #[test]
    fn the_fewest_oldest_segments_that_free_the_room() {
        use EntryState::*;
        // Segment 0: entry 0 acknowledged, 1 with the sink, 2 and 3 not handed out.
        let a = [
            slot(0, 5, 10, Acked),
            slot(1, 5, 11, Pending),
            slot(2, 7, 12, Pending),
            slot(3, 1, 13, Unreadable),
        ];
        let b = [slot(4, 3, 9, Pending), slot(5, 2, 20, Pending)];
        let c = [slot(6, 4, 30, Pending)];
        let segs = [
            SegmentView {
                first_id: 0,
                bytes: 400,
                entries: &a,
            },
            SegmentView {
                first_id: 4,
                bytes: 200,
                entries: &b,
            },
            SegmentView {
                first_id: 6,
                bytes: 100,
                entries: &c,
            },
        ];
        assert_eq!(plan(segs, 2, 0), Plan::default());
        let p = plan(segs, 2, 1);
        assert_eq!((p.segments, p.freed, p.left_with_sink), (1, 400, 1));
        assert_eq!(
            p.dropped,
            Tally {
                entries: 2,
                records: 8,
                bytes: 200,
                ids: Some((2, 3)),
                arrivals: Some((12, 13)),
            }
        );
        let p = plan(segs, 2, 401);
        assert_eq!((p.segments, p.freed), (2, 600));
        assert_eq!(p.dropped.records, 13);
        assert_eq!(p.dropped.ids, Some((2, 5)));
        assert_eq!(
            p.dropped.arrivals,
            Some((9, 20)),
            "min and max, not first and last"
        );
        let p = plan(segs, 0, 10_000);
        assert_eq!((p.segments, p.freed, p.left_with_sink), (3, 700, 0));
        assert_eq!(p.dropped.records, 5 + 7 + 1 + 3 + 2 + 4);
        // The reader past everything: only unreadable entries are dropped.
        let p = plan(segs, 7, 10_000);
        assert_eq!((p.dropped.records, p.left_with_sink), (1, 5));
        let mut t = Tally::default();
        assert!(t.is_empty());
        t.merge(&plan(segs, 2, 1).dropped);
        t.merge(&Tally::default());
        t.merge(&plan(segs[2..].iter().copied(), 0, 1).dropped);
        assert_eq!((t.entries, t.records, t.bytes), (3, 12, 300));
        assert_eq!((t.ids, t.arrivals), (Some((2, 6)), Some((12, 30))));
    }

    fn state() -> impl Strategy<Value = EntryState> {
        prop_oneof![
            Just(EntryState::Pending),
            Just(EntryState::Acked),
            Just(EntryState::Unreadable)
        ]
    }

    proptest! {
        /// For any log, reader position and need: a prefix of the segments is deleted, the
        /// smallest that frees `need` (or all); each entry of it is dropped, left with the sink
        /// or already done, exactly one of these; the tally adds up.
        #[test]
        fn every_entry_of_a_deleted_segment_is_counted_once(
            shape in prop::collection::vec(
                (1u64..1000, prop::collection::vec((0u32..50, 0u64..1000, state()), 0..6)),
                0..8,
            ),
            cursor_frac in 0u64..=100,
            need in 0u64..6000,
        ) {
            let mut next = 0u64;
            let mut owned: Vec<(u64, u64, Vec<Slot>)> = Vec::new();
            for (bytes, entries) in &shape {
                let first = next;
                let slots: Vec<Slot> = entries
                    .iter()
                    .map(|&(records, arrival, st)| {
                        next += 1;
                        slot(next - 1, records, arrival, st)
                    })
                    .collect();
                next += 1; // ids may skip (acknowledged before a restart)
                owned.push((first, *bytes, slots));
            }
            let cursor = next * cursor_frac / 100;
            let views: Vec<SegmentView<'_>> = owned
                .iter()
                .map(|(first_id, bytes, entries)| SegmentView {
                    first_id: *first_id,
                    bytes: *bytes,
                    entries,
                })
                .collect();
            let p = plan(views.iter().copied(), cursor, need);
            let total: u64 = views.iter().map(|v| v.bytes).sum();
            let freed: u64 = views[..p.segments].iter().map(|v| v.bytes).sum();
            prop_assert_eq!(p.freed, freed);
            prop_assert!(p.freed >= need || p.segments == views.len());
            prop_assert!(p.freed <= total);
            if p.segments > 0 {
                let less: u64 = views[..p.segments - 1].iter().map(|v| v.bytes).sum();
                prop_assert!(less < need, "one segment fewer would have done");
            }
            let mut want = Tally::default();
            let mut with_sink = 0;
            let mut done = 0;
            for v in &views[..p.segments] {
                for s in v.entries {
                    let handed_out = s.loc.id < cursor;
                    match s.state {
                        EntryState::Acked => done += 1,
                        EntryState::Pending if handed_out => with_sink += 1,
                        _ => want.add(&s.loc),
                    }
                }
            }
            let all: u64 = views[..p.segments].iter().map(|v| v.entries.len() as u64).sum();
            prop_assert_eq!(p.dropped.entries + p.left_with_sink + done, all);
            prop_assert_eq!(p.dropped, want);
            prop_assert_eq!(p.left_with_sink, with_sink);
            prop_assert_eq!(p.dropped.bytes, p.dropped.entries * 100);
        }
    }
}
