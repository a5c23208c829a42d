//! Configuration: the example configs validate and run, every kind of mistake is reported with
//! file, line, column and key path, quick-mode URIs are checked the same way, and the command
//! line basics (`--version`, `--help`, the embedded default) work.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use common::{Input, Output, assert_bytes_eq, read, run_in, temp_dir};

/// The example configs in `configs/`, sorted.
fn example_configs() -> Vec<PathBuf> {
    let dir = common::repo_root().join("configs");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no configs in {}", dir.display());
    files
}

#[test]
fn every_example_config_validates() {
    for config in example_configs() {
        let dir = temp_dir();
        let path = config.to_str().unwrap();
        let out = run_in(dir.path(), &["validate", "-c", path], Input::Null);
        assert_eq!(out.code(), 0, "{path}:\n{}", out.stderr);
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert!(
            stdout.starts_with(&format!("{path}: ok")),
            "{path}: stdout {stdout:?}"
        );
        // Validation touches nothing.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "{path}");
    }
}

#[test]
fn every_example_config_runs_over_a_small_input() {
    // Few devices: the partitioned example makes a gzip file per device.
    let mut input = common::sensor_few_devices(500);
    input.extend_from_slice(b"DEBUG starting\nERROR disk full\nnot json at all\n");
    for config in example_configs() {
        // A config for a network sink needs its server: tests/kinesis.rs and tests/firehose.rs
        // run them against one. A network source runs until stopped: tests/http.rs runs it;
        // so does a file source (it tails its files): tests/file_source.rs runs it.
        let text = std::fs::read_to_string(&config).unwrap();
        if ["kinesis", "firehose", "http"]
            .iter()
            .any(|k| text.contains(&format!("kind = \"{k}\"")))
            || has_file_source(&text)
        {
            continue;
        }
        let dir = temp_dir();
        let path = config.to_str().unwrap();
        let out = run_in(
            dir.path(),
            &["run", "-c", path, "--stats=json"],
            Input::Bytes(&input),
        );
        let stats = out.ok_stats();
        assert_eq!(stats.read(), 503, "{path}");
        assert!(stats.written() > 0, "{path}: nothing written");
        // Records went somewhere: a file under the working directory or standard output.
        let mut files = Vec::new();
        collect_files(dir.path(), &mut files);
        assert!(
            !files.is_empty() || !out.stdout.is_empty(),
            "{path}: no output at all"
        );
    }
}

/// True when a config has a `kind = "file"` source.
fn has_file_source(text: &str) -> bool {
    let doc: toml_edit::DocumentMut = text.parse().unwrap();
    doc.get("sources")
        .and_then(|s| s.as_table_like())
        .is_some_and(|sources| {
            sources.iter().any(|(_, t)| {
                t.as_table_like()
                    .and_then(|t| t.get("kind"))
                    .and_then(|k| k.as_str())
                    == Some("file")
            })
        })
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            collect_files(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// Validates `text` as `dir/bad.toml` (from within `dir`) and returns the output.
fn validate_text(text: &str) -> (tempfile::TempDir, Output) {
    let dir = temp_dir();
    std::fs::write(dir.path().join("bad.toml"), text).unwrap();
    let out = run_in(dir.path(), &["validate", "-c", "bad.toml"], Input::Null);
    (dir, out)
}

/// Asserts exit code 2 and that stderr holds exactly the `expected` problems, in order, then
/// the problem count.
#[track_caller]
fn assert_problems(text: &str, expected: &[&str]) {
    let (_dir, out) = validate_text(text);
    assert_eq!(out.code(), 2, "exit code; stderr:\n{}", out.stderr);
    let lines: Vec<&str> = out.stderr.lines().collect();
    let n = expected.len();
    assert_eq!(
        lines.len(),
        n + 1,
        "expected {n} problem(s) and a count; stderr:\n{}",
        out.stderr
    );
    for (line, want) in lines.iter().zip(expected) {
        assert!(
            line.starts_with(want),
            "expected a line starting with\n  {want}\nfound\n  {line}\nstderr:\n{}",
            out.stderr
        );
    }
    assert_eq!(lines[n], format!("bad.toml: {n} problem(s)"));
    assert!(out.stdout.is_empty());
}

/// A valid config to which the cases add mistakes: 6 lines, ending with a newline.
const BASE: &str = r#"[sources.in]
kind = "stdin"

[sinks.out]
kind = "file"
path = "out.ndjson"
"#;

#[test]
fn an_unknown_key_is_reported_with_its_position() {
    assert_problems(
        &format!("{BASE}colour = \"blue\"\n"),
        &["bad.toml:7:1: `sinks.out.colour`: unknown key `colour`; expected one of: "],
    );
    // The list of keys names the real ones.
    let (_dir, out) = validate_text(&format!("{BASE}colour = \"blue\"\n"));
    for key in ["path", "rotate_bytes", "compression", "partition"] {
        assert!(
            out.stderr.contains(key),
            "{key} missing from: {}",
            out.stderr
        );
    }
    assert_problems(
        &format!("[pipeline]\nqueue_size = 10\n\n{BASE}"),
        &["bad.toml:2:1: `pipeline.queue_size`: unknown key `queue_size`"],
    );
    assert_problems(
        &format!("{BASE}\n[extras]\nx = 1\n"),
        // The key inside the brackets of the table header.
        &["bad.toml:8:2: `extras`: unknown key `extras`"],
    );
}

#[test]
fn a_value_of_the_wrong_type_is_reported() {
    assert_problems(
        &format!("{BASE}rotate_bytes = true\n"),
        &["bad.toml:7:16: `sinks.out.rotate_bytes`: expected a size"],
    );
    assert_problems(
        &format!("[pipeline]\nshutdown_grace_ms = \"5s\"\n\n{BASE}"),
        &["bad.toml:2:21: `pipeline.shutdown_grace_ms`: expected a whole number, found string"],
    );
    assert_problems(
        &BASE.replace("kind = \"stdin\"", "kind = \"stdin\"\nskip_empty = \"no\""),
        &["bad.toml:3:14: `sources.in.skip_empty`: expected true or false, found string"],
    );
}

#[test]
fn an_out_of_range_number_is_reported() {
    assert_problems(
        &format!("[pipeline]\nshutdown_grace_ms = 99999999999\n\n{BASE}"),
        &[
            "bad.toml:2:21: `pipeline.shutdown_grace_ms`: 99999999999 is out of range; allowed: 0 to 3600000",
        ],
    );
    assert_problems(
        &format!("{BASE}compression = \"gzip\"\ncompression_level = 12\n"),
        &["bad.toml:8:21: `sinks.out.compression_level`: 12 is out of range; allowed: 0 to 9"],
    );
    assert_problems(
        &BASE.replace(
            "kind = \"stdin\"",
            "kind = \"stdin\"\nmax_record_bytes = \"128MiB\"",
        ),
        &["bad.toml:3:20: `sources.in.max_record_bytes`: 134217728 is out of range"],
    );
    assert_problems(
        &format!("{BASE}max_open_files = -1\n"),
        &["bad.toml:7:18: `sinks.out.max_open_files`: must not be negative"],
    );
}

#[test]
fn an_unknown_sink_kind_is_reported() {
    assert_problems(
        &format!("{BASE}\n[sinks.stream]\nkind = \"kafka\"\n"),
        &[
            "bad.toml:9:8: `sinks.stream.kind`: unknown sink kind \"kafka\"; expected one of: file, stdout, kinesis",
        ],
    );
}

#[test]
fn an_unknown_sink_name_in_default_sinks_or_a_route_rule_is_reported() {
    assert_problems(
        &format!("[pipeline]\ndefault_sinks = [\"out\", \"nope\"]\n\n{BASE}"),
        &["bad.toml:2:25: `pipeline.default_sinks[1]`: unknown sink \"nope\"; the sinks are: out"],
    );
    assert_problems(
        &format!(
            "{BASE}\n[[stages]]\nkind = \"route\"\n\n[[stages.rules]]\nprefix = \"ERROR\"\nsinks = [\"out\", \"ghost\"]\n"
        ),
        &[
            "bad.toml:13:17: `stages[0].rules[0].sinks[1]`: unknown sink \"ghost\"; the sinks are: out",
        ],
    );
    assert_problems(
        &format!(
            "{BASE}\n[[stages]]\nkind = \"route\"\ndefault = [\"void\"]\n\n[[stages.rules]]\nprefix = \"E\"\nsinks = [\"out\"]\n"
        ),
        &["bad.toml:10:12: `stages[0].default[0]`: unknown sink \"void\""],
    );
}

#[test]
fn a_bad_path_template_is_reported() {
    let with_path = |p: &str| BASE.replace("path = \"out.ndjson\"", &format!("path = \"{p}\""));
    assert_problems(
        &with_path("out/{device}/x.ndjson"),
        &[
            "bad.toml:6:8: `sinks.out.path`: invalid path template: at character 4: unknown placeholder `{device}`",
        ],
    );
    assert_problems(
        &with_path("out/%Q.ndjson"),
        &["bad.toml:6:8: `sinks.out.path`: invalid path template: at character 4:"],
    );
    assert_problems(
        &with_path("out/{partition_key.ndjson"),
        &["bad.toml:6:8: `sinks.out.path`: invalid path template:"],
    );
}

#[test]
fn a_bad_field_path_is_reported() {
    assert_problems(
        &format!(
            "{BASE}\n[[stages]]\nkind = \"filter\"\nkeep_if = {{ field = \"a..b\", equals = \"x\" }}\n"
        ),
        &["bad.toml:10:21: `stages[0].keep_if.field`: invalid field path:"],
    );
    assert_problems(
        &format!("{BASE}partition = \"field:\"\n"),
        &["bad.toml:7:13: `sinks.out.partition`: bad field path"],
    );
}

#[test]
fn a_toml_syntax_error_is_reported_with_its_position() {
    assert_problems(
        &format!("{BASE}rotate_bytes = \"1MiB\n"),
        &["bad.toml:7:21: TOML syntax error: "],
    );
    assert_problems(
        &format!("{BASE}[sinks.more\nkind = \"stdout\"\n"),
        &["bad.toml:7:12: TOML syntax error: "],
    );
    assert_problems(
        &format!("{BASE}path = \"again.ndjson\"\n"),
        &["bad.toml:7:1: TOML syntax error: "],
    );
}

#[test]
fn a_missing_kind_is_reported_at_its_table() {
    let (_dir, out) =
        validate_text("[sources.in]\nkind = \"stdin\"\n\n[sinks.out]\npath = \"out.ndjson\"\n");
    assert_eq!(out.code(), 2);
    assert!(
        out.stderr
            .lines()
            .next()
            .unwrap()
            .starts_with("bad.toml:4:1: `sinks.out`: missing required key `sinks.out.kind`"),
        "{}",
        out.stderr
    );
    assert_problems(
        "[sources.in]\n\n[sinks.out]\nkind = \"stdout\"\n",
        &["bad.toml:1:1: `sources.in`: missing required key `sources.in.kind`"],
    );
}

#[test]
fn a_filter_with_both_keep_if_and_drop_if_is_reported() {
    assert_problems(
        &format!(
            "{BASE}\n[[stages]]\nkind = \"filter\"\nkeep_if = {{ prefix = \"a\" }}\ndrop_if = {{ prefix = \"b\" }}\n"
        ),
        &["bad.toml:8:1: `stages[0]`: a filter needs exactly one of `keep_if` or `drop_if`"],
    );
    assert_problems(
        &format!("{BASE}\n[[stages]]\nkind = \"filter\"\nname = \"empty\"\n"),
        &["bad.toml:8:1: `stages[0]`: a filter needs exactly one of `keep_if` or `drop_if`"],
    );
}

#[test]
fn a_file_with_several_mistakes_reports_all_of_them_in_order() {
    let text = r#"[pipeline]
queue_records_max = "lots"
default_sinks = ["nope"]

[sources.in]
kind = "stdin"
framing = "xml"

[sinks.out]
kind = "file"
path = "out/{bogus}.ndjson"
rotate_bytes = true
colour = "red"

[sinks.k]
kind = "kafka"

[[stages]]
kind = "filter"
keep_if = { prefix = "a" }
drop_if = { prefix = "b" }

[[stages]]
kind = "route"
[[stages.rules]]
field = "a..b"
equals = "x"
sinks = ["ghost"]
"#;
    assert_problems(
        text,
        &[
            "bad.toml:2:21: `pipeline.queue_records_max`: expected a whole number, found string",
            "bad.toml:3:18: `pipeline.default_sinks[0]`: unknown sink \"nope\"; the sinks are: out, k",
            "bad.toml:7:11: `sources.in.framing`: unknown value \"xml\"; expected one of: lines, json",
            "bad.toml:11:8: `sinks.out.path`: invalid path template",
            "bad.toml:12:16: `sinks.out.rotate_bytes`: expected a size",
            "bad.toml:13:1: `sinks.out.colour`: unknown key `colour`",
            "bad.toml:16:8: `sinks.k.kind`: unknown sink kind \"kafka\"",
            "bad.toml:18:1: `stages[0]`: a filter needs exactly one of `keep_if` or `drop_if`",
            "bad.toml:26:9: `stages[1].rules[0].field`: invalid field path",
            "bad.toml:28:10: `stages[1].rules[0].sinks[0]`: unknown sink \"ghost\"",
        ],
    );
}

#[test]
fn run_with_a_bad_config_exits_2_without_reading_or_writing() {
    let dir = temp_dir();
    std::fs::write(
        dir.path().join("bad.toml"),
        format!("{BASE}rotate_bytes = \"lots\"\n"),
    )
    .unwrap();
    let out = run_in(
        dir.path(),
        &["run", "-c", "bad.toml"],
        Input::Bytes(b"a record\n"),
    );
    assert_eq!(out.code(), 2, "{}", out.stderr);
    assert!(
        out.stderr
            .starts_with("bad.toml:7:16: `sinks.out.rotate_bytes`: expected a size like \"64KiB\", found \"lots\""),
        "{}",
        out.stderr
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "only bad.toml"
    );
    let out = run_in(dir.path(), &["validate", "-c", "missing.toml"], Input::Null);
    assert_eq!(out.code(), 2);
    assert!(
        out.stderr
            .starts_with("missing.toml: cannot read config file"),
        "{}",
        out.stderr
    );
}

/// Runs quick mode with `args` and expects exit 2 with `expected` on stderr and no files.
#[track_caller]
fn quick_mode_error(args: &[&str], expected: &str) {
    let dir = temp_dir();
    let mut all = vec!["run"];
    all.extend_from_slice(args);
    let out = run_in(dir.path(), &all, Input::Bytes(b"a record\n"));
    assert_eq!(out.code(), 2, "{args:?}: {}", out.stderr);
    assert!(
        out.stderr.lines().any(|l| l.starts_with(expected)),
        "{args:?}: expected a line starting with\n  {expected}\nstderr:\n{}",
        out.stderr
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "{args:?}"
    );
}

#[test]
fn quick_mode_uri_errors_name_the_argument_and_the_key() {
    quick_mode_error(
        &["--sink", "file:x?rotate_bytes=abc"],
        "--sink \"file:x?rotate_bytes=abc\": `sinks.file.rotate_bytes`: expected a size like \"64KiB\", found \"abc\"",
    );
    quick_mode_error(
        &["--sink", "kafka://broker:9092"],
        "--sink \"kafka://broker:9092\": unknown scheme \"kafka\"; expected one of: file:PATH, stdout, kinesis://STREAM",
    );
    quick_mode_error(
        &["--sink", "file:x?colour=red"],
        "--sink \"file:x?colour=red\": `sinks.file.colour`: unknown key `colour`; expected one of: ",
    );
    quick_mode_error(
        &["--source", "stdin?framing=xml", "--sink", "file:x"],
        "--source \"stdin?framing=xml\": `sources.stdin.framing`: unknown value \"xml\"",
    );
    quick_mode_error(
        &["--source", "stdin?max_record_bytes=0", "--sink", "file:x"],
        "--source \"stdin?max_record_bytes=0\": `sources.stdin.max_record_bytes`: 0 is out of range",
    );
    quick_mode_error(
        &["--source", "file:x", "--sink", "file:y"],
        "--source \"file:x\": unknown scheme \"file\"; expected one of: stdin",
    );
    quick_mode_error(&["--sink", "file:"], "--sink \"file:\": file: needs a path");
    // Every problem is reported, not just the first.
    let dir = temp_dir();
    let out = run_in(
        dir.path(),
        &[
            "run",
            "--sink",
            "file:a?rotate_bytes=abc",
            "--sink",
            "file:b?fsync=sometimes",
        ],
        Input::Null,
    );
    assert_eq!(out.code(), 2);
    assert!(
        out.stderr.contains("`sinks.file.rotate_bytes`"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(
            "--sink \"file:b?fsync=sometimes\": `sinks.file-2.fsync`: unknown value \"sometimes\""
        ),
        "{}",
        out.stderr
    );
}

#[test]
fn version_and_help_work() {
    let dir = temp_dir();
    let out = run_in(dir.path(), &["--version"], Input::Null);
    assert_eq!(out.code(), 0);
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("edge-router {}\n", env!("CARGO_PKG_VERSION"))
    );
    let help = |args: &[&str]| {
        let out = run_in(dir.path(), args, Input::Null);
        assert_eq!(out.code(), 0, "{args:?}: {}", out.stderr);
        String::from_utf8(out.stdout).unwrap()
    };
    let top = help(&["--help"]);
    for word in ["run", "validate", "--version"] {
        assert!(top.contains(word), "--help lacks {word}:\n{top}");
    }
    for args in [&["run", "--help"][..], &["help", "run"]] {
        let run = help(args);
        assert!(run.contains("Usage: edge-router run"), "{run}");
        for flag in ["--config", "--source", "--sink", "--dead-letter", "--stats"] {
            assert!(run.contains(flag), "{args:?} lacks {flag}:\n{run}");
        }
    }
    let validate = help(&["validate", "--help"]);
    assert!(
        validate.contains("Usage: edge-router validate"),
        "{validate}"
    );
    assert!(validate.contains("--config"), "{validate}");
    // Help and version write nothing else.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn run_without_config_or_flags_uses_the_embedded_default() {
    let dir = temp_dir();
    let input = common::sensor(1_000);
    let out = run_in(dir.path(), &["run"], Input::Bytes(&input));
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "exactly one line on stderr:\n{}",
        out.stderr
    );
    assert!(
        lines[0].contains("stdin") && lines[0].contains("edge-router-out/records.ndjson"),
        "the line says where records go: {}",
        lines[0]
    );
    assert!(
        out.stdout.is_empty(),
        "records never go to stdout by default"
    );
    assert_bytes_eq(
        &read(&dir.path().join("edge-router-out/records.ndjson")),
        &input,
        "edge-router-out/records.ndjson",
    );
    let mut files = Vec::new();
    collect_files(dir.path(), &mut files);
    assert_eq!(files.len(), 1, "{files:?}");
}

#[test]
fn disk_buffers_are_checked() {
    assert_problems(
        &format!(
            "{BASE}buffer = {{ dir = \"b\" }}\n\n[sinks.two]\nkind = \"file\"\npath = \"two.ndjson\"\n\
             buffer = {{ dir = \"b\" }}\n"
        ),
        &["bad.toml:12:10: `sinks.two.buffer`: buffer dir b is already the buffer of sink `out`"],
    );
    assert_problems(
        &format!("{BASE}buffer = {{ dir = \"b\", when_full = \"wait\", max_bytes = \"1KiB\" }}\n"),
        &[
            "bad.toml:7:35: `sinks.out.buffer.when_full`: unknown value \"wait\"; expected one of: block, drop_newest, drop_oldest",
            "bad.toml:7:55: `sinks.out.buffer.max_bytes`: 1024 is out of range",
        ],
    );
    assert_problems(
        &format!(
            "[sources.web]\nkind = \"http\"\naddress = \"127.0.0.1:8080\"\nack = \"sometimes\"\n\n{}",
            BASE.replace("[sources.in]\nkind = \"stdin\"\n\n", "")
        ),
        &[
            "bad.toml:4:7: `sources.web.ack`: unknown value \"sometimes\"; expected one of: queued, durable, delivered",
        ],
    );
}
