use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use aws_sdk_kinesis::Client;

use crate::aws::AwsError;
use crate::producer::{EventStream, PutOutcome, StreamError, StreamRecord};

/// [`EventStream`] on a Kinesis data stream.
#[derive(Clone, Debug)]
pub struct KinesisStream {
    client: Client,
    stream_name: String,
}

impl KinesisStream {
    /// Write to `stream_name` (a name or an ARN).
    pub fn new(client: Client, stream_name: impl Into<String>) -> Self {
        KinesisStream {
            client,
            stream_name: stream_name.into(),
        }
    }
}

impl EventStream for KinesisStream {
    async fn put_records(&self, records: &[StreamRecord]) -> Result<Vec<PutOutcome>, StreamError> {
        let entries = records
            .iter()
            .map(|r| {
                PutRecordsRequestEntry::builder()
                    .partition_key(&r.partition_key)
                    .data(Blob::new(r.data.clone()))
                    .build()
                    .map_err(|e| StreamError::other(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let request = self.client.put_records().set_records(Some(entries));
        let request = if self.stream_name.starts_with("arn:") {
            request.stream_arn(&self.stream_name)
        } else {
            request.stream_name(&self.stream_name)
        };
        let output = request
            .send()
            .await
            .map_err(|e| StreamError(AwsError::new(e)))?;
        Ok(output
            .records()
            .iter()
            .map(|r| match (r.shard_id(), r.sequence_number()) {
                (Some(shard), Some(seq)) if r.error_code().is_none() => PutOutcome::Written {
                    shard_id: shard.to_string(),
                    sequence_number: seq.to_string(),
                },
                _ => PutOutcome::Failed {
                    code: r.error_code().unwrap_or("Unknown").to_string(),
                    message: r.error_message().unwrap_or_default().to_string(),
                },
            })
            .collect())
    }
}
