//! Micro-benchmark of one WebAssembly stage's host path, without the pipeline around it: a batch
//! of generated `sensor`-like records is handed to `Stage::process` over and over, and the CPU
//! time per record is reported for several `batch_records_max` values.
//!
//! ```text
//! plugins/build.sh noop-filter json-filter
//! cargo bench -p edge-router --bench wasm_call -- [PLUGIN.wasm ...]
//! ```
//!
//! Without arguments it runs `plugins/dist/noop-filter.wasm` and `plugins/dist/json-filter.wasm`
//! (condition `temperature <= 80`, or `$WASM_CALL_CONDITION`) on generated records, or on the
//! first 8192 lines of `$WASM_CALL_RECORDS` (e.g. the output of `edge-router generate sensor 8192`);
//! `$WASM_CALL_SIZES` (e.g. `256,1024`) picks the batch sizes. Each (plugin, batch size) pair runs for about half a second,
//! five times; the median ns/record is printed. A manual benchmark, not a test: it asserts
//! nothing about time.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use edge_router::core::accounting::Counters;
use edge_router::core::record::{Batch, Origin, PositionBase, Span};
use edge_router::stages::Stage;
use edge_router::stages::wasm::{PluginKind, WasmStage, WasmStageConfig};

/// Records per process() call, as the stdin source hands them over.
const RECORDS: usize = 8192;

fn records() -> anyhow::Result<(Bytes, Vec<Span>)> {
    let mut data = Vec::new();
    let mut spans = Vec::new();
    if let Ok(path) = std::env::var("WASM_CALL_RECORDS") {
        let text = std::fs::read(&path)?;
        for line in text
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .take(RECORDS)
        {
            let start = data.len() as u32;
            data.extend_from_slice(line);
            spans.push(Span {
                start,
                end: data.len() as u32,
            });
            data.push(b'\n');
        }
        anyhow::ensure!(
            spans.len() == RECORDS,
            "{path} holds fewer than {RECORDS} lines"
        );
        return Ok((Bytes::from(data), spans));
    }
    for i in 0..RECORDS {
        let start = data.len() as u32;
        let line = format!(
            r#"{{"device_id":"dev-{:04}","site":"plant-{}","ts":{},"temperature":{:.1},"humidity":{:.1},"battery":{}}}"#,
            i % 500,
            i % 8,
            1_700_000_000_000u64 + i as u64,
            60.0 + (i * 37 % 300) as f64 / 10.0,
            40.0 + (i * 11 % 200) as f64 / 10.0,
            100 - i % 100
        );
        data.extend_from_slice(line.as_bytes());
        spans.push(Span {
            start,
            end: data.len() as u32,
        });
        data.push(b'\n');
    }
    Ok((Bytes::from(data), spans))
}

fn config(plugin: PathBuf, batch_records_max: usize) -> WasmStageConfig {
    let json = plugin
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("json-filter"));
    WasmStageConfig {
        config_json: if json {
            let condition =
                std::env::var("WASM_CALL_CONDITION").unwrap_or_else(|_| "temperature <= 80".into());
            format!(r#"{{"condition":{condition:?}}}"#)
        } else {
            "{}".into()
        },
        batch_records_max,
        ..WasmStageConfig::defaults(plugin, PluginKind::Filter)
    }
}

fn main() -> anyhow::Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut plugins: Vec<PathBuf> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .map(PathBuf::from)
        .collect();
    if plugins.is_empty() {
        plugins = ["noop-filter", "json-filter"]
            .iter()
            .map(|n| root.join("plugins/dist").join(format!("{n}.wasm")))
            .collect();
    }
    let (data, spans) = records()?;
    let sizes: Vec<usize> = match std::env::var("WASM_CALL_SIZES") {
        Ok(list) => list
            .split(',')
            .map(|s| s.trim().parse())
            .collect::<Result<_, _>>()?,
        Err(_) => vec![1, 64, 256, 1024, 4096],
    };
    let origin = Origin {
        source: Arc::from("bench"),
        arrival_unix_nanos: 0,
        arrival: Instant::now(),
        position: PositionBase::Line(1),
    };
    let template = Batch::new(data, spans, origin);
    println!("plugin\tbatch_records_max\tns/record (median of 5)\tkept");
    for plugin in &plugins {
        for &size in &sizes {
            let cfg = config(plugin.clone(), size);
            let mut stage = WasmStage::new("bench", cfg, &[], 1, Arc::new(Counters::default()))?;
            let mut dead = Vec::new();
            let mut kept = 0;
            let mut samples = Vec::new();
            for _ in 0..5 {
                let started = Instant::now();
                let mut records = 0u64;
                while started.elapsed() < Duration::from_millis(500) {
                    let mut batch = template.clone();
                    stage
                        .process(&mut batch, &mut dead)
                        .map_err(|e| anyhow::anyhow!(e.0))?;
                    kept = batch.len();
                    records += RECORDS as u64;
                    anyhow::ensure!(dead.is_empty(), "dead letters: {:?}", dead.first());
                }
                samples.push(started.elapsed().as_nanos() as f64 / records as f64);
            }
            samples.sort_by(f64::total_cmp);
            println!(
                "{}\t{size}\t{:.1}\t{kept}/{RECORDS}",
                plugin.file_name().unwrap_or_default().to_string_lossy(),
                samples[2]
            );
        }
    }
    Ok(())
}
