//! The Firehose sink against moto's server (Firehose and S3 on one local endpoint), read back
//! from S3 with boto3: 100,000 records arrive as exactly the input lines with packing on and off;
//! packing cuts Firehose records and the billed-bytes estimate; partial failures and failed calls
//! injected by a proxy are retried without loss or duplicates; a missing delivery stream is fatal
//! and dead-letters everything; an oversized record is dead-lettered with its reason; an egress cap
//! (`max_bytes_per_sec`) holds the sink to its rate without loss.
//!
//! Each test starts its own `moto_server` on a free 127.0.0.1 port. They need
//! `EDGE_ROUTER_FIREHOSE_PYTHON` (a venv's python with boto3, beside its `moto_server`):
//! `tests/run.sh` sets it, or `eval "$(tests/firehose/setup.sh)"`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use common::aws::{
    FaultProxy, Moto, assert_dead_letters, assert_every_record_dead_lettered, moto_python, router,
    run_example_config, run_sink, tool,
};
use common::{Output, Running, Stats, free_port, temp_dir};
use serde_json::Value;

/// The Firehose side of moto's server: delivery streams and the S3 objects they write.
impl Moto {
    /// A fresh server with a DirectPut delivery stream `stream` into the bucket `bucket`.
    fn with_stream(stream: &str) -> Moto {
        let m = Moto::start();
        m.create(stream, "bucket");
        m
    }

    /// A bucket and a DirectPut delivery stream into it.
    fn create(&self, stream: &str, bucket: &str) {
        let args = ["create", &self.endpoint(), stream, bucket];
        tool(&moto_python(), "firehose/firehose_tool.py", &args);
    }

    /// The bucket's objects, in key order.
    fn objects(&self, bucket: &str) -> Vec<Vec<u8>> {
        let args = ["read", &self.endpoint(), bucket];
        let out = tool(&moto_python(), "firehose/firehose_tool.py", &args);
        let b64 = base64::engine::general_purpose::STANDARD;
        out.split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| {
                let v: Value = serde_json::from_slice(l).unwrap();
                b64.decode(v["data"].as_str().unwrap()).unwrap()
            })
            .collect()
    }

    /// The sink's URI for delivery stream `stream` here, with `options`.
    fn sink(&self, stream: &str, options: &str) -> String {
        uri(stream, &self.endpoint(), options)
    }
}

fn uri(stream: &str, endpoint: &str, options: &str) -> String {
    format!("firehose://{stream}?region=us-east-1&endpoint={endpoint}&{options}")
}

fn counter(stats: &Stats, key: &str) -> u64 {
    stats.component("sinks.firehose")[key].as_u64().unwrap_or(0)
}

/// The lines of every object; each object must end with a delimiter (records are never split).
fn lines_of(objects: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for o in objects {
        assert!(o.ends_with(b"\n"), "an object ends inside a record");
        out.extend(common::lines(o).into_iter().map(<[u8]>::to_vec));
    }
    out
}

/// Asserts that the lines read back are exactly the input lines (as a multiset; in order when
/// `ordered`).
fn assert_exactly_once(got: &[Vec<u8>], input: &[u8], ordered: bool) {
    let want: Vec<Vec<u8>> = common::lines(input)
        .into_iter()
        .map(<[u8]>::to_vec)
        .collect();
    assert_eq!(got.len(), want.len(), "lines read back vs input lines");
    if ordered {
        assert!(got == want.as_slice(), "lines out of order or changed");
        return;
    }
    let (mut g, mut w) = (got.to_vec(), want);
    g.sort_unstable();
    w.sort_unstable();
    assert!(g == w, "the lines read back are not the input lines");
}

fn report(what: &str, stats: &Stats, records: usize) {
    let ms = stats.0["elapsed_ms"].as_u64().unwrap().max(1);
    eprintln!(
        "{what}: {records} records in {ms} ms ({:.0} records/s), {} PutRecordBatch calls, {} Firehose records ({:.5} per user record), {} retries",
        records as f64 * 1000.0 / ms as f64,
        counter(stats, "firehose_requests"),
        counter(stats, "firehose_records"),
        counter(stats, "firehose_records") as f64 / records.max(1) as f64,
        counter(stats, "firehose_retries"),
    );
}

/// 100,000 records, packed (the default) and one per Firehose record: the S3 objects hold exactly
/// the input lines; packed, a handful of Firehose records carry them all.
#[test]
fn a_hundred_thousand_records_arrive_exactly_once_packed_and_unpacked() {
    let input = common::sensor(100_000);
    for (pack, options) in [(true, "pack=true"), (false, "pack=false&linger_ms=20")] {
        let m = Moto::with_stream("events");
        let dir = temp_dir();
        let sink = uri("events", &m.endpoint(), options);
        let out = run_sink(dir.path(), &sink, &[], &input);
        let stats = out.ok_stats();
        stats.assert_invariant();
        report(if pack { "packed" } else { "unpacked" }, &stats, 100_000);
        assert_eq!(stats.written(), 100_000);
        assert_eq!(stats.dead_lettered(), 0);
        let objects = m.objects("bucket");
        assert_exactly_once(&lines_of(&objects), &input, false);
        let records = counter(&stats, "firehose_records");
        if pack {
            // ~11 MB of lines in packs of at most 900 KiB.
            let bytes = input.len() as u64;
            assert!(
                records <= bytes / (800 * 1024) + 2,
                "{records} Firehose records"
            );
            // Billed at 5 KB per record: packing 110-byte records cuts the bill 40 times or more.
            let billed = counter(&stats, "firehose_billed_bytes");
            let unpacked = counter(&stats, "firehose_billed_bytes_unpacked");
            assert_eq!(unpacked, 100_000 * 5120);
            assert!(
                billed * 40 <= unpacked,
                "billed {billed}, unpacked {unpacked}"
            );
        } else {
            assert_eq!(records, 100_000);
            assert!(counter(&stats, "firehose_requests") >= 200);
            assert!(objects.len() >= 200);
        }
    }
}

/// One call at a time and no failures: the lines arrive in input order.
#[test]
fn order_is_kept_with_one_call_in_flight() {
    let m = Moto::with_stream("ordered");
    let input = common::sensor(20_000);
    let dir = temp_dir();
    let sink = m.sink(
        "ordered",
        "max_in_flight=1&pack_bytes_max=64KiB&request_entries_max=3&delimiter=%0A",
    );
    let out = run_sink(dir.path(), &sink, &[], &input);
    out.ok_stats().assert_invariant();
    // Object keys carry a timestamp to the second and a random suffix, so objects of one second
    // are not in key order; lines within each object are, and the multiset is exact.
    let objects = m.objects("bucket");
    assert!(objects.len() > 10);
    let lines = lines_of(&objects);
    assert_exactly_once(&lines, &input, false);
    let pos: std::collections::HashMap<&[u8], usize> = common::lines(&input)
        .into_iter()
        .enumerate()
        .map(|(i, l)| (l, i))
        .collect();
    for o in &objects {
        let idx: Vec<usize> = common::lines(o).iter().map(|l| pos[l]).collect();
        assert!(
            idx.windows(2).all(|w| w[0] < w[1]),
            "lines out of order in an object"
        );
    }
}

/// A proxy fails 10% of the entries of each PutRecordBatch and 10% of whole calls (throttled or
/// HTTP 500): only failed entries are retried, and every line arrives exactly once.
#[test]
fn partial_failures_are_retried_without_loss_or_duplicates() {
    let m = Moto::with_stream("faulty");
    let proxy = FaultProxy::start(m.port, 10, 5, 5);
    let input = common::sensor(30_000);
    let dir = temp_dir();
    for options in ["pack=true&pack_bytes_max=16KiB", "pack=false"] {
        let sink = uri("faulty", &proxy.endpoint(), options);
        let out = run_sink(dir.path(), &sink, &[], &input);
        let stats = out.ok_stats();
        stats.assert_invariant();
        report(options, &stats, 30_000);
        assert_eq!(stats.written(), 30_000);
        assert!(counter(&stats, "firehose_retries") > 0);
    }
    let counts = proxy.stop();
    assert!(counts["failed_entries"].as_u64().unwrap() > 0, "{counts}");
    assert!(counts["failed_calls"].as_u64().unwrap() > 0, "{counts}");
    let mut twice = input.clone();
    twice.extend_from_slice(&input);
    assert_exactly_once(&lines_of(&m.objects("bucket")), &twice, false);
}

/// `compression=gzip`: each Firehose record is a gzip member, so an S3 object is a gzip file of
/// the lines.
#[test]
fn gzip_records_make_gzip_objects() {
    use std::io::Read as _;
    let m = Moto::with_stream("zipped");
    let input = common::sensor(20_000);
    let dir = temp_dir();
    let sink = m.sink("zipped", "compression=gzip&pack_bytes_max=256KiB");
    let out = run_sink(dir.path(), &sink, &[], &input);
    let stats = out.ok_stats();
    stats.assert_invariant();
    assert!(counter(&stats, "firehose_bytes") * 3 < input.len() as u64);
    let mut lines = Vec::new();
    for o in m.objects("bucket") {
        let mut text = Vec::new();
        flate2::read::MultiGzDecoder::new(&o[..])
            .read_to_end(&mut text)
            .unwrap();
        lines.extend(lines_of(&[text]));
    }
    assert_exactly_once(&lines, &input, false);
}

/// Runs the router over a pipe and writes `parts` one after another, calling `between(i,
/// metrics)` after part `i` (all but the last; `metrics` is the address of the router's metrics
/// endpoint); returns the output.
fn run_in_parts(
    dir: &Path,
    sink: &str,
    parts: &[&[u8]],
    mut between: impl FnMut(usize, &str),
) -> Output {
    let metrics = format!("127.0.0.1:{}", free_port());
    let args = ["run", "--sink", sink, "--stats=json", "--metrics", &metrics];
    let (running, mut stdin) = Running::spawn(router(dir, &args, &[]));
    for (i, part) in parts.iter().enumerate() {
        stdin.write_all(part).unwrap();
        stdin.flush().unwrap();
        if i + 1 < parts.len() {
            between(i, &metrics);
        }
    }
    drop(stdin);
    running.wait(common::CHILD_TIMEOUT)
}

/// Waits (at most 60 s) until the sink has retried a call, as the router's metrics endpoint at
/// `metrics` shows it.
#[track_caller]
fn wait_for_a_retry(metrics: &str) {
    let series =
        "edge_router_component_firehose_retries_total{component=\"sinks.firehose\",kind=\"sink\"}";
    common::wait_for("a retried call", Duration::from_secs(60), || {
        common::metric(&common::metrics(metrics), series) > 0
    });
}

/// The endpoint goes away mid-stream (connections refused) and comes back on the same port: the
/// sink retries through the outage and every line arrives exactly once (nothing was in flight
/// when it went away, and a refused call never reached the server).
#[test]
fn an_endpoint_stopped_and_restarted_mid_stream_loses_nothing() {
    let m = Moto::with_stream("outage");
    let port = free_port();
    let mut proxy = Some(FaultProxy::start_on(port, m.port, 0, 0, 0));
    let input = common::sensor(15_000);
    let a = common::first_lines(&input, 5_000).len();
    let b = common::first_lines(&input, 10_000).len();
    let dir = temp_dir();
    let sink = uri(
        "outage",
        &format!("http://127.0.0.1:{port}"),
        // A retry budget no outage here exhausts (this test is about losing nothing, not about
        // giving up).
        "linger_ms=10&pack_bytes_max=32KiB&retry_backoff_ms=50&retry_backoff_max_ms=500\
         &retry_attempts_max=1000&retry_ttl_ms=300000",
    );
    let out = run_in_parts(
        dir.path(),
        &sink,
        &[&input[..a], &input[a..b], &input[b..]],
        |i, metrics| {
            if i == 0 {
                // Everything so far delivered, then the endpoint goes away.
                common::wait_for("the first part in S3", Duration::from_secs(30), || {
                    lines_of(&m.objects("bucket")).len() == 5_000
                });
                proxy.take().unwrap().stop();
            } else {
                // The second part meets a dead endpoint until a call has been refused and retried.
                wait_for_a_retry(metrics);
                proxy = Some(FaultProxy::start_on(port, m.port, 0, 0, 0));
            }
        },
    );
    let stats = out.ok_stats();
    stats.assert_invariant();
    assert_eq!(stats.written(), 15_000);
    assert!(counter(&stats, "firehose_retries") > 0, "{}", out.stderr);
    assert_exactly_once(&lines_of(&m.objects("bucket")), &input, false);
}

/// The server stops answering (SIGSTOP) mid-stream and resumes (SIGCONT): calls time out and are
/// retried. A timed-out call may still be processed when the server resumes, so this is
/// at-least-once: every line arrives, and nothing else.
#[test]
fn a_server_paused_mid_stream_delivers_every_line() {
    let m = Moto::with_stream("paused");
    let input = common::sensor(10_000);
    let a = common::first_lines(&input, 5_000).len();
    let dir = temp_dir();
    let sink = m.sink("paused", "linger_ms=10&pack_bytes_max=32KiB&request_timeout_ms=500&retry_backoff_ms=50&retry_backoff_max_ms=500");
    let pid = m.proc.0.id().to_string();
    let out = run_in_parts(
        dir.path(),
        &sink,
        &[&input[..a], &input[a..]],
        |_, metrics| {
            common::wait_for("the first part in S3", Duration::from_secs(30), || {
                lines_of(&m.objects("bucket")).len() == 5_000
            });
            // Paused while the second part goes in; resumed once a call has timed out and been
            // retried.
            Command::new("kill").args(["-STOP", &pid]).status().unwrap();
            let (pid, metrics) = (pid.clone(), metrics.to_owned());
            std::thread::spawn(move || {
                // Resumed even if the wait fails, so the router can finish and the test report.
                let waited = std::panic::catch_unwind(|| wait_for_a_retry(&metrics));
                Command::new("kill").args(["-CONT", &pid]).status().unwrap();
                waited.unwrap();
            });
        },
    );
    let stats = out.ok_stats();
    stats.assert_invariant();
    assert_eq!(stats.written(), 10_000);
    assert!(counter(&stats, "firehose_retries") > 0, "{}", out.stderr);
    let mut got = lines_of(&m.objects("bucket"));
    assert!(got.len() >= 10_000);
    got.sort_unstable();
    got.dedup();
    let mut want: Vec<Vec<u8>> = common::lines(&input)
        .into_iter()
        .map(<[u8]>::to_vec)
        .collect();
    want.sort_unstable();
    want.dedup();
    assert!(got == want, "the lines read back are not the input lines");
}

/// configs/firehose.toml, pointed at moto by `AWS_ENDPOINT_URL`: the JSON lines arrive in S3
/// packed into a few Firehose records, and a line that is not JSON goes to the dead-letter file.
#[test]
fn the_example_config_runs_against_moto() {
    let m = Moto::start();
    m.create("edge-telemetry-to-s3", "telemetry");
    let input = common::sensor_few_devices(2_000);
    let mut with_junk = input.clone();
    with_junk.extend_from_slice(b"not json at all\n");
    let dir = temp_dir();
    let out = run_example_config(dir.path(), "firehose.toml", &m.endpoint(), &with_junk);
    let stats = out.ok_stats();
    stats.assert_invariant();
    assert_eq!(stats.written(), 2_000, "{}", out.stderr);
    assert_eq!(stats.dead_lettered(), 1, "{}", out.stderr);
    let sink = stats.component("sinks.delivery");
    let records = sink["firehose_records"].as_u64().unwrap();
    assert!((1..=2).contains(&records), "{records} Firehose records");
    let dead = dir.path().join("edge-router-out/dead-letter.ndjson");
    assert_dead_letters(&dead, &["invalid JSON"]);
    assert_exactly_once(&lines_of(&m.objects("telemetry")), &input, false);
}

/// A missing delivery stream: the sink fails with a message naming it, and every record is
/// dead-lettered with that message.
#[test]
fn a_missing_delivery_stream_is_fatal_and_every_record_is_dead_lettered() {
    let m = Moto::start();
    let input = common::sensor(3_000);
    let dir = temp_dir();
    let sink = m.sink("nope", "");
    let out = run_sink(dir.path(), &sink, &["--dead-letter", "dead.ndjson"], &input);
    assert_every_record_dead_lettered(
        &out,
        &dir.path().join("dead.ndjson"),
        3_000,
        "sink `firehose` failed: firehose delivery stream `nope` not found in region us-east-1",
    );
}

/// A record over Firehose's 1000 KiB limit is dead-lettered with the reason; its neighbours arrive.
#[test]
fn an_oversized_record_is_dead_lettered() {
    let m = Moto::with_stream("big");
    let mut input = b"{\"a\":1}\n".to_vec();
    input.extend_from_slice(format!("{{\"x\":\"{}\"}}\n", "y".repeat(1_030_000)).as_bytes());
    input.extend_from_slice(b"{\"a\":2}\n");
    let dir = temp_dir();
    let sink = m.sink("big", "");
    let out = run_sink(dir.path(), &sink, &["--dead-letter", "dead.ndjson"], &input);
    let stats = out.stats();
    stats.assert_invariant();
    assert_eq!(stats.written(), 2, "{}", out.stderr);
    let limit = "over Firehose's record limit of 1024000 bytes";
    assert_dead_letters(&dir.path().join("dead.ndjson"), &[limit]);
    let lines = lines_of(&m.objects("bucket"));
    assert_eq!(lines, vec![b"{\"a\":1}".to_vec(), b"{\"a\":2}".to_vec()]);
}

/// `max_bytes_per_sec` on the Firehose sink: capped at 256 KiB/s, over 10 s of a long backlog it
/// sends within 10% of the cap (payload bytes, from the sink's `egress_bytes_total`), holds
/// requests back (`egress_paced_total`), and every line still arrives in S3 exactly once.
#[test]
fn the_egress_cap_holds_the_sink_to_its_rate_and_loses_nothing() {
    const CAP: f64 = 256.0 * 1024.0;
    let m = Moto::with_stream("capped");
    // ~3.3 MB: ~13 s at the cap, so the 10 s window sits inside the backlog.
    let input = common::sensor(30_000);
    let dir = temp_dir();
    // Small packs and calls, so one call is a small part of a second's budget.
    let sink = m.sink(
        "capped",
        "pack_bytes_max=8KiB&request_bytes_max=16KiB&linger_ms=10&max_bytes_per_sec=256KiB",
    );
    let metrics = format!("127.0.0.1:{}", free_port());
    let args = [
        "run",
        "--sink",
        &sink,
        "--stats=json",
        "--metrics",
        &metrics,
    ];
    let (running, mut stdin) = Running::spawn(router(dir.path(), &args, &[]));
    stdin.write_all(&input).unwrap();
    drop(stdin);
    let series = |name: &str| {
        format!("edge_router_component_{name}_total{{component=\"sinks.firehose\",kind=\"sink\"}}")
    };
    let egress =
        |m: &std::collections::HashMap<String, f64>| common::metric(m, &series("egress_bytes"));
    let mut first = std::collections::HashMap::new();
    common::wait_for("the sink sending", Duration::from_secs(60), || {
        first = common::metrics(&metrics);
        egress(&first) > 100_000
    });
    let t1 = std::time::Instant::now();
    let b1 = egress(&first);
    // The scenario is a window of time: the rate is what was sent over it.
    std::thread::sleep(Duration::from_secs(10));
    let second = common::metrics(&metrics);
    let elapsed = t1.elapsed().as_secs_f64();
    let rate = (egress(&second) - b1) as f64 / elapsed;
    eprintln!("firehose egress: {rate:.0} bytes/s over {elapsed:.2} s (cap {CAP})");
    assert!(
        (rate - CAP).abs() <= CAP * 0.10,
        "{rate:.0} bytes/s over {elapsed:.2} s, cap {CAP}"
    );
    assert!(common::metric(&second, &series("egress_paced")) > 0);
    let out = running.wait(common::CHILD_TIMEOUT);
    let stats = out.ok_stats();
    assert_eq!(stats.written(), 30_000, "{}", out.stderr);
    assert_exactly_once(&lines_of(&m.objects("bucket")), &input, false);
}
