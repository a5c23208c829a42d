//! Settings of the Kinesis Data Streams sink: the `kind = "kinesis"` sink table (and the
//! `kinesis://STREAM?key=value` quick-mode URI, which becomes the same table).
//!
//! Read with the same [`Section`] getters as every other component, so every problem is reported
//! with file, line, column and key, and ranges are the API's limits. The runtime only sees the
//! validated [`KinesisSinkConfig`].

use crate::config::reader::{Diagnostics, Section};
use crate::core::kinesis::aggregate::AGGREGATE_BYTES_MAX_DEFAULT;
use crate::core::partitioner::PartitionSpec;
use crate::sinks::aws::batch::{
    PUT_RECORDS_BYTES_MAX, PUT_RECORDS_ENTRIES_MAX, RECORD_BYTES_MAX_LIMIT,
};
use crate::sinks::aws::config::{AwsConfig, AwsDefaults, is_region};

/// The Kinesis sink's defaults and limits of the shared AWS keys.
pub const DEFAULTS: AwsDefaults = AwsDefaults {
    linger_ms: (100, 60_000),
    request_entries_max: PUT_RECORDS_ENTRIES_MAX,
    request_bytes_max: (PUT_RECORDS_BYTES_MAX, RECORD_BYTES_MAX_LIMIT),
    calls: (8, 6_000),
};

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
    /// Region (default: from the ARN, then the standard chain), endpoint, role, request limits
    /// (PutRecords: entries, bytes of data + partition keys), linger, calls in flight, retries
    /// and timeout.
    pub aws: AwsConfig,
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
    /// Percent of each shard's write limits (1000 records/s, 1 MiB/s) to use; 0 = no limit.
    pub rate_limit_percent: u32,
}

impl KinesisSinkConfig {
    /// The defaults of every optional key, for a stream named `stream`.
    pub fn new(stream: impl Into<String>) -> KinesisSinkConfig {
        KinesisSinkConfig {
            stream: stream.into(),
            aws: AwsConfig::new(&DEFAULTS),
            partition: PartitionSpec::default(),
            ordering: Ordering::Unordered,
            aggregate: false,
            aggregate_bytes_max: AGGREGATE_BYTES_MAX_DEFAULT,
            rate_limit_percent: 100,
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
        c.aws = AwsConfig::parse(s, d, &DEFAULTS);
        if let Some(r) = c.aws.region.as_deref().filter(|r| is_region(r))
            && let Some(arn) = stream.as_ref().and_then(|st| arn_region(&st.value))
            && arn != r
        {
            d.error(
                &s.spot_of("region"),
                format!("the stream ARN names region {arn:?}, but `region` is {r:?}"),
            );
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
        c.rate_limit_percent = s.int_or(d, "rate_limit_percent", 100, 0..=1000) as u32;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SinkKind;
    use crate::sinks::aws::config::{assert_problems, parse_sink, quick_sink};
    use std::time::Duration;

    /// The Kinesis sink of a file whose `[sinks.k]` has `table` (the shared AWS keys are
    /// tested for both sinks in `aws::config`).
    fn parse(table: &str) -> Result<KinesisSinkConfig, Vec<String>> {
        let kind = parse_sink("k", "kinesis", table)?;
        let SinkKind::Kinesis(k) = kind else {
            panic!("not a kinesis sink: {kind:?}")
        };
        Ok(*k)
    }

    #[test]
    fn defaults() {
        let c = parse("stream = \"s\"\n").unwrap();
        assert_eq!(c, KinesisSinkConfig::new("s"));
        assert_eq!(c.stream_name(), "s");
        assert_eq!(c.arn_region(), None);
        assert_eq!(c.partition, PartitionSpec::default());
        assert_eq!(c.ordering, Ordering::Unordered);
        assert!(!c.aggregate);
        assert_eq!(c.aggregate_bytes_max, 51_200);
        assert_eq!(c.rate_limit_percent, 100);
    }

    #[test]
    fn every_own_key() {
        let c = parse(
            r#"stream = "arn:aws:kinesis:eu-west-1:123456789012:stream/telemetry"
region = "eu-west-1"
partition = "field:device.id"
fallback = "constant:none"
too_long = "reject"
explicit_hash_key = "field:site"
ordering = "ordered"
aggregate = true
aggregate_bytes_max = "100KiB"
request_bytes_max = "10MiB"
rate_limit_percent = 0
"#,
        )
        .unwrap();
        assert_eq!(c.stream_name(), "telemetry");
        assert_eq!(c.arn_region(), Some("eu-west-1"));
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
        assert_eq!(c.aws.request_bytes_max, 10 << 20);
        assert_eq!(c.rate_limit_percent, 0);
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let errs = parse(
            r#"stream = "bad name!"
fallback = "constant:"
ordering = "strict"
aggregate_bytes_max = "10"
request_bytes_max = "11MiB"
rate_limit_percent = 5000
colour = "blue"
"#,
        )
        .unwrap_err();
        let expect = [
            "t.toml:6:10: `sinks.k.stream`: \"bad name!\" is not a stream name",
            "t.toml:7:12: `sinks.k.fallback`: `constant:` needs a non-empty TEXT",
            "t.toml:8:12: `sinks.k.ordering`: unknown value \"strict\"; expected one of: unordered, ordered",
            "t.toml:9:23: `sinks.k.aggregate_bytes_max`: 10 is out of range; allowed: 1024 to 10485760",
            "t.toml:9:23: `sinks.k.aggregate_bytes_max`: aggregate_bytes_max needs aggregate = true",
            "t.toml:10:21: `sinks.k.request_bytes_max`: 11534336 is out of range; allowed: 1024 to 10485760",
            "t.toml:11:22: `sinks.k.rate_limit_percent`: 5000 is out of range; allowed: 0 to 1000",
            "t.toml:12:1: `sinks.k.colour`: unknown key `colour`",
        ];
        assert_problems(&errs, &expect);
        let bad_partition = parse("stream = \"s\"\npartition = \"shard:3\"\n").unwrap_err();
        assert_problems(&bad_partition, &["t.toml:7:13: `sinks.k.partition`: "]);
        for bad in [
            "arn:aws:kinesis:eu-west-1:1:table/s",
            "arn:aws:s3:eu-west-1:1:stream/s",
        ] {
            let errs = parse(&format!("stream = {bad:?}\n")).unwrap_err();
            assert!(errs[0].contains("is not a stream ARN"), "{errs:?}");
        }
        let arn =
            parse("stream = \"arn:aws:kinesis:eu-west-1:1:stream/s\"\nregion = \"us-east-1\"\n")
                .unwrap_err();
        assert_problems(
            &arn,
            &[
                "t.toml:7:10: `sinks.k.region`: the stream ARN names region \"eu-west-1\", but `region` is \"us-east-1\"",
            ],
        );
    }

    #[test]
    fn quick_mode_uri() {
        let uri = "kinesis://events?region=us-east-1&partition=field:device_id&ordering=ordered&aggregate=true&linger_ms=5";
        let (name, kind) = quick_sink(uri).unwrap();
        let SinkKind::Kinesis(k) = kind else {
            panic!("not kinesis: {kind:?}")
        };
        assert_eq!(name, "kinesis");
        assert_eq!(k.stream, "events");
        assert_eq!(k.aws.region.as_deref(), Some("us-east-1"));
        assert_eq!(k.aws.linger, Duration::from_millis(5));
        assert_eq!(k.ordering, Ordering::Ordered);
        assert!(k.aggregate);
        let (_, SinkKind::Kinesis(k)) =
            quick_sink("kinesis:arn:aws:kinesis:us-east-1:1:stream/x").unwrap()
        else {
            panic!("not kinesis")
        };
        assert_eq!(k.stream_name(), "x");
        let err = quick_sink("kinesis://s?ordering=no").unwrap_err();
        assert!(
            err.contains("`sinks.kinesis.ordering`: unknown value \"no\""),
            "{err}"
        );
    }
}
