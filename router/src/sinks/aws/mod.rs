//! What the AWS sinks (Kinesis Data Streams, Kinesis Data Firehose) share.
//!
//! - [`batch`]: `Batcher`/`BatchPolicy`: pending entries cut into put requests within entry, byte
//!   and record limits, with linger and targets (pure).
//! - [`retry`]: `RetryPolicy` (backoff with jitter bounded by attempts and a record TTL) and the
//!   classification of entry and call error codes (pure).
//! - [`sdk`]: an AWS SDK error turned into a class and words (the SDK's error types are the same
//!   smithy types in every service crate).
//! - [`driver`]: the parts of a sink thread that do not depend on the service: a runtime, a seed,
//!   timers, counting latency, dead-lettering records grouped by batch, failing a sink.

pub mod batch;
pub mod driver;
pub mod retry;
pub mod sdk;
