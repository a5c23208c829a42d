//! Aggregate stages (contract 0.2): one plugin instance per stage worker, shared by the workers,
//! with key affinity.
//!
//! A record's instance is the xxh3 hash of its `key` value (the field's bytes as the
//! partitioner reads them: unescaped string content, number text as written) modulo the number
//! of instances; records without the key (or with no `key` set) go to instance 0. So every
//! record of a key reaches the same instance, whichever worker takes its batch. A worker cuts
//! its batch by instance and calls each instance in turn (starting with its own, so workers
//! rarely wait for each other), holding that instance's lock for the call.
//!
//! `tick` is due every `tick_ms` for the stage as a whole: the first worker to see it due calls
//! every instance's `tick`. `flush` is called once per stage at shutdown and before a reload
//! switches to new stages. A failed call loses the instance's state (see
//! [`WasmStage::emit`]); the next call starts a new instance.
//!
//! Order: within one batch, a key's records reach its instance in input order. Batches taken
//! by different workers may reach an instance in either order, so with `stage_workers` above 1
//! a key's records of different batches are not guaranteed to be processed in input order
//! (event-time windows with `allowed_lateness_ms` absorb that).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::core::dead_letter::DeadLetter;
use crate::core::jsonpath::{JsonPath, lookup};
use crate::core::record::Batch;
use crate::stages::{Stage, StageError, Tally};

use super::emit::concat;
use super::stage::{Emitting, WasmStage};

/// What an aggregate stage's workers share: its instances and its tick schedule.
pub struct AggregateShared {
    instances: Vec<Mutex<WasmStage>>,
    key: Option<JsonPath>,
    every: Duration,
    next_tick: Mutex<Instant>,
    default_mask: u64,
}

impl AggregateShared {
    /// The shared part of a stage with these instances (one per worker; instance `i` made for
    /// slot `i` of `instances.len()`), keyed by `key`, ticking every `every`.
    pub fn new(
        instances: Vec<WasmStage>,
        key: Option<JsonPath>,
        every: Duration,
        default_mask: u64,
    ) -> Arc<AggregateShared> {
        Arc::new(AggregateShared {
            instances: instances.into_iter().map(Mutex::new).collect(),
            key,
            every,
            next_tick: Mutex::new(Instant::now() + every),
            default_mask,
        })
    }

    fn instance(&self, i: usize) -> Option<MutexGuard<'_, WasmStage>> {
        self.instances
            .get(i)
            .map(|m| m.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The instance record `i` of `batch` belongs to.
    fn instance_of(&self, batch: &Batch, i: usize) -> usize {
        let n = self.instances.len();
        if n <= 1 {
            return 0;
        }
        let Some(path) = &self.key else {
            return 0;
        };
        match lookup(batch.payload(i), path).and_then(|v| v.key_bytes()) {
            Some(k) => (xxhash_rust::xxh3::xxh3_64(&k) % n as u64) as usize,
            None => 0,
        }
    }

    /// Calls `call` on every instance and gives back what they emitted.
    fn emit_all(&self, call: Emitting) -> Vec<Batch> {
        (0..self.instances.len())
            .filter_map(|i| self.instance(i).and_then(|mut s| s.emit(call)))
            .collect()
    }
}

/// One worker's handle on an aggregate stage.
pub struct AggregateStage {
    shared: Arc<AggregateShared>,
    worker: usize,
    tally: Tally,
}

impl AggregateStage {
    /// Worker `worker`'s handle.
    pub fn new(shared: Arc<AggregateShared>, worker: usize) -> AggregateStage {
        AggregateStage {
            shared,
            worker,
            tally: Tally::default(),
        }
    }
}

fn wall_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

impl Stage for AggregateStage {
    fn process(&mut self, batch: &mut Batch, dead: &mut Vec<DeadLetter>) -> Result<(), StageError> {
        let n = self.shared.instances.len();
        if n <= 1 {
            let Some(mut s) = self.shared.instance(0) else {
                return Ok(());
            };
            let r = s.process(batch, dead);
            self.tally = s.take_tally();
            return r;
        }
        let mut buckets: Vec<Vec<usize>> = vec![Vec::new(); n];
        for i in 0..batch.len() {
            buckets[self.shared.instance_of(batch, i)].push(i);
        }
        let mut outs = Vec::new();
        let mut tally = Tally::default();
        for k in 0..n {
            let j = (self.worker + k) % n;
            if buckets[j].is_empty() {
                continue;
            }
            let mut part = batch.select(&buckets[j]);
            let Some(mut s) = self.shared.instance(j) else {
                continue;
            };
            let r = s.process(&mut part, dead);
            let t = s.take_tally();
            drop(s);
            tally.created += t.created;
            tally.absorbed += t.absorbed;
            r?;
            outs.push(part);
        }
        self.tally = tally;
        let origin = batch.origin().clone();
        *batch = concat(outs, origin.clone(), self.shared.default_mask)
            .unwrap_or_else(|| Batch::new(bytes::Bytes::new(), Vec::new(), origin));
        Ok(())
    }

    fn take_tally(&mut self) -> Tally {
        std::mem::take(&mut self.tally)
    }

    fn next_tick(&self) -> Option<Instant> {
        Some(
            *self
                .shared
                .next_tick
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    fn tick(&mut self, now: Instant) -> Vec<Batch> {
        {
            let mut next = self
                .shared
                .next_tick
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if now < *next {
                return Vec::new();
            }
            // Missed ticks are not made up: the next is one interval from now.
            *next = now + self.shared.every;
        }
        self.shared.emit_all(Emitting::Tick(wall_nanos()))
    }

    fn flush(&mut self) -> Vec<Batch> {
        self.shared.emit_all(Emitting::Flush)
    }
}
