//! Sequencing of batches per session: [`Sessions`] on the server, [`Outbox`] on the client.
//!
//! A client picks a session id and numbers its batches 0, 1, 2, ... in that session. Every batch
//! travels on a stream of its own, so the server may see them in any order; the server accepts a
//! batch only when it is the next one of its session ([`Decision::Accept`]), tells the client
//! that a resend is a [`Decision::Duplicate`], and holds a batch that came early
//! ([`Decision::Wait`]) until the earlier ones arrive or a timeout answers
//! [`Status::OutOfOrder`]. The client keeps every batch until it is acknowledged and resends in
//! sequence order. Together: every batch reaches the router's pipeline once, in order, as long
//! as the router process lives and remembers the session.
//!
//! Pure state: no I/O, threads or clocks; retry delays are returned to the caller, who waits.

use std::collections::{BTreeMap, HashMap, VecDeque};

use bytes::Bytes;

use super::protocol::{Ack, Status};

/// What the server should do with a batch ([`Sessions::decide`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The batch is the next one of its session: try to enqueue it; on success call
    /// [`Sessions::accepted`] and answer [`Status::Ok`], else answer [`Status::Backpressure`].
    Accept,
    /// The batch was accepted earlier: answer [`Status::Duplicate`].
    Duplicate,
    /// An earlier batch is still outstanding: hold this one until it becomes
    /// [`Decision::Accept`], or answer [`Status::OutOfOrder`] after a timeout.
    Wait,
    /// No connection of this session was [opened](Sessions::open) (a caller bug, or a BATCH
    /// before HELLO): answer [`Status::BadRequest`].
    UnknownSession,
}

/// One session the server remembers.
#[derive(Debug)]
struct Session {
    /// The next sequence number to accept.
    next: u64,
    /// False until the first batch after the session was (re)created set `next`.
    anchored: bool,
    /// Open connections of this session.
    live: u32,
    /// While `live == 0`: the session's key in [`Sessions::idle`].
    idle_since: Option<u64>,
}

/// The server's table of sessions: `session_id -> next sequence number`, bounded, least
/// recently used first out.
///
/// The connection handler calls [`Sessions::open`] on HELLO (its answer goes into WELCOME),
/// [`Sessions::decide`] for every BATCH, [`Sessions::accepted`] once a batch is enqueued, and
/// [`Sessions::close`] when the connection ends.
///
/// **Eviction.** A session with an open connection is never evicted. Sessions without one are
/// kept until the table holds more than `capacity` sessions; then the one idle longest goes. So
/// eviction only loses duplicate detection for a client idle longer than the table's memory
/// (the `capacity` most recently active sessions), never ordering within a live connection.
/// When an evicted (or new) session comes back, the server does not know where it stands:
/// WELCOME says `next_seq` 0 (the client drops nothing), and the first batch the server decides
/// on sets where the session resumes. Clients send their oldest unacknowledged batch first on
/// every connection, so **the handler must decide on a connection's first batch stream (in
/// stream-id order) before any other batch stream of that connection**. A batch the router
/// accepted before the eviction whose acknowledgement the client never received is then
/// accepted a second time; nothing is lost and order is kept.
///
/// The table holds at most `capacity` sessions plus those with open connections (which the
/// server bounds separately). Recency is the order of [`Sessions::close`] calls: no clock.
#[derive(Debug)]
pub struct Sessions {
    capacity: usize,
    sessions: HashMap<u64, Session>,
    /// Sessions without an open connection, by when their last connection closed.
    idle: BTreeMap<u64, u64>,
    /// Counts [`Sessions::close`] calls, for `idle`.
    tick: u64,
    evictions: u64,
}

impl Sessions {
    /// A table remembering at least `capacity` (at least 1) sessions.
    pub fn new(capacity: usize) -> Sessions {
        Sessions {
            capacity: capacity.max(1),
            sessions: HashMap::new(),
            idle: BTreeMap::new(),
            tick: 0,
            evictions: 0,
        }
    }

    /// A connection of session `id` opened (HELLO): returns the next sequence number the
    /// server expects (0 for a session it does not remember) for WELCOME. The session stays in
    /// the table until the matching [`Sessions::close`].
    pub fn open(&mut self, id: u64) -> u64 {
        if let Some(session) = self.sessions.get_mut(&id) {
            if let Some(since) = session.idle_since.take() {
                self.idle.remove(&since);
            }
            session.live += 1;
            return session.next;
        }
        self.sessions.insert(
            id,
            Session {
                next: 0,
                anchored: false,
                live: 1,
                idle_since: None,
            },
        );
        self.evict();
        0
    }

    /// A connection of session `id` ended. When it was the last one, the session becomes
    /// idle: the most recently used of the idle sessions.
    pub fn close(&mut self, id: u64) {
        if let Some(session) = self.sessions.get_mut(&id)
            && session.live > 0
        {
            session.live -= 1;
            if session.live == 0 {
                self.tick += 1;
                session.idle_since = Some(self.tick);
                self.idle.insert(self.tick, id);
            }
        }
        self.evict();
    }

    /// What to do with batch `seq` of session `id`. The first call after the session was
    /// created (see [`Sessions::open`]) accepts whatever `seq` comes and resumes the session
    /// there.
    pub fn decide(&mut self, id: u64, seq: u64) -> Decision {
        let Some(session) = self.sessions.get_mut(&id) else {
            return Decision::UnknownSession;
        };
        if !session.anchored {
            session.anchored = true;
            session.next = seq;
        }
        match seq.cmp(&session.next) {
            std::cmp::Ordering::Equal => Decision::Accept,
            std::cmp::Ordering::Less => Decision::Duplicate,
            std::cmp::Ordering::Greater => Decision::Wait,
        }
    }

    /// Batch `seq` of session `id` was enqueued: the session moves on to `seq + 1`. Only for
    /// the batch [`Sessions::decide`] said to accept; returns false (changing nothing) for any
    /// other.
    pub fn accepted(&mut self, id: u64, seq: u64) -> bool {
        match self.sessions.get_mut(&id) {
            Some(session) if session.anchored && session.next == seq => {
                session.next = seq.saturating_add(1);
                true
            }
            _ => false,
        }
    }

    /// The next sequence number of session `id`, if the table remembers it.
    pub fn next_seq(&self, id: u64) -> Option<u64> {
        self.sessions.get(&id).map(|s| s.next)
    }

    /// Sessions in the table.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// True when the table is empty.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// The capacity given to [`Sessions::new`].
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Sessions evicted so far.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    fn evict(&mut self) {
        while self.sessions.len() > self.capacity {
            let Some((_, id)) = self.idle.pop_first() else {
                break;
            };
            self.sessions.remove(&id);
            self.evictions += 1;
        }
    }
}

/// Why [`Outbox::push`] refused a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// The outbox is full ([`Outbox::has_room`] said so).
    #[error("the outbox is full")]
    Full,
    /// The batch does not carry the next sequence number ([`Outbox::next_seq`]).
    #[error("batch has sequence number {got}, expected {expected}")]
    WrongSeq {
        /// The sequence number the outbox expected.
        expected: u64,
        /// The one the batch has.
        got: u64,
    },
}

/// What an ACK meant for the client ([`Outbox::on_ack`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckOutcome {
    /// [`Status::Ok`] or [`Status::Duplicate`]: the server has the batch; its records count as
    /// acknowledged.
    Acknowledged {
        /// The batch.
        seq: u64,
        /// Records newly acknowledged: the batch's records, or 0 for a batch acknowledged
        /// before (and sent again because the server forgot the session).
        records: u32,
    },
    /// [`Status::Backpressure`], [`Status::ShuttingDown`] (the batch and every later one) or
    /// [`Status::OutOfOrder`] (every batch) will be sent again: wait `after_ms` before the next
    /// [`Outbox::to_send`]. After `ShuttingDown`, reconnect.
    Retry {
        /// The status that asked for the resend.
        status: Status,
        /// The server's `retry_after_ms`.
        after_ms: u32,
    },
    /// [`Status::Unauthorized`], [`Status::BadRequest`] or [`Status::TooLarge`]: the server will
    /// never take this batch. It left the outbox and its records count as rejected. The server
    /// does not move the session past it, so later batches of the session would only wait:
    /// treat this as fatal for the session.
    Rejected {
        /// The batch.
        seq: u64,
        /// Why.
        status: Status,
        /// Its records.
        records: u32,
        /// The server's message.
        message: String,
    },
    /// An answer for a batch no longer held or already acknowledged, or a resend request for a
    /// batch already waiting to be resent (an answer to an earlier send of it): nothing to do.
    Ignored,
}

/// One batch the client holds.
#[derive(Debug)]
struct Pending {
    seq: u64,
    frame: Bytes,
    records: u32,
    /// Sent on the current connection (or acknowledged on it) and not asked to be resent since.
    sent: bool,
    /// Acknowledged since the last WELCOME; held until every earlier batch is (see [`Outbox`]).
    acknowledged: bool,
    /// Its records count as acknowledged (it was acknowledged at least once).
    counted: bool,
}

/// The client's batches not yet acknowledged (what `edge-router send` keeps in flight), in
/// sequence order.
///
/// The caller pushes batches numbered [`Outbox::next_seq`] while [`Outbox::has_room`], sends
/// what [`Outbox::to_send`] hands out (each on a stream of its own), and reports ACKs
/// ([`Outbox::on_ack`]), lost connections ([`Outbox::on_disconnect`]) and WELCOMEs
/// ([`Outbox::on_welcome`]).
///
/// Batches are sent strictly in order: a batch is handed out only when every earlier batch held
/// was sent at least once on the current connection, and nothing is handed out between a
/// disconnect and the next WELCOME.
///
/// An acknowledged batch counts as acknowledged at once, but stays in the outbox (and in its
/// limits) until every earlier batch is acknowledged too: the held batches always form one run
/// of sequence numbers. That run is what a server that forgot the session (see [`Sessions`])
/// needs to resume from the oldest unacknowledged batch without a hole: when a WELCOME's
/// `next_seq` is not past them, acknowledged batches are sent again with the rest (without
/// counting their records twice), and held until the server acknowledges them again.
#[derive(Debug)]
pub struct Outbox {
    max_batches: usize,
    max_bytes: usize,
    pending: VecDeque<Pending>,
    bytes: usize,
    next_seq: u64,
    connected: bool,
    acknowledged_records: u64,
    rejected_records: u64,
    pending_records: u64,
}

impl Outbox {
    /// An empty outbox holding up to `max_in_flight_batches` (at least 1) batches and, beyond
    /// the first batch, up to `max_bytes` of frames. Not connected: call
    /// [`Outbox::on_welcome`] first.
    pub fn new(max_in_flight_batches: usize, max_bytes: usize) -> Outbox {
        Outbox {
            max_batches: max_in_flight_batches.max(1),
            max_bytes,
            pending: VecDeque::new(),
            bytes: 0,
            next_seq: 0,
            connected: false,
            acknowledged_records: 0,
            rejected_records: 0,
            pending_records: 0,
        }
    }

    /// Whether one more batch may be pushed (of any size: the outbox refuses a batch only when
    /// it is already at its batch or byte limit).
    pub fn has_room(&self) -> bool {
        self.pending.len() < self.max_batches && self.bytes < self.max_bytes.max(1)
    }

    /// The sequence number the next pushed batch must carry.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Adds a batch: its sequence number (must be [`Outbox::next_seq`]), its BATCH frame and
    /// its record count.
    pub fn push(&mut self, seq: u64, frame: Bytes, records: u32) -> Result<(), PushError> {
        if seq != self.next_seq {
            return Err(PushError::WrongSeq {
                expected: self.next_seq,
                got: seq,
            });
        }
        if !self.has_room() {
            return Err(PushError::Full);
        }
        self.bytes += frame.len();
        self.pending_records += u64::from(records);
        self.pending.push_back(Pending {
            seq,
            frame,
            records,
            sent: false,
            acknowledged: false,
            counted: false,
        });
        self.next_seq = seq.saturating_add(1);
        Ok(())
    }

    /// The next batch to send (the oldest one not sent on this connection), now marked sent;
    /// `None` when every batch is sent or no connection is up.
    pub fn to_send(&mut self) -> Option<(u64, Bytes)> {
        if !self.connected {
            return None;
        }
        let next = self.pending.iter_mut().find(|p| !p.sent)?;
        next.sent = true;
        Some((next.seq, next.frame.clone()))
    }

    /// Applies the server's answer for one batch.
    pub fn on_ack(&mut self, ack: &Ack) -> AckOutcome {
        let Some(index) = self.pending.iter().position(|p| p.seq == ack.seq) else {
            return AckOutcome::Ignored;
        };
        let Some(batch) = self.pending.get_mut(index) else {
            return AckOutcome::Ignored;
        };
        if batch.acknowledged {
            return AckOutcome::Ignored;
        }
        let (seq, records) = (batch.seq, batch.records);
        let resend_from = match ack.status {
            Status::Ok | Status::Duplicate => {
                batch.acknowledged = true;
                let counted = std::mem::replace(&mut batch.counted, true);
                let records = if counted { 0 } else { records };
                self.acknowledged_records += u64::from(records);
                self.pending_records -= u64::from(records);
                self.release();
                return AckOutcome::Acknowledged { seq, records };
            }
            Status::Unauthorized | Status::BadRequest | Status::TooLarge => {
                let counted = batch.counted;
                if let Some(batch) = self.pending.remove(index) {
                    self.bytes -= batch.frame.len();
                }
                if !counted {
                    self.rejected_records += u64::from(records);
                    self.pending_records -= u64::from(records);
                }
                self.release();
                return AckOutcome::Rejected {
                    seq,
                    status: ack.status,
                    records,
                    message: ack.message.clone(),
                };
            }
            _ if !batch.sent => return AckOutcome::Ignored,
            Status::Backpressure | Status::ShuttingDown => index,
            Status::OutOfOrder => 0,
        };
        for p in self.pending.range_mut(resend_from..) {
            p.sent &= p.acknowledged;
        }
        AckOutcome::Retry {
            status: ack.status,
            after_ms: ack.retry_after_ms,
        }
    }

    /// The connection is gone: nothing is handed out until the next [`Outbox::on_welcome`].
    pub fn on_disconnect(&mut self) {
        self.connected = false;
        for p in &mut self.pending {
            p.sent = false;
        }
    }

    /// A new connection's WELCOME (with [`Status::Ok`]) said the server expects `next_seq`:
    /// batches below it were accepted before (their ACKs may have been lost) and count as
    /// acknowledged; every other batch held, acknowledged or not (the server forgot the
    /// session), is sent again, oldest first. If the server is ahead of every batch pushed
    /// (the session id was used before), numbering continues from `next_seq`.
    pub fn on_welcome(&mut self, next_seq: u64) {
        self.connected = true;
        for p in &mut self.pending {
            p.acknowledged = p.seq < next_seq;
            if p.acknowledged && !p.counted {
                p.counted = true;
                self.acknowledged_records += u64::from(p.records);
                self.pending_records -= u64::from(p.records);
            }
            p.sent = false;
        }
        self.release();
        self.next_seq = self.next_seq.max(next_seq);
    }

    /// Records acknowledged so far.
    pub fn acknowledged_records(&self) -> u64 {
        self.acknowledged_records
    }

    /// Records rejected so far (see [`AckOutcome::Rejected`]).
    pub fn rejected_records(&self) -> u64 {
        self.rejected_records
    }

    /// Records pushed and not yet acknowledged or rejected.
    pub fn pending_records(&self) -> u64 {
        self.pending_records
    }

    /// Batches held (including acknowledged ones waiting for an earlier one).
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// True when no batch is held: everything pushed was acknowledged or rejected.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Bytes of the frames held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Batches sent on the current connection and not answered (or asked to be resent) yet.
    pub fn in_flight(&self) -> usize {
        self.pending
            .iter()
            .filter(|p| p.sent && !p.acknowledged)
            .count()
    }

    /// Drops acknowledged batches from the front.
    fn release(&mut self) {
        while let Some(front) = self.pending.front()
            && front.acknowledged
        {
            self.bytes -= front.frame.len();
            self.pending.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::sources::quic::protocol::{BatchEncoder, Limits, decode_batch};
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};

    fn ack(seq: u64, status: Status) -> Ack {
        Ack {
            seq,
            status,
            accepted: 0,
            retry_after_ms: 25,
            message: status.name().into(),
        }
    }

    fn frame(seq: u64, records: u32) -> Bytes {
        let mut e = BatchEncoder::new(seq, None, &[]).unwrap();
        for r in 0..records {
            e.push(format!("{seq}-{r}").as_bytes()).unwrap();
        }
        e.finish()
    }

    #[test]
    fn sessions_accept_in_order_and_detect_duplicates() {
        let mut s = Sessions::new(8);
        assert_eq!(s.decide(1, 0), Decision::UnknownSession);
        assert_eq!(s.open(1), 0);
        assert_eq!(s.decide(1, 0), Decision::Accept);
        assert_eq!(s.decide(1, 1), Decision::Wait);
        assert!(!s.accepted(1, 1), "not the next one");
        assert!(s.accepted(1, 0));
        assert!(!s.accepted(1, 0), "already accepted");
        assert_eq!(s.decide(1, 0), Decision::Duplicate);
        assert_eq!(s.decide(1, 1), Decision::Accept);
        assert_eq!(s.decide(1, 2), Decision::Wait);
        assert!(s.accepted(1, 1));
        assert_eq!(s.next_seq(1), Some(2));
        s.close(1);
        assert_eq!(s.open(1), 2, "a reconnect resumes where the session was");
        assert_eq!(s.decide(1, 1), Decision::Duplicate);
    }

    #[test]
    fn sessions_evict_the_longest_idle_and_never_a_live_one() {
        let mut s = Sessions::new(2);
        for id in 1..=3 {
            s.open(id);
            s.decide(id, 0);
            s.accepted(id, 0);
        }
        assert_eq!(s.len(), 3, "live sessions are never evicted");
        s.close(2);
        assert_eq!(s.len(), 2, "over capacity: the idle one goes");
        assert_eq!(s.next_seq(2), None);
        assert_eq!(s.evictions(), 1);
        s.close(1);
        s.close(3);
        assert_eq!(s.len(), 2);
        s.open(4);
        assert_eq!(s.next_seq(1), None, "1 was idle longest");
        assert_eq!(s.next_seq(3), Some(1));
        // Reopening an idle session takes it out of the eviction order.
        s.open(3);
        s.close(4);
        s.open(5);
        assert_eq!(s.next_seq(3), Some(1));
        assert_eq!(s.next_seq(4), None);
        assert_eq!(s.evictions(), 3);
    }

    #[test]
    fn an_evicted_session_resumes_at_the_clients_oldest_batch() {
        let mut s = Sessions::new(1);
        s.open(1);
        for seq in 0..57 {
            assert_eq!(s.decide(1, seq), Decision::Accept);
            s.accepted(1, seq);
        }
        s.close(1);
        s.open(2);
        s.close(2);
        assert_eq!(s.next_seq(1), None, "evicted");
        // The client still holds 55.. (the ACKs of 55 and 56 were lost): WELCOME says 0, the
        // client sends 55 first, and the session resumes there instead of waiting for 0.
        assert_eq!(s.open(1), 0);
        assert_eq!(s.decide(1, 55), Decision::Accept);
        assert_eq!(s.decide(1, 56), Decision::Wait);
        assert!(s.accepted(1, 55));
        assert_eq!(s.decide(1, 56), Decision::Accept);
    }

    #[test]
    fn outbox_sends_in_order_and_only_when_connected() {
        let mut o = Outbox::new(3, 1 << 20);
        assert!(o.is_empty());
        for seq in 0..3 {
            assert!(o.has_room());
            o.push(seq, frame(seq, 2), 2).unwrap();
        }
        assert!(!o.has_room());
        assert_eq!(o.push(3, frame(3, 1), 1), Err(PushError::Full));
        assert_eq!(
            o.push(7, frame(7, 1), 1),
            Err(PushError::WrongSeq {
                expected: 3,
                got: 7
            })
        );
        assert_eq!(o.to_send(), None, "not connected yet");
        o.on_welcome(0);
        let sent: Vec<u64> = std::iter::from_fn(|| o.to_send().map(|(seq, _)| seq)).collect();
        assert_eq!(sent, [0, 1, 2]);
        assert_eq!(o.in_flight(), 3);
        assert_eq!(
            o.on_ack(&ack(1, Status::Ok)),
            AckOutcome::Acknowledged { seq: 1, records: 2 }
        );
        assert_eq!(o.on_ack(&ack(1, Status::Duplicate)), AckOutcome::Ignored);
        assert_eq!(
            o.on_ack(&ack(0, Status::Duplicate)),
            AckOutcome::Acknowledged { seq: 0, records: 2 }
        );
        assert_eq!((o.acknowledged_records(), o.pending_records()), (4, 2));
        assert!(o.has_room());
        assert_eq!(o.bytes(), frame(2, 2).len());
    }

    #[test]
    fn outbox_backpressure_resends_the_batch_and_everything_after_it() {
        let mut o = Outbox::new(8, 1 << 20);
        o.on_welcome(0);
        for seq in 0..4 {
            o.push(seq, frame(seq, 1), 1).unwrap();
            o.to_send();
        }
        assert_eq!(
            o.on_ack(&ack(2, Status::Backpressure)),
            AckOutcome::Retry {
                status: Status::Backpressure,
                after_ms: 25
            }
        );
        assert_eq!(o.in_flight(), 2);
        assert_eq!(
            o.on_ack(&ack(3, Status::Backpressure)),
            AckOutcome::Ignored,
            "3 is already waiting for its resend"
        );
        assert_eq!(o.to_send().map(|s| s.0), Some(2));
        assert_eq!(o.to_send().map(|s| s.0), Some(3));
        assert_eq!(o.to_send(), None);
        // OutOfOrder: everything from the oldest.
        assert!(matches!(
            o.on_ack(&ack(3, Status::OutOfOrder)),
            AckOutcome::Retry {
                status: Status::OutOfOrder,
                ..
            }
        ));
        assert_eq!(o.in_flight(), 0);
        assert_eq!(o.to_send().map(|s| s.0), Some(0));
        // ShuttingDown behaves like backpressure.
        assert!(matches!(
            o.on_ack(&ack(0, Status::ShuttingDown)),
            AckOutcome::Retry {
                status: Status::ShuttingDown,
                ..
            }
        ));
        assert_eq!(o.to_send().map(|s| s.0), Some(0));
    }

    #[test]
    fn outbox_rejections_are_reported_with_the_message() {
        for status in [Status::Unauthorized, Status::BadRequest, Status::TooLarge] {
            let mut o = Outbox::new(8, 1 << 20);
            o.on_welcome(0);
            o.push(0, frame(0, 3), 3).unwrap();
            o.to_send();
            assert_eq!(
                o.on_ack(&ack(0, status)),
                AckOutcome::Rejected {
                    seq: 0,
                    status,
                    records: 3,
                    message: status.name().into()
                }
            );
            assert_eq!((o.rejected_records(), o.pending_records()), (3, 0));
            assert!(o.is_empty());
        }
    }

    #[test]
    fn outbox_disconnect_and_welcome() {
        let mut o = Outbox::new(8, 1 << 20);
        o.on_welcome(0);
        for seq in 0..5 {
            o.push(seq, frame(seq, 1), 1).unwrap();
        }
        while o.to_send().is_some() {}
        o.on_disconnect();
        assert_eq!(o.in_flight(), 0);
        assert_eq!(
            o.to_send(),
            None,
            "nothing goes out before the next WELCOME"
        );
        o.on_welcome(3);
        assert_eq!((o.acknowledged_records(), o.pending_records()), (3, 2));
        assert_eq!(o.to_send().map(|s| s.0), Some(3));
        // A server ahead of the client: numbering continues past it.
        o.on_disconnect();
        o.on_welcome(9);
        assert!(o.is_empty());
        assert_eq!(o.next_seq(), 9);
        assert_eq!(o.acknowledged_records(), 5);
    }

    /// Regression: batch 20 was acknowledged before 19; the server then forgot the session.
    /// The client must send 20 again (and keep it until acknowledged again), or the server,
    /// resuming at 19, would wait for 20 forever.
    #[test]
    fn outbox_resends_acknowledged_batches_to_a_server_that_forgot_the_session() {
        let mut o = Outbox::new(8, 1 << 20);
        o.on_welcome(0);
        for seq in 0..3 {
            o.push(seq, frame(seq, 1), 1).unwrap();
            o.to_send();
        }
        assert_eq!(
            o.on_ack(&ack(1, Status::Ok)),
            AckOutcome::Acknowledged { seq: 1, records: 1 }
        );
        assert_eq!(o.len(), 3, "1 is held until 0 is acknowledged");
        assert_eq!((o.acknowledged_records(), o.pending_records()), (1, 2));
        o.on_disconnect();
        o.on_welcome(0);
        let sent: Vec<u64> = std::iter::from_fn(|| o.to_send().map(|(seq, _)| seq)).collect();
        assert_eq!(sent, [0, 1, 2]);
        assert_eq!(
            o.on_ack(&ack(0, Status::Ok)),
            AckOutcome::Acknowledged { seq: 0, records: 1 }
        );
        assert_eq!(o.len(), 2, "1 must be acknowledged again");
        assert_eq!(
            o.on_ack(&ack(1, Status::Ok)),
            AckOutcome::Acknowledged { seq: 1, records: 0 },
            "not counted twice"
        );
        assert_eq!(o.len(), 1);
        assert_eq!((o.acknowledged_records(), o.pending_records()), (2, 1));
        // A server that remembers: WELCOME past the held batches releases them.
        o.on_disconnect();
        o.on_welcome(3);
        assert!(o.is_empty());
        assert_eq!(o.acknowledged_records(), 3);
    }

    #[test]
    fn outbox_bytes_limit_always_admits_one_batch() {
        let mut o = Outbox::new(8, 10);
        assert!(o.has_room());
        o.push(0, frame(0, 5), 5).unwrap();
        assert!(o.bytes() > 10);
        assert!(!o.has_room());
    }

    /// What a simulated run saw.
    struct Run {
        /// Sequence numbers in the order the server enqueued them.
        received: Vec<u64>,
        evictions: u64,
        batches: u64,
    }

    /// A client `Outbox` and a `Sessions`-driven server over a simulated connection: streams
    /// are handled in random order (except each connection's first), answers (Ok, Backpressure,
    /// Duplicate, OutOfOrder for a batch that came early) arrive in random order, and the
    /// connection drops at random (losing streams and answers). With `evict`, the session is
    /// sometimes pushed out of the server's table while disconnected.
    fn simulate(seed: u64, batches: u64, window: usize, evict: bool) -> Run {
        const ID: u64 = 7;
        let mut rng = StdRng::seed_from_u64(seed);
        let mut server = Sessions::new(2);
        let mut outbox = Outbox::new(window, 1 << 20);
        let mut received = Vec::new();
        let mut streams: Vec<Bytes> = Vec::new();
        let mut acks: Vec<Ack> = Vec::new();
        let mut first_decided = false;
        let mut sent_this_connection: HashSet<u64> = HashSet::new();
        let mut other = 100;
        let mut pushed_records = 0;
        outbox.on_welcome(server.open(ID));
        let mut steps = 0;
        while outbox.next_seq() < batches || !outbox.is_empty() {
            steps += 1;
            assert!(steps < 1_000_000, "no progress");
            while outbox.next_seq() < batches && outbox.has_room() {
                let seq = outbox.next_seq();
                let records = rng.random_range(1..4);
                outbox.push(seq, frame(seq, records), records).unwrap();
                pushed_records += u64::from(records);
            }
            while let Some((seq, frame)) = outbox.to_send() {
                // Strict order: every earlier batch still held went out on this connection.
                for p in &outbox.pending {
                    if p.seq < seq {
                        assert!(
                            sent_this_connection.contains(&p.seq),
                            "{seq} before {}",
                            p.seq
                        );
                    }
                }
                sent_this_connection.insert(seq);
                streams.push(frame);
            }
            match rng.random_range(0..10u32) {
                0..=4 if !streams.is_empty() => {
                    let i = if first_decided {
                        rng.random_range(0..streams.len())
                    } else {
                        0
                    };
                    first_decided = true;
                    let frame = streams.remove(i);
                    let batch = decode_batch(frame.clone(), &Limits::default()).unwrap();
                    let seq = batch.seq;
                    let status = match server.decide(ID, seq) {
                        Decision::Accept if rng.random_bool(0.8) => {
                            received.push(seq);
                            assert!(server.accepted(ID, seq));
                            Status::Ok
                        }
                        Decision::Accept => Status::Backpressure,
                        Decision::Duplicate => Status::Duplicate,
                        Decision::Wait if rng.random_bool(0.7) => {
                            streams.push(frame); // Held.
                            continue;
                        }
                        Decision::Wait => Status::OutOfOrder,
                        Decision::UnknownSession => panic!("session {ID} not open"),
                    };
                    acks.push(ack(seq, status));
                }
                5..=7 if !acks.is_empty() => {
                    let ack = acks.swap_remove(rng.random_range(0..acks.len()));
                    let outcome = outbox.on_ack(&ack);
                    assert!(
                        !matches!(outcome, AckOutcome::Rejected { .. }),
                        "{outcome:?}"
                    );
                }
                8 if rng.random_bool(0.2) => {
                    streams.clear();
                    acks.clear();
                    outbox.on_disconnect();
                    server.close(ID);
                    if evict && rng.random_bool(0.3) {
                        for _ in 0..2 {
                            other += 1;
                            server.open(other);
                            server.close(other);
                        }
                    }
                    first_decided = false;
                    sent_this_connection.clear();
                    outbox.on_welcome(server.open(ID));
                }
                _ => {}
            }
        }
        assert_eq!(outbox.acknowledged_records(), pushed_records);
        assert_eq!(
            (outbox.pending_records(), outbox.rejected_records()),
            (0, 0)
        );
        Run {
            received,
            evictions: server.evictions(),
            batches,
        }
    }

    proptest! {
        /// Whatever the order of streams and answers, and whatever connections are lost, the
        /// server enqueues every batch exactly once, in sequence order.
        #[test]
        fn every_batch_arrives_exactly_once_in_order(
            seed: u64,
            batches in 0u64..60,
            window in 1usize..6,
        ) {
            let run = simulate(seed, batches, window, false);
            prop_assert_eq!(run.evictions, 0);
            prop_assert_eq!(run.received, (0..run.batches).collect::<Vec<_>>());
        }

        /// When the session is evicted while the client is away, nothing is lost, order is
        /// kept, and the client makes progress; only batches accepted before an eviction may
        /// arrive again, each repetition restarting at or below where the stream was.
        #[test]
        fn an_evicted_session_loses_only_duplicate_detection(
            seed: u64,
            batches in 0u64..60,
            window in 1usize..6,
        ) {
            let run = simulate(seed, batches, window, true);
            let mut seen = Vec::new();
            let mut restarts = 0;
            for (i, &seq) in run.received.iter().enumerate() {
                if i > 0 && seq != run.received[i - 1] + 1 {
                    prop_assert!(seq <= run.received[i - 1], "a gap before {}", seq);
                    restarts += 1;
                }
                if !seen.contains(&seq) {
                    seen.push(seq);
                }
            }
            prop_assert_eq!(seen, (0..run.batches).collect::<Vec<_>>());
            prop_assert!(restarts <= run.evictions);
        }
    }
}
