//! Replay from the archive: events older than the stream keeps, read back from S3
//! ([`herald_local::archive`]), sent either through the stack's router function (every subscriber, as
//! the stream would) or straight into one subscriber's queue. The second is how a new consumer
//! backfills its history: it gets what its subscription's filter policy lets through, with the
//! attributes SNS would have put on it, and no other queue sees the events again (they would skip
//! them as duplicates, but should not pay for them).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{anyhow, bail, Result};
use aws_config::SdkConfig;
use serde_json::Value;

use crate::expiry::{Expired, Horizon};
use crate::filter_policy;
use crate::replay::{failed_records, replay_function, Routed, Router};
use herald_local::archive::{self, Archived, Query};
use herald_local::stack::{MappingSpec, Stack};
use herald_local::stream::{lambda_event, EventSource, Payload, Position, Record, Stream, ToTip};

/// Where archived events go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// Through the router: every subscriber whose policy wants them.
    Router,
    /// Into this subscriber's queue only (a function's short name, e.g. `analytics`).
    Subscriber(String),
}

/// What a replay from the archive did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Backfilled {
    /// Archive objects read.
    pub objects: usize,
    /// Events read in the range.
    pub read: usize,
    /// Events sent on.
    pub sent: usize,
    /// Events the subscriber's filter policy keeps out (a subscriber target only).
    pub filtered_out: usize,
    /// Archived lines that are not events.
    pub unreadable: usize,
    /// What the router reported (a router target only).
    pub routed: Option<Routed>,
}

/// Read `query` from the stack's archive and send it to `target`. The router runs as a Lambda
/// process from `bin_dir`, or a deployed stack's own (as for a stream replay).
pub async fn replay_archive(
    aws: &SdkConfig,
    stack: &Stack,
    bin_dir: Option<&Path>,
    query: &Query,
    target: &Target,
    expired: Expired,
    progress: impl Fn(usize),
) -> Result<Backfilled> {
    let (delivery, root) = archive::archive_of(stack)?;
    let read = archive::read(
        &herald_local::s3::client(aws),
        &delivery.bucket,
        &root,
        query,
    )
    .await?;
    let mut done =
        replay_events(aws, stack, bin_dir, &read.events, target, expired, progress).await?;
    done.objects = read.objects;
    done.unreadable = read.unreadable;
    Ok(done)
}

/// How many hours the stack's stream keeps records (`RetentionPeriodHours`).
pub async fn stream_retention_hours(aws: &SdkConfig, stack: &Stack) -> Result<i64> {
    let (_, mapping) = replay_function(stack)?;
    let summary = aws_sdk_kinesis::Client::new(aws)
        .describe_stream_summary()
        .stream_name(&mapping.stream_name)
        .send()
        .await
        .map_err(|e| anyhow!(herald::aws::error_text(&e)))?;
    Ok(summary
        .stream_description_summary
        .map(|s| i64::from(s.retention_period_hours))
        .unwrap_or(24))
}

/// The stack's stream from `query.from` to its tip, as events (for a replay that filters or
/// targets one subscriber); records that are not events are left out.
pub async fn stream_events(aws: &SdkConfig, stack: &Stack, query: &Query) -> Result<Vec<Archived>> {
    let (_, mapping) = replay_function(stack)?;
    let stream = Stream::Kinesis {
        client: aws_sdk_kinesis::Client::new(aws),
        name: mapping.stream_name.clone(),
    };
    let start = Position::AtMillis(query.from.map(|f| f.timestamp_millis()).unwrap_or(0));
    let mut events = Vec::new();
    for shard in stream.shards().await?.shards {
        let mut reader = ToTip::open(&stream, &shard.id, &start).await?;
        while let Some(records) = reader.next(10_000).await? {
            for record in records {
                let Payload::Kinesis(raw) = record.payload else {
                    continue;
                };
                let Ok(event) = herald::Envelope::parse(&raw) else {
                    continue;
                };
                let wanted = query.to.is_none_or(|to| event.time() < to)
                    && (query.types.is_empty()
                        || query.types.iter().any(|t| t == event.event_type()));
                if wanted {
                    events.push(Archived {
                        raw,
                        event,
                        object: shard.id.clone(),
                    });
                }
            }
        }
    }
    events.sort_by_key(|a| a.event.time());
    Ok(events)
}

/// Send `events` to `target`.
pub async fn replay_events(
    aws: &SdkConfig,
    stack: &Stack,
    bin_dir: Option<&Path>,
    events: &[Archived],
    target: &Target,
    expired: Expired,
    progress: impl Fn(usize),
) -> Result<Backfilled> {
    // Events older than the stack's idempotency records: refused as a whole, before anything
    // is sent (see `expiry`), unless the operator resends them on purpose.
    let horizon = Horizon::of(stack, expired);
    let old: Vec<&Archived> = events
        .iter()
        .filter(|e| horizon.check(e.event.time()).is_err())
        .collect();
    if let Some(first) = old.first() {
        bail!(
            "{} of the {} events happened before {}: {} (the first: {}); replay from a later \
             time, or pass --resend-expired",
            old.len(),
            events.len(),
            horizon
                .oldest(chrono::Utc::now())
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            horizon.check(first.event.time()).unwrap_err(),
            first.event.id()
        );
    }
    let mut done = Backfilled {
        read: events.len(),
        ..Backfilled::default()
    };
    let read = events;
    match target {
        Target::Subscriber(name) => {
            let (sent, filtered_out) = to_subscriber(aws, stack, name, read, progress).await?;
            done.sent = sent;
            done.filtered_out = filtered_out;
        }
        Target::Router => {
            let (sent, routed) = to_router(aws, stack, bin_dir, read, progress).await?;
            done.sent = sent;
            done.routed = routed;
        }
    }
    Ok(done)
}

/// The queue a subscriber reads and its subscription's filter policy (none: everything).
pub fn subscriber_queue(stack: &Stack, name: &str) -> Result<(String, Option<Value>)> {
    let function = stack.function(name)?;
    let queue = stack
        .mappings
        .iter()
        .find_map(|m| match m {
            MappingSpec::Sqs(q) if q.function == function.logical_id => Some(q),
            _ => None,
        })
        .ok_or_else(|| anyhow!("{name} reads no SQS queue: it is no subscriber"))?;
    let subscription = stack
        .resources
        .values()
        .find(|p| {
            p.kind == "AWS::SNS::Subscription"
                && p.attributes.get("herald:Endpoint") == Some(&queue.queue_arn)
        })
        .ok_or_else(|| anyhow!("{name}'s queue is subscribed to no topic"))?;
    let policy = subscription
        .attributes
        .get("herald:FilterPolicy")
        .map(|text| serde_json::from_str(text))
        .transpose()?;
    Ok((queue.queue_url.clone(), policy))
}

async fn to_subscriber(
    aws: &SdkConfig,
    stack: &Stack,
    name: &str,
    events: &[Archived],
    progress: impl Fn(usize),
) -> Result<(usize, usize)> {
    use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};
    let (queue_url, policy) = subscriber_queue(stack, name)?;
    let sqs = aws_sdk_sqs::Client::new(aws);
    let mut wanted = Vec::new();
    let mut filtered_out = 0;
    for archived in events {
        let attributes = herald::router::message_attributes(archived.event.routing_attributes());
        let values: BTreeMap<String, String> = attributes
            .iter()
            .map(|a| (a.name.to_string(), a.value.clone()))
            .collect();
        match &policy {
            Some(policy) if !filter_policy::matches(policy, &values)? => filtered_out += 1,
            _ => wanted.push((archived, attributes)),
        }
    }
    let mut sent = 0;
    // Ten entries and well under SQS's 256 KiB per request.
    let mut batch: Vec<SendMessageBatchRequestEntry> = Vec::new();
    let mut bytes = 0;
    for (i, (archived, attributes)) in wanted.iter().enumerate() {
        let body = String::from_utf8_lossy(&archived.raw).into_owned();
        if !batch.is_empty() && (batch.len() == 10 || bytes + body.len() > 200 * 1024) {
            sent += send_batch(&sqs, &queue_url, std::mem::take(&mut batch)).await?;
            bytes = 0;
            progress(sent);
        }
        bytes += body.len();
        let mut entry = SendMessageBatchRequestEntry::builder()
            .id(format!("e{i}"))
            .message_body(body);
        for attribute in attributes {
            entry = entry.message_attributes(
                attribute.name,
                MessageAttributeValue::builder()
                    .data_type(attribute.data_type)
                    .string_value(&attribute.value)
                    .build()?,
            );
        }
        batch.push(entry.build()?);
    }
    if !batch.is_empty() {
        sent += send_batch(&sqs, &queue_url, batch).await?;
        progress(sent);
    }
    Ok((sent, filtered_out))
}

/// One `SendMessageBatch`; entries SQS refuses are an error naming them (nothing dropped quietly).
async fn send_batch(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    entries: Vec<aws_sdk_sqs::types::SendMessageBatchRequestEntry>,
) -> Result<usize> {
    let count = entries.len();
    let out = sqs
        .send_message_batch()
        .queue_url(queue_url)
        .set_entries(Some(entries))
        .send()
        .await
        .map_err(|e| {
            anyhow!(
                "SendMessageBatch to {queue_url}: {}",
                herald::aws::error_text(&e)
            )
        })?;
    if let Some(failed) = out.failed.first() {
        bail!(
            "{} of {count} messages refused by {queue_url} (first: {} {}); run the backfill again",
            out.failed.len(),
            failed.code,
            failed.message.clone().unwrap_or_default()
        );
    }
    Ok(count)
}

async fn to_router(
    aws: &SdkConfig,
    stack: &Stack,
    bin_dir: Option<&Path>,
    events: &[Archived],
    progress: impl Fn(usize),
) -> Result<(usize, Option<Routed>)> {
    let router = Router::start(aws, stack, bin_dir)?;
    let mapping = router.mapping;
    let source = EventSource::of(stack, mapping);
    let mut sent = 0;
    let result = async {
        for (n, chunk) in events.chunks(mapping.batch_size.max(1)).enumerate() {
            // The archive keeps no sequence numbers: positions in the replay stand in.
            let records: Vec<Record> = chunk
                .iter()
                .enumerate()
                .map(|(i, archived)| Record {
                    shard_id: "archive".into(),
                    sequence_number: format!("{:020}", n * mapping.batch_size + i),
                    partition_key: archived.event.partition_key().to_string(),
                    arrival: archived.event.time(),
                    payload: Payload::Kinesis(archived.raw.clone()),
                })
                .collect();
            let event = lambda_event(source, &records);
            let response = router
                .invoke(&event)
                .await
                .map_err(|err| anyhow!("the router failed on a batch from the archive: {err:#}; run it again"))?;
            let failed = failed_records(&response, chunk.len());
            if failed > 0 {
                bail!("the router could not publish part of the replay ({failed} events); run it again");
            }
            sent += chunk.len();
            progress(sent);
        }
        Ok::<_, anyhow::Error>(())
    }
    .await;
    let routed = router.stop().await;
    result?;
    Ok((sent, routed))
}
