//! Metrics: the Prometheus text exposition of a running pipeline's [`Report`] (format 0.0.4) —
//! counters per component, totals, queue depths and capacities, latency quantiles — rendered by
//! the pure [`prometheus`], and the endpoint that serves it ([`server`], `[metrics] address`
//! or `--metrics ADDR`) with `/health` and `/ready`.
//!
//! Names follow Prometheus conventions: `edge_router_` prefix, `_total` for counters, units in
//! names (`_bytes`, `_seconds`), labels `component` (config path such as `sinks.out`) and `kind`.

pub mod client;
pub mod server;
pub mod top;

use std::fmt::Write as _;
use std::net::SocketAddr;

use crate::config::reader::{Diagnostics, Section};

use crate::core::accounting::{CounterValues, Quantiles};
use crate::core::report::Report;

/// Settings of the metrics endpoint (`[metrics]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Where to listen (HTTP).
    pub address: SocketAddr,
    /// `POST /reload` needs `Authorization: Bearer <this>`; without it, reloading over HTTP is
    /// off (SIGHUP still reloads).
    pub reload_token: Option<String>,
    /// Most connections at once; more wait to be accepted.
    pub max_connections: usize,
}

/// The default `[metrics] max_connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 16;

impl MetricsConfig {
    /// An endpoint on `address` with the defaults (no reload token).
    pub fn at(address: SocketAddr) -> MetricsConfig {
        MetricsConfig {
            address,
            reload_token: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }

    /// Reads the `[metrics]` table.
    pub fn parse(s: &mut Section<'_>, d: &mut Diagnostics) -> Option<MetricsConfig> {
        let address = s.socket_addr(d, "address", "127.0.0.1:9598");
        let reload_token = s.opt_str(d, "reload_token");
        if let Some(t) = &reload_token
            && t.value.is_empty()
        {
            d.error(&t.spot, "reload_token must not be empty");
        }
        let max_connections = s.int_or(
            d,
            "max_connections",
            DEFAULT_MAX_CONNECTIONS as u64,
            1..=4096,
        ) as usize;
        Some(MetricsConfig {
            address: address?,
            reload_token: reload_token.map(|t| t.value),
            max_connections,
        })
    }
}

/// One metric family being written.
struct Family<'a> {
    out: &'a mut String,
}

impl Family<'_> {
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

fn family<'a>(out: &'a mut String, name: &str, kind: &str, help: &str) -> Family<'a> {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    Family { out }
}

/// Escapes a label value (backslash, double quote, newline).
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The per-component counters exported, with their help texts; only non-zero ones are written
/// for the service-specific counters (a file sink has no Kinesis requests).
type Getter = fn(&CounterValues) -> u64;
const COUNTERS: &[(&str, &str, Getter, bool)] = &[
    (
        "records_in_total",
        "Records that came into the component.",
        |v| v.records_in,
        true,
    ),
    (
        "bytes_in_total",
        "Payload bytes that came into the component.",
        |v| v.bytes_in,
        true,
    ),
    (
        "records_out_total",
        "Records the component passed on (sinks: wrote).",
        |v| v.records_out,
        true,
    ),
    (
        "bytes_out_total",
        "Payload bytes the component passed on (sinks: wrote).",
        |v| v.bytes_out,
        true,
    ),
    (
        "records_dropped_total",
        "Records a stage dropped on purpose.",
        |v| v.dropped,
        true,
    ),
    (
        "records_dead_lettered_total",
        "Records the component sent to the dead-letter sink.",
        |v| v.dead_lettered,
        true,
    ),
    (
        "records_created_total",
        "Records a stage made beyond one per input (transform outputs, aggregate emits).",
        |v| v.created,
        false,
    ),
    (
        "records_absorbed_total",
        "Inputs a stage merged or took into an aggregate's state.",
        |v| v.absorbed,
        false,
    ),
    (
        "fanout_copies_total",
        "Extra record copies made by fan-out to more than one sink.",
        |v| v.fanout_copies,
        false,
    ),
    (
        "plugin_traps_total",
        "Plugin calls that trapped.",
        |v| v.plugin_traps,
        false,
    ),
    (
        "plugin_timeouts_total",
        "Plugin calls stopped at their CPU deadline.",
        |v| v.plugin_timeouts,
        false,
    ),
    (
        "plugin_memory_limit_hits_total",
        "Plugin calls stopped at the memory cap.",
        |v| v.plugin_memory_limit_hits,
        false,
    ),
    (
        "plugin_record_errors_total",
        "Records a plugin reported an error for.",
        |v| v.plugin_record_errors,
        false,
    ),
    (
        "plugin_contract_violations_total",
        "Plugin answers rejected for breaking the contract or exceeding answer_bytes_max.",
        |v| v.plugin_contract_violations,
        false,
    ),
    (
        "plugin_restart_failures_total",
        "Failed attempts to start a new plugin instance after a failed call.",
        |v| v.plugin_restart_failures,
        false,
    ),
    (
        "plugin_breaker_trips_total",
        "Times a plugin stage's breaker opened.",
        |v| v.plugin_breaker_trips,
        false,
    ),
    (
        "plugin_logs_suppressed_total",
        "Plugin log messages held back by the stage's log limits.",
        |v| v.plugin_logs_suppressed,
        false,
    ),
    (
        "plugin_state_losses_total",
        "Aggregate instances lost with their open windows after a failed call.",
        |v| v.plugin_state_losses,
        false,
    ),
    (
        "kinesis_requests_total",
        "PutRecords requests made.",
        |v| v.kinesis_requests,
        false,
    ),
    (
        "kinesis_records_total",
        "Kinesis records written (an aggregate counts once).",
        |v| v.kinesis_records,
        false,
    ),
    (
        "kinesis_retries_total",
        "Kinesis entries sent again after a failure.",
        |v| v.kinesis_retries,
        false,
    ),
    (
        "kinesis_throttles_total",
        "Kinesis entries and calls refused for throughput.",
        |v| v.kinesis_throttles,
        false,
    ),
    (
        "egress_bytes_total",
        "Payload bytes AWS sinks sent in requests (retries included).",
        |v| v.aws_egress_bytes,
        false,
    ),
    (
        "egress_paced_total",
        "Requests AWS sinks held back for max_bytes_per_sec.",
        |v| v.aws_egress_paced,
        false,
    ),
    (
        "firehose_requests_total",
        "PutRecordBatch requests made.",
        |v| v.firehose_requests,
        false,
    ),
    (
        "firehose_records_total",
        "Firehose records written (a packed record counts once).",
        |v| v.firehose_records,
        false,
    ),
    (
        "firehose_retries_total",
        "Firehose records sent again after a failure.",
        |v| v.firehose_retries,
        false,
    ),
    (
        "firehose_bytes_total",
        "Bytes sent to Firehose.",
        |v| v.firehose_bytes,
        false,
    ),
    (
        "firehose_billed_bytes_total",
        "Estimated billed Firehose bytes (each record rounded up to 5 KB).",
        |v| v.firehose_billed_bytes,
        false,
    ),
    (
        "aws_aggregates_total",
        "KPL aggregated records the AWS API opened on ingest.",
        |v| v.aws_aggregates,
        false,
    ),
    (
        "aws_aggregated_records_total",
        "User records taken out of KPL aggregates on ingest.",
        |v| v.aws_aggregated_records,
        false,
    ),
    (
        "aws_aggregates_kept_whole_total",
        "Records that looked like KPL aggregates but failed the check and were kept whole.",
        |v| v.aws_aggregates_kept_whole,
        false,
    ),
    (
        "file_rotations_total",
        "Files a file source was reading that left their path (rotated by rename, or deleted).",
        |v| v.file_rotations,
        false,
    ),
    (
        "file_truncations_total",
        "Files a file source found shorter than what it had read (copytruncate); read again from 0.",
        |v| v.file_truncations,
        false,
    ),
];

/// Renders `r` in the Prometheus text format.
pub fn prometheus(r: &Report) -> String {
    let mut out = String::with_capacity(8 << 10);
    {
        let mut f = family(
            &mut out,
            "edge_router_build_info",
            "gauge",
            "Build information.",
        );
        f.sample(
            "edge_router_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))],
            1,
        );
    }
    {
        let mut f = family(
            &mut out,
            "edge_router_uptime_seconds",
            "gauge",
            "Seconds since the pipeline started.",
        );
        f.sample(
            "edge_router_uptime_seconds",
            &[],
            r.elapsed_ms as f64 / 1000.0,
        );
    }
    let comps = &r.counters.components;
    for (suffix, help, get, always) in COUNTERS {
        if !always && comps.iter().all(|c| get(&c.counters) == 0) {
            continue;
        }
        let name = format!("edge_router_component_{suffix}");
        let mut f = family(&mut out, &name, "counter", help);
        for c in comps {
            let v = get(&c.counters);
            if *always || v > 0 {
                f.sample(
                    &name,
                    &[("component", &c.name), ("kind", kind_name(c.kind))],
                    v,
                );
            }
        }
    }
    {
        let name = "edge_router_component_plugin_breaker_open";
        let stages: Vec<_> = comps
            .iter()
            .filter(|c| c.kind == crate::core::accounting::Kind::Stage)
            .collect();
        if !stages.is_empty() {
            let mut f = family(
                &mut out,
                name,
                "gauge",
                "1 while a plugin stage's breaker is open (its plugin is not called), else 0.",
            );
            for c in stages {
                f.sample(
                    name,
                    &[("component", &c.name), ("kind", kind_name(c.kind))],
                    c.counters.plugin_breaker_open,
                );
            }
        }
    }
    let files: Vec<_> = comps
        .iter()
        .filter(|c| c.counters.file_source > 0)
        .collect();
    if !files.is_empty() {
        for (name, help, get) in [
            (
                "edge_router_file_source_files_watched",
                "Files a file source knows (being read or waiting for bytes).",
                (|v| v.file_watched) as Getter,
            ),
            (
                "edge_router_file_source_bytes_behind",
                "Bytes of the files a file source knows not acknowledged yet (size minus checkpoint, summed).",
                |v| v.file_bytes_behind,
            ),
        ] {
            let mut f = family(&mut out, name, "gauge", help);
            for c in &files {
                f.sample(
                    name,
                    &[("component", &c.name), ("kind", kind_name(c.kind))],
                    get(&c.counters),
                );
            }
        }
    }
    if comps.iter().any(|c| !c.kinesis_shards.is_empty()) {
        for (suffix, help, get) in [
            (
                "records_total",
                "User records written to the shard.",
                (|s| s.records) as fn(&crate::core::accounting::ShardCounts) -> u64,
            ),
            (
                "kinesis_records_total",
                "Kinesis records written to the shard.",
                |s| s.kinesis_records,
            ),
            (
                "throttles_total",
                "Entries for the shard refused with ProvisionedThroughputExceeded.",
                |s| s.throttles,
            ),
        ] {
            let name = format!("edge_router_kinesis_shard_{suffix}");
            let mut f = family(&mut out, &name, "counter", help);
            for c in comps {
                for (shard, n) in &c.kinesis_shards {
                    f.sample(&name, &[("component", &c.name), ("shard", shard)], get(n));
                }
            }
        }
    }
    if comps.iter().any(|c| !c.responses.is_empty()) {
        let name = "edge_router_source_responses_total";
        let mut f = family(
            &mut out,
            name,
            "counter",
            "Answers network sources gave to record requests, by HTTP status or QUIC status.",
        );
        for c in comps {
            for (code, n) in &c.responses {
                f.sample(name, &[("component", &c.name), ("code", code)], n);
            }
        }
    }
    let buffers: Vec<_> = comps
        .iter()
        .filter(|c| c.kind == crate::core::accounting::Kind::Buffer)
        .collect();
    if !buffers.is_empty() {
        for (name, help, newest, oldest) in [
            (
                "edge_router_buffer_dropped_total",
                "Records a full disk buffer dropped, by reason: drop_newest (the new batch \
                 refused and dead-lettered) or drop_oldest (deleted with the oldest segments).",
                (|v| v.dropped) as Getter,
                (|v| v.dropped_oldest) as Getter,
            ),
            (
                "edge_router_buffer_dropped_bytes_total",
                "Bytes (as stored, entry headers included) of the records a full disk buffer \
                 dropped, by reason.",
                |v| v.dropped_bytes,
                |v| v.dropped_oldest_bytes,
            ),
        ] {
            let mut f = family(&mut out, name, "counter", help);
            for c in &buffers {
                for (reason, get) in [("drop_newest", newest), ("drop_oldest", oldest)] {
                    f.sample(
                        name,
                        &[("component", &c.name), ("reason", reason)],
                        get(&c.counters),
                    );
                }
            }
        }
    }
    for (name, help, get) in [
        (
            "edge_router_sink_latency_seconds",
            "Arrival-to-written latency of each sink's records.",
            (|c| c.latency_us)
                as fn(&crate::core::accounting::ComponentSnapshot) -> Option<Quantiles>,
        ),
        (
            "edge_router_sink_request_latency_seconds",
            "Duration of each AWS sink's service calls (PutRecords, PutRecordBatch).",
            |c| c.request_latency_us,
        ),
    ] {
        if comps.iter().all(|c| get(c).is_none()) {
            continue;
        }
        let mut f = family(&mut out, name, "summary", help);
        for c in comps {
            if let Some(q) = get(c) {
                for (p, v) in [
                    ("0.5", q.p50),
                    ("0.9", q.p90),
                    ("0.99", q.p99),
                    ("0.999", q.p999),
                ] {
                    f.sample(
                        name,
                        &[("component", &c.name), ("quantile", p)],
                        v as f64 / 1e6,
                    );
                }
                f.sample(&format!("{name}_count"), &[("component", &c.name)], q.count);
            }
        }
    }
    let t = &r.counters.totals;
    for (name, help, v) in [
        (
            "edge_router_records_read_total",
            "Records read by all sources.",
            t.read,
        ),
        (
            "edge_router_bytes_read_total",
            "Payload bytes read by all sources.",
            t.bytes_read,
        ),
        (
            "edge_router_records_written_total",
            "Records written by all sinks (a record sent to two sinks counts twice).",
            t.written,
        ),
        (
            "edge_router_bytes_written_total",
            "Payload bytes written by all sinks.",
            t.bytes_written,
        ),
        (
            "edge_router_records_dead_lettered_total",
            "Records sent to the dead-letter sink.",
            t.dead_lettered,
        ),
        (
            "edge_router_records_dropped_total",
            "Records stages dropped on purpose.",
            t.dropped_by_stage,
        ),
        (
            "edge_router_records_dropped_by_buffers_total",
            "Records disk buffers deleted with their oldest segments (when_full = drop_oldest).",
            t.dropped_by_buffer,
        ),
        (
            "edge_router_records_created_by_stages_total",
            "Records stages made beyond one per input (transform outputs, aggregate emits).",
            t.created_by_stage,
        ),
        (
            "edge_router_records_absorbed_by_stages_total",
            "Records that ended in a stage without being dropped (merged, or taken into an aggregate's state).",
            t.absorbed_by_stage,
        ),
        (
            "edge_router_fanout_copies_total",
            "Extra copies made by fan-out.",
            t.fanout_copies,
        ),
        (
            "edge_router_records_recovered_total",
            "Records recovered from disk buffers at start (read by an earlier run).",
            t.recovered,
        ),
    ] {
        family(&mut out, name, "counter", help).sample(name, &[], v);
    }
    family(
        &mut out,
        "edge_router_records_in_flight",
        "gauge",
        "read + recovered + fan-out copies - written - dead-lettered - dropped: records inside the router now.",
    )
    .sample("edge_router_records_in_flight", &[], r.in_flight);
    for (name, help, get) in [
        (
            "edge_router_queue_records",
            "Records in the queue now.",
            (|q| q.records) as fn(&crate::core::report::QueueStats) -> u64,
        ),
        ("edge_router_queue_bytes", "Bytes in the queue now.", |q| {
            q.bytes
        }),
        (
            "edge_router_queue_records_capacity",
            "Most records the queue holds.",
            |q| q.records_max,
        ),
        (
            "edge_router_queue_bytes_capacity",
            "Most bytes the queue holds.",
            |q| q.bytes_max,
        ),
        (
            "edge_router_queue_records_peak",
            "Most records the queue ever held.",
            |q| q.records_peak,
        ),
    ] {
        let mut f = family(&mut out, name, "gauge", help);
        for q in &r.queues {
            f.sample(name, &[("queue", &q.name)], get(q));
        }
    }
    let l = &r.latency_us;
    let name = "edge_router_end_to_end_latency_seconds";
    let mut f = family(
        &mut out,
        name,
        "summary",
        "Arrival-to-written latency of records, over all sinks.",
    );
    for (q, v) in [
        ("0.5", l.p50),
        ("0.9", l.p90),
        ("0.99", l.p99),
        ("0.999", l.p999),
    ] {
        f.sample(name, &[("quantile", q)], v as f64 / 1e6);
    }
    f.sample(&format!("{name}_count"), &[], l.count);
    out
}

fn kind_name(k: crate::core::accounting::Kind) -> &'static str {
    use crate::core::accounting::Kind;
    match k {
        Kind::Source => "source",
        Kind::Stage => "stage",
        Kind::Sink => "sink",
        Kind::DeadLetter => "dead_letter",
        Kind::Buffer => "buffer",
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::core::accounting::{Kind, Registry};
    use crate::core::report::{LatencyStats, QueueStats};

    fn report() -> Report {
        let reg = Registry::new();
        let src = reg.register("sources.web", Kind::Source);
        src.add_in(10, 1000);
        src.add_out(10, 1000);
        let sink = reg.register("sinks.out", Kind::Sink);
        sink.add_in(10, 1000);
        sink.add_out(7, 700);
        sink.record_latency(2000, 7);
        sink.record_request_latency(1000);
        src.count_response("200");
        src.count_response("200");
        src.count_response("503");
        let buf = reg.register("buffers.out", Kind::Buffer);
        buf.add_dropped(2);
        buf.dropped_bytes.fetch_add(90, Ordering::Relaxed);
        buf.dropped_oldest.fetch_add(1, Ordering::Relaxed);
        buf.dropped_oldest_bytes.fetch_add(60, Ordering::Relaxed);
        let counters = reg.snapshot();
        Report {
            in_flight: counters.totals.in_flight(),
            counters,
            queues: vec![QueueStats {
                name: "sinks.\"q\"".into(),
                records: 3,
                bytes: 300,
                records_max: 100,
                bytes_max: 1 << 20,
                records_peak: 5,
                bytes_peak: 500,
            }],
            latency_us: LatencyStats {
                count: 7,
                p50: 1500,
                p90: 2000,
                p99: 3000,
                p999: 4000,
                max: 5000,
            },
            elapsed_ms: 2500,
        }
    }

    #[test]
    fn every_sample_is_well_formed_and_the_numbers_are_the_reports() {
        let text = prometheus(&report());
        let mut families = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(families.insert(name.to_owned()), "{name} declared twice");
                assert!(["counter", "gauge", "summary"].contains(&kind));
                if kind == "counter" {
                    assert!(name.ends_with("_total"), "{name}");
                }
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').unwrap();
            value.parse::<f64>().unwrap_or_else(|_| panic!("{line}"));
            let name = series.split('{').next().unwrap();
            assert!(name.starts_with("edge_router_"), "{line}");
            assert!(
                name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "{line}"
            );
        }
        for want in [
            "edge_router_component_records_in_total{component=\"sources.web\",kind=\"source\"} 10",
            "edge_router_component_records_out_total{component=\"sinks.out\",kind=\"sink\"} 7",
            "edge_router_records_read_total 10",
            "edge_router_records_written_total 7",
            "edge_router_records_in_flight 2",
            "edge_router_records_dropped_by_buffers_total 1",
            "edge_router_buffer_dropped_total{component=\"buffers.out\",reason=\"drop_newest\"} 2",
            "edge_router_buffer_dropped_total{component=\"buffers.out\",reason=\"drop_oldest\"} 1",
            "edge_router_buffer_dropped_bytes_total{component=\"buffers.out\",reason=\"drop_newest\"} 90",
            "edge_router_buffer_dropped_bytes_total{component=\"buffers.out\",reason=\"drop_oldest\"} 60",
            "edge_router_queue_records{queue=\"sinks.\\\"q\\\"\"} 3",
            "edge_router_queue_bytes_capacity{queue=\"sinks.\\\"q\\\"\"} 1048576",
            "edge_router_end_to_end_latency_seconds{quantile=\"0.99\"} 0.003",
            "edge_router_end_to_end_latency_seconds_count 7",
            "edge_router_uptime_seconds 2.5",
            "edge_router_source_responses_total{component=\"sources.web\",code=\"200\"} 2",
            "edge_router_source_responses_total{component=\"sources.web\",code=\"503\"} 1",
            "edge_router_sink_latency_seconds{component=\"sinks.out\",quantile=\"0.5\"} 0.002",
            "edge_router_sink_latency_seconds_count{component=\"sinks.out\"} 7",
            "edge_router_sink_request_latency_seconds{component=\"sinks.out\",quantile=\"0.99\"} 0.001",
            "edge_router_sink_request_latency_seconds_count{component=\"sinks.out\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == want),
                "missing {want:?} in:\n{text}"
            );
        }
        // Service counters that are zero everywhere are left out.
        assert!(!text.contains("kinesis_requests_total"));
    }
}
