//! The only code that knows the AWS SDK: connecting (region, endpoint, credentials, an assumed
//! role), DescribeStreamSummary, ListShards and PutRecords, with every answer and error turned
//! into the SDK-free terms of the engine ([`EntryResult`], [`CallFailure`] with an
//! [`ErrorClass`]).
//!
//! The SDK's own retries are off: the engine retries entries and calls itself (bounded by
//! attempts and TTL, per entry), and a retry inside the SDK would hide throttling from it.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::config::http::HttpResponse;
use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;

use crate::sinks::aws::retry::ErrorClass;
pub use crate::sinks::aws::sdk::CallFailure;
use crate::sinks::aws::sdk::{SdkFailure, classify_sdk_error};
use crate::sinks::kinesis::config::KinesisSinkConfig;
use crate::sinks::kinesis::engine::{EntryResult, RequestEntry};
use crate::sinks::kinesis::shards::ShardMap;

/// What DescribeStreamSummary says about the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    /// `CREATING`, `ACTIVE`, `UPDATING`, `DELETING`.
    pub status: String,
    /// The stream's record limit (`MaxRecordSizeInKiB`), when it says.
    pub record_bytes_max: Option<usize>,
    /// Open shards.
    pub open_shards: i32,
}

/// A Kinesis client bound to one stream.
#[derive(Clone, Debug)]
pub struct StreamClient {
    client: Client,
    /// The stream as configured (name or ARN).
    stream: String,
    is_arn: bool,
    region: String,
}

impl StreamClient {
    /// Builds a client from the config and the standard AWS chains (credentials: environment,
    /// profile, web identity, container and instance metadata; region: the config, the stream
    /// ARN, then `AWS_REGION` / profile), assuming `role_arn` if set. The `endpoint` override
    /// applies to the Kinesis calls only, not to STS.
    ///
    /// # Errors
    ///
    /// When no region can be found.
    pub async fn connect(cfg: &KinesisSinkConfig) -> Result<StreamClient, String> {
        let timeouts = TimeoutConfig::builder()
            .operation_attempt_timeout(cfg.request_timeout)
            .connect_timeout(cfg.request_timeout.min(Duration::from_secs(3)))
            .build();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(RetryConfig::disabled())
            .timeout_config(timeouts);
        if let Some(region) = cfg.region.clone().or(cfg.arn_region().map(str::to_owned)) {
            loader = loader.region(aws_config::Region::new(region));
        }
        let sdk = loader.load().await;
        let Some(region) = sdk.region().map(ToString::to_string) else {
            return Err(format!(
                "kinesis stream `{}`: no region: set `region` in the sink, or AWS_REGION",
                cfg.stream
            ));
        };
        let mut conf = aws_sdk_kinesis::config::Builder::from(&sdk);
        // `endpoint` is Kinesis's alone: set on the shared config it would also send the STS
        // AssumeRole call there (a programmatic endpoint beats `AWS_ENDPOINT_URL_STS`). STS
        // keeps the standard resolution (`AWS_ENDPOINT_URL_STS`, `AWS_ENDPOINT_URL`, profile).
        if let Some(endpoint) = &cfg.endpoint {
            conf = conf.endpoint_url(endpoint);
        }
        if let Some(role) = &cfg.role_arn {
            let provider = aws_config::sts::AssumeRoleProvider::builder(role.clone())
                .session_name("edge-router")
                .configure(&sdk)
                .build()
                .await;
            conf = conf.credentials_provider(provider);
        }
        Ok(StreamClient {
            client: Client::from_conf(conf.build()),
            stream: cfg.stream.clone(),
            is_arn: cfg.stream.starts_with("arn:"),
            region,
        })
    }

    /// The region in use.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// DescribeStreamSummary.
    ///
    /// # Errors
    ///
    /// The classified failure.
    pub async fn describe(&self) -> Result<StreamInfo, CallFailure> {
        let mut call = self.client.describe_stream_summary();
        call = if self.is_arn {
            call.stream_arn(&self.stream)
        } else {
            call.stream_name(&self.stream)
        };
        let out = call
            .send()
            .await
            .map_err(|e| self.failure("DescribeStreamSummary", &e))?;
        let Some(s) = out.stream_description_summary() else {
            return Err(CallFailure {
                class: ErrorClass::Transient,
                description: format!(
                    "kinesis stream `{}`: DescribeStreamSummary answered without a summary",
                    self.stream
                ),
            });
        };
        Ok(StreamInfo {
            status: s.stream_status().as_str().to_owned(),
            record_bytes_max: s
                .max_record_size_in_kib()
                .and_then(|k| usize::try_from(k).ok())
                .filter(|&k| k > 0)
                .map(|k| k * 1024),
            open_shards: s.open_shard_count(),
        })
    }

    /// ListShards, every page, keeping the open shards (no ending sequence number).
    ///
    /// # Errors
    ///
    /// The classified failure; a shard list that does not cover the hash key space once is
    /// transient (a reshard in progress).
    pub async fn list_shards(&self) -> Result<ShardMap, CallFailure> {
        let mut ranges: Vec<(String, String, String)> = Vec::new();
        let mut token: Option<String> = None;
        for _page in 0..10_000 {
            let mut call = self.client.list_shards();
            call = match &token {
                Some(t) => call.next_token(t),
                None if self.is_arn => call.stream_arn(&self.stream),
                None => call.stream_name(&self.stream),
            };
            let out = call
                .send()
                .await
                .map_err(|e| self.failure("ListShards", &e))?;
            for s in out.shards() {
                let open = s
                    .sequence_number_range()
                    .is_none_or(|r| r.ending_sequence_number().is_none());
                if let (true, Some(h)) = (open, s.hash_key_range()) {
                    ranges.push((
                        s.shard_id().to_owned(),
                        h.starting_hash_key().to_owned(),
                        h.ending_hash_key().to_owned(),
                    ));
                }
            }
            token = out.next_token().map(str::to_owned);
            if token.is_none() {
                break;
            }
        }
        ShardMap::parse(ranges).map_err(|e| CallFailure {
            class: ErrorClass::Transient,
            description: format!("kinesis stream `{}`: ListShards: {e}", self.stream),
        })
    }

    /// PutRecords: one result per entry, in order.
    ///
    /// # Errors
    ///
    /// The classified failure of the whole call.
    pub async fn put_records(
        &self,
        entries: &[RequestEntry],
    ) -> Result<Vec<EntryResult>, CallFailure> {
        let mut records = Vec::with_capacity(entries.len());
        for e in entries {
            let entry = PutRecordsRequestEntry::builder()
                .data(Blob::new(e.data.to_vec()))
                .partition_key(e.partition_key.clone())
                .set_explicit_hash_key(e.explicit_hash_key.clone())
                .build()
                .map_err(|err| CallFailure {
                    class: ErrorClass::Fatal,
                    description: format!("kinesis stream `{}`: PutRecords: {err}", self.stream),
                })?;
            records.push(entry);
        }
        let mut call = self.client.put_records().set_records(Some(records));
        call = if self.is_arn {
            call.stream_arn(&self.stream)
        } else {
            call.stream_name(&self.stream)
        };
        let out = call
            .send()
            .await
            .map_err(|e| self.failure("PutRecords", &e))?;
        Ok(out
            .records()
            .iter()
            .map(|r| match (r.error_code(), r.shard_id()) {
                (Some(code), _) => EntryResult::Failed {
                    code: code.to_owned(),
                    message: r.error_message().unwrap_or_default().to_owned(),
                },
                (None, shard) => EntryResult::Written {
                    shard_id: shard.unwrap_or_default().to_owned(),
                },
            })
            .collect())
    }

    /// Classifies an SDK error and describes it, naming the stream (and the region for the
    /// errors that are about where the stream is).
    fn failure<E>(&self, operation: &str, e: &SdkError<E, HttpResponse>) -> CallFailure
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let SdkFailure {
            class,
            code,
            detail,
        } = classify_sdk_error(e);
        let (stream, region) = (&self.stream, &self.region);
        let description = match code.as_str() {
            "ResourceNotFoundException" => {
                format!("kinesis stream `{stream}` not found in region {region} ({detail})")
            }
            "AccessDeniedException" | "AccessDenied" => {
                format!("access to kinesis stream `{stream}` in region {region} denied ({detail})")
            }
            _ => format!("kinesis stream `{stream}` (region {region}): {operation}: {detail}"),
        };
        CallFailure { class, description }
    }
}
