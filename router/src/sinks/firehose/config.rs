//! Settings of the Firehose sink: the `kind = "firehose"` sink table (and the
//! `firehose://NAME?key=value` quick-mode URI, which becomes the same table), read with the same
//! [`Section`] getters as every other sink. The runtime only sees [`FirehoseSinkConfig`].

use crate::config::reader::{Diagnostics, Section};
use crate::sinks::aws::config::{AwsConfig, AwsDefaults};
use crate::sinks::firehose::pack::{
    PACK_BYTES_MAX_DEFAULT, PackPolicy, RECORD_BYTES_MAX, REQUEST_BYTES_MAX, REQUEST_ENTRIES_MAX,
};

/// The Firehose sink's defaults and limits of the shared AWS keys.
pub const DEFAULTS: AwsDefaults = AwsDefaults {
    linger_ms: (200, 900_000),
    request_entries_max: REQUEST_ENTRIES_MAX,
    request_bytes_max: (REQUEST_BYTES_MAX, REQUEST_BYTES_MAX),
    calls: (4, 10_000),
};

/// Validated settings of one Firehose sink.
#[derive(Debug, Clone, PartialEq)]
pub struct FirehoseSinkConfig {
    /// The delivery stream's name.
    pub delivery_stream: String,
    /// Region, endpoint, role, request limits (PutRecordBatch: records, bytes), linger, calls in
    /// flight, retries and timeout.
    pub aws: AwsConfig,
    /// Packing: on/off, size, delimiter.
    pub pack: PackPolicy,
    /// Compress each Firehose record as a gzip member at this level (`None`: as is).
    pub gzip_level: Option<u32>,
}

impl FirehoseSinkConfig {
    /// The defaults for a delivery stream.
    pub fn new(delivery_stream: &str) -> Self {
        FirehoseSinkConfig {
            delivery_stream: delivery_stream.to_owned(),
            aws: AwsConfig::new(&DEFAULTS),
            pack: PackPolicy::default(),
            gzip_level: None,
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
        c.aws = AwsConfig::parse(s, d, &DEFAULTS);
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
        c.delivery_stream = stream?.value;
        Some(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SinkKind;
    use crate::sinks::aws::config::{assert_problems, parse_sink, quick_sink};

    /// The Firehose sink of a file whose `[sinks.f]` has `table` (the shared AWS keys are
    /// tested for both sinks in `aws::config`).
    fn parse(table: &str) -> Result<FirehoseSinkConfig, Vec<String>> {
        match parse_sink("f", "firehose", table)? {
            SinkKind::Firehose(f) => Ok(*f),
            other => unreachable!("a firehose table parsed as {other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let c = parse("delivery_stream = \"s\"\n").unwrap();
        assert_eq!(c, FirehoseSinkConfig::new("s"));
        assert!(c.pack.pack);
        assert_eq!(c.pack.pack_bytes_max, 900 * 1024);
        assert_eq!(c.pack.delimiter, b"\n");
        assert_eq!(c.gzip_level, None);
    }

    #[test]
    fn every_own_key() {
        let c = parse(
            r#"delivery_stream = "to-s3"
pack = true
pack_bytes_max = "64KiB"
delimiter = "\r\n"
compression = "gzip"
compression_level = 9
"#,
        )
        .unwrap();
        assert_eq!(c.delivery_stream, "to-s3");
        assert!(c.pack.pack);
        assert_eq!(c.pack.pack_bytes_max, 64 * 1024);
        assert_eq!(c.pack.delimiter, b"\r\n");
        assert_eq!(c.gzip_level, Some(9));
        let plain = parse("delivery_stream = \"s\"\ncompression = \"none\"\n").unwrap();
        assert_eq!(plain.gzip_level, None);
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let errs = parse(
            "delivery_stream = \"bad name!\"\nrequest_bytes_max = \"5MiB\"\ncolour = \"blue\"\n",
        )
        .unwrap_err();
        let expect = [
            "t.toml:6:19: `sinks.f.delivery_stream`: \"bad name!\" is not a delivery stream name",
            "t.toml:7:21: `sinks.f.request_bytes_max`: 5242880 is out of range; allowed: 1024 to 4194304",
            "t.toml:8:1: `sinks.f.colour`: unknown key `colour`",
        ];
        assert_problems(&errs, &expect);
    }

    #[test]
    fn packing_and_compression_problems() {
        let table = "delivery_stream = \"s\"\npack = false\npack_bytes_max = \"2MiB\"\n\
                     compression_level = 3\n";
        let errs = parse(table).unwrap_err();
        assert_problems(
            &errs,
            &[
                "t.toml:8:18: `sinks.f.pack_bytes_max`: 2097152 is out of range",
                "t.toml:8:18: `sinks.f.pack_bytes_max`: pack_bytes_max needs pack = true",
                "t.toml:9:21: `sinks.f.compression_level`: compression_level needs compression = \"gzip\"",
            ],
        );
        let empty = parse("delivery_stream = \"s\"\ndelimiter = \"\"\n").unwrap_err();
        assert_problems(
            &empty,
            &["t.toml:7:13: `sinks.f.delimiter`: an empty delimiter needs pack = false"],
        );
        let long = parse("delivery_stream = \"s\"\ndelimiter = \"12345678901234567\"\n");
        assert!(long.unwrap_err()[0].contains("a delimiter has at most 16 bytes"));
        assert!(parse("delivery_stream = \"s\"\ndelimiter = \"\"\npack = false\n").is_ok());
    }

    #[test]
    fn quick_mode_uri() {
        let uri = "firehose://to-s3?region=us-east-1&pack=false&delimiter=%0D%0A&linger_ms=5";
        match quick_sink(uri).unwrap() {
            (name, SinkKind::Firehose(f)) => {
                assert_eq!(name, "firehose");
                assert_eq!(f.delivery_stream, "to-s3");
                assert_eq!(f.aws.region.as_deref(), Some("us-east-1"));
                assert_eq!(f.aws.linger.as_millis(), 5);
                assert!(!f.pack.pack);
                assert_eq!(f.pack.delimiter, b"\r\n");
            }
            other => panic!("not firehose: {other:?}"),
        }
    }
}
