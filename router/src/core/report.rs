//! What a pipeline reports about itself (`--stats`, the metrics endpoint, `top`): plain,
//! serialisable values made from the counters and queue probes by the topology's `Observer`,
//! and read by `stats` and `metrics` without knowing how the pipeline is wired.

use serde::Serialize;

use crate::core::accounting::Snapshot;

/// Queue fill for the stats report.
#[derive(Debug, Clone, Serialize)]
pub struct QueueStats {
    /// Which queue (named after its consumer).
    pub name: String,
    /// Record limit.
    pub records_max: u64,
    /// Byte limit.
    pub bytes_max: u64,
    /// Records queued now.
    pub records: u64,
    /// Bytes queued now.
    pub bytes: u64,
    /// Highest record count seen.
    pub records_peak: u64,
    /// Highest byte count seen.
    pub bytes_peak: u64,
}

/// End-to-end latency quantiles in microseconds.
pub use crate::core::accounting::Quantiles as LatencyStats;

/// Everything `--stats` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Counters.
    #[serde(flatten)]
    pub counters: Snapshot,
    /// `read + recovered + fanout_copies + created_by_stage - written - dead_lettered -
    /// dropped_by_stage - dropped_by_buffer - absorbed_by_stage`.
    pub in_flight: i128,
    /// Queue fill.
    pub queues: Vec<QueueStats>,
    /// Arrival-to-written latency over all sinks.
    pub latency_us: LatencyStats,
    /// Wall time since start.
    pub elapsed_ms: u64,
}
