//! Operating a herald stack — one CloudFormation deployed (`sam deploy`) or one `herald local up`
//! started — found by name with [`connect`]. Every command works on either: the [`Stack`] model is
//! the same, read from CloudFormation ([`deployed_stack`]) or from the state file the local runner
//! wrote ([`running_stack`]).
//!
//! [`Stack`]: herald_local::Stack
//!
//! ## Is it healthy?
//! [`doctor::examine`] looks at everything a pipeline needs to deliver: its event source mappings,
//! dead-letter and failure queues, how far behind its stream readers are, its alarms, the
//! idempotency records' TTL, point-in-time recovery and the archive. Each [`doctor::Finding`]
//! names the resource and the command that inspects or fixes it.
//!
//! ## Dead letters
//! [`dead_letter_queues`] finds every dead-letter and failure queue and where its messages came
//! from; [`letters`] reads them with their reasons; [`redrive`] sends them back where they came
//! from (a queue, a stream reader, a store), never twice, never past the idempotency horizon.
//!
//! ## Replay
//! [`replay`] runs the stream through the stack's router again (the deployed function through
//! Lambda's Invoke, or the local binary); [`replay_archive`] reads the S3 archive instead;
//! [`republish`] puts what a store holds on the stream again.
//!
//! ## What happened to an event?
//! [`trace`] follows one business transaction through every hop: from the stack's CloudWatch
//! Logs, where Lambda writes a deployed stack's function output and the local runner writes a
//! local one's, or from log files.
//!
//! ## Watching it
//! [`console`] serves a page with the flow, live counts, alarms, dead letters with redrive and
//! traces: for a local pipeline from the runner itself, for a deployed one from CloudWatch.
//! [`inspect`] reads a stack's tables and queues back (tests, demos).
//!
//! ## Sending to a deployed stack
//! [`signed::post_json`] reaches a deployed Function URL or HTTP API: over TLS, signed with
//! SigV4 with the SDK's credentials.

mod backfill;
mod cloudwatch;
pub mod console;
mod dlq;
pub mod doctor;
mod expiry;
mod filter_policy;
pub mod inspect;
pub(crate) mod redrive;
mod replay;
mod republish;
pub mod signed;
mod stack;
pub mod trace;

pub use backfill::{
    replay_archive, replay_events, stream_events, stream_retention_hours, subscriber_queue,
    Backfilled, Target,
};
pub use dlq::{
    dead_letter_queues, find_dead_letter_queue, letters, DeadLetterQueue, Letter, Source,
};
pub use expiry::{Expired, Horizon, RESEND_MARGIN};
pub use filter_policy::matches as filter_policy_matches;
pub use redrive::{redrive, redrive_with, sequence_after, RedriveOptions, Redriven};
pub use replay::{replay, replay_function, Replayed, Routed};
pub use republish::{
    failure_span, republish, store_route, stores, Republished, StoreRoute, ARRIVAL_MARGIN,
};
pub use stack::{
    connect, deployed_stack, deployed_template, from_cloudformation, running_stack, state_file,
};
