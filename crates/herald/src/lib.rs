//! herald: services don't call each other; they announce what happened, and others decide how to react.
//!
//! The library behind herald's Lambda functions:
//! - [`envelope`]: the immutable CloudEvents 1.0 envelope and its validation;
//! - [`producer`]: validated events onto Kinesis (`PutRecords`, chunked, retried, ordered per aggregate);
//! - [`router`]: Kinesis batches fanned out through SNS `PublishBatch`;
//! - [`subscriber`]: SQS batches handled once per event, with partial batch responses;
//! - [`batch`]: Kinesis and SQS batch processors with Lambda's partial-response rules;
//! - [`idempotency`]: exactly-once effects on at-least-once delivery, in DynamoDB;
//! - [`event_store`]: event sourcing with optimistic concurrency and snapshots;
//! - [`order_service`]: commands on the event-sourced `Order` (the write side);
//! - [`publisher`]: the event store's stream onto Kinesis;
//! - [`projection`]: the `orders_view` read model and its queries (the read side);
//! - [`schema`]: schema versions and upcasting;
//! - [`dead_letter`]: poison records parked with their reason;
//! - [`adapters`]: the AWS implementations of the ports above;
//! - [`lambda`]: the entry points the functions call.

pub mod adapters;
pub mod aws;
pub mod backoff;
pub mod batch;
pub mod catalog;
pub mod dead_letter;
pub mod envelope;
pub mod event_store;
pub mod http;
pub mod idempotency;
pub mod lambda;
pub mod limits;
pub mod metrics;
pub mod order_service;
pub mod orders;
pub mod producer;
pub mod projection;
pub mod publisher;
pub mod router;
pub mod schema;
pub mod subscriber;
pub mod telemetry;

pub use envelope::{Envelope, EventKind, ValidationError};
