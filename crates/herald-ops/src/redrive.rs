//! Redriving a dead-letter queue: each message sent back to the queue or stream it came from, or
//! the stream range a Lambda on-failure record describes copied back onto the stream.

use anyhow::{anyhow, bail, Context, Result};
use aws_config::SdkConfig;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use aws_sdk_sqs::types::{MessageAttributeValue, MessageSystemAttributeName};
use chrono::Utc;
use herald::aws::dead_letter::attr;
use herald_local::stream::{Payload, Position, Stream, ToTip};
use serde_json::Value;

use crate::dlq::{DeadLetterQueue, Source};

/// What a redrive did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Redriven {
    /// Messages sent back and deleted from the DLQ.
    pub moved: usize,
    /// Copies of a letter already sent back in this redrive (same stage and record: a
    /// `SendMessage` retried after its answer was lost), deleted without sending.
    pub duplicates: usize,
    /// Messages that could not be sent back (left in the DLQ), with why.
    pub failed: Vec<String>,
    /// Of those, the ones refused because their event is past the stack's idempotency horizon
    /// ([`crate::Horizon`]): sent again, their effects could be applied twice.
    pub expired: usize,
    /// Letters received past [`RedriveOptions::max`] and left for a later redrive.
    pub remaining: usize,
}

/// How much of a queue a redrive sends back.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RedriveOptions {
    /// Send back at most this many letters (the rest stay, for a later redrive). Default: all.
    pub max: Option<usize>,
    /// Send nothing and delete nothing: report what a redrive would send back and what it would
    /// leave (and why). Default false.
    pub dry_run: bool,
}

/// Send every message of `queue` back to its source, deleting each only after it was sent.
/// `progress(done, total)` is called after each message.
pub async fn redrive(
    aws: &SdkConfig,
    queue: &DeadLetterQueue,
    progress: impl Fn(usize, usize),
) -> Result<Redriven> {
    redrive_with(aws, queue, &RedriveOptions::default(), progress).await
}

/// [`redrive`], at most `options.max` letters, or only as a dry run (`options.dry_run`: what would
/// be sent back is counted in [`Redriven::moved`], and every letter stays in the queue).
pub async fn redrive_with(
    aws: &SdkConfig,
    queue: &DeadLetterQueue,
    options: &RedriveOptions,
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
    // The records sent back so far: a second copy of one letter is not sent again.
    let mut redriven = std::collections::HashSet::new();
    // Letters received and left alone (past `max`, or a dry run): visible again at the end.
    let mut untouched = Vec::new();
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
        let mut old = old.into_iter();
        while let Some(message) = old.next() {
            if options.max.is_some_and(|max| report.moved >= max) {
                // Enough: this letter and the rest of the batch stay for a later redrive.
                let before = untouched.len();
                untouched.push(message.receipt_handle.unwrap_or_default());
                untouched.extend(old.by_ref().map(|m| m.receipt_handle.unwrap_or_default()));
                report.remaining += untouched.len() - before;
                break;
            }
            let identity = identity(&message);
            if identity.as_ref().is_some_and(|i| redriven.contains(i)) {
                if options.dry_run {
                    untouched.push(message.receipt_handle.clone().unwrap_or_default());
                } else {
                    sqs.delete_message()
                        .queue_url(&queue.url)
                        .receipt_handle(message.receipt_handle.clone().unwrap_or_default())
                        .send()
                        .await?;
                }
                report.duplicates += 1;
                let done = report.moved + report.failed.len() + report.duplicates;
                progress(done, total.max(done));
                continue;
            }
            // An event older than its idempotency records stays (see `expiry`); a stream range
            // holds records the stream still keeps, within a day.
            let expired = match &source {
                Source::Queue { .. } | Source::Stream { .. } => letter_record(&message)
                    .ok()
                    .and_then(|record| queue.horizon.check_record(&record).err()),
                Source::Store(_) => {
                    crate::republish::failure_span(message.body.as_deref().unwrap_or_default())
                        .ok()
                        .and_then(|(from, _)| queue.horizon.check(from).err())
                }
                Source::StreamRange { .. } => None,
            };
            let sent = match (&source, expired) {
                (_, Some(why)) => {
                    report.expired += 1;
                    Err(anyhow!(why))
                }
                (source, None) if options.dry_run => would_go_back(source, &message),
                (Source::Queue { url, .. }, None) => send_back(&sqs, url, &message).await,
                (Source::Stream { name, .. }, None) => put_back(&kinesis, name, &message).await,
                (Source::StreamRange { name, .. }, None) => {
                    copy_range(&kinesis, name, &message).await
                }
                (Source::Store(route), None) => republish_span(aws, route, &message).await,
            };
            match sent {
                Ok(()) => {
                    redriven.extend(identity);
                    if options.dry_run {
                        untouched.push(message.receipt_handle.clone().unwrap_or_default());
                    } else {
                        sqs.delete_message()
                            .queue_url(&queue.url)
                            .receipt_handle(message.receipt_handle.clone().unwrap_or_default())
                            .send()
                            .await?;
                    }
                    report.moved += 1;
                }
                Err(err) => {
                    let id = message.message_id.unwrap_or_default();
                    report.failed.push(format!("{id}: {err:#}"));
                    kept.push((
                        message.receipt_handle.unwrap_or_default(),
                        identity,
                        report.failed.len() - 1,
                    ));
                }
            }
            let done = report.moved + report.failed.len() + report.duplicates;
            progress(done, total.max(done));
        }
        if options.max.is_some_and(|max| report.moved >= max) {
            // What the queue still holds beyond this batch stays too.
            report.remaining += approximate_count(&sqs, &queue.url).await?;
            break;
        }
    }
    for receipt_handle in untouched {
        sqs.change_message_visibility()
            .queue_url(&queue.url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(0)
            .send()
            .await?;
    }
    let mut settled = Vec::new();
    for (receipt_handle, identity, failure) in kept {
        // A copy that failed while another copy of the same letter went back is done with.
        if !options.dry_run && identity.is_some_and(|i| redriven.contains(&i)) {
            sqs.delete_message()
                .queue_url(&queue.url)
                .receipt_handle(receipt_handle)
                .send()
                .await?;
            report.duplicates += 1;
            settled.push(failure);
            continue;
        }
        sqs.change_message_visibility()
            .queue_url(&queue.url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(0)
            .send()
            .await?;
    }
    report.failed = std::mem::take(&mut report.failed)
        .into_iter()
        .enumerate()
        .filter(|(i, _)| !settled.contains(i))
        .map(|(_, f)| f)
        .collect();
    Ok(report)
}

/// The record a received dead letter is about (see [`herald::aws::dead_letter::letter_identity`]).
pub(crate) fn identity(message: &aws_sdk_sqs::types::Message) -> Option<String> {
    let attribute = |name: &str| {
        message
            .message_attributes()
            .and_then(|a| a.get(name))
            .and_then(|v| v.string_value())
    };
    herald::aws::dead_letter::received_letter_identity(
        attribute(attr::STAGE),
        attribute(attr::ORIGIN),
    )
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

/// The events an on-failure record of the store's stream describes, published again from the
/// store.
async fn republish_span(
    aws: &SdkConfig,
    route: &crate::StoreRoute,
    message: &aws_sdk_sqs::types::Message,
) -> Result<()> {
    let (from, to) = crate::republish::failure_span(message.body.as_deref().unwrap_or_default())?;
    crate::republish::republish(aws, route, from, Some(to)).await?;
    Ok(())
}

/// Whether a letter could go back, checked as the redrive checks it, without sending (a dry run):
/// what it carries can be read back into what its source takes. (A stream range the stream no
/// longer holds shows only when it is copied.)
fn would_go_back(source: &Source, message: &aws_sdk_sqs::types::Message) -> Result<()> {
    let body = message.body.as_deref().unwrap_or_default();
    match source {
        Source::Queue { .. } => {
            String::from_utf8(letter_record(message)?)
                .context("the dead letter's record is not UTF-8; it cannot go back to a queue")?;
        }
        Source::Stream { .. } => {
            let attribute = |name: &str| {
                message
                    .message_attributes()
                    .and_then(|a| a.get(name))
                    .and_then(|v| v.string_value.clone())
            };
            stream_record(body, attribute, message.message_id.as_deref())?;
        }
        Source::StreamRange { .. } => {
            batch_range(body)?;
        }
        Source::Store(_) => {
            crate::republish::failure_span(body)?;
        }
    }
    Ok(())
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
    Ok(herald::aws::dead_letter::decode_body(
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
    let (key, data) = stream_record(
        message.body.as_deref().unwrap_or_default(),
        attribute,
        message.message_id.as_deref(),
    )?;
    kinesis
        .put_record()
        .stream_name(stream)
        .partition_key(key)
        .data(Blob::new(data))
        .send()
        .await?;
    Ok(())
}

/// The record a stream's dead letter holds, as `(partition key, data)`: the body, decoded when
/// herald kept it as base64, and the partition key from `herald.origin` — or, when that is
/// missing or not a key Kinesis takes (1 to 256 characters), the message id. A truncated or
/// undecodable letter is an error saying so (the message stays in the DLQ).
pub fn stream_record(
    body: &str,
    attribute: impl Fn(&str) -> Option<String>,
    message_id: Option<&str>,
) -> Result<(String, Vec<u8>)> {
    let data = herald::aws::dead_letter::decode_body(
        body,
        attribute(attr::ENCODING).as_deref(),
        attribute(attr::TRUNCATED).as_deref(),
    )?;
    let origin: Value = attribute(attr::ORIGIN)
        .and_then(|o| serde_json::from_str(&o).ok())
        .unwrap_or(Value::Null);
    let usable = |key: &&str| {
        let chars = key.chars().count();
        (1..=herald::aws::limits::KINESIS_MAX_PARTITION_KEY_CHARS).contains(&chars)
    };
    let key = origin["partitionKey"]
        .as_str()
        .filter(usable)
        .or(message_id.filter(usable))
        .unwrap_or("redrive")
        .to_string();
    Ok((key, data))
}

/// The stream range a Lambda on-failure record describes: `(shard id, first, last sequence
/// number)`. Anything else is an error naming what is missing.
pub fn batch_range(body: &str) -> Result<(String, String, String)> {
    let record: Value = serde_json::from_str(body).context("not a Lambda on-failure record")?;
    let info = &record["KinesisBatchInfo"];
    let (Some(shard), Some(start), Some(end)) = (
        info["shardId"].as_str(),
        info["startSequenceNumber"].as_str(),
        info["endSequenceNumber"].as_str(),
    ) else {
        bail!("the on-failure record has no KinesisBatchInfo");
    };
    if shard.is_empty() || shard.len() > 128 {
        bail!("the on-failure record's shardId is not a shard id");
    }
    for (name, number) in [("startSequenceNumber", start), ("endSequenceNumber", end)] {
        if number.is_empty() || number.len() > 128 || !number.bytes().all(|b| b.is_ascii_digit()) {
            bail!("the on-failure record's {name} is not a sequence number");
        }
    }
    Ok((shard.to_string(), start.to_string(), end.to_string()))
}

/// Re-read the records a Lambda on-failure record describes and put them back onto the stream.
async fn copy_range(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
    message: &aws_sdk_sqs::types::Message,
) -> Result<()> {
    let (shard, start, end) = batch_range(message.body.as_deref().unwrap_or_default())?;
    let (shard, start, end) = (shard.as_str(), start.as_str(), end.as_str());
    let source = Stream::Kinesis {
        client: kinesis.clone(),
        name: stream.to_string(),
    };
    let mut reader = ToTip::open(&source, shard, &Position::At(start.to_string())).await?;
    let mut entries = Vec::new();
    'read: while let Some(records) = reader.next(10_000).await? {
        for r in records {
            if sequence_after(&r.sequence_number, end) {
                break 'read;
            }
            let Payload::Kinesis(data) = r.payload else {
                continue;
            };
            entries.push(
                PutRecordsRequestEntry::builder()
                    .partition_key(r.partition_key)
                    .data(Blob::new(data))
                    .build()?,
            );
        }
    }
    if entries.is_empty() {
        bail!("the records {start}..{end} of {shard} are no longer in the stream (retention)");
    }
    for chunk in entries.chunks(herald::aws::limits::KINESIS_MAX_RECORDS_PER_PUT) {
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
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

        /// Any dead letter of a stream's DLQ — any body, any herald attributes — is a record
        /// Kinesis takes (a partition key of 1 to 256 characters) or an error saying why.
        #[test]
        fn any_stream_dead_letter_is_a_putable_record_or_a_named_error(
            body in ".{0,300}",
            base64 in any::<bool>(),
            truncated in any::<bool>(),
            origin in prop_oneof![
                ".{0,100}",
                ".{0,400}".prop_map(|k| serde_json::json!({"partitionKey": k}).to_string()),
                any::<i64>().prop_map(|k| serde_json::json!({"partitionKey": k}).to_string()),
            ],
            message_id in prop::option::of(".{0,300}"),
        ) {
            let attribute = |name: &str| match name {
                attr::ENCODING if base64 => Some("base64".to_string()),
                attr::TRUNCATED if truncated => Some("true".to_string()),
                attr::ORIGIN => Some(origin.clone()),
                _ => None,
            };
            match stream_record(&body, attribute, message_id.as_deref()) {
                Ok((key, _)) => {
                    let chars = key.chars().count();
                    prop_assert!((1..=256).contains(&chars), "{chars}");
                }
                Err(err) => prop_assert!(!err.to_string().is_empty()),
            }
        }

        /// Any on-failure record body gives a shard and two decimal sequence numbers, or an
        /// error naming what is missing.
        #[test]
        fn any_on_failure_record_is_a_range_or_a_named_error(
            body in prop_oneof![
                ".{0,200}",
                (".{0,20}", ".{0,30}", ".{0,30}").prop_map(|(shard, start, end)| serde_json::json!({
                    "KinesisBatchInfo": {"shardId": shard, "startSequenceNumber": start, "endSequenceNumber": end}
                }).to_string()),
                ("[0-9]{1,60}", "[0-9]{1,60}").prop_map(|(start, end)| serde_json::json!({
                    "KinesisBatchInfo": {"shardId": "shardId-000000000000", "startSequenceNumber": start, "endSequenceNumber": end}
                }).to_string()),
            ]
        ) {
            match batch_range(&body) {
                Ok((shard, start, end)) => {
                    prop_assert!(!shard.is_empty());
                    prop_assert!(start.bytes().chain(end.bytes()).all(|b| b.is_ascii_digit()));
                    let _ = sequence_after(&start, &end);
                }
                Err(err) => prop_assert!(!err.to_string().is_empty()),
            }
        }
    }

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
