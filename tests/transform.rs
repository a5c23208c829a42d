//! Transform stages (contract 0.2), end to end through the real binary: `explode` beside a 0.1
//! filter in one pipeline, its outputs' partition keys, attributes and destinations honoured by
//! file path templates; one-to-many and many-to-one with exact accounting; answers that break
//! the contract rejected whole and counted. The plugins are built from source by
//! `plugins/build.sh` (which `tests/run.sh` runs first).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{Input, Output, dead_letters, lines, plugin, read, run_in, temp_dir};

fn toml_path(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
}

fn run_config(dir: &Path, config: &str, input: &[u8]) -> Output {
    std::fs::write(dir.join("edge-router.toml"), config).unwrap();
    run_in(
        dir,
        &["run", "-c", "edge-router.toml", "--stats=json"],
        Input::Bytes(input),
    )
}

/// Record `i` of the side-by-side test: `kind` "noise" for every tenth (dropped by the 0.1
/// filter), no array for every fiftieth from 7 (dead-lettered by `explode`), else `i % 4`
/// readings (none: dropped by `explode`).
fn record(i: u64) -> (String, Option<Vec<(String, String)>>) {
    let kind = if i % 10 == 3 { "noise" } else { "data" };
    let (dev, site) = (format!("d{}", i % 7), format!("p{}", i % 3));
    if i % 50 == 7 {
        let line = format!(r#"{{"dev":"{dev}","site":"{site}","kind":"{kind}"}}"#);
        return (line, None);
    }
    let readings: Vec<(String, String)> = (0..i % 4)
        .map(|j| {
            let sensor = format!("s{}", (i + j) % 5);
            let elem = format!(r#"{{"sensor":"{sensor}","t":{}}}"#, i * 10 + j);
            (sensor, elem)
        })
        .collect();
    let array: Vec<&str> = readings.iter().map(|(_, e)| e.as_str()).collect();
    let line = format!(
        r#"{{"dev":"{dev}","site":"{site}","kind":"{kind}","r":[{}]}}"#,
        array.join(",")
    );
    let outputs = if kind == "noise" {
        None
    } else {
        Some(
            readings
                .into_iter()
                .map(|(sensor, elem)| {
                    let inner = &elem[1..elem.len() - 1];
                    let out = format!(r#"{{"dev":"{dev}","site":"{site}",{inner}}}"#);
                    (sensor, out)
                })
                .collect(),
        )
    };
    (line, outputs)
}

#[test]
fn explode_beside_a_0_1_filter_honours_keys_attributes_and_destinations_with_exact_accounting() {
    let dir = temp_dir();
    let n = 5_000u64;
    let mut input = Vec::new();
    let mut by_key: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut by_site: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let (mut data, mut noise, mut no_array, mut empty, mut outputs, mut created) =
        (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
    for i in 0..n {
        let (line, outs) = record(i);
        input.extend_from_slice(line.as_bytes());
        input.push(b'\n');
        if line.contains("noise") {
            noise += 1;
            continue;
        }
        data += 1;
        if !line.contains("\"r\"") {
            no_array += 1;
            continue;
        }
        let outs = outs.unwrap();
        if outs.is_empty() {
            empty += 1;
        }
        created += (outs.len() as u64).saturating_sub(1);
        outputs += outs.len() as u64;
        let site = format!("p{}", i % 3);
        for (sensor, out) in outs {
            by_key
                .entry(sensor)
                .or_default()
                .extend_from_slice(format!("{out}\n").as_bytes());
            by_site
                .entry(site.clone())
                .or_default()
                .extend_from_slice(format!("{out}\n").as_bytes());
        }
    }
    let config = format!(
        r#"[sources.in]
kind = "stdin"

[[stages]]
name = "not-noise"
kind = "filter"
plugin = {filter}
config = {{ condition = 'kind != "noise"' }}

[[stages]]
name = "explode"
kind = "transform"
plugin = {explode}
config = {{ field = "r", keep = ["dev", "site"], partition_key = "sensor", attributes = {{ site = "site" }}, destinations = ["by_key", "by_site"] }}

[pipeline]
default_sinks = ["rest"]

[sinks.by_key]
kind = "file"
path = "out/key-{{partition_key}}.ndjson"

[sinks.by_site]
kind = "file"
path = "out/site-{{attr.site}}.ndjson"

[sinks.rest]
kind = "file"
path = "rest.ndjson"

[dead_letter]
path = "dl.ndjson"
"#,
        filter = toml_path(&plugin("json-filter")),
        explode = toml_path(&plugin("explode")),
    );
    let out = run_config(dir.path(), &config, &input);
    let stats = out.ok_stats();
    for (sensor, want) in &by_key {
        let got = read(&dir.path().join(format!("out/key-{sensor}.ndjson")));
        assert!(got == *want, "out/key-{sensor}.ndjson differs");
    }
    for (site, want) in &by_site {
        let got = read(&dir.path().join(format!("out/site-{site}.ndjson")));
        assert!(got == *want, "out/site-{site}.ndjson differs");
    }
    let files = std::fs::read_dir(dir.path().join("out")).unwrap().count();
    assert_eq!(
        files,
        by_key.len() + by_site.len(),
        "unexpected output files"
    );
    // Every output named its destinations: the default sink got nothing.
    assert!(
        std::fs::read(dir.path().join("rest.ndjson"))
            .unwrap_or_default()
            .is_empty()
    );
    // Exact accounting.
    let f = stats.component("stages.not-noise");
    assert_eq!(f["records_in"], n);
    assert_eq!(f["dropped"], noise);
    let e = stats.component("stages.explode");
    assert_eq!(e["records_in"], data);
    assert_eq!(e["records_out"], outputs);
    assert_eq!(e["created"], created);
    assert_eq!(e["dropped"], empty);
    assert_eq!(e["dead_lettered"], no_array);
    assert_eq!(stats.total("created_by_stage"), created);
    assert_eq!(stats.written(), 2 * outputs);
    assert_eq!(stats.fanout(), outputs);
    let dl = dead_letters(&dir.path().join("dl.ndjson"));
    assert_eq!(dl.len() as u64, no_array);
    assert!(
        dl.iter().all(|d| d.reason.contains("no array to explode")),
        "{:?}",
        dl.first()
    );
}

#[test]
fn merged_records_count_as_absorbed_and_every_input_arrives_once_in_order() {
    let dir = temp_dir();
    let input = common::numbered_sensor(10_001);
    let config = format!(
        "[sources.in]\nkind = \"stdin\"\n\n[[stages]]\nname = \"pairs\"\nkind = \"transform\"\n\
         plugin = {}\nconfig = '\"merge-pairs\"'\n\n[sinks.out]\nkind = \"file\"\npath = \"out.ndjson\"\n",
        toml_path(&plugin("transform-probe"))
    );
    let out = run_config(dir.path(), &config, &input);
    let stats = out.ok_stats();
    let got = read(&dir.path().join("out.ndjson"));
    // Unpair every output: the inputs again, in order.
    let mut flat = Vec::new();
    let mut pairs = 0u64;
    for l in lines(&got) {
        if let Some(inner) = l.strip_prefix(b"[").and_then(|l| l.strip_suffix(b"]")) {
            // Two input lines, each starting with `{"seq":`.
            let cut = inner
                .windows(8)
                .position(|w| w == b",{\"seq\":")
                .expect("a pair");
            pairs += 1;
            for part in [&inner[..cut], &inner[cut + 1..]] {
                flat.extend_from_slice(part);
                flat.push(b'\n');
            }
        } else {
            flat.extend_from_slice(l);
            flat.push(b'\n');
        }
    }
    assert!(
        flat == common::normalized(&input),
        "the outputs unpaired are not the input"
    );
    let s = stats.component("stages.pairs");
    assert_eq!(s["records_in"], 10_001);
    assert_eq!(s["absorbed"], pairs);
    assert_eq!(s["records_out"], 10_001 - pairs);
    assert_eq!(stats.total("absorbed_by_stage"), pairs);
    assert_eq!(stats.written(), 10_001 - pairs);
    assert!(pairs >= 5_000 - 64, "{pairs} pairs");
}

#[test]
fn transform_answers_that_break_the_contract_are_rejected_whole_and_counted() {
    let cases = [
        ("input-past-end", "named record 10 in `inputs`"),
        ("backwards", "outputs must follow input order"),
        (
            "too-many",
            "1025 outputs for record 0, more than the 1024 allowed",
        ),
        ("bad-destination", "chose destination 3 for output 0"),
        ("empty-key", "an empty partition key"),
        ("output-and-error", "both `errors` and `inputs`"),
        (
            "ends-short",
            "end offsets cover 2 bytes but its data holds 3",
        ),
    ];
    let input: Vec<u8> = (0..10)
        .flat_map(|i| format!("{{\"n\":{i}}}\n").into_bytes())
        .collect();
    for (mode, reason) in cases {
        let dir = temp_dir();
        let config = format!(
            "[sources.in]\nkind = \"stdin\"\n\n[[stages]]\nname = \"probe\"\nkind = \"transform\"\n\
             plugin = {}\nconfig = '\"{mode}\"'\n\n[sinks.out]\nkind = \"file\"\npath = \"out.ndjson\"\n\n\
             [dead_letter]\npath = \"dl.ndjson\"\n",
            toml_path(&plugin("transform-probe"))
        );
        let out = run_config(dir.path(), &config, &input);
        let stats = out.ok_stats();
        assert!(
            std::fs::read(dir.path().join("out.ndjson"))
                .unwrap_or_default()
                .is_empty(),
            "{mode}"
        );
        let dl = dead_letters(&dir.path().join("dl.ndjson"));
        assert_eq!(
            dl.len(),
            10,
            "{mode}: every record of the call is dead-lettered"
        );
        assert!(
            dl.iter().all(|d| d.reason.contains(reason)),
            "{mode}: {:?}",
            dl[0].reason
        );
        let s = stats.component("stages.probe");
        assert!(
            s["plugin_contract_violations"].as_u64().unwrap() >= 1,
            "{mode}: {s}"
        );
        assert_eq!(s["records_out"], 0, "{mode}");
    }
}

#[test]
fn plugin_check_and_plugin_run_take_0_2_plugins() {
    let dir = temp_dir();
    let out = run_in(
        dir.path(),
        &["plugin", "check", plugin("explode").to_str().unwrap()],
        Input::Null,
    );
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("implementing `transform` of edge-router:plugin@0.2.0"),
        "{text}"
    );
    // A transform's outputs, each after its key and destinations.
    let out = run_in(
        dir.path(),
        &[
            "plugin",
            "run",
            plugin("explode").to_str().unwrap(),
            "--config",
            r#"{"field": "r", "keep": ["d"], "partition_key": "s", "destinations": ["x"]}"#,
        ],
        Input::Bytes(b"{\"d\":1,\"r\":[{\"s\":\"a\"},{\"s\":\"b\"}]}\n{\"d\":2,\"r\":[]}\n"),
    );
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "{\"destinations\":[\"x\"],\"partition_key\":\"a\"}\t{\"d\":1,\"s\":\"a\"}\n\
         {\"destinations\":[\"x\"],\"partition_key\":\"b\"}\t{\"d\":1,\"s\":\"b\"}\n"
    );
    // An aggregate: `process`, then `flush` emits the open window.
    let out = run_in(
        dir.path(),
        &[
            "plugin",
            "run",
            plugin("window-stats").to_str().unwrap(),
            "--kind",
            "aggregate",
            "--config",
            r#"{"key": "d", "fields": ["v"], "window_ms": 60000, "time": "arrival"}"#,
        ],
        Input::Bytes(b"{\"d\":\"k1\",\"v\":1}\n{\"d\":\"k1\",\"v\":3}\n{\"d\":\"k1\",\"v\":2}\n"),
    );
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "{text}");
    let (meta, record) = lines[0].split_once('\t').unwrap();
    assert_eq!(meta, "{\"partition_key\":\"k1\"}");
    let v: serde_json::Value = serde_json::from_str(record).unwrap();
    assert_eq!(v["count"], 3);
    assert_eq!(
        (
            v["v"]["min"].as_f64(),
            v["v"]["max"].as_f64(),
            v["v"]["mean"].as_f64()
        ),
        (Some(1.0), Some(3.0), Some(2.0))
    );
}
