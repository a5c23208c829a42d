//! The thread of every AWS sink: [`run`] drives a pure [`SinkEngine`] for a [`Service`] (what is
//! particular to Kinesis, Firehose, ...: start-up, the calls, how records go in, which counters it
//! publishes). A sink holds a user record as a [`Ticket`] (its batch and its index there) while
//! it is pending or in flight.
//!
//! [`run`]: one thread with a small current-thread tokio runtime of its own. Start-up
//! ([`Service::start`]: connect, wait for the target to be usable, build the engine); a fatal
//! failure there fails the sink at once. Then a loop: send every request the engine has ready
//! (each call a task; the engine bounds how many are in flight), start a refresh it asks for,
//! settle outcomes, and wait for whichever comes first: an answer, a refresh, a batch from the
//! queue (only while the engine has room: that is the backpressure), or the engine's next timer.
//! When the queue closes the engine flushes without lingering and the loop ends once every record
//! is written or dead-lettered.
//!
//! Accounting: the dispatcher counts records into the sink; every record written is counted out
//! here (with its latency), every record given up goes to the dead-letter sink with its reason
//! (counted there as dead-lettered by this sink). After a fatal error everything held, in flight
//! and queued is dead-lettered with the error, and the queue is closed (the dispatcher
//! dead-letters the rest).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::task::JoinSet;

use crate::core::accounting::{Counters, latency_histogram};
use crate::core::dead_letter::DeadLetter;
use crate::core::record::Batch;
use crate::queue::Receiver;
use crate::sinks::aws::egress::Egress;
use crate::sinks::aws::engine::SinkEngine;
use crate::sinks::aws::retry::{Attempts, RetryDecision, RetryPolicy};
use crate::sinks::aws::sdk::CallFailure;
use crate::topology::DeadLetterTx;

/// A user record's handle: its batch and its index there.
pub type Ticket = (Arc<Batch>, usize);

/// A record offered to a service: record `i` of `batch`, which arrived at `arrived` and was
/// received at `now`.
#[derive(Debug, Clone, Copy)]
pub struct Offer<'a> {
    /// Its batch.
    pub batch: &'a Arc<Batch>,
    /// Its index there.
    pub i: usize,
    /// When it arrived (its retry TTL counts from here).
    pub arrived: Instant,
    /// When the sink took it from its queue.
    pub now: Instant,
}

impl Offer<'_> {
    /// Its payload.
    pub fn payload(&self) -> &[u8] {
        self.batch.payload(self.i)
    }

    /// Its handle while the engine holds it.
    pub fn ticket(&self) -> Ticket {
        (self.batch.clone(), self.i)
    }
}

/// A service's request (what its engine's `poll_request` gives).
pub type RequestOf<S> = <<S as Service>::Engine as SinkEngine>::Request;
/// A service's per-entry answer.
pub type EntryResultOf<S> = <<S as Service>::Engine as SinkEngine>::EntryResult;
/// What a service's engine may ask for besides requests.
pub type RefreshOf<S> = <<S as Service>::Engine as SinkEngine>::Refresh;
/// A service's engine counters.
pub type StatsOf<S> = <<S as Service>::Engine as SinkEngine>::Stats;

/// What one AWS service adds to the shared loop: a folder with an engine, a client and a config
/// implements this (in its `sink.rs`), and [`run`] does the rest.
pub trait Service {
    /// The pure engine.
    type Engine: SinkEngine<Ticket = Ticket>;
    /// The client the calls go through (cheap to clone: the SDK's client is shared).
    type Client: Clone + Send + Sync + 'static;

    /// The sink's target in messages, e.g. "kinesis stream `events`".
    fn target(&self) -> String;

    /// The sink's `max_bytes_per_sec` (0: no cap).
    fn max_bytes_per_sec(&self) -> u64;

    /// Connects, waits until the target can take records (retrying within the retry policy,
    /// see [`StartupRetry`]), and builds the engine; logs that the sink is ready.
    ///
    /// # Errors
    ///
    /// Why the sink cannot start (naming the target), once retrying is pointless or over.
    fn start(
        &mut self,
        sink: &str,
    ) -> impl Future<Output = Result<(Self::Client, Self::Engine), String>>;

    /// Sends one request (on a task of its own, with a clone of the client); one result per
    /// entry, or the call's classified failure.
    fn send(
        client: Self::Client,
        request: RequestOf<Self>,
    ) -> impl Future<Output = Result<Vec<EntryResultOf<Self>>, CallFailure>> + Send + 'static;

    /// Fetches what the engine asked for with `poll_refresh` (never asked, by default).
    fn refresh(
        &self,
        _sink: &str,
        _client: &Self::Client,
    ) -> impl Future<Output = Result<RefreshOf<Self>, CallFailure>> + Send + 'static {
        std::future::pending()
    }

    /// Hands a record to the engine (with [`Offer::ticket`] as its ticket).
    ///
    /// # Errors
    ///
    /// Why the service cannot take it (e.g. it has no partition key); the driver dead-letters
    /// it with that reason.
    fn push(&mut self, engine: &mut Self::Engine, record: Offer<'_>) -> Result<(), String>;

    /// Copies the engine's counters into the sink's (`before`: what was published last).
    fn publish(stats: &StatsOf<Self>, before: &StatsOf<Self>, counters: &Counters);
}

/// Runs an AWS sink until its queue closes and every record is written or dead-lettered.
///
/// # Errors
///
/// A fatal error (missing target, access denied, no region, ...), after every record the sink
/// held or had queued was dead-lettered with it.
pub fn run<S: Service>(
    name: &str,
    service: S,
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
            let reason = format!("{}: cannot start a runtime: {e}", service.target());
            return Err(fail(name, reason, Vec::new(), &rx, &dead, &counters));
        }
    };
    let mut driver = Driver {
        name,
        max_bytes_per_sec: service.max_bytes_per_sec(),
        service,
        rx: &rx,
        dead: &dead,
        counters: &counters,
        latency: latency_histogram(),
        reported: StatsOf::<S>::default(),
    };
    rt.block_on(driver.run())
}

struct Driver<'a, S: Service> {
    name: &'a str,
    max_bytes_per_sec: u64,
    service: S,
    rx: &'a Receiver<Batch>,
    dead: &'a DeadLetterTx,
    counters: &'a Arc<Counters>,
    latency: Histogram<u64>,
    reported: StatsOf<S>,
}

type CallOutcome<S> = (u64, Result<Vec<EntryResultOf<S>>, CallFailure>);

impl<S: Service> Driver<'_, S> {
    async fn run(&mut self) -> Result<(), anyhow::Error> {
        let (client, mut engine) = match self.service.start(self.name).await {
            Ok(started) => started,
            Err(reason) => return Err(self.fail(reason, Vec::new())),
        };
        let mut calls: JoinSet<CallOutcome<S>> = JoinSet::new();
        let mut refreshes: JoinSet<Result<RefreshOf<S>, CallFailure>> = JoinSet::new();
        let mut open = true;
        let mut egress = Egress::new(self.max_bytes_per_sec, Instant::now());
        // A request the egress cap holds back (its records are in flight for the engine).
        let mut held: Option<RequestOf<S>> = None;
        loop {
            let now = Instant::now();
            let mut paced = None;
            loop {
                let req = match held.take() {
                    Some(req) => req,
                    None => match engine.poll_request(now) {
                        Some(req) => {
                            if egress.blocked_until(now).is_some() {
                                self.counters.aws_egress_paced.fetch_add(1, Relaxed);
                            }
                            req
                        }
                        None => break,
                    },
                };
                if let Some(at) = egress.blocked_until(now) {
                    held = Some(req);
                    paced = Some(at);
                    break;
                }
                let bytes = S::Engine::request_bytes(&req);
                egress.sent(bytes, now);
                self.counters.aws_egress_bytes.fetch_add(bytes, Relaxed);
                let id = S::Engine::request_id(&req);
                let call = S::send(client.clone(), req);
                let counters = self.counters.clone();
                calls.spawn(async move {
                    let started = Instant::now();
                    let result = call.await;
                    let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                    counters.record_request_latency(us);
                    (id, result)
                });
            }
            if engine.poll_refresh(now) {
                refreshes.spawn(self.service.refresh(self.name, &client));
            }
            self.settle(&mut engine);
            if let Some(reason) = engine.fatal().map(str::to_owned) {
                calls.abort_all();
                let held = engine.abort();
                self.publish(engine.stats());
                return Err(self.fail(reason, held));
            }
            if !open && engine.is_idle() {
                break;
            }
            // While a request waits for the egress cap, only the cap's time matters (the
            // engine's own timers may already be due: they are for the request it gave).
            let timeout = match paced {
                Some(at) => Some(at),
                None => engine.poll_timeout(now),
            };
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
                            let reason = format!(
                                "{}: internal error in a call: {e}",
                                self.service.target()
                            );
                            calls.abort_all();
                            let held = engine.abort();
                            return Err(self.fail(reason, held));
                        }
                    }
                }
                Some(joined) = refreshes.join_next(), if !refreshes.is_empty() => {
                    match joined {
                        Ok(Ok(refresh)) => engine.handle_refresh(refresh, Instant::now()),
                        Ok(Err(f)) => {
                            tracing::warn!(sink = self.name, "{f}");
                            engine.refresh_failed();
                        }
                        Err(_) => engine.refresh_failed(),
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
        tracing::info!(
            sink = self.name,
            to = %self.service.target(),
            stats = ?engine.stats(),
            "AWS sink done"
        );
        Ok(())
    }

    /// Hands a batch's records to the engine; dead-letters those the service refused, grouped
    /// by reason.
    fn ingest(&mut self, engine: &mut S::Engine, batch: Batch) {
        let now = Instant::now();
        let arrived = batch.origin().arrival;
        let batch = Arc::new(batch);
        let mut refused: Vec<(String, Vec<usize>)> = Vec::new();
        for i in 0..batch.len() {
            let offer = Offer {
                batch: &batch,
                i,
                arrived,
                now,
            };
            if let Err(reason) = self.service.push(engine, offer) {
                match refused.iter_mut().find(|(r, _)| *r == reason) {
                    Some((_, idx)) => idx.push(i),
                    None => refused.push((reason, vec![i])),
                }
            }
        }
        for (reason, idx) in refused {
            let letter = DeadLetter::from_batch(&batch, &idx, &reason);
            if let Err(e) = self.dead.send(letter, self.counters) {
                tracing::error!("{e}");
            }
        }
    }

    /// Counts written records (and their latency) and dead-letters given-up ones.
    fn settle(&mut self, engine: &mut S::Engine) {
        let delivered = engine.take_delivered();
        if !delivered.is_empty() {
            let records = delivered.len() as u64;
            let high = self.latency.high();
            let mut bytes = 0u64;
            for (batch, i) in delivered.into_iter().map(S::Engine::ticket) {
                bytes += batch.payload(i).len() as u64;
                let us = u64::try_from(batch.origin().arrival.elapsed().as_micros())
                    .unwrap_or(u64::MAX)
                    .clamp(1, high);
                let _ = self.latency.record(us);
            }
            self.counters.add_out(records, bytes);
            self.counters.merge_latency(&self.latency);
            self.latency.reset();
        }
        for (records, reason) in engine.take_dead() {
            dead_letter(
                records.into_iter().map(S::Engine::ticket),
                &reason,
                self.dead,
                self.counters,
            );
        }
        self.publish(engine.stats());
    }

    /// Publishes the engine's counters if they changed (only this thread writes them).
    fn publish(&mut self, stats: &StatsOf<S>) {
        if *stats != self.reported {
            S::publish(stats, &self.reported, self.counters);
            self.reported = stats.clone();
        }
    }

    fn fail(&self, reason: String, held: Vec<<S::Engine as SinkEngine>::Record>) -> anyhow::Error {
        fail(
            self.name,
            reason,
            held.into_iter().map(S::Engine::ticket),
            self.rx,
            self.dead,
            self.counters,
        )
    }
}

/// What a start-up call found out about the sink's target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status<T> {
    /// Usable, with what the call answered.
    Ready(T),
    /// Not yet (e.g. still being created), in words: ask again after a backoff.
    NotYet(String),
    /// Never will be (e.g. being deleted), in words: the sink fails.
    Unusable(String),
}

/// Start-up calls (describe, list) retried within a sink's retry policy: a retryable failure,
/// or a target not ready yet, waits a backoff (at least 50 ms) while attempts and the record TTL
/// last. One set of attempts counts for every call of one start-up.
pub struct StartupRetry<'a> {
    sink: &'a str,
    policy: RetryPolicy,
    attempts: Attempts,
    rng: rand::rngs::StdRng,
}

impl<'a> StartupRetry<'a> {
    /// Starts counting attempts now, for sink `sink`.
    pub fn new(sink: &'a str, policy: RetryPolicy) -> StartupRetry<'a> {
        StartupRetry {
            sink,
            policy,
            attempts: Attempts::new(Instant::now()),
            rng: <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed()),
        }
    }

    /// Makes `call` until the target is ready, and returns what it answered then.
    ///
    /// # Errors
    ///
    /// Why the target cannot be used: it is unusable, a call failed fatally, or attempts or
    /// the TTL ran out (with the last failure).
    pub async fn until<T>(
        &mut self,
        mut call: impl AsyncFnMut() -> Result<Status<T>, CallFailure>,
    ) -> Result<T, String> {
        loop {
            match call().await {
                Ok(Status::Ready(t)) => return Ok(t),
                Ok(Status::Unusable(why)) => return Err(why),
                Ok(Status::NotYet(what)) => self.wait(what).await?,
                Err(f) if f.class.is_retryable() => self.wait(f.description).await?,
                Err(f) => return Err(f.description),
            }
        }
    }

    /// After a retryable failure described by `what` (or a target not ready yet): waits the
    /// backoff.
    async fn wait(&mut self, what: String) -> Result<(), String> {
        let now = Instant::now();
        match self
            .policy
            .on_failure(&mut self.attempts, now, &mut self.rng)
        {
            RetryDecision::RetryAt(at) => {
                tracing::warn!(sink = self.sink, "{what}; retrying");
                let d = at
                    .saturating_duration_since(now)
                    .max(Duration::from_millis(50));
                tokio::time::sleep(d).await;
                Ok(())
            }
            RetryDecision::GiveUp(g) => Err(format!("{what}; {g}")),
        }
    }
}

/// A seed for random keys and jitter (not for anything secret).
pub fn seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 32)
}

/// Sleeps until `at`; never returns for `None` (for a `select!` branch guarded on `is_some`).
pub async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
    }
}

/// Sends records to the dead-letter sink, grouped by batch (so positions are found in one pass).
pub fn dead_letter(
    tickets: impl IntoIterator<Item = Ticket>,
    reason: &str,
    dead: &DeadLetterTx,
    counters: &Counters,
) {
    let mut groups: Vec<(Arc<Batch>, Vec<usize>)> = Vec::new();
    for (batch, i) in tickets {
        // Records come in arrival order, so the batch is almost always the last one seen.
        let found = match groups.last_mut() {
            Some((b, idx)) if Arc::ptr_eq(b, &batch) => Some(idx),
            _ => groups
                .iter_mut()
                .find(|(b, _)| Arc::ptr_eq(b, &batch))
                .map(|(_, idx)| idx),
        };
        match found {
            Some(idx) => idx.push(i),
            None => groups.push((batch, vec![i])),
        }
    }
    for (batch, mut idx) in groups {
        idx.sort_unstable();
        if let Err(e) = dead.send(DeadLetter::from_batch(&batch, &idx, reason), counters) {
            tracing::error!("{e}");
        }
    }
}

/// Handles a fatal error: dead-letters what the sink held and what was queued, closes the
/// queue, and returns the error to report.
pub fn fail(
    name: &str,
    reason: String,
    held: impl IntoIterator<Item = Ticket>,
    rx: &Receiver<Batch>,
    dead: &DeadLetterTx,
    counters: &Counters,
) -> anyhow::Error {
    let error = anyhow::anyhow!(reason).context(format!("sink `{name}` failed"));
    let reason = format!("{error:#}");
    dead_letter(held, &reason, dead, counters);
    for batch in rx.close() {
        let _ = dead.send(DeadLetter::from_whole_batch(&batch, &reason), counters);
    }
    error
}
