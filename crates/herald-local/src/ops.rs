//! Operations on a stack: find a running one, inspect dead-letter queues, send their messages back
//! where they came from, and replay the stream through the stack's router function. They work on
//! any endpoint the stack lives on.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use aws_config::SdkConfig;
use aws_lambda_events::event::kinesis::{KinesisEvent, KinesisEventRecord};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType};
use aws_sdk_sqs::types::{MessageAttributeValue, MessageSystemAttributeName};
use base64::Engine;
use chrono::{DateTime, Utc};
use herald::dead_letter::attr;
use serde_json::Value;

use crate::endpoint::Endpoint;
use crate::logs::Logs;
use crate::runtime::FunctionPool;
use crate::stack::{
    FunctionSpec, MappingSpec, Stack, StreamMapping, StreamSource, DEAD_LETTER_TARGET,
};

/// Where `herald local up` records the stack it runs (`<root>/.herald/stack-<name>.json`), for
/// the commands that work on a running stack.
pub fn state_file(root: &Path, stack: &str) -> PathBuf {
    root.join(".herald").join(format!("stack-{stack}.json"))
}

/// The running stack `name` under `root`, as `herald local up` recorded it.
pub fn running_stack(root: &Path, name: &str) -> Result<Stack> {
    Stack::load(&state_file(root, name))
        .with_context(|| format!("no local stack {name}: start one with `herald local up`"))
}

/// The running stack `name` under `root` and an SDK configuration for the endpoint it lives on.
pub async fn connect(root: &Path, name: &str) -> Result<(Stack, SdkConfig)> {
    let stack = running_stack(root, name)?;
    let aws = Endpoint::external(stack.endpoint.clone())
        .sdk_config()
        .await;
    Ok((stack, aws))
}

/// Where a dead-letter queue's messages go back to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// The queue whose redrive policy moved them here: the message is sent back as it is.
    Queue { logical_id: String, url: String },
    /// A stream: the dead-lettered record is put back onto it.
    Stream { logical_id: String, name: String },
    /// A stream whose event source mapping sent Lambda's on-failure records here: the records
    /// they describe (shard, sequence range) are read from the stream and put back onto it.
    StreamRange { logical_id: String, name: String },
}

/// A dead-letter queue of the stack.
#[derive(Clone, Debug)]
pub struct DeadLetterQueue {
    /// Logical id.
    pub logical_id: String,
    /// URL.
    pub url: String,
    /// Where its messages go back to (none when herald cannot tell).
    pub source: Option<Source>,
}

/// Every queue of the stack that holds dead letters: redrive targets, on-failure destinations,
/// and the queues functions dead-letter poison to.
pub fn dead_letter_queues(stack: &Stack) -> Vec<DeadLetterQueue> {
    let queues: Vec<(&str, &crate::stack::Physical)> = stack.of_kind("AWS::SQS::Queue").collect();
    let arn_of = |p: &crate::stack::Physical| p.attributes.get("Arn").cloned().unwrap_or_default();
    let stream_name = |arn: &str| arn.rsplit('/').next().unwrap_or_default().to_string();
    let stream_id = |arn: &str| {
        stack
            .of_kind("AWS::Kinesis::Stream")
            .find(|(_, p)| p.attributes.get("Arn").map(String::as_str) == Some(arn))
            .map(|(id, _)| id.to_string())
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for (id, queue) in &queues {
        let arn = arn_of(queue);
        let redriven_from = queues
            .iter()
            .find(|(_, q)| q.attributes.get(DEAD_LETTER_TARGET) == Some(&arn));
        let on_failure_of = stack.mappings.iter().find_map(|m| match m {
            MappingSpec::Stream(k) if k.on_failure.as_deref() == Some(arn.as_str()) => Some(k),
            _ => None,
        });
        // A function that dead-letters to this queue by URL, fed by a stream.
        let lettered_from = stack
            .functions
            .iter()
            .filter(|f| f.environment.values().any(|v| *v == queue.reference))
            .find_map(|f| {
                stack.mappings.iter().find_map(|m| match m {
                    MappingSpec::Stream(k) if k.function == f.logical_id => Some(k),
                    _ => None,
                })
            });
        let source = if let Some((source_id, source)) = redriven_from {
            Some(Source::Queue {
                logical_id: source_id.to_string(),
                url: source.reference.clone(),
            })
        } else if let Some(mapping) = on_failure_of {
            // DynamoDB stream ranges expire with the stream; their events are in the table.
            (mapping.source == StreamSource::Kinesis).then(|| Source::StreamRange {
                logical_id: stream_id(&mapping.stream_arn),
                name: stream_name(&mapping.stream_arn),
            })
        } else {
            lettered_from
                .filter(|mapping| mapping.source == StreamSource::Kinesis)
                .map(|mapping| Source::Stream {
                    logical_id: stream_id(&mapping.stream_arn),
                    name: stream_name(&mapping.stream_arn),
                })
        };
        let is_dead_letter_queue = redriven_from.is_some()
            || on_failure_of.is_some()
            || lettered_from.is_some()
            || id.contains("DeadLetter");
        if is_dead_letter_queue {
            out.push(DeadLetterQueue {
                logical_id: id.to_string(),
                url: queue.reference.clone(),
                source,
            });
        }
    }
    out
}

/// Find a dead-letter queue by logical id (or a unique part of it, case-insensitive).
pub fn find_dead_letter_queue(stack: &Stack, name: &str) -> Result<DeadLetterQueue> {
    let all = dead_letter_queues(stack);
    if let Some(exact) = all.iter().find(|q| q.logical_id == name) {
        return Ok(exact.clone());
    }
    let matches: Vec<&DeadLetterQueue> = all
        .iter()
        .filter(|q| q.logical_id.to_lowercase().contains(&name.to_lowercase()))
        .collect();
    match matches[..] {
        [one] => Ok(one.clone()),
        _ => {
            let names: Vec<&str> = all.iter().map(|q| q.logical_id.as_str()).collect();
            bail!(
                "no single dead-letter queue matches {name:?} (queues: {})",
                names.join(", ")
            )
        }
    }
}

/// One dead letter as shown by `herald dlq show`.
#[derive(Clone, Debug)]
pub struct Letter {
    /// SQS message id.
    pub message_id: String,
    /// The body.
    pub body: String,
    /// `herald.reason`, or what herald knows (a Lambda on-failure record's condition, or that the
    /// queue's redrive policy moved it).
    pub reason: String,
    /// `herald.stage`, when set.
    pub stage: Option<String>,
    /// Time since it was first sent.
    pub age: Duration,
    /// How many times it was received.
    pub receives: u64,
}

/// Read every message of a queue without removing it (visibility timeout 0).
pub async fn letters(aws: &SdkConfig, url: &str) -> Result<Vec<Letter>> {
    let sqs = aws_sdk_sqs::Client::new(aws);
    let mut seen = HashMap::new();
    for _ in 0..100 {
        let received = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .visibility_timeout(0)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await?
            .messages
            .unwrap_or_default();
        let before = seen.len();
        for m in received {
            let id = m.message_id.clone().unwrap_or_default();
            seen.entry(id.clone()).or_insert_with(|| letter(id, &m));
        }
        if seen.len() == before {
            break;
        }
    }
    let mut letters: Vec<Letter> = seen.into_values().collect();
    letters.sort_by_key(|l| std::cmp::Reverse(l.age));
    Ok(letters)
}

fn letter(message_id: String, m: &aws_sdk_sqs::types::Message) -> Letter {
    let attribute = |name: &str| {
        m.message_attributes()
            .and_then(|a| a.get(name))
            .and_then(|v| v.string_value.clone())
    };
    let system =
        |name: MessageSystemAttributeName| m.attributes().and_then(|a| a.get(&name)).cloned();
    let sent_ms: i64 = system(MessageSystemAttributeName::SentTimestamp)
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let age = (Utc::now().timestamp_millis() - sent_ms).max(0) as u64;
    let body = m.body.clone().unwrap_or_default();
    let reason = attribute(attr::REASON).unwrap_or_else(|| {
        match serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["requestContext"]["condition"].as_str().map(String::from))
        {
            Some(condition) => format!("Lambda on-failure record: {condition}"),
            None => "moved by the queue's redrive policy (no reason recorded)".into(),
        }
    });
    Letter {
        message_id,
        body,
        reason,
        stage: attribute(attr::STAGE),
        age: Duration::from_millis(age),
        receives: system(MessageSystemAttributeName::ApproximateReceiveCount)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0),
    }
}

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
                Err(err) => report.failed.push(format!(
                    "{}: {err:#}",
                    message.message_id.unwrap_or_default()
                )),
            }
            progress(
                report.moved + report.failed.len(),
                total.max(report.moved + report.failed.len()),
            );
        }
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
    let mut request = sqs
        .send_message()
        .queue_url(url)
        .message_body(message.body.clone().unwrap_or_default());
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
    if attribute(attr::TRUNCATED).as_deref() == Some("true") {
        bail!("the dead letter holds a truncated record; re-read it from the stream (see herald.origin)");
    }
    let body = message.body.clone().unwrap_or_default();
    let data = if attribute(attr::ENCODING).as_deref() == Some("base64") {
        base64::engine::general_purpose::STANDARD.decode(body.trim())?
    } else {
        body.into_bytes()
    };
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

/// What a replay did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Records read from the stream (and sent through the router).
    pub read: usize,
    /// Invocations of the router.
    pub batches: usize,
    /// What the router says it did with them, from its EMF metrics; none when it wrote none.
    pub routed: Option<Routed>,
}

/// What the router reported doing with the replayed records (its `EventsOut` and
/// `DeadLettered` metrics, summed).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Routed {
    /// Records published.
    pub published: usize,
    /// Records dead-lettered as poison.
    pub dead_lettered: usize,
}

/// The function a replay sends the stream through, and its mapping: the function that reads the
/// stack's Kinesis stream (when several do, the one whose binary is `router`).
pub fn replay_function(stack: &Stack) -> Result<(&FunctionSpec, &StreamMapping)> {
    let readers: Vec<&StreamMapping> = stack
        .mappings
        .iter()
        .filter_map(|m| match m {
            MappingSpec::Stream(k) if k.source == StreamSource::Kinesis => Some(k),
            _ => None,
        })
        .collect();
    let function = |mapping: &StreamMapping| stack.function(&mapping.function);
    let mapping = match readers[..] {
        [] => bail!("no function of the stack reads a Kinesis stream"),
        [one] => one,
        _ => *readers
            .iter()
            .find(|m| function(m).is_ok_and(|f| f.binary == "router"))
            .ok_or_else(|| {
                let ids: Vec<&str> = readers.iter().map(|m| m.function.as_str()).collect();
                anyhow!(
                    "several functions read a Kinesis stream ({}); herald cannot tell which routes",
                    ids.join(", ")
                )
            })?,
    };
    Ok((function(mapping)?, mapping))
}

/// Re-read the stream from `from` and send every record through the stack's router function
/// again (safe: subscribers are idempotent). The router runs as a Lambda process from `bin_dir`
/// with its stack environment and gets the batches Lambda would give it; it is stopped at the
/// end. `progress(records so far)` is called per batch.
pub async fn replay(
    aws: &SdkConfig,
    stack: &Stack,
    bin_dir: &Path,
    from: DateTime<Utc>,
    progress: impl Fn(usize),
) -> Result<Replayed> {
    let (function, mapping) = replay_function(stack)?;
    let binary = bin_dir.join(&function.binary);
    if !binary.exists() {
        bail!(
            "{} is not built (expected {}); build with `cargo build --bins`",
            function.binary,
            binary.display()
        );
    }
    // The process talks to the endpoint the records are read from.
    let endpoint = aws.endpoint_url().unwrap_or(&stack.endpoint);
    // Quiet: what the router says is read from its metrics, and failures come back as errors.
    let logs = Arc::new(Logs::new(false, None));
    let pool = FunctionPool::new(
        function.clone(),
        binary,
        Endpoint::external(endpoint).child_env(),
        1,
        logs.clone(),
        Arc::new(AtomicUsize::new(0)),
    );
    let sent = send_stream(aws, stack, mapping, &pool, from, progress).await;
    // Stopping also reads what the process wrote last, so the metrics are complete after it.
    pool.stop().await;
    let mut replayed = sent?;
    replayed.routed = logs.metrics().get(&function.binary).map(|metrics| {
        let count = |name: &str| metrics.get(name).copied().unwrap_or(0.0) as usize;
        Routed {
            published: count("EventsOut"),
            dead_lettered: count("DeadLettered"),
        }
    });
    Ok(replayed)
}

/// Every record of the mapping's stream from `from`, to `pool` in batches of the mapping's size.
async fn send_stream(
    aws: &SdkConfig,
    stack: &Stack,
    mapping: &StreamMapping,
    pool: &FunctionPool,
    from: DateTime<Utc>,
    progress: impl Fn(usize),
) -> Result<Replayed> {
    let label = &pool.spec().binary;
    let kinesis = aws_sdk_kinesis::Client::new(aws);
    let shards = kinesis
        .list_shards()
        .stream_name(&mapping.stream_name)
        .send()
        .await?;
    let mut replayed = Replayed::default();
    for shard in shards.shards() {
        let mut iterator = kinesis
            .get_shard_iterator()
            .stream_name(&mapping.stream_name)
            .shard_id(shard.shard_id())
            .shard_iterator_type(ShardIteratorType::AtTimestamp)
            .timestamp(aws_smithy_types::DateTime::from_millis(
                from.timestamp_millis(),
            ))
            .send()
            .await?
            .shard_iterator;
        while let Some(it) = iterator {
            let out = kinesis
                .get_records()
                .shard_iterator(it)
                .limit(mapping.batch_size as i32)
                .send()
                .await?;
            let at_tip = out.millis_behind_latest.unwrap_or(0) == 0;
            if out.records.is_empty() {
                if at_tip {
                    break;
                }
                iterator = out.next_shard_iterator;
                continue;
            }
            let records = out.records.len();
            let event = kinesis_event(stack, mapping, shard.shard_id(), out.records);
            let response = pool
                .invoke(&serde_json::to_value(&event)?)
                .await
                .map_err(|err| {
                    anyhow!("{label} failed on a batch of {records} records: {err}; run it again")
                })?;
            // Lambda's contract: an absent or null list means the whole batch went through.
            let failed = match &response["batchItemFailures"] {
                Value::Null => 0,
                Value::Array(failures) => failures.len(),
                _ => records,
            };
            if failed > 0 {
                bail!(
                    "the router could not publish part of the replay ({failed} records); run it again"
                );
            }
            replayed.read += records;
            replayed.batches += 1;
            progress(replayed.read);
            iterator = out.next_shard_iterator;
        }
    }
    Ok(replayed)
}

/// Lambda's Kinesis event for records of one shard, as the local event source mapping sends it.
fn kinesis_event(
    stack: &Stack,
    mapping: &StreamMapping,
    shard_id: &str,
    records: Vec<aws_sdk_kinesis::types::Record>,
) -> KinesisEvent {
    let mut event = KinesisEvent::default();
    event.records = records
        .into_iter()
        .map(|r| {
            let mut record = KinesisEventRecord::default();
            record.event_id = Some(format!("{shard_id}:{}", r.sequence_number));
            record.event_name = Some("aws:kinesis:record".into());
            record.event_source = Some("aws:kinesis".into());
            record.event_source_arn = Some(mapping.stream_arn.clone());
            record.event_version = Some("1.0".into());
            record.aws_region = Some(stack.region.clone());
            record.invoke_identity_arn =
                Some(format!("arn:aws:iam::{}:role/herald-local", stack.account));
            let kinesis = &mut record.kinesis;
            kinesis.kinesis_schema_version = Some("1.0".into());
            kinesis.sequence_number = r.sequence_number;
            kinesis.partition_key = r.partition_key.unwrap_or_default();
            kinesis.data.0 = r.data.into_inner();
            if let Some(t) = r.approximate_arrival_timestamp {
                if let Some(at) = DateTime::from_timestamp(t.secs(), t.subsec_nanos()) {
                    kinesis.approximate_arrival_timestamp.0 = at;
                }
            }
            record
        })
        .collect();
    event
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
