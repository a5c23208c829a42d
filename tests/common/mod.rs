//! Shared helpers of the binary-level tests: locating the binary and the shared data, generating
//! records, running the router in a temporary directory, reading its `--stats=json` report and
//! checking the accounting invariant.

#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(dead_code)]

pub mod aws;

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

/// A built plugin: `plugins/dist/NAME.wasm` (or `$EDGE_ROUTER_PLUGINS/NAME.wasm`).
pub fn plugin(name: &str) -> PathBuf {
    let dir = match std::env::var_os("EDGE_ROUTER_PLUGINS") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => repo_root().join("plugins/dist"),
    };
    let p = dir.join(format!("{name}.wasm"));
    assert!(
        p.is_file(),
        "{} is missing: run plugins/build.sh first (tests/run.sh does)",
        p.display()
    );
    p
}

/// The longest any child may run before the test gives up on it.
pub const CHILD_TIMEOUT: Duration = Duration::from_secs(60);

/// The `edge-router` binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_edge-router")
}

/// The repository root (the workspace).
pub fn repo_root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// The shared data folder (`../shared` next to the repository), or `$EDGE_ROUTER_SHARED`.
pub fn shared_dir() -> PathBuf {
    match std::env::var_os("EDGE_ROUTER_SHARED") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared")),
    }
}

/// The loghub sample files (`<shared>/data/loghub/*.log`), sorted; `None` when the corpus is not
/// there, after reporting `test` as skipped (on stderr, and as a file in
/// `$EDGE_ROUTER_SKIPPED_DIR`, which `tests/run.sh` lists at the end) so that it never passes
/// silently.
pub fn loghub_files(test: &str) -> Option<Vec<PathBuf>> {
    let dir = shared_dir().join("data/loghub");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        skipped(
            test,
            &format!("the loghub corpus is not at {}", dir.display()),
        );
        return None;
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no *.log files in {}", dir.display());
    Some(files)
}

/// Reports `test` as skipped, `why`.
pub fn skipped(test: &str, why: &str) {
    eprintln!("SKIPPED {test}: {why}");
    if let Some(dir) = std::env::var_os("EDGE_ROUTER_SKIPPED_DIR") {
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(PathBuf::from(dir).join(test), format!("{why}\n"));
    }
}

/// The repository's own log samples (`tests/data/logs/*.log`: hand-written, CRLF line ends, no
/// final newline), sorted.
pub fn sample_logs() -> Vec<PathBuf> {
    let dir = repo_root().join("tests/data/logs");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

/// A fresh temporary directory.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("edge-router-test-")
        .tempdir()
        .expect("creating a temporary directory")
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The output of `edge-router generate KIND COUNT EXTRA...` (`router/src/generate.rs`), in a
/// file cached under the cargo target directory, keyed by the arguments and the generator's
/// source, so repeated runs do not generate it again.
pub fn generate(kind: &str, count: u64, extra: &[&str]) -> PathBuf {
    let source = include_str!("../../router/src/generate.rs");
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("edge-router-gen");
    std::fs::create_dir_all(&cache).unwrap();
    let key = format!(
        "{kind}-{count}-{}-{:016x}.ndjson",
        extra.join("_").replace(['/', ' ', '-'], ""),
        fnv1a(source.as_bytes())
    );
    let path = cache.join(key);
    // One generator at a time in this process: tests that need the same data wait for it
    // instead of generating it again in parallel.
    static GENERATING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = GENERATING.lock().unwrap_or_else(|e| e.into_inner());
    if path.exists() {
        return path;
    }
    let tmp = cache.join(format!(
        ".{}.{}.tmp",
        path.file_name().unwrap().to_string_lossy(),
        std::process::id()
    ));
    let out = std::fs::File::create(&tmp).unwrap();
    let status = Command::new(bin())
        .arg("generate")
        .arg(kind)
        .arg(count.to_string())
        .args(extra)
        .stdout(out)
        .status()
        .expect("running edge-router generate");
    assert!(
        status.success(),
        "edge-router generate {kind} {count} failed"
    );
    std::fs::rename(&tmp, &path).unwrap();
    path
}

/// The generator's output as bytes.
pub fn generate_bytes(kind: &str, count: u64, extra: &[&str]) -> Vec<u8> {
    std::fs::read(generate(kind, count, extra)).unwrap()
}

/// The first `n` lines of `input`, with their newlines.
pub fn first_lines(input: &[u8], n: u64) -> &[u8] {
    if n == 0 {
        return &input[..0];
    }
    let end = input
        .iter()
        .enumerate()
        .filter(|&(_, &b)| b == b'\n')
        .nth(n as usize - 1)
        .map_or(input.len(), |(i, _)| i + 1);
    &input[..end]
}

/// The first `n` `sensor` records with the generator's default arguments. The generator is
/// deterministic and record `i` does not depend on the count, so these are the first lines of
/// one cached run of 200,000 (shared by the tests that need fewer).
pub fn sensor(n: usize) -> Vec<u8> {
    const CACHED: usize = 200_000;
    if n > CACHED {
        return generate_bytes("sensor", n as u64, &[]);
    }
    let all = generate_bytes("sensor", CACHED as u64, &[]);
    first_lines(&all, n as u64).to_vec()
}

/// The first `n` `sensor` records, each with `"seq":I` (its line number from 0) put first: a
/// unique id to check outputs for every record and count duplicates.
pub fn numbered_sensor(n: usize) -> Vec<u8> {
    let data = sensor(n);
    let mut out = Vec::with_capacity(data.len() + 16 * n);
    for (i, line) in lines(&data).into_iter().enumerate() {
        out.extend_from_slice(format!("{{\"seq\":{i},").as_bytes());
        out.extend_from_slice(line.get(1..).unwrap_or_default());
        out.push(b'\n');
    }
    out
}

/// `sensor` records from 24 devices only (for tests that make a file per device).
pub fn sensor_few_devices(n: usize) -> Vec<u8> {
    assert!(n <= 20_000);
    let all = generate_bytes("sensor", 20_000, &["--devices", "24"]);
    first_lines(&all, n as u64).to_vec()
}

/// Splits newline-terminated data into lines (without terminators).
pub fn lines(data: &[u8]) -> Vec<&[u8]> {
    let body = data.strip_suffix(b"\n").unwrap_or(data);
    if body.is_empty() && data.is_empty() {
        return Vec::new();
    }
    body.split(|&b| b == b'\n').collect()
}

/// What the router is expected to write for `input` with default settings: every line with an
/// LF terminator (CRLF becomes LF, a missing final newline is added), empty lines skipped.
pub fn normalized(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() + 1);
    for line in lines(input) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if !line.is_empty() {
            out.extend_from_slice(line);
            out.push(b'\n');
        }
    }
    out
}

/// Where a child's standard input comes from.
pub enum Input<'a> {
    /// Nothing (`/dev/null`).
    Null,
    /// These bytes, written by a thread, then end of input.
    Bytes(&'a [u8]),
    /// This file.
    File(&'a Path),
}

/// What a finished run left behind.
#[derive(Debug)]
pub struct Output {
    /// Exit status.
    pub status: ExitStatus,
    /// Standard output.
    pub stdout: Vec<u8>,
    /// Standard error (lossy UTF-8).
    pub stderr: String,
}

impl Output {
    /// The exit code (panics if killed by a signal).
    pub fn code(&self) -> i32 {
        self.status
            .code()
            .unwrap_or_else(|| panic!("killed by a signal: {:?}\n{}", self.status, self.stderr))
    }

    /// The `--stats=json` report.
    pub fn stats(&self) -> Stats {
        Stats::from_stderr(&self.stderr)
    }

    /// Asserts exit code 0 and returns the checked stats report.
    pub fn ok_stats(&self) -> Stats {
        assert_eq!(self.code(), 0, "exit code; stderr:\n{}", self.stderr);
        let s = self.stats();
        s.assert_invariant();
        s
    }
}

/// A command for the router running in `dir`, with logging at its default level.
pub fn command(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.args(args)
        .current_dir(dir)
        .env_remove("EDGE_ROUTER_LOG")
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1");
    c
}

/// Sends `child` SIGTERM (a clean stop: drain and flush) and waits at most 60 s for it.
pub fn terminate(child: &mut Child) -> ExitStatus {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("running kill");
    assert!(status.success(), "kill -TERM {} failed", child.id());
    wait_with_timeout(child, Duration::from_secs(60))
}

/// Makes a FIFO at `path` (a sink writing into it blocks until someone reads).
pub fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("running mkfifo");
    assert!(status.success(), "mkfifo {} failed", path.display());
}

/// Reads a pipe to the end on a thread.
pub fn drain<R: Read + Send + 'static>(mut r: R) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        buf
    })
}

/// Waits at most `timeout` for `child`; kills it and panics if it takes longer.
pub fn wait_with_timeout(child: &mut Child, timeout: Duration) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("edge-router did not exit within {timeout:?}; killed it");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs the router in `dir` with `args` and `input` on stdin, and waits for it.
pub fn run_in(dir: &Path, args: &[&str], input: Input<'_>) -> Output {
    run_command(command(dir, args), input)
}

/// Runs `cmd` (a [`command`], maybe with more set) with `input` on stdin, and waits for it (at
/// most [`CHILD_TIMEOUT`]).
pub fn run_command(mut cmd: Command, input: Input<'_>) -> Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    match &input {
        Input::Null => {
            cmd.stdin(Stdio::null());
        }
        Input::Bytes(_) => {
            cmd.stdin(Stdio::piped());
        }
        Input::File(p) => {
            let f = std::fs::File::open(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            cmd.stdin(Stdio::from(f));
        }
    }
    let mut child = cmd.spawn().expect("starting edge-router");
    let out = drain(child.stdout.take().unwrap());
    let err = drain(child.stderr.take().unwrap());
    let status = std::thread::scope(|s| {
        if let Input::Bytes(bytes) = input {
            let mut stdin = child.stdin.take().unwrap();
            s.spawn(move || {
                // The router may stop reading early (e.g. after a fatal error): ignore EPIPE.
                let _ = stdin.write_all(bytes);
            });
        }
        wait_with_timeout(&mut child, CHILD_TIMEOUT)
    });
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: String::from_utf8_lossy(&err.join().unwrap()).into_owned(),
    }
}

/// The `--stats=json` report, with accessors for the totals.
#[derive(Debug, Clone)]
pub struct Stats(pub Value);

impl Stats {
    /// The last line of `stderr` that starts with `{`, as JSON.
    pub fn from_stderr(stderr: &str) -> Stats {
        let line = stderr
            .lines()
            .rev()
            .find(|l| l.starts_with('{'))
            .unwrap_or_else(|| panic!("no JSON stats line on stderr:\n{stderr}"));
        Stats(serde_json::from_str(line).unwrap_or_else(|e| panic!("bad stats JSON {e}: {line}")))
    }

    /// A field of `totals`.
    pub fn total(&self, key: &str) -> u64 {
        self.0["totals"][key]
            .as_u64()
            .unwrap_or_else(|| panic!("no totals.{key} in {}", self.0))
    }

    /// `totals.read`.
    pub fn read(&self) -> u64 {
        self.total("read")
    }

    /// `totals.written`.
    pub fn written(&self) -> u64 {
        self.total("written")
    }

    /// `totals.dead_lettered`.
    pub fn dead_lettered(&self) -> u64 {
        self.total("dead_lettered")
    }

    /// `totals.dropped_by_stage`.
    pub fn dropped(&self) -> u64 {
        self.total("dropped_by_stage")
    }

    /// `totals.fanout_copies`.
    pub fn fanout(&self) -> u64 {
        self.total("fanout_copies")
    }

    /// `in_flight`.
    pub fn in_flight(&self) -> i64 {
        self.0["in_flight"]
            .as_i64()
            .unwrap_or_else(|| panic!("no in_flight in {}", self.0))
    }

    /// The counters of the component named `name` (e.g. `sinks.out`, `stages.no-debug`).
    pub fn component(&self, name: &str) -> &Value {
        self.0["components"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no component {name} in {}", self.0))
    }

    /// `read + recovered + fanout_copies + created_by_stage == written + dead_lettered +
    /// dropped_by_stage + dropped_by_buffer + absorbed_by_stage`, and nothing in flight
    /// (`recovered`: records an earlier run left in disk buffers; `dropped_by_buffer`: records
    /// `when_full = "drop_oldest"` deleted; `created_by_stage`/`absorbed_by_stage`: records
    /// transform and aggregate stages made and took in).
    pub fn assert_invariant(&self) {
        assert_eq!(
            self.read() + self.total("recovered") + self.fanout() + self.total("created_by_stage"),
            self.written()
                + self.dead_lettered()
                + self.dropped()
                + self.total("dropped_by_buffer")
                + self.total("absorbed_by_stage"),
            "accounting invariant broken: {}",
            self.0["totals"]
        );
        assert_eq!(
            self.in_flight(),
            0,
            "in flight after a clean exit: {}",
            self.0
        );
    }
}

/// Asserts that two byte strings are equal, reporting the first difference briefly.
#[track_caller]
pub fn assert_bytes_eq(actual: &[u8], expected: &[u8], what: &str) {
    if actual == expected {
        return;
    }
    let at = actual
        .iter()
        .zip(expected)
        .position(|(a, b)| a != b)
        .unwrap_or(actual.len().min(expected.len()));
    let line = expected[..at.min(expected.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1;
    let show = |d: &[u8]| {
        let from = at.saturating_sub(40);
        let to = (at + 80).min(d.len());
        String::from_utf8_lossy(&d[from.min(to)..to]).into_owned()
    };
    panic!(
        "{what}: differs at byte {at} (line {line}); lengths {} vs expected {}\n  actual:   {:?}\n  expected: {:?}",
        actual.len(),
        expected.len(),
        show(actual),
        show(expected)
    );
}

/// Reads a file, with its name in the panic message.
#[track_caller]
pub fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Asserts that two files are byte-identical, comparing in chunks (for large files).
#[track_caller]
pub fn assert_files_eq(actual: &Path, expected: &Path) {
    let la = std::fs::metadata(actual)
        .unwrap_or_else(|e| panic!("{}: {e}", actual.display()))
        .len();
    let le = std::fs::metadata(expected).unwrap().len();
    assert_prefix_of(actual, expected);
    assert_eq!(
        la,
        le,
        "{} is a prefix of {} but shorter",
        actual.display(),
        expected.display()
    );
}

/// Asserts that the file `actual` is a byte-exact prefix of the file `expected`.
#[track_caller]
pub fn assert_prefix_of(actual: &Path, expected: &Path) {
    let mut a = io::BufReader::new(std::fs::File::open(actual).unwrap());
    let mut e = io::BufReader::new(std::fs::File::open(expected).unwrap());
    let mut ba = vec![0u8; 1 << 20];
    let mut be = vec![0u8; 1 << 20];
    let mut offset = 0usize;
    loop {
        let n = read_full(&mut a, &mut ba);
        if n == 0 {
            return;
        }
        let m = read_full(&mut e, &mut be[..n]);
        if ba[..n] != be[..m] {
            let at = ba[..n]
                .iter()
                .zip(&be[..m])
                .position(|(x, y)| x != y)
                .unwrap_or(n.min(m));
            let from = at.saturating_sub(60);
            panic!(
                "{} differs from {} at byte {}\n  actual:   {:?}\n  expected: {:?}",
                actual.display(),
                expected.display(),
                offset + at,
                String::from_utf8_lossy(&ba[from..(at + 60).min(n)]),
                String::from_utf8_lossy(&be[from.min(m)..(at + 60).min(m)]),
            );
        }
        offset += n;
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]).unwrap() {
            0 => break,
            k => n += k,
        }
    }
    n
}

/// Number of LF bytes in a file.
pub fn count_lines(path: &Path) -> u64 {
    let mut f = io::BufReader::new(std::fs::File::open(path).unwrap());
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf).unwrap();
        if k == 0 {
            return n;
        }
        n += buf[..k].iter().filter(|&&b| b == b'\n').count() as u64;
    }
}

/// One entry of a dead-letter file.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// `reason`.
    pub reason: String,
    /// `source`.
    pub source: String,
    /// `position.line`.
    pub line: Option<u64>,
    /// `size`.
    pub size: u64,
    /// `truncated`.
    pub truncated: bool,
    /// `arrival`.
    pub arrival: String,
    /// `payload`, base64-decoded.
    pub payload: Vec<u8>,
}

/// Reads a dead-letter file (JSON lines), checking that every entry has exactly the documented
/// keys.
pub fn dead_letters(path: &Path) -> Vec<DeadLetter> {
    use base64::Engine as _;
    let text = read(path);
    lines(&text)
        .into_iter()
        .map(|l| {
            let v: Value = serde_json::from_slice(l)
                .unwrap_or_else(|e| panic!("dead letter is not JSON ({e}): {:?}", l));
            let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
            keys.sort_unstable();
            assert_eq!(
                keys,
                [
                    "arrival",
                    "payload",
                    "position",
                    "reason",
                    "size",
                    "source",
                    "truncated"
                ],
                "keys of {v}"
            );
            DeadLetter {
                reason: v["reason"].as_str().unwrap().to_owned(),
                source: v["source"].as_str().unwrap().to_owned(),
                line: v["position"]["line"].as_u64(),
                size: v["size"].as_u64().unwrap(),
                truncated: v["truncated"].as_bool().unwrap(),
                arrival: v["arrival"].as_str().unwrap().to_owned(),
                payload: base64::engine::general_purpose::STANDARD
                    .decode(v["payload"].as_str().unwrap())
                    .unwrap(),
            }
        })
        .collect()
}

/// A `kB` field of `/proc/PID/status` (`VmRSS:`, `VmHWM:`), in bytes.
pub fn proc_status_bytes(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: u64 = line
        .trim_start_matches(field)
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// A router started in the background with a piped stdin, for the lifecycle tests.
pub struct Running {
    /// The child.
    pub child: Child,
    stdout: Option<JoinHandle<Vec<u8>>>,
    stderr: Option<JoinHandle<Vec<u8>>>,
    /// Its stderr so far (the log), while it runs.
    stderr_now: Arc<std::sync::Mutex<Vec<u8>>>,
}

impl Running {
    /// Starts the router in `dir`; its stdin is returned to the caller to write to.
    pub fn start(dir: &Path, args: &[&str]) -> (Running, ChildStdin) {
        Running::spawn(command(dir, args))
    }

    /// Starts `cmd` (a [`command`], maybe with more set), like [`Running::start`].
    pub fn spawn(mut cmd: Command) -> (Running, ChildStdin) {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting edge-router");
        let stdin = child.stdin.take().unwrap();
        let stdout = Some(drain(child.stdout.take().unwrap()));
        let stderr_now = Arc::new(std::sync::Mutex::new(Vec::new()));
        let stderr = Some({
            let mut r = child.stderr.take().unwrap();
            let now = stderr_now.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                loop {
                    match r.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => now.lock().unwrap().extend_from_slice(&buf[..n]),
                    }
                }
                std::mem::take(&mut *now.lock().unwrap())
            })
        });
        (
            Running {
                child,
                stdout,
                stderr,
                stderr_now,
            },
            stdin,
        )
    }

    /// Waits (at most `timeout`) until its stderr holds `needle`; fails with the log so far if
    /// it exits first or the time runs out.
    #[track_caller]
    pub fn wait_for_stderr(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let log = String::from_utf8_lossy(&self.stderr_now.lock().unwrap()).into_owned();
            if log.contains(needle) {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("exited ({status}) before logging {needle:?}:\n{log}");
            }
            assert!(
                Instant::now() < deadline,
                "{needle:?} not logged within {timeout:?}:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`TERM`, `INT`, `KILL`) with `kill(1)`.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -{name} {} failed", self.pid());
    }

    /// Current resident set size in bytes (from /proc), or `None` once the process is gone.
    pub fn rss_bytes(&self) -> Option<u64> {
        proc_status_bytes(self.pid(), "VmRSS:")
    }

    /// The largest resident set size so far in bytes (`VmHWM`), or `None` once the process is
    /// gone.
    pub fn peak_rss_bytes(&self) -> Option<u64> {
        proc_status_bytes(self.pid(), "VmHWM:")
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits at most `timeout` for exit and collects the output.
    pub fn wait(mut self, timeout: Duration) -> Output {
        let status = wait_with_timeout(&mut self.child, timeout);
        self.collect(status)
    }

    /// Kills the process (SIGKILL) and collects the output.
    pub fn kill(mut self) -> Output {
        let _ = self.child.kill();
        let status = self.child.wait().unwrap();
        self.collect(status)
    }

    fn collect(&mut self, status: ExitStatus) -> Output {
        Output {
            status,
            stdout: self.stdout.take().unwrap().join().unwrap(),
            stderr: String::from_utf8_lossy(&self.stderr.take().unwrap().join().unwrap())
                .into_owned(),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // A failed assertion must not leave the router running.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A thread that writes to a child's stdin and counts the bytes it managed to write.
pub struct Writer {
    /// Bytes written so far.
    pub written: Arc<AtomicU64>,
    handle: Option<JoinHandle<()>>,
}

impl Writer {
    /// Writes `source` `repeat` times in pieces of `piece` bytes, sleeping `pause.1` after every
    /// `pause.0` pieces; stops early on a write error (the reader went away). With `hold`, keeps
    /// stdin open afterwards (no end of input) until the flag is set or [`CHILD_TIMEOUT`] passes.
    pub fn start(
        mut stdin: ChildStdin,
        source: Arc<Vec<u8>>,
        repeat: u64,
        piece: usize,
        pause: Option<(usize, Duration)>,
        hold: Option<Arc<AtomicBool>>,
    ) -> Writer {
        let written = Arc::new(AtomicU64::new(0));
        let counter = written.clone();
        let handle = std::thread::spawn(move || {
            let mut pieces = 0usize;
            'outer: for _ in 0..repeat {
                for chunk in source.chunks(piece) {
                    if stdin.write_all(chunk).is_err() {
                        break 'outer;
                    }
                    counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    pieces += 1;
                    if let Some((every, d)) = pause
                        && pieces.is_multiple_of(every)
                    {
                        std::thread::sleep(d);
                    }
                }
            }
            if let Some(release) = hold {
                let deadline = Instant::now() + CHILD_TIMEOUT;
                while !release.load(Ordering::Relaxed) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            drop(stdin);
        });
        Writer {
            written,
            handle: Some(handle),
        }
    }

    /// Bytes written so far.
    pub fn progress(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// True once the writer has finished (written everything or given up).
    pub fn is_finished(&self) -> bool {
        self.handle.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Waits for the writer thread.
    pub fn join(mut self) -> u64 {
        if let Some(h) = self.handle.take() {
            h.join().unwrap();
        }
        self.progress()
    }
}

/// Polls `cond` every 10 ms for at most `timeout`; panics with `what` if it never holds.
#[track_caller]
pub fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// True once the file at `path` contains `needle` at least `times` times (a log line the router
/// writes once per start, say).
pub fn file_contains(path: &Path, needle: &str, times: usize) -> bool {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .matches(needle)
        .count()
        >= times
}

/// Waits (at most `timeout`) until the log at `path`, written by `child`, holds `needle` at
/// least `times` times; fails with the log if `child` exits first or the time runs out.
#[track_caller]
pub fn wait_for_log(path: &Path, needle: &str, times: usize, child: &mut Child, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while !file_contains(path, needle, times) {
        let log = || std::fs::read_to_string(path).unwrap_or_default();
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "exited ({status}) before logging {needle:?} ({times}x):\n{}",
                log()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{needle:?} not logged {times}x within {timeout:?}:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The samples of the router's metrics endpoint at `addr` (`127.0.0.1:PORT`, started with
/// `--metrics`): `series -> value`, e.g. `edge_router_records_written_total`. Empty when it does
/// not answer (yet).
pub fn metrics(addr: &str) -> std::collections::HashMap<String, f64> {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10", &format!("http://{addr}/metrics")])
        .output()
        .expect("running curl");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse::<f64>().ok()?))
        })
        .collect()
}

/// One sample of [`metrics`] as an integer, 0 when it is absent (counters appear once non-zero).
pub fn metric(samples: &std::collections::HashMap<String, f64>, series: &str) -> u64 {
    samples.get(series).map_or(0, |v| *v as u64)
}

/// Size of a file, 0 if it does not exist.
pub fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// Decompresses a gzip file (all members) with `gzip -dc`, or with flate2 if gzip is missing.
pub fn gunzip(path: &Path) -> Vec<u8> {
    match Command::new("gzip").arg("-dc").arg(path).output() {
        Ok(out) => {
            assert!(
                out.status.success(),
                "gzip -dc {} failed: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            out.stdout
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let mut d = flate2::read::MultiGzDecoder::new(std::fs::File::open(path).unwrap());
            let mut out = Vec::new();
            d.read_to_end(&mut out).unwrap();
            out
        }
        Err(e) => panic!("running gzip: {e}"),
    }
}

/// Decompresses a zstd file (all frames) with `zstd -dc`, or with the zstd crate if the command
/// is missing.
pub fn unzstd(path: &Path) -> Vec<u8> {
    match Command::new("zstd").arg("-dcq").arg(path).output() {
        Ok(out) => {
            assert!(
                out.status.success(),
                "zstd -dc {} failed: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            out.stdout
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            zstd::stream::decode_all(std::fs::File::open(path).unwrap()).unwrap()
        }
        Err(e) => panic!("running zstd: {e}"),
    }
}

/// Today's UTC date as (year, month, day), from the system clock.
pub fn utc_today() -> (i64, u32, u32) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    civil_from_days((secs / 86_400) as i64)
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The files of a rotated output `dir/name.ext`, in sequence order: `name.1.ext`, `name.2.ext`,
/// ..., then the live `name.ext` last (if present). Panics on any other file in `dir` whose name
/// starts with `name.`.
pub fn rotated_files(dir: &Path, stem: &str, ext: &str) -> Vec<PathBuf> {
    let mut numbered: Vec<(u64, PathBuf)> = Vec::new();
    let mut live = None;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name == format!("{stem}.{ext}") {
            live = Some(p);
            continue;
        }
        let Some(mid) = name
            .strip_prefix(&format!("{stem}."))
            .and_then(|r| r.strip_suffix(&format!(".{ext}")))
        else {
            continue;
        };
        let n: u64 = mid
            .parse()
            .unwrap_or_else(|_| panic!("unexpected file {name} next to {stem}.{ext}"));
        numbered.push((n, p));
    }
    numbered.sort();
    let seqs: Vec<u64> = numbered.iter().map(|(n, _)| *n).collect();
    let want: Vec<u64> = (1..=numbered.len() as u64).collect();
    assert_eq!(seqs, want, "rotation sequence numbers are not 1..=N");
    let mut out: Vec<PathBuf> = numbered.into_iter().map(|(_, p)| p).collect();
    out.extend(live);
    out
}

/// A free port on 127.0.0.1 (the listener is closed again; the child binds it right after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits (at most `timeout`) until something listens on 127.0.0.1:`port`; fails if `child`, the
/// server `what`, exits first.
pub fn wait_for_port(port: u16, child: &mut Child, what: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("{what} exited before listening on {port}: {status}");
        }
        assert!(Instant::now() < deadline, "{what} not listening on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A child process (a local server) killed when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// How many of the newest sequence numbers `0..total` arrived without a gap: the length of the
/// run at the end of `seqs` (delivered, increasing) that ends at `total - 1`.
pub fn newest_run(seqs: &[u64], total: u64) -> usize {
    seqs.iter()
        .rev()
        .zip((0..total).rev())
        .take_while(|(s, want)| *s == want)
        .count()
}
