//! Exactly-once effects on at-least-once delivery, persisted in DynamoDB.
//!
//! Every delivery of an event is first matched against an *idempotency record* keyed by the event
//! (by default the subscriber's name + the CloudEvents identity `source` + `id`; never the SQS
//! message id, since an SNS redelivery arrives as a new SQS message).
//!
//! Two modes:
//! - **Claimed** ([`Idempotency::run`]), for effects outside DynamoDB (a payment gateway, a mail
//!   relay). One conditional `PutItem` claims the event (INPROGRESS); the handler runs; the record
//!   becomes COMPLETED with the handler's result, or is deleted when the handler fails so that a
//!   retry runs it again. A duplicate costs one failed conditional write: the stored record comes
//!   back with the failure (`ReturnValuesOnConditionCheckFailure=ALL_OLD`), no extra read.
//! - **Transactional** ([`Idempotency::run_transactional`]), for effects that are DynamoDB writes.
//!   The COMPLETED record and the effect's writes go in one `TransactWriteItems`: one request per
//!   first delivery instead of two, and no crash can fall between "effect" and "mark done".
//!
//! A claim left INPROGRESS by a crashed invocation is released when that invocation's deadline has
//! passed (`Context::deadline`, or a configured timeout, never below a floor). COMPLETED records
//! expire after [`IdempotencyConfig::record_ttl`]; an expired record counts as absent (DynamoDB's
//! TTL deletes lazily, days later).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};
use aws_sdk_dynamodb::Client;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::aws::error_text;
use crate::backoff::Backoff;
use crate::envelope::Envelope;
use crate::limits::DYNAMODB_MAX_TRANSACT_ITEMS;

/// Attribute names of an idempotency record.
pub mod attr {
    /// Partition key.
    pub const KEY: &str = "pk";
    /// `INPROGRESS` or `COMPLETED`.
    pub const STATUS: &str = "status";
    /// When the record expires, epoch seconds: the table's TTL attribute.
    pub const EXPIRES_AT: &str = "expiresAt";
    /// When an INPROGRESS claim may be taken over, epoch milliseconds.
    pub const IN_PROGRESS_UNTIL: &str = "inProgressUntil";
    /// The handler's result as JSON.
    pub const RESULT: &str = "result";
    /// SHA-256 of the payload fields that must match on a duplicate.
    pub const PAYLOAD_HASH: &str = "payloadHash";
    /// Which delivery holds an INPROGRESS claim: only that one may complete or release it.
    pub const CLAIM: &str = "claimId";
}

const IN_PROGRESS: &str = "INPROGRESS";
const COMPLETED: &str = "COMPLETED";

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

/// Chooses the idempotency key of an event (without the subscriber prefix).
pub type KeyFn = Arc<dyn Fn(&Envelope) -> String + Send + Sync>;

/// Settings. Every field has a default; only the table name and the prefix are yours to give.
#[derive(Clone)]
pub struct IdempotencyConfig {
    /// The DynamoDB table (partition key `pk`, string; TTL on `expiresAt`).
    pub table_name: String,
    /// Prefixes every key, so subscribers sharing a table never see each other's records
    /// (and IAM can confine each to its prefix with `dynamodb:LeadingKeys`).
    pub key_prefix: String,
    /// How long a COMPLETED record is kept. Default 24 h; keep it longer than the longest
    /// redelivery you expect (queue retention, DLQ redrive).
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
    pub in_progress_wait: Duration,
    /// COMPLETED results kept in memory (0 = no cache). Default 0.
    pub cache_capacity: usize,
    /// Retries of a transaction that collided with another one. Default: [`Backoff::default`].
    pub conflict_backoff: Backoff,
}

impl IdempotencyConfig {
    /// Defaults for `table_name`, keys prefixed with `key_prefix`.
    pub fn new(table_name: impl Into<String>, key_prefix: impl Into<String>) -> Self {
        IdempotencyConfig {
            table_name: table_name.into(),
            key_prefix: key_prefix.into(),
            record_ttl: Duration::from_secs(24 * 3600),
            in_progress_timeout: None,
            min_in_progress: Duration::from_secs(2),
            payload_hash: PayloadHash::default(),
            key: Arc::new(Envelope::identity),
            in_progress_wait: Duration::from_secs(2),
            cache_capacity: 0,
            conflict_backoff: Backoff::default(),
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
            .finish_non_exhaustive()
    }
}

/// What can go wrong; match on it.
#[derive(Debug, thiserror::Error)]
pub enum IdempotencyError<E> {
    /// Another invocation holds the claim and its time is not up.
    #[error(
        "event {key} is being processed by another invocation (claim held until {until_ms} ms)"
    )]
    AlreadyInProgress { key: String, until_ms: i64 },
    /// Same key, different payload: a producer reused an id for a different event.
    #[error("event {key} was already processed with a different payload (stored hash {stored}, this delivery {received})")]
    PayloadMismatch {
        key: String,
        stored: String,
        received: String,
    },
    /// DynamoDB failed or answered something unexpected.
    #[error("idempotency store: {0}")]
    Persistence(String),
    /// The handler failed (its claim was released, so a retry runs it again).
    #[error(transparent)]
    Handler(E),
}

/// How a call ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Executed<T> {
    /// The handler ran now.
    Ran(T),
    /// A duplicate: the handler did not run; this is the result stored by the run that did.
    Replayed(T),
}

impl<T> Executed<T> {
    /// The result, however obtained.
    pub fn into_inner(self) -> T {
        match self {
            Executed::Ran(t) | Executed::Replayed(t) => t,
        }
    }
    /// Whether this delivery was a duplicate.
    pub fn is_replay(&self) -> bool {
        matches!(self, Executed::Replayed(_))
    }
}

/// A transactional handler's decision: the effect's writes and the result to store with them.
#[derive(Clone, Debug)]
pub struct Decision<T> {
    /// The writes of the effect (at most 99: the record takes one of the 100 transaction slots).
    pub writes: Vec<TransactWriteItem>,
    /// What to store and return.
    pub result: T,
}

/// Why the previous decision could not be committed: its write at `index` failed its condition
/// (for example "stock never below zero"). The handler decides again knowing this.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// Index into the previous decision's `writes`.
    pub index: usize,
}

/// The claim's fate, as read from the store.
enum Claim<T> {
    /// Ours, with the token that proves it.
    Acquired(String),
    Completed(T),
}

/// Exactly-once execution backed by a DynamoDB table.
#[derive(Clone)]
pub struct Idempotency {
    client: Client,
    config: Arc<IdempotencyConfig>,
    cache: Arc<Mutex<Cache>>,
}

impl fmt::Debug for Idempotency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Idempotency")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Idempotency {
    /// Records in `config.table_name` through `client`.
    pub fn new(client: Client, config: IdempotencyConfig) -> Self {
        let cache = Cache::new(config.cache_capacity);
        Idempotency {
            client,
            config: Arc::new(config),
            cache: Arc::new(Mutex::new(cache)),
        }
    }

    /// The settings.
    pub fn config(&self) -> &IdempotencyConfig {
        &self.config
    }

    /// The record key of an event.
    pub fn key_of(&self, event: &Envelope) -> String {
        format!("{}#{}", self.config.key_prefix, (self.config.key)(event))
    }

    /// The payload hash of an event (empty when comparison is off).
    pub fn hash_of(&self, event: &Envelope) -> String {
        match &self.config.payload_hash {
            PayloadHash::Off => String::new(),
            PayloadHash::Fields(fields) => {
                let json = serde_json::to_value(event).unwrap_or(Value::Null);
                let mut hasher = Sha256::new();
                for field in fields {
                    hasher.update(field.as_bytes());
                    hasher.update([0]);
                    canonical_json(json.get(field).unwrap_or(&Value::Null), &mut hasher);
                    hasher.update([0]);
                }
                hex::encode(hasher.finalize())
            }
        }
    }

    /// **Claimed mode.** Run `handler` once per event: claim, run, store the result (or release
    /// the claim on error). `deadline` is the invocation's (`Context::deadline()`).
    pub async fn run<T, E, F, Fut>(
        &self,
        event: &Envelope,
        deadline: SystemTime,
        handler: F,
    ) -> Result<Executed<T>, IdempotencyError<E>>
    where
        T: Serialize + DeserializeOwned + Clone,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let key = self.key_of(event);
        let hash = self.hash_of(event);
        if let Some(result) = self.cached(&key, &hash)? {
            return Ok(Executed::Replayed(result));
        }
        let token = match self.claim_or_wait::<T, E>(&key, &hash, deadline).await? {
            Claim::Completed(result) => return Ok(Executed::Replayed(result)),
            Claim::Acquired(token) => token,
        };
        match handler().await {
            Ok(result) => {
                let json = serde_json::to_string(&result).map_err(|e| {
                    IdempotencyError::Persistence(format!("result does not serialize: {e}"))
                })?;
                self.complete(&key, &hash, &json, &token).await?;
                self.remember(&key, &hash, &json);
                Ok(Executed::Ran(result))
            }
            Err(err) => {
                if let Err(release) = self.release(&key, &token).await {
                    // The claim then expires at its deadline and a retry takes it over.
                    tracing::warn!(%key, error = %release, "could not release the claim after a handler error");
                }
                Err(IdempotencyError::Handler(err))
            }
        }
    }

    /// **Transactional mode.** `decide` returns the effect's writes and the result; they are
    /// committed together with the COMPLETED record in one `TransactWriteItems`. If a write's
    /// condition fails, `decide` is asked again with the [`Conflict`] (up to 3 times).
    pub async fn run_transactional<T, E, F>(
        &self,
        event: &Envelope,
        mut decide: F,
    ) -> Result<Executed<T>, IdempotencyError<E>>
    where
        T: Serialize + DeserializeOwned + Clone,
        F: FnMut(Option<Conflict>) -> Result<Decision<T>, E>,
    {
        let key = self.key_of(event);
        let hash = self.hash_of(event);
        if let Some(result) = self.cached(&key, &hash)? {
            return Ok(Executed::Replayed(result));
        }
        let mut conflict = None;
        let mut collisions = 0;
        for _ in 0..4 {
            let decision = decide(conflict).map_err(IdempotencyError::Handler)?;
            if decision.writes.len() >= DYNAMODB_MAX_TRANSACT_ITEMS {
                return Err(IdempotencyError::Persistence(format!(
                    "{} writes in one decision; the limit is {} (100 per transaction, one for the record)",
                    decision.writes.len(),
                    DYNAMODB_MAX_TRANSACT_ITEMS - 1
                )));
            }
            let json = serde_json::to_string(&decision.result).map_err(|e| {
                IdempotencyError::Persistence(format!("result does not serialize: {e}"))
            })?;
            let now = now_ms();
            let record = Put::builder()
                .table_name(&self.config.table_name)
                .set_item(Some(self.record_item(
                    &key,
                    &hash,
                    COMPLETED,
                    now,
                    None,
                    Some(&json),
                )))
                .condition_expression(CLAIM_CONDITION)
                .set_expression_attribute_names(Some(claim_names()))
                .set_expression_attribute_values(Some(claim_values(now)))
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .build()
                .map_err(|e| IdempotencyError::Persistence(e.to_string()))?;
            let mut items = vec![TransactWriteItem::builder().put(record).build()];
            items.extend(decision.writes);
            match self
                .client
                .transact_write_items()
                .set_transact_items(Some(items))
                .send()
                .await
            {
                Ok(_) => {
                    self.remember(&key, &hash, &json);
                    return Ok(Executed::Ran(decision.result));
                }
                Err(err) => match cancellation(&err) {
                    Some(Cancelled::RecordExists(old)) => {
                        let old = match old {
                            Some(item) => Some(item),
                            None => self.get(&key).await?,
                        };
                        return match old {
                            Some(item) => self
                                .existing::<T, E>(&key, &hash, &item)
                                .map(Executed::Replayed),
                            None => Err(IdempotencyError::Persistence(format!(
                                "the record {key} blocked the transaction but cannot be read"
                            ))),
                        };
                    }
                    Some(Cancelled::Effect(index)) => conflict = Some(Conflict { index }),
                    Some(Cancelled::Collision)
                        if collisions < self.config.conflict_backoff.max_attempts =>
                    {
                        collisions += 1;
                        self.config.conflict_backoff.wait(collisions).await;
                    }
                    _ => return Err(IdempotencyError::Persistence(error_text(&err))),
                },
            }
        }
        Err(IdempotencyError::Persistence(format!(
            "event {key}: the effect's conditions kept failing after re-deciding"
        )))
    }

    /// Claim; while another delivery holds the claim, retry for up to `in_progress_wait`.
    async fn claim_or_wait<T: DeserializeOwned, E>(
        &self,
        key: &str,
        hash: &str,
        deadline: SystemTime,
    ) -> Result<Claim<T>, IdempotencyError<E>> {
        let started = std::time::Instant::now();
        let mut pause = Duration::from_millis(25);
        loop {
            match self.claim(key, hash, deadline).await {
                Err(IdempotencyError::AlreadyInProgress { .. })
                    if started.elapsed() + pause < self.config.in_progress_wait
                        && SystemTime::now() + pause < deadline =>
                {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(400));
                }
                other => return other,
            }
        }
    }

    async fn claim<T: DeserializeOwned, E>(
        &self,
        key: &str,
        hash: &str,
        deadline: SystemTime,
    ) -> Result<Claim<T>, IdempotencyError<E>> {
        let now = now_ms();
        let until = self.in_progress_until(now, deadline);
        let token = uuid::Uuid::new_v4().to_string();
        let result = self
            .client
            .put_item()
            .table_name(&self.config.table_name)
            .set_item(Some(self.record_item(
                key,
                hash,
                IN_PROGRESS,
                now,
                Some((until, &token)),
                None,
            )))
            .condition_expression(CLAIM_CONDITION)
            .set_expression_attribute_names(Some(claim_names()))
            .set_expression_attribute_values(Some(claim_values(now)))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(Claim::Acquired(token)),
            Err(SdkError::ServiceError(service)) => match service.err() {
                PutItemError::ConditionalCheckFailedException(failed) => {
                    let old = match failed.item() {
                        Some(item) => Some(item.clone()),
                        // Some emulators leave the old item out; read it then.
                        None => self.get(key).await?,
                    };
                    match old {
                        Some(item) => self.existing(key, hash, &item).map(Claim::Completed),
                        None => Err(IdempotencyError::Persistence(format!(
                            "the claim on {key} failed but no record can be read"
                        ))),
                    }
                }
                other => Err(IdempotencyError::Persistence(error_text(other))),
            },
            Err(err) => Err(IdempotencyError::Persistence(error_text(&err))),
        }
    }

    /// Interpret a record that blocked a claim: a stored result, or why there is none.
    fn existing<T: DeserializeOwned, E>(
        &self,
        key: &str,
        hash: &str,
        item: &HashMap<String, AttributeValue>,
    ) -> Result<T, IdempotencyError<E>> {
        let status = string(item, attr::STATUS).unwrap_or_default();
        if status != COMPLETED {
            return Err(IdempotencyError::AlreadyInProgress {
                key: key.to_string(),
                until_ms: number(item, attr::IN_PROGRESS_UNTIL).unwrap_or(0),
            });
        }
        let stored = string(item, attr::PAYLOAD_HASH).unwrap_or_default();
        if !hash.is_empty() && !stored.is_empty() && stored != hash {
            return Err(IdempotencyError::PayloadMismatch {
                key: key.to_string(),
                stored,
                received: hash.to_string(),
            });
        }
        let json = string(item, attr::RESULT).unwrap_or_else(|| "null".into());
        self.remember(key, hash, &json);
        serde_json::from_str(&json).map_err(|e| {
            IdempotencyError::Persistence(format!("stored result of {key} does not decode: {e}"))
        })
    }

    /// Store the result, if the claim is still ours (`token`). When a slow delivery's claim
    /// expired and another took it over, this one must not overwrite that one's record.
    async fn complete<E>(
        &self,
        key: &str,
        hash: &str,
        json: &str,
        token: &str,
    ) -> Result<(), IdempotencyError<E>> {
        let result = self
            .client
            .put_item()
            .table_name(&self.config.table_name)
            .set_item(Some(self.record_item(
                key,
                hash,
                COMPLETED,
                now_ms(),
                None,
                Some(json),
            )))
            .condition_expression("#claim = :mine")
            .expression_attribute_names("#claim", attr::CLAIM)
            .expression_attribute_values(":mine", AttributeValue::S(token.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                Err(IdempotencyError::Persistence(format!(
                    "the claim on {key} expired and another delivery took it over before this one finished"
                )))
            }
            Err(err) => Err(IdempotencyError::Persistence(error_text(&err))),
        }
    }

    /// Delete the claim after a handler error, if it is still ours.
    async fn release(&self, key: &str, token: &str) -> Result<(), String> {
        self.client
            .delete_item()
            .table_name(&self.config.table_name)
            .key(attr::KEY, AttributeValue::S(key.to_string()))
            .condition_expression("#status = :inprogress AND #claim = :mine")
            .expression_attribute_names("#status", attr::STATUS)
            .expression_attribute_names("#claim", attr::CLAIM)
            .expression_attribute_values(":inprogress", AttributeValue::S(IN_PROGRESS.into()))
            .expression_attribute_values(":mine", AttributeValue::S(token.to_string()))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| error_text(&e))
    }

    async fn get<E>(
        &self,
        key: &str,
    ) -> Result<Option<HashMap<String, AttributeValue>>, IdempotencyError<E>> {
        self.client
            .get_item()
            .table_name(&self.config.table_name)
            .key(attr::KEY, AttributeValue::S(key.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map(|out| out.item)
            .map_err(|e| IdempotencyError::Persistence(error_text(&e)))
    }

    fn in_progress_until(&self, now: i64, deadline: SystemTime) -> i64 {
        let floor = now + self.config.min_in_progress.as_millis() as i64;
        let until = match self.config.in_progress_timeout {
            Some(timeout) => now + timeout.as_millis() as i64,
            None => deadline
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0),
        };
        until.max(floor)
    }

    fn record_item(
        &self,
        key: &str,
        hash: &str,
        status: &str,
        now: i64,
        in_progress: Option<(i64, &str)>,
        result: Option<&str>,
    ) -> HashMap<String, AttributeValue> {
        let expires_at = now / 1000 + self.config.record_ttl.as_secs() as i64;
        let mut item = HashMap::from([
            (attr::KEY.to_string(), AttributeValue::S(key.to_string())),
            (
                attr::STATUS.to_string(),
                AttributeValue::S(status.to_string()),
            ),
            (
                attr::EXPIRES_AT.to_string(),
                AttributeValue::N(expires_at.to_string()),
            ),
        ]);
        if let Some((until, token)) = in_progress {
            item.insert(
                attr::IN_PROGRESS_UNTIL.into(),
                AttributeValue::N(until.to_string()),
            );
            item.insert(attr::CLAIM.into(), AttributeValue::S(token.to_string()));
        }
        if let Some(result) = result {
            item.insert(attr::RESULT.into(), AttributeValue::S(result.to_string()));
        }
        if !hash.is_empty() {
            item.insert(
                attr::PAYLOAD_HASH.into(),
                AttributeValue::S(hash.to_string()),
            );
        }
        item
    }

    fn cached<T: DeserializeOwned, E>(
        &self,
        key: &str,
        hash: &str,
    ) -> Result<Option<T>, IdempotencyError<E>> {
        let hit = self.cache.lock().map(|mut c| c.get(key)).unwrap_or(None);
        match hit {
            None => Ok(None),
            Some((stored, _)) if !hash.is_empty() && !stored.is_empty() && stored != hash => {
                Err(IdempotencyError::PayloadMismatch {
                    key: key.to_string(),
                    stored,
                    received: hash.to_string(),
                })
            }
            Some((_, json)) => Ok(serde_json::from_str(&json).ok()),
        }
    }

    fn remember(&self, key: &str, hash: &str, json: &str) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.put(
                key,
                hash,
                json,
                now_ms() / 1000 + self.config.record_ttl.as_secs() as i64,
            );
        }
    }
}

/// A claim succeeds when the key is absent, the record expired, or an INPROGRESS claim's time is up.
const CLAIM_CONDITION: &str =
    "attribute_not_exists(#pk) OR #expires < :now_s OR (#status = :inprogress AND #until < :now_ms)";

fn claim_names() -> HashMap<String, String> {
    HashMap::from([
        ("#pk".to_string(), attr::KEY.to_string()),
        ("#expires".to_string(), attr::EXPIRES_AT.to_string()),
        ("#status".to_string(), attr::STATUS.to_string()),
        ("#until".to_string(), attr::IN_PROGRESS_UNTIL.to_string()),
    ])
}

fn claim_values(now_ms: i64) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (
            ":now_s".to_string(),
            AttributeValue::N((now_ms / 1000).to_string()),
        ),
        (":now_ms".to_string(), AttributeValue::N(now_ms.to_string())),
        (
            ":inprogress".to_string(),
            AttributeValue::S(IN_PROGRESS.into()),
        ),
    ])
}

enum Cancelled {
    /// The record's condition failed: a duplicate (or a live claim). Carries the old item when
    /// DynamoDB returned it.
    RecordExists(Option<HashMap<String, AttributeValue>>),
    /// The effect's write at this index failed its condition.
    Effect(usize),
    /// Another transaction touched the same items.
    Collision,
}

fn cancellation(err: &SdkError<TransactWriteItemsError>) -> Option<Cancelled> {
    let cancelled = match err.as_service_error()? {
        TransactWriteItemsError::TransactionCanceledException(cancelled) => cancelled,
        TransactWriteItemsError::TransactionInProgressException(_) => {
            return Some(Cancelled::Collision)
        }
        _ => return None,
    };
    let reasons = cancelled.cancellation_reasons();
    let code = |i: usize| reasons.get(i).and_then(|r| r.code()).unwrap_or("None");
    if code(0) == "ConditionalCheckFailed" {
        return Some(Cancelled::RecordExists(reasons[0].item().cloned()));
    }
    if let Some(i) = (1..reasons.len()).find(|&i| code(i) == "ConditionalCheckFailed") {
        return Some(Cancelled::Effect(i - 1));
    }
    if reasons
        .iter()
        .any(|r| r.code() == Some("TransactionConflict"))
    {
        return Some(Cancelled::Collision);
    }
    // Some emulators omit the reasons; the message still names the condition failure.
    if reasons.is_empty()
        && cancelled
            .message()
            .is_some_and(|m| m.contains("ConditionalCheckFailed"))
    {
        return Some(Cancelled::RecordExists(None));
    }
    None
}

fn string(item: &HashMap<String, AttributeValue>, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

fn number(item: &HashMap<String, AttributeValue>, name: &str) -> Option<i64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// JSON with object keys sorted, so equal payloads hash equally whatever their key order.
fn canonical_json(value: &Value, hasher: &mut Sha256) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            hasher.update(b"{");
            for key in keys {
                hasher.update(serde_json::to_string(key).unwrap_or_default().as_bytes());
                hasher.update(b":");
                canonical_json(&map[key], hasher);
                hasher.update(b",");
            }
            hasher.update(b"}");
        }
        Value::Array(items) => {
            hasher.update(b"[");
            for item in items {
                canonical_json(item, hasher);
                hasher.update(b",");
            }
            hasher.update(b"]");
        }
        other => hasher.update(other.to_string().as_bytes()),
    }
}

/// A bounded cache of COMPLETED results (oldest evicted first). INPROGRESS is never cached: a
/// claim can be released or taken over at any time.
struct Cache {
    capacity: usize,
    entries: HashMap<String, CacheEntry>,
    order: VecDeque<String>,
}

struct CacheEntry {
    hash: String,
    json: String,
    expires_at: i64,
}

impl Cache {
    fn new(capacity: usize) -> Self {
        Cache {
            capacity,
            entries: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    fn get(&mut self, key: &str) -> Option<(String, String)> {
        let entry = self.entries.get(key)?;
        if entry.expires_at < now_ms() / 1000 {
            self.entries.remove(key);
            return None;
        }
        Some((entry.hash.clone(), entry.json.clone()))
    }

    fn put(&mut self, key: &str, hash: &str, json: &str, expires_at: i64) {
        if self.capacity == 0 {
            return;
        }
        let entry = CacheEntry {
            hash: hash.to_string(),
            json: json.to_string(),
            expires_at,
        };
        if self.entries.insert(key.to_string(), entry).is_none() {
            self.order.push_back(key.to_string());
        }
        while self.entries.len() > self.capacity {
            match self.order.pop_front() {
                Some(oldest) => {
                    self.entries.remove(&oldest);
                }
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_hash_ignores_key_order() {
        let hash = |v: &Value| {
            let mut h = Sha256::new();
            canonical_json(v, &mut h);
            hex::encode(h.finalize())
        };
        assert_eq!(
            hash(&json!({"a": 1, "b": [1, {"c": 2, "d": 3}]})),
            hash(&json!({"b": [1, {"d": 3, "c": 2}], "a": 1}))
        );
        assert_ne!(hash(&json!({"a": 1})), hash(&json!({"a": 2})));
    }

    #[test]
    fn cache_is_bounded() {
        let mut cache = Cache::new(2);
        let later = now_ms() / 1000 + 60;
        cache.put("a", "h", "1", later);
        cache.put("b", "h", "2", later);
        cache.put("c", "h", "3", later);
        assert!(cache.get("a").is_none());
        assert_eq!(cache.get("c").unwrap().1, "3");
        cache.put("d", "h", "4", now_ms() / 1000 - 1);
        assert!(cache.get("d").is_none(), "expired entries are misses");
    }
}
