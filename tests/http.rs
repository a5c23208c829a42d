//! The HTTP source, driven by real clients: curl (HTTP/1.1, HTTP/2, TLS; NDJSON, arrays, raw
//! records, gzip and zstd bodies; every bad-input answer). Records are read back from the file
//! sink; a request that was refused must have left nothing behind, and one that got 200 must be
//! there exactly once. The Kinesis/Firehose-compatible API has its own tests in
//! `tests/aws_api.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Running, free_port, temp_dir, wait_for_port};

/// A router with an HTTP source on a free port and a file sink `out.ndjson`.
struct Router {
    run: Running,
    port: u16,
}

impl Router {
    /// Starts `edge-router run -c pipeline.toml` in `dir` with `source` lines added to the
    /// `[sources.web]` table and `rest` appended to the file.
    fn start(dir: &Path, source: &str, rest: &str) -> Router {
        Router::start_file(dir, source, "out.ndjson", rest)
    }

    /// Like [`Router::start`], with the file sink writing to `path`.
    fn start_file(dir: &Path, source: &str, path: &str, rest: &str) -> Router {
        let port = free_port();
        let config = format!(
            "[sources.web]\nkind = \"http\"\naddress = \"127.0.0.1:{port}\"\n{source}\n\n\
             [sinks.out]\nkind = \"file\"\npath = \"{path}\"\n{rest}\n"
        );
        std::fs::write(dir.join("pipeline.toml"), config).unwrap();
        let (mut run, stdin) = Running::start(dir, &["run", "-c", "pipeline.toml", "--stats=json"]);
        drop(stdin);
        wait_for_port(port, &mut run.child, "edge-router", Duration::from_secs(20));
        Router { run, port }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Stops it with SIGTERM and returns its output.
    fn stop(self) -> common::Output {
        self.run.signal("TERM");
        self.run.wait(Duration::from_secs(30))
    }
}

/// An HTTP answer from curl.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: String,
    body: String,
}

/// Runs curl with `args` (plus `-s`, the header dump and the status code) and `body` on stdin
/// (`--data-binary @-`) when given.
fn curl(args: &[&str], body: Option<&[u8]>) -> Answer {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "-D",
        "/dev/stderr",
        "-w",
        "\n%{http_code}",
        "--max-time",
        "30",
    ])
    .args(args)
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    if body.is_some() {
        cmd.args(["--data-binary", "@-"]).stdin(Stdio::piped());
    }
    let mut child = cmd.spawn().expect("running curl");
    if let Some(b) = body {
        let mut stdin = child.stdin.take().unwrap();
        let b = b.to_vec();
        std::thread::spawn(move || {
            let _ = stdin.write_all(&b);
        });
    }
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", text.as_str()));
    Answer {
        status: code.trim().parse().unwrap_or_else(|_| {
            panic!(
                "curl {args:?}: no status in {text:?}; stderr {}",
                String::from_utf8_lossy(&out.stderr)
            )
        }),
        headers: String::from_utf8_lossy(&out.stderr).into_owned(),
        body: body.to_owned(),
    }
}

fn post(r: &Router, headers: &[&str], body: &[u8]) -> Answer {
    let url = r.url("/v1/records");
    let mut args: Vec<&str> = vec![url.as_str()];
    for h in headers {
        args.extend(["-H", h]);
    }
    curl(&args, Some(body))
}

fn accepted(a: &Answer) -> u64 {
    assert_eq!(a.status, 200, "{a:?}");
    let v: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    v["accepted"].as_u64().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[test]
fn every_body_format_and_encoding_arrives_in_order() {
    let dir = temp_dir();
    let r = Router::start(dir.path(), "", "");
    assert_eq!(curl(&[&r.url("/health")], None).status, 200);
    assert_eq!(curl(&[&r.url("/ready")], None).status, 200);

    let ndjson = b"{\"n\":1}\n\n{\"n\":2}\r\n{\"n\":3}";
    assert_eq!(accepted(&post(&r, &[], ndjson)), 3);
    let array = b"[{\"n\":4}, {\"n\": 5}]";
    assert_eq!(
        accepted(&post(&r, &["Content-Type: application/json"], array)),
        2
    );
    let raw = b"raw record 6, not JSON";
    assert_eq!(
        accepted(&post(&r, &["Content-Type: application/octet-stream"], raw)),
        1
    );
    let gz = gzip(b"{\"n\":7}\n{\"n\":8}\n");
    assert_eq!(accepted(&post(&r, &["Content-Encoding: gzip"], &gz)), 2);
    let zs = zstd::encode_all(&b"{\"n\":9}\n{\"n\":10}\n"[..], 3).unwrap();
    assert_eq!(accepted(&post(&r, &["Content-Encoding: zstd"], &zs)), 2);
    let lines = b"plain 11\nplain 12\n";
    assert_eq!(accepted(&post(&r, &["Content-Type: text/plain"], lines)), 2);
    // HTTP/2 (cleartext, prior knowledge).
    let url = r.url("/v1/records?format=ndjson");
    let h2 = curl(&["--http2-prior-knowledge", &url], Some(b"{\"n\":13}\n"));
    assert_eq!(accepted(&h2), 1);
    assert!(h2.headers.starts_with("HTTP/2 200"), "{}", h2.headers);

    let out = r.stop();
    out.ok_stats().assert_invariant();
    let got = std::fs::read_to_string(dir.path().join("out.ndjson")).unwrap();
    let want = "{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n{\"n\":4}\n{\"n\": 5}\nraw record 6, not JSON\n\
                {\"n\":7}\n{\"n\":8}\n{\"n\":9}\n{\"n\":10}\nplain 11\nplain 12\n{\"n\":13}\n";
    assert_eq!(got, want);
    assert_eq!(out.ok_stats().read(), 13);
}

/// A bad-request case: what, headers, body, expected status, words in the answer.
type Case<'a> = (&'a str, Vec<&'a str>, Vec<u8>, u16, &'a str);

#[test]
fn bad_requests_get_their_codes_and_leave_nothing_behind() {
    let dir = temp_dir();
    let r = Router::start(
        dir.path(),
        "auth_token = \"s3cret\"\nmax_body_bytes = \"1KiB\"\nmax_record_bytes = 100",
        "",
    );
    let auth = "Authorization: Bearer s3cret";
    let cases: Vec<Case<'_>> = vec![
        ("no token", vec![], b"{}\n".to_vec(), 401, "bearer token"),
        (
            "wrong token",
            vec!["Authorization: Bearer s3creT"],
            b"{}\n".to_vec(),
            401,
            "bearer token",
        ),
        (
            "declared body over the limit",
            vec![auth],
            vec![b'{'; 2000],
            413,
            "max_body_bytes",
        ),
        (
            "chunked body over the limit",
            vec![auth, "Transfer-Encoding: chunked"],
            vec![b'x'; 5000],
            413,
            "max_body_bytes",
        ),
        (
            "invalid JSON on line 3",
            vec![auth],
            b"{\"ok\":1}\n{\"ok\":2}\n{\"bad\":\n".to_vec(),
            400,
            "line 3",
        ),
        (
            "malformed array",
            vec![auth, "Content-Type: application/json"],
            b"[{\"ok\":1}, {\"bad\" 2}]".to_vec(),
            400,
            "element 2",
        ),
        (
            "record over max_record_bytes",
            vec![auth],
            format!("{{\"ok\":1}}\n\"{}\"\n", "x".repeat(200)).into_bytes(),
            413,
            "line 2",
        ),
        (
            "gzip that expands past the limit",
            vec![auth, "Content-Encoding: gzip"],
            gzip(&vec![b'\n'; 100_000]),
            413,
            "after decompression",
        ),
        (
            "corrupt gzip",
            vec![auth, "Content-Encoding: gzip"],
            b"not gzip at all".to_vec(),
            400,
            "gzip",
        ),
        (
            "unknown encoding",
            vec![auth, "Content-Encoding: br"],
            b"{}\n".to_vec(),
            415,
            "Content-Encoding",
        ),
        (
            "a JSON object with application/json is one NDJSON line",
            vec![auth, "Content-Type: application/json"],
            b"{}\n".to_vec(),
            200,
            "",
        ),
    ];
    let mut expected = 0;
    for (what, headers, body, status, words) in &cases {
        let a = post(&r, headers, body);
        assert_eq!(a.status, *status, "{what}: {a:?}");
        assert!(a.body.contains(words), "{what}: {a:?}");
        if *status == 200 {
            expected += accepted(&a);
        } else {
            let v: serde_json::Value = serde_json::from_str(&a.body)
                .unwrap_or_else(|e| panic!("{what}: error body is not JSON ({e}): {a:?}"));
            assert_eq!(v["status"], *status, "{what}");
        }
    }
    let fmt = curl(&[&r.url("/v1/records?format=xml"), "-H", auth], Some(b"{}"));
    assert_eq!(fmt.status, 400, "{fmt:?}");
    assert_eq!(curl(&[&r.url("/nope")], None).status, 404);
    let get = curl(&[&r.url("/v1/records")], None);
    assert_eq!(get.status, 405, "{get:?}");
    assert!(get.headers.to_ascii_lowercase().contains("allow: post"));
    assert_eq!(curl(&["-X", "POST", &r.url("/health")], None).status, 405);

    let out = r.stop();
    let stats = out.ok_stats();
    stats.assert_invariant();
    assert_eq!(stats.read(), expected);
    let got = std::fs::read_to_string(dir.path().join("out.ndjson")).unwrap();
    assert_eq!(got, "{}\n", "only the one good request is in the output");
}

#[test]
fn partition_keys_and_attributes_come_from_headers_and_query() {
    let dir = temp_dir();
    let r = Router::start_file(dir.path(), "", "out/{partition_key}-{attr.site}.ndjson", "");
    let a = post(
        &r,
        &["X-Partition-Key: dev-1", "X-Attribute-site: north"],
        b"{\"a\":1}\n",
    );
    assert_eq!(accepted(&a), 1);
    let url = r.url("/v1/records?partition_key=dev-2&attr.site=south");
    assert_eq!(accepted(&curl(&[&url], Some(b"{\"a\":2}\n"))), 1);
    r.stop().ok_stats().assert_invariant();
    let read = |p: &str| std::fs::read_to_string(dir.path().join("out").join(p)).unwrap();
    assert_eq!(read("dev-1-north.ndjson"), "{\"a\":1}\n");
    assert_eq!(read("dev-2-south.ndjson"), "{\"a\":2}\n");
}

#[test]
fn tls_with_a_pem_certificate() {
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
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            // An end-entity certificate (rustls, unlike OpenSSL, refuses a CA certificate
            // presented as the server's own).
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-addext",
            "extendedKeyUsage=serverAuth",
        ])
        .current_dir(d)
        .stderr(Stdio::null())
        .status()
        .expect("running openssl");
    assert!(status.success());
    let r = Router::start(d, "tls_cert = \"cert.pem\"\ntls_key = \"key.pem\"", "");
    let url = format!("https://127.0.0.1:{}/v1/records", r.port);
    let cacert = d.join("cert.pem");
    let a = curl(
        &["--cacert", cacert.to_str().unwrap(), &url],
        Some(b"{\"tls\":true}\n"),
    );
    assert_eq!(accepted(&a), 1);
    assert!(
        a.headers.starts_with("HTTP/2 200"),
        "ALPN picks h2: {}",
        a.headers
    );
    // An untrusted certificate is refused by the client; nothing is sent.
    let plain = curl(&[&url], Some(b"{\"tls\":false}\n"));
    assert_eq!(plain.status, 0);
    // `edge-router send https://...` trusting the same certificate through --ca.
    let base = format!("https://127.0.0.1:{}", r.port);
    let mut send = common::command(
        d,
        &[
            "send",
            &base,
            "--ca",
            "cert.pem",
            "--in-flight",
            "1",
            "--give-up-after-secs",
            "20",
        ],
    )
    .stdin(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    send.stdin
        .take()
        .unwrap()
        .write_all(b"{\"send\":1}\n{\"send\":2}\n")
        .unwrap();
    let out = send.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    r.stop().ok_stats().assert_invariant();
    assert_eq!(
        std::fs::read_to_string(d.join("out.ndjson")).unwrap(),
        "{\"tls\":true}\n{\"send\":1}\n{\"send\":2}\n"
    );
}

#[test]
fn a_blocked_sink_gets_503_with_bounded_memory_then_every_accepted_record_once() {
    let dir = temp_dir();
    let d = dir.path();
    let fifo = d.join("out.fifo");
    common::mkfifo(&fifo);
    // The sink writes into a FIFO nobody reads yet: it blocks, its queue fills, then the
    // ingress queue, then requests are refused.
    let r = Router::start_file(
        d,
        "accept_wait_ms = 200\nretry_after_secs = 2\nmax_body_bytes = \"4MiB\"",
        "out.fifo",
        "queue_records_max = 2000\n\n[pipeline]\nqueue_records_max = 2000\nqueue_bytes_max = \"1MiB\"",
    );
    let batch = |i: usize| -> Vec<u8> {
        (0..1000)
            .map(|j| format!("{{\"batch\":{i},\"n\":{j}}}\n"))
            .collect::<String>()
            .into_bytes()
    };
    let mut accepted_batches = Vec::new();
    let mut refused = None;
    for i in 0..100 {
        let a = post(&r, &[], &batch(i));
        match a.status {
            200 => accepted_batches.push(i),
            503 => {
                refused = Some((i, a));
                break;
            }
            s => panic!("unexpected status {s}: {a:?}"),
        }
    }
    let (first_refused, a) = refused.expect("a blocked pipeline must refuse requests");
    assert!(
        a.headers.to_ascii_lowercase().contains("retry-after: 2"),
        "{a:?}"
    );
    assert!(a.body.contains("nothing was accepted"), "{a:?}");
    assert_eq!(curl(&[&r.url("/ready")], None).status, 503);
    // Keep pushing large bodies while blocked: all refused, memory stays bounded.
    let big: Vec<u8> = (0..30_000)
        .map(|j| format!("{{\"big\":{j},\"pad\":\"{}\"}}\n", "p".repeat(100)))
        .collect::<String>()
        .into_bytes();
    for _ in 0..30 {
        assert_eq!(post(&r, &[], &big).status, 503);
    }
    let rss = r.run.rss_bytes().unwrap();
    assert!(rss < 150 << 20, "RSS {rss} bytes while refusing requests");

    // Unblock: read the FIFO; the refused batch and the rest are accepted on retry.
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).unwrap())
    };
    for i in first_refused..first_refused + 5 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let a = post(&r, &[], &batch(i));
            if a.status == 200 {
                accepted_batches.push(i);
                break;
            }
            assert_eq!(a.status, 503, "{a:?}");
            assert!(Instant::now() < deadline, "batch {i} never accepted");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let out = r.stop();
    out.ok_stats().assert_invariant();
    let got = reader.join().unwrap();
    let want: Vec<u8> = accepted_batches.iter().flat_map(|&i| batch(i)).collect();
    common::assert_bytes_eq(&got, &want, "records read from the FIFO");
}

#[test]
fn the_example_config_runs() {
    let dir = temp_dir();
    let d = dir.path();
    let port = free_port();
    let text = std::fs::read_to_string(common::repo_root().join("configs/http.toml")).unwrap();
    assert!(text.contains("address = \"127.0.0.1:8080\""));
    let text = text.replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"));
    std::fs::write(d.join("pipeline.toml"), text).unwrap();
    let (mut run, stdin) = Running::start(d, &["run", "-c", "pipeline.toml", "--stats=json"]);
    drop(stdin);
    wait_for_port(port, &mut run.child, "edge-router", Duration::from_secs(20));
    let r = Router { run, port };
    let a = post(&r, &["X-Partition-Key: dev-7"], b"{\"t\":1}\n{\"t\":2}\n");
    assert_eq!(accepted(&a), 2);
    r.stop().ok_stats().assert_invariant();
    assert_eq!(
        std::fs::read_to_string(d.join("edge-router-out/dev-7/records.ndjson")).unwrap(),
        "{\"t\":1}\n{\"t\":2}\n"
    );
}
