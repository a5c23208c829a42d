//! Records and batches.
//!
//! A [`Batch`] owns one chunk of bytes (a [`Bytes`], one reference count for the whole batch) and
//! a list of [`Span`]s into it, one per record. Records are never separate allocations: a record is
//! an index into its batch, and a payload becomes a `Bytes` of its own only when a record leaves
//! its batch (for example into the dead-letter sink). Metadata (partition key, explicit hash key,
//! attributes) lives in an optional side table that only sources which have it fill in: one
//! [`RecordMeta`] shared by every record when the source gives it per request or per batch
//! ([`Metadata::Shared`], stored once whatever the number of records), or one per record
//! ([`Metadata::PerRecord`]). A [`RecordMeta`]'s strings are reference-counted, so copying one
//! (per record, into a rebuilt batch) copies three pointers, never the text. The source name and
//! arrival time are per batch, since every record of a batch arrived with the same read.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

/// The byte range `start..end` of one record's payload inside its batch's chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// Offset of the first payload byte.
    pub start: u32,
    /// Offset one past the last payload byte (the delimiter is not part of the payload).
    pub end: u32,
}

impl Span {
    /// Payload length in bytes.
    pub fn len(self) -> usize {
        (self.end - self.start) as usize
    }

    /// True for an empty payload.
    pub fn is_empty(self) -> bool {
        self.end == self.start
    }
}

/// Optional metadata of a record, present only for sources that supply it. Cloning it copies
/// reference counts, not text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordMeta {
    /// Partition key chosen by the producer (e.g. from a Kinesis-compatible `PutRecords`).
    pub partition_key: Option<Arc<str>>,
    /// Explicit 128-bit hash key as a decimal string.
    pub explicit_hash_key: Option<Arc<str>>,
    /// String attributes, in the order the producer gave them.
    pub attributes: Arc<[(Box<str>, Box<str>)]>,
}

impl RecordMeta {
    /// Bytes of text it holds (keys, attribute names and values), counting each string once
    /// even when shared.
    pub fn text_bytes(&self) -> u64 {
        let opt = |s: &Option<Arc<str>>| s.as_ref().map_or(0, |s| s.len());
        let attrs: usize = self.attributes.iter().map(|(k, v)| k.len() + v.len()).sum();
        (opt(&self.partition_key) + opt(&self.explicit_hash_key) + attrs) as u64
    }

    /// True when `other` holds the very same strings (not copies of them).
    fn same_as(&self, other: &RecordMeta) -> bool {
        fn same(a: &Option<Arc<str>>, b: &Option<Arc<str>>) -> bool {
            match (a, b) {
                (None, None) => true,
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                _ => false,
            }
        }
        same(&self.partition_key, &other.partition_key)
            && same(&self.explicit_hash_key, &other.explicit_hash_key)
            && Arc::ptr_eq(&self.attributes, &other.attributes)
    }

    /// Memory it keeps alive beyond its own struct when it follows `prev` in a list: strings
    /// shared with the previous entry are not counted again (an attribute also costs its two
    /// string headers).
    fn heap_bytes_after(&self, prev: Option<&RecordMeta>) -> u64 {
        fn key(a: &Option<Arc<str>>, b: Option<&Option<Arc<str>>>) -> u64 {
            match (a, b) {
                (Some(a), Some(Some(b))) if Arc::ptr_eq(a, b) => 0,
                (Some(a), _) => a.len() as u64,
                (None, _) => 0,
            }
        }
        let attrs = match prev {
            Some(p) if Arc::ptr_eq(&self.attributes, &p.attributes) => 0,
            _ => self
                .attributes
                .iter()
                .map(|(k, v)| (k.len() + v.len() + 32) as u64)
                .sum(),
        };
        key(&self.partition_key, prev.map(|p| &p.partition_key))
            + key(&self.explicit_hash_key, prev.map(|p| &p.explicit_hash_key))
            + attrs
    }
}

/// The metadata of a batch's records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Metadata {
    /// The same for every record (given per request or per batch): stored once.
    Shared(RecordMeta),
    /// One entry per record.
    PerRecord(Vec<RecordMeta>),
}

impl Metadata {
    /// Bytes of memory the table keeps alive (what queue byte limits count besides the chunk):
    /// a shared entry once, a per-record table its entries plus the strings they do not share
    /// with their predecessor.
    pub fn heap_bytes(&self) -> u64 {
        let entry = std::mem::size_of::<RecordMeta>() as u64;
        match self {
            Metadata::Shared(m) => entry + m.heap_bytes_after(None),
            Metadata::PerRecord(v) => {
                let mut total = entry * v.len() as u64;
                let mut prev = None;
                for m in v {
                    total += m.heap_bytes_after(prev);
                    prev = Some(m);
                }
                total
            }
        }
    }
}

/// Where a batch's records came from in their source, for dead-letter reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PositionBase {
    /// Line-framed data: the chunk's first byte is on this 1-based line.
    Line(u64),
    /// The source has no meaningful position.
    None,
}

/// The position of one record in its source, as reported in dead letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// 1-based line number.
    Line(u64),
    /// Unknown.
    None,
}

/// Batch-level facts shared by all records of a batch.
#[derive(Debug, Clone)]
pub struct Origin {
    /// Name of the source component (the key of its config table).
    pub source: Arc<str>,
    /// Arrival time as Unix nanoseconds (wall clock; used for path templates).
    pub arrival_unix_nanos: u64,
    /// Arrival time on the monotonic clock (used for latency).
    pub arrival: Instant,
    /// Position of the chunk's first byte in the source.
    pub position: PositionBase,
}

/// A batch of records: one chunk of bytes, spans into it, and metadata.
#[derive(Debug, Clone)]
pub struct Batch {
    data: Bytes,
    spans: Vec<Span>,
    payload_bytes: u64,
    origin: Origin,
    meta: Option<Metadata>,
    /// [`Metadata::heap_bytes`] of `meta` (0 without).
    meta_bytes: u64,
    routes: Option<Vec<u64>>,
    hold: Option<Hold>,
}

/// Something that wants to know when the records of a batch are done with: every batch made
/// from a batch (clones, [`Batch::select`], [`Batch::split_off`], a stage's rebuilt batch) shares
/// its token, and the token's `Drop` runs once the last of them is gone (written, put in a disk
/// buffer, dead-lettered or dropped). Sources use it to answer clients only once their records
/// are safe; disk buffers use it to acknowledge entries once the sink has delivered them.
#[derive(Clone)]
pub struct Hold {
    /// Dropped when the records are done with.
    pub token: Arc<dyn std::any::Any + Send + Sync>,
    /// A disk buffer keeps the token until the sink has delivered the records (rather than
    /// dropping it once they are on disk).
    pub until_delivered: bool,
}

impl std::fmt::Debug for Hold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hold")
            .field("until_delivered", &self.until_delivered)
            .finish_non_exhaustive()
    }
}

/// A borrowed view of one record.
#[derive(Debug, Clone, Copy)]
pub struct RecordRef<'a> {
    /// Payload bytes.
    pub payload: &'a [u8],
    /// Metadata, when the source supplied any.
    pub meta: Option<&'a RecordMeta>,
    /// Batch-level facts.
    pub origin: &'a Origin,
}

impl<'a> RecordRef<'a> {
    /// The record's own partition key, if the source gave one.
    pub fn partition_key(&self) -> Option<&'a str> {
        self.meta.and_then(|m| m.partition_key.as_deref())
    }

    /// Looks up an attribute by name.
    pub fn attribute(&self, name: &str) -> Option<&'a str> {
        self.meta.and_then(|m| {
            m.attributes
                .iter()
                .find(|(k, _)| &**k == name)
                .map(|(_, v)| &**v)
        })
    }
}

impl Batch {
    /// Makes a batch from a chunk and spans into it.
    ///
    /// Spans must lie inside `data`; spans that do not are a bug in the caller and are dropped
    /// (with a debug assertion) rather than risking a panic on the data path.
    pub fn new(data: Bytes, mut spans: Vec<Span>, origin: Origin) -> Batch {
        let limit = data.len();
        debug_assert!(
            spans
                .iter()
                .all(|s| s.start <= s.end && s.end as usize <= limit)
        );
        spans.retain(|s| s.start <= s.end && s.end as usize <= limit);
        let payload_bytes = spans.iter().map(|s| s.len() as u64).sum();
        Batch {
            data,
            spans,
            payload_bytes,
            origin,
            meta: None,
            meta_bytes: 0,
            routes: None,
            hold: None,
        }
    }

    /// Attaches a [`Hold`] (replacing any other).
    pub fn with_hold(mut self, hold: Hold) -> Batch {
        self.hold = Some(hold);
        self
    }

    /// The batch's [`Hold`], for a batch rebuilt from this one.
    pub fn hold(&self) -> Option<&Hold> {
        self.hold.as_ref()
    }

    /// Takes the [`Hold`] off the batch (the caller keeps it alive as long as it needs).
    pub fn take_hold(&mut self) -> Option<Hold> {
        self.hold.take()
    }

    /// Attaches per-record metadata; `meta` must have one entry per record. A list whose
    /// entries all hold the very same strings (copies of one request's metadata) is kept as one
    /// shared entry.
    pub fn with_meta(self, meta: Vec<RecordMeta>) -> Batch {
        debug_assert_eq!(meta.len(), self.spans.len());
        if meta.len() != self.spans.len() {
            return self;
        }
        match meta.first() {
            Some(first) if meta.iter().all(|m| m.same_as(first)) => {
                let first = first.clone();
                self.with_metadata(Metadata::Shared(first))
            }
            _ => self.with_metadata(Metadata::PerRecord(meta)),
        }
    }

    /// Attaches one metadata entry that every record shares (a request's or a batch's): stored
    /// once, whatever the number of records.
    pub fn with_shared_meta(self, meta: RecordMeta) -> Batch {
        self.with_metadata(Metadata::Shared(meta))
    }

    /// Attaches a metadata table (a per-record one must have one entry per record; one that
    /// does not is dropped, with a debug assertion).
    pub fn with_metadata(mut self, meta: Metadata) -> Batch {
        if let Metadata::PerRecord(v) = &meta {
            debug_assert_eq!(v.len(), self.spans.len());
            if v.len() != self.spans.len() {
                return self;
            }
        }
        self.meta_bytes = meta.heap_bytes();
        self.meta = Some(meta);
        self
    }

    /// The metadata table, if the source gave any.
    pub fn metadata(&self) -> Option<&Metadata> {
        self.meta.as_ref()
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// True when the batch holds no records.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Sum of the payload lengths.
    pub fn payload_bytes(&self) -> u64 {
        self.payload_bytes
    }

    /// Bytes of memory this batch keeps alive (its whole chunk, the span table and the
    /// metadata): what queue byte limits count.
    pub fn retained_bytes(&self) -> u64 {
        (self.data.len() + self.spans.len() * std::mem::size_of::<Span>()) as u64 + self.meta_bytes
    }

    /// The chunk the spans point into.
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    /// The record spans, in order.
    pub fn spans(&self) -> &[Span] {
        &self.spans
    }

    /// Batch-level facts.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// Payload of record `i`.
    pub fn payload(&self, i: usize) -> &[u8] {
        let s = self.spans[i];
        &self.data[s.start as usize..s.end as usize]
    }

    /// Payload of record `i` as its own `Bytes` (one reference count; no copy).
    pub fn payload_bytes_of(&self, i: usize) -> Bytes {
        let s = self.spans[i];
        self.data.slice(s.start as usize..s.end as usize)
    }

    /// Metadata of record `i`, if any.
    pub fn meta(&self, i: usize) -> Option<&RecordMeta> {
        match self.meta.as_ref()? {
            Metadata::Shared(m) => (i < self.spans.len()).then_some(m),
            Metadata::PerRecord(v) => v.get(i),
        }
    }

    /// A view of record `i`.
    pub fn record(&self, i: usize) -> RecordRef<'_> {
        RecordRef {
            payload: self.payload(i),
            meta: self.meta(i),
            origin: &self.origin,
        }
    }

    /// Iterates over all records.
    pub fn records(&self) -> impl Iterator<Item = RecordRef<'_>> {
        (0..self.len()).map(|i| self.record(i))
    }

    /// The source position of record `i`.
    pub fn position(&self, i: usize) -> Position {
        self.positions(&[i])
            .first()
            .copied()
            .unwrap_or(Position::None)
    }

    /// The source positions of several records (indices ascending) in one pass over the chunk.
    pub fn positions(&self, indices: &[usize]) -> Vec<Position> {
        match self.origin.position {
            PositionBase::None => vec![Position::None; indices.len()],
            PositionBase::Line(first) => {
                let mut out = Vec::with_capacity(indices.len());
                let mut line = first;
                let mut counted_to = 0usize;
                for &i in indices {
                    let start = self.spans.get(i).map_or(counted_to, |s| s.start as usize);
                    if start >= counted_to {
                        line += memchr::memchr_iter(b'\n', &self.data[counted_to..start]).count()
                            as u64;
                        counted_to = start;
                    }
                    out.push(Position::Line(line));
                }
                out
            }
        }
    }

    /// Destination masks set by a route stage (bit `n` = sink `n`), one per record; `None` means
    /// every record goes to the default sinks.
    pub fn routes(&self) -> Option<&[u64]> {
        self.routes.as_deref()
    }

    /// Sets the destination mask of every record (see [`Batch::routes`]).
    pub fn set_routes(&mut self, routes: Vec<u64>) {
        debug_assert_eq!(routes.len(), self.spans.len());
        if routes.len() == self.spans.len() {
            self.routes = Some(routes);
        }
    }

    /// Keeps only the records for which `keep(index, record)` is true, in order.
    pub fn retain(&mut self, mut keep: impl FnMut(usize, RecordRef<'_>) -> bool) {
        let mask: Vec<bool> = (0..self.len()).map(|i| keep(i, self.record(i))).collect();
        self.retain_mask(&mask);
    }

    /// Keeps only the records whose entry in `mask` is true (missing entries count as true).
    pub fn retain_mask(&mut self, mask: &[bool]) {
        self.retain_by(|i| mask.get(i).copied().unwrap_or(true));
    }

    /// Keeps only the records whose index `keep` accepts, in order (`keep` is asked once per
    /// record and per list the batch holds, with indices in ascending order).
    pub fn retain_by(&mut self, keep: impl Fn(usize) -> bool) {
        fn retain_indexed<T>(v: &mut Vec<T>, keep: &impl Fn(usize) -> bool) {
            let mut i = 0;
            v.retain(|_| {
                let k = keep(i);
                i += 1;
                k
            });
        }
        retain_indexed(&mut self.spans, &keep);
        if let Some(Metadata::PerRecord(meta)) = &mut self.meta {
            retain_indexed(meta, &keep);
            self.meta_bytes = self.meta.as_ref().map_or(0, Metadata::heap_bytes);
        }
        if let Some(routes) = &mut self.routes {
            retain_indexed(routes, &keep);
        }
        self.payload_bytes = self.spans.iter().map(|s| s.len() as u64).sum();
    }

    /// A new batch sharing this chunk with only the records at `indices` (ascending).
    pub fn select(&self, indices: &[usize]) -> Batch {
        let spans: Vec<Span> = indices
            .iter()
            .filter_map(|&i| self.spans.get(i))
            .copied()
            .collect();
        let meta = self.meta.as_ref().map(|m| match m {
            Metadata::Shared(m) => Metadata::Shared(m.clone()),
            Metadata::PerRecord(v) => {
                Metadata::PerRecord(indices.iter().filter_map(|&i| v.get(i)).cloned().collect())
            }
        });
        let payload_bytes = spans.iter().map(|s| s.len() as u64).sum();
        Batch {
            data: self.data.clone(),
            spans,
            payload_bytes,
            origin: self.origin.clone(),
            meta_bytes: meta.as_ref().map_or(0, Metadata::heap_bytes),
            meta,
            routes: None,
            hold: self.hold.clone(),
        }
    }

    /// Drops the route masks (after dispatch a sink's batch has no use for them).
    pub fn clear_routes(&mut self) {
        self.routes = None;
    }

    /// Splits the batch in two at record `at`: `self` keeps `..at`, the result holds `at..`.
    pub fn split_off(&mut self, at: usize) -> Batch {
        let at = at.min(self.len());
        let spans = self.spans.split_off(at);
        let meta = self.meta.as_mut().map(|m| match m {
            Metadata::Shared(m) => Metadata::Shared(m.clone()),
            Metadata::PerRecord(v) => Metadata::PerRecord(v.split_off(at.min(v.len()))),
        });
        if matches!(self.meta, Some(Metadata::PerRecord(_))) {
            self.meta_bytes = self.meta.as_ref().map_or(0, Metadata::heap_bytes);
        }
        let routes = self.routes.as_mut().map(|r| r.split_off(at.min(r.len())));
        let tail_bytes: u64 = spans.iter().map(|s| s.len() as u64).sum();
        self.payload_bytes -= tail_bytes;
        Batch {
            data: self.data.clone(),
            spans,
            payload_bytes: tail_bytes,
            origin: self.origin.clone(),
            meta_bytes: meta.as_ref().map_or(0, Metadata::heap_bytes),
            meta,
            routes,
            hold: self.hold.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(line: u64) -> Origin {
        Origin {
            source: Arc::from("stdin"),
            arrival_unix_nanos: 0,
            arrival: Instant::now(),
            position: PositionBase::Line(line),
        }
    }

    fn batch(text: &str) -> Batch {
        let mut spans = Vec::new();
        let mut start = 0u32;
        for (i, b) in text.bytes().enumerate() {
            if b == b'\n' {
                if i as u32 > start {
                    spans.push(Span {
                        start,
                        end: i as u32,
                    });
                }
                start = i as u32 + 1;
            }
        }
        Batch::new(Bytes::copy_from_slice(text.as_bytes()), spans, origin(10))
    }

    #[test]
    fn payloads_and_sizes() {
        let b = batch("ab\ncde\n\nf\n");
        assert_eq!(b.len(), 3);
        assert_eq!(b.payload(1), b"cde");
        assert_eq!(b.payload_bytes(), 6);
        assert_eq!(&b.payload_bytes_of(2)[..], b"f");
    }

    #[test]
    fn positions_count_lines_including_skipped_ones() {
        let b = batch("ab\ncde\n\nf\n");
        assert_eq!(
            b.positions(&[0, 1, 2]),
            vec![Position::Line(10), Position::Line(11), Position::Line(13)]
        );
        assert_eq!(b.position(2), Position::Line(13));
    }

    #[test]
    fn retain_keeps_meta_and_routes_aligned() {
        let mut b = batch("a\nb\nc\n").with_meta(vec![
            RecordMeta {
                partition_key: Some("ka".into()),
                ..Default::default()
            },
            RecordMeta::default(),
            RecordMeta {
                partition_key: Some("kc".into()),
                ..Default::default()
            },
        ]);
        b.set_routes(vec![1, 2, 4]);
        b.retain(|_, r| r.payload != b"b");
        assert_eq!(b.len(), 2);
        assert_eq!(b.record(1).partition_key(), Some("kc"));
        assert_eq!(b.routes(), Some(&[1u64, 4][..]));
        assert_eq!(b.payload_bytes(), 2);
    }

    #[test]
    fn shared_meta_is_stored_once_and_survives_select_split_and_retain() {
        let big: Arc<[(Box<str>, Box<str>)]> =
            vec![("site".into(), "x".repeat(4000).into_boxed_str())].into();
        let meta = RecordMeta {
            partition_key: Some("dev-1".into()),
            explicit_hash_key: None,
            attributes: big,
        };
        let text = "a\n".repeat(2000);
        let plain = batch(&text);
        let base = plain.retained_bytes();
        let mut b = plain.with_shared_meta(meta.clone());
        // One copy of the 4 KB attribute, not 2000.
        assert!(b.retained_bytes() < base + 4200, "{}", b.retained_bytes());
        assert_eq!(b.record(1999).attribute("site").map(str::len), Some(4000));
        assert_eq!(b.record(0).partition_key(), Some("dev-1"));
        let s = b.select(&[0, 5]);
        assert!(matches!(s.metadata(), Some(Metadata::Shared(_))));
        assert_eq!(s.record(1).partition_key(), Some("dev-1"));
        assert_eq!(s.meta(2), None);
        let tail = b.split_off(1000);
        assert_eq!(tail.record(999).partition_key(), Some("dev-1"));
        b.retain(|i, _| i % 2 == 0);
        assert_eq!(b.len(), 500);
        assert!(b.retained_bytes() < base + 4200);
        // A per-record list of copies of one entry collapses to a shared one (what a stage that
        // rebuilds a batch record by record hands back).
        let rebuilt = batch(&text).with_meta(vec![meta.clone(); 2000]);
        assert!(matches!(rebuilt.metadata(), Some(Metadata::Shared(_))));
        assert_eq!(
            rebuilt.retained_bytes(),
            base + Metadata::Shared(meta.clone()).heap_bytes()
        );
        // Distinct entries stay per record and are counted.
        let distinct: Vec<RecordMeta> = (0..2000)
            .map(|i| RecordMeta {
                partition_key: Some(format!("k{i}").into()),
                ..meta.clone()
            })
            .collect();
        let d = batch(&text).with_meta(distinct);
        assert!(matches!(d.metadata(), Some(Metadata::PerRecord(_))));
        assert_eq!(d.record(7).partition_key(), Some("k7"));
        // The shared attribute list counts once, each entry and its key per record.
        let per = std::mem::size_of::<RecordMeta>() as u64;
        assert!(d.retained_bytes() > base + 2000 * per);
        assert!(d.retained_bytes() < base + 2000 * (per + 8) + 4200);
    }

    #[test]
    fn select_and_split_share_the_chunk() {
        let mut b = batch("a\nbb\nccc\n");
        let s = b.select(&[0, 2]);
        assert_eq!(s.payload(1), b"ccc");
        assert_eq!(s.payload_bytes(), 4);
        let tail = b.split_off(1);
        assert_eq!(b.len(), 1);
        assert_eq!(tail.len(), 2);
        assert_eq!(tail.payload_bytes() + b.payload_bytes(), 6);
        assert_eq!(tail.position(0), Position::Line(11));
    }
}
