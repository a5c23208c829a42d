//! Hash keys: where a record falls in a stream's 128-bit hash key space.
//!
//! Kinesis places every record by a 128-bit hash key: the MD5 digest of the partition key's UTF-8
//! bytes read as a big-endian integer, or the explicit hash key the producer gives instead. This
//! module owns that arithmetic and the decimal text form the API uses for hash keys
//! (`ExplicitHashKey`, a shard's `HashKeyRange`): `0` or a decimal integer without leading zeros,
//! at most 2^128-1.

use md5::{Digest, Md5};

/// The largest hash key, 2^128-1: the end of the last shard's range.
pub const HASH_KEY_MAX: u128 = u128::MAX;

/// MD5 digest of `bytes` (16 bytes).
pub fn md5(bytes: &[u8]) -> [u8; 16] {
    Md5::digest(bytes).into()
}

/// The hash key of a partition key: MD5 of its UTF-8 bytes as a big-endian 128-bit integer.
///
/// Takes anything byte-like, so a `&str` key and the bytes a key was extracted as give the same
/// answer.
pub fn hash_key(partition_key: impl AsRef<[u8]>) -> u128 {
    u128::from_be_bytes(md5(partition_key.as_ref()))
}

/// Longest partition key (bytes) a [`HashKeyCache`] keeps; longer keys are hashed every time.
pub const CACHED_KEY_MAX: usize = 40;

/// Entries of a [`HashKeyCache`]: 2,048 sets of 4, 64 bytes each, so one cache holds
/// 8,192 keys in 512 KiB, a bound that does not depend on input.
pub const CACHE_ENTRIES: usize = 8192;
const WAYS: usize = 4;
const SETS: usize = CACHE_ENTRIES / WAYS;

/// One cached key and its hash key; `len == 0` is an empty slot (keys are never empty).
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Slot {
    hash: u128,
    len: u8,
    key: [u8; CACHED_KEY_MAX],
}

const EMPTY: Slot = Slot {
    hash: 0,
    len: 0,
    key: [0; CACHED_KEY_MAX],
};

/// A bounded memo of [`hash_key`] for producers that reuse partition keys (device ids, host
/// names): a 4-way set-associative table of [`CACHE_ENTRIES`] keys of at most
/// [`CACHED_KEY_MAX`] bytes, compared byte for byte, so an answer is always the MD5 of the very
/// key asked about. A key that misses is hashed and replaces its set's least recently used
/// entry. Keys chosen to collide in one set only make each other miss: the worst case is the
/// cost of hashing without a cache plus one set's comparisons.
pub struct HashKeyCache {
    slots: Box<[Slot]>,
    /// Per set, the ways from most to least recently used, two bits each.
    order: Box<[u8]>,
}

impl Default for HashKeyCache {
    fn default() -> Self {
        HashKeyCache::new()
    }
}

impl std::fmt::Debug for HashKeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashKeyCache").finish_non_exhaustive()
    }
}

/// The set a key belongs to: a multiply-rotate mix of its bytes, 8 at a time (not keyed:
/// collisions cost only misses, see [`HashKeyCache`]).
fn set_of(key: &[u8]) -> usize {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut h = key.len() as u64;
    let mut chunks = key.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = (h.rotate_left(23) ^ u64::from_le_bytes(w)).wrapping_mul(K);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        h = (h.rotate_left(23) ^ u64::from_le_bytes(w)).wrapping_mul(K);
    }
    h ^= h >> 29;
    (h.wrapping_mul(K) >> 40) as usize % SETS
}

impl HashKeyCache {
    /// An empty cache (allocates its 512 KiB at once).
    pub fn new() -> HashKeyCache {
        HashKeyCache {
            slots: vec![EMPTY; CACHE_ENTRIES].into_boxed_slice(),
            // Ways 0,1,2,3 from most to least recent: 0b11_10_01_00.
            order: vec![0b1110_0100; SETS].into_boxed_slice(),
        }
    }

    /// [`hash_key`] of `key`, from the cache when it holds the key.
    pub fn hash_key(&mut self, key: &[u8]) -> u128 {
        if key.is_empty() || key.len() > CACHED_KEY_MAX {
            return hash_key(key);
        }
        let set = set_of(key);
        let base = set * WAYS;
        for way in 0..WAYS {
            let s = &self.slots[base + way];
            if usize::from(s.len) == key.len() && &s.key[..key.len()] == key {
                let hash = s.hash;
                self.touch(set, way);
                return hash;
            }
        }
        let hash = hash_key(key);
        let victim = usize::from(self.order[set] >> 6);
        let s = &mut self.slots[base + victim];
        s.hash = hash;
        s.len = key.len() as u8;
        s.key[..key.len()].copy_from_slice(key);
        self.touch(set, victim);
        hash
    }

    /// Makes `way` the most recently used of `set`.
    fn touch(&mut self, set: usize, way: usize) {
        let old = self.order[set];
        let mut new = way as u8;
        let mut shift = 2;
        for i in 0..WAYS {
            let w = (old >> (2 * i)) & 0b11;
            if usize::from(w) != way {
                new |= w << shift;
                shift += 2;
            }
        }
        self.order[set] = new;
    }
}

/// Parses a hash key in the API's decimal form: `0` or `[1-9][0-9]*`, at most 2^128-1.
///
/// # Errors
///
/// [`HashKeyError`] says what is wrong: empty text, a leading zero, a character that is not an
/// ASCII digit (signs and spaces included), or a value above 2^128-1.
pub fn parse_hash_key(text: &str) -> Result<u128, HashKeyError> {
    let bytes = text.as_bytes();
    match bytes {
        [] => return Err(HashKeyError::Empty),
        [b'0', _, ..] => return Err(HashKeyError::LeadingZero),
        _ => {}
    }
    let mut value: u128 = 0;
    for (index, found) in text.char_indices() {
        // `to_digit` knows only the ASCII digits.
        let digit = found
            .to_digit(10)
            .ok_or(HashKeyError::NotADigit { index, found })?;
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(u128::from(digit)))
            .ok_or(HashKeyError::TooLarge)?;
    }
    Ok(value)
}

/// Formats a hash key in the API's decimal form (the inverse of [`parse_hash_key`]).
pub fn format_hash_key(key: u128) -> String {
    key.to_string()
}

/// Why a text is not a valid hash key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HashKeyError {
    /// The text is empty.
    #[error("empty hash key; expected a decimal integer from 0 to 2^128-1")]
    Empty,
    /// More than one digit and the first is `0`.
    #[error("hash key has a leading zero; expected a decimal integer from 0 to 2^128-1")]
    LeadingZero,
    /// A character that is not an ASCII digit, at byte `index`.
    #[error(
        "hash key has {found:?} at byte {index}; expected only the digits 0-9 (a decimal integer from 0 to 2^128-1)"
    )]
    NotADigit {
        /// Byte offset of the character.
        index: usize,
        /// The character.
        found: char,
    },
    /// The value is above 2^128-1.
    #[error("hash key is larger than 2^128-1 (340282366920938463463374607431768211455)")]
    TooLarge,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Digests from RFC 1321's test suite and well-known values.
    #[test]
    fn md5_known_values() {
        let hex = |d: [u8; 16]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
        assert_eq!(hex(md5(b"")), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(hex(md5(b"a")), "0cc175b9c0f1b6a831c399e269772661");
        assert_eq!(hex(md5(b"abc")), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(
            hex(md5(b"message digest")),
            "f96b697d7cb7938d525a2f31aaf161d0"
        );
        assert_eq!(
            hex(md5(b"The quick brown fox jumps over the lazy dog")),
            "9e107d9d372bb6826bd81d3542a419d6"
        );
    }

    /// The decimal hash keys were computed independently with Python:
    /// `int.from_bytes(hashlib.md5(key.encode()).digest(), "big")`.
    #[test]
    fn hash_keys_of_partition_keys() {
        assert_eq!(hash_key(""), 281949768489412648962353822266799178366);
        assert_eq!(hash_key("a"), 16955237001963240173058271559858726497);
        assert_eq!(hash_key("abc"), 191415658344158766168031473277922803570);
        assert_eq!(
            hash_key("device-1"),
            277901890176008628857739572313990950024
        );
        // Non-ASCII keys hash their UTF-8 bytes.
        assert_eq!(hash_key("clé"), 216065962979188862129025276172069957765);
        assert_eq!(hash_key("clé".as_bytes()), hash_key("clé"));
        assert_eq!(hash_key("a"), 0x0cc175b9c0f1b6a831c399e269772661);
    }

    #[test]
    fn parse_accepts_the_api_form() {
        assert_eq!(parse_hash_key("0"), Ok(0));
        assert_eq!(parse_hash_key("7"), Ok(7));
        assert_eq!(
            parse_hash_key("170141183460469231731687303715884105728"),
            Ok(1u128 << 127)
        );
        assert_eq!(
            parse_hash_key("340282366920938463463374607431768211455"),
            Ok(HASH_KEY_MAX)
        );
    }

    #[test]
    fn parse_rejects_with_clear_errors() {
        assert_eq!(parse_hash_key(""), Err(HashKeyError::Empty));
        assert_eq!(parse_hash_key("00"), Err(HashKeyError::LeadingZero));
        assert_eq!(parse_hash_key("012"), Err(HashKeyError::LeadingZero));
        assert_eq!(
            parse_hash_key("12a"),
            Err(HashKeyError::NotADigit {
                index: 2,
                found: 'a'
            })
        );
        assert_eq!(
            parse_hash_key("+1"),
            Err(HashKeyError::NotADigit {
                index: 0,
                found: '+'
            })
        );
        assert_eq!(
            parse_hash_key(" 1"),
            Err(HashKeyError::NotADigit {
                index: 0,
                found: ' '
            })
        );
        // Non-ASCII digits are not digits here.
        assert_eq!(
            parse_hash_key("1٣"),
            Err(HashKeyError::NotADigit {
                index: 1,
                found: '٣'
            })
        );
        assert_eq!(
            parse_hash_key("340282366920938463463374607431768211456"),
            Err(HashKeyError::TooLarge)
        );
        assert_eq!(
            parse_hash_key("9999999999999999999999999999999999999999"),
            Err(HashKeyError::TooLarge)
        );
        let msg = parse_hash_key("12a").unwrap_err().to_string();
        assert!(msg.contains("'a' at byte 2"), "{msg}");
    }

    #[test]
    fn the_cache_answers_as_md5_does_and_stays_bounded() {
        let mut c = HashKeyCache::new();
        // Twice as many keys as entries, visited twice: hits, misses and evictions.
        for round in 0..2 {
            for i in 0..(2 * CACHE_ENTRIES) {
                let k = format!("device-{i}");
                assert_eq!(
                    c.hash_key(k.as_bytes()),
                    hash_key(&k),
                    "round {round} key {k}"
                );
            }
        }
        // Keys at and over the cached length, and the empty key, are answered too.
        let long = "k".repeat(CACHED_KEY_MAX + 1);
        let edge = "k".repeat(CACHED_KEY_MAX);
        for k in [long.as_str(), edge.as_str(), "", "a"] {
            assert_eq!(c.hash_key(k.as_bytes()), hash_key(k));
            assert_eq!(c.hash_key(k.as_bytes()), hash_key(k));
        }
        assert_eq!(std::mem::size_of::<Slot>(), 64);
        assert_eq!(c.slots.len(), CACHE_ENTRIES);
    }

    #[test]
    fn the_cache_keeps_the_recently_used_ways_of_a_set() {
        // Five keys of one set: the least recently used is the one evicted.
        let mut c = HashKeyCache::new();
        let target = set_of(b"key-0");
        let same: Vec<String> = (0..)
            .map(|i| format!("key-{i}"))
            .filter(|k| set_of(k.as_bytes()) == target)
            .take(WAYS + 1)
            .collect();
        for k in &same[..WAYS] {
            c.hash_key(k.as_bytes());
        }
        c.hash_key(same[0].as_bytes()); // now the most recent
        c.hash_key(same[WAYS].as_bytes()); // evicts same[1]
        let held = |c: &HashKeyCache, k: &str| {
            c.slots[target * WAYS..(target + 1) * WAYS]
                .iter()
                .any(|s| &s.key[..usize::from(s.len)] == k.as_bytes())
        };
        assert!(held(&c, &same[0]));
        assert!(!held(&c, &same[1]));
        assert!(held(&c, &same[WAYS]));
    }

    proptest! {
        #[test]
        fn the_cache_never_answers_for_another_key(keys in proptest::collection::vec("[ab]{0,6}|[a-z0-9-]{30,44}", 1..400)) {
            let mut c = HashKeyCache::new();
            for k in &keys {
                prop_assert_eq!(c.hash_key(k.as_bytes()), hash_key(k));
            }
        }

        #[test]
        fn format_then_parse_is_identity(key: u128) {
            let text = format_hash_key(key);
            prop_assert!(text.len() <= 39);
            prop_assert_eq!(parse_hash_key(&text), Ok(key));
        }

        #[test]
        fn parse_agrees_with_the_api_pattern(text in "[0-9+ a-]{0,41}") {
            // The API pattern: 0|([1-9]\d{0,38}), and at most 2^128-1.
            let pattern_ok = text == "0"
                || (!text.is_empty()
                    && text.len() <= 39
                    && !text.starts_with('0')
                    && text.bytes().all(|b| b.is_ascii_digit()));
            match parse_hash_key(&text) {
                Ok(v) => {
                    prop_assert!(pattern_ok);
                    prop_assert_eq!(format_hash_key(v), text);
                }
                Err(HashKeyError::TooLarge) => {
                    prop_assert!(text.len() >= 39);
                }
                Err(_) => prop_assert!(!pattern_ok),
            }
        }
    }
}
