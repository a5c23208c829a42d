//! Packing: many small user records into one Firehose record.
//!
//! Firehose bills every record rounded up to 5 KB and limits records per second per delivery
//! stream, while the destination (S3, ...) only sees the bytes. So by default the sink appends the
//! delimiter (a newline) to each user record and concatenates them into Firehose records of up to
//! `pack_bytes_max` bytes: the destination sees the same delimited lines. A user record is never
//! split: one that does not fit into the open pack closes it and starts the next, and one larger
//! than Firehose's record limit (1000 KiB, delimiter included) is refused
//! ([`OversizedRecord`], for the dead-letter sink). With packing off each user record (plus its
//! delimiter) is a Firehose record of its own.
//!
//! Pure: no I/O and no clock reads; time comes in as arguments.

use std::time::Instant;

/// Firehose's limit on one record (before base64): 1000 KiB.
pub const RECORD_BYTES_MAX: usize = 1000 * 1024;

/// Most records in one PutRecordBatch request.
pub const REQUEST_ENTRIES_MAX: usize = 500;

/// Most bytes in one PutRecordBatch request: 4 MiB.
pub const REQUEST_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Default size of a packed record: 900 KiB, leaving room under the limit.
pub const PACK_BYTES_MAX_DEFAULT: usize = 900 * 1024;

/// Firehose bills each record rounded up to a multiple of 5 KB (5,120 bytes).
pub const BILLING_UNIT_BYTES: u64 = 5 * 1024;

/// The bytes Firehose bills for one record of `len` bytes: rounded up to 5 KB, at least 5 KB.
pub fn billed_bytes(len: usize) -> u64 {
    let len = len as u64;
    len.div_ceil(BILLING_UNIT_BYTES).max(1) * BILLING_UNIT_BYTES
}

/// A Firehose record compressed as one gzip member (level 0..=9). Members concatenated (as
/// Firehose concatenates records into an S3 object) are a valid gzip file whose content is the
/// records' lines.
pub fn gzip(data: &[u8], level: u32) -> Vec<u8> {
    use std::io::Write as _;
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 4 + 64),
        flate2::Compression::new(level.min(9)),
    );
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(data);
    enc.finish().unwrap_or_default()
}

/// How user records become Firehose records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackPolicy {
    /// Whether to pack many user records into one Firehose record.
    pub pack: bool,
    /// Most bytes of one packed record (1..=[`RECORD_BYTES_MAX`]); a single user record larger
    /// than this (but within the record limit) travels alone.
    pub pack_bytes_max: usize,
    /// Appended to every user record (`\n` by default; may be empty when packing is off).
    pub delimiter: Vec<u8>,
}

impl Default for PackPolicy {
    /// Packing on, 900 KiB, newline.
    fn default() -> Self {
        PackPolicy {
            pack: true,
            pack_bytes_max: PACK_BYTES_MAX_DEFAULT,
            delimiter: b"\n".to_vec(),
        }
    }
}

/// One Firehose record: the user records (with delimiters) it holds, in arrival order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packed<T> {
    /// The record's bytes: each user record followed by the delimiter.
    pub data: Vec<u8>,
    /// The user records' tickets, in order.
    pub records: Vec<T>,
    /// When the oldest user record in it arrived (the retry TTL counts from here).
    pub arrived: Instant,
    /// When the first user record went in (the linger counts from here).
    pub opened: Instant,
    /// What Firehose would bill for these user records sent one per Firehose record.
    pub billed_unpacked: u64,
}

/// A user record over the record limit, handed back for the dead-letter sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OversizedRecord<T> {
    /// The record's ticket.
    pub ticket: T,
    /// Its size with the delimiter.
    pub size: usize,
}

impl<T> OversizedRecord<T> {
    /// The dead-letter reason.
    pub fn reason(&self) -> String {
        format!(
            "record of {} bytes (with its delimiter) is over Firehose's record limit of {} bytes",
            self.size, RECORD_BYTES_MAX
        )
    }
}

/// Packs user records into Firehose records.
#[derive(Debug)]
pub struct Packer<T> {
    policy: PackPolicy,
    open: Option<Packed<T>>,
}

impl<T> Packer<T> {
    /// A packer with nothing open. `pack_bytes_max` is clamped to 1..=[`RECORD_BYTES_MAX`].
    pub fn new(mut policy: PackPolicy) -> Self {
        policy.pack_bytes_max = policy.pack_bytes_max.clamp(1, RECORD_BYTES_MAX);
        Packer { policy, open: None }
    }

    /// The policy.
    pub fn policy(&self) -> &PackPolicy {
        &self.policy
    }

    /// Adds a user record that arrived at `arrived`, at `now`. Firehose records that are complete
    /// are appended to `sealed`, in order: the open pack when this record does not fit into it,
    /// and this record itself when packing is off or it fills a pack on its own.
    ///
    /// # Errors
    ///
    /// [`OversizedRecord`] when the record with its delimiter is over [`RECORD_BYTES_MAX`]; nothing
    /// changes.
    pub fn push(
        &mut self,
        payload: &[u8],
        ticket: T,
        arrived: Instant,
        now: Instant,
        sealed: &mut Vec<Packed<T>>,
    ) -> Result<(), OversizedRecord<T>> {
        let delim = self.policy.delimiter.len();
        let size = payload.len() + delim;
        if size > RECORD_BYTES_MAX {
            return Err(OversizedRecord { ticket, size });
        }
        let fits = |p: &Packed<T>| p.data.len() + size <= self.policy.pack_bytes_max;
        if let Some(open) = self.open.take_if(|p| !fits(p)) {
            sealed.push(open);
        }
        let pack = self.open.get_or_insert_with(|| Packed {
            data: Vec::with_capacity(if self.policy.pack {
                self.policy.pack_bytes_max.min(64 * 1024).max(size)
            } else {
                size
            }),
            records: Vec::new(),
            arrived,
            opened: now,
            billed_unpacked: 0,
        });
        pack.data.extend_from_slice(payload);
        pack.data.extend_from_slice(&self.policy.delimiter);
        pack.records.push(ticket);
        pack.arrived = pack.arrived.min(arrived);
        pack.billed_unpacked += billed_bytes(size);
        if !self.policy.pack || pack.data.len() >= self.policy.pack_bytes_max {
            sealed.extend(self.open.take());
        }
        Ok(())
    }

    /// When the open pack was started (`None` when nothing is open).
    pub fn opened(&self) -> Option<Instant> {
        self.open.as_ref().map(|p| p.opened)
    }

    /// User records in the open pack.
    pub fn open_records(&self) -> usize {
        self.open.as_ref().map_or(0, |p| p.records.len())
    }

    /// Closes the open pack and returns it.
    pub fn seal(&mut self) -> Option<Packed<T>> {
        self.open.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn packer(pack: bool, max: usize, delim: &[u8]) -> Packer<usize> {
        Packer::new(PackPolicy {
            pack,
            pack_bytes_max: max,
            delimiter: delim.to_vec(),
        })
    }

    #[test]
    fn gzip_members_concatenate_into_one_file() {
        use std::io::Read as _;
        let mut file = gzip(b"a\nb\n", 6);
        file.extend(gzip(b"c\n", 1));
        let mut out = String::new();
        flate2::read::MultiGzDecoder::new(&file[..])
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, "a\nb\nc\n");
    }

    #[test]
    fn billing_rounds_up_to_5_kb() {
        assert_eq!(billed_bytes(0), 5120);
        assert_eq!(billed_bytes(1), 5120);
        assert_eq!(billed_bytes(5120), 5120);
        assert_eq!(billed_bytes(5121), 10_240);
        assert_eq!(billed_bytes(RECORD_BYTES_MAX), 1_024_000);
    }

    #[test]
    fn packs_lines_up_to_the_size() {
        let t0 = Instant::now();
        let mut p = packer(true, 10, b"\n");
        let mut out = Vec::new();
        for (i, rec) in [&b"abc"[..], b"de", b"fghi", b"j"].iter().enumerate() {
            p.push(rec, i, t0, t0, &mut out).unwrap();
        }
        // "abc\nde\n" is 7 bytes; "fghi\n" would make 12, so the first pack is sealed.
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].data, b"abc\nde\n");
        assert_eq!(out[0].records, vec![0, 1]);
        assert_eq!(out[0].billed_unpacked, 2 * 5120);
        assert_eq!(p.open_records(), 2);
        let last = p.seal().unwrap();
        assert_eq!(last.data, b"fghi\nj\n");
        assert_eq!(p.seal(), None);
        assert_eq!(p.opened(), None);
    }

    #[test]
    fn a_pack_that_is_exactly_full_is_sealed_at_once() {
        let t0 = Instant::now();
        let mut p = packer(true, 8, b"\r\n");
        let mut out = Vec::new();
        p.push(b"ab", 0, t0, t0, &mut out).unwrap();
        p.push(b"cd", 1, t0, t0, &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].data, b"ab\r\ncd\r\n");
        assert_eq!(p.opened(), None);
    }

    #[test]
    fn a_record_bigger_than_a_pack_travels_alone() {
        let t0 = Instant::now();
        let mut p = packer(true, 10, b"\n");
        let mut out = Vec::new();
        p.push(b"a", 0, t0, t0, &mut out).unwrap();
        p.push(&[b'x'; 20], 1, t0, t0, &mut out).unwrap();
        p.push(b"b", 2, t0, t0, &mut out).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].records, vec![0]);
        assert_eq!(out[1].records, vec![1]);
        assert_eq!(out[1].data.len(), 21);
        assert_eq!(p.seal().unwrap().records, vec![2]);
    }

    #[test]
    fn packing_off_is_one_record_each() {
        let t0 = Instant::now();
        let mut p = packer(false, PACK_BYTES_MAX_DEFAULT, b"");
        let mut out = Vec::new();
        p.push(b"a", 0, t0, t0, &mut out).unwrap();
        p.push(b"bc", 1, t0, t0, &mut out).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].data, b"a");
        assert_eq!(out[1].data, b"bc");
        assert_eq!(p.seal(), None);
    }

    #[test]
    fn oversized_records_are_refused_with_a_reason() {
        let t0 = Instant::now();
        let mut p = packer(true, PACK_BYTES_MAX_DEFAULT, b"\n");
        let mut out = Vec::new();
        p.push(&vec![b'x'; RECORD_BYTES_MAX - 1], 0, t0, t0, &mut out)
            .unwrap();
        let err = p
            .push(&vec![b'x'; RECORD_BYTES_MAX], 1, t0, t0, &mut out)
            .unwrap_err();
        assert_eq!(err.ticket, 1);
        assert_eq!(
            err.reason(),
            "record of 1024001 bytes (with its delimiter) is over Firehose's record limit of 1024000 bytes"
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].data.len(), RECORD_BYTES_MAX);
    }

    #[test]
    fn ages_come_from_the_oldest_record() {
        let t0 = Instant::now();
        let later = t0 + std::time::Duration::from_millis(5);
        let mut p = packer(true, 100, b"\n");
        let mut out = Vec::new();
        p.push(b"a", 0, later, later, &mut out).unwrap();
        p.push(
            b"b",
            1,
            t0,
            later + std::time::Duration::from_millis(1),
            &mut out,
        )
        .unwrap();
        let pack = p.seal().unwrap();
        assert_eq!(pack.arrived, t0);
        assert_eq!(pack.opened, later);
    }

    proptest! {
        /// Packs never exceed their size (unless one record is bigger on its own) nor the record
        /// limit, never split a record, and concatenated they are the input with delimiters.
        #[test]
        fn packs_keep_every_record_whole(
            sizes in proptest::collection::vec(prop_oneof![8 => 0usize..300, 1 => 300usize..3000], 0..300),
            pack in any::<bool>(),
            max in 1usize..2000,
            delim in proptest::collection::vec(any::<u8>(), 0..3),
        ) {
            let t0 = Instant::now();
            let mut p = packer(pack, max, &delim);
            let mut out = Vec::new();
            let mut expect = Vec::new();
            let records: Vec<Vec<u8>> = sizes.iter().enumerate()
                .map(|(i, &n)| (0..n).map(|j| (i + j) as u8).collect()).collect();
            for (i, r) in records.iter().enumerate() {
                p.push(r, i, t0, t0, &mut out).unwrap();
                expect.extend_from_slice(r);
                expect.extend_from_slice(&delim);
            }
            out.extend(p.seal());
            let mut got = Vec::new();
            let mut ids = Vec::new();
            for pk in &out {
                prop_assert!(!pk.records.is_empty());
                prop_assert!(pk.data.len() <= RECORD_BYTES_MAX);
                if !pack {
                    prop_assert_eq!(pk.records.len(), 1);
                }
                if pk.records.len() > 1 {
                    prop_assert!(pk.data.len() <= max);
                }
                // The pack is exactly its records, whole, each with its delimiter.
                let mut whole = Vec::new();
                for &i in &pk.records {
                    whole.extend_from_slice(&records[i]);
                    whole.extend_from_slice(&delim);
                }
                prop_assert_eq!(&whole, &pk.data);
                prop_assert_eq!(pk.billed_unpacked, pk.records.iter().map(|&i| billed_bytes(records[i].len() + delim.len())).sum::<u64>());
                got.extend_from_slice(&pk.data);
                ids.extend(pk.records.iter().copied());
            }
            prop_assert_eq!(got, expect);
            prop_assert_eq!(ids, (0..records.len()).collect::<Vec<_>>());
            // Greedy: each pack but the last was full, or could not take the next pack's first
            // record (a full pack is sealed at once, even if an empty record would still fit).
            if pack {
                for w in out.windows(2) {
                    let next = records[w[1].records[0]].len() + delim.len();
                    prop_assert!(w[0].data.len() >= max || w[0].data.len() + next > max);
                }
            }
        }
    }
}
