//! Entries left with the sink (pure: no I/O, no clock): the bookkeeping that keeps the count of
//! `when_full = "drop_oldest"` exact across a crash.
//!
//! When [`super::DiskLog::drop_oldest`] deletes a segment, the entries of it the sink has taken
//! and not acknowledged yet are not dropped: the sink still writes or dead-letters them. But
//! their only copy is then in the sink's memory, so a crash (or a stop whose grace runs out)
//! before the sink is done with them would lose them uncounted. The log therefore lists them
//! ([`LeftWithSink`]: id, records, bytes, arrival time), persists the list in the file
//! [`super::log::LEFT_FILE`] before it deletes the segment, strikes an entry off when the sink
//! acknowledges it (persisted at the next sync, like the ack point), and at the next start
//! counts every entry still listed as dropped ([`settle`]), unless the entry was recovered from
//! a segment after all (the deletion did not happen before the crash).
//!
//! The list holds at most the entries handed to the sink and not acknowledged: the sink's queue
//! (one entry per batch, so at most `queue_records_max` entries) plus the entries it is writing
//! or sending. An entry listed takes [`ENTRY_BYTES`] bytes in the file.
//!
//! # The file
//!
//! ```text
//! magic "ERBW" | version 1 | 0 0 0 | count u32 | count * (id u64, records u32, bytes u32,
//! arrival u64 (u64::MAX: unknown)) | CRC-32 of everything before it
//! ```
//!
//! All integers little-endian; ids strictly increasing.

use std::collections::BTreeMap;

use super::evict::Tally;
use super::segment::EntryLoc;

const MAGIC: [u8; 4] = *b"ERBW";
const VERSION: [u8; 4] = [1, 0, 0, 0];
const HEAD_BYTES: usize = 12;
const CRC_BYTES: usize = 4;

/// Bytes one listed entry takes in the file.
pub const ENTRY_BYTES: usize = 24;

/// The most entries a list file may hold when read back (a larger count is damage): far more
/// than any sink's queue plus its requests in flight.
pub const MAX_ENTRIES: usize = 1 << 24;

/// The entries of deleted segments that the sink has and has not acknowledged yet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeftWithSink {
    entries: BTreeMap<u64, EntryLoc>,
}

impl LeftWithSink {
    /// Lists an entry (its offset is not kept).
    pub fn insert(&mut self, loc: EntryLoc) {
        self.entries.insert(loc.id, EntryLoc { offset: 0, ..loc });
    }

    /// Strikes entry `id` off (the sink is done with it); `false` when it was not listed.
    pub fn remove(&mut self, id: u64) -> bool {
        self.entries.remove(&id).is_some()
    }

    /// Whether entry `id` is listed.
    pub fn contains(&self, id: u64) -> bool {
        self.entries.contains_key(&id)
    }

    /// Entries listed.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is listed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The listed entries, ids increasing.
    pub fn iter(&self) -> impl Iterator<Item = &EntryLoc> {
        self.entries.values()
    }

    /// The file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEAD_BYTES + ENTRY_BYTES * self.len() + CRC_BYTES);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION);
        out.extend_from_slice(&(self.len() as u32).to_le_bytes());
        for e in self.entries.values() {
            out.extend_from_slice(&e.id.to_le_bytes());
            out.extend_from_slice(&e.records.to_le_bytes());
            out.extend_from_slice(&e.len.to_le_bytes());
            out.extend_from_slice(&e.arrival.unwrap_or(u64::MAX).to_le_bytes());
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Reads the file's bytes; `Err` says why they are not a valid list.
    pub fn decode(bytes: &[u8]) -> Result<LeftWithSink, String> {
        let invalid = |why: &str| {
            Err(format!(
                "not a valid list of entries left with the sink: {why}"
            ))
        };
        if bytes.len() < HEAD_BYTES + CRC_BYTES {
            return invalid("too short");
        }
        let (body, crc) = bytes.split_at(bytes.len() - CRC_BYTES);
        if crc != crc32fast::hash(body).to_le_bytes() {
            return invalid("checksum mismatch");
        }
        if body[0..4] != MAGIC || body[4..8] != VERSION {
            return invalid("unknown magic or version");
        }
        let count = u32_at(body, 8) as usize;
        if count > MAX_ENTRIES || body.len() != HEAD_BYTES + count * ENTRY_BYTES {
            return invalid("length does not match the count");
        }
        let mut list = LeftWithSink::default();
        let mut last = None;
        for e in body[HEAD_BYTES..].chunks_exact(ENTRY_BYTES) {
            let id = u64_at(e, 0);
            if last.is_some_and(|l| l >= id) {
                return invalid("ids not increasing");
            }
            last = Some(id);
            let arrival = u64_at(e, 16);
            list.insert(EntryLoc {
                id,
                offset: 0,
                records: u32_at(e, 8),
                len: u32_at(e, 12),
                arrival: (arrival != u64::MAX).then_some(arrival),
            });
        }
        Ok(list)
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut v = [0u8; 4];
    v.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(v)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(v)
}

/// At a start: of the entries an earlier run listed, those not `recovered` (found again in a
/// segment, to be delivered from there) were lost with the sink's memory; they are counted as
/// dropped. Returns them, ids increasing.
pub fn settle(listed: &LeftWithSink, recovered: impl Fn(u64) -> bool) -> Vec<EntryLoc> {
    listed
        .iter()
        .filter(|e| !recovered(e.id))
        .copied()
        .collect()
}

/// What a set of entries held, as a [`Tally`].
pub fn tally<'a>(entries: impl IntoIterator<Item = &'a EntryLoc>) -> Tally {
    let mut t = Tally::default();
    for e in entries {
        t.add(e);
    }
    t
}

/// Ids as ranges (`3-5, 9, 12-40`), at most `max_ranges` of them (then `, ...`), for a log line.
pub fn id_ranges(ids: impl IntoIterator<Item = u64>, max_ranges: usize) -> String {
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    for id in ids {
        match ranges.last_mut() {
            Some((_, hi)) if hi.checked_add(1) == Some(id) => *hi = id,
            _ => ranges.push((id, id)),
        }
    }
    let mut out = ranges
        .iter()
        .take(max_ranges)
        .map(|&(lo, hi)| {
            if lo == hi {
                lo.to_string()
            } else {
                format!("{lo}-{hi}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    if ranges.len() > max_ranges {
        out.push_str(", ...");
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn loc(id: u64, records: u32, len: u32, arrival: Option<u64>) -> EntryLoc {
        EntryLoc {
            id,
            offset: 0,
            len,
            records,
            arrival,
        }
    }

    #[test]
    fn a_list_round_trips_and_damage_is_found() {
        let mut l = LeftWithSink::default();
        assert_eq!(LeftWithSink::decode(&l.encode()), Ok(l.clone()));
        l.insert(loc(9, 3, 100, Some(7)));
        l.insert(EntryLoc {
            offset: 4096,
            ..loc(4, 1, 60, None)
        });
        l.insert(loc(u64::MAX - 1, u32::MAX, u32::MAX, Some(u64::MAX - 1)));
        let bytes = l.encode();
        assert_eq!(bytes.len(), HEAD_BYTES + 3 * ENTRY_BYTES + CRC_BYTES);
        let back = LeftWithSink::decode(&bytes).unwrap();
        assert_eq!(back, l);
        assert_eq!(
            back.iter()
                .map(|e| (e.id, e.offset, e.arrival))
                .collect::<Vec<_>>(),
            [
                (4, 0, None),
                (9, 0, Some(7)),
                (u64::MAX - 1, 0, Some(u64::MAX - 1))
            ]
        );
        for cut in 0..bytes.len() {
            assert!(LeftWithSink::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x10;
            assert!(LeftWithSink::decode(&b).is_err(), "flipped byte {i}");
        }
        assert!(l.remove(9));
        assert!(!l.remove(9));
        assert!(!l.contains(9) && l.contains(4));
        assert_eq!(l.len(), 2);
    }

    #[test]
    fn ids_out_of_order_are_damage_even_with_a_good_checksum() {
        let mut body = Vec::new();
        body.extend_from_slice(&MAGIC);
        body.extend_from_slice(&VERSION);
        body.extend_from_slice(&2u32.to_le_bytes());
        for id in [5u64, 5] {
            body.extend_from_slice(&id.to_le_bytes());
            body.extend_from_slice(&[0; 16]);
        }
        let crc = crc32fast::hash(&body);
        body.extend_from_slice(&crc.to_le_bytes());
        let err = LeftWithSink::decode(&body).unwrap_err();
        assert!(err.contains("ids not increasing"), "{err}");
    }

    #[test]
    fn settle_counts_what_no_segment_brought_back() {
        let mut l = LeftWithSink::default();
        for id in [2, 3, 4, 8] {
            l.insert(loc(id, 10, 200, Some(id * 100)));
        }
        let lost = settle(&l, |id| id == 3 || id == 99);
        assert_eq!(lost.iter().map(|e| e.id).collect::<Vec<_>>(), [2, 4, 8]);
        let t = tally(&lost);
        assert_eq!((t.entries, t.records, t.bytes), (3, 30, 600));
        assert_eq!((t.ids, t.arrivals), (Some((2, 8)), Some((200, 800))));
        assert!(settle(&LeftWithSink::default(), |_| false).is_empty());
    }

    #[test]
    fn ids_are_written_as_ranges() {
        assert_eq!(id_ranges([0u64; 0], 3), "");
        assert_eq!(id_ranges([7], 3), "7");
        assert_eq!(id_ranges([1, 2, 3, 5, 8, 9], 3), "1-3, 5, 8-9");
        assert_eq!(id_ranges([1, 3, 5, 7], 2), "1, 3, ...");
        assert_eq!(
            id_ranges([u64::MAX - 1, u64::MAX], 2),
            format!("{}-{}", u64::MAX - 1, u64::MAX)
        );
    }

    proptest! {
        /// Any list survives the file; any list of ids increasing is written as ranges that
        /// cover exactly those ids.
        #[test]
        fn any_list_round_trips(
            entries in prop::collection::btree_map(
                any::<u64>(), (any::<u32>(), any::<u32>(), prop::option::of(0u64..u64::MAX)), 0..50),
        ) {
            let mut l = LeftWithSink::default();
            for (&id, &(records, len, arrival)) in &entries {
                l.insert(loc(id, records, len, arrival));
            }
            prop_assert_eq!(LeftWithSink::decode(&l.encode()), Ok(l.clone()));
            let text = id_ranges(entries.keys().copied(), usize::MAX);
            let mut back = Vec::new();
            for part in text.split(", ").filter(|p| !p.is_empty()) {
                match part.split_once('-') {
                    Some((lo, hi)) => {
                        let (lo, hi): (u64, u64) = (lo.parse().unwrap(), hi.parse().unwrap());
                        prop_assert!(lo < hi);
                        back.extend(lo..=hi);
                    }
                    None => back.push(part.parse().unwrap()),
                }
            }
            prop_assert_eq!(back, entries.keys().copied().collect::<Vec<_>>());
        }
    }
}
