//! Offline for days, time-compressed: a router on an edge host whose destination is unreachable
//! for longer than its disk buffer can hold, restarted twice meanwhile (once by SIGKILL, once by
//! SIGTERM with the sink still stuck), until the destination comes back.
//!
//! The destination is a file sink writing into a FIFO nobody reads (the sink blocks, as one
//! whose network is down retries: nothing is delivered, the buffer fills). The buffer is small
//! (1 MiB in 32 KiB segments) with `when_full = "drop_oldest"`; clients post over HTTP with
//! `ack = "durable"`, so a 200 means the records are in the buffer. Each run is offered about
//! five times what the buffer holds. When the FIFO gets its reader, every record that was
//! answered 200 arrives exactly once and in order (the newest without a gap), or was counted as
//! dropped: none is lost uncounted. That includes the records the stuck sink had taken from
//! segments drop_oldest then deleted, which were only in its memory at each restart: the buffer
//! lists them and the next run counts them as dropped (README "Durability"). The sink never
//! acknowledges anything before the destination is back (it is stuck opening the FIFO), so
//! nothing is both delivered and counted (the documented overcount is zero here): delivered plus
//! counted is exactly what was accepted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{Running, free_port, temp_dir};

/// Records per HTTP request (one buffer entry each).
const PER: usize = 500;
/// Requests per run of the router.
const REQUESTS_PER_RUN: usize = 80;
/// Runs: killed (SIGKILL), stopped (SIGTERM, sink stuck), then the destination comes back.
const RUNS: usize = 3;
/// The sink's queue (records): what it can hold in memory beside the buffer.
const SINK_QUEUE: usize = 1000;
/// The buffer's size.
const MAX_BYTES: u64 = 1 << 20;

/// The drop_oldest counter of the buffer of sink `out`.
const DROPPED: &str =
    "edge_router_buffer_dropped_total{component=\"buffers.out\",reason=\"drop_oldest\"}";

fn config(d: &Path, port: u16, metrics: &str) -> std::path::PathBuf {
    let path = d.join("router.toml");
    let text = format!(
        "[pipeline]\nshutdown_grace_ms = 300\n\n\
         [sources.web]\nkind = \"http\"\naddress = \"127.0.0.1:{port}\"\nack = \"durable\"\n\n\
         [sinks.out]\nkind = \"file\"\npath = \"{fifo}\"\nqueue_records_max = {SINK_QUEUE}\n\
         buffer = {{ dir = \"{buffer}\", max_bytes = {MAX_BYTES}, segment_bytes = \"32KiB\", \
         when_full = \"drop_oldest\" }}\n\n\
         [dead_letter]\npath = \"{dead}\"\n\n[metrics]\naddress = \"{metrics}\"\n",
        fifo = d.join("out.fifo").display(),
        buffer = d.join("buffer").display(),
        dead = d.join("dead.ndjson").display(),
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// POSTs `body` (a file) and returns the status code (0: no answer).
fn post(url: &str, body: &Path) -> u16 {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "30",
        ])
        .arg("--data-binary")
        .arg(format!("@{}", body.display()))
        .arg(url)
        .output()
        .expect("running curl");
    String::from_utf8_lossy(&out.stdout).parse().unwrap_or(0)
}

/// Starts a router on `config` and waits until its HTTP source answers `/health`.
fn start(d: &Path, config: &Path, port: u16) -> Running {
    let (mut router, stdin) =
        Running::start(d, &["run", "-c", config.to_str().unwrap(), "--stats=json"]);
    drop(stdin);
    router.wait_for_stderr("listening on http://", Duration::from_secs(60));
    common::wait_for("the HTTP source to answer", Duration::from_secs(60), || {
        Command::new("curl")
            .args(["-sf", "--max-time", "5"])
            .arg(format!("http://127.0.0.1:{port}/health"))
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success()
    });
    router
}

/// Posts requests `range` (each PER records of `bodies`), asserting each is answered 200; then
/// returns the run's drop_oldest count, final once every post is answered (drops happen only
/// when a batch is appended).
fn offer(
    d: &Path,
    port: u16,
    metrics: &str,
    bodies: &[Vec<u8>],
    range: std::ops::Range<usize>,
) -> u64 {
    let url = format!("http://127.0.0.1:{port}/v1/records");
    let body = d.join("body.ndjson");
    for i in range {
        std::fs::write(&body, &bodies[i]).unwrap();
        assert_eq!(post(&url, &body), 200, "request {i} not accepted");
    }
    common::metric(&common::metrics(metrics), DROPPED)
}

#[test]
fn offline_for_days_with_two_restarts_delivers_every_record_not_counted_dropped_once() {
    let total = RUNS * REQUESTS_PER_RUN * PER;
    let dir = temp_dir();
    let d = dir.path();
    common::mkfifo(&d.join("out.fifo"));
    let data = common::numbered_sensor(total);
    assert!(
        data.len() as u64 / RUNS as u64 >= 4 * MAX_BYTES,
        "each run must offer several times the buffer"
    );
    let bodies: Vec<Vec<u8>> = common::lines(&data)
        .chunks(PER)
        .map(|c| {
            let mut b = c.join(&b'\n');
            b.push(b'\n');
            b
        })
        .collect();
    let port = free_port();
    let metrics = format!("127.0.0.1:{}", free_port());
    let config = config(d, port, &metrics);
    let mut dropped = Vec::new();

    // Run 1: the destination is down; the buffer fills and drops its oldest; then SIGKILL.
    let router = start(d, &config, port);
    dropped.push(offer(d, port, &metrics, &bodies, 0..REQUESTS_PER_RUN));
    let killed = router.kill();
    assert_eq!(killed.status.code(), None, "not killed: {}", killed.stderr);

    // Run 2: still down; what run 1 left is recovered, more arrives, then SIGTERM: the sink is
    // stuck, so the grace runs out (exit 3) with the records still in the buffer.
    let router = start(d, &config, port);
    dropped.push(offer(
        d,
        port,
        &metrics,
        &bodies,
        REQUESTS_PER_RUN..2 * REQUESTS_PER_RUN,
    ));
    router.signal("TERM");
    let stopped = router.wait(Duration::from_secs(60));
    assert_eq!(stopped.code(), 3, "{}", stopped.stderr);
    let stats = stopped.stats();
    let stderr2 = stopped.stderr.clone();
    assert!(stats.total("recovered") > 0, "run 2 recovered nothing");
    assert_eq!(
        stats.component("buffers.out")["dropped_oldest"].as_u64(),
        Some(dropped[1])
    );

    // Run 3: more arrives while down, then the destination comes back.
    let router = start(d, &config, port);
    dropped.push(offer(
        d,
        port,
        &metrics,
        &bodies,
        2 * REQUESTS_PER_RUN..RUNS * REQUESTS_PER_RUN,
    ));
    let lines = Arc::new(AtomicU64::new(0));
    let reader = std::thread::spawn({
        let fifo = d.join("out.fifo");
        let lines = lines.clone();
        move || {
            let mut f = std::fs::File::open(fifo).unwrap();
            let mut all = Vec::new();
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = f.read(&mut buf).unwrap();
                if n == 0 {
                    return all;
                }
                all.extend_from_slice(&buf[..n]);
                lines.fetch_add(
                    buf[..n].iter().filter(|&&b| b == b'\n').count() as u64,
                    Ordering::Relaxed,
                );
            }
        }
    });
    let counted: u64 = dropped.iter().sum();
    let want = total as u64 - counted;
    // Everything this run holds written (what earlier runs left is recovered into it); the count
    // is compared below, so a record lost without being counted fails there, not by a timeout.
    common::wait_for(
        "every record the last run holds delivered",
        Duration::from_secs(120),
        || {
            let m = common::metrics(&metrics);
            common::metric(&m, "edge_router_records_in_flight") == 0
                && common::metric(&m, "edge_router_records_written_total")
                    == lines.load(Ordering::Relaxed)
        },
    );
    router.signal("TERM");
    let last = router.wait(Duration::from_secs(60));
    let written = reader.join().unwrap();
    let stats = last.ok_stats(); // exit 0 and the accounting invariant of the last run
    assert!(
        !d.join("buffer").join("with-sink").exists(),
        "entries still listed as left with the sink after a clean stop"
    );
    assert!(stats.total("recovered") > 0, "run 3 recovered nothing");
    assert_eq!(stats.dead_lettered(), 0);

    let seqs: Vec<u64> = std::str::from_utf8(&written)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    eprintln!(
        "{total} accepted in {RUNS} runs, dropped (counted) per run {dropped:?}, {} delivered",
        seqs.len()
    );
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "delivered out of order or twice"
    );
    // What the sink had taken from segments drop_oldest then deleted (their only copy was in
    // its memory) and lost at a restart is counted by the next run, in its drop_oldest count:
    // nothing is lost uncounted. Nothing was acknowledged before the restarts, so nothing is
    // counted that was delivered: the sum is exact.
    assert_eq!(
        seqs.len() as u64,
        want,
        "{} delivered, {counted} counted dropped ({dropped:?}), {total} accepted: {} lost \
         uncounted",
        seqs.len(),
        want as i64 - seqs.len() as i64
    );
    assert!(
        dropped.iter().all(|&n| n > 0),
        "every run must have dropped: {dropped:?}"
    );
    // The restarts did take records from the sink's memory (each run starts with the sink
    // holding its queue), and the later runs counted them: the log lines say how many.
    for (run, out) in [(2, &stderr2), (3, &last.stderr)] {
        assert!(
            out.contains("that the sink held from deleted segments were not acknowledged"),
            "run {run} did not count what the sink held at the restart:\n{out}"
        );
    }
    assert_eq!(seqs.last(), Some(&(total as u64 - 1)), "the newest record");
    let tail = common::newest_run(&seqs, total as u64);
    let avg = (data.len() / total) as u64;
    assert!(
        tail as u64 * avg >= MAX_BYTES / 2,
        "only the newest {tail} records arrived without a gap"
    );
}
