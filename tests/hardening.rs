//! Hostile clients against the network sources and the metrics endpoint (all on loopback; the
//! hostile ones from 127.0.0.2 and up, the well-behaved one from 127.0.0.1): request metadata
//! that would be copied into every record, silent and slow connections, unfinished bodies,
//! HTTP/2 streams, QUIC clients that never finish HELLO or their batches, descriptor
//! exhaustion under `ulimit -n 256`, a server that never answers `send`, unauthenticated and
//! cross-origin reloads, invalid UTF-8 in NDJSON. Each shows that the router stays up, that the
//! well-behaved client is still served, that the router's peak RSS stays under the bound
//! `edge-router validate` computes for the config (on top of its RSS when idle), and that every
//! record answered 200 / `Ok` is in the output exactly once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Proc, bin, free_port, temp_dir, wait_for};
use edge_router::sources::quic::protocol::{
    ALPN, BatchEncoder, MAX_ACK_BYTES, MAX_WELCOME_BYTES, Status, decode_ack, decode_welcome,
    encode_hello,
};

/// The generous limit for anything a well-behaved client waits for (a correctness bound, not a
/// timing benchmark).
const SERVED_WITHIN: Duration = Duration::from_secs(5);

/// A router started from a config file, its stderr in `router.log`.
struct Router {
    proc: Proc,
    dir: PathBuf,
    /// Its resident set size once it listens (before any client).
    idle_rss: u64,
    /// The memory bound `validate` computes for its config.
    bound: u64,
}

/// A line of `/proc/PID/status` in bytes (`VmRSS`, `VmHWM`).
fn proc_kib(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    let kb: u64 = line[key.len() + 1..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// The memory bound `edge-router validate` prints for `config` (the exact byte count).
fn validated_bound(dir: &Path, config: &str) -> u64 {
    let out = common::command(dir, &["validate", "-c", config])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = text
        .lines()
        .find(|l| l.starts_with("memory bound"))
        .unwrap_or_else(|| panic!("no memory bound in {text}"));
    line.rsplit_once('(')
        .and_then(|(_, n)| n.trim_end_matches(')').parse().ok())
        .unwrap_or_else(|| panic!("no byte count in {line}"))
}

impl Router {
    /// Writes `config` to `pipeline.toml` in `dir` and starts `edge-router run` on it (under
    /// `ulimit -n` when `fd_limit` is set), waiting until `ready` holds for its log.
    fn start(
        dir: &Path,
        config: &str,
        fd_limit: Option<u32>,
        ready: impl Fn(&str) -> bool,
    ) -> Router {
        std::fs::write(dir.join("pipeline.toml"), config).unwrap();
        let bound = validated_bound(dir, "pipeline.toml");
        let log = File::create(dir.join("router.log")).unwrap();
        let args = ["run", "-c", "pipeline.toml", "--stats=json"];
        let mut cmd = match fd_limit {
            None => common::command(dir, &args),
            Some(n) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                    .arg(bin())
                    .args(args)
                    .current_dir(dir)
                    .env_remove("EDGE_ROUTER_LOG")
                    .env("NO_COLOR", "1");
                c
            }
        };
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        let mut r = Router {
            proc: Proc(child),
            dir: dir.to_owned(),
            idle_rss: 0,
            bound,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !ready(&r.log()) {
            if let Some(status) = r.proc.0.try_wait().unwrap() {
                panic!("router exited ({status}) before it was ready:\n{}", r.log());
            }
            assert!(Instant::now() < deadline, "router not ready:\n{}", r.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        r.idle_rss = proc_kib(r.pid(), "VmRSS").unwrap();
        r
    }

    fn pid(&self) -> u32 {
        self.proc.0.id()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("router.log")).unwrap_or_default()
    }

    fn running(&mut self) -> bool {
        self.proc.0.try_wait().unwrap().is_none()
    }

    /// Asserts that the router's peak RSS so far stays under its idle RSS plus the bound.
    fn assert_memory_bounded(&self, what: &str) {
        let peak = proc_kib(self.pid(), "VmHWM").unwrap();
        eprintln!(
            "{what}: peak RSS {} MiB (idle {} MiB, bound {} MiB)",
            peak >> 20,
            self.idle_rss >> 20,
            self.bound >> 20
        );
        assert!(
            peak <= self.idle_rss + self.bound,
            "{what}: peak RSS {peak} over idle {} + bound {}",
            self.idle_rss,
            self.bound
        );
    }

    /// Stops it with SIGTERM; returns its `--stats=json` report (checked for the invariant).
    fn stop(mut self) -> common::Stats {
        let pid = self.pid().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let status = common::wait_with_timeout(&mut self.proc.0, Duration::from_secs(30));
        let log = self.log();
        assert!(status.success(), "router failed: {status}\n{log}");
        let stats = common::Stats::from_stderr(&log);
        stats.assert_invariant();
        stats
    }
}

/// An HTTP router's readiness: its log says it listens.
fn http_ready(log: &str) -> bool {
    log.contains("listening on http://")
}

/// A QUIC router's readiness, and the certificate fingerprint it logged.
fn quic_fingerprint(log: &str) -> Option<String> {
    log.lines()
        .find(|l| l.contains("listening on quic://"))
        .and_then(|l| l.split("fingerprint ").nth(1))
        .map(|s| s.chars().take(64).collect())
}

/// The lines of every `*.ndjson` file under `dir` (recursively), counted.
fn output_lines(dir: &Path) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "ndjson") {
                for l in std::fs::read_to_string(&p).unwrap().lines() {
                    *out.entry(l.to_owned()).or_insert(0) += 1;
                }
            }
        }
    }
    out
}

/// Asserts that `dir`'s outputs hold exactly `accepted`, each once.
fn assert_exactly_once(dir: &Path, accepted: &[String]) {
    let got = output_lines(dir);
    for r in accepted {
        assert_eq!(
            got.get(r),
            Some(&1),
            "record {r:?} not in the output exactly once"
        );
    }
    assert_eq!(
        got.values().sum::<usize>(),
        accepted.len(),
        "records in the output that were never accepted"
    );
}

// ----- a small HTTP/1.1 client on std sockets --------------------------------------------------

/// An HTTP/1.1 connection (keep-alive) with bounded waits.
struct Http {
    s: TcpStream,
}

impl Http {
    fn connect(addr: SocketAddr) -> Http {
        let s = TcpStream::connect_timeout(&addr, SERVED_WITHIN).unwrap();
        s.set_read_timeout(Some(SERVED_WITHIN)).unwrap();
        s.set_write_timeout(Some(SERVED_WITHIN)).unwrap();
        Http { s }
    }

    /// `POST /v1/records` with `headers` and `body`; the answer's status and body.
    fn post(&mut self, headers: &[(String, String)], body: &[u8]) -> (u16, String) {
        let mut req = format!(
            "POST /v1/records HTTP/1.1\r\nHost: router\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        self.s.write_all(req.as_bytes()).unwrap();
        self.s.write_all(body).unwrap();
        read_answer(&mut self.s).expect("an answer")
    }
}

/// Reads one HTTP/1.1 answer (status, body) framed by `Content-Length`.
fn read_answer(s: &mut TcpStream) -> std::io::Result<(u16, String)> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body)?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// `n` records `{"r":"TAG-I"}`, as NDJSON, and their lines.
fn records(tag: &str, n: usize) -> (Vec<u8>, Vec<String>) {
    let lines: Vec<String> = (0..n).map(|i| format!("{{\"r\":\"{tag}-{i}\"}}")).collect();
    let mut body = lines.join("\n").into_bytes();
    body.push(b'\n');
    (body, lines)
}

/// One request with a fresh connection from 127.0.0.1; asserts 200 and returns its lines.
fn good_post(addr: SocketAddr, tag: &str, n: usize) -> Vec<String> {
    let (body, lines) = records(tag, n);
    let started = Instant::now();
    let (status, answer) = Http::connect(addr).post(&[], &body);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer, format!("{{\"accepted\":{n}}}"));
    eprintln!(
        "well-behaved request served in {} ms",
        started.elapsed().as_millis()
    );
    lines
}

/// A runtime for hostile clients.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A TCP connection to `addr` from `from` (another loopback address: another peer).
async fn connect_from(from: [u8; 4], addr: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
    let s = tokio::net::TcpSocket::new_v4()?;
    s.bind(SocketAddr::from((from, 0)))?;
    tokio::time::timeout(Duration::from_secs(2), s.connect(addr))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
}

/// Waits (at most `within`) until the server closes `s` (end of stream or reset), reading and
/// discarding what it sends; true if it did.
async fn closed_by_server(s: &mut tokio::net::TcpStream, within: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

fn http_config(port: u16, source: &str, rest: &str) -> String {
    format!(
        "[sources.web]\nkind = \"http\"\naddress = \"127.0.0.1:{port}\"\n{source}\n\n\
         [sinks.out]\nkind = \"file\"\npath = \"out/records.ndjson\"\n{rest}\n\n\
         [dead_letter]\npath = \"dead.ndjson\"\n"
    )
}

// ----- 1. metadata is stored once per request / batch -------------------------------------------

#[test]
fn request_attributes_are_stored_once_not_per_record() {
    let dir = temp_dir();
    let d = dir.path();
    let port = free_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    // Room for 90 attribute headers of 4000 bytes; everything else small, so that the bound is
    // far below what copying the attributes into each of 2000 records took (744 MB).
    let r = Router::start(
        d,
        &http_config(
            port,
            "max_header_bytes = \"1MiB\"\nmax_connections = 8\nmax_body_bytes = \"1MiB\"\n\
             max_inflight_bytes = \"16MiB\"",
            "",
        )
        .replace("out/records.ndjson", "out/{attr.site}.ndjson"),
        None,
        http_ready,
    );
    let mut headers: Vec<(String, String)> = (0..90)
        .map(|i| (format!("X-Attribute-h{i}"), "v".repeat(4000)))
        .collect();
    headers.push(("X-Attribute-site".into(), "north".into()));
    let mut accepted = Vec::new();
    let mut conn = Http::connect(addr);
    for k in 0..4 {
        let (body, lines) = records(&format!("a{k}"), 2000);
        let (status, answer) = conn.post(&headers, &body);
        assert_eq!(status, 200, "{answer}");
        accepted.extend(lines);
    }
    r.assert_memory_bounded("4 requests x 2000 records x 364 KB of attributes");
    let stats = r.stop();
    assert_eq!(stats.written(), 8000);
    // The attributes reached the sink: the file is named after one.
    assert!(d.join("out/north.ndjson").is_file());
    assert_exactly_once(&d.join("out"), &accepted);
}

/// A QUIC client speaking the protocol by hand.
struct Quic {
    endpoint: quinn::Endpoint,
    rt: tokio::runtime::Runtime,
}

impl Quic {
    /// A client bound to `from` (a loopback address), trusting `fingerprint`, sending keep-alive
    /// pings every 200 ms when `pings`.
    fn new(fingerprint: &str, from: [u8; 4], pings: bool) -> Quic {
        let rt = runtime();
        let tls = edge_router::tls::client_config(
            &edge_router::tls::Trust::Pinned(fingerprint.to_owned()),
            &[ALPN],
            None,
        )
        .unwrap();
        let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
        let mut cfg = quinn::ClientConfig::new(Arc::new(quic));
        let mut t = quinn::TransportConfig::default();
        if pings {
            t.keep_alive_interval(Some(Duration::from_millis(200)));
        }
        cfg.transport_config(Arc::new(t));
        let endpoint = rt.block_on(async {
            let mut e = quinn::Endpoint::client(SocketAddr::from((from, 0))).unwrap();
            e.set_default_client_config(cfg);
            e
        });
        Quic { endpoint, rt }
    }

    /// Connects and says HELLO with `token`; the connection and WELCOME's status.
    async fn hello(
        endpoint: &quinn::Endpoint,
        addr: SocketAddr,
        session: u64,
        token: &[u8],
    ) -> Result<(quinn::Connection, Status), String> {
        let conn = endpoint
            .connect(addr, "localhost")
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())?;
        let (mut s, mut r) = conn.open_bi().await.map_err(|e| e.to_string())?;
        let mut hello = Vec::new();
        encode_hello(session, token, &mut hello).unwrap();
        s.write_all(&hello).await.map_err(|e| e.to_string())?;
        s.finish().map_err(|e| e.to_string())?;
        let w = r
            .read_to_end(MAX_WELCOME_BYTES)
            .await
            .map_err(|e| e.to_string())?;
        let w = decode_welcome(&w).map_err(|e| e.to_string())?;
        Ok((conn, w.status))
    }

    /// Sends one batch on `conn` and reads its ACK.
    async fn batch(
        conn: &quinn::Connection,
        seq: u64,
        attrs: &[(String, String)],
        records: &[String],
    ) -> Result<edge_router::sources::quic::protocol::Ack, String> {
        let mut enc = BatchEncoder::new(seq, None, attrs).unwrap();
        for r in records {
            enc.push(r.as_bytes()).unwrap();
        }
        let frame = enc.finish();
        let (mut s, mut r) = conn.open_bi().await.map_err(|e| e.to_string())?;
        s.write_all(&frame).await.map_err(|e| e.to_string())?;
        s.finish().map_err(|e| e.to_string())?;
        let a = r
            .read_to_end(MAX_ACK_BYTES)
            .await
            .map_err(|e| e.to_string())?;
        decode_ack(&a).map_err(|e| e.to_string())
    }
}

fn quic_config(port: u16, source: &str) -> String {
    format!(
        "[sources.q]\nkind = \"quic\"\naddress = \"127.0.0.1:{port}\"\nself_signed = true\n\
         {source}\n\n[sinks.out]\nkind = \"file\"\npath = \"out/records.ndjson\"\n\n\
         [dead_letter]\npath = \"dead.ndjson\"\n"
    )
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn batch_attributes_are_stored_once_not_per_record() {
    let dir = temp_dir();
    let d = dir.path();
    let port = free_udp_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let r = Router::start(
        d,
        &quic_config(
            port,
            "max_connections = 4\nmax_batch_bytes = \"1MiB\"\nmax_inflight_bytes = \"16MiB\"",
        ),
        None,
        |log| quic_fingerprint(log).is_some(),
    );
    let client = Quic::new(&quic_fingerprint(&r.log()).unwrap(), [127, 0, 0, 1], false);
    let attrs: Vec<(String, String)> = (0..64)
        .map(|i| (format!("a{i}"), "v".repeat(4000)))
        .collect();
    let mut accepted = Vec::new();
    client.rt.block_on(async {
        let (conn, status) = Quic::hello(&client.endpoint, addr, 7, b"").await.unwrap();
        assert_eq!(status, Status::Ok);
        for seq in 0..4 {
            let (_, lines) = records(&format!("q{seq}"), 2000);
            let ack = Quic::batch(&conn, seq, &attrs, &lines).await.unwrap();
            assert_eq!(
                (ack.status, ack.accepted),
                (Status::Ok, 2000),
                "{}",
                ack.message
            );
            accepted.extend(lines);
        }
        conn.close(0u32.into(), b"done");
    });
    r.assert_memory_bounded("4 batches x 2000 records x 256 KB of attributes");
    let stats = r.stop();
    assert_eq!(stats.written(), 8000);
    assert_exactly_once(&d.join("out"), &accepted);
}

// ----- 2. connections that send nothing, or never finish, lose their slot ----------------------

#[test]
fn silent_slow_and_surplus_connections_are_closed_and_others_still_served() {
    let dir = temp_dir();
    let d = dir.path();
    let port = free_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let r = Router::start(
        d,
        &http_config(
            port,
            "max_connections = 40\nmax_connections_per_peer = 20\nheader_timeout_ms = 500\n\
             idle_timeout_ms = 800\nbody_timeout_ms = 500\nbody_min_bytes_per_sec = \"1KiB\"\n\
             max_body_bytes = \"1MiB\"\nmax_inflight_bytes = \"16MiB\"",
            "",
        ),
        None,
        http_ready,
    );
    let rt = runtime();
    let mut accepted = Vec::new();

    // One peer opens 60 connections: 20 are served (and sit idle), 40 are closed at once.
    let surplus = rt.block_on(async {
        let mut socks = Vec::new();
        for _ in 0..60 {
            socks.push(connect_from([127, 0, 0, 2], addr).await.unwrap());
        }
        let mut closed = 0;
        for s in &mut socks {
            if closed_by_server(s, Duration::from_millis(300)).await {
                closed += 1;
            }
        }
        (closed, socks)
    });
    assert!(surplus.0 >= 40, "only {} of 60 closed", surplus.0);
    accepted.extend(good_post(addr, "beside-surplus", 10));
    drop(surplus);

    // Two peers take all 40 slots with connections that never complete a request: silent, a
    // partial HTTP/2 preface, a whole preface and nothing more, partial headers, an unfinished
    // body. A well-behaved client waits until the timeouts free slots, then is served.
    let hostile = rt.block_on(async {
        use tokio::io::AsyncWriteExt;
        let mut socks = Vec::new();
        for i in 0..40u8 {
            let from = [127, 0, 0, 2 + i % 2];
            let mut s = connect_from(from, addr).await.unwrap();
            let start: &[u8] = match i % 5 {
                0 => b"",
                1 => b"PRI * HTTP/2.0\r\n",
                2 => b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
                3 => b"POST /v1/records HTTP/1.1\r\nHost: x\r\n",
                _ => b"POST /v1/records HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n{\"a\":1}\n",
            };
            s.write_all(start).await.unwrap();
            socks.push(s);
        }
        socks
    });
    accepted.extend(good_post(addr, "beside-hostile", 10));
    let all_closed = rt.block_on(async {
        let mut hostile = hostile;
        let mut open = 0;
        for s in &mut hostile {
            if !closed_by_server(s, SERVED_WITHIN).await {
                open += 1;
            }
        }
        open
    });
    assert_eq!(all_closed, 0, "hostile connections still open");

    // A keep-alive connection that served a request is closed after idle_timeout_ms.
    let mut idle = Http::connect(addr);
    let (body, lines) = records("keep-alive", 5);
    assert_eq!(idle.post(&[], &body).0, 200);
    accepted.extend(lines);
    let mut rest = Vec::new();
    let n = idle.s.read_to_end(&mut rest).unwrap_or(0);
    assert_eq!(
        n, 0,
        "an idle keep-alive connection got data instead of being closed"
    );

    r.assert_memory_bounded("hostile connections");
    let log = r.log();
    assert!(
        log.contains("max_connections_per_peer (20) reached"),
        "{log}"
    );
    let stats = r.stop();
    assert_exactly_once(&d.join("out"), &accepted);
    assert_eq!(stats.read(), accepted.len() as u64);
}

#[test]
fn tls_handshakes_that_never_finish_are_cut_off() {
    let dir = temp_dir();
    let d = dir.path();
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
        ])
        .current_dir(d)
        .stderr(Stdio::null())
        .status()
        .expect("running openssl");
    assert!(status.success());
    let port = free_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let r = Router::start(
        d,
        &http_config(
            port,
            "tls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\nhandshake_timeout_ms = 300\n\
             max_connections = 10",
            "",
        ),
        None,
        |log| log.contains("listening on https://"),
    );
    let rt = runtime();
    let open = rt.block_on(async {
        use tokio::io::AsyncWriteExt;
        let mut socks = Vec::new();
        for i in 0..10u8 {
            let mut s = connect_from([127, 0, 0, 2 + i % 2], addr).await.unwrap();
            if i % 2 == 0 {
                // The start of a ClientHello record, and nothing more.
                s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
                    .await
                    .unwrap();
            }
            socks.push(s);
        }
        let mut open = 0;
        for s in &mut socks {
            if !closed_by_server(s, SERVED_WITHIN).await {
                open += 1;
            }
        }
        open
    });
    assert_eq!(open, 0, "connections still open after handshake_timeout_ms");
    assert!(r.log().contains("no TLS handshake within"), "{}", r.log());
    // A real client is served over TLS.
    let out = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "10",
            "--cacert",
            "cert.pem",
            "-w",
            "%{http_code}",
            "-o",
            "/dev/null",
            "--data-binary",
            "{\"tls\":1}",
            &format!("https://127.0.0.1:{port}/v1/records"),
        ])
        .current_dir(d)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
    let stats = r.stop();
    assert_exactly_once(&d.join("out"), &["{\"tls\":1}".to_owned()]);
    assert_eq!(stats.read(), 1);
}

// ----- 3. unfinished bodies and HTTP/2 streams stay within the budget --------------------------

#[test]
fn unfinished_bodies_and_http2_streams_hold_at_most_their_share() {
    let dir = temp_dir();
    let d = dir.path();
    let port = free_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let r = Router::start(
        d,
        &http_config(
            port,
            "max_connections = 16\nmax_connections_per_peer = 8\nmax_streams = 8\n\
             max_body_bytes = \"2MiB\"\nmax_inflight_bytes = \"32MiB\"\nbody_timeout_ms = 1500\n\
             body_min_bytes_per_sec = 0\naccept_wait_ms = 3000",
            "",
        ),
        None,
        http_ready,
    );
    let rt = runtime();
    // A peer (127.0.0.2) opens, on one HTTP/2 connection, as many streams as it is allowed,
    // each declaring a 2 MiB body and sending 1 MiB of it, and does the same on four HTTP/1
    // connections: it can take at most its share (half) of the 32 MiB budget.
    let (streams, responses, h1) = rt.block_on(async {
        use tokio::io::AsyncWriteExt;
        let tcp = connect_from([127, 0, 0, 2], addr).await.unwrap();
        let (client, conn) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut client = client;
        // The server's SETTINGS say how many streams it takes at once: max_streams.
        let deadline = Instant::now() + SERVED_WITHIN;
        while client.current_max_send_streams() != 8 {
            assert!(
                Instant::now() < deadline,
                "no SETTINGS with max_concurrent_streams = 8"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut responses = Vec::new();
        let mut streams = Vec::new();
        for _ in 0..200 {
            // One handle throughout: a handle waits while its last stream is queued.
            let ready = tokio::time::timeout(Duration::from_millis(300), client.ready()).await;
            let Ok(Ok(c)) = ready else { break };
            client = c;
            let req = hyper::Request::post(format!("http://127.0.0.1:{port}/v1/records"))
                .header("content-length", (2 << 20).to_string())
                .body(())
                .unwrap();
            let Ok((resp, mut body)) = client.send_request(req, false) else {
                break;
            };
            let _ = body.send_data(bytes::Bytes::from(vec![b'x'; 1 << 20]), false);
            streams.push(body);
            responses.push(resp);
        }
        let mut h1 = Vec::new();
        for _ in 0..4 {
            let mut s = connect_from([127, 0, 0, 2], addr).await.unwrap();
            s.write_all(b"POST /v1/records HTTP/1.1\r\nHost: x\r\nContent-Length: 2097152\r\n\r\n")
                .await
                .unwrap();
            let _ = s.write_all(&vec![b'x'; 1 << 20]).await;
            h1.push(s);
        }
        (streams, responses, h1)
    });
    // The server said (SETTINGS, awaited above) that it takes 8 streams at once; the client
    // keeps the others queued until one ends.
    eprintln!("the HTTP/2 client queued {} streams", streams.len());
    // A client that ignores the limit: 20 streams opened at once by hand; the server refuses
    // all beyond max_streams.
    let refused = rt.block_on(raw_h2_streams(addr, [127, 0, 0, 4], 20));
    assert_eq!(refused, 12, "streams refused beyond max_streams = 8");
    // Meanwhile a well-behaved client is served.
    let accepted = good_post(addr, "beside-bodies", 100);
    r.assert_memory_bounded("unfinished bodies and HTTP/2 streams");
    // The unfinished bodies are cut off: 408 (or a refusal while the budget was taken).
    let statuses = rt.block_on(async {
        let mut out = Vec::new();
        for resp in responses {
            match tokio::time::timeout(Duration::from_secs(10), resp).await {
                Ok(Ok(r)) => out.push(r.status().as_u16()),
                Ok(Err(_)) => out.push(0),
                Err(_) => out.push(1),
            }
        }
        drop(streams);
        let mut h1 = h1;
        for s in &mut h1 {
            assert!(closed_by_server(s, Duration::from_secs(10)).await);
        }
        out
    });
    assert!(
        statuses.iter().all(|s| [408, 503, 0].contains(s)),
        "answers to unfinished bodies: {statuses:?}"
    );
    assert!(statuses.contains(&408), "{statuses:?}");
    let stats = r.stop();
    assert_eq!(stats.read(), 100);
    assert_exactly_once(&d.join("out"), &accepted);
}

/// Opens `n` HTTP/2 streams on one connection from `from` by writing the frames by hand (not
/// waiting for the server's limit), and returns how many the server refused (RST_STREAM with
/// REFUSED_STREAM) within 1 s.
async fn raw_h2_streams(addr: SocketAddr, from: [u8; 4], n: u32) -> usize {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }
    let mut s = connect_from(from, addr).await.unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    s.write_all(&frame(0x4, 0, 0, &[])).await.unwrap();
    // Wait for the server's SETTINGS, acknowledge them (they apply from then on).
    let mut head = [0u8; 9];
    loop {
        s.read_exact(&mut head).await.unwrap();
        let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
        let mut payload = vec![0u8; len];
        s.read_exact(&mut payload).await.unwrap();
        if head[3] == 0x4 && head[4] & 1 == 0 {
            break;
        }
    }
    s.write_all(&frame(0x4, 1, 0, &[])).await.unwrap();
    // HEADERS: POST http /v1/records, authority 127.0.0.1 (HPACK: indexed :method POST and
    // :scheme http, literal :path and :authority); END_HEADERS, the body never comes.
    let mut block = vec![0x83, 0x86, 0x04, 11];
    block.extend_from_slice(b"/v1/records");
    block.extend_from_slice(&[0x01, 9]);
    block.extend_from_slice(b"127.0.0.1");
    for i in 0..n {
        s.write_all(&frame(0x1, 0x4, 1 + 2 * i, &block))
            .await
            .unwrap();
    }
    let mut refused = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    while let Ok(Ok(())) = tokio::time::timeout_at(deadline, s.read_exact(&mut head))
        .await
        .map(|r| r.map(|_| ()))
    {
        let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
        let mut payload = vec![0u8; len];
        if s.read_exact(&mut payload).await.is_err() {
            break;
        }
        if head[3] == 0x3 && payload == 7u32.to_be_bytes() {
            refused += 1;
        }
    }
    refused
}

// ----- 4. descriptor exhaustion: nothing acknowledged is lost ----------------------------------

/// Open descriptors of process `pid`.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

#[test]
fn descriptor_exhaustion_loses_no_acknowledged_record() {
    let dir = temp_dir();
    let d = dir.path();
    let port = free_port();
    let mport = free_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let maddr = SocketAddr::from(([127, 0, 0, 1], mport));
    // Connection caps far over `ulimit -n 256`, and a file per partition key, at most 4 open.
    let config = format!(
        "{}\n[metrics]\naddress = \"127.0.0.1:{mport}\"\n",
        http_config(
            port,
            "max_connections = 1000\nmax_connections_per_peer = 1000\nheader_timeout_ms = 60000\n\
             idle_timeout_ms = 60000",
            "max_open_files = 4",
        )
        .replace("out/records.ndjson", "out/{partition_key}.ndjson")
    );
    let mut r = Router::start(d, &config, Some(256), http_ready);
    assert!(
        r.log().contains("file descriptors"),
        "no warning about the descriptor limit:\n{}",
        r.log()
    );
    // A well-behaved client keeps one connection open throughout.
    let mut good = Http::connect(addr);
    let mut accepted = Vec::new();
    let key = |k: &str| vec![("X-Partition-Key".to_owned(), k.to_owned())];
    let (body, lines) = records("k0", 100);
    assert_eq!(good.post(&key("k0"), &body).0, 200);
    accepted.extend(lines);

    // Flood both ports until the router has no descriptor left.
    let rt = runtime();
    let flood = rt.block_on(async {
        let mut tasks = Vec::new();
        for i in 0..300u32 {
            let from = [127, 0, 1, 1 + (i % 200) as u8];
            tasks.push(tokio::spawn(connect_from(from, addr)));
        }
        for i in 0..100u32 {
            tasks.push(tokio::spawn(connect_from([127, 0, 2, 1 + i as u8], maddr)));
        }
        let mut socks = Vec::new();
        for t in tasks {
            if let Ok(Ok(s)) = t.await {
                socks.push(s);
            }
        }
        socks
    });
    let pid = r.pid();
    eprintln!("{} flood connections", flood.len());
    wait_for(
        "the router to run out of descriptors",
        Duration::from_secs(20),
        || open_fds(pid) >= 250,
    );
    // Records for new files while no descriptor is free: answered 200 (the connection exists),
    // then the file sink cannot open their files; it must hold them, not fail.
    for k in 1..=5 {
        let tag = format!("k{k}");
        let (body, lines) = records(&tag, 100);
        let (status, answer) = good.post(&key(&tag), &body);
        assert_eq!(status, 200, "{answer}");
        accepted.extend(lines);
    }
    wait_for(
        "the sink to hold its records and retry",
        Duration::from_secs(20),
        || r.log().contains("record(s) and retrying"),
    );
    let log = r.log();
    let held = log
        .lines()
        .find(|l| l.contains("record(s) and retrying"))
        .unwrap();
    eprintln!("{held}");
    assert!(held.contains("Too many open files"), "{held}");
    assert!(r.running(), "the router died:\n{}", r.log());
    r.assert_memory_bounded("descriptor flood");
    // The flood ends: the held records are written.
    drop(flood);
    drop(rt);
    wait_for(
        "the held records to be written",
        Duration::from_secs(30),
        || output_lines(&d.join("out")).values().sum::<usize>() == accepted.len(),
    );
    drop(good);
    let log = r.log();
    let accept_lines = log.matches("accepting a connection failed").count();
    assert!(accept_lines >= 1, "{log}");
    assert!(accept_lines <= 12, "{accept_lines} accept warnings:\n{log}");
    let stats = r.stop();
    assert_eq!(stats.dead_lettered(), 0);
    assert_exactly_once(&d.join("out"), &accepted);
    // The dead-letter file was opened at start and, with nothing in it, removed at exit.
    assert!(!d.join("dead.ndjson").exists());
}

// ----- 5. QUIC: unauthenticated clients and unfinished batch streams ---------------------------

#[test]
fn quic_clients_before_hello_and_unfinished_batches_are_bounded() {
    let dir = temp_dir();
    let d = dir.path();
    let port = free_udp_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let r = Router::start(
        d,
        &quic_config(
            port,
            "auth_token = \"tok\"\nmax_connections = 40\nmax_unauthenticated = 8\n\
             max_connections_per_peer = 100\nhello_timeout_ms = 1000\nmax_batch_bytes = \"2MiB\"\n\
             max_inflight_bytes = \"32MiB\"\nbatch_timeout_ms = 1000\nbatch_min_bytes_per_sec = 0\n\
             accept_wait_ms = 300\nretry_after_ms = 100",
        ),
        None,
        |log| quic_fingerprint(log).is_some(),
    );
    let fp = quic_fingerprint(&r.log()).unwrap();
    let good = Quic::new(&fp, [127, 0, 0, 1], true);
    let mut accepted = Vec::new();
    // A client that authenticated before the flood.
    let (early, status) = good
        .rt
        .block_on(Quic::hello(&good.endpoint, addr, 1, b"tok"))
        .unwrap();
    assert_eq!(status, Status::Ok);

    // 20 clients (kept alive by pings) that never finish their HELLO.
    let hostile = Quic::new(&fp, [127, 0, 0, 2], true);
    let unauth = hostile.rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let c = hostile.endpoint.connect(addr, "localhost").unwrap();
            tasks.push(tokio::spawn(async move {
                let conn = tokio::time::timeout(Duration::from_secs(5), c)
                    .await
                    .ok()?
                    .ok()?;
                let (mut s, r) = conn.open_bi().await.ok()?;
                s.write_all(b"ER\x01\x01\x00\x00").await.ok()?;
                Some((conn, s, r))
            }));
        }
        let mut held = Vec::new();
        for t in tasks {
            if let Ok(Some(h)) = t.await {
                held.push(h);
            }
        }
        held
    });
    eprintln!(
        "{} hostile connections got through the handshake",
        unauth.len()
    );
    // The authenticated connection goes on working meanwhile.
    let (_, lines) = records("early", 50);
    let ack = good
        .rt
        .block_on(Quic::batch(&early, 0, &[], &lines))
        .unwrap();
    assert_eq!(ack.status, Status::Ok, "{}", ack.message);
    accepted.extend(lines);
    // A new client with the token gets in once hello_timeout_ms has freed the slots.
    let started = Instant::now();
    let fresh = good.rt.block_on(async {
        loop {
            match Quic::hello(&good.endpoint, addr, 2, b"tok").await {
                Ok((c, Status::Ok)) => return c,
                other => {
                    assert!(
                        started.elapsed() < SERVED_WITHIN,
                        "not served: {:?}",
                        other.map(|x| x.1)
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    });
    eprintln!(
        "new authenticated client in after {} ms",
        started.elapsed().as_millis()
    );
    // The half-sent HELLOs were cut off.
    let closed = hostile.rt.block_on(async {
        let mut closed = 0;
        for (conn, _, _) in &unauth {
            if tokio::time::timeout(SERVED_WITHIN, conn.closed())
                .await
                .is_ok()
            {
                closed += 1;
            }
        }
        closed
    });
    assert_eq!(closed, unauth.len(), "connections still waiting for HELLO");
    assert!(r.log().contains("max_unauthenticated (8)"), "{}", r.log());

    // One authenticated client opens 64 batch streams and sends half of a 2 MiB batch on each.
    let greedy = Quic::new(&fp, [127, 0, 0, 3], false);
    let answers = greedy.rt.block_on(async {
        let (conn, status) = Quic::hello(&greedy.endpoint, addr, 3, b"tok")
            .await
            .unwrap();
        assert_eq!(status, Status::Ok);
        let mut tasks = Vec::new();
        for seq in 0..64u64 {
            let conn = conn.clone();
            tasks.push(tokio::spawn(async move {
                let (mut s, mut r) = conn.open_bi().await.ok()?;
                let mut frame = b"ER\x01\x10".to_vec();
                frame.extend_from_slice(&seq.to_be_bytes());
                frame.push(0);
                frame.extend_from_slice(&1u32.to_be_bytes());
                frame.extend_from_slice(&(2_000_000u32).to_be_bytes());
                frame.extend_from_slice(&vec![b'x'; 1 << 20]);
                // The router stops reading what it refuses: do not wait for all of it to go.
                let _ = tokio::time::timeout(Duration::from_secs(2), s.write_all(&frame)).await;
                let a = tokio::time::timeout(Duration::from_secs(10), r.read_to_end(MAX_ACK_BYTES))
                    .await
                    .ok()?
                    .ok()?;
                decode_ack(&a).ok().map(|a| a.status)
            }));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.ok().flatten());
        }
        (conn, out)
    });
    eprintln!(
        "greedy client answered after {} ms",
        started.elapsed().as_millis()
    );
    // Meanwhile (and after) the well-behaved clients are served.
    let (_, lines) = records("fresh", 50);
    let ack = good
        .rt
        .block_on(Quic::batch(&fresh, 0, &[], &lines))
        .unwrap();
    assert_eq!(ack.status, Status::Ok, "{}", ack.message);
    accepted.extend(lines);
    r.assert_memory_bounded("QUIC clients before HELLO and unfinished batches");
    let statuses = &answers.1;
    eprintln!("answers to the unfinished batches: {statuses:?}");
    assert!(
        statuses
            .iter()
            .all(|s| matches!(s, Some(Status::Backpressure | Status::BadRequest) | None)),
        "{statuses:?}"
    );
    assert!(statuses.contains(&Some(Status::BadRequest)), "{statuses:?}");
    drop((unauth, hostile, answers, greedy));
    good.rt.block_on(async {
        early.close(0u32.into(), b"done");
        fresh.close(0u32.into(), b"done");
    });
    let stats = r.stop();
    assert_eq!(stats.read(), 100);
    assert_exactly_once(&d.join("out"), &accepted);
}

// ----- 6. `send` against a server that accepts and never answers -------------------------------

#[test]
fn send_gives_up_on_a_server_that_never_answers() {
    let dir = temp_dir();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accepts and holds every connection, reading nothing and answering nothing.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s);
        }
    });
    let started = Instant::now();
    let mut child: Child = common::command(
        dir.path(),
        &[
            "send",
            &format!("http://127.0.0.1:{port}"),
            "--give-up-after-secs",
            "2",
            "--request-timeout-secs",
            "1",
        ],
    )
    .stdin(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    child.stdin.take().unwrap().write_all(b"a\nb\n").unwrap();
    let status = common::wait_with_timeout(&mut child, Duration::from_secs(30));
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(4), "{err}");
    assert!(err.contains("no answer within"), "{err}");
    assert!(err.contains("gave up"), "{err}");
    assert!(err.contains("0 of 2 record(s) acknowledged"), "{err}");
    eprintln!("send gave up after {} ms", started.elapsed().as_millis());
}

// ----- 7. `POST /reload` needs the token and never comes from a web page ------------------------

/// `POST http://ADDR/reload` with `headers`; the status.
fn post_reload(addr: SocketAddr, headers: &[(&str, &str)]) -> u16 {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(SERVED_WITHIN)).unwrap();
    let mut req = "POST /reload HTTP/1.1\r\nHost: router\r\nContent-Length: 0\r\n".to_owned();
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    read_answer(&mut s).unwrap().0
}

#[test]
fn reload_needs_the_token_and_refuses_cross_origin_requests() {
    let dir = temp_dir();
    let d = dir.path();
    for token in [Some("s3cret"), None] {
        let mport = free_port();
        let maddr = SocketAddr::from(([127, 0, 0, 1], mport));
        let token_line = token.map_or(String::new(), |t| format!("reload_token = \"{t}\"\n"));
        let config = format!(
            "[sources.in]\nkind = \"stdin\"\n\n[sinks.out]\nkind = \"file\"\npath = \"out.ndjson\"\n\n\
             [dead_letter]\npath = \"dead.ndjson\"\n\n[metrics]\naddress = \"127.0.0.1:{mport}\"\n{token_line}"
        );
        std::fs::write(d.join("pipeline.toml"), config).unwrap();
        let (run, stdin) = common::Running::start(d, &["run", "-c", "pipeline.toml"]);
        common::wait_for("the metrics endpoint", Duration::from_secs(20), || {
            TcpStream::connect(maddr).is_ok()
        });
        let reload = |args: &[&str]| {
            let mut a = vec!["reload", "--metrics"];
            let m = maddr.to_string();
            a.push(&m);
            a.extend_from_slice(args);
            Command::new(bin())
                .args(&a)
                .env_remove("EDGE_ROUTER_RELOAD_TOKEN")
                .output()
                .unwrap()
        };
        // Idle connections from another address take at most their share of the endpoint.
        let rt = runtime();
        let idle = rt.block_on(async {
            let mut v = Vec::new();
            for _ in 0..30 {
                if let Ok(s) = connect_from([127, 0, 0, 2], maddr).await {
                    v.push(s);
                }
            }
            v
        });
        match token {
            Some(t) => {
                assert_eq!(post_reload(maddr, &[]), 401);
                assert_eq!(
                    post_reload(maddr, &[("Authorization", "Bearer wrong")]),
                    401
                );
                let bearer = format!("Bearer {t}");
                // What a web page could make a browser send: refused, token or not.
                assert_eq!(
                    post_reload(
                        maddr,
                        &[
                            ("Origin", "http://evil.example"),
                            ("Content-Type", "text/plain"),
                            ("Authorization", &bearer)
                        ]
                    ),
                    403
                );
                let out = reload(&["--token", t]);
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                assert!(!reload(&[]).status.success());
            }
            None => {
                assert_eq!(post_reload(maddr, &[("Authorization", "Bearer x")]), 403);
                let out = reload(&["--token", "x"]);
                let err = String::from_utf8_lossy(&out.stderr);
                assert!(!out.status.success());
                assert!(err.contains("reload_token"), "{err}");
            }
        }
        drop((idle, rt));
        drop(stdin);
        let out = run.wait(Duration::from_secs(30));
        assert_eq!(out.code(), 0, "{}", out.stderr);
    }
}

// ----- 8. NDJSON checks UTF-8 inside strings, as arrays do --------------------------------------

#[test]
fn ndjson_with_invalid_utf8_in_a_string_is_refused_whole() {
    let dir = temp_dir();
    let d = dir.path();
    let port = free_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let r = Router::start(d, &http_config(port, "", ""), None, http_ready);
    let mut c = Http::connect(addr);
    let (status, answer) = c.post(&[], b"{\"a\":\"ok\"}\n{\"a\":\"\xff\xfe\"}\n");
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer.contains("line 2") && answer.contains("UTF-8"),
        "{answer}"
    );
    let (status, _) = c.post(
        &[("Content-Type".into(), "application/json".into())],
        b"[{\"a\":\"ok\"},{\"a\":\"\xff\xfe\"}]",
    );
    assert_eq!(status, 400);
    let accepted = good_post(addr, "valid", 3);
    let stats = r.stop();
    assert_eq!(stats.read(), 3);
    assert_exactly_once(&d.join("out"), &accepted);
}
