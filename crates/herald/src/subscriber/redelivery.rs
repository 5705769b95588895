//! Redelivery on SQS: a failed message's visibility changed, so its queue hands it back later.

use aws_sdk_sqs::types::ChangeMessageVisibilityBatchRequestEntry;
use aws_sdk_sqs::Client;

use super::retry::{Postponed, Redelivery};
use crate::aws::AwsError;

/// [`Redelivery`] on SQS: `ChangeMessageVisibilityBatch` (ten at a time) on the queue each
/// message came from, its URL looked up once from the ARN (`GetQueueUrl`).
#[derive(Debug)]
pub struct SqsRedelivery {
    client: Client,
    urls: tokio::sync::Mutex<std::collections::HashMap<String, String>>,
}

impl SqsRedelivery {
    /// Postpone messages through `client`.
    pub fn new(client: Client) -> Self {
        SqsRedelivery {
            client,
            urls: tokio::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    async fn url(&self, arn: &str) -> Result<String, String> {
        let mut urls = self.urls.lock().await;
        if let Some(url) = urls.get(arn) {
            return Ok(url.clone());
        }
        // arn:aws:sqs:<region>:<account>:<name>
        let mut parts = arn.rsplit(':');
        let (Some(name), Some(account)) = (parts.next(), parts.next()) else {
            return Err(format!("`{arn}` is not a queue ARN"));
        };
        let url = self
            .client
            .get_queue_url()
            .queue_name(name)
            .queue_owner_aws_account_id(account)
            .send()
            .await
            .map_err(|e| AwsError::new(e).to_string())?
            .queue_url
            .ok_or_else(|| format!("no URL for {arn}"))?;
        urls.insert(arn.to_string(), url.clone());
        Ok(url)
    }

    async fn postpone_all(&self, messages: &[Postponed]) -> Vec<Result<(), String>> {
        let mut results: Vec<Result<(), String>> = vec![Ok(()); messages.len()];
        let mut by_queue: std::collections::BTreeMap<&str, Vec<usize>> = Default::default();
        for (i, message) in messages.iter().enumerate() {
            by_queue.entry(&message.queue_arn).or_default().push(i);
        }
        for (arn, indexes) in by_queue {
            let url = match self.url(arn).await {
                Ok(url) => url,
                Err(err) => {
                    for i in indexes {
                        results[i] = Err(err.clone());
                    }
                    continue;
                }
            };
            for chunk in indexes.chunks(crate::aws::limits::SQS_MAX_RECEIVE) {
                let entries: Vec<ChangeMessageVisibilityBatchRequestEntry> = chunk
                    .iter()
                    .filter_map(|&i| {
                        let seconds = messages[i]
                            .delay
                            .min(crate::subscriber::retry::MAX_VISIBILITY)
                            .as_secs() as i32;
                        ChangeMessageVisibilityBatchRequestEntry::builder()
                            .id(i.to_string())
                            .receipt_handle(&messages[i].receipt_handle)
                            .visibility_timeout(seconds)
                            .build()
                            .ok()
                    })
                    .collect();
                match self
                    .client
                    .change_message_visibility_batch()
                    .queue_url(&url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                {
                    Ok(output) => {
                        for failed in output.failed() {
                            if let Ok(i) = failed.id().parse::<usize>() {
                                if let Some(slot) = results.get_mut(i) {
                                    *slot = Err(format!(
                                        "{}: {}",
                                        failed.code(),
                                        failed.message().unwrap_or_default()
                                    ));
                                }
                            }
                        }
                    }
                    Err(err) => {
                        let err = AwsError::new(err).to_string();
                        for &i in chunk {
                            results[i] = Err(err.clone());
                        }
                    }
                }
            }
        }
        results
    }
}

impl Redelivery for SqsRedelivery {
    fn postpone<'a>(
        &'a self,
        messages: &'a [Postponed],
    ) -> crate::subscriber::retry::Postponing<'a> {
        Box::pin(self.postpone_all(messages))
    }
}
