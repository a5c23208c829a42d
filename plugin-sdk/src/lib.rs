//! Write [edge-router](https://github.com) stages as WebAssembly components.
//!
//! A stage is a type implementing [`Filter`], [`Enrich`] or [`Route`] (contract
//! `edge-router:plugin@0.1.0`), or [`Transform`] or [`Aggregate`] (contract `@0.2.0`), exported
//! with [`export_filter!`], [`export_enrich!`], [`export_route!`], `export_transform!` or
//! `export_aggregate!` (0.2 needs the crate's feature `v0-2`; without it a plugin imports nothing
//! of 0.2 and loads in routers that speak only 0.1). The crate carries the WIT contract (`wit/plugin.wit`,
//! `wit/v0.2/plugin.wit`) and the generated bindings; plugin authors never see them.
//! Records arrive as [`Record`]s borrowing the batch's bytes; [`Record::field`] reads one JSON
//! field by scanning, without parsing the whole document.
//!
//! ```
//! use edge_router_plugin::{Context, Filter, JsonPath, Record};
//!
//! /// Keeps records whose `temperature` is at most `max`.
//! struct Cool { path: JsonPath, max: f64 }
//!
//! impl Filter for Cool {
//!     fn init(config: &str, _ctx: &Context) -> Result<Self, String> {
//!         let max = config.trim().parse().map_err(|e| format!("config must be a number: {e}"))?;
//!         Ok(Cool { path: JsonPath::parse("temperature").map_err(|e| e.to_string())?, max })
//!     }
//!     fn keep(&mut self, rec: &Record) -> Result<bool, String> {
//!         let t = rec.field(&self.path).and_then(|v| v.as_f64()).ok_or("no temperature")?;
//!         Ok(t <= self.max)
//!     }
//! }
//! // In the plugin crate (a `cdylib`): edge_router_plugin::export_filter!(Cool);
//!
//! // The logic runs natively too, so it can be tested with `cargo test`:
//! let keep = edge_router_plugin::testing::filter::<Cool>(
//!     "80",
//!     &[br#"{"temperature":70}"#, br#"{"temperature":90}"#, b"junk"],
//! ).unwrap();
//! assert_eq!(keep, vec![Ok(true), Ok(false), Err("no temperature".to_string())]);
//! ```
//!
//! Build a plugin with `cargo build --release --target wasm32-unknown-unknown` and turn the
//! module into a component with `wasm-tools component new`; `plugins/build.sh` in the
//! edge-router repository does both.

#![cfg_attr(not(test), deny(clippy::unwrap_used))]

// Lets the generated bindings name this crate the same way from inside and outside.
extern crate self as edge_router_plugin;

/// Field paths and the JSON scanner, the same code the router uses (`edge-router-jsonpath`).
pub use edge_router_jsonpath as jsonpath;

#[doc(hidden)]
pub mod glue;
pub mod table;
pub mod testing;
#[cfg(feature = "v0-2")]
pub mod v02;

pub use jsonpath::{JsonPath, JsonValue};
#[cfg(feature = "v0-2")]
pub use v02::{Emitter, Meta, Output, Setup};
// A 0.2 stage reads a record's metadata with [`Emitter::input_meta`] (a field on [`Record`]
// would break 0.1 plugins that build records in their tests).

/// Generated bindings of the `filter` world (used by [`export_filter!`]).
#[doc(hidden)]
#[allow(missing_docs, unsafe_code, clippy::all)]
pub mod filter_world {
    wit_bindgen::generate!({
        path: "wit",
        world: "filter",
        pub_export_macro: true,
        export_macro_name: "export_filter_world",
        default_bindings_module: "edge_router_plugin::filter_world",
        runtime_path: "edge_router_plugin::wit_bindgen_rt",
    });
}

/// Generated bindings of the `enrich` world (used by [`export_enrich!`]).
#[doc(hidden)]
#[allow(missing_docs, unsafe_code, clippy::all)]
pub mod enrich_world {
    wit_bindgen::generate!({
        path: "wit",
        world: "enrich",
        pub_export_macro: true,
        export_macro_name: "export_enrich_world",
        default_bindings_module: "edge_router_plugin::enrich_world",
        runtime_path: "edge_router_plugin::wit_bindgen_rt",
    });
}

/// Generated bindings of the `route` world (used by [`export_route!`]).
#[doc(hidden)]
#[allow(missing_docs, unsafe_code, clippy::all)]
pub mod route_world {
    wit_bindgen::generate!({
        path: "wit",
        world: "route",
        pub_export_macro: true,
        export_macro_name: "export_route_world",
        default_bindings_module: "edge_router_plugin::route_world",
        runtime_path: "edge_router_plugin::wit_bindgen_rt",
    });
}

/// Generated bindings of the `transform` world of contract 0.2 (used by [`export_transform!`]).
#[cfg(feature = "v0-2")]
#[doc(hidden)]
#[allow(missing_docs, unsafe_code, clippy::all)]
pub mod transform_world {
    wit_bindgen::generate!({
        path: "wit/v0.2",
        world: "transform",
        pub_export_macro: true,
        export_macro_name: "export_transform_world",
        default_bindings_module: "edge_router_plugin::transform_world",
        runtime_path: "edge_router_plugin::wit_bindgen_rt",
    });
}

/// Generated bindings of the `aggregate` world of contract 0.2 (used by [`export_aggregate!`]).
#[cfg(feature = "v0-2")]
#[doc(hidden)]
#[allow(missing_docs, unsafe_code, clippy::all)]
pub mod aggregate_world {
    wit_bindgen::generate!({
        path: "wit/v0.2",
        world: "aggregate",
        pub_export_macro: true,
        export_macro_name: "export_aggregate_world",
        default_bindings_module: "edge_router_plugin::aggregate_world",
        runtime_path: "edge_router_plugin::wit_bindgen_rt",
        with: {
            "edge-router:plugin/types@0.2.0": crate::transform_world::edge_router::plugin::types,
            "edge-router:plugin/host@0.2.0": crate::transform_world::edge_router::plugin::host,
        },
    });
}

/// The wit-bindgen version the bindings were made with, for plugins that need more.
pub use wit_bindgen;
#[doc(hidden)]
pub use wit_bindgen::rt as wit_bindgen_rt;

/// Facts about the stage and the host, given to `init`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    /// The stage's name in the router's config.
    pub stage_name: String,
    /// The router host's name.
    pub host_name: String,
    /// How many instances of the stage run side by side (1 for 0.1 stages).
    pub instances: u32,
    /// Which of them this is (0-based). An aggregate instance sees every record of the keys
    /// hashed to it and no other.
    pub instance: u32,
}

/// One record of a batch.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// The payload bytes (any bytes; often one JSON document).
    pub payload: &'a [u8],
    /// The source the record came from.
    pub source: &'a str,
    /// Arrival time at the router, nanoseconds since the Unix epoch.
    pub arrival_unix_nanos: u64,
}

impl<'a> Record<'a> {
    /// The value at `path` in the payload, read by scanning (no full parse); `None` when the
    /// payload is not JSON or has no such field.
    #[inline]
    pub fn field(&self, path: &JsonPath) -> Option<JsonValue<'a>> {
        jsonpath::lookup(self.payload, path)
    }

    /// The payload as UTF-8 text, if it is.
    pub fn text(&self) -> Option<&'a str> {
        std::str::from_utf8(self.payload).ok()
    }
}

/// A stage that keeps or drops records.
pub trait Filter: Sized + 'static {
    /// Builds the filter from the stage's `config` (JSON text; `{}` when none was given).
    fn init(config: &str, ctx: &Context) -> Result<Self, String>;

    /// `Ok(true)` keeps the record, `Ok(false)` drops it, `Err(message)` dead-letters it.
    fn keep(&mut self, rec: &Record<'_>) -> Result<bool, String>;
}

/// A stage that rewrites records.
pub trait Enrich: Sized + 'static {
    /// Builds the stage from its config (JSON text).
    fn init(config: &str, ctx: &Context) -> Result<Self, String>;

    /// `Ok(None)` leaves the record as it is, `Ok(Some(bytes))` replaces its payload with the
    /// bytes now in `out` (which the SDK reuses between records), `Err(message)` dead-letters it.
    fn enrich(&mut self, rec: &Record<'_>, out: &mut Vec<u8>) -> Result<Changed, String>;
}

/// Whether [`Enrich::enrich`] changed a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Changed {
    /// The record stays as it was; `out` is ignored.
    No,
    /// The record's new payload is in `out`.
    Yes,
}

/// A stage that chooses destinations.
pub trait Route: Sized + 'static {
    /// Builds the stage from its config (JSON text) and returns it with the destination names it
    /// will use (sink names in the router's config).
    fn init(config: &str, ctx: &Context) -> Result<(Self, Vec<String>), String>;

    /// `Ok(Some(i))` sends the record to destination `i` of the list `init` returned,
    /// `Ok(None)` to the router's default sinks, `Err(message)` dead-letters it.
    fn route(&mut self, rec: &Record<'_>) -> Result<Option<u32>, String>;
}

/// A stage that turns each record into zero or more records (contract 0.2; feature `v0-2`).
#[cfg(feature = "v0-2")]
pub trait Transform: Sized + 'static {
    /// Builds the stage from its config (JSON text) and says what it needs ([`Setup`]:
    /// destination names, whether records carry their metadata).
    fn init(config: &str, ctx: &Context) -> Result<(Self, Setup), String>;

    /// Emits the record's outputs into `out` (none drops it; [`Emitter::merged`] says it went
    /// into another record's output). `Err(message)` takes back what it emitted for this
    /// record and dead-letters the record. At most 1,024 outputs per record.
    fn transform(&mut self, rec: &Record<'_>, out: &mut Emitter) -> Result<(), String>;
}

/// What [`Aggregate::process`] did with a record.
#[cfg(feature = "v0-2")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Absorbed {
    /// Taken into the state.
    Yes,
    /// Dropped (counted as dropped by the stage), e.g. a late record under a drop policy.
    Dropped,
}

/// A stage that absorbs records into state and emits records of its own (contract 0.2;
/// feature `v0-2`): windows, counts, sums. The state lives in the instance; records with the
/// same `key` (the stage's setting) always reach the same instance.
#[cfg(feature = "v0-2")]
pub trait Aggregate: Sized + 'static {
    /// As for [`Transform::init`].
    fn init(config: &str, ctx: &Context) -> Result<(Self, Setup), String>;

    /// Absorbs a record; may emit records that are due. `Err(message)` dead-letters the
    /// record (and takes back what was emitted for it).
    fn process(&mut self, rec: &Record<'_>, out: &mut Emitter) -> Result<Absorbed, String>;

    /// Called every `tick_ms` with the wall clock (Unix nanoseconds): emits what is due.
    fn tick(&mut self, now_unix_nanos: u64, out: &mut Emitter);

    /// Called at shutdown and before a reload replaces the stage: emits everything open.
    fn flush(&mut self, out: &mut Emitter);
}

/// Logs through the router (rate-limited there). Natively, prints to stderr.
pub fn log(level: Level, message: &str) {
    glue::log(level, message);
}

/// Log levels for [`log`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Very detailed.
    Trace,
    /// Detailed.
    Debug,
    /// Normal.
    Info,
    /// Something looks wrong.
    Warn,
    /// Something is wrong.
    Error,
}

/// Exports a [`Filter`] implementation as the plugin's filter stage.
#[macro_export]
macro_rules! export_filter {
    ($t:ty) => {
        struct __EdgeRouterFilter;
        impl $crate::filter_world::Guest for __EdgeRouterFilter {
            fn init(
                config: ::std::string::String,
                ctx: $crate::filter_world::edge_router::plugin::types::InitContext,
            ) -> ::std::result::Result<(), ::std::string::String> {
                $crate::glue::filter_init::<$t>(config, ctx)
            }
            fn filter(
                batch: $crate::filter_world::edge_router::plugin::types::Batch,
            ) -> $crate::filter_world::FilterResult {
                $crate::glue::filter_batch::<$t>(batch)
            }
        }
        $crate::filter_world::export_filter_world!(__EdgeRouterFilter);
    };
}

/// Exports an [`Enrich`] implementation as the plugin's enrich stage.
#[macro_export]
macro_rules! export_enrich {
    ($t:ty) => {
        struct __EdgeRouterEnrich;
        impl $crate::enrich_world::Guest for __EdgeRouterEnrich {
            fn init(
                config: ::std::string::String,
                ctx: $crate::enrich_world::edge_router::plugin::types::InitContext,
            ) -> ::std::result::Result<(), ::std::string::String> {
                $crate::glue::enrich_init::<$t>(config, ctx)
            }
            fn enrich(
                batch: $crate::enrich_world::edge_router::plugin::types::Batch,
            ) -> $crate::enrich_world::EnrichResult {
                $crate::glue::enrich_batch::<$t>(batch)
            }
        }
        $crate::enrich_world::export_enrich_world!(__EdgeRouterEnrich);
    };
}

/// Exports a [`Route`] implementation as the plugin's route stage.
#[macro_export]
macro_rules! export_route {
    ($t:ty) => {
        struct __EdgeRouterRoute;
        impl $crate::route_world::Guest for __EdgeRouterRoute {
            fn init(
                config: ::std::string::String,
                ctx: $crate::route_world::edge_router::plugin::types::InitContext,
            ) -> ::std::result::Result<::std::vec::Vec<::std::string::String>, ::std::string::String>
            {
                $crate::glue::route_init::<$t>(config, ctx)
            }
            fn route(
                batch: $crate::route_world::edge_router::plugin::types::Batch,
            ) -> $crate::route_world::RouteResult {
                $crate::glue::route_batch::<$t>(batch)
            }
        }
        $crate::route_world::export_route_world!(__EdgeRouterRoute);
    };
}

/// Exports a `Transform` implementation as the plugin's transform stage (contract 0.2; feature
/// `v0-2`).
#[macro_export]
macro_rules! export_transform {
    ($t:ty) => {
        struct __EdgeRouterTransform;
        impl $crate::transform_world::Guest for __EdgeRouterTransform {
            fn init(
                config: ::std::string::String,
                ctx: $crate::transform_world::edge_router::plugin::types::InitContext,
            ) -> ::std::result::Result<
                $crate::transform_world::edge_router::plugin::types::InitAnswer,
                ::std::string::String,
            > {
                $crate::v02::wit::transform_init::<$t>(config, ctx)
            }
            fn transform(
                batch: $crate::transform_world::edge_router::plugin::types::Batch,
            ) -> $crate::transform_world::TransformResult {
                $crate::v02::wit::transform_batch::<$t>(batch)
            }
        }
        $crate::transform_world::export_transform_world!(__EdgeRouterTransform);
    };
}

/// Exports an `Aggregate` implementation as the plugin's aggregate stage (contract 0.2; feature
/// `v0-2`).
#[macro_export]
macro_rules! export_aggregate {
    ($t:ty) => {
        struct __EdgeRouterAggregate;
        impl $crate::aggregate_world::Guest for __EdgeRouterAggregate {
            fn init(
                config: ::std::string::String,
                ctx: $crate::transform_world::edge_router::plugin::types::InitContext,
            ) -> ::std::result::Result<
                $crate::transform_world::edge_router::plugin::types::InitAnswer,
                ::std::string::String,
            > {
                $crate::v02::wit::aggregate_init::<$t>(config, ctx)
            }
            fn process(
                batch: $crate::transform_world::edge_router::plugin::types::Batch,
            ) -> $crate::aggregate_world::ProcessResult {
                $crate::v02::wit::aggregate_process::<$t>(batch)
            }
            fn tick(now: u64) -> $crate::transform_world::edge_router::plugin::types::Outputs {
                $crate::v02::wit::aggregate_tick::<$t>(now)
            }
            fn flush() -> $crate::transform_world::edge_router::plugin::types::Outputs {
                $crate::v02::wit::aggregate_flush::<$t>()
            }
        }
        $crate::aggregate_world::export_aggregate_world!(__EdgeRouterAggregate);
    };
}
