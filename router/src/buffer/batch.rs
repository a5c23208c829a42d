//! How a [`Batch`] is kept in a log entry (pure: no I/O), so that what a sink needs besides the
//! payloads survives the disk: the source name, the arrival time (path templates, latency) and
//! the per-record metadata (partition keys, explicit hash keys, attributes).
//!
//! An entry's records (see [`super::format`]) are, for a batch of `n` records:
//!
//! ```text
//! [0]          batch header: b"ERBH" | version 1 | flags (bit 0: metadata follows)
//!              | arrival_unix_nanos u64 LE | source_len u16 LE | source (UTF-8)
//! [1 ..= n]    the payloads, as they are
//! [n+1 ..= 2n] with metadata, one per record: key, explicit hash key (each: len u16 LE and
//!              bytes, or 0xFFFF for none), attr_count u16 LE, (k_len u16, k, v_len u16, v)*
//! ```
//!
//! Entries whose first record is not a batch header are read as bare payloads (no metadata).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::core::record::{Batch, Origin, PositionBase, RecordMeta, Span};

/// The first bytes of a batch header record.
pub const BATCH_MAGIC: [u8; 4] = *b"ERBH";

const VERSION: u8 = 1;
const HAS_META: u8 = 1;
const NONE: u16 = u16::MAX;

/// The records of `batch`'s entry: its header, its payloads, and its metadata if it has any.
/// The owned buffers (header, metadata) are in `owned`, which the returned slices borrow.
pub fn encode<'b>(batch: &'b Batch, owned: &'b mut Vec<Vec<u8>>) -> Vec<&'b [u8]> {
    owned.clear();
    let has_meta = (0..batch.len()).any(|i| batch.meta(i).is_some());
    let origin = batch.origin();
    let source = origin.source.as_bytes();
    let source = &source[..source.len().min(usize::from(u16::MAX - 1))];
    let mut header = Vec::with_capacity(20 + source.len());
    header.extend_from_slice(&BATCH_MAGIC);
    header.push(VERSION);
    header.push(if has_meta { HAS_META } else { 0 });
    header.extend_from_slice(&origin.arrival_unix_nanos.to_le_bytes());
    header.extend_from_slice(&(source.len() as u16).to_le_bytes());
    header.extend_from_slice(source);
    owned.push(header);
    if has_meta {
        for i in 0..batch.len() {
            let mut m = Vec::new();
            let meta = batch.meta(i);
            put_opt(&mut m, meta.and_then(|m| m.partition_key.as_deref()));
            put_opt(&mut m, meta.and_then(|m| m.explicit_hash_key.as_deref()));
            let attrs = meta.map_or(&[][..], |m| &m.attributes[..]);
            let attrs = &attrs[..attrs.len().min(usize::from(u16::MAX))];
            m.extend_from_slice(&(attrs.len() as u16).to_le_bytes());
            for (k, v) in attrs {
                put_str(&mut m, k);
                put_str(&mut m, v);
            }
            owned.push(m);
        }
    }
    let (header, metas) = owned
        .split_first()
        .map_or((&[][..], &[][..]), |(h, m)| (&h[..], m));
    let mut records = Vec::with_capacity(1 + batch.len() * if has_meta { 2 } else { 1 });
    records.push(header);
    records.extend((0..batch.len()).map(|i| batch.payload(i)));
    records.extend(metas.iter().map(Vec::as_slice));
    records
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
    /// Per-record metadata, when the batch had any.
    pub meta: Option<Vec<RecordMeta>>,
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
    if h[4] != VERSION {
        return Err(format!(
            "batch header version {} (this build reads {VERSION})",
            h[4]
        ));
    }
    let has_meta = h[5] & HAS_META != 0;
    let arrival = u64::from_le_bytes(h[6..14].try_into().unwrap_or_default());
    let source_len = usize::from(u16::from_le_bytes([h[14], h[15]]));
    let source = h
        .get(16..16 + source_len)
        .ok_or("batch header: source name cut short")?;
    let source = String::from_utf8_lossy(source).into_owned();
    let n = if has_meta { rest.len() / 2 } else { rest.len() };
    if has_meta && rest.len() % 2 != 0 {
        return Err(format!(
            "{} records after the header: not payload/metadata pairs",
            rest.len()
        ));
    }
    let meta = if has_meta {
        let mut out = Vec::with_capacity(n);
        for (i, s) in rest[n..].iter().enumerate() {
            out.push(
                read_meta(bytes(s))
                    .ok_or_else(|| format!("metadata of record {i} is malformed"))?,
            );
        }
        Some(out)
    } else {
        None
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

fn read_meta(mut b: &[u8]) -> Option<RecordMeta> {
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
    fn opt(b: &mut &[u8]) -> Option<Option<Box<str>>> {
        match u16_at(b)? {
            NONE => Some(None),
            len => str_at(b, len).map(Some),
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
    b.is_empty().then_some(RecordMeta {
        partition_key,
        explicit_hash_key,
        attributes,
    })
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
                attributes: vec![("site".into(), "plant-1".into()), ("é".into(), "".into())],
            },
            RecordMeta::default(),
            RecordMeta {
                partition_key: Some("".into()),
                explicit_hash_key: None,
                attributes: Vec::new(),
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
            let want: Option<Vec<RecordMeta>> =
                with_meta.then(|| (0..3).map(|i| b.meta(i).cloned().unwrap()).collect());
            assert_eq!(d.meta, want);
        }
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
