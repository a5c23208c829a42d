//! Settings of the Firehose sink: the `kind = "firehose"` sink table (and the
//! `firehose://NAME?key=value` quick-mode URI, which becomes the same table), read with the same
//! [`Section`] getters as every other sink. The runtime only sees [`FirehoseSinkConfig`].

use std::time::Duration;

use crate::config::reader::{Diagnostics, Section};
use crate::sinks::aws::retry::RetryPolicy;
use crate::sinks::firehose::pack::{
    PACK_BYTES_MAX_DEFAULT, PackPolicy, RECORD_BYTES_MAX, REQUEST_BYTES_MAX, REQUEST_ENTRIES_MAX,
};
use crate::sinks::kinesis::config::{is_region, parse_endpoint, parse_retry};

/// Validated settings of one Firehose sink.
#[derive(Debug, Clone, PartialEq)]
pub struct FirehoseSinkConfig {
    /// The delivery stream's name.
    pub delivery_stream: String,
    /// Region; `None`: from the environment or profile (the standard chain).
    pub region: Option<String>,
    /// Endpoint override (a local server such as moto); `None`: the standard endpoint.
    pub endpoint: Option<String>,
    /// Packing: on/off, size, delimiter.
    pub pack: PackPolicy,
    /// How long the oldest record may wait for company before a request goes out.
    pub linger: Duration,
    /// Compress each Firehose record as a gzip member at this level (`None`: as is).
    pub gzip_level: Option<u32>,
    /// Most records per PutRecordBatch request.
    pub request_entries_max: usize,
    /// Most bytes per PutRecordBatch request.
    pub request_bytes_max: usize,
    /// Most calls in flight.
    pub max_in_flight: usize,
    /// Retries of failed records and calls.
    pub retry: RetryPolicy,
    /// Timeout of one call.
    pub request_timeout: Duration,
}

impl FirehoseSinkConfig {
    /// The defaults for a delivery stream.
    pub fn new(delivery_stream: &str) -> Self {
        FirehoseSinkConfig {
            delivery_stream: delivery_stream.to_owned(),
            region: None,
            endpoint: None,
            pack: PackPolicy::default(),
            linger: Duration::from_millis(200),
            gzip_level: None,
            request_entries_max: REQUEST_ENTRIES_MAX,
            request_bytes_max: REQUEST_BYTES_MAX,
            max_in_flight: 4,
            retry: RetryPolicy::default(),
            request_timeout: Duration::from_secs(10),
        }
    }

    /// Reads a `kind = "firehose"` sink table.
    pub fn parse(s: &mut Section<'_>, d: &mut Diagnostics) -> Option<FirehoseSinkConfig> {
        let mut c = FirehoseSinkConfig::new("");
        let stream = s.required_str(d, "delivery_stream");
        if let Some(st) = &stream {
            let ok = (1..=64).contains(&st.value.len())
                && st
                    .value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
            if !ok {
                d.error(
                    &st.spot,
                    format!(
                        "{:?} is not a delivery stream name; expected 1 to 64 of the characters \
                         a-z, A-Z, 0-9, `_`, `.` and `-`",
                        st.value
                    ),
                );
            }
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
            }
            c.region = Some(r.value);
        }
        c.endpoint = parse_endpoint(s, d);
        c.pack.pack = s.bool_or(d, "pack", true);
        let size_spot = s.spot_of("pack_bytes_max");
        let size_given = s.has("pack_bytes_max");
        c.pack.pack_bytes_max = s.size_or(
            d,
            "pack_bytes_max",
            PACK_BYTES_MAX_DEFAULT as u64,
            1024..=RECORD_BYTES_MAX as u64,
        ) as usize;
        if size_given && !c.pack.pack {
            d.error(&size_spot, "pack_bytes_max needs pack = true");
        }
        if let Some(delim) = s.opt_str(d, "delimiter") {
            if delim.value.len() > 16 {
                d.error(&delim.spot, "a delimiter has at most 16 bytes");
            } else if delim.value.is_empty() && c.pack.pack {
                d.error(
                    &delim.spot,
                    "an empty delimiter needs pack = false (packed records would run together)",
                );
            }
            c.pack.delimiter = delim.value.into_bytes();
        }
        let gzip = s.choice(d, "compression", &["none", "gzip"], "none") == "gzip";
        let level_spot = s.spot_of("compression_level");
        let level_given = s.has("compression_level");
        let level = s.int_or(d, "compression_level", 6, 0..=9) as u32;
        if level_given && !gzip {
            d.error(
                &level_spot,
                "compression_level needs compression = \"gzip\"",
            );
        }
        c.gzip_level = gzip.then_some(level);
        c.linger = Duration::from_millis(s.int_or(d, "linger_ms", 200, 0..=900_000));
        c.request_entries_max = s.int_or(
            d,
            "request_entries_max",
            REQUEST_ENTRIES_MAX as u64,
            1..=REQUEST_ENTRIES_MAX as u64,
        ) as usize;
        c.request_bytes_max = s.size_or(
            d,
            "request_bytes_max",
            REQUEST_BYTES_MAX as u64,
            1024..=REQUEST_BYTES_MAX as u64,
        ) as usize;
        c.max_in_flight = s.int_or(d, "max_in_flight", 4, 1..=256) as usize;
        c.retry = parse_retry(s, d);
        c.request_timeout =
            Duration::from_millis(s.int_or(d, "request_timeout_ms", 10_000, 100..=600_000));
        c.delivery_stream = stream?.value;
        Some(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{SinkKind, parse_str};

    fn parse(table: &str) -> Result<FirehoseSinkConfig, Vec<String>> {
        let text =
            format!("[sources.in]\nkind = \"stdin\"\n\n[sinks.f]\nkind = \"firehose\"\n{table}");
        match parse_str("t.toml", &text) {
            Ok(c) => match &c.sinks[0].kind {
                SinkKind::Firehose(f) => Ok((**f).clone()),
                other => panic!("not a firehose sink: {other:?}"),
            },
            Err(e) => Err(e.0.iter().map(ToString::to_string).collect()),
        }
    }

    #[test]
    fn defaults() {
        let c = parse("delivery_stream = \"s\"\n").unwrap();
        assert_eq!(c.delivery_stream, "s");
        assert!(c.pack.pack);
        assert_eq!(c.pack.pack_bytes_max, 900 * 1024);
        assert_eq!(c.pack.delimiter, b"\n");
        assert_eq!(c.linger, Duration::from_millis(200));
        assert_eq!(c.request_entries_max, 500);
        assert_eq!(c.request_bytes_max, 4 << 20);
        assert_eq!(c.max_in_flight, 4);
        assert_eq!(c.gzip_level, None);
        assert_eq!(c.retry.attempts_max, 20);
    }

    #[test]
    fn every_key() {
        let c = parse(
            r#"delivery_stream = "to-s3"
region = "eu-west-1"
endpoint = "http://127.0.0.1:5000"
pack = true
pack_bytes_max = "64KiB"
delimiter = "\r\n"
compression = "gzip"
compression_level = 9
linger_ms = 20
request_entries_max = 100
request_bytes_max = "1MiB"
max_in_flight = 1
retry_attempts_max = 5
retry_ttl_ms = 10000
retry_backoff_ms = 50
retry_backoff_max_ms = 1000
request_timeout_ms = 2000
"#,
        )
        .unwrap();
        assert_eq!(c.region.as_deref(), Some("eu-west-1"));
        assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:5000"));
        assert_eq!(c.pack.pack_bytes_max, 64 * 1024);
        assert_eq!(c.pack.delimiter, b"\r\n");
        assert_eq!(c.gzip_level, Some(9));
        assert_eq!(c.linger, Duration::from_millis(20));
        assert_eq!(c.request_entries_max, 100);
        assert_eq!(c.request_bytes_max, 1 << 20);
        assert_eq!(c.max_in_flight, 1);
        assert_eq!(c.retry.attempts_max, 5);
        assert_eq!(c.retry.base, Duration::from_millis(50));
        assert_eq!(c.request_timeout, Duration::from_secs(2));
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let errs = parse(
            r#"delivery_stream = "bad name!"
region = "Mars"
endpoint = "127.0.0.1:5000"
pack = false
pack_bytes_max = "2MiB"
request_entries_max = 501
request_bytes_max = "5MiB"
colour = "blue"
"#,
        )
        .unwrap_err();
        let expect = [
            "t.toml:6:19: `sinks.f.delivery_stream`: \"bad name!\" is not a delivery stream name",
            "t.toml:7:10: `sinks.f.region`: \"Mars\" is not a region name",
            "t.toml:8:12: `sinks.f.endpoint`: \"127.0.0.1:5000\" is not an endpoint URL",
            "t.toml:10:18: `sinks.f.pack_bytes_max`: 2097152 is out of range",
            "t.toml:10:18: `sinks.f.pack_bytes_max`: pack_bytes_max needs pack = true",
            "t.toml:11:23: `sinks.f.request_entries_max`: 501 is out of range; allowed: 1 to 500",
            "t.toml:12:21: `sinks.f.request_bytes_max`: 5242880 is out of range",
            "t.toml:13:1: `sinks.f.colour`: unknown key `colour`",
        ];
        assert_eq!(errs.len(), expect.len(), "{}", errs.join("\n"));
        for (e, want) in errs.iter().zip(expect) {
            assert!(e.starts_with(want), "expected\n  {want}\nfound\n  {e}");
        }
        let empty = parse("delivery_stream = \"s\"\ndelimiter = \"\"\n").unwrap_err();
        assert!(
            empty[0].contains("an empty delimiter needs pack = false"),
            "{empty:?}"
        );
        assert!(parse("delivery_stream = \"s\"\ndelimiter = \"\"\npack = false\n").is_ok());
        let missing = parse("region = \"us-east-1\"\n").unwrap_err();
        assert!(
            missing[0].contains("missing required key `sinks.f.delivery_stream`"),
            "{missing:?}"
        );
    }

    #[test]
    fn quick_mode_uri() {
        let c = crate::config::from_quick(
            None,
            &[],
            &["firehose://to-s3?region=us-east-1&endpoint=http://127.0.0.1:5000&pack=false&delimiter=%0D%0A&linger_ms=5".to_owned()],
            None,
        )
        .unwrap();
        let SinkKind::Firehose(f) = &c.sinks[0].kind else {
            panic!("not firehose")
        };
        assert_eq!(c.sinks[0].name, "firehose");
        assert_eq!(f.delivery_stream, "to-s3");
        assert!(!f.pack.pack);
        assert_eq!(f.pack.delimiter, b"\r\n");
        assert_eq!(f.linger, Duration::from_millis(5));
        let err = crate::config::from_quick(None, &[], &["firehose://?region=x".to_owned()], None)
            .unwrap_err();
        assert!(err.to_string().contains("needs a delivery stream"), "{err}");
        let err = crate::config::from_quick(
            None,
            &[],
            &["firehose://s?delivery_stream=t".to_owned()],
            None,
        )
        .unwrap_err();
        assert!(err.to_string().contains("given by the URI itself"), "{err}");
    }
}
