//! Settings of the QUIC source (`kind = "quic"`, or `--source quic://ADDR?self_signed=true`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::reader::{Diagnostics, Section};
use crate::sources::http::config::TlsFiles;

/// Where the server's certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Certificate {
    /// PEM files.
    Files(TlsFiles),
    /// Generated at start (development): its SHA-256 fingerprint is logged for clients to pin.
    SelfSigned,
}

/// Settings of one QUIC listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuicSourceConfig {
    /// Where to listen (UDP).
    pub address: SocketAddr,
    /// The server certificate.
    pub certificate: Certificate,
    /// When set, HELLO must carry this token.
    pub auth_token: Option<String>,
    /// When set, clients must present a certificate signed by a CA in this PEM file (mTLS).
    pub client_ca: Option<PathBuf>,
    /// Largest BATCH frame.
    pub max_batch_bytes: usize,
    /// Most records in one batch.
    pub max_batch_records: u32,
    /// Largest record.
    pub max_record_bytes: u32,
    /// How long a batch waits for room in the pipeline before it is answered `Backpressure`.
    pub accept_wait: Duration,
    /// When the `Ok` ACK is sent: records queued, durable or delivered.
    pub ack: crate::sources::AckMode,
    /// The `retry_after_ms` of a `Backpressure` answer.
    pub retry_after: Duration,
    /// How long a batch that came before an earlier one of its session waits for it.
    pub order_wait: Duration,
    /// Most connections at once; more are refused.
    pub max_connections: usize,
    /// Most connections from one peer address; more are refused.
    pub max_connections_per_peer: usize,
    /// Most connections that have not yet passed HELLO (token checked); more are refused.
    pub max_unauthenticated: usize,
    /// Longest QUIC (TLS) handshake.
    pub handshake_timeout: Duration,
    /// Longest wait, after the handshake, for the whole HELLO.
    pub hello_timeout: Duration,
    /// A batch stream must arrive within `batch_timeout` plus the time its bytes take at
    /// `batch_min_bytes_per_sec`.
    pub batch_timeout: Duration,
    /// See `batch_timeout`.
    pub batch_min_bytes_per_sec: u64,
    /// The share of `max_inflight_bytes` one peer address may hold.
    pub max_inflight_bytes_per_peer: usize,
    /// Bytes that batches being read and decoded may hold at once.
    pub max_inflight_bytes: usize,
    /// Most batch streams open at once per connection (QUIC stream credit).
    pub max_streams: u32,
    /// A connection idle this long is closed.
    pub idle_timeout: Duration,
    /// Sessions remembered (for duplicate detection across reconnects).
    pub sessions: usize,
    /// Threads serving connections.
    pub workers: usize,
}

impl QuicSourceConfig {
    /// Reads a `kind = "quic"` source table.
    pub fn parse(s: &mut Section<'_>, d: &mut Diagnostics) -> Option<QuicSourceConfig> {
        let address = s.socket_addr(d, "address", "127.0.0.1:4433");
        let cert = s.opt_str(d, "tls_cert");
        let key = s.opt_str(d, "tls_key");
        let self_signed = s.bool_or(d, "self_signed", false);
        let certificate = match (cert, key, self_signed) {
            (Some(c), Some(k), false) => Some(Certificate::Files(TlsFiles {
                cert: c.value.into(),
                key: k.value.into(),
            })),
            (None, None, true) => Some(Certificate::SelfSigned),
            (Some(c), _, true) => {
                d.error(
                    &c.spot,
                    "give either tls_cert + tls_key or self_signed = true",
                );
                None
            }
            (Some(c), None, false) => {
                d.error(&c.spot, "tls_cert needs tls_key (the PEM private key) too");
                None
            }
            (None, Some(k), _) => {
                d.error(
                    &k.spot,
                    "tls_key needs tls_cert (the PEM certificate chain) too",
                );
                None
            }
            (None, None, false) => {
                d.error(
                    &s.spot(),
                    format!(
                        "QUIC always uses TLS: set `{}` and `{}` (PEM files), or `{}` = true \
                         for development",
                        s.key_path("tls_cert"),
                        s.key_path("tls_key"),
                        s.key_path("self_signed")
                    ),
                );
                None
            }
        };
        let auth_token = s.opt_str(d, "auth_token");
        if let Some(t) = &auth_token
            && (t.value.is_empty() || t.value.len() > u16::MAX as usize)
        {
            d.error(&t.spot, "auth_token must be 1 to 65535 bytes");
        }
        let client_ca = s.opt_str(d, "client_ca").map(|c| PathBuf::from(c.value));
        let default_workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
        let ms = |v: u64| Duration::from_millis(v);
        // Every key is read before giving up on a missing address or certificate, so that
        // all problems are reported (and none of these keys as unknown).
        let max_batch_bytes =
            s.size_or(d, "max_batch_bytes", 8 << 20, (1 << 10)..=(1 << 30)) as usize;
        let max_batch_records = s.int_or(d, "max_batch_records", 65_536, 1..=(1 << 24)) as u32;
        let max_record_bytes = s.size_or(d, "max_record_bytes", 1 << 20, 1..=(64 << 20)) as u32;
        let accept_wait = ms(s.int_or(d, "accept_wait_ms", 1000, 0..=600_000));
        let ack = crate::sources::AckMode::parse(s, d);
        let retry_after = ms(s.int_or(d, "retry_after_ms", 500, 0..=3_600_000));
        let order_wait = ms(s.int_or(d, "order_wait_ms", 10_000, 1..=600_000));
        let max_connections = s.int_or(d, "max_connections", 256, 1..=1_000_000) as usize;
        let max_connections_per_peer =
            s.int_or(d, "max_connections_per_peer", 64, 1..=1_000_000) as usize;
        let max_unauthenticated = s.int_or(d, "max_unauthenticated", 64, 1..=1_000_000) as usize;
        let handshake_timeout = ms(s.int_or(d, "handshake_timeout_ms", 10_000, 100..=600_000));
        let hello_timeout = ms(s.int_or(d, "hello_timeout_ms", 5_000, 100..=600_000));
        let batch_timeout = ms(s.int_or(d, "batch_timeout_ms", 10_000, 100..=3_600_000));
        let batch_min_bytes_per_sec =
            s.size_or(d, "batch_min_bytes_per_sec", 8 << 10, 0..=(1 << 30));
        let max_inflight_bytes = s.size_or(
            d,
            "max_inflight_bytes",
            crate::sources::http::config::DEFAULT_INFLIGHT_BYTES,
            (1 << 20)..=(64 << 30),
        ) as usize;
        let max_inflight_bytes_per_peer = s.size_or(
            d,
            "max_inflight_bytes_per_peer",
            (max_inflight_bytes / 2) as u64,
            (1 << 20)..=(64 << 30),
        ) as usize;
        crate::sources::http::config::check_budget(
            s,
            d,
            (max_inflight_bytes, max_inflight_bytes_per_peer),
            ("max_batch_bytes", max_batch_bytes),
        );
        let max_streams = s.int_or(d, "max_streams", 64, 1..=10_000) as u32;
        let idle_timeout = ms(s.int_or(d, "idle_timeout_ms", 30_000, 1000..=3_600_000));
        let sessions = s.int_or(d, "sessions", 4096, 1..=1_000_000) as usize;
        let workers = s.int_or(d, "workers", default_workers as u64, 1..=64) as usize;
        Some(QuicSourceConfig {
            address: address?,
            certificate: certificate?,
            auth_token: auth_token.map(|t| t.value),
            client_ca,
            max_batch_bytes,
            max_batch_records,
            max_record_bytes,
            accept_wait,
            ack,
            retry_after,
            order_wait,
            max_connections,
            max_connections_per_peer,
            max_unauthenticated,
            handshake_timeout,
            hello_timeout,
            batch_timeout,
            batch_min_bytes_per_sec,
            max_inflight_bytes,
            max_inflight_bytes_per_peer,
            max_streams,
            idle_timeout,
            sessions,
            workers,
        })
    }
}
