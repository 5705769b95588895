//! Settings: [`IdempotencyConfig`], which payload fields a duplicate must match ([`PayloadHash`]),
//! and how an event's key is chosen ([`KeyFn`]).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::aws::limits::SQS_MAX_RETENTION_SECONDS;
use crate::aws::Backoff;
use crate::envelope::Envelope;

/// Which parts of an event must be equal for two deliveries with the same key to be duplicates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PayloadHash {
    /// Don't compare payloads.
    Off,
    /// Compare these top-level envelope attributes (`type`, `subject`, `data`, ...).
    Fields(Vec<String>),
}

impl Default for PayloadHash {
    /// `type`, `subject` and `data`: what the event says, not when or how it was delivered.
    fn default() -> Self {
        PayloadHash::Fields(vec!["type".into(), "subject".into(), "data".into()])
    }
}

/// The default [`IdempotencyConfig::record_ttl`]: 15 days. A dead letter can be redriven as long
/// as its queue keeps it — at most 14 days ([`SQS_MAX_RETENTION_SECONDS`]) after the message was
/// first sent, which is before its record was written — and a redriven event must still find its
/// record, or it is applied twice. One day more covers the redrive and its redeliveries.
pub const DEFAULT_RECORD_TTL: Duration = Duration::from_secs(SQS_MAX_RETENTION_SECONDS + 24 * 3600);

/// Chooses the idempotency key of an event (without the subscriber prefix).
pub type KeyFn = Arc<dyn Fn(&Envelope) -> String + Send + Sync>;

/// Settings. Every field has a default; only the table name and the prefix are yours to give.
#[derive(Clone)]
pub struct IdempotencyConfig {
    /// The DynamoDB table (partition key `pk`, string; TTL on `expiresAt`), or several separated
    /// by commas that share the records by key ([`RecordTables`](super::RecordTables)): past one
    /// table's write quota. Fixed for the life of the records.
    pub table_name: String,
    /// Prefixes every key, so subscribers sharing a table never see each other's records
    /// (and IAM can confine each to its prefix with `dynamodb:LeadingKeys`).
    pub key_prefix: String,
    /// How long a COMPLETED record is kept. Default [`DEFAULT_RECORD_TTL`] (15 days): longer
    /// than any SQS queue keeps a message, so a dead letter redriven on its last day is still
    /// recognised as a duplicate.
    pub record_ttl: Duration,
    /// How long a claim blocks other deliveries. Default `None`: until the invocation's deadline.
    pub in_progress_timeout: Option<Duration>,
    /// A claim never expires sooner than this after it was taken. Default 2 s.
    pub min_in_progress: Duration,
    /// Payload comparison on duplicates. Default: `type`, `subject`, `data`.
    pub payload_hash: PayloadHash,
    /// The key of an event. Default: `source` + `#` + `id` (CloudEvents' identity).
    pub key: KeyFn,
    /// How long a delivery waits for a concurrent delivery of the same event to finish before
    /// giving up with [`IdempotencyError::AlreadyInProgress`]. Default 2 s (never past the
    /// invocation's deadline). Failing at once, as Powertools does, costs an SQS duplicate a whole
    /// visibility timeout; the other delivery usually finishes within milliseconds.
    ///
    /// [`IdempotencyError::AlreadyInProgress`]: super::IdempotencyError::AlreadyInProgress
    pub in_progress_wait: Duration,
    /// COMPLETED results kept in memory (0 = no cache). Default 0.
    pub cache_capacity: usize,
    /// Read a batch's records before committing it
    /// ([`Idempotency::run_transactional_batch`](super::Idempotency::run_transactional_batch)),
    /// and leave the duplicates found out of its transaction. Default `true`: the read is an
    /// eventually consistent `BatchGetItem`, half a read unit per event (a twentieth of what
    /// the record's transaction item costs), while a duplicate caught only by the commit
    /// cancels the whole transaction, which is then sent again without it. `false` saves the
    /// read's round trip when redeliveries are rare.
    pub look_ahead: bool,
    /// Retries of a transaction that collided with another one (`TransactionConflict`) or was
    /// throttled, within the invocation's deadline. Default: up to 100 attempts, waits drawn from
    /// `[0, min(400 ms, 25 ms × 2^n)]` (full jitter): the cap is about what ten writers of one hot
    /// item (`MaximumConcurrency` 10) need to take turns, and the deadline, not the count, ends
    /// the retries in practice (measured in `tests/hot_keys.rs`).
    pub conflict_backoff: Backoff,
}

impl IdempotencyConfig {
    /// Defaults for `table_name`, keys prefixed with `key_prefix`.
    pub fn new(table_name: impl Into<String>, key_prefix: impl Into<String>) -> Self {
        IdempotencyConfig {
            table_name: table_name.into(),
            key_prefix: key_prefix.into(),
            record_ttl: DEFAULT_RECORD_TTL,
            in_progress_timeout: None,
            min_in_progress: Duration::from_secs(2),
            payload_hash: PayloadHash::default(),
            key: Arc::new(Envelope::identity),
            in_progress_wait: Duration::from_secs(2),
            cache_capacity: 0,
            look_ahead: true,
            conflict_backoff: Backoff {
                max_attempts: 100,
                base: Duration::from_millis(25),
                cap: Duration::from_millis(400),
            },
        }
    }
}

impl fmt::Debug for IdempotencyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdempotencyConfig")
            .field("table_name", &self.table_name)
            .field("key_prefix", &self.key_prefix)
            .field("record_ttl", &self.record_ttl)
            .field("in_progress_timeout", &self.in_progress_timeout)
            .field("min_in_progress", &self.min_in_progress)
            .field("payload_hash", &self.payload_hash)
            .field("in_progress_wait", &self.in_progress_wait)
            .field("cache_capacity", &self.cache_capacity)
            .field("look_ahead", &self.look_ahead)
            .finish_non_exhaustive()
    }
}
