//! Loading a plugin: read, compile (or map from [`super::cache`]), check the contract version,
//! the imports and the world, pre-instantiate; then instances, each initialized with the
//! stage's config. Also what `edge-router plugin check` reports ([`inspect`]).

use std::path::Path;
use std::sync::Arc;

use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store};

use super::bindings::{self, types, types02};
use super::config::{PluginKind, WasmStageConfig};
use super::engine::{engine, ticks};
use super::sandbox::{self, HostState, StageGuard};
use super::{PluginError, cache};
use crate::core::text::{MESSAGE_BYTES_MAX, clean};

/// The contract's package, as plugins name it in their imports.
const PACKAGE: &str = "edge-router:plugin/";
/// The interfaces of the contract a plugin may import, in each version the router speaks.
const TYPES: &str = "edge-router:plugin/types@0.1.0";
const HOST: &str = "edge-router:plugin/host@0.1.0";
const TYPES_02: &str = "edge-router:plugin/types@0.2.0";
const HOST_02: &str = "edge-router:plugin/host@0.2.0";

/// Most destination names a route plugin's `init` may return (a record's sinks are a 64-bit
/// mask).
pub const DESTINATIONS_MAX: usize = 64;

enum Pre {
    Filter(bindings::filter::FilterPre<HostState>),
    Enrich(bindings::enrich::EnrichPre<HostState>),
    Route(bindings::route::RoutePre<HostState>),
    Transform(bindings::transform::TransformPre<HostState>),
    Aggregate(bindings::aggregate::AggregatePre<HostState>),
}

/// An instance's exports, bound.
pub(super) enum Bound {
    Filter(bindings::filter::Filter),
    Enrich(bindings::enrich::Enrich),
    Route(bindings::route::Route),
    Transform(bindings::transform::Transform),
    Aggregate(bindings::aggregate::Aggregate),
}

/// What `init` answered besides success.
#[derive(Debug, Clone, Default)]
pub(super) struct InitInfo {
    /// Destination names (route plugins and 0.2 plugins).
    pub(super) names: Vec<String>,
    /// 0.2 plugins: whether batches carry each record's metadata.
    pub(super) wants_metadata: bool,
}

/// Which of a stage's instances is being made: `index` of `count` (0.2 plugins are told).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// 0-based.
    pub index: u32,
    /// Instances side by side (one per stage worker).
    pub count: u32,
}

impl Slot {
    /// The only instance.
    pub const ONE: Slot = Slot { index: 0, count: 1 };
}

/// A live instance: its store and its bound exports.
pub(super) struct Instance {
    pub(super) store: Store<HostState>,
    pub(super) bound: Bound,
}

/// A compiled, pre-instantiated plugin. Load it once and share it (`Arc`) between the stage
/// workers: each makes its own instances from it.
pub struct Plugin {
    pre: Pre,
    kind: PluginKind,
    /// Hash of the component file's bytes.
    content_hash: u128,
}

/// Says whether `bytes` start like a core module (as opposed to a component).
fn is_core_module(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes[..4] == *b"\0asm" && bytes[4..8] == [1, 0, 0, 0]
}

/// Reads and compiles (or maps from the cache) the component at `path`.
fn compile(path: &Path) -> Result<(Component, u128), PluginError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|error| PluginError::Read {
        path: shown.clone(),
        error,
    })?;
    if is_core_module(&bytes) {
        return Err(PluginError::CoreModule { path: shown });
    }
    if !bytes.starts_with(b"\0asm") {
        return Err(PluginError::Invalid {
            path: shown,
            message: "not a WebAssembly file (it does not start with \"\\0asm\")".into(),
        });
    }
    let component = cache::load(engine()?, &bytes, cache::dir().as_deref()).map_err(|e| {
        PluginError::Invalid {
            path: shown.clone(),
            message: clean(first_line(&format!("{e:#}")), MESSAGE_BYTES_MAX),
        }
    })?;
    Ok((component, xxhash_rust::xxh3::xxh3_128(&bytes)))
}

impl Plugin {
    /// Compiles (or loads from the cache) and pre-instantiates the plugin at `path`, checking
    /// its contract version, that it imports nothing the router does not provide, and that it
    /// implements `kind`'s world.
    pub fn load(path: &Path, kind: PluginKind) -> Result<Plugin, PluginError> {
        let shown = path.display().to_string();
        let (component, content_hash) = compile(path)?;
        let engine = engine()?;
        check_imports(engine, &component, &shown)?;
        let mut linker: Linker<HostState> = Linker::new(engine);
        let setup = |e: wasmtime::Error| PluginError::Engine(format!("{e:#}"));
        linker.instance(TYPES).map_err(setup)?;
        linker
            .instance(HOST)
            .and_then(|mut host| host.func_wrap("log", sandbox::log))
            .map_err(setup)?;
        linker.instance(TYPES_02).map_err(setup)?;
        linker
            .instance(HOST_02)
            .and_then(|mut host| host.func_wrap("log", sandbox::log02))
            .map_err(setup)?;
        // Components made by componentize-py or componentize-js import WASI; Rust ones built
        // for wasm32-unknown-unknown import none and get none.
        let needs_wasi = component
            .component_type()
            .imports(engine)
            .any(|(name, _)| name.starts_with("wasi:"));
        if needs_wasi {
            wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(setup)?;
        }
        let wrong = |e: wasmtime::Error| PluginError::WrongWorld {
            path: shown.clone(),
            world: kind.world(),
            version: kind.version(),
            message: clean(&format!("{e:#}"), MESSAGE_BYTES_MAX),
        };
        let pre = linker.instantiate_pre(&component).map_err(wrong)?;
        let pre = match kind {
            PluginKind::Filter => {
                Pre::Filter(bindings::filter::FilterPre::new(pre).map_err(wrong)?)
            }
            PluginKind::Enrich => {
                Pre::Enrich(bindings::enrich::EnrichPre::new(pre).map_err(wrong)?)
            }
            PluginKind::Route => Pre::Route(bindings::route::RoutePre::new(pre).map_err(wrong)?),
            PluginKind::Transform => {
                Pre::Transform(bindings::transform::TransformPre::new(pre).map_err(wrong)?)
            }
            PluginKind::Aggregate => {
                Pre::Aggregate(bindings::aggregate::AggregatePre::new(pre).map_err(wrong)?)
            }
        };
        Ok(Plugin {
            pre,
            kind,
            content_hash,
        })
    }

    /// A hash of the component file this plugin was loaded from (a reload compares it to see
    /// whether the file changed).
    pub fn content_hash(&self) -> u128 {
        self.content_hash
    }

    /// The world this plugin implements.
    pub fn kind(&self) -> PluginKind {
        self.kind
    }

    /// A fresh instance of stage `guard` (its instance `slot`), initialized with the stage's
    /// config within `init_timeout`, and what its `init` answered.
    pub(super) fn instantiate(
        &self,
        guard: &Arc<StageGuard>,
        cfg: &WasmStageConfig,
        slot: Slot,
    ) -> Result<(Instance, InitInfo), PluginError> {
        let mut store = Store::new(engine()?, HostState::new(cfg, guard.clone())?);
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(ticks(cfg.init_timeout));
        // `init`'s answer (an error message, destination names) is lifted within the same
        // budget as a batch's answers.
        store.set_hostcall_fuel(usize::try_from(cfg.answer_bytes_max).unwrap_or(usize::MAX));
        let host = host_name();
        let ctx = types::InitContext {
            stage_name: guard.name(),
            host_name: &host,
        };
        let ctx02 = types02::InitContext {
            stage_name: guard.name(),
            host_name: &host,
            instances: slot.count,
            instance: slot.index,
        };
        let config_json = cfg.config_json.as_str();
        let names = |names: Vec<String>| InitInfo {
            names,
            wants_metadata: false,
        };
        let answered = |a: types02::InitAnswer| InitInfo {
            names: a.destinations,
            wants_metadata: a.wants_metadata,
        };
        let outcome = match &self.pre {
            Pre::Filter(p) => p.instantiate(&mut store).and_then(|b| {
                let r = b.call_init(&mut store, config_json, ctx)?;
                Ok((Bound::Filter(b), r.map(|()| InitInfo::default())))
            }),
            Pre::Enrich(p) => p.instantiate(&mut store).and_then(|b| {
                let r = b.call_init(&mut store, config_json, ctx)?;
                Ok((Bound::Enrich(b), r.map(|()| InitInfo::default())))
            }),
            Pre::Route(p) => p.instantiate(&mut store).and_then(|b| {
                let r = b.call_init(&mut store, config_json, ctx)?;
                Ok((Bound::Route(b), r.map(names)))
            }),
            Pre::Transform(p) => p.instantiate(&mut store).and_then(|b| {
                let r = b.call_init(&mut store, config_json, ctx02)?;
                Ok((Bound::Transform(b), r.map(answered)))
            }),
            Pre::Aggregate(p) => p.instantiate(&mut store).and_then(|b| {
                let r = b.call_init(&mut store, config_json, ctx02)?;
                Ok((Bound::Aggregate(b), r.map(answered)))
            }),
        };
        let (bound, answer) = outcome.map_err(|e| start_error(&e, cfg))?;
        let info = answer.map_err(|m| PluginError::Init(clean(&m, MESSAGE_BYTES_MAX)))?;
        if info.names.len() > DESTINATIONS_MAX {
            return Err(PluginError::Init(format!(
                "init returned {} destination names; at most {DESTINATIONS_MAX} are allowed",
                info.names.len()
            )));
        }
        Ok((Instance { store, bound }, info))
    }
}

/// Why instantiating or `init` failed, in words that name the setting involved.
fn start_error(e: &wasmtime::Error, cfg: &WasmStageConfig) -> PluginError {
    if e.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::Interrupt) {
        PluginError::Start(format!(
            "init ran longer than init_timeout_ms ({} ms)",
            cfg.init_timeout.as_millis()
        ))
    } else if is_fuel_exhausted(e) {
        PluginError::Start(format!(
            "init's answer is larger than answer_bytes_max ({} bytes)",
            cfg.answer_bytes_max
        ))
    } else {
        PluginError::Start(trap_summary(e))
    }
}

/// True when `e` is wasmtime refusing to lift more of an answer than the store's hostcall
/// fuel (the stage's answer budget) allows.
pub(super) fn is_fuel_exhausted(e: &wasmtime::Error) -> bool {
    format!("{e:#}").contains("fuel allocated for hostcalls has been exhausted")
}

/// Rejects components that import our interfaces at another version, or anything the router
/// does not provide (only the contract's `types` and `host`, and WASI).
fn check_imports(engine: &Engine, component: &Component, path: &str) -> Result<(), PluginError> {
    let ty = component.component_type();
    for (name, _) in ty.imports(engine) {
        if name.starts_with(PACKAGE) && !name.ends_with("@0.1.0") && !name.ends_with("@0.2.0") {
            return Err(PluginError::Version {
                path: path.to_owned(),
                found: clean(name, MESSAGE_BYTES_MAX),
            });
        }
        if ![TYPES, HOST, TYPES_02, HOST_02].contains(&name) && !name.starts_with("wasi:") {
            return Err(PluginError::UnknownImport {
                path: path.to_owned(),
                import: clean(name, MESSAGE_BYTES_MAX),
            });
        }
    }
    Ok(())
}

/// The destination names a route, transform or aggregate plugin returns from `init` (empty for
/// other kinds).
pub fn destination_names(cfg: &WasmStageConfig) -> Result<Vec<String>, PluginError> {
    if matches!(cfg.kind, PluginKind::Filter | PluginKind::Enrich) {
        return Ok(Vec::new());
    }
    let plugin = Plugin::load(&cfg.plugin, cfg.kind)?;
    let guard = StageGuard::new("plugin", cfg, Default::default());
    let (_, info) = plugin.instantiate(&guard, cfg, Slot::ONE)?;
    Ok(info.names)
}

/// What `edge-router plugin check` reports.
#[derive(Debug, Clone)]
pub struct PluginInfo {
    /// Worlds of the contract the component implements.
    pub worlds: Vec<&'static str>,
    /// Everything it imports.
    pub imports: Vec<String>,
    /// Everything it exports.
    pub exports: Vec<String>,
}

/// Loads a component and says which worlds it implements and what it imports.
pub fn inspect(path: &Path) -> Result<PluginInfo, PluginError> {
    let mut worlds = Vec::new();
    let mut last_err = None;
    for kind in [
        PluginKind::Filter,
        PluginKind::Enrich,
        PluginKind::Route,
        PluginKind::Transform,
        PluginKind::Aggregate,
    ] {
        match Plugin::load(path, kind) {
            Ok(_) => worlds.push(kind.world()),
            Err(e @ PluginError::WrongWorld { .. }) => last_err = Some(e),
            Err(e) => return Err(e),
        }
    }
    if worlds.is_empty()
        && let Some(e) = last_err
    {
        return Err(e);
    }
    let engine = engine()?;
    let (component, _) = compile(path)?;
    let ty = component.component_type();
    Ok(PluginInfo {
        worlds,
        imports: ty
            .imports(engine)
            .map(|(n, _)| clean(n, MESSAGE_BYTES_MAX))
            .collect(),
        exports: ty
            .exports(engine)
            .map(|(n, _)| clean(n, MESSAGE_BYTES_MAX))
            .collect(),
    })
}

/// The trap's cause and the innermost frame, e.g. `wasm trap: wasm `unreachable` instruction
/// executed (in json_filter::eval)`; wasmtime's full message is a multi-line backtrace. The
/// frame's name comes from the plugin (its name section), so it is cleaned.
pub(super) fn trap_summary(e: &wasmtime::Error) -> String {
    tracing::debug!("plugin trap: {}", clean(&format!("{e:?}"), 16 << 10));
    let cause = e.downcast_ref::<wasmtime::Trap>().map_or_else(
        || clean(first_line(&format!("{e}")), MESSAGE_BYTES_MAX),
        |t| t.to_string(),
    );
    let frame = e.downcast_ref::<wasmtime::WasmBacktrace>().and_then(|bt| {
        bt.frames()
            .first()
            .and_then(|f| f.func_name().map(|n| clean(n, 256)))
    });
    match frame {
        Some(f) => format!("{cause} (in {f})"),
        None => cause,
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

fn host_name() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}
