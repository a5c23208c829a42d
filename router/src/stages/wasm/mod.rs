//! WebAssembly stages: the only module that knows wasmtime.
//!
//! A plugin is a component implementing one world of `wit/plugin.wit` (contract 0.1: `filter`,
//! `enrich` or `route`) or of `wit/v0.2/plugin.wit` (contract 0.2: `transform`, `aggregate`). It is compiled once (and cached on disk by [`cache`], keyed by the file's hash and
//! the engine's settings), pre-instantiated, and run inside a sandbox on every call. A batch
//! crosses into the plugin as one byte list plus spans.
//!
//! The parts:
//! - `engine` — the process-wide engine and its epoch ticker (call deadlines);
//! - `sandbox` — what an instance can reach (memory cap, the gated `log`, an empty WASI
//!   context) and [`StageGuard`], what a stage's workers and instances share (log gate,
//!   warning gate, breaker);
//! - `plugin` — loading, import and world checks, instances and `init`, [`inspect`];
//! - [`driver`] (pure) — call ranges, isolating failing records, the breaker's use;
//! - [`answer`] (pure) — an answer checked against the contract and applied to verdicts;
//! - [`outputs`] (pure) — 0.2 answers' output records and their bounds;
//! - [`emit`] (pure) — the batch a 0.2 stage passes on, with keys, attributes and routes;
//! - `stage` — [`WasmStage`]: the calls, the `on_error` policy, the rebuilt batch;
//! - [`aggregate`] — aggregate stages' instances shared by the workers, key affinity, ticks.
//!
//! The sandbox's promises, per stage (numbers are the defaults, all settable per stage):
//! an instance's memory is capped (`memory_max_bytes`, 64 MiB) and a call's CPU time too
//! (`timeout_ms`, 100 ms; `init_timeout_ms`, 1 s, for a new instance); what the host lifts from
//! the plugin's answers for one batch is bounded by `answer_bytes_max` (16 MiB) plus 64 bytes
//! per record — wasmtime refuses to lift more, so an oversized answer is never allocated —
//! and every message kept from it is cut to 1 KiB; an answer that breaks the contract is
//! rejected whole; the plugin's log is limited for the stage as a whole (100 messages and
//! 64 KiB a second, each message cut to 1 KiB, control characters escaped); isolating failing
//! records costs at most `isolate_failed_calls_max` (32) failed calls per call range; after
//! `breaker_failed_calls` (32) failed calls without a healthy range the stage trips and stops
//! calling the plugin for `breaker_cooldown_ms` (5 s, doubling per failed probe up to 5 min).
//! Host memory per stage worker stays within `memory_max_bytes + 2 x answer_bytes_max` plus
//! the batch itself.

pub mod aggregate;
pub mod answer;
pub mod cache;
pub mod config;
pub mod driver;
pub mod emit;
pub mod outputs;

mod bindings;
mod engine;
mod plugin;
mod sandbox;
mod stage;

pub use config::{OnError, PluginKind, WasmStageConfig};
pub use engine::{INSTANCES_MAX, engine};
pub use plugin::{DESTINATIONS_MAX, Plugin, PluginInfo, Slot, destination_names, inspect};
pub use sandbox::{Grants, StageGuard};
pub use stage::{Emitting, WasmStage};

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
    #[error(
        "{path} does not implement the `{world}` world of edge-router:plugin@{version}: {message}"
    )]
    WrongWorld {
        /// The plugin file.
        path: String,
        /// The world expected.
        world: &'static str,
        /// Its contract version.
        version: &'static str,
        /// What did not match.
        message: String,
    },
    /// The component was built against another version of the contract.
    #[error(
        "{path} was built for {found}, but this router speaks edge-router:plugin@0.1.0 (filter, enrich, route) and @0.2.0 (transform, aggregate); rebuild it with the matching plugin SDK"
    )]
    Version {
        /// The plugin file.
        path: String,
        /// The interface name it uses.
        found: String,
    },
    /// The component imports something the router does not provide.
    #[error(
        "{path} imports `{import}`, which the router does not provide (plugins may import only edge-router:plugin/host and edge-router:plugin/types at @0.1.0 or @0.2.0, and WASI 0.2)"
    )]
    UnknownImport {
        /// The plugin file.
        path: String,
        /// The import's name.
        import: String,
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
