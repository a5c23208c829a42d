//! The Firehose sink's part of the shared AWS sink thread ([`driver`]): start-up (connect,
//! DescribeDeliveryStream until `ACTIVE`; retryable failures within the record TTL, a fatal one
//! fails the sink at once), PutRecordBatch calls, every record's payload into the engine, and the
//! Firehose counters (billed bytes with and without packing).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};

use crate::core::accounting::Counters;
use crate::core::record::Batch;
use crate::queue::Receiver;
use crate::sinks::aws::batch::BatchPolicy;
use crate::sinks::aws::driver::{self, Offer, Service, StartupRetry, Status, Ticket, seed};
use crate::sinks::aws::sdk::CallFailure;
use crate::sinks::firehose::client::DeliveryStreamClient;
use crate::sinks::firehose::config::FirehoseSinkConfig;
use crate::sinks::firehose::engine::{Engine, EngineSettings, EngineStats, EntryResult, Request};
use crate::sinks::firehose::pack::RECORD_BYTES_MAX;
use crate::topology::DeadLetterTx;

/// Runs a Firehose sink until its queue closes and every record is written or dead-lettered.
///
/// # Errors
///
/// A fatal error (missing delivery stream, access denied, no region, ...), after every record the
/// sink held or had queued was dead-lettered with it.
pub fn run(
    name: &str,
    cfg: FirehoseSinkConfig,
    rx: Receiver<Batch>,
    dead: DeadLetterTx,
    counters: Arc<Counters>,
) -> Result<(), anyhow::Error> {
    driver::run(name, Firehose { cfg }, rx, dead, counters)
}

/// The Kinesis Data Firehose service for the shared driver.
struct Firehose {
    cfg: FirehoseSinkConfig,
}

impl Service for Firehose {
    type Engine = Engine<Ticket>;
    type Client = DeliveryStreamClient;

    fn target(&self) -> String {
        format!("firehose delivery stream `{}`", self.cfg.delivery_stream)
    }

    fn max_bytes_per_sec(&self) -> u64 {
        self.cfg.aws.max_bytes_per_sec
    }

    /// Connects and waits for the delivery stream to be active.
    async fn start(
        &mut self,
        sink: &str,
    ) -> Result<(DeliveryStreamClient, Engine<Ticket>), String> {
        let client = DeliveryStreamClient::connect(&self.cfg).await?;
        let target = self.target();
        StartupRetry::new(sink, self.cfg.aws.retry)
            .until(async || {
                let status = client.describe().await?;
                Ok(if status == "ACTIVE" {
                    Status::Ready(())
                } else if status.starts_with("DELETING") || status.ends_with("FAILED") {
                    Status::Unusable(format!(
                        "{target} in region {} is {status}",
                        client.region()
                    ))
                } else {
                    Status::NotYet(format!("{target} is {status}, not ACTIVE"))
                })
            })
            .await?;
        tracing::info!(
            sink,
            delivery_stream = %self.cfg.delivery_stream,
            region = client.region(),
            pack = self.cfg.pack.pack,
            gzip = self.cfg.gzip_level.is_some(),
            "firehose sink ready"
        );
        Ok((client, Engine::new(engine_settings(&self.cfg))))
    }

    async fn send(
        client: DeliveryStreamClient,
        request: Request,
    ) -> Result<Vec<EntryResult>, CallFailure> {
        client.put_record_batch(&request.records).await
    }

    /// Hands a record to the engine (which dead-letters an oversized one itself).
    fn push(&mut self, engine: &mut Engine<Ticket>, r: Offer<'_>) -> Result<(), String> {
        engine.push(r.payload(), r.ticket(), r.arrived, r.now);
        Ok(())
    }

    fn publish(s: &EngineStats, _before: &EngineStats, c: &Counters) {
        let set = |a: &AtomicU64, v: u64| a.store(v, AtomicOrdering::Relaxed);
        set(&c.firehose_requests, s.requests);
        set(&c.firehose_records, s.firehose_records);
        set(&c.firehose_retries, s.retries);
        set(&c.firehose_bytes, s.bytes);
        set(&c.firehose_billed_bytes, s.billed_bytes);
        set(&c.firehose_billed_bytes_unpacked, s.billed_bytes_unpacked);
    }
}

/// The engine's settings for this config.
pub fn engine_settings(cfg: &FirehoseSinkConfig) -> EngineSettings {
    let record_bytes_max = RECORD_BYTES_MAX.min(cfg.aws.request_bytes_max);
    let mut pack = cfg.pack.clone();
    pack.pack_bytes_max = pack.pack_bytes_max.min(record_bytes_max);
    // A request is due once no further full pack would fit.
    let target_bytes = cfg
        .aws
        .request_bytes_max
        .saturating_sub(pack.pack_bytes_max.min(cfg.aws.request_bytes_max / 2))
        .max(1);
    EngineSettings {
        stream: cfg.delivery_stream.clone(),
        pack,
        batch: BatchPolicy {
            entries_max: cfg.aws.request_entries_max,
            request_bytes_max: cfg.aws.request_bytes_max,
            record_bytes_max,
            linger: cfg.aws.linger,
            target_entries: cfg.aws.request_entries_max,
            target_bytes,
        },
        gzip_level: cfg.gzip_level,
        retry: cfg.aws.retry,
        max_in_flight: cfg.aws.max_in_flight,
        buffer_records_max: 200_000,
        buffer_bytes_max: 32 << 20,
        seed: seed(),
    }
}
