//! The Firehose sink's contact with the AWS SDK: DescribeDeliveryStream and PutRecordBatch, with
//! answers and errors in the engine's SDK-free terms ([`EntryResult`], [`CallFailure`]).
//! Connecting (region, endpoint, credentials, an assumed role, SDK retries off) is the shared
//! [`sdk::load`].

use aws_sdk_firehose::Client;
use aws_sdk_firehose::primitives::Blob;
use aws_sdk_firehose::types::{PutRecordBatchResponseEntry, Record};
use bytes::Bytes;

use crate::sinks::aws::sdk::{self, CallFailure, Target};
use crate::sinks::firehose::config::FirehoseSinkConfig;
use crate::sinks::firehose::engine::EntryResult;

/// A Firehose client bound to one delivery stream.
#[derive(Clone, Debug)]
pub struct DeliveryStreamClient {
    client: Client,
    stream: String,
    /// "firehose delivery stream `NAME`" and its region, for messages.
    target: Target,
}

impl DeliveryStreamClient {
    /// Builds a client from the config and the standard AWS chains ([`sdk::load`]).
    ///
    /// # Errors
    ///
    /// When no region can be found.
    pub async fn connect(cfg: &FirehoseSinkConfig) -> Result<DeliveryStreamClient, String> {
        let name = format!("firehose delivery stream `{}`", cfg.delivery_stream);
        let (sdk, target) = sdk::load(&cfg.aws, None, &name).await?;
        Ok(DeliveryStreamClient {
            client: Client::new(&sdk),
            stream: cfg.delivery_stream.clone(),
            target,
        })
    }

    /// The region in use.
    pub fn region(&self) -> &str {
        self.target.region()
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
            .map_err(|e| self.target.failure("DescribeDeliveryStream", &e))?;
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
        let entries = records
            .iter()
            .map(|r| Record::builder().data(Blob::new(r.to_vec())).build())
            .collect::<Result<Vec<Record>, _>>()
            .map_err(|err| self.target.unbuildable("PutRecordBatch", err))?;
        let out = self
            .client
            .put_record_batch()
            .delivery_stream_name(&self.stream)
            .set_records(Some(entries))
            .send()
            .await
            .map_err(|e| self.target.failure("PutRecordBatch", &e))?;
        Ok(out.request_responses().iter().map(entry_result).collect())
    }
}

/// One record's answer in a PutRecordBatch response: written (a record id), or the error.
fn entry_result(r: &PutRecordBatchResponseEntry) -> EntryResult {
    match r.error_code().filter(|code| !code.is_empty()) {
        None => EntryResult::Written,
        Some(code) => EntryResult::Failed {
            code: code.to_owned(),
            message: r.error_message().unwrap_or_default().to_owned(),
        },
    }
}
