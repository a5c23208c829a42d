//! WebAssembly stages: the only module that knows wasmtime.
//!
//! A plugin is a component implementing one world of `wit/plugin.wit` (`filter`, `enrich` or
//! `route`). It is compiled once (and cached on disk by [`cache`], keyed by the file's hash and
//! the engine's settings), pre-instantiated, and run inside a sandbox on
//! every call: a memory cap per instance, a CPU deadline per call (epoch interruption), and no
//! imports but the router's rate-limited log. A batch crosses into the plugin as one byte list
//! plus spans.
//!
//! A trap leaves the instance unusable and returns nothing, so the stage drops the instance,
//! re-instantiates, and re-runs the failed records in halves until the records that trap are
//! found; those follow the stage's `on_error` policy and every other record is processed
//! normally: none is lost or processed twice.

pub mod cache;
pub mod config;

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Engine, ResourceLimiter, Store};

use crate::core::accounting::Counters;
use crate::core::dead_letter::DeadLetter;
use crate::core::rate_limit::Repeats;
use crate::core::record::{Batch, Span};
use crate::stages::{Stage, StageError};
pub use config::{OnError, PluginKind, WasmStageConfig};

#[allow(missing_docs, unsafe_code, clippy::all)]
mod bindings {
    pub mod filter {
        wasmtime::component::bindgen!({
            path: "../wit",
            world: "filter",
            // Batches are lowered straight from the router's buffers, without a copy into an
            // owned `Vec` first.
            ownership: Borrowing { duplicate_if_necessary: true },
        });
    }
    pub mod enrich {
        wasmtime::component::bindgen!({
            path: "../wit",
            world: "enrich",
            ownership: Borrowing { duplicate_if_necessary: true },
            with: {
                "edge-router:plugin/types": super::filter::edge_router::plugin::types,
                "edge-router:plugin/host": super::filter::edge_router::plugin::host,
            },
        });
    }
    pub mod route {
        wasmtime::component::bindgen!({
            path: "../wit",
            world: "route",
            ownership: Borrowing { duplicate_if_necessary: true },
            with: {
                "edge-router:plugin/types": super::filter::edge_router::plugin::types,
                "edge-router:plugin/host": super::filter::edge_router::plugin::host,
            },
        });
    }
}

use bindings::filter::edge_router::plugin::{host, types};

/// How often the engine's epoch advances; call deadlines are counted in these ticks.
const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Problems loading or starting a plugin.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The file could not be read.
    #[error("cannot read plugin {path}: {error}")]
    Read {
        /// The plugin file.
        path: String,
        /// Why.
        error: std::io::Error,
    },
    /// The file is a core WebAssembly module, not a component.
    #[error(
        "{path} is a core WebAssembly module, not a component; wrap it with `wasm-tools component new` (plugins/build.sh does)"
    )]
    CoreModule {
        /// The plugin file.
        path: String,
    },
    /// The file is not WebAssembly, or is damaged.
    #[error("{path} is not a valid WebAssembly component: {message}")]
    Invalid {
        /// The plugin file.
        path: String,
        /// The compiler's message.
        message: String,
    },
    /// The component does not implement the world the stage needs.
    #[error("{path} does not implement the `{world}` world of edge-router:plugin@0.1.0: {message}")]
    WrongWorld {
        /// The plugin file.
        path: String,
        /// The world expected.
        world: &'static str,
        /// What did not match.
        message: String,
    },
    /// The component was built against another version of the contract.
    #[error(
        "{path} was built for {found}, but this router speaks edge-router:plugin@0.1.0; rebuild it with the matching plugin SDK"
    )]
    Version {
        /// The plugin file.
        path: String,
        /// The interface name it uses.
        found: String,
    },
    /// The plugin's `init` rejected its config.
    #[error("the plugin rejected its config: {0}")]
    Init(String),
    /// Instantiating or calling `init` failed (a trap).
    #[error("the plugin failed to start: {0}")]
    Start(String),
    /// The engine could not be set up.
    #[error("cannot set up the WebAssembly engine: {0}")]
    Engine(String),
}

/// Most plugin instances alive at once in the process (the pooling allocator's slots). Every
/// stage worker keeps one instance per plugin stage.
pub const INSTANCES_MAX: usize = 64;

/// The process-wide engine, with the epoch ticker started.
pub fn engine() -> Result<&'static Engine, PluginError> {
    static ENGINE: OnceLock<Result<Engine, String>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let mut cfg = wasmtime::Config::new();
            cfg.wasm_component_model(true);
            cfg.epoch_interruption(true);
            cfg.cranelift_opt_level(wasmtime::OptLevel::Speed);
            let mut pool = wasmtime::PoolingAllocationConfig::new();
            pool.total_component_instances(INSTANCES_MAX as u32)
                .total_core_instances(256)
                .total_memories(256)
                .total_tables(256)
                .max_memory_size(4 << 30);
            cfg.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
            let engine = Engine::new(&cfg).map_err(|e| format!("{e:#}"))?;
            let weak = engine.weak();
            std::thread::Builder::new()
                .name("wasm-epoch".into())
                .spawn(move || {
                    while let Some(e) = weak.upgrade() {
                        e.increment_epoch();
                        drop(e);
                        std::thread::sleep(EPOCH_TICK);
                    }
                })
                .map_err(|e| format!("cannot start the epoch thread: {e}"))?;
            Ok(engine)
        })
        .as_ref()
        .map_err(|e| PluginError::Engine(e.clone()))
}

/// Caps an instance's memory and records when the cap was hit.
struct Limiter {
    memory_max: usize,
    hit: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_max {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1 << 20)
    }
}

/// What a plugin instance can reach: a rate-limited log and, for components that import WASI
/// (Python, JavaScript), a WASI context with nothing in it unless the stage grants it.
struct HostState {
    limiter: Limiter,
    stage: Arc<str>,
    logs: Repeats,
    wasi: wasmtime_wasi::WasiCtx,
    table: wasmtime::component::ResourceTable,
}

impl wasmtime_wasi::WasiView for HostState {
    fn ctx(&mut self) -> wasmtime_wasi::WasiCtxView<'_> {
        wasmtime_wasi::WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// A wall clock stopped at the Unix epoch, for plugins not granted the real one.
struct StoppedWallClock;

impl wasmtime_wasi::HostWallClock for StoppedWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

/// A monotonic clock that advances one nanosecond per reading, for plugins not granted the
/// real one: deterministic, yet never goes backwards or stands still.
struct CountingClock(std::sync::atomic::AtomicU64);

impl wasmtime_wasi::HostMonotonicClock for CountingClock {
    fn resolution(&self) -> u64 {
        1
    }
    fn now(&self) -> u64 {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }
}

/// The WASI context of one instance: no files, no sockets, no environment, no arguments, no
/// standard streams; clocks and randomness are deterministic unless granted.
fn wasi_ctx(grants: &Grants) -> Result<wasmtime_wasi::WasiCtx, PluginError> {
    use rand::SeedableRng as _;
    let mut b = wasmtime_wasi::WasiCtxBuilder::new();
    b.allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .socket_addr_check(|_, _| Box::pin(async { false }));
    if std::env::var_os("EDGE_ROUTER_PLUGIN_STDERR").is_some() {
        // For plugin authors: see what the guest prints (e.g. a Python traceback).
        b.inherit_stderr();
    }
    if !grants.clock {
        b.wall_clock(StoppedWallClock)
            .monotonic_clock(CountingClock(std::sync::atomic::AtomicU64::new(0)));
    }
    if !grants.random {
        b.secure_random(rand::rngs::StdRng::seed_from_u64(0))
            .insecure_random(rand::rngs::StdRng::seed_from_u64(1))
            .insecure_random_seed(0);
    }
    if let Some(dir) = &grants.read_only_dir {
        b.preopened_dir(dir, "/data", wasmtime_wasi::FsPerms::ReadOnly)
            .map_err(|e| {
                PluginError::Start(format!("cannot grant directory {}: {e:#}", dir.display()))
            })?;
    }
    Ok(b.build())
}

/// What a stage grants its plugin beyond the default sandbox.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// The real wall and monotonic clocks.
    pub clock: bool,
    /// Real randomness.
    pub random: bool,
    /// A directory the plugin may read, seen as `/data`.
    pub read_only_dir: Option<std::path::PathBuf>,
}

impl host::Host for HostState {
    fn log(&mut self, level: host::Level, message: String) {
        let Some(suppressed) = self.logs.admit(Instant::now()) else {
            return;
        };
        let stage = &*self.stage;
        match level {
            host::Level::Error => tracing::error!(stage, suppressed, "{message}"),
            host::Level::Warn => tracing::warn!(stage, suppressed, "{message}"),
            host::Level::Info => tracing::info!(stage, suppressed, "{message}"),
            host::Level::Debug => tracing::debug!(stage, suppressed, "{message}"),
            host::Level::Trace => tracing::trace!(stage, suppressed, "{message}"),
        }
    }
}

impl types::Host for HostState {}

enum Pre {
    Filter(bindings::filter::FilterPre<HostState>),
    Enrich(bindings::enrich::EnrichPre<HostState>),
    Route(bindings::route::RoutePre<HostState>),
}

enum Bound {
    Filter(bindings::filter::Filter),
    Enrich(bindings::enrich::Enrich),
    Route(bindings::route::Route),
}

/// A compiled, pre-instantiated plugin. Load it once and share it (`Arc`) between the stage
/// workers: each makes its own instances from it ([`WasmStage::from_plugin`]).
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

impl Plugin {
    /// Compiles (or loads from the cache) and pre-instantiates the plugin at `path`, checking
    /// that it implements `kind`'s world.
    pub fn load(path: &Path, kind: PluginKind) -> Result<Plugin, PluginError> {
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
        let engine = engine()?;
        let component = cache::load(engine, &bytes, cache::dir().as_deref()).map_err(|e| {
            PluginError::Invalid {
                path: shown.clone(),
                message: first_line(&format!("{e:#}")).to_owned(),
            }
        })?;
        check_version(engine, &component, &shown)?;
        let mut linker: Linker<HostState> = Linker::new(engine);
        let wrong = |e: wasmtime::Error| PluginError::WrongWorld {
            path: shown.clone(),
            world: kind.world(),
            message: format!("{e:#}"),
        };
        bindings::filter::Filter::add_to_linker::<HostState, HasSelf<HostState>>(
            &mut linker,
            |s| s,
        )
        .map_err(|e| PluginError::Engine(format!("{e:#}")))?;
        // Components made by componentize-py or componentize-js import WASI; Rust ones built
        // for wasm32-unknown-unknown import none and get none.
        let needs_wasi = component
            .component_type()
            .imports(engine)
            .any(|(name, _)| name.starts_with("wasi:"));
        if needs_wasi {
            wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
                .map_err(|e| PluginError::Engine(format!("{e:#}")))?;
        }
        let pre = linker.instantiate_pre(&component).map_err(wrong)?;
        let pre = match kind {
            PluginKind::Filter => {
                Pre::Filter(bindings::filter::FilterPre::new(pre).map_err(wrong)?)
            }
            PluginKind::Enrich => {
                Pre::Enrich(bindings::enrich::EnrichPre::new(pre).map_err(wrong)?)
            }
            PluginKind::Route => Pre::Route(bindings::route::RoutePre::new(pre).map_err(wrong)?),
        };
        Ok(Plugin {
            pre,
            kind,
            content_hash: xxhash_rust::xxh3::xxh3_128(&bytes),
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

    /// A fresh instance, initialized with `config_json`. For a route plugin, also the
    /// destination names it returned.
    fn instantiate(
        &self,
        stage: &Arc<str>,
        cfg: &WasmStageConfig,
    ) -> Result<(Instance, Vec<String>), PluginError> {
        let (config_json, memory_max, timeout) =
            (&cfg.config_json, cfg.memory_max_bytes, cfg.timeout);
        let engine = engine()?;
        let state = HostState {
            wasi: wasi_ctx(&cfg.grants)?,
            table: wasmtime::component::ResourceTable::new(),
            limiter: Limiter {
                memory_max: usize::try_from(memory_max).unwrap_or(usize::MAX),
                hit: false,
            },
            stage: stage.clone(),
            logs: Repeats::new(100, Instant::now()),
        };
        let mut store = Store::new(engine, state);
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(ticks(timeout));
        let start = |e: wasmtime::Error| PluginError::Start(format!("{e:#}"));
        let host = host_name();
        let ctx = types::InitContext {
            stage_name: stage,
            host_name: &host,
        };
        let (bound, names) = match &self.pre {
            Pre::Filter(p) => {
                let b = p.instantiate(&mut store).map_err(start)?;
                b.call_init(&mut store, config_json, ctx)
                    .map_err(start)?
                    .map_err(PluginError::Init)?;
                (Bound::Filter(b), Vec::new())
            }
            Pre::Enrich(p) => {
                let b = p.instantiate(&mut store).map_err(start)?;
                b.call_init(&mut store, config_json, ctx)
                    .map_err(start)?
                    .map_err(PluginError::Init)?;
                (Bound::Enrich(b), Vec::new())
            }
            Pre::Route(p) => {
                let b = p.instantiate(&mut store).map_err(start)?;
                let names = b
                    .call_init(&mut store, config_json, ctx)
                    .map_err(start)?
                    .map_err(PluginError::Init)?;
                (Bound::Route(b), names)
            }
        };
        Ok((Instance { store, bound }, names))
    }
}

/// The contract's package and version, as plugins name it in their imports.
const PACKAGE: &str = "edge-router:plugin/";
const VERSION: &str = "@0.1.0";

/// Rejects components that import our interfaces at another version.
fn check_version(engine: &Engine, component: &Component, path: &str) -> Result<(), PluginError> {
    let ty = component.component_type();
    for (name, _) in ty.imports(engine) {
        if name.starts_with(PACKAGE) && !name.ends_with(VERSION) {
            return Err(PluginError::Version {
                path: path.to_owned(),
                found: name.to_owned(),
            });
        }
    }
    Ok(())
}

/// The destination names a route plugin returns from `init` (empty for other kinds).
pub fn destination_names(cfg: &WasmStageConfig) -> Result<Vec<String>, PluginError> {
    if cfg.kind != PluginKind::Route {
        return Ok(Vec::new());
    }
    let plugin = Plugin::load(&cfg.plugin, cfg.kind)?;
    let stage: Arc<str> = Arc::from("plugin");
    let (_, names) = plugin.instantiate(&stage, cfg)?;
    Ok(names)
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
    for kind in [PluginKind::Filter, PluginKind::Enrich, PluginKind::Route] {
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
    let bytes = std::fs::read(path).map_err(|error| PluginError::Read {
        path: path.display().to_string(),
        error,
    })?;
    let component =
        cache::load(engine, &bytes, cache::dir().as_deref()).map_err(|e| PluginError::Invalid {
            path: path.display().to_string(),
            message: format!("{e:#}"),
        })?;
    let ty = component.component_type();
    Ok(PluginInfo {
        worlds,
        imports: ty.imports(engine).map(|(n, _)| n.to_owned()).collect(),
        exports: ty.exports(engine).map(|(n, _)| n.to_owned()).collect(),
    })
}

fn ticks(timeout: Duration) -> u64 {
    (timeout.as_nanos() / EPOCH_TICK.as_nanos()).max(1) as u64 + 1
}

fn host_name() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

struct Instance {
    store: Store<HostState>,
    bound: Bound,
}

/// Why a call failed.
#[derive(Debug, Clone)]
struct Trapped {
    message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TrapKind {
    Timeout,
    Memory,
    Trap,
}

/// One call's answers, for a range of records.
enum Answers {
    Filter(Vec<bool>, Vec<(u32, String)>),
    /// Changed record indices, their payloads back to back, one end offset per changed record.
    Enrich(Vec<u32>, Vec<u8>, Vec<u32>, Vec<(u32, String)>),
    Route(Vec<Option<u32>>, Vec<(u32, String)>),
}

/// What the stage decided for one record. `Copy` (an error's message lives in the stage's
/// `messages`), so a batch's verdicts are one flat, reused vector.
#[derive(Debug, Clone, Copy)]
enum Verdict {
    Keep,
    Drop,
    /// The new payload is `outputs[out][start..end]` of the stage's enrich outputs.
    Replace {
        out: u32,
        start: u32,
        end: u32,
    },
    RouteTo(Option<u32>),
    /// The record failed; the message is `messages[i]` of the stage.
    Error(u32),
}

/// A stage running a plugin.
pub struct WasmStage {
    name: Arc<str>,
    cfg: WasmStageConfig,
    plugin: Arc<Plugin>,
    instance: Option<Instance>,
    /// Route plugins: sink mask per destination index.
    destination_masks: Vec<u64>,
    default_mask: u64,
    counters: Arc<Counters>,
    /// Record spans of one call, relative to its first record.
    scratch_spans: Vec<u32>,
    /// The payload buffers enrich calls returned for the batch in hand.
    outputs: Vec<Vec<u8>>,
    /// The batch in hand's verdicts (kept between batches for their allocation).
    verdicts: Vec<Verdict>,
    /// The messages of the batch in hand's [`Verdict::Error`]s.
    messages: Vec<String>,
}

impl WasmStage {
    /// Loads the plugin, starts one instance (so a config the plugin rejects stops start-up),
    /// and for a route plugin resolves its destination names against `sink_names`.
    pub fn new(
        name: &str,
        cfg: WasmStageConfig,
        sink_names: &[String],
        default_mask: u64,
        counters: Arc<Counters>,
    ) -> Result<WasmStage, PluginError> {
        let plugin = Arc::new(Plugin::load(&cfg.plugin, cfg.kind)?);
        WasmStage::from_plugin(name, plugin, cfg, sink_names, default_mask, counters)
    }

    /// Like [`WasmStage::new`], with a plugin already loaded (`cfg.plugin` is not read again):
    /// starts an instance of its own. Stage workers share one [`Plugin`] and call this once
    /// each, so a plugin is compiled (or mapped from the cache) once however many workers run it.
    pub fn from_plugin(
        name: &str,
        plugin: Arc<Plugin>,
        cfg: WasmStageConfig,
        sink_names: &[String],
        default_mask: u64,
        counters: Arc<Counters>,
    ) -> Result<WasmStage, PluginError> {
        let name: Arc<str> = Arc::from(name);
        let (instance, names) = plugin.instantiate(&name, &cfg)?;
        let mut destination_masks = Vec::new();
        for n in &names {
            match sink_names.iter().position(|s| s == n) {
                Some(i) if i < 64 => destination_masks.push(1u64 << i),
                _ => {
                    return Err(PluginError::Init(format!(
                        "destination {n:?} is not a sink; the sinks are: {}",
                        sink_names.join(", ")
                    )));
                }
            }
        }
        Ok(WasmStage {
            name,
            cfg,
            plugin,
            instance: Some(instance),
            destination_masks,
            default_mask,
            counters,
            scratch_spans: Vec::new(),
            outputs: Vec::new(),
            verdicts: Vec::new(),
            messages: Vec::new(),
        })
    }

    fn instance(&mut self) -> Result<&mut Instance, PluginError> {
        if self.instance.is_none() {
            let (i, _) = self.plugin.instantiate(&self.name, &self.cfg)?;
            self.instance = Some(i);
        }
        self.instance
            .as_mut()
            .ok_or_else(|| PluginError::Start("no instance".into()))
    }

    /// Calls the plugin on records `range` of `batch`. A trap drops the instance.
    fn call(
        &mut self,
        batch: &Batch,
        range: std::ops::Range<usize>,
    ) -> Result<Result<Answers, Trapped>, PluginError> {
        let spans = &batch.spans()[range.clone()];
        let (Some(first), Some(last)) = (spans.first(), spans.last()) else {
            return Ok(Ok(match self.plugin.kind {
                PluginKind::Filter => Answers::Filter(Vec::new(), Vec::new()),
                PluginKind::Enrich => {
                    Answers::Enrich(Vec::new(), Vec::new(), Vec::new(), Vec::new())
                }
                PluginKind::Route => Answers::Route(Vec::new(), Vec::new()),
            }));
        };
        let base = first.start;
        let data = &batch.data()[base as usize..last.end as usize];
        // Taken out of `self` for the call (which borrows `self` mutably), put back after.
        let mut rebased = std::mem::take(&mut self.scratch_spans);
        rebased.clear();
        rebased.extend(spans.iter().flat_map(|s| [s.start - base, s.end - base]));
        let wit_batch = types::Batch {
            data,
            spans: &rebased,
            source: &batch.origin().source,
            arrival_unix_nanos: batch.origin().arrival_unix_nanos,
        };
        let timeout = self.cfg.timeout;
        let n = spans.len();
        let inst = self.instance()?;
        inst.store.set_epoch_deadline(ticks(timeout));
        inst.store.data_mut().limiter.hit = false;
        let result = match &inst.bound {
            Bound::Filter(b) => b.call_filter(&mut inst.store, wit_batch).map(|r| {
                Answers::Filter(
                    r.keep,
                    r.errors.into_iter().map(|e| (e.index, e.message)).collect(),
                )
            }),
            Bound::Enrich(b) => b.call_enrich(&mut inst.store, wit_batch).map(|r| {
                Answers::Enrich(
                    r.changed,
                    r.data,
                    r.ends,
                    r.errors.into_iter().map(|e| (e.index, e.message)).collect(),
                )
            }),
            Bound::Route(b) => b.call_route(&mut inst.store, wit_batch).map(|r| {
                Answers::Route(
                    r.destinations,
                    r.errors.into_iter().map(|e| (e.index, e.message)).collect(),
                )
            }),
        };
        let memory_hit = inst.store.data().limiter.hit;
        self.scratch_spans = rebased;
        match result {
            Ok(a) => {
                let ok = match &a {
                    Answers::Filter(k, _) => k.len() == n,
                    Answers::Route(d, _) => d.len() == n,
                    Answers::Enrich(..) => true,
                };
                if ok {
                    Ok(Ok(a))
                } else {
                    self.instance = None;
                    Ok(Err(Trapped {
                        message: format!(
                            "the plugin answered for the wrong number of records (expected {n})"
                        ),
                    }))
                }
            }
            Err(e) => {
                self.instance = None;
                let kind = if e.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::Interrupt)
                {
                    TrapKind::Timeout
                } else if memory_hit {
                    TrapKind::Memory
                } else {
                    TrapKind::Trap
                };
                let counter = match kind {
                    TrapKind::Timeout => &self.counters.plugin_timeouts,
                    TrapKind::Memory => &self.counters.plugin_memory_limit_hits,
                    TrapKind::Trap => &self.counters.plugin_traps,
                };
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let message = match kind {
                    TrapKind::Timeout => {
                        format!("the plugin ran longer than {} ms", timeout.as_millis())
                    }
                    TrapKind::Memory => format!(
                        "the plugin needed more than {} bytes of memory",
                        self.cfg.memory_max_bytes
                    ),
                    TrapKind::Trap => {
                        format!("the plugin trapped: {}", trap_summary(&e))
                    }
                };
                Ok(Err(Trapped { message }))
            }
        }
    }

    /// Runs records `range`, isolating records that make the plugin trap by re-running the
    /// range in halves on fresh instances.
    fn run_range(
        &mut self,
        batch: &Batch,
        range: std::ops::Range<usize>,
        verdicts: &mut [Verdict],
    ) -> Result<(), PluginError> {
        match self.call(batch, range.clone())? {
            Ok(answers) => {
                self.apply(range, answers, verdicts);
                Ok(())
            }
            Err(t) if range.len() == 1 => {
                verdicts[range.start] = self.error(t.message);
                Ok(())
            }
            Err(_) => {
                let mid = range.start + range.len() / 2;
                self.run_range(batch, range.start..mid, verdicts)?;
                self.run_range(batch, mid..range.end, verdicts)
            }
        }
    }

    fn apply(&mut self, range: std::ops::Range<usize>, answers: Answers, verdicts: &mut [Verdict]) {
        // Answers about records outside the call's range are ignored.
        let verdicts = &mut verdicts[range];
        let errors = match answers {
            Answers::Filter(keep, errors) => {
                for (v, k) in verdicts.iter_mut().zip(keep) {
                    *v = if k { Verdict::Keep } else { Verdict::Drop };
                }
                errors
            }
            Answers::Enrich(changed, data, ends, errors) => {
                let out = self.outputs.len() as u32;
                let mut start = 0u32;
                for (k, &i) in changed.iter().enumerate() {
                    let Some(v) = verdicts.get_mut(i as usize) else {
                        continue;
                    };
                    match ends.get(k) {
                        Some(&end) if start <= end && end as usize <= data.len() => {
                            *v = Verdict::Replace { out, start, end };
                            start = end;
                        }
                        _ => {
                            self.messages.push(format!(
                                "the plugin returned a bad end offset for its changed record {k} \
                                 ({} ends for {} changed records, {} bytes)",
                                ends.len(),
                                changed.len(),
                                data.len()
                            ));
                            *v = Verdict::Error(self.messages.len() as u32 - 1);
                        }
                    }
                }
                self.outputs.push(data);
                errors
            }
            Answers::Route(dest, errors) => {
                for (v, d) in verdicts.iter_mut().zip(dest) {
                    *v = Verdict::RouteTo(d);
                }
                errors
            }
        };
        for (i, message) in errors {
            if (i as usize) < verdicts.len() {
                self.counters
                    .plugin_record_errors
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                verdicts[i as usize] = self.error(format!("the plugin reported: {message}"));
            }
        }
    }

    /// A verdict for a failed record, keeping its message.
    fn error(&mut self, message: String) -> Verdict {
        self.messages.push(message);
        Verdict::Error(self.messages.len() as u32 - 1)
    }

    /// Splits `0..n` into call ranges within the record and byte limits.
    fn ranges(&self, batch: &Batch) -> Vec<std::ops::Range<usize>> {
        let mut out = Vec::new();
        let mut start = 0;
        let mut bytes = 0u64;
        for (i, s) in batch.spans().iter().enumerate() {
            let len = s.len() as u64;
            if i > start
                && (i - start >= self.cfg.batch_records_max
                    || bytes + len > self.cfg.batch_bytes_max)
            {
                out.push(start..i);
                start = i;
                bytes = 0;
            }
            bytes += len;
        }
        if start < batch.len() {
            out.push(start..batch.len());
        }
        out
    }
}

/// The trap's cause and the innermost frame, e.g. `wasm trap: wasm `unreachable` instruction
/// executed (in json_filter::eval)`; wasmtime's full message is a multi-line backtrace.
fn trap_summary(e: &wasmtime::Error) -> String {
    tracing::debug!("plugin trap: {e:?}");
    let cause = e
        .downcast_ref::<wasmtime::Trap>()
        .map_or_else(|| first_line(&format!("{e}")).to_owned(), |t| t.to_string());
    let frame = e.downcast_ref::<wasmtime::WasmBacktrace>().and_then(|bt| {
        bt.frames()
            .first()
            .and_then(|f| f.func_name().map(str::to_owned))
    });
    match frame {
        Some(f) => format!("{cause} (in {f})"),
        None => cause,
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

impl Stage for WasmStage {
    fn process(&mut self, batch: &mut Batch, dead: &mut Vec<DeadLetter>) -> Result<(), StageError> {
        // Taken out of `self` for the batch (the calls borrow `self` mutably), put back after.
        let mut verdicts = std::mem::take(&mut self.verdicts);
        verdicts.clear();
        verdicts.resize(batch.len(), Verdict::Keep);
        self.outputs.clear();
        self.messages.clear();
        let result = self.decide(batch, &mut verdicts, dead);
        self.verdicts = verdicts;
        result
    }
}

impl WasmStage {
    /// Runs the plugin over `batch`, applies the error policy, and applies the verdicts.
    fn decide(
        &mut self,
        batch: &mut Batch,
        verdicts: &mut [Verdict],
        dead: &mut Vec<DeadLetter>,
    ) -> Result<(), StageError> {
        for range in self.ranges(batch) {
            self.run_range(batch, range, verdicts)
                .map_err(|e| StageError(format!("stage `{}`: {e}", self.name)))?;
        }
        if !self.messages.is_empty() {
            // Errors follow the stage's policy.
            let mut dead_idx = Vec::new();
            for (i, v) in verdicts.iter_mut().enumerate() {
                if let Verdict::Error(m) = *v {
                    match self.cfg.on_error {
                        OnError::DeadLetter => dead_idx.push(i),
                        OnError::Drop => *v = Verdict::Drop,
                        OnError::Pass => *v = Verdict::Keep,
                        OnError::Fail => {
                            return Err(StageError(format!(
                                "stage `{}` (on_error = \"fail\"): record {}: {}",
                                self.name,
                                i + 1,
                                self.message(m)
                            )));
                        }
                    }
                }
            }
            if !dead_idx.is_empty() {
                let positions = batch.positions(&dead_idx);
                for (&i, position) in dead_idx.iter().zip(positions) {
                    let Verdict::Error(m) = verdicts[i] else {
                        continue;
                    };
                    let reason = format!("stage `{}`: {}", self.name, self.message(m));
                    dead.push(DeadLetter::of_record(batch, i, position, reason));
                }
            }
        }
        match self.plugin.kind {
            PluginKind::Filter => {
                if verdicts.iter().any(|v| !matches!(v, Verdict::Keep)) {
                    batch.retain_by(|i| matches!(verdicts.get(i), Some(Verdict::Keep) | None));
                }
            }
            PluginKind::Route => {
                let masks: Vec<u64> = verdicts
                    .iter()
                    .map(|v| match v {
                        Verdict::RouteTo(Some(d)) => self
                            .destination_masks
                            .get(*d as usize)
                            .copied()
                            .unwrap_or(self.default_mask),
                        Verdict::Error(_) => 0,
                        _ => self.default_mask,
                    })
                    .collect();
                let keep: Vec<bool> = masks.iter().map(|&m| m != 0).collect();
                batch.set_routes(masks);
                batch.retain_mask(&keep);
            }
            PluginKind::Enrich => {
                let keep: Vec<bool> = verdicts
                    .iter()
                    .map(|v| !matches!(v, Verdict::Error(_) | Verdict::Drop))
                    .collect();
                if verdicts
                    .iter()
                    .any(|v| matches!(v, Verdict::Replace { .. }))
                {
                    *batch = rebuilt(batch, verdicts, &self.outputs);
                }
                batch.retain_mask(&keep);
            }
        }
        Ok(())
    }

    /// The message of error `m` of the batch in hand.
    fn message(&self, m: u32) -> &str {
        self.messages.get(m as usize).map_or("", String::as_str)
    }
}

/// A copy of `batch` with replaced payloads, in one new chunk.
fn rebuilt(batch: &Batch, verdicts: &[Verdict], outputs: &[Vec<u8>]) -> Batch {
    let mut data = Vec::with_capacity(batch.data().len());
    let mut spans = Vec::with_capacity(batch.len());
    for (i, v) in verdicts.iter().enumerate() {
        let start = data.len() as u32;
        match v {
            Verdict::Replace { out, start, end } => data.extend_from_slice(
                outputs
                    .get(*out as usize)
                    .and_then(|o| o.get(*start as usize..*end as usize))
                    .unwrap_or_default(),
            ),
            _ => data.extend_from_slice(batch.payload(i)),
        }
        spans.push(Span {
            start,
            end: data.len() as u32,
        });
        data.push(b'\n');
    }
    let mut origin = batch.origin().clone();
    // Positions can no longer be counted from the new chunk.
    origin.position = crate::core::record::PositionBase::None;
    let mut b = Batch::new(Bytes::from(data), spans, origin);
    if batch.meta(0).is_some() {
        let meta = (0..batch.len())
            .map(|i| batch.meta(i).cloned().unwrap_or_default())
            .collect();
        b = b.with_meta(meta);
    }
    if let Some(routes) = batch.routes() {
        b.set_routes(routes.to_vec());
    }
    if let Some(hold) = batch.hold() {
        b = b.with_hold(hold.clone());
    }
    b
}
