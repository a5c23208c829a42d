//! What the AWS sinks (Kinesis Data Streams, Kinesis Data Firehose) share. A sink for another
//! AWS service is a folder with a pure engine (a [`SinkEngine`](engine::SinkEngine)), a client and
//! a config (its own keys beside [`AwsConfig`](config::AwsConfig)), plus a small
//! [`Service`](driver::Service) that the shared [`driver`] runs.
//!
//! - [`batch`]: `Batcher`/`BatchPolicy`: pending entries cut into put requests within entry, byte
//!   and record limits, with linger and targets (pure).
//! - [`retry`]: `RetryPolicy` (backoff with jitter bounded by attempts and a record TTL) and the
//!   classification of entry and call error codes (pure).
//! - [`engine`]: the [`SinkEngine`](engine::SinkEngine) trait, what a pure engine offers the
//!   driver and the simulations.
//! - [`config`]: the shared keys of an AWS sink table (region, endpoint, role, request limits,
//!   linger, calls in flight, retries, timeout).
//! - [`sdk`]: the AWS SDK config every sink's client is built from (region, credentials, an
//!   assumed role, endpoint, timeouts, SDK retries off) and SDK errors turned into a class and
//!   words (the SDK's error types are the same smithy types in every service crate).
//! - [`egress`]: `Egress`, the `max_bytes_per_sec` cap over the bytes of the requests sent
//!   (pure).
//! - [`driver`]: the sink thread: runtime, start-up retries, the poll/settle/select loop, counting
//!   written records and latency, dead-lettering records grouped by batch, failing a sink.
//! - `sim` (tests only): the scripted fake service with virtual time that the engines' tests run
//!   against.

pub mod batch;
pub mod config;
pub mod driver;
pub mod egress;
pub mod engine;
pub mod retry;
pub mod sdk;
#[cfg(test)]
pub mod sim;
