//! The router: Kinesis records in, SNS `PublishBatch` out.
//!
//! Each record is decoded and validated as an [`Envelope`](crate::envelope::Envelope) (without
//! parsing its payload) and published unchanged, with message attributes a subscription's filter
//! policy can match (`type`, `kind`, `source`, `schemaversion`, `correlationid`).
//!
//! Failures:
//! - a record that is not a valid envelope is *poison*: it goes to the dead-letter queue with
//!   its reason and counts as handled, so it never holds up its shard;
//! - an entry SNS rejects because the message itself is wrong (`InvalidParameter`, ...) is poison
//!   too; SNS also flags KMS and permission failures as the sender's fault, but those are not the
//!   message's ([`crate::aws::errors::classify_sns_entry`]) and never send valid events to the DLQ;
//! - an entry SNS fails transiently (throttling, KMS throttling, internal errors) is retried with
//!   backoff while the invocation's [deadline](crate::aws::Deadline) leaves time; a configuration
//!   failure (access denied, key disabled) is not retried in process. What still fails is
//!   reported with every later record of the batch as batch item failures. Lambda then
//!   checkpoints before it and retries from there (`ReportBatchItemFailures`), and the
//!   subscribers' idempotency absorbs what was already published.
//! - a record that still cannot be published when it is older than
//!   [`RouterConfig::give_up_after`] is dead-lettered whole, with the reason, before Lambda
//!   would give up on it and keep only a pointer into the stream (see `overdue`).

mod batch;
mod bus;
mod overdue;
mod sns;

use aws_lambda_events::event::streams::KinesisEventResponse;
use futures::stream::{self, StreamExt};

use std::borrow::Cow;
use std::time::Duration;

use crate::aws::dead_letter::{DeadLetter, DeadLetters};
use crate::aws::errors::ErrorClass;
use crate::aws::limits::{SNS_MAX_BATCH_ENTRIES, SNS_MAX_PAYLOAD_BYTES};
use crate::aws::Backoff;
use crate::aws::Deadline;
use crate::envelope::validate_record;
use crate::envelope::EventCatalog;

pub use batch::{KinesisBatch, KinesisRecords, RecordRef};
pub use bus::{
    bus_attributes, message_attributes, BusAttribute, BusError, BusMessage, BusOutcome, EventBus,
    MessageAttribute,
};
pub use overdue::give_up_after;
pub use sns::SnsBus;

/// Log one routed batch: its counts and the shard and sequence range it covered — the line
/// `herald trace` finds a record's router hop by.
pub fn log_batch(batch: &KinesisBatch, summary: &RouteSummary) {
    let (first, last) = (
        batch.get(0),
        batch.len().checked_sub(1).and_then(|i| batch.get(i)),
    );
    let shard = first
        .and_then(|r| r.event_id)
        .and_then(|id| id.split(':').next())
        .unwrap_or_default();
    tracing::info!(
        records = batch.len(),
        published = summary.published,
        dead_lettered = summary.dead_lettered,
        failed = summary.failed,
        shardId = shard,
        firstSequence = first.map(|r| r.sequence_number).unwrap_or_default(),
        lastSequence = last.map(|r| r.sequence_number).unwrap_or_default(),
        "batch routed"
    );
}

/// The stage name on the router's dead letters.
pub const STAGE: &str = "router";

/// Router settings.
#[derive(Clone, Debug)]
pub struct RouterConfig {
    /// Retries of throttled / failed entries. Default: [`Backoff::default`].
    pub backoff: Backoff,
    /// `PublishBatch` requests in flight at once. Default 8.
    pub concurrency: usize,
    /// Event types records must belong to; others are poison. Default: none (any valid envelope).
    pub catalog: Option<EventCatalog>,
    /// Time kept before the invocation's deadline to answer in: past `deadline - margin` no
    /// request is sent or waited for, and the records left are reported for Lambda to retry.
    /// Default 1 s.
    pub deadline_margin: Duration,
    /// A record that cannot be published and is older than this is dead-lettered (the whole
    /// record, with the reason) instead of reported for retry. Keep it below the mapping's
    /// `MaximumRecordAgeInSeconds` ([`give_up_after`] gives the margin) and the mapping's
    /// `MaximumRetryAttempts` at -1, so that Lambda never gives up first. `None`: report for
    /// retry forever. Default: [`give_up_after`] of one hour (55 minutes), the template's default.
    pub give_up_after: Option<std::time::Duration>,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            backoff: Backoff::default(),
            concurrency: 8,
            catalog: None,
            deadline_margin: Duration::from_secs(1),
            give_up_after: Some(give_up_after(std::time::Duration::from_secs(3600))),
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
        let messages = self.validate(&records, &mut fates);
        let chunks = chunk_messages(messages);
        let published: Vec<Vec<(usize, Fate)>> = stream::iter(chunks)
            .map(|chunk| self.publish_with_retry(chunk))
            .buffer_unordered(self.config.concurrency.max(1))
            .collect()
            .await;
        for (i, fate) in published.into_iter().flatten() {
            fates[i] = Some(fate);
        }
        if let Some(limit) = self.config.give_up_after {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64();
            overdue::dead_letter_overdue(&mut fates, &records, limit, now);
        }
        let mut summary = RouteSummary {
            dead_lettered: self.dead_letter_poison(&records, &mut fates).await,
            ..RouteSummary::default()
        };
        let response = respond(&records, &fates, &mut summary);
        (response, summary)
    }

    /// Each record checked (a valid envelope of a type the catalog knows) and made a bus
    /// message with its routing attributes; a record that is not one is poison, with the reason.
    fn validate<'r>(
        &self,
        records: &[RecordRef<'r>],
        fates: &mut [Option<Fate>],
    ) -> Vec<(usize, BusMessage<'r>)> {
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
                Ok(view) => {
                    let attributes = match view.record_routing_attributes() {
                        Some(routing) => bus_attributes(routing),
                        // An attribute the JSON escaped: its decoded text lives in the view.
                        None => bus_attributes(view.routing_attributes())
                            .into_iter()
                            .map(BusAttribute::into_owned)
                            .collect(),
                    };
                    messages.push((
                        i,
                        BusMessage {
                            id: format!("r{i}"),
                            body: Cow::Borrowed(view.text()),
                            attributes,
                        },
                    ))
                }
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
        messages
    }

    /// Poison (from validation or SNS sender faults) to the dead-letter queue, each letter with
    /// its record's origin; how many went. A letter the queue refused, or did not take before
    /// the deadline, fails its record instead.
    async fn dead_letter_poison(
        &self,
        records: &[RecordRef<'_>],
        fates: &mut [Option<Fate>],
    ) -> usize {
        let poison: Vec<(usize, DeadLetter)> = fates
            .iter()
            .enumerate()
            .filter_map(|(i, fate)| match fate {
                Some(Fate::Poison(letter)) => Some((i, with_origin(letter.clone(), &records[i]))),
                _ => None,
            })
            .collect();
        if poison.is_empty() {
            return 0;
        }
        let letters: Vec<DeadLetter> = poison.iter().map(|(_, l)| l.clone()).collect();
        // Bounded by the deadline like publishing: a DLQ that hangs must not cost the per-record
        // answer. The records are reported for Lambda's retry; the app's dead letters give up a
        // hung send earlier (`unique_letters::SEND_MARGIN`) and release its claim, so the retry
        // sends the letter, once per record.
        let sent = Deadline::current()
            .run(
                self.config.deadline_margin,
                self.dead_letters.send(&letters),
            )
            .await;
        let mut dead_lettered = 0;
        match sent {
            Ok(sent) => {
                for ((i, _), result) in poison.iter().zip(sent) {
                    match result {
                        Ok(()) => dead_lettered += 1,
                        Err(err) => fates[*i] = Some(Fate::Failed(err.to_string())),
                    }
                }
            }
            Err(_) => {
                for (i, _) in &poison {
                    fates[*i] = Some(Fate::Failed(
                        "the dead-letter queue did not answer before the invocation's deadline"
                            .into(),
                    ));
                }
            }
        }
        dead_lettered
    }

    async fn publish_with_retry(&self, chunk: Vec<(usize, BusMessage<'_>)>) -> Vec<(usize, Fate)> {
        let deadline = Deadline::current();
        let margin = self.config.deadline_margin;
        let mut fates = Vec::with_capacity(chunk.len());
        let (mut indexes, mut entries): (Vec<usize>, Vec<BusMessage<'_>>) =
            chunk.into_iter().unzip();
        let mut attempt = 0;
        while !entries.is_empty() {
            attempt += 1;
            let outcomes = match deadline.run(margin, self.bus.publish_batch(&entries)).await {
                Ok(Ok(outcomes)) if outcomes.len() == entries.len() => outcomes,
                Ok(Ok(outcomes)) => failed_all(
                    entries.len(),
                    "InvalidResponse",
                    &format!(
                        "PublishBatch answered {} results for {} entries",
                        outcomes.len(),
                        entries.len()
                    ),
                ),
                // A whole request refused does not say which entry was wrong: none is poison.
                Ok(Err(BusError(err))) => failed_all(
                    entries.len(),
                    err.code().unwrap_or("RequestFailed"),
                    &err.to_string(),
                ),
                Err(expired) => {
                    // Maybe published, maybe not: Lambda retries it, subscribers deduplicate.
                    let reason = format!("PublishBatch: {expired}");
                    fates.extend(
                        indexes
                            .into_iter()
                            .map(|i| (i, Fate::Failed(reason.clone()))),
                    );
                    return fates;
                }
            };
            let mut retry = Vec::new();
            for ((i, message), outcome) in indexes.into_iter().zip(entries).zip(outcomes) {
                let BusOutcome::Failed {
                    code,
                    message: text,
                    sender_fault,
                } = outcome
                else {
                    fates.push((i, Fate::Published));
                    continue;
                };
                // SNS calls KMS and permission failures the sender's fault although the message
                // is fine: only a failure of the message itself makes it poison.
                match crate::aws::errors::classify_sns_entry(&code, sender_fault) {
                    ErrorClass::Permanent => fates.push((
                        i,
                        Fate::Poison(DeadLetter::new(
                            message.body.as_bytes(),
                            STAGE,
                            format!("SNS rejected the message: {code}: {text}"),
                        )),
                    )),
                    ErrorClass::Transient if attempt < self.config.backoff.max_attempts => {
                        retry.push((i, message))
                    }
                    class => fates.push((
                        i,
                        Fate::Failed(format!(
                            "{code}: {text} ({class:?}, after {attempt} attempts)"
                        )),
                    )),
                }
            }
            (indexes, entries) = retry.into_iter().unzip();
            if !entries.is_empty() {
                let wait = self.config.backoff.delay(attempt);
                if !deadline.allows(wait, margin) {
                    let reason = format!(
                        "still failing after {attempt} attempts and the invocation's deadline is near"
                    );
                    fates.extend(
                        indexes
                            .into_iter()
                            .map(|i| (i, Fate::Failed(reason.clone()))),
                    );
                    return fates;
                }
                tokio::time::sleep(wait).await;
            }
        }
        fates
    }
}

fn failed_all(n: usize, code: &str, message: &str) -> Vec<BusOutcome> {
    vec![
        BusOutcome::Failed {
            code: code.to_string(),
            message: message.to_string(),
            sender_fault: false,
        };
        n
    ]
}

/// Split messages into `PublishBatch` requests of at most 10 entries and 256 KiB.
fn chunk_messages(messages: Vec<(usize, BusMessage<'_>)>) -> Vec<Vec<(usize, BusMessage<'_>)>> {
    let mut chunks = Vec::new();
    let mut current: Vec<(usize, BusMessage<'_>)> = Vec::new();
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

/// A dead letter with the origin of its record (sequence number, partition key, event source
/// and id): where to find it again, and what makes it one letter per record.
fn with_origin(letter: DeadLetter, record: &RecordRef<'_>) -> DeadLetter {
    let mut letter = letter
        .with_origin("sequenceNumber", record.sequence_number)
        .with_origin("partitionKey", record.partition_key);
    if let Some(arn) = record.event_source_arn {
        letter = letter.with_origin("eventSourceARN", arn);
    }
    if let Some(id) = record.event_id {
        letter = letter.with_origin("eventID", id);
    }
    letter
}

/// Lambda checkpoints at the lowest failed sequence number: report it and everything after;
/// what was published before it counts.
fn respond(
    records: &[RecordRef<'_>],
    fates: &[Option<Fate>],
    summary: &mut RouteSummary,
) -> KinesisEventResponse {
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
    response
}

#[cfg(test)]
mod tests;
