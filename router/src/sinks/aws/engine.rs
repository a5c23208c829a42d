//! [`SinkEngine`]: what an AWS sink's pure state machine offers the thread that drives it
//! ([`driver`](crate::sinks::aws::driver)) and the simulations that test it
//! (`sinks::aws::sim`, in tests): requests out, answers in, outcomes out, time as an
//! argument.
//!
//! The protocol, in the order the driver follows it: feed records (each engine has its own
//! `push`, since what a record needs differs per service), send every request
//! [`poll_request`](SinkEngine::poll_request) gives, fetch what
//! [`poll_refresh`](SinkEngine::poll_refresh) asks for, collect outcomes
//! ([`take_delivered`](SinkEngine::take_delivered), [`take_dead`](SinkEngine::take_dead)), stop
//! on [`fatal`](SinkEngine::fatal) (then [`abort`](SinkEngine::abort) hands back the rest), and
//! otherwise wait for an answer, a record (only while not [`is_full`](SinkEngine::is_full)) or
//! [`poll_timeout`](SinkEngine::poll_timeout). Every record pushed ends in exactly one of
//! `take_delivered`, `take_dead` or `abort`.

use std::time::Instant;

use crate::sinks::aws::retry::ErrorClass;

/// An AWS sink's decisions, free of I/O: no sockets, no clock reads, no sleeps.
pub trait SinkEngine {
    /// The caller's handle of a user record (for accounting and dead letters).
    type Ticket;
    /// A user record as the engine hands it back (its ticket, maybe with more).
    type Record;
    /// A request to send (it goes to the task that makes the call).
    type Request: Send + 'static;
    /// One entry's answer in a successful call (it comes back from that task).
    type EntryResult: Send + 'static;
    /// What the engine may ask the service for besides requests (Kinesis: the shard map);
    /// [`std::convert::Infallible`] for an engine that never asks.
    type Refresh: Send + 'static;
    /// The engine's counters.
    type Stats: Clone + Default + PartialEq + std::fmt::Debug;

    /// The id a request is answered with.
    fn request_id(request: &Self::Request) -> u64;

    /// The payload bytes a request carries (what `max_bytes_per_sec` counts).
    fn request_bytes(request: &Self::Request) -> u64;

    /// The ticket of a record handed back.
    fn ticket(record: Self::Record) -> Self::Ticket;

    /// The next request to send at `now`, if one is due and allowed.
    fn poll_request(&mut self, now: Instant) -> Option<Self::Request>;

    /// When to call [`SinkEngine::poll_request`] again even if nothing else happens; `None`:
    /// only when an answer or a record comes. Call after `poll_request` gave `None`.
    fn poll_timeout(&mut self, now: Instant) -> Option<Instant>;

    /// The answer to request `id`: one result per entry, in order.
    fn handle_response(&mut self, id: u64, results: Vec<Self::EntryResult>, now: Instant);

    /// Request `id` failed as a whole: `class` from
    /// [`classify_call_error`](crate::sinks::aws::retry::classify_call_error), `description` the
    /// error in words (naming the target, for a fatal one).
    fn handle_call_error(&mut self, id: u64, class: ErrorClass, description: &str, now: Instant);

    /// Whether to fetch a [`SinkEngine::Refresh`] now (one at a time); answer with
    /// [`SinkEngine::handle_refresh`] or [`SinkEngine::refresh_failed`]. Never, by default.
    fn poll_refresh(&mut self, _now: Instant) -> bool {
        false
    }

    /// What [`SinkEngine::poll_refresh`] asked for.
    fn handle_refresh(&mut self, _refresh: Self::Refresh, _now: Instant) {}

    /// Fetching what [`SinkEngine::poll_refresh`] asked for failed.
    fn refresh_failed(&mut self) {}

    /// The bookkeeping the engine keeps the shared way.
    fn books(&self) -> &Books<Self::Record, Self::Stats>;

    /// The same, to change.
    fn books_mut(&mut self) -> &mut Books<Self::Record, Self::Stats>;

    /// Records written since the last call.
    fn take_delivered(&mut self) -> Vec<Self::Record> {
        std::mem::take(&mut self.books_mut().delivered)
    }

    /// Records given up since the last call, grouped with their reason.
    fn take_dead(&mut self) -> Vec<(Vec<Self::Record>, String)> {
        std::mem::take(&mut self.books_mut().dead)
    }

    /// Takes back every record still held (pending, in flight, waiting for a retry), after a
    /// fatal error; the engine is empty afterwards.
    fn abort(&mut self) -> Vec<Self::Record>;

    /// The fatal error, once one happened: stop, [`SinkEngine::abort`], report it.
    fn fatal(&self) -> Option<&str> {
        self.books().fatal.as_deref()
    }

    /// No more records will come: everything pending goes out without lingering.
    fn close(&mut self) {
        self.books_mut().closing = true;
    }

    /// Whether the engine holds as much as it may: take no more records until it drains.
    fn is_full(&self) -> bool {
        self.books().held.is_full()
    }

    /// Whether every record pushed has an outcome (none held, nothing in flight).
    fn is_idle(&self) -> bool;

    /// What the engine did so far.
    fn stats(&self) -> &Self::Stats {
        &self.books().stats
    }
}

/// The bookkeeping every engine keeps the same way, and all that the driver reads from it
/// besides requests and timers: what it holds against its limits, the outcomes not taken yet
/// (records `R`), whether it is closing, why it stopped, and its counters `S`.
#[derive(Debug)]
pub struct Books<R, S> {
    /// User records held.
    pub held: Held,
    /// Records written, not taken yet.
    pub delivered: Vec<R>,
    /// Records given up with their reason, not taken yet.
    pub dead: Vec<(Vec<R>, String)>,
    /// No more records will come.
    pub closing: bool,
    /// Why the engine stopped (the first fatal error).
    pub fatal: Option<String>,
    /// The counters.
    pub stats: S,
}

impl<R, S: Default> Books<R, S> {
    /// Nothing held or decided, full at `records_max` records or `bytes_max` bytes.
    pub fn new(records_max: usize, bytes_max: usize) -> Books<R, S> {
        Books {
            held: Held::new(records_max, bytes_max),
            delivered: Vec::new(),
            dead: Vec::new(),
            closing: false,
            fatal: None,
            stats: S::default(),
        }
    }

    /// A failure of `class`: if it is fatal, the engine stops, with the first such reason.
    pub fn stop_if_fatal(&mut self, class: ErrorClass, reason: impl FnOnce() -> String) {
        if class == ErrorClass::Fatal {
            self.fatal.get_or_insert_with(reason);
        }
    }
}

/// What an engine holds (user records pending, in flight or waiting for a retry) against its
/// limits: at either limit it is full, and the driver stops feeding it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    records: usize,
    bytes: usize,
    records_max: usize,
    bytes_max: usize,
}

impl Held {
    /// Nothing held, full at `records_max` records or `bytes_max` bytes.
    pub fn new(records_max: usize, bytes_max: usize) -> Held {
        Held {
            records: 0,
            bytes: 0,
            records_max,
            bytes_max,
        }
    }

    /// Takes `records` more records of `bytes` bytes.
    pub fn add(&mut self, records: usize, bytes: usize) {
        self.records += records;
        self.bytes += bytes;
    }

    /// Lets go of `records` records of `bytes` bytes (an outcome was found for them).
    pub fn release(&mut self, records: usize, bytes: usize) {
        debug_assert!(records <= self.records && bytes <= self.bytes, "{self:?}");
        self.records = self.records.saturating_sub(records);
        self.bytes = self.bytes.saturating_sub(bytes);
    }

    /// Lets go of everything (the engine handed every record back).
    pub fn clear(&mut self) {
        self.records = 0;
        self.bytes = 0;
    }

    /// User records held.
    pub fn records(&self) -> usize {
        self.records
    }

    /// Whether a limit is reached.
    pub fn is_full(&self) -> bool {
        self.records >= self.records_max || self.bytes >= self.bytes_max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_is_full_at_either_limit_until_released() {
        let mut h = Held::new(3, 100);
        h.add(2, 50);
        assert!(!h.is_full());
        h.add(1, 1);
        assert!(h.is_full(), "records");
        h.release(1, 1);
        assert!(!h.is_full());
        h.add(0, 50);
        assert!(h.is_full(), "bytes");
        assert_eq!(h.records(), 2);
        h.clear();
        assert_eq!((h.records(), h.is_full()), (0, false));
    }
}
