//! herald: services don't call each other; they announce what happened, and others decide how
//! to react.
//!
//! Your application brings its event types and its handlers; herald brings the pipeline around
//! them on AWS Lambda: a producer onto Kinesis, a router through SNS, subscribers on SQS that
//! apply each event's effect once however often it is delivered.
//!
//! # The smallest pipeline
//!
//! An [`EventCatalog`] says which events exist. The producer and the router need nothing else;
//! each is a `main` of a few lines (the template sets the rest of their wiring):
//!
//! ```no_run
//! use herald::{EventCatalog, EventKind, Herald, Upcasters};
//!
//! fn catalog() -> EventCatalog {
//!     EventCatalog::new().with("user_signed_up", EventKind::Business, 1..=1)
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), herald::Error> {
//!     let herald = Herald::from_env().await?.catalog(catalog()).upcasters(Upcasters::new());
//!     herald.run_producer().await // or run_router() in the router's function
//! }
//! ```
//!
//! A subscriber is a [`ClaimedHandler`]: what it wants and what it does with one event.
//!
//! ```
//! use herald::{ClaimedHandler, Envelope, HandlerError, Outcome};
//!
//! struct Welcome;
//!
//! impl ClaimedHandler for Welcome {
//!     fn name(&self) -> &'static str {
//!         "welcome" // its idempotency keys start with it
//!     }
//!     fn wants(&self, event: &Envelope) -> bool {
//!         event.event_type() == "user_signed_up"
//!     }
//!     async fn handle(&self, event: &Envelope) -> Result<Outcome, HandlerError> {
//!         let email: String = event.data_as()?; // a wrong payload is dead-lettered, named
//!         Ok(Outcome::new("welcomed").with_detail(serde_json::json!({ "to": email })))
//!     }
//! }
//! # use herald::idempotency::{Idempotency, IdempotencyConfig};
//! # use herald::producer::Producer;
//! # use herald::subscriber::{Claimed, SqsSubscriber, SubscriberConfig};
//! # use herald::testing::{sqs_event, InMemoryDeadLetters, InMemoryStream};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // In a function: `Herald::from_env().await?.run_claimed(Welcome).await`. Without AWS, with
//! // the in-memory ports (feature `test-util`), the same event delivered twice:
//! let idempotency = Idempotency::in_memory(IdempotencyConfig::new("idempotency", "welcome"));
//! let subscriber = SqsSubscriber::new(
//!     Claimed::new(Welcome, idempotency),
//!     InMemoryDeadLetters::new(),
//!     Producer::new(InMemoryStream::new()),
//!     SubscriberConfig::default(),
//! );
//! let event = Envelope::builder("user_signed_up", "example/users")
//!     .subject("user-1")
//!     .data(serde_json::json!("ada@example.com"))
//!     .build()
//!     .unwrap();
//! let deadline = std::time::SystemTime::now() + std::time::Duration::from_secs(10);
//! let (_, first) = subscriber.handle(&sqs_event(&[event.clone()]), deadline).await;
//! let (_, again) = subscriber.handle(&sqs_event(&[event]), deadline).await;
//! assert_eq!((first.applied, again.applied, again.duplicates), (1, 0, 1));
//! # }
//! ```
//!
//! # Every function herald runs
//!
//! | function | you write | herald runs it with |
//! |---|---|---|
//! | producer | nothing (the catalog, a [`SubmissionPolicy`]) | [`Herald::run_producer`] |
//! | router | nothing (the catalog) | [`Herald::run_router`] |
//! | subscriber, effect outside DynamoDB | a [`ClaimedHandler`] | [`Herald::run_claimed`] |
//! | subscriber, effect = DynamoDB writes | a [`TransactionalHandler`] | [`Herald::run_transactional`] |
//! | subscriber, effect = one write keyed by the event | a [`KeyedHandler`] | [`Herald::run_keyed`] |
//! | commands on an event-sourced aggregate | an [`Aggregate`], [`Command`]s, an [`HttpService`] over a [`CommandService`] | [`Herald::run_http`] |
//! | the event store's stream onto the bus | nothing | [`Herald::run_publisher`] |
//! | a read model | a [`Projection`] | [`Herald::run_projector`] |
//! | patterns over time (a tumbling window on the stream) | a [`WindowedAggregation`] | [`Herald::run_windowed`] |
//! | queries | an [`HttpService`] | [`Herald::run_http`] |
//!
//! # The modules
//!
//! The names above are all re-exported here; the modules hold the rest, one layer each:
//! - [`envelope`]: the CloudEvents envelope, its validation, the catalog, upcasting of old
//!   schema versions, JSON Schemas;
//! - [`producer`], [`router`], [`subscriber`]: the three roles of the pipeline, each with its
//!   port and its AWS adapter (Kinesis, SNS, SQS); windows over the stream are a subscriber's;
//! - [`idempotency`]: exactly-once effects on at-least-once delivery (DynamoDB or in memory);
//! - [`event_sourcing`]: the event store, commands, the store's publisher, projections;
//! - [`aws`]: SDK clients, failure classes, service limits, and what runs around every handler
//!   (the Lambda runtime, logs, metrics, the environment contract, dead letters);
//! - `testing` (feature `test-util`): in-memory ports and Lambda events for unit tests.
//!
//! Longer documents (design, failure modes, operations) are in the repository's `docs/`.

#![warn(missing_docs)]

mod app;
pub mod aws;
pub mod envelope;
pub mod event_sourcing;
pub mod idempotency;
pub mod producer;
pub mod router;
pub mod subscriber;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;

pub use app::Herald;
pub use aws::http::{HttpRequest, HttpResponse, HttpService};
pub use aws::lambda::Error;
pub use envelope::{Envelope, EventCatalog, EventKind, Upcasters, ValidationError};
pub use event_sourcing::{
    Aggregate, Command, CommandError, CommandService, EventStore, Projection,
};
pub use producer::SubmissionPolicy;
pub use subscriber::window::WindowedAggregation;
pub use subscriber::{
    ClaimedHandler, HandlerError, KeyedHandler, KeyedOutcome, Outcome, TransactionalHandler,
};
