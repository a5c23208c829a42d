//! The Kinesis sink's part of the shared AWS sink thread ([`driver`]): start-up (connect,
//! DescribeStreamSummary until the stream is `ACTIVE` (its `MaxRecordSizeInKiB` sets the record
//! limit), ListShards for the shard map; retryable failures are retried within the record TTL, a
//! fatal one (missing stream, no access) fails the sink at once), PutRecords and ListShards
//! calls, partition keys for every record (a record the partitioner cannot place is
//! dead-lettered with its reason), and the per-stream and per-shard counters.

use std::sync::Arc;
use std::sync::atomic::Ordering as AtomicOrdering;
use std::time::Instant;

use crate::core::accounting::Counters;
use crate::core::partitioner::Partitioner;
use crate::core::record::Batch;
use crate::queue::Receiver;
use crate::sinks::aws::batch::{BatchPolicy, RECORD_BYTES_MAX_DEFAULT, RECORD_BYTES_MAX_LIMIT};
use crate::sinks::aws::driver::{self, Offer, Service, StartupRetry, Status, Ticket, seed};
use crate::sinks::aws::sdk::CallFailure;
use crate::sinks::kinesis::client::StreamClient;
use crate::sinks::kinesis::config::{KinesisSinkConfig, Ordering};
use crate::sinks::kinesis::engine::{Engine, EngineSettings, EngineStats, EntryResult, Request};
use crate::sinks::kinesis::limits::ShardRateLimit;
use crate::sinks::kinesis::shards::ShardMap;
use crate::topology::DeadLetterTx;

/// Runs a Kinesis sink until its queue closes and every record is written or dead-lettered.
///
/// # Errors
///
/// A fatal error (missing stream, access denied, no region, ...), after every record the sink
/// held or had queued was dead-lettered with it.
pub fn run(
    name: &str,
    cfg: KinesisSinkConfig,
    rx: Receiver<Batch>,
    dead: DeadLetterTx,
    counters: Arc<Counters>,
) -> Result<(), anyhow::Error> {
    let service = Kinesis {
        partitioner: Partitioner::new(cfg.partition.clone()),
        rng: <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed()),
        cfg,
    };
    driver::run(name, service, rx, dead, counters)
}

/// The Kinesis Data Streams service for the shared driver.
struct Kinesis {
    cfg: KinesisSinkConfig,
    partitioner: Partitioner,
    /// Random partition keys (not for anything secret).
    rng: rand::rngs::StdRng,
}

impl Service for Kinesis {
    type Engine = Engine<Ticket>;
    type Client = StreamClient;

    fn target(&self) -> String {
        format!("kinesis stream `{}`", self.cfg.stream)
    }

    fn max_bytes_per_sec(&self) -> u64 {
        self.cfg.aws.max_bytes_per_sec
    }

    /// Connects, waits for the stream to be active, reads its record limit and shard map.
    async fn start(&mut self, sink: &str) -> Result<(StreamClient, Engine<Ticket>), String> {
        let client = StreamClient::connect(&self.cfg).await?;
        // Retryable failures wait a backoff within the record TTL; a stream still being created
        // is polled the same way.
        let mut retry = StartupRetry::new(sink, self.cfg.aws.retry);
        let target = self.target();
        let info = retry
            .until(async || {
                let info = client.describe().await?;
                Ok(match info.status.as_str() {
                    "ACTIVE" | "UPDATING" => Status::Ready(info),
                    "DELETING" => Status::Unusable(format!(
                        "{target} in region {} is being deleted",
                        client.region()
                    )),
                    other => Status::NotYet(format!("{target} is {other}, not ACTIVE")),
                })
            })
            .await?;
        let map = retry
            .until(async || Ok(Status::Ready(client.list_shards().await?)))
            .await?;
        let record_limit = info
            .record_bytes_max
            .unwrap_or(RECORD_BYTES_MAX_DEFAULT)
            .min(RECORD_BYTES_MAX_LIMIT);
        let settings = engine_settings(&self.cfg, record_limit);
        tracing::info!(
            sink,
            stream = %self.cfg.stream,
            region = client.region(),
            shards = map.len(),
            record_bytes_max = settings.batch.record_bytes_max,
            "kinesis sink ready"
        );
        Ok((client, Engine::new(settings, map, Instant::now())))
    }

    async fn send(client: StreamClient, request: Request) -> Result<Vec<EntryResult>, CallFailure> {
        client.put_records(&request.entries).await
    }

    fn refresh(
        &self,
        sink: &str,
        client: &StreamClient,
    ) -> impl Future<Output = Result<ShardMap, CallFailure>> + Send + 'static {
        let (client, sink) = (client.clone(), sink.to_owned());
        async move {
            let map = client.list_shards().await;
            if let Ok(map) = &map {
                tracing::info!(sink, shards = map.len(), "kinesis shard map refreshed");
            }
            map
        }
    }

    /// Hands a record to the engine with the keys the partitioner gives it; a record it
    /// cannot place is refused with the reason.
    fn push(&mut self, engine: &mut Engine<Ticket>, r: Offer<'_>) -> Result<(), String> {
        match self.partitioner.assign(&r.batch.record(r.i), &mut self.rng) {
            Ok(a) => {
                let (key, ehk) = (a.partition_key.into_owned(), a.explicit_hash_key);
                let data = r.batch.payload_bytes_of(r.i);
                engine.push(key, ehk, data, r.ticket(), r.arrived, r.now);
                Ok(())
            }
            Err(e) => Err(format!("kinesis stream `{}`: {e}", self.cfg.stream)),
        }
    }

    fn publish(s: &EngineStats, before: &EngineStats, c: &Counters) {
        c.kinesis_requests
            .store(s.requests, AtomicOrdering::Relaxed);
        c.kinesis_records
            .store(s.kinesis_records, AtomicOrdering::Relaxed);
        c.kinesis_retries.store(s.retries, AtomicOrdering::Relaxed);
        c.kinesis_throttles
            .store(s.throttles, AtomicOrdering::Relaxed);
        if s.shards != before.shards {
            c.set_kinesis_shards(&s.shards);
        }
    }
}

/// The engine's settings for this config and the stream's record limit.
pub fn engine_settings(cfg: &KinesisSinkConfig, record_limit: usize) -> EngineSettings {
    let request_bytes_max = cfg.aws.request_bytes_max;
    let record_bytes_max = record_limit.min(request_bytes_max);
    let aggregate_bytes_max = cfg
        .aggregate
        .then(|| cfg.aggregate_bytes_max.min(record_bytes_max));
    let rate_limit = (cfg.rate_limit_percent > 0).then(|| {
        let base = ShardRateLimit {
            percent: cfg.rate_limit_percent,
            ..ShardRateLimit::default()
        };
        let (records, bytes) = (base.window_records(), base.window_bytes());
        ShardRateLimit {
            percent: cfg.rate_limit_percent,
            // 5% of the window at one instant, and at least one aggregate of bytes.
            burst_records: (records / 20).clamp(1, records.saturating_sub(1).max(1)),
            burst_bytes: (bytes / 20)
                .max(aggregate_bytes_max.unwrap_or(0) as u64)
                .clamp(1, bytes.saturating_sub(1).max(1)),
        }
    });
    EngineSettings {
        stream: cfg.stream.clone(),
        ordered: cfg.ordering == Ordering::Ordered,
        aggregate_bytes_max,
        batch: BatchPolicy {
            entries_max: cfg.aws.request_entries_max,
            request_bytes_max,
            record_bytes_max,
            linger: cfg.aws.linger,
            target_entries: cfg.aws.request_entries_max,
            target_bytes: request_bytes_max,
        },
        rate_limit,
        max_in_flight: cfg.aws.max_in_flight,
        retry: cfg.aws.retry,
        buffer_records_max: if cfg.aggregate { 200_000 } else { 20_000 },
        buffer_bytes_max: 16 << 20,
        seed: seed(),
    }
}
