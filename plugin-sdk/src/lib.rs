//! Write [edge-router](https://github.com) stages as WebAssembly components.
//!
//! A stage is a type implementing [`Filter`], [`Enrich`] or [`Route`], exported with
//! [`export_filter!`], [`export_enrich!`] or [`export_route!`]. The crate carries the WIT contract
//! (`edge-router:plugin@0.1.0`) and the generated bindings; plugin authors never see them.
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

pub use jsonpath::{JsonPath, JsonValue};

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
