//! The SQS-facing subscriber: decoding messages into envelopes, running the handler per event,
//! publishing follow-ups, dead-lettering poison with its reason, and the partial batch response.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use futures::FutureExt;
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use super::partial_response as batch;
use super::retry::{Postponed, Redelivery, RetryPolicy};
use super::{Delivery, RecordError, RecordHandler};
use crate::aws::dead_letter::{DeadLetter, DeadLetters};
use crate::envelope::upcasting::Upcasters;
use crate::envelope::{Envelope, ValidationError};
use crate::producer::{EventStream, Producer, PublishError};

/// Subscriber settings.
#[derive(Clone, Debug)]
pub struct SubscriberConfig {
    /// The queue's `maxReceiveCount`. When set, a message failing on its last allowed receive is
    /// dead-lettered by the subscriber *with its reason* instead of being moved there silently by
    /// the redrive policy. Default: unset.
    pub max_receive_count: Option<u32>,
    /// Upcasters applied to every event before the handler sees it. Default: none.
    pub upcasters: Upcasters,
    /// Backoff and budget of failed messages ([`super::retry`]). Default: [`RetryPolicy::default`].
    pub retry: RetryPolicy,
}

impl Default for SubscriberConfig {
    fn default() -> Self {
        SubscriberConfig {
            max_receive_count: None,
            upcasters: Upcasters::new(),
            retry: RetryPolicy::default(),
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
    /// Of those, messages AWS could not serve ([`RecordError::Unavailable`]). When every message
    /// of a batch is one, the invocation fails as a whole, so Lambda's `Errors` metric (and its
    /// alarm) sees the outage: see [`BatchSummary::outage`].
    pub unavailable: usize,
    /// The first unavailability's reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unavailable_reason: Option<String>,
}

impl BatchSummary {
    /// Every message of a batch of `messages` failed because AWS could not serve it: report the
    /// invocation as failed (the messages' redelivery is set up already).
    pub fn outage(&self, messages: usize) -> bool {
        messages > 0 && self.unavailable == messages
    }
}

/// The SQS-facing subscriber.
pub struct SqsSubscriber<H, D, S> {
    handler: H,
    dead_letters: D,
    emitter: Producer<S>,
    config: SubscriberConfig,
    redelivery: Option<Arc<dyn Redelivery>>,
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
            redelivery: None,
        }
    }

    /// Bring failed messages back with backoff ([`super::retry`]) through `redelivery`. Without
    /// one, a failed message comes back when the queue's visibility timeout says.
    pub fn with_redelivery(mut self, redelivery: Arc<dyn Redelivery>) -> Self {
        self.redelivery = Some(redelivery);
        self
    }

    /// The subscriber's name.
    pub fn name(&self) -> &'static str {
        self.handler.name()
    }

    /// Handle one SQS batch. Events are grouped by FIFO `MessageGroupId`, else by aggregate
    /// (`subject`): one group's events in order, groups concurrently ([`batch::process_sqs`]).
    /// What the handler can settle for the batch at once ([`RecordHandler::process_batch`]: one
    /// transaction) it settles first; the follow-ups of every event go out together at the end,
    /// in as few `PutRecords` as the limits allow.
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
        let presettled = Mutex::new(self.process_batch(&envelopes, deadline).await);
        let fates: Mutex<Vec<Option<Fate>>> =
            Mutex::new(event.records.iter().map(|_| None).collect());
        let group = |i: usize, message: &SqsMessage| {
            batch::fifo_group(message).or_else(|| {
                envelopes[i]
                    .as_ref()
                    .ok()
                    .map(|e| e.partition_key().to_string())
            })
        };
        // 1. Effects, each group's events in order; a record to retry stops its group.
        let report = batch::process_sqs(event, group, async |i, message| {
            let fate = match &envelopes[i] {
                Ok(envelope) => {
                    let settled = lock(&presettled)[i].take();
                    self.process_one(envelope, settled, deadline)
                        .instrument(envelope.span())
                        .await
                }
                Err(err) => Fate::Failed(RecordError::Poison {
                    field: err.field().to_string(),
                    reason: err.to_string(),
                }),
            };
            // A message coming back stops its group here; one herald gives up on does not.
            let retry =
                match &fate {
                    Fate::Failed(
                        err @ (RecordError::Retry(_) | RecordError::Unavailable { .. }),
                    ) if !self.gives_up(message, err) => Some(err.to_string()),
                    _ => None,
                };
            lock(&fates)[i] = Some(fate);
            retry.map_or(Ok(()), Err)
        })
        .await;
        let mut fates = fates.into_inner().unwrap_or_else(PoisonError::into_inner);
        // 2. Every follow-up of the batch at once.
        self.emit(&mut fates).await;
        // 3. Count, dead-letter, report.
        let mut summary = BatchSummary::default();
        let mut response = SqsBatchResponse::default();
        // A group whose message failed here (its follow-ups, its dead letter) reports every later
        // message of the group as failed too, as FIFO ordering requires; their effects are
        // stored, so the redelivery answers them as duplicates (and publishes again).
        let mut failed_groups = std::collections::HashSet::new();
        let mut postponed = Vec::new();
        for (i, (message, fate)) in event.records.iter().zip(fates).enumerate() {
            let unavailable = match &fate {
                Some(Fate::Failed(RecordError::Unavailable { reason, .. })) => Some(reason.clone()),
                _ => None,
            };
            // Each line about an event is logged in its span (it names the event).
            let span = match &envelopes[i] {
                Ok(envelope) => envelope.span(),
                Err(_) => tracing::Span::none(),
            };
            let settled = match fate {
                Some(fate) => {
                    self.settle(message, fate, &mut summary)
                        .instrument(span)
                        .await
                }
                // Skipped behind a failure of its group, or the processing panicked.
                None => Err(()),
            };
            let key = group(i, message);
            let after_failure = key.as_ref().is_some_and(|k| failed_groups.contains(k));
            if settled.is_err() || after_failure || report.outcomes[i] != batch::RecordOutcome::Done
            {
                response.add_failure(message.message_id.clone().unwrap_or_default());
                if let Some(key) = key {
                    failed_groups.insert(key);
                }
                if let Some(reason) = unavailable {
                    summary.unavailable += 1;
                    summary.unavailable_reason.get_or_insert(reason);
                }
                if let (Some(arn), Some(handle)) =
                    (&message.event_source_arn, &message.receipt_handle)
                {
                    postponed.push(Postponed {
                        queue_arn: arn.clone(),
                        receipt_handle: handle.clone(),
                        delay: self.config.retry.delay(receive_count(message)),
                    });
                }
            }
        }
        summary.failed = response.batch_item_failures.len();
        self.postpone(&postponed).await;
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
        (response, summary)
    }

    /// What the handler settles for the whole batch before the events go one by one.
    async fn process_batch(
        &self,
        envelopes: &[Result<Envelope, ValidationError>],
        deadline: SystemTime,
    ) -> Vec<Option<Result<Delivery, RecordError>>> {
        let (indexes, events): (Vec<usize>, Vec<&Envelope>) = envelopes
            .iter()
            .enumerate()
            .filter_map(|(i, e)| e.as_ref().ok().map(|e| (i, e)))
            .unzip();
        let mut settled: Vec<Option<Result<Delivery, RecordError>>> =
            envelopes.iter().map(|_| None).collect();
        if events.is_empty() {
            return settled;
        }
        // A panic here leaves every event to the one-by-one path, which catches it per record.
        let Ok(results) = AssertUnwindSafe(self.handler.process_batch(&events, deadline))
            .catch_unwind()
            .await
        else {
            tracing::error!("the batch path panicked; processing the events one by one");
            return settled;
        };
        for (i, result) in indexes.into_iter().zip(results) {
            settled[i] = result;
        }
        settled
    }

    /// One message's effect: settled by the batch already, or processed now.
    async fn process_one(
        &self,
        envelope: &Envelope,
        settled: Option<Result<Delivery, RecordError>>,
        deadline: SystemTime,
    ) -> Fate {
        if let Some(settled) = settled {
            return match settled {
                Ok(delivery) => Fate::Done(delivery),
                Err(err) => Fate::Failed(err),
            };
        }
        // A panicking handler fails its record, not the batch (release builds keep unwinding on).
        match AssertUnwindSafe(self.handler.process(envelope, deadline))
            .catch_unwind()
            .await
        {
            Ok(Ok(delivery)) => Fate::Done(delivery),
            Ok(Err(err)) => Fate::Failed(err),
            Err(panic) => {
                let message = batch::panic_message(&panic);
                tracing::error!(event.id = envelope.id(), %message, "handler panicked");
                Fate::Failed(RecordError::Retry(format!(
                    "the handler panicked: {message}"
                )))
            }
        }
    }

    /// Publish the follow-ups of every settled event in one go; an event whose follow-ups did
    /// not all make it fails (its effect is stored: the redelivery replays it and publishes
    /// again), as poison when the stream refuses one for good.
    async fn emit(&self, fates: &mut [Option<Fate>]) {
        let mut events = Vec::new();
        let mut owners = Vec::new();
        for (i, fate) in fates.iter().enumerate() {
            if let Some(Fate::Done(Delivery::Applied(o) | Delivery::Duplicate(o))) = fate {
                events.extend(o.emit.iter().cloned());
                owners.extend(std::iter::repeat_n(i, o.emit.len()));
            }
        }
        if events.is_empty() {
            return;
        }
        let mut failures: BTreeMap<usize, Vec<PublishError>> = BTreeMap::new();
        for (owner, result) in owners.into_iter().zip(self.emitter.publish(&events).await) {
            if let Err(err) = result {
                failures.entry(owner).or_default().push(err);
            }
        }
        for (i, failures) in failures {
            let reasons = failures
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            fates[i] = Some(Fate::Failed(
                if failures.iter().any(|e| !e.is_retryable()) {
                    // The stream refuses a follow-up for good: no redelivery can publish it.
                    RecordError::Poison {
                        field: "emit".into(),
                        reason: format!("a follow-up event can never be published: {reasons}"),
                    }
                } else {
                    // The stream throttled, failed or did not answer in time.
                    RecordError::Unavailable {
                        class: crate::aws::errors::ErrorClass::Transient,
                        reason: format!("could not publish follow-up events: {reasons}"),
                    }
                },
            ));
        }
    }

    /// Whether the queue moves this message to its DLQ if it fails now.
    fn last_chance(&self, message: &SqsMessage) -> bool {
        self.config
            .max_receive_count
            .is_some_and(|max| receive_count(message) >= max)
    }

    /// Whether herald dead-letters this failure now rather than let the message come back: a
    /// handler's retry past its budget, or anything on the queue's last receive (SQS would move
    /// it without a reason). AWS's failures have no budget of their own.
    fn gives_up(&self, message: &SqsMessage, err: &RecordError) -> bool {
        match err {
            RecordError::Poison { .. } => true,
            RecordError::Retry(_) => {
                self.last_chance(message)
                    || sent_ms(message)
                        .is_some_and(|sent| self.config.retry.exhausted(sent, SystemTime::now()))
            }
            RecordError::Unavailable { .. } => self.last_chance(message),
        }
    }

    /// Set the failed messages' visibility to their backoff delay. A message whose change fails
    /// comes back when the queue's visibility timeout ends: sooner, nothing lost.
    async fn postpone(&self, postponed: &[Postponed]) {
        let Some(redelivery) = &self.redelivery else {
            return;
        };
        if postponed.is_empty() {
            return;
        }
        for (message, result) in postponed.iter().zip(redelivery.postpone(postponed).await) {
            if let Err(err) = result {
                tracing::warn!(
                    delay_s = message.delay.as_secs(),
                    error = %err,
                    "could not postpone a failed message; it comes back after the queue's visibility timeout"
                );
            }
        }
    }

    /// One message to its end: done, dead-lettered (`Ok`), or to be redelivered (`Err`).
    async fn settle(
        &self,
        message: &SqsMessage,
        fate: Fate,
        summary: &mut BatchSummary,
    ) -> Result<(), ()> {
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
                match delivery {
                    Delivery::Applied(_) => summary.applied += 1,
                    Delivery::Duplicate(_) => summary.duplicates += 1,
                    Delivery::Ignored => summary.ignored += 1,
                }
                return Ok(());
            }
            Fate::Failed(RecordError::Poison { field, reason }) => {
                self.letter(message, &reason).with_field(field)
            }
            Fate::Failed(err) if self.gives_up(message, &err) => {
                let age = sent_ms(message)
                    .map(|sent| {
                        let now = SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map(|d| d.as_millis() as u64)
                            .unwrap_or(0);
                        format!(" over {} s", now.saturating_sub(sent) / 1000)
                    })
                    .unwrap_or_default();
                let reason = format!(
                    "gave up after {} receives{age}: {err}",
                    receive_count(message)
                );
                self.letter(message, &reason)
            }
            Fate::Failed(err) => {
                tracing::warn!(message_id = ?message.message_id, reason = %err, "reporting for redelivery");
                return Err(());
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
                summary.dead_lettered += 1;
                Ok(())
            }
            // Never drop it: let the queue redeliver (and its redrive policy catch it).
            other => {
                let err = other
                    .and_then(Result::err)
                    .map(|e| e.to_string())
                    .unwrap_or_default();
                tracing::error!(message_id = ?message.message_id, error = %err, "dead-lettering failed");
                Err(())
            }
        }
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

/// A lock whose holder cannot have panicked midway (nothing in it panics): take it regardless.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// When SQS took the message (`SentTimestamp`, epoch milliseconds).
fn sent_ms(message: &SqsMessage) -> Option<u64> {
    message
        .attributes
        .get("SentTimestamp")
        .and_then(|t| t.parse().ok())
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
