//! The sink's state machine: user records in, PutRecords requests out, answers in, outcomes out.
//!
//! [`Engine`] ties the pure parts together and is itself pure (no I/O, no clock reads, no
//! sleeps). It is a [`SinkEngine`]: the shared driver ([`crate::sinks::aws::driver`], with this
//! sink's [`super::sink`]) feeds it records with [`Engine::push`], sends what
//! [`SinkEngine::poll_request`] gives, reports answers with [`SinkEngine::handle_response`] /
//! [`SinkEngine::handle_call_error`], sleeps until [`SinkEngine::poll_timeout`], fetches a shard
//! map when [`SinkEngine::poll_refresh`] asks, and collects outcomes with
//! [`SinkEngine::take_delivered`] / [`SinkEngine::take_dead`]. The simulation tests at the end of
//! this file drive it against a scripted fake stream in virtual time (the shared
//! `sinks::aws::sim` harness).
//!
//! What happens to a user record:
//! 1. It comes with its partition key and explicit hash key (from the
//!    [`Partitioner`](crate::core::partitioner::Partitioner)); its hash key (explicit, else MD5 of
//!    the key) predicts its shard in the current [`ShardMap`]. A record over the stream's record
//!    limit (data + key) is dead-lettered at once with its size and the limit.
//! 2. Without aggregation it becomes one entry. With aggregation it goes into its predicted
//!    shard's [`Aggregator`], which becomes an entry when full, when its oldest record has
//!    lingered, or at close (a lone record is sent raw).
//! 3. Entries wait in the [`Batcher`]; a request is cut when it is due (linger or targets),
//!    taking entries the per-shard [`ShardLimiter`] admits and, in ordered mode, that the
//!    [`OrderTracker`] says may go (at most `max_in_flight` requests at once).
//! 4. A written entry delivers its user records. A failed entry (or every entry of a failed
//!    call) is retried alone after a backoff ([`RetryPolicy`]), or dead-lettered with the last
//!    error when attempts or the record TTL run out. A fatal error stops everything
//!    ([`SinkEngine::fatal`]); the caller then takes every record back with
//!    [`SinkEngine::abort`].
//! 5. An answer naming another shard than predicted means the map is stale: the engine asks for
//!    a new one, stops sending, waits for the requests in flight, then re-splits everything not
//!    yet sent (aggregates included) over the new map in arrival order.
//!
//! Every pushed record ends in exactly one of `take_delivered`, `take_dead` or `abort`.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::SeedableRng;
use rand::rngs::StdRng;

pub use crate::core::accounting::ShardCounts;
use crate::core::kinesis::aggregate::{Aggregator, KinesisRecord};
use crate::core::kinesis::hash::{format_hash_key, hash_key};
use crate::sinks::aws::batch::{BatchPolicy, Batcher, Oversized};
use crate::sinks::aws::engine::{Books, SinkEngine};
use crate::sinks::aws::retry::{
    Attempts, ErrorClass, RetryDecision, RetryPolicy, classify_entry_error,
};
use crate::sinks::kinesis::limits::{ShardLimiter, ShardRateLimit};
use crate::sinks::kinesis::ordering::{EntryId, OrderTracker};
use crate::sinks::kinesis::shards::ShardMap;

/// How the engine behaves; built by the I/O half from the sink config and the stream's limits.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// The stream, as written in the config (for messages).
    pub stream: String,
    /// Keep per-key order.
    pub ordered: bool,
    /// Aggregate, with this size limit (at most the record limit).
    pub aggregate_bytes_max: Option<usize>,
    /// Request limits, record limit and linger.
    pub batch: BatchPolicy,
    /// Per-shard rate limit; `None`: unlimited.
    pub rate_limit: Option<ShardRateLimit>,
    /// Most requests in flight.
    pub max_in_flight: usize,
    /// Retries.
    pub retry: RetryPolicy,
    /// Most user records held (waiting, aggregating or in flight) before [`Engine::is_full`].
    pub buffer_records_max: usize,
    /// Most user record bytes held before [`Engine::is_full`].
    pub buffer_bytes_max: usize,
    /// Seed of the backoff jitter.
    pub seed: u64,
}

/// One user record held by the engine; `ticket` is the caller's handle to it (for accounting
/// and dead letters).
#[derive(Debug)]
pub struct UserRecord<T> {
    /// The partition key it is sent with.
    pub partition_key: String,
    /// Its explicit hash key, if the source gave one.
    pub explicit_hash_key: Option<u128>,
    /// The data.
    pub data: Bytes,
    /// The caller's handle.
    pub ticket: T,
    /// When it arrived (its TTL counts from here).
    pub arrived: Instant,
    /// Arrival order in this engine.
    seq: u64,
    /// Its hash key (explicit, else MD5 of the key).
    hash_key: u128,
}

/// One entry of a request, ready to be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestEntry {
    /// `PartitionKey`.
    pub partition_key: String,
    /// `ExplicitHashKey` (decimal), if any.
    pub explicit_hash_key: Option<String>,
    /// `Data`.
    pub data: Bytes,
}

/// A PutRecords request to send; answer with its `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Identifies the request in [`Engine::handle_response`] / [`Engine::handle_call_error`].
    pub id: u64,
    /// The entries, in order.
    pub entries: Vec<RequestEntry>,
    /// User records in the request.
    pub user_records: usize,
    /// Bytes (data + partition keys).
    pub bytes: usize,
}

/// The answer for one entry of a successful PutRecords call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryResult {
    /// Written to this shard.
    Written {
        /// `ShardId`.
        shard_id: String,
    },
    /// Not written.
    Failed {
        /// `ErrorCode`.
        code: String,
        /// `ErrorMessage`.
        message: String,
    },
}

/// Counters of what the engine did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// PutRecords requests made (answered or not).
    pub requests: u64,
    /// Entries sent, resends included.
    pub entries_sent: u64,
    /// Kinesis records written (an aggregate counts once).
    pub kinesis_records: u64,
    /// User records written.
    pub user_records: u64,
    /// Bytes written (data + partition keys of the Kinesis records).
    pub bytes: u64,
    /// Entries sent again after a failure.
    pub retries: u64,
    /// Throttled entries and calls.
    pub throttles: u64,
    /// Per shard id: what was written there and how often an entry for it was throttled
    /// (whole-call throttles are not per shard, so these throttles sum to `throttles` minus the
    /// throttled calls). Keyed by id, not by shard map index, so a reshard does not mix shards.
    pub shards: BTreeMap<String, ShardCounts>,
    /// Failed calls (all classes).
    pub call_errors: u64,
    /// Written entries that landed on another shard than predicted.
    pub wrong_shard: u64,
    /// Shard maps applied after the first.
    pub remaps: u64,
}

#[derive(Debug)]
struct Entry<T> {
    records: Vec<UserRecord<T>>,
    partition_key: String,
    explicit_hash_key: Option<u128>,
    data: Bytes,
    size: usize,
    shard: usize,
    since: Instant,
    attempts: Attempts,
    order: Option<EntryId>,
}

/// What [`Engine::new_entry`] makes an entry of.
struct NewEntry<T> {
    /// The user records the entry carries: one, or those of an aggregate.
    records: Vec<UserRecord<T>>,
    /// The Kinesis record's partition key.
    partition_key: String,
    /// The Kinesis record's explicit hash key, if any.
    explicit_hash_key: Option<u128>,
    /// The Kinesis record's data (a user record's, or an aggregate's encoding).
    data: Bytes,
    /// Index of the shard the entry is for.
    shard: usize,
    /// The ordering lane: the top half of the record's hash key, or the shard for an aggregate.
    lane: u64,
    /// When the entry's content started waiting.
    since: Instant,
}

#[derive(Debug)]
struct ShardAggregate<T> {
    agg: Aggregator,
    records: Vec<UserRecord<T>>,
    since: Option<Instant>,
}

/// The Kinesis sink's decisions; `T` is the caller's handle of a user record.
#[derive(Debug)]
pub struct Engine<T> {
    settings: EngineSettings,
    map: ShardMap,
    rng: StdRng,
    next_seq: u64,
    next_entry: u64,
    next_request: u64,
    aggregates: Vec<ShardAggregate<T>>,
    entries: HashMap<u64, Entry<T>>,
    batcher: Batcher<u64>,
    retries: BinaryHeap<Reverse<(Instant, u64)>>,
    in_flight: HashMap<u64, Vec<u64>>,
    tracker: OrderTracker,
    limiter: Option<ShardLimiter>,
    want_map: bool,
    map_requested: bool,
    next_refresh: Option<Instant>,
    pending_map: Option<ShardMap>,
    books: Books<UserRecord<T>, EngineStats>,
}

/// Shortest time between two shard map refreshes.
const REFRESH_INTERVAL: Duration = Duration::from_secs(1);

impl<T> Engine<T> {
    /// An engine for a stream with shard map `map`, starting at `now`.
    pub fn new(settings: EngineSettings, map: ShardMap, now: Instant) -> Engine<T> {
        let n = map.len();
        let limiter = settings.rate_limit.map(|l| ShardLimiter::new(n, l, now));
        let mut engine = Engine {
            rng: StdRng::seed_from_u64(settings.seed),
            batcher: Batcher::new(settings.batch),
            map,
            next_seq: 0,
            next_entry: 0,
            next_request: 0,
            aggregates: Vec::new(),
            entries: HashMap::new(),
            retries: BinaryHeap::new(),
            in_flight: HashMap::new(),
            tracker: OrderTracker::new(),
            limiter,
            want_map: false,
            map_requested: false,
            next_refresh: None,
            pending_map: None,
            books: Books::new(settings.buffer_records_max, settings.buffer_bytes_max),
            settings,
        };
        engine.reset_aggregates();
        engine
    }

    fn reset_aggregates(&mut self) {
        self.aggregates = match self.settings.aggregate_bytes_max {
            Some(max) => (0..self.map.len())
                .map(|_| ShardAggregate {
                    agg: Aggregator::new(max),
                    records: Vec::new(),
                    since: None,
                })
                .collect(),
            None => Vec::new(),
        };
    }

    /// The settings.
    pub fn settings(&self) -> &EngineSettings {
        &self.settings
    }

    /// The shard map in use.
    pub fn shard_map(&self) -> &ShardMap {
        &self.map
    }

    /// User records held: waiting, aggregating, in flight or waiting for a retry.
    pub fn held_records(&self) -> usize {
        self.books.held.records()
    }

    /// Requests in flight.
    pub fn requests_in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Takes a user record that arrived at `arrived` and was received at `now`, with the
    /// partition key (1 to 256 characters) and explicit hash key the partitioner
    /// ([`crate::core::partitioner::Partitioner`]) gave it. A record over the record limit (data
    /// + key) is dead-lettered at once.
    pub fn push(
        &mut self,
        partition_key: String,
        explicit_hash_key: Option<u128>,
        data: Bytes,
        ticket: T,
        arrived: Instant,
        now: Instant,
    ) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let record = self.user_record(partition_key, explicit_hash_key, data, ticket, arrived, seq);
        let size = record.data.len() + record.partition_key.len();
        let limit = self.settings.batch.record_bytes_max;
        if size > limit {
            let reason = format!(
                "kinesis stream `{}`: {}",
                self.settings.stream,
                Oversized {
                    entry: (),
                    size,
                    limit
                }
                .reason()
            );
            self.books.dead.push((vec![record], reason));
            return;
        }
        self.books.held.add(1, size);
        self.place(record, now);
    }

    fn user_record(
        &self,
        partition_key: String,
        explicit_hash_key: Option<u128>,
        data: Bytes,
        ticket: T,
        arrived: Instant,
        seq: u64,
    ) -> UserRecord<T> {
        let hash_key = explicit_hash_key.unwrap_or_else(|| hash_key(&partition_key));
        UserRecord {
            partition_key,
            explicit_hash_key,
            data,
            ticket,
            arrived,
            seq,
            hash_key,
        }
    }

    /// Puts a held record on its way: into its shard's aggregate, or into an entry of its own.
    fn place(&mut self, record: UserRecord<T>, now: Instant) {
        let shard = self.map.index_of(record.hash_key);
        if self.aggregates.is_empty() {
            let lane = (record.hash_key >> 64) as u64;
            let since = now;
            self.new_entry(NewEntry {
                partition_key: record.partition_key.clone(),
                explicit_hash_key: record.explicit_hash_key,
                data: record.data.clone(),
                records: vec![record],
                shard,
                lane,
                since,
            });
            return;
        }
        let Some(a) = self.aggregates.get_mut(shard) else {
            return;
        };
        let pushed = a.agg.push(
            &record.partition_key,
            record.explicit_hash_key,
            &record.data,
        );
        if pushed.is_err() {
            self.finish_aggregate(shard);
            let Some(a) = self.aggregates.get_mut(shard) else {
                return;
            };
            // An empty aggregator takes any record.
            let _ = a.agg.push(
                &record.partition_key,
                record.explicit_hash_key,
                &record.data,
            );
        }
        if let Some(a) = self.aggregates.get_mut(shard) {
            a.since.get_or_insert(now);
            a.records.push(record);
        }
    }

    /// Turns shard `shard`'s aggregate (if any) into an entry.
    fn finish_aggregate(&mut self, shard: usize) {
        let Some(a) = self.aggregates.get_mut(shard) else {
            return;
        };
        let Some(rec) = a.agg.finish() else { return };
        let records = std::mem::take(&mut a.records);
        // An aggregate with records always has `since`; the first record's arrival is a fallback.
        let Some(since) = a
            .since
            .take()
            .or_else(|| records.first().map(|r| r.arrived))
        else {
            return;
        };
        let KinesisRecord {
            partition_key,
            explicit_hash_key,
            data,
            ..
        } = rec;
        self.new_entry(NewEntry {
            records,
            partition_key,
            explicit_hash_key,
            data: Bytes::from(data),
            shard,
            lane: shard as u64,
            since,
        });
    }

    /// Makes an entry of `parts` and queues it in the batcher (dead-lettering it if the batcher
    /// refuses it).
    fn new_entry(&mut self, parts: NewEntry<T>) {
        let NewEntry {
            records,
            partition_key,
            explicit_hash_key,
            data,
            shard,
            lane,
            since,
        } = parts;
        let id = self.next_entry;
        self.next_entry += 1;
        let size = data.len() + partition_key.len();
        let oldest = records.iter().map(|r| r.arrived).min().unwrap_or(since);
        let order = self.settings.ordered.then(|| self.tracker.push(lane));
        self.entries.insert(
            id,
            Entry {
                records,
                partition_key,
                explicit_hash_key,
                data,
                size,
                shard,
                since,
                attempts: Attempts::new(oldest),
                order,
            },
        );
        if let Err(o) = self.batcher.push(id, size, since) {
            // Not reachable: records and aggregates are checked against the record limit.
            let reason = format!("kinesis stream `{}`: {}", self.settings.stream, o.reason());
            self.give_up(id, reason);
        }
    }

    /// Dead-letters an entry that is not in flight and not pending in the batcher.
    fn give_up(&mut self, id: u64, reason: String) {
        let Some(e) = self.entries.remove(&id) else {
            return;
        };
        if let Some(order) = e.order {
            let _ = self.tracker.abandon(order);
        }
        self.release(&e.records);
        self.books.dead.push((e.records, reason));
    }

    fn release(&mut self, records: &[UserRecord<T>]) {
        for r in records {
            self.books
                .held
                .release(1, r.data.len() + r.partition_key.len());
        }
    }

    /// Finishes aggregates whose oldest record lingered long enough (all of them when closing)
    /// and puts entries whose backoff ended back into the batcher.
    fn advance(&mut self, now: Instant) {
        let linger = self.settings.batch.linger;
        for shard in 0..self.aggregates.len() {
            let due = self.aggregates[shard]
                .since
                .is_some_and(|s| self.books.closing || s + linger <= now);
            if due {
                self.finish_aggregate(shard);
            }
        }
        while let Some(&Reverse((at, id))) = self.retries.peek() {
            if at > now {
                break;
            }
            self.retries.pop();
            if let Some(e) = self.entries.get(&id)
                && let Err(o) = self.batcher.push_front(id, e.size, e.since)
            {
                let reason = format!("kinesis stream `{}`: {}", self.settings.stream, o.reason());
                self.give_up(id, reason);
            }
        }
        if self.pending_map.is_some() && self.in_flight.is_empty() {
            self.apply_pending_map(now);
        }
    }

    /// Like Nagle's algorithm: while requests are in flight, a small request waits for an answer
    /// (which frees lanes and brings more entries) instead of going alone.
    fn nagle_holds(&self) -> bool {
        !self.in_flight.is_empty() && !self.worth_a_request()
    }

    /// Whether the entries that may go now fill a fair share of a request: a
    /// `1 / max_in_flight` part of its entries or of its bytes (the rate limiter aside).
    fn worth_a_request(&self) -> bool {
        let policy = &self.settings.batch;
        let share = self.settings.max_in_flight.max(1);
        let min_entries = (policy.entries_max / share).max(1);
        let min_bytes = (policy.request_bytes_max / share).max(1);
        let (mut entries, mut bytes) = (0, 0);
        for (id, size) in self.batcher.iter() {
            let ready = self
                .entries
                .get(id)
                .and_then(|e| e.order)
                .is_none_or(|o| self.tracker.is_ready(o));
            if ready {
                entries += 1;
                bytes += size;
                if entries >= min_entries || bytes >= min_bytes {
                    return true;
                }
            }
        }
        false
    }

    /// Under the rate limit, how long until some shard's budget takes a full burst (less 10%) of
    /// its pending entries that ordering allows, or all of them if fewer ([`Duration::ZERO`]: now;
    /// `None`: no limit or nothing pending). Waiting for less makes more, smaller requests for
    /// the same throughput; waiting for more lets the budget overflow. Looks at no more of the
    /// backlog than it takes to find a burst for every shard.
    fn burst_wait(&mut self, now: Instant) -> Option<Duration> {
        let limiter = self.limiter.as_mut()?;
        let limit = limiter.limit();
        // A "full" burst is 90% of it: the caller's timer fires late (tokio rounds up to the
        // millisecond, a busy machine later still), and a bucket that is already full meanwhile
        // throws away what it would have earned (at 950 records/s, 5 of 50 records are 5 ms).
        let burst_records = (limit.burst_records - limit.burst_records / 10).max(1);
        let burst_bytes = (limit.burst_bytes - limit.burst_bytes / 10).max(1);
        let n = self.map.len();
        // Per shard: (records, bytes) of its first pending entries, up to a full burst.
        let mut pending: Vec<(u64, u64)> = vec![(0, 0); n];
        let mut full_shards = 0;
        for (id, size) in self.batcher.iter() {
            let Some(e) = self.entries.get(id) else {
                continue;
            };
            if e.order.is_some_and(|o| !self.tracker.is_ready(o)) {
                continue;
            }
            let Some(p) = pending.get_mut(e.shard) else {
                continue;
            };
            if p.0 >= burst_records || p.1 >= burst_bytes {
                continue;
            }
            p.0 += 1;
            p.1 += size as u64;
            if p.0 >= burst_records || p.1 >= burst_bytes {
                full_shards += 1;
                if full_shards == n {
                    break;
                }
            }
        }
        pending
            .iter()
            .enumerate()
            .filter(|(_, (records, _))| *records > 0)
            .map(|(shard, &(records, bytes))| limiter.wait(shard, records, bytes, now))
            .min()
    }

    fn written(&mut self, eid: u64, shard_id: &str) {
        let Some(e) = self.entries.remove(&eid) else {
            return;
        };
        if let Some(order) = e.order {
            let _ = self.tracker.succeeded(order);
        }
        if self.map.get(e.shard).is_some_and(|s| s.id != shard_id) {
            self.books.stats.wrong_shard += 1;
            self.want_map = true;
        }
        self.books.stats.kinesis_records += 1;
        self.books.stats.user_records += e.records.len() as u64;
        // The shard that took it, as answered (the predicted one if the answer has no id).
        let landed = match (shard_id, self.map.get(e.shard)) {
            ("", Some(predicted)) => Some(predicted.id.as_str()),
            ("", None) => None,
            (id, _) => Some(id),
        };
        if let Some(id) = landed {
            let counts = self.books.stats.shards.entry(id.to_owned()).or_default();
            counts.kinesis_records += 1;
            counts.records += e.records.len() as u64;
        }
        self.books.stats.bytes += e.size as u64;
        self.release(&e.records);
        self.books.delivered.extend(e.records);
    }

    fn failed(&mut self, eid: u64, what: &str, now: Instant) {
        let Some(e) = self.entries.get_mut(&eid) else {
            return;
        };
        if let Some(order) = e.order {
            let _ = self.tracker.failed(order);
        }
        if self.books.fatal.is_some() {
            // Kept for `abort`.
            return;
        }
        match self
            .settings
            .retry
            .on_failure(&mut e.attempts, now, &mut self.rng)
        {
            RetryDecision::RetryAt(at) => self.retries.push(Reverse((at, eid))),
            RetryDecision::GiveUp(g) => {
                let reason = format!(
                    "kinesis stream `{}`: not written ({what}); {g}",
                    self.settings.stream
                );
                self.give_up(eid, reason);
            }
        }
    }

    /// Asks for a new shard map (e.g. after `ResourceInUseException` or an unknown shard).
    pub fn request_shard_map(&mut self) {
        self.want_map = true;
    }

    /// Switches to the pending map with nothing in flight: every record not yet written is
    /// placed again, in arrival order, so aggregates and order follow the new shards.
    fn apply_pending_map(&mut self, now: Instant) {
        let Some(map) = self.pending_map.take() else {
            return;
        };
        let mut records: Vec<UserRecord<T>> = Vec::new();
        for a in &mut self.aggregates {
            records.append(&mut a.records);
        }
        for (_, e) in self.entries.drain() {
            records.extend(e.records);
        }
        records.sort_by_key(|r| r.seq);
        while self.batcher.take().is_some() {}
        self.retries.clear();
        self.tracker = OrderTracker::new();
        self.map = map;
        let n = self.map.len();
        self.limiter = self
            .settings
            .rate_limit
            .map(|l| ShardLimiter::new(n, l, now));
        self.books.stats.remaps += 1;
        self.reset_aggregates();
        for r in records {
            self.place(r, now);
        }
    }
}

/// The driver's and the simulations' view of the engine (see [`SinkEngine`]).
impl<T> SinkEngine for Engine<T> {
    type Ticket = T;
    type Record = UserRecord<T>;
    type Request = Request;
    type EntryResult = EntryResult;
    type Refresh = ShardMap;
    type Stats = EngineStats;

    fn books(&self) -> &Books<UserRecord<T>, EngineStats> {
        &self.books
    }

    fn books_mut(&mut self) -> &mut Books<UserRecord<T>, EngineStats> {
        &mut self.books
    }

    fn request_id(request: &Request) -> u64 {
        request.id
    }

    fn request_bytes(request: &Request) -> u64 {
        request.bytes as u64
    }

    fn ticket(record: UserRecord<T>) -> T {
        record.ticket
    }

    /// The next request to send at `now`, if one is due and allowed.
    fn poll_request(&mut self, now: Instant) -> Option<Request> {
        if self.books.fatal.is_some() {
            return None;
        }
        self.advance(now);
        if self.pending_map.is_some() || self.in_flight.len() >= self.settings.max_in_flight {
            return None;
        }
        if !(self.batcher.should_flush(now) || (self.books.closing && !self.batcher.is_empty())) {
            return None;
        }
        if self.nagle_holds() {
            return None;
        }
        if self.burst_wait(now).is_some_and(|w| w > Duration::ZERO) {
            // Under the rate limit a request goes when some shard can take a full burst of its
            // pending entries (or all of them, if fewer), as `poll_timeout` times it: going
            // whenever the loop wakes (an answer, new input) would send what trickled into
            // the budgets since the last request, many small requests for the same throughput.
            return None;
        }
        let Engine {
            batcher,
            entries,
            tracker,
            limiter,
            map,
            ..
        } = self;
        // Shards the limiter refused in this request: their later entries are refused without
        // asking again (a smaller one does not overtake them, and a long backlog costs a lookup
        // per entry rather than a limiter call).
        let mut refused = vec![false; map.len()];
        let batch = batcher.take_where(|id, size| {
            let Some(e) = entries.get(id) else {
                return true;
            };
            if let Some(order) = e.order
                && !tracker.is_ready(order)
            {
                return false;
            }
            let Some(l) = limiter else { return true };
            if refused.get(e.shard).copied().unwrap_or(false) {
                return false;
            }
            let admitted = l.try_admit(e.shard, 1, size as u64, now).is_ok();
            if !admitted && let Some(r) = refused.get_mut(e.shard) {
                *r = true;
            }
            admitted
        })?;
        let id = self.next_request;
        self.next_request += 1;
        let mut out = Vec::with_capacity(batch.entries.len());
        let mut user_records = 0;
        for eid in &batch.entries {
            let Some(e) = self.entries.get(eid) else {
                continue;
            };
            if let Some(order) = e.order {
                let _ = self.tracker.start(order);
            }
            if e.attempts.failures > 0 {
                self.books.stats.retries += 1;
            }
            user_records += e.records.len();
            out.push(RequestEntry {
                partition_key: e.partition_key.clone(),
                explicit_hash_key: e.explicit_hash_key.map(format_hash_key),
                data: e.data.clone(),
            });
        }
        self.books.stats.requests += 1;
        self.books.stats.entries_sent += out.len() as u64;
        self.in_flight.insert(id, batch.entries);
        Some(Request {
            id,
            entries: out,
            user_records,
            bytes: batch.bytes,
        })
    }

    /// When to call [`Engine::poll_request`] again even if nothing else happens (an aggregate's
    /// or the batcher's linger, a retry's backoff, a shard's rate budget); `None`: only when an
    /// answer or a record comes. Call after `poll_request` gave `None`.
    fn poll_timeout(&mut self, now: Instant) -> Option<Instant> {
        if self.books.fatal.is_some() {
            return None;
        }
        let linger = self.settings.batch.linger;
        let mut next: Option<Instant> = None;
        let mut consider = |t: Instant| next = Some(next.map_or(t, |n: Instant| n.min(t)));
        for a in &self.aggregates {
            if let Some(s) = a.since {
                consider(if self.books.closing { now } else { s + linger });
            }
        }
        if let Some(&Reverse((at, _))) = self.retries.peek() {
            consider(at);
        }
        if let Some(at) = self.next_refresh
            && self.want_map
            && !self.map_requested
        {
            consider(at);
        }
        if self.pending_map.is_none()
            && self.in_flight.len() < self.settings.max_in_flight
            && !self.batcher.is_empty()
        {
            let due = self.batcher.should_flush(now) || self.books.closing;
            if !due {
                if let Some(d) = self.batcher.deadline() {
                    consider(d);
                }
            } else if !self.nagle_holds()
                && let Some(wait) = self.burst_wait(now)
                // Zero: `poll_request` would have sent (it did not, so something else holds the
                // entries back, and that ends with an answer); MAX: never.
                && wait > Duration::ZERO
                && let Some(at) = now.checked_add(wait)
            {
                consider(at);
            }
            // Held back by the Nagle-like rule: an answer (or new input) wakes the caller.
        }
        next
    }

    /// The answer to request `id`: one result per entry, in order.
    fn handle_response(&mut self, id: u64, results: Vec<EntryResult>, now: Instant) {
        let Some(ids) = self.in_flight.remove(&id) else {
            return;
        };
        let mut results = results.into_iter();
        for eid in ids {
            match results.next() {
                Some(EntryResult::Written { shard_id }) => self.written(eid, &shard_id),
                Some(EntryResult::Failed { code, message }) => {
                    let class = classify_entry_error(&code);
                    if let Some(e) = self.entries.get(&eid)
                        && class == ErrorClass::Throttled
                    {
                        self.books.stats.throttles += 1;
                        if let Some(shard) = self.map.get(e.shard) {
                            let counts =
                                self.books.stats.shards.entry(shard.id.clone()).or_default();
                            counts.throttles += 1;
                        }
                    }
                    let what = if message.is_empty() {
                        code
                    } else {
                        format!("{code}: {message}")
                    };
                    self.books.stop_if_fatal(class, || {
                        format!(
                            "kinesis stream `{}`: a record was refused: {what}",
                            self.settings.stream
                        )
                    });
                    self.failed(eid, &what, now);
                }
                None => self.failed(eid, "the answer had no result for this entry", now),
            }
        }
    }

    /// Request `id` failed as a whole: `class` from
    /// [`classify_call_error`](crate::sinks::aws::retry::classify_call_error), `description`
    /// the error in words (with the stream named, for a fatal one).
    fn handle_call_error(&mut self, id: u64, class: ErrorClass, description: &str, now: Instant) {
        let Some(ids) = self.in_flight.remove(&id) else {
            return;
        };
        self.books.stats.call_errors += 1;
        if class == ErrorClass::Throttled {
            self.books.stats.throttles += 1;
        }
        self.books.stop_if_fatal(class, || description.to_owned());
        for eid in ids {
            self.failed(eid, description, now);
        }
    }

    /// Whether to fetch the shard map now (at most once a second, one fetch at a time); answer
    /// with `handle_refresh` or `refresh_failed`.
    fn poll_refresh(&mut self, now: Instant) -> bool {
        if !self.want_map || self.map_requested || self.next_refresh.is_some_and(|t| now < t) {
            return false;
        }
        self.map_requested = true;
        self.next_refresh = Some(now + REFRESH_INTERVAL);
        true
    }

    /// The shard map fetched for `poll_refresh`. A different map is applied
    /// once the requests in flight have been answered.
    fn handle_refresh(&mut self, map: ShardMap, now: Instant) {
        self.map_requested = false;
        self.want_map = false;
        if map != self.map {
            self.pending_map = Some(map);
            self.advance(now);
        }
    }

    /// Fetching the shard map failed; it is tried again a second later.
    fn refresh_failed(&mut self) {
        self.map_requested = false;
    }

    /// Takes back every record still held (waiting, aggregating, in flight, waiting for a retry),
    /// in arrival order, after a fatal error or when giving up; the engine is empty afterwards.
    fn abort(&mut self) -> Vec<UserRecord<T>> {
        let mut records: Vec<UserRecord<T>> = Vec::new();
        for a in &mut self.aggregates {
            a.agg.finish();
            a.since = None;
            records.append(&mut a.records);
        }
        for (_, e) in self.entries.drain() {
            records.extend(e.records);
        }
        records.sort_by_key(|r| r.seq);
        while self.batcher.take().is_some() {}
        self.retries.clear();
        self.in_flight.clear();
        self.tracker = OrderTracker::new();
        self.books.held.clear();
        records
    }

    /// Whether every record pushed has an outcome (none held, nothing in flight).
    fn is_idle(&self) -> bool {
        self.books.held.records() == 0 && self.in_flight.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::kinesis::aggregate::deaggregate;
    use crate::core::kinesis::hash::parse_hash_key;
    use crate::sinks::aws::sim::{Answer, FakeService, Sim, ms, patient_retry};
    use rand::RngExt;
    use std::collections::HashSet;

    fn settings(ordered: bool, aggregate: bool) -> EngineSettings {
        EngineSettings {
            stream: "s".into(),
            ordered,
            aggregate_bytes_max: aggregate.then_some(4096),
            batch: BatchPolicy {
                entries_max: 50,
                request_bytes_max: 64 * 1024,
                record_bytes_max: 16 * 1024,
                linger: ms(20),
                target_entries: 50,
                target_bytes: 64 * 1024,
            },
            rate_limit: None,
            max_in_flight: 4,
            retry: patient_retry(),
            buffer_records_max: 1_000_000,
            buffer_bytes_max: 1 << 30,
            seed: 7,
        }
    }

    /// What the fake stream does with requests.
    #[derive(Clone, Copy)]
    struct Faults {
        /// Percent of entries failed with ProvisionedThroughputExceededException.
        entry_percent: u32,
        /// Percent of calls failed as a whole (throttling).
        call_percent: u32,
    }

    /// A user record written: (ticket, partition key, shard index).
    type Write = (u64, String, usize);

    /// The fake stream: its shard map (switched to `reshard_to` at the third answer), faults
    /// drawn from `rng` (which also drives the simulation's arrivals, answer order and latency),
    /// and every user record written, in write order (the ticket filled in from the engine's
    /// deliveries, `u64::MAX` until then).
    struct Stream {
        map: ShardMap,
        reshard_to: Option<ShardMap>,
        faults: Faults,
        policy: BatchPolicy,
        rng: StdRng,
        answers: u64,
        writes: Vec<Write>,
    }

    impl FakeService<Engine<u64>> for Stream {
        fn answer(&mut self, req: &Request, _now: Instant) -> Answer<EntryResult> {
            assert!(req.entries.len() <= self.policy.entries_max);
            assert!(req.bytes <= self.policy.request_bytes_max);
            assert_eq!(
                req.bytes,
                req.entries
                    .iter()
                    .map(|e| e.data.len() + e.partition_key.len())
                    .sum::<usize>()
            );
            self.answers += 1;
            if self.answers == 3
                && let Some(m) = self.reshard_to.clone()
            {
                self.map = m;
            }
            if self.rng.random_range(0..100) < self.faults.call_percent {
                return Answer::Failed(
                    ErrorClass::Throttled,
                    "ThrottlingException: slow down".into(),
                );
            }
            let mut results = Vec::new();
            for e in &req.entries {
                if self.rng.random_range(0..100) < self.faults.entry_percent {
                    results.push(EntryResult::Failed {
                        code: "ProvisionedThroughputExceededException".into(),
                        message: "rate exceeded".into(),
                    });
                    continue;
                }
                let hash = match &e.explicit_hash_key {
                    Some(k) => parse_hash_key(k).unwrap(),
                    None => hash_key(&e.partition_key),
                };
                let shard = self.map.index_of(hash);
                let range = &self.map.shards()[shard];
                let subs: Vec<(String, u128)> = match deaggregate(&e.data) {
                    Ok(subs) => subs
                        .iter()
                        .map(|s| (s.partition_key.to_owned(), s.hash_key().unwrap()))
                        .collect(),
                    Err(_) => vec![(e.partition_key.clone(), hash)],
                };
                for (i, (pk, h)) in subs.into_iter().enumerate() {
                    // The KCL's rule: every sub-record hashes into the shard that holds the
                    // aggregate (only under the map the engine used: a reshard in between is the
                    // one case it cannot avoid).
                    if self.reshard_to.is_none() {
                        assert!(range.contains(h), "sub-record {i} outside its shard");
                    }
                    self.writes.push((u64::MAX, pk, shard));
                }
                results.push(EntryResult::Written {
                    shard_id: range.id.clone(),
                });
            }
            Answer::Entries(results)
        }

        fn refresh(&mut self) -> Option<ShardMap> {
            Some(self.map.clone())
        }
    }

    /// Drives `engine` with `records` (key, data) pushed over time against a fake stream of its
    /// shard map, answering requests in random order with faults; returns the first write of
    /// each ticket in write order, and the dead tickets. `reshard_to` switches the stream's shards
    /// after the first answers (the engine finds out from the shard ids in the answers).
    fn simulate(
        engine: Engine<u64>,
        records: &[(String, Vec<u8>)],
        faults: Faults,
        seed: u64,
        reshard_to: Option<ShardMap>,
    ) -> (Vec<Write>, Vec<(u64, String)>, Engine<u64>) {
        let stream = Stream {
            map: engine.shard_map().clone(),
            reshard_to,
            faults,
            policy: engine.settings().batch,
            rng: StdRng::seed_from_u64(seed),
            answers: 0,
            writes: Vec::new(),
        };
        let mut sim = Sim::new(engine, stream);
        let mut next = 0usize;
        for _step in 0..1_000_000 {
            // Records arrive in bursts.
            if next < records.len() && sim.service.rng.random_range(0..3u32) == 0 {
                for _ in 0..sim.service.rng.random_range(1..40usize) {
                    if let Some((k, d)) = records.get(next) {
                        let data = Bytes::from(d.clone());
                        sim.engine
                            .push(k.clone(), None, data, next as u64, sim.now, sim.now);
                        next += 1;
                    }
                }
                if next == records.len() {
                    sim.engine.close();
                }
            }
            sim.send();
            sim.refresh();
            sim.collect();
            if next == records.len() && sim.engine.is_idle() && sim.in_flight.is_empty() {
                assert_eq!(
                    sim.outcomes(),
                    (0..records.len() as u64).collect::<Vec<_>>(),
                    "every record once"
                );
                let mut first: Vec<u64> = sim.service.writes.iter().map(|w| w.0).collect();
                first.sort_unstable();
                let mut delivered = sim.delivered.clone();
                delivered.sort_unstable();
                assert_eq!(first, delivered, "delivered means written");
                return (sim.service.writes, sim.dead, sim.engine);
            }
            if !sim.in_flight.is_empty() && sim.service.rng.random_range(0..2u32) == 0 {
                let i = sim.service.rng.random_range(0..sim.in_flight.len());
                sim.now += ms(sim.service.rng.random_range(0..5));
                // Tickets: matched to the writes from the engine's delivered records, in order.
                let fresh = sim.answer(i).to_vec();
                let mut w = sim.service.writes.iter_mut().filter(|w| w.0 == u64::MAX);
                for t in fresh {
                    if let Some(slot) = w.next() {
                        slot.0 = t;
                        assert_eq!(slot.1, records[t as usize].0);
                    }
                }
                assert!(w.next().is_none());
                continue;
            }
            sim.tick();
        }
        panic!("simulation did not finish");
    }

    fn records(n: usize, keys: usize, seed: u64) -> Vec<(String, Vec<u8>)> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..n)
            .map(|i| {
                let k = format!("key-{}", rng.random_range(0..keys));
                let size = rng.random_range(1..300usize);
                (k, format!("{i:08}").into_bytes().repeat(size / 8 + 1))
            })
            .collect()
    }

    /// Per key, the tickets of first writes ascend (tickets are arrival order).
    fn assert_per_key_order(writes: &[Write], records: &[(String, Vec<u8>)]) {
        let mut last: HashMap<&str, u64> = HashMap::new();
        let mut seen = HashSet::new();
        for (t, pk, _) in writes {
            if !seen.insert(*t) {
                continue;
            }
            assert_eq!(*pk, records[*t as usize].0);
            if let Some(prev) = last.insert(pk.as_str(), *t) {
                assert!(prev < *t, "key {pk}: record {t} written after {prev}");
            }
        }
    }

    #[test]
    fn everything_arrives_once_without_faults() {
        for (ordered, aggregate) in [(false, false), (true, false), (false, true), (true, true)] {
            let recs = records(3000, 50, 1);
            let engine = Engine::new(
                settings(ordered, aggregate),
                ShardMap::uniform(4),
                Instant::now(),
            );
            let no = Faults {
                entry_percent: 0,
                call_percent: 0,
            };
            let (writes, dead, engine) = simulate(engine, &recs, no, 2, None);
            assert!(dead.is_empty());
            assert_eq!(writes.len(), recs.len(), "no duplicates without faults");
            if ordered {
                assert_per_key_order(&writes, &recs);
            }
            let s = engine.stats();
            assert_eq!(s.user_records, 3000);
            if aggregate {
                assert!(s.kinesis_records * 3 < s.user_records, "{s:?}");
            } else {
                assert_eq!(s.kinesis_records, 3000);
            }
            // Records land on the shard their key predicts.
            let map = ShardMap::uniform(4);
            for (_, pk, shard) in &writes {
                assert_eq!(map.index_of(hash_key(pk)), *shard);
            }
        }
    }

    #[test]
    fn faults_lose_nothing_and_ordered_mode_keeps_key_order() {
        for seed in 0..6 {
            for (ordered, aggregate) in [(true, false), (true, true), (false, false), (false, true)]
            {
                let recs = records(2000, 30, seed);
                let engine = Engine::new(
                    settings(ordered, aggregate),
                    ShardMap::uniform(3),
                    Instant::now(),
                );
                let faults = Faults {
                    entry_percent: 20,
                    call_percent: 15,
                };
                let (writes, dead, engine) = simulate(engine, &recs, faults, seed + 100, None);
                assert!(dead.is_empty(), "{:?}", dead.first());
                if ordered {
                    assert_per_key_order(&writes, &recs);
                }
                let s = engine.stats();
                assert!(s.retries > 0 && s.throttles > 0, "{s:?}");
                // Per shard: the written counts add up to the totals, and the entry throttles
                // (not the whole-call ones) are spread over the shards of the map.
                let ids: Vec<&str> = engine
                    .shard_map()
                    .shards()
                    .iter()
                    .map(|r| r.id.as_str())
                    .collect();
                assert!(
                    s.shards.keys().all(|id| ids.contains(&id.as_str())),
                    "{s:?}"
                );
                let sum = |f: fn(&ShardCounts) -> u64| s.shards.values().map(f).sum::<u64>();
                assert_eq!(sum(|c| c.records), s.user_records);
                assert_eq!(sum(|c| c.kinesis_records), s.kinesis_records);
                let throttled = sum(|c| c.throttles);
                assert!(throttled > 0 && throttled < s.throttles, "{s:?}");
            }
        }
    }

    #[test]
    fn exhausted_attempts_dead_letter_with_the_last_error() {
        let mut set = settings(true, false);
        set.retry.attempts_max = 2;
        let recs = records(300, 5, 3);
        let engine = Engine::new(set, ShardMap::uniform(2), Instant::now());
        let faults = Faults {
            entry_percent: 60,
            call_percent: 0,
        };
        let (writes, dead, _) = simulate(engine, &recs, faults, 4, None);
        assert!(!dead.is_empty());
        assert_eq!(writes.len() + dead.len(), 300);
        let reason = &dead[0].1;
        assert!(
            reason.starts_with(
                "kinesis stream `s`: not written (ProvisionedThroughputExceededException: rate exceeded); gave up after 2 failed attempts"
            ),
            "{reason}"
        );
        // A given-up record does not block its key: the rest still arrives in order.
        assert_per_key_order(&writes, &recs);
    }

    #[test]
    fn a_reshard_is_noticed_and_aggregates_follow_the_new_shards() {
        for aggregate in [false, true] {
            let recs = records(3000, 200, 5);
            let engine = Engine::new(
                settings(true, aggregate),
                ShardMap::uniform(2),
                Instant::now(),
            );
            let no = Faults {
                entry_percent: 0,
                call_percent: 0,
            };
            let split = ShardMap::uniform(4);
            let (writes, dead, engine) = simulate(engine, &recs, no, 6, Some(split.clone()));
            assert!(dead.is_empty());
            assert_per_key_order(&writes, &recs);
            let s = engine.stats();
            assert!(s.wrong_shard > 0 && s.remaps == 1, "{s:?}");
            assert_eq!(engine.shard_map(), &split);
            // After the switch every record lands where the new map predicts.
            let late = &writes[writes.len() - 500..];
            for (_, pk, shard) in late {
                assert_eq!(split.index_of(hash_key(pk)), *shard);
            }
        }
    }

    #[test]
    fn oversized_records_are_dead_lettered_with_size_and_limit() {
        let t0 = Instant::now();
        let mut e: Engine<u64> = Engine::new(settings(false, true), ShardMap::uniform(1), t0);
        e.push(
            "k".into(),
            None,
            Bytes::from(vec![0u8; 16 * 1024 - 1]),
            1,
            t0,
            t0,
        );
        e.push(
            "k".into(),
            None,
            Bytes::from(vec![0u8; 16 * 1024]),
            2,
            t0,
            t0,
        );
        let dead = e.take_dead();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].0[0].ticket, 2);
        assert_eq!(
            dead[0].1,
            "kinesis stream `s`: record of 16385 bytes (data + partition key) is over the stream's record limit of 16384 bytes"
        );
        assert_eq!(e.held_records(), 1);
        // A record over the aggregate size goes alone, raw.
        e.close();
        let req = e.poll_request(t0).unwrap();
        assert_eq!(req.entries[0].partition_key, "k");
        assert_eq!(req.entries[0].data.len(), 16 * 1024 - 1);
    }

    #[test]
    fn linger_backpressure_and_in_flight_bound() {
        let t0 = Instant::now();
        let mut set = settings(false, false);
        set.max_in_flight = 1;
        set.buffer_records_max = 60;
        let mut e: Engine<u64> = Engine::new(set, ShardMap::uniform(1), t0);
        e.push("a".into(), None, Bytes::from_static(b"x"), 0, t0, t0);
        assert_eq!(e.poll_request(t0), None);
        assert_eq!(e.poll_timeout(t0), Some(t0 + ms(20)));
        let first = e.poll_request(t0 + ms(20)).unwrap();
        assert_eq!(first.entries.len(), 1);
        for i in 1..=60 {
            e.push(
                "a".into(),
                None,
                Bytes::from_static(b"x"),
                i,
                t0,
                t0 + ms(21),
            );
        }
        assert!(e.is_full());
        // One request in flight: nothing more goes, and no timer spins.
        assert_eq!(e.poll_request(t0 + ms(21)), None);
        assert_eq!(e.poll_timeout(t0 + ms(21)), None);
        e.handle_response(
            first.id,
            vec![EntryResult::Written {
                shard_id: "shardId-000000000000".into(),
            }],
            t0 + ms(22),
        );
        assert_eq!(e.take_delivered().len(), 1);
        let next = e.poll_request(t0 + ms(22)).unwrap();
        assert_eq!(next.entries.len(), 50);
        // Records in flight still count.
        assert!(e.is_full());
        let ok = EntryResult::Written {
            shard_id: "shardId-000000000000".into(),
        };
        e.handle_response(next.id, vec![ok; 50], t0 + ms(23));
        assert_eq!(e.held_records(), 10);
        assert!(!e.is_full());
    }

    #[test]
    fn a_fatal_error_hands_every_record_back() {
        let t0 = Instant::now();
        let mut e: Engine<u64> = Engine::new(settings(true, true), ShardMap::uniform(2), t0);
        for i in 0..100 {
            e.push(
                format!("k{i}"),
                None,
                Bytes::from_static(b"data"),
                i,
                t0,
                t0,
            );
        }
        e.close();
        let req = e.poll_request(t0).unwrap();
        e.handle_call_error(req.id, ErrorClass::Fatal, "stream `s` not found", t0);
        assert_eq!(e.fatal(), Some("stream `s` not found"));
        assert_eq!(e.poll_request(t0), None);
        let back: Vec<u64> = e.abort().into_iter().map(|r| r.ticket).collect();
        assert_eq!(back, (0..100).collect::<Vec<_>>());
        assert!(e.is_idle());
    }

    #[test]
    fn the_rate_limit_spaces_requests_per_shard() {
        let t0 = Instant::now();
        let mut set = settings(false, false);
        set.rate_limit = Some(ShardRateLimit {
            percent: 1,
            burst_records: 2,
            burst_bytes: 5000,
        });
        let mut e: Engine<u64> = Engine::new(set, ShardMap::uniform(1), t0);
        for i in 0..10 {
            e.push("k".into(), None, Bytes::from_static(b"x"), i, t0, t0);
        }
        e.close();
        // 1% of 1000 records/s = 10 per second, burst 2: 2 now, then 8 per second; the next
        // request waits for a full burst (2 entries, 250 ms) rather than going with one.
        let r = e.poll_request(t0).unwrap();
        assert_eq!(r.entries.len(), 2);
        let ok = EntryResult::Written {
            shard_id: "shardId-000000000000".into(),
        };
        e.handle_response(r.id, vec![ok; 2], t0);
        assert_eq!(e.poll_request(t0), None);
        let wake = e.poll_timeout(t0).unwrap();
        assert!(
            wake >= t0 + ms(240) && wake <= t0 + ms(260),
            "{:?}",
            wake - t0
        );
        assert_eq!(e.poll_request(wake).unwrap().entries.len(), 2);
    }

    /// The sink's defaults under the rate limit, without aggregation: 4 shards, 500-entry
    /// requests, 100 ms linger, 8 requests in flight, a burst of 50 records per shard.
    fn limited_raw_settings() -> EngineSettings {
        EngineSettings {
            batch: BatchPolicy {
                linger: ms(100),
                ..BatchPolicy::default()
            },
            rate_limit: Some(ShardRateLimit {
                percent: 100,
                burst_records: 50,
                burst_bytes: 52_428,
            }),
            max_in_flight: 8,
            buffer_records_max: 20_000,
            ..settings(false, false)
        }
    }

    /// Drives the engine the way the sink's loop does (send what `poll_request` gives, then sleep
    /// until `poll_timeout`, an answer or room for input), in virtual time, with a steady backlog
    /// of `total` 110-byte records with random keys against a fake stream that answers each
    /// request `latency` later. Returns (loop iterations, requests, entries sent, virtual time).
    fn drive_limited(total: u64, latency: Duration) -> (u64, u64, u64, Duration) {
        let t0 = Instant::now();
        let mut e: Engine<u64> = Engine::new(limited_raw_settings(), ShardMap::uniform(4), t0);
        let map = e.shard_map().clone();
        let mut rng = StdRng::seed_from_u64(11);
        let mut now = t0;
        let mut pushed = 0u64;
        let mut in_flight: Vec<(Instant, Request)> = Vec::new();
        let mut iterations = 0u64;
        let (mut requests, mut entries) = (0u64, 0u64);
        loop {
            iterations += 1;
            assert!(iterations < 1_000_000, "the loop does not finish");
            // Input: a batch of up to 500 records whenever the engine has room.
            if pushed < total && !e.is_full() {
                for _ in 0..500.min(total - pushed) {
                    let key = format!("{:016x}", rng.random::<u64>());
                    e.push(key, None, Bytes::from(vec![b'x'; 110]), pushed, now, now);
                    pushed += 1;
                }
                if pushed == total {
                    e.close();
                }
            }
            while let Some(req) = e.poll_request(now) {
                requests += 1;
                entries += req.entries.len() as u64;
                in_flight.push((now + latency, req));
            }
            e.take_delivered();
            if pushed == total && e.is_idle() {
                return (iterations, requests, entries, now - t0);
            }
            let timeout = e.poll_timeout(now);
            // The loop sleeps: never a deadline at or before `now`.
            assert!(
                timeout.is_none_or(|t| t > now),
                "poll_timeout {:?} at or before now, nothing sent",
                timeout.map(|t| t.saturating_duration_since(t0)),
            );
            let answer = in_flight.iter().map(|(at, _)| *at).min();
            let input = (pushed < total && !e.is_full()).then_some(now);
            let Some(next) = [timeout, answer, input].into_iter().flatten().min() else {
                panic!(
                    "the loop would sleep forever with {} held",
                    e.held_records()
                );
            };
            now = now.max(next);
            let (due, rest): (Vec<_>, Vec<_>) =
                in_flight.into_iter().partition(|(at, _)| *at <= now);
            in_flight = rest;
            for (_, req) in due {
                let results = req
                    .entries
                    .iter()
                    .map(|en| EntryResult::Written {
                        shard_id: map.shards()[map.index_of(hash_key(&en.partition_key))]
                            .id
                            .clone(),
                    })
                    .collect();
                e.handle_response(req.id, results, now);
            }
        }
    }

    /// Under the rate limit without aggregation the loop sleeps until a shard can take a full
    /// burst, and requests carry about as much as the limiter lets through per wakeup (the
    /// simulation in `limits` sends 200: 4 shards x 50), not what trickled in during a round trip.
    #[test]
    fn the_rate_limited_loop_sleeps_and_sends_full_requests() {
        for latency in [ms(1), ms(5), ms(20)] {
            let (iterations, requests, entries, took) = drive_limited(20_000, latency);
            assert_eq!(entries, 20_000);
            let per_request = entries as f64 / requests as f64;
            let loops = iterations as f64 / requests as f64;
            println!(
                "latency {latency:?}: {requests} requests, {per_request:.1} entries and {loops:.2} loop iterations per request, {took:?}"
            );
            assert!(
                per_request >= 100.0,
                "latency {latency:?}: {per_request:.1} entries per request ({requests} requests)"
            );
            assert!(
                loops < 10.0,
                "latency {latency:?}: {loops:.1} loop iterations per request"
            );
            // 4 shards x 950 records/s (after a first burst of 200): about 5.2 s.
            assert!(
                took < Duration::from_millis(5_600),
                "latency {latency:?}: took {took:?}"
            );
        }
    }
}
