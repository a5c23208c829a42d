//! The Kinesis- and Firehose-compatible endpoint, with no I/O: which call a request is, its body
//! (JSON 1.1 or CBOR 1.1, [`wire`]) -> one contiguous buffer of records with their partition
//! keys, explicit hash keys and attributes, validated like the services, KPL aggregates opened;
//! and the service-shaped answers.
//!
//! Producers that speak Kinesis Data Streams (`Kinesis_20131202.PutRecord(s)`) or Firehose
//! (`Firehose_20150804.PutRecord(Batch)`) can point their endpoint at the router unchanged.
//! `DescribeStream`, `DescribeStreamSummary` and `ListShards` describe `aws_shards` open shards
//! with even hash key ranges ([`shards`]), so producers with per-shard rate limiters (the KPL,
//! the router's own Kinesis sink) spread over them. Requests are signed with SigV4 and verified
//! by [`sigv4`]; the I/O side (reading, verifying, answering) is [`serve`].
//!
//! Every record carries the attribute `stream` (the Kinesis stream name, or the name at the end
//! of `StreamARN`; the Firehose delivery stream name) and the request's `X-Attribute-*` headers.

pub mod config;
pub mod json_scan;
pub mod serve;
pub mod shards;
pub mod sigv4;
pub mod wire;

use std::borrow::Cow;

use base64::Engine as _;

use crate::core::kinesis::{aggregate, md5x4};
use crate::core::record::{RecordMeta, Span};
use shards::{Shards, shard_id};
use wire::{Blob, Entry, Input, Out, Wire};

/// The calls the endpoint answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// Kinesis `PutRecord`.
    PutRecord,
    /// Kinesis `PutRecords`.
    PutRecords,
    /// Kinesis `DescribeStream`.
    DescribeStream,
    /// Kinesis `DescribeStreamSummary`.
    DescribeStreamSummary,
    /// Kinesis `ListShards`.
    ListShards,
    /// Firehose `PutRecord`.
    FirehosePutRecord,
    /// Firehose `PutRecordBatch`.
    FirehosePutRecordBatch,
}

impl Call {
    /// The call named by an `X-Amz-Target` header.
    pub fn from_target(target: &str) -> Result<Call, ApiError> {
        Ok(match target {
            "Kinesis_20131202.PutRecord" => Call::PutRecord,
            "Kinesis_20131202.PutRecords" => Call::PutRecords,
            "Kinesis_20131202.DescribeStream" => Call::DescribeStream,
            "Kinesis_20131202.DescribeStreamSummary" => Call::DescribeStreamSummary,
            "Kinesis_20131202.ListShards" => Call::ListShards,
            "Firehose_20150804.PutRecord" => Call::FirehosePutRecord,
            "Firehose_20150804.PutRecordBatch" => Call::FirehosePutRecordBatch,
            other => {
                return Err(ApiError::new(
                    "UnknownOperationException",
                    format!(
                        "operation {other:?} is not supported by edge-router (supported: Kinesis \
                         PutRecord, PutRecords, DescribeStream, DescribeStreamSummary, \
                         ListShards; Firehose PutRecord, PutRecordBatch)"
                    ),
                ));
            }
        })
    }

    /// True for the Firehose calls.
    pub fn is_firehose(self) -> bool {
        matches!(self, Call::FirehosePutRecord | Call::FirehosePutRecordBatch)
    }

    /// The SigV4 service name requests for this call are signed for.
    pub fn service(self) -> &'static str {
        if self.is_firehose() {
            "firehose"
        } else {
            "kinesis"
        }
    }

    /// True for the calls that carry records.
    pub fn carries_records(self) -> bool {
        !matches!(
            self,
            Call::DescribeStream | Call::DescribeStreamSummary | Call::ListShards
        )
    }
}

/// An AWS-shaped error answer: `{"__type": ..., "message": ...}` with its HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct ApiError {
    /// The exception name, e.g. `ValidationException`.
    pub kind: &'static str,
    /// What was wrong.
    pub message: String,
    /// HTTP status (400 unless said otherwise).
    pub status: u16,
}

impl ApiError {
    /// An error answered with status 400.
    pub fn new(kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            kind,
            message: message.into(),
            status: 400,
        }
    }

    /// The same error with another status.
    pub fn with_status(mut self, status: u16) -> ApiError {
        self.status = status;
        self
    }

    fn validation(message: impl Into<String>) -> ApiError {
        ApiError::new("ValidationException", message)
    }

    /// A `SerializationException`: the body could not be read.
    pub fn serialization(message: impl Into<String>) -> ApiError {
        ApiError::new("SerializationException", message)
    }

    fn invalid_argument(message: impl Into<String>) -> ApiError {
        ApiError::new("InvalidArgumentException", message)
    }

    /// The body of the answer in `wire`'s encoding.
    pub fn body(&self, wire: Wire) -> Vec<u8> {
        let mut o = Out::new(wire);
        o.map(2)
            .kv("__type", self.kind)
            .kv("message", &self.message)
            .end(true);
        o.finish()
    }
}

/// A `ValidationException` in the services' words: `1 validation error detected: Value V at
/// 'path' failed to satisfy constraint: Member must ...`.
fn constraint(value: Option<&str>, at: &str, rule: &str) -> ApiError {
    let value = value.map_or_else(|| "null".to_owned(), |v| format!("'{v}'"));
    ApiError::validation(format!(
        "1 validation error detected: Value {value} at '{at}' failed to satisfy constraint: \
         Member {rule}"
    ))
}

/// Kinesis's limit on one record: data plus partition key.
pub const KINESIS_RECORD_MAX: usize = 1 << 20;
/// Kinesis's limit on one PutRecords request: data plus partition keys.
pub const KINESIS_REQUEST_MAX: usize = 5 << 20;
/// Firehose's limit on one record's data (1,000 KiB).
pub const FIREHOSE_RECORD_MAX: usize = 1_024_000;
/// Firehose's limit on one PutRecordBatch request's data.
pub const FIREHOSE_REQUEST_MAX: usize = 4 << 20;
/// Most records in one PutRecords or PutRecordBatch.
pub const MAX_ENTRIES: usize = 500;
/// What one record costs besides its payload and key bytes, for the decoded-size budget: its
/// span, its metadata and their allocations.
pub const RECORD_OVERHEAD: usize = 128;

const STREAM_PATTERN: &str = "[a-zA-Z0-9_.-]+";

/// Limits and choices for decoding one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiLimits<'a> {
    /// Largest record the router takes (the source's `max_record_bytes`); the services' own
    /// limits apply too.
    pub max_record_bytes: usize,
    /// Budget for one request once decoded: payload bytes plus, per user record,
    /// [`RECORD_OVERHEAD`], its keys and its attributes (the source's `max_body_bytes`). It
    /// bounds what de-aggregation and request attributes can expand a request into.
    pub max_decoded_bytes: usize,
    /// Open KPL aggregates.
    pub deaggregate: bool,
    /// When set, the only stream names accepted.
    pub streams: Option<&'a [String]>,
}

/// What de-aggregation did in one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeaggregationCounts {
    /// Aggregates opened.
    pub aggregates: u64,
    /// User records taken out of them.
    pub user_records: u64,
    /// Records with the aggregate magic that failed the check and were kept whole.
    pub kept_whole: u64,
}

/// The records of one call, decoded into one buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Records {
    /// The stream or delivery stream named in the call.
    pub stream: String,
    /// Every record's data, back to back (aggregates whole: their user records are spans into
    /// them).
    pub data: Vec<u8>,
    /// One span per user record into `data`.
    pub spans: Vec<Span>,
    /// One per user record: keys (Kinesis) and attributes (`stream`, then the request's).
    pub meta: Vec<RecordMeta>,
    /// Per entry of the request (not per user record): the shard it fell in (Kinesis).
    pub entry_shards: Vec<u32>,
    /// What de-aggregation did.
    pub deaggregation: DeaggregationCounts,
}

fn valid_name(name: &str, max: usize) -> bool {
    (1..=max).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// The stream a Kinesis call names: `StreamName`, or the name at the end of `StreamARN`.
fn kinesis_stream(input: &Input<'_>, required: bool) -> Result<Option<String>, ApiError> {
    let from_arn = match input.stream_arn.as_deref() {
        None => None,
        Some(arn) => {
            let name = arn
                .split_once(":stream/")
                .filter(|(head, name)| {
                    let parts: Vec<&str> = head.split(':').collect();
                    parts.len() == 5
                        && parts[0] == "arn"
                        && parts[1].starts_with("aws")
                        && parts[2] == "kinesis"
                        && parts[4].len() == 12
                        && parts[4].bytes().all(|b| b.is_ascii_digit())
                        && !name.is_empty()
                        && !name.contains(char::is_whitespace)
                        && arn.len() <= 2048
                })
                .map(|(_, name)| name);
            match name {
                Some(n) => Some(n),
                None => {
                    return Err(constraint(
                        Some(arn),
                        "streamARN",
                        "must satisfy regular expression pattern: \
                         arn:aws.*:kinesis:.*:\\d{12}:stream/\\S+",
                    ));
                }
            }
        }
    };
    let name = match (input.stream_name.as_deref(), from_arn) {
        (Some(a), Some(b)) if a != b => {
            return Err(ApiError::invalid_argument(format!(
                "StreamARN names stream {b} but StreamName is {a}"
            )));
        }
        (Some(a), _) => a,
        (None, Some(b)) => b,
        (None, None) if required => {
            return Err(ApiError::validation(
                "Either StreamName or StreamARN must be provided",
            ));
        }
        (None, None) => return Ok(None),
    };
    if !valid_name(name, 128) {
        let rule = if name.is_empty() || name.len() > 128 {
            "must have length between 1 and 128".to_owned()
        } else {
            format!("must satisfy regular expression pattern: {STREAM_PATTERN}")
        };
        return Err(constraint(Some(name), "streamName", &rule));
    }
    Ok(Some(name.to_owned()))
}

fn firehose_stream(input: &Input<'_>) -> Result<String, ApiError> {
    let Some(name) = input.delivery_stream_name.as_deref() else {
        return Err(constraint(None, "deliveryStreamName", "must not be null"));
    };
    if !valid_name(name, 64) {
        let rule = if name.is_empty() || name.len() > 64 {
            "must have length between 1 and 64".to_owned()
        } else {
            format!("must satisfy regular expression pattern: {STREAM_PATTERN}")
        };
        return Err(constraint(Some(name), "deliveryStreamName", &rule));
    }
    Ok(name.to_owned())
}

/// The `ResourceNotFoundException` for a stream outside the allow-list.
fn not_found(call: Call, stream: &str) -> ApiError {
    let what = if call.is_firehose() {
        "Firehose"
    } else {
        "Stream"
    };
    ApiError::new(
        "ResourceNotFoundException",
        format!("{what} {stream} under account {ACCOUNT} not found."),
    )
}

/// The account id in the ARNs the endpoint reports.
pub const ACCOUNT: &str = "000000000000";

fn check_allowed(call: Call, stream: &str, limits: &ApiLimits<'_>) -> Result<(), ApiError> {
    match &limits.streams {
        Some(list) if !list.iter().any(|s| s == stream) => Err(not_found(call, stream)),
        _ => Ok(()),
    }
}

/// Decodes a record-carrying call (`call.carries_records()`), giving every record the
/// attribute `stream` and then `attributes`.
pub fn parse_records(
    call: Call,
    mut input: Input<'_>,
    limits: &ApiLimits<'_>,
    attributes: &[(Box<str>, Box<str>)],
    shards: &Shards,
) -> Result<Records, ApiError> {
    let stream = if call.is_firehose() {
        firehose_stream(&input)?
    } else {
        kinesis_stream(&input, true)?.unwrap_or_default()
    };
    check_allowed(call, &stream, limits)?;
    let mut attrs: Vec<(Box<str>, Box<str>)> = Vec::with_capacity(attributes.len() + 1);
    attrs.push(("stream".into(), stream.as_str().into()));
    attrs.extend(attributes.iter().filter(|(k, _)| &**k != "stream").cloned());
    let attr_bytes: usize = attrs.iter().map(|(k, v)| k.len() + v.len() + 32).sum();
    // One list for all the request's records: each record's metadata points at it.
    let attrs: std::sync::Arc<[(Box<str>, Box<str>)]> = attrs.into();
    let mut out = Decoder {
        limits,
        shards,
        data: Vec::new(),
        spans: Vec::new(),
        meta: Vec::new(),
        entry_shards: Vec::new(),
        counts: DeaggregationCounts::default(),
        attrs,
        attr_bytes,
        decoded: 0,
        request_bytes: 0,
        key_bytes: Vec::new(),
        keyed: Vec::new(),
    };
    match call {
        Call::PutRecords => {
            let entries = entries(input.records.take(), "records")?;
            out.data.reserve(estimate(&entries));
            out.reserve(entries.len());
            for (i, e) in entries.into_iter().enumerate() {
                out.kinesis(At::Records(i), e)?;
            }
        }
        Call::PutRecord => {
            let e = input.own_entry();
            out.kinesis(At::Top, e)?;
        }
        Call::FirehosePutRecordBatch => {
            let entries = entries(input.records.take(), "records")?;
            out.data.reserve(estimate(&entries));
            out.reserve(entries.len());
            for (i, e) in entries.into_iter().enumerate() {
                out.firehose(At::Records(i), e)?;
            }
        }
        Call::FirehosePutRecord => {
            let Some(r) = input.record.take() else {
                return Err(constraint(None, "record", "must not be null"));
            };
            out.firehose(At::Record, r)?;
        }
        Call::DescribeStream | Call::DescribeStreamSummary | Call::ListShards => {
            return Err(ApiError::validation("this call carries no records"));
        }
    }
    out.finish_shards();
    Ok(Records {
        stream,
        data: out.data,
        spans: out.spans,
        meta: out.meta,
        entry_shards: out.entry_shards,
        deaggregation: out.counts,
    })
}

/// A guess at the decoded size of some entries, to size the buffer once.
fn estimate(entries: &[Entry<'_>]) -> usize {
    entries
        .iter()
        .map(|e| match &e.data {
            Some(Blob::Base64(t)) => t.len() / 4 * 3,
            Some(Blob::Raw(b)) => b.len(),
            None => 0,
        })
        .sum()
}

fn entries<'a>(list: Option<wire::Entries<'a>>, at: &str) -> Result<Vec<Entry<'a>>, ApiError> {
    let Some(list) = list else {
        return Err(constraint(None, at, "must not be null"));
    };
    if list.total == 0 {
        return Err(constraint(
            Some("[]"),
            at,
            "must have length greater than or equal to 1",
        ));
    }
    if list.total > MAX_ENTRIES {
        return Err(ApiError::validation(format!(
            "1 validation error detected: Value with {} entries at '{at}' failed to satisfy \
             constraint: Member must have length less than or equal to {MAX_ENTRIES}",
            list.total
        )));
    }
    Ok(list.list)
}

/// Where an entry is in its request, for messages (made into text only when one is needed).
#[derive(Debug, Clone, Copy)]
enum At {
    /// Kinesis PutRecord's own members.
    Top,
    /// Firehose PutRecord's `record`.
    Record,
    /// The `i`th (0-based) of `records`.
    Records(usize),
}

impl At {
    /// The entry's path: `records.3.member`, `record` or empty.
    fn entry(self) -> String {
        match self {
            At::Top => String::new(),
            At::Record => "record".into(),
            At::Records(i) => format!("records.{}.member", i + 1),
        }
    }

    /// The path of one of its members.
    fn field(self, field: &str) -> String {
        match self {
            At::Top => field.to_owned(),
            other => format!("{}.{field}", other.entry()),
        }
    }
}

/// Appends the standard, padded base64 `text` decoded to `out` (nothing on an error).
///
/// What is valid is the `base64` crate's `STANDARD` engine's rule (canonical padding, no
/// trailing bits, no white space), which the services apply too. The vectorized `base64-simd`
/// decoder, several times faster on record-sized text, reads it first; only when it refuses the
/// text does the `base64` crate decide, so the answer and the error message are always that
/// crate's (a property test checks that the two agree on what is valid).
fn decode_base64(text: &[u8], out: &mut Vec<u8>) -> Result<(), base64::DecodeError> {
    let start = out.len();
    if base64_simd::STANDARD.decode_append(text, out).is_ok() {
        return Ok(());
    }
    out.truncate(start);
    base64::engine::general_purpose::STANDARD
        .decode_vec(text, out)
        .inspect_err(|_| out.truncate(start))
}

struct Decoder<'l> {
    limits: &'l ApiLimits<'l>,
    shards: &'l Shards,
    data: Vec<u8>,
    spans: Vec<Span>,
    meta: Vec<RecordMeta>,
    entry_shards: Vec<u32>,
    counts: DeaggregationCounts,
    attrs: std::sync::Arc<[(Box<str>, Box<str>)]>,
    attr_bytes: usize,
    /// The decoded-size budget used so far.
    decoded: usize,
    /// Data plus partition keys of the request so far (the services' request limit).
    request_bytes: usize,
    /// The partition keys whose MD5 places their entry, back to back.
    key_bytes: Vec<u8>,
    /// Per such key: its entry's index in `entry_shards` and its range in `key_bytes`.
    keyed: Vec<(usize, usize, usize)>,
}

impl Decoder<'_> {
    /// Decodes an entry's data onto the end of the buffer; returns its range. Checks the
    /// services' per-record `max` and the source's `max_record_bytes`.
    fn data(
        &mut self,
        path: At,
        data: Option<Blob<'_>>,
        max: usize,
    ) -> Result<(usize, usize), ApiError> {
        let at = || path.field("data");
        let start = self.data.len();
        match data {
            None => return Err(constraint(None, &at(), "must not be null")),
            Some(Blob::Raw(b)) => self.data.extend_from_slice(&b),
            Some(Blob::Base64(text)) => {
                decode_base64(text.as_bytes(), &mut self.data).map_err(|e| {
                    self.data.truncate(start);
                    ApiError::serialization(format!("'{}' is not valid base64: {e}", at()))
                })?
            }
        }
        let size = self.data.len() - start;
        if size > max {
            let at = at();
            return Err(ApiError::validation(format!(
                "1 validation error detected: Value 'java.nio.HeapByteBuffer[pos=0 lim={size} \
                 cap={size}]' at '{at}' failed to satisfy constraint: Member must have length \
                 less than or equal to {max}"
            )));
        }
        if size > self.limits.max_record_bytes {
            let at = at();
            return Err(ApiError::invalid_argument(format!(
                "'{at}' has {size} bytes, over this endpoint's max_record_bytes ({})",
                self.limits.max_record_bytes
            )));
        }
        if self.data.len() > u32::MAX as usize {
            return Err(ApiError::invalid_argument("request too large"));
        }
        Ok((start, self.data.len()))
    }

    /// Counts one user record against the decoded-size budget.
    fn spend(&mut self, payload: usize, keys: usize) -> Result<(), ApiError> {
        self.decoded += payload + keys + RECORD_OVERHEAD + self.attr_bytes;
        if self.decoded > self.limits.max_decoded_bytes {
            return Err(ApiError::invalid_argument(format!(
                "this request expands to more than {} bytes once decoded (records, keys, \
                 attributes: {} user records so far), over this endpoint's limit \
                 (max_body_bytes); send fewer records or attributes per request, or smaller \
                 aggregates",
                self.limits.max_decoded_bytes,
                self.spans.len() + 1
            )));
        }
        Ok(())
    }

    /// Room for `n` entries' records and shards (aggregates may add more).
    fn reserve(&mut self, n: usize) {
        self.spans.reserve(n);
        self.meta.reserve(n);
        self.entry_shards.reserve(n);
        self.keyed.reserve(n);
    }

    /// Places the entries that wait for the MD5 of their partition key.
    fn finish_shards(&mut self) {
        if self.keyed.is_empty() {
            return;
        }
        let keys: Vec<&[u8]> = self
            .keyed
            .iter()
            .map(|&(_, from, to)| &self.key_bytes[from..to])
            .collect();
        let mut hashes = Vec::with_capacity(keys.len());
        md5x4::hash_keys(&keys, &mut hashes);
        for (&(entry, _, _), hash) in self.keyed.iter().zip(hashes) {
            if let Some(shard) = self.entry_shards.get_mut(entry) {
                *shard = self.shards.of_hash(hash);
            }
        }
    }

    fn push(&mut self, start: usize, end: usize, meta: RecordMeta) {
        self.spans.push(Span {
            start: start as u32,
            end: end as u32,
        });
        self.meta.push(meta);
    }

    fn firehose(&mut self, path: At, e: Entry<'_>) -> Result<(), ApiError> {
        let (start, end) = self.data(path, e.data, FIREHOSE_RECORD_MAX)?;
        self.request_bytes += end - start;
        if self.request_bytes > FIREHOSE_REQUEST_MAX {
            return Err(ApiError::invalid_argument(format!(
                "Records size exceeds {FIREHOSE_REQUEST_MAX} bytes (4 MiB): the request's \
                 records total more than that by '{}'",
                path.field("data")
            )));
        }
        self.spend(end - start, 0)?;
        let meta = RecordMeta {
            partition_key: None,
            explicit_hash_key: None,
            attributes: self.attrs.clone(),
        };
        self.push(start, end, meta);
        self.entry_shards.push(0);
        Ok(())
    }

    fn kinesis(&mut self, path: At, e: Entry<'_>) -> Result<(), ApiError> {
        let pk_at = || path.field("partitionKey");
        let Some(key) = e.partition_key else {
            return Err(constraint(None, &pk_at(), "must not be null"));
        };
        // UTF-16 code units never outnumber UTF-8 bytes: count only long keys.
        let units = if key.len() <= 256 {
            key.len()
        } else {
            key.encode_utf16().count()
        };
        if !(1..=256).contains(&units) {
            return Err(constraint(
                Some(key.as_ref()),
                &pk_at(),
                "must have length between 1 and 256",
            ));
        }
        let ehk: Option<Cow<'_, str>> = e.explicit_hash_key;
        if let Some(h) = &ehk {
            let pattern_ok = h == "0"
                || (!h.is_empty()
                    && h.len() <= 39
                    && !h.starts_with('0')
                    && h.bytes().all(|b| b.is_ascii_digit()));
            if !pattern_ok {
                return Err(constraint(
                    Some(h.as_ref()),
                    &path.field("explicitHashKey"),
                    "must satisfy regular expression pattern: 0|([1-9]\\d{0,38})",
                ));
            }
            if h.parse::<u128>().is_err() {
                return Err(ApiError::invalid_argument(format!(
                    "Invalid ExplicitHashKey. ExplicitHashKey must be in the range: [0, \
                     2^128-1]. Specified value was {h}"
                )));
            }
        }
        let (start, end) = self.data(path, e.data, KINESIS_RECORD_MAX)?;
        let size = end - start + key.len();
        let which = || match path {
            At::Top => "the record".to_owned(),
            other => other.entry(),
        };
        if size > KINESIS_RECORD_MAX {
            let which = which();
            return Err(ApiError::invalid_argument(format!(
                "Record size including partition key exceeds the maximum of \
                 {KINESIS_RECORD_MAX} bytes: {which} has {} bytes of data and a {}-byte \
                 partition key",
                end - start,
                key.len()
            )));
        }
        self.request_bytes += size;
        if self.request_bytes > KINESIS_REQUEST_MAX {
            let which = which();
            return Err(ApiError::invalid_argument(format!(
                "Records size exceeds {KINESIS_REQUEST_MAX} bytes (5 MiB): the request's data \
                 and partition keys total more than that by {which}"
            )));
        }
        // The shard: by the explicit hash key, else by the MD5 of the partition key, which
        // `finish_shards` computes for all the request's keys at once.
        match ehk.as_deref().and_then(|h| h.parse::<u128>().ok()) {
            Some(hash) => self.entry_shards.push(self.shards.of_hash(hash)),
            None => {
                let from = self.key_bytes.len();
                self.key_bytes.extend_from_slice(key.as_bytes());
                self.keyed
                    .push((self.entry_shards.len(), from, self.key_bytes.len()));
                self.entry_shards.push(0);
            }
        }
        if self.limits.deaggregate && self.data[start..end].starts_with(&aggregate::MAGIC) {
            match self.deaggregate(start, end) {
                Ok(()) => return Ok(()),
                Err(Some(e)) => return Err(e),
                Err(None) => self.counts.kept_whole += 1,
            }
        }
        self.spend(end - start, key.len() + ehk.as_ref().map_or(0, |h| h.len()))?;
        // One allocation per key: `Arc<str>` from the text itself, not from an owned copy.
        let meta = RecordMeta {
            partition_key: Some(std::sync::Arc::from(&*key)),
            explicit_hash_key: ehk.as_deref().map(std::sync::Arc::from),
            attributes: self.attrs.clone(),
        };
        self.push(start, end, meta);
        Ok(())
    }

    /// Opens the aggregate at `data[start..end]` into user records (spans inside it), each
    /// with its own keys, as the KCL does. `Err(None)`: it is not a valid aggregate (the KCL
    /// passes such a record on whole), and nothing was added; `Err(Some(_))`: the budget ran
    /// out.
    fn deaggregate(&mut self, start: usize, end: usize) -> Result<(), Option<ApiError>> {
        // Not an aggregate by the KCL's rule (magic, MD5), or a body that does not parse.
        let Ok(subs) = aggregate::deaggregate(&self.data[start..end]) else {
            return Err(None);
        };
        // Keys the Kinesis API itself would refuse make it no aggregate we pass on in parts.
        let keys_ok = subs.iter().all(|s| {
            (1..=256).contains(&s.partition_key.encode_utf16().count())
                && s.explicit_hash_key
                    .is_none_or(|h| h == "0" || (!h.starts_with('0') && h.parse::<u128>().is_ok()))
        });
        if !keys_ok {
            return Err(None);
        }
        let base = self.data.as_ptr() as usize;
        let mut cost = 0usize;
        let mut placed = Vec::with_capacity(subs.len());
        for s in &subs {
            cost += s.data.len()
                + s.partition_key.len()
                + s.explicit_hash_key.map_or(0, str::len)
                + RECORD_OVERHEAD
                + self.attr_bytes;
            // The user record's data is a slice of the aggregate in `self.data`.
            let offset = s.data.as_ptr() as usize - base;
            placed.push((
                offset,
                offset + s.data.len(),
                RecordMeta {
                    partition_key: Some(s.partition_key.into()),
                    explicit_hash_key: s.explicit_hash_key.map(Into::into),
                    attributes: Default::default(),
                },
            ));
            if self.decoded + cost > self.limits.max_decoded_bytes {
                break;
            }
        }
        drop(subs);
        self.decoded += cost;
        if self.decoded > self.limits.max_decoded_bytes {
            return Err(Some(ApiError::invalid_argument(format!(
                "this request expands to more than {} bytes once its KPL aggregates are opened \
                 (records, keys, attributes), over this endpoint's limit (max_body_bytes); send \
                 smaller aggregates or fewer per request",
                self.limits.max_decoded_bytes
            ))));
        }
        self.counts.aggregates += 1;
        self.counts.user_records += placed.len() as u64;
        for (s, e, mut meta) in placed {
            debug_assert!(start <= s && e <= end);
            meta.attributes = self.attrs.clone();
            self.push(s, e, meta);
        }
        Ok(())
    }
}

/// Kinesis-style sequence numbers: 56 decimal digits, increasing across the process's life.
#[derive(Debug, Clone)]
pub struct Sequence {
    next: u128,
}

impl Sequence {
    /// Numbers starting after `base` (e.g. the start time in nanoseconds, so that numbers keep
    /// increasing across restarts).
    pub fn new(base: u128) -> Sequence {
        Sequence { next: base }
    }

    /// Takes the next `n` numbers, returning the first.
    pub fn take(&mut self, n: usize) -> u128 {
        let first = self.next;
        self.next = self.next.wrapping_add(n as u128);
        first
    }
}

fn seq_text(n: u128) -> String {
    format!("{n:056}")
}

/// Consecutive sequence numbers as text: formatted once, then counted up in place (formatting
/// a 128-bit number per record costs more than the rest of its answer).
struct SeqDigits([u8; 56]);

impl SeqDigits {
    fn new(n: u128) -> SeqDigits {
        let mut d = [b'0'; 56];
        let text = seq_text(n);
        let b = text.as_bytes();
        d.copy_from_slice(&b[b.len() - 56..]);
        SeqDigits(d)
    }

    fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Adds one (wrapping at 56 digits, which the `u128` counter never reaches).
    fn incr(&mut self) {
        for d in self.0.iter_mut().rev() {
            if *d == b'9' {
                *d = b'0';
            } else {
                *d += 1;
                return;
            }
        }
    }
}

/// The answer to a record-carrying call whose entries were all accepted: one per entry, with
/// the shard it fell in; sequence numbers start at `first_seq`.
pub fn accepted(call: Call, wire: Wire, entry_shards: &[u32], first_seq: u128) -> Vec<u8> {
    let n = entry_shards.len();
    // An entry's answer is at most 111 bytes in JSON (a 56-digit sequence number, a shard id).
    let mut o = Out::with_capacity(wire, 128 + 112 * n);
    match call {
        Call::PutRecord => {
            let shard = entry_shards.first().copied().unwrap_or(0);
            o.map(3)
                .kv("SequenceNumber", &seq_text(first_seq))
                .kv("ShardId", &shard_id(shard))
                .kv("EncryptionType", "NONE")
                .end(true);
        }
        Call::PutRecords => {
            o.map(3)
                .key("FailedRecordCount")
                .u64(0)
                .key("Records")
                .array(n);
            let mut seq = SeqDigits::new(first_seq);
            for &shard in entry_shards {
                o.map(2).key("SequenceNumber").plain(seq.as_bytes());
                o.key("ShardId")
                    .plain(shards::ShardIdText::new(shard).as_bytes())
                    .end(true);
                seq.incr();
            }
            o.end(false).kv("EncryptionType", "NONE").end(true);
        }
        Call::FirehosePutRecord => {
            o.map(2)
                .kv("RecordId", &seq_text(first_seq))
                .key("Encrypted")
                .bool(false)
                .end(true);
        }
        Call::FirehosePutRecordBatch => {
            o.map(3).key("FailedPutCount").u64(0);
            o.key("Encrypted")
                .bool(false)
                .key("RequestResponses")
                .array(n);
            let mut seq = SeqDigits::new(first_seq);
            for _ in 0..n {
                o.map(1).key("RecordId").plain(seq.as_bytes()).end(true);
                seq.incr();
            }
            o.end(false).end(true);
        }
        Call::DescribeStream | Call::DescribeStreamSummary | Call::ListShards => {
            o.map(0).end(true);
        }
    }
    o.finish()
}

/// What a full pipeline answers: for the batch calls, every entry failed with a throttling
/// code (HTTP 200, so producers retry just those entries, as they do against the services);
/// Kinesis `PutRecord`: `ProvisionedThroughputExceededException` (400, retried by SDKs as
/// throttling); Firehose `PutRecord`: `ServiceUnavailableException` with 503 (retried by SDKs
/// as a server error). Returns the status and body.
pub fn refused(call: Call, wire: Wire, n: usize) -> (u16, Vec<u8>) {
    let message = "edge-router pipeline is full; retry later";
    let mut o = Out::new(wire);
    match call {
        Call::PutRecords => {
            o.map(3)
                .key("FailedRecordCount")
                .u64(n as u64)
                .key("Records")
                .array(n);
            for _ in 0..n {
                o.map(2)
                    .kv("ErrorCode", "ProvisionedThroughputExceededException")
                    .kv("ErrorMessage", message)
                    .end(true);
            }
            o.end(false).kv("EncryptionType", "NONE").end(true);
            (200, o.finish())
        }
        Call::FirehosePutRecordBatch => {
            o.map(3).key("FailedPutCount").u64(n as u64);
            o.key("Encrypted")
                .bool(false)
                .key("RequestResponses")
                .array(n);
            for _ in 0..n {
                o.map(2)
                    .kv("ErrorCode", "ServiceUnavailableException")
                    .kv("ErrorMessage", message)
                    .end(true);
            }
            o.end(false).end(true);
            (200, o.finish())
        }
        Call::FirehosePutRecord => {
            let e = ApiError::new("ServiceUnavailableException", message).with_status(503);
            (503, e.body(wire))
        }
        _ => (
            400,
            ApiError::new("ProvisionedThroughputExceededException", message).body(wire),
        ),
    }
}

/// What the describe calls report besides the shards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamFacts<'a> {
    /// Region in ARNs.
    pub region: &'a str,
    /// When the "stream" was created: the source's start, epoch milliseconds.
    pub created_unix_millis: u64,
}

fn write_shard(o: &mut Out, shards: &Shards, i: u32) {
    let (start, end) = shards.range(i);
    o.map(3).kv("ShardId", &shard_id(i));
    o.key("HashKeyRange")
        .map(2)
        .kv("StartingHashKey", &start.to_string())
        .kv("EndingHashKey", &end.to_string())
        .end(true);
    o.key("SequenceNumberRange")
        .map(1)
        .kv("StartingSequenceNumber", &seq_text(0))
        .end(true);
    o.end(true);
}

fn int_in(v: Option<i64>, at: &str, lo: i64, hi: i64) -> Result<Option<i64>, ApiError> {
    match v {
        Some(n) if n < lo => Err(constraint(
            Some(&n.to_string()),
            at,
            &format!("must have value greater than or equal to {lo}"),
        )),
        Some(n) if n > hi => Err(constraint(
            Some(&n.to_string()),
            at,
            &format!("must have value less than or equal to {hi}"),
        )),
        other => Ok(other),
    }
}

fn start_shard_id(input: &Input<'_>) -> Result<Option<String>, ApiError> {
    match input.exclusive_start_shard_id.as_deref() {
        Some(id) if !valid_name(id, 128) => Err(constraint(
            Some(id),
            "exclusiveStartShardId",
            &format!("must satisfy regular expression pattern: {STREAM_PATTERN}"),
        )),
        other => Ok(other.map(str::to_owned)),
    }
}

/// Answers `DescribeStream`, `DescribeStreamSummary` or `ListShards`.
pub fn describe(
    call: Call,
    input: &Input<'_>,
    limits: &ApiLimits<'_>,
    shards: &Shards,
    facts: &StreamFacts<'_>,
    wire: Wire,
) -> Result<Vec<u8>, ApiError> {
    let mut o = Out::new(wire);
    let arn = |stream: &str| format!("arn:aws:kinesis:{}:{ACCOUNT}:stream/{stream}", facts.region);
    match call {
        Call::ListShards => {
            let max = int_in(input.max_results, "maxResults", 1, 10_000)?;
            let after = start_shard_id(input)?;
            let named = kinesis_stream(input, false)?;
            let (stream, first) = match (named, input.next_token.as_deref()) {
                (None, None) => {
                    return Err(ApiError::invalid_argument(
                        "Either NextToken or StreamName should be provided.",
                    ));
                }
                (Some(_), Some(_)) => {
                    return Err(ApiError::invalid_argument(
                        "NextToken and StreamName cannot be provided together.",
                    ));
                }
                (Some(s), None) => {
                    let first = shards.after(after.as_deref());
                    (s, first)
                }
                (None, Some(t)) => shards::read_token(t)
                    .filter(|(s, _)| valid_name(s, 128))
                    .ok_or_else(|| {
                        ApiError::invalid_argument(format!("NextToken {t:?} is not valid."))
                    })?,
            };
            check_allowed(call, &stream, limits)?;
            // Kinesis returns at most 1000 shards per call, whatever MaxResults says.
            let page = max.unwrap_or(1000).min(1000) as u32;
            let first = first.min(shards.count());
            let last = first.saturating_add(page).min(shards.count());
            let more = last < shards.count();
            o.map(if more { 2 } else { 1 });
            o.key("Shards").array((last - first) as usize);
            for i in first..last {
                write_shard(&mut o, shards, i);
            }
            o.end(false);
            if more {
                o.kv("NextToken", &shards::next_token(&stream, last));
            }
            o.end(true);
        }
        Call::DescribeStreamSummary => {
            let stream = kinesis_stream(input, true)?.unwrap_or_default();
            check_allowed(call, &stream, limits)?;
            o.map(1).key("StreamDescriptionSummary").map(11);
            o.kv("StreamName", &stream).kv("StreamARN", &arn(&stream));
            o.kv("StreamStatus", "ACTIVE");
            o.key("StreamModeDetails")
                .map(1)
                .kv("StreamMode", "PROVISIONED")
                .end(true);
            o.key("RetentionPeriodHours").u64(24);
            o.key("StreamCreationTimestamp")
                .timestamp(facts.created_unix_millis);
            o.key("EnhancedMonitoring").array(1).map(1);
            o.key("ShardLevelMetrics")
                .array(0)
                .end(false)
                .end(true)
                .end(false);
            o.kv("EncryptionType", "NONE");
            o.key("OpenShardCount").u64(u64::from(shards.count()));
            o.key("ConsumerCount").u64(0);
            o.key("MaxRecordSizeInKiB")
                .u64((KINESIS_RECORD_MAX / 1024) as u64);
            o.end(true).end(true);
        }
        Call::DescribeStream => {
            let limit = int_in(input.limit, "limit", 1, 10_000)?.unwrap_or(100) as u32;
            let after = start_shard_id(input)?;
            let stream = kinesis_stream(input, true)?.unwrap_or_default();
            check_allowed(call, &stream, limits)?;
            let first = shards.after(after.as_deref());
            // Kinesis describes at most 100 shards per call.
            let last = first.saturating_add(limit.min(100)).min(shards.count());
            o.map(1).key("StreamDescription").map(10);
            o.kv("StreamName", &stream).kv("StreamARN", &arn(&stream));
            o.kv("StreamStatus", "ACTIVE");
            o.key("StreamModeDetails")
                .map(1)
                .kv("StreamMode", "PROVISIONED")
                .end(true);
            o.key("Shards").array((last - first) as usize);
            for i in first..last {
                write_shard(&mut o, shards, i);
            }
            o.end(false);
            o.key("HasMoreShards").bool(last < shards.count());
            o.key("RetentionPeriodHours").u64(24);
            o.key("StreamCreationTimestamp")
                .timestamp(facts.created_unix_millis);
            o.key("EnhancedMonitoring").array(1).map(1);
            o.key("ShardLevelMetrics")
                .array(0)
                .end(false)
                .end(true)
                .end(false);
            o.kv("EncryptionType", "NONE");
            o.end(true).end(true);
        }
        _ => return Err(ApiError::validation("this call carries records")),
    }
    Ok(o.finish())
}

#[cfg(test)]
mod tests;
