//! The QUIC source and `edge-router send`: a million records in order through a real QUIC
//! connection, a plain quinn client speaking the protocol by hand (keys and attributes, a
//! client that vanishes mid-batch, a resend after reconnecting), wrong tokens, a pinned
//! fingerprint that does not match, client certificates (mTLS), a blocked sink that slows the
//! sender down without losing or duplicating anything, and `send` over HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs::File;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Proc, temp_dir};
use edge_router::sources::quic::protocol::{
    ALPN, BatchEncoder, MAX_ACK_BYTES, MAX_WELCOME_BYTES, Status, decode_ack, decode_welcome,
    encode_hello,
};

/// A free UDP port on 127.0.0.1.
fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A router with a QUIC source, its stderr in `router.log`.
struct Router {
    proc: Proc,
    port: u16,
    dir: PathBuf,
    fingerprint: Option<String>,
}

impl Router {
    /// Starts `edge-router run -c pipeline.toml` with a QUIC source (`source` lines added to its
    /// table) and a file sink writing `path` (`rest` appended to the config).
    fn start(dir: &Path, source: &str, path: &str, rest: &str) -> Router {
        let port = free_udp_port();
        let config = format!(
            "[sources.q]\nkind = \"quic\"\naddress = \"127.0.0.1:{port}\"\n{source}\n\n\
             [sinks.out]\nkind = \"file\"\npath = \"{path}\"\n{rest}\n"
        );
        std::fs::write(dir.join("pipeline.toml"), config).unwrap();
        let log = File::create(dir.join("router.log")).unwrap();
        let child = common::command(dir, &["run", "-c", "pipeline.toml", "--stats=json"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        let mut r = Router {
            proc: Proc(child),
            port,
            dir: dir.to_owned(),
            fingerprint: None,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let log = r.log();
            if let Some(line) = log.lines().find(|l| l.contains("listening on quic://")) {
                r.fingerprint = line
                    .split("fingerprint ")
                    .nth(1)
                    .map(|s| s.chars().take(64).collect());
                break;
            }
            if let Some(status) = r.proc.0.try_wait().unwrap() {
                panic!("router exited ({status}) before listening:\n{log}");
            }
            assert!(Instant::now() < deadline, "router not listening:\n{log}");
            std::thread::sleep(Duration::from_millis(20));
        }
        r
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("router.log")).unwrap_or_default()
    }

    fn uri(&self) -> String {
        format!("quic://127.0.0.1:{}", self.port)
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Stops it with SIGTERM; returns its `--stats=json` report (checked for the invariant).
    fn stop(mut self) -> common::Stats {
        let pid = self.proc.0.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let status = common::wait_with_timeout(&mut self.proc.0, Duration::from_secs(30));
        let log = self.log();
        assert!(status.success(), "router failed: {status}\n{log}");
        let stats = common::Stats::from_stderr(&log);
        stats.assert_invariant();
        stats
    }
}

/// Runs `edge-router send ARGS` with `input` on stdin; returns (exit code, stderr).
fn send(dir: &Path, args: &[&str], input: &[u8]) -> (i32, String) {
    let mut child = send_child(dir, args);
    let mut stdin = child.stdin.take().unwrap();
    let data = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let status = common::wait_with_timeout(&mut child, Duration::from_secs(120));
    writer.join().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    (status.code().unwrap_or(-1), err)
}

fn send_child(dir: &Path, args: &[&str]) -> Child {
    let mut all = vec!["send"];
    all.extend_from_slice(args);
    common::command(dir, &all)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn summary(stderr: &str) -> serde_json::Value {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("{\"records_read\""))
        .unwrap_or_else(|| panic!("no --stats summary in:\n{stderr}"));
    serde_json::from_str(line).unwrap()
}

#[test]
fn a_million_records_through_send_arrive_in_order_exactly_once() {
    let dir = temp_dir();
    let d = dir.path();
    let r = Router::start(d, "self_signed = true", "out.ndjson", "");
    let fp = r
        .fingerprint
        .clone()
        .expect("a self-signed router logs its fingerprint");
    let input = std::fs::read(common::generate("sensor", 1_000_000, &[])).unwrap();
    let (code, err) = send(d, &[&r.uri(), "--fingerprint", &fp, "--stats"], &input);
    assert_eq!(code, 0, "{err}");
    let s = summary(&err);
    assert_eq!(s["records_acknowledged"], 1_000_000);
    assert_eq!(s["connections"], 1);
    let stats = r.stop();
    assert_eq!(stats.read(), 1_000_000);
    let got = std::fs::read(d.join("out.ndjson")).unwrap();
    common::assert_bytes_eq(&got, &input, "records sent over QUIC");
}

/// A quinn client speaking `edge-router/1` by hand, trusting the pinned certificate.
struct RawClient {
    endpoint: quinn::Endpoint,
    rt: tokio::runtime::Runtime,
}

impl RawClient {
    fn new(fingerprint: &str) -> RawClient {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let tls = edge_router::tls::client_config(
            &edge_router::tls::Trust::Pinned(fingerprint.to_owned()),
            &[ALPN],
            None,
        )
        .unwrap();
        let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
        let endpoint = rt.block_on(async {
            let mut e = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
            e.set_default_client_config(quinn::ClientConfig::new(Arc::new(quic)));
            e
        });
        RawClient { endpoint, rt }
    }

    /// Connects and says HELLO; returns the connection and WELCOME.
    fn connect(
        &self,
        addr: SocketAddr,
        session: u64,
        token: &[u8],
    ) -> (
        quinn::Connection,
        edge_router::sources::quic::protocol::Welcome,
    ) {
        self.rt.block_on(async {
            let conn = self
                .endpoint
                .connect(addr, "localhost")
                .unwrap()
                .await
                .unwrap();
            let (mut s, mut r) = conn.open_bi().await.unwrap();
            let mut hello = Vec::new();
            encode_hello(session, token, &mut hello).unwrap();
            s.write_all(&hello).await.unwrap();
            s.finish().unwrap();
            let w = decode_welcome(&r.read_to_end(MAX_WELCOME_BYTES).await.unwrap()).unwrap();
            (conn, w)
        })
    }

    fn batch(
        &self,
        conn: &quinn::Connection,
        seq: u64,
        key: Option<&str>,
        attrs: &[(String, String)],
        records: &[&[u8]],
    ) -> edge_router::sources::quic::protocol::Ack {
        let mut enc = BatchEncoder::new(seq, key, attrs).unwrap();
        for r in records {
            enc.push(r).unwrap();
        }
        let frame = enc.finish();
        self.rt.block_on(async {
            let (mut s, mut r) = conn.open_bi().await.unwrap();
            s.write_all(&frame).await.unwrap();
            s.finish().unwrap();
            decode_ack(&r.read_to_end(MAX_ACK_BYTES).await.unwrap()).unwrap()
        })
    }
}

#[test]
fn a_plain_quinn_client_a_vanishing_client_and_a_resend() {
    let dir = temp_dir();
    let d = dir.path();
    let r = Router::start(
        d,
        "self_signed = true\nauth_token = \"t0k\"",
        "out/{partition_key}-{attr.site}.ndjson",
        "",
    );
    let fp = r.fingerprint.clone().unwrap();
    let client = RawClient::new(&fp);
    let addr = r.addr();

    // A wrong token: WELCOME says so and the connection is closed.
    let (_, w) = client.connect(addr, 1, b"nope");
    assert_eq!(w.status, Status::Unauthorized);

    let (conn, w) = client.connect(addr, 42, b"t0k");
    assert_eq!((w.status, w.next_seq), (Status::Ok, 0));
    let attrs = vec![("site".to_owned(), "north".to_owned())];
    let ack = client.batch(
        &conn,
        0,
        Some("dev-1"),
        &attrs,
        &[b"{\"a\":1}", b"{\"a\":2}"],
    );
    assert_eq!((ack.seq, ack.status, ack.accepted), (0, Status::Ok, 2));
    // The same batch again: a duplicate, not written twice.
    let ack = client.batch(
        &conn,
        0,
        Some("dev-1"),
        &attrs,
        &[b"{\"a\":1}", b"{\"a\":2}"],
    );
    assert_eq!((ack.status, ack.accepted), (Status::Duplicate, 0));

    // Batch 1 half written, then the client vanishes: nothing of it is accepted.
    let mut enc = BatchEncoder::new(1, Some("dev-1"), &attrs).unwrap();
    enc.push(b"{\"a\":3}").unwrap();
    let frame = enc.finish();
    client.rt.block_on(async {
        let (mut s, _r) = conn.open_bi().await.unwrap();
        let stream_frames = conn.stats().frame_tx.stream;
        s.write_all(&frame[..frame.len() - 3]).await.unwrap();
        // Closed once the partial batch has left (a STREAM frame sent after it was written):
        // the router gets it, then the close.
        let deadline = Instant::now() + Duration::from_secs(20);
        while conn.stats().frame_tx.stream == stream_frames {
            assert!(
                Instant::now() < deadline,
                "the partial batch was never sent"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        conn.close(7u32.into(), b"vanishing");
    });
    // Reconnecting to the same session: the router expects batch 1 (it never got it whole).
    let (conn, w) = client.connect(addr, 42, b"t0k");
    assert_eq!((w.status, w.next_seq), (Status::Ok, 1));
    // A batch from the future waits for its predecessor, then gives up: OutOfOrder.
    // (Not waiting the full order_wait here: batch 1 arrives meanwhile and both are accepted.)
    let (arrived, has_arrived) = tokio::sync::oneshot::channel();
    let early = {
        let conn = conn.clone();
        let mut enc = BatchEncoder::new(2, Some("dev-2"), &attrs).unwrap();
        enc.push(b"{\"a\":4}").unwrap();
        let frame = enc.finish();
        client.rt.spawn(async move {
            let (mut s, mut r) = conn.open_bi().await.unwrap();
            s.write_all(&frame).await.unwrap();
            s.finish().unwrap();
            // The router has all of batch 2 once QUIC acknowledges the stream's data.
            s.stopped().await.unwrap();
            arrived.send(()).unwrap();
            decode_ack(&r.read_to_end(MAX_ACK_BYTES).await.unwrap()).unwrap()
        })
    };
    // Batch 1 goes once the router holds batch 2 (that it has also looked at it and waits is
    // not visible from here; if not, both are accepted just the same).
    client
        .rt
        .block_on(async { tokio::time::timeout(Duration::from_secs(20), has_arrived).await })
        .expect("batch 2 never acknowledged by QUIC")
        .unwrap();
    let ack = client.batch(&conn, 1, Some("dev-1"), &attrs, &[b"{\"a\":3}"]);
    assert_eq!((ack.status, ack.accepted), (Status::Ok, 1));
    let early = client.rt.block_on(early).unwrap();
    assert_eq!(
        (early.seq, early.status, early.accepted),
        (2, Status::Ok, 1)
    );
    // A malformed batch is refused with a message naming the problem.
    let bad = client.rt.block_on(async {
        let (mut s, mut r) = conn.open_bi().await.unwrap();
        s.write_all(b"ER\x01\x10\x00").await.unwrap();
        s.finish().unwrap();
        decode_ack(&r.read_to_end(MAX_ACK_BYTES).await.unwrap()).unwrap()
    });
    assert_eq!(bad.status, Status::BadRequest);
    assert!(bad.message.contains("offset"), "{}", bad.message);
    conn.close(0u32.into(), b"done");

    let stats = r.stop();
    assert_eq!(stats.read(), 4);
    let read = |p: &str| std::fs::read_to_string(d.join("out").join(p)).unwrap();
    assert_eq!(
        read("dev-1-north.ndjson"),
        "{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n"
    );
    assert_eq!(read("dev-2-north.ndjson"), "{\"a\":4}\n");
}

#[test]
fn connections_beyond_max_connections_are_refused() {
    let dir = temp_dir();
    let d = dir.path();
    let r = Router::start(
        d,
        "self_signed = true\nmax_connections = 1",
        "out.ndjson",
        "",
    );
    let fp = r.fingerprint.clone().unwrap();
    let client = RawClient::new(&fp);
    let (first, w) = client.connect(r.addr(), 1, b"");
    assert_eq!(w.status, Status::Ok);
    // The second connection is refused while the first is open.
    let second = client.rt.block_on(async {
        let connecting = client.endpoint.connect(r.addr(), "localhost").unwrap();
        tokio::time::timeout(Duration::from_secs(10), connecting).await
    });
    assert!(
        matches!(second, Ok(Err(_))),
        "a second connection was accepted: {second:?}"
    );
    assert!(
        r.log().contains("max_connections (1) reached"),
        "{}",
        r.log()
    );
    // Once the first closes, a new one is accepted again.
    first.close(0u32.into(), b"done");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ok = client.rt.block_on(async {
            let c = client.endpoint.connect(r.addr(), "localhost").unwrap();
            tokio::time::timeout(Duration::from_secs(5), c).await
        });
        if matches!(ok, Ok(Ok(_))) {
            break;
        }
        assert!(Instant::now() < deadline, "never accepted again");
        std::thread::sleep(Duration::from_millis(50));
    }
    r.stop();
}

#[test]
fn wrong_tokens_and_wrong_fingerprints_are_refused_and_reported() {
    let dir = temp_dir();
    let d = dir.path();
    let r = Router::start(
        d,
        "self_signed = true\nauth_token = \"right\"",
        "out.ndjson",
        "",
    );
    let fp = r.fingerprint.clone().unwrap();
    let input = common::sensor(100);
    let (code, err) = send(
        d,
        &[&r.uri(), "--fingerprint", &fp, "--token", "wrong"],
        &input,
    );
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains("unauthorized: wrong or missing token"),
        "{err}"
    );
    assert!(err.contains("not sent"), "{err}");
    let other = "00".repeat(32);
    let (code, err) = send(
        d,
        &[&r.uri(), "--fingerprint", &other, "--token", "right"],
        &input,
    );
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("fingerprint"), "{err}");
    // Without a pin or CA the self-signed certificate is not trusted.
    let (code, err) = send(
        d,
        &[&r.uri(), "--token", "right", "--give-up-after-secs", "5"],
        &input,
    );
    assert_eq!(code, 4, "{err}");
    let (code, err) = send(
        d,
        &[&r.uri(), "--fingerprint", &fp, "--token", "right"],
        &input,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(r.stop().read(), 100);
    common::assert_bytes_eq(
        &std::fs::read(d.join("out.ndjson")).unwrap(),
        &input,
        "output",
    );
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("running openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn client_certificates_when_the_router_requires_them() {
    let dir = temp_dir();
    let d = dir.path();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=test-ca",
    ]);
    openssl(d, &ca);
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend([
        "-keyout",
        "client.key",
        "-out",
        "client.csr",
        "-subj",
        "/CN=client",
    ]);
    openssl(d, &csr);
    std::fs::write(
        d.join("client.ext"),
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n",
    )
    .unwrap();
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "client.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "client.pem",
            "-days",
            "2",
            "-extfile",
            "client.ext",
        ],
    );
    // The server's own certificate: signed by the same CA, so `send --ca` trusts it.
    let mut scsr = vec!["req"];
    scsr.extend(ec);
    scsr.extend([
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    openssl(d, &scsr);
    std::fs::write(
        d.join("server.ext"),
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n\
         subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    );
    let r = Router::start(
        d,
        "tls_cert = \"server.pem\"\ntls_key = \"server.key\"\nclient_ca = \"ca.pem\"",
        "out.ndjson",
        "",
    );
    let input = common::sensor(50);
    let (code, err) = send(
        d,
        &[&r.uri(), "--ca", "ca.pem", "--give-up-after-secs", "5"],
        &input,
    );
    assert_eq!(code, 4, "without a client certificate: {err}");
    let (code, err) = send(
        d,
        &[
            &r.uri(),
            "--ca",
            "ca.pem",
            "--client-cert",
            "client.pem",
            "--client-key",
            "client.key",
        ],
        &input,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(r.stop().read(), 50);
    common::assert_bytes_eq(
        &std::fs::read(d.join("out.ndjson")).unwrap(),
        &input,
        "output",
    );
}

#[test]
fn a_blocked_sink_slows_send_down_and_everything_arrives_once() {
    let dir = temp_dir();
    let d = dir.path();
    assert!(
        Command::new("mkfifo")
            .arg(d.join("out.fifo"))
            .status()
            .unwrap()
            .success()
    );
    let metrics = format!("127.0.0.1:{}", common::free_port());
    let r = Router::start(
        d,
        "self_signed = true\naccept_wait_ms = 100\nretry_after_ms = 50",
        "out.fifo",
        &format!(
            "queue_records_max = 2000\n\n[pipeline]\nqueue_records_max = 2000\n\
             queue_bytes_max = \"1MiB\"\n\n[metrics]\naddress = \"{metrics}\""
        ),
    );
    let fp = r.fingerprint.clone().unwrap();
    let input = std::fs::read(common::generate("sensor", 200_000, &[])).unwrap();
    let mut child = send_child(d, &[&r.uri(), "--fingerprint", &fp, "--stats"]);
    let mut stdin = child.stdin.take().unwrap();
    let data = input.clone();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    // The sink is blocked: the queues fill, the router answers BACKPRESSURE, and send cannot
    // finish.
    common::wait_for(
        "a batch refused for backpressure",
        Duration::from_secs(60),
        || {
            let m = common::metrics(&metrics);
            common::metric(
                &m,
                "edge_router_source_responses_total{component=\"sources.q\",code=\"backpressure\"}",
            ) > 0
        },
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "send finished while the sink was blocked"
    );
    let reader = {
        let fifo = d.join("out.fifo");
        std::thread::spawn(move || std::fs::read(fifo).unwrap())
    };
    let status = common::wait_with_timeout(&mut child, Duration::from_secs(120));
    writer.join().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(status.success(), "{err}");
    let s = summary(&err);
    assert!(
        s["resends"].as_u64().unwrap() > 0,
        "backpressure made send resend: {s}"
    );
    assert_eq!(r.stop().read(), 200_000);
    common::assert_bytes_eq(&reader.join().unwrap(), &input, "records through the FIFO");
}

#[test]
fn send_over_http_in_order_with_one_request_in_flight() {
    let dir = temp_dir();
    let d = dir.path();
    let port = common::free_port();
    let config = format!(
        "[sources.web]\nkind = \"http\"\naddress = \"127.0.0.1:{port}\"\nauth_token = \"tok\"\n\n\
         [sinks.out]\nkind = \"file\"\npath = \"out.ndjson\"\n"
    );
    std::fs::write(d.join("pipeline.toml"), config).unwrap();
    let (mut run, stdin) =
        common::Running::start(d, &["run", "-c", "pipeline.toml", "--stats=json"]);
    drop(stdin);
    common::wait_for_port(port, &mut run.child, "edge-router", Duration::from_secs(20));
    let input = common::sensor(50_000);
    let url = format!("http://127.0.0.1:{port}");
    let (code, err) = send(
        d,
        &[&url, "--in-flight", "1", "--token", "tok", "--stats"],
        &input,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(summary(&err)["records_acknowledged"], 50_000);
    let (code, err) = send(
        d,
        &[&url, "--token", "bad", "--give-up-after-secs", "5"],
        &input,
    );
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("HTTP 401"), "{err}");
    run.signal("TERM");
    let out = run.wait(Duration::from_secs(30));
    out.ok_stats().assert_invariant();
    common::assert_bytes_eq(
        &std::fs::read(d.join("out.ndjson")).unwrap(),
        &input,
        "output",
    );
}
