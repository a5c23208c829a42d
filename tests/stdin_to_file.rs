//! stdin -> one file: records pass through unchanged, framing edge cases, oversized lines and
//! `json` framing go to the dead-letter file with their line numbers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Input, assert_bytes_eq, dead_letters, normalized, read, run_in, temp_dir};

/// Runs `run --source SOURCE --sink file:out.ndjson --dead-letter dl.ndjson --stats=json` over
/// `input` in a fresh directory; returns the directory, the output (empty if there is no file)
/// and the checked stats.
fn pass(source: &str, input: &[u8]) -> (tempfile::TempDir, Vec<u8>, common::Stats) {
    let dir = temp_dir();
    let out = run_in(
        dir.path(),
        &[
            "run",
            "--source",
            source,
            "--sink",
            "file:out.ndjson",
            "--dead-letter",
            "dl.ndjson",
            "--stats=json",
        ],
        Input::Bytes(input),
    );
    let stats = out.ok_stats();
    let path = dir.path().join("out.ndjson");
    let written = if path.exists() {
        read(&path)
    } else {
        Vec::new()
    };
    (dir, written, stats)
}

#[test]
fn a_million_sensor_records_come_out_byte_identical() {
    let input = common::generate("sensor", 1_000_000, &[]);
    let input_len = std::fs::metadata(&input).unwrap().len();
    let dir = temp_dir();
    let out = run_in(
        dir.path(),
        &["run", "--sink", "file:out.ndjson", "--stats=json"],
        Input::File(&input),
    );
    let stats = out.ok_stats();
    common::assert_files_eq(&dir.path().join("out.ndjson"), &input);
    assert_eq!(stats.read(), 1_000_000);
    assert_eq!(stats.written(), 1_000_000);
    assert_eq!(stats.dead_lettered(), 0);
    // Byte counters count payloads, without the newline of each record.
    assert_eq!(stats.total("bytes_read"), input_len - 1_000_000);
    assert_eq!(stats.total("bytes_written"), input_len - 1_000_000);
    let sink = stats.component("sinks.file");
    assert_eq!(sink["records_out"], 1_000_000);
    assert_eq!(sink["bytes_out"], input_len - 1_000_000);
    // Nothing went wrong, so there is no dead-letter file.
    assert!(!dir.path().join("edge-router-out").exists());
}

#[test]
fn every_generator_kind_passes_through_unchanged() {
    for kind in ["sensor", "metering", "click", "csv", "syslog", "clf"] {
        let input = common::generate_bytes(kind, 20_000, &[]);
        assert_eq!(common::lines(&input).len(), 20_000, "{kind}");
        let (_dir, written, stats) = pass("stdin", &input);
        assert_bytes_eq(&written, &input, kind);
        assert_eq!(stats.read(), 20_000, "{kind}");
        assert_eq!(stats.written(), 20_000, "{kind}");
        assert_eq!(stats.total("bytes_written"), input.len() as u64 - 20_000);
    }
}

/// Log files with CRLF line ends, most without a final newline: each record is the line without
/// its terminator, written back with an LF. Payload bytes (including trailing spaces) are
/// unchanged. With LF line ends the output is byte-identical to the input.
fn crlf_logs_pass_through_with_lf_line_ends(files: &[std::path::PathBuf], min_lines: u64) {
    for file in files {
        let name = file.display().to_string();
        let input = read(file);
        let expected = normalized(&input);
        let records = common::lines(&expected).len() as u64;
        assert!(records >= min_lines, "{name}: {records} lines");
        let (_dir, written, stats) = pass("stdin", &input);
        assert_bytes_eq(&written, &expected, &name);
        assert_eq!(stats.read(), records, "{name}");
        assert_eq!(stats.written(), records, "{name}");
        let (_dir, written, _) = pass("stdin", &expected);
        assert_bytes_eq(&written, &expected, &name);
    }
}

#[test]
fn loghub_files_pass_through_with_lf_line_ends() {
    if let Some(files) =
        common::loghub_files("stdin_to_file::loghub_files_pass_through_with_lf_line_ends")
    {
        crlf_logs_pass_through_with_lf_line_ends(&files, 1999);
    }
}

#[test]
fn the_log_samples_pass_through_with_lf_line_ends() {
    let files = common::sample_logs();
    assert!(files.len() >= 2);
    crlf_logs_pass_through_with_lf_line_ends(&files, 10);
}

#[test]
fn crlf_line_ends_become_lf() {
    let (_dir, written, stats) = pass("stdin", b"a\r\nbb\r\n\r\nc\rc\r\nlast\r\n");
    // A CR that is not part of a CRLF terminator is payload.
    assert_bytes_eq(&written, b"a\nbb\nc\rc\nlast\n", "output");
    assert_eq!((stats.read(), stats.written()), (4, 4));
    let (_dir, written, _) = pass("stdin", b"mixed\nends\r\nhere\r");
    assert_bytes_eq(&written, b"mixed\nends\nhere\n", "output");
}

#[test]
fn a_last_line_without_newline_is_still_a_record() {
    let (_dir, written, stats) = pass("stdin", b"first\nsecond\nno newline");
    assert_bytes_eq(&written, b"first\nsecond\nno newline\n", "output");
    assert_eq!(stats.read(), 3);
    assert_eq!(stats.total("bytes_read"), 5 + 6 + 10);
    let (_dir, written, stats) = pass("stdin", b"only");
    assert_bytes_eq(&written, b"only\n", "output");
    assert_eq!(stats.written(), 1);
}

#[test]
fn empty_input_creates_no_files_and_exits_0() {
    let (dir, _, stats) = pass("stdin", b"");
    assert_eq!(stats.read(), 0);
    assert_eq!(stats.written(), 0);
    // The file sink opens files on the first record and the dead-letter file on the first
    // dead letter: with no input, neither exists.
    let entries: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(entries.is_empty(), "files left behind: {entries:?}");
}

#[test]
fn empty_lines_are_skipped_by_default() {
    let input = b"\n\na\n\r\n\nb\n \n\n";
    let (_dir, written, stats) = pass("stdin", input);
    // A line with a space is not empty.
    assert_bytes_eq(&written, b"a\nb\n \n", "output");
    assert_eq!(stats.read(), 3);
    assert_eq!(stats.dropped(), 0);
}

#[test]
fn empty_lines_are_kept_with_skip_empty_false() {
    let input = b"\n\na\n\r\n\nb\n \n\n";
    let (_dir, written, stats) = pass("stdin?skip_empty=false", input);
    assert_bytes_eq(&written, b"\n\na\n\n\nb\n \n\n", "output");
    assert_eq!(stats.read(), 8);
    assert_eq!(stats.written(), 8);
    assert_eq!(stats.total("bytes_written"), 3);
}

#[test]
fn invalid_utf8_passes_through_as_bytes() {
    let input: &[u8] = b"\xff\xfe\n\xc3\x28 half\n\x80\x80\x80\nok \xe2\x82\n\xed\xa0\x80\n";
    let (_dir, written, stats) = pass("stdin", input);
    assert_bytes_eq(&written, input, "output");
    assert_eq!(stats.read(), 5);
    assert_eq!(stats.dead_lettered(), 0);
    // Also with the NUL byte and other control bytes.
    let input: &[u8] = b"a\x00b\n\x01\x02\x1b[0m\n";
    let (_dir, written, _) = pass("stdin", input);
    assert_bytes_eq(&written, input, "output");
}

#[test]
fn a_5_mib_line_is_dead_lettered_and_the_following_lines_are_delivered() {
    const BIG: usize = 5 << 20;
    let big: Vec<u8> = (0..BIG).map(|i| b'a' + (i % 26) as u8).collect();
    let mut input = b"first\nsecond\n".to_vec();
    input.extend_from_slice(&big);
    input.extend_from_slice(b"\nthird\nfourth\n");
    let (dir, written, stats) = pass("stdin", &input);
    assert_bytes_eq(&written, b"first\nsecond\nthird\nfourth\n", "output");
    assert_eq!(stats.read(), 5);
    assert_eq!(stats.written(), 4);
    assert_eq!(stats.dead_lettered(), 1);
    assert_eq!(stats.total("bytes_read"), (BIG + 5 + 6 + 5 + 6) as u64);

    let letters = dead_letters(&dir.path().join("dl.ndjson"));
    assert_eq!(letters.len(), 1);
    let l = &letters[0];
    assert!(
        l.reason.contains("5242880") && l.reason.contains("max_record_bytes"),
        "reason: {}",
        l.reason
    );
    assert!(
        l.reason.contains("1048576"),
        "reason names the limit: {}",
        l.reason
    );
    assert_eq!(l.source, "stdin");
    assert_eq!(l.line, Some(3));
    assert_eq!(l.size, BIG as u64);
    assert!(l.truncated);
    // The payload is the start of the line, at most max_record_bytes of it.
    assert!(!l.payload.is_empty() && l.payload.len() <= 1 << 20);
    assert_bytes_eq(&l.payload, &big[..l.payload.len()], "dead-letter payload");
    assert!(
        l.arrival.len() >= 20 && l.arrival.ends_with('Z') && l.arrival.as_bytes()[10] == b'T',
        "arrival is an RFC 3339 UTC time: {}",
        l.arrival
    );
}

#[test]
fn a_5_mib_last_line_with_crlf_and_without_newline_is_dead_lettered() {
    const BIG: usize = 5 << 20;
    let mut input = b"x\r\n".to_vec();
    input.extend(std::iter::repeat_n(b'z', BIG));
    input.extend_from_slice(b"\r\ny\r\n");
    input.extend(std::iter::repeat_n(b'w', BIG));
    let (dir, written, stats) = pass("stdin", &input);
    assert_bytes_eq(&written, b"x\ny\n", "output");
    assert_eq!((stats.read(), stats.dead_lettered()), (4, 2));
    let letters = dead_letters(&dir.path().join("dl.ndjson"));
    let got: Vec<(Option<u64>, u64, bool)> = letters
        .iter()
        .map(|l| (l.line, l.size, l.truncated))
        .collect();
    // The CR of a CRLF terminator is not part of the record.
    assert_eq!(
        got,
        [(Some(2), BIG as u64, true), (Some(4), BIG as u64, true)]
    );
}

/// `n` copies of `b`.
fn line_of(b: u8, n: usize) -> Vec<u8> {
    vec![b; n]
}

#[test]
fn a_line_of_exactly_max_record_bytes_is_delivered() {
    for eol in [&b"\n"[..], b"\r\n"] {
        let what = format!("line end {eol:?}");
        let mut input = Vec::new();
        for (b, n) in [(b'a', 999), (b'b', 1000), (b'c', 1001), (b'd', 1000)] {
            input.extend_from_slice(&line_of(b, n));
            input.extend_from_slice(eol);
        }
        // The last line, without a terminator, exactly at the limit.
        input.extend_from_slice(&line_of(b'e', 1000));
        let (dir, written, stats) = pass("stdin?max_record_bytes=1000", &input);
        let mut expected = Vec::new();
        for (b, n) in [(b'a', 999), (b'b', 1000), (b'd', 1000), (b'e', 1000)] {
            expected.extend_from_slice(&line_of(b, n));
            expected.push(b'\n');
        }
        assert_bytes_eq(&written, &expected, &what);
        assert_eq!(stats.read(), 5, "{what}");
        assert_eq!(stats.written(), 4, "{what}");
        let letters = dead_letters(&dir.path().join("dl.ndjson"));
        assert_eq!(letters.len(), 1, "{what}");
        assert_eq!(letters[0].line, Some(3), "{what}");
        assert_eq!(letters[0].size, 1001, "{what}");
        assert!(letters[0].truncated, "{what}");
        assert!(letters[0].reason.contains("1001"), "{}", letters[0].reason);
        assert!(
            letters[0].reason.contains("(1000)"),
            "{}",
            letters[0].reason
        );
        assert_bytes_eq(
            &letters[0].payload,
            &line_of(b'c', letters[0].payload.len()),
            &what,
        );
    }
}

#[test]
fn a_last_line_one_over_the_limit_without_newline_is_dead_lettered() {
    let mut input = b"ok\n".to_vec();
    input.extend_from_slice(&line_of(b'f', 1001));
    let (dir, written, stats) = pass("stdin?max_record_bytes=1000", &input);
    assert_bytes_eq(&written, b"ok\n", "output");
    assert_eq!(stats.dead_lettered(), 1);
    let letters = dead_letters(&dir.path().join("dl.ndjson"));
    assert_eq!((letters[0].line, letters[0].size), (Some(2), 1001));
}

#[test]
fn json_framing_dead_letters_invalid_lines_with_their_line_numbers() {
    let input: &[u8] = b"{\"a\":1}\n\
        {bad\n\
        \n\
        [1,2,3]\r\n\
        42\n\
        \"text\"\n\
        {\"a\":}\n\
        plain words\n\
        {\"nested\":{\"b\":[true,null]}}\n\
        {\"a\":1} trailing\n\
        {\"last\":\"no newline\"}";
    let (dir, written, stats) = pass("stdin?framing=json", input);
    assert_bytes_eq(
        &written,
        b"{\"a\":1}\n[1,2,3]\n42\n\"text\"\n{\"nested\":{\"b\":[true,null]}}\n{\"last\":\"no newline\"}\n",
        "valid JSON lines",
    );
    assert_eq!(stats.read(), 10);
    assert_eq!(stats.written(), 6);
    assert_eq!(stats.dead_lettered(), 4);
    let letters = dead_letters(&dir.path().join("dl.ndjson"));
    let got: Vec<(Option<u64>, &[u8])> = letters
        .iter()
        .map(|l| (l.line, l.payload.as_slice()))
        .collect();
    let expected: Vec<(Option<u64>, &[u8])> = vec![
        (Some(2), b"{bad"),
        (Some(7), b"{\"a\":}"),
        (Some(8), b"plain words"),
        (Some(10), b"{\"a\":1} trailing"),
    ];
    assert_eq!(got, expected);
    for l in &letters {
        assert!(l.reason.contains("invalid JSON"), "reason: {}", l.reason);
        assert_eq!(l.source, "stdin");
        assert!(!l.truncated);
        assert_eq!(l.size, l.payload.len() as u64);
    }
}

#[test]
fn json_framing_over_many_batches_keeps_line_numbers() {
    // Enough lines to span several reads and batches: every 1000th line is broken.
    let records = common::sensor(50_000);
    let mut input = Vec::new();
    let mut expected = Vec::new();
    let mut broken = Vec::new();
    for (i, line) in common::lines(&records).into_iter().enumerate() {
        if i % 1000 == 999 {
            input.extend_from_slice(&line[..line.len() - 1]);
            broken.push((i as u64 + 1, line[..line.len() - 1].to_vec()));
        } else {
            input.extend_from_slice(line);
            expected.extend_from_slice(line);
            expected.push(b'\n');
        }
        input.push(b'\n');
    }
    let (dir, written, stats) = pass("stdin?framing=json", &input);
    assert_bytes_eq(&written, &expected, "valid lines");
    assert_eq!(stats.dead_lettered(), 50);
    let letters = dead_letters(&dir.path().join("dl.ndjson"));
    let got: Vec<(u64, Vec<u8>)> = letters
        .into_iter()
        .map(|l| (l.line.unwrap(), l.payload))
        .collect();
    assert_eq!(got, broken);
}
