//! The Kinesis sink's contact with the AWS SDK: DescribeStreamSummary, ListShards and
//! PutRecords, with every answer and error turned into the SDK-free terms of the engine
//! ([`EntryResult`], [`CallFailure`] with an [`ErrorClass`](crate::sinks::aws::retry::ErrorClass)). Connecting (region, endpoint,
//! credentials, an assumed role, SDK retries off) is the shared [`sdk::load`].

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, PutRecordsResultEntry};

use crate::sinks::aws::sdk::{self, CallFailure, Target};
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
    /// "kinesis stream `NAME`" and its region, for messages.
    target: Target,
}

impl StreamClient {
    /// Builds a client from the config and the standard AWS chains ([`sdk::load`]; the region
    /// falls back to the stream ARN's).
    ///
    /// # Errors
    ///
    /// When no region can be found.
    pub async fn connect(cfg: &KinesisSinkConfig) -> Result<StreamClient, String> {
        let name = format!("kinesis stream `{}`", cfg.stream);
        let (sdk, target) = sdk::load(&cfg.aws, cfg.arn_region(), &name).await?;
        Ok(StreamClient {
            client: Client::new(&sdk),
            stream: cfg.stream.clone(),
            is_arn: cfg.stream.starts_with("arn:"),
            target,
        })
    }

    /// The region in use.
    pub fn region(&self) -> &str {
        self.target.region()
    }

    /// The stream as the calls name it: by ARN or by name.
    fn arn_or_name(&self) -> (Option<String>, Option<String>) {
        let stream = Some(self.stream.clone());
        if self.is_arn {
            (stream, None)
        } else {
            (None, stream)
        }
    }

    /// DescribeStreamSummary.
    ///
    /// # Errors
    ///
    /// The classified failure.
    pub async fn describe(&self) -> Result<StreamInfo, CallFailure> {
        let (arn, name) = self.arn_or_name();
        let out = self
            .client
            .describe_stream_summary()
            .set_stream_arn(arn)
            .set_stream_name(name)
            .send()
            .await
            .map_err(|e| self.target.failure("DescribeStreamSummary", &e))?;
        let Some(s) = out.stream_description_summary() else {
            return Err(self
                .target
                .odd_answer("DescribeStreamSummary answered without a summary"));
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
                None => {
                    let (arn, name) = self.arn_or_name();
                    call.set_stream_arn(arn).set_stream_name(name)
                }
            };
            let out = call
                .send()
                .await
                .map_err(|e| self.target.failure("ListShards", &e))?;
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
        ShardMap::parse(ranges).map_err(|e| self.target.odd_answer(format!("ListShards: {e}")))
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
                .map_err(|err| self.target.unbuildable("PutRecords", err))?;
            records.push(entry);
        }
        let (arn, name) = self.arn_or_name();
        let out = self
            .client
            .put_records()
            .set_records(Some(records))
            .set_stream_arn(arn)
            .set_stream_name(name)
            .send()
            .await
            .map_err(|e| self.target.failure("PutRecords", &e))?;
        Ok(out.records().iter().map(entry_result).collect())
    }
}

/// One entry's answer in a PutRecords result: the shard that took it, or the error.
fn entry_result(r: &PutRecordsResultEntry) -> EntryResult {
    match r.error_code() {
        Some(code) => EntryResult::Failed {
            code: code.to_owned(),
            message: r.error_message().unwrap_or_default().to_owned(),
        },
        None => EntryResult::Written {
            shard_id: r.shard_id().unwrap_or_default().to_owned(),
        },
    }
}
