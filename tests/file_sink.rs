//! The file sink: rotation by size and age, compression, path templates, appending, fan-out and
//! the built-in route and filter stages.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::{Input, Stats, assert_bytes_eq, read, rotated_files, run_in, temp_dir};

/// Runs the router in `dir` with `args` (plus `--stats=json`) over `input`; expects a clean
/// exit and returns the checked stats.
fn run_ok(dir: &Path, args: &[&str], input: &[u8]) -> Stats {
    let mut all = args.to_vec();
    all.push("--stats=json");
    run_in(dir, &all, Input::Bytes(input)).ok_stats()
}

/// The concatenation of `files`.
fn concat(files: &[PathBuf], decode: impl Fn(&Path) -> Vec<u8>) -> Vec<u8> {
    files.iter().flat_map(|f| decode(f)).collect()
}

/// Checks that every file ends at a record boundary and holds at most `limit` bytes unless it
/// holds a single record, and that each rotated file was filled: the next file's first record
/// would not have fit.
fn check_size_rotation(contents: &[Vec<u8>], limit: usize) {
    for (i, c) in contents.iter().enumerate() {
        assert!(!c.is_empty(), "file {i} is empty");
        assert_eq!(c.last(), Some(&b'\n'), "file {i} ends inside a record");
        let records = common::lines(c).len();
        assert!(
            c.len() <= limit || records == 1,
            "file {i}: {} bytes in {records} records, limit {limit}",
            c.len()
        );
        if let Some(next) = contents.get(i + 1) {
            let first = common::lines(next)[0].len() + 1;
            assert!(
                c.len() + first > limit,
                "file {i} was rotated at {} bytes although the next record ({first} bytes) fit",
                c.len()
            );
        }
    }
}

#[test]
fn rotation_by_size_keeps_every_record_once_and_in_order() {
    let input = common::sensor(40_000); // about 4.4 MB
    let dir = temp_dir();
    let stats = run_ok(
        dir.path(),
        &["run", "--sink", "file:out.ndjson?rotate_bytes=64KiB"],
        &input,
    );
    assert_eq!(stats.written(), 40_000);
    let files = rotated_files(dir.path(), "out", "ndjson");
    let expected_files = input.len().div_ceil(64 << 10);
    assert!(
        files.len() >= expected_files && files.len() <= expected_files + 2,
        "{} files for {} bytes",
        files.len(),
        input.len()
    );
    assert_eq!(
        files.last().unwrap().file_name().unwrap(),
        "out.ndjson",
        "the live file comes last"
    );
    let contents: Vec<Vec<u8>> = files.iter().map(|f| read(f)).collect();
    check_size_rotation(&contents, 64 << 10);
    assert_bytes_eq(&contents.concat(), &input, "files in sequence order");
}

#[test]
fn a_record_larger_than_rotate_bytes_gets_a_file_of_its_own() {
    let dir = temp_dir();
    let big = vec![b'B'; 3000];
    let mut input = Vec::new();
    for i in 0..10 {
        input.extend_from_slice(format!("small record {i:03} {}\n", "s".repeat(300)).as_bytes());
        if i == 4 {
            input.extend_from_slice(&big);
            input.push(b'\n');
        }
    }
    run_ok(
        dir.path(),
        &["run", "--sink", "file:out.ndjson?rotate_bytes=1000"],
        &input,
    );
    let files = rotated_files(dir.path(), "out", "ndjson");
    let contents: Vec<Vec<u8>> = files.iter().map(|f| read(f)).collect();
    check_size_rotation(&contents, 1000);
    let mut big_line = big.clone();
    big_line.push(b'\n');
    assert!(
        contents.contains(&big_line),
        "no file holds just the large record"
    );
    assert_bytes_eq(&contents.concat(), &input, "files in sequence order");
}

#[test]
fn rotation_by_age_starts_new_files_and_loses_nothing() {
    let input = Arc::new(common::sensor(3_000));
    let dir = temp_dir();
    let (router, stdin) = common::Running::start(
        dir.path(),
        &[
            "run",
            "--sink",
            "file:out.ndjson?rotate_age_ms=100",
            "--stats=json",
        ],
    );
    // Six pieces with 300 ms pauses: each file is older than 100 ms before the next piece.
    let piece = input.len().div_ceil(6);
    let writer = common::Writer::start(
        stdin,
        input.clone(),
        1,
        piece,
        Some((1, Duration::from_millis(300))),
        None,
    );
    assert_eq!(writer.join(), input.len() as u64);
    let stats = router.wait(common::CHILD_TIMEOUT).ok_stats();
    assert_eq!(stats.written(), 3_000);
    let files = rotated_files(dir.path(), "out", "ndjson");
    assert!(files.len() >= 2, "only {} file(s)", files.len());
    let contents: Vec<Vec<u8>> = files.iter().map(|f| read(f)).collect();
    for (i, c) in contents.iter().enumerate() {
        assert!(
            !c.is_empty() && c.ends_with(b"\n"),
            "file {i} is empty or ends inside a record"
        );
    }
    assert_bytes_eq(&contents.concat(), &input, "files in sequence order");
}

#[test]
fn gzip_and_zstd_files_decompress_to_exactly_the_input() {
    let input = common::sensor(20_000);
    for (name, decode) in [
        (
            "out.ndjson.gz?compression=gzip",
            common::gunzip as fn(&Path) -> Vec<u8>,
        ),
        ("out.ndjson.zst?compression=zstd", common::unzstd),
        (
            "out.ndjson.gz?compression=gzip&compression_level=1",
            common::gunzip,
        ),
        (
            "out.ndjson.zst?compression=zstd&compression_level=19",
            common::unzstd,
        ),
    ] {
        let dir = temp_dir();
        let sink = format!("file:{name}");
        run_ok(dir.path(), &["run", "--sink", &sink], &input);
        let path = dir.path().join(name.split('?').next().unwrap());
        let compressed = read(&path);
        assert!(
            compressed.len() < input.len() / 3,
            "{name}: {} bytes is not compressed",
            compressed.len()
        );
        assert_bytes_eq(&decode(&path), &input, name);
    }
}

#[test]
fn compressed_files_rotate_and_each_decompresses() {
    let input = common::sensor(20_000);
    for (ext, comp, decode) in [
        ("gz", "gzip", common::gunzip as fn(&Path) -> Vec<u8>),
        ("zst", "zstd", common::unzstd),
    ] {
        let dir = temp_dir();
        let sink = format!("file:out.ndjson.{ext}?compression={comp}&rotate_bytes=256KiB");
        run_ok(dir.path(), &["run", "--sink", &sink], &input);
        // `out.ndjson.gz` rotates to `out.ndjson.1.gz`, `out.ndjson.2.gz`, ...
        let files = rotated_files(dir.path(), "out.ndjson", ext);
        assert!(files.len() >= 8, "{comp}: only {} files", files.len());
        // The size limit counts uncompressed bytes.
        let contents: Vec<Vec<u8>> = files.iter().map(|f| decode(f)).collect();
        check_size_rotation(&contents, 256 << 10);
        assert_bytes_eq(&concat(&files, decode), &input, comp);
    }
}

#[test]
fn appending_to_compressed_files_adds_members_that_decompress_in_order() {
    let first = common::sensor(2_000);
    let second = b"second run\n".repeat(100);
    for (name, decode) in [
        (
            "out.gz?compression=gzip",
            common::gunzip as fn(&Path) -> Vec<u8>,
        ),
        ("out.zst?compression=zstd", common::unzstd),
    ] {
        let dir = temp_dir();
        let sink = format!("file:{name}");
        run_ok(dir.path(), &["run", "--sink", &sink], &first);
        run_ok(dir.path(), &["run", "--sink", &sink], &second);
        let path = dir.path().join(name.split('?').next().unwrap());
        assert_bytes_eq(
            &decode(&path),
            &[first.clone(), second.clone()].concat(),
            name,
        );
    }
}

/// Groups `input` lines by the JSON value of `device_id`, keeping their order.
fn by_device(input: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut groups: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for line in common::lines(input) {
        let v: serde_json::Value = serde_json::from_slice(line).unwrap();
        let key = v["device_id"].to_string();
        let g = groups.entry(key).or_default();
        g.extend_from_slice(line);
        g.push(b'\n');
    }
    groups
}

#[test]
fn partition_key_templates_give_each_key_its_own_file() {
    let input = common::sensor_few_devices(20_000);
    let expected = by_device(&input);
    assert!(expected.len() > 10);
    let dir = temp_dir();
    let stats = run_ok(
        dir.path(),
        &[
            "run",
            "--sink",
            "file:out/{partition_key}.ndjson?partition=field:device_id",
        ],
        &input,
    );
    assert_eq!(stats.written(), 20_000);
    let mut found: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for e in std::fs::read_dir(dir.path().join("out")).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let key = name
            .strip_suffix(".ndjson")
            .unwrap_or_else(|| panic!("unexpected file {name}"))
            .to_owned();
        found.insert(key, read(&p));
    }
    assert_eq!(
        found.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "one file per device, and nothing else"
    );
    for (key, content) in &expected {
        assert_bytes_eq(&found[key], content, &format!("out/{key}.ndjson"));
    }
}

#[test]
fn partition_values_are_sanitized_and_missing_keys_have_a_file() {
    let input: &[u8] = b"{\"k\":\"a/b\",\"n\":1}\n\
        {\"k\":\"..\",\"n\":2}\n\
        {\"n\":3}\n\
        not json\n\
        {\"k\":\"a/b\",\"n\":5}\n\
        {\"k\":\"caf\xc3\xa9 x\",\"n\":6}\n\
        {\"k\":\"\",\"n\":7}\n";
    let dir = temp_dir();
    run_ok(
        dir.path(),
        &[
            "run",
            "--sink",
            "file:out/{partition_key}.log?partition=field:k",
        ],
        input,
    );
    let mut names: Vec<String> = std::fs::read_dir(dir.path().join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["_.log", "_none_.log", "a_b.log", "caf___x.log"],
        "files in out/"
    );
    let out = dir.path().join("out");
    assert_bytes_eq(
        &read(&out.join("a_b.log")),
        b"{\"k\":\"a/b\",\"n\":1}\n{\"k\":\"a/b\",\"n\":5}\n",
        "a_b.log",
    );
    assert_bytes_eq(
        &read(&out.join("_.log")),
        b"{\"k\":\"..\",\"n\":2}\n",
        "_.log",
    );
    assert_bytes_eq(
        &read(&out.join("_none_.log")),
        b"{\"n\":3}\nnot json\n{\"k\":\"\",\"n\":7}\n",
        "_none_.log",
    );
}

/// Checks that `dir/out/YYYY/MM/DD/records.ndjson` exists for today's UTC date (or yesterday's,
/// if the run straddled midnight) and holds `input`, and that nothing else is under `out/`.
fn check_dated_output(dir: &Path, input: &[u8], before: (i64, u32, u32)) {
    let after = common::utc_today();
    let path =
        |(y, m, d): (i64, u32, u32)| dir.join(format!("out/{y:04}/{m:02}/{d:02}/records.ndjson"));
    let mut found: Vec<PathBuf> = vec![path(before)];
    if after != before {
        found.push(path(after));
    }
    found.retain(|p| p.exists());
    assert!(!found.is_empty(), "no file at {}", path(after).display());
    assert_bytes_eq(&concat(&found, read), input, "dated file");
    let years: Vec<_> = std::fs::read_dir(dir.join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(years.len() <= 2, "unexpected directories {years:?}");
}

#[test]
fn a_strftime_template_creates_the_dated_directory() {
    let input = common::sensor(1_000);
    let dir = temp_dir();
    let before = common::utc_today();
    run_config(
        dir.path(),
        r#"
[sources.in]
kind = "stdin"

[sinks.dated]
kind = "file"
path = "out/%Y/%m/%d/records.ndjson"
"#,
        &input,
    );
    check_dated_output(dir.path(), &input, before);
}

/// Regression test: quick mode percent-decodes the path of `file:PATH`, so strftime specifiers
/// (`%Y`) are rejected as "bad percent escape", although README.md shows
/// `--sink 'file:out/{partition_key}/%Y/%m/%d/%H.ndjson.gz?...'`.
#[test]
fn a_strftime_template_works_in_quick_mode() {
    let input = common::sensor(1_000);
    let dir = temp_dir();
    let before = common::utc_today();
    run_ok(
        dir.path(),
        &["run", "--sink", "file:out/%Y/%m/%d/records.ndjson"],
        &input,
    );
    check_dated_output(dir.path(), &input, before);
}

#[test]
fn running_twice_appends_instead_of_overwriting() {
    let first = common::sensor(5_000);
    let second = b"run two, line one\nrun two, line two\n".to_vec();
    let dir = temp_dir();
    run_ok(dir.path(), &["run", "--sink", "file:out.ndjson"], &first);
    run_ok(dir.path(), &["run", "--sink", "file:out.ndjson"], &second);
    assert_bytes_eq(
        &read(&dir.path().join("out.ndjson")),
        &[first.clone(), second.clone()].concat(),
        "out.ndjson after two runs",
    );
}

#[test]
fn a_file_left_with_a_torn_last_line_gets_it_ended_before_new_records() {
    // As left by a process killed in the middle of a write.
    let dir = temp_dir();
    let out = dir.path().join("out.ndjson");
    std::fs::write(&out, b"{\"seq\":1}\n{\"seq\":2,\"dev").unwrap();
    let run = run_in(
        dir.path(),
        &["run", "--sink", "file:out.ndjson", "--stats=json"],
        Input::Bytes(b"{\"seq\":2}\n{\"seq\":3}\n"),
    );
    assert!(
        run.stderr.contains("does not end with the delimiter"),
        "{}",
        run.stderr
    );
    run.ok_stats();
    assert_bytes_eq(
        &read(&out),
        b"{\"seq\":1}\n{\"seq\":2,\"dev\n{\"seq\":2}\n{\"seq\":3}\n",
        "out.ndjson",
    );
    // A file that ends with the delimiter is appended to as it is, without a warning.
    let run = run_in(
        dir.path(),
        &["run", "--sink", "file:out.ndjson", "--stats=json"],
        Input::Bytes(b"{\"seq\":4}\n"),
    );
    assert!(!run.stderr.contains("delimiter"), "{}", run.stderr);
    run.ok_stats();
    assert!(read(&out).ends_with(b"{\"seq\":3}\n{\"seq\":4}\n"));
}

#[test]
fn running_twice_with_rotation_continues_the_sequence() {
    let first = common::sensor(3_000);
    let second = common::sensor(4_000)[first.len()..].to_vec();
    let dir = temp_dir();
    let sink = "file:out.ndjson?rotate_bytes=32KiB";
    run_ok(dir.path(), &["run", "--sink", sink], &first);
    let after_first = rotated_files(dir.path(), "out", "ndjson");
    let first_contents: Vec<Vec<u8>> = after_first.iter().map(|f| read(f)).collect();
    run_ok(dir.path(), &["run", "--sink", sink], &second);
    let files = rotated_files(dir.path(), "out", "ndjson");
    assert!(files.len() > after_first.len());
    // Files rotated by the first run are untouched.
    for (i, c) in first_contents[..first_contents.len() - 1]
        .iter()
        .enumerate()
    {
        assert_bytes_eq(
            &read(&files[i]),
            c,
            &format!("{} after run 2", files[i].display()),
        );
    }
    let contents: Vec<Vec<u8>> = files.iter().map(|f| read(f)).collect();
    check_size_rotation(&contents, 32 << 10);
    assert_bytes_eq(&contents.concat(), &[first, second].concat(), "both runs");
}

#[test]
fn fan_out_to_two_sinks_writes_two_identical_copies() {
    let input = common::sensor(30_000);
    let dir = temp_dir();
    let stats = run_ok(
        dir.path(),
        &[
            "run",
            "--sink",
            "file:a/out.ndjson",
            "--sink",
            "file:b/out.ndjson",
        ],
        &input,
    );
    assert_bytes_eq(&read(&dir.path().join("a/out.ndjson")), &input, "a");
    assert_bytes_eq(&read(&dir.path().join("b/out.ndjson")), &input, "b");
    assert_eq!(stats.read(), 30_000);
    assert_eq!(stats.fanout(), 30_000);
    assert_eq!(stats.written(), 60_000);
    assert_eq!(stats.component("sinks.file")["records_out"], 30_000);
    assert_eq!(stats.component("sinks.file-2")["records_out"], 30_000);
}

/// Writes `config` to `dir/pipeline.toml` and runs it over `input`.
fn run_config(dir: &Path, config: &str, input: &[u8]) -> Stats {
    std::fs::write(dir.join("pipeline.toml"), config).unwrap();
    run_ok(dir, &["run", "-c", "pipeline.toml"], input)
}

/// Sensor records with a few non-JSON `DEBUG` lines mixed in; returns the input and the JSON
/// lines.
fn sensor_with_debug(n: usize) -> (Vec<u8>, Vec<Vec<u8>>, usize) {
    let records = common::sensor(n);
    let mut input = Vec::new();
    let mut json = Vec::new();
    let mut debug = 0;
    for (i, line) in common::lines(&records).into_iter().enumerate() {
        if i % 97 == 0 {
            input.extend_from_slice(format!("DEBUG tick {i}\n").as_bytes());
            debug += 1;
        }
        input.extend_from_slice(line);
        input.push(b'\n');
        json.push(line.to_vec());
    }
    (input, json, debug)
}

fn site(line: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(line).unwrap();
    v["site"].as_str().unwrap().to_owned()
}

fn joined(lines: impl IntoIterator<Item = Vec<u8>>) -> Vec<u8> {
    lines
        .into_iter()
        .flat_map(|mut l| {
            l.push(b'\n');
            l
        })
        .collect()
}

#[test]
fn route_and_filter_stages_send_records_to_their_sinks() {
    let (input, json, debug) = sensor_with_debug(20_000);
    let dir = temp_dir();
    let stats = run_config(
        dir.path(),
        r#"
[pipeline]
default_sinks = ["rest"]

[sources.in]
kind = "stdin"

[[stages]]
kind = "filter"
name = "no-debug"
drop_if = { prefix = "DEBUG" }

[[stages]]
kind = "route"
name = "by-site"

[[stages.rules]]
field = "site"
equals = "plant-1"
sinks = ["plant1"]

[sinks.rest]
kind = "file"
path = "rest.ndjson"

[sinks.plant1]
kind = "file"
path = "plant1.ndjson"
"#,
        &input,
    );
    let (p1, rest): (Vec<Vec<u8>>, Vec<Vec<u8>>) =
        json.iter().cloned().partition(|l| site(l) == "plant-1");
    assert!(!p1.is_empty() && !rest.is_empty());
    assert_bytes_eq(
        &read(&dir.path().join("plant1.ndjson")),
        &joined(p1.clone()),
        "plant1",
    );
    assert_bytes_eq(
        &read(&dir.path().join("rest.ndjson")),
        &joined(rest.clone()),
        "rest",
    );
    assert_eq!(stats.read(), (json.len() + debug) as u64);
    assert_eq!(stats.dropped(), debug as u64);
    assert_eq!(stats.component("stages.no-debug")["dropped"], debug as u64);
    assert_eq!(stats.component("stages.by-site")["dropped"], 0);
    assert_eq!(stats.fanout(), 0);
    assert_eq!(
        stats.component("sinks.plant1")["records_out"],
        p1.len() as u64
    );
    assert_eq!(
        stats.component("sinks.rest")["records_out"],
        rest.len() as u64
    );
}

#[test]
fn a_route_rule_with_two_sinks_fans_out_and_unrouted_records_are_dropped() {
    let (input, json, debug) = sensor_with_debug(20_000);
    let dir = temp_dir();
    // Route first, then filter: routes must stay aligned with the records the filter keeps.
    // `default = []`: records that match no rule go nowhere and count as dropped.
    let stats = run_config(
        dir.path(),
        r#"
[sources.in]
kind = "stdin"

[[stages]]
kind = "route"
default = []

[[stages.rules]]
field = "site"
in = ["plant-2", "plant-3"]
sinks = ["both", "archive"]

[[stages.rules]]
prefix = "DEBUG"
sinks = ["archive"]

[[stages.rules]]
field = "site"
equals = "plant-4"
sinks = ["archive"]

[[stages]]
kind = "filter"
keep_if = { field = "humidity", exists = true }

[sinks.archive]
kind = "file"
path = "archive.ndjson"

[sinks.both]
kind = "file"
path = "both.ndjson"
"#,
        &input,
    );
    let two_three: Vec<Vec<u8>> = json
        .iter()
        .filter(|l| ["plant-2", "plant-3"].contains(&site(l).as_str()))
        .cloned()
        .collect();
    let archived: Vec<Vec<u8>> = json
        .iter()
        .filter(|l| ["plant-2", "plant-3", "plant-4"].contains(&site(l).as_str()))
        .cloned()
        .collect();
    let unrouted = json.len() - archived.len();
    assert_bytes_eq(
        &read(&dir.path().join("both.ndjson")),
        &joined(two_three.clone()),
        "both",
    );
    assert_bytes_eq(
        &read(&dir.path().join("archive.ndjson")),
        &joined(archived.clone()),
        "archive",
    );
    assert_eq!(stats.fanout(), two_three.len() as u64);
    // The route stage drops what no rule matched; the filter drops the DEBUG lines (no
    // `humidity` field), which the route had sent to the archive.
    assert_eq!(stats.component("stages[0]")["dropped"], unrouted as u64);
    assert_eq!(stats.component("stages[1]")["dropped"], debug as u64);
    assert_eq!(stats.dropped(), (unrouted + debug) as u64);
    assert_eq!(stats.written(), (archived.len() + two_three.len()) as u64);
}

#[test]
fn a_custom_delimiter_ends_every_record() {
    let input = b"one\ntwo\r\nthree".to_vec();
    let dir = temp_dir();
    let stats = run_ok(
        dir.path(),
        &[
            "run",
            "--sink",
            "file:crlf.txt?delimiter=%0D%0A",
            "--sink",
            "file:bars.txt?delimiter=||",
        ],
        &input,
    );
    assert_bytes_eq(
        &read(&dir.path().join("crlf.txt")),
        b"one\r\ntwo\r\nthree\r\n",
        "crlf.txt",
    );
    assert_bytes_eq(
        &read(&dir.path().join("bars.txt")),
        b"one||two||three||",
        "bars.txt",
    );
    assert_eq!(stats.written(), 6);
    assert_eq!(stats.total("bytes_written"), 2 * 11);
}

#[test]
fn more_keys_than_max_open_files_still_gives_each_key_its_records_in_order() {
    // 24 devices through at most 3 open files: files are closed and reopened (appending) many
    // times.
    let input = common::sensor_few_devices(5_000);
    let expected = by_device(&input);
    let dir = temp_dir();
    run_ok(
        dir.path(),
        &[
            "run",
            "--sink",
            "file:out/{partition_key}.ndjson?partition=field:device_id&max_open_files=3",
        ],
        &input,
    );
    let count = std::fs::read_dir(dir.path().join("out")).unwrap().count();
    assert_eq!(count, expected.len());
    for (key, content) in &expected {
        let path = dir.path().join(format!("out/{key}.ndjson"));
        assert_bytes_eq(&read(&path), content, &path.display().to_string());
    }
}

#[test]
fn size_rotation_through_few_open_files_fills_every_keys_files_in_sequence() {
    // 24 devices through at most 3 open files, each rotating at 8 KiB: a file is closed for
    // another key and reopened (with its size read back) many times between its rotations,
    // and every key's rotation sequence goes on where it was.
    let input = common::sensor_few_devices(20_000);
    let expected = by_device(&input);
    let dir = temp_dir();
    let stats = run_ok(
        dir.path(),
        &[
            "run",
            "--sink",
            "file:out/{partition_key}.ndjson?partition=field:device_id&max_open_files=3\
             &rotate_bytes=8KiB",
        ],
        &input,
    );
    assert_eq!(stats.dead_lettered(), 0);
    for (key, content) in &expected {
        let files = rotated_files(&dir.path().join("out"), key, "ndjson");
        assert!(files.len() > 3, "{key}: only {} files", files.len());
        let contents: Vec<Vec<u8>> = files.iter().map(|f| read(f)).collect();
        check_size_rotation(&contents, 8 * 1024);
        assert_bytes_eq(&contents.concat(), content, key);
    }
}

#[test]
fn a_delimiter_a_record_already_ends_with_is_not_doubled_and_may_be_empty() {
    let dir = temp_dir();
    let d = dir.path();
    // Lines that already end with `;` keep one; the others get it.
    let input = b"a;\nb\nc;\n";
    let stats = run_ok(
        d,
        &[
            "run",
            "--sink",
            "file:semi.txt?delimiter=%3B&delimiter_if_missing=true",
            "--sink",
            "file:doubled.txt?delimiter=%3B",
            "--sink",
            "file:bare.txt?delimiter=",
        ],
        input,
    );
    assert_eq!(stats.written(), 9);
    assert_eq!(read(&d.join("semi.txt")), b"a;b;c;");
    assert_eq!(read(&d.join("doubled.txt")), b"a;;b;c;;");
    assert_eq!(read(&d.join("bare.txt")), b"a;bc;");
    // The stdout sink takes the same two settings.
    let out = run_in(
        d,
        &[
            "run",
            "--sink",
            "stdout?delimiter=%3B&delimiter_if_missing=true",
            "--stats=json",
        ],
        Input::Bytes(input),
    );
    out.ok_stats();
    assert_eq!(out.stdout, b"a;b;c;");
    let out = run_in(
        d,
        &["run", "--sink", "stdout?delimiter=", "--stats=json"],
        Input::Bytes(input),
    );
    out.ok_stats();
    assert_eq!(out.stdout, b"a;bc;");
    // Rotation counts the bytes written, so files still fill up to rotate_bytes exactly.
    let lines: Vec<u8> = (0..100)
        .flat_map(|i| format!("r{i:02};\n").into_bytes())
        .collect();
    run_ok(
        d,
        &[
            "run",
            "--sink",
            "file:rot.txt?delimiter=%3B&delimiter_if_missing=true&rotate_bytes=40",
        ],
        &lines,
    );
    let files = rotated_files(d, "rot", "txt");
    let contents: Vec<Vec<u8>> = files.iter().map(|f| read(f)).collect();
    assert!(contents.iter().all(|c| c.len() == 40), "{contents:?}");
    assert_eq!(
        contents.concat(),
        lines
            .iter()
            .copied()
            .filter(|&b| b != b'\n')
            .collect::<Vec<_>>()
    );
}
