//! Tests through the SDK's native glue: exact objects for hand-written sample lines and for the
//! lines `edge-router generate` writes (both kept under `tests/data/`, always run), config
//! errors; and the same checks over every line of three loghub files when the corpus is there
//! (`$EDGE_ROUTER_SHARED/data/loghub`, else `../shared` next to the repository). Without the
//! corpus those tests say so by name (and in `$EDGE_ROUTER_SKIPPED_DIR` for `tests/run.sh`'s
//! summary) instead of passing silently.

use super::LogToJson;
use edge_router_plugin::testing::enrich;
use serde_json::{Map, Value, json};
use std::path::PathBuf;

type Outputs = Vec<Result<Vec<u8>, String>>;

/// The shared data folder: `$EDGE_ROUTER_SHARED` when set, else `../shared` next to the
/// repository.
fn shared_dir() -> PathBuf {
    match std::env::var_os("EDGE_ROUTER_SHARED") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared")),
    }
}

/// Lines of a file, each with its `\r` if the file is CRLF.
fn split_lines(data: &[u8]) -> Vec<Vec<u8>> {
    let mut lines: Vec<Vec<u8>> = data.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
    if lines.last().is_some_and(Vec::is_empty) {
        lines.pop();
    }
    lines
}

/// The lines of a loghub file (CRLF, so each keeps its `\r`), or `None` (reported as skipped
/// for `test`) when the corpus is not there.
fn loghub(name: &str, test: &str) -> Option<Vec<Vec<u8>>> {
    let path = shared_dir().join("data/loghub").join(name);
    let Ok(data) = std::fs::read(&path) else {
        eprintln!(
            "SKIPPED {test}: the loghub corpus is not at {}",
            path.display()
        );
        if let Some(dir) = std::env::var_os("EDGE_ROUTER_SKIPPED_DIR") {
            let _ = std::fs::create_dir_all(&dir);
            let _ = std::fs::write(
                PathBuf::from(dir).join(format!("log-to-json::{test}")),
                format!("{} is missing\n", path.display()),
            );
        }
        return None;
    };
    let lines = split_lines(&data);
    assert_eq!(lines.len(), 2000, "{name}");
    Some(lines)
}

/// A file of the repository's `tests/data/`, as lines.
fn data_lines(relative: &str) -> Vec<Vec<u8>> {
    let path =
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data")).join(relative);
    split_lines(&std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display())))
}

/// The hand-written samples (CRLF).
fn samples(name: &str) -> Vec<Vec<u8>> {
    data_lines(&format!("logs/{name}"))
}

/// The 50 lines of `kind` that `edge-router generate KIND 50` writes, kept in
/// `tests/data/generated/` (deterministic).
fn generated(kind: &str) -> Vec<String> {
    let lines: Vec<String> = data_lines(&format!("generated/{kind}.log"))
        .into_iter()
        .map(|l| String::from_utf8(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 50);
    lines
}

fn run<P: AsRef<[u8]>>(config: &str, payloads: &[P]) -> Outputs {
    let payloads: Vec<&[u8]> = payloads.iter().map(AsRef::as_ref).collect();
    enrich::<LogToJson>(config, &payloads).unwrap()
}

/// Each output as a JSON object; panics on a record error or invalid JSON.
fn objects(outputs: Outputs) -> Vec<Map<String, Value>> {
    outputs
        .into_iter()
        .enumerate()
        .map(|(i, o)| {
            let bytes = o.unwrap_or_else(|e| panic!("record {i}: {e}"));
            match serde_json::from_slice(&bytes) {
                Ok(Value::Object(map)) => map,
                other => panic!(
                    "record {i}: {:?} -> {other:?}",
                    String::from_utf8_lossy(&bytes)
                ),
            }
        })
        .collect()
}

fn convert_one(config: &str, line: &[u8]) -> Value {
    Value::Object(objects(run(config, &[line])).remove(0))
}

const SYSLOG: &str = r#"{"format": "syslog"}"#;

#[test]
fn linux_sample_lines() {
    let Some(lines) = loghub("Linux_2k.log", "linux_sample_lines") else {
        return;
    };
    let line = |n: usize| convert_one(SYSLOG, &lines[n - 1]);
    assert_eq!(
        line(1),
        json!({"timestamp": "Jun 14 15:16:01", "hostname": "combo", "program": "sshd(pam_unix)",
               "processid": 19939,
               "message": "authentication failure; logname= uid=0 euid=0 tty=NODEVssh ruser= rhost=218.188.2.4 "})
    );
    assert_eq!(
        line(5),
        json!({"timestamp": "Jun 15 02:04:59", "hostname": "combo", "program": "sshd(pam_unix)",
               "processid": 20884,
               "message": "authentication failure; logname= uid=0 euid=0 tty=NODEVssh ruser= rhost=220-135-151-1.hinet-ip.hinet.net  user=root"})
    );
    assert_eq!(
        line(14),
        json!({"timestamp": "Jun 15 04:06:18", "hostname": "combo", "program": "su(pam_unix)",
               "processid": 21416, "message": "session opened for user cyrus by (uid=0)"})
    );
    assert_eq!(
        line(16),
        json!({"timestamp": "Jun 15 04:06:20", "hostname": "combo", "program": "logrotate",
               "message": "ALERT exited abnormally with [1]"})
    );
    assert_eq!(
        line(146),
        json!({"timestamp": "Jun 19 04:09:11", "hostname": "combo",
               "message": "syslogd 1.4.1: restart."})
    );
    assert_eq!(
        line(899),
        json!({"timestamp": "Jul  7 08:06:15", "hostname": "combo",
               "message": "-- root[2421]: ROOT LOGIN ON tty2"})
    );
    assert_eq!(
        line(1243),
        json!({"timestamp": "Jul 11 11:33:17", "hostname": "combo", "program": "gdm-binary",
               "processid": 2803, "message": "Couldn't authenticate user"})
    );
    assert_eq!(
        line(1911),
        json!({"timestamp": "Jul 27 14:41:57", "hostname": "combo", "program": "kernel",
               "message": "Linux version 2.6.5-1.358 (bhcompile@bugs.build.redhat.com) (gcc version 3.3.3 20040412 (Red Hat Linux 3.3.3-7)) #1 Sat May 8 09:04:50 EDT 2004"})
    );
    // With a year, and with the format named explicitly.
    let with_year = r#"{"format": "rfc3164", "year": 2005}"#;
    assert_eq!(
        convert_one(with_year, &lines[0])["timestamp"],
        "2005-06-14T15:16:01"
    );
    let jul = lines.iter().find(|l| l.starts_with(b"Jul  1 ")).unwrap();
    assert_eq!(
        convert_one(with_year, jul)["timestamp"],
        json!(format!(
            "2005-07-01T{}",
            String::from_utf8_lossy(&jul[7..15])
        ))
    );
}

#[test]
fn openssh_sample_lines() {
    let Some(lines) = loghub("OpenSSH_2k.log", "openssh_sample_lines") else {
        return;
    };
    let line = |n: usize| convert_one(SYSLOG, &lines[n - 1]);
    assert_eq!(
        line(1),
        json!({"timestamp": "Dec 10 06:55:46", "hostname": "LabSZ", "program": "sshd",
               "processid": 24200,
               "message": "reverse mapping checking getaddrinfo for ns.marryaldkfaczcz.com [173.234.31.186] failed - POSSIBLE BREAK-IN ATTEMPT!"})
    );
    assert_eq!(
        line(4),
        json!({"timestamp": "Dec 10 06:55:46", "hostname": "LabSZ", "program": "sshd",
               "processid": 24200, "message": "pam_unix(sshd:auth): check pass; user unknown"})
    );
    assert_eq!(
        line(8),
        json!({"timestamp": "Dec 10 07:02:47", "hostname": "LabSZ", "program": "sshd",
               "processid": 24203,
               "message": "Connection closed by 212.47.254.145 [preauth]"})
    );
}

#[test]
fn apache_sample_lines() {
    let Some(lines) = loghub("Apache_2k.log", "apache_sample_lines") else {
        return;
    };
    let config = r#"{"format": "apache_error"}"#;
    let line = |n: usize| convert_one(config, &lines[n - 1]);
    assert_eq!(
        line(1),
        json!({"timestamp": "Sun Dec 04 04:47:44 2005", "severity": "notice",
               "message": "workerEnv.init() ok /etc/httpd/conf/workers2.properties"})
    );
    assert_eq!(
        line(2),
        json!({"timestamp": "Sun Dec 04 04:47:44 2005", "severity": "error",
               "message": "mod_jk child workerEnv in error state 6"})
    );
    assert_eq!(
        line(132),
        json!({"timestamp": "Sun Dec 04 05:15:09 2005", "severity": "error",
               "client": "222.166.160.184",
               "message": "Directory index forbidden by rule: /var/www/html/"})
    );
}

/// The whitespace-separated words of a line (without its `\r`).
fn words(line: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(line.strip_suffix(b"\r").unwrap_or(line))
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// Checks every RFC 3164 line of `lines` field by field; returns how many have `prog[pid]:`.
fn check_every_rfc3164_line(file: &str, lines: &[Vec<u8>], host: &str) -> usize {
    let mut with_pid = 0;
    for config in [SYSLOG, r#"{"format": "rfc3164"}"#] {
        with_pid = 0;
        {
            let outputs = objects(run(config, lines));
            for (line, obj) in lines.iter().zip(&outputs) {
                let text = String::from_utf8(line.clone()).unwrap();
                let text = text.strip_suffix('\r').unwrap_or(&text);
                // The tag is the fifth word: `prog[pid]:`, `prog:`, or no tag at all.
                let tag = &words(line)[4];
                let expected_keys: &[&str] = if tag.ends_with("]:") {
                    with_pid += 1;
                    &["timestamp", "hostname", "program", "processid", "message"]
                } else if tag.ends_with(':') {
                    &["timestamp", "hostname", "program", "message"]
                } else {
                    &["timestamp", "hostname", "message"]
                };
                let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
                let mut sorted = expected_keys.to_vec();
                sorted.sort_unstable();
                assert_eq!(keys, sorted, "{file}: {text}");
                assert_eq!(obj["timestamp"], text[..15], "{text}");
                assert_eq!(obj["hostname"], host, "{text}");
                let message = obj["message"].as_str().unwrap();
                assert!(text.ends_with(message), "{text}");
                if let Some(program) = obj.get("program") {
                    assert_eq!(
                        Some(program.as_str().unwrap()),
                        tag.strip_suffix(':')
                            .map(|t| t.split_once('[').map_or(t, |(p, _)| p)),
                        "{text}"
                    );
                }
                if let Some(pid) = obj.get("processid") {
                    let pid = pid.as_u64().unwrap_or_else(|| panic!("{text}"));
                    assert!(tag.contains(&format!("[{pid}]:")), "{text}");
                }
            }
        }
    }
    with_pid
}

#[test]
fn every_syslog_line_of_linux_and_openssh() {
    for (file, host, pids) in [
        ("Linux_2k.log", "combo", 1848),
        ("OpenSSH_2k.log", "LabSZ", 2000),
    ] {
        let Some(lines) = loghub(file, "every_syslog_line_of_linux_and_openssh") else {
            return;
        };
        // Linux: 1,848 lines have `prog[pid]:`; the rest are `kernel:`, `logrotate:`, ...
        assert_eq!(check_every_rfc3164_line(file, &lines, host), pids);
    }
}

#[test]
fn every_line_of_the_rfc3164_samples() {
    let lines = samples("rfc3164.log");
    assert_eq!(lines.len(), 20);
    assert_eq!(
        check_every_rfc3164_line("rfc3164.log", &lines, "edge-gw-1"),
        13
    );
}

/// Checks every Apache error log line of `lines` field by field; returns how many name a client.
fn check_every_apache_error_line(lines: &[Vec<u8>]) -> usize {
    let outputs = objects(run(r#"{"format": "apache_error"}"#, lines));
    let mut with_client = 0;
    for (line, obj) in lines.iter().zip(&outputs) {
        let text = String::from_utf8(line.clone()).unwrap();
        let w = words(line);
        let mut expected = vec!["message", "severity", "timestamp"];
        if text.contains("] [client ") {
            with_client += 1;
            expected.insert(0, "client");
        }
        let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        assert_eq!(keys, expected, "{text}");
        assert_eq!(obj["timestamp"], w[..5].join(" ")[1..25], "{text}");
        assert_eq!(obj["severity"], w[5].trim_matches(['[', ']']), "{text}");
        assert!(
            text.trim_end_matches('\r')
                .ends_with(obj["message"].as_str().unwrap())
        );
    }
    with_client
}

#[test]
fn every_apache_error_line() {
    let Some(lines) = loghub("Apache_2k.log", "every_apache_error_line") else {
        return;
    };
    assert_eq!(check_every_apache_error_line(&lines), 32);
}

#[test]
fn every_line_of_the_apache_error_samples() {
    let lines = samples("apache-error.log");
    assert_eq!(lines.len(), 10);
    assert_eq!(check_every_apache_error_line(&lines), 3);
}

#[test]
fn mismatching_lines_are_errors_or_pass() {
    let apache = samples("apache-error.log");
    let linux = samples("rfc3164.log");
    let out = run(SYSLOG, &apache[..3]);
    assert_eq!(
        out[0],
        Err("does not match syslog: expected a month name (Jan to Dec) at byte 0".to_owned())
    );
    let out = run(r#"{"format": "apache_error"}"#, &linux[..1]);
    assert_eq!(
        out[0],
        Err("does not match apache_error: expected '[' opening the date at byte 0".to_owned())
    );
    let out = run(r#"{"format": "apache_common"}"#, &linux[..1]);
    assert_eq!(
        out[0],
        Err(
            "does not match apache_common: expected an ident ('-' when unknown) at byte 4"
                .to_owned()
        )
    );
    // "pass" leaves mismatching records exactly as they were, CR included.
    let mixed = [&apache[0], &linux[0], &apache[1]];
    let out = run(r#"{"format": "syslog", "on_mismatch": "pass"}"#, &mixed);
    assert_eq!(out[0].as_ref(), Ok(&apache[0]));
    assert_eq!(out[2].as_ref(), Ok(&apache[1]));
    assert_eq!(
        serde_json::from_slice::<Value>(out[1].as_ref().unwrap()).unwrap()["processid"],
        4120
    );
    let out = run(
        r#"{"format": "csv", "csv_fields": ["a"], "on_mismatch": "pass"}"#,
        &[""],
    );
    assert_eq!(out[0].as_deref(), Ok(&b""[..]));
}

#[test]
fn line_breaks_and_bytes() {
    let config = r#"{"format": "csv", "csv_fields": ["a", "b"]}"#;
    let out = run(
        config,
        &[
            &b"1,2\r\n"[..],
            b"1,2\n",
            b"1,2\r",
            b"1,2\r\r",
            b"1,\xff\"x\\",
        ],
    );
    let texts: Vec<String> = out
        .into_iter()
        .map(|o| String::from_utf8(o.unwrap()).unwrap())
        .collect();
    assert_eq!(texts[0], r#"{"a":"1","b":"2"}"#);
    assert_eq!(texts[1], texts[0]);
    assert_eq!(texts[2], texts[0]);
    // Only one line break is dropped; the other CR is data.
    assert_eq!(texts[3], r#"{"a":"1","b":"2\u000d"}"#);
    assert_eq!(texts[4], "{\"a\":\"1\",\"b\":\"\u{fffd}\\\"x\\\\\"}");
}

#[test]
fn generated_rfc5424_lines() {
    let lines = generated("syslog");
    let objs = objects(run(SYSLOG, &lines));
    assert_eq!(
        Value::Object(objs[0].clone()),
        json!({"priority": 165, "facility": 20, "severity": 5, "version": 1,
               "timestamp": "2016-03-25T00:00:00.000Z", "hostname": "host-4488.example.com",
               "appname": "sshd", "processid": null, "msgid": "ID18",
               "structureddata": "[exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"4035\"]",
               "message": "An application event log entry"})
    );
    assert_eq!(objs, objects(run(r#"{"format": "rfc5424"}"#, &lines)));
    for (line, obj) in lines.iter().zip(&objs) {
        // <PRI>1 TIMESTAMP HOST APP - MSGID [SD] MSG, checked field by field.
        let (pri, rest) = line[1..].split_once(">1 ").unwrap();
        let pri: u64 = pri.parse().unwrap();
        let w: Vec<&str> = rest.splitn(6, ' ').collect();
        let (sd, msg) = w[5].split_at(w[5].find("] ").unwrap() + 1);
        assert_eq!(obj["priority"], pri);
        assert_eq!(obj["facility"], pri / 8);
        assert_eq!(obj["severity"], pri % 8);
        assert_eq!(obj["version"], 1);
        assert_eq!(obj["timestamp"], w[0]);
        assert_eq!(obj["hostname"], w[1]);
        assert_eq!(obj["appname"], w[2]);
        assert_eq!((w[3], &obj["processid"]), ("-", &Value::Null));
        assert_eq!(obj["msgid"], w[4]);
        assert_eq!(obj["structureddata"], sd);
        assert_eq!(obj["message"], msg[1..]);
        assert_eq!(obj.len(), 11);
    }
}

#[test]
fn generated_apache_common_lines() {
    let lines = generated("clf");
    let objs = objects(run(r#"{"format": "apache_common"}"#, &lines));
    assert_eq!(
        Value::Object(objs[0].clone()),
        json!({"host": "10.136.17.207", "ident": null, "authuser": "user4488",
               "datetime": "10/Oct/2000:13:00:00 -0700", "request": "GET /login HTTP/1.0",
               "response": 200, "bytes": 13705})
    );
    for (line, obj) in lines.iter().zip(&objs) {
        let (head, rest) = line.split_once(" [").unwrap();
        let (datetime, rest) = rest.split_once("] \"").unwrap();
        let (request, rest) = rest.split_once("\" ").unwrap();
        let h: Vec<&str> = head.split(' ').collect();
        let (response, bytes) = rest.split_once(' ').unwrap();
        assert_eq!(obj["host"], h[0]);
        assert_eq!((h[1], &obj["ident"]), ("-", &Value::Null));
        assert_eq!(obj["authuser"], h[2]);
        assert_eq!(obj["datetime"], datetime);
        assert_eq!(obj["request"], request);
        assert_eq!(obj["response"], response.parse::<u64>().unwrap());
        assert_eq!(obj["bytes"], bytes.parse::<u64>().unwrap());
        assert_eq!(obj.len(), 7);
    }
    // The same lines as combined lack the referer and agent.
    let out = run(r#"{"format": "apache_combined"}"#, &lines[..1]);
    assert!(
        out[0]
            .as_ref()
            .unwrap_err()
            .starts_with("does not match apache_combined: ")
    );
}

#[test]
fn generated_csv_lines() {
    let lines = generated("csv");
    let config = r#"{"format": "csv", "csv_fields": ["device_id", "temperature", "ts"]}"#;
    let objs = objects(run(config, &lines));
    assert_eq!(
        Value::Object(objs[0].clone()),
        json!({"device_id": "4488", "temperature": "88.9", "ts": "2016-03-25 01:00:00"})
    );
    for (line, obj) in lines.iter().zip(&objs) {
        let cols: Vec<&str> = line.split(',').collect();
        assert_eq!(
            Value::Object(obj.clone()),
            json!({"device_id": cols[0], "temperature": cols[1], "ts": cols[2]})
        );
    }
    // Fewer names: the rest of the columns are ignored.
    let objs = objects(run(
        r#"{"format": "csv", "csv_fields": ["id"]}"#,
        &lines[..2],
    ));
    assert_eq!(Value::Object(objs[1].clone()), json!({"id": "2204"}));
}

#[test]
fn config_errors() {
    let err = |c: &str| enrich::<LogToJson>(c, &[]).unwrap_err();
    let formats = "\"syslog\", \"rfc3164\", \"rfc5424\", \"apache_common\", \
                   \"apache_combined\", \"apache_error\", \"csv\"";
    assert!(err("{").starts_with("config is not valid JSON: "));
    assert_eq!(
        err("[]"),
        "config must be a JSON object such as {\"format\": \"syslog\"}"
    );
    assert_eq!(
        err("{}"),
        format!("config: missing `format`, one of {formats}")
    );
    assert_eq!(
        err(r#"{"format": 1}"#),
        format!("config: `format` must be a string, one of {formats}")
    );
    assert_eq!(
        err(r#"{"format": "SYSLOG"}"#),
        format!("config: `format`: unknown format \"SYSLOG\" (expected one of {formats})")
    );
    assert_eq!(
        err(r#"{"format": "syslog", "delimiter": ","}"#),
        "config: unknown field `delimiter` (expected one of `format`, `csv_fields`, \
         `csv_delimiter`, `on_mismatch`, `year`)"
    );
    assert_eq!(
        err(r#"{"format": "csv"}"#),
        "config: the \"csv\" format needs `csv_fields`, the column names, e.g. \
         [\"device_id\", \"temperature\", \"ts\"]"
    );
    for bad in [r#""a""#, r#"["a", 1]"#] {
        assert_eq!(
            err(&format!(r#"{{"format": "csv", "csv_fields": {bad}}}"#)),
            "config: `csv_fields` must be a list of strings, e.g. [\"device_id\", \"temperature\", \"ts\"]"
        );
    }
    assert_eq!(
        err(r#"{"format": "csv", "csv_fields": []}"#),
        "config: `csv_fields` must name at least one column"
    );
    assert_eq!(
        err(r#"{"format": "csv", "csv_fields": ["a", "b", "a"]}"#),
        "config: `csv_fields` names \"a\" twice"
    );
    for bad in [r#""""#, r#""\"""#, "1"] {
        assert_eq!(
            err(&format!(
                r#"{{"format": "csv", "csv_fields": ["a"], "csv_delimiter": {bad}}}"#
            )),
            "config: `csv_delimiter` must be a non-empty string without '\"'"
        );
    }
    assert_eq!(
        err(r#"{"format": "syslog", "csv_fields": ["a"]}"#),
        "config: `csv_fields` applies only to the \"csv\" format, not to \"syslog\""
    );
    assert_eq!(
        err(r#"{"format": "apache_error", "csv_delimiter": ";"}"#),
        "config: `csv_delimiter` applies only to the \"csv\" format, not to \"apache_error\""
    );
    assert_eq!(
        err(r#"{"format": "rfc5424", "year": 2024}"#),
        "config: `year` applies only to the \"syslog\" and \"rfc3164\" formats, not to \"rfc5424\""
    );
    for bad in ["0", "10000", "2024.5", "\"2024\"", "-1"] {
        assert_eq!(
            err(&format!(r#"{{"format": "syslog", "year": {bad}}}"#)),
            "config: `year` must be a whole number from 1 to 9999"
        );
    }
    assert_eq!(
        err(r#"{"format": "syslog", "on_mismatch": "drop"}"#),
        "config: `on_mismatch` must be \"error\" or \"pass\""
    );
    // Valid configs.
    for ok in [
        r#"{"format": "syslog", "year": 2024, "on_mismatch": "pass"}"#,
        r#"{"format": "rfc3164", "year": 1}"#,
        r#"{"format": "csv", "csv_fields": ["a b", "é\"q"], "csv_delimiter": "\t"}"#,
        r#"{"format": "apache_combined", "on_mismatch": "error"}"#,
    ] {
        assert!(LogToJson::from_config(ok).is_ok(), "{ok}");
    }
    let escaped_names = r#"{"format": "csv", "csv_fields": ["a b", "é\"q\\"]}"#;
    assert_eq!(
        run(escaped_names, &["1,2"])[0].as_deref(),
        Ok("{\"a b\":\"1\",\"é\\\"q\\\\\":\"2\"}".as_bytes())
    );
}

#[test]
fn convert_appends_and_leaves_out_alone_on_mismatch() {
    let stage = LogToJson::from_config(r#"{"format": "apache_common"}"#).unwrap();
    let mut out = b"prefix".to_vec();
    let err = stage
        .convert(br#"h - - [d] "GET /" 200 oops"#, &mut out)
        .unwrap_err();
    assert_eq!(
        err,
        "does not match apache_common: expected a size in bytes (or '-') at byte 22"
    );
    assert_eq!(out, b"prefix");
    stage
        .convert(br#"h - - [d] "GET /" 200 -"#, &mut out)
        .unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        r#"prefix{"host":"h","ident":null,"authuser":null,"datetime":"d","request":"GET /","response":200,"bytes":null}"#
    );
}
