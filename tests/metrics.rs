//! The metrics endpoint: scraped during a run (HTTP source -> file sink), its counters match the
//! records sent, the accounting invariant holds in the exported numbers, and `/health` and
//! `/ready` answer; a config `[metrics]` table and `--metrics` both turn it on.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Running, free_port, temp_dir, wait_for_port};

/// `(status, body)` of a GET with curl.
fn get(url: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10", "-w", "\n%{http_code}", url])
        .output()
        .expect("running curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.parse().unwrap(), body.to_owned())
}

fn post(url: &str, body: &[u8]) -> u16 {
    let mut child = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--data-binary",
            "@-",
            url,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(body).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).parse().unwrap()
}

/// The samples of a Prometheus text page: `series -> value`.
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            (series.to_owned(), value.parse::<f64>().unwrap())
        })
        .collect()
}

#[test]
fn scraped_counters_match_the_records_sent() {
    let dir = temp_dir();
    let d = dir.path();
    let (port, mport) = (free_port(), free_port());
    let config = format!(
        "[sources.web]\nkind = \"http\"\naddress = \"127.0.0.1:{port}\"\n\n\
         [sinks.out]\nkind = \"file\"\npath = \"out.ndjson\"\n\n\
         [metrics]\naddress = \"127.0.0.1:{mport}\"\n"
    );
    std::fs::write(d.join("pipeline.toml"), config).unwrap();
    let (mut run, stdin) = Running::start(d, &["run", "-c", "pipeline.toml", "--stats=json"]);
    drop(stdin);
    wait_for_port(port, &mut run.child, "edge-router", Duration::from_secs(20));
    wait_for_port(
        mport,
        &mut run.child,
        "metrics endpoint",
        Duration::from_secs(20),
    );
    let metrics = format!("http://127.0.0.1:{mport}");
    assert_eq!(get(&format!("{metrics}/health")).0, 200);
    assert_eq!(get(&format!("{metrics}/ready")).0, 200);
    assert_eq!(get(&format!("{metrics}/nope")).0, 404);

    let mut sent = 0u64;
    let mut bytes = 0u64;
    for n in [10u64, 200, 3000] {
        let body: String = (0..n).map(|i| format!("{{\"i\":{i}}}\n")).collect();
        bytes += body.len() as u64 - n;
        assert_eq!(
            post(
                &format!("http://127.0.0.1:{port}/v1/records"),
                body.as_bytes()
            ),
            200
        );
        sent += n;
    }
    // Accepted records reach the file within moments: poll the endpoint until they are written.
    let deadline = Instant::now() + Duration::from_secs(20);
    let s = loop {
        let (code, text) = get(&format!("{metrics}/metrics"));
        assert_eq!(code, 200);
        let s = samples(&text);
        if s.get("edge_router_records_written_total") == Some(&(sent as f64)) {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "records never all written:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let v = |k: &str| *s.get(k).unwrap_or_else(|| panic!("no sample {k}"));
    assert_eq!(v("edge_router_records_read_total"), sent as f64);
    assert_eq!(v("edge_router_bytes_read_total"), bytes as f64);
    assert_eq!(v("edge_router_bytes_written_total"), bytes as f64);
    assert_eq!(
        v("edge_router_component_records_in_total{component=\"sources.web\",kind=\"source\"}"),
        sent as f64
    );
    assert_eq!(
        v("edge_router_component_records_out_total{component=\"sinks.out\",kind=\"sink\"}"),
        sent as f64
    );
    // The invariant in the exported numbers: read + copies = written + dead + dropped + in flight.
    assert_eq!(
        v("edge_router_records_read_total") + v("edge_router_fanout_copies_total"),
        v("edge_router_records_written_total")
            + v("edge_router_records_dead_lettered_total")
            + v("edge_router_records_dropped_total")
            + v("edge_router_records_in_flight")
    );
    assert_eq!(v("edge_router_records_in_flight"), 0.0);
    assert_eq!(
        v("edge_router_end_to_end_latency_seconds_count"),
        sent as f64
    );
    assert!(v("edge_router_end_to_end_latency_seconds{quantile=\"0.99\"}") > 0.0);
    assert_eq!(
        v("edge_router_sink_latency_seconds_count{component=\"sinks.out\"}"),
        sent as f64
    );
    assert_eq!(
        v("edge_router_source_responses_total{component=\"sources.web\",code=\"200\"}"),
        3.0
    );
    assert_eq!(
        v("edge_router_queue_records_capacity{queue=\"sinks.out\"}"),
        65536.0
    );
    assert!(s.contains_key("edge_router_queue_records{queue=\"stages\"}"));

    // `top` shows the same router from the same endpoint.
    let top = common::command(
        d,
        &[
            "top",
            "--metrics",
            &format!("127.0.0.1:{mport}"),
            "--count",
            "2",
            "--interval-ms",
            "100",
        ],
    )
    .output()
    .unwrap();
    assert!(
        top.status.success(),
        "{}",
        String::from_utf8_lossy(&top.stderr)
    );
    let screen = String::from_utf8_lossy(&top.stdout);
    assert!(screen.contains("in flight 0"), "{screen}");
    assert!(
        screen
            .lines()
            .any(|l| l.starts_with("sinks.out") && l.contains(&sent.to_string())),
        "{screen}"
    );
    assert!(screen.contains("latency arrival->written"), "{screen}");

    run.signal("TERM");
    let out = run.wait(Duration::from_secs(30));
    let stats = out.ok_stats();
    stats.assert_invariant();
    assert_eq!(stats.read(), sent);
    assert_eq!(stats.0["latency_us"]["count"], sent);
}

#[test]
fn the_metrics_flag_turns_the_endpoint_on_for_quick_mode() {
    let dir = temp_dir();
    let d = dir.path();
    let mport = free_port();
    let addr = format!("127.0.0.1:{mport}");
    let (mut run, mut stdin) = Running::start(
        d,
        &[
            "--log-format",
            "json",
            "run",
            "--sink",
            "file:out.ndjson",
            "--metrics",
            &addr,
            "--stats=json",
        ],
    );
    wait_for_port(
        mport,
        &mut run.child,
        "metrics endpoint",
        Duration::from_secs(20),
    );
    stdin.write_all(b"a\nb\n").unwrap();
    stdin.flush().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, text) = get(&format!("http://{addr}/metrics"));
        if samples(&text).get("edge_router_records_written_total") == Some(&2.0) {
            break;
        }
        assert!(Instant::now() < deadline, "not written:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(stdin);
    let out = run.wait(Duration::from_secs(30));
    out.ok_stats().assert_invariant();
    // --log-format json: every log line is a JSON object with level and message.
    let logs: Vec<serde_json::Value> = out
        .stderr
        .lines()
        .filter(|l| l.contains("\"level\""))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        logs.iter().any(|l| l["level"] == "INFO"
            && l["message"]
                .as_str()
                .unwrap_or("")
                .contains("metrics on http://")),
        "{}",
        out.stderr
    );
    // `top` against nothing says where it looked.
    let top = common::command(d, &["top", "--metrics", "127.0.0.1:1", "--count", "1"])
        .output()
        .unwrap();
    assert!(!top.status.success());
    assert!(String::from_utf8_lossy(&top.stderr).contains("127.0.0.1:1"));
    // A busy address is a start-up error that names it.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_addr = busy.local_addr().unwrap().to_string();
    let out = common::run_in(
        d,
        &["run", "--sink", "stdout", "--metrics", &busy_addr],
        common::Input::Null,
    );
    assert_ne!(out.code(), 0);
    assert!(out.stderr.contains(&busy_addr), "{}", out.stderr);
}
