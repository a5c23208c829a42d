//! The Firehose sink's I/O half: one thread with a small tokio runtime that reads the sink's
//! queue, drives the [`Engine`], and runs the PutRecordBatch calls it asks for.
//!
//! Start-up: connect, DescribeDeliveryStream until `ACTIVE` (retryable failures within the record
//! TTL; a fatal one fails the sink at once). Then a loop: send every request the engine has
//! ready (each call a task, at most `max_in_flight`), settle outcomes, and wait for an answer, a
//! batch from the queue (only while the engine has room: the backpressure) or the engine's next
//! timer. When the queue closes the engine flushes without lingering and the loop ends once every
//! record is written or dead-lettered. A fatal error dead-letters everything held and queued.

use std::sync::Arc;
use std::sync::atomic::Ordering as AtomicOrdering;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::task::JoinSet;

use crate::core::accounting::Counters;
use crate::core::record::Batch;
use crate::sinks::aws::batch::BatchPolicy;
use crate::sinks::aws::driver::{Ticket, dead_letter, fail, record_latency, seed, sleep_until};
use crate::sinks::aws::retry::{Attempts, RetryDecision};
use crate::sinks::aws::sdk::CallFailure;
use crate::sinks::firehose::client::DeliveryStreamClient;
use crate::sinks::firehose::config::FirehoseSinkConfig;
use crate::sinks::firehose::engine::{Engine, EngineSettings, EngineStats, EntryResult};
use crate::sinks::firehose::pack::RECORD_BYTES_MAX;
use crate::sinks::latency_histogram;
use crate::topology::DeadLetterTx;
use crate::topology::queue::Receiver;

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
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let reason = format!(
                "firehose delivery stream `{}`: cannot start a runtime: {e}",
                cfg.delivery_stream
            );
            return Err(fail(name, reason, Vec::new(), &rx, &dead, &counters));
        }
    };
    let mut sink = Sink {
        name,
        cfg,
        rx: &rx,
        dead: &dead,
        counters: &counters,
        latency: latency_histogram(),
        reported: EngineStats::default(),
    };
    rt.block_on(sink.run())
}

struct Sink<'a> {
    name: &'a str,
    cfg: FirehoseSinkConfig,
    rx: &'a Receiver<Batch>,
    dead: &'a DeadLetterTx,
    counters: &'a Arc<Counters>,
    latency: Histogram<u64>,
    reported: EngineStats,
}

type PutOutcome = (u64, Result<Vec<EntryResult>, CallFailure>);

impl Sink<'_> {
    async fn run(&mut self) -> Result<(), anyhow::Error> {
        let client = match self.setup().await {
            Ok(c) => c,
            Err(reason) => {
                return Err(fail(
                    self.name,
                    reason,
                    Vec::new(),
                    self.rx,
                    self.dead,
                    self.counters,
                ));
            }
        };
        tracing::info!(
            sink = self.name,
            delivery_stream = %self.cfg.delivery_stream,
            region = client.region(),
            pack = self.cfg.pack.pack,
            gzip = self.cfg.gzip_level.is_some(),
            "firehose sink ready"
        );
        let mut engine: Engine<Ticket> = Engine::new(engine_settings(&self.cfg));
        let mut calls: JoinSet<PutOutcome> = JoinSet::new();
        let mut open = true;
        loop {
            let now = Instant::now();
            while let Some(req) = engine.poll_request(now) {
                let c = client.clone();
                let counters = self.counters.clone();
                calls.spawn(async move {
                    let started = Instant::now();
                    let result = c.put_record_batch(&req.records).await;
                    let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                    counters.record_request_latency(us);
                    (req.id, result)
                });
            }
            self.settle(&mut engine);
            if let Some(reason) = engine.fatal().map(str::to_owned) {
                calls.abort_all();
                let held = engine.abort();
                self.publish(engine.stats());
                return Err(fail(
                    self.name,
                    reason,
                    held,
                    self.rx,
                    self.dead,
                    self.counters,
                ));
            }
            if !open && engine.is_idle() {
                break;
            }
            let timeout = engine.poll_timeout(now);
            let room = open && !engine.is_full();
            tokio::select! {
                biased;
                Some(joined) = calls.join_next(), if !calls.is_empty() => {
                    let now = Instant::now();
                    match joined {
                        Ok((id, Ok(results))) => engine.handle_response(id, results, now),
                        Ok((id, Err(f))) => {
                            if f.class.is_retryable() {
                                tracing::debug!(sink = self.name, "{f}; retrying");
                            }
                            engine.handle_call_error(id, f.class, &f.description, now);
                        }
                        Err(e) => {
                            let reason = format!(
                                "firehose delivery stream `{}`: internal error in a call: {e}",
                                self.cfg.delivery_stream
                            );
                            calls.abort_all();
                            let held = engine.abort();
                            return Err(fail(self.name, reason, held, self.rx, self.dead, self.counters));
                        }
                    }
                }
                batch = self.rx.recv(), if room => match batch {
                    Some(b) => self.ingest(&mut engine, b),
                    None => {
                        open = false;
                        engine.close();
                    }
                },
                () = sleep_until(timeout), if timeout.is_some() => {}
            }
        }
        self.publish(engine.stats());
        let s = engine.stats();
        tracing::info!(
            sink = self.name,
            requests = s.requests,
            user_records = s.user_records,
            firehose_records = s.firehose_records,
            retries = s.retries,
            failed_entries = s.failed_entries,
            call_errors = s.call_errors,
            bytes = s.bytes,
            billed_bytes = s.billed_bytes,
            billed_bytes_unpacked = s.billed_bytes_unpacked,
            "firehose sink done"
        );
        Ok(())
    }

    /// Connects and waits for the delivery stream to be active.
    async fn setup(&self) -> Result<DeliveryStreamClient, String> {
        let client = DeliveryStreamClient::connect(&self.cfg).await?;
        let policy = self.cfg.retry;
        let mut attempts = Attempts::new(Instant::now());
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed());
        loop {
            let what = match client.describe().await {
                Ok(status) if status == "ACTIVE" => return Ok(client),
                Ok(status) if status.starts_with("DELETING") || status.ends_with("FAILED") => {
                    return Err(format!(
                        "firehose delivery stream `{}` in region {} is {status}",
                        self.cfg.delivery_stream,
                        client.region()
                    ));
                }
                Ok(status) => format!(
                    "firehose delivery stream `{}` is {status}, not ACTIVE",
                    self.cfg.delivery_stream
                ),
                Err(f) if f.class.is_retryable() => f.description,
                Err(f) => return Err(f.description),
            };
            let now = Instant::now();
            match policy.on_failure(&mut attempts, now, &mut rng) {
                RetryDecision::RetryAt(at) => {
                    tracing::warn!(sink = self.name, "{what}; retrying");
                    let d = at
                        .saturating_duration_since(now)
                        .max(Duration::from_millis(50));
                    tokio::time::sleep(d).await;
                }
                RetryDecision::GiveUp(g) => return Err(format!("{what}; {g}")),
            }
        }
    }

    /// Hands a batch's records to the engine.
    fn ingest(&mut self, engine: &mut Engine<Ticket>, batch: Batch) {
        let now = Instant::now();
        let arrived = batch.origin().arrival;
        let batch = Arc::new(batch);
        for i in 0..batch.len() {
            let payload = batch.record(i).payload;
            engine.push(payload, (batch.clone(), i), arrived, now);
        }
    }

    /// Counts written records and dead-letters given-up ones.
    fn settle(&mut self, engine: &mut Engine<Ticket>) {
        let delivered = engine.take_delivered();
        if !delivered.is_empty() {
            let bytes: u64 = delivered
                .iter()
                .map(|(b, i)| b.record(*i).payload.len() as u64)
                .sum();
            self.counters.add_out(delivered.len() as u64, bytes);
            record_latency(&mut self.latency, &delivered);
            self.counters.merge_latency(&self.latency);
            self.latency.reset();
        }
        for (records, reason) in engine.take_dead() {
            dead_letter(records, &reason, self.dead, self.counters);
        }
        self.publish(engine.stats());
    }

    /// Copies the engine's counters into the sink's (only this thread writes them).
    fn publish(&mut self, s: &EngineStats) {
        if *s == self.reported {
            return;
        }
        let c = self.counters;
        let set = |a: &std::sync::atomic::AtomicU64, v: u64| a.store(v, AtomicOrdering::Relaxed);
        set(&c.firehose_requests, s.requests);
        set(&c.firehose_records, s.firehose_records);
        set(&c.firehose_retries, s.retries);
        set(&c.firehose_bytes, s.bytes);
        set(&c.firehose_billed_bytes, s.billed_bytes);
        set(&c.firehose_billed_bytes_unpacked, s.billed_bytes_unpacked);
        self.reported = s.clone();
    }
}

/// The engine's settings for this config.
pub fn engine_settings(cfg: &FirehoseSinkConfig) -> EngineSettings {
    let record_bytes_max = RECORD_BYTES_MAX.min(cfg.request_bytes_max);
    let mut pack = cfg.pack.clone();
    pack.pack_bytes_max = pack.pack_bytes_max.min(record_bytes_max);
    // A request is due once no further full pack would fit.
    let target_bytes = cfg
        .request_bytes_max
        .saturating_sub(pack.pack_bytes_max.min(cfg.request_bytes_max / 2))
        .max(1);
    EngineSettings {
        stream: cfg.delivery_stream.clone(),
        pack,
        batch: BatchPolicy {
            entries_max: cfg.request_entries_max,
            request_bytes_max: cfg.request_bytes_max,
            record_bytes_max,
            linger: cfg.linger,
            target_entries: cfg.request_entries_max,
            target_bytes,
        },
        gzip_level: cfg.gzip_level,
        retry: cfg.retry,
        max_in_flight: cfg.max_in_flight,
        buffer_records_max: 200_000,
        buffer_bytes_max: 32 << 20,
        seed: seed(),
    }
}
