//! `edge-router plugin check|run|new`: what a component implements and imports, one plugin run
//! over records from stdin, and a new plugin project written from the templates of
//! `edge_router::scaffold`.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use bytes::Bytes;
use edge_router::core::accounting::Counters;
use edge_router::core::framing::{FramerConfig, LineFramer};
use edge_router::core::record::{Batch, Origin, PositionBase};
use edge_router::stages::Stage;
use edge_router::stages::wasm::{self, OnError, PluginKind, WasmStage, WasmStageConfig};

use clap::{Subcommand, ValueEnum};

#[derive(Subcommand)]
pub(super) enum PluginCommand {
    /// Say which stage worlds a component implements and what it imports; errors for a core
    /// module, a corrupt file or a component that fits no world.
    Check {
        /// The component file.
        file: PathBuf,
    },
    /// Run one plugin over records from stdin (one per line) and print the results: kept
    /// records (filter), rewritten records (enrich), `destination<TAB>record` (route), or the
    /// output records (transform; aggregate: what `process` emitted, then what `flush` emitted),
    /// each after a JSON object and a tab when it has a key, attributes or destinations.
    /// Records the plugin rejects are reported on stderr with their line number.
    Run {
        /// The component file.
        file: PathBuf,
        /// The plugin's config, as JSON.
        #[arg(long, default_value = "{}")]
        config: String,
        /// Which world to run it as (default: the first it implements).
        #[arg(long, value_enum)]
        kind: Option<KindArg>,
    },
    /// Write a new plugin project from the templates in this binary: the plugin, a README, a
    /// build script (into dist/NAME.wasm) and test.sh, which builds it and checks its output
    /// through `plugin run` on sample records. Kinds: filter, enrich, route (contract 0.1);
    /// transform (one record in, several out: here a record keyed by a field plus a derived
    /// alert record) and aggregate (per-key counts and sums emitted on tick and flush), contract
    /// 0.2. Python and JavaScript projects ship a helper that runs your per-record function
    /// over each batch.
    New {
        /// The project's name: lowercase letters, digits and '-' (also the component's name).
        name: String,
        /// The language.
        #[arg(long, value_enum)]
        lang: LangArg,
        /// The stage kind (world) it implements: filter, enrich, route (contract 0.1),
        /// transform or aggregate (contract 0.2).
        #[arg(long, value_enum)]
        kind: NewKindArg,
        /// Where to write it (default: ./NAME); it must not exist, or be an empty directory.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Rust: take the SDK crate from this checkout of the repository's plugin-sdk/ instead
        /// of crates.io.
        #[arg(long)]
        sdk_path: Option<PathBuf>,
    },
}

/// The kinds `plugin new` has templates for (every world of both contract versions).
#[derive(Clone, Copy, ValueEnum)]
pub(super) enum NewKindArg {
    Filter,
    Enrich,
    Route,
    Transform,
    Aggregate,
}

#[derive(Clone, Copy, ValueEnum)]
pub(super) enum LangArg {
    Rust,
    Python,
    Js,
    C,
}

#[derive(Clone, Copy, ValueEnum)]
pub(super) enum KindArg {
    Filter,
    Enrich,
    Route,
    Transform,
    Aggregate,
}

/// Runs the command; an error is printed here.
pub(super) fn plugin(cmd: PluginCommand) -> ExitCode {
    match run(cmd) {
        Ok(code) => code,
        Err(e) => {
            say_err!("edge-router: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cmd: PluginCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        PluginCommand::Check { file } => {
            let info = wasm::inspect(&file)?;
            say!(
                "{}: a component implementing {}",
                file.display(),
                info.worlds
                    .iter()
                    .map(|w| {
                        let version = match *w {
                            "transform" | "aggregate" => "0.2.0",
                            _ => "0.1.0",
                        };
                        format!("`{w}` of edge-router:plugin@{version}")
                    })
                    .collect::<Vec<_>>()
                    .join(" and ")
            );
            let imports = if info.imports.is_empty() {
                "none".to_owned()
            } else {
                info.imports.join(", ")
            };
            say!("imports: {imports}");
            say!("exports: {}", info.exports.join(", "));
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::Run { file, config, kind } => run_plugin(file, config, kind),
        PluginCommand::New {
            name,
            lang,
            kind,
            dir,
            sdk_path,
        } => new_project(name, lang, kind, dir, sdk_path),
    }
}

fn new_project(
    name: String,
    lang: LangArg,
    kind: NewKindArg,
    dir: Option<PathBuf>,
    sdk_path: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    use edge_router::scaffold::{self, Kind, Lang, Request, Sdk};
    let lang = match lang {
        LangArg::Rust => Lang::Rust,
        LangArg::Python => Lang::Python,
        LangArg::Js => Lang::Js,
        LangArg::C => Lang::C,
    };
    let kind = match kind {
        NewKindArg::Filter => Kind::Filter,
        NewKindArg::Enrich => Kind::Enrich,
        NewKindArg::Route => Kind::Route,
        NewKindArg::Transform => Kind::Transform,
        NewKindArg::Aggregate => Kind::Aggregate,
    };
    let sdk = match sdk_path {
        None => Sdk::Version(env!("CARGO_PKG_VERSION").to_owned()),
        Some(p) => {
            let abs =
                std::fs::canonicalize(&p).with_context(|| format!("--sdk-path {}", p.display()))?;
            anyhow::ensure!(
                abs.join("Cargo.toml").is_file(),
                "--sdk-path {}: no Cargo.toml there (name the plugin-sdk/ folder of an \
                 edge-router checkout)",
                p.display()
            );
            let text = abs
                .to_str()
                .with_context(|| format!("--sdk-path {}: the path is not UTF-8", p.display()))?;
            Sdk::Path(text.to_owned())
        }
    };
    let files = scaffold::render(&Request {
        lang,
        kind,
        name: name.clone(),
        sdk,
    })?;
    let dir = dir.unwrap_or_else(|| PathBuf::from(&name));
    if dir.exists() {
        let empty = std::fs::read_dir(&dir)
            .with_context(|| format!("{} exists and is not a readable directory", dir.display()))?
            .next()
            .is_none();
        anyhow::ensure!(
            empty,
            "{} exists and is not empty: choose another --dir or name",
            dir.display()
        );
    }
    for f in &files {
        let path = dir.join(&f.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, &f.contents)
            .with_context(|| format!("writing {}", path.display()))?;
        #[cfg(unix)]
        if f.executable {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .with_context(|| format!("making {} executable", path.display()))?;
        }
    }
    say!(
        "created {} ({} {} plugin, {} files): cd {} && ./test.sh",
        dir.display(),
        lang,
        kind.world(),
        files.len(),
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn run_plugin(file: PathBuf, config: String, kind: Option<KindArg>) -> anyhow::Result<ExitCode> {
    serde_json::from_str::<serde_json::Value>(&config).context("--config is not valid JSON")?;
    let kind = match kind {
        Some(KindArg::Filter) => PluginKind::Filter,
        Some(KindArg::Enrich) => PluginKind::Enrich,
        Some(KindArg::Route) => PluginKind::Route,
        Some(KindArg::Transform) => PluginKind::Transform,
        Some(KindArg::Aggregate) => PluginKind::Aggregate,
        None => match wasm::inspect(&file)?.worlds.first().copied() {
            Some("enrich") => PluginKind::Enrich,
            Some("route") => PluginKind::Route,
            Some("transform") => PluginKind::Transform,
            Some("aggregate") => PluginKind::Aggregate,
            _ => PluginKind::Filter,
        },
    };
    let cfg = WasmStageConfig {
        config_json: config,
        on_error: OnError::DeadLetter,
        timeout: std::time::Duration::from_millis(1000),
        ..WasmStageConfig::defaults(file, kind)
    };
    // Route plugins: every destination name they return is accepted and printed.
    let names = wasm::destination_names(&cfg)?;
    const DEFAULT: u64 = 1 << 63;
    let counters = Arc::new(Counters::default());
    let mut stage = WasmStage::new("plugin", cfg, &names, DEFAULT, counters)?;
    let mut input = Vec::new();
    std::io::stdin()
        .read_to_end(&mut input)
        .context("reading stdin")?;
    let data = Bytes::from(input);
    let mut framer = LineFramer::new(FramerConfig {
        max_record_bytes: 64 << 20,
        skip_empty: true,
    });
    let (mut spans, mut rejected) = (Vec::new(), Vec::new());
    framer.scan(&data, true, &mut spans, &mut rejected);
    let origin = Origin {
        source: Arc::from("stdin"),
        arrival_unix_nanos: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
        arrival: Instant::now(),
        position: PositionBase::Line(1),
    };
    let mut batch = Batch::new(data, spans, origin);
    let mut dead = Vec::new();
    stage.process(&mut batch, &mut dead)?;
    let mut out = std::io::stdout().lock();
    let v02 = matches!(kind, PluginKind::Transform | PluginKind::Aggregate);
    let flushed = if kind == PluginKind::Aggregate {
        stage.emit(wasm::Emitting::Flush)
    } else {
        None
    };
    for b in std::iter::once(&batch).chain(flushed.as_ref()) {
        for i in 0..b.len() {
            if v02 {
                write_meta(&mut out, b, i, &names, DEFAULT)?;
            }
            if kind == PluginKind::Route {
                let mask = b
                    .routes()
                    .and_then(|r| r.get(i))
                    .copied()
                    .unwrap_or(DEFAULT);
                let name = (0..names.len())
                    .find(|n| mask & (1 << n) != 0)
                    .map_or("(default)", |n| names[n].as_str());
                write!(out, "{name}\t")?;
            }
            out.write_all(b.payload(i))?;
            out.write_all(b"\n")?;
        }
    }
    for d in &dead {
        let line = match d.position {
            edge_router::core::record::Position::Line(l) => format!("line {l}"),
            edge_router::core::record::Position::None => "a record".to_owned(),
        };
        say_err!("{line}: {}", d.reason);
    }
    Ok(if dead.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(4)
    })
}

/// For a 0.2 plugin's output `i` of `b`: its key, attributes and destinations as a JSON object
/// and a tab, when it has any.
fn write_meta(
    out: &mut impl Write,
    b: &Batch,
    i: usize,
    names: &[String],
    default: u64,
) -> std::io::Result<()> {
    let mut m = serde_json::Map::new();
    if let Some(meta) = b.meta(i) {
        if let Some(k) = &meta.partition_key {
            m.insert("partition_key".into(), k.to_string().into());
        }
        if let Some(h) = &meta.explicit_hash_key {
            m.insert("explicit_hash_key".into(), h.to_string().into());
        }
        if !meta.attributes.is_empty() {
            let attrs: serde_json::Map<String, serde_json::Value> = meta
                .attributes
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string().into()))
                .collect();
            m.insert("attributes".into(), attrs.into());
        }
    }
    if let Some(&mask) = b.routes().and_then(|r| r.get(i))
        && mask != default
    {
        let dests: Vec<serde_json::Value> = (0..names.len())
            .filter(|n| mask & (1 << n) != 0)
            .map(|n| names[n].clone().into())
            .collect();
        m.insert("destinations".into(), dests.into());
    }
    if m.is_empty() {
        return Ok(());
    }
    write!(out, "{}\t", serde_json::Value::Object(m))
}
