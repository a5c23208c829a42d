//! The Kinesis Data Streams sink: the pure decision logic.
//!
//! Everything in these submodules is deterministic and does no I/O: no sockets, no clock reads,
//! no sleeps, no AWS SDK. Time comes in as an `Instant` argument, randomness as an `Rng`, and
//! answers from Kinesis as plain strings. The I/O part (the SDK client and its tasks) drives them.
//!
//! - [`hash`]: the 128-bit hash key of a partition key (MD5), explicit hash keys as decimal text.
//! - [`shards`]: the shard map (which open shard owns a hash key), its validation, and helpers
//!   to pick explicit hash keys.
//! - [`aggregate`]: KPL aggregation (many user records in one Kinesis record) and de-aggregation.
//! - [`batch`]: PutRecords requests: entry and byte limits, oversized entries, linger and targets.
//! - [`retry`]: backoff with jitter bounded by attempts and a record TTL; error classification.
//! - [`limits`]: per-shard rate limits (records/s and bytes/s) and a pure throughput simulation.
//! - [`ordering`]: the in-flight tracker that keeps per-key order in `ordered` mode.

pub mod aggregate;
pub mod batch;
pub mod hash;
pub mod limits;
pub mod ordering;
pub mod retry;
pub mod shards;
