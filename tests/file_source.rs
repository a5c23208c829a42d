//! The file source (`kind = "file"`) with real files: where reading starts, files appended and
//! appearing while it runs, rename-and-create rotation under a writer with `ack = "delivered"`
//! and a clean restart in the middle (every line exactly once), copytruncate, an unterminated
//! last line, a line over `max_record_bytes`, multi-line Java stack traces, a corrupt
//! checkpoint file, and the `file` attribute in sink paths.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Running, dead_letters, temp_dir, wait_for};

const LONG: Duration = Duration::from_secs(60);

/// Writes `pipeline.toml` in `dir`: a file source `logs` reading `include` (with `extra` keys)
/// into the file sink `out.ndjson`, dead letters in `dead.ndjson`. Fast polling so tests
/// finish quickly.
fn config(dir: &Path, include: &str, extra: &str) {
    let text = format!(
        r#"
[sources.logs]
kind = "file"
include = ["{include}"]
checkpoint_dir = "state"
rescan_interval_ms = 20
checkpoint_interval_ms = 50
{extra}

[sinks.out]
kind = "file"
path = "out.ndjson"

[dead_letter]
path = "dead.ndjson"
"#
    );
    std::fs::write(dir.join("pipeline.toml"), text).unwrap();
}

fn start(dir: &Path) -> Running {
    let (mut run, stdin) = Running::start(dir, &["run", "-c", "pipeline.toml", "--stats=json"]);
    drop(stdin);
    run.wait_for_stderr("source `logs` watching", LONG);
    run
}

fn append(path: &Path, text: &str) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// The output's lines.
fn out_lines(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("out.ndjson")).unwrap_or_default();
    text.lines().map(str::to_owned).collect()
}

fn wait_lines(dir: &Path, n: usize) {
    wait_for(&format!("{n} output lines"), LONG, || {
        out_lines(dir).len() >= n
    });
}

/// Stops the router with SIGTERM; it must exit 0 with its accounting balanced.
fn stop(run: Running) -> common::Stats {
    run.signal("TERM");
    run.wait(LONG).ok_stats()
}

fn input(dir: &Path) -> PathBuf {
    let d = dir.join("in");
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn start_at_end_reads_only_new_lines_and_files_appearing_later_whole() {
    let tmp = temp_dir();
    let dir = tmp.path();
    let logs = input(dir);
    append(&logs.join("a.log"), "old-1\nold-2\n");
    // Compressed rotated files are left alone by default.
    append(&logs.join("a.log.1.gz"), "not text\n");
    config(dir, &format!("{}/*", logs.display()), "");
    let run = start(dir);
    append(&logs.join("a.log"), "new-1\n");
    append(&logs.join("b.log"), "b-1\nb-2\n");
    wait_lines(dir, 3);
    append(&logs.join("a.log"), "new-2\n");
    wait_lines(dir, 4);
    let stats = stop(run);
    let mut got = out_lines(dir);
    got.sort();
    assert_eq!(got, ["b-1", "b-2", "new-1", "new-2"]);
    assert_eq!(stats.read(), 4);
}

#[test]
fn start_at_beginning_reads_what_is_there_and_sets_the_file_attribute() {
    let tmp = temp_dir();
    let dir = tmp.path();
    let logs = input(dir);
    append(&logs.join("a.log"), "a-1\na-2\n");
    std::fs::create_dir_all(logs.join("sub")).unwrap();
    append(&logs.join("sub/b.log"), "b-1\n");
    let text = format!(
        r#"
[sources.logs]
kind = "file"
include = ["{}/**/*.log"]
start_at = "beginning"
checkpoint_dir = "state"
rescan_interval_ms = 20

[sinks.out]
kind = "file"
path = "out/{{attr.file}}.ndjson"
"#,
        logs.display()
    );
    std::fs::write(dir.join("pipeline.toml"), text).unwrap();
    let run = start(dir);
    let files = || -> HashMap<String, String> {
        std::fs::read_dir(dir.join("out"))
            .map(|rd| {
                rd.map(|e| {
                    let e = e.unwrap();
                    (
                        e.file_name().to_string_lossy().into_owned(),
                        std::fs::read_to_string(e.path()).unwrap(),
                    )
                })
                .collect()
            })
            .unwrap_or_default()
    };
    wait_for("both files' records", LONG, || {
        files().values().map(|t| t.lines().count()).sum::<usize>() == 3
    });
    stop(run);
    let files = files();
    let a = files
        .iter()
        .find(|(k, _)| k.ends_with("_in_a.log.ndjson"))
        .unwrap_or_else(|| panic!("{files:?}"));
    assert_eq!(a.1, "a-1\na-2\n");
    let b = files
        .iter()
        .find(|(k, _)| k.ends_with("_in_sub_b.log.ndjson"))
        .unwrap_or_else(|| panic!("{files:?}"));
    assert_eq!(b.1, "b-1\n");
}

/// Appends `line-N` lines to `path` and, every `rotate_every` lines, rotates it the way
/// logrotate's default does: rename to `path.1` (replacing the previous one), create anew.
fn write_rotating(path: &Path, from: u64, to: u64, rotate_every: u64) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    for n in from..to {
        if n > from && n % rotate_every == 0 {
            let mut rotated = path.as_os_str().to_owned();
            rotated.push(".1");
            std::fs::rename(path, &rotated).unwrap();
            f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .unwrap();
        }
        writeln!(f, "line-{n}").unwrap();
        if n % 50 == 0 {
            // A steady writer, not a burst.
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn assert_each_once(dir: &Path, n: u64) {
    let got = out_lines(dir);
    let mut seen = vec![0u32; n as usize];
    for l in &got {
        let i: usize = l
            .strip_prefix("line-")
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("unexpected line {l:?}"));
        seen[i] += 1;
    }
    let missing: Vec<usize> = (0..n as usize).filter(|i| seen[*i] == 0).collect();
    let twice: Vec<usize> = (0..n as usize).filter(|i| seen[*i] > 1).collect();
    assert!(
        missing.is_empty() && twice.is_empty(),
        "missing {missing:?}, more than once {twice:?}"
    );
}

#[test]
fn rename_and_create_rotation_and_a_clean_restart_deliver_every_line_once() {
    let tmp = temp_dir();
    let dir = tmp.path();
    let logs = input(dir);
    let app = logs.join("app.log");
    config(
        dir,
        &app.display().to_string(),
        "start_at = \"beginning\"\nack = \"delivered\"\nrotate_wait_ms = 300",
    );
    let run = start(dir);
    // A writer rotating every 700 lines while the router reads.
    let writer = {
        let app = app.clone();
        std::thread::spawn(move || write_rotating(&app, 0, 3000, 700))
    };
    writer.join().unwrap();
    wait_lines(dir, 3000);
    stop(run);
    // Written while the router is down: read from the checkpoint on, nothing twice.
    write_rotating(&app, 3000, 3300, 100_000);
    let run = start(dir);
    wait_lines(dir, 3300);
    // And rotation again after the restart.
    write_rotating(&app, 3300, 4200, 400);
    wait_lines(dir, 4200);
    let stats = stop(run);
    assert_each_once(dir, 4200);
    assert_eq!(stats.read(), 300 + 900, "read after the restart");
}

#[test]
fn a_rotated_file_still_matched_by_the_include_pattern_is_not_read_again() {
    let tmp = temp_dir();
    let dir = tmp.path();
    let logs = input(dir);
    let app = logs.join("app.log");
    // `app.log*` matches the rotated `app.log.1` too: it is known as the same file.
    config(
        dir,
        &format!("{}/app.log*", logs.display()),
        "start_at = \"beginning\"\nrotate_wait_ms = 100",
    );
    let run = start(dir);
    write_rotating(&app, 0, 2000, 500);
    wait_lines(dir, 2000);
    // More lines after the rotations: still nothing twice.
    append(&app, "line-2000\n");
    wait_lines(dir, 2001);
    stop(run);
    assert_each_once(dir, 2001);
}

#[test]
fn copytruncate_reads_the_file_again_from_its_start_with_a_warning() {
    let tmp = temp_dir();
    let dir = tmp.path();
    let logs = input(dir);
    let app = logs.join("app.log");
    config(dir, &app.display().to_string(), "start_at = \"beginning\"");
    let mut run = start(dir);
    append(
        &app,
        &(0..100).map(|n| format!("line-{n}\n")).collect::<String>(),
    );
    wait_lines(dir, 100);
    // copytruncate: copy, then truncate in place; the writer goes on at offset 0.
    std::fs::copy(&app, logs.join("app.log.1")).unwrap();
    OpenOptions::new()
        .write(true)
        .open(&app)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(
        &app,
        &(100..150)
            .map(|n| format!("line-{n}\n"))
            .collect::<String>(),
    );
    wait_lines(dir, 150);
    run.wait_for_stderr("was truncated", LONG);
    stop(run);
    assert_each_once(dir, 150);
}

#[test]
fn an_unterminated_line_waits_for_its_end_or_the_timeout() {
    let tmp = temp_dir();
    let dir = tmp.path();
    let logs = input(dir);
    let app = logs.join("app.log");
    let other = logs.join("other.log");
    append(&app, "");
    append(&other, "");
    config(
        dir,
        &format!("{}/*.log", logs.display()),
        "partial_line_timeout_ms = 300",
    );
    let run = start(dir);
    append(&app, "first\nsecond, half");
    wait_lines(dir, 1);
    append(&app, " and the rest\n");
    wait_lines(dir, 2);
    // A writer that stops mid-line: passed on after the timeout, once.
    append(&other, "no line end");
    wait_lines(dir, 3);
    append(&other, "\nnext\n");
    wait_lines(dir, 4);
    stop(run);
    let mut got = out_lines(dir);
    got.sort();
    assert_eq!(
        got,
        ["first", "next", "no line end", "second, half and the rest"]
    );
}

#[test]
fn a_line_over_max_record_bytes_is_dead_lettered_with_file_and_offset() {
    let tmp = temp_dir();
    let dir = tmp.path();
    let logs = input(dir);
    let app = logs.join("app.log");
    config(
        dir,
        &app.display().to_string(),
        "start_at = \"beginning\"\nmax_record_bytes = 100",
    );
    let run = start(dir);
    // One too long line within a read, one that is longer than a read (skipped as it comes).
    let long = "x".repeat(500);
    let huge = "y".repeat(600 << 10);
    append(&app, &format!("ok-1\n{long}\nok-2\n{huge}\r\nok-3\n"));
    wait_lines(dir, 3);
    let stats = stop(run);
    assert_eq!(out_lines(dir), ["ok-1", "ok-2", "ok-3"]);
    let letters = dead_letters(&dir.join("dead.ndjson"));
    assert_eq!(letters.len(), 2, "{letters:?}");
    assert_eq!(letters[0].size, 500);
    assert!(
        letters[0].reason.contains(&format!(
            "file {} offset 5: record of 500 bytes exceeds max_record_bytes (100)",
            app.display()
        )),
        "{}",
        letters[0].reason
    );
    assert_eq!(letters[0].payload, vec![b'x'; 100]);
    assert_eq!(letters[1].size, 600 << 10);
    let offset = 5 + 501 + 5;
    assert!(
        letters[1]
            .reason
            .contains(&format!("offset {offset}: record of {} bytes", 600 << 10)),
        "{}",
        letters[1].reason
    );
    assert_eq!(stats.dead_lettered(), 2);
}

#[test]
fn java_stack_traces_are_joined_into_one_record() {
    let tmp = temp_dir();
    let dir = tmp.path();
    let logs = input(dir);
    let app = logs.join("app.log");
    config(
        dir,
        &app.display().to_string(),
        "start_at = \"beginning\"\n[sources.logs.multiline]\nstart_pattern = '^\\d{4}-\\d{2}-\\d{2} '\ntimeout_ms = 200",
    );
    let run = start(dir);
    let java = "2024-05-01 10:00:01 ERROR request failed\n\
                java.lang.IllegalStateException: no session\n\
                \tat com.example.Handler.handle(Handler.java:42)\n\
                \tat com.example.Server.run(Server.java:7)\n\
                Caused by: java.io.IOException: broken pipe\n\
                \tat java.base/sun.nio.ch.IOUtil.write(IOUtil.java:62)\n\
                \t... 2 more\n";
    let text = format!("2024-05-01 10:00:00 INFO start\n{java}2024-05-01 10:00:02 INFO ok\n{java}");
    append(&app, &text);
    // Four records; the last is passed on by the timeout (no line follows it).
    wait_for("the whole input in the output", LONG, || {
        std::fs::read(dir.join("out.ndjson")).unwrap_or_default() == text.as_bytes()
    });
    let stats = stop(run);
    assert_eq!(stats.written(), 4);
}

#[test]
fn a_corrupt_checkpoint_file_is_reported_and_the_source_starts_per_start_at() {
    let tmp = temp_dir();
    let dir = tmp.path();
    let logs = input(dir);
    let app = logs.join("app.log");
    append(&app, "one\ntwo\n");
    std::fs::create_dir_all(dir.join("state")).unwrap();
    std::fs::write(
        dir.join("state/logs.json"),
        "{\"version\": 1, \"files\": [tr",
    )
    .unwrap();
    config(dir, &app.display().to_string(), "start_at = \"beginning\"");
    let mut run = start(dir);
    run.wait_for_stderr("checkpoint file", LONG);
    wait_lines(dir, 2);
    stop(run);
    assert_eq!(out_lines(dir), ["one", "two"]);
    // Replaced by a good one: a restart reads nothing again.
    let run = start(dir);
    append(&app, "three\n");
    wait_lines(dir, 3);
    stop(run);
    assert_eq!(out_lines(dir), ["one", "two", "three"]);
}

/// configs/tail-app-logs.toml runs as it is, from a working directory with a `logs/` folder.
#[test]
fn the_example_config_tails_logs_into_one_file_per_log() {
    let tmp = temp_dir();
    let dir = tmp.path();
    std::fs::create_dir_all(dir.join("logs/web")).unwrap();
    let first = "2024-05-01 10:00:00 INFO start\n";
    let access = "2024-05-01T10:00:00 GET /\n";
    let trace = "2024-05-01 10:00:01 ERROR failed\njava.lang.IllegalStateException: x\n\tat a.B.c(B.java:1)\n";
    append(&dir.join("logs/app.log"), &format!("{first}{trace}"));
    append(&dir.join("logs/web/access.log"), access);
    append(
        &dir.join("logs/debug-1.log"),
        "2024-05-01 10:00:00 excluded\n",
    );
    let config = common::repo_root().join("configs/tail-app-logs.toml");
    let (mut run, stdin) = Running::start(
        dir,
        &["run", "-c", config.to_str().unwrap(), "--stats=json"],
    );
    drop(stdin);
    run.wait_for_stderr("source `app` watching 2 files", LONG);
    let out = dir.join("edge-router-out");
    let all = || -> Vec<u8> {
        let mut files = Vec::new();
        for d in std::fs::read_dir(&out).into_iter().flatten() {
            let d = d.unwrap().path();
            if d.is_dir() {
                for f in std::fs::read_dir(&d).unwrap() {
                    files.push(f.unwrap().path());
                }
            }
        }
        files.sort();
        files
            .iter()
            .flat_map(|f| std::fs::read(f).unwrap())
            .collect()
    };
    // The trace is the last record of its file: passed on by multiline.timeout_ms.
    wait_for("the three records", LONG, || {
        all().len() == first.len() + trace.len() + access.len()
    });
    let stats = stop(run);
    assert_eq!(stats.written(), 3);
    let dirs: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|d| d.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".log"))
        .collect();
    assert_eq!(dirs.len(), 2, "{dirs:?}");
    assert!(dir.join("edge-router-state/checkpoints/app.json").is_file());
}

#[test]
fn json_framing_dead_letters_invalid_lines_with_file_and_offset() {
    let tmp = temp_dir();
    let dir = tmp.path();
    let logs = input(dir);
    let app = logs.join("app.json");
    config(
        dir,
        &app.display().to_string(),
        "start_at = \"beginning\"\nframing = \"json\"",
    );
    let run = start(dir);
    append(&app, "{\"a\":1}\nnot json\n{\"b\":2}\n");
    wait_lines(dir, 2);
    let stats = stop(run);
    assert_eq!(out_lines(dir), ["{\"a\":1}", "{\"b\":2}"]);
    let letters = dead_letters(&dir.join("dead.ndjson"));
    assert_eq!(letters.len(), 1);
    assert!(
        letters[0]
            .reason
            .contains(&format!("file {} offset 8: ", app.display())),
        "{}",
        letters[0].reason
    );
    assert_eq!(letters[0].payload, b"not json");
    assert_eq!(stats.dead_lettered(), 1);
}

#[test]
fn many_files_take_turns_within_max_open_files() {
    let tmp = temp_dir();
    let dir = tmp.path();
    let logs = input(dir);
    for f in 0..30 {
        let text: String = (0..200).map(|n| format!("f{f}-{n}\n")).collect();
        append(&logs.join(format!("{f}.log")), &text);
    }
    config(
        dir,
        &format!("{}/*.log", logs.display()),
        "start_at = \"beginning\"\nmax_open_files = 4",
    );
    let run = start(dir);
    // Log files the router holds open, sampled until everything is read.
    let open_logs = || {
        std::fs::read_dir(format!("/proc/{}/fd", run.pid()))
            .map(|fds| {
                fds.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                    .filter(|p| p.starts_with(&logs))
                    .count()
            })
            .unwrap_or(0)
    };
    let mut most = 0;
    wait_for("6000 lines", LONG, || {
        most = most.max(open_logs());
        out_lines(dir).len() >= 6000
    });
    // The cap, plus the one a rescan opens for a moment to read a file's first bytes.
    assert!(most <= 5, "{most} log files open at once");
    stop(run);
    let mut got = out_lines(dir);
    got.sort();
    let mut want: Vec<String> = (0..30)
        .flat_map(|f| (0..200).map(move |n| format!("f{f}-{n}")))
        .collect();
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn a_file_deleted_while_open_is_read_to_its_end() {
    let tmp = temp_dir();
    let dir = tmp.path();
    let logs = input(dir);
    let app = logs.join("app.log");
    config(
        dir,
        &app.display().to_string(),
        "start_at = \"beginning\"\nrotate_wait_ms = 100",
    );
    let run = start(dir);
    append(
        &app,
        &(0..100).map(|n| format!("line-{n}\n")).collect::<String>(),
    );
    wait_lines(dir, 100);
    // Written and deleted at once: the router still holds it open.
    append(
        &app,
        &(100..5000)
            .map(|n| format!("line-{n}\n"))
            .collect::<String>(),
    );
    std::fs::remove_file(&app).unwrap();
    wait_lines(dir, 5000);
    stop(run);
    assert_each_once(dir, 5000);
}

#[test]
fn a_line_unfinished_at_shutdown_is_read_whole_after_the_restart() {
    let tmp = temp_dir();
    let dir = tmp.path();
    let logs = input(dir);
    let app = logs.join("app.log");
    config(
        dir,
        &app.display().to_string(),
        "start_at = \"beginning\"\nack = \"delivered\"\npartial_line_timeout_ms = 600000",
    );
    let run = start(dir);
    append(&app, "one\ntw");
    wait_lines(dir, 1);
    stop(run);
    append(&app, "o\nthree\n");
    let run = start(dir);
    wait_lines(dir, 3);
    stop(run);
    assert_eq!(out_lines(dir), ["one", "two", "three"]);
}

#[test]
fn kill_9_loses_nothing_with_ack_delivered() {
    let tmp = temp_dir();
    let dir = tmp.path();
    let logs = input(dir);
    let app = logs.join("app.log");
    config(
        dir,
        &app.display().to_string(),
        "start_at = \"beginning\"\nack = \"delivered\"",
    );
    let n = 200_000u64;
    append(&app, "");
    let run = start(dir);
    // A writer appending while the router is killed and started again.
    let writer = {
        let app = app.clone();
        std::thread::spawn(move || {
            for chunk in 0..n / 1000 {
                let from = chunk * 1000;
                append(
                    &app,
                    &(from..from + 1000)
                        .map(|i| format!("line-{i}\n"))
                        .collect::<String>(),
                );
                std::thread::sleep(Duration::from_millis(3));
            }
        })
    };
    wait_for("a quarter of the lines", LONG, || {
        out_lines(dir).len() >= n as usize / 4
    });
    run.kill();
    // The sink may have been killed mid-write: a torn last line is not a record (its batch was
    // not acknowledged, so it is read again).
    let out = dir.join("out.ndjson");
    let text = std::fs::read(&out).unwrap();
    let whole = text.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
    OpenOptions::new()
        .write(true)
        .open(&out)
        .unwrap()
        .set_len(whole as u64)
        .unwrap();
    let before = out_lines(dir).len();
    let run = start(dir);
    writer.join().unwrap();
    wait_for("every line at least once", LONG, || {
        let got = out_lines(dir);
        got.len() >= n as usize && {
            let mut seen = vec![false; n as usize];
            for l in &got {
                if let Some(i) = l
                    .strip_prefix("line-")
                    .and_then(|s| s.parse::<usize>().ok())
                {
                    seen[i] = true;
                }
            }
            seen.iter().all(|s| *s)
        }
    });
    stop(run);
    let got = out_lines(dir);
    let duplicates = got.len() - n as usize;
    // Read again: what was in flight plus the acknowledgements since the last checkpoint
    // write (50 ms here), far less than what was written before the kill.
    assert!(
        before < n as usize && duplicates < before,
        "{duplicates} duplicates, {before} written before the kill"
    );
    eprintln!("{before} lines written before the kill, {duplicates} read again after it");
}

#[test]
fn a_reload_that_changes_the_sinks_leaves_the_file_source_reading() {
    let tmp = temp_dir();
    let dir = tmp.path();
    let logs = input(dir);
    let app = logs.join("app.log");
    config(dir, &app.display().to_string(), "start_at = \"beginning\"");
    let mut run = start(dir);
    // A writer going on through the reload.
    let writer = {
        let app = app.clone();
        std::thread::spawn(move || {
            for chunk in 0..40u64 {
                let from = chunk * 100;
                append(
                    &app,
                    &(from..from + 100)
                        .map(|i| format!("line-{i}\n"))
                        .collect::<String>(),
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    wait_lines(dir, 500);
    let text = std::fs::read_to_string(dir.join("pipeline.toml")).unwrap();
    std::fs::write(
        dir.join("pipeline.toml"),
        text.replace("path = \"out.ndjson\"", "path = \"out2.ndjson\""),
    )
    .unwrap();
    run.signal("HUP");
    run.wait_for_stderr("reloaded:", LONG);
    writer.join().unwrap();
    let both = || {
        let mut lines = out_lines(dir);
        let second = std::fs::read_to_string(dir.join("out2.ndjson")).unwrap_or_default();
        lines.extend(second.lines().map(str::to_owned));
        lines
    };
    wait_for("4000 lines in the two outputs", LONG, || {
        both().len() >= 4000
    });
    stop(run);
    let all = both();
    let mut seen = vec![0u32; 4000];
    for l in &all {
        seen[l.strip_prefix("line-").unwrap().parse::<usize>().unwrap()] += 1;
    }
    assert!(seen.iter().all(|n| *n == 1), "not each line once");
    assert!(
        !std::fs::read_to_string(dir.join("out2.ndjson"))
            .unwrap()
            .is_empty()
    );
}
