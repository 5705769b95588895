//! Lambda's on-failure destination record for a stream batch that was given up on, sent to the
//! mapping's SQS queue or SNS topic.

use std::sync::atomic::Ordering;

use anyhow::Result;
use chrono::{SecondsFormat, Utc};
use serde_json::json;

use super::{Context, StreamRecord};
use crate::runtime::FunctionError;
use crate::stack::{StreamMapping, StreamSource};

/// Why a batch left the shard without success.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum FailureCondition {
    RetryAttemptsExhausted,
    RecordAgeExceeded,
}

impl FailureCondition {
    fn as_str(self) -> &'static str {
        match self {
            FailureCondition::RetryAttemptsExhausted => "RetryAttemptsExhausted",
            FailureCondition::RecordAgeExceeded => "RecordAgeExceeded",
        }
    }
}

fn batch_info_key(mapping: &StreamMapping) -> &'static str {
    match mapping.source {
        StreamSource::Kinesis => "KinesisBatchInfo",
        StreamSource::DynamoDb => "DDBStreamBatchInfo",
    }
}

/// Send Lambda's on-failure record for `batch` to the mapping's destination (if any).
pub(super) async fn on_failure(
    mapping: &StreamMapping,
    ctx: &Context,
    label: &str,
    batch: &[StreamRecord],
    condition: FailureCondition,
    invocations: u32,
    error: Option<&FunctionError>,
) {
    ctx.activity
        .on_failure_batches
        .fetch_add(1, Ordering::SeqCst);
    let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
        return;
    };
    let function_error = match error {
        Some(FunctionError::Handled { .. }) | Some(FunctionError::BadResponse(_)) => "Handled",
        Some(_) => "Unhandled",
        None => "",
    };
    let mut record = json!({
        "requestContext": {
            "requestId": uuid::Uuid::new_v4().to_string(),
            "functionArn": ctx.stack.functions.iter().find(|f| f.logical_id == mapping.function).map(|f| f.arn.clone()).unwrap_or_default(),
            "condition": condition.as_str(),
            "approximateInvokeCount": invocations,
        },
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": function_error,
        },
        "version": "1.0",
        "timestamp": Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
    });
    record[batch_info_key(mapping)] = json!({
            "shardId": first.shard_id,
            "startSequenceNumber": first.sequence_number,
            "endSequenceNumber": last.sequence_number,
            "approximateArrivalOfFirstRecord": first.arrival.to_rfc3339_opts(SecondsFormat::Millis, true),
            "approximateArrivalOfLastRecord": last.arrival.to_rfc3339_opts(SecondsFormat::Millis, true),
            "batchSize": batch.len(),
            "streamArn": mapping.stream_arn,
    });
    let Some(destination) = &mapping.on_failure else {
        ctx.logs.note(
            label,
            &format!(
                "{}: dropping {} records (no on-failure destination)",
                condition.as_str(),
                batch.len()
            ),
        );
        return;
    };
    ctx.logs.note(
        label,
        &format!(
            "{}: {} records ({}..{}) to the on-failure destination",
            condition.as_str(),
            batch.len(),
            first.sequence_number,
            last.sequence_number
        ),
    );
    let body = record.to_string();
    // The shard's checkpoint moves past the batch only once its failure record is sent: a
    // failed send is retried (a stalled shard, as on Lambda, rather than a lost batch).
    let mut attempt = 0;
    loop {
        match send(ctx, destination, &body).await {
            Ok(()) => return,
            Err(err) => {
                ctx.logs.note(
                    label,
                    &format!("could not send the on-failure record (retrying): {err}"),
                );
                tokio::time::sleep(super::pause::backoff(
                    attempt,
                    ctx.settings.max_retry_delay * 5,
                ))
                .await;
                attempt += 1;
            }
        }
    }
}

/// One attempt at sending an on-failure record to an SQS queue or SNS topic.
async fn send(ctx: &Context, destination: &str, body: &str) -> Result<(), String> {
    if destination.starts_with("arn:aws:sqs:") {
        let url = queue_url(ctx, destination)
            .await
            .map_err(|e| format!("{e:#}"))?;
        ctx.sqs
            .send_message()
            .queue_url(url)
            .message_body(body)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| herald::aws::error_text(&e))
    } else {
        ctx.sns
            .publish()
            .topic_arn(destination)
            .message(body)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| herald::aws::error_text(&e))
    }
}

async fn queue_url(ctx: &Context, arn: &str) -> Result<String> {
    if let Some(queue) = ctx
        .stack
        .resources
        .values()
        .find(|p| p.attributes.get("Arn").map(String::as_str) == Some(arn))
    {
        return Ok(queue.reference.clone());
    }
    let name = arn.rsplit(':').next().unwrap_or_default();
    Ok(ctx
        .sqs
        .get_queue_url()
        .queue_name(name)
        .send()
        .await?
        .queue_url
        .unwrap_or_default())
}
