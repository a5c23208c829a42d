//! Ordered mode: which pending entries may be sent now so that each lane's entries reach Kinesis
//! in arrival order, across retries and partial failures.
//!
//! PutRecords gives no order between the entries of one request (one can fail while a later one
//! succeeds) nor between concurrent requests. So the [`OrderTracker`] lets at most one entry per
//! *lane* be in flight, and only the oldest unfinished entry of its lane: a failed entry stays at
//! the head of its lane, blocking the entries behind it, until it succeeds or is given up
//! ([`OrderTracker::abandon`], for the dead-letter sink; the lane then moves on).
//!
//! What a lane is, the caller chooses:
//! - **without aggregation**, the partition key (any stable 64-bit id of it, e.g. the top half of
//!   its hash key): a request carries many keys, one entry each; a hot key sends one record per
//!   round trip.
//! - **with aggregation**, the predicted shard index: an aggregate holds many keys of one shard,
//!   so a shard has one aggregate in flight, hence at most one request in flight per shard.
//!   After a reshard, keys move between shards: let in-flight entries finish before switching
//!   maps.
//!
//! Order means first delivery: a timed-out request may have reached Kinesis, so its retry can
//! write a duplicate (never an earlier entry after a later one).

use std::collections::{BTreeSet, HashMap, VecDeque};

/// An entry known to the tracker: its arrival sequence number and its lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryId {
    /// Arrival order, first; so ids sort in arrival order.
    seq: u64,
    lane: u64,
}

impl EntryId {
    /// Its position in arrival order (0, 1, 2, ... per tracker).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Its lane.
    pub fn lane(&self) -> u64 {
        self.lane
    }
}

/// A call that does not fit the entry's state: a bug in the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OrderError {
    /// The entry is not ready: not the oldest of its lane, its lane is busy, or it was started,
    /// finished or abandoned already.
    #[error("entry {} of lane {} may not be sent now", .0.seq, .0.lane)]
    NotReady(EntryId),
    /// The entry is not in flight.
    #[error("entry {} of lane {} is not in flight", .0.seq, .0.lane)]
    NotInFlight(EntryId),
    /// The entry is not the waiting head of its lane (it is in flight, or not the oldest).
    #[error("entry {} of lane {} is not waiting at the head of its lane", .0.seq, .0.lane)]
    NotWaiting(EntryId),
}

#[derive(Debug, Default)]
struct Lane {
    /// Sequence numbers of unfinished entries, oldest first.
    queue: VecDeque<u64>,
    /// Whether the head is in flight.
    in_flight: bool,
}

/// Per-lane order for `ordered` mode: at most one entry in flight per lane, always the oldest.
#[derive(Debug, Default)]
pub struct OrderTracker {
    next_seq: u64,
    lanes: HashMap<u64, Lane>,
    /// Heads of lanes with nothing in flight, in arrival order.
    ready: BTreeSet<EntryId>,
    pending: usize,
    in_flight: usize,
}

impl OrderTracker {
    /// An empty tracker.
    pub fn new() -> OrderTracker {
        OrderTracker::default()
    }

    /// Registers an entry that arrived now in `lane`; keep the id with the entry.
    pub fn push(&mut self, lane: u64) -> EntryId {
        let id = EntryId {
            seq: self.next_seq,
            lane,
        };
        self.next_seq += 1;
        let l = self.lanes.entry(lane).or_default();
        if l.queue.is_empty() && !l.in_flight {
            self.ready.insert(id);
        }
        l.queue.push_back(id.seq);
        self.pending += 1;
        id
    }

    /// Whether `id` may be sent now.
    pub fn is_ready(&self, id: EntryId) -> bool {
        self.ready.contains(&id)
    }

    /// The entries that may be sent now, in arrival order: the oldest unfinished entry of every
    /// lane with nothing in flight.
    pub fn ready(&self) -> impl Iterator<Item = EntryId> + '_ {
        self.ready.iter().copied()
    }

    /// Marks a ready entry as sent; its lane is busy until [`OrderTracker::succeeded`] or
    /// [`OrderTracker::failed`].
    ///
    /// # Errors
    ///
    /// [`OrderError::NotReady`] when the entry may not be sent now.
    pub fn start(&mut self, id: EntryId) -> Result<(), OrderError> {
        if !self.ready.remove(&id) {
            return Err(OrderError::NotReady(id));
        }
        if let Some(l) = self.lanes.get_mut(&id.lane) {
            l.in_flight = true;
        }
        self.in_flight += 1;
        Ok(())
    }

    /// The entry reached Kinesis: it is done, and the next entry of its lane becomes ready.
    ///
    /// # Errors
    ///
    /// [`OrderError::NotInFlight`] when the entry is not in flight.
    pub fn succeeded(&mut self, id: EntryId) -> Result<(), OrderError> {
        self.in_flight_lane(id)?.in_flight = false;
        self.in_flight -= 1;
        self.pop_head(id);
        Ok(())
    }

    /// The entry failed: it is ready again (when to resend is the retry policy's call) and still
    /// blocks the later entries of its lane.
    ///
    /// # Errors
    ///
    /// [`OrderError::NotInFlight`] when the entry is not in flight.
    pub fn failed(&mut self, id: EntryId) -> Result<(), OrderError> {
        self.in_flight_lane(id)?.in_flight = false;
        self.in_flight -= 1;
        self.ready.insert(id);
        Ok(())
    }

    /// Gives up a waiting head entry (retries exhausted, TTL passed): it is done without being
    /// delivered, and the next entry of its lane becomes ready.
    ///
    /// # Errors
    ///
    /// [`OrderError::NotWaiting`] unless the entry is the head of its lane and not in flight (an
    /// entry that was sent is first reported with [`OrderTracker::failed`]).
    pub fn abandon(&mut self, id: EntryId) -> Result<(), OrderError> {
        if !self.ready.remove(&id) {
            return Err(OrderError::NotWaiting(id));
        }
        self.pop_head(id);
        Ok(())
    }

    /// Unfinished entries (waiting or in flight).
    pub fn len(&self) -> usize {
        self.pending
    }

    /// Whether every entry is finished.
    pub fn is_empty(&self) -> bool {
        self.pending == 0
    }

    /// Entries in flight (at most one per lane).
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    fn in_flight_lane(&mut self, id: EntryId) -> Result<&mut Lane, OrderError> {
        self.lanes
            .get_mut(&id.lane)
            .filter(|l| l.in_flight && l.queue.front() == Some(&id.seq))
            .ok_or(OrderError::NotInFlight(id))
    }

    /// Removes the head `id` of its lane (not in flight) and readies the next one.
    fn pop_head(&mut self, id: EntryId) {
        self.pending -= 1;
        let Some(l) = self.lanes.get_mut(&id.lane) else {
            return;
        };
        l.queue.pop_front();
        match l.queue.front() {
            Some(&seq) => {
                self.ready.insert(EntryId { seq, lane: id.lane });
            }
            None => {
                self.lanes.remove(&id.lane);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};

    #[test]
    fn a_failed_entry_blocks_its_lane_only() {
        let mut t = OrderTracker::new();
        let a1 = t.push(1);
        let a2 = t.push(1);
        let b1 = t.push(2);
        assert_eq!(t.ready().collect::<Vec<_>>(), vec![a1, b1]);
        assert!(t.is_ready(a1) && !t.is_ready(a2));
        assert_eq!(t.start(a2), Err(OrderError::NotReady(a2)));
        t.start(a1).unwrap();
        t.start(b1).unwrap();
        assert_eq!(t.in_flight(), 2);
        assert_eq!(t.ready().count(), 0);
        // a1 fails, b1 succeeds: lane 2 is free, lane 1 retries a1 before a2.
        t.failed(a1).unwrap();
        t.succeeded(b1).unwrap();
        assert_eq!(t.ready().collect::<Vec<_>>(), vec![a1]);
        let b2 = t.push(2);
        assert_eq!(t.ready().collect::<Vec<_>>(), vec![a1, b2]);
        t.start(a1).unwrap();
        assert_eq!(t.succeeded(a2), Err(OrderError::NotInFlight(a2)));
        t.succeeded(a1).unwrap();
        assert_eq!(t.ready().collect::<Vec<_>>(), vec![a2, b2]);
        assert_eq!(t.len(), 2);
        assert_eq!((a2.seq(), a2.lane()), (1, 1));
    }

    #[test]
    fn abandoning_frees_the_lane() {
        let mut t = OrderTracker::new();
        let a1 = t.push(9);
        let a2 = t.push(9);
        assert_eq!(t.abandon(a2), Err(OrderError::NotWaiting(a2)));
        t.start(a1).unwrap();
        assert_eq!(t.abandon(a1), Err(OrderError::NotWaiting(a1)));
        t.failed(a1).unwrap();
        t.abandon(a1).unwrap();
        assert!(t.is_ready(a2));
        assert_eq!(t.failed(a1), Err(OrderError::NotInFlight(a1)));
        t.start(a2).unwrap();
        t.succeeded(a2).unwrap();
        assert!(t.is_empty());
        assert_eq!(t.in_flight(), 0);
        assert!(t.lanes.is_empty());
        assert_eq!(
            OrderError::NotReady(a2).to_string(),
            "entry 1 of lane 9 may not be sent now"
        );
    }

    proptest! {
        /// Random arrivals, requests of random subsets of the ready entries, requests answered in
        /// random order with random per-entry failures and give-ups: every lane's deliveries
        /// are its arrivals in order (less the abandoned ones), and no lane ever has two entries
        /// in flight.
        #[test]
        fn per_lane_delivery_order_is_arrival_order(
            seed: u64,
            lanes in 1u64..12,
            entries in 1usize..300,
            fail_percent in 0u32..80,
            abandon_percent in 0u32..30,
        ) {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut t = OrderTracker::new();
            let mut arrived: HashMap<u64, Vec<u64>> = HashMap::new();
            let mut delivered: HashMap<u64, Vec<u64>> = HashMap::new();
            let mut abandoned: Vec<EntryId> = Vec::new();
            let mut requests: Vec<Vec<EntryId>> = Vec::new();
            let mut busy: HashMap<u64, EntryId> = HashMap::new();
            let mut pushed = 0;
            let mut steps = 0;
            while (pushed < entries || !t.is_empty()) && steps < 100_000 {
                steps += 1;
                match rng.random_range(0..4u32) {
                    0 if pushed < entries => {
                        let id = t.push(rng.random_range(0..lanes));
                        arrived.entry(id.lane()).or_default().push(id.seq());
                        pushed += 1;
                    }
                    1 => {
                        let ready: Vec<EntryId> = t.ready().collect();
                        let request: Vec<EntryId> =
                            ready.into_iter().filter(|_| rng.random_bool(0.7)).collect();
                        for &id in &request {
                            t.start(id).unwrap();
                            prop_assert!(busy.insert(id.lane(), id).is_none(), "two in flight in a lane");
                        }
                        if !request.is_empty() {
                            requests.push(request);
                        }
                    }
                    _ if !requests.is_empty() => {
                        // Any in-flight request may answer first.
                        let i = rng.random_range(0..requests.len());
                        let request = requests.swap_remove(i);
                        for id in request {
                            busy.remove(&id.lane());
                            if rng.random_range(0..100) < fail_percent {
                                t.failed(id).unwrap();
                                if rng.random_range(0..100) < abandon_percent {
                                    t.abandon(id).unwrap();
                                    abandoned.push(id);
                                }
                            } else {
                                t.succeeded(id).unwrap();
                                delivered.entry(id.lane()).or_default().push(id.seq());
                            }
                        }
                    }
                    _ => {}
                }
                prop_assert_eq!(t.in_flight(), busy.len());
            }
            prop_assert!(t.is_empty(), "stuck after {} steps", steps);
            for (lane, seqs) in arrived {
                let expected: Vec<u64> = seqs
                    .into_iter()
                    .filter(|&s| !abandoned.iter().any(|a| a.seq() == s))
                    .collect();
                prop_assert_eq!(delivered.remove(&lane).unwrap_or_default(), expected, "lane {}", lane);
            }
        }
    }
}
