//! The shards the endpoint reports, with no I/O: `aws_shards` open shards splitting the 128-bit
//! hash key space into even ranges (as Kinesis splits a new stream), which shard a record falls
//! in, and the pages of `ListShards` and `DescribeStream`.
//!
//! The endpoint keeps no per-shard state: the shards exist so that producers with per-shard
//! rate limiters (the KPL, the router's own Kinesis sink) spread over many of them instead of
//! limiting themselves to one shard's 1,000 records/s, and so that each PutRecords entry is
//! answered with the shard its hash key falls in (a producer that checks it sees no reshard).

use base64::Engine as _;

use crate::core::kinesis::hash::hash_key;

/// The default number of shards: a relay whose producer keeps Kinesis's per-shard limits (1,000
/// records/s and 1 MiB/s each) may send up to 1,024,000 records/s and 1 GiB/s, above what one
/// router ingests.
pub const DEFAULT_SHARDS: u32 = 1024;

/// The most shards `aws_shards` may ask for.
pub const MAX_SHARDS: u32 = 100_000;

/// Open shards with even hash key ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shards {
    count: u32,
    width: u128,
}

impl Shards {
    /// `count` shards (at least 1).
    pub fn new(count: u32) -> Shards {
        let count = count.max(1);
        Shards {
            count,
            width: u128::MAX / u128::from(count),
        }
    }

    /// The number of shards.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The hash key range of shard `i`: `[start, end]`, the last one ending at 2^128-1.
    pub fn range(&self, i: u32) -> (u128, u128) {
        let start = u128::from(i) * self.width;
        let end = if i + 1 >= self.count {
            u128::MAX
        } else {
            start + self.width - 1
        };
        (start, end)
    }

    /// The shard a hash key falls in.
    pub fn of_hash(&self, hash: u128) -> u32 {
        u32::try_from(hash / self.width)
            .unwrap_or(u32::MAX)
            .min(self.count - 1)
    }

    /// The shard of a record: its explicit hash key if it has a valid one, else the MD5 of its
    /// partition key.
    pub fn of_record(&self, partition_key: &str, explicit_hash_key: Option<&str>) -> u32 {
        let hash = explicit_hash_key
            .and_then(|h| h.parse::<u128>().ok())
            .unwrap_or_else(|| hash_key(partition_key));
        self.of_hash(hash)
    }

    /// The index of a shard id (`shardId-000000000042` -> 42), if it names one of these shards.
    pub fn index_of(&self, shard_id: &str) -> Option<u32> {
        let n: u32 = shard_id.strip_prefix("shardId-")?.parse().ok()?;
        (n < self.count).then_some(n)
    }

    /// The first shard after `exclusive_start` (a shard id, compared as Kinesis does: by
    /// text, which for these fixed-width ids is by number).
    pub fn after(&self, exclusive_start: Option<&str>) -> u32 {
        match exclusive_start {
            None => 0,
            Some(id) => {
                let mut lo = 0u32;
                let mut hi = self.count;
                // The first index whose id sorts after `id`.
                while lo < hi {
                    let mid = lo + (hi - lo) / 2;
                    if shard_id(mid).as_str() <= id {
                        lo = mid + 1;
                    } else {
                        hi = mid;
                    }
                }
                lo
            }
        }
    }
}

/// The id of shard `i`: `shardId-` and 12 digits, as Kinesis names them.
pub fn shard_id(i: u32) -> String {
    ShardIdText::new(i).as_str().to_owned()
}

/// A shard id written without allocating (answers carry one per entry).
pub struct ShardIdText([u8; 20]);

impl ShardIdText {
    /// The id of shard `i`.
    pub fn new(i: u32) -> ShardIdText {
        let mut t = *b"shardId-000000000000";
        let mut n = i;
        for d in t[8..].iter_mut().rev() {
            *d = b'0' + (n % 10) as u8;
            n /= 10;
        }
        ShardIdText(t)
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("shardId-000000000000")
    }

    /// The text's bytes (ASCII).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// A `ListShards` continuation token: where the next page starts, and for which stream.
pub fn next_token(stream: &str, next: u32) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{next}/{stream}"))
}

/// Reads a token made by [`next_token`]: `(stream, next shard index)`.
pub fn read_token(token: &str) -> Option<(String, u32)> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (next, stream) = text.split_once('/')?;
    Some((stream.to_owned(), next.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_even_contiguous_and_cover_every_key() {
        for n in [1, 2, 3, 7, 1024, 1000] {
            let s = Shards::new(n);
            assert_eq!(s.range(0).0, 0);
            assert_eq!(s.range(n - 1).1, u128::MAX);
            for i in 1..n {
                assert_eq!(s.range(i).0, s.range(i - 1).1 + 1, "n={n} i={i}");
            }
            for i in [0, n / 2, n - 1] {
                let (a, b) = s.range(i);
                assert_eq!((s.of_hash(a), s.of_hash(b)), (i, i));
            }
        }
        assert_eq!(Shards::new(0).count(), 1);
    }

    #[test]
    fn records_fall_by_md5_or_explicit_hash_key() {
        let s = Shards::new(4);
        assert_eq!(s.of_record("x", Some("0")), 0);
        assert_eq!(s.of_record("x", Some(&u128::MAX.to_string())), 3);
        assert_eq!(s.of_record("x", None), s.of_hash(hash_key("x")));
    }

    #[test]
    fn ids_tokens_and_paging() {
        let s = Shards::new(20);
        assert_eq!(shard_id(7), "shardId-000000000007");
        assert_eq!(shard_id(u32::MAX), "shardId-004294967295");
        assert_eq!(s.index_of("shardId-000000000019"), Some(19));
        assert_eq!(s.index_of("shardId-000000000020"), None);
        assert_eq!(s.after(None), 0);
        assert_eq!(s.after(Some("shardId-000000000004")), 5);
        assert_eq!(s.after(Some("a")), 0);
        assert_eq!(s.after(Some("zzz")), 20);
        let t = next_token("my.stream", 1000);
        assert_eq!(read_token(&t), Some(("my.stream".into(), 1000)));
        assert_eq!(read_token("!!"), None);
    }
}
