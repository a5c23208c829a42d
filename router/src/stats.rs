//! The `--stats` report printed at exit: a human table or one line of JSON.

use std::fmt::Write as _;

use crate::core::report::Report;

/// How `--stats` prints the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A table for people ([`human`]).
    Human,
    /// One line of JSON ([`json`]).
    Json,
}

impl Format {
    /// The report in this format.
    pub fn render(self, r: &Report) -> String {
        match self {
            Format::Human => human(r),
            Format::Json => json(r),
        }
    }
}

/// Formats the report as a table for people.
pub fn human(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<28} {:<11} {:>12} {:>12} {:>10} {:>14}",
        "component", "kind", "records in", "records out", "dropped", "dead-lettered"
    );
    for c in &r.counters.components {
        let v = &c.counters;
        let kind = serde_json::to_value(c.kind)
            .ok()
            .and_then(|k| k.as_str().map(str::to_owned))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "{:<28} {:<11} {:>12} {:>12} {:>10} {:>14}",
            c.name, kind, v.records_in, v.records_out, v.dropped, v.dead_lettered
        );
    }
    for c in &r.counters.components {
        let v = &c.counters;
        if v.firehose_requests > 0 {
            let _ = writeln!(
                s,
                "{}: {} PutRecordBatch requests, {} Firehose records ({:.4} per record), {} retries, {} bytes, billed ~{} bytes (~{} unpacked)",
                c.name,
                v.firehose_requests,
                v.firehose_records,
                v.firehose_records as f64 / v.records_out.max(1) as f64,
                v.firehose_retries,
                v.firehose_bytes,
                v.firehose_billed_bytes,
                v.firehose_billed_bytes_unpacked
            );
        }
        if v.kinesis_requests > 0 {
            let _ = writeln!(
                s,
                "{}: {} PutRecords requests ({:.1} records each), {} Kinesis records ({:.4} per record), {} retries, {} throttles",
                c.name,
                v.kinesis_requests,
                v.records_out as f64 / v.kinesis_requests as f64,
                v.kinesis_records,
                v.kinesis_records as f64 / v.records_out.max(1) as f64,
                v.kinesis_retries,
                v.kinesis_throttles
            );
        }
        for (shard, n) in &c.kinesis_shards {
            let _ = writeln!(
                s,
                "{}: {shard}: {} records, {} Kinesis records, {} throttles",
                c.name, n.records, n.kinesis_records, n.throttles
            );
        }
    }
    let t = &r.counters.totals;
    let _ = writeln!(
        s,
        "totals: read {} ({} bytes), recovered {}, written {} ({} bytes), dead-lettered {}, dropped by stages {}, dropped by buffers {}, fan-out copies {}, created by stages {}, absorbed by stages {}, in flight {}",
        t.read,
        t.bytes_read,
        t.recovered,
        t.written,
        t.bytes_written,
        t.dead_lettered,
        t.dropped_by_stage,
        t.dropped_by_buffer,
        t.fanout_copies,
        t.created_by_stage,
        t.absorbed_by_stage,
        r.in_flight
    );
    let l = &r.latency_us;
    let _ = writeln!(
        s,
        "latency arrival->written (us): p50 {} p90 {} p99 {} p99.9 {} max {} over {} records",
        l.p50, l.p90, l.p99, l.p999, l.max, l.count
    );
    for q in &r.queues {
        let _ = writeln!(
            s,
            "queue {:<24} peak {} / {} records, {} / {} bytes",
            q.name, q.records_peak, q.records_max, q.bytes_peak, q.bytes_max
        );
    }
    let _ = write!(s, "elapsed {} ms", r.elapsed_ms);
    s
}

/// Formats the report as one line of JSON.
pub fn json(r: &Report) -> String {
    serde_json::to_string(r).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}
