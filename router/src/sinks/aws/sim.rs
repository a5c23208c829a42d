//! The simulation harness of the AWS sink engines' tests: a [`SinkEngine`] driven in virtual
//! time against a scripted fake service (a [`FakeService`]: per-entry results or a failed call for
//! each request, and what a refresh returns), the way the driver drives it, with every outcome
//! collected so a test can check that each record ended exactly once.
//!
//! Two ways to drive it: [`Sim::step`] / [`Sim::finish`] answer every request as soon as it is
//! sent, in order; [`Sim::send`], [`Sim::answer`] (any request in flight, in any order),
//! [`Sim::refresh`], [`Sim::collect`] and [`Sim::tick`] let a test interleave arrivals, answers
//! and time as it likes (random order and latency in the Kinesis simulation).

use std::time::{Duration, Instant};

use crate::sinks::aws::engine::SinkEngine;
use crate::sinks::aws::retry::{ErrorClass, Jitter, RetryPolicy};

/// `n` milliseconds.
pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Quick retries (10 ms backoff, at most 200 ms) that do not give up within a simulation
/// (1000 attempts, an hour).
pub fn patient_retry() -> RetryPolicy {
    RetryPolicy {
        base: ms(10),
        cap: ms(200),
        attempts_max: 1000,
        ttl: Duration::from_secs(3600),
        jitter: Jitter::Full,
    }
}

/// What the fake service answers to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer<R> {
    /// The call succeeded: one result per entry.
    Entries(Vec<R>),
    /// The call failed as a whole.
    Failed(ErrorClass, String),
}

/// A scripted fake service.
pub trait FakeService<E: SinkEngine> {
    /// The answer to `request` at virtual time `now`.
    fn answer(&mut self, request: &E::Request, now: Instant) -> Answer<E::EntryResult>;

    /// What a refresh the engine asked for returns (`None`: the fetch fails). Never asked, by
    /// default.
    fn refresh(&mut self) -> Option<E::Refresh> {
        None
    }
}

/// An engine, a fake service, virtual time and the outcomes so far.
pub struct Sim<E: SinkEngine, S> {
    /// The engine under test (push records into it directly, at [`Sim::now`]).
    pub engine: E,
    /// The fake service.
    pub service: S,
    /// Virtual time.
    pub now: Instant,
    /// Requests sent and not answered yet.
    pub in_flight: Vec<E::Request>,
    /// Tickets of the records delivered, in the order their answers came.
    pub delivered: Vec<E::Ticket>,
    /// Tickets of the records given up, with the reason.
    pub dead: Vec<(E::Ticket, String)>,
}

impl<E: SinkEngine, S: FakeService<E>> Sim<E, S> {
    /// A simulation starting now.
    pub fn new(engine: E, service: S) -> Sim<E, S> {
        Sim {
            engine,
            service,
            now: Instant::now(),
            in_flight: Vec::new(),
            delivered: Vec::new(),
            dead: Vec::new(),
        }
    }

    /// Sends every request due now; returns how many.
    pub fn send(&mut self) -> usize {
        let before = self.in_flight.len();
        while let Some(req) = self.engine.poll_request(self.now) {
            self.in_flight.push(req);
        }
        self.in_flight.len() - before
    }

    /// Answers the `i`-th request in flight (the last one takes its place) as the fake service
    /// says; returns the tickets that answer delivered.
    pub fn answer(&mut self, i: usize) -> &[E::Ticket] {
        let req = self.in_flight.swap_remove(i);
        self.reply(&req)
    }

    fn reply(&mut self, req: &E::Request) -> &[E::Ticket] {
        let id = E::request_id(req);
        match self.service.answer(req, self.now) {
            Answer::Entries(results) => self.engine.handle_response(id, results, self.now),
            Answer::Failed(class, description) => {
                self.engine
                    .handle_call_error(id, class, &description, self.now);
            }
        }
        let from = self.delivered.len();
        self.collect();
        &self.delivered[from..]
    }

    /// Fetches what the engine asks for, if it asks, from the fake service.
    pub fn refresh(&mut self) {
        if self.engine.poll_refresh(self.now) {
            match self.service.refresh() {
                Some(r) => self.engine.handle_refresh(r, self.now),
                None => self.engine.refresh_failed(),
            }
        }
    }

    /// Collects the outcomes since the last call.
    pub fn collect(&mut self) {
        self.delivered
            .extend(self.engine.take_delivered().into_iter().map(E::ticket));
        for (records, reason) in self.engine.take_dead() {
            self.dead
                .extend(records.into_iter().map(|r| (E::ticket(r), reason.clone())));
        }
    }

    /// Moves the clock to the engine's next timer, or on by a millisecond when it has none later.
    pub fn tick(&mut self) {
        match self.engine.poll_timeout(self.now) {
            Some(t) if t > self.now => self.now = t,
            _ => self.now += ms(1),
        }
    }

    /// Sends every request due now and answers each at once, in order; collects the outcomes.
    pub fn step(&mut self) {
        self.send();
        self.refresh();
        for req in std::mem::take(&mut self.in_flight) {
            self.reply(&req);
        }
        self.collect();
    }

    /// Closes the engine and steps until it is idle, jumping the clock to each timer.
    ///
    /// # Panics
    ///
    /// When it does not become idle within 100,000 steps.
    pub fn finish(&mut self) {
        self.engine.close();
        for _ in 0..100_000 {
            self.step();
            if self.engine.is_idle() {
                return;
            }
            self.tick();
        }
        panic!("engine did not become idle");
    }

    /// Every ticket with an outcome (delivered or dead), sorted: each record once means this is
    /// exactly the tickets pushed.
    pub fn outcomes(&self) -> Vec<E::Ticket>
    where
        E::Ticket: Clone + Ord,
    {
        let mut all = self.delivered.clone();
        all.extend(self.dead.iter().map(|(t, _)| t.clone()));
        all.sort_unstable();
        all
    }
}
