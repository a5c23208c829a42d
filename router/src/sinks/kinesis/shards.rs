//! The shard map: which open shard owns a hash key.
//!
//! Built from what ListShards reports for the open shards (id, starting and ending hash key),
//! validated so that the ranges cover the whole key space 0..=2^128-1 exactly once (every gap and
//! overlap is reported, not just the first), then answers "which shard owns this hash key" by
//! binary search. Shards are addressed by their index in the map (sorted by starting hash key),
//! so per-shard state (rate limits, aggregators, in-flight requests) can live in plain vectors;
//! a new map after a reshard means new indices.
//!
//! Also the helpers that choose explicit hash keys: [`spread_u64`] spreads a 64-bit value evenly
//! over the key space, [`ShardMap::hash_key_for_slot`] pins a value to one shard, evenly over the
//! shards, and [`Shard::hash_key_inside`] is a key inside a shard's range (for an aggregate).

use std::fmt;

use crate::core::kinesis::hash::{HASH_KEY_MAX, HashKeyError, parse_hash_key};

/// One open shard: its id and its inclusive range of hash keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    /// The shard id, e.g. `shardId-000000000000`.
    pub id: String,
    /// The first hash key the shard owns.
    pub start: u128,
    /// The last hash key the shard owns (inclusive).
    pub end: u128,
}

impl Shard {
    /// A shard that owns `start..=end`.
    pub fn new(id: impl Into<String>, start: u128, end: u128) -> Shard {
        Shard {
            id: id.into(),
            start,
            end,
        }
    }

    /// Whether the shard owns `hash_key`.
    pub fn contains(&self, hash_key: u128) -> bool {
        self.start <= hash_key && hash_key <= self.end
    }

    /// A hash key the shard owns: its starting hash key. An aggregate sent with this explicit hash
    /// key lands on this shard (while the map is current).
    pub fn hash_key_inside(&self) -> u128 {
        self.start
    }

    /// The middle of the shard's range (rounded down). Stays inside one of the two children when
    /// the shard is split in half, like any key; chosen for pinning so that neither child is
    /// favoured by every value.
    pub fn midpoint(&self) -> u128 {
        self.start + (self.end - self.start) / 2
    }
}

/// The open shards of a stream, sorted by starting hash key, covering 0..=2^128-1 exactly once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardMap {
    /// Never empty; sorted; contiguous from 0 to `HASH_KEY_MAX`.
    shards: Vec<Shard>,
}

impl ShardMap {
    /// Validates `shards` (any order) into a map.
    ///
    /// # Errors
    ///
    /// Every problem found: no shards, a range whose start is after its end, a duplicate id, a
    /// range of hash keys no shard owns, or one that two shards own.
    pub fn new(shards: Vec<Shard>) -> Result<ShardMap, ShardMapError> {
        let mut problems = Vec::new();
        if shards.is_empty() {
            problems.push(ShardMapProblem::NoShards);
        }
        Self::validate(shards, problems)
    }

    /// Parses ListShards' text form, `(shard id, starting hash key, ending hash key)` per open
    /// shard, and validates it as [`ShardMap::new`] does.
    ///
    /// # Errors
    ///
    /// Every problem found, unparsable hash keys included.
    pub fn parse<I, S>(ranges: I) -> Result<ShardMap, ShardMapError>
    where
        I: IntoIterator<Item = (S, S, S)>,
        S: AsRef<str>,
    {
        let mut problems = Vec::new();
        let mut shards = Vec::new();
        let mut seen = 0usize;
        for (id, start, end) in ranges {
            seen += 1;
            let id = id.as_ref();
            let mut parse = |field: &'static str, text: &str| {
                parse_hash_key(text)
                    .map_err(|error| {
                        problems.push(ShardMapProblem::BadHashKey {
                            shard_id: id.to_owned(),
                            field,
                            error,
                        })
                    })
                    .ok()
            };
            let start = parse("StartingHashKey", start.as_ref());
            let end = parse("EndingHashKey", end.as_ref());
            if let (Some(start), Some(end)) = (start, end) {
                shards.push(Shard::new(id, start, end));
            }
        }
        if seen == 0 {
            problems.push(ShardMapProblem::NoShards);
        }
        Self::validate(shards, problems)
    }

    /// A map of `count` shards splitting the key space evenly, as CreateStream does (shard `i`
    /// starts at `floor(i * 2^128 / count)`; ids `shardId-000000000000`, ...). 0 counts as 1.
    pub fn uniform(count: usize) -> ShardMap {
        let n = u128::try_from(count.max(1)).unwrap_or(u128::MAX);
        // 2^128 = n * q + r + 1, so i * 2^128 / n = i * q + i * (r + 1) / n, with no overflow.
        let (q, r) = (HASH_KEY_MAX / n, HASH_KEY_MAX % n);
        let start = |i: u128| i * q + i * (r + 1) / n;
        let shards = (0..n)
            .map(|i| {
                let end = if i + 1 == n {
                    HASH_KEY_MAX
                } else {
                    start(i + 1) - 1
                };
                Shard::new(format!("shardId-{i:012}"), start(i), end)
            })
            .collect();
        ShardMap { shards }
    }

    fn validate(
        mut shards: Vec<Shard>,
        mut problems: Vec<ShardMapProblem>,
    ) -> Result<ShardMap, ShardMapError> {
        let mut ids: Vec<&str> = shards.iter().map(|s| s.id.as_str()).collect();
        ids.sort_unstable();
        for pair in ids.windows(2) {
            if pair[0] == pair[1] {
                problems.push(ShardMapProblem::DuplicateId {
                    shard_id: pair[0].to_owned(),
                });
            }
        }
        problems.dedup();
        for s in shards.iter().filter(|s| s.start > s.end) {
            problems.push(ShardMapProblem::Inverted {
                shard_id: s.id.clone(),
                start: s.start,
                end: s.end,
            });
        }
        shards.sort_by_key(|s| (s.start, s.end));
        // Sweep the well-formed ranges in order: `covered` is the last key owned so far and
        // `owner` the shard that owns it.
        let mut covered: Option<(u128, &str)> = None;
        for s in shards.iter().filter(|s| s.start <= s.end) {
            let next = match covered {
                None => Some(0),
                Some((c, _)) => c.checked_add(1),
            };
            if let Some(next) = next
                && s.start > next
            {
                problems.push(ShardMapProblem::Gap {
                    first: next,
                    last: s.start - 1,
                });
            }
            if let Some((c, owner)) = covered
                && s.start <= c
            {
                problems.push(ShardMapProblem::Overlap {
                    shard_ids: [owner.to_owned(), s.id.clone()],
                    first: s.start,
                    last: s.end.min(c),
                });
            }
            if covered.is_none_or(|(c, _)| s.end > c) {
                covered = Some((s.end, &s.id));
            }
        }
        match covered {
            Some((HASH_KEY_MAX, _)) => {}
            Some((c, _)) => problems.push(ShardMapProblem::Gap {
                first: c + 1,
                last: HASH_KEY_MAX,
            }),
            None if !shards.is_empty() => problems.push(ShardMapProblem::Gap {
                first: 0,
                last: HASH_KEY_MAX,
            }),
            None => {}
        }
        if problems.is_empty() {
            Ok(ShardMap { shards })
        } else {
            Err(ShardMapError { problems })
        }
    }

    /// Number of shards (at least 1).
    pub fn len(&self) -> usize {
        self.shards.len()
    }

    /// Always false: a valid map has at least one shard.
    pub fn is_empty(&self) -> bool {
        self.shards.is_empty()
    }

    /// The shards, sorted by starting hash key; a shard's index here is its index everywhere.
    pub fn shards(&self) -> &[Shard] {
        &self.shards
    }

    /// The shard at `index`.
    pub fn get(&self, index: usize) -> Option<&Shard> {
        self.shards.get(index)
    }

    /// Index of the shard that owns `hash_key` (binary search).
    pub fn index_of(&self, hash_key: u128) -> usize {
        // The first shard whose range ends at or after the key; the ranges are contiguous and the
        // last ends at HASH_KEY_MAX, so it exists and owns the key.
        self.shards
            .partition_point(|s| s.end < hash_key)
            .min(self.shards.len().saturating_sub(1))
    }

    /// The shard that owns `hash_key`.
    pub fn shard_of(&self, hash_key: u128) -> &Shard {
        &self.shards[self.index_of(hash_key)]
    }

    /// Index of the shard with id `id` (a PutRecords answer names the shard an entry went to; a
    /// different shard than predicted means the map is stale).
    pub fn index_of_id(&self, id: &str) -> Option<usize> {
        self.shards.iter().position(|s| s.id == id)
    }

    /// An explicit hash key that pins `value` to one shard, so that many distinct values spread
    /// evenly over the shards whatever their widths: shard `value % len`, at its midpoint. The
    /// value should be a well-mixed hash (e.g. of a field's value); the choice changes when the
    /// shard count changes.
    pub fn hash_key_for_slot(&self, value: u64) -> u128 {
        let count = u64::try_from(self.shards.len()).unwrap_or(u64::MAX).max(1);
        let index = usize::try_from(value % count).unwrap_or(0);
        self.shards.get(index).map_or(0, Shard::midpoint)
    }
}

/// Spreads a 64-bit value evenly over the hash key space: `0 -> 0`, `u64::MAX -> 2^128-1`,
/// monotonic, each value the same distance from the next (`v * (2^64 + 1)`). A uniform 64-bit hash
/// of a field's value becomes an explicit hash key uniform over the key space, so each shard gets
/// a share of values proportional to its width.
pub fn spread_u64(value: u64) -> u128 {
    (u128::from(value) << 64) | u128::from(value)
}

/// One thing wrong with a shard map.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShardMapProblem {
    /// No open shards at all.
    #[error("no open shards")]
    NoShards,
    /// A hash key that does not parse.
    #[error("shard {shard_id}: bad {field}: {error}")]
    BadHashKey {
        /// The shard.
        shard_id: String,
        /// `StartingHashKey` or `EndingHashKey`.
        field: &'static str,
        /// Why it does not parse.
        error: HashKeyError,
    },
    /// A range that starts after it ends.
    #[error("shard {shard_id}: starting hash key {start} is after ending hash key {end}")]
    Inverted {
        /// The shard.
        shard_id: String,
        /// Its starting hash key.
        start: u128,
        /// Its ending hash key.
        end: u128,
    },
    /// Two shards with one id.
    #[error("shard id {shard_id} appears more than once")]
    DuplicateId {
        /// The id.
        shard_id: String,
    },
    /// Hash keys no shard owns.
    #[error("hash keys {first}..={last} belong to no shard")]
    Gap {
        /// The first key not owned.
        first: u128,
        /// The last key not owned.
        last: u128,
    },
    /// Hash keys two shards own.
    #[error("shards {} and {} both own hash keys {first}..={last}", shard_ids[0], shard_ids[1])]
    Overlap {
        /// The two shards.
        shard_ids: [String; 2],
        /// The first key owned twice.
        first: u128,
        /// The last key owned twice.
        last: u128,
    },
}

/// Why shards do not make a map: every problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardMapError {
    /// The problems, at least one.
    pub problems: Vec<ShardMapProblem>,
}

impl fmt::Display for ShardMapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid shard map: ")?;
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ShardMapError {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::kinesis::hash::hash_key;
    use proptest::prelude::*;

    const Q: u128 = 85070591730234615865843651857942052864; // 2^128 / 4

    fn four() -> ShardMap {
        ShardMap::parse([
            ("s0", "0", "85070591730234615865843651857942052863"),
            (
                "s1",
                "85070591730234615865843651857942052864",
                "170141183460469231731687303715884105727",
            ),
            (
                "s2",
                "170141183460469231731687303715884105728",
                "255211775190703847597530955573826158591",
            ),
            (
                "s3",
                "255211775190703847597530955573826158592",
                "340282366920938463463374607431768211455",
            ),
        ])
        .unwrap()
    }

    #[test]
    fn lookup_at_the_boundaries() {
        let map = four();
        assert_eq!(map.len(), 4);
        assert!(!map.is_empty());
        assert_eq!(map.index_of(0), 0);
        assert_eq!(map.index_of(Q - 1), 0);
        assert_eq!(map.index_of(Q), 1);
        assert_eq!(map.index_of(2 * Q), 2);
        assert_eq!(map.index_of(3 * Q - 1), 2);
        assert_eq!(map.index_of(3 * Q), 3);
        assert_eq!(map.index_of(HASH_KEY_MAX), 3);
        assert_eq!(map.shard_of(Q).id, "s1");
        assert_eq!(map.index_of_id("s2"), Some(2));
        assert_eq!(map.index_of_id("nope"), None);
        // MD5("a") starts with 0x0c: the first quarter.
        assert_eq!(map.index_of(hash_key("a")), 0);
        // MD5("abc") starts with 0x90: the third quarter.
        assert_eq!(map.index_of(hash_key("abc")), 2);
        assert_eq!(map, ShardMap::uniform(4).renamed(&["s0", "s1", "s2", "s3"]));
    }

    impl ShardMap {
        fn renamed(mut self, ids: &[&str]) -> ShardMap {
            for (s, id) in self.shards.iter_mut().zip(ids) {
                s.id = (*id).to_owned();
            }
            self
        }
    }

    #[test]
    fn uniform_matches_create_stream() {
        let one = ShardMap::uniform(1);
        assert_eq!(
            one.shards(),
            [Shard::new("shardId-000000000000", 0, HASH_KEY_MAX)]
        );
        assert_eq!(ShardMap::uniform(0), one);
        // The split CreateStream makes for 3 shards.
        let three = ShardMap::uniform(3);
        assert_eq!(
            three.shards()[1].start,
            113427455640312821154458202477256070485
        );
        assert_eq!(
            three.shards()[2].start,
            226854911280625642308916404954512140970
        );
        assert_eq!(three.shards()[2].id, "shardId-000000000002");
        let big = ShardMap::uniform(1000);
        assert!(ShardMap::new(big.shards().to_vec()).is_ok());
    }

    #[test]
    fn input_order_does_not_matter() {
        let mut shards = four().shards().to_vec();
        shards.reverse();
        assert_eq!(ShardMap::new(shards).unwrap(), four());
    }

    #[test]
    fn every_problem_is_reported() {
        let err = ShardMap::parse([
            ("a", "10", "99"),
            ("b", "50", "120"),
            ("c", "200", "100"),
            ("a", "121", "1x"),
            ("d", "00", "5"),
        ])
        .unwrap_err();
        assert_eq!(
            err.problems,
            vec![
                ShardMapProblem::BadHashKey {
                    shard_id: "a".into(),
                    field: "EndingHashKey",
                    error: HashKeyError::NotADigit {
                        index: 1,
                        found: 'x'
                    },
                },
                ShardMapProblem::BadHashKey {
                    shard_id: "d".into(),
                    field: "StartingHashKey",
                    error: HashKeyError::LeadingZero,
                },
                ShardMapProblem::Inverted {
                    shard_id: "c".into(),
                    start: 200,
                    end: 100
                },
                ShardMapProblem::Gap { first: 0, last: 9 },
                ShardMapProblem::Overlap {
                    shard_ids: ["a".into(), "b".into()],
                    first: 50,
                    last: 99
                },
                ShardMapProblem::Gap {
                    first: 121,
                    last: HASH_KEY_MAX
                },
            ]
        );
        let msg = err.to_string();
        assert!(
            msg.starts_with("invalid shard map: shard a: bad EndingHashKey"),
            "{msg}"
        );
        assert!(msg.contains("hash keys 0..=9 belong to no shard"), "{msg}");
        assert!(
            msg.contains("shards a and b both own hash keys 50..=99"),
            "{msg}"
        );

        let dup = ShardMap::new(vec![
            Shard::new("x", 0, 5),
            Shard::new("x", 6, HASH_KEY_MAX),
        ])
        .unwrap_err();
        assert_eq!(
            dup.problems,
            vec![ShardMapProblem::DuplicateId {
                shard_id: "x".into()
            }]
        );
        let none = ShardMap::parse(Vec::<(&str, &str, &str)>::new()).unwrap_err();
        assert_eq!(none.problems, vec![ShardMapProblem::NoShards]);
        assert_eq!(
            ShardMap::new(vec![]).unwrap_err().problems,
            vec![ShardMapProblem::NoShards]
        );
        // A shard nested inside another overlaps only where it lies.
        let nested = ShardMap::new(vec![
            Shard::new("outer", 0, HASH_KEY_MAX),
            Shard::new("inner", 5, 7),
        ])
        .unwrap_err();
        assert_eq!(
            nested.problems,
            vec![ShardMapProblem::Overlap {
                shard_ids: ["outer".into(), "inner".into()],
                first: 5,
                last: 7
            }]
        );
    }

    #[test]
    fn explicit_hash_key_helpers() {
        assert_eq!(spread_u64(0), 0);
        assert_eq!(spread_u64(u64::MAX), HASH_KEY_MAX);
        assert_eq!(spread_u64(1), (1u128 << 64) + 1);
        let map = four();
        for v in 0..8u64 {
            let key = map.hash_key_for_slot(v);
            assert_eq!(map.index_of(key), (v % 4) as usize);
        }
        let s = Shard::new("s", 10, 20);
        assert_eq!(s.hash_key_inside(), 10);
        assert_eq!(s.midpoint(), 15);
        assert!(s.contains(10) && s.contains(20) && !s.contains(21) && !s.contains(9));
        let all = Shard::new("all", 0, HASH_KEY_MAX);
        assert!(all.contains(all.midpoint()));
    }

    /// Random contiguous maps: sorted distinct cut points in 1..=MAX.
    fn cuts() -> impl Strategy<Value = Vec<u128>> {
        proptest::collection::btree_set(1u128..=HASH_KEY_MAX, 0..40)
            .prop_map(|s| s.into_iter().collect())
    }

    fn map_from_cuts(cuts: &[u128]) -> Vec<Shard> {
        let mut starts = vec![0u128];
        starts.extend_from_slice(cuts);
        starts
            .iter()
            .enumerate()
            .map(|(i, &start)| {
                let end = starts.get(i + 1).map_or(HASH_KEY_MAX, |next| next - 1);
                Shard::new(format!("shard-{i}"), start, end)
            })
            .collect()
    }

    proptest! {
        #[test]
        fn binary_search_agrees_with_a_scan(cuts in cuts(), keys in proptest::collection::vec(any::<u128>(), 1..50)) {
            let shards = map_from_cuts(&cuts);
            let map = ShardMap::new(shards.clone()).unwrap();
            let mut probes = keys;
            for s in &shards {
                probes.extend([s.start, s.end, s.midpoint()]);
            }
            for key in probes {
                let scan = shards.iter().position(|s| s.contains(key)).unwrap();
                prop_assert_eq!(map.index_of(key), scan);
                prop_assert!(map.shard_of(key).contains(key));
            }
            for (i, s) in map.shards().iter().enumerate() {
                prop_assert_eq!(map.index_of(s.hash_key_inside()), i);
                prop_assert_eq!(map.index_of(s.midpoint()), i);
            }
        }

        #[test]
        fn a_moved_boundary_is_a_gap_or_overlap(cuts in cuts(), pick in any::<prop::sample::Index>(), delta in 1u128..1000, grow: bool) {
            let mut shards = map_from_cuts(&cuts);
            prop_assume!(shards.len() >= 2);
            let i = pick.index(shards.len() - 1);
            // Move shard i's end away from shard i+1's start.
            let end = shards[i].end;
            let moved = if grow { end.checked_add(delta) } else { end.checked_sub(delta) };
            // Stay inside shard i and short of shard i+1's end, so only one boundary moves.
            prop_assume!(moved.is_some_and(|m| m >= shards[i].start && m < shards[i + 1].end));
            let moved = moved.unwrap_or(end);
            shards[i].end = moved;
            let err = ShardMap::new(shards.clone()).unwrap_err();
            prop_assert_eq!(err.problems.len(), 1, "{}", err);
            match &err.problems[0] {
                ShardMapProblem::Gap { first, last } => {
                    prop_assert!(!grow);
                    prop_assert_eq!((*first, *last), (moved + 1, end));
                }
                ShardMapProblem::Overlap { first, .. } => {
                    prop_assert!(grow);
                    prop_assert_eq!(*first, end + 1);
                }
                other => prop_assert!(false, "unexpected {other}"),
            }
        }

        #[test]
        fn slots_spread_evenly_over_shards(count in 1usize..64, values in proptest::collection::vec(any::<u64>(), 1..200)) {
            let map = ShardMap::uniform(count);
            for v in values {
                let key = map.hash_key_for_slot(v);
                prop_assert_eq!(map.index_of(key), (v % count as u64) as usize);
            }
        }

        #[test]
        fn spread_is_monotonic(a: u64, b: u64) {
            prop_assert_eq!(a.cmp(&b), spread_u64(a).cmp(&spread_u64(b)));
        }
    }
}
