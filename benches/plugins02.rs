//! Benchmarks of contract 0.2 stages (issue 21), on the host path without the pipeline around it
//! (as `wasm_call`): batches handed to `Stage::process` over and over, only those calls timed.
//!
//! ```text
//! plugins/build.sh add-field-enrich add-field-transform window-stats
//! cargo bench -p edge-router --bench plugins02
//! ```
//!
//! 1. **transform vs enrich**: the same rewrite (`"tag":"edge"` put first in each record) as a
//!    0.1 enrich stage and a 0.2 transform stage, 8192 generated sensor records per batch,
//!    `batch_records_max` 1024; five half-second runs each, interleaved; median ns/record and
//!    the ratio (target: transform within 20% of enrich).
//! 2. **window-stats**: 10,000 keys, one record per key per second of event time, 1-minute
//!    tumbling windows by event time; `tick` every second of wall time as the router would;
//!    input records/s (target: at least 2 million), output records per input record, and what
//!    that means for Kinesis (one user record per input sent raw, one per key-minute after).
//!
//! A manual benchmark, not a test: it checks the outputs' counts but asserts nothing about time.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use edge_router::core::accounting::Counters;
use edge_router::core::record::{Batch, Origin, PositionBase, Span};
use edge_router::stages::Stage;
use edge_router::stages::wasm::{Emitting, PluginKind, WasmStage, WasmStageConfig};

const RECORDS: usize = 8192;

fn dist(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../plugins/dist/{name}.wasm"))
}

fn batch(lines: impl Iterator<Item = String>) -> Batch {
    let mut data = Vec::new();
    let mut spans = Vec::new();
    for l in lines {
        let start = data.len() as u32;
        data.extend_from_slice(l.as_bytes());
        spans.push(Span {
            start,
            end: data.len() as u32,
        });
        data.push(b'\n');
    }
    Batch::new(
        Bytes::from(data),
        spans,
        Origin {
            source: Arc::from("bench"),
            arrival_unix_nanos: 1_700_000_000_000_000_000,
            arrival: Instant::now(),
            position: PositionBase::None,
        },
    )
}

fn stage(plugin: &str, kind: PluginKind, config: &str) -> anyhow::Result<WasmStage> {
    let cfg = WasmStageConfig {
        config_json: config.to_owned(),
        batch_records_max: 1024,
        timeout: Duration::from_secs(5),
        ..WasmStageConfig::defaults(dist(plugin), kind)
    };
    Ok(WasmStage::new(
        "bench",
        cfg,
        &[],
        1,
        Arc::new(Counters::default()),
    )?)
}

/// Median ns/record of `runs` half-second runs of `stage` on `input`.
fn ns_per_record(stage: &mut WasmStage, input: &Batch) -> anyhow::Result<f64> {
    let mut dead = Vec::new();
    let (start, cpu) = (Instant::now(), thread_cpu());
    let mut records = 0u64;
    while start.elapsed() < Duration::from_millis(500) {
        let mut b = input.clone();
        stage.process(&mut b, &mut dead)?;
        anyhow::ensure!(b.len() == input.len() && dead.is_empty(), "outputs lost");
        records += input.len() as u64;
    }
    Ok((thread_cpu() - cpu).as_nanos() as f64 / records as f64)
}

/// CPU time this thread has run, from `/proc/thread-self/schedstat` (nanoseconds on a CPU):
/// on a shared machine, wall time counts other processes' turns too.
fn thread_cpu() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .map_or(Duration::ZERO, Duration::from_nanos)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn transform_vs_enrich() -> anyhow::Result<()> {
    let input = batch((0..RECORDS).map(|i| {
        format!(
            r#"{{"device_id":"dev-{:04}","site":"plant-{}","ts":{},"temperature":{:.1},"humidity":{:.1},"battery":{}}}"#,
            i % 500,
            i % 8,
            1_700_000_000_000u64 + i as u64,
            60.0 + (i * 37 % 300) as f64 / 10.0,
            40.0 + (i * 11 % 200) as f64 / 10.0,
            100 - i % 100
        )
    }));
    let mut enrich = stage("add-field-enrich", PluginKind::Enrich, "{}")?;
    let mut transform = stage("add-field-transform", PluginKind::Transform, "{}")?;
    // Same output, byte for byte.
    let (mut a, mut b, mut dead) = (input.clone(), input.clone(), Vec::new());
    enrich.process(&mut a, &mut dead)?;
    transform.process(&mut b, &mut dead)?;
    anyhow::ensure!(
        (0..a.len()).all(|i| a.payload(i) == b.payload(i)) && a.len() == b.len(),
        "the two plugins do not rewrite alike"
    );
    let (mut e, mut t) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        e.push(ns_per_record(&mut enrich, &input)?);
        t.push(ns_per_record(&mut transform, &input)?);
    }
    let (e, t) = (median(e), median(t));
    println!(
        "transform vs enrich (same rewrite, {RECORDS} records/batch, batch_records_max 1024; CPU \
         time, median of 5): enrich {e:.1} ns/record, transform {t:.1} ns/record, \
         transform/enrich {:.3}",
        t / e
    );
    Ok(())
}

fn window_stats() -> anyhow::Result<()> {
    const KEYS: u64 = 10_000;
    // One record per key per second: 10 minutes of event time.
    const SECONDS: u64 = 600;
    let total = KEYS * SECONDS;
    let mut s = stage(
        "window-stats",
        PluginKind::Aggregate,
        r#"{"key": "device", "fields": ["temperature", "humidity"], "window_ms": 60000, "timestamp": "ts"}"#,
    )?;
    let t0 = 1_700_000_040_000u64;
    let line = |i: u64| {
        format!(
            r#"{{"device":"dev-{:05}","ts":{},"temperature":{:.1},"humidity":{}}}"#,
            i % KEYS,
            t0 + (i / KEYS) * 1000 + i % 997,
            15.0 + (i * 37 % 300) as f64 / 10.0,
            40 + i % 50
        )
    };
    let mut dead = Vec::new();
    let (mut busy, mut cpu, mut outputs, mut bytes_in) =
        (Duration::ZERO, Duration::ZERO, 0u64, 0u64);
    let mut next_tick = Instant::now() + Duration::from_secs(1);
    let mut i = 0u64;
    while i < total {
        let n = (total - i).min(RECORDS as u64);
        let mut b = batch((i..i + n).map(line));
        bytes_in += b.payload_bytes();
        i += n;
        let (start, cpu0) = (Instant::now(), thread_cpu());
        s.process(&mut b, &mut dead)?;
        outputs += b.len() as u64;
        if Instant::now() >= next_tick {
            outputs += s.emit(Emitting::Tick(0)).map_or(0, |b| b.len() as u64);
            next_tick = Instant::now() + Duration::from_secs(1);
        }
        busy += start.elapsed();
        cpu += thread_cpu() - cpu0;
    }
    let (start, cpu0) = (Instant::now(), thread_cpu());
    outputs += s.emit(Emitting::Tick(0)).map_or(0, |b| b.len() as u64);
    outputs += s.emit(Emitting::Flush).map_or(0, |b| b.len() as u64);
    busy += start.elapsed();
    cpu += thread_cpu() - cpu0;
    anyhow::ensure!(dead.is_empty(), "{} records dead-lettered", dead.len());
    // 10 minutes of event time starting on a minute: 10 windows per key, maybe 11 with the
    // spread of timestamps within a second.
    anyhow::ensure!(
        (10 * KEYS..=11 * KEYS).contains(&outputs),
        "{outputs} windows for {KEYS} keys over {SECONDS} s"
    );
    println!(
        "window-stats ({KEYS} keys, 1-minute windows by event time, 2 fields): {total} records \
         ({:.0} bytes each) in {:.2} s of stage CPU time ({:.2} s wall): {:.2} M input records/s \
         per CPU ({:.2} M/s wall); {outputs} output records, {:.4} per input record (1/{:.0}); \
         Kinesis user records per input: raw 1, with window-stats {:.4}",
        bytes_in as f64 / total as f64,
        cpu.as_secs_f64(),
        busy.as_secs_f64(),
        total as f64 / cpu.as_secs_f64() / 1e6,
        total as f64 / busy.as_secs_f64() / 1e6,
        outputs as f64 / total as f64,
        total as f64 / outputs as f64,
        outputs as f64 / total as f64,
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    transform_vs_enrich()?;
    window_stats()
}
