//! Durability: sinks with a disk buffer, sources that acknowledge only durable records, and the
//! real binary killed with SIGKILL. Records carry a sequence number (`"seq"`, put in front of
//! the generator's sensor records), so the outputs can be checked for every record, exactly
//! which are missing, and how many came twice.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Running, bin, command, free_port, temp_dir};

/// How many times each sequence number occurs in the file(s), and how many lines are torn
/// records: the start of a record cut short by a kill in the middle of a write (JSON that ends
/// early; the file sink ends such a line when it starts again). Any other bad line fails.
fn seq_counts(paths: &[PathBuf]) -> (HashMap<u64, u32>, usize) {
    let mut counts = HashMap::new();
    let mut torn = 0;
    for p in paths {
        let text = std::fs::read_to_string(p).unwrap_or_default();
        for line in text.lines() {
            match serde_json::from_str::<serde_json::Value>(line) {
                Ok(v) => *counts.entry(v["seq"].as_u64().unwrap()).or_insert(0) += 1,
                Err(e) if e.is_eof() && line.starts_with("{\"seq\":") => torn += 1,
                Err(e) => panic!("{}: bad line {line:?}: {e}", p.display()),
            }
        }
    }
    (counts, torn)
}

fn line_count(path: &Path) -> usize {
    std::fs::read(path).map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count())
}

/// Waits (at most 60 s) until `path` has at least `lines` lines.
#[track_caller]
fn wait_for_lines(path: &Path, lines: usize) {
    common::wait_for(
        &format!("{} to reach {lines} lines", path.display()),
        Duration::from_secs(60),
        || line_count(path) >= lines,
    );
}

/// What a QUIC source logs once it accepts connections.
const QUIC_LISTENING: &str = "listening on quic://";

/// A stdin source table.
const STDIN: &str = "[sources.in]\nkind = \"stdin\"";

/// An HTTP source table on `port` answering by `ack`.
fn http_source(port: u16, ack: &str) -> String {
    format!("[sources.web]\nkind = \"http\"\naddress = \"127.0.0.1:{port}\"\nack = \"{ack}\"")
}

/// The `buffer` key of a sink buffered in `d/buffer`, with `extra` settings (`, key = value`).
fn buffer_line(d: &Path, extra: &str) -> String {
    format!(
        "buffer = {{ dir = \"{}\"{extra} }}",
        d.join("buffer").display()
    )
}

/// Writes `d/router.toml`: `source` (a `[sources.NAME]` table), the file sink `out` writing to
/// `path` with `sink` (more of its keys, e.g. its `buffer`), dead letters in `d/dead.ndjson`.
fn write_config(d: &Path, source: &str, path: &Path, sink: &str) -> PathBuf {
    let config = d.join("router.toml");
    let text = format!(
        "{source}\n\n[sinks.out]\nkind = \"file\"\npath = \"{}\"\n{sink}\n\n[dead_letter]\npath = \"{}\"\n",
        path.display(),
        d.join("dead.ndjson").display()
    );
    std::fs::write(&config, text).unwrap();
    config
}

fn start_router(dir: &Path, config: &Path) -> Child {
    command(
        dir,
        &["run", "-c", config.to_str().unwrap(), "--stats=json"],
    )
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::from(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("router.log"))
            .unwrap(),
    ))
    .spawn()
    .expect("starting edge-router")
}

#[test]
fn kill_9_while_a_million_records_flow_over_quic_loses_none() {
    const N: u64 = 1_000_000;
    let dir = temp_dir();
    let d = dir.path();
    let data = d.join("data.ndjson");
    std::fs::write(&data, common::numbered_sensor(N as usize)).unwrap();
    let port = free_port();
    let out = d.join("out.ndjson");
    let config = write_config(
        d,
        &format!(
            "[sources.q]\nkind = \"quic\"\naddress = \"127.0.0.1:{port}\"\nself_signed = true\nack = \"durable\""
        ),
        &out,
        &format!("queue_records_max = 5000\n{}", buffer_line(d, "")),
    );
    let log = d.join("router.log");
    let mut router = start_router(d, &config);
    let up = Duration::from_secs(60);
    common::wait_for_log(&log, QUIC_LISTENING, 1, &mut router, up);
    let mut send = Command::new(bin())
        .args([
            "send",
            &format!("quic://127.0.0.1:{port}"),
            "--insecure",
            "--give-up-after-secs",
            "60",
            "--max-rate",
            "250000",
            "--stats",
        ])
        .stdin(std::fs::File::open(&data).unwrap())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let send_err = common::drain(send.stderr.take().unwrap());
    // Kill points: after 100k lines, 250k more, and as soon as the third run listens (it takes
    // up its buffer first: the kill lands during recovery or soon after).
    let mut kills = 0;
    for more in [Some(100_000usize), Some(250_000), None] {
        match more {
            Some(more) => wait_for_lines(&out, line_count(&out) + more),
            None => common::wait_for_log(&log, QUIC_LISTENING, kills as usize + 1, &mut router, up),
        }
        router.kill().unwrap();
        router.wait().unwrap();
        kills += 1;
        router = start_router(d, &config);
    }
    let status = common::wait_with_timeout(&mut send, Duration::from_secs(120));
    let send_err = String::from_utf8_lossy(&send_err.join().unwrap()).into_owned();
    assert!(status.success(), "send failed: {send_err}");
    // Every record was acknowledged: stop the router cleanly and look at what it wrote.
    let code = common::terminate(&mut router);
    let log = std::fs::read_to_string(d.join("router.log")).unwrap();
    assert!(code.success(), "{log}");

    let (counts, torn) = seq_counts(&[out]);
    assert!(
        torn as u64 <= kills,
        "{torn} torn lines after {kills} kills"
    );
    let missing: Vec<u64> = (0..N)
        .filter(|s| !counts.contains_key(s))
        .take(10)
        .collect();
    assert!(missing.is_empty(), "missing records, e.g. {missing:?}");
    assert_eq!(counts.len() as u64, N);
    let dups: u64 = counts.values().map(|&c| u64::from(c) - 1).sum();
    // The bound (ARCHITECTURE.md): per crash, the batches `send` had unacknowledged (8 x 1000)
    // plus what the sink had taken from the buffer but not yet acknowledged (its queue of
    // 5000 records and one batch being written) plus the acknowledgements since the ack point
    // was last persisted (one fsync interval, here a few thousand records at most).
    let bound = kills * (8 * 1000 + 5000 + 1000 + 25_000);
    eprintln!("{kills} kills: {dups} duplicates (bound {bound})");
    assert!(dups <= bound, "{dups} duplicates, more than {bound}");
    assert!(
        std::fs::read(d.join("dead.ndjson"))
            .unwrap_or_default()
            .is_empty()
    );
}

#[test]
fn a_damaged_buffer_is_recovered_and_reported_at_start() {
    use edge_router::buffer::{DiskLog, Fsync, LogConfig};

    let dir = temp_dir();
    let d = dir.path();
    let buffer = d.join("buffer");
    // An earlier run left three entries unacknowledged; the last one was torn by a crash.
    {
        let (mut log, _) = DiskLog::open(
            &buffer,
            LogConfig {
                max_bytes: 1 << 30,
                segment_bytes: 16 << 20,
                fsync: Fsync::Always,
            },
        )
        .unwrap();
        for e in 0..3 {
            let recs: Vec<String> = (0..10)
                .map(|i| format!("{{\"seq\":{}}}", e * 10 + i))
                .collect();
            let refs: Vec<&[u8]> = recs.iter().map(String::as_bytes).collect();
            log.append(&refs).unwrap();
        }
        log.close().unwrap();
    }
    let seg = std::fs::read_dir(&buffer)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "seg"))
        .unwrap();
    let len = std::fs::metadata(&seg).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(len - 7).unwrap();
    drop(f);

    let out = d.join("out.ndjson");
    let config = write_config(d, STDIN, &out, &buffer_line(d, ""));
    let (router, stdin) =
        Running::start(d, &["run", "-c", config.to_str().unwrap(), "--stats=json"]);
    drop(stdin);
    let result = router.wait(Duration::from_secs(60));
    assert_eq!(result.code(), 0, "{}", result.stderr);
    // The two whole entries are delivered, in order; the torn one is reported with its file
    // and offset and moved aside.
    let text = std::fs::read_to_string(&out).unwrap();
    let want: String = (0..20).map(|s| format!("{{\"seq\":{s}}}\n")).collect();
    assert_eq!(text, want);
    let seg_name = seg.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        result.stderr.contains(&seg_name) && result.stderr.contains("offset"),
        "{}",
        result.stderr
    );
    let moved = std::fs::read_dir(&buffer)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .any(|n| n.starts_with(&seg_name) && n.contains(".damaged-"));
    assert!(moved, "the bad bytes were not moved aside");
    let stats = result.ok_stats();
    assert_eq!(stats.total("recovered"), 20);
    assert_eq!(stats.written(), 20);
    assert_eq!(stats.in_flight(), 0);

    // A second start delivers nothing again.
    let (router, stdin) =
        Running::start(d, &["run", "-c", config.to_str().unwrap(), "--stats=json"]);
    drop(stdin);
    let again = router.wait(Duration::from_secs(60));
    assert_eq!(again.code(), 0, "{}", again.stderr);
    assert_eq!(again.ok_stats().total("recovered"), 0);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), want);
}

/// A buffered file sink whose file is a FIFO nobody reads yet: the sink blocks, the buffer
/// fills up to `max_bytes`.
fn blocked_sink_config(d: &Path, when_full: &str) -> PathBuf {
    blocked_sink_config_sized(d, when_full, "1MiB", "64KiB")
}

/// [`blocked_sink_config`] with a buffer of `max_bytes` in segments of `segment_bytes`.
fn blocked_sink_config_sized(
    d: &Path,
    when_full: &str,
    max_bytes: &str,
    segment_bytes: &str,
) -> PathBuf {
    let fifo = d.join("out.fifo");
    common::mkfifo(&fifo);
    write_config(
        d,
        STDIN,
        &fifo,
        &format!(
            "queue_records_max = 1000\n{}",
            buffer_line(
                d,
                &format!(
                    ", max_bytes = \"{max_bytes}\", segment_bytes = \"{segment_bytes}\", \
                     when_full = \"{when_full}\""
                ),
            )
        ),
    )
}

#[test]
fn a_full_buffer_drops_newest_counted_and_dead_lettered() {
    let dir = temp_dir();
    let d = dir.path();
    let config = blocked_sink_config(d, "drop_newest");
    let data = common::numbered_sensor(100_000);
    let metrics = format!("127.0.0.1:{}", free_port());
    let (router, mut stdin) = Running::start(
        d,
        &[
            "run",
            "-c",
            config.to_str().unwrap(),
            "--stats=json",
            "--metrics",
            &metrics,
        ],
    );
    // With the sink blocked, all input is read and everything past the buffer's 1 MiB is
    // refused, then the reader of the FIFO lets the rest through.
    std::io::Write::write_all(&mut stdin, &data).unwrap();
    drop(stdin);
    common::wait_for(
        "every record read and some dead-lettered while the sink is blocked",
        Duration::from_secs(60),
        || {
            let m = common::metrics(&metrics);
            common::metric(&m, "edge_router_records_read_total") == 100_000
                && common::metric(&m, "edge_router_records_dead_lettered_total") > 0
        },
    );
    let fifo_out = std::thread::spawn({
        let fifo = d.join("out.fifo");
        move || std::fs::read(fifo).unwrap()
    });
    let result = router.wait(Duration::from_secs(60));
    assert_eq!(result.code(), 0, "{}", result.stderr);
    let written = fifo_out.join().unwrap();
    let stats = result.ok_stats();
    let dropped = stats.component("buffers.out")["dropped"].as_u64().unwrap();
    let lines = written.iter().filter(|&&b| b == b'\n').count() as u64;
    assert!(dropped > 0, "nothing was dropped");
    assert_eq!(lines + stats.dead_lettered(), 100_000);
    assert_eq!(stats.dead_lettered(), dropped);
    assert_eq!(stats.in_flight(), 0);
    let dead = std::fs::read_to_string(d.join("dead.ndjson")).unwrap();
    assert_eq!(dead.lines().count() as u64, dropped);
    assert!(
        dead.contains("disk buffer full"),
        "{}",
        &dead[..dead.len().min(500)]
    );
    assert!(
        result.stderr.contains("disk buffer full"),
        "{}",
        result.stderr
    );
}

/// `when_full = "drop_oldest"`: the sink is down (its file is a FIFO nobody reads), a 2 MiB
/// buffer is offered 50 times its size on stdin. The router never holds the source back; the
/// oldest segments are deleted, counted and logged with their time range. When the sink comes
/// back, what it had taken and then the newest records arrive, in order, none twice; the count
/// dropped is exact (offered - delivered) and the accounting invariant holds.
#[test]
fn a_full_buffer_that_drops_oldest_delivers_the_newest_in_order_and_counts_the_rest() {
    const MAX_BYTES: usize = 2 << 20;
    const N: usize = 860_000;
    let dir = temp_dir();
    let d = dir.path();
    let config = blocked_sink_config_sized(d, "drop_oldest", "2MiB", "128KiB");
    let data = common::numbered_sensor(N);
    assert!(
        data.len() >= 50 * MAX_BYTES,
        "{} bytes offered, fewer than 50 x {MAX_BYTES}",
        data.len()
    );
    let metrics = format!("127.0.0.1:{}", free_port());
    let (router, mut stdin) = Running::start(
        d,
        &[
            "run",
            "-c",
            config.to_str().unwrap(),
            "--stats=json",
            "--metrics",
            &metrics,
        ],
    );
    let writer = std::thread::spawn(move || {
        std::io::Write::write_all(&mut stdin, &data).unwrap();
    });
    let dropped_series =
        "edge_router_buffer_dropped_total{component=\"buffers.out\",reason=\"drop_oldest\"}";
    common::wait_for(
        "every record read and the oldest dropped while the sink is down",
        Duration::from_secs(120),
        || {
            let m = common::metrics(&metrics);
            common::metric(&m, "edge_router_records_read_total") == N as u64
                && common::metric(&m, dropped_series) > 0
        },
    );
    writer.join().unwrap();
    let fifo_out = std::thread::spawn({
        let fifo = d.join("out.fifo");
        move || std::fs::read(fifo).unwrap()
    });
    let result = router.wait(Duration::from_secs(120));
    assert_eq!(result.code(), 0, "{}", result.stderr);
    let written = fifo_out.join().unwrap();
    // The sink had taken entries of segments that were deleted (listed until it wrote them):
    // a clean stop leaves none listed, so the next start counts nothing again.
    assert!(
        !d.join("buffer").join("with-sink").exists(),
        "entries still listed as left with the sink after a clean stop"
    );
    let stats = result.ok_stats(); // the accounting invariant, with dropped_by_buffer
    let buffer = stats.component("buffers.out");
    let dropped = buffer["dropped_oldest"].as_u64().unwrap();
    assert_eq!(stats.total("dropped_by_buffer"), dropped);
    assert_eq!(
        buffer["dropped"].as_u64().unwrap_or(0),
        0,
        "no batch refused"
    );
    assert_eq!(stats.dead_lettered(), 0);
    assert!(buffer["dropped_oldest_bytes"].as_u64().unwrap() > dropped * 100);

    let seqs: Vec<u64> = std::str::from_utf8(&written)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(
        seqs.len() as u64 + dropped,
        N as u64,
        "offered - delivered == dropped"
    );
    assert!(
        dropped > (N as u64) * 9 / 10,
        "{dropped} of {N} dropped: the buffer held far more than 2 MiB"
    );
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "delivered out of order or twice"
    );
    assert_eq!(seqs.last(), Some(&(N as u64 - 1)), "the newest record");
    // The newest records run without a gap to the end: at least half a buffer of them.
    let tail = common::newest_run(&seqs, N as u64);
    let avg = written.len() / seqs.len().max(1);
    assert!(
        tail * avg >= MAX_BYTES / 2,
        "only the newest {tail} records ({} bytes) arrived without a gap",
        tail * avg
    );
    let gaps = seqs.windows(2).filter(|w| w[1] != w[0] + 1).count();
    eprintln!(
        "{N} offered ({} bytes), {} delivered, {dropped} dropped, newest {tail} without a gap, \
         {gaps} gaps",
        N * avg,
        seqs.len()
    );
    let log = &result.stderr;
    assert!(
        log.contains("when_full = \"drop_oldest\"): dropped the oldest")
            && log.contains("which arrived from"),
        "{log}"
    );
}

#[test]
fn a_full_buffer_that_blocks_holds_back_the_source_and_loses_nothing() {
    let dir = temp_dir();
    let d = dir.path();
    let config = blocked_sink_config(d, "block");
    let data = std::sync::Arc::new(common::numbered_sensor(200_000));
    let (router, stdin) =
        Running::start(d, &["run", "-c", config.to_str().unwrap(), "--stats=json"]);
    let writer = common::Writer::start(stdin, data.clone(), 1, 64 << 10, None, None);
    // The buffer (1 MiB) and the queues fill; then the router stops reading stdin. That nothing
    // more is read cannot be observed but by letting time pass: the writer's progress must stand
    // still for 10 samples 50 ms apart (the loop ends as soon as it has).
    let mut last = 0;
    let mut still = 0;
    for _ in 0..200 {
        std::thread::sleep(Duration::from_millis(50));
        let now = writer.progress();
        if now == last {
            still += 1;
            if still >= 10 {
                break;
            }
        } else {
            still = 0;
            last = now;
        }
    }
    assert!(
        !writer.is_finished() && (last as usize) < data.len(),
        "the source was not held back ({last} of {} bytes written)",
        data.len()
    );
    let buffered: u64 = std::fs::read_dir(d.join("buffer"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(buffered <= 1 << 20, "buffer holds {buffered} bytes");
    let fifo_out = std::thread::spawn({
        let fifo = d.join("out.fifo");
        move || std::fs::read(fifo).unwrap()
    });
    writer.join();
    let result = router.wait(Duration::from_secs(60));
    assert_eq!(result.code(), 0, "{}", result.stderr);
    assert_eq!(fifo_out.join().unwrap(), *data);
    assert_eq!(result.ok_stats().dead_lettered(), 0);
}

#[test]
fn http_records_answered_200_before_a_kill_9_are_delivered_after_the_restart() {
    const REQUESTS: usize = 60;
    const PER: usize = 1000;
    let dir = temp_dir();
    let d = dir.path();
    let data = common::numbered_sensor(REQUESTS * PER);
    let bodies: Vec<Vec<u8>> = common::lines(&data)
        .chunks(PER)
        .map(|c| {
            let mut b = c.join(&b'\n');
            b.push(b'\n');
            b
        })
        .collect();
    let port = free_port();
    let out = d.join("out.ndjson");
    let config = write_config(d, &http_source(port, "durable"), &out, &buffer_line(d, ""));
    let mut router = start_router(d, &config);
    let url = format!("http://127.0.0.1:{port}/v1/records");
    let answered = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(usize, u16)>::new()));
    let poster = {
        let answered = answered.clone();
        std::thread::spawn(move || {
            for (i, body) in bodies.into_iter().enumerate() {
                let path = std::env::temp_dir().join(format!("er-body-{port}-{i}"));
                std::fs::write(&path, &body).unwrap();
                let out = post_in_background(&url, &path, 10)
                    .wait_with_output()
                    .unwrap();
                let _ = std::fs::remove_file(&path);
                let code = String::from_utf8_lossy(&out.stdout).parse().unwrap_or(0);
                answered.lock().unwrap().push((i, code));
                // Pacing, not waiting: the requests are spread out so that some are answered
                // before the kill and some meet the router down.
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while answered
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, c)| *c == 200)
        .count()
        < 15
    {
        assert!(
            Instant::now() < deadline,
            "no answers: {:?}",
            answered.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    router.kill().unwrap();
    router.wait().unwrap();
    // Down until a request sent after the kill has been answered (refused: the one in flight at
    // the kill, if any, is answered first).
    let at_kill = answered.lock().unwrap().len();
    common::wait_for(
        "a request sent while the router is down",
        Duration::from_secs(60),
        || answered.lock().unwrap().len() > at_kill + 1,
    );
    let mut router = start_router(d, &config);
    poster.join().unwrap();
    let code = common::terminate(&mut router);
    let log = std::fs::read_to_string(d.join("router.log")).unwrap();
    assert!(code.success(), "{log}");

    let answered = answered.lock().unwrap().clone();
    let ok: Vec<usize> = answered
        .iter()
        .filter(|(_, c)| *c == 200)
        .map(|(i, _)| *i)
        .collect();
    let refused = answered.len() - ok.len();
    assert!(
        refused > 0,
        "no request failed while the router was down: {answered:?}"
    );
    let (counts, torn) = seq_counts(&[out]);
    assert!(torn <= 1, "{torn} torn lines after one kill");
    for i in &ok {
        for seq in (i * PER) as u64..((i + 1) * PER) as u64 {
            assert!(
                counts.contains_key(&seq),
                "request {i} was answered 200 but record {seq} is missing"
            );
        }
    }
    eprintln!(
        "{} requests answered 200, {refused} refused or cut off",
        ok.len()
    );
}

/// Starts `curl` posting `body` to `url`, giving up after `max_secs`; returns the child (stdout:
/// the status code).
fn post_in_background(url: &str, body: &Path, max_secs: u32) -> Child {
    Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time"])
        .arg(max_secs.to_string())
        .arg("--data-binary")
        .arg(format!("@{}", body.display()))
        .arg(url)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn ack_modes_answer_once_the_records_are_buffered_or_delivered() {
    for (ack, buffered, answers_while_blocked) in [
        ("durable", true, true),
        ("delivered", true, false),
        ("durable", false, false),
    ] {
        let dir = temp_dir();
        let d = dir.path();
        let fifo = d.join("out.fifo");
        common::mkfifo(&fifo);
        let port = free_port();
        let buffer = if buffered {
            buffer_line(d, "")
        } else {
            String::new()
        };
        let config = write_config(d, &http_source(port, ack), &fifo, &buffer);
        let mut router = start_router(d, &config);
        let body = d.join("body.ndjson");
        std::fs::write(&body, common::numbered_sensor(500)).unwrap();
        common::wait_for_port(port, &mut router, "edge-router", Duration::from_secs(20));
        let mut curl =
            post_in_background(&format!("http://127.0.0.1:{port}/v1/records"), &body, 30);
        // The sink cannot write (nobody reads the FIFO yet). An answer expected now is waited
        // for (at most 30 s); one that must not come is given 1.5 s to show up (time has to
        // pass to see that something does not happen).
        let window = if answers_while_blocked { 30_000 } else { 1500 };
        let deadline = Instant::now() + Duration::from_millis(window);
        let mut answered = None;
        while Instant::now() < deadline && answered.is_none() {
            answered = curl.try_wait().unwrap();
            std::thread::sleep(Duration::from_millis(10));
        }
        let what = format!("ack = {ack}, buffer: {buffered}");
        assert_eq!(answered.is_some(), answers_while_blocked, "{what}");
        let reader = std::thread::spawn(move || std::fs::read(fifo).unwrap());
        let out = curl.wait_with_output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "200", "{what}");
        let code = common::terminate(&mut router);
        assert!(code.success(), "{what}");
        assert_eq!(
            reader.join().unwrap(),
            std::fs::read(&body).unwrap(),
            "{what}"
        );
    }
}

#[test]
fn keys_attributes_and_source_survive_the_disk_buffer() {
    let dir = temp_dir();
    let d = dir.path();
    let port = free_port();
    let config = write_config(
        d,
        &http_source(port, "durable"),
        &d.join("{source}-{partition_key}-{attr.site}.ndjson"),
        &buffer_line(d, ""),
    );
    let mut router = start_router(d, &config);
    common::wait_for_port(port, &mut router, "edge-router", Duration::from_secs(20));
    let body = d.join("body.ndjson");
    std::fs::write(&body, "{\"n\":1}\n{\"n\":2}\n").unwrap();
    let curl = post_in_background(
        &format!("http://127.0.0.1:{port}/v1/records?partition_key=dev-7&attr.site=north"),
        &body,
        30,
    );
    let out = curl.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
    assert!(common::terminate(&mut router).success());
    assert_eq!(
        std::fs::read_to_string(d.join("web-dev-7-north.ndjson")).unwrap(),
        "{\"n\":1}\n{\"n\":2}\n"
    );
}
