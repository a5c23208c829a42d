//! edge-router: move streaming records from edge hosts into Amazon Kinesis.
//!
//! Data flows one way: source -> framing -> stages -> partitioner -> sink. See
//! `ARCHITECTURE.md` at the repository root for the codemap and the invariants.

pub mod buffer;
pub mod config;
pub mod core;
pub mod generate;
pub mod metrics;
pub mod queue;
pub mod reload;
pub mod scaffold;
pub mod send;
pub mod shutdown;
pub mod sinks;
pub mod sources;
pub mod stages;
pub mod stats;
pub mod supervise;
pub mod tls;
pub mod topology;
