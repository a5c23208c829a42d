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
    /// Threads serving requests.
    pub workers: usize,
    /// Answer the Kinesis / Firehose API (`POST /` with `X-Amz-Target`).
    pub aws_api: bool,
    /// The AWS API's settings (`aws_*` keys).
    pub aws: AwsApiConfig,
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
        let max_connections = s.int_or(d, "max_connections", 1024, 1..=1_000_000) as usize;
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
            workers,
            aws_api,
            aws,
        })
    }
}
