//! Segment files: `<dir>/<first_id:020>.seg`, entries ([`super::format`]) back to back.
//!
//! A segment is written append-only by one [`SegmentWriter`] and never written again once the
//! log has moved on to the next one (after a restart the log always starts a new segment).
//! [`scan_segment`] reads a segment from its start and stops at the first bytes that are not a
//! valid entry, so a torn tail or a damaged byte is found by the entry checksums. Files are
//! reached through [`LogFs`].

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::batch;
use super::format::{self, FormatError, HEADER_BYTES};
use super::fs::{LogFile, LogFs, OpenMode};

/// The file name extension of segments.
pub const EXTENSION: &str = "seg";

/// The path of the segment whose first entry is `first_id`.
pub fn segment_path(dir: &Path, first_id: u64) -> PathBuf {
    dir.join(format!("{first_id:020}.{EXTENSION}"))
}

/// The first entry id encoded in a segment file name, or `None` for any other name.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Appends entries to one segment file.
#[derive(Debug)]
pub struct SegmentWriter {
    path: PathBuf,
    file: Arc<dyn LogFile>,
    len: u64,
}

impl SegmentWriter {
    /// Creates the segment `first_id` in `dir`; fails if it exists.
    pub fn create(fs: &dyn LogFs, dir: &Path, first_id: u64) -> io::Result<SegmentWriter> {
        let path = segment_path(dir, first_id);
        let file = fs.open(&path, OpenMode::CreateNew)?;
        Ok(SegmentWriter { path, file, len: 0 })
    }

    /// Appends one encoded entry (one write); returns the offset it starts at. If the write
    /// fails, the file is cut back to its previous length when that is possible; when it is
    /// not, torn bytes may follow the last entry, and a scan stops before them. Either way the
    /// writer must not be appended to again (the file position may be past the end): the log
    /// starts a new segment.
    pub fn append(&mut self, entry: &[u8]) -> io::Result<u64> {
        let offset = self.len;
        if let Err(e) = self.file.write_all(entry) {
            let _ = self.file.set_len(offset);
            return Err(e);
        }
        self.len += entry.len() as u64;
        Ok(offset)
    }

    /// Cuts the file back to `len` bytes (to undo an append whose `sync` failed).
    pub fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)?;
        self.len = len;
        Ok(())
    }

    /// Flushes the written entries to the disk (`fdatasync`).
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// The open file, to sync it while this writer goes on appending.
    pub fn file(&self) -> Arc<dyn LogFile> {
        self.file.clone()
    }

    /// Bytes written.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True before the first append.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The segment's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Where one valid entry is in a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryLoc {
    /// The entry id.
    pub id: u64,
    /// Offset of the entry's header in the file.
    pub offset: u64,
    /// Bytes of the entry.
    pub len: u32,
    /// Records the reader delivers from the entry (its payloads: a batch header and metadata
    /// records are not counted; see [`super::batch::summary`]).
    pub records: u32,
    /// When its batch arrived (Unix nanoseconds), if the entry records it.
    pub arrival: Option<u64>,
}

/// Why a scan stopped before the end of a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DamageReason {
    /// The bytes are not a valid entry (or the file ends inside one).
    Format(FormatError),
    /// A valid entry whose id is not above the previous entry's id.
    IdOrder {
        /// The previous entry's id.
        previous: u64,
        /// The entry's id.
        id: u64,
    },
}

impl fmt::Display for DamageReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DamageReason::Format(e) => write!(f, "{e}"),
            DamageReason::IdOrder { previous, id } => {
                write!(f, "entry id {id} does not follow id {previous}")
            }
        }
    }
}

/// The bytes of a segment from the first bad entry to the end of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// Offset of the first bad byte (the end of the good prefix).
    pub offset: u64,
    /// Bytes from `offset` to the end of the file.
    pub len: u64,
    /// What was wrong at `offset`.
    pub reason: DamageReason,
}

/// What [`scan_segment`] found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScanResult {
    /// The valid entries, in file order.
    pub entries: Vec<EntryLoc>,
    /// Bytes of the good prefix (the end of the last valid entry).
    pub good_len: u64,
    /// The rest of the file, when the good prefix is not all of it.
    pub damage: Option<Damage>,
}

/// A segment that could not be read: opening it, reading its length or reading at `offset`
/// failed. Unlike [`Damage`], this says nothing about the bytes.
#[derive(Debug)]
pub struct ReadFailure {
    /// Where reading failed (0 for opening the file or reading its length).
    pub offset: u64,
    /// The cause.
    pub source: io::Error,
}

/// Reads the segment at `path` entry by entry and stops at the first bad one.
///
/// Bad bytes are [`ScanResult::damage`]; a file that cannot be read is a [`ReadFailure`]
/// (an I/O error says nothing about what the file holds). Memory use is one entry, and never
/// more than the file's length.
pub fn scan_segment(fs: &dyn LogFs, path: &Path) -> Result<ScanResult, ReadFailure> {
    let failed = |offset: u64| move |source: io::Error| ReadFailure { offset, source };
    let file = fs.open(path, OpenMode::Read).map_err(failed(0))?;
    let file_len = file.size().map_err(failed(0))?;
    let mut result = ScanResult::default();
    let mut buf: Vec<u8> = Vec::new();
    let mut offset = 0u64;
    let mut previous: Option<u64> = None;
    let damage = |offset: u64, reason: DamageReason| Damage {
        offset,
        len: file_len - offset,
        reason,
    };
    while offset < file_len {
        let remaining = file_len - offset;
        buf.clear();
        let want = (HEADER_BYTES as u64).min(remaining) as usize;
        read_into(&*file, &mut buf, want, offset).map_err(failed(offset))?;
        let header = match format::decode_header(&buf) {
            Ok(h) => h,
            Err(e) => {
                result.damage = Some(damage(offset, DamageReason::Format(e)));
                break;
            }
        };
        let entry_len = header.entry_len() as u64;
        if entry_len > remaining {
            let e = FormatError::Truncated {
                needed: header.entry_len(),
                have: remaining as usize,
            };
            result.damage = Some(damage(offset, DamageReason::Format(e)));
            break;
        }
        // Checked against the file's length above: no allocation beyond what is on disk.
        let body_at = offset + HEADER_BYTES as u64;
        read_into(&*file, &mut buf, header.body_len, body_at).map_err(failed(body_at))?;
        let (entry, len) = match format::decode_entry(&buf) {
            Ok(v) => v,
            Err(e) => {
                result.damage = Some(damage(offset, DamageReason::Format(e)));
                break;
            }
        };
        if let Some(previous) = previous
            && entry.id <= previous
        {
            let reason = DamageReason::IdOrder {
                previous,
                id: entry.id,
            };
            result.damage = Some(damage(offset, reason));
            break;
        }
        previous = Some(entry.id);
        let (records, arrival) = batch::summary(entry.records().next(), entry.len() as u32);
        result.entries.push(EntryLoc {
            id: entry.id,
            offset,
            len: len as u32,
            records,
            arrival,
        });
        offset += len as u64;
        result.good_len = offset;
    }
    Ok(result)
}

/// Appends exactly `n` bytes of `file`, from `offset`, to `buf`.
fn read_into(file: &dyn LogFile, buf: &mut Vec<u8>, n: usize, offset: u64) -> io::Result<()> {
    let start = buf.len();
    buf.resize(start + n, 0);
    file.read_exact_at(&mut buf[start..], offset)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::buffer::faulty::{EIO, ENOSPC, Fault, FaultyFs, Op};
    use crate::buffer::format::{Corruption, encode_entry};
    use crate::buffer::fs::RealFs;

    fn entry(id: u64, records: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_entry(id, records, &mut out).unwrap();
        out
    }

    #[test]
    fn names_round_trip() {
        let dir = Path::new("/x");
        let p = segment_path(dir, 42);
        let name = p.file_name().unwrap().to_str().unwrap();
        assert_eq!(name, "00000000000000000042.seg");
        assert_eq!(parse_segment_name(name), Some(42));
        assert_eq!(parse_segment_name("42.seg"), None);
        assert_eq!(parse_segment_name("0000000000000000004x.seg"), None);
        assert_eq!(
            parse_segment_name("00000000000000000042.seg.damaged-0"),
            None
        );
        assert_eq!(parse_segment_name("99999999999999999999.seg"), None);
    }

    #[test]
    fn write_then_scan() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = SegmentWriter::create(&RealFs, dir.path(), 5).unwrap();
        assert!(w.is_empty());
        let a = entry(5, &[b"one", b"two"]);
        let b = entry(6, &[]);
        assert_eq!(w.append(&a).unwrap(), 0);
        assert_eq!(w.append(&b).unwrap(), a.len() as u64);
        w.sync().unwrap();
        assert!(SegmentWriter::create(&RealFs, dir.path(), 5).is_err());
        let r = scan_segment(&RealFs, w.path()).unwrap();
        assert_eq!(r.damage, None);
        assert_eq!(r.good_len, w.len());
        let ids: Vec<(u64, u64, u32)> = r
            .entries
            .iter()
            .map(|e| (e.id, e.offset, e.records))
            .collect();
        assert_eq!(ids, vec![(5, 0, 2), (6, a.len() as u64, 0)]);
    }

    #[test]
    fn scan_stops_at_torn_tail_and_at_bad_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let a = entry(1, &[b"aaaa"]);
        let b = entry(2, &[b"bbbb"]);
        let path = segment_path(dir.path(), 1);

        let mut torn = a.clone();
        torn.extend_from_slice(&b[..b.len() - 3]);
        std::fs::write(&path, &torn).unwrap();
        let r = scan_segment(&RealFs, &path).unwrap();
        assert_eq!(r.entries.len(), 1);
        assert_eq!(r.good_len, a.len() as u64);
        let d = r.damage.unwrap();
        assert_eq!((d.offset, d.len), (a.len() as u64, b.len() as u64 - 3));
        assert!(matches!(
            d.reason,
            DamageReason::Format(FormatError::Truncated { .. })
        ));

        let mut flipped = [a.clone(), b.clone(), entry(3, &[b"c"])].concat();
        flipped[a.len() + HEADER_BYTES + 14] ^= 0x40;
        std::fs::write(&path, &flipped).unwrap();
        let r = scan_segment(&RealFs, &path).unwrap();
        assert_eq!(r.entries.len(), 1);
        let d = r.damage.unwrap();
        assert_eq!(d.offset, a.len() as u64);
        assert_eq!(d.len, flipped.len() as u64 - a.len() as u64);
        assert_eq!(
            d.reason,
            DamageReason::Format(FormatError::Corrupt(Corruption::BodyChecksum))
        );

        std::fs::write(&path, [a.clone(), a.clone()].concat()).unwrap();
        let d = scan_segment(&RealFs, &path).unwrap().damage.unwrap();
        assert_eq!(d.reason, DamageReason::IdOrder { previous: 1, id: 1 });

        std::fs::write(&path, b"garbage, not a segment").unwrap();
        let r = scan_segment(&RealFs, &path).unwrap();
        assert!(r.entries.is_empty());
        assert_eq!(r.damage.unwrap().offset, 0);

        std::fs::write(&path, b"").unwrap();
        assert_eq!(scan_segment(&RealFs, &path).unwrap(), ScanResult::default());
    }

    #[test]
    fn a_read_error_is_a_failure_at_its_offset_not_damage() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = SegmentWriter::create(&RealFs, dir.path(), 1).unwrap();
        let a = entry(1, &[b"aaaa"]);
        w.append(&a).unwrap();
        w.append(&entry(2, &[b"bbbb"])).unwrap();
        let fs = FaultyFs::new();
        // Reads: the header of entry 1, its body, then the header of entry 2.
        fs.inject(Fault::new(Op::Read, EIO).nth(3));
        let f = scan_segment(&fs, w.path()).unwrap_err();
        assert_eq!(f.offset, a.len() as u64);
        assert_eq!(f.source.raw_os_error(), Some(EIO));
        fs.inject(Fault::new(Op::Read, EIO).nth(2));
        let f = scan_segment(&fs, w.path()).unwrap_err();
        assert_eq!(f.offset, HEADER_BYTES as u64, "a body read");
        fs.inject(Fault::new(Op::Open, EIO));
        assert_eq!(scan_segment(&fs, w.path()).unwrap_err().offset, 0);
        fs.inject(Fault::new(Op::Size, EIO));
        assert_eq!(scan_segment(&fs, w.path()).unwrap_err().offset, 0);
        let r = scan_segment(&fs, w.path()).unwrap();
        assert_eq!((r.entries.len(), r.damage), (2, None));
    }

    #[test]
    fn a_failed_append_is_cut_back_or_stops_a_scan() {
        let dir = tempfile::tempdir().unwrap();
        let fs = FaultyFs::new();
        let mut w = SegmentWriter::create(&fs, dir.path(), 1).unwrap();
        let a = entry(1, &[b"aaaa"]);
        let b = entry(2, &[b"bbbb"]);
        w.append(&a).unwrap();
        fs.inject(Fault::new(Op::Write, ENOSPC).short(7));
        let e = w.append(&b).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(ENOSPC));
        assert_eq!(w.len(), a.len() as u64);
        assert_eq!(std::fs::metadata(w.path()).unwrap().len(), a.len() as u64);
        // Cutting back fails too: the torn bytes stay, and a scan stops before them.
        let mut w = SegmentWriter::create(&fs, dir.path(), 5).unwrap();
        w.append(&a).unwrap();
        fs.inject(Fault::new(Op::Write, EIO).short(7));
        fs.inject(Fault::new(Op::SetLen, EIO));
        w.append(&b).unwrap_err();
        assert_eq!(w.len(), a.len() as u64);
        let r = scan_segment(&fs, w.path()).unwrap();
        assert_eq!(r.entries.len(), 1);
        let d = r.damage.unwrap();
        assert_eq!((d.offset, d.len), (a.len() as u64, 7));
        assert!(matches!(
            d.reason,
            DamageReason::Format(FormatError::Truncated { .. })
        ));
    }
}
