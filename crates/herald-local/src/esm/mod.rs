//! Event source mappings, played locally with the settings written in the template.
//!
//! **Kinesis and DynamoDB Streams** (one task per shard): reads with `GetRecords`, gathers up to `BatchSize` records
//! or until `MaximumBatchingWindowInSeconds` passes, invokes, and then follows Lambda's rules:
//! - success → checkpoint the batch;
//! - `batchItemFailures` (with `ReportBatchItemFailures`) → checkpoint before the lowest failed
//!   sequence number and retry from there; an unknown or empty identifier fails the whole batch;
//!   with `BisectBatchOnFunctionError` too, the batch is split at the failed record instead (and
//!   bisected when the failed record is the first), so a poison record ends up alone;
//! - function error (handled error, timeout, crash) → with `BisectBatchOnFunctionError` split the
//!   batch in two and try each half (splitting does not count as a retry); otherwise retry it;
//! - `MaximumRetryAttempts` exhausted, or records older than `MaximumRecordAgeInSeconds` → the
//!   batch's metadata goes to `DestinationConfig.OnFailure` in Lambda's on-failure record shape
//!   (a failed send is retried until it goes through), and the shard moves on;
//! - after every batch that is done (processed, or its failure record sent) the shard's
//!   checkpoint moves past it ([`Checkpoints`], saved per stack): a restarted runner resumes
//!   there, a new mapping starts at its `StartingPosition`;
//! - shards are listed again every few polls: after a reshard the child shards are read once
//!   their parents are read to their end, so one key's records stay in order;
//! - `ParallelizationFactor` → that many lanes per shard by partition key, run concurrently, each
//!   in order;
//! - `TumblingWindowInSeconds` → state carried from one invocation to the next within a window,
//!   and a final invocation per window ([`OpenWindow`], saved with the checkpoint).
//!
//! **SQS**: receives up to `BatchSize` messages (≤ 10 per `ReceiveMessage`) within the batching
//! window, invokes, deletes what succeeded (all but the reported `batchItemFailures`), and leaves
//! failures to the queue: they come back after the visibility timeout, and the queue's redrive
//! policy moves them to the DLQ after `maxReceiveCount` receives.

// One concern per module; the runner only sees the types below and the two `run_*` entry points.
mod ages; // iterator ages, for the local alarms
mod batch; // Lambda's retry / bisect / checkpoint rules for a stream batch
mod checkpoints; // where each shard has got to, kept across restarts
mod on_failure; // the on-failure destination record
mod pause; // waiting between polls and retries
mod shard; // one shard's reader: batching window, lanes, windows, checkpoints
mod shards; // a stream mapping's shards: listing, children after parents
mod sqs; // SQS pollers
mod window; // TumblingWindowInSeconds: state across invocations, a final invocation per window

pub use ages::{Ages, IteratorAges};
pub use checkpoints::{Checkpoints, MappingCheckpoints, ShardCheckpoint};
pub(crate) use pause::pause;
pub use shards::run_stream;
pub use sqs::run_sqs;
pub use window::{OpenWindow, MAX_STATE_BYTES};

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use crate::logs::Logs;
use crate::stack::Stack;
use crate::stream::{EventSource, Record as StreamRecord, Stream};

/// Shared state the runner uses to tell when everything has settled.
#[derive(Default)]
pub struct Activity {
    /// Invocations running now.
    pub in_flight: Arc<AtomicUsize>,
    /// Kinesis shards that have not caught up with the stream's tip.
    pub shards_behind: AtomicUsize,
    /// Tumbling windows that have had records and not yet their final invocation (a shard at
    /// its tip with an open window is caught up: the window closes when its time is up).
    pub open_windows: AtomicUsize,
    /// Records a Firehose delivery stream has read and not yet delivered to S3 (they go when
    /// its buffering interval has passed).
    pub archive_buffered: AtomicUsize,
    /// Batches sent to on-failure destinations.
    pub on_failure_batches: AtomicUsize,
    /// SQS `ReceiveMessage` calls that returned messages (what Lambda's pollers bill per batch;
    /// the local runner's empty polls are not counted).
    pub sqs_receives: AtomicUsize,
    /// SQS `DeleteMessageBatch` calls.
    pub sqs_deletes: AtomicUsize,
    /// Iterator ages of the stream mappings (for the local alarms).
    pub iterator_ages: IteratorAges,
}

/// Poll settings shared by every mapping.
#[derive(Clone, Debug)]
pub struct PollSettings {
    /// Pause between polls of an empty shard or queue. Default 100 ms (Lambda polls about once
    /// a second; locally a snappier loop shortens tests).
    pub idle_poll: Duration,
    /// Longest pause before retrying a failed Kinesis batch.
    pub max_retry_delay: Duration,
    /// How long past a tumbling window's end a shard at its tip waits for late records before
    /// the window's final invocation. Default 1 s (Lambda waits up to 2 minutes; locally a
    /// record is on the stream moments after it was put).
    pub window_grace: Duration,
}

impl Default for PollSettings {
    fn default() -> Self {
        PollSettings {
            idle_poll: Duration::from_millis(100),
            max_retry_delay: Duration::from_secs(1),
            window_grace: Duration::from_secs(1),
        }
    }
}

/// Where a mapping's context comes from.
#[derive(Clone)]
pub struct Context {
    /// The stack (for region, account, on-failure queue URLs).
    pub stack: Arc<Stack>,
    /// Kinesis client.
    pub kinesis: aws_sdk_kinesis::Client,
    /// DynamoDB Streams client.
    pub dynamodb_streams: aws_sdk_dynamodbstreams::Client,
    /// SQS client.
    pub sqs: aws_sdk_sqs::Client,
    /// SNS client (on-failure destinations may be topics).
    pub sns: aws_sdk_sns::Client,
    /// Output.
    pub logs: Arc<Logs>,
    /// Settling state.
    pub activity: Arc<Activity>,
    /// Poll settings.
    pub settings: PollSettings,
    /// Stream checkpoints.
    pub checkpoints: Arc<Checkpoints>,
}

impl Context {
    /// The stream `mapping` reads, through this context's clients.
    fn stream(&self, mapping: &crate::stack::StreamMapping) -> Stream {
        match mapping.source {
            crate::stack::StreamSource::Kinesis => Stream::Kinesis {
                client: self.kinesis.clone(),
                name: mapping.stream_name.clone(),
            },
            crate::stack::StreamSource::DynamoDb => Stream::DynamoDb {
                client: self.dynamodb_streams.clone(),
                arn: mapping.stream_arn.clone(),
                hash_key: mapping.partition_key_attribute.clone(),
            },
        }
    }

    /// Where a mapping's batches come from, as Lambda's event names it.
    fn event_source<'a>(&'a self, mapping: &'a crate::stack::StreamMapping) -> EventSource<'a> {
        EventSource::of(&self.stack, mapping)
    }
}
