//! The plugin sandbox against hostile plugins written in WebAssembly text (`plugins/wat/`, built
//! by `plugins/build.sh`), outside the SDK, answering what no well-behaved plugin would: huge
//! error messages, outputs that grow every record, log floods with forged log lines, indices
//! out of range, too few answers, endless traps, an `init` that fails on restart or answers
//! 10 MB. For each: the router stays up, its memory and its standard error stay within the
//! documented bounds, the accounting invariant holds, the right counters and warnings appear,
//! and no record is altered, duplicated or lost.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{
    Input, Output, Running, count_lines, dead_letters, file_len, plugin, read, run_in, temp_dir,
    wait_for,
};

const MIB: u64 = 1 << 20;

fn toml_path(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
}

/// A config with one plugin stage (`stage` is the rest of its `[[stages]]` table) between stdin
/// and `out.ndjson`, dead letters in `dl.ndjson`.
fn config(plugin_name: &str, kind: &str, stage: &str, extra: &str) -> String {
    let sinks = if extra.contains("[sinks.") {
        String::new()
    } else {
        "[sinks.out]\nkind = \"file\"\npath = \"out.ndjson\"\n".to_owned()
    };
    format!(
        "[sources.in]\nkind = \"stdin\"\n\n[[stages]]\nname = \"p\"\nkind = \"{kind}\"\n\
         plugin = {}\n{stage}\n\n{extra}\n{sinks}\n[dead_letter]\npath = \"dl.ndjson\"\n",
        toml_path(&plugin(plugin_name))
    )
}

fn run(dir: &Path, config: &str, input: &[u8]) -> Output {
    std::fs::write(dir.join("edge-router.toml"), config).unwrap();
    run_in(
        dir,
        &["run", "-c", "edge-router.toml", "--stats=json"],
        Input::Bytes(input),
    )
}

/// Runs like [`run`], but keeps the router's stdin open until `done` holds (so the peak RSS
/// is read while the process still exists), then closes it. Returns the output and the peak
/// resident set size.
fn run_watched(
    dir: &Path,
    config: &str,
    input: &[u8],
    done: impl Fn(&Path) -> bool,
) -> (Output, u64) {
    std::fs::write(dir.join("edge-router.toml"), config).unwrap();
    let (r, mut stdin) = Running::start(dir, &["run", "-c", "edge-router.toml", "--stats=json"]);
    stdin.write_all(input).unwrap();
    stdin.flush().unwrap();
    wait_for(
        "the router to finish the input",
        Duration::from_secs(60),
        || done(dir),
    );
    let peak = r.peak_rss_bytes().expect("the router is running");
    eprintln!("peak RSS: {:.1} MiB", peak as f64 / MIB as f64);
    drop(stdin);
    (r.wait(Duration::from_secs(60)), peak)
}

/// `n` one-byte records, a digit each.
fn one_byte_records(n: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|i| [b'0' + (i % 10) as u8, b'\n'])
        .collect()
}

/// Lines in a file, 0 while it does not exist.
fn lines_in(path: &Path) -> u64 {
    if path.exists() { count_lines(path) } else { 0 }
}

fn counter(out: &Output, name: &str) -> u64 {
    out.stats().component("stages.p")[name]
        .as_u64()
        .unwrap_or(0)
}

/// The documented host memory bound of one stage worker, `memory_max_bytes + 2 x
/// answer_bytes_max` (64 + 2 x 16 MiB with the defaults), plus what the router itself takes
/// without a plugin misbehaving (the engine, compiled code, queues): 40 MiB.
const WORKER_BOUND: u64 = 64 * MIB + 2 * 16 * MIB + 40 * MIB;

#[test]
fn a_256_kib_error_message_per_record_stays_under_100_mib() {
    // 4096 one-byte records in one batch, each answered with a record error whose message is the
    // same 256 KiB of guest memory: 1 GiB if lifted and kept per record. The answer is refused
    // past answer_bytes_max while being lifted.
    let dir = temp_dir();
    let input = one_byte_records(4096);
    let cfg = config("huge-errors", "filter", "", "");
    let (out, peak) = run_watched(dir.path(), &cfg, &input, |d| {
        lines_in(&d.join("dl.ndjson")) == 4096
    });
    let stats = out.ok_stats();
    assert!(peak < 100 * MIB, "peak RSS {} MiB", peak / MIB);
    assert_eq!(stats.dead_lettered(), 4096);
    let dl = dead_letters(&dir.path().join("dl.ndjson"));
    let mut got: Vec<Vec<u8>> = dl.iter().map(|d| d.payload.clone()).collect();
    let mut want: Vec<Vec<u8>> = input
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    got.sort();
    want.sort();
    assert_eq!(got, want, "every record dead-lettered once, unaltered");
    assert!(
        dl[0]
            .reason
            .contains("contract violation: the plugin's answers exceeded answer_bytes_max"),
        "{}",
        dl[0].reason
    );
    // A bounded dead-letter file (it was ~1 GB from 51 KB of input).
    assert!(file_len(&dir.path().join("dl.ndjson")) < 4096 * 1024);
    assert!(counter(&out, "plugin_contract_violations") >= 4);
    assert!(
        out.stderr.contains("stage `p`: contract violation"),
        "{}",
        out.stderr
    );
}

#[test]
fn error_messages_within_the_budget_are_cut_to_1_kib() {
    // 16 records a call: 4 MiB of messages per answer, within answer_bytes_max per call but kept
    // only as 1 KiB each.
    let dir = temp_dir();
    let input = one_byte_records(4096);
    let cfg = config("huge-errors", "filter", "batch_records_max = 16", "");
    let (out, peak) = run_watched(dir.path(), &cfg, &input, |d| {
        lines_in(&d.join("dl.ndjson")) == 4096
    });
    let stats = out.ok_stats();
    assert!(peak < 100 * MIB, "peak RSS {} MiB", peak / MIB);
    assert_eq!(stats.dead_lettered(), 4096);
    assert_eq!(counter(&out, "plugin_record_errors"), 4096);
    for d in dead_letters(&dir.path().join("dl.ndjson")) {
        assert!(
            d.reason.starts_with("stage `p`: the plugin reported: AAAA"),
            "{}",
            d.reason
        );
        assert!(
            d.reason.ends_with(" bytes cut)"),
            "{}",
            &d.reason[d.reason.len() - 40..]
        );
        assert!(d.reason.len() < 1024 + 100, "{}", d.reason.len());
    }
}

#[test]
fn an_enrich_that_grows_every_record_to_32_kib_is_refused_and_nothing_is_altered() {
    // 4 KB in would be 128 MiB out. With on_error = "pass" every record goes on unchanged.
    let dir = temp_dir();
    let input = one_byte_records(4096);
    let cfg = config("grow-enrich", "enrich", "on_error = \"pass\"", "");
    let (out, peak) = run_watched(dir.path(), &cfg, &input, |d| {
        lines_in(&d.join("out.ndjson")) == 4096
    });
    let stats = out.ok_stats();
    assert!(peak < WORKER_BOUND, "peak RSS {} MiB", peak / MIB);
    assert_eq!(read(&dir.path().join("out.ndjson")), input);
    assert_eq!(stats.written(), 4096);
    assert!(counter(&out, "plugin_contract_violations") >= 4);
}

#[test]
fn a_log_flood_is_held_to_the_stage_limits_and_cannot_forge_log_lines() {
    // Every call logs 1000 messages of 1 MiB, each a forged router log line repeated with
    // newlines (7.8 GB of stderr in 70 s before). Limits: 100 messages and 64 KiB a second for
    // the stage, each message cut to 1 KiB, control characters escaped.
    let dir = temp_dir();
    let cfg = config("log-flood", "filter", "", "");
    std::fs::write(dir.path().join("edge-router.toml"), &cfg).unwrap();
    let (r, mut stdin) = Running::start(
        dir.path(),
        &["run", "-c", "edge-router.toml", "--stats=json"],
    );
    let started = Instant::now();
    let mut sent = 0u64;
    // Small batches for about three seconds: hundreds of calls, each logging 1000 messages.
    while started.elapsed() < Duration::from_secs(3) {
        writeln!(stdin, "{{\"n\":{sent}}}").unwrap();
        stdin.flush().unwrap();
        sent += 1;
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(stdin);
    let out = r.wait(Duration::from_secs(60));
    let secs = started.elapsed().as_secs_f64();
    let stats = out.ok_stats();
    // A call that logs long enough runs into its deadline: its records are dead-lettered.
    assert_eq!(stats.written() + stats.dead_lettered(), sent);
    // 64 KiB a second plus one second's burst, plus each line's prefix (timestamp, level,
    // fields: under 200 bytes) for at most 100 lines a second, plus the router's own lines.
    let bound = (secs + 1.0) * (64.0 * 1024.0 + 100.0 * 200.0) + 64.0 * 1024.0;
    assert!(
        (out.stderr.len() as f64) < bound,
        "{} bytes of stderr in {secs:.1} s (bound {bound:.0})",
        out.stderr.len()
    );
    assert!(
        out.stderr.contains("FORGED BY A PLUGIN"),
        "the plugin's lines appear, escaped"
    );
    for line in out.stderr.lines() {
        assert!(
            !line.starts_with("2026-12-07T06:00:00.000000Z"),
            "a forged log line: {line}"
        );
        if line.contains("FORGED") {
            assert!(line.len() < 1024 + 400, "a line of {} bytes", line.len());
        }
    }
    assert!(counter(&out, "plugin_logs_suppressed") > 0);
}

#[test]
fn an_out_of_range_enrich_index_is_rejected_whole_and_corrupts_nothing() {
    // changed = [n + 100, 0], ends = [20, 35]: record 0 used to be written as the skipped
    // entry's bytes glued to its own.
    let input: Vec<u8> = (0..10)
        .flat_map(|i| format!("record {i}\n").into_bytes())
        .collect();

    let dir = temp_dir();
    let out = run(
        dir.path(),
        &config("bad-enrich-index", "enrich", "", ""),
        &input,
    );
    let stats = out.ok_stats();
    assert_eq!(stats.dead_lettered(), 10);
    assert_eq!(lines_in(&dir.path().join("out.ndjson")), 0);
    for d in dead_letters(&dir.path().join("dl.ndjson")) {
        assert!(
            d.reason
                .contains("contract violation: the plugin named record 110 in `changed`, but the call had 10 records"),
            "{}",
            d.reason
        );
        assert!(d.payload.starts_with(b"record "));
    }
    assert!(counter(&out, "plugin_contract_violations") >= 1);

    let dir = temp_dir();
    let out = run(
        dir.path(),
        &config("bad-enrich-index", "enrich", "on_error = \"pass\"", ""),
        &input,
    );
    out.ok_stats();
    assert_eq!(read(&dir.path().join("out.ndjson")), input);
}

#[test]
fn an_out_of_range_route_index_does_not_fan_out() {
    // init names one destination; every record is routed to destination 5. It used to fall back
    // to the default sinks: every record duplicated into every file, silently.
    let dir = temp_dir();
    let input: Vec<u8> = (0..50)
        .flat_map(|i| format!("r{i}\n").into_bytes())
        .collect();
    let sinks = "[sinks.out]\nkind = \"file\"\npath = \"out.ndjson\"\n\
                 [sinks.other]\nkind = \"file\"\npath = \"other.ndjson\"\n";
    let out = run(
        dir.path(),
        &config("bad-route-index", "route", "", sinks),
        &input,
    );
    let stats = out.ok_stats();
    assert_eq!(stats.written(), 0);
    assert_eq!(stats.fanout(), 0);
    assert_eq!(stats.dead_lettered(), 50);
    assert_eq!(lines_in(&dir.path().join("out.ndjson")), 0);
    assert_eq!(lines_in(&dir.path().join("other.ndjson")), 0);
    let dl = dead_letters(&dir.path().join("dl.ndjson"));
    assert!(
        dl[0]
            .reason
            .contains("the plugin chose destination 5 for record 0, but its init returned 1 names"),
        "{}",
        dl[0].reason
    );
    assert!(counter(&out, "plugin_contract_violations") >= 1);
}

#[test]
fn duplicate_and_out_of_range_error_indices_and_short_answers_are_violations() {
    let input: Vec<u8> = (0..100)
        .flat_map(|i| format!("{{\"i\":{i}}}\n").into_bytes())
        .collect();
    for (name, why) in [
        (
            "dup-error-index",
            "the plugin named record 0 twice in `errors`",
        ),
        (
            "error-past-end",
            "the plugin named record 105 in `errors`, but the call had 100 records",
        ),
        (
            "short-keep",
            "the plugin answered 99 keep flags for 100 records",
        ),
    ] {
        let dir = temp_dir();
        let out = run(
            dir.path(),
            &config(name, "filter", "on_error = \"pass\"", ""),
            &input,
        );
        out.ok_stats();
        // Nothing of a rejected answer is applied: every record passes unchanged, once.
        assert_eq!(read(&dir.path().join("out.ndjson")), input, "{name}");
        assert!(counter(&out, "plugin_contract_violations") >= 1, "{name}");
        assert_eq!(counter(&out, "plugin_record_errors"), 0, "{name}");
        assert!(out.stderr.contains(why), "{name}: {}", out.stderr);
    }
}

#[test]
fn a_plugin_that_always_traps_trips_the_breaker_instead_of_bisecting_every_batch() {
    // It used to cost 2n - 1 calls per batch. Now: 32 failed calls, then the stage is tripped
    // and its records are dead-lettered without calling the plugin.
    let dir = temp_dir();
    let input = one_byte_records(50_000);
    let out = run(
        dir.path(),
        &config("trap-always", "filter", "breaker_cooldown_ms = 60000", ""),
        &input,
    );
    let stats = out.ok_stats();
    assert_eq!(stats.dead_lettered(), 50_000);
    let traps = counter(&out, "plugin_traps");
    // The failure that trips it, plus at most one call per other stage worker already running.
    assert!((32..=36).contains(&traps), "{traps} traps");
    assert_eq!(counter(&out, "plugin_breaker_trips"), 1);
    assert_eq!(counter(&out, "plugin_breaker_open"), 1);
    assert!(
        out.stderr
            .contains("stage `p` tripped: 32 failed plugin calls"),
        "{}",
        out.stderr
    );
    let dl = dead_letters(&dir.path().join("dl.ndjson"));
    assert!(dl.iter().any(|d| d.reason.contains("the stage is tripped")));
    assert!(dl.iter().any(|d| d.reason.contains("the plugin trapped")));
    // Warnings about the traps are rate-limited: far fewer lines than failed calls.
    let warnings = out.stderr.lines().filter(|l| l.contains("WARN")).count();
    assert!(warnings <= 10, "{warnings} warning lines:\n{}", out.stderr);
}

#[test]
fn an_endless_loop_on_every_call_trips_the_breaker_in_bounded_time() {
    // The review's ~9 records/s case: every call runs to the deadline.
    let dir = temp_dir();
    let input: Vec<u8> = (0..20_000)
        .flat_map(|i| format!("{{\"seq\":{i},\"v\":\"LOOP\"}}\n").into_bytes())
        .collect();
    let out = run(
        dir.path(),
        &config(
            "loop-forever",
            "filter",
            "timeout_ms = 20\nbreaker_cooldown_ms = 60000\non_error = \"pass\"",
            "",
        ),
        &input,
    );
    let stats = out.ok_stats();
    assert_eq!(read(&dir.path().join("out.ndjson")), input);
    assert_eq!(stats.written(), 20_000);
    let timeouts = counter(&out, "plugin_timeouts");
    assert!((32..=36).contains(&timeouts), "{timeouts} timeouts");
    assert_eq!(counter(&out, "plugin_breaker_trips"), 1);
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn failed_restarts_are_retried_and_counted_and_never_end_the_run() {
    // The instance made at start-up works; instances made inside [from, until) fail in `init`.
    // A record starting with `!` traps, so the next call needs a new instance, which cannot be
    // made until the window is over. With on_error = "drop", a record is in the output exactly
    // when the plugin judged it.
    let dir = temp_dir();
    let from = unix_now() + 3;
    let until = from + 3;
    let stage = format!(
        "grant_clock = true\nbatch_records_max = 16\nbreaker_failed_calls = 6\n\
         breaker_cooldown_ms = 300\non_error = \"drop\"\n\
         config = {{ fail_from = {from}, fail_until = {until} }}"
    );
    std::fs::write(
        dir.path().join("edge-router.toml"),
        config(
            "clock-init",
            "filter",
            &stage,
            "[pipeline]\nstage_workers = 1\n",
        ),
    )
    .unwrap();
    let (r, mut stdin) = Running::start(
        dir.path(),
        &["run", "-c", "edge-router.toml", "--stats=json"],
    );
    let out_file = dir.path().join("out.ndjson");
    writeln!(stdin, "before").unwrap();
    stdin.flush().unwrap();
    wait_for("the first record", Duration::from_secs(30), || {
        lines_in(&out_file) == 1
    });
    assert!(
        unix_now() < from,
        "the router took too long to start for this test"
    );
    while unix_now() < from {
        std::thread::sleep(Duration::from_millis(50));
    }
    // Inside the window: a trap, then records while no instance can be made.
    let mut sent = 1u64;
    writeln!(stdin, "!trap").unwrap();
    sent += 1;
    while unix_now() < until {
        writeln!(stdin, "inside {sent}").unwrap();
        stdin.flush().unwrap();
        sent += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    // After the window: records until one is judged again (a probe made an instance).
    let deadline = Instant::now() + Duration::from_secs(30);
    while !String::from_utf8_lossy(&std::fs::read(&out_file).unwrap_or_default()).contains("after")
    {
        assert!(Instant::now() < deadline, "the stage never resumed");
        writeln!(stdin, "after {sent}").unwrap();
        stdin.flush().unwrap();
        sent += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(stdin);
    let out = r.wait(Duration::from_secs(60));
    let stats = out.ok_stats();
    assert_eq!(stats.read(), sent);
    assert_eq!(stats.written() + stats.dropped(), sent);
    assert!(
        stats.dropped() >= 2,
        "the trap and the records inside the window"
    );
    let got = String::from_utf8_lossy(&read(&out_file)).into_owned();
    assert!(got.starts_with("before\n"), "{got}");
    assert!(!got.contains("inside"), "{got}");
    assert!(
        counter(&out, "plugin_restart_failures") >= 3,
        "{}",
        out.stderr
    );
    assert!(counter(&out, "plugin_breaker_trips") >= 1, "{}", out.stderr);
    assert_eq!(
        counter(&out, "plugin_breaker_open"),
        0,
        "resumed after the window"
    );
    assert!(
        out.stderr.contains("could not start a new plugin instance"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("init refused: inside the configured failure window")
    );
    assert!(out.stderr.contains("stage `p` resumed"), "{}", out.stderr);
}

#[test]
fn a_10_mb_init_error_is_printed_cut_and_escaped() {
    let dir = temp_dir();
    let out = run(
        dir.path(),
        &config("huge-init-error", "filter", "", ""),
        b"x\n",
    );
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("stage `p`"), "{}", out.stderr);
    assert!(
        out.stderr.contains("rejected its config: EEEE"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("\\n2026-12-07T06:00:00.000000Z ERROR"),
        "escaped"
    );
    assert!(out.stderr.contains(" bytes cut)"), "{}", out.stderr);
    assert!(
        out.stderr.len() < 8 * 1024,
        "{} bytes of stderr",
        out.stderr.len()
    );
    for line in out.stderr.lines() {
        assert!(!line.starts_with("2026-12-07T06:00:00.000000Z"), "{line}");
    }
}

#[test]
fn an_init_past_its_deadline_names_init_timeout_ms() {
    let dir = temp_dir();
    let out = run(
        dir.path(),
        &config("log-flood", "filter", "init_timeout_ms = 1", ""),
        b"x\n",
    );
    // log-flood's init fills 1 MiB, which may or may not fit in a millisecond's epoch ticks;
    // when it does not, the message must name the setting.
    if out.code() != 0 {
        assert!(
            out.stderr
                .contains("init ran longer than init_timeout_ms (1 ms)"),
            "{}",
            out.stderr
        );
    }
}

#[test]
fn plugin_check_names_an_unknown_import() {
    let dir = temp_dir();
    let file = plugin("unknown-import");
    let out = run_in(
        dir.path(),
        &["plugin", "check", file.to_str().unwrap()],
        Input::Null,
    );
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("imports `evil:net/socket@1.0.0`, which the router does not provide"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("does not implement"), "{}", out.stderr);
}

#[test]
fn logging_to_a_closed_pipe_never_stops_the_router() {
    // `2>&1 | head -c 100` closes standard error early; the router used to panic (exit 101).
    let dir = temp_dir();
    let cfg = config("log-flood", "filter", "", "");
    std::fs::write(dir.path().join("edge-router.toml"), cfg).unwrap();
    let input = one_byte_records(20_000);
    std::fs::write(dir.path().join("in.txt"), &input).unwrap();
    let script = format!(
        "{} run -c edge-router.toml --stats=json < in.txt 2>&1 >/dev/null | head -c 100 >/dev/null; \
         echo \"exit=${{PIPESTATUS[0]}}\"",
        common::bin()
    );
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("exit=0"),
        "{said} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(read(&dir.path().join("out.ndjson")), input);
}
