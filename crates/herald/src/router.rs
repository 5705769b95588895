//! The router: Kinesis records in, SNS `PublishBatch` out.
//!
//! Each record is decoded and validated as an [`Envelope`](crate::envelope::Envelope) (without
//! parsing its payload) and published unchanged, with message attributes a subscription's filter
//! policy can match (`type`, `kind`, `source`, `schemaversion`, `correlationid`).
//!
//! Failures:
//! - a record that is not a valid envelope is *poison*: it goes to the dead-letter queue with
//!   its reason and counts as handled, so it never holds up its shard;
//! - an entry SNS rejects as the sender's fault is poison too;
//! - an entry SNS fails for its own reasons (throttling, internal errors) is retried with backoff;
//!   if it still fails, the router reports it and every later record of the batch as batch item
//!   failures. Lambda then checkpoints before it and retries from there (`ReportBatchItemFailures`),
//!   and the subscribers' idempotency absorbs what was already published.

use std::future::Future;

use aws_lambda_events::event::kinesis::KinesisEvent;
use aws_lambda_events::event::streams::KinesisEventResponse;
use futures::stream::{self, StreamExt};
use serde::Deserialize;

use crate::aws::AwsError;
use crate::backoff::Backoff;
use crate::catalog::EventCatalog;
use crate::dead_letter::{DeadLetter, DeadLetters};
use crate::envelope::{validate_record, RoutingAttributes};
use crate::limits::{SNS_MAX_BATCH_ENTRIES, SNS_MAX_PAYLOAD_BYTES};

/// One Kinesis record as the router reads it.
#[derive(Clone, Copy, Debug)]
pub struct RecordRef<'a> {
    /// The record's data (the envelope).
    pub data: &'a [u8],
    /// Its sequence number (what a batch item failure names).
    pub sequence_number: &'a str,
    /// Its partition key.
    pub partition_key: &'a str,
    /// The stream ARN.
    pub event_source_arn: Option<&'a str>,
    /// `shardId:sequenceNumber`.
    pub event_id: Option<&'a str>,
}

/// A Kinesis batch the router can route: Lambda's full event type, or the lean [`KinesisBatch`].
pub trait KinesisRecords {
    /// Records in the batch.
    fn len(&self) -> usize;
    /// Whether the batch is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Record `i` (< `len()`).
    fn record(&self, i: usize) -> RecordRef<'_>;
}

impl KinesisRecords for KinesisEvent {
    fn len(&self) -> usize {
        self.records.len()
    }
    fn record(&self, i: usize) -> RecordRef<'_> {
        let r = &self.records[i];
        RecordRef {
            data: &r.kinesis.data.0,
            sequence_number: &r.kinesis.sequence_number,
            partition_key: &r.kinesis.partition_key,
            event_source_arn: r.event_source_arn.as_deref(),
            event_id: r.event_id.as_deref(),
        }
    }
}

/// Lambda's Kinesis event with only the fields the router reads; the others are skipped while
/// parsing, and the base64 data is decoded straight from the input. On the hot path this halves
/// the allocations of `aws_lambda_events`' full type.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct KinesisBatch {
    /// The records.
    #[serde(rename = "Records", default)]
    pub records: Vec<KinesisBatchRecord>,
}

/// One record of a [`KinesisBatch`].
#[derive(Clone, Debug, Deserialize)]
pub struct KinesisBatchRecord {
    /// `shardId:sequenceNumber`.
    #[serde(rename = "eventID", default)]
    pub event_id: Option<String>,
    /// The stream ARN.
    #[serde(rename = "eventSourceARN", default)]
    pub event_source_arn: Option<String>,
    /// The Kinesis part.
    pub kinesis: KinesisBatchData,
}

/// The `kinesis` object of a record.
#[derive(Clone, Debug, Deserialize)]
pub struct KinesisBatchData {
    /// Sequence number.
    #[serde(rename = "sequenceNumber")]
    pub sequence_number: String,
    /// Partition key.
    #[serde(rename = "partitionKey", default)]
    pub partition_key: String,
    /// The data, base64-decoded.
    #[serde(deserialize_with = "base64_data")]
    pub data: Vec<u8>,
}

fn base64_data<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
    struct Base64;
    impl serde::de::Visitor<'_> for Base64 {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("base64 text")
        }
        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Vec<u8>, E> {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(E::custom)
        }
    }
    deserializer.deserialize_str(Base64)
}

impl KinesisRecords for KinesisBatch {
    fn len(&self) -> usize {
        self.records.len()
    }
    fn record(&self, i: usize) -> RecordRef<'_> {
        let r = &self.records[i];
        RecordRef {
            data: &r.kinesis.data,
            sequence_number: &r.kinesis.sequence_number,
            partition_key: &r.kinesis.partition_key,
            event_source_arn: r.event_source_arn.as_deref(),
            event_id: r.event_id.as_deref(),
        }
    }
}

/// Log one routed batch: its counts and the shard and sequence range it covered — the line
/// `herald trace` finds a record's router hop by.
pub fn log_batch(batch: &KinesisBatch, summary: &RouteSummary) {
    let records = &batch.records;
    let shard = records
        .first()
        .and_then(|r| r.event_id.as_deref())
        .and_then(|id| id.split(':').next())
        .unwrap_or_default();
    tracing::info!(
        records = records.len(),
        published = summary.published,
        dead_lettered = summary.dead_lettered,
        failed = summary.failed,
        shardId = shard,
        firstSequence = records
            .first()
            .map(|r| r.kinesis.sequence_number.as_str())
            .unwrap_or_default(),
        lastSequence = records
            .last()
            .map(|r| r.kinesis.sequence_number.as_str())
            .unwrap_or_default(),
        "batch routed"
    );
}

/// The stage name on the router's dead letters.
pub const STAGE: &str = "router";

/// One SNS message attribute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageAttribute {
    /// Attribute name (a CloudEvents attribute name).
    pub name: &'static str,
    /// `String` or `Number`.
    pub data_type: &'static str,
    /// The value.
    pub value: String,
}

/// One `PublishBatch` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BusMessage {
    /// The entry id, unique within a request.
    pub id: String,
    /// The envelope JSON.
    pub body: String,
    /// Filter-policy attributes.
    pub attributes: Vec<MessageAttribute>,
}

impl BusMessage {
    /// Bytes counted against SNS's 256 KiB request limit.
    pub fn size(&self) -> usize {
        self.body.len()
            + self
                .attributes
                .iter()
                .map(|a| a.name.len() + a.data_type.len() + a.value.len())
                .sum::<usize>()
    }
}

/// The SNS message attributes for an envelope.
pub fn message_attributes(routing: RoutingAttributes<'_>) -> Vec<MessageAttribute> {
    let string = |name, value: &str| MessageAttribute {
        name,
        data_type: "String",
        value: value.to_string(),
    };
    let mut attributes = vec![
        string("type", routing.event_type),
        string("kind", routing.kind.as_str()),
        string("source", routing.source),
        MessageAttribute {
            name: "schemaversion",
            data_type: "Number",
            value: routing.schema_version.to_string(),
        },
        string("correlationid", routing.correlation_id),
    ];
    if let Some(version) = routing.aggregate_version {
        // Lets a subscription ask for event-sourced events only (`"exists": true`).
        attributes.push(MessageAttribute {
            name: "aggregateversion",
            data_type: "Number",
            value: version.to_string(),
        });
    }
    attributes
}

/// The outcome of one entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BusOutcome {
    /// Published.
    Published,
    /// Not published. `sender_fault` means retrying the same entry cannot succeed.
    Failed {
        /// SNS's error code.
        code: String,
        /// Its message.
        message: String,
        /// The entry itself is wrong (too large, bad attribute): retrying cannot help.
        sender_fault: bool,
    },
}

/// The whole request failed; the AWS error tells why ([`AwsError::is_throttling`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BusError(#[from] pub AwsError);

impl BusError {
    /// A failure described by text alone (test doubles, unexpected answers).
    pub fn other(text: impl Into<String>) -> Self {
        BusError(AwsError::other(text))
    }
}

/// The bus port: a `PublishBatch`-shaped call with one outcome per entry, in order.
pub trait EventBus: Send + Sync {
    /// Publish up to 10 entries / 256 KiB.
    fn publish_batch(
        &self,
        entries: &[BusMessage],
    ) -> impl Future<Output = Result<Vec<BusOutcome>, BusError>> + Send;
}

/// Router settings.
#[derive(Clone, Debug)]
pub struct RouterConfig {
    /// Retries of throttled / failed entries. Default: [`Backoff::default`].
    pub backoff: Backoff,
    /// `PublishBatch` requests in flight at once. Default 8.
    pub concurrency: usize,
    /// Event types records must belong to; others are poison. Default: none (any valid envelope).
    pub catalog: Option<EventCatalog>,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            backoff: Backoff::default(),
            concurrency: 8,
            catalog: None,
        }
    }
}

/// What the router did with one batch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteSummary {
    /// Records published.
    pub published: usize,
    /// Records dead-lettered as poison.
    pub dead_lettered: usize,
    /// Records reported back for retry.
    pub failed: usize,
}

/// Routes Kinesis batches to the bus.
pub struct Router<B, D> {
    bus: B,
    dead_letters: D,
    config: RouterConfig,
}

/// What became of one record.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Fate {
    Published,
    Poison(DeadLetter),
    Failed(String),
}

impl<B: EventBus, D: DeadLetters> Router<B, D> {
    /// A router with default settings.
    pub fn new(bus: B, dead_letters: D) -> Self {
        Router::with_config(bus, dead_letters, RouterConfig::default())
    }

    /// A router with explicit settings.
    pub fn with_config(bus: B, dead_letters: D, config: RouterConfig) -> Self {
        Router {
            bus,
            dead_letters,
            config,
        }
    }

    /// Route one Kinesis batch; the response names the records Lambda must retry.
    pub async fn route<R: KinesisRecords>(
        &self,
        event: &R,
    ) -> (KinesisEventResponse, RouteSummary) {
        let records: Vec<RecordRef<'_>> = (0..event.len()).map(|i| event.record(i)).collect();
        let mut fates: Vec<Option<Fate>> = vec![None; records.len()];
        let mut messages = Vec::with_capacity(records.len());
        for (i, record) in records.iter().enumerate() {
            let data = record.data;
            let checked = validate_record(data).and_then(|view| {
                if let Some(catalog) = &self.config.catalog {
                    catalog.check(view.routing_attributes())?;
                }
                Ok(view)
            });
            match checked {
                Ok(view) => messages.push((
                    i,
                    BusMessage {
                        id: format!("r{i}"),
                        body: view.text().to_string(),
                        attributes: message_attributes(view.routing_attributes()),
                    },
                )),
                Err(err) => {
                    tracing::warn!(
                        sequence_number = %record.sequence_number,
                        field = err.field(),
                        error = %err,
                        "poison record"
                    );
                    fates[i] = Some(Fate::Poison(
                        DeadLetter::new(data, STAGE, err.to_string()).with_field(err.field()),
                    ));
                }
            }
        }

        let chunks = chunk_messages(messages);
        let published: Vec<Vec<(usize, Fate)>> = stream::iter(chunks)
            .map(|chunk| self.publish_with_retry(chunk))
            .buffer_unordered(self.config.concurrency.max(1))
            .collect()
            .await;
        for (i, fate) in published.into_iter().flatten() {
            fates[i] = Some(fate);
        }

        // Poison (from validation or SNS sender faults) goes to the dead-letter queue.
        let poison: Vec<(usize, DeadLetter)> = fates
            .iter()
            .enumerate()
            .filter_map(|(i, fate)| match fate {
                Some(Fate::Poison(letter)) => {
                    let record = &records[i];
                    let mut letter = letter
                        .clone()
                        .with_origin("sequenceNumber", record.sequence_number);
                    letter = letter.with_origin("partitionKey", record.partition_key);
                    if let Some(arn) = record.event_source_arn {
                        letter = letter.with_origin("eventSourceARN", arn);
                    }
                    if let Some(id) = record.event_id {
                        letter = letter.with_origin("eventID", id);
                    }
                    Some((i, letter))
                }
                _ => None,
            })
            .collect();
        let mut summary = RouteSummary::default();
        if !poison.is_empty() {
            let letters: Vec<DeadLetter> = poison.iter().map(|(_, l)| l.clone()).collect();
            let sent = self.dead_letters.send(&letters).await;
            for ((i, _), result) in poison.iter().zip(sent) {
                match result {
                    Ok(()) => summary.dead_lettered += 1,
                    Err(err) => fates[*i] = Some(Fate::Failed(err.to_string())),
                }
            }
        }

        // Lambda checkpoints at the lowest failed sequence number; report it and everything after.
        let first_failure = fates
            .iter()
            .position(|f| matches!(f, Some(Fate::Failed(_))));
        let mut response = KinesisEventResponse::default();
        if let Some(first) = first_failure {
            if let Some(Fate::Failed(reason)) = &fates[first] {
                tracing::warn!(
                    sequence_number = %records[first].sequence_number,
                    %reason,
                    "reporting batch item failures from here"
                );
            }
            for record in &records[first..] {
                response.add_failure(record.sequence_number.to_string());
            }
            summary.failed = records.len() - first;
        }
        summary.published = fates
            .iter()
            .take(first_failure.unwrap_or(records.len()))
            .filter(|f| matches!(f, Some(Fate::Published)))
            .count();
        (response, summary)
    }

    async fn publish_with_retry(&self, chunk: Vec<(usize, BusMessage)>) -> Vec<(usize, Fate)> {
        let mut fates = Vec::with_capacity(chunk.len());
        let (mut indexes, mut entries): (Vec<usize>, Vec<BusMessage>) = chunk.into_iter().unzip();
        let mut attempt = 0;
        while !entries.is_empty() {
            attempt += 1;
            let outcomes = match self.bus.publish_batch(&entries).await {
                Ok(outcomes) if outcomes.len() == entries.len() => outcomes,
                Ok(_) | Err(_) => {
                    let message = "PublishBatch request failed".to_string();
                    vec![
                        BusOutcome::Failed {
                            code: "RequestFailed".into(),
                            message,
                            sender_fault: false,
                        };
                        entries.len()
                    ]
                }
            };
            let mut retry = Vec::new();
            for ((i, message), outcome) in indexes.into_iter().zip(entries).zip(outcomes) {
                match outcome {
                    BusOutcome::Published => fates.push((i, Fate::Published)),
                    BusOutcome::Failed {
                        code,
                        message: text,
                        sender_fault: true,
                    } => fates.push((
                        i,
                        Fate::Poison(DeadLetter::new(
                            message.body.as_bytes(),
                            STAGE,
                            format!("SNS rejected the message: {code}: {text}"),
                        )),
                    )),
                    BusOutcome::Failed {
                        code,
                        message: text,
                        ..
                    } => {
                        if attempt >= self.config.backoff.max_attempts {
                            fates.push((
                                i,
                                Fate::Failed(format!("{code}: {text} after {attempt} attempts")),
                            ));
                        } else {
                            retry.push((i, message));
                        }
                    }
                }
            }
            (indexes, entries) = retry.into_iter().unzip();
            if !entries.is_empty() {
                self.config.backoff.wait(attempt).await;
            }
        }
        fates
    }
}

/// Split messages into `PublishBatch` requests of at most 10 entries and 256 KiB.
fn chunk_messages(messages: Vec<(usize, BusMessage)>) -> Vec<Vec<(usize, BusMessage)>> {
    let mut chunks = Vec::new();
    let mut current: Vec<(usize, BusMessage)> = Vec::new();
    let mut bytes = 0;
    for (i, message) in messages {
        let size = message.size();
        if current.len() == SNS_MAX_BATCH_ENTRIES
            || (!current.is_empty() && bytes + size > SNS_MAX_PAYLOAD_BYTES)
        {
            chunks.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += size;
        current.push((i, message));
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dead_letter::testing::Letters;
    use crate::envelope::Envelope;
    use aws_lambda_events::event::kinesis::KinesisEventRecord;
    use std::sync::Mutex;
    use std::time::Duration;

    #[derive(Default)]
    struct RecordingBus {
        requests: Mutex<Vec<Vec<BusMessage>>>,
        throttle_first: bool,
        throttle_always: Option<String>,
    }

    impl EventBus for RecordingBus {
        async fn publish_batch(&self, entries: &[BusMessage]) -> Result<Vec<BusOutcome>, BusError> {
            let first = {
                let mut requests = self.requests.lock().unwrap();
                requests.push(entries.to_vec());
                requests.len() == 1
            };
            Ok(entries
                .iter()
                .map(|e| {
                    let throttled = (self.throttle_first && first && e.id == "r1")
                        || self.throttle_always.as_deref() == Some(e.id.as_str());
                    if throttled {
                        BusOutcome::Failed {
                            code: "Throttling".into(),
                            message: "rate exceeded".into(),
                            sender_fault: false,
                        }
                    } else {
                        BusOutcome::Published
                    }
                })
                .collect())
        }
    }

    fn record(seq: usize, data: &[u8]) -> KinesisEventRecord {
        let mut record = KinesisEventRecord::default();
        record.kinesis.sequence_number = seq.to_string();
        record.kinesis.partition_key = "k".into();
        record.kinesis.data.0 = data.to_vec();
        record
    }

    fn envelope(n: usize) -> Vec<u8> {
        Envelope::builder("user_signed_up", "herald/test")
            .subject(format!("user-{n}"))
            .data(serde_json::json!({"n": n}))
            .build()
            .unwrap()
            .to_json_bytes()
    }

    fn batch(records: Vec<KinesisEventRecord>) -> KinesisEvent {
        let mut event = KinesisEvent::default();
        event.records = records;
        event
    }

    fn fast() -> RouterConfig {
        RouterConfig {
            backoff: Backoff {
                max_attempts: 2,
                base: Duration::from_millis(1),
                cap: Duration::from_millis(1),
            },
            concurrency: 2,
            catalog: None,
        }
    }

    #[tokio::test]
    async fn publishes_in_batches_of_ten_with_attributes() {
        let router = Router::with_config(RecordingBus::default(), Letters::default(), fast());
        let records = (0..25).map(|i| record(i, &envelope(i))).collect();
        let (response, summary) = router.route(&batch(records)).await;
        assert!(response.batch_item_failures.is_empty());
        assert_eq!(summary.published, 25);
        let requests = router.bus.requests.lock().unwrap();
        let mut sizes: Vec<usize> = requests.iter().map(Vec::len).collect();
        sizes.sort();
        assert_eq!(sizes, vec![5, 10, 10]);
        let attrs = &requests[0][0].attributes;
        let names: Vec<&str> = attrs.iter().map(|a| a.name).collect();
        assert_eq!(
            names,
            ["type", "kind", "source", "schemaversion", "correlationid"]
        );
        assert_eq!(attrs[0].value, "user_signed_up");
    }

    #[tokio::test]
    async fn poison_goes_to_the_dead_letter_queue_and_does_not_block() {
        let router = Router::with_config(RecordingBus::default(), Letters::default(), fast());
        let records = vec![
            record(1, &envelope(1)),
            record(2, b"not json"),
            record(3, br#"{"id":"x"}"#),
            record(4, &envelope(4)),
        ];
        let (response, summary) = router.route(&batch(records)).await;
        assert!(response.batch_item_failures.is_empty());
        assert_eq!(
            summary,
            RouteSummary {
                published: 2,
                dead_lettered: 2,
                failed: 0
            }
        );
        let letters = router.dead_letters.0.lock().unwrap();
        assert_eq!(letters[0].body, "not json");
        assert_eq!(letters[0].field.as_deref(), Some("event"));
        assert_eq!(letters[1].field.as_deref(), Some("specversion"));
        assert_eq!(letters[1].origin["sequenceNumber"], "3");
    }

    #[tokio::test]
    async fn throttled_entries_are_retried() {
        let bus = RecordingBus {
            throttle_first: true,
            ..Default::default()
        };
        let router = Router::with_config(bus, Letters::default(), fast());
        let records = (0..3).map(|i| record(i, &envelope(i))).collect();
        let (response, summary) = router.route(&batch(records)).await;
        assert!(response.batch_item_failures.is_empty());
        assert_eq!(summary.published, 3);
        let requests = router.bus.requests.lock().unwrap();
        assert_eq!(
            requests[1]
                .iter()
                .map(|m| m.id.as_str())
                .collect::<Vec<_>>(),
            ["r1"]
        );
    }

    #[tokio::test]
    async fn a_lasting_failure_reports_that_record_and_every_later_one() {
        let bus = RecordingBus {
            throttle_always: Some("r2".into()),
            ..Default::default()
        };
        let router = Router::with_config(bus, Letters::default(), fast());
        let records = (0..5).map(|i| record(100 + i, &envelope(i))).collect();
        let (response, summary) = router.route(&batch(records)).await;
        let failed: Vec<String> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone().unwrap())
            .collect();
        assert_eq!(failed, ["102", "103", "104"]);
        assert_eq!(summary.failed, 3);
        assert_eq!(summary.published, 2);
    }

    #[test]
    fn the_lean_batch_reads_what_lambdas_full_event_type_reads() {
        let text = include_str!("../../../events/router/kinesis.json");
        let full: KinesisEvent = serde_json::from_str(text).unwrap();
        let lean: KinesisBatch = serde_json::from_str(text).unwrap();
        assert_eq!(full.len(), lean.len());
        for i in 0..full.len() {
            let (a, b) = (full.record(i), lean.record(i));
            assert_eq!(a.data, b.data);
            assert_eq!(a.sequence_number, b.sequence_number);
            assert_eq!(a.partition_key, b.partition_key);
            assert_eq!(a.event_source_arn, b.event_source_arn);
            assert_eq!(a.event_id, b.event_id);
        }
        let bad = text.replacen("\"data\": \"", "\"data\": \"!!", 1);
        assert!(serde_json::from_str::<KinesisBatch>(&bad).is_err());
    }
}
