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
use base64::Engine;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::esm::{pause, Activity, Checkpoints, ShardCheckpoint};
use crate::logs::Logs;
use crate::stack::DeliverySpec;
use crate::stream::{Payload, Position, Stream};

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
    let stream = Stream::Kinesis {
        client: ctx.kinesis.clone(),
        name: spec.stream_name.clone(),
    };
    let identity = loop {
        match stream.identity().await {
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
    let mut delivery = Delivery {
        spec,
        ctx,
        stream,
        label,
        identity,
        saved,
        started_millis,
        first_listing: true,
        known: BTreeSet::new(),
        iterators: BTreeMap::new(),
        buffer: Buffer::default(),
        starts: BTreeMap::new(),
        delivered: BTreeMap::new(),
    };
    let mut last_listing = Instant::now() - Duration::from_secs(60);
    while !*stop.borrow() {
        if last_listing.elapsed() >= Duration::from_secs(2) {
            last_listing = Instant::now();
            delivery.open_new_shards().await;
        }
        let read_any = delivery.read_shards().await;
        delivery.deliver_when_due().await;
        if !read_any && !pause(delivery.ctx.idle_poll, &stop).await {
            break;
        }
    }
    Ok(())
}

/// One delivery stream's reading and buffering.
struct Delivery {
    spec: DeliverySpec,
    ctx: Context,
    stream: Stream,
    label: String,
    /// The stream's identity, which checkpoints are saved under.
    identity: String,
    /// The checkpoints saved when the runner started.
    saved: BTreeMap<String, ShardCheckpoint>,
    started_millis: i64,
    first_listing: bool,
    /// Shards opened (or being read).
    known: BTreeSet<String>,
    iterators: BTreeMap<String, String>,
    buffer: Buffer,
    /// Per shard: where it started, and the last record delivered.
    starts: BTreeMap<String, Position>,
    delivered: BTreeMap<String, String>,
}

impl Delivery {
    /// List the shards and open the ones not seen yet: after their checkpoint, at the runner's
    /// start (the first listing of a new delivery stream), or at their start (a reshard's
    /// children).
    async fn open_new_shards(&mut self) {
        let shards = match self.stream.shards().await {
            Ok(listing) => listing.shards,
            Err(err) => {
                let note = format!("cannot list shards: {err:#}");
                return self.ctx.logs.note(&self.label, &note);
            }
        };
        for shard in shards.into_iter().map(|s| s.id) {
            if !self.known.insert(shard.clone()) {
                continue;
            }
            let start = match self.saved.get(&shard) {
                Some(saved) => saved.resume_at(),
                None if self.first_listing => Position::AtMillis(self.started_millis),
                None => Position::TrimHorizon,
            };
            // Where reading starts is saved before anything is buffered: a runner stopped before
            // the first delivery starts there again (nothing read and not yet delivered is lost).
            let since = match &start {
                Position::AtMillis(millis) => Some(*millis),
                _ => None,
            };
            let begun =
                self.ctx
                    .checkpoints
                    .begin(&self.spec.logical_id, &self.identity, &shard, since);
            if let Err(err) = begun {
                let note = format!("cannot save a checkpoint: {err:#}");
                self.ctx.logs.note(&self.label, &note);
            }
            self.starts.insert(shard.clone(), start.clone());
            match self.stream.iterator(&shard, &start).await {
                Ok(it) => {
                    self.iterators.insert(shard, it);
                }
                Err(err) => {
                    self.known.remove(&shard);
                    let note = format!("GetShardIterator on {shard}: {err:#}");
                    self.ctx.logs.note(&self.label, &note);
                }
            }
        }
        self.first_listing = false;
    }

    /// One `GetRecords` per open shard into the buffer; whether any record came.
    async fn read_shards(&mut self) -> bool {
        let mut read_any = false;
        let mut ended = Vec::new();
        for (shard, it) in self.iterators.iter_mut() {
            let page = match self.stream.read(shard, it, 1000).await {
                Ok(page) => page,
                Err(err) => {
                    let note = format!("GetRecords on {shard}: {err:#}");
                    self.ctx.logs.note(&self.label, &note);
                    // Reopened after the last record read (buffered or delivered), or where
                    // the shard started.
                    let last = self.buffer.last.get(shard);
                    let resume = match last.or_else(|| self.delivered.get(shard)) {
                        Some(after) => Position::After(after.clone()),
                        None => self
                            .starts
                            .get(shard)
                            .cloned()
                            .unwrap_or(Position::TrimHorizon),
                    };
                    if let Ok(fresh) = self.stream.iterator(shard, &resume).await {
                        *it = fresh;
                    }
                    continue;
                }
            };
            for record in &page.records {
                read_any = true;
                if let Payload::Kinesis(data) = &record.payload {
                    add(&self.spec, &mut self.buffer, data, record.arrival);
                }
                self.buffer
                    .last
                    .insert(shard.clone(), record.sequence_number.clone());
            }
            match page.next_iterator {
                Some(next) => *it = next,
                // A closed shard read to its end, maybe in the answer with its last records:
                // the iterator is spent, and reading it again would archive those twice.
                None => ended.push(shard.clone()),
            }
        }
        for shard in &ended {
            self.iterators.remove(shard);
        }
        self.ctx
            .activity
            .archive_buffered
            .store(self.buffer.records, Ordering::SeqCst);
        read_any
    }

    /// Deliver the buffer once its interval has passed or it holds its size; then the shards'
    /// checkpoints move past what was delivered.
    async fn deliver_when_due(&mut self) {
        let due = self
            .buffer
            .since
            .is_some_and(|since| since.elapsed() >= self.spec.buffer_interval)
            || self.buffer.bytes >= self.spec.buffer_bytes;
        if !due {
            return;
        }
        if let Err(err) = deliver(&self.spec, &self.ctx, &self.buffer).await {
            // Kept, and delivered again at the next turn (objects already written stay: at
            // least once, as on AWS).
            let note = format!(
                "delivery to s3://{} failed (retrying): {err:#}",
                self.spec.bucket
            );
            return self.ctx.logs.note(&self.label, &note);
        }
        for (shard, sequence) in &self.buffer.last {
            let committed =
                self.ctx
                    .checkpoints
                    .commit(&self.spec.logical_id, &self.identity, shard, sequence);
            if let Err(err) = committed {
                let note = format!("cannot save a checkpoint: {err:#}");
                self.ctx.logs.note(&self.label, &note);
            }
            self.delivered.insert(shard.clone(), sequence.clone());
        }
        self.buffer = Buffer::default();
        self.ctx
            .activity
            .archive_buffered
            .store(0, Ordering::SeqCst);
    }
}

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
