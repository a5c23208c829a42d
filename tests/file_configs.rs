//! The example configs that tail files into AWS services, run as they are against local servers
//! on 127.0.0.1: `configs/tail-apache-to-firehose.toml` (Apache access log -> log-to-json ->
//! Firehose, against moto) and `configs/tail-json-to-kinesis.toml` (JSON app log -> Kinesis keyed
//! by a field, against kinesalite: each record read back is on the shard its key hashes to).
//! They need `eval "$(tests/kinesis/setup.sh)"; eval "$(tests/firehose/setup.sh)"` (tests/run.sh
//! does) and the plugins built (`plugins/build.sh`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use common::aws::{Moto, endpoint, moto_python, router, start_server, tool};
use common::{Proc, Running, free_port, temp_dir, wait_for};
use edge_router::core::kinesis::hash::{hash_key, parse_hash_key};
use serde_json::Value;

const LONG: Duration = Duration::from_secs(60);

fn append(path: &Path, text: &str) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// Starts `configs/NAME` in `dir` with `AWS_ENDPOINT_URL` set; returns once its file source
/// made its first scan.
fn start(dir: &Path, name: &str, endpoint: &str, source: &str) -> Running {
    let config = common::repo_root().join("configs").join(name);
    let cmd = router(
        dir,
        &["run", "-c", config.to_str().unwrap(), "--stats=json"],
        &[("AWS_ENDPOINT_URL", endpoint)],
    );
    let (mut run, stdin) = Running::spawn(cmd);
    drop(stdin);
    run.wait_for_stderr(&format!("source `{source}` watching"), LONG);
    run
}

/// An Apache combined-format access log line, numbered by its path.
fn access_line(n: u64) -> String {
    format!(
        "192.0.2.{} - frank [10/Oct/2024:13:55:{:02} -0700] \"GET /item/{n} HTTP/1.1\" 200 {} \
         \"http://example.com/\" \"Mozilla/5.0 (X11)\"\n",
        n % 250,
        n % 60,
        100 + n
    )
}

/// The objects of a moto bucket, as lines.
fn bucket_lines(m: &Moto, bucket: &str) -> Vec<Vec<u8>> {
    let out = tool(
        &moto_python(),
        "firehose/firehose_tool.py",
        &["read", &m.endpoint(), bucket],
    );
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut lines = Vec::new();
    for l in out.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let v: Value = serde_json::from_slice(l).unwrap();
        let object = b64.decode(v["data"].as_str().unwrap()).unwrap();
        lines.extend(common::lines(&object).into_iter().map(<[u8]>::to_vec));
    }
    lines
}

/// configs/tail-apache-to-firehose.toml: an access log read from its beginning, rotated by
/// rename-and-create while tailed, every line arrives in S3 once as the JSON object log-to-json
/// makes of it; a line that is not an access log line is dead-lettered.
#[test]
fn the_apache_to_firehose_example_config_delivers_every_line_as_json() {
    let m = Moto::start();
    let args = ["create", &m.endpoint(), "apache-access-to-s3", "access"];
    tool(&moto_python(), "firehose/firehose_tool.py", &args);
    let tmp = temp_dir();
    let dir = tmp.path();
    std::fs::create_dir_all(dir.join("plugins/dist")).unwrap();
    std::os::unix::fs::symlink(
        common::plugin("log-to-json"),
        dir.join("plugins/dist/log-to-json.wasm"),
    )
    .unwrap();
    let logs = dir.join("logs/apache");
    std::fs::create_dir_all(&logs).unwrap();
    let log = logs.join("access.log");
    append(&log, &(0..300).map(access_line).collect::<String>());
    append(&log, "not an access log line\n");
    let run = start(dir, "tail-apache-to-firehose.toml", &m.endpoint(), "access");
    wait_for("the first 300 lines in S3", LONG, || {
        bucket_lines(&m, "access").len() >= 300
    });
    // Rotated by rename-and-create while a writer goes on.
    append(&log, &(300..400).map(access_line).collect::<String>());
    std::fs::rename(&log, logs.join("access.log.1")).unwrap();
    append(&log, &(400..500).map(access_line).collect::<String>());
    wait_for("500 lines in S3", LONG, || {
        bucket_lines(&m, "access").len() >= 500
    });
    run.signal("TERM");
    let stats = run.wait(LONG).ok_stats();
    assert_eq!(stats.dead_lettered(), 1);
    let got = bucket_lines(&m, "access");
    assert_eq!(got.len(), 500);
    let mut seen = vec![0u32; 500];
    for l in &got {
        let v: Value = serde_json::from_slice(l).unwrap();
        let request = v["request"].as_str().unwrap();
        let n: usize = request
            .strip_prefix("GET /item/")
            .and_then(|r| r.strip_suffix(" HTTP/1.1"))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(v["response"], 200);
        assert_eq!(v["bytes"], 100 + n as u64);
        assert_eq!(v["ident"], Value::Null, "`-` is null");
        assert_eq!(v["authuser"], "frank");
        assert_eq!(v["agent"], "Mozilla/5.0 (X11)");
        seen[n] += 1;
    }
    assert!(seen.iter().all(|c| *c == 1), "not every line once");
    let dead = common::dead_letters(&dir.join("edge-router-out/dead-letter.ndjson"));
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].payload, b"not an access log line");
}

/// kinesalite with the tools of tests/kinesis (see tests/kinesis.rs).
struct Kinesalite {
    _proc: Proc,
    port: u16,
    python: PathBuf,
}

fn env_path(var: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => panic!("{var} is not set: run `eval \"$(tests/kinesis/setup.sh)\"` first"),
    }
}

impl Kinesalite {
    fn start() -> Kinesalite {
        let modules = env_path("EDGE_ROUTER_KINESALITE_MODULES");
        let python = env_path("EDGE_ROUTER_KINESIS_PYTHON");
        let port = free_port();
        let mut cmd = Command::new("node");
        cmd.arg(common::repo_root().join("tests/kinesis/kinesalite.js"))
            .arg(port.to_string())
            .env("NODE_PATH", &modules)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let proc = start_server(&mut cmd, port, "kinesalite (node)");
        Kinesalite {
            _proc: proc,
            port,
            python,
        }
    }

    fn endpoint(&self) -> String {
        endpoint(self.port)
    }

    fn kinesis_tool(&self, args: &[&str]) -> Vec<Value> {
        tool(&self.python, "kinesis/kinesis_tool.py", args)
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect()
    }
}

/// configs/tail-json-to-kinesis.toml: JSON lines written to a log file that appears after the
/// start arrive in Kinesis once each, each on the shard its `request.user` key hashes to (and
/// lines without the field under the fallback key); a line that is not JSON is dead-lettered.
#[test]
fn the_json_to_kinesis_example_config_keys_records_by_field() {
    let k = Kinesalite::start();
    k.kinesis_tool(&["create", &k.endpoint(), "app-events", "4"]);
    let tmp = temp_dir();
    let dir = tmp.path();
    let logs = dir.join("logs/app");
    std::fs::create_dir_all(&logs).unwrap();
    let run = start(dir, "tail-json-to-kinesis.toml", &k.endpoint(), "app");
    // Appears after the start: read from its beginning.
    let log = logs.join("api.json");
    let users = ["ana", "bo", "chen", "dara", "eli", "fay", "gus"];
    let mut text = String::new();
    for n in 0..700 {
        let user = users[n % users.len()];
        text.push_str(&format!(
            "{{\"n\":{n},\"request\":{{\"user\":\"{user}\",\"path\":\"/x\"}}}}\n"
        ));
    }
    text.push_str("{\"n\":700,\"no_user\":true}\nnot json\n");
    append(&log, &text);
    let read = || k.kinesis_tool(&["read", &k.endpoint(), "app-events", "--deaggregate"]);
    wait_for("701 records in Kinesis", LONG, || {
        read().iter().filter(|v| v.get("start").is_none()).count() >= 701
    });
    run.signal("TERM");
    let stats = run.wait(LONG).ok_stats();
    assert_eq!(stats.dead_lettered(), 1);
    let back = read();
    let shards: Vec<(String, u128, u128)> = back
        .iter()
        .filter(|v| v.get("start").is_some())
        .map(|v| {
            (
                v["shard"].as_str().unwrap().to_owned(),
                parse_hash_key(v["start"].as_str().unwrap()).unwrap(),
                parse_hash_key(v["end"].as_str().unwrap()).unwrap(),
            )
        })
        .collect();
    assert_eq!(shards.len(), 4);
    let shard_of = |key: &str| {
        let h = hash_key(key);
        shards
            .iter()
            .find(|(_, s, e)| *s <= h && h <= *e)
            .unwrap()
            .0
            .clone()
    };
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut seen = vec![0u32; 701];
    let mut per_key_shards: HashMap<String, String> = HashMap::new();
    for v in back.iter().filter(|v| v.get("start").is_none()) {
        let data = b64.decode(v["data"].as_str().unwrap()).unwrap();
        let rec: Value = serde_json::from_slice(&data).unwrap();
        let n = rec["n"].as_u64().unwrap() as usize;
        seen[n] += 1;
        let want = rec["request"]["user"].as_str().unwrap_or("anonymous");
        let pk = v["pk"].as_str().unwrap();
        assert_eq!(pk, want, "record {n}");
        let shard = v["shard"].as_str().unwrap();
        assert_eq!(shard, shard_of(pk), "record {n} with key {pk}");
        per_key_shards.insert(pk.to_owned(), shard.to_owned());
    }
    assert!(seen.iter().all(|c| *c == 1), "not every record once");
    // The keys spread over more than one shard (so the check above means something).
    let used: std::collections::HashSet<&String> = per_key_shards.values().collect();
    assert!(used.len() > 1, "{per_key_shards:?}");
}
