//! The Kinesis sink's I/O half: one thread with a small tokio runtime of its own that reads the
//! sink's queue, drives the [`Engine`], and runs the PutRecords calls it asks for.
//!
//! Start-up: connect ([`StreamClient::connect`]), DescribeStreamSummary until the stream is
//! `ACTIVE` (its `MaxRecordSizeInKiB` sets the record limit), ListShards for the shard map;
//! retryable failures are retried within the record TTL, a fatal one (missing stream, no access)
//! fails the sink at once. Then a loop: send every request the engine has ready (each call a task;
//! at most `max_in_flight`), settle outcomes, and wait for whichever comes first: an answer, a new
//! shard map, a batch from the queue (only while the engine has room: that is the backpressure),
//! or the engine's next timer. When the queue closes the engine flushes without lingering and the
//! loop ends once every record is written or dead-lettered.
//!
//! Accounting: the dispatcher counts records into the sink; every record written is counted out
//! here, every record given up goes to the dead-letter sink with its reason (counted there as
//! dead-lettered by this sink). After a fatal error everything held, in flight and queued is
//! dead-lettered with the error, and the queue is closed (the dispatcher dead-letters the rest).

use std::sync::Arc;
use std::sync::atomic::Ordering as AtomicOrdering;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::task::JoinSet;

use crate::core::accounting::Counters;
use crate::core::dead_letter::DeadLetter;
use crate::core::partitioner::Partitioner;
use crate::core::record::Batch;
use crate::sinks::aws::driver::{self, Ticket, record_latency, seed, sleep_until};
use crate::sinks::kinesis::batch::{BatchPolicy, RECORD_BYTES_MAX_DEFAULT, RECORD_BYTES_MAX_LIMIT};
use crate::sinks::kinesis::client::{CallFailure, StreamClient};
use crate::sinks::kinesis::config::{KinesisSinkConfig, Ordering};
use crate::sinks::kinesis::engine::{Engine, EngineSettings, EngineStats, EntryResult, UserRecord};
use crate::sinks::kinesis::limits::ShardRateLimit;
use crate::sinks::kinesis::retry::{Attempts, RetryDecision};
use crate::sinks::kinesis::shards::ShardMap;
use crate::sinks::latency_histogram;
use crate::topology::DeadLetterTx;
use crate::topology::queue::Receiver;

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
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let reason = format!(
                "kinesis stream `{}`: cannot start a runtime: {e}",
                cfg.stream
            );
            return Err(fail(name, reason, Vec::new(), &rx, &dead, &counters));
        }
    };
    let cfg_partition = cfg.partition.clone();
    let mut sink = Sink {
        name,
        cfg,
        rx: &rx,
        dead: &dead,
        counters: &counters,
        latency: latency_histogram(),
        reported: EngineStats::default(),
        partitioner: Partitioner::new(cfg_partition),
        rng: <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed()),
    };
    rt.block_on(sink.run())
}

struct Sink<'a> {
    name: &'a str,
    cfg: KinesisSinkConfig,
    rx: &'a Receiver<Batch>,
    dead: &'a DeadLetterTx,
    counters: &'a Arc<Counters>,
    latency: Histogram<u64>,
    reported: EngineStats,
    partitioner: Partitioner,
    /// Random partition keys (not for anything secret).
    rng: rand::rngs::StdRng,
}

type PutOutcome = (u64, Result<Vec<EntryResult>, CallFailure>);

impl Sink<'_> {
    async fn run(&mut self) -> Result<(), anyhow::Error> {
        let (client, map, record_limit) = match self.setup().await {
            Ok(s) => s,
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
        let settings = engine_settings(&self.cfg, record_limit);
        tracing::info!(
            sink = self.name,
            stream = %self.cfg.stream,
            region = client.region(),
            shards = map.len(),
            record_bytes_max = settings.batch.record_bytes_max,
            "kinesis sink ready"
        );
        let mut engine: Engine<Ticket> = Engine::new(settings, map, Instant::now());
        let mut calls: JoinSet<PutOutcome> = JoinSet::new();
        let mut maps: JoinSet<Result<ShardMap, CallFailure>> = JoinSet::new();
        let mut open = true;
        loop {
            let now = Instant::now();
            while let Some(req) = engine.poll_request(now) {
                let c = client.clone();
                let counters = self.counters.clone();
                calls.spawn(async move {
                    let started = Instant::now();
                    let result = c.put_records(&req.entries).await;
                    let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                    counters.record_request_latency(us);
                    (req.id, result)
                });
            }
            if engine.poll_shard_map_refresh(now) {
                let c = client.clone();
                maps.spawn(async move { c.list_shards().await });
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
                            // A call task panicked: a bug; its request is lost to the engine, so
                            // stop rather than lose track of records.
                            let reason = format!("kinesis stream `{}`: internal error in a call: {e}", self.cfg.stream);
                            calls.abort_all();
                            let held = engine.abort();
                            return Err(fail(self.name, reason, held, self.rx, self.dead, self.counters));
                        }
                    }
                }
                Some(joined) = maps.join_next(), if !maps.is_empty() => {
                    match joined {
                        Ok(Ok(map)) => {
                            tracing::info!(sink = self.name, shards = map.len(), "kinesis shard map refreshed");
                            engine.handle_shard_map(map, Instant::now());
                        }
                        Ok(Err(f)) => {
                            tracing::warn!(sink = self.name, "{f}");
                            engine.shard_map_failed();
                        }
                        Err(_) => engine.shard_map_failed(),
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
            kinesis_records = s.kinesis_records,
            retries = s.retries,
            throttles = s.throttles,
            shards = ?s.shards,
            wrong_shard = s.wrong_shard,
            "kinesis sink done"
        );
        Ok(())
    }

    /// Connects, waits for the stream to be active, reads its record limit and shard map.
    async fn setup(&self) -> Result<(StreamClient, ShardMap, usize), String> {
        let client = StreamClient::connect(&self.cfg).await?;
        let started = Instant::now();
        let policy = self.cfg.retry;
        let mut attempts = Attempts::new(started);
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed());
        // Retryable failures wait a backoff within the record TTL; a stream still being created
        // is polled the same way.
        let mut wait = |what: String| -> Result<Duration, String> {
            let now = Instant::now();
            match policy.on_failure(&mut attempts, now, &mut rng) {
                RetryDecision::RetryAt(at) => {
                    tracing::warn!(sink = self.name, "{what}; retrying");
                    Ok(at
                        .saturating_duration_since(now)
                        .max(Duration::from_millis(50)))
                }
                RetryDecision::GiveUp(g) => Err(format!("{what}; {g}")),
            }
        };
        let info = loop {
            match client.describe().await {
                Ok(info) if info.status == "ACTIVE" || info.status == "UPDATING" => break info,
                Ok(info) if info.status == "DELETING" => {
                    return Err(format!(
                        "kinesis stream `{}` in region {} is being deleted",
                        self.cfg.stream,
                        client.region()
                    ));
                }
                Ok(info) => {
                    let d = wait(format!(
                        "kinesis stream `{}` is {}, not ACTIVE",
                        self.cfg.stream, info.status
                    ))?;
                    tokio::time::sleep(d).await;
                }
                Err(f) if f.class.is_retryable() => tokio::time::sleep(wait(f.description)?).await,
                Err(f) => return Err(f.description),
            }
        };
        let map = loop {
            match client.list_shards().await {
                Ok(map) => break map,
                Err(f) if f.class.is_retryable() => tokio::time::sleep(wait(f.description)?).await,
                Err(f) => return Err(f.description),
            }
        };
        let record_limit = info
            .record_bytes_max
            .unwrap_or(RECORD_BYTES_MAX_DEFAULT)
            .min(RECORD_BYTES_MAX_LIMIT);
        Ok((client, map, record_limit))
    }

    /// Hands a batch's records to the engine, with the keys the partitioner gives them; a
    /// record it cannot place is dead-lettered with the reason.
    fn ingest(&mut self, engine: &mut Engine<Ticket>, batch: Batch) {
        let now = Instant::now();
        let arrived = batch.origin().arrival;
        let batch = Arc::new(batch);
        let mut unplaced: Vec<(String, Vec<usize>)> = Vec::new();
        for i in 0..batch.len() {
            let rec = batch.record(i);
            match self.partitioner.assign(&rec, &mut self.rng) {
                Ok(a) => engine.push(
                    a.partition_key.into_owned(),
                    a.explicit_hash_key,
                    batch.payload_bytes_of(i),
                    (batch.clone(), i),
                    arrived,
                    now,
                ),
                Err(e) => {
                    let reason = format!("kinesis stream `{}`: {e}", self.cfg.stream);
                    match unplaced.iter_mut().find(|(r, _)| *r == reason) {
                        Some((_, idx)) => idx.push(i),
                        None => unplaced.push((reason, vec![i])),
                    }
                }
            }
        }
        for (reason, idx) in unplaced {
            let _ = self
                .dead
                .send(DeadLetter::from_batch(&batch, &idx, &reason), self.counters);
        }
    }

    /// Counts written records and dead-letters given-up ones.
    fn settle(&mut self, engine: &mut Engine<Ticket>) {
        let delivered = engine.take_delivered();
        if !delivered.is_empty() {
            let bytes: u64 = delivered.iter().map(|r| r.data.len() as u64).sum();
            self.counters.add_out(delivered.len() as u64, bytes);
            record_latency(&mut self.latency, delivered.iter().map(|r| &r.ticket));
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
        c.kinesis_requests
            .store(s.requests, AtomicOrdering::Relaxed);
        c.kinesis_records
            .store(s.kinesis_records, AtomicOrdering::Relaxed);
        c.kinesis_retries.store(s.retries, AtomicOrdering::Relaxed);
        c.kinesis_throttles
            .store(s.throttles, AtomicOrdering::Relaxed);
        if s.shards != self.reported.shards {
            c.set_kinesis_shards(&s.shards);
        }
        self.reported = s.clone();
    }
}

/// The engine's settings for this config and the stream's record limit.
pub fn engine_settings(cfg: &KinesisSinkConfig, record_limit: usize) -> EngineSettings {
    let request_bytes_max = cfg.request_bytes_max;
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
            entries_max: cfg.request_entries_max,
            request_bytes_max,
            record_bytes_max,
            linger: cfg.linger,
            target_entries: cfg.request_entries_max,
            target_bytes: request_bytes_max,
        },
        rate_limit,
        max_in_flight: cfg.max_in_flight,
        retry: cfg.retry,
        buffer_records_max: if cfg.aggregate { 200_000 } else { 20_000 },
        buffer_bytes_max: 16 << 20,
        seed: seed(),
    }
}

/// Sends records to the dead-letter sink, grouped by batch.
fn dead_letter(
    records: Vec<UserRecord<Ticket>>,
    reason: &str,
    dead: &DeadLetterTx,
    counters: &Counters,
) {
    driver::dead_letter(
        records.into_iter().map(|r| r.ticket),
        reason,
        dead,
        counters,
    );
}

/// Handles a fatal error: dead-letters what the engine held and what was queued, closes the
/// queue, and returns the error to report.
fn fail(
    name: &str,
    reason: String,
    held: Vec<UserRecord<Ticket>>,
    rx: &Receiver<Batch>,
    dead: &DeadLetterTx,
    counters: &Counters,
) -> anyhow::Error {
    driver::fail(
        name,
        reason,
        held.into_iter().map(|r| r.ticket),
        rx,
        dead,
        counters,
    )
}
