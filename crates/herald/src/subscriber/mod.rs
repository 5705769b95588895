//! Subscribers: an SQS batch in, one idempotent effect per event, a partial batch response out.
//!
//! The pieces, outermost first:
//! - [`SqsSubscriber`] decodes each message into an [`Envelope`] (raw SNS delivery, or the SNS
//!   notification wrapper when raw delivery is off), runs the handler per event — events of one
//!   aggregate in order, different aggregates concurrently — publishes the follow-up events the
//!   handler asks for, dead-letters poison with its reason, and answers with the failed message
//!   ids (`ReportBatchItemFailures`).
//! - [`Claimed`] and [`Transactional`] wrap a domain handler in one of the two
//!   [idempotency](crate::idempotency) modes.
//! - The application's handlers implement [`ClaimedHandler`] or [`TransactionalHandler`] and
//!   run with [`crate::Herald::run_claimed`] / [`crate::Herald::run_transactional`].
//!
//! Follow-up events have deterministic ids ([`Envelope::follow_up`]) and are stored with the
//! idempotency record. A duplicate delivery publishes them again: if the first run crashed after
//! its effect but before publishing, nothing is lost, and if it did publish, the next hop
//! deduplicates the repeat.

use std::future::Future;
use std::time::SystemTime;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::Instrument;

use crate::batch;
use crate::dead_letter::{DeadLetter, DeadLetters};
use crate::envelope::{Envelope, ValidationError};
use crate::idempotency::{Conflict, Decision, Executed, Idempotency, IdempotencyError};
use crate::producer::{EventStream, Producer};
use crate::schema::Upcasters;

/// What a handler did with one event; stored with the idempotency record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// A short name for the effect (`reserved`, `charged`, `sent`, ...).
    pub effect: String,
    /// Details worth keeping (amounts, ids).
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub detail: Value,
    /// Follow-up events to publish.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub emit: Vec<Envelope>,
}

impl Outcome {
    /// An outcome with no details and nothing to emit.
    pub fn new(effect: impl Into<String>) -> Self {
        Outcome {
            effect: effect.into(),
            detail: Value::Null,
            emit: Vec::new(),
        }
    }

    /// Attach details.
    pub fn with_detail(mut self, detail: impl Serialize) -> Self {
        self.detail = serde_json::to_value(detail).unwrap_or(Value::Null);
        self
    }

    /// Add a follow-up event.
    pub fn emitting(mut self, event: Envelope) -> Self {
        self.emit.push(event);
        self
    }
}

/// A handler's failure.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HandlerError {
    /// Retrying cannot help (the payload is wrong): dead-letter it with this reason.
    #[error("`{field}` {reason}")]
    Poison {
        /// The attribute at fault.
        field: String,
        /// Why.
        reason: String,
    },
    /// Something transient (a throttled write, a gateway timeout): let the queue redeliver.
    #[error("{0}")]
    Retry(String),
}

impl From<ValidationError> for HandlerError {
    fn from(err: ValidationError) -> Self {
        HandlerError::Poison {
            field: err.field().to_string(),
            reason: match &err {
                ValidationError::Invalid { reason, .. } => reason.clone(),
                other => other.to_string(),
            },
        }
    }
}

/// A subscriber whose effect lies outside DynamoDB (a card processor, a mail relay): the event is
/// claimed first and the effect runs once under the claim ([`Idempotency::run`]).
pub trait ClaimedHandler: Send + Sync {
    /// The subscriber's name: the prefix of its idempotency keys (`<name>#<source>#<id>`, so the
    /// template can confine it with `dynamodb:LeadingKeys: ["<name>#*"]`), its dead-letter stage
    /// and its metrics dimension.
    fn name(&self) -> &'static str;
    /// Whether the subscriber acts on this event at all (others are acknowledged untouched).
    fn wants(&self, event: &Envelope) -> bool;
    /// Perform the effect.
    fn handle(
        &self,
        event: &Envelope,
    ) -> impl Future<Output = Result<Outcome, HandlerError>> + Send;
}

/// A subscriber whose effect is DynamoDB writes: they commit in one transaction with the
/// idempotency record ([`Idempotency::run_transactional`]).
pub trait TransactionalHandler: Send + Sync {
    /// The subscriber's name: idempotency key prefix (`<name>#...`, what the template's
    /// `dynamodb:LeadingKeys` condition names), dead-letter stage, metrics dimension.
    fn name(&self) -> &'static str;
    /// Whether the subscriber acts on this event at all.
    fn wants(&self, event: &Envelope) -> bool;
    /// The writes and outcome for `event`; asked again with the [`Conflict`] when a write's
    /// condition failed.
    fn decide(
        &self,
        event: &Envelope,
        conflict: Option<Conflict>,
    ) -> Result<Decision<Outcome>, HandlerError>;
}

/// How one delivery ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Delivery {
    /// The effect happened now.
    Applied(Outcome),
    /// A duplicate: the effect had happened before; here is its outcome.
    Duplicate(Outcome),
    /// Not for this subscriber.
    Ignored,
}

/// A record-level failure.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Dead-letter it.
    #[error("poison: `{field}` {reason}")]
    Poison {
        /// The attribute at fault.
        field: String,
        /// Why.
        reason: String,
    },
    /// Report it for redelivery.
    #[error("{0}")]
    Retry(String),
}

impl From<HandlerError> for RecordError {
    fn from(err: HandlerError) -> Self {
        match err {
            HandlerError::Poison { field, reason } => RecordError::Poison { field, reason },
            HandlerError::Retry(reason) => RecordError::Retry(reason),
        }
    }
}

impl From<IdempotencyError<HandlerError>> for RecordError {
    fn from(err: IdempotencyError<HandlerError>) -> Self {
        match err {
            IdempotencyError::Handler(err) => err.into(),
            IdempotencyError::PayloadMismatch { .. } => RecordError::Poison {
                field: "id".into(),
                reason: err.to_string(),
            },
            other => RecordError::Retry(other.to_string()),
        }
    }
}

/// One event in, one idempotent delivery out.
pub trait RecordHandler: Send + Sync {
    /// The subscriber's name.
    fn name(&self) -> &'static str;
    /// Process one event before `deadline`.
    fn process(
        &self,
        event: &Envelope,
        deadline: SystemTime,
    ) -> impl Future<Output = Result<Delivery, RecordError>> + Send;
}

/// A [`ClaimedHandler`] made idempotent.
pub struct Claimed<H> {
    handler: H,
    idempotency: Idempotency,
}

impl<H> Claimed<H> {
    /// Wrap `handler`.
    pub fn new(handler: H, idempotency: Idempotency) -> Self {
        Claimed {
            handler,
            idempotency,
        }
    }
}

impl<H: ClaimedHandler> RecordHandler for Claimed<H> {
    fn name(&self) -> &'static str {
        self.handler.name()
    }

    async fn process(
        &self,
        event: &Envelope,
        deadline: SystemTime,
    ) -> Result<Delivery, RecordError> {
        if !self.handler.wants(event) {
            return Ok(Delivery::Ignored);
        }
        let executed = self
            .idempotency
            .run(event, deadline, || self.handler.handle(event))
            .await?;
        Ok(delivery(executed))
    }
}

/// A [`TransactionalHandler`] made idempotent.
pub struct Transactional<H> {
    handler: H,
    idempotency: Idempotency,
}

impl<H> Transactional<H> {
    /// Wrap `handler`.
    pub fn new(handler: H, idempotency: Idempotency) -> Self {
        Transactional {
            handler,
            idempotency,
        }
    }
}

impl<H: TransactionalHandler> RecordHandler for Transactional<H> {
    fn name(&self) -> &'static str {
        self.handler.name()
    }

    async fn process(
        &self,
        event: &Envelope,
        _deadline: SystemTime,
    ) -> Result<Delivery, RecordError> {
        if !self.handler.wants(event) {
            return Ok(Delivery::Ignored);
        }
        let executed = self
            .idempotency
            .run_transactional(event, |conflict| self.handler.decide(event, conflict))
            .await?;
        Ok(delivery(executed))
    }
}

fn delivery(executed: Executed<Outcome>) -> Delivery {
    match executed {
        Executed::Ran(outcome) => Delivery::Applied(outcome),
        Executed::Replayed(outcome) => Delivery::Duplicate(outcome),
    }
}

/// Subscriber settings.
#[derive(Clone, Debug)]
pub struct SubscriberConfig {
    /// The queue's `maxReceiveCount`. When set, a message failing on its last allowed receive is
    /// dead-lettered by the subscriber *with its reason* instead of being moved there silently by
    /// the redrive policy. Default: unset.
    pub max_receive_count: Option<u32>,
    /// Upcasters applied to every event before the handler sees it. Default: none.
    pub upcasters: Upcasters,
}

impl Default for SubscriberConfig {
    fn default() -> Self {
        SubscriberConfig {
            max_receive_count: None,
            upcasters: Upcasters::new(),
        }
    }
}

/// Counts for one batch.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct BatchSummary {
    /// Effects applied now.
    pub applied: usize,
    /// Duplicates skipped.
    pub duplicates: usize,
    /// Events not meant for this subscriber.
    pub ignored: usize,
    /// Messages dead-lettered with a reason.
    pub dead_lettered: usize,
    /// Messages reported for redelivery.
    pub failed: usize,
}

/// The SQS-facing subscriber.
pub struct SqsSubscriber<H, D, S> {
    handler: H,
    dead_letters: D,
    emitter: Producer<S>,
    config: SubscriberConfig,
}

enum Fate {
    Done(Delivery),
    Failed(RecordError),
}

impl<H: RecordHandler, D: DeadLetters, S: EventStream> SqsSubscriber<H, D, S> {
    /// A subscriber running `handler`, dead-lettering to `dead_letters`, emitting through `emitter`.
    pub fn new(
        handler: H,
        dead_letters: D,
        emitter: Producer<S>,
        config: SubscriberConfig,
    ) -> Self {
        SqsSubscriber {
            handler,
            dead_letters,
            emitter,
            config,
        }
    }

    /// The subscriber's name.
    pub fn name(&self) -> &'static str {
        self.handler.name()
    }

    /// Handle one SQS batch. Events are grouped by FIFO `MessageGroupId`, else by aggregate
    /// (`subject`): one group's events in order, groups concurrently ([`batch::process_sqs`]).
    pub async fn handle(
        &self,
        event: &SqsEvent,
        deadline: SystemTime,
    ) -> (SqsBatchResponse, BatchSummary) {
        // Old schema versions are upcast before the handler sees them.
        let envelopes: Vec<Result<Envelope, ValidationError>> = event
            .records
            .iter()
            .map(|m| decode(m).and_then(|e| self.config.upcasters.upcast(e)))
            .collect();
        let summary = std::sync::Mutex::new(BatchSummary::default());
        let count = |f: fn(&mut BatchSummary)| {
            if let Ok(mut summary) = summary.lock() {
                f(&mut summary)
            }
        };
        let group = |i: usize, message: &SqsMessage| {
            batch::fifo_group(message).or_else(|| {
                envelopes[i]
                    .as_ref()
                    .ok()
                    .map(|e| e.partition_key().to_string())
            })
        };
        let report = batch::process_sqs(event, group, async |i, message| {
            let span = match &envelopes[i] {
                Ok(envelope) => crate::telemetry::event_span(envelope),
                Err(_) => tracing::Span::none(),
            };
            self.settle(message, &envelopes[i], deadline, &count)
                .instrument(span)
                .await
        })
        .await;
        let mut summary = summary.into_inner().unwrap_or_default();
        summary.failed = report.response.batch_item_failures.len();
        tracing::info!(
            subscriber = self.handler.name(),
            messages = event.records.len(),
            applied = summary.applied,
            duplicates = summary.duplicates,
            ignored = summary.ignored,
            dead_lettered = summary.dead_lettered,
            failed = summary.failed,
            "batch done"
        );
        (report.response, summary)
    }

    /// One message to its end: done, dead-lettered, or reported for redelivery.
    async fn settle(
        &self,
        message: &SqsMessage,
        envelope: &Result<Envelope, ValidationError>,
        deadline: SystemTime,
        count: &(impl Fn(fn(&mut BatchSummary)) + Sync),
    ) -> Result<(), String> {
        {
            let fate = match envelope {
                Ok(envelope) => self.process_one(envelope, deadline).await,
                Err(err) => Fate::Failed(RecordError::Poison {
                    field: err.field().to_string(),
                    reason: err.to_string(),
                }),
            };
            let last_chance = self
                .config
                .max_receive_count
                .is_some_and(|max| receive_count(message) >= max);
            let letter = match fate {
                Fate::Done(delivery) => {
                    let (delivery_name, effect) = match &delivery {
                        Delivery::Applied(o) => ("applied", o.effect.as_str()),
                        Delivery::Duplicate(o) => ("duplicate", o.effect.as_str()),
                        Delivery::Ignored => ("ignored", ""),
                    };
                    tracing::info!(
                        subscriber = self.handler.name(),
                        delivery = delivery_name,
                        effect,
                        "processed"
                    );
                    count(match delivery {
                        Delivery::Applied(_) => |s| s.applied += 1,
                        Delivery::Duplicate(_) => |s| s.duplicates += 1,
                        Delivery::Ignored => |s| s.ignored += 1,
                    });
                    return Ok(());
                }
                Fate::Failed(RecordError::Poison { field, reason }) => {
                    self.letter(message, &reason).with_field(field)
                }
                Fate::Failed(RecordError::Retry(reason)) if last_chance => {
                    let reason = format!(
                        "gave up after {} receives: {reason}",
                        receive_count(message)
                    );
                    self.letter(message, &reason)
                }
                Fate::Failed(RecordError::Retry(reason)) => {
                    tracing::warn!(message_id = ?message.message_id, %reason, "reporting for redelivery");
                    return Err(reason);
                }
            };
            match self
                .dead_letters
                .send(std::slice::from_ref(&letter))
                .await
                .pop()
            {
                Some(Ok(())) => {
                    tracing::warn!(message_id = ?message.message_id, reason = %letter.reason, "dead-lettered");
                    count(|s| s.dead_lettered += 1);
                    Ok(())
                }
                // Never drop it: let the queue redeliver (and its redrive policy catch it).
                other => {
                    let err = other
                        .and_then(Result::err)
                        .map(|e| e.to_string())
                        .unwrap_or_default();
                    tracing::error!(message_id = ?message.message_id, error = %err, "dead-lettering failed");
                    Err(err)
                }
            }
        }
    }

    async fn process_one(&self, envelope: &Envelope, deadline: SystemTime) -> Fate {
        // A panicking handler fails its record, not the batch (release builds keep unwinding on).
        let processed = AssertUnwindSafe(self.handler.process(envelope, deadline))
            .catch_unwind()
            .await;
        let delivery = match processed {
            Ok(Ok(delivery)) => delivery,
            Ok(Err(err)) => return Fate::Failed(err),
            Err(panic) => {
                let message = batch::panic_message(&panic);
                tracing::error!(event.id = envelope.id(), %message, "handler panicked");
                return Fate::Failed(RecordError::Retry(format!(
                    "the handler panicked: {message}"
                )));
            }
        };
        let emit = match &delivery {
            Delivery::Applied(outcome) | Delivery::Duplicate(outcome) => &outcome.emit,
            Delivery::Ignored => return Fate::Done(delivery),
        };
        if !emit.is_empty() {
            let failures: Vec<String> = self
                .emitter
                .publish(emit)
                .await
                .into_iter()
                .filter_map(Result::err)
                .map(|e| e.to_string())
                .collect();
            if !failures.is_empty() {
                // The effect is stored; the redelivery replays it and publishes again.
                return Fate::Failed(RecordError::Retry(format!(
                    "could not publish follow-up events: {}",
                    failures.join("; ")
                )));
            }
        }
        Fate::Done(delivery)
    }

    fn letter(&self, message: &SqsMessage, reason: &str) -> DeadLetter {
        let mut letter = DeadLetter::new(
            message.body.as_deref().unwrap_or_default().as_bytes(),
            self.handler.name(),
            reason,
        );
        if let Some(id) = &message.message_id {
            letter = letter.with_origin("messageId", id);
        }
        if let Some(arn) = &message.event_source_arn {
            letter = letter.with_origin("eventSourceARN", arn);
        }
        letter.with_origin("receiveCount", receive_count(message).to_string())
    }
}

fn receive_count(message: &SqsMessage) -> u32 {
    message
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|c| c.parse().ok())
        .unwrap_or(1)
}

/// The envelope in an SQS message: the body itself with raw delivery, or the `Message` of an SNS
/// notification when raw delivery is off.
pub fn decode(message: &SqsMessage) -> Result<Envelope, ValidationError> {
    let body = message.body.as_deref().unwrap_or_default();
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Notification {
        #[serde(rename = "Type")]
        kind: String,
        message: String,
    }
    if let Ok(notification) = serde_json::from_str::<Notification>(body) {
        if notification.kind == "Notification" {
            return Envelope::parse(notification.message.as_bytes());
        }
    }
    Envelope::parse(body.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dead_letter::testing::Letters;
    use crate::producer::{PutOutcome, StreamError, StreamRecord};
    use std::sync::Mutex;

    /// Behaves by event type: `boom` panics, `flaky` asks for a retry, `bad` is poison,
    /// `echo` emits a follow-up; everything else is applied.
    struct Scripted;
    impl RecordHandler for Scripted {
        fn name(&self) -> &'static str {
            "scripted"
        }
        async fn process(
            &self,
            event: &Envelope,
            _deadline: SystemTime,
        ) -> Result<Delivery, RecordError> {
            match event.event_type() {
                "boom" => panic!("handler bug"),
                "flaky" => Err(RecordError::Retry("throttled".into())),
                "bad" => Err(RecordError::Poison {
                    field: "data".into(),
                    reason: "is wrong".into(),
                }),
                "echo" => Ok(Delivery::Applied(
                    Outcome::new("echoed")
                        .emitting(event.follow_up("echoed", "herald/test").build().unwrap()),
                )),
                _ => Ok(Delivery::Applied(Outcome::new("done"))),
            }
        }
    }

    struct Stream {
        fail: bool,
        written: Mutex<Vec<StreamRecord>>,
    }
    impl EventStream for Stream {
        async fn put_records(
            &self,
            records: &[StreamRecord],
        ) -> Result<Vec<PutOutcome>, StreamError> {
            if self.fail {
                return Err(StreamError::other("stream down"));
            }
            self.written.lock().unwrap().extend_from_slice(records);
            Ok(records
                .iter()
                .map(|_| PutOutcome::Written {
                    shard_id: "s".into(),
                    sequence_number: "1".into(),
                })
                .collect())
        }
    }

    fn subscriber(
        fail_stream: bool,
        max_receive_count: Option<u32>,
    ) -> SqsSubscriber<Scripted, Letters, Stream> {
        let backoff = crate::backoff::Backoff {
            max_attempts: 1,
            ..Default::default()
        };
        let producer = Producer::with_config(
            Stream {
                fail: fail_stream,
                written: Mutex::default(),
            },
            crate::producer::ProducerConfig {
                backoff,
                ..Default::default()
            },
        );
        SqsSubscriber::new(
            Scripted,
            Letters::default(),
            producer,
            SubscriberConfig {
                max_receive_count,
                ..SubscriberConfig::default()
            },
        )
    }

    fn message(id: &str, event_type: &str, subject: &str, receives: u32) -> SqsMessage {
        let envelope = Envelope::builder(event_type, "herald/test")
            .id(id)
            .subject(subject)
            .build()
            .unwrap();
        raw_message(id, &envelope.to_json(), receives)
    }

    fn raw_message(id: &str, body: &str, receives: u32) -> SqsMessage {
        let mut message = SqsMessage::default();
        message.message_id = Some(id.into());
        message.body = Some(body.into());
        message
            .attributes
            .insert("ApproximateReceiveCount".into(), receives.to_string());
        message
    }

    fn batch(messages: Vec<SqsMessage>) -> SqsEvent {
        let mut event = SqsEvent::default();
        event.records = messages;
        event
    }

    fn failed(response: &SqsBatchResponse) -> Vec<String> {
        response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect()
    }

    #[tokio::test]
    async fn a_panic_fails_its_record_only() {
        let subscriber = subscriber(false, None);
        let event = batch(vec![
            message("a", "ok", "x", 1),
            message("b", "boom", "y", 1),
            message("c", "ok", "z", 1),
        ]);
        let (response, summary) = subscriber.handle(&event, SystemTime::now()).await;
        assert_eq!(failed(&response), ["b"]);
        assert_eq!(summary.applied, 2);
    }

    #[tokio::test]
    async fn poison_is_dead_lettered_with_its_reason_and_acknowledged() {
        let subscriber = subscriber(false, None);
        let event = batch(vec![
            raw_message("a", "not json", 1),
            message("b", "bad", "y", 1),
        ]);
        let (response, summary) = subscriber.handle(&event, SystemTime::now()).await;
        assert!(failed(&response).is_empty());
        assert_eq!(summary.dead_lettered, 2);
        let letters = subscriber.dead_letters.0.lock().unwrap();
        assert_eq!(letters[0].body, "not json");
        assert_eq!(letters[0].stage, "scripted");
        assert_eq!(letters[1].field.as_deref(), Some("data"));
        assert_eq!(letters[1].origin["messageId"], "b");
    }

    #[tokio::test]
    async fn the_last_allowed_receive_dead_letters_with_the_reason() {
        let subscriber = subscriber(false, Some(3));
        let event = batch(vec![
            message("a", "flaky", "x", 2),
            message("b", "flaky", "y", 3),
        ]);
        let (response, _) = subscriber.handle(&event, SystemTime::now()).await;
        assert_eq!(failed(&response), ["a"]);
        let letters = subscriber.dead_letters.0.lock().unwrap();
        assert_eq!(letters.len(), 1);
        assert!(
            letters[0]
                .reason
                .contains("gave up after 3 receives: throttled"),
            "{}",
            letters[0].reason
        );
    }

    #[tokio::test]
    async fn a_failed_event_holds_back_the_rest_of_its_aggregate() {
        let subscriber = subscriber(false, None);
        let event = batch(vec![
            message("a", "flaky", "acct-1", 1),
            message("b", "ok", "acct-1", 1),
            message("c", "ok", "acct-2", 1),
        ]);
        let (response, summary) = subscriber.handle(&event, SystemTime::now()).await;
        assert_eq!(failed(&response), ["a", "b"]);
        assert_eq!(summary.applied, 1);
    }

    #[tokio::test]
    async fn follow_ups_are_published_and_a_failed_publish_is_retried() {
        let ok = subscriber(false, None);
        let (response, _) = ok
            .handle(
                &batch(vec![message("a", "echo", "x", 1)]),
                SystemTime::now(),
            )
            .await;
        assert!(failed(&response).is_empty());
        assert_eq!(ok.emitter.stream().written.lock().unwrap().len(), 1);

        let down = subscriber(true, None);
        let (response, _) = down
            .handle(
                &batch(vec![message("a", "echo", "x", 1)]),
                SystemTime::now(),
            )
            .await;
        assert_eq!(failed(&response), ["a"]);
    }

    #[test]
    fn sns_notifications_are_unwrapped() {
        let envelope = Envelope::builder("ok", "herald/test")
            .id("n1")
            .subject("s")
            .build()
            .unwrap();
        let wrapped = serde_json::json!({"Type": "Notification", "MessageId": "m", "Message": envelope.to_json()});
        let decoded = decode(&raw_message("m", &wrapped.to_string(), 1)).unwrap();
        assert_eq!(decoded, envelope);
    }
}
