//! Lifecycle: SIGTERM in the middle of the input, backpressure with bounded memory, the grace
//! period running out, a fatal sink error, and draining at end of input.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{
    CHILD_TIMEOUT, Input, Running, Writer, assert_bytes_eq, file_len, first_lines, read, temp_dir,
};

const MIB: u64 = 1 << 20;

/// Writes `config` to `dir/pipeline.toml`.
fn write_config(dir: &Path, config: &str) {
    std::fs::write(dir.join("pipeline.toml"), config).unwrap();
}

/// Pieces that do not line up with records (sensor records are about 110 bytes).
const PIECE: usize = 65_521;

#[test]
fn sigterm_mid_input_writes_exactly_the_records_read() {
    let input = Arc::new(common::sensor(200_000));
    let dir = temp_dir();
    write_config(
        dir.path(),
        r#"
[pipeline]
queue_bytes_max = "4MiB"
shutdown_grace_ms = 30000

[sources.in]
kind = "stdin"

[sinks.out]
kind = "file"
path = "out.ndjson"
rate_limit_bytes_per_sec = "4MiB"

[dead_letter]
path = "dl.ndjson"
"#,
    );
    let (router, stdin) =
        Running::start(dir.path(), &["run", "-c", "pipeline.toml", "--stats=json"]);
    // The writer keeps stdin open: the run ends only because of the signal.
    let release = Arc::new(AtomicBool::new(false));
    let writer = Writer::start(stdin, input.clone(), 1, PIECE, None, Some(release.clone()));
    let out_path = dir.path().join("out.ndjson");
    common::wait_for("1 MiB of output", CHILD_TIMEOUT, || {
        file_len(&out_path) >= MIB
    });
    router.signal("TERM");
    let out = router.wait(CHILD_TIMEOUT);
    release.store(true, Ordering::Relaxed);
    let offered = writer.join();
    let stats = out.ok_stats();
    assert!(
        stats.read() > 0 && stats.read() < 200_000,
        "the signal came in the middle: read {} of 200000 ({offered} bytes offered)",
        stats.read()
    );
    assert_eq!(stats.read(), stats.written() + stats.dead_lettered());
    assert_eq!(stats.dropped(), 0);
    assert!(!out.stderr.contains("ERROR"), "{}", out.stderr);
    // Everything read was written: the output is exactly the first `written` input records.
    // (Reading stops at the signal, possibly in the middle of a line: that piece of a record
    // must not be written as if it were one.)
    let written = read(&out_path);
    assert_eq!(
        stats.total("bytes_written"),
        (written.len() as u64) - stats.written()
    );
    assert_bytes_eq(
        &written,
        first_lines(&input, stats.written()),
        "output after SIGTERM",
    );
    // At most the piece of the line being read when the signal came may be dead-lettered,
    // marked as truncated.
    assert!(stats.dead_lettered() <= 1, "{}", stats.0["totals"]);
    if stats.dead_lettered() == 1 {
        let letters = common::dead_letters(&dir.path().join("dl.ndjson"));
        let l = &letters[0];
        let n = stats.written() + 1;
        assert_eq!(l.line, Some(n));
        assert!(l.truncated);
        let line = common::lines(first_lines(&input, n))[n as usize - 1];
        assert!(
            line.starts_with(&l.payload),
            "dead letter is not a piece of line {n}"
        );
    }
}

#[test]
fn a_second_signal_gives_up_at_once_and_reports_what_was_not_flushed() {
    let input = Arc::new(common::sensor(40_000));
    let dir = temp_dir();
    let (mut router, writer, release) = start_throttled(dir.path(), &input, 600_000);
    router.signal("INT");
    // The second signal comes once the first has started the drain.
    router.wait_for_stderr("stopping: no more input is read", CHILD_TIMEOUT);
    router.signal("TERM");
    // The grace period is ten minutes: exiting at all shows that the second signal ended it.
    let out = router.wait(CHILD_TIMEOUT);
    release.store(true, Ordering::Relaxed);
    writer.join();
    assert_eq!(out.code(), 3, "{}", out.stderr);
    let stats = out.stats();
    let unflushed = unflushed_count(&out.stderr);
    assert!(unflushed > 0);
    assert_eq!(
        unflushed as i64,
        stats.read() as i64 - stats.written() as i64 - stats.dead_lettered() as i64
    );
    assert_eq!(unflushed as i64, stats.in_flight());
}

/// The number in "N record(s) were read but not flushed".
/// Starts a router whose file sink writes at 100 KiB/s behind a 64 MiB queue, feeds it all of
/// `input`, and returns once some output exists: most records are then still queued.
fn start_throttled(
    dir: &Path,
    input: &Arc<Vec<u8>>,
    grace_ms: u64,
) -> (Running, Writer, Arc<AtomicBool>) {
    write_config(
        dir,
        &format!(
            r#"
[pipeline]
queue_bytes_max = "64MiB"
queue_records_max = 1000000
shutdown_grace_ms = {grace_ms}

[sources.in]
kind = "stdin"

[sinks.out]
kind = "file"
path = "out.ndjson"
rate_limit_bytes_per_sec = "100KiB"
"#
        ),
    );
    let (router, stdin) = Running::start(dir, &["run", "-c", "pipeline.toml", "--stats=json"]);
    let release = Arc::new(AtomicBool::new(false));
    let writer = Writer::start(stdin, input.clone(), 1, PIECE, None, Some(release.clone()));
    common::wait_for("all input written", CHILD_TIMEOUT, || {
        writer.progress() == input.len() as u64
    });
    common::wait_for("some output", CHILD_TIMEOUT, || {
        file_len(&dir.join("out.ndjson")) > 0
    });
    (router, writer, release)
}

fn unflushed_count(stderr: &str) -> u64 {
    let line = stderr
        .lines()
        .find(|l| l.contains("record(s) were read but not flushed"))
        .unwrap_or_else(|| panic!("no 'not flushed' message:\n{stderr}"));
    let before = line
        .split(" record(s) were read but not flushed")
        .next()
        .unwrap();
    before
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("no count in {line:?}"))
}

#[test]
fn backpressure_keeps_memory_bounded_and_blocks_the_writer() {
    let pattern = Arc::new(common::sensor(20_000));
    let dir = temp_dir();
    write_config(
        dir.path(),
        r#"
[pipeline]
queue_records_max = 20000
queue_bytes_max = "2MiB"

[sources.in]
kind = "stdin"

[sinks.out]
kind = "file"
path = "out.ndjson"
rate_limit_bytes_per_sec = "2MiB"
"#,
    );
    let (router, stdin) = Running::start(dir.path(), &["run", "-c", "pipeline.toml"]);
    // Offer 512 MiB.
    let repeat = (512 * MIB).div_ceil(pattern.len() as u64);
    let writer = Writer::start(stdin, pattern.clone(), repeat, PIECE, None, None);
    let mut peak_rss = 0;
    let start = Instant::now();
    let mut samples = 0;
    // Sampling over a fixed window on purpose: memory must stay bounded for as long as the
    // writer is held back, which no event marks; time has to pass.
    while start.elapsed() < Duration::from_secs(4) {
        std::thread::sleep(Duration::from_millis(100));
        let rss = router.rss_bytes().expect("the router is running");
        peak_rss = peak_rss.max(rss);
        samples += 1;
    }
    let progress = writer.progress();
    let out_len = file_len(&dir.path().join("out.ndjson"));
    let out = router.kill();
    writer.join();
    assert!(samples >= 20, "{samples} RSS samples");
    assert!(
        out.status.code().is_none(),
        "killed, not exited: {:?}",
        out.status
    );
    assert!(
        peak_rss < 64 * MIB,
        "peak RSS {} MiB with a throttled sink",
        peak_rss / MIB
    );
    assert!(out_len > 0, "the sink wrote nothing");
    assert!(progress > 0, "the writer wrote nothing");
    assert!(
        progress < 64 * MIB,
        "the writer got {} MiB into the pipe: the router did not push back",
        progress / MIB
    );
}

#[test]
fn an_expired_grace_period_exits_3_and_says_how_many_records_were_not_flushed() {
    let input = Arc::new(common::sensor(40_000));
    let dir = temp_dir();
    let (router, writer, release) = start_throttled(dir.path(), &input, 300);
    router.signal("TERM");
    let out = router.wait(CHILD_TIMEOUT);
    release.store(true, Ordering::Relaxed);
    writer.join();
    assert_eq!(out.code(), 3, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("edge-router: shutdown did not finish within 300 ms; "),
        "{}",
        out.stderr
    );
    let unflushed = unflushed_count(&out.stderr);
    let stats = out.stats();
    assert!(
        unflushed > 1000,
        "at 100 KiB/s most of 4 MB is still queued: {unflushed}"
    );
    assert_eq!(
        unflushed as i64,
        stats.read() as i64 - stats.written() as i64 - stats.dead_lettered() as i64,
        "{}",
        stats.0["totals"]
    );
    assert_eq!(unflushed as i64, stats.in_flight());
}

#[test]
fn a_fatal_sink_error_exits_1_and_dead_letters_every_record_read() {
    let dir = temp_dir();
    let input = common::sensor(200_000);
    let input_path = dir.path().join("input.ndjson");
    std::fs::write(&input_path, &input).unwrap();
    // `blocker` is a file, so the directory `blocker/` cannot be created.
    std::fs::write(dir.path().join("blocker"), b"").unwrap();
    let out = common::run_in(
        dir.path(),
        &[
            "run",
            "--sink",
            "file:blocker/out.ndjson",
            "--dead-letter",
            "dl.ndjson",
            "--stats=json",
        ],
        Input::File(&input_path),
    );
    assert_eq!(out.code(), 1, "{}", out.stderr);
    let last = out.stderr.lines().last().unwrap();
    assert!(
        last.starts_with("edge-router: sink `file` failed:") && last.contains("blocker"),
        "the last line names the sink and the path: {last}"
    );
    let stats = out.stats();
    stats.assert_invariant();
    assert!(stats.read() > 0);
    assert_eq!(stats.written(), 0);
    assert_eq!(stats.dead_lettered(), stats.read());
    assert_eq!(read(&dir.path().join("blocker")), b"", "blocker untouched");

    let letters = common::dead_letters(&dir.path().join("dl.ndjson"));
    assert_eq!(letters.len() as u64, stats.read());
    for l in &letters {
        // Records the sink held when it failed name its error; records that came after it had
        // stopped accepting say so; a line cut short by the shutdown says that.
        if l.truncated {
            assert!(
                l.reason.contains("incomplete record"),
                "reason: {}",
                l.reason
            );
        } else {
            assert!(l.reason.contains("sink `file`"), "reason: {}", l.reason);
        }
        assert_eq!(l.source, "stdin");
    }
    assert!(
        letters.iter().any(|l| l.reason.contains("blocker")),
        "no dead letter gives the sink's error"
    );
    // Every line read is there once: lines 1..=read.
    let mut numbers: Vec<u64> = letters.iter().map(|l| l.line.unwrap()).collect();
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=stats.read()).collect::<Vec<_>>());
    let lines = common::lines(&input);
    // Each dead letter is a whole input record, as read; only the line that was being read
    // when the source stopped may be a piece, and then it must be marked as truncated.
    let last_line = stats.read() as usize;
    for l in &letters {
        let n = l.line.unwrap() as usize;
        if l.truncated {
            assert_eq!(n, last_line, "line {n} marked truncated");
            assert!(lines[n - 1].starts_with(&l.payload), "line {n}");
            continue;
        }
        assert_eq!(l.size, l.payload.len() as u64, "line {n}");
        assert_bytes_eq(
            &l.payload,
            lines[n - 1],
            &format!("dead letter of line {n}"),
        );
    }
}

#[test]
fn end_of_input_drains_full_queues_and_exits_0() {
    let input = common::sensor(40_000);
    let dir = temp_dir();
    write_config(
        dir.path(),
        r#"
[pipeline]
queue_records_max = 5000
queue_bytes_max = "1MiB"

[sources.in]
kind = "stdin"

[sinks.out]
kind = "file"
path = "out.ndjson"
rate_limit_bytes_per_sec = "4MiB"
"#,
    );
    let out = common::run_in(
        dir.path(),
        &["run", "-c", "pipeline.toml", "--stats=json"],
        Input::Bytes(&input),
    );
    let stats = out.ok_stats();
    assert_eq!(stats.read(), 40_000);
    assert_eq!(stats.written(), 40_000);
    assert_bytes_eq(&read(&dir.path().join("out.ndjson")), &input, "out.ndjson");
    // The sink's queue was full while input was still arriving, and stayed within its limits.
    let q = stats.0["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "sinks.out")
        .unwrap()
        .clone();
    let peak = q["bytes_peak"].as_u64().unwrap();
    assert!(peak > MIB / 2, "queue peak {peak} bytes: it never filled");
    assert!(peak <= MIB, "queue peak {peak} bytes over its 1 MiB limit");
    assert!(q["records_peak"].as_u64().unwrap() <= 5000, "{q}");
}
