//! The Firehose sink's state machine: user records in, PutRecordBatch requests out, per-entry
//! answers in, outcomes (written, dead-lettered) out.
//!
//! Records are packed ([`Packer`]) into Firehose records, which wait in the shared
//! [`Batcher`] (500 records and 4 MiB per request, linger and size targets). An answer settles
//! each entry on its own: written entries are delivered, failed ones (`FailedPutCount` > 0) alone
//! go back with backoff and jitter ([`RetryPolicy`]), at the front so they keep their place, until
//! their attempts or TTL run out (then they are dead-lettered). A failed call retries its entries
//! the same way; a fatal error (missing stream, access denied, bad request, KMS) stops the engine
//! with a message naming the delivery stream ([`Engine::fatal`]) and [`Engine::abort`] hands back
//! everything held. A whole request is never re-sent when only some entries failed.
//!
//! Pure: no I/O, no clock reads (time is an argument), seeded randomness. A [`SinkEngine`],
//! driven by the shared [`driver`](crate::sinks::aws::driver) and tested against a scripted fake
//! delivery stream on the shared `sinks::aws::sim` harness.

use std::collections::HashMap;
use std::time::Instant;

use bytes::Bytes;
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::sinks::aws::batch::{BatchPolicy, Batcher};
use crate::sinks::aws::engine::{Books, SinkEngine};
use crate::sinks::aws::retry::{
    Attempts, ErrorClass, RetryDecision, RetryPolicy, classify_entry_error,
};
use crate::sinks::firehose::pack::{PackPolicy, Packed, Packer, billed_bytes, gzip};

/// The engine's settings.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// The delivery stream (for messages).
    pub stream: String,
    /// Packing.
    pub pack: PackPolicy,
    /// Requests: entry and byte limits, linger, targets.
    pub batch: BatchPolicy,
    /// Compress each Firehose record as a gzip member at this level (`None`: as is).
    pub gzip_level: Option<u32>,
    /// Retries of failed entries and calls.
    pub retry: RetryPolicy,
    /// Most requests in flight.
    pub max_in_flight: usize,
    /// The engine is full (stop reading the queue) at this many held user records...
    pub buffer_records_max: usize,
    /// ... or this many held bytes.
    pub buffer_bytes_max: usize,
    /// Seeds the jitter.
    pub seed: u64,
}

/// One entry's answer in a successful PutRecordBatch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryResult {
    /// Accepted (Firehose gave it a record id).
    Written,
    /// Refused: `ErrorCode` and `ErrorMessage`.
    Failed {
        /// The error code, e.g. `ServiceUnavailableException`.
        code: String,
        /// The message.
        message: String,
    },
}

/// A request to send: the Firehose records' bytes, in order.
#[derive(Debug, Clone)]
pub struct Request {
    /// Answers refer to it.
    pub id: u64,
    /// The records.
    pub records: Vec<Bytes>,
}

/// Counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// User records taken in.
    pub user_records: u64,
    /// Firehose records written.
    pub firehose_records: u64,
    /// User records written.
    pub user_records_written: u64,
    /// PutRecordBatch calls made.
    pub requests: u64,
    /// Entries sent again after a failure.
    pub retries: u64,
    /// Entries refused in successful calls.
    pub failed_entries: u64,
    /// Calls that failed as a whole.
    pub call_errors: u64,
    /// Bytes of the Firehose records written.
    pub bytes: u64,
    /// What Firehose bills for the records written (each rounded up to 5 KB).
    pub billed_bytes: u64,
    /// What it would bill for the same user records sent one per Firehose record.
    pub billed_bytes_unpacked: u64,
}

#[derive(Debug)]
struct Entry<T> {
    data: Bytes,
    records: Vec<T>,
    attempts: Attempts,
    billed_unpacked: u64,
    /// The user records' payload bytes (what `held_bytes` counts).
    payload_bytes: usize,
}

/// The Firehose sink's decisions.
#[derive(Debug)]
pub struct Engine<T> {
    settings: EngineSettings,
    packer: Packer<T>,
    batcher: Batcher<Entry<T>>,
    /// Entries waiting for their backoff, in the order they failed.
    backoff: Vec<(Instant, Entry<T>)>,
    in_flight: HashMap<u64, Vec<Entry<T>>>,
    next_id: u64,
    books: Books<T, EngineStats>,
    rng: StdRng,
    sealed: Vec<Packed<T>>,
}

impl<T> Engine<T> {
    /// An engine with nothing held.
    pub fn new(settings: EngineSettings) -> Self {
        Engine {
            packer: Packer::new(settings.pack.clone()),
            batcher: Batcher::new(settings.batch),
            rng: StdRng::seed_from_u64(settings.seed),
            books: Books::new(settings.buffer_records_max, settings.buffer_bytes_max),
            settings,
            backoff: Vec::new(),
            in_flight: HashMap::new(),
            next_id: 0,
            sealed: Vec::new(),
        }
    }

    /// Takes a user record (its payload is copied into a Firehose record). A record over the
    /// record limit is dead-lettered at once.
    pub fn push(&mut self, payload: &[u8], ticket: T, arrived: Instant, now: Instant) {
        self.books.stats.user_records += 1;
        let mut sealed = std::mem::take(&mut self.sealed);
        match self.packer.push(payload, ticket, arrived, now, &mut sealed) {
            Ok(()) => {
                self.books.held.add(1, payload.len());
            }
            Err(o) => {
                let reason = format!(
                    "firehose delivery stream `{}`: {}",
                    self.settings.stream,
                    o.reason()
                );
                self.books.dead.push((vec![o.ticket], reason));
            }
        }
        for p in sealed.drain(..) {
            self.enqueue(p);
        }
        self.sealed = sealed;
    }

    fn enqueue(&mut self, p: Packed<T>) {
        let payload_bytes = p
            .data
            .len()
            .saturating_sub(self.settings.pack.delimiter.len() * p.records.len());
        let data = match self.settings.gzip_level {
            Some(level) => gzip(&p.data, level),
            None => p.data,
        };
        let size = data.len();
        let entry = Entry {
            data: Bytes::from(data),
            records: p.records,
            attempts: Attempts::new(p.arrived),
            billed_unpacked: p.billed_unpacked,
            payload_bytes,
        };
        // The packer keeps records within the record limit; gzip can add a few bytes to
        // incompressible data, and a small `request_bytes_max` can lower the limit.
        if let Err(o) = self.batcher.push(entry, size, p.opened) {
            let reason = format!(
                "firehose delivery stream `{}`: record of {} bytes{} is over the record limit of \
                 {} bytes",
                self.settings.stream,
                o.size,
                if self.settings.gzip_level.is_some() {
                    " after gzip"
                } else {
                    ""
                },
                o.limit
            );
            self.give_up(o.entry, reason);
        }
    }

    fn retry(&mut self, mut e: Entry<T>, class: ErrorClass, description: &str, now: Instant) {
        if !class.is_retryable() {
            // Held for `abort`, which dead-letters it with the fatal reason.
            self.backoff.push((now, e));
            return;
        }
        match self
            .settings
            .retry
            .on_failure(&mut e.attempts, now, &mut self.rng)
        {
            RetryDecision::RetryAt(at) => {
                self.books.stats.retries += 1;
                self.backoff.push((at, e));
            }
            RetryDecision::GiveUp(g) => self.give_up(e, format!("{description}; {g}")),
        }
    }

    fn deliver(&mut self, e: Entry<T>) {
        self.books.stats.firehose_records += 1;
        self.books.stats.user_records_written += e.records.len() as u64;
        self.books.stats.bytes += e.data.len() as u64;
        self.books.stats.billed_bytes += billed_bytes(e.data.len());
        self.books.stats.billed_bytes_unpacked += e.billed_unpacked;
        self.release(&e);
        self.books.delivered.extend(e.records);
    }

    fn give_up(&mut self, e: Entry<T>, reason: String) {
        self.release(&e);
        self.books.dead.push((e.records, reason));
    }

    fn release(&mut self, e: &Entry<T>) {
        self.books.held.release(e.records.len(), e.payload_bytes);
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }
}

/// The driver's and the simulations' view of the engine (see [`SinkEngine`]).
impl<T> SinkEngine for Engine<T> {
    type Ticket = T;
    type Record = T;
    type Request = Request;
    type EntryResult = EntryResult;
    type Refresh = std::convert::Infallible;
    type Stats = EngineStats;

    fn books(&self) -> &Books<T, EngineStats> {
        &self.books
    }

    fn books_mut(&mut self) -> &mut Books<T, EngineStats> {
        &mut self.books
    }

    fn request_id(request: &Request) -> u64 {
        request.id
    }

    fn request_bytes(request: &Request) -> u64 {
        request.records.iter().map(|r| r.len() as u64).sum()
    }

    fn ticket(record: T) -> T {
        record
    }

    /// The next request to send at `now`, if one is due and a call slot is free.
    fn poll_request(&mut self, now: Instant) -> Option<Request> {
        if self.books.fatal.is_some() || self.in_flight.len() >= self.settings.max_in_flight {
            return None;
        }
        // Entries whose backoff ended go first, in the order they failed.
        if self.backoff.iter().any(|(at, _)| *at <= now) {
            let (due, wait): (Vec<_>, Vec<_>) = std::mem::take(&mut self.backoff)
                .into_iter()
                .partition(|(at, _)| *at <= now);
            self.backoff = wait;
            for (_, e) in due.into_iter().rev() {
                let (size, since) = (e.data.len(), e.attempts.arrived);
                if let Err(o) = self.batcher.push_front(e, size, since) {
                    let reason =
                        format!("firehose delivery stream `{}`: {o}", self.settings.stream);
                    self.give_up(o.entry, reason);
                }
            }
        }
        if let Some(opened) = self.packer.opened()
            && (self.books.closing
                || now
                    >= opened
                        .checked_add(self.settings.batch.linger)
                        .unwrap_or(opened))
            && let Some(p) = self.packer.seal()
        {
            self.enqueue(p);
        }
        if !(self.batcher.should_flush(now) || (self.books.closing && !self.batcher.is_empty())) {
            return None;
        }
        let batch = self.batcher.take()?;
        let id = self.next_id;
        self.next_id += 1;
        self.books.stats.requests += 1;
        let records = batch.entries.iter().map(|e| e.data.clone()).collect();
        self.in_flight.insert(id, batch.entries);
        Some(Request { id, records })
    }

    /// When [`Engine::poll_request`] should next be called without any other event (`None`:
    /// only after an answer or a new record).
    fn poll_timeout(&mut self, now: Instant) -> Option<Instant> {
        if self.books.fatal.is_some() || self.in_flight.len() >= self.settings.max_in_flight {
            return None;
        }
        let linger = self.settings.batch.linger;
        let pack = self.packer.opened().map(|o| {
            if self.books.closing {
                now
            } else {
                o.checked_add(linger).unwrap_or(o)
            }
        });
        let batch = self
            .batcher
            .deadline()
            .map(|d| if self.books.closing { now } else { d });
        let retry = self.backoff.iter().map(|(at, _)| *at).min();
        [pack, batch, retry].into_iter().flatten().min()
    }

    /// Settles a request's answer: one result per record, in order.
    fn handle_response(&mut self, id: u64, results: Vec<EntryResult>, now: Instant) {
        let Some(entries) = self.in_flight.remove(&id) else {
            return;
        };
        if results.len() != entries.len() {
            let d = format!(
                "firehose delivery stream `{}`: PutRecordBatch answered {} results for {} records",
                self.settings.stream,
                results.len(),
                entries.len()
            );
            self.in_flight.insert(id, entries);
            self.handle_call_error(id, ErrorClass::Transient, &d, now);
            return;
        }
        for (e, r) in entries.into_iter().zip(results) {
            match r {
                EntryResult::Written => self.deliver(e),
                EntryResult::Failed { code, message } => {
                    self.books.stats.failed_entries += 1;
                    let class = classify_entry_error(&code);
                    let d = format!(
                        "firehose delivery stream `{}`: record refused: {code}: {message}",
                        self.settings.stream
                    );
                    self.books.stop_if_fatal(class, || d.clone());
                    self.retry(e, class, &d, now);
                }
            }
        }
    }

    /// Settles a failed call: its records are retried, or the engine stops on a fatal error.
    fn handle_call_error(&mut self, id: u64, class: ErrorClass, description: &str, now: Instant) {
        let Some(entries) = self.in_flight.remove(&id) else {
            return;
        };
        self.books.stats.call_errors += 1;
        self.books.stop_if_fatal(class, || description.to_owned());
        for e in entries {
            self.retry(e, class, description, now);
        }
    }

    /// Every user record still held (pending, backing off, in flight), for dead-lettering.
    fn abort(&mut self) -> Vec<T> {
        let mut out = Vec::new();
        let mut ids: Vec<u64> = self.in_flight.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            for e in self.in_flight.remove(&id).into_iter().flatten() {
                out.extend(e.records);
            }
        }
        for (_, e) in self.backoff.drain(..) {
            out.extend(e.records);
        }
        while let Some(b) = self.batcher.take() {
            for e in b.entries {
                out.extend(e.records);
            }
        }
        if let Some(p) = self.packer.seal() {
            out.extend(p.records);
        }
        self.books.held.clear();
        out
    }

    /// Whether nothing is held or in flight.
    fn is_idle(&self) -> bool {
        self.packer.opened().is_none()
            && self.batcher.is_empty()
            && self.backoff.is_empty()
            && self.in_flight.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::aws::sim::{Answer, FakeService, ms, patient_retry};
    use crate::sinks::firehose::pack::{RECORD_BYTES_MAX, REQUEST_BYTES_MAX, REQUEST_ENTRIES_MAX};
    use proptest::prelude::*;

    fn settings(pack: bool, pack_bytes_max: usize) -> EngineSettings {
        EngineSettings {
            stream: "fh".into(),
            pack: PackPolicy {
                pack,
                pack_bytes_max,
                delimiter: b"\n".to_vec(),
            },
            gzip_level: None,
            batch: BatchPolicy {
                entries_max: REQUEST_ENTRIES_MAX,
                request_bytes_max: REQUEST_BYTES_MAX,
                record_bytes_max: RECORD_BYTES_MAX,
                linger: ms(100),
                target_entries: REQUEST_ENTRIES_MAX,
                target_bytes: REQUEST_BYTES_MAX - pack_bytes_max.min(REQUEST_BYTES_MAX / 2),
            },
            retry: patient_retry(),
            max_in_flight: 4,
            buffer_records_max: 100_000,
            buffer_bytes_max: 64 << 20,
            seed: 7,
        }
    }

    /// What the fake delivery stream does with a request.
    #[derive(Debug, Clone, Copy)]
    enum Fault {
        None,
        /// Fail every n-th entry (by a running count) with ServiceUnavailableException.
        Entries(u64),
        /// Fail the whole call, transiently.
        Call,
    }

    /// The fake delivery stream: the bytes it wrote (in write order) and the record sizes of
    /// each request; `fault(request number)` says what it does with a request.
    struct Stream {
        fault: Box<dyn FnMut(usize) -> Fault>,
        written: Vec<u8>,
        requests: Vec<Vec<usize>>,
        entry_count: u64,
    }

    impl FakeService<Engine<usize>> for Stream {
        fn answer(&mut self, r: &Request, _now: Instant) -> Answer<EntryResult> {
            assert!(r.records.len() <= REQUEST_ENTRIES_MAX);
            assert!(r.records.iter().map(Bytes::len).sum::<usize>() <= REQUEST_BYTES_MAX);
            assert!(r.records.iter().all(|d| d.len() <= RECORD_BYTES_MAX));
            self.requests
                .push(r.records.iter().map(Bytes::len).collect());
            let f = (self.fault)(self.requests.len());
            if let Fault::Call = f {
                return Answer::Failed(ErrorClass::Transient, "boom".into());
            }
            let mut results = Vec::new();
            for d in &r.records {
                self.entry_count += 1;
                if matches!(f, Fault::Entries(n) if self.entry_count.is_multiple_of(n)) {
                    results.push(EntryResult::Failed {
                        code: "ServiceUnavailableException".into(),
                        message: "slow down".into(),
                    });
                } else {
                    self.written.extend_from_slice(d);
                    results.push(EntryResult::Written);
                }
            }
            Answer::Entries(results)
        }
    }

    type Sim = crate::sinks::aws::sim::Sim<Engine<usize>, Stream>;

    /// An engine with `s` against a fake stream that fails as `fault` says.
    fn sim_with(s: EngineSettings, fault: impl FnMut(usize) -> Fault + 'static) -> Sim {
        let stream = Stream {
            fault: Box::new(fault),
            written: Vec::new(),
            requests: Vec::new(),
            entry_count: 0,
        };
        Sim::new(Engine::new(s), stream)
    }

    /// An engine with `s` against a fake stream without faults.
    fn sim(s: EngineSettings) -> Sim {
        sim_with(s, |_| Fault::None)
    }

    fn line(i: usize, len: usize) -> Vec<u8> {
        let mut v = format!("{i:08}").into_bytes();
        v.resize(len.max(8), b'x');
        v
    }

    fn lines_of(bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut out: Vec<Vec<u8>> = bytes.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
        assert_eq!(out.pop(), Some(Vec::new()), "ends with a delimiter");
        out
    }

    #[test]
    fn packing_cuts_records_and_billed_bytes() {
        for pack in [true, false] {
            let mut sim = sim(settings(pack, 900 * 1024));
            let input: Vec<Vec<u8>> = (0..20_000).map(|i| line(i, 109)).collect();
            for (i, l) in input.iter().enumerate() {
                sim.engine.push(l, i, sim.now, sim.now);
                sim.step();
            }
            sim.finish();
            assert_eq!(lines_of(&sim.service.written), input);
            assert_eq!(sim.delivered, (0..20_000).collect::<Vec<_>>());
            let s = sim.engine.stats().clone();
            assert_eq!(s.user_records_written, 20_000);
            assert_eq!(s.billed_bytes_unpacked, 20_000 * 5120);
            if pack {
                // 2.2 MB of lines: three packs of at most 900 KiB.
                assert_eq!(s.firehose_records, 3);
                assert!(s.billed_bytes * 40 <= s.billed_bytes_unpacked, "{s:?}");
            } else {
                assert_eq!(s.firehose_records, 20_000);
                assert_eq!(s.billed_bytes, s.billed_bytes_unpacked);
                assert_eq!(s.requests, 40);
            }
        }
    }

    #[test]
    fn linger_holds_a_small_pack_then_sends_it() {
        let mut sim = sim(settings(true, 900 * 1024));
        let t0 = sim.now;
        sim.engine.push(b"a", 0, t0, t0);
        sim.step();
        assert!(sim.service.requests.is_empty());
        assert_eq!(sim.engine.poll_timeout(t0), Some(t0 + ms(100)));
        sim.now = t0 + ms(99);
        sim.step();
        assert!(sim.service.requests.is_empty());
        sim.now = t0 + ms(100);
        sim.step();
        assert_eq!(sim.service.requests, vec![vec![2]]);
        assert!(sim.engine.is_idle());
    }

    #[test]
    fn only_failed_entries_are_retried() {
        // Every 7th entry fails; every 5th call fails as a whole.
        let fault = |n: usize| {
            if n.is_multiple_of(5) {
                Fault::Call
            } else {
                Fault::Entries(7)
            }
        };
        let mut sim = sim_with(settings(false, 900 * 1024), fault);
        let input: Vec<Vec<u8>> = (0..3000).map(|i| line(i, 20)).collect();
        for (i, l) in input.iter().enumerate() {
            sim.engine.push(l, i, sim.now, sim.now);
        }
        sim.finish();
        let mut got = lines_of(&sim.service.written);
        assert_eq!(got.len(), 3000, "no duplicates");
        got.sort();
        assert_eq!(got, input);
        let s = sim.engine.stats();
        assert!(s.failed_entries > 300, "{s:?}");
        assert!(s.call_errors > 0, "{s:?}");
        assert!(sim.dead.is_empty());
        // Entries sent = written + failed entries + entries of failed calls: never more.
        let sent: usize = sim.service.requests.iter().map(Vec::len).sum();
        assert_eq!(sent as u64, 3000 + s.retries);
    }

    #[test]
    fn attempts_run_out_into_dead_letters() {
        let mut s = settings(true, 1024);
        s.retry.attempts_max = 3;
        let mut sim = sim_with(s, |_| Fault::Call);
        for i in 0..10 {
            sim.engine.push(&line(i, 100), i, sim.now, sim.now);
        }
        sim.finish();
        let mut dead: Vec<usize> = sim.dead.iter().map(|(i, _)| *i).collect();
        dead.sort_unstable();
        assert_eq!(dead, (0..10).collect::<Vec<_>>());
        assert!(
            sim.dead[0].1.contains("gave up after 3 failed attempts"),
            "{:?}",
            sim.dead[0]
        );
        assert_eq!(sim.engine.stats().requests, 3);
    }

    #[test]
    fn fatal_errors_stop_and_hand_everything_back() {
        let mut sim = sim(settings(false, 1024));
        for i in 0..600 {
            sim.engine.push(&line(i, 10), i, sim.now, sim.now);
        }
        let r = sim.engine.poll_request(sim.now).unwrap();
        assert_eq!(r.records.len(), 500);
        sim.engine.handle_call_error(
            r.id,
            ErrorClass::Fatal,
            "firehose delivery stream `fh` not found",
            sim.now,
        );
        assert_eq!(
            sim.engine.fatal(),
            Some("firehose delivery stream `fh` not found")
        );
        assert!(sim.engine.poll_request(sim.now).is_none());
        let mut held = sim.engine.abort();
        held.sort_unstable();
        assert_eq!(held, (0..600).collect::<Vec<_>>());
        assert!(sim.engine.is_idle());
    }

    #[test]
    fn oversized_records_are_dead_lettered() {
        let mut sim = sim(settings(true, 900 * 1024));
        sim.engine
            .push(&vec![b'x'; RECORD_BYTES_MAX], 0, sim.now, sim.now);
        sim.engine.push(b"ok", 1, sim.now, sim.now);
        sim.finish();
        assert_eq!(sim.delivered, vec![1]);
        assert_eq!(sim.dead.len(), 1);
        assert!(
            sim.dead[0]
                .1
                .starts_with("firehose delivery stream `fh`: record of 1024001 bytes")
        );
    }

    #[test]
    fn gzip_compresses_each_firehose_record() {
        use std::io::Read as _;
        let mut s = settings(true, 4096);
        s.gzip_level = Some(6);
        let mut sim = sim(s);
        let input: Vec<Vec<u8>> = (0..1000).map(|i| line(i, 100)).collect();
        for (i, l) in input.iter().enumerate() {
            sim.engine.push(l, i, sim.now, sim.now);
        }
        sim.finish();
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&sim.service.written[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(lines_of(&out), input);
        let st = sim.engine.stats();
        assert!(st.bytes * 4 < 101_000, "{st:?}");
        assert_eq!(st.user_records_written, 1000);
    }

    #[test]
    fn a_full_engine_says_so() {
        let mut s = settings(true, 1024);
        s.buffer_records_max = 10;
        let mut sim = sim(s);
        for i in 0..10 {
            assert!(!sim.engine.is_full());
            sim.engine.push(b"r", i, sim.now, sim.now);
        }
        assert!(sim.engine.is_full());
        sim.finish();
        assert!(!sim.engine.is_full());
    }

    proptest! {
        /// Whatever the sizes and faults: every request within the limits, each record written
        /// exactly once (no duplicates from partial failures) and whole.
        #[test]
        fn nothing_lost_or_duplicated(
            sizes in proptest::collection::vec(prop_oneof![9 => 8usize..200, 1 => 1000usize..200_000], 1..400),
            pack in any::<bool>(),
            pack_bytes_max in 1024usize..1_000_000,
            every in 2u64..10,
            call_every in 2usize..8,
        ) {
            let fault = move |n: usize| if n.is_multiple_of(call_every) { Fault::Call } else { Fault::Entries(every) };
            let mut sim = sim_with(settings(pack, pack_bytes_max), fault);
            let input: Vec<Vec<u8>> = sizes.iter().enumerate().map(|(i, &n)| line(i, n)).collect();
            for (i, l) in input.iter().enumerate() {
                sim.engine.push(l, i, sim.now, sim.now);
                if i % 50 == 0 {
                    sim.step();
                }
            }
            sim.finish();
            prop_assert!(sim.dead.is_empty());
            let mut got = lines_of(&sim.service.written);
            got.sort();
            let mut want = input.clone();
            want.sort();
            prop_assert_eq!(got, want);
            let mut d = sim.delivered.clone();
            d.sort_unstable();
            prop_assert_eq!(d, (0..input.len()).collect::<Vec<_>>());
        }
    }
}
