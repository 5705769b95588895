//! Subscribers: an SQS batch in, one idempotent effect per event, a partial batch response out.
//!
//! The pieces, outermost first:
//! - [`SqsSubscriber`] decodes each message into an [`Envelope`] (raw SNS delivery, or the SNS
//!   notification wrapper when raw delivery is off), lets the handler settle what it can for the
//!   whole batch at once (a transactional handler: one transaction), runs it per event for the
//!   rest — events of one aggregate in order, different aggregates concurrently — publishes the
//!   follow-up events of the whole batch together, dead-letters poison with its reason, and
//!   answers with the failed message ids (`ReportBatchItemFailures`).
//! - [`Claimed`], [`Transactional`] and [`Keyed`] wrap a domain handler in one of the three
//!   [idempotency](crate::idempotency) modes.
//! - The application's handlers implement [`ClaimedHandler`], [`TransactionalHandler`] or
//!   [`KeyedHandler`] and run with [`crate::Herald::run_claimed`] /
//!   [`crate::Herald::run_transactional`] / [`crate::Herald::run_keyed`].
//!
//! Follow-up events have deterministic ids ([`Envelope::follow_up`]) and are stored with the
//! idempotency record. A duplicate delivery publishes them again: if the first run crashed after
//! its effect but before publishing, nothing is lost, and if it did publish, the next hop
//! deduplicates the repeat.

mod idempotent;
pub mod partial_response;
mod redelivery;
pub mod retry;
mod sqs;
pub mod window;

use std::future::Future;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::aws::errors::ErrorClass;
use crate::envelope::{Envelope, ValidationError};
use crate::idempotency::{Conflict, Decision, IdempotencyError};

pub use idempotent::{Claimed, Keyed, Transactional};
pub use redelivery::SqsRedelivery;
pub use retry::{Postponed, Redelivery, RetryPolicy};
pub use sqs::{decode, BatchSummary, SqsSubscriber, SubscriberConfig};

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
    /// Not now (what the event needs is not there yet, a partner's gateway timed out): let the
    /// queue redeliver it, with backoff, for up to the subscriber's retry budget
    /// ([`RetryPolicy::budget`]); then it is dead-lettered with this reason.
    #[error("{0}")]
    Retry(String),
    /// An AWS request failed in a way only time or an operator fixes: throttling, a 5xx, an
    /// outage ([`ErrorClass::Transient`]), or access denied, a disabled key, a missing resource
    /// ([`ErrorClass::Configuration`]). Redelivered with backoff for as long as the queue keeps
    /// it; never dead-lettered for it before the queue's last receive. `?` on an
    /// [`AwsError`](crate::aws::AwsError) gives this (or `Poison` for a request AWS refuses as
    /// invalid).
    #[error("{reason}")]
    Unavailable {
        /// Transient or configuration.
        class: ErrorClass,
        /// What AWS answered.
        reason: String,
    },
}

impl From<crate::aws::AwsError> for HandlerError {
    /// A failed AWS request in a handler: poison when the request can never succeed
    /// ([`ErrorClass::Permanent`], e.g. a `ValidationException`), else unavailable.
    fn from(err: crate::aws::AwsError) -> Self {
        match err.class() {
            ErrorClass::Permanent => HandlerError::Poison {
                field: "event".into(),
                reason: format!("{err} (permanent: retrying cannot help)"),
            },
            class => HandlerError::Unavailable {
                class,
                reason: err.to_string(),
            },
        }
    }
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
///
/// [`Idempotency::run`]: crate::idempotency::Idempotency::run
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
///
/// [`Idempotency::run_transactional`]: crate::idempotency::Idempotency::run_transactional
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

/// A subscriber whose effect carries its own proof: one write keyed by the event (an outbox
/// item, a ledger entry, a view row) or a call under an idempotency key (a payment gateway's).
/// No idempotency record is written: a redelivery runs the handler again, and the effect
/// answers that it happened before — with what it stored then, so the same follow-ups come out.
/// One write per event instead of a claim, the effect and a result.
///
/// The handler must make the effect conditional on its key, report an existing one as
/// [`KeyedOutcome::Existing`], and refuse (as poison) a request whose key exists with other
/// contents (the same event id with another payload). [`crate::idempotency::put_once`] does
/// that for a DynamoDB item.
pub trait KeyedHandler: Send + Sync {
    /// The subscriber's name: dead-letter stage and metrics dimension.
    fn name(&self) -> &'static str;
    /// Whether the subscriber acts on this event at all.
    fn wants(&self, event: &Envelope) -> bool;
    /// Perform the effect, or find it done.
    fn handle(
        &self,
        event: &Envelope,
    ) -> impl Future<Output = Result<KeyedOutcome, HandlerError>> + Send;
}

/// What a [`KeyedHandler`]'s effect did.
#[derive(Clone, Debug, PartialEq)]
pub enum KeyedOutcome {
    /// It happened now.
    New(Outcome),
    /// It had happened before, under the same key: a duplicate (its follow-ups go out again).
    Existing(Outcome),
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
    /// Report it for redelivery, with backoff, within the retry budget (see [`retry`]).
    #[error("{0}")]
    Retry(String),
    /// AWS could not serve it (transient or configuration): report it for redelivery, with
    /// backoff, for as long as the queue keeps it (see [`retry`]).
    #[error("{reason}")]
    Unavailable {
        /// Transient or configuration.
        class: ErrorClass,
        /// What failed.
        reason: String,
    },
}

impl From<HandlerError> for RecordError {
    fn from(err: HandlerError) -> Self {
        match err {
            HandlerError::Poison { field, reason } => RecordError::Poison { field, reason },
            HandlerError::Retry(reason) => RecordError::Retry(reason),
            HandlerError::Unavailable { class, reason } => {
                RecordError::Unavailable { class, reason }
            }
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
            // DynamoDB refused the write as invalid: every redelivery would fail alike.
            IdempotencyError::Persistence(ref e) if e.class() == ErrorClass::Permanent => {
                RecordError::Poison {
                    field: "event".into(),
                    reason: format!("{err} (permanent: retrying cannot help)"),
                }
            }
            IdempotencyError::Persistence(ref e) => RecordError::Unavailable {
                class: e.class(),
                reason: err.to_string(),
            },
            // Another invocation holds the event: it is being applied; look again later.
            IdempotencyError::AlreadyInProgress { .. } => RecordError::Unavailable {
                class: ErrorClass::Transient,
                reason: err.to_string(),
            },
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

    /// Settle what can be settled for a batch's events at once (in message order), before any
    /// is [processed](RecordHandler::process) alone. `None` leaves an event to `process`,
    /// called afterwards in order. Return `None` for an event whose earlier events (of its
    /// aggregate) are left to `process`, so that they are applied first. By default nothing is
    /// settled at once.
    fn process_batch(
        &self,
        events: &[&Envelope],
        deadline: SystemTime,
    ) -> impl Future<Output = Vec<Option<Result<Delivery, RecordError>>>> + Send {
        let _ = deadline;
        let unsettled = events.iter().map(|_| None).collect();
        async move { unsettled }
    }
}

/// A [`RecordHandler`]'s futures, boxed.
type Boxed<'a, T> = std::pin::Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// [`RecordHandler`] as a trait object: its futures boxed.
trait DynRecordHandler: Send + Sync {
    fn name(&self) -> &'static str;
    fn process<'a>(
        &'a self,
        event: &'a Envelope,
        deadline: SystemTime,
    ) -> Boxed<'a, Result<Delivery, RecordError>>;
    fn process_batch<'a>(
        &'a self,
        events: &'a [&'a Envelope],
        deadline: SystemTime,
    ) -> Boxed<'a, Vec<Option<Result<Delivery, RecordError>>>>;
}

impl<H: RecordHandler> DynRecordHandler for H {
    fn name(&self) -> &'static str {
        RecordHandler::name(self)
    }

    fn process<'a>(
        &'a self,
        event: &'a Envelope,
        deadline: SystemTime,
    ) -> Boxed<'a, Result<Delivery, RecordError>> {
        Box::pin(RecordHandler::process(self, event, deadline))
    }

    fn process_batch<'a>(
        &'a self,
        events: &'a [&'a Envelope],
        deadline: SystemTime,
    ) -> Boxed<'a, Vec<Option<Result<Delivery, RecordError>>>> {
        Box::pin(RecordHandler::process_batch(self, events, deadline))
    }
}

/// Any [`RecordHandler`] behind one type, so that the subscriber's batch machinery (the SQS
/// batch, its groups, follow-ups, dead letters, the Lambda runtime under it) is compiled once
/// rather than once per handler: a binary running many subscribers (the shop's runs eight)
/// carries one copy. Costs one allocation per event processed (and per batch), next to the
/// network calls every event makes.
pub(crate) struct ErasedHandler<'h>(Box<dyn DynRecordHandler + 'h>);

impl<'h> ErasedHandler<'h> {
    pub(crate) fn new(handler: impl RecordHandler + 'h) -> Self {
        ErasedHandler(Box::new(handler))
    }
}

impl RecordHandler for ErasedHandler<'_> {
    fn name(&self) -> &'static str {
        self.0.name()
    }

    async fn process(
        &self,
        event: &Envelope,
        deadline: SystemTime,
    ) -> Result<Delivery, RecordError> {
        self.0.process(event, deadline).await
    }

    async fn process_batch(
        &self,
        events: &[&Envelope],
        deadline: SystemTime,
    ) -> Vec<Option<Result<Delivery, RecordError>>> {
        self.0.process_batch(events, deadline).await
    }
}
