//! Dead-letter and on-failure queues: anything in them is an event that did not take effect.

use anyhow::Result;
use aws_config::SdkConfig;
use aws_sdk_sqs::types::QueueAttributeName;

use herald_local::Stack;

use super::{aws_error, Check, Finding, Status};

pub(super) async fn check(stack: &Stack, aws: &SdkConfig) -> Vec<Finding> {
    let sqs = aws_sdk_sqs::Client::new(aws);
    let mut findings = Vec::new();
    for queue in crate::dead_letter_queues(stack) {
        let name = queue.url.rsplit('/').next().unwrap_or_default().to_string();
        let finding = match depth(&sqs, &queue.url).await {
            Ok(0) => Finding::new(
                Check::DeadLetters,
                Status::Ok,
                &queue.logical_id,
                &name,
                "empty".into(),
            ),
            Ok(messages) => Finding::new(
                Check::DeadLetters,
                Status::Problem,
                &queue.logical_id,
                &name,
                format!(
                    "{messages} message{}: events that did not take effect",
                    if messages == 1 { "" } else { "s" }
                ),
            )
            .fix(format!(
                "herald dlq show {} --stack {}",
                queue.logical_id, stack.name
            )),
            Err(err) => Finding::unreadable(Check::DeadLetters, &queue.logical_id, &name, &err),
        };
        findings.push(finding);
    }
    findings
}

/// Messages in the queue, visible or in flight (a reader holding them has not deleted them).
async fn depth(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<u64> {
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .map_err(aws_error)?;
    Ok(attributes
        .attributes()
        .into_iter()
        .flat_map(|a| a.values())
        .filter_map(|v| v.parse::<u64>().ok())
        .sum())
}
