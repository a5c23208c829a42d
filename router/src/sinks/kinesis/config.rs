//! Settings of the Kinesis Data Streams sink: the `kind = "kinesis"` sink table (and the
//! `kinesis://STREAM?key=value` quick-mode URI, which becomes the same table).
//!
//! Read with the same [`Section`] getters as every other component, so every problem is reported
//! with file, line, column and key, and ranges are the API's limits. The runtime only sees the
//! validated [`KinesisSinkConfig`].

use std::time::Duration;

use crate::config::reader::{Diagnostics, Section};
use crate::core::kinesis::aggregate::AGGREGATE_BYTES_MAX_DEFAULT;
use crate::core::partitioner::PartitionSpec;
use crate::sinks::kinesis::batch::{
    PUT_RECORDS_BYTES_MAX, PUT_RECORDS_ENTRIES_MAX, RECORD_BYTES_MAX_LIMIT,
};
use crate::sinks::kinesis::retry::{Jitter, RetryPolicy};

/// What order the sink keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ordering {
    /// No promise: as many requests in flight as allowed, retried entries go with later ones.
    Unordered,
    /// Records with the same partition key reach Kinesis in the order the sink received them,
    /// across retries and partial failures.
    Ordered,
}

/// Validated settings of one Kinesis sink.
#[derive(Debug, Clone, PartialEq)]
pub struct KinesisSinkConfig {
    /// Stream name, or stream ARN (`arn:aws:kinesis:REGION:ACCOUNT:stream/NAME`).
    pub stream: String,
    /// Region; `None`: from the ARN, else from the environment or profile (the standard chain).
    pub region: Option<String>,
    /// Endpoint override (a local server such as kinesalite); `None`: the standard endpoint
    /// (or the `AWS_ENDPOINT_URL` environment variable).
    pub endpoint: Option<String>,
    /// A role to assume with the credentials of the standard chain.
    pub role_arn: Option<String>,
    /// Partition keys and explicit hash keys: the `partition`, `fallback`, `too_long` and
    /// `explicit_hash_key` keys (see [`crate::core::partitioner`]).
    pub partition: PartitionSpec,
    /// Ordered or unordered.
    pub ordering: Ordering,
    /// Whether to pack user records into KPL aggregated records (per predicted shard).
    pub aggregate: bool,
    /// Most bytes (data + partition key) of one aggregated record; at most the stream's record
    /// limit (clamped at start-up).
    pub aggregate_bytes_max: usize,
    /// How long the oldest record may wait for company before a request goes out.
    pub linger: Duration,
    /// Most entries (Kinesis records) per PutRecords request.
    pub request_entries_max: usize,
    /// Most bytes (data + partition keys) per PutRecords request.
    pub request_bytes_max: usize,
    /// Percent of each shard's write limits (1000 records/s, 1 MiB/s) to use; 0 = no limit.
    pub rate_limit_percent: u32,
    /// Most PutRecords requests in flight at once.
    pub max_in_flight: usize,
    /// Retries of failed entries and calls.
    pub retry: RetryPolicy,
    /// Time limit of one call (connect, send, answer).
    pub request_timeout: Duration,
}

impl KinesisSinkConfig {
    /// The defaults of every optional key, for a stream named `stream`.
    pub fn new(stream: impl Into<String>) -> KinesisSinkConfig {
        KinesisSinkConfig {
            stream: stream.into(),
            region: None,
            endpoint: None,
            role_arn: None,
            partition: PartitionSpec::default(),
            ordering: Ordering::Unordered,
            aggregate: false,
            aggregate_bytes_max: AGGREGATE_BYTES_MAX_DEFAULT,
            linger: Duration::from_millis(100),
            request_entries_max: PUT_RECORDS_ENTRIES_MAX,
            request_bytes_max: PUT_RECORDS_BYTES_MAX,
            rate_limit_percent: 100,
            max_in_flight: 8,
            retry: RetryPolicy::default(),
            request_timeout: Duration::from_secs(6),
        }
    }

    /// The stream's name (the last part of an ARN).
    pub fn stream_name(&self) -> &str {
        match self.stream.strip_prefix("arn:") {
            Some(_) => self
                .stream
                .rsplit_once("stream/")
                .map_or(self.stream.as_str(), |(_, name)| name),
            None => &self.stream,
        }
    }

    /// The region written in the stream ARN, if the stream is given as an ARN.
    pub fn arn_region(&self) -> Option<&str> {
        arn_region(&self.stream)
    }

    /// Reads a `kind = "kinesis"` sink table.
    pub fn parse(s: &mut Section<'_>, d: &mut Diagnostics) -> Option<KinesisSinkConfig> {
        let mut c = KinesisSinkConfig::new("");
        let stream = s.required_str(d, "stream");
        if let Some(st) = &stream
            && let Err(e) = check_stream(&st.value)
        {
            d.error(&st.spot, e);
        }
        if let Some(r) = s.opt_str(d, "region") {
            if !is_region(&r.value) {
                d.error(
                    &r.spot,
                    format!(
                        "{:?} is not a region name; expected something like \"us-east-1\"",
                        r.value
                    ),
                );
            } else if let Some(arn) = stream.as_ref().and_then(|st| arn_region(&st.value))
                && arn != r.value
            {
                d.error(
                    &r.spot,
                    format!(
                        "the stream ARN names region {arn:?}, but `region` is {:?}",
                        r.value
                    ),
                );
            }
            c.region = Some(r.value);
        }
        c.endpoint = parse_endpoint(s, d);
        if let Some(r) = s.opt_str(d, "role_arn") {
            if !r.value.starts_with("arn:") || r.value.split(':').count() < 6 {
                d.error(
                    &r.spot,
                    format!(
                        "{:?} is not a role ARN; expected arn:aws:iam::ACCOUNT:role/NAME",
                        r.value
                    ),
                );
            }
            c.role_arn = Some(r.value);
        }
        let partition = s.opt_str(d, "partition");
        let fallback = s.opt_str(d, "fallback");
        let too_long = s.opt_str(d, "too_long");
        let explicit_hash_key = s.opt_str(d, "explicit_hash_key");
        let text = |v: &Option<crate::config::reader::Located<String>>| {
            v.as_ref().map(|l| l.value.clone())
        };
        match PartitionSpec::parse(
            text(&partition).as_deref().unwrap_or("random"),
            text(&fallback).as_deref(),
            text(&too_long).as_deref(),
            text(&explicit_hash_key).as_deref(),
        ) {
            Ok(spec) => c.partition = spec,
            Err(e) => d.error(&s.spot_of(e.setting), e.message),
        }
        c.ordering = match s.choice(d, "ordering", &["unordered", "ordered"], "unordered") {
            "ordered" => Ordering::Ordered,
            _ => Ordering::Unordered,
        };
        c.aggregate = s.bool_or(d, "aggregate", false);
        let agg_spot = s.spot_of("aggregate_bytes_max");
        let agg_given = s.has("aggregate_bytes_max");
        c.aggregate_bytes_max = s.size_or(
            d,
            "aggregate_bytes_max",
            AGGREGATE_BYTES_MAX_DEFAULT as u64,
            1024..=RECORD_BYTES_MAX_LIMIT as u64,
        ) as usize;
        if agg_given && !c.aggregate {
            d.error(&agg_spot, "aggregate_bytes_max needs aggregate = true");
        }
        c.linger = Duration::from_millis(s.int_or(d, "linger_ms", 100, 0..=60_000));
        c.request_entries_max = s.int_or(
            d,
            "request_entries_max",
            PUT_RECORDS_ENTRIES_MAX as u64,
            1..=PUT_RECORDS_ENTRIES_MAX as u64,
        ) as usize;
        c.request_bytes_max = s.size_or(
            d,
            "request_bytes_max",
            PUT_RECORDS_BYTES_MAX as u64,
            1024..=RECORD_BYTES_MAX_LIMIT as u64,
        ) as usize;
        c.rate_limit_percent = s.int_or(d, "rate_limit_percent", 100, 0..=1000) as u32;
        c.max_in_flight = s.int_or(d, "max_in_flight", 8, 1..=256) as usize;
        c.retry = parse_retry(s, d);
        c.request_timeout =
            Duration::from_millis(s.int_or(d, "request_timeout_ms", 6_000, 100..=600_000));
        c.stream = stream?.value;
        Some(c)
    }
}

/// The region of a Kinesis stream ARN (`arn:PARTITION:kinesis:REGION:ACCOUNT:stream/NAME`).
fn arn_region(stream: &str) -> Option<&str> {
    let mut parts = stream.strip_prefix("arn:")?.split(':');
    let (_partition, _service, region) = (parts.next()?, parts.next()?, parts.next()?);
    (!region.is_empty()).then_some(region)
}

/// Checks a stream name (1..128 of `[a-zA-Z0-9_.-]`) or stream ARN.
fn check_stream(stream: &str) -> Result<(), String> {
    if stream.starts_with("arn:") {
        let parts: Vec<&str> = stream.splitn(6, ':').collect();
        let ok = parts.len() == 6
            && parts[2] == "kinesis"
            && !parts[3].is_empty()
            && parts[5]
                .strip_prefix("stream/")
                .is_some_and(|n| check_stream(n).is_ok());
        return if ok {
            Ok(())
        } else {
            Err(format!(
                "{stream:?} is not a stream ARN; expected arn:aws:kinesis:REGION:ACCOUNT:stream/NAME"
            ))
        };
    }
    let ok = (1..=128).contains(&stream.len())
        && stream
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{stream:?} is not a stream name; expected 1 to 128 of the characters a-z, A-Z, 0-9, \
             `_`, `.` and `-`, or a stream ARN"
        ))
    }
}

/// Reads the optional `endpoint` (an http:// or https:// URL).
pub(crate) fn parse_endpoint(s: &mut Section<'_>, d: &mut Diagnostics) -> Option<String> {
    let e = s.opt_str(d, "endpoint")?;
    let ok = ["http://", "https://"]
        .iter()
        .any(|p| e.value.strip_prefix(p).is_some_and(|rest| !rest.is_empty()));
    if !ok {
        d.error(
            &e.spot,
            format!(
                "{:?} is not an endpoint URL; expected http://HOST:PORT or https://HOST",
                e.value
            ),
        );
    }
    Some(e.value)
}

/// Reads `retry_attempts_max`, `retry_ttl_ms`, `retry_backoff_ms` and `retry_backoff_max_ms`.
pub(crate) fn parse_retry(s: &mut Section<'_>, d: &mut Diagnostics) -> RetryPolicy {
    let attempts = s.int_or(d, "retry_attempts_max", 20, 1..=1000) as u32;
    let ttl_ms = s.int_or(d, "retry_ttl_ms", 30_000, 100..=86_400_000);
    let base_ms = s.int_or(d, "retry_backoff_ms", 100, 1..=60_000);
    let cap_spot = s.spot_of("retry_backoff_max_ms");
    let cap_ms = s.int_or(d, "retry_backoff_max_ms", 5_000, 1..=600_000);
    if cap_ms < base_ms {
        d.error(
            &cap_spot,
            format!("retry_backoff_max_ms ({cap_ms}) is below retry_backoff_ms ({base_ms})"),
        );
    }
    RetryPolicy {
        base: Duration::from_millis(base_ms),
        cap: Duration::from_millis(cap_ms.max(base_ms)),
        attempts_max: attempts,
        ttl: Duration::from_millis(ttl_ms),
        jitter: Jitter::Full,
    }
}

/// Whether `r` looks like a region name (`us-east-1`, `eu-central-2`, `us-gov-west-1`, ...).
pub(crate) fn is_region(r: &str) -> bool {
    (1..=64).contains(&r.len())
        && r.contains('-')
        && r.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{SinkKind, parse_str};

    fn parse(table: &str) -> Result<KinesisSinkConfig, Vec<String>> {
        let text =
            format!("[sources.in]\nkind = \"stdin\"\n\n[sinks.k]\nkind = \"kinesis\"\n{table}");
        match parse_str("t.toml", &text) {
            Ok(c) => match &c.sinks[0].kind {
                SinkKind::Kinesis(k) => Ok((**k).clone()),
                other => panic!("not a kinesis sink: {other:?}"),
            },
            Err(e) => Err(e.0.iter().map(ToString::to_string).collect()),
        }
    }

    #[test]
    fn defaults() {
        let c = parse("stream = \"s\"\n").unwrap();
        assert_eq!(c.stream, "s");
        assert_eq!(c.stream_name(), "s");
        assert_eq!(c.partition, PartitionSpec::default());
        assert_eq!(c.ordering, Ordering::Unordered);
        assert!(!c.aggregate);
        assert_eq!(c.aggregate_bytes_max, 51_200);
        assert_eq!(c.linger, Duration::from_millis(100));
        assert_eq!(c.request_entries_max, 500);
        assert_eq!(c.request_bytes_max, 5 << 20);
        assert_eq!(c.rate_limit_percent, 100);
        assert_eq!(c.max_in_flight, 8);
        assert_eq!(c.retry.attempts_max, 20);
        assert_eq!(c.retry.ttl, Duration::from_secs(30));
    }

    #[test]
    fn every_key() {
        let c = parse(
            r#"stream = "arn:aws:kinesis:eu-west-1:123456789012:stream/telemetry"
region = "eu-west-1"
endpoint = "http://127.0.0.1:4567"
role_arn = "arn:aws:iam::123456789012:role/writer"
partition = "field:device.id"
fallback = "constant:none"
too_long = "reject"
explicit_hash_key = "field:site"
ordering = "ordered"
aggregate = true
aggregate_bytes_max = "100KiB"
linger_ms = 20
request_entries_max = 100
request_bytes_max = "1MiB"
rate_limit_percent = 0
max_in_flight = 2
retry_attempts_max = 5
retry_ttl_ms = 10000
retry_backoff_ms = 50
retry_backoff_max_ms = 1000
request_timeout_ms = 2000
"#,
        )
        .unwrap();
        assert_eq!(c.stream_name(), "telemetry");
        assert_eq!(c.arn_region(), Some("eu-west-1"));
        assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:4567"));
        assert_eq!(
            c.partition,
            PartitionSpec::parse(
                "field:device.id",
                Some("constant:none"),
                Some("reject"),
                Some("field:site")
            )
            .unwrap()
        );
        assert_eq!(c.ordering, Ordering::Ordered);
        assert!(c.aggregate);
        assert_eq!(c.aggregate_bytes_max, 100 * 1024);
        assert_eq!(c.request_bytes_max, 1 << 20);
        assert_eq!(c.rate_limit_percent, 0);
        assert_eq!(c.retry.base, Duration::from_millis(50));
        assert_eq!(c.request_timeout, Duration::from_secs(2));
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let errs = parse(
            r#"stream = "bad name!"
region = "Mars"
endpoint = "127.0.0.1:4567"
role_arn = "writer"
fallback = "constant:"
ordering = "strict"
aggregate_bytes_max = "10"
request_entries_max = 501
rate_limit_percent = 5000
retry_backoff_ms = 500
retry_backoff_max_ms = 100
colour = "blue"
"#,
        )
        .unwrap_err();
        let expect = [
            "t.toml:6:10: `sinks.k.stream`: \"bad name!\" is not a stream name",
            "t.toml:7:10: `sinks.k.region`: \"Mars\" is not a region name",
            "t.toml:8:12: `sinks.k.endpoint`: \"127.0.0.1:4567\" is not an endpoint URL",
            "t.toml:9:12: `sinks.k.role_arn`: \"writer\" is not a role ARN",
            "t.toml:10:12: `sinks.k.fallback`: `constant:` needs a non-empty TEXT",
            "t.toml:11:12: `sinks.k.ordering`: unknown value \"strict\"; expected one of: unordered, ordered",
            "t.toml:12:23: `sinks.k.aggregate_bytes_max`: 10 is out of range; allowed: 1024 to 10485760",
            "t.toml:12:23: `sinks.k.aggregate_bytes_max`: aggregate_bytes_max needs aggregate = true",
            "t.toml:13:23: `sinks.k.request_entries_max`: 501 is out of range; allowed: 1 to 500",
            "t.toml:14:22: `sinks.k.rate_limit_percent`: 5000 is out of range; allowed: 0 to 1000",
            "t.toml:16:24: `sinks.k.retry_backoff_max_ms`: retry_backoff_max_ms (100) is below retry_backoff_ms (500)",
            "t.toml:17:1: `sinks.k.colour`: unknown key `colour`",
        ];
        assert_eq!(errs.len(), expect.len(), "{}", errs.join("\n"));
        for (e, want) in errs.iter().zip(expect) {
            assert!(e.starts_with(want), "expected\n  {want}\nfound\n  {e}");
        }
        let bad_partition = parse("stream = \"s\"\npartition = \"shard:3\"\n").unwrap_err();
        assert_eq!(bad_partition.len(), 1, "{bad_partition:?}");
        assert!(
            bad_partition[0].starts_with("t.toml:7:13: `sinks.k.partition`: "),
            "{bad_partition:?}"
        );
        let missing = parse("region = \"us-east-1\"\n").unwrap_err();
        assert_eq!(missing.len(), 1, "{missing:?}");
        assert!(
            missing[0].contains("missing required key `sinks.k.stream`"),
            "{missing:?}"
        );
        let arn =
            parse("stream = \"arn:aws:kinesis:eu-west-1:1:stream/s\"\nregion = \"us-east-1\"\n")
                .unwrap_err();
        assert!(
            arn[0].contains("the stream ARN names region \"eu-west-1\""),
            "{arn:?}"
        );
    }

    #[test]
    fn quick_mode_uri() {
        let c = crate::config::from_quick(
            None,
            &[],
            &["kinesis://events?region=us-east-1&endpoint=http://127.0.0.1:4567&partition=field:device_id&ordering=ordered&aggregate=true&linger_ms=5".to_owned()],
            None,
        )
        .unwrap();
        let SinkKind::Kinesis(k) = &c.sinks[0].kind else {
            panic!("not kinesis")
        };
        assert_eq!(c.sinks[0].name, "kinesis");
        assert_eq!(k.stream, "events");
        assert_eq!(k.region.as_deref(), Some("us-east-1"));
        assert_eq!(k.ordering, Ordering::Ordered);
        assert!(k.aggregate);
        assert_eq!(k.linger, Duration::from_millis(5));
        let arn = crate::config::from_quick(
            None,
            &[],
            &["kinesis:arn:aws:kinesis:us-east-1:1:stream/x".to_owned()],
            None,
        )
        .unwrap();
        let SinkKind::Kinesis(k) = &arn.sinks[0].kind else {
            panic!("not kinesis")
        };
        assert_eq!(k.stream_name(), "x");
        let err = crate::config::from_quick(None, &[], &["kinesis://?region=x".to_owned()], None)
            .unwrap_err();
        assert!(err.to_string().contains("needs a stream"), "{err}");
        let err =
            crate::config::from_quick(None, &[], &["kinesis://s?ordering=no".to_owned()], None)
                .unwrap_err();
        assert!(
            err.to_string()
                .contains("`sinks.kinesis.ordering`: unknown value \"no\""),
            "{err}"
        );
    }
}
