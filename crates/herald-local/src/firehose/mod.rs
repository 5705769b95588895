//! Kinesis Data Firehose, played locally for a delivery stream that reads a Kinesis stream into
//! S3 (the emulator's Firehose reads no stream): as Lambda's mappings are played by
//! [`crate::esm`], with the template's settings.
//!
//! - Every shard is read from where the runner started (a new delivery stream, like Firehose's
//!   `LATEST`), from its checkpoint after a restart, and a shard found later (a reshard's child)
//!   from its start.
//! - Each record is partitioned by the `MetadataExtractionQuery` keys (JQ `{key: .field}`), its
//!   prefix rendered (`!{partitionKeyFromQuery:..}`, `!{timestamp:..}` of its arrival) and
//!   buffered with the delimiter after it; a record that is not JSON, or lacks a key, goes under
//!   `ErrorOutputPrefix` with the reason, as Firehose writes it.
//! - The buffer is delivered when `BufferingHints.IntervalInSeconds` has passed since its first
//!   record, or it holds `SizeInMBs`: one object per prefix (`GZIP` compressed when asked),
//!   then the shards' checkpoints move past what was delivered. Records are delivered at least
//!   once, as on AWS: a runner stopped between an upload and its checkpoint delivers them again.

pub mod prefix;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use aws_sdk_kinesis::types::ShardIteratorType;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::esm::{pause, Activity, Checkpoints};
use crate::logs::Logs;
use crate::stack::DeliverySpec;

/// What a delivery stream's task uses.
#[derive(Clone)]
pub struct Context {
    /// Kinesis client.
    pub kinesis: aws_sdk_kinesis::Client,
    /// S3 client (path-style on an emulator).
    pub s3: aws_sdk_s3::Client,
    /// Where shards have got to, kept across restarts.
    pub checkpoints: Arc<Checkpoints>,
    /// Output.
    pub logs: Arc<Logs>,
    /// Settling state (`archive_buffered`).
    pub activity: Arc<Activity>,
    /// Pause between reads of a stream with nothing new.
    pub idle_poll: Duration,
}

/// Records read and not yet delivered, by object prefix.
#[derive(Default)]
struct Buffer {
    by_prefix: BTreeMap<String, Vec<u8>>,
    records: usize,
    bytes: usize,
    since: Option<Instant>,
    /// The last sequence number buffered per shard: its checkpoint once delivered.
    last: BTreeMap<String, String>,
}

/// Play `spec` until `stop` turns true. `started_millis`: where a delivery stream without
/// checkpoints starts reading (the runner's start).
pub async fn run_delivery(
    spec: DeliverySpec,
    ctx: Context,
    started_millis: i64,
    stop: watch::Receiver<bool>,
) -> Result<()> {
    let label = format!("firehose:{}", spec.logical_id);
    let identity = loop {
        match stream_identity(&ctx, &spec.stream_name).await {
            Ok(identity) => break identity,
            Err(err) => {
                ctx.logs.note(
                    &label,
                    &format!("cannot describe {}: {err:#}", spec.stream_name),
                );
                if !pause(Duration::from_secs(1), &stop).await {
                    return Ok(());
                }
            }
        }
    };
    let saved = ctx
        .checkpoints
        .mapping(&spec.logical_id, &identity)
        .map(|m| m.shards)
        .unwrap_or_default();
    let mut first_listing = true;
    let mut known: BTreeSet<String> = BTreeSet::new();
    let mut iterators: BTreeMap<String, String> = BTreeMap::new();
    let mut buffer = Buffer::default();
    // Per shard: where it started, and the last record delivered.
    let mut starts: BTreeMap<String, Start> = BTreeMap::new();
    let mut delivered: BTreeMap<String, String> = BTreeMap::new();
    let mut last_listing = Instant::now() - Duration::from_secs(60);
    while !*stop.borrow() {
        if last_listing.elapsed() >= Duration::from_secs(2) {
            last_listing = Instant::now();
            match list_shards(&ctx, &spec.stream_name).await {
                Ok(shards) => {
                    for shard in shards {
                        if !known.insert(shard.clone()) {
                            continue;
                        }
                        let start = match saved.get(&shard) {
                            Some(s) => match (&s.after, s.since_millis) {
                                (Some(after), _) => Start::After(after.clone()),
                                (None, Some(since)) => Start::At(since),
                                (None, None) => Start::TrimHorizon,
                            },
                            None if first_listing => Start::At(started_millis),
                            None => Start::TrimHorizon,
                        };
                        // Where reading starts is saved before anything is buffered: a runner
                        // stopped before the first delivery starts there again (nothing read
                        // and not yet delivered is lost).
                        let since = match &start {
                            Start::At(millis) => Some(*millis),
                            _ => None,
                        };
                        if let Err(err) =
                            ctx.checkpoints
                                .begin(&spec.logical_id, &identity, &shard, since)
                        {
                            ctx.logs
                                .note(&label, &format!("cannot save a checkpoint: {err:#}"));
                        }
                        starts.insert(shard.clone(), start.clone());
                        match iterator(&ctx, &spec.stream_name, &shard, &start).await {
                            Ok(it) => {
                                iterators.insert(shard, it);
                            }
                            Err(err) => {
                                known.remove(&shard);
                                ctx.logs
                                    .note(&label, &format!("GetShardIterator on {shard}: {err:#}"));
                            }
                        }
                    }
                    first_listing = false;
                }
                Err(err) => ctx
                    .logs
                    .note(&label, &format!("cannot list shards: {err:#}")),
            }
        }
        let mut read_any = false;
        let mut ended = Vec::new();
        for (shard, it) in iterators.iter_mut() {
            let page = match ctx
                .kinesis
                .get_records()
                .shard_iterator(it.as_str())
                .limit(1000)
                .send()
                .await
            {
                Ok(page) => page,
                Err(err) => {
                    ctx.logs.note(
                        &label,
                        &format!("GetRecords on {shard}: {}", herald::aws::error_text(&err)),
                    );
                    // Reopened after the last record read (buffered or delivered), or where
                    // the shard started.
                    let resume = match buffer.last.get(shard).or_else(|| delivered.get(shard)) {
                        Some(after) => Start::After(after.clone()),
                        None => starts.get(shard).cloned().unwrap_or(Start::TrimHorizon),
                    };
                    if let Ok(fresh) = iterator(&ctx, &spec.stream_name, shard, &resume).await {
                        *it = fresh;
                    }
                    continue;
                }
            };
            for record in page.records() {
                read_any = true;
                let arrival = record
                    .approximate_arrival_timestamp
                    .and_then(|t| DateTime::from_timestamp(t.secs(), t.subsec_nanos()))
                    .unwrap_or_else(Utc::now);
                add(&spec, &mut buffer, record.data.as_ref(), arrival);
                buffer
                    .last
                    .insert(shard.clone(), record.sequence_number.clone());
            }
            match page.next_shard_iterator {
                Some(next) => *it = next,
                // A closed shard read to its end, maybe in the answer with its last records:
                // the iterator is spent, and reading it again would archive those twice.
                None => ended.push(shard.clone()),
            }
        }
        for shard in &ended {
            iterators.remove(shard);
        }
        ctx.activity
            .archive_buffered
            .store(buffer.records, Ordering::SeqCst);
        let due = buffer
            .since
            .is_some_and(|since| since.elapsed() >= spec.buffer_interval)
            || buffer.bytes >= spec.buffer_bytes;
        if due {
            match deliver(&spec, &ctx, &buffer).await {
                Ok(()) => {
                    for (shard, sequence) in &buffer.last {
                        if let Err(err) =
                            ctx.checkpoints
                                .commit(&spec.logical_id, &identity, shard, sequence)
                        {
                            ctx.logs
                                .note(&label, &format!("cannot save a checkpoint: {err:#}"));
                        }
                        delivered.insert(shard.clone(), sequence.clone());
                    }
                    buffer = Buffer::default();
                    ctx.activity.archive_buffered.store(0, Ordering::SeqCst);
                }
                // Kept, and delivered again at the next turn (objects already written stay:
                // at least once, as on AWS).
                Err(err) => ctx.logs.note(
                    &label,
                    &format!(
                        "delivery to s3://{} failed (retrying): {err:#}",
                        spec.bucket
                    ),
                ),
            }
        }
        if !read_any && !pause(ctx.idle_poll, &stop).await {
            break;
        }
    }
    Ok(())
}

/// Partition one record and add it to the buffer (under the error prefix when it cannot be).
fn add(spec: &DeliverySpec, buffer: &mut Buffer, data: &[u8], arrival: DateTime<Utc>) {
    let (prefix, line) = match partition(spec, data) {
        Ok(keys) => match prefix::render(&spec.prefix, &keys, arrival, None) {
            Ok(prefix) => (prefix, data.to_vec()),
            Err(err) => error_line(spec, data, arrival, &err.to_string()),
        },
        Err(reason) => error_line(spec, data, arrival, &reason),
    };
    let entry = buffer.by_prefix.entry(prefix).or_default();
    entry.extend_from_slice(&line);
    entry.extend_from_slice(spec.delimiter.as_bytes());
    buffer.records += 1;
    buffer.bytes += line.len() + spec.delimiter.len();
    buffer.since.get_or_insert_with(Instant::now);
}

/// The record's partition keys, or why it has none.
fn partition(spec: &DeliverySpec, data: &[u8]) -> Result<BTreeMap<String, String>, String> {
    if spec.partition_keys.is_empty() {
        return Ok(BTreeMap::new());
    }
    let value: Value =
        serde_json::from_slice(data).map_err(|e| format!("the record is not JSON: {e}"))?;
    spec.partition_keys
        .iter()
        .map(|(key, path)| {
            let found = path.iter().try_fold(&value, |v, field| v.get(field));
            match found {
                Some(Value::String(s)) if !s.is_empty() => Ok((key.clone(), s.clone())),
                Some(Value::Number(n)) => Ok((key.clone(), n.to_string())),
                Some(Value::Bool(b)) => Ok((key.clone(), b.to_string())),
                _ => Err(format!("the record has no value at .{}", path.join("."))),
            }
        })
        .collect()
}

/// A record that failed partitioning, as Firehose writes it under the error prefix.
fn error_line(
    spec: &DeliverySpec,
    data: &[u8],
    arrival: DateTime<Utc>,
    reason: &str,
) -> (String, Vec<u8>) {
    let prefix = prefix::render(
        &spec.error_prefix,
        &BTreeMap::new(),
        arrival,
        Some("processing-failed"),
    )
    .unwrap_or_else(|_| "errors/processing-failed/".into());
    let line = json!({
        "rawData": base64::engine::general_purpose::STANDARD.encode(data),
        "errorCode": "DynamicPartitioning.MetadataExtractionFailed",
        "errorMessage": reason,
        "approximateArrivalTimestamp": arrival.timestamp_millis(),
    });
    (prefix, line.to_string().into_bytes())
}

/// One object per prefix.
async fn deliver(spec: &DeliverySpec, ctx: &Context, buffer: &Buffer) -> Result<()> {
    let now = Utc::now();
    for (prefix, body) in &buffer.by_prefix {
        let body = if spec.gzip {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(body)?;
            encoder.finish()?
        } else {
            body.clone()
        };
        let key = format!(
            "{prefix}{}",
            prefix::object_name(&spec.name, now, spec.gzip)
        );
        ctx.s3
            .put_object()
            .bucket(&spec.bucket)
            .key(&key)
            .body(aws_sdk_s3::primitives::ByteStream::from(body))
            .send()
            .await
            .map_err(|e| anyhow!("PutObject {key}: {}", herald::aws::error_text(&e)))?;
    }
    Ok(())
}

#[derive(Clone)]
enum Start {
    After(String),
    At(i64),
    TrimHorizon,
}

async fn iterator(ctx: &Context, stream: &str, shard: &str, start: &Start) -> Result<String> {
    let request = ctx
        .kinesis
        .get_shard_iterator()
        .stream_name(stream)
        .shard_id(shard);
    let request = match start {
        Start::After(after) => request
            .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
            .starting_sequence_number(after),
        Start::At(millis) => request
            .shard_iterator_type(ShardIteratorType::AtTimestamp)
            .timestamp(aws_smithy_types::DateTime::from_millis(*millis)),
        Start::TrimHorizon => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
    };
    request
        .send()
        .await
        .map_err(|e| anyhow!(herald::aws::error_text(&e)))?
        .shard_iterator
        .ok_or_else(|| anyhow!("GetShardIterator returned no iterator"))
}

async fn list_shards(ctx: &Context, stream: &str) -> Result<Vec<String>> {
    let mut shards = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let request = match &next {
            Some(token) => ctx.kinesis.list_shards().next_token(token),
            None => ctx.kinesis.list_shards().stream_name(stream),
        };
        let out = request
            .send()
            .await
            .map_err(|e| anyhow!(herald::aws::error_text(&e)))?;
        shards.extend(out.shards().iter().map(|s| s.shard_id.clone()));
        next = out.next_token;
        if next.is_none() {
            return Ok(shards);
        }
    }
}

/// The stream's ARN and creation time: checkpoints of a stream created again are not applied.
async fn stream_identity(ctx: &Context, stream: &str) -> Result<String> {
    let summary = ctx
        .kinesis
        .describe_stream_summary()
        .stream_name(stream)
        .send()
        .await
        .map_err(|e| anyhow!(herald::aws::error_text(&e)))?;
    let summary = summary
        .stream_description_summary
        .ok_or_else(|| anyhow!("no stream summary"))?;
    let created = summary.stream_creation_timestamp;
    Ok(format!(
        "{}@{}.{:09}",
        summary.stream_arn,
        created.secs(),
        created.subsec_nanos()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> DeliverySpec {
        DeliverySpec {
            logical_id: "Archive".into(),
            name: "s-Archive".into(),
            stream_name: "s".into(),
            bucket: "b".into(),
            prefix: "events/type=!{partitionKeyFromQuery:type}/dt=!{timestamp:yyyy-MM-dd}/".into(),
            error_prefix: "errors/!{firehose:error-output-type}/".into(),
            buffer_interval: Duration::from_secs(60),
            buffer_bytes: 1 << 20,
            gzip: true,
            partition_keys: vec![("type".into(), vec!["type".into()])],
            delimiter: "\n".into(),
        }
    }

    #[test]
    fn records_are_grouped_by_prefix_one_line_each_and_unpartitionable_ones_kept_as_errors() {
        let spec = spec();
        let mut buffer = Buffer::default();
        let at = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        add(&spec, &mut buffer, br#"{"type":"a","n":1}"#, at);
        add(&spec, &mut buffer, br#"{"type":"a","n":2}"#, at);
        add(&spec, &mut buffer, br#"{"type":"b"}"#, at);
        add(&spec, &mut buffer, b"{ not json", at);
        add(&spec, &mut buffer, br#"{"kind":"data"}"#, at);
        let prefixes: Vec<&str> = buffer.by_prefix.keys().map(String::as_str).collect();
        assert_eq!(
            prefixes,
            [
                "errors/processing-failed/",
                "events/type=a/dt=2027-01-15/",
                "events/type=b/dt=2027-01-15/"
            ]
        );
        assert_eq!(
            buffer.by_prefix["events/type=a/dt=2027-01-15/"],
            b"{\"type\":\"a\",\"n\":1}\n{\"type\":\"a\",\"n\":2}\n"
        );
        let errors =
            String::from_utf8(buffer.by_prefix["errors/processing-failed/"].clone()).unwrap();
        let lines: Vec<Value> = errors
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0]["errorMessage"]
            .as_str()
            .unwrap()
            .contains("not JSON"));
        assert!(lines[1]["errorMessage"].as_str().unwrap().contains(".type"));
        assert_eq!(buffer.records, 5);
    }
}
