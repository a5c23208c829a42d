//! Settings of the HTTP source (`kind = "http"`, or `--source http://ADDR` / `https://ADDR`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::aws_api::config::AwsApiConfig;
use super::body::Format;
use crate::config::reader::{Diagnostics, Section};

/// Settings of one HTTP listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSourceConfig {
    /// Where to listen.
    pub address: SocketAddr,
    /// PEM certificate chain and private key: TLS when set.
    pub tls: Option<TlsFiles>,
    /// Bearer token required on `/v1/records` when set.
    pub auth_token: Option<String>,
    /// Largest request body, compressed or not.
    pub max_body_bytes: usize,
    /// Largest record.
    pub max_record_bytes: usize,
    /// Body format when neither `?format=` nor the content type says.
    pub format: Format,
    /// How long a request waits for room in the pipeline before it is refused with 503.
    pub accept_wait: Duration,
    /// When the 200 is sent: records queued, durable or delivered.
    pub ack: crate::sources::AckMode,
    /// The `Retry-After` of a 503, in seconds.
    pub retry_after_secs: u32,
    /// Most connections served at once; more wait to be accepted.
    pub max_connections: usize,
    /// Most connections from one peer address; more are closed at once.
    pub max_connections_per_peer: usize,
    /// Most HTTP/2 streams (requests) open at once on one connection.
    pub max_streams: u32,
    /// Largest request head (request line and headers; HTTP/2: the decoded header list).
    pub max_header_bytes: usize,
    /// The share of `max_inflight_bytes` one peer address may hold.
    pub max_inflight_bytes_per_peer: usize,
    /// Bytes that requests being read, decompressed and parsed may hold at once.
    pub max_inflight_bytes: usize,
    /// Longest TLS handshake.
    pub handshake_timeout: Duration,
    /// Longest wait for a request's headers: from a new connection's start (protocol
    /// detection, HTTP/2 preface included), or from a later request's first byte.
    pub header_timeout: Duration,
    /// How long a connection that has served requests may stay silent.
    pub idle_timeout: Duration,
    /// A body must arrive within `body_timeout` plus the time its bytes take at
    /// `body_min_bytes_per_sec`.
    pub body_timeout: Duration,
    /// See `body_timeout`.
    pub body_min_bytes_per_sec: u64,
    /// Threads serving requests.
    pub workers: usize,
    /// Answer the Kinesis / Firehose API (`POST /` with `X-Amz-Target`).
    pub aws_api: bool,
    /// The AWS API's settings (`aws_*` keys).
    pub aws: AwsApiConfig,
}

/// The default `max_inflight_bytes` of a network source.
pub const DEFAULT_INFLIGHT_BYTES: u64 = 128 << 20;

/// Checks a network source's memory budget: one peer's share at most the whole, and room for
/// one request of the largest size (`limit`: `(key, bytes)`) in a share, 4 x its size (the
/// compressed body, its decompressed form, its record table).
pub fn check_budget(
    s: &Section<'_>,
    d: &mut Diagnostics,
    (total, per_peer): (usize, usize),
    (key, limit): (&str, usize),
) {
    if per_peer > total {
        d.error(
            &s.spot_of("max_inflight_bytes_per_peer"),
            format!(
                "max_inflight_bytes_per_peer ({per_peer}) is more than max_inflight_bytes \
                 ({total})"
            ),
        );
    } else if per_peer < 4 * limit {
        d.error(
            &s.spot_of("max_inflight_bytes_per_peer"),
            format!(
                "max_inflight_bytes_per_peer ({per_peer}; default: half of max_inflight_bytes) \
                 must be at least 4 x {key} ({limit}): one request of the largest size, \
                 decompressed and parsed, must fit in a peer's share; raise \
                 max_inflight_bytes or lower {key}"
            ),
        );
    }
}

/// PEM files for TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain.
    pub cert: PathBuf,
    /// Private key.
    pub key: PathBuf,
}

impl HttpSourceConfig {
    /// Reads a `kind = "http"` source table.
    pub fn parse(s: &mut Section<'_>, d: &mut Diagnostics) -> Option<HttpSourceConfig> {
        let address = s.socket_addr(d, "address", "127.0.0.1:8080");
        let cert = s.opt_str(d, "tls_cert");
        let key = s.opt_str(d, "tls_key");
        let tls = match (cert, key) {
            (Some(c), Some(k)) => Some(TlsFiles {
                cert: c.value.into(),
                key: k.value.into(),
            }),
            (None, None) => None,
            (Some(c), None) => {
                d.error(&c.spot, "tls_cert needs tls_key (the PEM private key) too");
                None
            }
            (None, Some(k)) => {
                d.error(
                    &k.spot,
                    "tls_key needs tls_cert (the PEM certificate chain) too",
                );
                None
            }
        };
        let auth_token = s.opt_str(d, "auth_token");
        if let Some(t) = &auth_token
            && t.value.is_empty()
        {
            d.error(&t.spot, "auth_token must not be empty");
        }
        let format = match s.choice(d, "format", &["ndjson", "lines", "array", "raw"], "ndjson") {
            "lines" => Format::Lines,
            "array" => Format::Array,
            "raw" => Format::Raw,
            _ => Format::Ndjson,
        };
        let max_body_bytes =
            s.size_or(d, "max_body_bytes", 16 << 20, (1 << 10)..=(1 << 30)) as usize;
        let max_record_bytes = s.size_or(d, "max_record_bytes", 1 << 20, 1..=(64 << 20)) as usize;
        let accept_wait_ms = s.int_or(d, "accept_wait_ms", 1000, 0..=600_000);
        let ack = crate::sources::AckMode::parse(s, d);
        let retry_after_secs = s.int_or(d, "retry_after_secs", 1, 0..=3600) as u32;
        let max_connections = s.int_or(d, "max_connections", 512, 1..=1_000_000) as usize;
        let max_connections_per_peer =
            s.int_or(d, "max_connections_per_peer", 64, 1..=1_000_000) as usize;
        let max_streams = s.int_or(d, "max_streams", 8, 1..=1000) as u32;
        let max_header_bytes =
            s.size_or(d, "max_header_bytes", 16 << 10, (1 << 10)..=(16 << 20)) as usize;
        let max_inflight_bytes = s.size_or(
            d,
            "max_inflight_bytes",
            DEFAULT_INFLIGHT_BYTES,
            (1 << 20)..=(64 << 30),
        ) as usize;
        let max_inflight_bytes_per_peer = s.size_or(
            d,
            "max_inflight_bytes_per_peer",
            (max_inflight_bytes / 2) as u64,
            (1 << 20)..=(64 << 30),
        ) as usize;
        check_budget(
            s,
            d,
            (max_inflight_bytes, max_inflight_bytes_per_peer),
            ("max_body_bytes", max_body_bytes),
        );
        let ms = |v: u64| Duration::from_millis(v);
        let handshake_timeout = ms(s.int_or(d, "handshake_timeout_ms", 10_000, 100..=600_000));
        let header_timeout = ms(s.int_or(d, "header_timeout_ms", 10_000, 100..=600_000));
        let idle_timeout = ms(s.int_or(d, "idle_timeout_ms", 30_000, 100..=3_600_000));
        let body_timeout = ms(s.int_or(d, "body_timeout_ms", 10_000, 100..=3_600_000));
        let body_min_bytes_per_sec = s.size_or(d, "body_min_bytes_per_sec", 8 << 10, 0..=(1 << 30));
        let default_workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
        let workers = s.int_or(d, "workers", default_workers as u64, 1..=64) as usize;
        let aws_api = s.bool_or(d, "aws_api", false);
        let aws = AwsApiConfig::parse(s, d, aws_api, address, auth_token.as_ref());
        Some(HttpSourceConfig {
            address: address?,
            tls,
            auth_token: auth_token.map(|t| t.value),
            max_body_bytes,
            max_record_bytes,
            format,
            accept_wait: Duration::from_millis(accept_wait_ms),
            ack,
            retry_after_secs,
            max_connections,
            max_connections_per_peer,
            max_streams,
            max_header_bytes,
            max_inflight_bytes,
            max_inflight_bytes_per_peer,
            handshake_timeout,
            header_timeout,
            idle_timeout,
            body_timeout,
            body_min_bytes_per_sec,
            workers,
            aws_api,
            aws,
        })
    }
}
