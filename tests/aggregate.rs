//! Aggregate stages (contract 0.2), end to end through the real binary: `window-stats` over
//! generated sensor data against a reference computed here (every window's values exact), by
//! event time with out-of-order and late records and by arrival time; several stage workers
//! keep each key on one instance; `flush` at shutdown and before a reload's switch emits what
//! is open once; a trap (in `process`, `tick` or `flush`) loses only its instance's state and
//! says so. The plugins are built from
//! source by `plugins/build.sh` (which `tests/run.sh` runs first).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{
    Input, Output, Running, bin, dead_letters, free_port, lines, plugin, read, run_in, temp_dir,
};
use serde_json::Value;

fn run_config(dir: &Path, config: &str, input: &[u8]) -> Output {
    std::fs::write(dir.join("edge-router.toml"), config).unwrap();
    run_in(
        dir,
        &["run", "-c", "edge-router.toml", "--stats=json"],
        Input::Bytes(input),
    )
}

/// A deterministic pseudo-random sequence (xorshift), so the data is the same every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// One generated reading.
#[derive(Clone)]
struct Reading {
    device: String,
    ts: i64,
    temp: Option<f64>,
    hum: f64,
    line: String,
}

/// `n` readings of `devices` devices: each device's clock advances 0..=40 ms a reading from a
/// start near `t0`; one reading in 5 is sent up to `jitter` ms out of order, and one in `late`
/// (if not 0) is 5 s in the past; temperatures (missing one time in 7) and humidities are
/// multiples of 0.25, so sums are exact in any order. Timestamps are unique per device.
fn readings(n: usize, devices: usize, t0: i64, jitter: i64, late: usize) -> Vec<Reading> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut clock: Vec<i64> = (0..devices).map(|d| t0 + d as i64 * 7).collect();
    let mut used: Vec<std::collections::HashSet<i64>> = vec![Default::default(); devices];
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let d = (rng.next() % devices as u64) as usize;
        clock[d] += (rng.next() % 41) as i64;
        let mut ts = clock[d];
        if jitter > 0 && rng.next().is_multiple_of(5) {
            ts -= (rng.next() % jitter as u64) as i64;
        }
        if late > 0 && i % late == late - 1 {
            ts -= 5_000;
        }
        while !used[d].insert(ts) {
            ts += 1;
        }
        let temp = (!rng.next().is_multiple_of(7)).then(|| (rng.next() % 400) as f64 / 4.0 - 20.0);
        let hum = (rng.next() % 400) as f64 / 4.0;
        let device = format!("dev-{d:03}");
        let temp_text = temp.map_or(String::new(), |t| format!("\"temp\":{t},"));
        let line = format!(r#"{{"device":"{device}","ts":{ts},{temp_text}"hum":{hum}}}"#);
        out.push(Reading {
            device,
            ts,
            temp,
            hum,
            line,
        });
    }
    out
}

/// One field of a window, as the reference computes it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Field {
    count: u64,
    min: f64,
    max: f64,
    sum: f64,
    /// The mean as written (outputs only; the reference divides `sum`).
    mean: f64,
    last: f64,
    last_ts: i64,
}

impl Field {
    fn new() -> Field {
        Field {
            count: 0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            sum: 0.0,
            mean: 0.0,
            last: 0.0,
            last_ts: i64::MIN,
        }
    }

    fn add(&mut self, v: f64, ts: i64) {
        self.count += 1;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.sum += v;
        if ts >= self.last_ts {
            self.last = v;
            self.last_ts = ts;
        }
    }
}

/// A window as the reference computes it: count, temperature, humidity.
type Windows = BTreeMap<(String, i64), (u64, Field, Field)>;

/// The event-time reference: records in input order per device, a device's watermark its
/// largest timestamp minus `lateness`; a record whose window ends at or before it is late.
fn event_reference(rs: &[Reading], window: i64, lateness: i64) -> (Windows, Vec<String>) {
    let mut max: HashMap<&str, i64> = HashMap::new();
    let mut windows = Windows::new();
    let mut late = Vec::new();
    for r in rs {
        let start = r.ts.div_euclid(window) * window;
        if let Some(&m) = max.get(r.device.as_str())
            && start + window <= m - lateness
        {
            late.push(r.line.clone());
            continue;
        }
        let m = max.entry(&r.device).or_insert(r.ts);
        *m = (*m).max(r.ts);
        let w = windows
            .entry((r.device.clone(), start))
            .or_insert((0, Field::new(), Field::new()));
        w.0 += 1;
        if let Some(t) = r.temp {
            w.1.add(t, r.ts);
        }
        w.2.add(r.hum, r.ts);
    }
    (windows, late)
}

/// The number written as `"stat":N` inside `"field":{...}` of `line`, parsed by Rust's exact
/// float parser.
fn raw_number(line: &[u8], field: &str, stat: &str) -> f64 {
    let text = std::str::from_utf8(line).unwrap();
    let at = text.find(&format!("\"{field}\":{{")).unwrap();
    let rest = &text[at..];
    let from = rest.find(&format!("\"{stat}\":")).unwrap() + stat.len() + 3;
    let end = rest[from..].find([',', '}']).unwrap();
    rest[from..from + end].parse().unwrap()
}

/// The windows a run wrote, keyed by device and start; panics on a window written twice.
fn written_windows(path: &Path, window: i64) -> (Windows, HashMap<String, Vec<u64>>) {
    let mut out = Windows::new();
    let mut instances: HashMap<String, Vec<u64>> = HashMap::new();
    for l in lines(&read(path)) {
        let v: Value = serde_json::from_slice(l).unwrap();
        let key = v["key"].as_str().unwrap().to_owned();
        let start = v["window_start"].as_i64().unwrap();
        assert_eq!(v["window_end"].as_i64().unwrap(), start + window);
        assert_eq!(start.rem_euclid(window), 0);
        let field = |name: &str| {
            let f = &v[name];
            let count = f["count"].as_u64().unwrap();
            if count == 0 {
                return Field::new();
            }
            // serde_json's float parsing may be off by an ulp: read the written text exactly.
            let mean = raw_number(l, name, "mean");
            Field {
                count,
                min: f["min"].as_f64().unwrap(),
                max: f["max"].as_f64().unwrap(),
                sum: mean * count as f64,
                mean,
                last: f["last"].as_f64().unwrap(),
                last_ts: 0,
            }
        };
        if let Some(i) = v["instance"].as_u64() {
            instances.entry(key.clone()).or_default().push(i);
        }
        let w = (v["count"].as_u64().unwrap(), field("temp"), field("hum"));
        assert!(
            out.insert((key.clone(), start), w).is_none(),
            "window {key} {start} written twice"
        );
    }
    (out, instances)
}

/// Asserts the windows written equal the reference, every value exact.
fn assert_windows_eq(got: &Windows, want: &Windows) {
    assert_eq!(got.len(), want.len(), "number of windows");
    for (k, w) in want {
        let g = got.get(k).unwrap_or_else(|| panic!("window {k:?} missing"));
        assert_eq!(g.0, w.0, "count of {k:?}");
        for (name, gf, wf) in [("temp", g.1, w.1), ("hum", g.2, w.2)] {
            assert_eq!(gf.count, wf.count, "{name} count of {k:?}");
            if wf.count > 0 {
                assert_eq!(
                    (gf.min, gf.max, gf.last),
                    (wf.min, wf.max, wf.last),
                    "{name} min/max/last of {k:?}"
                );
                // The mean is written as sum / count; exact sums, so exact means.
                assert_eq!(gf.mean, wf.sum / wf.count as f64, "{name} mean of {k:?}");
            }
        }
    }
}

fn window_stats_config(workers: usize, plugin_config: &str) -> String {
    format!(
        r#"[sources.in]
kind = "stdin"

[pipeline]
stage_workers = {workers}

[[stages]]
name = "stats"
kind = "aggregate"
plugin = {plugin:?}
key = "device"
tick_ms = 50
config = {plugin_config}

[sinks.out]
kind = "file"
path = "out.ndjson"

[dead_letter]
path = "dl.ndjson"
"#,
        plugin = plugin("window-stats").display().to_string(),
    )
}

#[test]
fn window_stats_by_event_time_matches_the_reference_with_out_of_order_and_late_records() {
    let dir = temp_dir();
    let (window, lateness) = (1_000i64, 300i64);
    let rs = readings(60_000, 40, 1_700_000_000_000, 250, 997);
    let input: Vec<u8> = rs
        .iter()
        .flat_map(|r| format!("{}\n", r.line).into_bytes())
        .collect();
    let config = window_stats_config(
        1,
        r#"{ key = "device", fields = ["temp", "hum"], window_ms = 1000, timestamp = "ts", allowed_lateness_ms = 300, late = "dead_letter" }"#,
    );
    let out = run_config(dir.path(), &config, &input);
    let stats = out.ok_stats();
    let (want, late) = event_reference(&rs, window, lateness);
    assert!(
        late.len() > 30,
        "the data has late records ({})",
        late.len()
    );
    let (got, _) = written_windows(&dir.path().join("out.ndjson"), window);
    assert_windows_eq(&got, &want);
    // Late records, and only they, are dead-lettered, once each.
    let mut dl: Vec<String> = dead_letters(&dir.path().join("dl.ndjson"))
        .into_iter()
        .map(|d| {
            assert!(d.reason.contains("late record"), "{}", d.reason);
            String::from_utf8(d.payload).unwrap()
        })
        .collect();
    let mut late_sorted = late.clone();
    dl.sort();
    late_sorted.sort();
    assert_eq!(dl, late_sorted);
    let s = stats.component("stages.stats");
    let n = rs.len() as u64;
    assert_eq!(s["records_in"], n);
    assert_eq!(s["absorbed"], n - late.len() as u64);
    assert_eq!(s["dead_lettered"], late.len() as u64);
    assert_eq!(s["created"], want.len() as u64);
    assert_eq!(s["records_out"], want.len() as u64);
    assert_eq!(stats.total("absorbed_by_stage"), n - late.len() as u64);
    assert_eq!(stats.written(), want.len() as u64);
}

#[test]
fn window_stats_with_late_records_dropped_counts_them_as_dropped() {
    let dir = temp_dir();
    let rs = readings(20_000, 10, 1_700_000_000_000, 100, 499);
    let input: Vec<u8> = rs
        .iter()
        .flat_map(|r| format!("{}\n", r.line).into_bytes())
        .collect();
    let config = window_stats_config(
        1,
        r#"{ key = "device", fields = ["temp", "hum"], window_ms = 500, timestamp = "ts", allowed_lateness_ms = 150 }"#,
    );
    let out = run_config(dir.path(), &config, &input);
    let stats = out.ok_stats();
    let (want, late) = event_reference(&rs, 500, 150);
    assert!(!late.is_empty());
    let (got, _) = written_windows(&dir.path().join("out.ndjson"), 500);
    assert_windows_eq(&got, &want);
    let s = stats.component("stages.stats");
    assert_eq!(s["dropped"], late.len() as u64);
    assert_eq!(s["dead_lettered"], 0);
}

#[test]
fn four_workers_keep_each_key_on_one_instance_and_the_windows_exact() {
    let dir = temp_dir();
    let rs = readings(100_000, 64, 1_700_000_000_000, 200, 0);
    let input: Vec<u8> = rs
        .iter()
        .flat_map(|r| format!("{}\n", r.line).into_bytes())
        .collect();
    // A lateness longer than the data's whole span: no record is late in any processing order.
    let config = window_stats_config(
        4,
        r#"{ key = "device", fields = ["temp", "hum"], window_ms = 2000, timestamp = "ts", allowed_lateness_ms = 100000000, instance_field = true }"#,
    );
    let out = run_config(dir.path(), &config, &input);
    let stats = out.ok_stats();
    let (want, late) = event_reference(&rs, 2_000, 100_000_000);
    assert!(late.is_empty());
    let (got, instances) = written_windows(&dir.path().join("out.ndjson"), 2_000);
    assert_windows_eq(&got, &want);
    let mut used = std::collections::BTreeSet::new();
    for (key, is) in &instances {
        assert!(
            is.iter().all(|&i| i == is[0]),
            "key {key} on instances {is:?}"
        );
        used.insert(is[0]);
    }
    assert_eq!(instances.len(), 64);
    assert!(used.len() > 1, "all keys on one instance: {used:?}");
    assert_eq!(stats.component("stages.stats")["absorbed"], rs.len() as u64);
}

#[test]
fn window_stats_by_arrival_time_counts_every_record_once() {
    let dir = temp_dir();
    let rs = readings(30_000, 20, 0, 0, 0);
    let input: Vec<u8> = rs
        .iter()
        .flat_map(|r| format!("{}\n", r.line).into_bytes())
        .collect();
    let config = window_stats_config(
        2,
        r#"{ key = "device", fields = ["temp", "hum"], window_ms = 100, time = "arrival" }"#,
    );
    let out = run_config(dir.path(), &config, &input);
    let stats = out.ok_stats();
    let (got, _) = written_windows(&dir.path().join("out.ndjson"), 100);
    // Per device: counts, extremes and sums over its windows equal the input's.
    let mut per_device: BTreeMap<String, (u64, Field, Field)> = BTreeMap::new();
    for ((device, _), (n, t, h)) in &got {
        let e = per_device
            .entry(device.clone())
            .or_insert((0, Field::new(), Field::new()));
        e.0 += n;
        for (acc, f) in [(&mut e.1, t), (&mut e.2, h)] {
            if f.count > 0 {
                acc.count += f.count;
                acc.min = acc.min.min(f.min);
                acc.max = acc.max.max(f.max);
                acc.sum += f.sum;
            }
        }
    }
    let mut want: BTreeMap<String, (u64, Field, Field)> = BTreeMap::new();
    for r in &rs {
        let e = want
            .entry(r.device.clone())
            .or_insert((0, Field::new(), Field::new()));
        e.0 += 1;
        if let Some(t) = r.temp {
            e.1.add(t, 0);
        }
        e.2.add(r.hum, 0);
    }
    assert_eq!(per_device.len(), want.len());
    for (d, w) in &want {
        let g = &per_device[d];
        assert_eq!(g.0, w.0, "{d}");
        for (gf, wf) in [(g.1, w.1), (g.2, w.2)] {
            assert_eq!(
                (gf.count, gf.min, gf.max),
                (wf.count, wf.min, wf.max),
                "{d}"
            );
            // Sums rebuilt from the written means (mean x count) carry rounding.
            assert!(
                (gf.sum - wf.sum).abs() <= 1e-9 * wf.sum.abs().max(1.0),
                "{d}: {} vs {}",
                gf.sum,
                wf.sum
            );
        }
    }
    assert_eq!(stats.component("stages.stats")["absorbed"], rs.len() as u64);
}

#[test]
fn a_trap_loses_only_its_instances_state_and_says_so() {
    let dir = temp_dir();
    // Keys k0..k7 on two instances; one record traps its instance in the middle.
    let mut input = Vec::new();
    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    for i in 0..4_000u64 {
        let k = format!("k{}", i % 8);
        if i == 2_000 {
            input.extend_from_slice(format!("{{\"k\":\"{k}\",\"trap\":true}}\n").as_bytes());
        }
        input.extend_from_slice(format!("{{\"k\":\"{k}\",\"i\":{i}}}\n").as_bytes());
        *want.entry(k).or_default() += 1;
    }
    let config = format!(
        r#"[sources.in]
kind = "stdin"

[pipeline]
stage_workers = 2

[[stages]]
name = "probe"
kind = "aggregate"
plugin = {:?}
key = "k"

[sinks.out]
kind = "file"
path = "out.ndjson"

[dead_letter]
path = "dl.ndjson"
"#,
        plugin("aggregate-probe").display().to_string()
    );
    let out = run_config(dir.path(), &config, &input);
    let stats = out.ok_stats();
    // The poison record alone is dead-lettered, once.
    let dl = dead_letters(&dir.path().join("dl.ndjson"));
    assert_eq!(dl.len(), 1, "{dl:?}");
    assert!(dl[0].payload.ends_with(b"\"trap\":true}"));
    assert!(dl[0].reason.contains("trapped"), "{}", dl[0].reason);
    assert!(
        out.stderr.contains("the windows it held open are lost"),
        "{}",
        out.stderr
    );
    let s = stats.component("stages.probe");
    assert!(s["plugin_state_losses"].as_u64().unwrap() >= 1, "{s}");
    // Keys of the instance that did not trap are counted exactly; the others lost counts.
    let mut got: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for l in lines(&read(&dir.path().join("out.ndjson"))) {
        let v: Value = serde_json::from_slice(l).unwrap();
        let e = got.entry(v["k"].as_str().unwrap().to_owned()).or_default();
        e.0 += v["n"].as_u64().unwrap();
        e.1 = v["instance"].as_u64().unwrap();
    }
    let trapped = {
        let k = "k0"; // record 2000's key: 2000 % 8 == 0
        got[k].1
    };
    let mut exact = 0;
    for (k, n) in &want {
        let (g, instance) = got[k];
        if instance == trapped {
            assert!(g < *n, "{k}: {g} of {n} (its instance trapped)");
        } else {
            assert_eq!(g, *n, "{k}");
            exact += 1;
        }
    }
    assert!(exact > 0, "every key on the trapped instance");
    assert_eq!(stats.component("stages.probe")["absorbed"], 4_000);
}

/// `{"k":"k<i % 8>","i":i}` lines for `i` in `from..to`.
fn keyed(from: u64, to: u64) -> Vec<u8> {
    (from..to)
        .flat_map(|i| format!("{{\"k\":\"k{}\",\"i\":{i}}}\n", i % 8).into_bytes())
        .collect()
}

/// The `aggregate-probe` stage `probe` with two workers (keys k0..k7 spread over two
/// instances), ticking every 20 ms, writing `out.ndjson` and dead letters to `dl.ndjson`, with
/// `extra` appended.
fn probe_config(extra: &str) -> String {
    format!(
        "[sources.in]\nkind = \"stdin\"\n\n[pipeline]\nstage_workers = 2\n\n\
         [[stages]]\nname = \"probe\"\nkind = \"aggregate\"\nplugin = {:?}\nkey = \"k\"\n\
         tick_ms = 20\n\n[sinks.out]\nkind = \"file\"\npath = \"out.ndjson\"\n\n\
         [dead_letter]\npath = \"dl.ndjson\"\n{extra}",
        plugin("aggregate-probe").display().to_string()
    )
}

/// The probe's output: per key, its count and instance; panics on a key written twice.
fn probe_counts(path: &Path) -> BTreeMap<String, (u64, u64)> {
    let mut got = BTreeMap::new();
    for l in lines(&read(path)) {
        let v: Value = serde_json::from_slice(l).unwrap();
        let k = v["k"].as_str().unwrap().to_owned();
        let e = (v["n"].as_u64().unwrap(), v["instance"].as_u64().unwrap());
        assert!(got.insert(k.clone(), e).is_none(), "{k} written twice");
    }
    got
}

/// Asserts nothing was dead-lettered.
fn no_dead_letters(dir: &Path) {
    let path = dir.join("dl.ndjson");
    if path.exists() {
        let dl = dead_letters(&path);
        assert!(dl.is_empty(), "{dl:?}");
    }
}

#[test]
fn a_trap_in_tick_loses_only_its_instances_windows_and_says_so() {
    let dir = temp_dir();
    let metrics = format!("127.0.0.1:{}", free_port());
    let cfg = dir.path().join("edge-router.toml");
    std::fs::write(
        &cfg,
        probe_config(&format!("\n[metrics]\naddress = \"{metrics}\"\n")),
    )
    .unwrap();
    let (mut router, mut stdin) = Running::start(
        dir.path(),
        &["run", "-c", cfg.to_str().unwrap(), "--stats=json"],
    );
    // 2,000 records absorbed (250 a key) ...
    stdin.write_all(&keyed(0, 2_000)).unwrap();
    stdin.flush().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !scrape(&metrics).lines().any(|l| {
        l.starts_with("edge_router_component_records_absorbed_total")
            && l.contains("stages.probe")
            && l.ends_with(" 2000")
    }) {
        assert!(Instant::now() < deadline, "the stage never absorbed 2000");
        std::thread::sleep(Duration::from_millis(50));
    }
    // ... then one that makes k0's instance trap in its next tick ...
    stdin
        .write_all(b"{\"k\":\"k0\",\"trap\":\"tick\"}\n")
        .unwrap();
    stdin.flush().unwrap();
    router.wait_for_stderr("the aggregate's tick failed", Duration::from_secs(20));
    // ... then 2,000 more (250 a key) after it.
    stdin.write_all(&keyed(2_000, 4_000)).unwrap();
    drop(stdin);
    let out = router.wait(Duration::from_secs(30));
    let stats = out.ok_stats();
    assert!(
        out.stderr.contains("the plugin trapped")
            && out.stderr.contains("the windows it held open are lost"),
        "{}",
        out.stderr
    );
    let s = stats.component("stages.probe");
    assert_eq!(s["plugin_state_losses"], 1, "{s}");
    assert_eq!(s["plugin_traps"], 1, "{s}");
    // Every record stays counted as absorbed, none is dead-lettered.
    assert_eq!(s["absorbed"], 4_001, "{s}");
    assert_eq!(s["dead_lettered"].as_u64().unwrap_or(0), 0, "{s}");
    no_dead_letters(dir.path());
    // The trapped instance's keys count only what came after the trap; the other's, all.
    let got = probe_counts(&dir.path().join("out.ndjson"));
    assert_eq!(got.len(), 8, "{got:?}");
    let trapped = got["k0"].1;
    let (mut lost, mut kept) = (0, 0);
    for (k, &(n, instance)) in &got {
        if instance == trapped {
            assert_eq!(n, 250, "{k}: its instance trapped after 250");
            lost += 1;
        } else {
            assert_eq!(n, 500, "{k}");
            kept += 1;
        }
    }
    assert!(lost > 0 && kept > 0, "{got:?}");
    assert_eq!(s["created"], 8, "{s}");
    assert_eq!(stats.written(), 8);
}

#[test]
fn a_trap_in_flush_loses_only_its_instances_windows_and_says_so() {
    let dir = temp_dir();
    let mut input = keyed(0, 2_000);
    input.extend_from_slice(b"{\"k\":\"k0\",\"trap\":\"flush\"}\n");
    input.extend_from_slice(&keyed(2_000, 4_000));
    let out = run_config(dir.path(), &probe_config(""), &input);
    let stats = out.ok_stats();
    assert!(
        out.stderr
            .contains("the aggregate's flush failed: the plugin trapped")
            && out.stderr.contains("the windows it held open are lost"),
        "{}",
        out.stderr
    );
    let s = stats.component("stages.probe");
    assert_eq!(s["plugin_state_losses"], 1, "{s}");
    assert_eq!(s["plugin_traps"], 1, "{s}");
    assert_eq!(s["absorbed"], 4_001, "{s}");
    assert_eq!(s["dead_lettered"].as_u64().unwrap_or(0), 0, "{s}");
    no_dead_letters(dir.path());
    // Only the other instance's keys come out, each exact; k0's instance emitted nothing.
    let got = probe_counts(&dir.path().join("out.ndjson"));
    assert!(!got.contains_key("k0"), "{got:?}");
    assert!(!got.is_empty() && got.len() < 8, "{got:?}");
    let instance = got.values().next().unwrap().1;
    for (k, &(n, i)) in &got {
        assert_eq!((n, i), (500, instance), "{k}");
    }
    assert_eq!(s["created"], got.len() as u64, "{s}");
    assert_eq!(stats.written(), got.len() as u64);
}

/// `edge-router reload --metrics ADDR` with the token; true on success.
fn reload(metrics: &str, token: &str) -> bool {
    Command::new(bin())
        .args(["reload", "--metrics", metrics])
        .env("EDGE_ROUTER_RELOAD_TOKEN", token)
        .status()
        .unwrap()
        .success()
}

fn scrape(metrics: &str) -> String {
    let out = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "10",
            &format!("http://{metrics}/metrics"),
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Sum of the `n` fields of the output so far.
fn counted(path: &Path) -> u64 {
    lines(&std::fs::read(path).unwrap_or_default())
        .iter()
        .map(|l| {
            serde_json::from_slice::<Value>(l).unwrap()["n"]
                .as_u64()
                .unwrap()
        })
        .sum()
}

#[test]
fn flush_emits_open_state_once_before_a_reload_switches_and_again_at_shutdown() {
    let dir = temp_dir();
    let metrics = format!("127.0.0.1:{}", free_port());
    let token = "reload-t0ken";
    let config = |generation: u32| {
        format!(
            "[sources.in]\nkind = \"stdin\"\n\n[[stages]]\nname = \"probe\"\nkind = \"aggregate\"\n\
             plugin = {:?}\nkey = \"k\"\nconfig = {{ generation = {generation} }}\n\n\
             [sinks.out]\nkind = \"file\"\npath = {:?}\n\n\
             [metrics]\naddress = \"{metrics}\"\nreload_token = \"{token}\"\n",
            plugin("aggregate-probe").display().to_string(),
            dir.path().join("out.ndjson").display().to_string(),
        )
    };
    let cfg = dir.path().join("edge-router.toml");
    std::fs::write(&cfg, config(1)).unwrap();
    let (router, mut stdin) = Running::start(
        dir.path(),
        &["run", "-c", cfg.to_str().unwrap(), "--stats=json"],
    );
    let batch = |from: u64, to: u64| -> Vec<u8> {
        (from..to)
            .flat_map(|i| format!("{{\"k\":\"k{}\",\"i\":{i}}}\n", i % 5).into_bytes())
            .collect()
    };
    stdin.write_all(&batch(0, 1_000)).unwrap();
    stdin.flush().unwrap();
    // Wait until the stage has taken all 1,000 in (nothing is written before a flush).
    let deadline = Instant::now() + Duration::from_secs(20);
    while !scrape(&metrics).lines().any(|l| {
        l.starts_with("edge_router_component_records_in_total")
            && l.contains("stages.probe")
            && l.ends_with(" 1000")
    }) {
        assert!(
            Instant::now() < deadline,
            "the stage never took 1000 records"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(counted(&dir.path().join("out.ndjson")), 0);
    std::fs::write(&cfg, config(2)).unwrap();
    assert!(reload(&metrics, token));
    // The old instances' counts came out once, before the new stages took over (the sink
    // writes them a moment later).
    let deadline = Instant::now() + Duration::from_secs(20);
    while counted(&dir.path().join("out.ndjson")) < 1_000 {
        assert!(Instant::now() < deadline, "the reload flushed nothing");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(counted(&dir.path().join("out.ndjson")), 1_000);
    let first = lines(&read(&dir.path().join("out.ndjson"))).len();
    assert_eq!(first, 5);
    stdin.write_all(&batch(1_000, 1_500)).unwrap();
    drop(stdin);
    let out = router.wait(Duration::from_secs(30));
    let stats = out.ok_stats();
    // At shutdown the new instances' counts came out once.
    assert_eq!(counted(&dir.path().join("out.ndjson")), 1_500);
    assert_eq!(lines(&read(&dir.path().join("out.ndjson"))).len(), 10);
    let s = stats.component("stages.probe");
    assert_eq!(
        (s["absorbed"].as_u64(), s["created"].as_u64()),
        (Some(1_500), Some(10))
    );
}

/// With `ack = "delivered"`, records an aggregate absorbed count as done: the client is answered
/// while the state that holds them is still open (it is emitted only at shutdown here).
#[test]
fn ack_delivered_answers_once_records_are_absorbed() {
    let dir = temp_dir();
    let port = free_port();
    let config = format!(
        "[sources.web]\nkind = \"http\"\naddress = \"127.0.0.1:{port}\"\nack = \"delivered\"\n\n\
         [[stages]]\nname = \"probe\"\nkind = \"aggregate\"\nplugin = {:?}\nkey = \"k\"\n\n\
         [sinks.out]\nkind = \"file\"\npath = \"out.ndjson\"\n",
        plugin("aggregate-probe").display().to_string()
    );
    std::fs::write(dir.path().join("pipeline.toml"), config).unwrap();
    let (mut run, stdin) =
        Running::start(dir.path(), &["run", "-c", "pipeline.toml", "--stats=json"]);
    drop(stdin);
    common::wait_for_port(port, &mut run.child, "edge-router", Duration::from_secs(20));
    let body: Vec<u8> = (0..100)
        .flat_map(|i| format!("{{\"k\":\"k{}\"}}\n", i % 5).into_bytes())
        .collect();
    std::fs::write(dir.path().join("body.ndjson"), &body).unwrap();
    let answer = Command::new("curl")
        .args([
            "-s",
            "-w",
            "\n%{http_code}",
            "--max-time",
            "20",
            "--data-binary",
        ])
        .arg(format!("@{}", dir.path().join("body.ndjson").display()))
        .arg(format!("http://127.0.0.1:{port}/v1/records"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&answer.stdout).into_owned();
    assert!(text.ends_with("\n200"), "{text}");
    assert!(text.contains("\"accepted\":100"), "{text}");
    // Answered before anything was written: the counts come out at shutdown.
    assert_eq!(counted(&dir.path().join("out.ndjson")), 0);
    run.signal("TERM");
    let out = run.wait(Duration::from_secs(30));
    out.ok_stats();
    assert_eq!(counted(&dir.path().join("out.ndjson")), 100);
}
