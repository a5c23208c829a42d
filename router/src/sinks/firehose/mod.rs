//! The Kinesis Data Firehose sink (`kind = "firehose"`, `firehose://NAME`).
//!
//! Pure half (no I/O, time as an argument): [`pack`] (many newline-delimited user records in one
//! Firehose record, never split, within Firehose's limits; the 5 KB billing estimate) and
//! [`engine`] (packs -> PutRecordBatch requests through the shared
//! [`Batcher`](crate::sinks::aws::batch::Batcher); per-entry results; retries of only the failed
//! entries with the shared [`RetryPolicy`](crate::sinks::aws::retry::RetryPolicy)), plus
//! [`config`] (its own keys beside the shared [`AwsConfig`](crate::sinks::aws::config::AwsConfig)).
//! I/O half: [`client`] (the AWS SDK: DescribeDeliveryStream, PutRecordBatch) and [`sink`] (the
//! [`Service`](crate::sinks::aws::driver::Service) that the shared
//! [`driver`](crate::sinks::aws::driver) runs: start-up, records into the engine, counters).
//!
//! Guarantee: every record is written at least once or dead-lettered. A call that timed out may
//! still have been delivered, so a retry can duplicate it; a partial failure never re-sends the
//! entries that were accepted. Order within one sink is kept while nothing fails (requests go out
//! in order; with `max_in_flight = 1`, also across retries).

pub mod client;
pub mod config;
pub mod engine;
pub mod pack;
pub mod sink;

pub use config::FirehoseSinkConfig;
pub use sink::run;
