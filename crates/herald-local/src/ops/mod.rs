//! Operations on a stack: find a running one, inspect dead-letter queues, send their messages back
//! where they came from, and replay the stream through the stack's router function. They work on
//! any endpoint the stack lives on.

mod backfill;
mod dlq;
mod expiry;
mod filter_policy;
pub(crate) mod redrive;
mod replay;
mod republish;
mod stacks;

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
pub use stacks::{connect, deployed_stack, running_stack, state_file};
