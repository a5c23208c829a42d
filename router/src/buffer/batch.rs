//! How a [`Batch`] is kept in a log entry (pure: no I/O), so that what a sink needs besides the
//! payloads survives the disk: the source name, the arrival time (path templates, latency) and
//! the per-record metadata (partition keys, explicit hash keys, attributes).
//!
//! An entry's records (see [`super::format`]) are, for a batch of `n` records:
//!
//! ```text
//! [0]          batch header: b"ERBH" | version | flags (bit 0: metadata follows, bit 1: it is
//!              shared) | arrival_unix_nanos u64 LE | source_len u16 LE | source (UTF-8)
//! [1 ..= n]    the payloads, as they are
//! [n+1 ..= 2n] with per-record metadata, one per record: key, explicit hash key (each: len u16
//!              LE and bytes, or 0xFFFF for none), attr_count u16 LE, (k_len u16, k, v_len u16, v)*
//! [n+1]        with shared metadata (version 2): one such record for the whole batch
//! ```
//!
//! Version 1 headers (no shared metadata) are still written when a batch has no shared metadata,
//! so older builds read those entries. Entries whose first record is not a batch header are read
//! as bare payloads (no metadata). Per-record attribute lists equal to the previous record's are
//! read back as one shared list, so a log written by an older build does not multiply them in
//! memory.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::core::record::{Batch, Metadata, Origin, PositionBase, RecordMeta, Span};

/// The first bytes of a batch header record.
pub const BATCH_MAGIC: [u8; 4] = *b"ERBH";

/// Headers without shared metadata.
const VERSION: u8 = 1;
/// Headers of batches with shared metadata.
const VERSION_SHARED: u8 = 2;
const HAS_META: u8 = 1;
const SHARED_META: u8 = 2;
const NONE: u16 = u16::MAX;

/// The records of `batch`'s entry: its header, its payloads, and its metadata if it has any.
/// The owned buffers (header, metadata) are in `owned`, which the returned slices borrow.
pub fn encode<'b>(batch: &'b Batch, owned: &'b mut Vec<Vec<u8>>) -> Vec<&'b [u8]> {
    owned.clear();
    let meta = batch.metadata();
    let (version, flags) = match meta {
        None => (VERSION, 0),
        Some(Metadata::Shared(_)) => (VERSION_SHARED, HAS_META | SHARED_META),
        Some(Metadata::PerRecord(_)) => (VERSION, HAS_META),
    };
    let origin = batch.origin();
    let source = origin.source.as_bytes();
    let source = &source[..source.len().min(usize::from(u16::MAX - 1))];
    let mut header = Vec::with_capacity(20 + source.len());
    header.extend_from_slice(&BATCH_MAGIC);
    header.push(version);
    header.push(flags);
    header.extend_from_slice(&origin.arrival_unix_nanos.to_le_bytes());
    header.extend_from_slice(&(source.len() as u16).to_le_bytes());
    header.extend_from_slice(source);
    owned.push(header);
    match meta {
        None => {}
        Some(Metadata::Shared(m)) => owned.push(meta_record(m)),
        Some(Metadata::PerRecord(v)) => owned.extend(v.iter().map(meta_record)),
    }
    let (header, metas) = owned
        .split_first()
        .map_or((&[][..], &[][..]), |(h, m)| (&h[..], m));
    let mut records = Vec::with_capacity(1 + batch.len() + metas.len());
    records.push(header);
    records.extend((0..batch.len()).map(|i| batch.payload(i)));
    records.extend(metas.iter().map(Vec::as_slice));
    records
}

/// One metadata record.
fn meta_record(meta: &RecordMeta) -> Vec<u8> {
    let mut m = Vec::new();
    put_opt(&mut m, meta.partition_key.as_deref());
    put_opt(&mut m, meta.explicit_hash_key.as_deref());
    let attrs = &meta.attributes[..meta.attributes.len().min(usize::from(u16::MAX))];
    m.extend_from_slice(&(attrs.len() as u16).to_le_bytes());
    for (k, v) in attrs {
        put_str(&mut m, k);
        put_str(&mut m, v);
    }
    m
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    let b = &b[..b.len().min(usize::from(NONE - 1))];
    out.extend_from_slice(&(b.len() as u16).to_le_bytes());
    out.extend_from_slice(b);
}

fn put_opt(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => put_str(out, s),
        None => out.extend_from_slice(&NONE.to_le_bytes()),
    }
}

/// A batch read back: the payload spans into the entry's data, the origin and the metadata.
#[derive(Debug)]
pub struct Decoded {
    /// Where each payload is in the entry's data.
    pub spans: Vec<Span>,
    /// Source name and arrival time, when the entry has a batch header.
    pub source: Option<String>,
    /// Arrival time (Unix nanoseconds), when the entry has a batch header.
    pub arrival_unix_nanos: Option<u64>,
    /// The metadata, when the batch had any.
    pub meta: Option<Metadata>,
}

/// Reads an entry's records (`spans` into `data`) back into a batch's parts. A malformed header
/// or metadata record (which the entry checksum makes very unlikely) is reported with what was
/// wrong; the caller delivers the payloads without it.
pub fn decode(data: &[u8], spans: &[Span]) -> Result<Decoded, String> {
    let bytes = |s: &Span| {
        data.get(s.start as usize..s.end as usize)
            .unwrap_or_default()
    };
    let Some((first, rest)) = spans.split_first() else {
        return Ok(bare(spans));
    };
    let h = bytes(first);
    if h.len() < 16 || h[..4] != BATCH_MAGIC {
        return Ok(bare(spans));
    }
    if h[4] != VERSION && h[4] != VERSION_SHARED {
        return Err(format!(
            "batch header version {} (this build reads {VERSION} and {VERSION_SHARED})",
            h[4]
        ));
    }
    let has_meta = h[5] & HAS_META != 0;
    let shared = has_meta && h[5] & SHARED_META != 0;
    let arrival = u64::from_le_bytes(h[6..14].try_into().unwrap_or_default());
    let source_len = usize::from(u16::from_le_bytes([h[14], h[15]]));
    let source = h
        .get(16..16 + source_len)
        .ok_or("batch header: source name cut short")?;
    let source = String::from_utf8_lossy(source).into_owned();
    let (n, meta) = if shared {
        let Some((last, payloads)) = rest.split_last() else {
            return Err("shared metadata announced but missing".into());
        };
        let m = read_meta(bytes(last), None).ok_or("the shared metadata is malformed")?;
        (payloads.len(), Some(Metadata::Shared(m)))
    } else if has_meta {
        if rest.len() % 2 != 0 {
            return Err(format!(
                "{} records after the header: not payload/metadata pairs",
                rest.len()
            ));
        }
        let n = rest.len() / 2;
        let mut out: Vec<RecordMeta> = Vec::with_capacity(n);
        for (i, s) in rest[n..].iter().enumerate() {
            let m = read_meta(bytes(s), out.last())
                .ok_or_else(|| format!("metadata of record {i} is malformed"))?;
            out.push(m);
        }
        (n, Some(Metadata::PerRecord(out)))
    } else {
        (rest.len(), None)
    };
    Ok(Decoded {
        spans: rest[..n].to_vec(),
        source: Some(source),
        arrival_unix_nanos: Some(arrival),
        meta,
    })
}

fn bare(spans: &[Span]) -> Decoded {
    Decoded {
        spans: spans.to_vec(),
        source: None,
        arrival_unix_nanos: None,
        meta: None,
    }
}

/// Reads one metadata record; an attribute list equal to `prev`'s is shared with it.
fn read_meta(mut b: &[u8], prev: Option<&RecordMeta>) -> Option<RecordMeta> {
    fn u16_at(b: &mut &[u8]) -> Option<u16> {
        let (v, rest) = b.split_first_chunk::<2>()?;
        *b = rest;
        Some(u16::from_le_bytes(*v))
    }
    fn str_at(b: &mut &[u8], len: u16) -> Option<Box<str>> {
        let len = usize::from(len);
        let s = b.get(..len)?;
        *b = &b[len..];
        Some(String::from_utf8_lossy(s).into())
    }
    fn opt(b: &mut &[u8]) -> Option<Option<std::sync::Arc<str>>> {
        match u16_at(b)? {
            NONE => Some(None),
            len => str_at(b, len).map(|s| Some(s.into())),
        }
    }
    let partition_key = opt(&mut b)?;
    let explicit_hash_key = opt(&mut b)?;
    let count = u16_at(&mut b)?;
    let mut attributes = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let kl = u16_at(&mut b)?;
        let k = str_at(&mut b, kl)?;
        let vl = u16_at(&mut b)?;
        let v = str_at(&mut b, vl)?;
        attributes.push((k, v));
    }
    let attributes = match prev {
        Some(p) if p.attributes[..] == attributes[..] => p.attributes.clone(),
        _ => attributes.into(),
    };
    b.is_empty().then_some(RecordMeta {
        partition_key,
        explicit_hash_key,
        attributes,
    })
}

/// How many records the reader delivers from an entry of `count` records whose first record
/// is `first`, and the batch's arrival time (Unix nanoseconds) when the entry has a batch
/// header, without decoding the rest: what [`decode`] gives, or for an entry it cannot decode,
/// the payloads the reader then delivers without their metadata (all but the header).
pub fn summary(first: Option<&[u8]>, count: u32) -> (u32, Option<u64>) {
    let Some(h) = first.filter(|h| h.len() >= 16 && h[..4] == BATCH_MAGIC) else {
        return (count, None);
    };
    let fallback = (count.saturating_sub(1), None);
    let source_len = usize::from(u16::from_le_bytes([h[14], h[15]]));
    if (h[4] != VERSION && h[4] != VERSION_SHARED) || h.len() < 16 + source_len {
        return fallback;
    }
    let arrival = Some(u64::from_le_bytes(h[6..14].try_into().unwrap_or_default()));
    let rest = count - 1;
    if h[5] & HAS_META == 0 {
        (rest, arrival)
    } else if h[5] & SHARED_META != 0 {
        if rest == 0 {
            return fallback;
        }
        (rest - 1, arrival)
    } else if rest.is_multiple_of(2) {
        (rest / 2, arrival)
    } else {
        fallback
    }
}

/// The origin of a batch read back from `buffer_name`'s log: the recorded source and arrival
/// (latency then includes the time in the buffer, also across restarts), given `now`.
pub fn origin(d: &Decoded, buffer_name: &str, now_unix_nanos: u64, now: Instant) -> Origin {
    let arrival_unix_nanos = d.arrival_unix_nanos.unwrap_or(now_unix_nanos);
    let age = Duration::from_nanos(now_unix_nanos.saturating_sub(arrival_unix_nanos));
    Origin {
        source: Arc::from(
            d.source
                .clone()
                .unwrap_or_else(|| format!("buffer:{buffer_name}")),
        ),
        arrival_unix_nanos,
        arrival: now.checked_sub(age).unwrap_or(now),
        position: PositionBase::None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use bytes::Bytes;

    /// Lays records out the way a log entry read back does: one buffer, one span each.
    fn stored(records: &[&[u8]]) -> (Vec<u8>, Vec<Span>) {
        let mut data = Vec::new();
        let mut spans = Vec::new();
        for r in records {
            let start = data.len() as u32;
            data.extend_from_slice(r);
            spans.push(Span {
                start,
                end: data.len() as u32,
            });
            data.extend_from_slice(b"..");
        }
        (data, spans)
    }

    fn batch(meta: bool) -> Batch {
        let data = Bytes::from_static(b"{\"a\":1}\n{\"b\":2}\n{\"c\":3}\n");
        let spans = vec![
            Span { start: 0, end: 7 },
            Span { start: 8, end: 15 },
            Span { start: 16, end: 23 },
        ];
        let origin = Origin {
            source: Arc::from("web"),
            arrival_unix_nanos: 1_700_000_000_123_456_789,
            arrival: Instant::now(),
            position: PositionBase::None,
        };
        let b = Batch::new(data, spans, origin);
        if !meta {
            return b;
        }
        b.with_meta(vec![
            RecordMeta {
                partition_key: Some("k1".into()),
                explicit_hash_key: Some("340282366920938463463374607431768211455".into()),
                attributes: vec![("site".into(), "plant-1".into()), ("é".into(), "".into())].into(),
            },
            RecordMeta::default(),
            RecordMeta {
                partition_key: Some("".into()),
                explicit_hash_key: None,
                attributes: Vec::new().into(),
            },
        ])
    }

    #[test]
    fn a_batch_comes_back_with_source_arrival_and_metadata() {
        for with_meta in [false, true] {
            let b = batch(with_meta);
            let mut owned = Vec::new();
            let records = encode(&b, &mut owned);
            assert_eq!(records.len(), 1 + 3 * if with_meta { 2 } else { 1 });
            let (data, spans) = stored(&records);
            let d = decode(&data, &spans).unwrap();
            let payloads: Vec<&[u8]> = d
                .spans
                .iter()
                .map(|s| &data[s.start as usize..s.end as usize])
                .collect();
            assert_eq!(payloads, [&b"{\"a\":1}"[..], b"{\"b\":2}", b"{\"c\":3}"]);
            assert_eq!(d.source.as_deref(), Some("web"));
            assert_eq!(d.arrival_unix_nanos, Some(1_700_000_000_123_456_789));
            let want: Option<Metadata> = with_meta.then(|| {
                Metadata::PerRecord((0..3).map(|i| b.meta(i).cloned().unwrap()).collect())
            });
            assert_eq!(d.meta, want);
        }
    }

    #[test]
    fn shared_metadata_is_stored_once() {
        let shared = RecordMeta {
            partition_key: Some("dev-1".into()),
            explicit_hash_key: None,
            attributes: vec![("site".into(), "x".repeat(4000).into_boxed_str())].into(),
        };
        let b = batch(false).with_shared_meta(shared.clone());
        let mut owned = Vec::new();
        let records = encode(&b, &mut owned);
        // Header, three payloads, one metadata record.
        assert_eq!(records.len(), 5);
        let total: usize = records.iter().map(|r| r.len()).sum();
        assert!(total < 4200, "{total}");
        let (data, spans) = stored(&records);
        let d = decode(&data, &spans).unwrap();
        assert_eq!(d.spans.len(), 3);
        assert_eq!(d.meta, Some(Metadata::Shared(shared.clone())));
        // Cut short: an error, not a panic.
        assert!(decode(&data, &spans[..1]).is_err());
        // Per-record lists of equal attributes (a log of an older build) share one list.
        let per = batch(false).with_metadata(Metadata::PerRecord(vec![
            RecordMeta {
                attributes: shared.attributes.to_vec().into(),
                ..RecordMeta::default()
            };
            3
        ]));
        let records = encode(&per, &mut owned);
        let (data, spans) = stored(&records);
        let Some(Metadata::PerRecord(v)) = decode(&data, &spans).unwrap().meta else {
            panic!("per-record metadata expected")
        };
        assert!(Arc::ptr_eq(&v[0].attributes, &v[2].attributes));
    }

    #[test]
    fn entries_without_a_header_are_bare_payloads() {
        let (data, spans) = stored(&[b"x", b"yy"]);
        let d = decode(&data, &spans).unwrap();
        assert_eq!(d.spans, spans);
        assert!(d.source.is_none() && d.meta.is_none());
        let o = origin(&d, "out", 5_000, Instant::now());
        assert_eq!(&*o.source, "buffer:out");
        assert_eq!(o.arrival_unix_nanos, 5_000);
    }

    #[test]
    fn malformed_metadata_is_an_error_not_a_panic() {
        let b = batch(true);
        let mut owned = Vec::new();
        let mut records: Vec<Vec<u8>> = encode(&b, &mut owned).iter().map(|r| r.to_vec()).collect();
        for cut in 0..records[4].len() {
            let mut r = records.clone();
            r[4].truncate(cut);
            let refs: Vec<&[u8]> = r.iter().map(Vec::as_slice).collect();
            let (data, spans) = stored(&refs);
            assert!(decode(&data, &spans).is_err(), "cut at {cut}");
        }
        // An odd number of records after a header that says metadata follows.
        records.pop();
        let refs: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
        let (data, spans) = stored(&refs);
        assert!(decode(&data, &spans).is_err());
    }

    /// `summary` counts what the reader delivers: the decoded payloads, or all but the header
    /// when the entry cannot be decoded, or every record of a bare entry.
    #[test]
    fn a_summary_counts_the_records_the_reader_delivers() {
        let shared = batch(false).with_shared_meta(RecordMeta::default());
        let mut owned = Vec::new();
        for b in [batch(false), batch(true), shared] {
            let records = encode(&b, &mut owned);
            let (data, spans) = stored(&records);
            let d = decode(&data, &spans).unwrap();
            let n = records.len() as u32;
            assert_eq!(
                summary(records.first().copied(), n),
                (d.spans.len() as u32, d.arrival_unix_nanos)
            );
            assert_eq!(d.spans.len(), 3);
        }
        assert_eq!(summary(Some(b"x"), 2), (2, None));
        assert_eq!(summary(None, 0), (0, None));
        // An odd number of records after a header that says metadata follows: the reader
        // delivers all but the header.
        let with_meta = batch(true);
        let records = encode(&with_meta, &mut owned);
        assert_eq!(summary(records.first().copied(), 6), (5, None));
        let mut header = records[0].to_vec();
        header[4] = 9;
        assert_eq!(summary(Some(&header), 4), (3, None), "unknown version");
        assert_eq!(
            summary(Some(&records[0][..17]), 4),
            (3, None),
            "source cut short"
        );
    }

    #[test]
    fn latency_counts_the_time_in_the_buffer() {
        let d = Decoded {
            spans: Vec::new(),
            source: Some("s".into()),
            arrival_unix_nanos: Some(1_000_000_000),
            meta: None,
        };
        let now = Instant::now();
        let o = origin(&d, "out", 3_000_000_000, now);
        assert_eq!(now.duration_since(o.arrival), Duration::from_secs(2));
    }
}
