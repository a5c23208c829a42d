//! The Firehose sink's only contact with the AWS SDK: connecting (region, endpoint, the standard
//! credentials chain), DescribeDeliveryStream and PutRecordBatch, with answers and errors in the
//! engine's SDK-free terms ([`EntryResult`], [`CallFailure`]). The SDK's own retries are off: the
//! engine retries failed entries (only those) itself.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_firehose::Client;
use aws_sdk_firehose::config::http::HttpResponse;
use aws_sdk_firehose::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_firehose::primitives::Blob;
use aws_sdk_firehose::types::Record;
use bytes::Bytes;

use crate::sinks::aws::retry::ErrorClass;
use crate::sinks::aws::sdk::{CallFailure, SdkFailure, classify_sdk_error};
use crate::sinks::firehose::config::FirehoseSinkConfig;
use crate::sinks::firehose::engine::EntryResult;

/// A Firehose client bound to one delivery stream.
#[derive(Clone, Debug)]
pub struct DeliveryStreamClient {
    client: Client,
    stream: String,
    region: String,
}

impl DeliveryStreamClient {
    /// Builds a client from the config and the standard AWS chains.
    ///
    /// # Errors
    ///
    /// When no region can be found.
    pub async fn connect(cfg: &FirehoseSinkConfig) -> Result<DeliveryStreamClient, String> {
        let timeouts = TimeoutConfig::builder()
            .operation_attempt_timeout(cfg.request_timeout)
            .connect_timeout(cfg.request_timeout.min(Duration::from_secs(3)))
            .build();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(RetryConfig::disabled())
            .timeout_config(timeouts);
        if let Some(region) = cfg.region.clone() {
            loader = loader.region(aws_config::Region::new(region));
        }
        if let Some(endpoint) = &cfg.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        let sdk = loader.load().await;
        let Some(region) = sdk.region().map(ToString::to_string) else {
            return Err(format!(
                "firehose delivery stream `{}`: no region: set `region` in the sink, or AWS_REGION",
                cfg.delivery_stream
            ));
        };
        Ok(DeliveryStreamClient {
            client: Client::new(&sdk),
            stream: cfg.delivery_stream.clone(),
            region,
        })
    }

    /// The region in use.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// DescribeDeliveryStream: the stream's status (`CREATING`, `ACTIVE`, `DELETING`, ...).
    ///
    /// # Errors
    ///
    /// The classified failure.
    pub async fn describe(&self) -> Result<String, CallFailure> {
        let out = self
            .client
            .describe_delivery_stream()
            .delivery_stream_name(&self.stream)
            .send()
            .await
            .map_err(|e| self.failure("DescribeDeliveryStream", &e))?;
        Ok(out
            .delivery_stream_description()
            .map(|d| d.delivery_stream_status().as_str().to_owned())
            .unwrap_or_default())
    }

    /// PutRecordBatch: one result per record, in order.
    ///
    /// # Errors
    ///
    /// The classified failure of the whole call.
    pub async fn put_record_batch(
        &self,
        records: &[Bytes],
    ) -> Result<Vec<EntryResult>, CallFailure> {
        let mut entries = Vec::with_capacity(records.len());
        for r in records {
            let rec = Record::builder()
                .data(Blob::new(r.to_vec()))
                .build()
                .map_err(|err| CallFailure {
                    class: ErrorClass::Fatal,
                    description: format!(
                        "firehose delivery stream `{}`: PutRecordBatch: {err}",
                        self.stream
                    ),
                })?;
            entries.push(rec);
        }
        let out = self
            .client
            .put_record_batch()
            .delivery_stream_name(&self.stream)
            .set_records(Some(entries))
            .send()
            .await
            .map_err(|e| self.failure("PutRecordBatch", &e))?;
        Ok(out
            .request_responses()
            .iter()
            .map(|r| match r.error_code() {
                Some(code) if !code.is_empty() => EntryResult::Failed {
                    code: code.to_owned(),
                    message: r.error_message().unwrap_or_default().to_owned(),
                },
                _ => EntryResult::Written,
            })
            .collect())
    }

    /// Classifies an SDK error and describes it, naming the delivery stream and region.
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
            "ResourceNotFoundException" => format!(
                "firehose delivery stream `{stream}` not found in region {region} ({detail})"
            ),
            "AccessDeniedException" | "AccessDenied" => format!(
                "access to firehose delivery stream `{stream}` in region {region} denied ({detail})"
            ),
            _ => format!(
                "firehose delivery stream `{stream}` (region {region}): {operation}: {detail}"
            ),
        };
        CallFailure { class, description }
    }
}
