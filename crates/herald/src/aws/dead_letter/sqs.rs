//! Dead letters on an SQS queue.

use aws_sdk_sqs::types::MessageAttributeValue;
use aws_sdk_sqs::Client;
use chrono::{SecondsFormat, Utc};

use super::{attr, DeadLetter, DeadLetterError, DeadLetters};
use crate::aws::AwsError;

/// [`DeadLetters`] on an SQS queue.
#[derive(Clone, Debug)]
pub struct SqsDeadLetters {
    client: Client,
    queue_url: String,
}

impl SqsDeadLetters {
    /// Send dead letters to `queue_url`.
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        SqsDeadLetters {
            client,
            queue_url: queue_url.into(),
        }
    }

    /// One `SendMessage` per letter: dead letters are rare and each may be near the size limit.
    async fn send_one(&self, letter: &DeadLetter) -> Result<(), DeadLetterError> {
        let text = |v: &str| {
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(v)
                .build()
                .map_err(|e| DeadLetterError::other(e.to_string()))
        };
        let mut request = self
            .client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(letter.message_body())
            .message_attributes(
                attr::FAILED_AT,
                text(&Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true))?,
            );
        for (name, value) in letter.attributes() {
            request = request.message_attributes(name, text(&value)?);
        }
        request
            .send()
            .await
            .map(|_| ())
            .map_err(|e| DeadLetterError(AwsError::new(e)))
    }
}

impl DeadLetters for SqsDeadLetters {
    async fn send(&self, letters: &[DeadLetter]) -> Vec<Result<(), DeadLetterError>> {
        futures::future::join_all(letters.iter().map(|l| self.send_one(l))).await
    }
}
