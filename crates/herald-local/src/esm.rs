//! Event source mappings, played locally with the settings written in the template.
//!
//! **Kinesis and DynamoDB Streams** (one task per shard): reads with `GetRecords`, gathers up to `BatchSize` records
//! or until `MaximumBatchingWindowInSeconds` passes, invokes, and then follows Lambda's rules:
//! - success → checkpoint the batch;
//! - `batchItemFailures` (with `ReportBatchItemFailures`) → checkpoint before the lowest failed
//!   sequence number and retry from there; an unknown or empty identifier fails the whole batch;
//!   with `BisectBatchOnFunctionError` too, the batch is split at the failed record instead (and
//!   bisected when the failed record is the first), so a poison record ends up alone;
//! - function error (handled error, timeout, crash) → with `BisectBatchOnFunctionError` split the
//!   batch in two and try each half (splitting does not count as a retry); otherwise retry it;
//! - `MaximumRetryAttempts` exhausted, or records older than `MaximumRecordAgeInSeconds` → the
//!   batch's metadata goes to `DestinationConfig.OnFailure` in Lambda's on-failure record shape,
//!   and the shard moves on;
//! - `ParallelizationFactor` → that many lanes per shard by partition key, run concurrently, each
//!   in order.
//!
//! **SQS**: receives up to `BatchSize` messages (≤ 10 per `ReceiveMessage`) within the batching
//! window, invokes, deletes what succeeded (all but the reported `batchItemFailures`), and leaves
//! failures to the queue: they come back after the visibility timeout, and the queue's redrive
//! policy moves them to the DLQ after `maxReceiveCount` receives.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use aws_sdk_kinesis::types::ShardIteratorType;
use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::logs::Logs;
use crate::runtime::{FunctionError, FunctionPool};
use crate::stack::{SqsMapping, Stack, StartingPosition, StreamMapping, StreamSource};

/// Shared state the runner uses to tell when everything has settled.
#[derive(Default)]
pub struct Activity {
    /// Invocations running now.
    pub in_flight: Arc<AtomicUsize>,
    /// Kinesis shards that have not caught up with the stream's tip.
    pub shards_behind: AtomicUsize,
    /// Batches sent to on-failure destinations.
    pub on_failure_batches: AtomicUsize,
    /// SQS `ReceiveMessage` calls that returned messages (what Lambda's pollers bill per batch;
    /// the local runner's empty polls are not counted).
    pub sqs_receives: AtomicUsize,
    /// SQS `DeleteMessageBatch` calls.
    pub sqs_deletes: AtomicUsize,
}

/// Poll settings shared by every mapping.
#[derive(Clone, Debug)]
pub struct PollSettings {
    /// Pause between polls of an empty shard or queue. Default 100 ms (Lambda polls about once
    /// a second; locally a snappier loop shortens tests).
    pub idle_poll: Duration,
    /// Longest pause before retrying a failed Kinesis batch.
    pub max_retry_delay: Duration,
}

impl Default for PollSettings {
    fn default() -> Self {
        PollSettings {
            idle_poll: Duration::from_millis(100),
            max_retry_delay: Duration::from_secs(1),
        }
    }
}

#[derive(Clone, Debug)]
struct StreamRecord {
    shard_id: String,
    sequence_number: String,
    /// Kinesis: the partition key; DynamoDB: the item's partition key value.
    partition_key: String,
    payload: Payload,
    arrival: DateTime<Utc>,
}

#[derive(Clone, Debug)]
enum Payload {
    /// A Kinesis record's data.
    Kinesis(Vec<u8>),
    /// A DynamoDB stream record: its id, `INSERT`/`MODIFY`/`REMOVE`, and the `dynamodb` object
    /// in Lambda's JSON.
    DynamoDb {
        event_id: String,
        event_name: String,
        change: Value,
    },
}

/// One `GetRecords` answer, whichever the stream.
struct Read {
    records: Vec<StreamRecord>,
    next_iterator: Option<String>,
    millis_behind: i64,
}

/// Where a mapping's context comes from.
#[derive(Clone)]
pub struct Context {
    /// The stack (for region, account, on-failure queue URLs).
    pub stack: Arc<Stack>,
    /// Kinesis client.
    pub kinesis: aws_sdk_kinesis::Client,
    /// DynamoDB Streams client.
    pub dynamodb_streams: aws_sdk_dynamodbstreams::Client,
    /// SQS client.
    pub sqs: aws_sdk_sqs::Client,
    /// SNS client (on-failure destinations may be topics).
    pub sns: aws_sdk_sns::Client,
    /// Output.
    pub logs: Arc<Logs>,
    /// Settling state.
    pub activity: Arc<Activity>,
    /// Poll settings.
    pub settings: PollSettings,
}

/// The shard ids of a mapping's stream, and (DynamoDB) the table's partition key attribute.
async fn list_shards(
    ctx: &Context,
    mapping: &StreamMapping,
) -> Result<(Vec<String>, Option<String>)> {
    Ok(match mapping.source {
        StreamSource::Kinesis => (
            ctx.kinesis
                .list_shards()
                .stream_name(&mapping.stream_name)
                .send()
                .await?
                .shards()
                .iter()
                .map(|s| s.shard_id.clone())
                .collect(),
            None,
        ),
        StreamSource::DynamoDb => {
            let description = ctx
                .dynamodb_streams
                .describe_stream()
                .stream_arn(&mapping.stream_arn)
                .send()
                .await?
                .stream_description;
            let Some(description) = description else {
                return Ok((Vec::new(), None));
            };
            let hash_key = description
                .key_schema()
                .iter()
                .find(|k| k.key_type == aws_sdk_dynamodbstreams::types::KeyType::Hash)
                .map(|k| k.attribute_name.clone());
            let shards = description
                .shards()
                .iter()
                .filter_map(|s| s.shard_id.clone())
                .collect();
            (shards, hash_key)
        }
    })
}

/// Run a stream mapping (Kinesis or DynamoDB) until `stop` turns true.
pub async fn run_stream(
    mapping: StreamMapping,
    pool: Arc<FunctionPool>,
    ctx: Context,
    stop: watch::Receiver<bool>,
) -> Result<()> {
    // The runner counted this mapping as one shard behind; from here each shard counts itself.
    let listed = list_shards(&ctx, &mapping).await;
    let mut mapping = mapping;
    if let Ok((_, Some(hash_key))) = &listed {
        mapping.partition_key_attribute = Some(hash_key.clone());
    }
    // A JoinSet aborts the shard tasks when this task is aborted (the runner's stop).
    let mut tasks = tokio::task::JoinSet::new();
    for shard_id in listed
        .as_ref()
        .map(|(s, _)| s.as_slice())
        .unwrap_or_default()
    {
        ctx.activity.shards_behind.fetch_add(1, Ordering::SeqCst);
        let shard_id = shard_id.clone();
        tasks.spawn(run_shard(
            mapping.clone(),
            shard_id,
            pool.clone(),
            ctx.clone(),
            stop.clone(),
        ));
    }
    ctx.activity.shards_behind.fetch_sub(1, Ordering::SeqCst);
    listed?;
    tasks.join_all().await;
    Ok(())
}

async fn run_shard(
    mapping: StreamMapping,
    shard_id: String,
    pool: Arc<FunctionPool>,
    ctx: Context,
    stop: watch::Receiver<bool>,
) {
    let label = pool.spec().binary.clone();
    let mut caught_up = false;
    let set_caught_up = |now: bool, was: &mut bool| {
        if now != *was {
            if now {
                ctx.activity.shards_behind.fetch_sub(1, Ordering::SeqCst);
            } else {
                ctx.activity.shards_behind.fetch_add(1, Ordering::SeqCst);
            }
            *was = now;
        }
    };
    // The last sequence number read: after an error, reading resumes right after it.
    let mut last_read: Option<String> = None;
    let mut iterator = match shard_iterator(&ctx, &mapping, &shard_id, None).await {
        Ok(it) => it,
        Err(err) => {
            ctx.logs
                .note(&label, &format!("cannot read {shard_id}: {err:#}"));
            set_caught_up(true, &mut caught_up);
            return;
        }
    };
    let mut buffer: VecDeque<StreamRecord> = VecDeque::new();
    let mut window_started: Option<Instant> = None;
    while !*stop.borrow() {
        if buffer.len() < mapping.batch_size * mapping.parallelization_factor {
            let limit = (mapping.batch_size * mapping.parallelization_factor - buffer.len())
                .clamp(1, 10_000) as i32;
            match read(&ctx, &mapping, &shard_id, &iterator, limit).await {
                Ok(out) => {
                    tracing::debug!(shard = %shard_id, records = out.records.len(), buffered = buffer.len(), "GetRecords");
                    let behind = out.millis_behind;
                    let closed = out.next_iterator.is_none();
                    if let Some(next) = out.next_iterator {
                        iterator = next;
                    }
                    let got = out.records.len();
                    if let Some(last) = out.records.last() {
                        last_read = Some(last.sequence_number.clone());
                    }
                    buffer.extend(out.records);
                    if got > 0 && window_started.is_none() {
                        window_started = Some(Instant::now());
                    }
                    if buffer.is_empty() {
                        if closed {
                            // A closed shard (after resharding) has nothing more to give.
                            break;
                        }
                        set_caught_up(behind == 0, &mut caught_up);
                        tokio::time::sleep(ctx.settings.idle_poll).await;
                        continue;
                    }
                    if got == 0 && buffer.len() < mapping.batch_size {
                        let waited = window_started.map(|w| w.elapsed()).unwrap_or_default();
                        if waited < mapping.batching_window {
                            set_caught_up(false, &mut caught_up);
                            tokio::time::sleep(
                                ctx.settings.idle_poll.min(mapping.batching_window - waited),
                            )
                            .await;
                            continue;
                        }
                    } else if buffer.len() < mapping.batch_size
                        && window_started.map(|w| w.elapsed()).unwrap_or_default()
                            < mapping.batching_window
                    {
                        set_caught_up(false, &mut caught_up);
                        continue;
                    }
                }
                Err(err) => {
                    ctx.logs
                        .note(&label, &format!("GetRecords on {shard_id}: {err:#}"));
                    tokio::time::sleep(ctx.settings.idle_poll * 5).await;
                    // The iterator may have expired: resume right after the last record read.
                    if let Ok(it) =
                        shard_iterator(&ctx, &mapping, &shard_id, last_read.as_deref()).await
                    {
                        iterator = it;
                    }
                    continue;
                }
            }
        }
        set_caught_up(false, &mut caught_up);
        let take = buffer
            .len()
            .min(mapping.batch_size * mapping.parallelization_factor);
        let batch: Vec<StreamRecord> = buffer.drain(..take).collect();
        window_started = if buffer.is_empty() {
            None
        } else {
            Some(Instant::now())
        };
        process_lanes(&mapping, &pool, &ctx, batch).await;
    }
    set_caught_up(true, &mut caught_up);
}

/// `ParallelizationFactor`: the records are spread over that many lanes by partition key, lanes
/// run concurrently, and each lane processes its records in order in batches of `BatchSize`, so
/// one key's records stay in order.
async fn process_lanes(
    mapping: &StreamMapping,
    pool: &FunctionPool,
    ctx: &Context,
    records: Vec<StreamRecord>,
) {
    let factor = mapping.parallelization_factor.max(1);
    let mut lanes: Vec<Vec<StreamRecord>> = vec![Vec::new(); factor];
    for record in records {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        std::hash::Hash::hash(&record.partition_key, &mut hasher);
        lanes[(std::hash::Hasher::finish(&hasher) % factor as u64) as usize].push(record);
    }
    let runs = lanes
        .into_iter()
        .filter(|lane| !lane.is_empty())
        .map(|lane| async move {
            for batch in lane.chunks(mapping.batch_size) {
                process_kinesis_batch(mapping, pool, ctx, batch.to_vec()).await;
            }
        });
    futures::future::join_all(runs).await;
}

/// An iterator at the mapping's starting position, or right after `after` when given.
async fn shard_iterator(
    ctx: &Context,
    mapping: &StreamMapping,
    shard_id: &str,
    after: Option<&str>,
) -> Result<String> {
    if mapping.source == StreamSource::DynamoDb {
        use aws_sdk_dynamodbstreams::types::ShardIteratorType as Type;
        let request = ctx
            .dynamodb_streams
            .get_shard_iterator()
            .stream_arn(&mapping.stream_arn)
            .shard_id(shard_id);
        let request = match (after, mapping.starting_position) {
            (Some(after), _) => request
                .shard_iterator_type(Type::AfterSequenceNumber)
                .sequence_number(after),
            (None, StartingPosition::Latest) => request.shard_iterator_type(Type::Latest),
            // DynamoDB Streams has no AT_TIMESTAMP.
            (None, _) => request.shard_iterator_type(Type::TrimHorizon),
        };
        return Ok(request.send().await?.shard_iterator.unwrap_or_default());
    }
    let mut request = ctx
        .kinesis
        .get_shard_iterator()
        .stream_name(&mapping.stream_name)
        .shard_id(shard_id);
    if let Some(after) = after {
        request = request
            .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
            .starting_sequence_number(after);
        return Ok(request.send().await?.shard_iterator.unwrap_or_default());
    }
    request = match mapping.starting_position {
        StartingPosition::TrimHorizon => {
            request.shard_iterator_type(ShardIteratorType::TrimHorizon)
        }
        StartingPosition::Latest => request.shard_iterator_type(ShardIteratorType::Latest),
        StartingPosition::AtTimestamp(secs) => request
            .shard_iterator_type(ShardIteratorType::AtTimestamp)
            .timestamp(aws_smithy_types::DateTime::from_secs(secs)),
    };
    Ok(request.send().await?.shard_iterator.unwrap_or_default())
}

/// One `GetRecords` call on the mapping's stream.
async fn read(
    ctx: &Context,
    mapping: &StreamMapping,
    shard_id: &str,
    iterator: &str,
    limit: i32,
) -> Result<Read> {
    let to_utc = |secs: i64, nanos: u32| DateTime::from_timestamp(secs, nanos);
    match mapping.source {
        StreamSource::Kinesis => {
            let out = ctx
                .kinesis
                .get_records()
                .shard_iterator(iterator)
                .limit(limit)
                .send()
                .await
                .map_err(|e| anyhow::anyhow!(herald::aws::error_text(&e)))?;
            Ok(Read {
                millis_behind: out.millis_behind_latest.unwrap_or(0),
                next_iterator: out.next_shard_iterator,
                records: out
                    .records
                    .into_iter()
                    .map(|r| StreamRecord {
                        shard_id: shard_id.to_string(),
                        sequence_number: r.sequence_number,
                        partition_key: r.partition_key.unwrap_or_default(),
                        payload: Payload::Kinesis(r.data.into_inner()),
                        arrival: r
                            .approximate_arrival_timestamp
                            .and_then(|t| to_utc(t.secs(), t.subsec_nanos()))
                            .unwrap_or_else(Utc::now),
                    })
                    .collect(),
            })
        }
        StreamSource::DynamoDb => {
            let out = ctx
                .dynamodb_streams
                .get_records()
                .shard_iterator(iterator)
                .limit(limit.min(1000))
                .send()
                .await
                .map_err(|e| anyhow::anyhow!(herald::aws::error_text(&e)))?;
            let records = out
                .records
                .unwrap_or_default()
                .into_iter()
                .filter_map(|r| {
                    let change = r.dynamodb?;
                    let sequence_number = change.sequence_number.clone()?;
                    // The table's partition key keeps one partition's records in one lane.
                    let partition_key = change
                        .keys
                        .as_ref()
                        .and_then(|keys| match &mapping.partition_key_attribute {
                            Some(name) => keys.get(name),
                            None => keys.iter().min_by_key(|(k, _)| k.as_str()).map(|(_, v)| v),
                        })
                        .map(|v| match v {
                            aws_sdk_dynamodbstreams::types::AttributeValue::S(s) => s.clone(),
                            aws_sdk_dynamodbstreams::types::AttributeValue::N(n) => n.clone(),
                            other => format!("{other:?}"),
                        })
                        .unwrap_or_default();
                    let arrival = change
                        .approximate_creation_date_time
                        .and_then(|t| to_utc(t.secs(), t.subsec_nanos()))
                        .unwrap_or_else(Utc::now);
                    Some(StreamRecord {
                        shard_id: shard_id.to_string(),
                        sequence_number,
                        partition_key,
                        arrival,
                        payload: Payload::DynamoDb {
                            event_id: r.event_id.unwrap_or_default(),
                            event_name: r
                                .event_name
                                .map(|n| n.as_str().to_string())
                                .unwrap_or_default(),
                            change: dynamodb_change(&change),
                        },
                    })
                })
                .collect::<Vec<_>>();
            Ok(Read {
                millis_behind: 0,
                next_iterator: out.next_shard_iterator,
                records,
            })
        }
    }
}

/// A DynamoDB stream record's `dynamodb` object in Lambda's JSON.
fn dynamodb_change(change: &aws_sdk_dynamodbstreams::types::StreamRecord) -> Value {
    let image = |image: &Option<
        std::collections::HashMap<String, aws_sdk_dynamodbstreams::types::AttributeValue>,
    >| {
        image.as_ref().map(|i| {
            Value::Object(
                i.iter()
                    .map(|(k, v)| (k.clone(), attribute_json(v)))
                    .collect(),
            )
        })
    };
    let mut out = serde_json::Map::new();
    if let Some(t) = change.approximate_creation_date_time {
        out.insert("ApproximateCreationDateTime".into(), json!(t.secs()));
    }
    for (name, value) in [
        ("Keys", image(&change.keys)),
        ("NewImage", image(&change.new_image)),
        ("OldImage", image(&change.old_image)),
    ] {
        if let Some(value) = value {
            out.insert(name.into(), value);
        }
    }
    out.insert("SequenceNumber".into(), json!(change.sequence_number));
    if let Some(size) = change.size_bytes {
        out.insert("SizeBytes".into(), json!(size));
    }
    if let Some(view) = &change.stream_view_type {
        out.insert("StreamViewType".into(), json!(view.as_str()));
    }
    Value::Object(out)
}

/// DynamoDB's attribute-value JSON (`{"S": "..."}`, `{"N": "1"}`, ...).
fn attribute_json(value: &aws_sdk_dynamodbstreams::types::AttributeValue) -> Value {
    use aws_sdk_dynamodbstreams::types::AttributeValue as A;
    let b64 = |b: &aws_smithy_types::Blob| {
        Value::String(base64::engine::general_purpose::STANDARD.encode(b.as_ref()))
    };
    match value {
        A::S(s) => json!({ "S": s }),
        A::N(n) => json!({ "N": n }),
        A::B(b) => json!({ "B": b64(b) }),
        A::Bool(b) => json!({ "BOOL": b }),
        A::Null(b) => json!({ "NULL": b }),
        A::Ss(v) => json!({ "SS": v }),
        A::Ns(v) => json!({ "NS": v }),
        A::Bs(v) => json!({ "BS": v.iter().map(b64).collect::<Vec<_>>() }),
        A::L(v) => json!({ "L": v.iter().map(attribute_json).collect::<Vec<_>>() }),
        A::M(m) => {
            json!({ "M": m.iter().map(|(k, v)| (k.clone(), attribute_json(v))).collect::<serde_json::Map<_, _>>() })
        }
        _ => Value::Null,
    }
}

/// Why a batch left the shard without success.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FailureCondition {
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

async fn process_kinesis_batch(
    mapping: &StreamMapping,
    pool: &FunctionPool,
    ctx: &Context,
    records: Vec<StreamRecord>,
) {
    let label = &pool.spec().binary;
    // (records, retries so far, invocations so far)
    let mut work: VecDeque<(Vec<StreamRecord>, i64, u32)> = VecDeque::from([(records, 0, 0)]);
    while let Some((batch, retries, invocations)) = work.pop_front() {
        let (batch, expired): (Vec<_>, Vec<_>) = match mapping.max_record_age {
            Some(max_age) => batch.into_iter().partition(|r| {
                Utc::now()
                    .signed_duration_since(r.arrival)
                    .to_std()
                    .unwrap_or_default()
                    <= max_age
            }),
            None => (batch, Vec::new()),
        };
        if !expired.is_empty() {
            on_failure(
                mapping,
                ctx,
                label,
                &expired,
                FailureCondition::RecordAgeExceeded,
                invocations,
                None,
            )
            .await;
        }
        if batch.is_empty() {
            continue;
        }
        let event = stream_event(mapping, ctx, &batch);
        tracing::debug!(
            records = batch.len(),
            retries,
            "invoking with a Kinesis batch"
        );
        let result = pool.invoke(&event).await;
        let error = match result {
            Ok(response) => {
                if !mapping.report_batch_item_failures {
                    continue;
                }
                match first_failed(&response, &batch) {
                    Ok(None) => continue,
                    Ok(Some(index)) if index > 0 && mapping.bisect_on_error => {
                        // Checkpoint before the failure and split there: the remaining records
                        // are tried again as a batch of their own (a split, not a retry).
                        work.push_front((batch[index..].to_vec(), retries, invocations + 1));
                        continue;
                    }
                    Ok(Some(index)) if index == 0 && mapping.bisect_on_error && batch.len() > 1 => {
                        // The first record failed: bisect to isolate it.
                        bisect(&mut work, batch, retries, invocations + 1);
                        continue;
                    }
                    Ok(Some(index)) => {
                        // Checkpoint before the lowest failure; retry from there.
                        let remaining = batch[index..].to_vec();
                        retry_or_give_up(
                            mapping,
                            ctx,
                            label,
                            &mut work,
                            remaining,
                            retries,
                            invocations + 1,
                            None,
                        )
                        .await;
                        continue;
                    }
                    Err(reason) => FunctionError::BadResponse(reason),
                }
            }
            Err(err) => err,
        };
        ctx.logs
            .note(label, &format!("batch of {} failed: {error}", batch.len()));
        if mapping.bisect_on_error && batch.len() > 1 {
            bisect(&mut work, batch, retries, invocations + 1);
            continue;
        }
        retry_or_give_up(
            mapping,
            ctx,
            label,
            &mut work,
            batch,
            retries,
            invocations + 1,
            Some(&error),
        )
        .await;
    }
}

/// Split a batch in two and try each half, first half first (splitting is not a retry).
fn bisect(
    work: &mut VecDeque<(Vec<StreamRecord>, i64, u32)>,
    mut batch: Vec<StreamRecord>,
    retries: i64,
    invocations: u32,
) {
    let second = batch.split_off(batch.len() / 2);
    work.push_front((second, retries, invocations));
    work.push_front((batch, retries, invocations));
}

#[allow(clippy::too_many_arguments)]
async fn retry_or_give_up(
    mapping: &StreamMapping,
    ctx: &Context,
    label: &str,
    work: &mut VecDeque<(Vec<StreamRecord>, i64, u32)>,
    batch: Vec<StreamRecord>,
    retries: i64,
    invocations: u32,
    error: Option<&FunctionError>,
) {
    if mapping.max_retry_attempts >= 0 && retries >= mapping.max_retry_attempts {
        on_failure(
            mapping,
            ctx,
            label,
            &batch,
            FailureCondition::RetryAttemptsExhausted,
            invocations,
            error,
        )
        .await;
        return;
    }
    let delay = (Duration::from_millis(50) * 2u32.saturating_pow(retries.min(10) as u32))
        .min(ctx.settings.max_retry_delay);
    tokio::time::sleep(delay).await;
    work.push_front((batch, retries + 1, invocations));
}

/// Index of the lowest failed record, `None` when nothing failed, or why the response is invalid
/// (then the whole batch counts as failed, as on Lambda).
fn first_failed(response: &Value, batch: &[StreamRecord]) -> Result<Option<usize>, String> {
    let Some(failures) = response.get("batchItemFailures") else {
        return Ok(None);
    };
    let Some(failures) = failures.as_array() else {
        return if failures.is_null() {
            Ok(None)
        } else {
            Err("batchItemFailures is not a list".into())
        };
    };
    let mut lowest: Option<usize> = None;
    for failure in failures {
        let id = failure
            .get("itemIdentifier")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if id.is_empty() {
            return Err("a batch item failure has an empty itemIdentifier".into());
        }
        let index = batch
            .iter()
            .position(|r| r.sequence_number == id)
            .ok_or_else(|| format!("itemIdentifier {id} is not in the batch"))?;
        lowest = Some(lowest.map_or(index, |l| l.min(index)));
    }
    Ok(lowest)
}

fn stream_event(mapping: &StreamMapping, ctx: &Context, batch: &[StreamRecord]) -> Value {
    let b64 = base64::engine::general_purpose::STANDARD;
    let records: Vec<Value> = batch
        .iter()
        .map(|r| match &r.payload {
            Payload::DynamoDb {
                event_id,
                event_name,
                change,
            } => json!({
                "eventID": event_id,
                "eventName": event_name,
                "eventVersion": "1.1",
                "eventSource": "aws:dynamodb",
                "awsRegion": ctx.stack.region,
                "dynamodb": change,
                "eventSourceARN": mapping.stream_arn,
            }),
            Payload::Kinesis(data) => json!({
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": r.partition_key,
                    "sequenceNumber": r.sequence_number,
                    "data": b64.encode(data),
                    "approximateArrivalTimestamp": r.arrival.timestamp_millis() as f64 / 1000.0,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": format!("{}:{}", r.shard_id, r.sequence_number),
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": format!("arn:aws:iam::{}:role/herald-local", ctx.stack.account),
                "awsRegion": ctx.stack.region,
                "eventSourceARN": mapping.stream_arn,
            }),
        })
        .collect();
    json!({ "Records": records })
}

fn batch_info_key(mapping: &StreamMapping) -> &'static str {
    match mapping.source {
        StreamSource::Kinesis => "KinesisBatchInfo",
        StreamSource::DynamoDb => "DDBStreamBatchInfo",
    }
}

/// Send Lambda's on-failure record for `batch` to the mapping's destination (if any).
async fn on_failure(
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
    let sent = if destination.starts_with("arn:aws:sqs:") {
        match queue_url(ctx, destination).await {
            Ok(url) => ctx
                .sqs
                .send_message()
                .queue_url(url)
                .message_body(body)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| herald::aws::error_text(&e)),
            Err(err) => Err(err.to_string()),
        }
    } else {
        ctx.sns
            .publish()
            .topic_arn(destination)
            .message(body)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| herald::aws::error_text(&e))
    };
    if let Err(err) = sent {
        ctx.logs.note(
            label,
            &format!("could not send the on-failure record: {err}"),
        );
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

/// Run an SQS mapping with `concurrency` pollers until `stop` turns true.
pub async fn run_sqs(
    mapping: SqsMapping,
    pool: Arc<FunctionPool>,
    ctx: Context,
    concurrency: usize,
    stop: watch::Receiver<bool>,
) {
    // A JoinSet aborts the pollers when this task is aborted (the runner's stop).
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        tasks.spawn(poll_sqs(
            mapping.clone(),
            pool.clone(),
            ctx.clone(),
            stop.clone(),
        ));
    }
    tasks.join_all().await;
}

async fn poll_sqs(
    mapping: SqsMapping,
    pool: Arc<FunctionPool>,
    ctx: Context,
    stop: watch::Receiver<bool>,
) {
    use aws_sdk_sqs::types::MessageSystemAttributeName;
    let label = pool.spec().binary.clone();
    while !*stop.borrow() {
        let mut messages = Vec::new();
        let started = Instant::now();
        while messages.len() < mapping.batch_size && !*stop.borrow() {
            let want =
                (mapping.batch_size - messages.len()).min(herald::limits::SQS_MAX_RECEIVE) as i32;
            let received = ctx
                .sqs
                .receive_message()
                .queue_url(&mapping.queue_url)
                .max_number_of_messages(want)
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .message_attribute_names("All")
                .send()
                .await;
            match received {
                Ok(out) => {
                    let got = out.messages.unwrap_or_default();
                    let empty = got.is_empty();
                    if !empty {
                        ctx.activity.sqs_receives.fetch_add(1, Ordering::Relaxed);
                    }
                    messages.extend(got);
                    let window_over = started.elapsed() >= mapping.batching_window;
                    if !messages.is_empty()
                        && (window_over || (empty && mapping.batching_window.is_zero()))
                    {
                        break;
                    }
                    if empty {
                        tokio::time::sleep(ctx.settings.idle_poll).await;
                    }
                }
                Err(err) => {
                    ctx.logs.note(
                        &label,
                        &format!("ReceiveMessage: {}", herald::aws::error_text(&err)),
                    );
                    tokio::time::sleep(ctx.settings.idle_poll * 5).await;
                }
            }
        }
        if messages.is_empty() {
            continue;
        }
        let event = sqs_event(&mapping, &ctx, &messages);
        tracing::debug!(queue = %mapping.queue_url, messages = messages.len(), "invoking with an SQS batch");
        let failed: Vec<String> = match pool.invoke(&event).await {
            Ok(response) if mapping.report_batch_item_failures => {
                match failed_ids(&response, &messages) {
                    Ok(ids) => ids,
                    Err(reason) => {
                        ctx.logs.note(
                            &label,
                            &format!("invalid batch response ({reason}): the whole batch failed"),
                        );
                        messages
                            .iter()
                            .filter_map(|m| m.message_id.clone())
                            .collect()
                    }
                }
            }
            Ok(_) => Vec::new(),
            Err(err) => {
                ctx.logs.note(
                    &label,
                    &format!("batch of {} failed: {err}", messages.len()),
                );
                messages
                    .iter()
                    .filter_map(|m| m.message_id.clone())
                    .collect()
            }
        };
        // Delete what succeeded; failures reappear after the visibility timeout.
        let done: Vec<_> = messages
            .iter()
            .filter(|m| !m.message_id.as_ref().is_some_and(|id| failed.contains(id)))
            .collect();
        for chunk in done.chunks(10) {
            let mut request = ctx.sqs.delete_message_batch().queue_url(&mapping.queue_url);
            for (i, message) in chunk.iter().enumerate() {
                request = request.entries(
                    aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                        .id(format!("m{i}"))
                        .receipt_handle(message.receipt_handle.clone().unwrap_or_default())
                        .build()
                        .expect("id and receipt handle are set"),
                );
            }
            ctx.activity.sqs_deletes.fetch_add(1, Ordering::Relaxed);
            match request.send().await {
                Ok(out) if !out.failed.is_empty() => {
                    // Those messages come back after the visibility timeout and are processed
                    // again (subscribers are idempotent); say so rather than hide it.
                    let failed: Vec<String> = out
                        .failed
                        .iter()
                        .map(|f| format!("{}: {}", f.id, f.code))
                        .collect();
                    ctx.logs.note(
                        &label,
                        &format!("DeleteMessageBatch failed for {}", failed.join(", ")),
                    );
                }
                Ok(_) => {}
                Err(err) => ctx.logs.note(
                    &label,
                    &format!("DeleteMessageBatch: {}", herald::aws::error_text(&err)),
                ),
            }
        }
    }
}

fn failed_ids(
    response: &Value,
    messages: &[aws_sdk_sqs::types::Message],
) -> Result<Vec<String>, String> {
    let Some(failures) = response.get("batchItemFailures").filter(|f| !f.is_null()) else {
        return Ok(Vec::new());
    };
    let failures = failures
        .as_array()
        .ok_or("batchItemFailures is not a list")?;
    failures
        .iter()
        .map(|f| {
            let id = f
                .get("itemIdentifier")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if id.is_empty() {
                Err("empty itemIdentifier".to_string())
            } else if !messages.iter().any(|m| m.message_id.as_deref() == Some(id)) {
                Err(format!("itemIdentifier {id} is not in the batch"))
            } else {
                Ok(id.to_string())
            }
        })
        .collect()
}

fn sqs_event(
    mapping: &SqsMapping,
    ctx: &Context,
    messages: &[aws_sdk_sqs::types::Message],
) -> Value {
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            let attributes: serde_json::Map<String, Value> = m
                .attributes
                .iter()
                .flatten()
                .map(|(k, v)| (k.as_str().to_string(), Value::String(v.clone())))
                .collect();
            let message_attributes: serde_json::Map<String, Value> = m
                .message_attributes
                .iter()
                .flatten()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        json!({
                            "stringValue": v.string_value,
                            "binaryValue": v.binary_value.as_ref().map(|b| base64::engine::general_purpose::STANDARD.encode(b.as_ref())),
                            "stringListValues": [],
                            "binaryListValues": [],
                            "dataType": v.data_type,
                        }),
                    )
                })
                .collect();
            json!({
                "messageId": m.message_id,
                "receiptHandle": m.receipt_handle,
                "body": m.body,
                "attributes": attributes,
                "messageAttributes": message_attributes,
                "md5OfBody": m.md5_of_body,
                "eventSource": "aws:sqs",
                "eventSourceARN": mapping.queue_arn,
                "awsRegion": ctx.stack.region,
            })
        })
        .collect();
    json!({ "Records": records })
}
