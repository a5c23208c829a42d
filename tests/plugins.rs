//! WebAssembly stages, end to end: the example plugins built from source by `plugins/build.sh`
//! (which `tests/run.sh` runs first) go through the real binary, and hostile plugins (traps,
//! endless loops, unbounded allocation, wrong or broken files) are contained without losing or
//! duplicating a record.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::{Input, Output, dead_letters, lines, plugin, read, run_in, temp_dir};

/// Runs the router with a config made of one plugin stage (`stage` is the body of the
/// `[[stages]]` table) between stdin and `out.ndjson`, dead letters in `dl.ndjson`.
fn run_stage(dir: &Path, stage: &str, extra: &str, input: &[u8]) -> Output {
    let config = format!(
        "[sources.in]\nkind = \"stdin\"\n\n[[stages]]\nname = \"p\"\n{stage}\n\n{extra}\n\
         [dead_letter]\npath = \"dl.ndjson\"\n"
    );
    let config = if extra.contains("[sinks.") {
        config
    } else {
        format!("{config}\n[sinks.out]\nkind = \"file\"\npath = \"out.ndjson\"\n")
    };
    std::fs::write(dir.join("edge-router.toml"), config).unwrap();
    run_in(
        dir,
        &["run", "-c", "edge-router.toml", "--stats=json"],
        Input::Bytes(input),
    )
}

fn toml_path(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
}

/// `{"seq":N,...}` records for N in 1..=n; record N is on line N.
fn seq_records(n: u64, marker: impl Fn(u64) -> bool, mark: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 1..=n {
        let extra = if marker(i) { mark } else { "" };
        out.extend_from_slice(format!("{{\"seq\":{i},\"v\":\"x{extra}\"}}\n").as_bytes());
    }
    out
}

fn keep_lines(input: &[u8], keep: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let mut out = Vec::new();
    for l in lines(input) {
        if keep(l) {
            out.extend_from_slice(l);
            out.push(b'\n');
        }
    }
    out
}

#[test]
fn a_noop_filter_passes_every_record_unchanged() {
    let dir = temp_dir();
    let input = common::sensor(100_000);
    let stage = format!(
        "kind = \"filter\"\nplugin = {}",
        toml_path(&plugin("noop-filter"))
    );
    let out = run_stage(dir.path(), &stage, "", &input);
    let stats = out.ok_stats();
    assert_eq!(read(&dir.path().join("out.ndjson")), input);
    assert_eq!(stats.component("stages.p")["records_in"], 100_000);
    assert_eq!(stats.component("stages.p")["records_out"], 100_000);
}

#[test]
fn json_filter_keeps_exactly_the_matching_records() {
    let dir = temp_dir();
    let input = common::sensor(50_000);
    let stage = format!(
        "kind = \"filter\"\nplugin = {}\nconfig = {{ condition = 'temperature <= 80 and site != \"plant-3\"' }}",
        toml_path(&plugin("json-filter"))
    );
    let out = run_stage(dir.path(), &stage, "", &input);
    let stats = out.ok_stats();
    let expected = keep_lines(&input, |l| {
        let v: serde_json::Value = serde_json::from_slice(l).unwrap();
        v["temperature"].as_f64().unwrap() <= 80.0 && v["site"] != "plant-3"
    });
    let got = read(&dir.path().join("out.ndjson"));
    assert!(!expected.is_empty() && expected.len() < input.len());
    assert_eq!(got, expected);
    assert_eq!(
        stats.dropped(),
        lines(&input).len() as u64 - lines(&expected).len() as u64
    );
}

#[test]
fn a_config_the_plugin_rejects_stops_start_up_naming_the_stage() {
    let dir = temp_dir();
    let stage = format!(
        "kind = \"filter\"\nplugin = {}\nconfig = {{ condition = \"temperature <=\" }}",
        toml_path(&plugin("json-filter"))
    );
    let out = run_stage(dir.path(), &stage, "", b"{}\n");
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("stage `p`") && out.stderr.contains("rejected its config"),
        "{}",
        out.stderr
    );
    assert!(!dir.path().join("out.ndjson").exists());
}

#[test]
fn a_plugin_that_traps_on_some_records_loses_only_those_to_the_dead_letter_file() {
    let dir = temp_dir();
    let input = seq_records(5_000, |_| false, "");
    let stage = format!(
        "kind = \"filter\"\nplugin = {}\nbatch_records_max = 256",
        toml_path(&plugin("trap-every-1000th"))
    );
    let out = run_stage(dir.path(), &stage, "", &input);
    let stats = out.ok_stats();
    let expected = keep_lines(&input, |l| {
        let v: serde_json::Value = serde_json::from_slice(l).unwrap();
        !v["seq"].as_u64().unwrap().is_multiple_of(1000)
    });
    assert_eq!(read(&dir.path().join("out.ndjson")), expected);
    let dl = dead_letters(&dir.path().join("dl.ndjson"));
    let mut lines_dl: Vec<u64> = dl.iter().map(|d| d.line.unwrap()).collect();
    // With several stage workers, dead letters are written as the workers find them.
    lines_dl.sort_unstable();
    assert_eq!(lines_dl, vec![1000, 2000, 3000, 4000, 5000]);
    for d in &dl {
        assert!(
            d.reason.contains("stage `p`: the plugin trapped"),
            "{}",
            d.reason
        );
        let n = d.line.unwrap();
        assert_eq!(
            d.payload,
            format!("{{\"seq\":{n},\"v\":\"x\"}}").into_bytes()
        );
    }
    assert!(
        stats.component("stages.p")["plugin_traps"]
            .as_u64()
            .unwrap()
            >= 5
    );
}

#[test]
fn on_error_drop_pass_and_fail() {
    let input = seq_records(3_000, |_| false, "");
    let trap = toml_path(&plugin("trap-every-1000th"));

    let dir = temp_dir();
    let out = run_stage(
        dir.path(),
        &format!("kind = \"filter\"\nplugin = {trap}\non_error = \"drop\""),
        "",
        &input,
    );
    let stats = out.ok_stats();
    assert_eq!(stats.dropped(), 3);
    assert_eq!(stats.dead_lettered(), 0);
    assert_eq!(common::count_lines(&dir.path().join("out.ndjson")), 2_997);

    let dir = temp_dir();
    let out = run_stage(
        dir.path(),
        &format!("kind = \"filter\"\nplugin = {trap}\non_error = \"pass\""),
        "",
        &input,
    );
    out.ok_stats();
    assert_eq!(read(&dir.path().join("out.ndjson")), input);

    let dir = temp_dir();
    let out = run_stage(
        dir.path(),
        &format!("kind = \"filter\"\nplugin = {trap}\non_error = \"fail\""),
        "",
        &input,
    );
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("stage `p` (on_error = \"fail\")"),
        "{}",
        out.stderr
    );
    let stats = out.stats();
    stats.assert_invariant();
    assert_eq!(stats.read(), 3_000);
}

#[test]
fn an_endless_loop_is_stopped_at_the_deadline_and_the_router_goes_on() {
    let dir = temp_dir();
    let input = seq_records(300, |i| i == 150, " LOOP");
    let stage = format!(
        "kind = \"filter\"\nplugin = {}\ntimeout_ms = 50",
        toml_path(&plugin("loop-forever"))
    );
    let out = run_stage(dir.path(), &stage, "", &input);
    let stats = out.ok_stats();
    let expected = keep_lines(&input, |l| !l.windows(4).any(|w| w == b"LOOP"));
    assert_eq!(read(&dir.path().join("out.ndjson")), expected);
    let dl = dead_letters(&dir.path().join("dl.ndjson"));
    assert_eq!(dl.len(), 1);
    assert_eq!(dl[0].line, Some(150));
    assert!(
        dl[0].reason.contains("ran longer than 50 ms"),
        "{}",
        dl[0].reason
    );
    assert!(
        stats.component("stages.p")["plugin_timeouts"]
            .as_u64()
            .unwrap()
            >= 1
    );
}

#[test]
fn unbounded_allocation_is_capped() {
    let dir = temp_dir();
    let input = seq_records(500, |i| i == 7, " ALLOC");
    let stage = format!(
        "kind = \"filter\"\nplugin = {}\nmemory_max_bytes = \"16MiB\"\nbatch_bytes_max = \"1MiB\"",
        toml_path(&plugin("alloc-forever"))
    );
    let out = run_stage(dir.path(), &stage, "", &input);
    let stats = out.ok_stats();
    assert_eq!(common::count_lines(&dir.path().join("out.ndjson")), 499);
    let dl = dead_letters(&dir.path().join("dl.ndjson"));
    assert_eq!(dl.len(), 1);
    assert_eq!(dl[0].line, Some(7));
    assert!(
        dl[0].reason.contains("more than 16777216 bytes of memory"),
        "{}",
        dl[0].reason
    );
    assert!(
        stats.component("stages.p")["plugin_memory_limit_hits"]
            .as_u64()
            .unwrap()
            >= 1
    );
}

#[test]
fn wrong_world_core_module_and_corrupt_files_are_clear_start_up_errors() {
    let dir = temp_dir();
    let d = dir.path();
    // A route plugin where a filter is expected.
    let stage = format!(
        "kind = \"filter\"\nplugin = {}",
        toml_path(&plugin("route-by-field"))
    );
    let out = run_stage(d, &stage, "", b"{}\n");
    assert_eq!(out.code(), 1);
    assert!(
        out.stderr.contains("does not implement the `filter` world"),
        "{}",
        out.stderr
    );

    // The smallest core module.
    std::fs::write(d.join("core.wasm"), b"\0asm\x01\0\0\0").unwrap();
    let out = run_stage(d, "kind = \"filter\"\nplugin = \"core.wasm\"", "", b"{}\n");
    assert_eq!(out.code(), 1);
    assert!(
        out.stderr
            .contains("core.wasm is a core WebAssembly module, not a component"),
        "{}",
        out.stderr
    );

    // Half a component.
    let whole = read(&plugin("noop-filter"));
    std::fs::write(d.join("half.wasm"), &whole[..whole.len() / 2]).unwrap();
    let out = run_stage(d, "kind = \"filter\"\nplugin = \"half.wasm\"", "", b"{}\n");
    assert_eq!(out.code(), 1);
    assert!(
        out.stderr
            .contains("half.wasm is not a valid WebAssembly component"),
        "{}",
        out.stderr
    );

    std::fs::write(d.join("text.wasm"), b"hello").unwrap();
    let out = run_stage(d, "kind = \"filter\"\nplugin = \"text.wasm\"", "", b"{}\n");
    assert_eq!(out.code(), 1);
    assert!(
        out.stderr.contains("not a WebAssembly file"),
        "{}",
        out.stderr
    );

    let out = run_stage(
        d,
        "kind = \"filter\"\nplugin = \"missing.wasm\"",
        "",
        b"{}\n",
    );
    assert_eq!(out.code(), 1);
    assert!(
        out.stderr.contains("cannot read plugin missing.wasm"),
        "{}",
        out.stderr
    );
}

#[test]
fn route_by_field_sends_records_to_the_named_sinks() {
    let dir = temp_dir();
    let input = common::sensor(20_000);
    let stage = format!(
        "kind = \"route\"\nplugin = {}\nconfig = {{ field = \"site\", routes = {{ \"plant-1\" = \"a\", \"plant-2\" = \"b\" }} }}",
        toml_path(&plugin("route-by-field"))
    );
    let sinks = "[pipeline]\ndefault_sinks = [\"rest\"]\n\n\
                 [sinks.a]\nkind = \"file\"\npath = \"a.ndjson\"\n\
                 [sinks.b]\nkind = \"file\"\npath = \"b.ndjson\"\n\
                 [sinks.rest]\nkind = \"file\"\npath = \"rest.ndjson\"\n";
    let out = run_stage(dir.path(), &stage, sinks, &input);
    out.ok_stats();
    let site = |l: &[u8]| {
        let v: serde_json::Value = serde_json::from_slice(l).unwrap();
        v["site"].as_str().unwrap().to_owned()
    };
    assert_eq!(
        read(&dir.path().join("a.ndjson")),
        keep_lines(&input, |l| site(l) == "plant-1")
    );
    assert_eq!(
        read(&dir.path().join("b.ndjson")),
        keep_lines(&input, |l| site(l) == "plant-2")
    );
    assert_eq!(
        read(&dir.path().join("rest.ndjson")),
        keep_lines(&input, |l| site(l) != "plant-1" && site(l) != "plant-2")
    );

    // A destination that is not a sink stops start-up.
    let dir = temp_dir();
    let stage = format!(
        "kind = \"route\"\nplugin = {}\nconfig = {{ field = \"site\", routes = {{ \"plant-1\" = \"nowhere\" }} }}",
        toml_path(&plugin("route-by-field"))
    );
    let out = run_stage(dir.path(), &stage, "", b"{}\n");
    assert_eq!(out.code(), 1);
    assert!(
        out.stderr.contains("destination \"nowhere\" is not a sink"),
        "{}",
        out.stderr
    );
}

#[test]
fn enrich_lookup_adds_fields_from_its_table() {
    let dir = temp_dir();
    let input = b"{\"device_id\":17,\"t\":1}\n{\"device_id\":18}\n{\"device_id\":99,\"t\":3}\n";
    let stage = format!(
        "kind = \"enrich\"\nplugin = {}\nconfig = {{ key = \"device_id\", table = {{ \"17\" = {{ site = \"plant-3\" }}, \"18\" = {{ site = \"plant-4\", owner = \"ops\" }} }} }}",
        toml_path(&plugin("enrich-lookup"))
    );
    let out = run_stage(dir.path(), &stage, "", input);
    out.ok_stats();
    let got = read(&dir.path().join("out.ndjson"));
    let recs: Vec<serde_json::Value> = lines(&got)
        .into_iter()
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(recs.len(), 3);
    assert_eq!(recs[0]["site"], "plant-3");
    assert_eq!(recs[0]["t"], 1);
    assert_eq!(recs[1]["owner"], "ops");
    assert_eq!(recs[2]["device_id"], 99);
    assert!(recs[2].get("site").is_none());
}

#[test]
fn plugin_check_and_plugin_run() {
    let dir = temp_dir();
    let out = run_in(
        dir.path(),
        &["plugin", "check", plugin("json-filter").to_str().unwrap()],
        Input::Null,
    );
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("implementing `filter` of edge-router:plugin@0.1.0"),
        "{text}"
    );
    assert!(text.contains("exports: init, filter"), "{text}");

    std::fs::write(dir.path().join("core.wasm"), b"\0asm\x01\0\0\0").unwrap();
    let out = run_in(dir.path(), &["plugin", "check", "core.wasm"], Input::Null);
    assert_eq!(out.code(), 1);
    assert!(
        out.stderr.contains("is a core WebAssembly module"),
        "{}",
        out.stderr
    );

    let input = b"{\"temperature\":70}\n{\"temperature\":90}\n{\"temperature\":80}\n";
    let out = run_in(
        dir.path(),
        &[
            "plugin",
            "run",
            plugin("json-filter").to_str().unwrap(),
            "--config",
            r#"{"condition":"temperature <= 80"}"#,
        ],
        Input::Bytes(input),
    );
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(out.stdout, b"{\"temperature\":70}\n{\"temperature\":80}\n");
}

#[test]
fn quick_mode_takes_plugin_stages_with_their_configs() {
    let dir = temp_dir();
    let input = common::sensor(5_000);
    let filter = plugin("json-filter");
    let noop = plugin("noop-filter");
    let out = run_in(
        dir.path(),
        &[
            "run",
            "--stage",
            &format!("filter={}", noop.display()),
            "--stage",
            &format!("filter={}", filter.display()),
            "--stage-config",
            r#"{"condition":"humidity > 50"}"#,
            "--sink",
            "file:out.ndjson",
            "--stats=json",
        ],
        Input::Bytes(&input),
    );
    out.ok_stats();
    let expected = keep_lines(&input, |l| {
        let v: serde_json::Value = serde_json::from_slice(l).unwrap();
        v["humidity"].as_u64().unwrap() > 50
    });
    assert_eq!(read(&dir.path().join("out.ndjson")), expected);

    let out = run_in(
        dir.path(),
        &[
            "run",
            "--stage-config",
            "{}",
            "--stage",
            "filter=x.wasm",
            "--sink",
            "stdout",
        ],
        Input::Null,
    );
    assert_eq!(out.code(), 2);
    assert!(
        out.stderr.contains("must follow the --stage it configures"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_python_plugin_redacts_e_mail_and_ipv4_addresses() {
    let dir = temp_dir();
    let input = b"{\"user\":\"ann@example.com\",\"from\":\"10.1.2.3\"}\n\
                  plain text, nothing to hide\n\
                  mail bob.smith+x@mail.example.org from 192.168.0.255 and 999.1.1.1\n";
    let stage = format!(
        "kind = \"enrich\"\nplugin = {}",
        toml_path(&plugin("pii-redact"))
    );
    let out = run_stage(dir.path(), &stage, "", input);
    out.ok_stats();
    assert_eq!(
        read(&dir.path().join("out.ndjson")),
        b"{\"user\":\"<email>\",\"from\":\"x.x.x.x\"}\n\
          plain text, nothing to hide\n\
          mail <email> from x.x.x.x and 999.1.1.1\n"
    );
}

/// The JavaScript twin of the Python plugin (componentize-js). One test for all its runs: the
/// first compiles the 12 MB component (seconds), the others start from the compile cache.
#[test]
fn a_javascript_plugin_redacts_like_the_python_one_and_rejects_a_bad_config() {
    let dir = temp_dir();
    let js = plugin("pii-redact-js");
    let stage = format!("kind = \"enrich\"\nplugin = {}", toml_path(&js));

    // The Python test's records, one that is not UTF-8 (kept byte for byte around the match),
    // then enough records for batches beyond the plugin's 8 KiB decoding chunks.
    let mut input = b"{\"user\":\"ann@example.com\",\"from\":\"10.1.2.3\"}\n\
                      plain text, nothing to hide\n\
                      mail bob.smith+x@mail.example.org from 192.168.0.255 and 999.1.1.1\n\
                      \xff\xfe latin-1 \xe9 and UTF-8 \xc3\xa9 a@b.io \xc3\n\
                      \xef\xbb\xbfwith a byte-order mark: 127.0.0.1 \xf0\x9f\x98\x80\n"
        .to_vec();
    let mut expected = b"{\"user\":\"<email>\",\"from\":\"x.x.x.x\"}\n\
                         plain text, nothing to hide\n\
                         mail <email> from x.x.x.x and 999.1.1.1\n\
                         \xff\xfe latin-1 \xe9 and UTF-8 \xc3\xa9 <email> \xc3\n\
                         \xef\xbb\xbfwith a byte-order mark: x.x.x.x \xf0\x9f\x98\x80\n"
        .to_vec();
    for i in 0..5_000 {
        let (rec, out) = match i % 3 {
            0 => (
                format!("{{\"seq\":{i},\"ip\":\"10.{}.{}.1\"}}\n", i % 256, i / 256),
                format!("{{\"seq\":{i},\"ip\":\"x.x.x.x\"}}\n"),
            ),
            1 => (
                format!("{{\"seq\":{i},\"to\":\"u{i}@example.com\"}}\n"),
                format!("{{\"seq\":{i},\"to\":\"<email>\"}}\n"),
            ),
            _ => {
                let same = format!("{{\"seq\":{i},\"v\":\"1.2.3\"}}\n");
                (same.clone(), same)
            }
        };
        input.extend_from_slice(rec.as_bytes());
        expected.extend_from_slice(out.as_bytes());
    }
    let out = run_stage(dir.path(), &stage, "", &input);
    let stats = out.ok_stats();
    assert_eq!(read(&dir.path().join("out.ndjson")), expected);
    assert_eq!(stats.written(), lines(&input).len() as u64);

    // Replacement texts from the config: UTF-8 encoded, `$` taken literally.
    std::fs::remove_file(dir.path().join("out.ndjson")).unwrap();
    let configured = format!("{stage}\nconfig = {{ email = \"[mail ✉ $&]\", ipv4 = \"<ip>\" }}");
    let out = run_stage(
        dir.path(),
        &configured,
        "",
        b"to ann@example.com at 10.0.0.1 \xc3\xa9\n\xff bob@example.org 10.0.0.2\n",
    );
    out.ok_stats();
    // U+2709 is E2 9C 89 in UTF-8; the second record is not UTF-8.
    assert_eq!(
        read(&dir.path().join("out.ndjson")),
        b"to [mail \xe2\x9c\x89 $&] at <ip> \xc3\xa9\n\
          \xff [mail \xe2\x9c\x89 $&] <ip>\n"
    );

    // Bad configs stop start-up with the plugin's message.
    let bad = format!("{stage}\nconfig = {{ email = 5 }}");
    let out = run_stage(dir.path(), &bad, "", b"{}\n");
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("rejected its config: config: `email` must be a string"),
        "{}",
        out.stderr
    );
    let out = run_in(
        dir.path(),
        &[
            "run",
            "--stage",
            &format!("enrich={}", js.display()),
            "--stage-config",
            "[1]",
            "--sink",
            "stdout",
        ],
        Input::Bytes(b"{}\n"),
    );
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("rejected its config: config must be a JSON object"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.is_empty());
}

/// The C plugin (clang + wasi-libc + `wit-bindgen c`): keeps records holding any configured
/// byte string, or drops them with `invert`; its config errors stop start-up; it imports nothing
/// but the contract (no WASI).
#[test]
fn a_c_plugin_keeps_records_containing_any_configured_string() {
    let dir = temp_dir();
    let c = plugin("contains-filter");
    let mut input = b"ERROR disk full
all fine
\xff\xfe binary ERROR
panic: \xe2\x9c\x89 at 3
ERRO
"
    .to_vec();
    for i in 0..20_000 {
        let rec = match i % 4 {
            0 => format!("{{\"seq\":{i},\"level\":\"ERROR\"}}\n"),
            1 => format!("{{\"seq\":{i},\"msg\":\"panic \\u2709\"}}\n"),
            _ => format!("{{\"seq\":{i},\"level\":\"info\"}}\n"),
        };
        input.extend_from_slice(rec.as_bytes());
    }
    let matches =
        |l: &[u8]| l.windows(5).any(|w| w == b"ERROR") || l.windows(5).any(|w| w == b"panic");
    let stage = format!(
        "kind = \"filter\"\nplugin = {}\nconfig = {{ any = [\"ERROR\", \"panic\"] }}",
        toml_path(&c)
    );
    let out = run_stage(dir.path(), &stage, "", &input);
    let stats = out.ok_stats();
    let expected = keep_lines(&input, matches);
    assert_eq!(read(&dir.path().join("out.ndjson")), expected);
    assert_eq!(stats.written(), lines(&expected).len() as u64);
    assert_eq!(lines(&expected).len(), 3 + 10_000);

    std::fs::remove_file(dir.path().join("out.ndjson")).unwrap();
    let inverted = format!(
        "kind = \"filter\"\nplugin = {}\nconfig = {{ any = [\"ERROR\", \"panic\"], invert = true }}",
        toml_path(&c)
    );
    run_stage(dir.path(), &inverted, "", &input).ok_stats();
    assert_eq!(
        read(&dir.path().join("out.ndjson")),
        keep_lines(&input, |l| !matches(l))
    );

    for (config, message) in [
        ("{ invert = true }", "config: `any` is required"),
        (
            "{ any = [] }",
            "config: `any` must hold at least one string",
        ),
        ("{ any = [\"\"] }", "config: `any` holds an empty string"),
        (
            "{ any = [\"a\"], anyx = 1 }",
            "config: unknown key `anyx` (known: any, invert)",
        ),
        (
            "{ any = [\"a\"], invert = 1 }",
            "config: `invert` must be true or false",
        ),
        ("{ any = [1] }", "config: `any` must be an array of strings"),
    ] {
        let bad = format!(
            "kind = \"filter\"\nplugin = {}\nconfig = {config}",
            toml_path(&c)
        );
        let out = run_stage(dir.path(), &bad, "", b"x\n");
        assert_eq!(out.code(), 1, "{config}: {}", out.stderr);
        assert!(
            out.stderr
                .contains(&format!("rejected its config: {message}")),
            "{config}: {}",
            out.stderr
        );
    }

    let out = run_in(
        dir.path(),
        &["plugin", "check", c.to_str().unwrap()],
        Input::Null,
    );
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("imports: edge-router:plugin/types@0.1.0\n"),
        "{text}"
    );
}

#[test]
fn a_plugin_cannot_read_files_open_sockets_or_see_the_environment_unless_granted() {
    let dir = temp_dir();
    let granted = dir.path().join("granted");
    std::fs::create_dir(&granted).unwrap();
    std::fs::write(granted.join("table.txt"), b"lookup data").unwrap();
    let input = format!(
        "file:{}\nfile:/data/table.txt\nsocket:127.0.0.1:22\nenv\ntime\nplain\n",
        granted.join("table.txt").display()
    );
    let probe = toml_path(&plugin("sandbox-probe"));
    let out = run_stage(
        dir.path(),
        &format!("kind = \"filter\"\nplugin = {probe}"),
        "",
        input.as_bytes(),
    );
    out.ok_stats();
    assert_eq!(read(&dir.path().join("out.ndjson")), b"plain\n");
    let dl = dead_letters(&dir.path().join("dl.ndjson"));
    let reasons: Vec<(u64, &str)> = dl
        .iter()
        .map(|d| (d.line.unwrap(), d.reason.as_str()))
        .collect();
    assert_eq!(reasons.len(), 5, "{reasons:?}");
    assert!(
        reasons[0].1.contains("No such file or directory"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].1.contains("No such file or directory"),
        "{reasons:?}"
    );
    assert!(reasons[2].1.contains("Permission denied"), "{reasons:?}");
    assert!(
        reasons[3].1.contains("the environment is empty"),
        "{reasons:?}"
    );
    assert!(
        reasons[4].1.contains("the wall clock reads 0"),
        "{reasons:?}"
    );

    // Granted: a read-only directory (seen as /data) and the real clock.
    let dir2 = temp_dir();
    let stage = format!(
        "kind = \"filter\"\nplugin = {probe}\ngrant_read_only_dir = {}\ngrant_clock = true",
        toml_path(&granted)
    );
    let out = run_stage(
        dir2.path(),
        &stage,
        "",
        b"file:/data/table.txt\ntime\nsocket:127.0.0.1:22\n",
    );
    out.ok_stats();
    assert_eq!(
        read(&dir2.path().join("out.ndjson")),
        b"file:/data/table.txt\ntime\n"
    );
}

/// Runs log-to-json (syslog) on `input` through the router: every line becomes a JSON object.
fn log_to_json_syslog(input: &[u8], lines_expected: u64) -> Vec<serde_json::Value> {
    let dir = temp_dir();
    let stage = format!(
        "kind = \"enrich\"\nplugin = {}\nconfig = {{ format = \"syslog\" }}",
        toml_path(&plugin("log-to-json"))
    );
    let out = run_stage(dir.path(), &stage, "", input);
    let stats = out.ok_stats();
    assert_eq!(stats.read(), lines_expected);
    assert_eq!(stats.dead_lettered(), 0);
    let got = read(&dir.path().join("out.ndjson"));
    let recs: Vec<serde_json::Value> = lines(&got)
        .into_iter()
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(recs.len() as u64, lines_expected);
    recs
}

#[test]
fn log_to_json_turns_every_loghub_syslog_line_into_a_json_object() {
    let test = "plugins::log_to_json_turns_every_loghub_syslog_line_into_a_json_object";
    let Some(files) = common::loghub_files(test) else {
        return;
    };
    let file = files
        .iter()
        .find(|f| f.ends_with("OpenSSH_2k.log"))
        .unwrap();
    let recs = log_to_json_syslog(&read(file), 2000);
    assert_eq!(recs[0]["hostname"], "LabSZ");
    assert_eq!(recs[0]["program"], "sshd");
    assert_eq!(recs[0]["processid"], 24200);
    assert_eq!(
        recs[1]["message"],
        "Invalid user webmaster from 173.234.31.186"
    );
}

#[test]
fn log_to_json_turns_every_sample_syslog_line_into_a_json_object() {
    let input = read(&common::repo_root().join("tests/data/logs/rfc3164.log"));
    let recs = log_to_json_syslog(&input, 20);
    assert_eq!(recs[0]["hostname"], "edge-gw-1");
    assert_eq!(recs[0]["program"], "sshd");
    assert_eq!(recs[0]["processid"], 4120);
    assert_eq!(
        recs[7]["message"],
        "Invalid user admin from 192.0.2.55 port 40222"
    );
}

/// Runs `config` (written to `edge-router.toml`) on `input`, with JSON stats.
fn run_config(dir: &Path, config: &str, input: &[u8]) -> Output {
    std::fs::write(dir.join("edge-router.toml"), config).unwrap();
    run_in(
        dir,
        &["run", "-c", "edge-router.toml", "--stats=json"],
        Input::Bytes(input),
    )
}

/// Small reads (many batches), `workers` stage workers, `stages` between stdin and
/// `out.ndjson`, dead letters in `dl.ndjson`.
fn workers_config(workers: usize, stages: &str) -> String {
    format!(
        "[pipeline]\nstage_workers = {workers}\n\n\
         [sources.in]\nkind = \"stdin\"\nread_bytes = \"16KiB\"\n\n{stages}\n\n\
         [sinks.out]\nkind = \"file\"\npath = \"out.ndjson\"\n\n\
         [dead_letter]\npath = \"dl.ndjson\"\n"
    )
}

#[test]
fn four_stage_workers_keep_the_order_of_200000_records_through_plugin_stages() {
    let dir = temp_dir();
    let n = 200_000;
    let input = seq_records(n, |_| false, "");
    // Traps make the batches' costs uneven (a trapping range is re-run in halves on fresh
    // instances), so the workers finish out of order; the second plugin makes each worker's
    // set hold more than one instance.
    let stages = format!(
        "[[stages]]\nname = \"p\"\nkind = \"filter\"\nplugin = {}\nbatch_records_max = 64\n\n\
         [[stages]]\nname = \"q\"\nkind = \"filter\"\nplugin = {}\n",
        toml_path(&plugin("trap-every-1000th")),
        toml_path(&plugin("noop-filter"))
    );
    let out = run_config(dir.path(), &workers_config(4, &stages), &input);
    let stats = out.ok_stats();
    assert_eq!(stats.read(), n);
    let expected = keep_lines(&input, |l| {
        let v: serde_json::Value = serde_json::from_slice(l).unwrap();
        !v["seq"].as_u64().unwrap().is_multiple_of(1000)
    });
    common::assert_bytes_eq(
        &read(&dir.path().join("out.ndjson")),
        &expected,
        "output with 4 stage workers",
    );
    // Dead letters go as they come: compare them as a set.
    let mut dl: Vec<u64> = dead_letters(&dir.path().join("dl.ndjson"))
        .iter()
        .map(|d| d.line.unwrap())
        .collect();
    dl.sort_unstable();
    assert_eq!(dl, (1..=n / 1000).map(|k| k * 1000).collect::<Vec<_>>());
    assert_eq!(stats.component("stages.p")["records_in"], n);
    assert_eq!(stats.component("stages.p")["dead_lettered"], n / 1000);
    assert_eq!(stats.component("stages.q")["records_in"], n - n / 1000);
    assert_eq!(stats.written(), n - n / 1000);
}

#[test]
fn a_fatal_stage_error_with_several_workers_loses_nothing_and_dispatches_what_came_before() {
    let input = seq_records(200_000, |_| false, "");
    let stages = format!(
        "[[stages]]\nname = \"p\"\nkind = \"filter\"\nplugin = {}\nbatch_records_max = 64\n\
         on_error = \"fail\"\n",
        toml_path(&plugin("trap-every-1000th"))
    );
    for workers in [1, 4] {
        let dir = temp_dir();
        let out = run_config(dir.path(), &workers_config(workers, &stages), &input);
        assert_eq!(out.code(), 1, "{workers} workers: {}", out.stderr);
        // Reported once, for the earliest failing record (1000), whichever worker failed first.
        let reports: Vec<&str> = out
            .stderr
            .lines()
            .filter(|l| l.starts_with("edge-router: "))
            .collect();
        assert_eq!(reports.len(), 1, "{workers} workers: {}", out.stderr);
        assert!(
            reports[0].contains("stage `p` (on_error = \"fail\")"),
            "{workers} workers: {}",
            out.stderr
        );
        let stats = out.stats();
        stats.assert_invariant();
        let read_n = stats.read();
        assert!(read_n >= 1000, "{workers} workers: read {read_n}");
        // The output is exactly the records before the failing batch, in order; every other
        // record read is a dead letter, exactly once.
        let written = read(&dir.path().join("out.ndjson"));
        let m = lines(&written).len() as u64;
        assert!(m < 1000, "{workers} workers: {m} records written");
        assert_eq!(written, common::first_lines(&input, m), "{workers} workers");
        let dl = dead_letters(&dir.path().join("dl.ndjson"));
        let mut dl_lines: Vec<u64> = dl.iter().map(|d| d.line.unwrap()).collect();
        dl_lines.sort_unstable();
        assert_eq!(
            dl_lines,
            (m + 1..=read_n).collect::<Vec<_>>(),
            "{workers} workers: dead letters"
        );
        let all = lines(&input);
        for d in &dl {
            let line = all[d.line.unwrap() as usize - 1];
            if d.truncated {
                // The piece of a line being read when the source was told to stop.
                assert!(line.starts_with(&d.payload), "{d:?}");
                continue;
            }
            assert_eq!(d.payload, line);
            assert!(
                d.reason.contains("on_error = \"fail\"")
                    || d.reason.contains("the stage thread stopped"),
                "{}",
                d.reason
            );
        }
        assert_eq!(stats.written() + stats.dead_lettered(), read_n);
    }
}
