//! The SQS-facing subscriber: decoding messages into envelopes, running the handler per event,
//! publishing follow-ups, dead-lettering poison with its reason, and the partial batch response.

use std::panic::AssertUnwindSafe;
use std::time::SystemTime;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use futures::FutureExt;
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use super::{Delivery, RecordError, RecordHandler};
use crate::batch;
use crate::dead_letter::{DeadLetter, DeadLetters};
use crate::envelope::{Envelope, ValidationError};
use crate::producer::{EventStream, Producer};
use crate::schema::Upcasters;

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
            let failures: Vec<_> = self
                .emitter
                .publish(emit)
                .await
                .into_iter()
                .filter_map(Result::err)
                .collect();
            if failures.iter().any(|e| !e.is_retryable()) {
                // The stream refuses a follow-up for good: no redelivery can publish it.
                return Fate::Failed(RecordError::Poison {
                    field: "emit".into(),
                    reason: format!(
                        "a follow-up event can never be published: {}",
                        join(&failures)
                    ),
                });
            }
            if !failures.is_empty() {
                let failures: Vec<String> = failures.iter().map(ToString::to_string).collect();
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

fn join(errors: &[crate::producer::PublishError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
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
mod tests;
