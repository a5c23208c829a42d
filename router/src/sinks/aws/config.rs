//! The settings every AWS sink table has, read once for all of them: where and as whom the sink
//! connects (`region`, `endpoint`, `role_arn`), how requests are cut and run (`linger_ms`,
//! `request_entries_max`, `request_bytes_max`, `max_in_flight`, `request_timeout_ms`,
//! `max_bytes_per_sec`) and how failures are retried (`retry_*`). Each sink passes its own defaults and limits
//! ([`AwsDefaults`]) and reads only its own keys itself.

use std::time::Duration;

use crate::config::reader::{Diagnostics, Section};
use crate::sinks::aws::retry::{Jitter, RetryPolicy};

/// Validated settings shared by the AWS sinks.
#[derive(Debug, Clone, PartialEq)]
pub struct AwsConfig {
    /// Region; `None`: from the target (a Kinesis stream ARN), else the environment or profile
    /// (the standard chain).
    pub region: Option<String>,
    /// Endpoint override (a local server such as kinesalite or moto), for the service's calls
    /// only; `None`: the standard endpoint (or `AWS_ENDPOINT_URL`).
    pub endpoint: Option<String>,
    /// A role to assume with the credentials of the standard chain.
    pub role_arn: Option<String>,
    /// How long the oldest record may wait for company before a request goes out.
    pub linger: Duration,
    /// Most entries (service records) per request.
    pub request_entries_max: usize,
    /// Most bytes per request.
    pub request_bytes_max: usize,
    /// Most requests in flight at once.
    pub max_in_flight: usize,
    /// Retries of failed entries and calls.
    pub retry: RetryPolicy,
    /// Time limit of one call (connect, send, answer).
    pub request_timeout: Duration,
    /// Cap on the payload bytes sent per second, retries included (0: none); see
    /// [`Egress`](crate::sinks::aws::egress::Egress).
    pub max_bytes_per_sec: u64,
}

/// One sink's defaults and upper limits of the shared keys.
#[derive(Debug, Clone, Copy)]
pub struct AwsDefaults {
    /// `linger_ms`: default and largest value.
    pub linger_ms: (u64, u64),
    /// `request_entries_max`: default and largest value (the service's limit).
    pub request_entries_max: usize,
    /// `request_bytes_max`: default and largest value.
    pub request_bytes_max: (usize, usize),
    /// How calls run: the defaults of `max_in_flight` (1 .. 256) and `request_timeout_ms`
    /// (100 .. 600000).
    pub calls: (usize, u64),
}

impl AwsConfig {
    /// The defaults of every shared key.
    pub fn new(defaults: &AwsDefaults) -> AwsConfig {
        AwsConfig {
            region: None,
            endpoint: None,
            role_arn: None,
            linger: Duration::from_millis(defaults.linger_ms.0),
            request_entries_max: defaults.request_entries_max,
            request_bytes_max: defaults.request_bytes_max.0,
            max_in_flight: defaults.calls.0,
            retry: RetryPolicy::default(),
            request_timeout: Duration::from_millis(defaults.calls.1),
            max_bytes_per_sec: 0,
        }
    }

    /// Reads the shared keys of an AWS sink table; every problem is reported with its key.
    pub fn parse(s: &mut Section<'_>, d: &mut Diagnostics, defaults: &AwsDefaults) -> AwsConfig {
        let mut c = AwsConfig::new(defaults);
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
        let (linger, linger_max) = defaults.linger_ms;
        c.linger = Duration::from_millis(s.int_or(d, "linger_ms", linger, 0..=linger_max));
        let entries = defaults.request_entries_max as u64;
        c.request_entries_max = s.int_or(d, "request_entries_max", entries, 1..=entries) as usize;
        let (bytes, bytes_max) = defaults.request_bytes_max;
        c.request_bytes_max = s.size_or(
            d,
            "request_bytes_max",
            bytes as u64,
            1024..=bytes_max as u64,
        ) as usize;
        let (in_flight, timeout_ms) = defaults.calls;
        c.max_in_flight = s.int_or(d, "max_in_flight", in_flight as u64, 1..=256) as usize;
        c.retry = parse_retry(s, d);
        c.request_timeout =
            Duration::from_millis(s.int_or(d, "request_timeout_ms", timeout_ms, 100..=600_000));
        c.max_bytes_per_sec = s.size_or(d, "max_bytes_per_sec", 0, 0..=(1 << 40));
        c
    }
}

/// Reads the optional `endpoint` (an http:// or https:// URL).
fn parse_endpoint(s: &mut Section<'_>, d: &mut Diagnostics) -> Option<String> {
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
fn parse_retry(s: &mut Section<'_>, d: &mut Diagnostics) -> RetryPolicy {
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
pub fn is_region(r: &str) -> bool {
    (1..=64).contains(&r.len())
        && r.contains('-')
        && r.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// For the sinks' config tests: the problems of a file with a stdin source and one sink
/// `[sinks.NAME]` of `kind` with the lines `table`, each as `file:line:col: key: message`;
/// or the sink's parsed kind.
#[cfg(test)]
pub(crate) fn parse_sink(
    name: &str,
    kind: &str,
    table: &str,
) -> Result<crate::config::SinkKind, Vec<String>> {
    let text =
        format!("[sources.in]\nkind = \"stdin\"\n\n[sinks.{name}]\nkind = \"{kind}\"\n{table}");
    match crate::config::parse_str("t.toml", &text) {
        Ok(mut c) => Ok(c.sinks.remove(0).kind),
        Err(e) => Err(e.0.iter().map(ToString::to_string).collect()),
    }
}

/// For the sinks' config tests: asserts that `errs` are the problems `expect` starts, in order.
#[cfg(test)]
pub(crate) fn assert_problems(errs: &[String], expect: &[&str]) {
    assert_eq!(errs.len(), expect.len(), "{}", errs.join("\n"));
    for (e, want) in errs.iter().zip(expect) {
        assert!(e.starts_with(want), "expected\n  {want}\nfound\n  {e}");
    }
}

/// For the sinks' config tests: the name and kind of the sink of a quick-mode `--sink URI`, or
/// the problems.
#[cfg(test)]
pub(crate) fn quick_sink(uri: &str) -> Result<(String, crate::config::SinkKind), String> {
    let mut c =
        crate::config::from_quick(None, &[], &[uri.to_owned()], None).map_err(|e| e.to_string())?;
    let sink = c.sinks.remove(0);
    Ok((sink.name, sink.kind))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SinkKind;

    /// The AWS sink kinds and the key that names their target.
    const KINDS: [(&str, &str); 2] = [("kinesis", "stream"), ("firehose", "delivery_stream")];

    /// The shared settings of a `[sinks.a]` table of `kind`.
    fn shared(kind: &str, table: &str) -> Result<AwsConfig, Vec<String>> {
        match parse_sink("a", kind, table)? {
            SinkKind::Kinesis(k) => Ok(k.aws),
            SinkKind::Firehose(f) => Ok(f.aws),
            other => panic!("not an AWS sink: {other:?}"),
        }
    }

    #[test]
    fn defaults_of_both_kinds() {
        let want = [
            // kind: linger, entries, bytes, in flight, timeout
            ("kinesis", 100, 500, 5 << 20, 8, 6_000),
            ("firehose", 200, 500, 4 << 20, 4, 10_000),
        ];
        for ((kind, target), (name, linger, entries, bytes, in_flight, timeout)) in
            KINDS.into_iter().zip(want)
        {
            assert_eq!(kind, name);
            let c = shared(kind, &format!("{target} = \"s\"\n")).unwrap();
            assert_eq!((c.region, c.endpoint, c.role_arn), (None, None, None));
            assert_eq!(c.linger, Duration::from_millis(linger));
            assert_eq!(c.request_entries_max, entries);
            assert_eq!(c.request_bytes_max, bytes);
            assert_eq!(c.max_in_flight, in_flight);
            assert_eq!(c.retry.attempts_max, 20);
            assert_eq!(c.retry.ttl, Duration::from_secs(30));
            assert_eq!(c.retry.base, Duration::from_millis(100));
            assert_eq!(c.retry.cap, Duration::from_secs(5));
            assert_eq!(c.request_timeout, Duration::from_millis(timeout));
        }
    }

    #[test]
    fn every_shared_key_of_both_kinds() {
        let keys = r#"region = "eu-west-1"
endpoint = "https://example.com"
role_arn = "arn:aws:iam::123456789012:role/writer"
linger_ms = 20
request_entries_max = 100
request_bytes_max = "1MiB"
max_in_flight = 2
retry_attempts_max = 5
retry_ttl_ms = 10000
retry_backoff_ms = 50
retry_backoff_max_ms = 1000
request_timeout_ms = 2000
"#;
        for (kind, target) in KINDS {
            let c = shared(kind, &format!("{target} = \"s\"\n{keys}")).unwrap();
            assert_eq!(c.region.as_deref(), Some("eu-west-1"), "{kind}");
            assert_eq!(c.endpoint.as_deref(), Some("https://example.com"));
            assert_eq!(
                c.role_arn.as_deref(),
                Some("arn:aws:iam::123456789012:role/writer")
            );
            assert_eq!(c.linger, Duration::from_millis(20));
            assert_eq!(c.request_entries_max, 100);
            assert_eq!(c.request_bytes_max, 1 << 20);
            assert_eq!(c.max_in_flight, 2);
            assert_eq!(c.retry.attempts_max, 5);
            assert_eq!(c.retry.ttl, Duration::from_secs(10));
            assert_eq!(c.retry.base, Duration::from_millis(50));
            assert_eq!(c.retry.cap, Duration::from_secs(1));
            assert_eq!(c.request_timeout, Duration::from_secs(2));
        }
    }

    #[test]
    fn every_shared_problem_of_both_kinds() {
        let keys = r#"region = "Mars"
endpoint = "127.0.0.1:4567"
role_arn = "writer"
linger_ms = -1
request_entries_max = 501
max_in_flight = 257
retry_attempts_max = 0
retry_backoff_ms = 500
retry_backoff_max_ms = 100
request_timeout_ms = 99
colour = "blue"
"#;
        for (kind, target) in KINDS {
            let errs = shared(kind, &format!("{target} = \"s\"\n{keys}")).unwrap_err();
            let expect = [
                "t.toml:7:10: `sinks.a.region`: \"Mars\" is not a region name; expected something like \"us-east-1\"",
                "t.toml:8:12: `sinks.a.endpoint`: \"127.0.0.1:4567\" is not an endpoint URL",
                "t.toml:9:12: `sinks.a.role_arn`: \"writer\" is not a role ARN",
                "t.toml:10:13: `sinks.a.linger_ms`: must not be negative",
                "t.toml:11:23: `sinks.a.request_entries_max`: 501 is out of range; allowed: 1 to 500",
                "t.toml:12:17: `sinks.a.max_in_flight`: 257 is out of range; allowed: 1 to 256",
                "t.toml:13:22: `sinks.a.retry_attempts_max`: 0 is out of range; allowed: 1 to 1000",
                "t.toml:15:24: `sinks.a.retry_backoff_max_ms`: retry_backoff_max_ms (100) is below retry_backoff_ms (500)",
                "t.toml:16:22: `sinks.a.request_timeout_ms`: 99 is out of range; allowed: 100 to 600000",
                "t.toml:17:1: `sinks.a.colour`: unknown key `colour`",
            ];
            assert_problems(&errs, &expect);
            let missing = shared(kind, "region = \"us-east-1\"\n").unwrap_err();
            let want = format!("t.toml:4:1: `sinks.a`: missing required key `sinks.a.{target}`");
            assert_problems(&missing, &[want.as_str()]);
            let long = shared(kind, &format!("{target} = \"s\"\nlinger_ms = 900001\n"));
            assert!(long.unwrap_err()[0].contains("out of range"), "{kind}");
        }
    }

    #[test]
    fn quick_mode_uris_of_both_kinds() {
        for (kind, target) in KINDS {
            let uri = format!(
                "{kind}://s?region=eu-west-1&endpoint=http://127.0.0.1:4567&role_arn=arn:aws:iam::1:role/r&max_in_flight=3"
            );
            let (name, parsed) = quick_sink(&uri).unwrap();
            assert_eq!(name, kind);
            let c = match parsed {
                SinkKind::Kinesis(k) => k.aws,
                SinkKind::Firehose(f) => f.aws,
                other => panic!("not an AWS sink: {other:?}"),
            };
            assert_eq!(c.region.as_deref(), Some("eu-west-1"));
            assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:4567"));
            assert_eq!(c.role_arn.as_deref(), Some("arn:aws:iam::1:role/r"));
            assert_eq!(c.max_in_flight, 3);
            let err = quick_sink(&format!("{kind}://?region=x")).unwrap_err();
            assert!(err.contains("needs a"), "{err}");
            let err = quick_sink(&format!("{kind}://s?{target}=t")).unwrap_err();
            assert!(err.contains("given by the URI itself"), "{err}");
        }
    }

    #[test]
    fn region_names() {
        for ok in ["us-east-1", "eu-central-2", "us-gov-west-1", "cn-north-1"] {
            assert!(is_region(ok), "{ok}");
        }
        for bad in ["", "Mars", "us_east_1", "US-EAST-1", "useast1"] {
            assert!(!is_region(bad), "{bad}");
        }
    }
}
