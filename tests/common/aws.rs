//! What the tests of the AWS sinks (`tests/kinesis.rs`, `tests/firehose.rs`) share: local
//! servers started on free 127.0.0.1 ports ([`start_server`], moto's server [`Moto`], the
//! fault-injecting proxy [`FaultProxy`]), and the router run with dummy credentials and no other
//! AWS configuration ([`router`], [`run`]).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::{
    Input, Output, Proc, command, dead_letters, free_port, repo_root, run_command, wait_for_port,
};

/// How long a local server may take to listen.
pub const SERVER_START: Duration = Duration::from_secs(30);

/// Starts `cmd`, the server `what`, and waits until it listens on 127.0.0.1:`port`; it is killed
/// when the returned [`Proc`] is dropped.
pub fn start_server(cmd: &mut Command, port: u16, what: &str) -> Proc {
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("starting {what}: {e}"));
    wait_for_port(port, &mut child, what, SERVER_START);
    Proc(child)
}

/// `http://127.0.0.1:PORT`.
pub fn endpoint(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

/// The python of the venv `tests/firehose/setup.sh` installs, with boto3 and (beside it)
/// `moto_server`: `EDGE_ROUTER_FIREHOSE_PYTHON`.
pub fn moto_python() -> PathBuf {
    match std::env::var_os("EDGE_ROUTER_FIREHOSE_PYTHON") {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => panic!(
            "EDGE_ROUTER_FIREHOSE_PYTHON is not set: the Firehose tests (and the Kinesis role_arn \
             test, for STS) need moto[server] and boto3 (PyPI). Run \
             `eval \"$(tests/firehose/setup.sh)\"` first (tests/run.sh does)."
        ),
    }
}

/// moto's server on 127.0.0.1 (Firehose, S3, STS, ... on one endpoint).
pub struct Moto {
    /// The server (killed when dropped).
    pub proc: Proc,
    /// Its port.
    pub port: u16,
}

impl Moto {
    /// Starts one on a free port.
    pub fn start() -> Moto {
        let port = free_port();
        let bin = moto_python().parent().unwrap().join("moto_server");
        let mut cmd = Command::new(bin);
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        Moto {
            proc: start_server(&mut cmd, port, "moto_server"),
            port,
        }
    }

    /// Its URL.
    pub fn endpoint(&self) -> String {
        endpoint(self.port)
    }
}

/// `tests/kinesis/fault_proxy.py` in front of a server: fails a percentage of the entries of
/// PutRecords / PutRecordBatch and of whole calls, and logs the calls and the access keys that
/// signed them.
pub struct FaultProxy {
    proc: Proc,
    /// Its port.
    pub port: u16,
}

impl FaultProxy {
    /// Starts one on a free port in front of 127.0.0.1:`upstream`: `entry_pct` percent of the
    /// entries fail, `throttle_pct` percent of the calls are throttled, `error_pct` percent
    /// answer HTTP 500.
    pub fn start(upstream: u16, entry_pct: u32, throttle_pct: u32, error_pct: u32) -> FaultProxy {
        FaultProxy::start_on(free_port(), upstream, entry_pct, throttle_pct, error_pct)
    }

    /// [`FaultProxy::start`] on `port` (e.g. to start it again where it was).
    pub fn start_on(
        port: u16,
        upstream: u16,
        entry_pct: u32,
        throttle_pct: u32,
        error_pct: u32,
    ) -> FaultProxy {
        // The proxy needs nothing beyond the standard library.
        let mut cmd = Command::new("python3");
        cmd.arg(repo_root().join("tests/kinesis/fault_proxy.py"))
            .args([
                port.to_string(),
                upstream.to_string(),
                entry_pct.to_string(),
                throttle_pct.to_string(),
                error_pct.to_string(),
                "1".into(),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        FaultProxy {
            proc: start_server(&mut cmd, port, "fault_proxy.py"),
            port,
        }
    }

    /// Its URL.
    pub fn endpoint(&self) -> String {
        endpoint(self.port)
    }

    /// Stops it and returns its counts.
    pub fn stop(mut self) -> Value {
        let pid = self.proc.0.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let stdout = self.proc.0.stdout.take().unwrap();
        let line = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find(|l| l.starts_with('{'))
            .unwrap_or_default();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("proxy counts {line:?}: {e}"))
    }
}

/// The router in `dir` with `args`, dummy credentials from the environment and no other AWS
/// configuration (no profile, region or endpoint from the environment), plus `env`.
pub fn router(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut c = command(dir, args);
    c.env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", dir.join("no-aws-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            dir.join("no-aws-credentials"),
        );
    for var in [
        "AWS_PROFILE",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_KINESIS",
        "AWS_ENDPOINT_URL_FIREHOSE",
        "AWS_ENDPOINT_URL_STS",
        "AWS_SESSION_TOKEN",
    ] {
        c.env_remove(var);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

/// Runs the [`router`] over `input` and waits for it (at most [`super::CHILD_TIMEOUT`]).
pub fn run(dir: &Path, args: &[&str], env: &[(&str, &str)], input: &[u8]) -> Output {
    run_command(router(dir, args, env), Input::Bytes(input))
}

/// Runs `edge-router run --sink SINK --stats=json` with `extra` arguments (e.g. a dead-letter
/// file) over `input`, like [`run`].
pub fn run_sink(dir: &Path, sink: &str, extra: &[&str], input: &[u8]) -> Output {
    let mut args = vec!["run", "--sink", sink, "--stats=json"];
    args.extend_from_slice(extra);
    run(dir, &args, &[], input)
}

/// Asserts that a run failed (exit 1) with `message` and that every one of its `n` records was
/// dead-lettered into `dead` with that message.
pub fn assert_every_record_dead_lettered(out: &Output, dead: &Path, n: u64, message: &str) {
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert!(out.stderr.contains(message), "{}", out.stderr);
    let stats = out.stats();
    stats.assert_invariant();
    assert_eq!((stats.read(), stats.written()), (n, 0));
    assert_eq!(stats.dead_lettered(), n);
    let letters = dead_letters(dead);
    assert_eq!(letters.len() as u64, n);
    assert!(
        letters.iter().all(|d| d.reason.contains(message)),
        "{}",
        letters[0].reason
    );
}

/// Runs `tests/SCRIPT ARGS...` (a test tool such as `kinesis/kinesis_tool.py`) with `python`
/// and returns its standard output; panics with its standard error if it fails.
pub fn tool(python: &Path, script: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(python)
        .arg(repo_root().join("tests").join(script))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {script}: {e}"));
    assert!(
        out.status.success(),
        "{script} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Runs `edge-router run -c configs/NAME --stats=json` over `input`, with the AWS endpoint
/// `AWS_ENDPOINT_URL` (as for any local server: the example configs name none).
pub fn run_example_config(dir: &Path, name: &str, endpoint: &str, input: &[u8]) -> Output {
    let config = repo_root().join("configs").join(name);
    let args = ["run", "-c", config.to_str().unwrap(), "--stats=json"];
    run(dir, &args, &[("AWS_ENDPOINT_URL", endpoint)], input)
}

/// Asserts that the dead-letter file `path` holds one letter per entry of `reasons`, each
/// letter's reason containing its entry.
pub fn assert_dead_letters(path: &Path, reasons: &[&str]) {
    let letters = dead_letters(path);
    assert_eq!(
        letters.len(),
        reasons.len(),
        "dead letters in {}",
        path.display()
    );
    for (letter, want) in letters.iter().zip(reasons) {
        assert!(letter.reason.contains(want), "{}", letter.reason);
    }
}
