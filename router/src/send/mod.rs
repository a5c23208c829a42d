//! `edge-router send URI`: the client for edge hosts. Reads records from stdin with the stdin
//! source's framing (lines, LF or CRLF), batches them, pushes the batches to a router over QUIC
//! (`quic://HOST:PORT`, [`quic`]) or HTTP(S) (`http(s)://HOST:PORT`, [`http`]), waits for every
//! acknowledgement, and retries with backoff on failures and backpressure.
//!
//! The reader runs on a thread of its own and hands finished batches over a small bounded
//! channel: when the router pushes back, the channel fills, the reader stops reading, and the
//! producer writing into our stdin blocks. Memory stays bounded by `in_flight` batches plus the
//! channel.

pub mod http;
pub mod quic;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

pub use crate::core::accounting::latency_histogram as histogram;
use serde::Serialize;

use crate::core::framing::{FramerConfig, LineFramer};
use crate::core::rate_limit::{Repeats, TokenBucket};
use crate::core::record::Span;
use crate::sources::stdin::{Input, Ready};
use crate::tls::Trust;

/// What `send` was asked to do.
#[derive(Debug, Clone)]
pub struct SendOptions {
    /// Where to send.
    pub target: Target,
    /// How to trust the server.
    pub trust: Trust,
    /// Token for the router (QUIC HELLO token, or HTTP bearer token).
    pub token: Option<String>,
    /// Client certificate and key (PEM) for routers that require one (QUIC mTLS).
    pub client_identity: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// Most records per batch.
    pub batch_records: usize,
    /// Most payload bytes per batch.
    pub batch_bytes: usize,
    /// Longest record; longer lines are not sent (and make the exit status non-zero).
    pub max_record_bytes: usize,
    /// A partial batch is sent after input was idle this long.
    pub linger: Duration,
    /// Batches sent and not yet acknowledged, at most.
    pub in_flight: usize,
    /// Give up when nothing was acknowledged for this long.
    pub give_up_after: Duration,
    /// HTTP: the longest one request may take (sending, and waiting for the answer); a request
    /// that takes longer is abandoned and retried (the router may have taken it: at least once).
    pub request_timeout: Duration,
    /// Partition key for every record.
    pub partition_key: Option<String>,
    /// At most this many records per second (paced by the reader); 0 = unlimited.
    pub max_rate: u64,
}

/// A parsed `send` target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `quic://HOST:PORT`.
    Quic {
        /// Host name or address (also the TLS server name).
        host: String,
        /// UDP port.
        port: u16,
    },
    /// `http://...` or `https://...`: records are POSTed to `URL/v1/records` unless the URL
    /// has a path of its own.
    Http {
        /// The full URL records are posted to.
        url: String,
    },
}

impl Target {
    /// Parses `quic://HOST:PORT`, `http://HOST:PORT[/PATH]` or `https://...`.
    pub fn parse(uri: &str) -> Result<Target, String> {
        if let Some(rest) = uri.strip_prefix("quic://") {
            let rest = rest.trim_end_matches('/');
            let (host, port) = rest.rsplit_once(':').ok_or_else(|| {
                format!("{uri:?}: expected quic://HOST:PORT, e.g. quic://127.0.0.1:4433")
            })?;
            let port = port
                .parse::<u16>()
                .map_err(|_| format!("{uri:?}: {port:?} is not a port"))?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            if host.is_empty() {
                return Err(format!("{uri:?}: no host"));
            }
            return Ok(Target::Quic {
                host: host.to_owned(),
                port,
            });
        }
        if let Some(rest) = uri
            .strip_prefix("http://")
            .or_else(|| uri.strip_prefix("https://"))
        {
            if rest.is_empty() {
                return Err(format!("{uri:?}: no host"));
            }
            let url = if rest.contains('/') && !rest.ends_with('/') {
                uri.to_owned()
            } else {
                format!("{}/v1/records", uri.trim_end_matches('/'))
            };
            return Ok(Target::Http { url });
        }
        Err(format!(
            "{uri:?}: expected quic://HOST:PORT, http://HOST:PORT or https://HOST:PORT"
        ))
    }
}

/// Records read from stdin, ready to be sent: payloads back to back with their spans.
#[derive(Debug, Clone)]
pub struct Chunk {
    /// Payloads.
    pub data: Bytes,
    /// One span per record into `data`.
    pub spans: Vec<Span>,
}

/// What happened to the input.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    /// Records read from stdin (and not refused as too long).
    pub records_read: u64,
    /// Records the router acknowledged.
    pub records_acknowledged: u64,
    /// Lines longer than `max_record_bytes` (never sent).
    pub records_too_long: u64,
    /// Batches acknowledged.
    pub batches: u64,
    /// Batches sent again (after backpressure, errors or reconnects).
    pub resends: u64,
    /// Connections made.
    pub connections: u64,
    /// Wall time.
    pub elapsed_ms: u64,
    /// Acknowledged records per second.
    pub records_per_sec: f64,
    /// Send-to-acknowledgement latency of batches, microseconds.
    pub latency_us: LatencySummary,
    /// Why sending stopped early, if it did.
    pub error: Option<String>,
}

impl Summary {
    /// Records read but not acknowledged (plus lines refused as too long).
    pub fn unsent(&self) -> u64 {
        self.records_read.saturating_sub(self.records_acknowledged) + self.records_too_long
    }
}

/// Latency quantiles (microseconds), as everywhere else.
pub use crate::core::accounting::Quantiles as LatencySummary;

/// What the stdin reader counted so far.
#[derive(Debug, Default)]
pub struct ReadCounts {
    /// Records read (and handed on).
    pub records: AtomicU64,
    /// Lines refused as longer than `max_record_bytes`.
    pub too_long: AtomicU64,
}

/// Reads stdin into chunks of at most `batch_records` records / `batch_bytes` bytes and sends
/// them into `tx`, blocking while it is full. A partial chunk goes out after `linger` without
/// input. Counts into `counts`; stops early when the receiver is gone.
pub fn read_chunks(
    mut input: impl Input,
    opts: &SendOptions,
    tx: &tokio::sync::mpsc::Sender<Chunk>,
    counts: &ReadCounts,
) -> std::io::Result<()> {
    let mut framer = LineFramer::new(FramerConfig {
        max_record_bytes: opts.max_record_bytes,
        skip_empty: true,
    });
    let mut buf = BytesMut::with_capacity(256 << 10);
    let mut pending = BytesMut::new();
    let mut pending_spans: Vec<Span> = Vec::new();
    let (mut spans, mut rejected) = (Vec::new(), Vec::new());
    let mut pace = (opts.max_rate > 0).then(|| {
        TokenBucket::new(
            opts.max_rate,
            opts.max_rate.div_ceil(100).max(1),
            Instant::now(),
        )
    });
    let mut flush = |pending: &mut BytesMut, spans: &mut Vec<Span>| -> bool {
        if spans.is_empty() {
            return true;
        }
        if let Some(bucket) = &mut pace {
            let wait = bucket.take_debt(spans.len() as u64, Instant::now());
            if wait > Duration::ZERO && wait < Duration::from_secs(3600) {
                std::thread::sleep(wait);
            }
        }
        let chunk = Chunk {
            data: pending.split().freeze(),
            spans: std::mem::take(spans),
        };
        tx.blocking_send(chunk).is_ok()
    };
    let mut eof = false;
    let mut idle_since = Instant::now();
    let mut too_long_logs = Repeats::new(10, Instant::now());
    while !eof {
        if input.wait(Some(Duration::from_millis(10)), None)? != Ready::Input {
            if idle_since.elapsed() >= opts.linger && !flush(&mut pending, &mut pending_spans) {
                return Ok(());
            }
            continue;
        }
        if buf.capacity() - buf.len() < (64 << 10) {
            buf.reserve(256 << 10);
        }
        let n = input.read_into(&mut buf, 256 << 10)?;
        eof = n == 0;
        idle_since = Instant::now();
        spans.clear();
        rejected.clear();
        let scanned = framer.scan(&buf, eof, &mut spans, &mut rejected);
        for r in &rejected {
            counts.too_long.fetch_add(1, Ordering::Relaxed);
            if let Some(suppressed) = too_long_logs.admit(Instant::now()) {
                tracing::error!(
                    suppressed,
                    "stdin line {}: record of {} bytes exceeds --max-record-bytes ({}); not sent",
                    r.line,
                    r.size,
                    opts.max_record_bytes
                );
            }
        }
        for s in &spans {
            let payload = &buf[s.start as usize..s.end as usize];
            let start = pending.len() as u32;
            pending.extend_from_slice(payload);
            pending_spans.push(Span {
                start,
                end: pending.len() as u32,
            });
            counts.records.fetch_add(1, Ordering::Relaxed);
            if (pending_spans.len() >= opts.batch_records || pending.len() >= opts.batch_bytes)
                && !flush(&mut pending, &mut pending_spans)
            {
                return Ok(());
            }
        }
        let _ = buf.split_to(scanned.consumed);
        if !input.ready_now() && !flush(&mut pending, &mut pending_spans) {
            return Ok(());
        }
    }
    flush(&mut pending, &mut pending_spans);
    Ok(())
}

/// Runs `send`: reads stdin on a thread, sends on a tokio runtime, and returns the summary.
pub fn run(opts: SendOptions, input: Box<dyn Input>) -> Summary {
    let started = Instant::now();
    let (tx, rx) = tokio::sync::mpsc::channel::<Chunk>(2);
    let reader_opts = opts.clone();
    let counts = Arc::new(ReadCounts::default());
    let reader_counts = counts.clone();
    let reader = std::thread::Builder::new()
        .name("send-stdin".into())
        .spawn(move || read_chunks(input, &reader_opts, &tx, &reader_counts));
    let mut summary = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(async {
            match &opts.target {
                Target::Quic { .. } => quic::send(&opts, rx).await,
                Target::Http { .. } => http::send(&opts, rx).await,
            }
        }),
        Err(e) => Summary {
            error: Some(format!("cannot start the runtime: {e}")),
            ..Summary::default()
        },
    };
    // After an error the reader may be blocked on stdin for good: do not wait for it then.
    if summary.error.is_none() {
        match reader.map_err(|e| e.to_string()).map(|h| h.join()) {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => summary.error = Some(format!("reading stdin: {e}")),
            Ok(Err(_)) | Err(_) => summary.error = Some("the stdin reader failed".into()),
        }
    }
    summary.records_read = counts.records.load(Ordering::Relaxed);
    summary.records_too_long = counts.too_long.load(Ordering::Relaxed);
    summary.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    summary.records_per_sec =
        summary.records_acknowledged as f64 / started.elapsed().as_secs_f64().max(1e-9);
    summary
}

/// Exponential backoff for reconnects: 100 ms doubling up to 5 s.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1u64 << attempt.min(6)).min(5_000))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::stdin::ReadInput;

    #[test]
    fn targets() {
        assert_eq!(
            Target::parse("quic://127.0.0.1:4433").unwrap(),
            Target::Quic {
                host: "127.0.0.1".into(),
                port: 4433
            }
        );
        assert_eq!(
            Target::parse("quic://[::1]:9/").unwrap(),
            Target::Quic {
                host: "::1".into(),
                port: 9
            }
        );
        assert_eq!(
            Target::parse("https://r.example:8443").unwrap(),
            Target::Http {
                url: "https://r.example:8443/v1/records".into()
            }
        );
        assert_eq!(
            Target::parse("http://h:1/custom/path").unwrap(),
            Target::Http {
                url: "http://h:1/custom/path".into()
            }
        );
        assert!(Target::parse("quic://host").is_err());
        assert!(Target::parse("quic://h:99999").is_err());
        assert!(Target::parse("ftp://h").is_err());
    }

    fn opts(batch_records: usize) -> SendOptions {
        SendOptions {
            target: Target::Http {
                url: "http://x/".into(),
            },
            trust: Trust::Insecure,
            token: None,
            client_identity: None,
            batch_records,
            batch_bytes: 1 << 20,
            max_record_bytes: 10,
            linger: Duration::from_millis(5),
            in_flight: 4,
            give_up_after: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
            partition_key: None,
            max_rate: 0,
        }
    }

    #[test]
    fn stdin_becomes_bounded_chunks_and_long_lines_are_counted() {
        let input = b"a\nbb\r\n\nccc\nthis line is too long\nd\ne".to_vec();
        let (tx, mut rx) = tokio::sync::mpsc::channel(100);
        let counts = ReadCounts::default();
        read_chunks(
            ReadInput(std::io::Cursor::new(input)),
            &opts(2),
            &tx,
            &counts,
        )
        .unwrap();
        drop(tx);
        assert_eq!(counts.records.load(Ordering::Relaxed), 5);
        assert_eq!(counts.too_long.load(Ordering::Relaxed), 1);
        let mut all = Vec::new();
        while let Some(c) = rx.blocking_recv() {
            assert!(c.spans.len() <= 2);
            for s in &c.spans {
                all.push(
                    String::from_utf8(c.data[s.start as usize..s.end as usize].to_vec()).unwrap(),
                );
            }
        }
        assert_eq!(all, vec!["a", "bb", "ccc", "d", "e"]);
    }

    #[test]
    fn backoff_doubles_to_a_cap() {
        assert_eq!(backoff(0), Duration::from_millis(100));
        assert_eq!(backoff(1), Duration::from_millis(200));
        assert_eq!(backoff(30), Duration::from_secs(5));
    }
}
