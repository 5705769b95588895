//! Event sourcing and read models: store what happened, decide commands on the state it folds
//! to, publish the store's events onto the stream, and project them into the shapes queries ask.
//!
//! # Write side
//! An [`Aggregate`] is the fold of its events; a [`Command`] decides which events it causes;
//! a [`CommandService`] loads, decides and appends at the loaded version (optimistic
//! concurrency) on an [`EventStore`] ([`DynamoDbEventStore`] in a function).
//!
//! # Onto the stream
//! The [`publisher`] reads the store's DynamoDB stream and puts each new event on Kinesis: an
//! event is published if and only if it was appended.
//!
//! # Read side
//! A [`Projection`] folds events into a read model; [`projection::rebuild`] starts it again from
//! the store.

pub mod command;
pub mod event_store;
pub mod projection;
pub mod publisher;

pub use command::{Command, CommandError, CommandService};
pub use event_store::{Aggregate, DynamoDbEventStore, EventStore, StoreError};
pub use projection::Projection;
