//! The Kinesis Data Streams sink (`kind = "kinesis"`, `kinesis://STREAM`).
//!
//! Two halves. The pure half is deterministic and does no I/O: no sockets, no clock reads, no
//! sleeps, no AWS SDK; time comes in as an `Instant` argument, randomness as a seeded `Rng`, and
//! answers from Kinesis as plain strings:
//!
//! - The 128-bit hash key of a partition key (MD5), explicit hash keys as decimal text, and KPL
//!   aggregation (many user records in one Kinesis record) and de-aggregation are Kinesis's own
//!   formats, shared with the HTTP source's endpoint: [`crate::core::kinesis`].
//! - [`shards`]: the shard map (which open shard owns a hash key), its validation, and helpers
//!   to pick explicit hash keys.
//! - [`limits`]: per-shard rate limits (records/s and bytes/s) and a pure throughput simulation.
//! - [`ordering`]: the in-flight tracker that keeps per-key order in `ordered` mode.
//! - [`engine`]: the sink's state machine over all of the above and the shared
//!   [`batch`](crate::sinks::aws::batch) and [`retry`](crate::sinks::aws::retry): records in,
//!   requests out, answers in, outcomes (written, dead-lettered) out; a
//!   [`SinkEngine`](crate::sinks::aws::engine::SinkEngine), tested against a scripted fake stream
//!   on the shared simulation harness (`sinks::aws::sim`).
//! - [`config`]: the sink table (its own keys; the shared ones are
//!   [`AwsConfig`](crate::sinks::aws::config::AwsConfig)), validated.
//!
//! The I/O half: [`client`] (the Kinesis SDK calls: describe, list shards, put records) and
//! [`sink`] (the [`Service`](crate::sinks::aws::driver::Service) the shared driver runs: start-up,
//! records into the engine with their keys, counters).
//!
//! Ordering guarantees, exactly:
//! - `unordered`: none beyond "each record is written at least once or dead-lettered". Requests
//!   run concurrently and a retried record goes out with later ones, so records of one key can
//!   land out of order.
//! - `ordered`: records with the same partition key are first written to Kinesis in the order
//!   the sink received them, across partial failures, throttling, call errors and retries: at
//!   most one entry per key (without aggregation) or per shard (with aggregation) is in flight,
//!   and a failed entry is retried before anything behind it goes. Two exceptions: a record that
//!   is given up (dead-lettered after its attempts or TTL) no longer holds the others back; and a
//!   call that timed out may still have written its records, so a retry can write a duplicate
//!   later (never an earlier record after a later one in first writes). Records of different
//!   keys have no order between them. A reshard is handled by waiting for the requests in flight
//!   before switching shard maps.

pub mod client;
pub mod config;
pub mod engine;
pub mod limits;
pub mod ordering;
pub mod shards;
pub mod sink;

pub use config::KinesisSinkConfig;
pub use sink::run;
