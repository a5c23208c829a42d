//! The Kinesis- and Firehose-compatible endpoint, with no I/O: which call a request is, its JSON
//! 1.1 body -> one contiguous buffer of records with their partition and explicit hash keys, and
//! the service-shaped answers (accepted, or refused per entry when the pipeline is full).
//!
//! Producers that speak Kinesis Data Streams (`Kinesis_20131202.PutRecord(s)`) or Firehose
//! (`Firehose_20150804.PutRecord(Batch)`) can point their endpoint at the router unchanged. The
//! two calls our own Kinesis sink makes before writing (`DescribeStreamSummary`, `ListShards`)
//! are answered too, with one open shard, so one router can relay into another.

use base64::Engine as _;
use serde::Deserialize;
use serde_json::json;

use crate::core::record::{RecordMeta, Span};

/// The calls the endpoint answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// Kinesis `PutRecord`.
    PutRecord,
    /// Kinesis `PutRecords`.
    PutRecords,
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
            "Kinesis_20131202.DescribeStreamSummary" => Call::DescribeStreamSummary,
            "Kinesis_20131202.ListShards" => Call::ListShards,
            "Firehose_20150804.PutRecord" => Call::FirehosePutRecord,
            "Firehose_20150804.PutRecordBatch" => Call::FirehosePutRecordBatch,
            other => {
                return Err(ApiError::new(
                    "UnknownOperationException",
                    format!(
                        "operation {other:?} is not supported by edge-router (supported: Kinesis \
                         PutRecord, PutRecords, DescribeStreamSummary, ListShards; Firehose \
                         PutRecord, PutRecordBatch)"
                    ),
                ));
            }
        })
    }

    /// True for the Firehose calls.
    pub fn is_firehose(self) -> bool {
        matches!(self, Call::FirehosePutRecord | Call::FirehosePutRecordBatch)
    }

    /// True for the calls that carry records.
    pub fn carries_records(self) -> bool {
        !matches!(self, Call::DescribeStreamSummary | Call::ListShards)
    }
}

/// An AWS-shaped error answer: `{"__type": ..., "message": ...}` with HTTP 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct ApiError {
    /// The exception name, e.g. `ValidationException`.
    pub kind: &'static str,
    /// What was wrong.
    pub message: String,
}

impl ApiError {
    fn new(kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            kind,
            message: message.into(),
        }
    }

    fn validation(message: impl Into<String>) -> ApiError {
        ApiError::new("ValidationException", message)
    }

    /// The JSON body of the answer.
    pub fn body(&self) -> String {
        json!({"__type": self.kind, "message": self.message}).to_string()
    }
}

/// The access key id in a SigV4 `Authorization` header (`... Credential=AKID/date/...`).
/// Signatures are not verified: the router holds no secret keys.
pub fn access_key_id(authorization: &str) -> Option<&str> {
    let rest = &authorization[authorization.find("Credential=")? + "Credential=".len()..];
    let id = rest.split('/').next()?;
    (!id.is_empty()).then_some(id)
}

/// Limits of one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiLimits {
    /// Largest record (decoded data).
    pub max_record_bytes: usize,
    /// Most records per `PutRecords`/`PutRecordBatch` (Kinesis: 500).
    pub max_records: usize,
}

/// The records of one call, decoded into one buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Records {
    /// The stream or delivery stream named in the call.
    pub stream: String,
    /// Every record's data, back to back.
    pub data: Vec<u8>,
    /// One span per record into `data`.
    pub spans: Vec<Span>,
    /// Per-record keys (Kinesis calls only; Firehose records have none).
    pub meta: Option<Vec<RecordMeta>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KinesisEntry {
    data: Option<String>,
    partition_key: Option<String>,
    explicit_hash_key: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutRecordsBody {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    records: Option<Vec<KinesisEntry>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutRecordBody {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    #[serde(flatten)]
    entry: KinesisEntry,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct FirehoseEntry {
    data: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutRecordBatchBody {
    delivery_stream_name: Option<String>,
    records: Option<Vec<FirehoseEntry>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct FirehosePutRecordBody {
    delivery_stream_name: Option<String>,
    record: Option<FirehoseEntry>,
}

/// The stream a Kinesis call names: `StreamName`, or the name at the end of `StreamARN`.
fn stream_of(name: Option<String>, arn: Option<String>) -> Result<String, ApiError> {
    name.or_else(|| arn.and_then(|a| a.rsplit('/').next().map(str::to_owned)))
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::validation("either StreamName or StreamARN must be given"))
}

fn bad_json(e: &serde_json::Error) -> ApiError {
    ApiError::new("SerializationException", format!("malformed request: {e}"))
}

/// Decodes the record-carrying calls (`call.carries_records()`).
pub fn parse_records(call: Call, body: &[u8], limits: &ApiLimits) -> Result<Records, ApiError> {
    let mut out = Decoder::new(limits);
    let stream = match call {
        Call::PutRecords => {
            let b: PutRecordsBody = serde_json::from_slice(body).map_err(|e| bad_json(&e))?;
            let stream = stream_of(b.stream_name, b.stream_arn)?;
            let entries = out.count(b.records, "records")?;
            for (i, e) in entries.into_iter().enumerate() {
                out.kinesis(&format!("records.{}.member", i + 1), e)?;
            }
            stream
        }
        Call::PutRecord => {
            let b: PutRecordBody = serde_json::from_slice(body).map_err(|e| bad_json(&e))?;
            let stream = stream_of(b.stream_name, b.stream_arn)?;
            out.kinesis("", b.entry)?;
            stream
        }
        Call::FirehosePutRecordBatch => {
            let b: PutRecordBatchBody = serde_json::from_slice(body).map_err(|e| bad_json(&e))?;
            let entries = out.count(b.records, "records")?;
            for (i, e) in entries.into_iter().enumerate() {
                out.data(&format!("records.{}.member", i + 1), e.data)?;
            }
            named(b.delivery_stream_name, "DeliveryStreamName")?
        }
        Call::FirehosePutRecord => {
            let b: FirehosePutRecordBody =
                serde_json::from_slice(body).map_err(|e| bad_json(&e))?;
            let Some(r) = b.record else {
                return Err(ApiError::validation("Record must not be null"));
            };
            out.data("record", r.data)?;
            named(b.delivery_stream_name, "DeliveryStreamName")?
        }
        Call::DescribeStreamSummary | Call::ListShards => {
            return Err(ApiError::validation("this call carries no records"));
        }
    };
    Ok(Records {
        stream,
        data: out.data,
        spans: out.spans,
        meta: (!call.is_firehose()).then_some(out.meta),
    })
}

fn named(v: Option<String>, what: &str) -> Result<String, ApiError> {
    v.filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::validation(format!("{what} must not be null or empty")))
}

struct Decoder<'l> {
    limits: &'l ApiLimits,
    data: Vec<u8>,
    spans: Vec<Span>,
    meta: Vec<RecordMeta>,
}

impl Decoder<'_> {
    fn new(limits: &ApiLimits) -> Decoder<'_> {
        Decoder {
            limits,
            data: Vec::new(),
            spans: Vec::new(),
            meta: Vec::new(),
        }
    }

    fn count<T>(&self, list: Option<Vec<T>>, what: &str) -> Result<Vec<T>, ApiError> {
        let list = list.unwrap_or_default();
        if list.is_empty() || list.len() > self.limits.max_records {
            return Err(ApiError::validation(format!(
                "1 validation error detected: Value with {} entries at '{what}' failed to satisfy \
                 constraint: Member must have between 1 and {} entries",
                list.len(),
                self.limits.max_records
            )));
        }
        Ok(list)
    }

    fn at(field: &str, path: &str) -> String {
        if path.is_empty() {
            field.to_owned()
        } else {
            format!("{path}.{field}")
        }
    }

    fn data(&mut self, path: &str, data: Option<String>) -> Result<(), ApiError> {
        let at = Decoder::at("data", path);
        let Some(text) = data else {
            return Err(ApiError::validation(format!(
                "1 validation error detected: Value null at '{at}' failed to satisfy constraint: \
                 Member must not be null"
            )));
        };
        let start = self.data.len();
        base64::engine::general_purpose::STANDARD
            .decode_vec(text.as_bytes(), &mut self.data)
            .map_err(|e| {
                ApiError::new(
                    "SerializationException",
                    format!("'{at}' is not valid base64: {e}"),
                )
            })?;
        let size = self.data.len() - start;
        if size > self.limits.max_record_bytes {
            return Err(ApiError::validation(format!(
                "1 validation error detected: Value at '{at}' failed to satisfy constraint: Member \
                 must have length less than or equal to {} (it has {size} bytes)",
                self.limits.max_record_bytes
            )));
        }
        if self.data.len() > u32::MAX as usize {
            return Err(ApiError::validation("request too large"));
        }
        self.spans.push(Span {
            start: start as u32,
            end: self.data.len() as u32,
        });
        Ok(())
    }

    fn kinesis(&mut self, path: &str, e: KinesisEntry) -> Result<(), ApiError> {
        let at = Decoder::at("partitionKey", path);
        let key = e.partition_key.unwrap_or_default();
        let units = key.encode_utf16().count();
        if !(1..=256).contains(&units) {
            return Err(ApiError::validation(format!(
                "1 validation error detected: Value at '{at}' failed to satisfy constraint: Member \
                 must have length between 1 and 256 (it has {units})"
            )));
        }
        if let Some(h) = &e.explicit_hash_key
            && !is_hash_key(h)
        {
            return Err(ApiError::validation(format!(
                "1 validation error detected: Value {h:?} at '{}' failed to satisfy constraint: \
                 Member must be a decimal number from 0 to 2^128-1",
                Decoder::at("explicitHashKey", path)
            )));
        }
        self.data(path, e.data)?;
        self.meta.push(RecordMeta {
            partition_key: Some(key.into()),
            explicit_hash_key: e.explicit_hash_key.map(Into::into),
            attributes: Default::default(),
        });
        Ok(())
    }
}

fn is_hash_key(s: &str) -> bool {
    let digits = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits && (s == "0" || !s.starts_with('0')) && s.parse::<u128>().is_ok()
}

/// The shard id the endpoint reports: it has one.
pub const SHARD_ID: &str = "shardId-000000000000";

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

/// The answer to a record-carrying call whose `n` records were all accepted; sequence numbers
/// start at `first_seq`.
pub fn accepted(call: Call, n: usize, first_seq: u128) -> String {
    match call {
        Call::PutRecord => json!({
            "SequenceNumber": seq_text(first_seq),
            "ShardId": SHARD_ID,
            "EncryptionType": "NONE",
        }),
        Call::PutRecords => {
            let records: Vec<_> = (0..n)
                .map(|i| json!({"SequenceNumber": seq_text(first_seq + i as u128), "ShardId": SHARD_ID}))
                .collect();
            json!({"FailedRecordCount": 0, "Records": records, "EncryptionType": "NONE"})
        }
        Call::FirehosePutRecord => json!({"RecordId": seq_text(first_seq), "Encrypted": false}),
        Call::FirehosePutRecordBatch => {
            let responses: Vec<_> = (0..n)
                .map(|i| json!({"RecordId": seq_text(first_seq + i as u128)}))
                .collect();
            json!({"FailedPutCount": 0, "Encrypted": false, "RequestResponses": responses})
        }
        Call::DescribeStreamSummary | Call::ListShards => json!({}),
    }
    .to_string()
}

/// What a full pipeline answers: for the batch calls, every entry failed with a throttling
/// code (HTTP 200, so producers retry just those entries, as they do against Kinesis); for the
/// single-record calls, an error (HTTP 400). Returns the status and body.
pub fn refused(call: Call, n: usize) -> (u16, String) {
    let message = "edge-router pipeline is full; retry later";
    match call {
        Call::PutRecords => {
            let entry = json!({"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": message});
            let records = vec![entry; n];
            let body =
                json!({"FailedRecordCount": n, "Records": records, "EncryptionType": "NONE"});
            (200, body.to_string())
        }
        Call::FirehosePutRecordBatch => {
            let entry =
                json!({"ErrorCode": "ServiceUnavailableException", "ErrorMessage": message});
            let responses = vec![entry; n];
            let body =
                json!({"FailedPutCount": n, "Encrypted": false, "RequestResponses": responses});
            (200, body.to_string())
        }
        Call::FirehosePutRecord => (
            400,
            ApiError::new("ServiceUnavailableException", message).body(),
        ),
        _ => (
            400,
            ApiError::new("ProvisionedThroughputExceededException", message).body(),
        ),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StreamRef {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
}

/// The answer to `DescribeStreamSummary` or `ListShards`: an active stream with one open shard
/// covering every hash key.
pub fn describe(call: Call, body: &[u8], region: &str) -> Result<String, ApiError> {
    let r: StreamRef = serde_json::from_slice(body).map_err(|e| bad_json(&e))?;
    let stream = match call {
        Call::DescribeStreamSummary => stream_of(r.stream_name, r.stream_arn)?,
        // ListShards may page with a token instead of a name.
        _ => stream_of(r.stream_name, r.stream_arn).unwrap_or_default(),
    };
    let shard = json!({
        "ShardId": SHARD_ID,
        "HashKeyRange": {"StartingHashKey": "0", "EndingHashKey": u128::MAX.to_string()},
        "SequenceNumberRange": {"StartingSequenceNumber": seq_text(0)},
    });
    Ok(match call {
        Call::ListShards => json!({"Shards": [shard]}),
        _ => json!({"StreamDescriptionSummary": {
            "StreamName": stream,
            "StreamARN": format!("arn:aws:kinesis:{region}:000000000000:stream/{stream}"),
            "StreamStatus": "ACTIVE",
            "StreamModeDetails": {"StreamMode": "PROVISIONED"},
            "RetentionPeriodHours": 24,
            "StreamCreationTimestamp": 0,
            "EnhancedMonitoring": [{"ShardLevelMetrics": []}],
            "EncryptionType": "NONE",
            "OpenShardCount": 1,
            "ConsumerCount": 0,
        }}),
    }
    .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ApiLimits = ApiLimits {
        max_record_bytes: 8,
        max_records: 3,
    };

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn texts(r: &Records) -> Vec<&[u8]> {
        r.spans
            .iter()
            .map(|s| &r.data[s.start as usize..s.end as usize])
            .collect()
    }

    #[test]
    fn put_records_decodes_data_and_keys_into_one_buffer() {
        let body = json!({"StreamName": "s", "Records": [
            {"Data": b64("one"), "PartitionKey": "k1"},
            {"Data": b64(""), "PartitionKey": "k2", "ExplicitHashKey": "42"},
        ]});
        let r = parse_records(Call::PutRecords, body.to_string().as_bytes(), &LIMITS).unwrap();
        assert_eq!(r.stream, "s");
        assert_eq!(texts(&r), vec![&b"one"[..], b""]);
        let meta = r.meta.unwrap();
        assert_eq!(meta[0].partition_key.as_deref(), Some("k1"));
        assert_eq!(meta[1].explicit_hash_key.as_deref(), Some("42"));
    }

    #[test]
    fn put_record_and_stream_arn() {
        let body = json!({"StreamARN": "arn:aws:kinesis:us-east-1:1:stream/abc", "Data": b64("x"), "PartitionKey": "p"});
        let r = parse_records(Call::PutRecord, body.to_string().as_bytes(), &LIMITS).unwrap();
        assert_eq!((r.stream.as_str(), texts(&r)), ("abc", vec![&b"x"[..]]));
    }

    #[test]
    fn firehose_records_have_no_keys() {
        let body =
            json!({"DeliveryStreamName": "d", "Records": [{"Data": b64("a")}, {"Data": b64("b")}]});
        let r = parse_records(
            Call::FirehosePutRecordBatch,
            body.to_string().as_bytes(),
            &LIMITS,
        )
        .unwrap();
        assert_eq!(texts(&r), vec![&b"a"[..], b"b"]);
        assert_eq!(r.meta, None);
        let one = json!({"DeliveryStreamName": "d", "Record": {"Data": b64("z")}});
        let r =
            parse_records(Call::FirehosePutRecord, one.to_string().as_bytes(), &LIMITS).unwrap();
        assert_eq!(texts(&r), vec![&b"z"[..]]);
    }

    #[test]
    fn invalid_entries_are_named() {
        let cases = [
            (json!({"StreamName": "s", "Records": []}), "between 1 and 3"),
            (
                json!({"StreamName": "s", "Records": [{"Data": b64("a"), "PartitionKey": ""}]}),
                "records.1.member.partitionKey",
            ),
            (
                json!({"StreamName": "s", "Records": [{"Data": b64("a"), "PartitionKey": "k"}, {"PartitionKey": "k"}]}),
                "records.2.member.data",
            ),
            (
                json!({"StreamName": "s", "Records": [{"Data": b64("123456789"), "PartitionKey": "k"}]}),
                "less than or equal to 8",
            ),
            (
                json!({"StreamName": "s", "Records": [{"Data": "!!", "PartitionKey": "k"}]}),
                "not valid base64",
            ),
            (
                json!({"StreamName": "s", "Records": [{"Data": "", "PartitionKey": "k", "ExplicitHashKey": "007"}]}),
                "explicitHashKey",
            ),
            (
                json!({"Records": [{"Data": "", "PartitionKey": "k"}]}),
                "StreamName",
            ),
        ];
        for (body, words) in cases {
            let e = parse_records(Call::PutRecords, body.to_string().as_bytes(), &LIMITS)
                .expect_err(&body.to_string());
            assert!(e.message.contains(words), "{e} lacks {words}");
        }
        let e = parse_records(Call::PutRecords, b"{", &LIMITS).unwrap_err();
        assert_eq!(e.kind, "SerializationException");
        assert!(Call::from_target("Kinesis_20131202.DeleteStream").is_err());
    }

    #[test]
    fn hash_keys_are_decimal_128_bit() {
        assert!(is_hash_key("0"));
        assert!(is_hash_key(&u128::MAX.to_string()));
        assert!(!is_hash_key("340282366920938463463374607431768211456"));
        assert!(!is_hash_key("01"));
        assert!(!is_hash_key("-1"));
        assert!(!is_hash_key(""));
    }

    #[test]
    fn answers_have_the_services_shapes() {
        let ok: serde_json::Value =
            serde_json::from_str(&accepted(Call::PutRecords, 2, 7)).unwrap();
        assert_eq!(ok["FailedRecordCount"], 0);
        assert_eq!(ok["Records"].as_array().unwrap().len(), 2);
        assert_eq!(
            ok["Records"][1]["SequenceNumber"].as_str().unwrap(),
            format!("{:056}", 8)
        );
        let (status, body) = refused(Call::PutRecords, 3);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!((status, v["FailedRecordCount"].as_u64()), (200, Some(3)));
        assert_eq!(
            v["Records"][2]["ErrorCode"],
            "ProvisionedThroughputExceededException"
        );
        let (status, body) = refused(Call::FirehosePutRecordBatch, 1);
        assert_eq!(status, 200);
        assert!(body.contains("\"FailedPutCount\":1"));
        assert_eq!(refused(Call::PutRecord, 1).0, 400);
        let mut seq = Sequence::new(10);
        assert_eq!((seq.take(5), seq.take(1)), (10, 15));
    }

    #[test]
    fn describe_calls_report_one_shard_over_all_keys() {
        let v: serde_json::Value = serde_json::from_str(
            &describe(Call::ListShards, br#"{"StreamName":"s"}"#, "us-east-1").unwrap(),
        )
        .unwrap();
        assert_eq!(
            v["Shards"][0]["HashKeyRange"]["EndingHashKey"],
            u128::MAX.to_string()
        );
        let v: serde_json::Value = serde_json::from_str(
            &describe(
                Call::DescribeStreamSummary,
                br#"{"StreamName":"s"}"#,
                "eu-west-1",
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(v["StreamDescriptionSummary"]["StreamStatus"], "ACTIVE");
        assert!(describe(Call::DescribeStreamSummary, b"{}", "r").is_err());
    }

    #[test]
    fn access_key_from_sigv4_header() {
        let h = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/kinesis/aws4_request, SignedHeaders=host, Signature=abc";
        assert_eq!(access_key_id(h), Some("AKIDEXAMPLE"));
        assert_eq!(access_key_id("Bearer x"), None);
        assert_eq!(access_key_id("Credential=/x"), None);
    }
}
