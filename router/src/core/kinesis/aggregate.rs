//! KPL aggregation: many user records in one Kinesis record, and back.
//!
//! The format is the Kinesis Producer Library's, which the Kinesis Client Library and
//! `aws-kinesis-agg` de-aggregate:
//!
//! ```text
//! F3 89 9A C2 | protobuf AggregatedRecord | MD5 of the protobuf bytes (16 bytes)
//!
//! message AggregatedRecord {
//!   repeated string partition_key_table     = 1;
//!   repeated string explicit_hash_key_table = 2;
//!   repeated Record records                 = 3;
//! }
//! message Record {
//!   required uint64 partition_key_index     = 1;
//!   optional uint64 explicit_hash_key_index = 2;
//!   required bytes  data                    = 3;
//!   repeated Tag    tags                    = 4;   // never written; skipped when read
//! }
//! ```
//!
//! This module owns the encoding (written by hand: a varint writer is all protobuf needs here, and
//! it lets the [`Aggregator`] know its exact size before every push), the size accounting, and the
//! parser ([`deaggregate`]). Fields are written in field-number order, tables first, as protobuf
//! libraries do, so the bytes equal those of the KPL and of `aws-kinesis-agg`.
//!
//! The caller aggregates **per predicted shard**: the KCL drops a whole aggregate when one
//! sub-record's hash key falls outside the shard that holds it. An aggregate is sent with the
//! partition key `"a"` and, as explicit hash key, the hash key of its first user record, so it lands
//! where that record would.

use std::collections::HashMap;
use std::ops::Range;

use crate::core::kinesis::hash::{HashKeyError, format_hash_key, hash_key, md5, parse_hash_key};

/// The four bytes that open an aggregated record.
pub const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];

/// Length of the MD5 digest that closes an aggregated record.
pub const DIGEST_LEN: usize = 16;

/// The partition key of every aggregated Kinesis record (the KPL's choice; the explicit hash key
/// decides the shard).
pub const AGGREGATE_PARTITION_KEY: &str = "a";

/// Default aggregate size limit in bytes, data + partition key (the KPL's `AggregationMaxSize`).
pub const AGGREGATE_BYTES_MAX_DEFAULT: usize = 51_200;

/// Bytes of an aggregate beyond its protobuf body: magic, digest and the outer partition key.
const FRAME_BYTES: usize = MAGIC.len() + DIGEST_LEN + AGGREGATE_PARTITION_KEY.len();

/// Protobuf keys (field number << 3 | wire type) of the fields written.
const KEY_PARTITION_KEY_TABLE: u8 = (1 << 3) | 2;
const KEY_EXPLICIT_HASH_KEY_TABLE: u8 = (2 << 3) | 2;
const KEY_RECORDS: u8 = (3 << 3) | 2;
const KEY_PARTITION_KEY_INDEX: u8 = 1 << 3;
const KEY_EXPLICIT_HASH_KEY_INDEX: u8 = 2 << 3;
const KEY_DATA: u8 = (3 << 3) | 2;

/// One record as sent to Kinesis: an aggregate, or a single user record as it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KinesisRecord {
    /// The partition key (`"a"` for an aggregate).
    pub partition_key: String,
    /// The explicit hash key to send, if any (always set for an aggregate).
    pub explicit_hash_key: Option<u128>,
    /// The data blob.
    pub data: Vec<u8>,
    /// How many user records this carries (1 for a raw record).
    pub user_records: usize,
}

impl KinesisRecord {
    /// A single user record, sent as it is.
    pub fn raw(partition_key: String, explicit_hash_key: Option<u128>, data: Vec<u8>) -> Self {
        KinesisRecord {
            partition_key,
            explicit_hash_key,
            data,
            user_records: 1,
        }
    }

    /// Its size as Kinesis counts it against record, request and shard limits: data + partition
    /// key bytes.
    pub fn size(&self) -> usize {
        self.data.len() + self.partition_key.len()
    }

    /// Whether it is in the aggregated format (more than one user record).
    pub fn is_aggregated(&self) -> bool {
        self.user_records > 1
    }

    /// The hash key that decides its shard: the explicit hash key, else MD5 of the partition key.
    pub fn hash_key(&self) -> u128 {
        self.explicit_hash_key
            .unwrap_or_else(|| hash_key(&self.partition_key))
    }
}

/// The aggregate is full: finish it and push the record into a fresh one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("aggregate is full")]
pub struct Full;

/// The first user record of an aggregate, kept to send it raw when it stays alone.
#[derive(Debug)]
struct First {
    partition_key: String,
    explicit_hash_key: Option<u128>,
    /// Where its data lies in `Aggregator::records`.
    data: Range<usize>,
}

/// Packs user records into one aggregated Kinesis record, one at a time, knowing its exact size.
///
/// Push with [`Aggregator::push`] until it answers [`Full`], then [`Aggregator::finish`] and push
/// again. An empty aggregator takes any record, whatever its size (a lone record is sent raw, and
/// the caller checks raw records against the record limit). Partition keys and explicit hash keys
/// are stored once each, in tables; the buffers are reused from one aggregate to the next.
///
/// The aggregator does not look at hash keys: the caller feeds one aggregator per predicted shard.
#[derive(Debug)]
pub struct Aggregator {
    bytes_max: usize,
    /// Encoded `partition_key_table` entries, and each key's index.
    partition_keys: Vec<u8>,
    partition_key_index: HashMap<String, u64>,
    /// Encoded `explicit_hash_key_table` entries (decimal text), and each key's index.
    explicit_hash_keys: Vec<u8>,
    explicit_hash_key_index: HashMap<u128, u64>,
    /// Encoded `records` entries.
    records: Vec<u8>,
    count: usize,
    first: Option<First>,
}

impl Aggregator {
    /// An empty aggregator whose aggregates stay within `bytes_max` bytes (data + the outer
    /// partition key), e.g. [`AGGREGATE_BYTES_MAX_DEFAULT`].
    pub fn new(bytes_max: usize) -> Aggregator {
        Aggregator {
            bytes_max,
            partition_keys: Vec::new(),
            partition_key_index: HashMap::new(),
            explicit_hash_keys: Vec::new(),
            explicit_hash_key_index: HashMap::new(),
            records: Vec::new(),
            count: 0,
            first: None,
        }
    }

    /// The size limit given to [`Aggregator::new`].
    pub fn bytes_max(&self) -> usize {
        self.bytes_max
    }

    /// Number of user records in the current aggregate.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the current aggregate is empty.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Exact size of the current aggregate in the aggregated format, as Kinesis counts it (data +
    /// the partition key `"a"`); 0 when empty. A lone record is sent raw, which is smaller.
    pub fn aggregated_size(&self) -> usize {
        if self.count == 0 {
            0
        } else {
            FRAME_BYTES
                + self.partition_keys.len()
                + self.explicit_hash_keys.len()
                + self.records.len()
        }
    }

    /// Exact [`Aggregator::aggregated_size`] after pushing a record with this partition key,
    /// explicit hash key and data length.
    pub fn size_if_pushed(
        &self,
        partition_key: &str,
        explicit_hash_key: Option<u128>,
        data_len: usize,
    ) -> usize {
        let mut size = FRAME_BYTES
            + self.partition_keys.len()
            + self.explicit_hash_keys.len()
            + self.records.len();
        let pk_index = match self.partition_key_index.get(partition_key) {
            Some(&i) => i,
            None => {
                size += field_len(partition_key.len());
                self.partition_key_index.len() as u64
            }
        };
        let ehk_index = explicit_hash_key.map(|key| match self.explicit_hash_key_index.get(&key) {
            Some(&i) => i,
            None => {
                size += field_len(decimal_len(key));
                self.explicit_hash_key_index.len() as u64
            }
        });
        size + field_len(record_len(pk_index, ehk_index, data_len))
    }

    /// Adds a user record, or answers [`Full`] (and adds nothing) when the aggregate is not empty
    /// and would grow past the size limit.
    ///
    /// # Errors
    ///
    /// [`Full`]: finish the aggregate, then push the record again.
    pub fn push(
        &mut self,
        partition_key: &str,
        explicit_hash_key: Option<u128>,
        data: &[u8],
    ) -> Result<(), Full> {
        if self.count > 0
            && self.size_if_pushed(partition_key, explicit_hash_key, data.len()) > self.bytes_max
        {
            return Err(Full);
        }
        let pk_index = match self.partition_key_index.get(partition_key) {
            Some(&i) => i,
            None => {
                let i = self.partition_key_index.len() as u64;
                put_field(
                    &mut self.partition_keys,
                    KEY_PARTITION_KEY_TABLE,
                    partition_key.as_bytes(),
                );
                self.partition_key_index.insert(partition_key.to_owned(), i);
                i
            }
        };
        let ehk_index = match explicit_hash_key {
            None => None,
            Some(key) => Some(match self.explicit_hash_key_index.get(&key) {
                Some(&i) => i,
                None => {
                    let i = self.explicit_hash_key_index.len() as u64;
                    put_field(
                        &mut self.explicit_hash_keys,
                        KEY_EXPLICIT_HASH_KEY_TABLE,
                        format_hash_key(key).as_bytes(),
                    );
                    self.explicit_hash_key_index.insert(key, i);
                    i
                }
            }),
        };
        let r = &mut self.records;
        r.push(KEY_RECORDS);
        put_varint(r, record_len(pk_index, ehk_index, data.len()) as u64);
        r.push(KEY_PARTITION_KEY_INDEX);
        put_varint(r, pk_index);
        if let Some(i) = ehk_index {
            r.push(KEY_EXPLICIT_HASH_KEY_INDEX);
            put_varint(r, i);
        }
        r.push(KEY_DATA);
        put_varint(r, data.len() as u64);
        let start = r.len();
        r.extend_from_slice(data);
        if self.count == 0 {
            self.first = Some(First {
                partition_key: partition_key.to_owned(),
                explicit_hash_key,
                data: start..r.len(),
            });
        }
        self.count += 1;
        Ok(())
    }

    /// Takes the current aggregate (`None` when empty) and starts a new one.
    ///
    /// One user record comes back raw: its own partition key, explicit hash key and data. Two or
    /// more come back aggregated: partition key `"a"`, the explicit hash key of the first user
    /// record (its explicit hash key, else the MD5 of its partition key), and the framed bytes.
    pub fn finish(&mut self) -> Option<KinesisRecord> {
        let first = self.first.take()?;
        let out = if self.count == 1 {
            let data = self.records.get(first.data).unwrap_or_default().to_vec();
            KinesisRecord::raw(first.partition_key, first.explicit_hash_key, data)
        } else {
            let mut data = Vec::with_capacity(self.aggregated_size());
            data.extend_from_slice(&MAGIC);
            data.extend_from_slice(&self.partition_keys);
            data.extend_from_slice(&self.explicit_hash_keys);
            data.extend_from_slice(&self.records);
            let digest = md5(&data[MAGIC.len()..]);
            data.extend_from_slice(&digest);
            let outer = first
                .explicit_hash_key
                .unwrap_or_else(|| hash_key(&first.partition_key));
            KinesisRecord {
                partition_key: AGGREGATE_PARTITION_KEY.to_owned(),
                explicit_hash_key: Some(outer),
                data,
                user_records: self.count,
            }
        };
        self.partition_keys.clear();
        self.partition_key_index.clear();
        self.explicit_hash_keys.clear();
        self.explicit_hash_key_index.clear();
        self.records.clear();
        self.count = 0;
        Some(out)
    }
}

/// Bytes of a varint.
fn varint_len(v: u64) -> usize {
    // 1 byte per 7 bits; 0 still takes a byte.
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8 & 0x7F) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// Bytes of a length-delimited field with a one-byte key and a `len`-byte body.
fn field_len(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

fn put_field(buf: &mut Vec<u8>, key: u8, body: &[u8]) {
    buf.push(key);
    put_varint(buf, body.len() as u64);
    buf.extend_from_slice(body);
}

/// Bytes of an encoded `Record` body.
fn record_len(pk_index: u64, ehk_index: Option<u64>, data_len: usize) -> usize {
    1 + varint_len(pk_index) + ehk_index.map_or(0, |i| 1 + varint_len(i)) + field_len(data_len)
}

/// Digits of `v` in decimal.
fn decimal_len(v: u128) -> usize {
    v.checked_ilog10().map_or(1, |d| d as usize + 1)
}

/// One user record read back from an aggregate; borrows from the aggregate's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubRecord<'a> {
    /// Its partition key.
    pub partition_key: &'a str,
    /// Its explicit hash key as written (decimal text), if it had one.
    pub explicit_hash_key: Option<&'a str>,
    /// Its data.
    pub data: &'a [u8],
}

impl SubRecord<'_> {
    /// Its hash key: the explicit hash key, else MD5 of the partition key. The KCL drops the
    /// whole aggregate unless this lies in the range of the shard that holds the aggregate.
    ///
    /// # Errors
    ///
    /// When the explicit hash key is not a valid hash key.
    pub fn hash_key(&self) -> Result<u128, HashKeyError> {
        match self.explicit_hash_key {
            Some(text) => parse_hash_key(text),
            None => Ok(hash_key(self.partition_key)),
        }
    }
}

/// Why bytes do not de-aggregate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeaggregateError {
    /// No magic bytes, or too short to hold magic and digest: a plain record.
    #[error("not an aggregated record (no magic bytes)")]
    NoMagic,
    /// The MD5 does not match the body. The KCL then passes the record through as one plain
    /// record.
    #[error("aggregated record has a wrong MD5 digest")]
    BadDigest,
    /// The digest matches but the protobuf body is not a valid `AggregatedRecord`.
    #[error("malformed aggregated record: {0}")]
    Malformed(&'static str),
}

/// Whether `data` is an aggregated record by the KCL's rule: the magic matches and the MD5 is
/// right (the body is not parsed).
pub fn is_aggregated(data: &[u8]) -> bool {
    framed_body(data).is_ok()
}

/// Reads an aggregated record back into its user records, in order.
///
/// # Errors
///
/// [`DeaggregateError::NoMagic`] or [`DeaggregateError::BadDigest`] when it is not an aggregate
/// by the KCL's rule (a consumer treats it as one plain record), [`DeaggregateError::Malformed`]
/// when its body is not a valid `AggregatedRecord` (bad varint, truncated field, wrong wire type,
/// missing required field, index outside its table, key that is not UTF-8).
pub fn deaggregate(data: &[u8]) -> Result<Vec<SubRecord<'_>>, DeaggregateError> {
    let body = framed_body(data)?;
    let mut partition_keys = Vec::new();
    let mut explicit_hash_keys = Vec::new();
    let mut records = Vec::new();
    let mut r = Reader { buf: body };
    while !r.buf.is_empty() {
        let (field, wire) = r.key()?;
        match (field, wire) {
            (1, WIRE_LEN) => partition_keys.push(utf8(r.bytes()?)?),
            (2, WIRE_LEN) => explicit_hash_keys.push(utf8(r.bytes()?)?),
            (3, WIRE_LEN) => records.push(r.bytes()?),
            (1..=3, _) => return Err(DeaggregateError::Malformed("wrong wire type")),
            _ => r.skip(wire)?,
        }
    }
    records
        .into_iter()
        .map(|body| {
            let mut r = Reader { buf: body };
            let (mut pk, mut ehk, mut data) = (None, None, None);
            while !r.buf.is_empty() {
                let (field, wire) = r.key()?;
                match (field, wire) {
                    (1, WIRE_VARINT) => pk = Some(r.varint()?),
                    (2, WIRE_VARINT) => ehk = Some(r.varint()?),
                    (3, WIRE_LEN) => data = Some(r.bytes()?),
                    // Tags, and fields this version does not know, are skipped.
                    (4, WIRE_LEN) => r.skip(wire)?,
                    (1..=4, _) => return Err(DeaggregateError::Malformed("wrong wire type")),
                    _ => r.skip(wire)?,
                }
            }
            let pk = pk.ok_or(DeaggregateError::Malformed(
                "record without partition_key_index",
            ))?;
            let partition_key = table_entry(&partition_keys, pk).ok_or(
                DeaggregateError::Malformed("partition_key_index outside the table"),
            )?;
            let explicit_hash_key = match ehk {
                None => None,
                Some(i) => Some(table_entry(&explicit_hash_keys, i).ok_or(
                    DeaggregateError::Malformed("explicit_hash_key_index outside the table"),
                )?),
            };
            let data = data.ok_or(DeaggregateError::Malformed("record without data"))?;
            Ok(SubRecord {
                partition_key,
                explicit_hash_key,
                data,
            })
        })
        .collect()
}

fn table_entry<'a>(table: &[&'a str], index: u64) -> Option<&'a str> {
    usize::try_from(index)
        .ok()
        .and_then(|i| table.get(i).copied())
}

/// The protobuf body of an aggregate whose magic and digest check out.
fn framed_body(data: &[u8]) -> Result<&[u8], DeaggregateError> {
    let inner = data
        .strip_prefix(&MAGIC)
        .filter(|rest| rest.len() >= DIGEST_LEN)
        .ok_or(DeaggregateError::NoMagic)?;
    let (body, digest) = inner.split_at(inner.len() - DIGEST_LEN);
    if md5(body) == digest {
        Ok(body)
    } else {
        Err(DeaggregateError::BadDigest)
    }
}

fn utf8(bytes: &[u8]) -> Result<&str, DeaggregateError> {
    std::str::from_utf8(bytes).map_err(|_| DeaggregateError::Malformed("key is not UTF-8"))
}

const WIRE_VARINT: u8 = 0;
const WIRE_I64: u8 = 1;
const WIRE_LEN: u8 = 2;
const WIRE_I32: u8 = 5;

/// A cursor over protobuf bytes.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, DeaggregateError> {
        let mut v: u64 = 0;
        for (i, &b) in self.buf.iter().enumerate().take(10) {
            // The tenth byte holds bit 63 only.
            if i == 9 && b > 1 {
                break;
            }
            v |= u64::from(b & 0x7F) << (7 * i);
            if b < 0x80 {
                self.buf = &self.buf[i + 1..];
                return Ok(v);
            }
        }
        Err(DeaggregateError::Malformed("bad varint"))
    }

    fn key(&mut self) -> Result<(u64, u8), DeaggregateError> {
        let key = self.varint()?;
        let field = key >> 3;
        if field == 0 {
            return Err(DeaggregateError::Malformed("field number 0"));
        }
        Ok((field, (key & 7) as u8))
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], DeaggregateError> {
        let n = usize::try_from(n)
            .ok()
            .filter(|&n| n <= self.buf.len())
            .ok_or(DeaggregateError::Malformed("truncated field"))?;
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn bytes(&mut self) -> Result<&'a [u8], DeaggregateError> {
        let len = self.varint()?;
        self.take(len)
    }

    fn skip(&mut self, wire: u8) -> Result<(), DeaggregateError> {
        match wire {
            WIRE_VARINT => self.varint().map(drop),
            WIRE_I64 => self.take(8).map(drop),
            WIRE_LEN => self.bytes().map(drop),
            WIRE_I32 => self.take(4).map(drop),
            _ => Err(DeaggregateError::Malformed("unsupported wire type")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Produced independently by the PyPI package `aws-kinesis-agg` 1.2.3 (protobuf 7.36.2):
    ///
    /// ```python
    /// from aws_kinesis_agg.aggregator import RecordAggregator
    /// agg = RecordAggregator()
    /// agg.add_user_record("device-1", b'{"t":1}')
    /// agg.add_user_record("device-2", b'{"t":2}',
    ///                     explicit_hash_key="170141183460469231731687303715884105728")
    /// agg.add_user_record("device-1", b'')
    /// agg.add_user_record("cl\u00e9", b'\x00\xff')
    /// print(agg.clear_and_get().get_contents()[2].hex())
    /// ```
    const GOLDEN: &str = "f3899ac2\
        0a086465766963652d31\
        0a086465766963652d32\
        0a04636cc3a9\
        1227313730313431313833343630343639323331373331363837333033373135383834313035373238\
        1a0b08001a077b2274223a317d\
        1a0d080110001a077b2274223a327d\
        1a0408001a00\
        1a0608021a0200ff\
        d5a71d18d5560b499bb3916baaf77f30";

    fn golden_input() -> Vec<(&'static str, Option<u128>, &'static [u8])> {
        vec![
            ("device-1", None, br#"{"t":1}"#),
            ("device-2", Some(1u128 << 127), br#"{"t":2}"#),
            ("device-1", None, b""),
            ("clé", None, b"\x00\xff"),
        ]
    }

    #[test]
    fn golden_bytes_match_aws_kinesis_agg() {
        let mut agg = Aggregator::new(AGGREGATE_BYTES_MAX_DEFAULT);
        for (pk, ehk, data) in golden_input() {
            let expected = agg.size_if_pushed(pk, ehk, data.len());
            agg.push(pk, ehk, data).unwrap();
            assert_eq!(agg.aggregated_size(), expected);
        }
        assert_eq!(agg.len(), 4);
        let size = agg.aggregated_size();
        let rec = agg.finish().unwrap();
        assert_eq!(hex(&rec.data), GOLDEN);
        assert_eq!(rec.partition_key, "a");
        assert_eq!(rec.explicit_hash_key, Some(hash_key("device-1")));
        assert_eq!(rec.user_records, 4);
        assert!(rec.is_aggregated());
        assert_eq!(rec.size(), size);
        assert_eq!(rec.size(), rec.data.len() + 1);
        assert_eq!(rec.hash_key(), hash_key("device-1"));
        // And back.
        let subs = deaggregate(&rec.data).unwrap();
        let back: Vec<_> = subs
            .iter()
            .map(|s| (s.partition_key, s.explicit_hash_key, s.data))
            .collect();
        assert_eq!(
            back,
            vec![
                ("device-1", None, &br#"{"t":1}"#[..]),
                (
                    "device-2",
                    Some("170141183460469231731687303715884105728"),
                    &br#"{"t":2}"#[..]
                ),
                ("device-1", None, &b""[..]),
                ("clé", None, &b"\x00\xff"[..]),
            ]
        );
        assert_eq!(subs[1].hash_key(), Ok(1u128 << 127));
        assert_eq!(subs[3].hash_key(), Ok(hash_key("clé")));
        assert!(is_aggregated(&rec.data));
        // The aggregator starts over, empty.
        assert!(agg.is_empty());
        assert_eq!(agg.aggregated_size(), 0);
        assert_eq!(agg.finish(), None);
    }

    #[test]
    fn a_lone_record_is_sent_raw() {
        let mut agg = Aggregator::new(100);
        assert_eq!(agg.bytes_max(), 100);
        agg.push("k", Some(42), b"payload").unwrap();
        assert!(agg.aggregated_size() > "k".len() + 7);
        let rec = agg.finish().unwrap();
        assert_eq!(
            rec,
            KinesisRecord::raw("k".into(), Some(42), b"payload".to_vec())
        );
        assert!(!rec.is_aggregated());
        assert_eq!(rec.size(), 8);
        assert_eq!(rec.hash_key(), 42);
        assert!(!is_aggregated(&rec.data));
        // Buffers are reused: the next aggregate does not see the last one's tables.
        agg.push("k", None, b"x").unwrap();
        agg.push("j", None, b"y").unwrap();
        let subs_rec = agg.finish().unwrap();
        let subs = deaggregate(&subs_rec.data).unwrap();
        assert_eq!(subs.len(), 2);
        assert_eq!(subs[0].explicit_hash_key, None);
    }

    #[test]
    fn full_when_the_next_record_would_pass_the_limit() {
        // Two 10-byte records under key "k": 4 + 16 + 1 + 3 (table) + 2 * 16 = 56 bytes.
        let mut agg = Aggregator::new(56);
        agg.push("k", None, &[1; 10]).unwrap();
        assert_eq!(agg.size_if_pushed("k", None, 10), 56);
        agg.push("k", None, &[2; 10]).unwrap();
        assert_eq!(agg.aggregated_size(), 56);
        assert_eq!(agg.push("k", None, &[]), Err(Full));
        assert_eq!(agg.len(), 2);
        assert_eq!(agg.finish().unwrap().size(), 56);
        // An empty aggregator takes a record bigger than the limit; nothing joins it.
        agg.push("big", None, &[0; 500]).unwrap();
        assert_eq!(agg.push("k", None, b""), Err(Full));
        let rec = agg.finish().unwrap();
        assert_eq!(rec.data.len(), 500);
        assert_eq!(rec.partition_key, "big");
    }

    #[test]
    fn varints() {
        for (v, len) in [
            (0u64, 1usize),
            (1, 1),
            (127, 1),
            (128, 2),
            (16_383, 2),
            (16_384, 3),
            (u64::MAX, 10),
        ] {
            let mut buf = Vec::new();
            put_varint(&mut buf, v);
            assert_eq!(buf.len(), len, "{v}");
            assert_eq!(varint_len(v), len, "{v}");
            let mut r = Reader { buf: &buf };
            assert_eq!(r.varint(), Ok(v));
            assert!(r.buf.is_empty());
        }
        let mut r = Reader {
            buf: &[0xFF; 10][..],
        };
        assert!(r.varint().is_err());
        let mut r = Reader { buf: &[0x80][..] };
        assert!(r.varint().is_err());
        assert_eq!(decimal_len(0), 1);
        assert_eq!(decimal_len(9), 1);
        assert_eq!(decimal_len(10), 2);
        assert_eq!(decimal_len(u128::MAX), 39);
    }

    /// Frames a hand-written protobuf body with magic and digest.
    fn frame(body: &[u8]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(body);
        out.extend_from_slice(&md5(body));
        out
    }

    #[test]
    fn deaggregate_checks_the_frame() {
        assert_eq!(deaggregate(b"plain text"), Err(DeaggregateError::NoMagic));
        assert_eq!(deaggregate(&MAGIC), Err(DeaggregateError::NoMagic));
        assert_eq!(deaggregate(&[]), Err(DeaggregateError::NoMagic));
        let mut bad = frame(b"\x0a\x01k\x1a\x04\x08\x00\x1a\x00");
        assert_eq!(deaggregate(&bad).unwrap().len(), 1);
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(deaggregate(&bad), Err(DeaggregateError::BadDigest));
        assert!(!is_aggregated(&bad));
        // An empty body is a valid aggregate of nothing.
        assert_eq!(deaggregate(&frame(b"")), Ok(vec![]));
    }

    #[test]
    fn deaggregate_rejects_malformed_bodies() {
        let malformed = |body: &[u8]| match deaggregate(&frame(body)) {
            Err(DeaggregateError::Malformed(why)) => why,
            other => panic!("{other:?} for {body:?}"),
        };
        assert_eq!(
            malformed(b"\x0a\x01k\x1a\x02\x08\x00"),
            "record without data"
        );
        assert_eq!(
            malformed(b"\x1a\x02\x1a\x00"),
            "record without partition_key_index"
        );
        assert_eq!(
            malformed(b"\x0a\x01k\x1a\x04\x08\x01\x1a\x00"),
            "partition_key_index outside the table"
        );
        assert_eq!(
            malformed(b"\x0a\x01k\x1a\x06\x08\x00\x10\x00\x1a\x00"),
            "explicit_hash_key_index outside the table"
        );
        assert_eq!(malformed(b"\x0a\x05k"), "truncated field");
        assert_eq!(malformed(b"\x0a\x01\xff"), "key is not UTF-8");
        assert_eq!(malformed(b"\x08\x01"), "wrong wire type");
        assert_eq!(malformed(b"\x1a\x02\x0a\x00"), "wrong wire type");
        assert_eq!(malformed(b"\x00"), "field number 0");
        assert_eq!(malformed(b"\x4b"), "unsupported wire type");
        assert_eq!(malformed(b"\x0a"), "bad varint");
    }

    #[test]
    fn deaggregate_skips_tags_and_unknown_fields() {
        // Table "k"; unknown fields 9 (varint), 10 (fixed64), 11 (fixed32) and 12 (bytes) at
        // the top; a record with a tag {key "t", value "v"} and an unknown field 7.
        let mut body =
            b"\x0a\x01k\x48\x05\x51\x01\x02\x03\x04\x05\x06\x07\x08\x5d\x01\x02\x03\x04\x62\x01z"
                .to_vec();
        let record = b"\x08\x00\x1a\x02hi\x22\x06\x0a\x01t\x12\x01v\x38\x01";
        body.push(0x1a);
        body.push(record.len() as u8);
        body.extend_from_slice(record);
        let framed = frame(&body);
        let subs = deaggregate(&framed).unwrap();
        assert_eq!(
            subs,
            vec![SubRecord {
                partition_key: "k",
                explicit_hash_key: None,
                data: b"hi"
            }]
        );
    }

    #[derive(Debug, Clone)]
    struct Input {
        pk: String,
        ehk: Option<u128>,
        data: Vec<u8>,
    }

    fn inputs() -> impl Strategy<Value = Vec<Input>> {
        let pk = prop_oneof![
            Just("a".to_owned()),
            Just("device-1".to_owned()),
            Just("clé".to_owned()),
            "[a-z0-9é€]{1,20}",
            "x{200,256}",
        ];
        let ehk = prop_oneof![
            4 => Just(None),
            1 => Just(Some(0u128)),
            1 => Just(Some(u128::MAX)),
            1 => any::<u128>().prop_map(Some),
        ];
        let data = prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..40),
            proptest::collection::vec(any::<u8>(), 100..400),
        ];
        proptest::collection::vec(
            (pk, ehk, data).prop_map(|(pk, ehk, data)| Input { pk, ehk, data }),
            0..60,
        )
    }

    proptest! {
        /// Sizes are exact, every aggregate stays within the limit (or is a lone record sent raw),
        /// and de-aggregation gives back every record, in order.
        #[test]
        fn aggregates_round_trip_within_the_limit(inputs in inputs(), limit in 0usize..4000) {
            let mut agg = Aggregator::new(limit);
            let mut out: Vec<KinesisRecord> = Vec::new();
            for inp in &inputs {
                let predicted = agg.size_if_pushed(&inp.pk, inp.ehk, inp.data.len());
                let before = agg.aggregated_size();
                match agg.push(&inp.pk, inp.ehk, &inp.data) {
                    Ok(()) => prop_assert_eq!(agg.aggregated_size(), predicted),
                    Err(Full) => {
                        prop_assert!(predicted > limit);
                        prop_assert_eq!(agg.aggregated_size(), before);
                        let size = agg.aggregated_size();
                        let rec = agg.finish().unwrap();
                        if rec.is_aggregated() {
                            prop_assert_eq!(rec.size(), size);
                        }
                        out.push(rec);
                        agg.push(&inp.pk, inp.ehk, &inp.data).unwrap();
                    }
                }
            }
            let size = agg.aggregated_size();
            if let Some(rec) = agg.finish() {
                if rec.is_aggregated() {
                    prop_assert_eq!(rec.size(), size);
                }
                out.push(rec);
            }
            let mut back = Vec::new();
            for rec in &out {
                if rec.is_aggregated() {
                    prop_assert!(rec.size() <= limit);
                    prop_assert_eq!(&rec.partition_key, "a");
                    let subs = deaggregate(&rec.data).unwrap();
                    prop_assert_eq!(subs.len(), rec.user_records);
                    prop_assert_eq!(Ok(rec.hash_key()), subs[0].hash_key());
                    for s in subs {
                        let ehk = s.explicit_hash_key.map(|t| parse_hash_key(t).unwrap());
                        back.push((s.partition_key.to_owned(), ehk, s.data.to_vec()));
                    }
                } else {
                    prop_assert_eq!(rec.user_records, 1);
                    back.push((rec.partition_key.clone(), rec.explicit_hash_key, rec.data.clone()));
                }
            }
            let expected: Vec<_> = inputs.iter().map(|i| (i.pk.clone(), i.ehk, i.data.clone())).collect();
            prop_assert_eq!(back, expected);
        }

        /// Keys are stored once per aggregate, however often they repeat.
        #[test]
        fn tables_hold_each_key_once(keys in proptest::collection::vec(0usize..5, 2..50)) {
            let names = ["p", "q", "r", "s", "t"];
            let mut agg = Aggregator::new(usize::MAX);
            for &k in &keys {
                agg.push(names[k], Some(k as u128), b"d").unwrap();
            }
            let rec = agg.finish().unwrap();
            let mut distinct = keys.clone();
            distinct.sort_unstable();
            distinct.dedup();
            // Each distinct key: a 3-byte pk entry and a 3-byte ehk entry ("0".."4").
            // Each record: key + len + pk index + ehk index + data field = 1 + 1 + 2 + 2 + 3.
            prop_assert_eq!(rec.data.len(), 4 + 16 + distinct.len() * 6 + keys.len() * 9);
        }

        /// Random bytes never panic the parser.
        #[test]
        fn deaggregate_never_panics(body in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = deaggregate(&frame(&body));
            let _ = deaggregate(&body);
        }
    }
}
