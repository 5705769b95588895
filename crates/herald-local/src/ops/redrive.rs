//! Redriving a dead-letter queue: each message sent back to the queue or stream it came from, or
//! the stream range a Lambda on-failure record describes copied back onto the stream.

use anyhow::{anyhow, bail, Context, Result};
use aws_config::SdkConfig;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType};
use aws_sdk_sqs::types::{MessageAttributeValue, MessageSystemAttributeName};
use chrono::Utc;
use herald::dead_letter::attr;
use serde_json::Value;

use super::dlq::{DeadLetterQueue, Source};

/// What a redrive did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Redriven {
    /// Messages sent back and deleted from the DLQ.
    pub moved: usize,
    /// Messages that could not be sent back (left in the DLQ), with why.
    pub failed: Vec<String>,
}

/// Send every message of `queue` back to its source, deleting each only after it was sent.
/// `progress(done, total)` is called after each message.
pub async fn redrive(
    aws: &SdkConfig,
    queue: &DeadLetterQueue,
    progress: impl Fn(usize, usize),
) -> Result<Redriven> {
    let source = queue.source.clone().ok_or_else(|| {
        anyhow!(
            "herald cannot tell where {}'s messages came from",
            queue.logical_id
        )
    })?;
    let sqs = aws_sdk_sqs::Client::new(aws);
    let kinesis = aws_sdk_kinesis::Client::new(aws);
    let total = approximate_count(&sqs, &queue.url).await?;
    let mut report = Redriven::default();
    // Only what was in the queue when the redrive began: a message that fails again is
    // dead-lettered anew, and must wait for the next redrive rather than loop forever.
    let started_ms = Utc::now().timestamp_millis();
    // Messages that could not be sent back stay hidden until the loop ends (or they would be
    // received again), then become visible at once for `herald dlq show`.
    let mut kept = Vec::new();
    loop {
        let received = sqs
            .receive_message()
            .queue_url(&queue.url)
            .max_number_of_messages(10)
            // Long enough to send each back before anyone else could see it again.
            .visibility_timeout(120)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .message_attribute_names("All")
            .send()
            .await?
            .messages
            .unwrap_or_default();
        let (old, new): (Vec<_>, Vec<_>) = received.into_iter().partition(|m| {
            m.attributes()
                .and_then(|a| a.get(&MessageSystemAttributeName::SentTimestamp))
                .and_then(|t| t.parse::<i64>().ok())
                .is_none_or(|sent| sent < started_ms)
        });
        for message in &new {
            sqs.change_message_visibility()
                .queue_url(&queue.url)
                .receipt_handle(message.receipt_handle.clone().unwrap_or_default())
                .visibility_timeout(0)
                .send()
                .await?;
        }
        if old.is_empty() {
            break;
        }
        for message in old {
            let sent = match &source {
                Source::Queue { url, .. } => send_back(&sqs, url, &message).await,
                Source::Stream { name, .. } => put_back(&kinesis, name, &message).await,
                Source::StreamRange { name, .. } => copy_range(&kinesis, name, &message).await,
            };
            match sent {
                Ok(()) => {
                    sqs.delete_message()
                        .queue_url(&queue.url)
                        .receipt_handle(message.receipt_handle.clone().unwrap_or_default())
                        .send()
                        .await?;
                    report.moved += 1;
                }
                Err(err) => {
                    kept.push(message.receipt_handle.clone().unwrap_or_default());
                    report.failed.push(format!(
                        "{}: {err:#}",
                        message.message_id.unwrap_or_default()
                    ))
                }
            }
            progress(
                report.moved + report.failed.len(),
                total.max(report.moved + report.failed.len()),
            );
        }
    }
    for receipt_handle in kept {
        sqs.change_message_visibility()
            .queue_url(&queue.url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(0)
            .send()
            .await?;
    }
    Ok(report)
}

async fn approximate_count(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<usize> {
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await?;
    Ok(out
        .attributes
        .unwrap_or_default()
        .values()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0))
}

/// Back to the queue it came from, with its own message attributes (not herald's dead-letter ones).
async fn send_back(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    message: &aws_sdk_sqs::types::Message,
) -> Result<()> {
    let body = String::from_utf8(letter_record(message)?)
        .context("the dead letter's record is not UTF-8; it cannot go back to a queue")?;
    let mut request = sqs.send_message().queue_url(url).message_body(body);
    for (name, value) in message.message_attributes().into_iter().flatten() {
        if name.starts_with("herald.") {
            continue;
        }
        let value = MessageAttributeValue::builder()
            .data_type(value.data_type())
            .set_string_value(value.string_value.clone())
            .set_binary_value(value.binary_value.clone())
            .build()?;
        request = request.message_attributes(name, value);
    }
    request.send().await?;
    Ok(())
}

/// The record a message holds: a herald dead letter decoded (`herald.encoding`), refused when it
/// was cut to fit (`herald.truncated`); any other message's body as it is.
fn letter_record(message: &aws_sdk_sqs::types::Message) -> Result<Vec<u8>> {
    let attribute = |name: &str| {
        message
            .message_attributes()
            .and_then(|a| a.get(name))
            .and_then(|v| v.string_value.as_deref())
    };
    Ok(herald::dead_letter::decode_body(
        message.body.as_deref().unwrap_or_default(),
        attribute(attr::ENCODING),
        attribute(attr::TRUNCATED),
    )?)
}

/// Back onto the stream: the record as it was (decoded when it was kept as base64).
async fn put_back(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
    message: &aws_sdk_sqs::types::Message,
) -> Result<()> {
    let attribute = |name: &str| {
        message
            .message_attributes()
            .and_then(|a| a.get(name))
            .and_then(|v| v.string_value.clone())
    };
    let data = letter_record(message)?;
    let origin: Value = attribute(attr::ORIGIN)
        .and_then(|o| serde_json::from_str(&o).ok())
        .unwrap_or(Value::Null);
    let key = origin["partitionKey"]
        .as_str()
        .map(String::from)
        .unwrap_or_else(|| {
            message
                .message_id
                .clone()
                .unwrap_or_else(|| "redrive".into())
        });
    kinesis
        .put_record()
        .stream_name(stream)
        .partition_key(key)
        .data(Blob::new(data))
        .send()
        .await?;
    Ok(())
}

/// Re-read the records a Lambda on-failure record describes and put them back onto the stream.
async fn copy_range(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
    message: &aws_sdk_sqs::types::Message,
) -> Result<()> {
    let record: Value = serde_json::from_str(message.body.as_deref().unwrap_or_default())
        .context("not a Lambda on-failure record")?;
    let info = &record["KinesisBatchInfo"];
    let (Some(shard), Some(start), Some(end)) = (
        info["shardId"].as_str(),
        info["startSequenceNumber"].as_str(),
        info["endSequenceNumber"].as_str(),
    ) else {
        bail!("the on-failure record has no KinesisBatchInfo");
    };
    let mut iterator = kinesis
        .get_shard_iterator()
        .stream_name(stream)
        .shard_id(shard)
        .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
        .starting_sequence_number(start)
        .send()
        .await?
        .shard_iterator;
    let mut entries = Vec::new();
    'read: while let Some(it) = iterator {
        let out = kinesis.get_records().shard_iterator(it).send().await?;
        // An empty page mid-shard is normal; only a page at the tip ends the read.
        if out.records.is_empty() && out.millis_behind_latest.unwrap_or(0) == 0 {
            break;
        }
        for r in out.records {
            if sequence_after(&r.sequence_number, end) {
                break 'read;
            }
            entries.push(
                PutRecordsRequestEntry::builder()
                    .partition_key(r.partition_key.clone().unwrap_or_default())
                    .data(r.data)
                    .build()?,
            );
        }
        iterator = out.next_shard_iterator;
    }
    if entries.is_empty() {
        bail!("the records {start}..{end} of {shard} are no longer in the stream (retention)");
    }
    for chunk in entries.chunks(herald::limits::KINESIS_MAX_RECORDS_PER_PUT) {
        let out = kinesis
            .put_records()
            .stream_name(stream)
            .set_records(Some(chunk.to_vec()))
            .send()
            .await?;
        if out.failed_record_count.unwrap_or(0) > 0 {
            bail!(
                "{} records were not put back",
                out.failed_record_count.unwrap_or(0)
            );
        }
    }
    Ok(())
}

/// Whether decimal sequence number `a` comes after `b` (compared as numbers of any length).
pub fn sequence_after(a: &str, b: &str) -> bool {
    let (a, b) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
    (a.len(), a) > (b.len(), b)
}

#[cfg(test)]
mod tests {
    use super::sequence_after;

    #[test]
    fn sequence_numbers_compare_as_numbers() {
        assert!(sequence_after("10", "9"));
        assert!(!sequence_after("9", "10"));
        assert!(sequence_after(
            "49590338271490256608559692540925702759324208523137515523",
            "49590338271490256608559692540925702759324208523137515522"
        ));
        assert!(!sequence_after("5", "5"));
    }
}
