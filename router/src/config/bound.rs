//! What a config lets the router hold at most (pure: computed from the config alone):
//! [`memory`], the bytes the sources (network and file) and the queues may hold, and [`descriptors`], the
//! file descriptors the components may need at once. `edge-router validate` prints both; `run`
//! warns when the descriptors do not fit under the process's limit.
//!
//! The memory bound, for each network source (`max_inflight_bytes` bounds what requests and
//! batches being read, decompressed and parsed hold, whatever the number of connections and
//! streams; the rest is per connection):
//!
//! ```text
//! http:  max_inflight_bytes + max_connections x (64 KiB + max(128 KiB, max_header_bytes + 8 KiB,
//!                                                   max_streams x max_header_bytes + 128 KiB))
//! quic:  max_inflight_bytes + max_connections x (64 KiB + min(max_streams x min(max_batch_bytes,
//!                                                   256 KiB), 1 MiB))
//! ```
//!
//! plus the queues (the stage queue, each sink's queue, the dead-letter queue, and for a sink
//! with a disk buffer its second queue and the 8 MiB of batches kept for its reader), plus one
//! batch per stage worker. Not counted: the process itself (code, thread stacks, allocator
//! slack), plugin instances (each under its `memory_max_bytes`), and what AWS sinks hold in
//! their requests.

use super::{Config, SinkKind, SourceKind};
use crate::sources::file::config::FileSourceConfig;
use crate::sources::file::watch::WatchMode;
use crate::sources::http::HttpSourceConfig;
use crate::sources::quic::QuicSourceConfig;

/// One term of a bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    /// What it is for (a component name).
    pub what: String,
    /// How it is computed, in words and numbers.
    pub formula: String,
    /// Its value (bytes, or descriptors).
    pub value: u64,
}

/// A bound: its terms and their sum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bound {
    /// The terms, in config order.
    pub terms: Vec<Term>,
}

impl Bound {
    /// The sum of the terms.
    pub fn total(&self) -> u64 {
        self.terms
            .iter()
            .fold(0u64, |sum, t| sum.saturating_add(t.value))
    }

    fn push(&mut self, what: impl Into<String>, formula: String, value: u64) {
        self.terms.push(Term {
            what: what.into(),
            formula,
            value,
        });
    }
}

/// `n` bytes for people: `512 B`, `64 KiB`, `1.5 MiB`, `3.2 GiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 || v.fract() == 0.0 {
        format!("{v:.0} {}", UNITS[unit])
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn http_bytes(c: &HttpSourceConfig) -> (u64, String) {
    let per = crate::sources::http::connection_bytes(c);
    let total = (c.max_inflight_bytes as u64)
        .saturating_add((c.max_connections as u64).saturating_mul(per));
    let formula = format!(
        "max_inflight_bytes {} + max_connections {} x {} per connection (64 KiB + max(HTTP/1 \
         buffer {}, HTTP/2 max_streams {} x max_header_bytes {} + window {}))",
        human_bytes(c.max_inflight_bytes as u64),
        c.max_connections,
        human_bytes(per),
        human_bytes(crate::sources::http::h1_buffer_bytes(c) as u64),
        c.max_streams,
        human_bytes(c.max_header_bytes as u64),
        human_bytes(u64::from(crate::sources::http::H2_CONNECTION_WINDOW)),
    );
    (total, formula)
}

fn quic_bytes(c: &QuicSourceConfig) -> (u64, String) {
    let per = crate::sources::quic::server::connection_bytes(c);
    let total = (c.max_inflight_bytes as u64)
        .saturating_add((c.max_connections as u64).saturating_mul(per));
    let formula = format!(
        "max_inflight_bytes {} + max_connections {} x {} per connection (64 KiB + flow-control \
         window)",
        human_bytes(c.max_inflight_bytes as u64),
        c.max_connections,
        human_bytes(per),
    );
    (total, formula)
}

/// The file source's bound: every open file holds at most one read plus an unterminated line
/// and a pending multi-line record (closed files hold nothing); and its largest batch.
fn file_bytes(c: &FileSourceConfig) -> (u64, String, u64) {
    let read = crate::sources::file::source::READ_BYTES as u64;
    let multiline = c.multiline.as_ref().map_or(0, |m| m.max_bytes);
    let per = read + c.max_record_bytes as u64 + multiline;
    let formula = format!(
        "max_open_files {} x (read {} + max_record_bytes {} + multiline.max_bytes {})",
        c.max_open_files,
        human_bytes(read),
        human_bytes(c.max_record_bytes as u64),
        human_bytes(multiline),
    );
    (per.saturating_mul(c.max_open_files as u64), formula, per)
}

/// The most memory the network sources and the queues of `config` may hold (see the module
/// documentation for what is and is not counted).
pub fn memory(config: &Config) -> Bound {
    let mut b = Bound { terms: Vec::new() };
    let mut largest_batch = 0u64;
    for s in &config.sources {
        let what = format!("sources.{}", s.name);
        match &s.kind {
            SourceKind::Http(c) => {
                let (v, f) = http_bytes(c);
                b.push(what, format!("(http) {f}"), v);
                largest_batch = largest_batch.max(c.max_body_bytes as u64);
            }
            SourceKind::Quic(c) => {
                let (v, f) = quic_bytes(c);
                b.push(what, format!("(quic) {f}"), v);
                largest_batch = largest_batch.max(c.max_batch_bytes as u64);
            }
            SourceKind::Stdin(c) => largest_batch = largest_batch.max(c.read_bytes as u64),
            SourceKind::File(c) => {
                let (v, f, batch) = file_bytes(c);
                b.push(what, format!("(file) {f}"), v);
                largest_batch = largest_batch.max(batch);
            }
        }
    }
    let mut parts = vec![format!(
        "stages {}",
        human_bytes(config.pipeline.queue.bytes_max)
    )];
    let mut queues = config.pipeline.queue.bytes_max;
    for s in &config.sinks {
        let mut q = s.queue.bytes_max;
        if s.buffer.is_some() {
            q = q
                .saturating_mul(2)
                .saturating_add(crate::sinks::buffer::RECENT_BYTES_MAX);
        }
        parts.push(format!("sinks.{} {}", s.name, human_bytes(q)));
        queues = queues.saturating_add(q);
    }
    let dl = config
        .pipeline
        .queue
        .bytes_max
        .min(super::DEAD_LETTER_QUEUE_BYTES_MAX);
    parts.push(format!("dead letters {}", human_bytes(dl)));
    queues = queues.saturating_add(dl);
    b.push("queues", parts.join(" + "), queues);
    let workers = config.pipeline.stage_workers as u64;
    b.push(
        "stage workers",
        format!(
            "{workers} x one batch of at most {}",
            human_bytes(largest_batch)
        ),
        workers.saturating_mul(largest_batch),
    );
    b
}

/// Descriptors the process needs besides its components (standard streams, the runtimes' event
/// descriptors, the plugin cache, logs).
pub const BASE_DESCRIPTORS: u64 = 64;

/// The most file descriptors the components of `config` may have open at once: connections of
/// the HTTP sources and the metrics endpoint (QUIC connections share their source's socket),
/// file sinks' open files, AWS sinks' connections, disk buffers' segments, the dead-letter file.
pub fn descriptors(config: &Config) -> Bound {
    let mut b = Bound { terms: Vec::new() };
    b.push(
        "process",
        "stdio, runtimes, plugin cache".into(),
        BASE_DESCRIPTORS,
    );
    for s in &config.sources {
        let what = format!("sources.{}", s.name);
        match &s.kind {
            SourceKind::Http(c) => b.push(
                what,
                format!("max_connections {} + listener", c.max_connections),
                c.max_connections as u64 + 1,
            ),
            SourceKind::Quic(_) => b.push(what, "one UDP socket".into(), 1),
            SourceKind::Stdin(_) => {}
            SourceKind::File(c) => b.push(
                what,
                format!(
                    "max_open_files {} + one to read a file's first bytes + 4 for change notifications",
                    c.max_open_files
                ),
                c.max_open_files as u64 + 1 + if c.watch == WatchMode::Events { 4 } else { 0 },
            ),
        }
    }
    if let Some(m) = &config.metrics {
        b.push(
            "metrics",
            format!("max_connections {} + listener", m.max_connections),
            m.max_connections as u64 + 1,
        );
    }
    for s in &config.sinks {
        let what = format!("sinks.{}", s.name);
        match &s.kind {
            SinkKind::File(f) => b.push(
                what,
                format!("max_open_files {} + 2 (rotation, checks)", f.max_open_files),
                f.max_open_files as u64 + 2,
            ),
            SinkKind::Kinesis(k) => b.push(
                what,
                format!("max_in_flight {} + 4", k.aws.max_in_flight),
                k.aws.max_in_flight as u64 + 4,
            ),
            SinkKind::Firehose(f) => b.push(
                what,
                format!("max_in_flight {} + 4", f.aws.max_in_flight),
                f.aws.max_in_flight as u64 + 4,
            ),
            SinkKind::Stdout(_) => {}
        }
        if s.buffer.is_some() {
            b.push(
                format!("buffers.{}", s.name),
                "segments being written and read, directory".into(),
                4,
            );
        }
    }
    b.push("dead_letter", "its file".into(), 1);
    b
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn bounds_of_a_small_http_pipeline() {
        let c = crate::config::parse_str(
            "t.toml",
            "[sources.web]\nkind = \"http\"\naddress = \"127.0.0.1:1\"\nmax_connections = 10\n\
             max_inflight_bytes = \"64MiB\"\nmax_body_bytes = \"4MiB\"\n\n[sinks.out]\nkind = \"file\"\npath = \"o\"\n\n\
             [pipeline]\nstage_workers = 1\n\n[metrics]\naddress = \"127.0.0.1:2\"\n",
        )
        .unwrap();
        let m = memory(&c);
        // 64 MiB + 10 x (64 KiB + 8 x 16 KiB + 128 KiB) + queues 8 + 8 + 4 MiB + 1 x 4 MiB.
        let per = (64 << 10) + 8 * (16 << 10) + (128 << 10);
        assert_eq!(
            m.total(),
            (64 << 20) + 10 * per + (20 << 20) + (4 << 20),
            "{m:?}"
        );
        assert!(m.terms[0].formula.contains("max_inflight_bytes 64 MiB"));
        let d = descriptors(&c);
        assert_eq!(d.total(), 64 + 11 + 17 + 66 + 1);
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(64 << 20), "64 MiB");
    }
}
