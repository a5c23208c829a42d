//! The entry format of the disk buffer (pure: no I/O).
//!
//! One entry holds one batch of records. All integers are little-endian.
//!
//! ```text
//! header (HEADER_BYTES = 20)
//!   0  magic       4  b"ERBL"
//!   4  version     1  1
//!   5  flags       1  0 (reserved for per-batch metadata; other values are refused)
//!   6  reserved    2  0
//!   8  body_len    4  bytes after the header, BODY_FIXED_BYTES ..= MAX_BODY_BYTES
//!  12  body_crc    4  CRC-32 (IEEE) of the body
//!  16  header_crc  4  CRC-32 (IEEE) of header bytes 0..16
//! body (body_len bytes)
//!   0  id          8  entry id, strictly increasing within a log
//!   8  count       4  number of records
//!  12  records        count * (len u32, payload)
//! ```
//!
//! The header has a checksum of its own, so a damaged length is recognized as damage instead of
//! being believed: every single-byte change of an entry is reported as [`FormatError::Corrupt`].
//! [`decode_entry`] never panics, never allocates, and tells a buffer that ends inside an entry
//! ([`FormatError::Truncated`], e.g. a write cut short by a crash) apart from bytes that are not an
//! entry ([`FormatError::Corrupt`]).

use std::fmt;

/// The first four bytes of every entry.
pub const MAGIC: [u8; 4] = *b"ERBL";

/// The format version this build writes and reads.
pub const VERSION: u8 = 1;

/// Bytes of an entry header.
pub const HEADER_BYTES: usize = 20;

/// Bytes of a body without records: `id` and `count`.
pub const BODY_FIXED_BYTES: usize = 12;

/// Bytes a record adds besides its payload (its `u32` length).
pub const RECORD_OVERHEAD_BYTES: usize = 4;

/// The largest body accepted, written or read (1 GiB).
pub const MAX_BODY_BYTES: usize = 1 << 30;

/// The largest entry: header plus the largest body.
pub const MAX_ENTRY_BYTES: usize = HEADER_BYTES + MAX_BODY_BYTES;

/// Why bytes are not a valid entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Corruption {
    /// The first bytes are not [`MAGIC`].
    Magic,
    /// The header checksum does not match.
    HeaderChecksum,
    /// The header is intact but of a version this build does not read.
    Version(u8),
    /// Flags or reserved bytes are not zero.
    Reserved,
    /// The body length is below [`BODY_FIXED_BYTES`] or above [`MAX_BODY_BYTES`].
    BodyLength(u32),
    /// The body checksum does not match.
    BodyChecksum,
    /// The records do not fill the body exactly (`count` or a record length is wrong).
    RecordLayout,
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Corruption::Magic => f.write_str("bad magic"),
            Corruption::HeaderChecksum => f.write_str("header checksum mismatch"),
            Corruption::Version(v) => write!(f, "unsupported version {v}"),
            Corruption::Reserved => f.write_str("reserved header bytes are not zero"),
            Corruption::BodyLength(n) => write!(f, "body length {n} out of range"),
            Corruption::BodyChecksum => f.write_str("body checksum mismatch"),
            Corruption::RecordLayout => f.write_str("records do not fill the body"),
        }
    }
}

/// Why [`decode_entry`] returned no entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// The bytes so far are a valid start of an entry, which needs `needed` bytes in all (a
    /// lower bound while the header is incomplete).
    #[error("entry truncated: {needed} bytes needed, {have} present")]
    Truncated {
        /// Bytes the entry needs.
        needed: usize,
        /// Bytes present.
        have: usize,
    },
    /// The bytes are not an entry.
    #[error("entry corrupt: {0}")]
    Corrupt(Corruption),
}

/// [`encode_entry`] was given more than [`MAX_BODY_BYTES`] of records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("entry of {body_bytes} bytes is larger than the limit of {MAX_BODY_BYTES} bytes")]
pub struct TooLarge {
    /// The body length the records would need.
    pub body_bytes: u64,
}

/// A decoded entry: its id and its records, borrowed from the decoded buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The entry id.
    pub id: u64,
    count: u32,
    /// The record area of the body (after `id` and `count`), already checked to hold exactly
    /// `count` records.
    records: &'a [u8],
    /// Offset of `records` inside the decoded buffer.
    records_offset: usize,
}

impl<'a> Entry<'a> {
    /// Number of records.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// True when the entry holds no records.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The record payloads, in order.
    pub fn records(&self) -> Records<'a> {
        Records {
            rest: self.records,
            offset: self.records_offset,
        }
    }
}

/// Iterator over the records of an [`Entry`].
#[derive(Debug, Clone)]
pub struct Records<'a> {
    rest: &'a [u8],
    offset: usize,
}

impl<'a> Records<'a> {
    /// The next record and the offset of its first payload byte in the decoded buffer.
    pub fn next_with_offset(&mut self) -> Option<(usize, &'a [u8])> {
        let len = read_u32(self.rest, 0)? as usize;
        let payload = self
            .rest
            .get(RECORD_OVERHEAD_BYTES..RECORD_OVERHEAD_BYTES + len)?;
        let start = self.offset + RECORD_OVERHEAD_BYTES;
        self.rest = &self.rest[RECORD_OVERHEAD_BYTES + len..];
        self.offset = start + len;
        Some((start, payload))
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        self.next_with_offset().map(|(_, p)| p)
    }
}

/// Bytes the entry of these records takes on disk.
pub fn entry_len(records: &[&[u8]]) -> u64 {
    HEADER_BYTES as u64 + body_len(records)
}

fn body_len(records: &[&[u8]]) -> u64 {
    records.iter().fold(BODY_FIXED_BYTES as u64, |acc, r| {
        acc + RECORD_OVERHEAD_BYTES as u64 + r.len() as u64
    })
}

/// Appends the entry `id` holding `records` to `out`; returns the bytes appended.
pub fn encode_entry(id: u64, records: &[&[u8]], out: &mut Vec<u8>) -> Result<usize, TooLarge> {
    let body = body_len(records);
    if body > MAX_BODY_BYTES as u64 || records.len() > u32::MAX as usize {
        return Err(TooLarge { body_bytes: body });
    }
    let body = body as usize;
    let start = out.len();
    out.reserve(HEADER_BYTES + body);
    out.extend_from_slice(&[0; HEADER_BYTES]);
    let body_start = out.len();
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&(records.len() as u32).to_le_bytes());
    for r in records {
        out.extend_from_slice(&(r.len() as u32).to_le_bytes());
        out.extend_from_slice(r);
    }
    let body_crc = crc32fast::hash(&out[body_start..]);
    let h = &mut out[start..body_start];
    h[0..4].copy_from_slice(&MAGIC);
    h[4] = VERSION;
    h[8..12].copy_from_slice(&(body as u32).to_le_bytes());
    h[12..16].copy_from_slice(&body_crc.to_le_bytes());
    let header_crc = crc32fast::hash(&h[0..16]);
    h[16..20].copy_from_slice(&header_crc.to_le_bytes());
    Ok(HEADER_BYTES + body)
}

/// What a complete, checked header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Body bytes after the header.
    pub body_len: usize,
    /// The body checksum.
    pub body_crc: u32,
}

impl Header {
    /// Bytes of the whole entry.
    pub fn entry_len(&self) -> usize {
        HEADER_BYTES + self.body_len
    }
}

/// Checks the header at the start of `buf` (which may hold more, or less, than a header).
pub fn decode_header(buf: &[u8]) -> Result<Header, FormatError> {
    let magic_have = buf.len().min(MAGIC.len());
    if buf[..magic_have] != MAGIC[..magic_have] {
        return Err(FormatError::Corrupt(Corruption::Magic));
    }
    let Some(h) = buf.get(..HEADER_BYTES) else {
        return Err(FormatError::Truncated {
            needed: HEADER_BYTES,
            have: buf.len(),
        });
    };
    let stored = read_u32(h, 16).unwrap_or_default();
    if crc32fast::hash(&h[0..16]) != stored {
        return Err(FormatError::Corrupt(Corruption::HeaderChecksum));
    }
    if h[4] != VERSION {
        return Err(FormatError::Corrupt(Corruption::Version(h[4])));
    }
    if h[5..8] != [0, 0, 0] {
        return Err(FormatError::Corrupt(Corruption::Reserved));
    }
    let body_len = read_u32(h, 8).unwrap_or_default();
    if (body_len as usize) < BODY_FIXED_BYTES || body_len as usize > MAX_BODY_BYTES {
        return Err(FormatError::Corrupt(Corruption::BodyLength(body_len)));
    }
    Ok(Header {
        body_len: body_len as usize,
        body_crc: read_u32(h, 12).unwrap_or_default(),
    })
}

/// Decodes the entry at the start of `buf`; returns it and the bytes it takes.
pub fn decode_entry(buf: &[u8]) -> Result<(Entry<'_>, usize), FormatError> {
    let header = decode_header(buf)?;
    let len = header.entry_len();
    let Some(body) = buf.get(HEADER_BYTES..len) else {
        return Err(FormatError::Truncated {
            needed: len,
            have: buf.len(),
        });
    };
    if crc32fast::hash(body) != header.body_crc {
        return Err(FormatError::Corrupt(Corruption::BodyChecksum));
    }
    let corrupt = FormatError::Corrupt(Corruption::RecordLayout);
    let id = read_u64(body, 0).ok_or(corrupt)?;
    let count = read_u32(body, 8).ok_or(corrupt)?;
    let records = &body[BODY_FIXED_BYTES..];
    // Walk the records once so that `Entry::records` can trust the layout.
    let mut rest = records;
    for _ in 0..count {
        let n = read_u32(rest, 0).ok_or(corrupt)? as usize;
        rest = rest
            .get(RECORD_OVERHEAD_BYTES..)
            .and_then(|r| r.get(n..))
            .ok_or(corrupt)?;
    }
    if !rest.is_empty() {
        return Err(corrupt);
    }
    let entry = Entry {
        id,
        count,
        records,
        records_offset: HEADER_BYTES + BODY_FIXED_BYTES,
    };
    Ok((entry, len))
}

fn read_u32(buf: &[u8], at: usize) -> Option<u32> {
    let b = buf.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(b.try_into().ok()?))
}

fn read_u64(buf: &[u8], at: usize) -> Option<u64> {
    let b = buf.get(at..at.checked_add(8)?)?;
    Some(u64::from_le_bytes(b.try_into().ok()?))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encode(id: u64, records: &[Vec<u8>]) -> Vec<u8> {
        let refs: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
        let mut out = Vec::new();
        let n = encode_entry(id, &refs, &mut out).unwrap();
        assert_eq!(n, out.len());
        assert_eq!(n as u64, entry_len(&refs));
        out
    }

    fn records_strategy() -> impl Strategy<Value = Vec<Vec<u8>>> {
        prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..8)
    }

    #[test]
    fn empty_and_simple_entries_round_trip() {
        let bytes = encode(7, &[]);
        assert_eq!(bytes.len(), HEADER_BYTES + BODY_FIXED_BYTES);
        let (e, n) = decode_entry(&bytes).unwrap();
        assert_eq!((e.id, e.len(), e.is_empty(), n), (7, 0, true, bytes.len()));

        let bytes = encode(u64::MAX, &[b"a".to_vec(), Vec::new(), b"xyz".to_vec()]);
        let (e, _) = decode_entry(&bytes).unwrap();
        let got: Vec<&[u8]> = e.records().collect();
        assert_eq!(got, vec![&b"a"[..], b"", b"xyz"]);
        let mut it = e.records();
        let (off, p) = it.next_with_offset().unwrap();
        assert_eq!(&bytes[off..off + p.len()], b"a");
    }

    #[test]
    fn header_fields_are_checked() {
        let good = encode(1, &[b"x".to_vec()]);
        // A header with a valid checksum but an unknown version, reserved bits or length.
        let reseal = |mut b: Vec<u8>| {
            let crc = crc32fast::hash(&b[0..16]);
            b[16..20].copy_from_slice(&crc.to_le_bytes());
            b
        };
        let mut v = good.clone();
        v[4] = 2;
        assert_eq!(
            decode_entry(&reseal(v)),
            Err(FormatError::Corrupt(Corruption::Version(2)))
        );
        let mut v = good.clone();
        v[6] = 1;
        assert_eq!(
            decode_entry(&reseal(v)),
            Err(FormatError::Corrupt(Corruption::Reserved))
        );
        let mut v = good.clone();
        v[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            decode_entry(&reseal(v)),
            Err(FormatError::Corrupt(Corruption::BodyLength(u32::MAX)))
        );
        // A body with a valid checksum whose count does not match its records.
        let mut v = good.clone();
        v[HEADER_BYTES + 8] = 2;
        let crc = crc32fast::hash(&v[HEADER_BYTES..]);
        v[12..16].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            decode_entry(&reseal(v)),
            Err(FormatError::Corrupt(Corruption::RecordLayout))
        );
        assert_eq!(
            decode_entry(b"nope"),
            Err(FormatError::Corrupt(Corruption::Magic))
        );
        assert!(matches!(
            decode_entry(b""),
            Err(FormatError::Truncated { have: 0, .. })
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1_000))]

        /// Whatever is encoded decodes to the same id and records, also with bytes after it.
        #[test]
        fn round_trip(
            id in any::<u64>(),
            records in records_strategy(),
            tail in prop::collection::vec(any::<u8>(), 0..8),
        ) {
            let mut bytes = encode(id, &records);
            let len = bytes.len();
            bytes.extend_from_slice(&tail);
            let (e, n) = decode_entry(&bytes).unwrap();
            prop_assert_eq!(n, len);
            prop_assert_eq!(e.id, id);
            prop_assert_eq!(e.len(), records.len());
            let got: Vec<Vec<u8>> = e.records().map(<[u8]>::to_vec).collect();
            prop_assert_eq!(got, records);
        }

        /// Every proper prefix of an entry is `Truncated`, never corrupt, never an entry.
        #[test]
        fn any_truncation_is_truncated(
            id in any::<u64>(),
            records in records_strategy(),
            cut in any::<prop::sample::Index>(),
        ) {
            let bytes = encode(id, &records);
            let at = cut.index(bytes.len());
            match decode_entry(&bytes[..at]) {
                Err(FormatError::Truncated { needed, have }) => {
                    prop_assert_eq!(have, at);
                    prop_assert!(needed > at && needed <= bytes.len());
                }
                other => prop_assert!(false, "prefix of {} bytes gave {:?}", at, other),
            }
        }

        /// Changing any one byte is detected as corruption (the header has its own checksum,
        /// so not even a changed length passes as a truncation).
        #[test]
        fn any_byte_flip_is_detected(
            id in any::<u64>(),
            records in records_strategy(),
            at in any::<prop::sample::Index>(),
            xor in 1u8..=255,
            tail in prop::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut bytes = encode(id, &records);
            let i = at.index(bytes.len());
            bytes[i] ^= xor;
            bytes.extend_from_slice(&tail);
            let r = decode_entry(&bytes);
            prop_assert!(matches!(r, Err(FormatError::Corrupt(_))), "flip at {} gave {:?}", i, r);
        }

        /// Arbitrary bytes never panic, and whatever decodes re-encodes to the same bytes.
        #[test]
        fn arbitrary_bytes_never_panic(
            bytes in prop::collection::vec(any::<u8>(), 0..128),
            with_header in any::<bool>(),
        ) {
            let mut buf = Vec::new();
            if with_header {
                buf.extend_from_slice(&MAGIC);
            }
            buf.extend_from_slice(&bytes);
            if let Ok((e, n)) = decode_entry(&buf) {
                let records: Vec<Vec<u8>> = e.records().map(<[u8]>::to_vec).collect();
                prop_assert_eq!(encode(e.id, &records), buf[..n].to_vec());
            }
        }
    }
}
