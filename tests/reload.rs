//! Hot reload under load: records stream in on stdin while the config file is changed and the
//! router is told to reload (`edge-router reload`, SIGHUP, `--watch-config`). Every record read
//! ends up in exactly one of the outputs the configs in force named, decided by the config in
//! force when it went through the stages; a config that does not validate (or a plugin config
//! the plugin rejects, or changed sources) is refused with the reasons and the old pipeline
//! keeps running.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{ChildStdin, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{Running, bin, free_port, plugin, temp_dir};

/// Writes records `{"id":N,"x":N % 100}` to the router's stdin, 200 at a time with a short
/// pause, until told to stop; then closes stdin. Counts what it wrote.
struct Stream {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    handle: JoinHandle<u64>,
}

impl Stream {
    fn start(mut stdin: ChildStdin) -> Stream {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let handle = {
            let (stop, sent) = (stop.clone(), sent.clone());
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(60);
                let mut n = 0u64;
                let mut chunk = String::new();
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    chunk.clear();
                    for id in n..n + 200 {
                        chunk.push_str(&format!("{{\"id\":{id},\"x\":{}}}\n", id % 100));
                    }
                    stdin.write_all(chunk.as_bytes()).unwrap();
                    n += 200;
                    sent.store(n, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(2));
                }
                n
            })
        };
        Stream { stop, sent, handle }
    }

    fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Stops writing, closes stdin, and returns how many records were written.
    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap()
    }
}

/// The ids in an output file, in file order.
fn ids(path: &Path) -> Vec<u64> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["id"].as_u64().unwrap()
        })
        .collect()
}

fn line_count(path: &Path) -> usize {
    std::fs::read(path).map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count())
}

/// Waits (at most 20 s) until `path` has more than `than` lines.
fn wait_for_lines(path: &Path, than: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while line_count(path) <= than {
        assert!(
            Instant::now() < deadline,
            "{} did not grow past {than} lines",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The `[metrics] reload_token` of the configs here.
const RELOAD_TOKEN: &str = "reload-t0ken";

/// `edge-router reload --metrics ADDR` with the token: (success, stdout, stderr).
fn reload(metrics: &str) -> (bool, String, String) {
    let out = Command::new(bin())
        .args(["reload", "--metrics", metrics])
        .env("EDGE_ROUTER_RELOAD_TOKEN", RELOAD_TOKEN)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The body of `GET http://ADDR/metrics`.
fn scrape(metrics: &str) -> String {
    let out = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "10",
            &format!("http://{metrics}/metrics"),
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits (at most 20 s) until the scraped metrics satisfy `ok`.
fn wait_for_metrics(metrics: &str, what: &str, ok: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ok(&scrape(metrics)) {
        assert!(Instant::now() < deadline, "metrics never showed {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A config: stdin -> json-filter with `condition` -> file `out` at `path`.
fn filter_config(dir: &Path, metrics: &str, condition: &str, path: &str) -> String {
    format!(
        "[sources.in]\nkind = \"stdin\"\n\n\
         [[stages]]\nname = \"keep\"\nkind = \"filter\"\nplugin = \"{}\"\nconfig = {{ condition = \"{condition}\" }}\n\n\
         [sinks.out]\nkind = \"file\"\npath = \"{}\"\n\n\
         [dead_letter]\npath = \"{}\"\n\n\
         [metrics]\naddress = \"{metrics}\"\nreload_token = \"{RELOAD_TOKEN}\"\n",
        plugin("json-filter").display(),
        dir.join(path).display(),
        dir.join("dead.ndjson").display(),
    )
}

#[test]
fn reload_under_load_moves_every_record_to_exactly_one_output() {
    let dir = temp_dir();
    let d = dir.path();
    let metrics = format!("127.0.0.1:{}", free_port());
    let config = d.join("router.toml");
    std::fs::write(
        &config,
        filter_config(d, &metrics, "x <= 60", "out-1.ndjson"),
    )
    .unwrap();
    let cfg = config.to_str().unwrap();
    let (router, stdin) = Running::start(d, &["run", "-c", cfg, "--stats=json"]);
    let stream = Stream::start(stdin);
    let (out1, out2) = (d.join("out-1.ndjson"), d.join("out-2.ndjson"));
    wait_for_lines(&out1, 1000);

    // A new filter condition and a new sink path, while records flow.
    std::fs::write(
        &config,
        filter_config(d, &metrics, "x >= 40", "out-2.ndjson"),
    )
    .unwrap();
    let (ok, said, err) = reload(&metrics);
    assert!(ok, "reload failed: {err}");
    assert!(
        said.contains("replaced [out]") && said.contains("stages rebuilt"),
        "{said}"
    );
    let switched_at = stream.sent();
    wait_for_lines(&out2, 1000);
    let before = line_count(&out1);

    // Not valid TOML for this router: an unknown key, named with file, line and key.
    let good = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, good.replace("path = ", "pathh = ")).unwrap();
    let (ok, _, err) = reload(&metrics);
    assert!(!ok);
    assert!(
        err.contains("router.toml:") && err.contains("pathh"),
        "{err}"
    );
    // A plugin config the plugin rejects: refused naming the stage.
    std::fs::write(&config, filter_config(d, &metrics, "x >=", "out-3.ndjson")).unwrap();
    let (ok, _, err) = reload(&metrics);
    assert!(!ok);
    assert!(err.contains("stage `keep`"), "{err}");
    // Sources cannot change while running.
    std::fs::write(
        &config,
        good.replace("kind = \"stdin\"", "kind = \"stdin\"\nframing = \"json\""),
    )
    .unwrap();
    let (ok, _, err) = reload(&metrics);
    assert!(!ok);
    assert!(
        err.contains("sources cannot change") && err.contains("in"),
        "{err}"
    );
    // The same config again: nothing to replace.
    std::fs::write(&config, &good).unwrap();
    let (ok, said, err) = reload(&metrics);
    assert!(ok, "{err}");
    assert!(
        said.contains("sinks kept [out]") && said.contains("stages kept"),
        "{said}"
    );

    // The old pipeline kept running through the refused reloads.
    let grown = line_count(&out2);
    wait_for_lines(&out2, grown + 1000);
    assert!(!d.join("out-3.ndjson").exists());
    assert_eq!(line_count(&out1), before, "out-1 grew after the switch");

    let total = stream.finish();
    let out = router.wait(Duration::from_secs(60));
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let stats = out.ok_stats();
    assert_eq!(stats.read(), total);
    assert!(switched_at < total);

    // Every record went through exactly one config: there is a switch point `s` such that
    // out-1 holds exactly the ids below `s` with x <= 60, and out-2 exactly the ids from `s` on
    // with x >= 40, each once and in order.
    let (a, b) = (ids(&out1), ids(&out2));
    let last_a = a.last().copied().unwrap();
    let first_b = b.first().copied().unwrap();
    let fits = (last_a + 1..=first_b).any(|s| {
        let want_a: Vec<u64> = (0..s).filter(|id| id % 100 <= 60).collect();
        let want_b: Vec<u64> = (s..total).filter(|id| id % 100 >= 40).collect();
        a == want_a && b == want_b
    });
    assert!(
        fits,
        "outputs are not one switch apart: out-1 has {} (last {last_a}), out-2 has {} (first {first_b}), {total} sent",
        a.len(),
        b.len()
    );
    assert_eq!(
        stats.written() + stats.dropped(),
        total,
        "written + dropped by the filter"
    );
    assert_eq!(stats.dead_lettered(), 0);
    assert!(
        std::fs::read(d.join("dead.ndjson"))
            .unwrap_or_default()
            .is_empty()
    );
}

/// stdin -> file sinks named in `sinks`, every record to every sink.
fn fanout_config(dir: &Path, metrics: &str, sinks: &[&str]) -> String {
    let mut text = String::from("[sources.in]\nkind = \"stdin\"\n\n");
    for s in sinks {
        text.push_str(&format!(
            "[sinks.{s}]\nkind = \"file\"\npath = \"{}\"\n\n",
            dir.join(format!("{s}.ndjson")).display()
        ));
    }
    text.push_str(&format!(
        "[dead_letter]\npath = \"{}\"\n\n[metrics]\naddress = \"{metrics}\"\nreload_token = \"{RELOAD_TOKEN}\"\n",
        dir.join("dead.ndjson").display()
    ));
    text
}

#[test]
fn sighup_and_the_file_watch_add_and_remove_sinks_under_load() {
    let dir = temp_dir();
    let d = dir.path();
    let metrics = format!("127.0.0.1:{}", free_port());
    let config = d.join("router.toml");
    std::fs::write(&config, fanout_config(d, &metrics, &["a"])).unwrap();
    let cfg = config.to_str().unwrap();
    let (router, stdin) = Running::start(d, &["run", "-c", cfg, "--watch-config", "--stats=json"]);
    let stream = Stream::start(stdin);
    let (a, b) = (d.join("a.ndjson"), d.join("b.ndjson"));
    wait_for_lines(&a, 1000);

    // Add sink b and send SIGHUP (the watch may see the change too; a second reload of the same
    // file keeps everything).
    std::fs::write(&config, fanout_config(d, &metrics, &["a", "b"])).unwrap();
    router.signal("HUP");
    wait_for_metrics(&metrics, "the queue of sink b", |m| {
        m.contains("queue=\"sinks.b\"")
    });
    wait_for_lines(&b, 1000);

    // Remove sink a by editing the file only: the watch reloads. It compares modification
    // times, so the edit gets one later than any the file had (not one that depends on the
    // clock having moved since the last write).
    let before = std::fs::metadata(&config).unwrap().modified().unwrap();
    std::fs::write(&config, fanout_config(d, &metrics, &["b"])).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&config)
        .unwrap()
        .set_modified(before + Duration::from_secs(1))
        .unwrap();
    wait_for_metrics(&metrics, "sink a gone", |m| {
        !m.contains("queue=\"sinks.a\"")
    });
    let grown = line_count(&b);
    wait_for_lines(&b, grown + 1000);

    let total = stream.finish();
    let out = router.wait(Duration::from_secs(60));
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let stats = out.ok_stats();
    assert_eq!(stats.read(), total);
    assert_eq!(stats.in_flight(), 0);
    // a holds a prefix of the stream, b a suffix, each complete and in order; they overlap
    // while both ran.
    let (got_a, got_b) = (ids(&a), ids(&b));
    let first_b = got_b[0];
    assert_eq!(got_a, (0..got_a.len() as u64).collect::<Vec<_>>());
    assert_eq!(got_b, (first_b..total).collect::<Vec<_>>());
    assert!(
        first_b < got_a.len() as u64,
        "no overlap: a ends at {}, b starts at {first_b}",
        got_a.len()
    );
    assert_eq!(
        stats.written(),
        total + stats.fanout(),
        "each copy written once"
    );
    assert!(out.stderr.contains("added [b]"), "{}", out.stderr);
    assert!(out.stderr.contains("removed [a]"), "{}", out.stderr);
}

#[test]
fn reload_is_refused_without_a_config_file() {
    let dir = temp_dir();
    let d = dir.path();
    let metrics = format!("127.0.0.1:{}", free_port());
    let out_path = d.join("out.ndjson");
    let sink = format!("file:{}", out_path.display());
    let (router, stdin) = Running::start(
        d,
        &[
            "run",
            "--sink",
            &sink,
            "--metrics",
            &metrics,
            "--stats=json",
        ],
    );
    let stream = Stream::start(stdin);
    wait_for_lines(&out_path, 100);
    // Over HTTP: refused before anything else, since quick mode has no [metrics] reload_token.
    let (ok, _, err) = reload(&metrics);
    assert!(!ok);
    assert!(err.contains("reload_token"), "{err}");
    // SIGHUP: refused, and the log says why.
    router.signal("HUP");
    let seen = line_count(&out_path);
    wait_for_lines(&out_path, seen + 1000);
    let total = stream.finish();
    let out = router.wait(Duration::from_secs(60));
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("not started with a config file"),
        "{}",
        out.stderr
    );
    assert_eq!(out.ok_stats().written(), total);
}
