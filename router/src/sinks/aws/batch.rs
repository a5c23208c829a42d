//! Batched put requests (Kinesis PutRecords, Firehose PutRecordBatch): which pending entries go
//! into the next request, and when. Shared by the Kinesis and Firehose sinks; the defaults are
//! Kinesis' limits, the Firehose sink sets its own (500 entries, 4 MiB, 1000 KiB per record).
//!
//! A [`Batcher`] holds the entries waiting to be sent (Kinesis records: aggregates or raw user
//! records) in arrival order. It rejects an entry over the record limit (data + partition key,
//! 1 MiB by default) so the caller dead-letters it with [`Oversized::reason`]; it says when a
//! request is due ([`Batcher::should_flush`]: linger elapsed for the oldest entry, or a target
//! reached), and it cuts requests of at most 500 entries and 5 MiB ([`Batcher::take_where`]),
//! letting the caller hold back entries it may not send yet (a shard out of budget, a key with an
//! entry in flight). Time is an argument; the timer belongs to the caller
//! ([`Batcher::deadline`]).
//!
//! One batcher serves a whole sink: requests mix partition keys and shards, never one request per
//! key.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

const MIB: usize = 1024 * 1024;

/// Most entries in one PutRecords request.
pub const PUT_RECORDS_ENTRIES_MAX: usize = 500;

/// Most bytes (data + partition keys) in one PutRecords request.
pub const PUT_RECORDS_BYTES_MAX: usize = 5 * MIB;

/// A stream's record limit unless it says otherwise (`MaxRecordSizeInKiB`): data + partition key.
pub const RECORD_BYTES_MAX_DEFAULT: usize = MIB;

/// The largest record limit a stream can have, and the largest request with large records.
pub const RECORD_BYTES_MAX_LIMIT: usize = 10 * MIB;

/// Default linger: how long the oldest pending entry may wait for company.
pub const LINGER_DEFAULT: Duration = Duration::from_millis(100);

/// How entries become requests. Sizes are data + partition key bytes, as Kinesis counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchPolicy {
    /// Most entries per request (1..=500).
    pub entries_max: usize,
    /// Most bytes per request (at most 10 MiB; 5 MiB unless the stream allows large records).
    pub request_bytes_max: usize,
    /// Most bytes per entry: the stream's record limit (at most `request_bytes_max`).
    pub record_bytes_max: usize,
    /// How long the oldest pending entry waits before a request is due anyway.
    pub linger: Duration,
    /// A request is due as soon as this many entries are pending (1..=`entries_max`).
    pub target_entries: usize,
    /// A request is due as soon as this many bytes are pending (1..=`request_bytes_max`).
    pub target_bytes: usize,
}

impl Default for BatchPolicy {
    /// 500 entries and 5 MiB per request, 1 MiB per record, 100 ms linger, full requests as
    /// targets.
    fn default() -> Self {
        BatchPolicy {
            entries_max: PUT_RECORDS_ENTRIES_MAX,
            request_bytes_max: PUT_RECORDS_BYTES_MAX,
            record_bytes_max: RECORD_BYTES_MAX_DEFAULT,
            linger: LINGER_DEFAULT,
            target_entries: PUT_RECORDS_ENTRIES_MAX,
            target_bytes: PUT_RECORDS_BYTES_MAX,
        }
    }
}

impl BatchPolicy {
    /// Checks every field against the API's limits and the others.
    ///
    /// # Errors
    ///
    /// Every field out of range, each named with its value and the allowed range.
    pub fn validate(&self) -> Result<(), BatchPolicyError> {
        let mut problems = Vec::new();
        let mut check = |field: &'static str, value: usize, max: usize| {
            if !(1..=max).contains(&value) {
                problems.push(format!("{field} is {value}; expected 1..={max}"));
            }
        };
        check("entries_max", self.entries_max, PUT_RECORDS_ENTRIES_MAX);
        check(
            "request_bytes_max",
            self.request_bytes_max,
            RECORD_BYTES_MAX_LIMIT,
        );
        check(
            "record_bytes_max",
            self.record_bytes_max,
            self.request_bytes_max.min(RECORD_BYTES_MAX_LIMIT),
        );
        check("target_entries", self.target_entries, self.entries_max);
        check("target_bytes", self.target_bytes, self.request_bytes_max);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(BatchPolicyError { problems })
        }
    }
}

/// A [`BatchPolicy`] with fields out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid batch policy: {}", problems.join("; "))]
pub struct BatchPolicyError {
    /// One line per field out of range.
    pub problems: Vec<String>,
}

/// An entry over the record limit, handed back for the dead-letter sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Oversized<T> {
    /// The entry.
    pub entry: T,
    /// Its size (data + partition key).
    pub size: usize,
    /// The record limit it is over.
    pub limit: usize,
}

impl<T> Oversized<T> {
    /// The dead-letter reason.
    pub fn reason(&self) -> String {
        format!(
            "record of {} bytes (data + partition key) is over the stream's record limit of {} bytes",
            self.size, self.limit
        )
    }
}

impl<T> fmt::Display for Oversized<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason())
    }
}

/// The entries of one PutRecords request, in arrival order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutBatch<T> {
    /// The entries (1..=`entries_max`).
    pub entries: Vec<T>,
    /// Their total size (at most `request_bytes_max`).
    pub bytes: usize,
}

#[derive(Debug)]
struct Pending<T> {
    entry: T,
    size: usize,
    since: Instant,
}

/// Entries waiting to be sent, and the decisions that turn them into PutRecords requests.
///
/// Use: [`Batcher::push`] each entry; when [`Batcher::should_flush`] (or at
/// [`Batcher::deadline`]) call [`Batcher::take_where`] and send the request; repeat while it gives
/// requests. Entries the predicate refuses stay pending in their order; `should_flush` stays true
/// for them, so wait for whatever refused them (the rate limiter's wait, a request's answer)
/// rather than polling.
#[derive(Debug)]
pub struct Batcher<T> {
    policy: BatchPolicy,
    pending: VecDeque<Pending<T>>,
    bytes: usize,
}

impl<T> Batcher<T> {
    /// An empty batcher. The policy is used as given; see [`BatchPolicy::validate`].
    pub fn new(policy: BatchPolicy) -> Self {
        Batcher {
            policy,
            pending: VecDeque::new(),
            bytes: 0,
        }
    }

    /// The policy.
    pub fn policy(&self) -> &BatchPolicy {
        &self.policy
    }

    /// Entries pending.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Bytes pending.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The pending entries and their sizes, in arrival order (e.g. to ask a rate limiter how
    /// long until one of them may go).
    pub fn iter(&self) -> impl Iterator<Item = (&T, usize)> + '_ {
        self.pending.iter().map(|p| (&p.entry, p.size))
    }

    /// Adds an entry of `size` bytes (data + partition key) that arrived at `now`.
    ///
    /// # Errors
    ///
    /// [`Oversized`] with the entry when it is over the record limit; it is not added.
    pub fn push(&mut self, entry: T, size: usize, now: Instant) -> Result<(), Oversized<T>> {
        if size > self.policy.record_bytes_max {
            return Err(Oversized {
                entry,
                size,
                limit: self.policy.record_bytes_max,
            });
        }
        self.bytes += size;
        self.pending.push_back(Pending {
            entry,
            size,
            since: now,
        });
        Ok(())
    }

    /// Puts an entry back at the front (it goes into the next request first): an entry to
    /// retry, with `since` its original arrival, so a retry is due at once rather than after
    /// another linger. Entries put back one after another end up in reverse order.
    ///
    /// # Errors
    ///
    /// [`Oversized`] with the entry when it is over the record limit; it is not added.
    pub fn push_front(
        &mut self,
        entry: T,
        size: usize,
        since: Instant,
    ) -> Result<(), Oversized<T>> {
        if size > self.policy.record_bytes_max {
            return Err(Oversized {
                entry,
                size,
                limit: self.policy.record_bytes_max,
            });
        }
        self.bytes += size;
        self.pending.push_front(Pending { entry, size, since });
        Ok(())
    }

    /// Whether a request is due at `now`: something is pending and the oldest entry has waited
    /// its linger, or the pending entries or bytes reached a target.
    pub fn should_flush(&self, now: Instant) -> bool {
        !self.pending.is_empty()
            && (self.pending.len() >= self.policy.target_entries
                || self.bytes >= self.policy.target_bytes
                || self.deadline().is_some_and(|d| now >= d))
    }

    /// When the oldest pending entry's linger ends (`None` when nothing is pending).
    pub fn deadline(&self) -> Option<Instant> {
        let oldest = self.pending.front()?.since;
        Some(oldest.checked_add(self.policy.linger).unwrap_or(oldest))
    }

    /// The next request: pending entries in arrival order, as many as fit in the request limits.
    pub fn take(&mut self) -> Option<PutBatch<T>> {
        self.take_where(|_, _| true)
    }

    /// The next request: the pending entries, in arrival order, that `admit(entry, size)` accepts,
    /// up to the first that would take the request past its byte limit or until it holds
    /// `entries_max`; `None` when there are none. `admit` is asked only about entries that fit, so
    /// it may take a rate budget when it says yes. Everything else stays pending, in order; with
    /// every entry admitted, requests are the arrival order cut into pieces.
    pub fn take_where(&mut self, mut admit: impl FnMut(&T, usize) -> bool) -> Option<PutBatch<T>> {
        let mut taken = Vec::new();
        let mut bytes = 0;
        let mut kept = VecDeque::with_capacity(self.pending.len());
        let mut rest = std::mem::take(&mut self.pending).into_iter();
        for p in rest.by_ref() {
            if bytes + p.size > self.policy.request_bytes_max {
                // The request ends here, so that it never overtakes an entry for being smaller.
                kept.push_back(p);
                break;
            }
            if admit(&p.entry, p.size) {
                bytes += p.size;
                taken.push(p.entry);
                if taken.len() >= self.policy.entries_max {
                    break;
                }
            } else {
                kept.push_back(p);
            }
        }
        kept.extend(rest);
        self.pending = kept;
        self.bytes -= bytes;
        if taken.is_empty() {
            None
        } else {
            Some(PutBatch {
                entries: taken,
                bytes,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn defaults_are_the_api_limits() {
        let p = BatchPolicy::default();
        assert_eq!(p.entries_max, 500);
        assert_eq!(p.request_bytes_max, 5 * 1024 * 1024);
        assert_eq!(p.record_bytes_max, 1024 * 1024);
        assert_eq!(p.linger, ms(100));
        assert_eq!(p.validate(), Ok(()));
    }

    #[test]
    fn validate_names_every_bad_field() {
        let p = BatchPolicy {
            entries_max: 501,
            request_bytes_max: 11 * 1024 * 1024,
            record_bytes_max: 0,
            target_entries: 0,
            ..BatchPolicy::default()
        };
        let err = p.validate().unwrap_err();
        assert_eq!(err.problems.len(), 4, "{err}");
        assert!(
            err.to_string()
                .contains("entries_max is 501; expected 1..=500"),
            "{err}"
        );
        let big = BatchPolicy {
            request_bytes_max: 2 * 1024 * 1024,
            record_bytes_max: 3 * 1024 * 1024,
            target_bytes: 2 * 1024 * 1024,
            ..BatchPolicy::default()
        };
        let err = big.validate().unwrap_err();
        assert_eq!(
            err.problems,
            vec!["record_bytes_max is 3145728; expected 1..=2097152".to_owned()]
        );
    }

    #[test]
    fn oversized_entries_come_back_with_a_reason() {
        let t0 = Instant::now();
        let mut b = Batcher::new(BatchPolicy::default());
        assert_eq!(b.push("ok", 1024 * 1024, t0), Ok(()));
        let err = b.push("big", 1024 * 1024 + 1, t0).unwrap_err();
        assert_eq!(err.entry, "big");
        assert_eq!(
            err.reason(),
            "record of 1048577 bytes (data + partition key) is over the stream's record limit of 1048576 bytes"
        );
        assert_eq!(err.to_string(), err.reason());
        assert_eq!(b.len(), 1);
        assert_eq!(b.bytes(), 1024 * 1024);
    }

    #[test]
    fn linger_and_targets() {
        let t0 = Instant::now();
        let policy = BatchPolicy {
            target_entries: 3,
            target_bytes: 1000,
            ..BatchPolicy::default()
        };
        let mut b = Batcher::new(policy);
        assert!(!b.should_flush(t0));
        assert_eq!(b.deadline(), None);
        assert_eq!(b.take(), None);
        b.push(1, 10, t0).unwrap();
        b.push(2, 10, t0 + ms(40)).unwrap();
        assert_eq!(b.deadline(), Some(t0 + ms(100)));
        assert!(!b.should_flush(t0 + ms(99)));
        assert!(b.should_flush(t0 + ms(100)));
        // A third entry reaches the entry target before the linger ends.
        b.push(3, 10, t0 + ms(50)).unwrap();
        assert!(b.should_flush(t0 + ms(50)));
        let batch = b.take().unwrap();
        assert_eq!(
            batch,
            PutBatch {
                entries: vec![1, 2, 3],
                bytes: 30
            }
        );
        assert!(b.is_empty());
        // The byte target.
        b.push(4, 999, t0 + ms(60)).unwrap();
        assert!(!b.should_flush(t0 + ms(60)));
        b.push(5, 1, t0 + ms(61)).unwrap();
        assert!(b.should_flush(t0 + ms(61)));
    }

    #[test]
    fn requests_respect_entry_and_byte_limits() {
        let t0 = Instant::now();
        let mut b = Batcher::new(BatchPolicy::default());
        for i in 0..1200 {
            b.push(i, 100, t0).unwrap();
        }
        assert_eq!(b.take().unwrap().entries.len(), 500);
        assert_eq!(b.take().unwrap().entries, (500..1000).collect::<Vec<_>>());
        assert_eq!(b.take().unwrap().entries.len(), 200);
        assert_eq!(b.take(), None);
        // 1 MiB records: five per request, not more.
        for i in 0..7 {
            b.push(i, 1024 * 1024, t0).unwrap();
        }
        let first = b.take().unwrap();
        assert_eq!(first.entries, vec![0, 1, 2, 3, 4]);
        assert_eq!(first.bytes, 5 * 1024 * 1024);
        assert_eq!(b.take().unwrap().entries, vec![5, 6]);
        // A request ends at the first entry that does not fit: a smaller later one does not
        // overtake it.
        let mut b2 = Batcher::new(BatchPolicy {
            record_bytes_max: 4 * 1024 * 1024,
            ..BatchPolicy::default()
        });
        for (i, size) in [(0, 3 * 1024 * 1024), (1, 3 * 1024 * 1024), (2, 10)] {
            b2.push(i, size, t0).unwrap();
        }
        assert_eq!(b2.take().unwrap().entries, vec![0]);
        assert_eq!(b2.take().unwrap().entries, vec![1, 2]);
    }

    #[test]
    fn refused_entries_stay_in_order() {
        let t0 = Instant::now();
        let mut b = Batcher::new(BatchPolicy::default());
        for i in 0..10 {
            b.push(i, 1, t0 + ms(i)).unwrap();
        }
        let batch = b.take_where(|&e, _| e % 3 == 0).unwrap();
        assert_eq!(batch.entries, vec![0, 3, 6, 9]);
        assert_eq!(b.len(), 6);
        assert_eq!(b.bytes(), 6);
        // The oldest remaining entry sets the deadline.
        assert_eq!(b.deadline(), Some(t0 + ms(101)));
        assert_eq!(b.take_where(|_, _| false), None);
        assert_eq!(b.take().unwrap().entries, vec![1, 2, 4, 5, 7, 8]);
        assert_eq!(b.bytes(), 0);
    }

    #[test]
    fn entries_put_back_go_first() {
        let t0 = Instant::now();
        let mut b = Batcher::new(BatchPolicy::default());
        b.push(1, 10, t0 + ms(50)).unwrap();
        b.push_front(0, 20, t0).unwrap();
        assert_eq!(b.bytes(), 30);
        // The put-back entry's own arrival sets the deadline.
        assert_eq!(b.deadline(), Some(t0 + ms(100)));
        assert!(b.should_flush(t0 + ms(100)));
        assert!(b.push_front(9, 2 * 1024 * 1024, t0).is_err());
        assert_eq!(b.take().unwrap().entries, vec![0, 1]);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Push(usize),
        Take(u64),
    }

    fn ops() -> impl Strategy<Value = Vec<Op>> {
        let size = prop_oneof![
            8 => 1usize..2000,
            2 => 500_000usize..1_100_000,
        ];
        let op = prop_oneof![
            6 => size.prop_map(Op::Push),
            1 => any::<u64>().prop_map(Op::Take),
        ];
        proptest::collection::vec(op, 0..400)
    }

    proptest! {
        /// Every request is within 500 entries and 5 MiB (here scaled down), oversized entries
        /// are reported, and nothing is lost, duplicated or reordered.
        #[test]
        fn requests_within_limits_nothing_lost(ops in ops(), entries_max in 1usize..20, scale in 1usize..6) {
            let policy = BatchPolicy {
                entries_max,
                request_bytes_max: scale * 1024 * 1024,
                target_entries: entries_max,
                target_bytes: scale * 1024 * 1024,
                ..BatchPolicy::default()
            };
            let t0 = Instant::now();
            let mut b = Batcher::new(policy);
            let mut next_id = 0usize;
            let mut sizes = Vec::new();
            let mut oversized = Vec::new();
            let mut sent: Vec<usize> = Vec::new();
            let check = |batch: &PutBatch<usize>, sizes: &[usize]| -> Result<(), TestCaseError> {
                prop_assert!(!batch.entries.is_empty());
                prop_assert!(batch.entries.len() <= entries_max);
                prop_assert!(batch.bytes <= scale * 1024 * 1024);
                prop_assert_eq!(batch.bytes, batch.entries.iter().map(|&i| sizes[i]).sum::<usize>());
                prop_assert!(batch.entries.windows(2).all(|w| w[0] < w[1]), "order within a request");
                Ok(())
            };
            for op in ops {
                match op {
                    Op::Push(size) => {
                        sizes.push(size);
                        match b.push(next_id, size, t0) {
                            Ok(()) => prop_assert!(size <= 1024 * 1024),
                            Err(o) => {
                                prop_assert!(size > 1024 * 1024);
                                prop_assert_eq!(o.entry, next_id);
                                oversized.push(next_id);
                            }
                        }
                        next_id += 1;
                    }
                    Op::Take(mask) => {
                        // Refuse entries by a pseudo-random rule.
                        if let Some(batch) = b.take_where(|&id, _| (mask >> (id % 64)) & 1 == 1) {
                            check(&batch, &sizes)?;
                            sent.extend(batch.entries);
                        }
                    }
                }
                prop_assert_eq!(b.bytes(), b.pending.iter().map(|p| p.size).sum::<usize>());
            }
            let mut in_order = Vec::new();
            while let Some(batch) = b.take() {
                check(&batch, &sizes)?;
                in_order.extend(batch.entries.iter().copied());
                sent.extend(batch.entries);
            }
            // What was left was sent in arrival order.
            prop_assert!(in_order.windows(2).all(|w| w[0] < w[1]));
            let mut all = sent;
            all.extend(&oversized);
            all.sort_unstable();
            prop_assert_eq!(all, (0..next_id).collect::<Vec<_>>());
        }

        /// With everything admitted, requests are the arrival order cut into pieces.
        #[test]
        fn admitted_requests_keep_arrival_order(sizes in proptest::collection::vec(1usize..400_000, 0..300)) {
            let t0 = Instant::now();
            let mut b = Batcher::new(BatchPolicy::default());
            for (i, &s) in sizes.iter().enumerate() {
                b.push(i, s, t0).unwrap();
            }
            let mut sent = Vec::new();
            while let Some(batch) = b.take() {
                sent.extend(batch.entries);
            }
            prop_assert_eq!(sent, (0..sizes.len()).collect::<Vec<_>>());
        }
    }
}
