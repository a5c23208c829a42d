//! Configuration: TOML files and quick-mode URIs, read into validated settings.
//!
//! Raw text is read by [`reader::Section`] (which collects every problem with its position), each
//! component's table by that component's own `parse` (beside its code), and cross-references
//! (sink names in routes and `default_sinks`) are resolved here. The runtime only ever sees the
//! validated [`Config`]. Quick-mode arguments (`--source stdin`, `--sink file:PATH?opt=val`) are
//! turned into the same tables and validated by the same code.

pub mod bound;
pub mod reader;
pub mod uri;

use std::time::Duration;

use reader::{ConfigErrors, Diagnostics, Located, Origin, Section};

use crate::metrics::MetricsConfig;
use crate::queue::Limits;
use crate::sinks::dead_letter::DeadLetterConfig;
use crate::sinks::file::FileSinkConfig;
use crate::sinks::firehose::FirehoseSinkConfig;
use crate::sinks::kinesis::KinesisSinkConfig;
use crate::sinks::stdout::StdoutConfig;
use crate::sources::file::config::FileSourceConfig;
use crate::sources::http::HttpSourceConfig;
use crate::sources::quic::QuicSourceConfig;
use crate::sources::stdin::StdinConfig;
use crate::stages::builtin::filter::FilterConfig;
use crate::stages::builtin::route::RouteConfig;
use crate::stages::wasm::{PluginKind, WasmStageConfig};

/// The embedded default config: stdin -> newline records -> files under `./edge-router-out/`.
pub const DEFAULT_CONFIG: &str = include_str!("default.toml");

/// Most sinks in one pipeline (route masks are 64-bit).
pub const MAX_SINKS: usize = 64;

/// A validated pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Pipeline-wide settings.
    pub pipeline: PipelineConfig,
    /// Sources, in config order.
    pub sources: Vec<SourceConfig>,
    /// Stages, in pipeline order.
    pub stages: Vec<StageConfig>,
    /// Sinks, in config order (route masks index this list).
    pub sinks: Vec<SinkConfig>,
    /// Where records that cannot be processed or delivered go.
    pub dead_letter: DeadLetterConfig,
    /// The metrics endpoint, when on.
    pub metrics: Option<MetricsConfig>,
}

/// Pipeline-wide settings (`[pipeline]`).
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineConfig {
    /// Limits of every queue unless a component sets its own.
    pub queue: Limits,
    /// Sinks that records go to unless a route stage says otherwise (bit mask).
    pub default_sinks: u64,
    /// How long shutdown may take after SIGINT/SIGTERM before giving up.
    pub shutdown_grace: Duration,
    /// Threads running the stages, each with its own stage objects (plugin instances); batches
    /// still reach the sinks in the order they were read.
    pub stage_workers: usize,
}

/// Most stage workers `pipeline.stage_workers` allows.
pub const STAGE_WORKERS_MAX: u64 = 64;

/// The default of `pipeline.stage_workers`: the CPUs this process may use, at most 4.
pub fn default_stage_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
}

/// One source.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceConfig {
    /// Its name (key under `[sources]`).
    pub name: String,
    /// What it is.
    pub kind: SourceKind,
}

/// Source kinds.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceKind {
    /// Standard input.
    Stdin(StdinConfig),
    /// An HTTP listener.
    Http(Box<HttpSourceConfig>),
    /// A QUIC listener.
    Quic(Box<QuicSourceConfig>),
    /// Files tailed across rotations and restarts.
    File(Box<FileSourceConfig>),
}

impl SourceKind {
    /// True for sources that take records from the network (they feed the ingress queue).
    pub fn is_network(&self) -> bool {
        !matches!(self, SourceKind::Stdin(_) | SourceKind::File(_))
    }
}

/// One stage.
#[derive(Debug, Clone, PartialEq)]
pub struct StageConfig {
    /// Its name (`name` key, or `stages[N]`).
    pub name: String,
    /// What it is.
    pub kind: StageKind,
}

/// Stage kinds.
#[derive(Debug, Clone, PartialEq)]
pub enum StageKind {
    /// Built-in filter.
    Filter(FilterConfig),
    /// Built-in router.
    Route(RouteConfig),
    /// A WebAssembly plugin (filter, enrich or route).
    Wasm(WasmStageConfig),
}

/// One sink.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkConfig {
    /// Its name (key under `[sinks]`).
    pub name: String,
    /// What it is.
    pub kind: SinkKind,
    /// Limits of its queue.
    pub queue: Limits,
    /// Its disk buffer (`[sinks.NAME.buffer]`), if it has one.
    pub buffer: Option<crate::buffer::BufferConfig>,
}

/// Sink kinds.
#[derive(Debug, Clone, PartialEq)]
pub enum SinkKind {
    /// Local files.
    File(FileSinkConfig),
    /// Standard output.
    Stdout(StdoutConfig),
    /// A Kinesis data stream.
    Kinesis(Box<KinesisSinkConfig>),
    /// A Kinesis Data Firehose delivery stream.
    Firehose(Box<FirehoseSinkConfig>),
}

impl SinkKind {
    /// A short description for the start-up line, e.g. `files edge-router-out/records.ndjson`.
    pub fn describe(&self) -> String {
        match self {
            SinkKind::File(f) => format!("file {}", f.path.source_text()),
            SinkKind::Stdout(_) => "standard output".to_owned(),
            SinkKind::Kinesis(k) => format!("kinesis stream {}", k.stream),
            SinkKind::Firehose(f) => format!("firehose delivery stream {}", f.delivery_stream),
        }
    }

    /// True for the stdout sink.
    pub fn is_stdout(&self) -> bool {
        matches!(self, SinkKind::Stdout(_))
    }
}

/// Reads and validates a config file.
pub fn load_file(path: &std::path::Path) -> Result<Config, ConfigErrors> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![reader::ConfigError {
            location: reader::Location::Arg(name.clone()),
            key_path: String::new(),
            message: format!("cannot read config file: {e}"),
        }])
    })?;
    parse_str(&name, &text)
}

/// Validates config text; `name` is used in messages.
pub fn parse_str(name: &str, text: &str) -> Result<Config, ConfigErrors> {
    let doc = reader::parse_document(name, text)?;
    let origin = Origin::File {
        name: name.to_owned(),
        text: std::sync::Arc::from(text),
    };
    let mut d = Diagnostics::new();
    let mut root = Section::root(doc.as_table(), origin, "");
    let config = read_root(&mut root, &mut d);
    root.finish(&mut d);
    d.finish(())?;
    config.ok_or_else(ConfigErrors::default)
}

/// Default limits of every queue: 8 MiB keeps a stdin -> file run under ~40 MiB of RSS while
/// holding 32 default-sized chunks, plenty to ride out a sink's hiccups.
pub const DEFAULT_QUEUE: Limits = Limits {
    records_max: 1 << 16,
    bytes_max: 8 << 20,
};

/// The dead-letter queue holds at most this many bytes (dead letters are rare; a burst of them
/// must not double the memory budget).
pub const DEAD_LETTER_QUEUE_BYTES_MAX: u64 = 4 << 20;

fn read_limits(s: &mut Section<'_>, d: &mut Diagnostics, default: Limits) -> Limits {
    Limits {
        records_max: s.int_or(d, "queue_records_max", default.records_max, 1..=(1 << 26)),
        bytes_max: s.size_or(
            d,
            "queue_bytes_max",
            default.bytes_max,
            (4 << 10)..=(16 << 30),
        ),
    }
}

fn read_root(root: &mut Section<'_>, d: &mut Diagnostics) -> Option<Config> {
    let mut pipeline = root.opt_table(d, "pipeline");
    let default_workers = default_stage_workers();
    let (queue, default_names, grace_ms, stage_workers) = match &mut pipeline {
        Some(p) => (
            read_limits(p, d, DEFAULT_QUEUE),
            p.opt_str_list(d, "default_sinks"),
            p.int_or(d, "shutdown_grace_ms", 10_000, 0..=3_600_000),
            p.int_or(
                d,
                "stage_workers",
                default_workers as u64,
                1..=STAGE_WORKERS_MAX,
            ) as usize,
        ),
        None => (DEFAULT_QUEUE, None, 10_000, default_workers),
    };

    let mut sources = Vec::new();
    let source_tables = root.named_tables(d, "sources");
    if source_tables.is_empty() {
        d.error(&root.spot(), "no sources: add a `[sources.NAME]` table");
    }
    for (name, mut t) in source_tables {
        if let Some(s) = read_source(&name, &mut t, d) {
            sources.push(s);
        }
        t.finish(d);
    }
    let stdins = sources
        .iter()
        .filter(|s| matches!(s.kind, SourceKind::Stdin(_)))
        .count();
    if stdins > 1 {
        // There is only one standard input.
        d.error(
            &root.spot_of("sources"),
            "only one stdin source is possible",
        );
    }

    let mut sinks = Vec::new();
    let sink_tables = root.named_tables(d, "sinks");
    if sink_tables.is_empty() {
        d.error(&root.spot(), "no sinks: add a `[sinks.NAME]` table");
    }
    if sink_tables.len() > MAX_SINKS {
        d.error(
            &root.spot_of("sinks"),
            format!("at most {MAX_SINKS} sinks are supported"),
        );
    }
    let mut sink_names: Vec<String> = Vec::new();
    for (name, mut t) in sink_tables {
        sink_names.push(name.value.clone());
        if let Some(s) = read_sink(&name, &mut t, d, queue) {
            if let Some(b) = &s.buffer
                && let Some(other) = sinks
                    .iter()
                    .find(|o: &&SinkConfig| o.buffer.as_ref().is_some_and(|ob| ob.dir == b.dir))
            {
                d.error(
                    &t.spot_of("buffer"),
                    format!(
                        "buffer dir {} is already the buffer of sink `{}`; each sink needs a \
                         directory of its own",
                        b.dir.display(),
                        other.name
                    ),
                );
            }
            sinks.push(s);
        }
        t.finish(d);
    }
    let stdout_sinks = sinks.iter().filter(|s| s.kind.is_stdout()).count();
    if stdout_sinks > 1 {
        d.error(&root.spot_of("sinks"), "only one stdout sink is possible");
    }

    let default_sinks = match &default_names {
        Some(names) => resolve_sinks(names, &sink_names, d),
        None => all_sinks(sink_names.len()),
    };

    let mut stages = Vec::new();
    for (i, mut t) in root.table_array(d, "stages").into_iter().enumerate() {
        if let Some(s) = read_stage(i, &mut t, d, &sink_names, default_sinks) {
            stages.push(s);
        }
        t.finish(d);
    }

    let dead_letter = match root.opt_table(d, "dead_letter") {
        Some(mut t) => {
            let c = DeadLetterConfig::parse(&mut t, d);
            t.finish(d);
            c
        }
        None => DeadLetterConfig::default(),
    };
    let metrics = root.opt_table(d, "metrics").and_then(|mut t| {
        let m = MetricsConfig::parse(&mut t, d);
        t.finish(d);
        m
    });
    if let Some(p) = pipeline {
        p.finish(d);
    }
    Some(Config {
        pipeline: PipelineConfig {
            queue,
            default_sinks,
            shutdown_grace: Duration::from_millis(grace_ms),
            stage_workers,
        },
        sources,
        stages,
        sinks,
        dead_letter,
        metrics,
    })
}

fn all_sinks(n: usize) -> u64 {
    if n >= 64 { u64::MAX } else { (1u64 << n) - 1 }
}

/// Resolves sink names to a mask, reporting unknown names.
fn resolve_sinks(names: &[Located<String>], sink_names: &[String], d: &mut Diagnostics) -> u64 {
    let mut mask = 0u64;
    for n in names {
        match sink_names.iter().position(|s| *s == n.value) {
            Some(i) if i < 64 => mask |= 1 << i,
            _ => d.error(
                &n.spot,
                format!(
                    "unknown sink {:?}; the sinks are: {}",
                    n.value,
                    sink_names.join(", ")
                ),
            ),
        }
    }
    mask
}

fn read_source(
    name: &Located<String>,
    t: &mut Section<'_>,
    d: &mut Diagnostics,
) -> Option<SourceConfig> {
    let Some(kind) = t.required_str(d, "kind") else {
        t.skip_rest();
        return None;
    };
    let k = match kind.value.as_str() {
        "stdin" => SourceKind::Stdin(StdinConfig::parse(t, d)),
        "http" => SourceKind::Http(Box::new(HttpSourceConfig::parse(t, d)?)),
        "quic" => SourceKind::Quic(Box::new(QuicSourceConfig::parse(t, d)?)),
        "file" => SourceKind::File(Box::new(FileSourceConfig::parse(t, d)?)),
        other => {
            d.error(
                &kind.spot,
                format!("unknown source kind {other:?}; expected one of: stdin, http, quic, file"),
            );
            t.skip_rest();
            return None;
        }
    };
    Some(SourceConfig {
        name: name.value.clone(),
        kind: k,
    })
}

fn read_sink(
    name: &Located<String>,
    t: &mut Section<'_>,
    d: &mut Diagnostics,
    queue: Limits,
) -> Option<SinkConfig> {
    let Some(kind) = t.required_str(d, "kind") else {
        t.skip_rest();
        return None;
    };
    let queue = read_limits(t, d, queue);
    let buffer = t.opt_table(d, "buffer").and_then(|mut b| {
        let c = crate::buffer::BufferConfig::parse(&mut b, d);
        b.finish(d);
        c
    });
    let k = match kind.value.as_str() {
        "file" => SinkKind::File(FileSinkConfig::parse(t, d)?),
        "stdout" => SinkKind::Stdout(StdoutConfig::parse(t, d)),
        "kinesis" => SinkKind::Kinesis(Box::new(KinesisSinkConfig::parse(t, d)?)),
        "firehose" => SinkKind::Firehose(Box::new(FirehoseSinkConfig::parse(t, d)?)),
        other => {
            d.error(
                &kind.spot,
                format!(
                    "unknown sink kind {other:?}; expected one of: file, stdout, kinesis, firehose"
                ),
            );
            t.skip_rest();
            return None;
        }
    };
    Some(SinkConfig {
        name: name.value.clone(),
        kind: k,
        queue,
        buffer,
    })
}

fn read_stage(
    i: usize,
    t: &mut Section<'_>,
    d: &mut Diagnostics,
    sink_names: &[String],
    default_sinks: u64,
) -> Option<StageConfig> {
    let name = t
        .opt_str(d, "name")
        .map_or_else(|| format!("stages[{i}]"), |n| n.value);
    let Some(kind) = t.required_str(d, "kind") else {
        t.skip_rest();
        return None;
    };
    let plugin_kind = match kind.value.as_str() {
        "filter" => Some(PluginKind::Filter),
        "enrich" => Some(PluginKind::Enrich),
        "route" => Some(PluginKind::Route),
        "transform" => Some(PluginKind::Transform),
        "aggregate" => Some(PluginKind::Aggregate),
        _ => None,
    };
    if let Some(pk) = plugin_kind
        && (t.has("plugin")
            || matches!(
                pk,
                PluginKind::Enrich | PluginKind::Transform | PluginKind::Aggregate
            ))
    {
        let w = WasmStageConfig::parse(t, d, pk)?;
        return Some(StageConfig {
            name,
            kind: StageKind::Wasm(w),
        });
    }
    let k = match kind.value.as_str() {
        "filter" => StageKind::Filter(FilterConfig::parse(t, d)?),
        "route" => {
            let mut r = RouteConfig::parse(t, d)?;
            for rule in &mut r.rules {
                rule.mask = resolve_sinks(&rule.sink_names, sink_names, d);
            }
            r.default_mask = match &r.default_names {
                Some(names) => resolve_sinks(names, sink_names, d),
                None => default_sinks,
            };
            StageKind::Route(r)
        }
        other => {
            d.error(
                &kind.spot,
                format!(
                    "unknown stage kind {other:?}; expected one of: filter, enrich, route, transform, aggregate"
                ),
            );
            t.skip_rest();
            return None;
        }
    };
    Some(StageConfig { name, kind: k })
}

/// Builds a config from quick-mode arguments: one `--source` URI (default `stdin`), one or more
/// `--sink` URIs, and optionally a dead-letter path.
/// A quick-mode `--stage KIND=PATH` with its `--stage-config JSON`, if one followed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuickStage {
    /// `filter=plugins/dist/json-filter.wasm`.
    pub spec: String,
    /// The plugin's config as JSON text.
    pub config: Option<String>,
}

/// Builds a config from quick-mode arguments: one `--source` URI (default `stdin`), plugin
/// stages in order, one or more `--sink` URIs, and optionally a dead-letter path.
pub fn from_quick(
    source: Option<&str>,
    stages: &[QuickStage],
    sinks: &[String],
    dead_letter: Option<&str>,
) -> Result<Config, ConfigErrors> {
    let mut d = Diagnostics::new();
    let source_arg = source.unwrap_or("stdin");
    let mut sources = Vec::new();
    match uri::to_table(source_arg, uri::Role::Source) {
        Ok((kind_name, table)) => {
            let origin = Origin::Arg(format!("--source {source_arg:?}"));
            let mut s = Section::root(&table, origin, &format!("sources.{kind_name}"));
            let name = Located {
                value: kind_name.clone(),
                spot: s.spot(),
            };
            if let Some(src) = read_source(&name, &mut s, &mut d) {
                sources.push(src);
            }
            s.finish(&mut d);
        }
        Err(e) => d.push(e),
    }
    let mut sink_cfgs = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for arg in sinks {
        match uri::to_table(arg, uri::Role::Sink) {
            Ok((kind_name, table)) => {
                let mut name = kind_name.clone();
                let mut n = 2;
                while names.contains(&name) {
                    name = format!("{kind_name}-{n}");
                    n += 1;
                }
                names.push(name.clone());
                let origin = Origin::Arg(format!("--sink {arg:?}"));
                let mut s = Section::root(&table, origin, &format!("sinks.{name}"));
                let located = Located {
                    value: name,
                    spot: s.spot(),
                };
                if let Some(sink) = read_sink(&located, &mut s, &mut d, DEFAULT_QUEUE) {
                    sink_cfgs.push(sink);
                }
                s.finish(&mut d);
            }
            Err(e) => d.push(e),
        }
    }
    if sinks.is_empty() {
        d.push(reader::ConfigError {
            location: reader::Location::Arg("--sink".into()),
            key_path: String::new(),
            message: "quick mode needs at least one --sink".into(),
        });
    }
    if sink_cfgs.iter().filter(|s| s.kind.is_stdout()).count() > 1 {
        d.push(reader::ConfigError {
            location: reader::Location::Arg("--sink".into()),
            key_path: String::new(),
            message: "only one stdout sink is possible".into(),
        });
    }
    let mut stage_cfgs = Vec::new();
    let sink_names: Vec<String> = sink_cfgs.iter().map(|s| s.name.clone()).collect();
    for (i, st) in stages.iter().enumerate() {
        let arg = match &st.config {
            Some(c) => format!("--stage {:?} --stage-config {c:?}", st.spec),
            None => format!("--stage {:?}", st.spec),
        };
        let Some((kind, path)) = st.spec.split_once('=') else {
            d.push(reader::ConfigError {
                location: reader::Location::Arg(arg),
                key_path: String::new(),
                message: "expected KIND=PLUGIN, e.g. filter=plugins/dist/json-filter.wasm".into(),
            });
            continue;
        };
        let mut table = toml_edit::Table::new();
        table.insert("kind", toml_edit::value(kind));
        table.insert("plugin", toml_edit::value(path));
        if let Some(c) = &st.config {
            table.insert("config", toml_edit::value(c.as_str()));
        }
        let mut s = Section::root(&table, Origin::Arg(arg), &format!("stages[{i}]"));
        let all = all_sinks(sink_names.len());
        if let Some(stage) = read_stage(i, &mut s, &mut d, &sink_names, all) {
            stage_cfgs.push(stage);
        }
        s.finish(&mut d);
    }
    let dead_letter = match dead_letter {
        Some(p) => DeadLetterConfig {
            path: p.into(),
            fsync_each: false,
        },
        None => DeadLetterConfig::default(),
    };
    let n = sink_cfgs.len();
    d.finish(Config {
        pipeline: PipelineConfig {
            queue: DEFAULT_QUEUE,
            default_sinks: all_sinks(n),
            shutdown_grace: Duration::from_secs(10),
            stage_workers: default_stage_workers(),
        },
        sources,
        stages: stage_cfgs,
        sinks: sink_cfgs,
        dead_letter,
        metrics: None,
    })
}

#[cfg(test)]
mod tests;
