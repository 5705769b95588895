use aws_sdk_sns::types::{MessageAttributeValue, PublishBatchRequestEntry};
use aws_sdk_sns::Client;

use crate::aws::AwsError;
use crate::router::{BusError, BusMessage, BusOutcome, EventBus};

/// [`EventBus`] on an SNS topic.
#[derive(Clone, Debug)]
pub struct SnsBus {
    client: Client,
    topic_arn: String,
}

impl SnsBus {
    /// Publish to `topic_arn`.
    pub fn new(client: Client, topic_arn: impl Into<String>) -> Self {
        SnsBus {
            client,
            topic_arn: topic_arn.into(),
        }
    }
}

impl EventBus for SnsBus {
    async fn publish_batch(&self, entries: &[BusMessage<'_>]) -> Result<Vec<BusOutcome>, BusError> {
        let mut request = self.client.publish_batch().topic_arn(&self.topic_arn);
        for entry in entries {
            let mut builder = PublishBatchRequestEntry::builder()
                .id(&entry.id)
                .message(entry.body.as_ref());
            for attribute in &entry.attributes {
                let value = MessageAttributeValue::builder()
                    .data_type(attribute.data_type)
                    .string_value(attribute.value.as_ref())
                    .build()
                    .map_err(|e| BusError::other(e.to_string()))?;
                builder = builder.message_attributes(attribute.name, value);
            }
            request = request.publish_batch_request_entries(
                builder
                    .build()
                    .map_err(|e| BusError::other(e.to_string()))?,
            );
        }
        let output = request
            .send()
            .await
            .map_err(|e| BusError(AwsError::new(e)))?;
        let mut outcomes = vec![None; entries.len()];
        let position = |id: &str| entries.iter().position(|e| e.id == id);
        for ok in output.successful() {
            if let Some(i) = ok.id().and_then(position) {
                outcomes[i] = Some(BusOutcome::Published);
            }
        }
        for failed in output.failed() {
            if let Some(i) = position(failed.id()) {
                outcomes[i] = Some(BusOutcome::Failed {
                    code: failed.code().to_string(),
                    message: failed.message().unwrap_or_default().to_string(),
                    sender_fault: failed.sender_fault(),
                });
            }
        }
        // An entry SNS did not mention at all is treated as a retryable failure, never as sent.
        Ok(outcomes
            .into_iter()
            .map(|o| {
                o.unwrap_or(BusOutcome::Failed {
                    code: "Missing".into(),
                    message: "PublishBatch did not report this entry".into(),
                    sender_fault: false,
                })
            })
            .collect())
    }
}
