//! Reading a stream's shards (Kinesis or DynamoDB Streams): one task per shard, the batching
//! window, and `ParallelizationFactor` lanes handing batches to [`super::batch`].

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use aws_sdk_kinesis::types::ShardIteratorType;
use chrono::{DateTime, Utc};
use tokio::sync::watch;

use super::batch::process_kinesis_batch;
use super::stream_event::dynamodb_change;
use super::{Context, Payload, StreamRecord};
use crate::runtime::FunctionPool;
use crate::stack::{StartingPosition, StreamMapping, StreamSource};

/// One `GetRecords` answer, whichever the stream.
struct Read {
    records: Vec<StreamRecord>,
    next_iterator: Option<String>,
    millis_behind: i64,
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
    let label = pool.spec().label().to_string();
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
                    if mapping.source == crate::stack::StreamSource::Kinesis {
                        let oldest = out.records.first().map(|r| {
                            Utc::now()
                                .signed_duration_since(r.arrival)
                                .num_milliseconds()
                        });
                        ctx.activity
                            .iterator_ages
                            .stream(&mapping.stream_name, oldest.unwrap_or(0).max(0) as u64);
                    }
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
