//! The router under systemd, without systemd: the test makes the `NOTIFY_SOCKET` datagram socket
//! and sets `WATCHDOG_USEC`, runs the real binary with a config file, and reads what the router
//! tells the service manager: `READY=1` once the HTTP source answers, `STATUS=` lines,
//! `RELOADING=1` then `READY=1` around a SIGHUP reload, `WATCHDOG=1` while healthy and none while
//! a sink is stuck, `STOPPING=1` on SIGTERM. The unit file in `packaging/systemd/` is checked
//! key by key, and with `systemd-analyze verify` when that tool is installed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Running, command, free_port, repo_root, skipped, temp_dir, terminate};

/// How long a test waits for something it expects, at most.
const LONG: Duration = Duration::from_secs(30);

/// The watchdog interval the tests set: pets every 500 ms; 1 s without progress is wedged.
const WATCHDOG_USEC: &str = "1000000";

/// The service manager's end: a datagram socket the router sends to, and what came so far.
struct Manager {
    socket: UnixDatagram,
    /// Every datagram received, in order.
    got: Vec<String>,
}

impl Manager {
    fn bind(path: &Path) -> Manager {
        let socket = UnixDatagram::bind(path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        Manager {
            socket,
            got: Vec::new(),
        }
    }

    /// Receives what is waiting (at most 50 ms of waiting for it).
    fn receive(&mut self) {
        let mut buf = vec![0u8; 65_536];
        while let Ok(n) = self.socket.recv(&mut buf) {
            self.got.push(String::from_utf8(buf[..n].to_vec()).unwrap());
        }
    }

    /// Waits (at most [`LONG`]) for a datagram after the first `from` that `wanted` accepts, and
    /// returns its index.
    #[track_caller]
    fn wait_for(&mut self, from: usize, what: &str, wanted: impl Fn(&str) -> bool) -> usize {
        let deadline = Instant::now() + LONG;
        loop {
            if let Some(i) = self.got.iter().skip(from).position(|d| wanted(d)) {
                return from + i;
            }
            assert!(
                Instant::now() < deadline,
                "no {what} came from the router; it sent: {:#?}",
                self.got
            );
            self.receive();
        }
    }

    /// Datagrams after the first `from` holding `line` as one of their lines.
    fn count(&self, from: usize, line: &str) -> usize {
        self.got
            .iter()
            .skip(from)
            .filter(|d| d.lines().any(|l| l == line))
            .count()
    }
}

fn has_line(d: &str, line: &str) -> bool {
    d.lines().any(|l| l == line)
}

fn status(d: &str) -> Option<&str> {
    d.lines().find_map(|l| l.strip_prefix("STATUS="))
}

/// `curl` with `args`: (HTTP status, body).
fn curl(args: &[&str], body: Option<&str>) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-w", "\n%{http_code}", "--max-time", "10"])
        .args(args)
        .stdout(Stdio::piped());
    if let Some(b) = body {
        cmd.args(["--data-binary", b]);
    }
    let out = cmd.output().expect("running curl");
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.parse().unwrap_or(0), body.to_owned())
}

/// A config: an HTTP source on `port`, a file sink `out` writing `out`, dead letters in `dir`.
fn config(dir: &Path, port: u16, sinks: &str) -> String {
    format!(
        r#"
[sources.web]
kind = "http"
address = "127.0.0.1:{port}"

{sinks}

[dead_letter]
path = "{}"
"#,
        dir.join("dead.ndjson").display()
    )
}

fn file_sink(name: &str, path: &Path) -> String {
    format!(
        "[sinks.{name}]\nkind = \"file\"\npath = \"{}\"\n",
        path.display()
    )
}

/// Starts the router on `config_path` with the notify socket and the watchdog set.
fn start(dir: &Path, config_path: &Path, socket: &Path) -> Running {
    let mut cmd = command(dir, &["run", "-c", config_path.to_str().unwrap()]);
    cmd.env("NOTIFY_SOCKET", socket)
        .env("WATCHDOG_USEC", WATCHDOG_USEC)
        .env_remove("WATCHDOG_PID");
    Running::spawn(cmd).0
}

fn lines_in(path: &Path) -> usize {
    std::fs::read(path).map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count())
}

#[test]
fn the_router_tells_systemd_ready_status_reloads_watchdog_and_stopping() {
    let dir = temp_dir();
    let d = dir.path();
    let socket = d.join("notify.sock");
    let mut manager = Manager::bind(&socket);
    let port = free_port();
    let (out, extra) = (d.join("out.ndjson"), d.join("extra.ndjson"));
    let config_path = d.join("router.toml");
    std::fs::write(&config_path, config(d, port, &file_sink("out", &out))).unwrap();
    let mut router = start(d, &config_path, &socket);
    let base = format!("http://127.0.0.1:{port}");

    // READY=1, and when it comes the HTTP source answers /ready.
    let ready = manager.wait_for(0, "READY=1", |d| has_line(d, "READY=1"));
    let (code, body) = curl(&[&format!("{base}/ready")], None);
    assert_eq!((code, body.as_str()), (200, r#"{"status":"ready"}"#));
    assert_eq!(
        manager.count(0, "STOPPING=1") + manager.count(0, "RELOADING=1"),
        0
    );
    assert_eq!(
        status(&manager.got[ready]),
        Some("running: read 0, written 0, dead-lettered 0, in flight 0; sinks: out 0"),
        "{:?}",
        manager.got
    );

    // Records flow; the watchdog is petted (every 500 ms) while healthy.
    let (code, body) = curl(
        &["-X", "POST", &format!("{base}/v1/records")],
        Some("{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n"),
    );
    assert_eq!((code, body.as_str()), (200, r#"{"accepted":3}"#));
    let deadline = Instant::now() + LONG;
    while lines_in(&out) < 3 {
        assert!(Instant::now() < deadline, "the records were not written");
        std::thread::sleep(Duration::from_millis(10));
    }
    let after_ready = manager.got.len();
    let third_pet = {
        let mut from = after_ready;
        for _ in 0..3 {
            from = manager.wait_for(from, "WATCHDOG=1", |d| has_line(d, "WATCHDOG=1")) + 1;
        }
        from
    };

    // A reload: RELOADING=1 with the monotonic clock, then READY=1 with the new sink.
    let two = format!("{}\n{}", file_sink("out", &out), file_sink("extra", &extra));
    std::fs::write(&config_path, config(d, port, &two)).unwrap();
    let hup = Command::new("kill")
        .args(["-HUP", &router.child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let reloading = manager.wait_for(third_pet, "RELOADING=1", |d| has_line(d, "RELOADING=1"));
    let r = &manager.got[reloading];
    let usec: u64 = r
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .unwrap_or_else(|| panic!("no MONOTONIC_USEC in {r:?}"))
        .parse()
        .unwrap();
    assert!(usec > 0);
    assert!(status(r).unwrap().starts_with("reloading: read 3"), "{r:?}");
    let ready_again = manager.wait_for(reloading + 1, "READY=1 after the reload", |d| {
        has_line(d, "READY=1")
    });
    assert_eq!(
        status(&manager.got[ready_again]),
        Some("running: read 3, written 3, dead-lettered 0, in flight 0; sinks: out 3, extra 0"),
        "{:?}",
        manager.got
    );
    manager.wait_for(ready_again + 1, "WATCHDOG=1 after the reload", |d| {
        has_line(d, "WATCHDOG=1")
    });

    // SIGTERM: STOPPING=1, and a clean exit.
    let status_code = terminate(&mut router.child);
    assert!(status_code.success(), "{status_code:?}");
    let stopping = manager.wait_for(ready_again, "STOPPING=1", |d| has_line(d, "STOPPING=1"));
    assert!(
        status(&manager.got[stopping])
            .unwrap()
            .starts_with("stopping: read 3"),
        "{:?}",
        manager.got
    );
    // Once each, in this order.
    assert_eq!(manager.count(0, "READY=1"), 2);
    assert_eq!(manager.count(0, "RELOADING=1"), 1);
    assert_eq!(manager.count(0, "STOPPING=1"), 1);
    assert!(ready < reloading && reloading < ready_again && ready_again < stopping);
}

#[test]
fn a_sink_stuck_in_a_system_call_stops_the_watchdog_until_records_move_again() {
    let dir = temp_dir();
    let d = dir.path();
    let socket = d.join("notify.sock");
    let mut manager = Manager::bind(&socket);
    let port = free_port();
    // The file sink writes a FIFO nobody reads yet: it blocks in `open` with the records.
    let fifo = d.join("out.fifo");
    common::mkfifo(&fifo);
    let config_path = d.join("router.toml");
    std::fs::write(&config_path, config(d, port, &file_sink("out", &fifo))).unwrap();
    let mut router = start(d, &config_path, &socket);
    let base = format!("http://127.0.0.1:{port}");
    let ready = manager.wait_for(0, "READY=1", |d| has_line(d, "READY=1"));
    // Idle: healthy.
    let pet = manager.wait_for(ready, "WATCHDOG=1", |d| has_line(d, "WATCHDOG=1"));

    let records = "{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n{\"n\":4}\n{\"n\":5}\n";
    let (code, _) = curl(
        &["-X", "POST", &format!("{base}/v1/records")],
        Some(records),
    );
    assert_eq!(code, 200);
    let stalled = manager.wait_for(pet + 1, "a stalled STATUS", |d| {
        status(d).is_some_and(|s| s.starts_with("running (stalled: nothing moved for"))
    });
    assert!(
        status(&manager.got[stalled])
            .unwrap()
            .contains("5 waiting): read 5, written 0"),
        "{:?}",
        manager.got
    );
    // The stall was announced without a pet, and none follows: three watchdog intervals of
    // silence (waiting for something not to happen needs a fixed wait).
    assert!(!has_line(&manager.got[stalled], "WATCHDOG=1"));
    let quiet_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < quiet_until {
        manager.receive();
    }
    assert_eq!(manager.count(stalled, "WATCHDOG=1"), 0, "{:?}", manager.got);

    // Someone reads the FIFO: the records move, pets resume, and the status says so.
    let reader = std::thread::spawn({
        let fifo = fifo.clone();
        move || std::fs::read(fifo).unwrap()
    });
    let resumed = manager.wait_for(stalled + 1, "WATCHDOG=1 again", |d| {
        has_line(d, "WATCHDOG=1")
    });
    assert!(
        status(&manager.got[resumed]).is_some_and(|s| s.starts_with("running: read 5, written 5")),
        "{:?}",
        manager.got
    );
    let status_code = terminate(&mut router.child);
    assert!(status_code.success(), "{status_code:?}");
    assert_eq!(String::from_utf8(reader.join().unwrap()).unwrap(), records);
}

/// The values `key` is set to in a unit file (any section; comments left out).
fn unit_values<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    unit.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| *k == key)
        .map(|(_, v)| v)
        .collect()
}

#[test]
fn the_unit_file_asks_for_notify_the_watchdog_reload_by_sighup_and_a_hardened_sandbox() {
    let path = repo_root().join("packaging/systemd/edge-router.service");
    let unit = std::fs::read_to_string(&path).unwrap();
    let one = |key: &str| -> &str {
        let v = unit_values(&unit, key);
        assert_eq!(
            v.len(),
            1,
            "{key}= should be set once in {}",
            path.display()
        );
        v[0]
    };
    assert_eq!(one("Type"), "notify");
    assert_eq!(one("NotifyAccess"), "main");
    assert_eq!(one("ExecReload"), "/bin/kill -HUP $MAINPID");
    assert!(one("ExecStart").ends_with("edge-router run -c /etc/edge-router/edge-router.toml"));
    let watchdog: u64 = one("WatchdogSec").parse().unwrap();
    assert!(
        watchdog >= 30,
        "the watchdog must outlast a sink's retry backoff and call timeout"
    );
    // Stopping drains within the default 10 s grace: systemd must not kill it before.
    let stop: u64 = one("TimeoutStopSec").parse().unwrap();
    assert!(stop > 10);
    assert_eq!(one("StateDirectory"), "edge-router");
    assert_eq!(one("ConfigurationDirectory"), "edge-router");
    assert_eq!(one("DynamicUser"), "yes");
    assert_eq!(one("ProtectSystem"), "strict");
    assert_eq!(one("ProtectHome"), "yes");
    assert_eq!(one("NoNewPrivileges"), "yes");
    assert_eq!(one("CapabilityBoundingSet"), "");
    assert_eq!(one("AmbientCapabilities"), "");
    assert_eq!(one("PrivateTmp"), "yes");
    assert_eq!(one("RestrictAddressFamilies"), "AF_INET AF_INET6 AF_UNIX");
    // Every network source's connections fit (HTTP 512, QUIC 256 by default, and more).
    let nofile: u64 = one("LimitNOFILE").parse().unwrap();
    assert!(nofile >= 4096);
    // Plugins are compiled at run time: W^X enforcement would break them.
    assert!(unit_values(&unit, "MemoryDenyWriteExecute").is_empty());

    // systemd's own check, when installed, with the binary under test in place of the
    // installed one (verify wants ExecStart's program to exist).
    let Ok(out) = Command::new("systemd-analyze").arg("--version").output() else {
        skipped(
            "the_unit_file_asks_for_notify_the_watchdog_reload_by_sighup_and_a_hardened_sandbox \
             (systemd-analyze verify)",
            "systemd-analyze is not installed",
        );
        return;
    };
    assert!(out.status.success());
    let dir = temp_dir();
    let copy = dir.path().join("edge-router.service");
    std::fs::write(
        &copy,
        unit.replace("/usr/local/bin/edge-router", common::bin()),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&copy)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // verify warns (and still exits 0) about unknown keys or bad values: none may concern the unit.
    let about_unit: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("edge-router.service"))
        .collect();
    assert!(
        out.status.success() && about_unit.is_empty(),
        "systemd-analyze verify: {stderr}"
    );
}
