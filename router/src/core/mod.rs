//! Pure decision logic: records and batches, framing, JSON field lookup, conditions, partition
//! keys and the Kinesis partitioner, path templates, rate limits, accounting, the stage workers'
//! reorder buffer, the systemd watchdog's verdict. Nothing in here does I/O, spawns threads or
//! reads the clock: time comes in as an argument.

pub mod accounting;
pub mod breaker;
pub mod dead_letter;
pub mod deadline;
pub mod framing;
pub mod kinesis;
/// The JSON field paths and scanner, shared with the plugin SDK (the `edge-router-jsonpath` crate).
pub use edge_router_jsonpath as jsonpath;
pub mod matcher;
pub mod partition;
pub mod partitioner;
pub mod rate_limit;
pub mod record;
pub mod reorder;
pub mod report;
pub mod template;
pub mod text;
pub mod watchdog;
