//! Exactly-once effects on at-least-once delivery, persisted in DynamoDB.
//!
//! Every delivery of an event is first matched against an *idempotency record* keyed by the event
//! (by default the subscriber's name + the CloudEvents identity `source` + `id`; never the SQS
//! message id, since an SNS redelivery arrives as a new SQS message).
//!
//! Two modes:
//! - **Claimed** ([`Idempotency::run`]), for effects outside DynamoDB (a card processor, a mail
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
//!
//! Records live behind the [`IdempotencyStore`] port: [`DynamoDbStore`] in production,
//! `InMemoryStore` (feature `test-util`) in tests. What records mean is decided here, in the
//! modes, so both stores behave alike. Files: `config`, `error`, `record`, `store`, `dynamodb`,
//! `memory`, `claimed`, `transactional` (one event), `batch` (a batch's events in one
//! transaction), `home` (a record kept in the effect's own item), `delta`, `item_locks`, `short_items`, `cache`.

mod batch;
mod cache;
mod claimed;
mod config;
mod delta;
mod dynamodb;
mod error;
mod home;
mod item_locks;
mod keyed;
#[cfg(any(test, feature = "test-util"))]
mod memory;
mod record;
mod short_items;
mod store;
mod transactional;

use std::fmt;
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::types::TransactWriteItem;
use aws_sdk_dynamodb::Client;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::envelope::Envelope;

pub use crate::aws::RecordTables;
use cache::Cache;
pub use config::{IdempotencyConfig, KeyFn, PayloadHash, DEFAULT_RECORD_TTL};
pub use delta::Delta;
pub use dynamodb::DynamoDbStore;
pub use error::{IdempotencyError, PersistenceError};
pub use home::record_in;
use item_locks::ItemLocks;
pub use keyed::{put_once, text, Item, PutOnce};
#[cfg(any(test, feature = "test-util"))]
pub use memory::InMemoryStore;
pub use record::{attr, IdempotencyRecord, RecordStatus};
use short_items::ShortItems;
pub use store::{BatchCommitOutcome, ClaimOutcome, CommitOutcome, IdempotencyStore};

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
    /// The writes of the effect, each applied as it is.
    pub writes: Vec<TransactWriteItem>,
    /// Commutative changes to numbers (counters, stock levels): herald sums those of a batch's
    /// events on one item into one write ([`Idempotency::run_transactional_batch`]). Writes and
    /// deltas together: at most 99 (the record takes one of a transaction's 100 slots).
    pub deltas: Vec<Delta>,
    /// What to store and return.
    pub result: T,
}

impl<T> Decision<T> {
    /// The effect's writes in commit order: `writes`, then each delta's write. A [`Conflict`]'s
    /// index points into this list.
    pub fn effects(&self) -> Result<Vec<TransactWriteItem>, PersistenceError> {
        let mut effects = self.writes.clone();
        for delta in &self.deltas {
            effects.push(delta.to_write()?);
        }
        Ok(effects)
    }

    /// How many writes the effect has (its deltas each count one, before any summing).
    pub fn len(&self) -> usize {
        self.writes.len() + self.deltas.len()
    }

    /// Whether the effect writes nothing (only the record is written).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why the previous decision could not be committed: its effect at `index` failed its condition
/// (for example "stock never below zero"). The handler decides again knowing this.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// Index into the previous decision's [`Decision::effects`]: its `writes`, then its `deltas`.
    pub index: usize,
}

/// Exactly-once execution backed by an [`IdempotencyStore`] (DynamoDB unless told otherwise).
#[derive(Clone)]
pub struct Idempotency {
    store: Arc<dyn IdempotencyStore>,
    config: Arc<IdempotencyConfig>,
    cache: Arc<Mutex<Cache>>,
    item_locks: Arc<ItemLocks>,
    short_items: Arc<ShortItems>,
}

impl fmt::Debug for Idempotency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Idempotency")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Idempotency {
    /// Records in `config.table_name` (one table or several, [`RecordTables`]) through `client`.
    pub fn new(client: Client, config: IdempotencyConfig) -> Self {
        let store = DynamoDbStore::new(client, config.table_name.clone());
        Idempotency::with_store(store, config)
    }

    /// Records in `store` (`config.table_name` is then only the store's business).
    pub fn with_store(store: impl IdempotencyStore + 'static, config: IdempotencyConfig) -> Self {
        let cache = Cache::new(config.cache_capacity);
        Idempotency {
            store: Arc::new(store),
            config: Arc::new(config),
            cache: Arc::new(Mutex::new(cache)),
            item_locks: Arc::default(),
            short_items: Arc::default(),
        }
    }

    /// Records in a fresh [`InMemoryStore`] of its own, for tests that need not look inside it
    /// (those that do pass a clone to [`Idempotency::with_store`]).
    #[cfg(any(test, feature = "test-util"))]
    pub fn in_memory(config: IdempotencyConfig) -> Self {
        Idempotency::with_store(InMemoryStore::new(), config)
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

    /// A record of `key` written `now_ms`, expiring after the configured TTL; the mode fills in
    /// the claim or the result.
    fn record(
        &self,
        key: &str,
        hash: &str,
        status: RecordStatus,
        now_ms: i64,
    ) -> IdempotencyRecord {
        IdempotencyRecord {
            key: key.to_string(),
            status,
            expires_at: now_ms / 1000 + self.config.record_ttl.as_secs() as i64,
            in_progress_until: None,
            claim: None,
            result: None,
            payload_hash: (!hash.is_empty()).then(|| hash.to_string()),
        }
    }

    /// Interpret a record that blocked a claim or a commit: a stored result, or why there is none.
    fn existing<T: DeserializeOwned, E>(
        &self,
        key: &str,
        hash: &str,
        record: &IdempotencyRecord,
    ) -> Result<T, IdempotencyError<E>> {
        if record.status != RecordStatus::Completed {
            return Err(IdempotencyError::AlreadyInProgress {
                key: key.to_string(),
                until_ms: record.in_progress_until.unwrap_or(0),
            });
        }
        let stored = record.payload_hash.clone().unwrap_or_default();
        if !hash.is_empty() && !stored.is_empty() && stored != hash {
            return Err(IdempotencyError::PayloadMismatch {
                key: key.to_string(),
                stored,
                received: hash.to_string(),
            });
        }
        let json = record.result.as_deref().unwrap_or("null");
        self.remember(key, hash, json);
        serde_json::from_str(json).map_err(|e| {
            PersistenceError::new(format!("stored result of {key} does not decode: {e}"))
                .with_source(e)
                .into()
        })
    }
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

/// What the modes' tests share: events and an in-memory `Idempotency` to run them through.
#[cfg(test)]
mod fixtures {
    use std::time::{Duration, SystemTime};

    use serde_json::json;

    use super::{Idempotency, IdempotencyConfig, InMemoryStore};
    use crate::envelope::Envelope;

    /// `user_signed_up` number `id`, with `n` in its payload.
    pub(super) fn event(id: &str, n: u32) -> Envelope {
        Envelope::builder("user_signed_up", "herald/users")
            .id(id)
            .subject("user-1")
            .data(json!({"n": n}))
            .build()
            .unwrap()
    }

    /// A store to look inside, and an `Idempotency` on it with `config`.
    pub(super) fn in_memory(config: IdempotencyConfig) -> (InMemoryStore, Idempotency) {
        let store = InMemoryStore::new();
        (store.clone(), Idempotency::with_store(store, config))
    }

    /// The defaults (a test's deadlines are far enough not to matter).
    pub(super) fn config() -> IdempotencyConfig {
        IdempotencyConfig::new("unused", "test")
    }

    /// An invocation deadline 30 s from now.
    pub(super) fn deadline() -> SystemTime {
        SystemTime::now() + Duration::from_secs(30)
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
}
