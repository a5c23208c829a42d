//! The Kinesis sink's per-shard rate limits, simulated: no network, no clock, no Kinesis. The
//! sink's pure parts (per-shard KPL aggregation, the PutRecords batcher, the per-shard token
//! buckets) run against fake shards in virtual time, fed by a producer that always has more to
//! send than the limits let through, so the numbers are the most the sender gets out of each
//! shard's 1000 records/s and 1 MiB/s ([`simulate`]; the fake shards count every record sent
//! while a sliding one-second window is over either limit as a throttle).
//!
//! ```text
//! cargo bench -p edge-router --bench kinesis_sim
//! ```
//!
//! Prints two tables: `SimConfig::default()` (4 shards, 60 simulated seconds, 100-byte user
//! records, 10,000 random keys, aggregation on with 50 KiB aggregates, the default limit: 100%
//! with a 5% burst), then the same without aggregation. Each is followed by the binding limit's
//! utilisation per shard (min .. max), the throttles, and the KPL design claim from issue 5, "at
//! least 95% of the binding limit on every shard with zero throttles", marked "met" or "NOT met"
//! for information. Deterministic (seeded); the wall time it took is printed too. A manual
//! benchmark: it asserts nothing (the unit tests in `limits.rs` assert the claim).

use std::time::Instant;

use edge_router::sinks::kinesis::limits::{SimConfig, SimReport, simulate};

fn run(title: &str, config: &SimConfig) -> SimReport {
    let started = Instant::now();
    let report = simulate(config, Instant::now());
    let took = started.elapsed();
    println!("== {title}");
    println!("{report}");
    let n = report.shards.len();
    let (mut lo, mut hi) = (f64::INFINITY, 0.0f64);
    let mut binding = (0usize, 0usize); // shards bound by (records, bytes)
    for i in 0..n {
        let u = report.utilisation(i);
        lo = lo.min(u);
        hi = hi.max(u);
        if report.records_utilisation(i) >= report.bytes_utilisation(i) {
            binding.0 += 1;
        } else {
            binding.1 += 1;
        }
    }
    let limit = match binding {
        (0, _) => "1 MiB/s (bytes)",
        (_, 0) => "1000 records/s",
        _ => "records on some shards, bytes on others",
    };
    let claim = n > 0 && lo >= 0.95 && report.throttles() == 0;
    println!(
        "binding limit: {limit}; utilisation per shard {:.2}% .. {:.2}%; {} throttles; \
         user records/s over all shards: {:.0}",
        100.0 * lo,
        100.0 * hi,
        report.throttles(),
        report.user_records() as f64 / config.duration.as_secs_f64().max(f64::MIN_POSITIVE),
    );
    println!(
        "claim (>= 95% of the binding limit on every shard, 0 throttles): {}",
        if claim { "met" } else { "NOT met" }
    );
    println!(
        "({:?} simulated in {:.2} s of wall time)",
        config.duration,
        took.as_secs_f64()
    );
    println!();
    report
}

fn main() {
    let aggregated = SimConfig::default();
    let agg = run(
        "aggregation on: SimConfig::default() (the KPL design claim)",
        &aggregated,
    );
    let raw = run(
        "aggregation off: SimConfig { aggregate: false, ..default }",
        &SimConfig {
            aggregate: false,
            ..aggregated
        },
    );
    let secs = aggregated.duration.as_secs_f64();
    println!(
        "aggregation delivers {:.1}x the user records of sending them raw ({:.0} vs {:.0} user records/s over {} shards)",
        agg.user_records() as f64 / (raw.user_records().max(1) as f64),
        agg.user_records() as f64 / secs,
        raw.user_records() as f64 / secs,
        aggregated.shards,
    );
}
