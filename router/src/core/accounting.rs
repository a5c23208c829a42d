//! Per-component counters and the accounting invariant.
//!
//! Every component owns one [`Counters`] (shared atomics, updated once per batch, not per record).
//! A [`Snapshot`] of all of them gives the totals the `--stats` report prints, and
//! [`Totals::in_flight`] is what the accounting invariant leaves over:
//! `read + recovered + fanout_copies + created_by_stage == written + dead_lettered +
//! dropped_by_stage + dropped_by_buffer + absorbed_by_stage + in_flight`, with `in_flight == 0`
//! after a clean exit. A stage keeps `records_in + created == records_out + dropped +
//! dead_lettered + absorbed`: `created` counts the records a transform made beyond one per input
//! and every record an aggregate emitted, `absorbed` the inputs merged into another's output or
//! taken into an aggregate's state.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use hdrhistogram::Histogram;
use serde::Serialize;

/// A new latency histogram in microseconds (1 us to 1 hour, 3 significant digits).
pub fn latency_histogram() -> Histogram<u64> {
    // The bounds are constants that `new_with_bounds` accepts.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).unwrap_or_else(|_| {
        Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant digits is valid"))
    })
}

/// What kind of component a set of counters belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Reads records in.
    Source,
    /// Filters, enriches or routes.
    Stage,
    /// Writes records out.
    Sink,
    /// The dead-letter sink.
    DeadLetter,
    /// A sink's disk buffer: `records_in` counts the records recovered from it at start (read
    /// by an earlier run), `bytes_in` the bytes appended to its files (entries with their
    /// headers: the buffer's write volume), `dropped` the records a full buffer refused
    /// (`when_full = "drop_newest"`; they are dead-lettered by the sink), `dropped_oldest` the
    /// records deleted with the oldest segments (`when_full = "drop_oldest"`; not
    /// dead-lettered: they count in [`Totals::dropped_by_buffer`]).
    Buffer,
}

/// Counters of one component. All counts are records unless named `bytes`.
#[derive(Debug, Default)]
pub struct Counters {
    /// Records that came in (for a source: records read, including those it dead-lettered).
    pub records_in: AtomicU64,
    /// Payload bytes that came in.
    pub bytes_in: AtomicU64,
    /// Records passed on (for a sink: written).
    pub records_out: AtomicU64,
    /// Payload bytes passed on (for a sink: written, without delimiters).
    pub bytes_out: AtomicU64,
    /// Records a stage decided to drop.
    pub dropped: AtomicU64,
    /// Records sent to the dead-letter sink by this component.
    pub dead_lettered: AtomicU64,
    /// Stages: records made beyond one per input (a transform's extra outputs, an aggregate's
    /// emitted records).
    pub created: AtomicU64,
    /// Stages: inputs that ended in the stage without being dropped (merged into another
    /// input's output, or taken into an aggregate's state).
    pub absorbed: AtomicU64,
    /// Disk buffers: bytes (as stored) of the batches `dropped` counts.
    pub dropped_bytes: AtomicU64,
    /// Disk buffers: records deleted with the oldest segments (`when_full = "drop_oldest"`).
    pub dropped_oldest: AtomicU64,
    /// Disk buffers: bytes of the entries `dropped_oldest` counts, as stored.
    pub dropped_oldest_bytes: AtomicU64,
    /// For the dispatcher: extra copies made when a record goes to more than one sink.
    pub fanout_copies: AtomicU64,
    /// Plugin stages: calls that trapped.
    pub plugin_traps: AtomicU64,
    /// Plugin stages: calls stopped at their CPU deadline.
    pub plugin_timeouts: AtomicU64,
    /// Plugin stages: calls stopped at the memory cap.
    pub plugin_memory_limit_hits: AtomicU64,
    /// Plugin stages: records the plugin reported an error for.
    pub plugin_record_errors: AtomicU64,
    /// Plugin stages: answers rejected for breaking the contract (or for being too large).
    pub plugin_contract_violations: AtomicU64,
    /// Plugin stages: attempts to start a new instance (after a failed call) that failed.
    pub plugin_restart_failures: AtomicU64,
    /// Plugin stages: times the stage's breaker opened.
    pub plugin_breaker_trips: AtomicU64,
    /// Plugin stages: 1 while the breaker is open (the plugin is not called), else 0.
    pub plugin_breaker_open: AtomicU64,
    /// Plugin stages: plugin log messages held back by the stage's log limits.
    pub plugin_logs_suppressed: AtomicU64,
    /// Aggregate stages: instances lost with their state (open windows) after a failed call.
    pub plugin_state_losses: AtomicU64,
    /// Kinesis sinks: PutRecords requests made.
    pub kinesis_requests: AtomicU64,
    /// Kinesis sinks: Kinesis records written (an aggregate of many records counts once).
    pub kinesis_records: AtomicU64,
    /// Kinesis sinks: entries sent again after a failure.
    pub kinesis_retries: AtomicU64,
    /// Kinesis sinks: entries and calls refused for throughput.
    pub kinesis_throttles: AtomicU64,
    /// Firehose sinks: PutRecordBatch requests made.
    pub firehose_requests: AtomicU64,
    /// Firehose sinks: Firehose records written (a packed record of many user records counts once).
    pub firehose_records: AtomicU64,
    /// Firehose sinks: records sent again after a failure.
    pub firehose_retries: AtomicU64,
    /// Firehose sinks: bytes of the Firehose records written (delimiters included).
    pub firehose_bytes: AtomicU64,
    /// Firehose sinks: estimated billed bytes of the records written (each rounded up to 5 KB).
    pub firehose_billed_bytes: AtomicU64,
    /// Firehose sinks: estimated billed bytes had each user record been its own Firehose record.
    pub firehose_billed_bytes_unpacked: AtomicU64,
    /// AWS sinks: payload bytes of the requests sent (retries included).
    pub aws_egress_bytes: AtomicU64,
    /// AWS sinks: requests held back by `max_bytes_per_sec`.
    pub aws_egress_paced: AtomicU64,
    /// HTTP sources' AWS API: KPL aggregated records opened on ingest.
    pub aws_aggregates: AtomicU64,
    /// HTTP sources' AWS API: user records taken out of those aggregates.
    pub aws_aggregated_records: AtomicU64,
    /// HTTP sources' AWS API: records that began like an aggregate but failed its check (MD5,
    /// protobuf, keys) and were passed on whole.
    pub aws_aggregates_kept_whole: AtomicU64,
    /// File sources: 1 (marks the component as a file source, for its gauges).
    pub file_source: AtomicU64,
    /// File sources (gauge): files known (being read, or waiting for bytes to read).
    pub file_watched: AtomicU64,
    /// File sources (gauge): bytes not acknowledged yet, summed over the files known (each
    /// file's size minus its committed offset): the backlog.
    pub file_bytes_behind: AtomicU64,
    /// File sources: files that left their path while being read (rename-and-create
    /// rotation, or deletion).
    pub file_rotations: AtomicU64,
    /// File sources: files found shorter than what was read (copytruncate), read again from 0.
    pub file_truncations: AtomicU64,
    /// Kinesis sinks: per shard id, records written and entries throttled (replaced as a whole
    /// by the sink with [`Counters::set_kinesis_shards`]).
    kinesis_shards: Mutex<BTreeMap<String, ShardCounts>>,
    /// Sinks: arrival-to-written latency of the records written, in microseconds (created on
    /// the first record; read live by the metrics endpoint and at exit by `--stats`).
    latency: Mutex<Option<Histogram<u64>>>,
    /// AWS sinks: duration of each service call (PutRecords, PutRecordBatch), microseconds.
    request_latency: Mutex<Option<Histogram<u64>>>,
    /// Network sources: answers given, by HTTP status code or QUIC status name.
    responses: Mutex<BTreeMap<String, u64>>,
}

/// Quantiles of a latency histogram, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Quantiles {
    /// Values recorded.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest.
    pub max: u64,
}

impl Quantiles {
    /// The quantiles of `h` (all zero when it is empty).
    pub fn of(h: &Histogram<u64>) -> Quantiles {
        if h.is_empty() {
            return Quantiles::default();
        }
        Quantiles {
            count: h.len(),
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

/// A Kinesis sink's counters for one shard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ShardCounts {
    /// User records written to the shard (as the PutRecords answer says).
    pub records: u64,
    /// Kinesis records written to the shard (an aggregate counts once).
    pub kinesis_records: u64,
    /// Entries for the shard (as predicted from the shard map) refused with
    /// ProvisionedThroughputExceeded; whole-call throttles are not per shard.
    pub throttles: u64,
}

impl Counters {
    /// Adds `records` / `bytes` to the "in" counters.
    pub fn add_in(&self, records: u64, bytes: u64) {
        self.records_in.fetch_add(records, Ordering::Relaxed);
        self.bytes_in.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Adds `records` / `bytes` to the "out" counters.
    pub fn add_out(&self, records: u64, bytes: u64) {
        self.records_out.fetch_add(records, Ordering::Relaxed);
        self.bytes_out.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts dropped records.
    pub fn add_dropped(&self, records: u64) {
        self.dropped.fetch_add(records, Ordering::Relaxed);
    }

    /// Counts dead-lettered records.
    pub fn add_dead_lettered(&self, records: u64) {
        self.dead_lettered.fetch_add(records, Ordering::Relaxed);
    }

    /// Counts extra fan-out copies.
    pub fn add_fanout_copies(&self, records: u64) {
        self.fanout_copies.fetch_add(records, Ordering::Relaxed);
    }

    /// Replaces the per-shard counters of a Kinesis sink.
    pub fn set_kinesis_shards(&self, shards: &BTreeMap<String, ShardCounts>) {
        shards.clone_into(
            &mut self
                .kinesis_shards
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
    }

    /// The per-shard counters of a Kinesis sink (empty for other components).
    pub fn kinesis_shards(&self) -> BTreeMap<String, ShardCounts> {
        self.kinesis_shards
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Records that `n` records were written `us` microseconds after they arrived.
    pub fn record_latency(&self, us: u64, n: u64) {
        if n == 0 {
            return;
        }
        let mut h = self.latency.lock().unwrap_or_else(PoisonError::into_inner);
        let h = h.get_or_insert_with(latency_histogram);
        // Saturating: a value at the high bound is always recordable.
        let _ = h.record_n(us.clamp(1, h.high()), n);
    }

    /// Adds a sink's locally collected latencies.
    pub fn merge_latency(&self, local: &Histogram<u64>) {
        if local.is_empty() {
            return;
        }
        let mut h = self.latency.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = h.get_or_insert_with(latency_histogram).add(local);
    }

    /// Records one service call that took `us` microseconds.
    pub fn record_request_latency(&self, us: u64) {
        let mut h = self
            .request_latency
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let h = h.get_or_insert_with(latency_histogram);
        let _ = h.record(us.clamp(1, h.high()));
    }

    /// Counts one answer a network source gave (`"200"`, `"503"`, `"backpressure"`, ...).
    pub fn count_response(&self, code: &str) {
        let mut m = self
            .responses
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match m.get_mut(code) {
            Some(n) => *n += 1,
            None => {
                m.insert(code.to_owned(), 1);
            }
        }
    }

    /// A copy of the latencies recorded so far (`None` before the first).
    pub fn latency(&self) -> Option<Histogram<u64>> {
        self.latency
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn snapshot(&self) -> CounterValues {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CounterValues {
            records_in: get(&self.records_in),
            bytes_in: get(&self.bytes_in),
            records_out: get(&self.records_out),
            bytes_out: get(&self.bytes_out),
            dropped: get(&self.dropped),
            dead_lettered: get(&self.dead_lettered),
            created: get(&self.created),
            absorbed: get(&self.absorbed),
            dropped_bytes: get(&self.dropped_bytes),
            dropped_oldest: get(&self.dropped_oldest),
            dropped_oldest_bytes: get(&self.dropped_oldest_bytes),
            fanout_copies: get(&self.fanout_copies),
            plugin_traps: get(&self.plugin_traps),
            plugin_timeouts: get(&self.plugin_timeouts),
            plugin_memory_limit_hits: get(&self.plugin_memory_limit_hits),
            plugin_record_errors: get(&self.plugin_record_errors),
            plugin_contract_violations: get(&self.plugin_contract_violations),
            plugin_restart_failures: get(&self.plugin_restart_failures),
            plugin_breaker_trips: get(&self.plugin_breaker_trips),
            plugin_breaker_open: get(&self.plugin_breaker_open),
            plugin_logs_suppressed: get(&self.plugin_logs_suppressed),
            plugin_state_losses: get(&self.plugin_state_losses),
            kinesis_requests: get(&self.kinesis_requests),
            kinesis_records: get(&self.kinesis_records),
            kinesis_retries: get(&self.kinesis_retries),
            kinesis_throttles: get(&self.kinesis_throttles),
            firehose_requests: get(&self.firehose_requests),
            firehose_records: get(&self.firehose_records),
            firehose_retries: get(&self.firehose_retries),
            firehose_bytes: get(&self.firehose_bytes),
            firehose_billed_bytes: get(&self.firehose_billed_bytes),
            firehose_billed_bytes_unpacked: get(&self.firehose_billed_bytes_unpacked),
            aws_egress_bytes: get(&self.aws_egress_bytes),
            aws_egress_paced: get(&self.aws_egress_paced),
            aws_aggregates: get(&self.aws_aggregates),
            aws_aggregated_records: get(&self.aws_aggregated_records),
            aws_aggregates_kept_whole: get(&self.aws_aggregates_kept_whole),
            file_source: get(&self.file_source),
            file_watched: get(&self.file_watched),
            file_bytes_behind: get(&self.file_bytes_behind),
            file_rotations: get(&self.file_rotations),
            file_truncations: get(&self.file_truncations),
        }
    }
}

/// A plain copy of [`Counters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CounterValues {
    /// See [`Counters::records_in`].
    pub records_in: u64,
    /// See [`Counters::bytes_in`].
    pub bytes_in: u64,
    /// See [`Counters::records_out`].
    pub records_out: u64,
    /// See [`Counters::bytes_out`].
    pub bytes_out: u64,
    /// See [`Counters::dropped`].
    pub dropped: u64,
    /// See [`Counters::dead_lettered`].
    pub dead_lettered: u64,
    /// See [`Counters::created`].
    #[serde(skip_serializing_if = "is_zero")]
    pub created: u64,
    /// See [`Counters::absorbed`].
    #[serde(skip_serializing_if = "is_zero")]
    pub absorbed: u64,
    /// See [`Counters::dropped_bytes`].
    #[serde(skip_serializing_if = "is_zero")]
    pub dropped_bytes: u64,
    /// See [`Counters::dropped_oldest`].
    #[serde(skip_serializing_if = "is_zero")]
    pub dropped_oldest: u64,
    /// See [`Counters::dropped_oldest_bytes`].
    #[serde(skip_serializing_if = "is_zero")]
    pub dropped_oldest_bytes: u64,
    /// See [`Counters::fanout_copies`].
    pub fanout_copies: u64,
    /// See [`Counters::plugin_traps`].
    #[serde(skip_serializing_if = "is_zero")]
    pub plugin_traps: u64,
    /// See [`Counters::plugin_timeouts`].
    #[serde(skip_serializing_if = "is_zero")]
    pub plugin_timeouts: u64,
    /// See [`Counters::plugin_memory_limit_hits`].
    #[serde(skip_serializing_if = "is_zero")]
    pub plugin_memory_limit_hits: u64,
    /// See [`Counters::plugin_record_errors`].
    #[serde(skip_serializing_if = "is_zero")]
    pub plugin_record_errors: u64,
    /// See [`Counters::plugin_contract_violations`].
    #[serde(skip_serializing_if = "is_zero")]
    pub plugin_contract_violations: u64,
    /// See [`Counters::plugin_restart_failures`].
    #[serde(skip_serializing_if = "is_zero")]
    pub plugin_restart_failures: u64,
    /// See [`Counters::plugin_breaker_trips`].
    #[serde(skip_serializing_if = "is_zero")]
    pub plugin_breaker_trips: u64,
    /// See [`Counters::plugin_breaker_open`].
    #[serde(skip_serializing_if = "is_zero")]
    pub plugin_breaker_open: u64,
    /// See [`Counters::plugin_logs_suppressed`].
    #[serde(skip_serializing_if = "is_zero")]
    pub plugin_logs_suppressed: u64,
    /// See [`Counters::plugin_state_losses`].
    #[serde(skip_serializing_if = "is_zero")]
    pub plugin_state_losses: u64,
    /// See [`Counters::kinesis_requests`].
    #[serde(skip_serializing_if = "is_zero")]
    pub kinesis_requests: u64,
    /// See [`Counters::kinesis_records`].
    #[serde(skip_serializing_if = "is_zero")]
    pub kinesis_records: u64,
    /// See [`Counters::kinesis_retries`].
    #[serde(skip_serializing_if = "is_zero")]
    pub kinesis_retries: u64,
    /// See [`Counters::kinesis_throttles`].
    #[serde(skip_serializing_if = "is_zero")]
    pub kinesis_throttles: u64,
    /// See [`Counters::firehose_requests`].
    #[serde(skip_serializing_if = "is_zero")]
    pub firehose_requests: u64,
    /// See [`Counters::firehose_records`].
    #[serde(skip_serializing_if = "is_zero")]
    pub firehose_records: u64,
    /// See [`Counters::firehose_retries`].
    #[serde(skip_serializing_if = "is_zero")]
    pub firehose_retries: u64,
    /// See [`Counters::firehose_bytes`].
    #[serde(skip_serializing_if = "is_zero")]
    pub firehose_bytes: u64,
    /// See [`Counters::firehose_billed_bytes`].
    #[serde(skip_serializing_if = "is_zero")]
    pub firehose_billed_bytes: u64,
    /// See [`Counters::firehose_billed_bytes_unpacked`].
    #[serde(skip_serializing_if = "is_zero")]
    pub firehose_billed_bytes_unpacked: u64,
    /// See [`Counters::aws_egress_bytes`].
    #[serde(skip_serializing_if = "is_zero")]
    pub aws_egress_bytes: u64,
    /// See [`Counters::aws_egress_paced`].
    #[serde(skip_serializing_if = "is_zero")]
    pub aws_egress_paced: u64,
    /// See [`Counters::aws_aggregates`].
    #[serde(skip_serializing_if = "is_zero")]
    pub aws_aggregates: u64,
    /// See [`Counters::aws_aggregated_records`].
    #[serde(skip_serializing_if = "is_zero")]
    pub aws_aggregated_records: u64,
    /// See [`Counters::aws_aggregates_kept_whole`].
    #[serde(skip_serializing_if = "is_zero")]
    pub aws_aggregates_kept_whole: u64,
    /// See [`Counters::file_source`].
    #[serde(skip_serializing_if = "is_zero")]
    pub file_source: u64,
    /// See [`Counters::file_watched`].
    #[serde(skip_serializing_if = "is_zero")]
    pub file_watched: u64,
    /// See [`Counters::file_bytes_behind`].
    #[serde(skip_serializing_if = "is_zero")]
    pub file_bytes_behind: u64,
    /// See [`Counters::file_rotations`].
    #[serde(skip_serializing_if = "is_zero")]
    pub file_rotations: u64,
    /// See [`Counters::file_truncations`].
    #[serde(skip_serializing_if = "is_zero")]
    pub file_truncations: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// A named component's counters, registered with the [`Registry`].
#[derive(Debug, Clone)]
pub struct Component {
    /// Config name, e.g. `sinks.out`.
    pub name: String,
    /// Kind of component.
    pub kind: Kind,
    /// The counters.
    pub counters: Arc<Counters>,
}

/// All components' counters. Cloning shares the registry itself: a component registered
/// through one clone (e.g. by a reload) is seen by every other (e.g. the metrics endpoint).
#[derive(Debug, Default, Clone)]
pub struct Registry {
    components: Arc<Mutex<Vec<Component>>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    fn components(&self) -> std::sync::MutexGuard<'_, Vec<Component>> {
        // Every update is one push: a poisoned lock still holds a consistent list.
        self.components
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a component and returns its counters. A name registered before (with the same
    /// kind) gets the same counters back: a component replaced by a reload keeps counting where
    /// its predecessor left off, so the totals and the accounting invariant span reloads.
    pub fn register(&self, name: impl Into<String>, kind: Kind) -> Arc<Counters> {
        let name = name.into();
        let mut components = self.components();
        if let Some(c) = components.iter().find(|c| c.name == name && c.kind == kind) {
            return c.counters.clone();
        }
        let counters = Arc::new(Counters::default());
        components.push(Component {
            name,
            kind,
            counters: counters.clone(),
        });
        counters
    }

    /// The latencies recorded by every sink, merged.
    pub fn latency(&self) -> Histogram<u64> {
        let mut all = latency_histogram();
        for c in self.components().iter() {
            if let Some(h) = c.counters.latency() {
                let _ = all.add(&h);
            }
        }
        all
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> Snapshot {
        let components: Vec<ComponentSnapshot> = self
            .components()
            .iter()
            .map(|c| ComponentSnapshot {
                name: c.name.clone(),
                kind: c.kind,
                counters: c.counters.snapshot(),
                kinesis_shards: c.counters.kinesis_shards(),
                latency_us: c.counters.latency().map(|h| Quantiles::of(&h)),
                request_latency_us: c
                    .counters
                    .request_latency
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .as_ref()
                    .map(Quantiles::of),
                responses: c
                    .counters
                    .responses
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone(),
            })
            .collect();
        let mut t = Totals::default();
        for c in &components {
            let v = &c.counters;
            match c.kind {
                Kind::Source => {
                    t.read += v.records_in;
                    t.bytes_read += v.bytes_in;
                }
                Kind::Sink => {
                    t.written += v.records_out;
                    t.bytes_written += v.bytes_out;
                }
                Kind::Stage => {
                    t.dropped_by_stage += v.dropped;
                    t.created_by_stage += v.created;
                    t.absorbed_by_stage += v.absorbed;
                }
                Kind::Buffer => {
                    t.recovered += v.records_in;
                    t.dropped_by_buffer += v.dropped_oldest;
                }
                Kind::DeadLetter => {}
            }
            if c.kind != Kind::DeadLetter {
                t.dead_lettered += v.dead_lettered;
            }
            t.fanout_copies += v.fanout_copies;
        }
        Snapshot {
            totals: t,
            components,
        }
    }
}

/// One component's counters at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ComponentSnapshot {
    /// Config name.
    pub name: String,
    /// Kind.
    pub kind: Kind,
    /// Values.
    #[serde(flatten)]
    pub counters: CounterValues,
    /// Kinesis sinks: per shard id, records written and entries throttled.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub kinesis_shards: BTreeMap<String, ShardCounts>,
    /// Sinks: arrival-to-written latency of this sink's records.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_us: Option<Quantiles>,
    /// AWS sinks: service call latency.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_latency_us: Option<Quantiles>,
    /// Network sources: answers by code.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub responses: BTreeMap<String, u64>,
}

/// Pipeline-wide totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Records read by all sources.
    pub read: u64,
    /// Payload bytes read.
    pub bytes_read: u64,
    /// Records written by all sinks (a record sent to two sinks counts twice).
    pub written: u64,
    /// Payload bytes written.
    pub bytes_written: u64,
    /// Records sent to the dead-letter sink.
    pub dead_lettered: u64,
    /// Records a stage dropped on purpose.
    pub dropped_by_stage: u64,
    /// Records stages made beyond one per input (transform outputs past the first of an input,
    /// records an aggregate emitted).
    pub created_by_stage: u64,
    /// Records that ended in a stage without being dropped: merged into another record by a
    /// transform, or taken into an aggregate's state (a source's `ack = "delivered"` counts them
    /// as done once absorbed).
    pub absorbed_by_stage: u64,
    /// Records disk buffers deleted with their oldest segments (`when_full = "drop_oldest"`).
    /// Records a buffer refuses with `drop_newest` are dead-lettered and counted there.
    pub dropped_by_buffer: u64,
    /// Extra copies made by fan-out to more than one sink.
    pub fanout_copies: u64,
    /// Records recovered from disk buffers at start (read by an earlier run; delivered by this
    /// one).
    pub recovered: u64,
}

impl Totals {
    /// Records read but not yet written, dead-lettered or dropped: zero after a clean exit.
    /// Negative values (which would mean double counting) are reported as such.
    pub fn in_flight(&self) -> i128 {
        (self.read as i128
            + self.recovered as i128
            + self.fanout_copies as i128
            + self.created_by_stage as i128)
            - (self.written as i128
                + self.dead_lettered as i128
                + self.dropped_by_stage as i128
                + self.dropped_by_buffer as i128
                + self.absorbed_by_stage as i128)
    }
}

/// Counters of every component at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    /// Totals over all components.
    pub totals: Totals,
    /// Each component.
    pub components: Vec<ComponentSnapshot>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_and_invariant() {
        let r = Registry::new();
        let src = r.register("sources.stdin", Kind::Source);
        let stage = r.register("stages.route", Kind::Stage);
        let a = r.register("sinks.a", Kind::Sink);
        let b = r.register("sinks.b", Kind::Sink);
        let dl = r.register("dead_letter", Kind::DeadLetter);
        src.add_in(10, 100);
        src.add_dead_lettered(1);
        stage.add_dropped(2);
        stage.add_fanout_copies(3);
        a.add_out(7, 70);
        b.add_out(2, 20);
        b.add_dead_lettered(1);
        dl.add_in(2, 0);
        dl.add_out(2, 0);
        let mut shards = BTreeMap::new();
        shards.insert(
            "shardId-000000000001".to_owned(),
            ShardCounts {
                records: 7,
                kinesis_records: 2,
                throttles: 1,
            },
        );
        a.set_kinesis_shards(&shards);
        let snap = r.snapshot();
        let json = serde_json::to_value(&snap.components).unwrap();
        assert_eq!(
            json[2]["kinesis_shards"],
            serde_json::json!({"shardId-000000000001": {"records": 7, "kinesis_records": 2, "throttles": 1}})
        );
        assert!(json[3].get("kinesis_shards").is_none());
        let t = snap.totals;
        assert_eq!(t.in_flight(), 0);
        // A buffer that recovered 5 records and deleted 3 of them with its oldest segment.
        let buf = r.register("buffers.a", Kind::Buffer);
        buf.add_in(5, 0);
        buf.dropped_oldest.fetch_add(3, Ordering::Relaxed);
        a.add_out(2, 20);
        let t = r.snapshot().totals;
        assert_eq!((t.recovered, t.dropped_by_buffer), (5, 3));
        assert_eq!(t.read, 10);
        assert_eq!(t.written, 11);
        assert_eq!(t.dead_lettered, 2);
        assert_eq!(t.in_flight(), 0);
        // A transform that made 4 records of 2 (2 created) and an aggregate that absorbed
        // those 4 and emitted 1 (1 created, 4 absorbed).
        let transform = r.register("stages.explode", Kind::Stage);
        let aggregate = r.register("stages.stats", Kind::Stage);
        src.add_in(2, 20);
        transform.created.fetch_add(2, Ordering::Relaxed);
        aggregate.absorbed.fetch_add(4, Ordering::Relaxed);
        aggregate.created.fetch_add(1, Ordering::Relaxed);
        assert_eq!(r.snapshot().totals.in_flight(), 1);
        a.add_out(1, 10);
        let t = r.snapshot().totals;
        assert_eq!((t.created_by_stage, t.absorbed_by_stage), (3, 4));
        assert_eq!(t.in_flight(), 0);
    }

    #[test]
    fn registering_a_name_again_shares_its_counters() {
        let r = Registry::new();
        let seen_elsewhere = r.clone();
        let first = r.register("sinks.a", Kind::Sink);
        first.add_out(5, 50);
        let again = r.register("sinks.a", Kind::Sink);
        assert!(Arc::ptr_eq(&first, &again));
        // Same name, other kind: a different component.
        let stage = r.register("sinks.a", Kind::Stage);
        assert!(!Arc::ptr_eq(&first, &stage));
        let late = r.register("sinks.b", Kind::Sink);
        late.add_out(1, 10);
        let snap = seen_elsewhere.snapshot();
        assert_eq!(snap.components.len(), 3);
        assert_eq!(snap.totals.written, 6);
    }
}
