//! Config validation tests: every mistake is reported, each with its line, column and key.

use super::*;
use reader::{Location, parse_size};

fn errors(text: &str) -> Vec<String> {
    match parse_str("t.toml", text) {
        Ok(_) => Vec::new(),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

fn assert_has(errs: &[String], fragment: &str) {
    assert!(
        errs.iter().any(|e| e.contains(fragment)),
        "no error contains {fragment:?}; errors:\n{}",
        errs.join("\n")
    );
}

const MINIMAL: &str =
    "[sources.in]\nkind = \"stdin\"\n[sinks.out]\nkind = \"file\"\npath = \"o.ndjson\"\n";

#[test]
fn minimal_config_and_defaults() {
    let c = parse_str("t.toml", MINIMAL).unwrap();
    assert_eq!(c.sources.len(), 1);
    assert_eq!(c.sinks[0].name, "out");
    assert_eq!(c.pipeline.default_sinks, 1);
    assert_eq!(c.pipeline.queue, DEFAULT_QUEUE);
    assert_eq!(c.pipeline.shutdown_grace, Duration::from_secs(10));
    let cpus = std::thread::available_parallelism().unwrap().get();
    assert_eq!(c.pipeline.stage_workers, cpus.min(4));
    let SourceKind::Stdin(s) = &c.sources[0].kind else {
        panic!("not stdin")
    };
    assert_eq!(s.max_record_bytes, 1 << 20);
}

#[test]
fn embedded_default_is_valid() {
    let c = parse_str("default", DEFAULT_CONFIG).unwrap();
    assert_eq!(c.sinks.len(), 1);
    assert!(c.sinks[0].kind.describe().contains("edge-router-out/"));
}

#[test]
fn every_problem_is_reported_with_position_and_key() {
    let text = r#"[pipeline]
queue_records_max = 0
default_sinks = ["nope"]

[sources.in]
kind = "stdin"
framing = "xml"
max_record_bytes = "1 parsec"

[sinks.out]
kind = "file"
path = "o/{bad}.log"
compresion = "gzip"
rotate_bytes = true
"#;
    let errs = errors(text);
    assert_eq!(errs.len(), 7, "{errs:#?}");
    assert_has(
        &errs,
        "t.toml:2:21: `pipeline.queue_records_max`: 0 is out of range; allowed: 1 to",
    );
    assert_has(
        &errs,
        "t.toml:3:18: `pipeline.default_sinks[0]`: unknown sink \"nope\"; the sinks are: out",
    );
    assert_has(
        &errs,
        "t.toml:7:11: `sources.in.framing`: unknown value \"xml\"; expected one of: lines, json",
    );
    assert_has(
        &errs,
        "t.toml:8:20: `sources.in.max_record_bytes`: unknown size unit \"parsec\"",
    );
    assert_has(
        &errs,
        "t.toml:12:8: `sinks.out.path`: invalid path template: at character 2: unknown placeholder",
    );
    assert_has(
        &errs,
        "t.toml:13:1: `sinks.out.compresion`: unknown key `compresion` (did you mean `compression`?)",
    );
    assert_has(
        &errs,
        "t.toml:14:16: `sinks.out.rotate_bytes`: expected a size",
    );
    // Sorted by position.
    assert!(errs[0].starts_with("t.toml:2:"));
}

#[test]
fn kinds_and_required_keys() {
    let errs = errors("[sources.in]\nframing = \"json\"\n[sinks.k]\nkind = \"kafka\"\n");
    assert_has(
        &errs,
        "t.toml:1:1: `sources.in`: missing required key `sources.in.kind`",
    );
    assert_has(
        &errs,
        "t.toml:4:8: `sinks.k.kind`: unknown sink kind \"kafka\"; expected one of: file, stdout, kinesis",
    );
    let errs = errors("");
    assert_has(&errs, "no sources");
    assert_has(&errs, "no sinks");
    let errs = errors("[sources.in]\nkind = \"stdin\"\n[sinks.out]\nkind = \"file\"\n");
    assert_has(&errs, "`sinks.out`: missing required key `sinks.out.path`");
}

#[test]
fn stage_errors() {
    let text = format!(
        "{MINIMAL}[[stages]]\nkind = \"filter\"\nkeep_if = {{ prefix = \"a\" }}\ndrop_if = {{ prefix = \"b\" }}\n\
         [[stages]]\nkind = \"route\"\n[[stages.rules]]\nfield = \"a..b\"\nequals = \"x\"\nsinks = [\"ghost\"]\n\
         [[stages]]\nkind = \"route\"\n[[stages.rules]]\nequals = \"x\"\nprefix = \"y\"\nsinks = [\"out\"]\n"
    );
    let errs = errors(&text);
    assert_has(
        &errs,
        "`stages[0]`: a filter needs exactly one of `keep_if` or `drop_if`",
    );
    assert_has(
        &errs,
        "t.toml:13:9: `stages[1].rules[0].field`: invalid field path",
    );
    assert_has(
        &errs,
        "`stages[1].rules[0].sinks[0]`: unknown sink \"ghost\"",
    );
    assert_has(
        &errs,
        "`stages[2].rules[0]`: a condition needs exactly one of",
    );
}

#[test]
fn route_masks_resolve_in_sink_order() {
    let text = r#"
[sources.in]
kind = "stdin"
[sinks.a]
kind = "stdout"
[sinks.b]
kind = "file"
path = "b.log"
[pipeline]
default_sinks = ["b"]
[[stages]]
kind = "route"
[[stages.rules]]
field = "level"
in = ["error", "fatal"]
sinks = ["a", "b"]
"#;
    let c = parse_str("t.toml", text).unwrap();
    assert_eq!(c.pipeline.default_sinks, 0b10);
    let StageKind::Route(r) = &c.stages[0].kind else {
        panic!("expected a route stage")
    };
    assert_eq!(r.rules[0].mask, 0b11);
    assert_eq!(r.default_mask, 0b10);
}

#[test]
fn syntax_error_has_position() {
    let errs = errors("[sinks\nx = 1\n");
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].starts_with("t.toml:1:7: TOML syntax error"),
        "{}",
        errs[0]
    );
}

#[test]
fn quick_mode_uses_the_same_validation() {
    let c = from_quick(
        Some("stdin?framing=json&max_record_bytes=2KiB"),
        &[],
        &[
            "file:out/{partition_key}.ndjson?partition=field:device_id&compression=zstd".into(),
            "stdout".into(),
        ],
        Some("dl.ndjson"),
    )
    .unwrap();
    let SourceKind::Stdin(s) = &c.sources[0].kind else {
        panic!("not stdin")
    };
    assert_eq!(s.max_record_bytes, 2048);
    assert_eq!(c.sinks.len(), 2);
    assert_eq!(c.pipeline.default_sinks, 0b11);
    let SinkKind::File(f) = &c.sinks[0].kind else {
        panic!("expected a file sink")
    };
    assert_eq!(f.compression, crate::sinks::file::Compression::Zstd(3));

    let e = from_quick(
        None,
        &[],
        &["file:x?rotate_bytes=-1&fsync=sometimes".into()],
        None,
    )
    .unwrap_err();
    let msgs: Vec<String> = e.0.iter().map(ToString::to_string).collect();
    assert_has(
        &msgs,
        "--sink \"file:x?rotate_bytes=-1&fsync=sometimes\": `sinks.file.rotate_bytes`",
    );
    assert_has(&msgs, "`sinks.file.fsync`: unknown value \"sometimes\"");
    assert!(matches!(e.0[0].location, Location::Arg(_)));

    let e = from_quick(None, &[], &[], None).unwrap_err();
    assert!(e.to_string().contains("at least one --sink"));
    // Two sinks of one kind get distinct names.
    let c = from_quick(None, &[], &["file:a".into(), "file:b".into()], None).unwrap();
    assert_eq!(c.sinks[1].name, "file-2");
}

#[test]
fn quick_mode_stages() {
    let stages = [
        QuickStage {
            spec: "filter=f.wasm".into(),
            config: Some(r#"{"condition":"a > 1"}"#.into()),
        },
        QuickStage {
            spec: "enrich=e.wasm".into(),
            config: None,
        },
    ];
    let c = from_quick(None, &stages, &["stdout".into()], None).unwrap();
    assert_eq!(c.stages.len(), 2);
    let StageKind::Wasm(w) = &c.stages[0].kind else {
        panic!("expected a plugin stage")
    };
    assert_eq!(w.config_json, r#"{"condition":"a > 1"}"#);
    assert_eq!(w.plugin, std::path::PathBuf::from("f.wasm"));
    let bad = [QuickStage {
        spec: "filter=f.wasm".into(),
        config: Some("{nope".into()),
    }];
    let e = from_quick(None, &bad, &["stdout".into()], None).unwrap_err();
    assert!(e.to_string().contains("config is not valid JSON"), "{e}");
    let bad = [QuickStage {
        spec: "f.wasm".into(),
        config: None,
    }];
    let e = from_quick(None, &bad, &["stdout".into()], None).unwrap_err();
    assert!(e.to_string().contains("expected KIND=PLUGIN"), "{e}");
}

#[test]
fn sizes() {
    assert_eq!(parse_size("64KiB"), Ok(65536));
    assert_eq!(parse_size("16 MiB"), Ok(16 << 20));
    assert_eq!(parse_size("1GB"), Ok(1_000_000_000));
    assert_eq!(parse_size("1_024"), Ok(1024));
    assert!(parse_size("lots").is_err());
    assert!(parse_size("99999999999999999999").is_err());
    assert!(parse_size("18446744073709551615GiB").is_err());
}

#[test]
fn stage_workers_is_read_and_range_checked() {
    let c = parse_str(
        "t.toml",
        &format!("[pipeline]\nstage_workers = 3\n{MINIMAL}"),
    )
    .unwrap();
    assert_eq!(c.pipeline.stage_workers, 3);
    let c = parse_str(
        "t.toml",
        &format!("[pipeline]\nstage_workers = 64\n{MINIMAL}"),
    )
    .unwrap();
    assert_eq!(c.pipeline.stage_workers, 64);
    for bad in ["0", "65", "\"2\"", "-1"] {
        let errs = errors(&format!("[pipeline]\nstage_workers = {bad}\n{MINIMAL}"));
        assert_has(&errs, "t.toml:2:17: `pipeline.stage_workers`");
    }
    assert_has(
        &errors(&format!("[pipeline]\nstage_workers = 0\n{MINIMAL}")),
        "0 is out of range; allowed: 1 to 64",
    );
}

#[test]
fn http_sources_are_validated() {
    let sink = "[sinks.out]\nkind = \"file\"\npath = \"o.ndjson\"\n";
    let errs = errors(&format!(
        "[sources.web]\nkind = \"http\"\naddress = \"localhost\"\ntls_cert = \"c.pem\"\n\
         auth_token = \"t\"\naws_api = true\nformat = \"xml\"\n{sink}"
    ));
    assert_has(
        &errs,
        "t.toml:3:11: `sources.web.address`: \"localhost\" is not an address",
    );
    assert_has(&errs, "`sources.web.tls_cert`: tls_cert needs tls_key");
    assert_has(&errs, "also set aws_credentials");
    assert_has(&errs, "`sources.web.format`: unknown value \"xml\"");
    let errs = errors(&format!("[sources.web]\nkind = \"http\"\n{sink}"));
    assert_has(&errs, "missing required key `sources.web.address`");
    // A stdin source and an HTTP source may run together; two stdins may not.
    let both = format!(
        "[sources.in]\nkind = \"stdin\"\n[sources.web]\nkind = \"http\"\naddress = \"127.0.0.1:0\"\n{sink}"
    );
    let c = parse_str("t.toml", &both).unwrap();
    assert_eq!(c.sources.len(), 2);
    assert!(c.sources[1].kind.is_network());
    let two = format!("[sources.a]\nkind = \"stdin\"\n[sources.b]\nkind = \"stdin\"\n{sink}");
    assert_has(&errors(&two), "only one stdin source is possible");
}

#[test]
fn aws_api_settings_are_validated() {
    use crate::sources::http::aws_api::config::AwsAuth;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "s3cr3t\n").unwrap();
    let sink = "[sinks.out]\nkind = \"file\"\npath = \"o.ndjson\"\n";
    let http = |address: &str, rest: &str| {
        format!(
            "[sources.web]\nkind = \"http\"\naddress = \"{address}\"\naws_api = true\n{rest}\n{sink}"
        )
    };
    let aws_of = |text: &str| {
        let c = parse_str("t.toml", text).unwrap();
        match &c.sources[0].kind {
            SourceKind::Http(h) => h.aws.clone(),
            other => panic!("{other:?}"),
        }
    };
    // Loopback without credentials: open (a well-formed, current signature with any key).
    let a = aws_of(&http("127.0.0.1:8080", ""));
    assert_eq!(a.auth, AwsAuth::Open { explicit: false });
    assert_eq!((a.shards, a.deaggregate, a.streams), (1024, true, None));
    // Anywhere else it needs credentials or an explicit choice.
    let errs = errors(&http("0.0.0.0:8080", ""));
    assert_has(
        &errs,
        "t.toml:4:11: `sources.web.aws_api`: the AWS API on a non-loopback address",
    );
    assert_has(&errs, "aws_auth = \"none\"");
    let a = aws_of(&http("0.0.0.0:8080", "aws_auth = \"none\""));
    assert_eq!(a.auth, AwsAuth::Open { explicit: true });
    let creds = format!(
        "aws_credentials = [{{ access_key_id = \"AKID1\", secret_file = \"{}\" }}]\n\
         aws_streams = [\"a\", \"b.c\"]\naws_shards = 7\naws_deaggregate = false",
        secret.display()
    );
    let a = aws_of(&http("0.0.0.0:8080", &creds));
    let AwsAuth::SigV4(list) = &a.auth else {
        panic!("{:?}", a.auth)
    };
    assert_eq!(list[0].access_key_id, "AKID1");
    assert_eq!(
        list[0].secret,
        crate::sources::http::aws_api::sigv4::Secret::new("s3cr3t".into())
    );
    assert!(
        !format!("{a:?}").contains("s3cr3t"),
        "the secret is printed: {a:?}"
    );
    assert_eq!((a.shards, a.deaggregate), (7, false));
    assert_eq!(a.streams, Some(vec!["a".to_owned(), "b.c".to_owned()]));
    let errs = errors(&http(
        "127.0.0.1:1",
        "aws_credentials = [\n  { access_key_id = \"K\", secret_file = \"/nonexistent/secret\" },\n  \
         { access_key_id = \"K2\", secret_access_key = \"inline\" },\n  \
         { access_key_id = \"K3\", secret_file = \"f\", secret_env = \"E\" },\n  \
         { access_key_id = \"K4\", secret_env = \"EDGE_ROUTER_TEST_SURELY_UNSET_VARIABLE\" },\n]\n\
         aws_access_key_ids = [\"K\"]\naws_streams = [\"a b\"]\naws_shards = 0\naws_auth = \"maybe\"",
    ));
    assert_has(
        &errs,
        "t.toml:6:40: `sources.web.aws_credentials[0].secret_file`: cannot read /nonexistent/secret",
    );
    assert_has(
        &errs,
        "`sources.web.aws_credentials[1].secret_access_key`: secrets are not written in the config",
    );
    assert_has(
        &errs,
        "`sources.web.aws_credentials[2].secret_file`: give secret_file or secret_env, not both",
    );
    assert_has(&errs, "EDGE_ROUTER_TEST_SURELY_UNSET_VARIABLE is not set");
    assert_has(
        &errs,
        "`sources.web.aws_access_key_ids`: aws_access_key_ids was replaced by aws_credentials",
    );
    assert_has(
        &errs,
        "`sources.web.aws_streams[0]`: \"a b\" is not a stream name",
    );
    assert_has(&errs, "`sources.web.aws_shards`: 0 is out of range");
    assert_has(&errs, "`sources.web.aws_auth`: unknown aws_auth \"maybe\"");
    assert_has(
        &errors(&http("127.0.0.1:1", "aws_credentials = []")),
        "lists no credential",
    );
    assert_has(
        &errors(&http(
            "127.0.0.1:1",
            "aws_auth = \"none\"\naws_credentials = []",
        )),
        "contradict",
    );
    let off = format!(
        "[sources.web]\nkind = \"http\"\naddress = \"127.0.0.1:1\"\naws_shards = 4\n{sink}"
    );
    assert_has(
        &errors(&off),
        "aws_shards has no effect without aws_api = true",
    );
}

#[test]
fn quick_mode_http_sources() {
    let sinks = ["stdout".to_owned()];
    let c = from_quick(
        Some("http://127.0.0.1:8080?auth_token=abc&max_body_bytes=1MiB"),
        &[],
        &sinks,
        None,
    )
    .unwrap();
    let SourceKind::Http(h) = &c.sources[0].kind else {
        panic!("not http")
    };
    assert_eq!(h.address.port(), 8080);
    assert_eq!(h.auth_token.as_deref(), Some("abc"));
    assert_eq!(h.max_body_bytes, 1 << 20);
    assert!(h.tls.is_none());
    let c = from_quick(
        Some("https://0.0.0.0:8443?tls_cert=c.pem&tls_key=k.pem"),
        &[],
        &sinks,
        None,
    )
    .unwrap();
    let SourceKind::Http(h) = &c.sources[0].kind else {
        panic!("not http")
    };
    assert_eq!(
        h.tls.as_ref().unwrap().cert,
        std::path::PathBuf::from("c.pem")
    );
    let e = from_quick(Some("https://0.0.0.0:8443"), &[], &sinks, None).unwrap_err();
    assert!(e.to_string().contains("tls_cert"), "{e}");
    let e = from_quick(Some("http://"), &[], &sinks, None).unwrap_err();
    assert!(e.to_string().contains("needs an address"), "{e}");
    let e = from_quick(Some("http://1.2.3.4:5?address=x"), &[], &sinks, None).unwrap_err();
    assert!(e.to_string().contains("given by the URI itself"), "{e}");
}

#[test]
fn quic_sources_are_validated() {
    let sink = "[sinks.out]\nkind = \"file\"\npath = \"o.ndjson\"\n";
    let errs = errors(&format!(
        "[sources.q]\nkind = \"quic\"\naddress = \"127.0.0.1:4433\"\n{sink}"
    ));
    assert_has(&errs, "QUIC always uses TLS");
    let errs = errors(&format!(
        "[sources.q]\nkind = \"quic\"\naddress = \"127.0.0.1:4433\"\nself_signed = true\n\
         tls_cert = \"c.pem\"\nmax_streams = 0\n{sink}"
    ));
    assert_has(
        &errs,
        "give either tls_cert + tls_key or self_signed = true",
    );
    assert_has(&errs, "`sources.q.max_streams`: 0 is out of range");
    let sinks = ["stdout".to_owned()];
    let c = from_quick(
        Some("quic://127.0.0.1:4433?self_signed=true&auth_token=x"),
        &[],
        &sinks,
        None,
    )
    .unwrap();
    let SourceKind::Quic(q) = &c.sources[0].kind else {
        panic!("not quic")
    };
    assert_eq!(
        q.certificate,
        crate::sources::quic::config::Certificate::SelfSigned
    );
    assert_eq!(q.auth_token.as_deref(), Some("x"));
    assert_eq!(q.max_streams, 64);
}

#[test]
fn network_limits_have_safe_defaults_and_are_checked() {
    let sink = "[sinks.out]\nkind = \"file\"\npath = \"o.ndjson\"\n";
    let c = parse_str(
        "t.toml",
        &format!(
            "[sources.web]\nkind = \"http\"\naddress = \"127.0.0.1:1\"\n\
             [sources.q]\nkind = \"quic\"\naddress = \"127.0.0.1:2\"\nself_signed = true\n\
             [metrics]\naddress = \"127.0.0.1:3\"\n{sink}"
        ),
    )
    .unwrap();
    let SourceKind::Http(h) = &c.sources[0].kind else {
        panic!("not http")
    };
    let s = Duration::from_secs;
    assert_eq!(
        (h.max_connections, h.max_connections_per_peer, h.max_streams),
        (512, 64, 8)
    );
    assert_eq!(h.max_header_bytes, 16 << 10);
    assert_eq!(
        (h.max_inflight_bytes, h.max_inflight_bytes_per_peer),
        (128 << 20, 64 << 20)
    );
    assert_eq!(
        (
            h.handshake_timeout,
            h.header_timeout,
            h.idle_timeout,
            h.body_timeout
        ),
        (s(10), s(10), s(30), s(10))
    );
    assert_eq!(h.body_min_bytes_per_sec, 8 << 10);
    let SourceKind::Quic(q) = &c.sources[1].kind else {
        panic!("not quic")
    };
    assert_eq!(
        (
            q.max_connections,
            q.max_connections_per_peer,
            q.max_unauthenticated
        ),
        (256, 64, 64)
    );
    assert_eq!(
        (q.handshake_timeout, q.hello_timeout, q.batch_timeout),
        (s(10), s(5), s(10))
    );
    let m = c.metrics.as_ref().unwrap();
    assert_eq!((m.max_connections, m.reload_token.as_deref()), (16, None));

    let errs = errors(&format!(
        "[sources.web]\nkind = \"http\"\naddress = \"127.0.0.1:1\"\nheader_timeout_ms = 0\n\
         max_inflight_bytes = \"32MiB\"\nmax_streams = 0\n\
         [sources.q]\nkind = \"quic\"\naddress = \"127.0.0.1:2\"\nself_signed = true\n\
         max_inflight_bytes_per_peer = \"1GiB\"\nhello_timeout_ms = 10\n\
         [metrics]\naddress = \"127.0.0.1:3\"\nreload_token = \"\"\n{sink}"
    ));
    assert_has(
        &errs,
        "t.toml:4:21: `sources.web.header_timeout_ms`: 0 is out of range",
    );
    assert_has(&errs, "`sources.web.max_streams`: 0 is out of range");
    // The default share (half of 32 MiB) cannot hold one 16 MiB body decompressed and parsed.
    assert_has(
        &errs,
        "`sources.web.max_inflight_bytes_per_peer`: max_inflight_bytes_per_peer (16777216; \
         default: half of max_inflight_bytes) must be at least 4 x max_body_bytes",
    );
    assert_has(
        &errs,
        "`sources.q.max_inflight_bytes_per_peer`: max_inflight_bytes_per_peer (1073741824) is \
         more than max_inflight_bytes",
    );
    assert_has(&errs, "`sources.q.hello_timeout_ms`: 10 is out of range");
    assert_has(
        &errs,
        "`metrics.reload_token`: reload_token must not be empty",
    );
}

#[test]
fn a_file_source_reads_its_keys_and_reports_each_mistake_with_position_and_key() {
    let c = parse_str(
        "t.toml",
        r#"[sources.logs]
kind = "file"
include = ["/var/log/app/**/*.log"]
exclude = ["*.old"]
start_at = "beginning"
checkpoint_dir = "/var/lib/edge-router/logs"
framing = "json"
max_record_bytes = "64KiB"
rotate_wait_ms = 1000
partial_line_timeout_ms = 2000
rescan_interval_ms = 250
max_open_files = 16
ack = "delivered"
[sources.logs.multiline]
start_pattern = '^\d{4}-'
max_lines = 50
max_bytes = "256KiB"
timeout_ms = 500
[sinks.out]
kind = "file"
path = "o.ndjson"
"#,
    )
    .unwrap();
    let SourceKind::File(f) = &c.sources[0].kind else {
        panic!("not a file source")
    };
    assert_eq!(f.include, ["/var/log/app/**/*.log"]);
    assert_eq!(f.exclude, ["*.old"]);
    assert_eq!(f.start_at, crate::sources::file::config::StartAt::Beginning);
    assert_eq!(f.max_record_bytes, 64 << 10);
    assert_eq!(f.rescan_interval, Duration::from_millis(250));
    assert_eq!(f.max_open_files, 16);
    assert_eq!(f.ack, crate::sources::AckMode::Delivered);
    let m = f.multiline.as_ref().unwrap();
    assert_eq!((m.max_lines, m.max_bytes), (50, 256 << 10));
    assert!(!c.sources[0].kind.is_network());

    // Defaults: compressed files excluded, start at the end, checkpoints under the working dir.
    let c = parse_str(
        "t.toml",
        "[sources.logs]\nkind = \"file\"\ninclude = [\"*.log\"]\n[sinks.out]\nkind = \"file\"\npath = \"o\"\n",
    )
    .unwrap();
    let SourceKind::File(f) = &c.sources[0].kind else {
        panic!("not a file source")
    };
    assert_eq!(f.exclude, ["*.gz", "*.zip", "*.bz2", "*.xz", "*.zst"]);
    assert_eq!(f.start_at, crate::sources::file::config::StartAt::End);
    assert_eq!(
        f.checkpoint_dir,
        std::path::PathBuf::from("edge-router-state/checkpoints")
    );

    let errs = errors(
        r#"[sources.logs]
kind = "file"
include = ["/var/log/[app.log"]
start_at = "middle"
rescan_interval_ms = 0
[sources.logs.multiline]
start_pattern = "(unclosed"
[sources.none]
kind = "file"
[sinks.out]
kind = "file"
path = "o.ndjson"
"#,
    );
    assert_has(
        &errs,
        "t.toml:3:12: `sources.logs.include[0]`: \"/var/log/[app.log\" is not a glob pattern",
    );
    assert_has(
        &errs,
        "t.toml:4:12: `sources.logs.start_at`: unknown value \"middle\"; expected one of: end, beginning",
    );
    assert_has(
        &errs,
        "t.toml:5:22: `sources.logs.rescan_interval_ms`: 0 is out of range",
    );
    assert_has(
        &errs,
        "t.toml:7:17: `sources.logs.multiline.start_pattern`: not a usable regular expression",
    );
    assert_has(&errs, "missing required key `sources.none.include`");
}
