//! herald: services don't call each other; they announce what happened, and others decide how
//! to react.
//!
//! A framework for event-driven pipelines on AWS Lambda: your application brings its event types
//! (an [`EventCatalog`], [`Upcasters`]) and its handlers; herald brings the pipeline around them.
//! Each function's `main` is a few lines of [`Herald`]:
//!
//! | function | you write | herald runs it with |
//! |---|---|---|
//! | producer | nothing (the catalog, a [`producer::SubmissionPolicy`]) | [`Herald::run_producer`] |
//! | router | nothing (the catalog) | [`Herald::run_router`] |
//! | subscriber, effect outside DynamoDB | a [`ClaimedHandler`] | [`Herald::run_claimed`] |
//! | subscriber, effect = DynamoDB writes | a [`TransactionalHandler`] | [`Herald::run_transactional`] |
//! | subscriber, effect = one write keyed by the event (its own record) | a [`KeyedHandler`] | [`Herald::run_keyed`] |
//! | commands on an event-sourced aggregate | an [`Aggregate`], [`Command`]s, an [`HttpService`] over a [`CommandService`] | [`Herald::run_http`] |
//! | the event store's stream onto the bus | nothing | [`Herald::run_publisher`] |
//! | a read model | a [`Projection`] | [`Herald::run_projector`] |
//! | patterns over time (a tumbling window on the stream) | a [`WindowedAggregation`] | [`Herald::run_windowed`] |
//! | queries | an [`HttpService`] | [`Herald::run_http`] |
//!
//! The modules, one concept each:
//! - [`envelope`]: the immutable CloudEvents 1.0 envelope and its validation;
//! - [`catalog`], [`schema`]: which event types exist; reading old schema versions (upcasting);
//! - [`json_schema`]: payloads checked against their released JSON Schemas;
//! - [`producer`]: validated events onto Kinesis (`PutRecords`, chunked, retried, ordered per aggregate);
//! - [`router`]: Kinesis batches fanned out through SNS `PublishBatch`;
//! - [`subscriber`]: SQS batches handled once per event, with partial batch responses;
//! - [`idempotency`]: exactly-once effects on at-least-once delivery;
//! - [`batch`]: Kinesis and SQS batch processors with Lambda's partial-response rules;
//! - [`window`]: aggregation over Lambda's tumbling windows (patterns over time);
//! - [`event_store`], [`command`]: event sourcing with optimistic concurrency and snapshots;
//! - [`publisher`]: the event store's stream onto Kinesis;
//! - [`projection`]: read models, their projector and rebuild;
//! - [`dead_letter`]: poison records parked with their reason; [`unique_letters`]: once per record;
//! - [`lambda`], [`telemetry`], [`metrics`]: serving a handler with Lambda-shaped logs and EMF metrics;
//!   [`write_units`]: what a DynamoDB request bills, for cost models;
//! - [`adapters`]: the AWS implementations of the ports; `testing` (feature `test-util`):
//!   in-memory ones.

#![warn(missing_docs)]

pub mod adapters;
pub mod app;
pub mod aws;
pub mod backoff;
pub mod batch;
pub mod catalog;
pub mod command;
pub mod dead_letter;
pub mod deadline;
pub mod envelope;
pub mod environment;
pub mod errors;
pub mod event_store;
pub mod http;
pub mod idempotency;
pub mod json_schema;
pub mod lambda;
pub mod limits;
pub mod metrics;
pub mod producer;
pub mod projection;
pub mod publisher;
pub mod router;
pub mod schema;
pub mod subscriber;
pub mod telemetry;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
pub mod unique_letters;
pub mod window;
pub mod write_units;

pub use app::Herald;
pub use catalog::EventCatalog;
pub use command::{Command, CommandService};
pub use envelope::{Envelope, EventKind, ValidationError};
pub use event_store::{Aggregate, EventStore};
pub use http::{HttpRequest, HttpResponse, HttpService};
pub use projection::Projection;
pub use schema::Upcasters;
pub use subscriber::{
    ClaimedHandler, HandlerError, KeyedHandler, KeyedOutcome, Outcome, TransactionalHandler,
};
pub use window::WindowedAggregation;
