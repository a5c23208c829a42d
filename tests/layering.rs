//! The layers ARCHITECTURE.md describes, checked against the code: every `.rs` file under
//! `router/src/` is read (comments, strings and `#[cfg(test)]` modules left out) and the names
//! it uses are held against the rules below. A rule broken fails the test with the file, the
//! line and the rule; `a_planted_violation_of_each_rule_is_caught` shows that every rule can fail.
//!
//! The rules:
//! 1. `core/` is pure: no tokio, no `std::fs`, `std::net`, `std::thread` or `std::process`, no
//!    clock reads (`Instant::now`, `SystemTime::now`), and no `crate::` module but `core` itself.
//! 2. Only `stages/wasm/` names wasmtime.
//! 3. Only the AWS sinks (`sinks/aws/`, `sinks/kinesis/`, `sinks/firehose/`) name the AWS SDK
//!    (`aws_sdk_*`, `aws_config`, `aws_smithy_*`, `aws_types`).
//! 4. Sources never use sinks (`crate::sinks`), and sinks never use stages (`crate::stages`).
//! 5. No cycle of `crate::` imports between files: a path `crate::a::b::C` named in file `f` is
//!    an edge from `f` to the file of the deepest module it names (`a/b.rs` or `a/b/mod.rs`).
//! 6. The bounded queue (`queue.rs`) is a building block below config, sources, stages, sinks
//!    and topology: it uses no `crate::` module.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A rule broken at a place.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Broken {
    file: String,
    line: usize,
    rule: String,
}

/// `text` with comments, string and character literals blanked out (newlines kept, so line
/// numbers hold) and `#[cfg(test)]` items removed.
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let blank = |out: &mut String, s: &[u8]| {
        for &c in s {
            out.push(if c == b'\n' { '\n' } else { ' ' });
        }
    };
    while i < b.len() {
        let rest = &b[i..];
        if rest.starts_with(b"//") {
            let end = rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len());
            blank(&mut out, &rest[..end]);
            i += end;
        } else if rest.starts_with(b"/*") {
            let mut depth = 0;
            let mut j = 0;
            while j < rest.len() {
                if rest[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if rest[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            blank(&mut out, &rest[..j]);
            i += j;
        } else if rest.starts_with(b"r\"")
            || rest.starts_with(b"r#")
            || rest.starts_with(b"br\"")
            || rest.starts_with(b"br#")
        {
            let start = if rest[0] == b'b' { 2 } else { 1 };
            let hashes = rest[start..].iter().take_while(|&&c| c == b'#').count();
            if rest.get(start + hashes) != Some(&b'"') {
                out.push(rest[0] as char);
                i += 1;
                continue;
            }
            let close: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            let body = start + hashes + 1;
            let end = rest[body..]
                .windows(close.len())
                .position(|w| w == close.as_slice())
                .map_or(rest.len(), |p| body + p + close.len());
            blank(&mut out, &rest[..end]);
            i += end;
        } else if rest[0] == b'"' {
            let mut j = 1;
            while j < rest.len() && rest[j] != b'"' {
                j += if rest[j] == b'\\' { 2 } else { 1 };
            }
            let end = (j + 1).min(rest.len());
            blank(&mut out, &rest[..end]);
            i += end;
        } else if rest[0] == b'\'' {
            // A char literal ('a', '\n', '\u{1b}') or a lifetime ('a).
            let lit = if rest.get(1) == Some(&b'\\') {
                rest.iter().skip(2).position(|&c| c == b'\'').map(|p| p + 3)
            } else if rest.get(2) == Some(&b'\'') {
                Some(3)
            } else {
                std::str::from_utf8(rest)
                    .ok()
                    .and_then(|s| s[1..].chars().next())
                    .filter(|c| !c.is_ascii())
                    .and_then(|c| {
                        (rest.get(1 + c.len_utf8()) == Some(&b'\'')).then_some(2 + c.len_utf8())
                    })
            };
            match lit {
                Some(n) => {
                    blank(&mut out, &rest[..n]);
                    i += n;
                }
                None => {
                    out.push('\'');
                    i += 1;
                }
            }
        } else {
            let c = text[i..].chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    remove_test_items(&out)
}

/// `code` with every item under `#[cfg(test)]` (a `mod tests { .. }` or a single `fn`) blanked.
fn remove_test_items(code: &str) -> String {
    let mut out = code.as_bytes().to_vec();
    let mut from = 0;
    while let Some(p) = code[from..].find("#[cfg(test)]") {
        let start = from + p;
        // The item ends at the `}` closing its first `{`, or at a `;` before any `{`.
        let bytes = code.as_bytes();
        let mut j = start + "#[cfg(test)]".len();
        let mut depth = 0usize;
        while j < bytes.len() {
            match bytes[j] {
                b'{' => depth += 1,
                b'}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        j += 1;
                        break;
                    }
                }
                b';' if depth == 0 => {
                    j += 1;
                    break;
                }
                _ => {}
            }
            j += 1;
        }
        for c in &mut out[start..j.min(bytes.len())] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
        from = j.min(code.len());
    }
    String::from_utf8(out).unwrap()
}

/// The 1-based line of byte `at`.
fn line_of(code: &str, at: usize) -> usize {
    code[..at].bytes().filter(|&c| c == b'\n').count() + 1
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Places where `word` appears as a whole path segment start (not inside a longer identifier).
fn uses<'a>(code: &'a str, word: &'a str) -> impl Iterator<Item = usize> + 'a {
    code.match_indices(word).filter_map(move |(at, _)| {
        let before_ok = at == 0 || !is_ident(code.as_bytes()[at - 1]);
        let after = code.as_bytes().get(at + word.len()).copied();
        let after_ok =
            word.ends_with(':') || word.ends_with('_') || after.is_none_or(|c| !is_ident(c));
        (before_ok && after_ok).then_some(at)
    })
}

/// The paths a file names with `crate::` (including each path of a `use crate::{a::b, c}`
/// group), as their segments, with the byte where each reference is.
fn crate_paths(code: &str) -> Vec<(Vec<String>, usize)> {
    let mut found = Vec::new();
    for at in uses(code, "crate::") {
        paths_from(&code[at + "crate::".len()..], Vec::new(), at, &mut found);
    }
    found
}

/// Reads one path (or group of paths) at the start of `rest`, after the segments `prefix`.
fn paths_from(rest: &str, prefix: Vec<String>, at: usize, found: &mut Vec<(Vec<String>, usize)>) {
    let mut segs = prefix;
    let mut rest = rest.trim_start();
    loop {
        if let Some(inner) = rest.strip_prefix('{') {
            // Each item of the group, split at depth 0.
            let mut depth = 0;
            let mut start = 0;
            for (i, c) in inner.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        paths_from(&inner[start..i], segs.clone(), at, found);
                        return;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        paths_from(&inner[start..i], segs.clone(), at, found);
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            return;
        }
        let name: String = rest
            .chars()
            .take_while(|&c| c.is_ascii_alphanumeric() || c == '_')
            .collect();
        if name.is_empty() || name == "self" {
            break;
        }
        rest = &rest[name.len()..];
        segs.push(name);
        match rest.trim_start().strip_prefix("::") {
            Some(r) => rest = r.trim_start(),
            None => break,
        }
    }
    if !segs.is_empty() {
        found.push((segs, at));
    }
}

/// The file under `router/src/` that defines the deepest module of `segs` (`a/b.rs` or
/// `a/b/mod.rs`), among `files`.
fn module_file(segs: &[String], files: &BTreeSet<String>) -> Option<String> {
    (1..=segs.len()).rev().find_map(|k| {
        let base = segs[..k].join("/");
        [format!("{base}.rs"), format!("{base}/mod.rs")]
            .into_iter()
            .find(|f| files.contains(f))
    })
}

/// Checks one file (`rel`: its path under `router/src/`, with `/`), returning the rules it
/// breaks, and adding its module edges to `edges`.
fn check_file(
    rel: &str,
    text: &str,
    files: &BTreeSet<String>,
    edges: &mut BTreeMap<String, BTreeSet<String>>,
) -> Vec<Broken> {
    let code = code_only(text);
    let mut broken: Vec<Broken> = Vec::new();
    let mut report = |at: usize, rule: String| {
        let line = line_of(&code, at);
        if broken.iter().any(|b| b.line == line && b.rule == rule) {
            return;
        }
        broken.push(Broken {
            file: format!("router/src/{rel}"),
            line,
            rule,
        });
    };
    let in_dir = |d: &str| rel.starts_with(d);

    if in_dir("core/") {
        for word in [
            "tokio",
            "std::fs",
            "std::net",
            "std::thread",
            "std::process",
            "Instant::now",
            "SystemTime::now",
        ] {
            for at in uses(&code, word) {
                report(at, format!("rule 1: core/ is pure, but uses `{word}`"));
            }
        }
    }
    for (segs, at) in crate_paths(&code) {
        let module = segs[0].as_str();
        if in_dir("core/") && module != "core" {
            report(at, format!("rule 1: core/ uses `crate::{module}`"));
        }
        if in_dir("sources/") && module == "sinks" {
            report(at, "rule 4: a source uses `crate::sinks`".to_owned());
        }
        if in_dir("sinks/") && module == "stages" {
            report(at, "rule 4: a sink uses `crate::stages`".to_owned());
        }
        if (rel == "queue.rs" || in_dir("queue/")) && module != "queue" {
            report(at, format!("rule 6: the queue uses `crate::{module}`"));
        }
        if let Some(target) = module_file(&segs, files)
            && target != rel
        {
            edges.entry(rel.to_owned()).or_default().insert(target);
        }
    }
    if !in_dir("stages/wasm/") {
        for at in uses(&code, "wasmtime") {
            report(at, "rule 2: only stages/wasm/ may name wasmtime".to_owned());
        }
    }
    let aws_sink = ["sinks/aws/", "sinks/kinesis/", "sinks/firehose/"]
        .iter()
        .any(|d| in_dir(d));
    if !aws_sink {
        for word in ["aws_sdk_", "aws_config", "aws_smithy_", "aws_types"] {
            for at in uses(&code, word) {
                report(at, format!("rule 3: only the AWS sinks may name `{word}`"));
            }
        }
    }
    broken
}

/// The cycles of `edges` (rule 5), each as the files on it.
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    // Strongly connected components (Tarjan), reported when larger than one module.
    struct T<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        t.index.insert(v, t.next);
        t.low.insert(v, t.next);
        t.next += 1;
        t.stack.push(v);
        t.on.insert(v);
        if let Some(ws) = t.edges.get(v) {
            for w in ws {
                let w = w.as_str();
                if !t.index.contains_key(w) {
                    visit(t, w);
                    let lw = t.low[w];
                    let lv = t.low[v];
                    t.low.insert(v, lv.min(lw));
                } else if t.on.contains(w) {
                    let iw = t.index[w];
                    let lv = t.low[v];
                    t.low.insert(v, lv.min(iw));
                }
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                comp.push(w.to_owned());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t = T {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    let nodes: BTreeSet<&str> = edges
        .iter()
        .flat_map(|(k, vs)| std::iter::once(k.as_str()).chain(vs.iter().map(String::as_str)))
        .collect();
    for n in nodes {
        if !t.index.contains_key(n) {
            visit(&mut t, n);
        }
    }
    t.out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Checks every file under `root`.
fn check_tree(root: &Path) -> (Vec<Broken>, Vec<Vec<String>>) {
    let mut paths = Vec::new();
    rust_files(root, &mut paths);
    let files: BTreeSet<String> = paths
        .iter()
        .map(|f| {
            f.strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/")
        })
        .collect();
    let mut edges = BTreeMap::new();
    let mut broken = Vec::new();
    for rel in &files {
        let text = std::fs::read_to_string(root.join(rel)).unwrap();
        broken.extend(check_file(rel, &text, &files, &mut edges));
    }
    (broken, cycles(&edges))
}

#[test]
fn the_router_follows_its_layers() {
    let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/src"));
    let (broken, cycles) = check_tree(&root);
    let mut report = String::new();
    for b in &broken {
        report.push_str(&format!("{}:{}: {}\n", b.file, b.line, b.rule));
    }
    for c in &cycles {
        report.push_str(&format!(
            "rule 5: an import cycle between {}\n",
            c.join(" ")
        ));
    }
    assert!(
        report.is_empty(),
        "the layering rules of ARCHITECTURE.md are broken:\n{report}"
    );
}

#[test]
fn a_planted_violation_of_each_rule_is_caught() {
    let mut edges = BTreeMap::new();
    let files: BTreeSet<String> = [
        "config/mod.rs",
        "metrics/mod.rs",
        "metrics/server.rs",
        "topology/build.rs",
        "topology/mod.rs",
        "reload.rs",
        "stats.rs",
        "core/mod.rs",
        "core/record.rs",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    let check = |rel: &str, text: &str, edges: &mut BTreeMap<String, BTreeSet<String>>| {
        let mut v: Vec<(usize, String)> = check_file(rel, text, &files, edges)
            .into_iter()
            .map(|b| (b.line, b.rule))
            .collect();
        v.sort();
        v
    };
    // Rule 1.
    let got = check(
        "core/x.rs",
        "use std::time::Instant;\nfn f() { let t = Instant::now(); }\nuse crate::sinks::file::FileSink;\nuse crate::{core::record, topology::Outlet};\nasync fn g() { tokio::spawn(async {}); std::fs::read(\"x\"); }\n",
        &mut edges,
    );
    assert_eq!(
        got,
        vec![
            (
                2,
                "rule 1: core/ is pure, but uses `Instant::now`".to_owned()
            ),
            (3, "rule 1: core/ uses `crate::sinks`".to_owned()),
            (4, "rule 1: core/ uses `crate::topology`".to_owned()),
            (5, "rule 1: core/ is pure, but uses `std::fs`".to_owned()),
            (5, "rule 1: core/ is pure, but uses `tokio`".to_owned()),
        ]
    );
    // Comments, strings and test modules do not count.
    let got = check(
        "core/y.rs",
        "// tokio::spawn\n/* std::fs */ fn f() -> &'static str { \"Instant::now()\" }\nconst C: char = '\"';\n#[cfg(test)]\nmod tests { fn t() { std::time::Instant::now(); } }\n",
        &mut edges,
    );
    assert!(got.is_empty(), "{got:?}");
    // Rule 2 and 3.
    let got = check(
        "sources/http/mod.rs",
        "use wasmtime::Engine;\nuse aws_sdk_kinesis::Client;\n",
        &mut edges,
    );
    assert_eq!(
        got,
        vec![
            (1, "rule 2: only stages/wasm/ may name wasmtime".to_owned()),
            (
                2,
                "rule 3: only the AWS sinks may name `aws_sdk_`".to_owned()
            ),
        ]
    );
    assert!(check("stages/wasm/plugin.rs", "use wasmtime::Engine;", &mut edges).is_empty());
    assert!(
        check(
            "sinks/kinesis/client.rs",
            "use aws_sdk_kinesis::Client;",
            &mut edges
        )
        .is_empty()
    );
    // Rule 4.
    let got = check(
        "sources/stdin/mod.rs",
        "use crate::sinks::file;",
        &mut edges,
    );
    assert_eq!(
        got,
        vec![(1, "rule 4: a source uses `crate::sinks`".to_owned())]
    );
    let got = check(
        "sinks/file/mod.rs",
        "fn f(s: crate::stages::Stage) {}",
        &mut edges,
    );
    assert_eq!(
        got,
        vec![(1, "rule 4: a sink uses `crate::stages`".to_owned())]
    );
    // Rule 6: the queue names nothing of the crate but itself.
    let got = check(
        "queue.rs",
        "use crate::core::record::Batch;\nfn f(o: crate::topology::Outlet) {}\nuse crate::queue::Limits;\n",
        &mut edges,
    );
    assert_eq!(
        got,
        vec![
            (1, "rule 6: the queue uses `crate::core`".to_owned()),
            (2, "rule 6: the queue uses `crate::topology`".to_owned()),
        ]
    );
    assert!(check("config/mod.rs", "use crate::queue::Limits;", &mut edges).is_empty());
    // Rule 5: config/mod.rs -> metrics/mod.rs -> topology/build.rs -> config/mod.rs, and
    // metrics/server.rs <-> reload.rs; a path names the file of its deepest module.
    let mut edges = BTreeMap::new();
    check(
        "config/mod.rs",
        "use crate::metrics::MetricsConfig;",
        &mut edges,
    );
    check(
        "metrics/mod.rs",
        "use crate::topology::build::Report;",
        &mut edges,
    );
    check(
        "topology/build.rs",
        "use crate::{config::Config, core::record::Batch};",
        &mut edges,
    );
    check("stats.rs", "use crate::config::Config;", &mut edges);
    check(
        "metrics/server.rs",
        "use crate::reload::Reloader;",
        &mut edges,
    );
    check(
        "reload.rs",
        "fn f(s: crate::metrics::server::Server) {}",
        &mut edges,
    );
    assert_eq!(
        edges["topology/build.rs"],
        ["config/mod.rs", "core/record.rs"]
            .map(str::to_owned)
            .into()
    );
    let owned = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    assert_eq!(
        cycles(&edges),
        vec![
            owned(&["config/mod.rs", "metrics/mod.rs", "topology/build.rs"]),
            owned(&["metrics/server.rs", "reload.rs"]),
        ]
    );
}
