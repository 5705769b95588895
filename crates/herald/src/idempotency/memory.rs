//! [`InMemoryStore`]: records in a map, for tests without an emulator (feature `test-util`).
//!
//! It cannot evaluate DynamoDB expressions, so the effects of a transactional commit are judged
//! by an *oracle* the test installs: by default every effect's condition holds.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem};
use futures::future::{self, BoxFuture};
use futures::FutureExt;

use super::error::PersistenceError;
use super::home;
use super::item_locks::item_key;
use super::keyed::Item;
use super::record::{IdempotencyRecord, RecordStatus};
use super::store::{BatchCommitOutcome, ClaimOutcome, CommitOutcome, IdempotencyStore};

/// Whether an effect write's condition holds.
type Oracle = Arc<dyn Fn(&TransactWriteItem) -> bool + Send + Sync>;

/// The item a failed effect write found, as DynamoDB returns it with `ALL_OLD`.
type ItemOracle =
    Arc<dyn Fn(&TransactWriteItem) -> Option<HashMap<String, AttributeValue>> + Send + Sync>;

/// Records in memory. Clones share the records, the committed writes and the oracle, so a test
/// keeps one clone to look inside while [`Idempotency`](super::Idempotency) uses another.
#[derive(Clone, Default)]
pub struct InMemoryStore {
    state: Arc<Mutex<State>>,
    oracle: Arc<Mutex<Option<Oracle>>>,
    items: Arc<Mutex<Option<ItemOracle>>>,
}

#[derive(Default)]
struct State {
    records: HashMap<String, IdempotencyRecord>,
    writes: Vec<TransactWriteItem>,
    /// Commits still to refuse, each as a collision (`true`) or as throttling (`false`).
    refusals: std::collections::VecDeque<bool>,
    commits: usize,
    batches: usize,
    /// Reads ahead of a batch commit ([`IdempotencyStore::get_many`]).
    reads: usize,
}

impl fmt::Debug for InMemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state();
        f.debug_struct("InMemoryStore")
            .field("records", &state.records.len())
            .field("writes", &state.writes.len())
            .finish_non_exhaustive()
    }
}

impl InMemoryStore {
    /// An empty store whose effect conditions all hold.
    pub fn new() -> Self {
        InMemoryStore::default()
    }

    /// Judge effect writes with `oracle` from now on: it returns whether the write's condition
    /// holds (say, `false` for a stock decrement that would go below zero). It is called once per
    /// effect per commit attempt, in order, outside the store's lock.
    pub fn set_condition_oracle(
        &self,
        oracle: impl Fn(&TransactWriteItem) -> bool + Send + Sync + 'static,
    ) {
        *self.oracle.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(oracle));
    }

    /// Return `item(write)` with a batch commit's failed effect, as DynamoDB returns the item a
    /// failed condition found (say, a stock item's `available`). By default nothing is returned.
    pub fn set_failed_item(
        &self,
        item: impl Fn(&TransactWriteItem) -> Option<HashMap<String, AttributeValue>>
            + Send
            + Sync
            + 'static,
    ) {
        *self.items.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(item));
    }

    fn failed_item(&self, write: &TransactWriteItem) -> Option<HashMap<String, AttributeValue>> {
        let item = self
            .items
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        item.and_then(|item| item(write))
    }

    /// Every effect write of every successful commit, in commit order: what handlers wrote.
    pub fn committed_writes(&self) -> Vec<TransactWriteItem> {
        self.state().writes.clone()
    }

    /// Refuse the next `collisions` commits as colliding with another transaction
    /// (`TransactionConflict`), then the next `throttles` as throttled, as a hot item would.
    pub fn refuse_commits(&self, collisions: usize, throttles: usize) {
        let mut state = self.state();
        state.refusals.extend(std::iter::repeat_n(true, collisions));
        state.refusals.extend(std::iter::repeat_n(false, throttles));
    }

    /// Batch commits that went through.
    pub fn batch_commits(&self) -> usize {
        self.state().batches
    }

    /// Reads of several records at once, ahead of a batch commit, so far.
    pub fn reads_ahead(&self) -> usize {
        self.state().reads
    }

    /// Commit attempts so far (refused ones included).
    pub fn commit_attempts(&self) -> usize {
        self.state().commits
    }

    /// The record at `key`, as stored (expired or not).
    pub fn record(&self, key: &str) -> Option<IdempotencyRecord> {
        self.state().records.get(key).cloned()
    }

    /// Store `record` as it is, unconditionally: to set up a test (a claim left by a crashed
    /// delivery, a record written long ago).
    pub fn insert(&self, record: IdempotencyRecord) {
        self.state().records.insert(record.key.clone(), record);
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A test that panicked while holding the lock must not hide its own failure behind ours.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The first effect whose condition the oracle says fails. The oracle runs before the lock
    /// is taken, so that it may look at the store itself.
    fn failed_effect(&self, effects: &[TransactWriteItem]) -> Option<usize> {
        let oracle = self
            .oracle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        oracle.and_then(|holds| effects.iter().position(|write| !holds(write)))
    }

    /// The next refusal the test asked for: `Ok(err)` a collision, `Err(err)` throttling.
    fn refusal(state: &mut State) -> Option<Result<PersistenceError, PersistenceError>> {
        match state.refusals.pop_front()? {
            true => Some(Ok(PersistenceError::new(
                "TransactionCanceledException: [None, TransactionConflict]",
            )
            .with_throttling(true))),
            false => Some(Err(PersistenceError::new(
                "ThrottlingException: Rate of requests exceeds the allowed throughput.",
            )
            .with_throttling(true))),
        }
    }

    /// The item a committed put created at `table` / `key` (the latest), if any.
    fn item_at(state: &State, table: &str, key: &Item) -> Option<Item> {
        state
            .writes
            .iter()
            .rev()
            .filter_map(TransactWriteItem::put)
            .find(|put| {
                put.table_name() == table
                    && key
                        .iter()
                        .all(|(name, value)| put.item().get(name) == Some(value))
            })
            .map(|put| put.item().clone())
    }

    /// For a put that keeps a record ([`record_in`](super::record_in)): the item already at its
    /// key, which fails its `attribute_not_exists` condition as DynamoDB would.
    fn existing_home(state: &State, write: &TransactWriteItem) -> Option<Item> {
        let home = home::of(std::slice::from_ref(write))?;
        Self::item_at(state, &home.table, &home.key)
    }

    /// The record at `key` if it keeps a claim out at `now_ms`.
    fn blocking(state: &State, key: &str, now_ms: i64) -> Option<IdempotencyRecord> {
        state
            .records
            .get(key)
            .filter(|old| old.blocks_claim(now_ms))
            .cloned()
    }
}

impl IdempotencyStore for InMemoryStore {
    fn claim<'a>(
        &'a self,
        record: &'a IdempotencyRecord,
        now_ms: i64,
    ) -> BoxFuture<'a, Result<ClaimOutcome, PersistenceError>> {
        let mut state = self.state();
        let outcome = match Self::blocking(&state, &record.key, now_ms) {
            Some(old) => ClaimOutcome::Exists(Some(old)),
            None => {
                state.records.insert(record.key.clone(), record.clone());
                ClaimOutcome::Claimed
            }
        };
        future::ready(Ok(outcome)).boxed()
    }

    fn complete<'a>(
        &'a self,
        record: &'a IdempotencyRecord,
        token: &'a str,
    ) -> BoxFuture<'a, Result<bool, PersistenceError>> {
        let mut state = self.state();
        let ours = state
            .records
            .get(&record.key)
            .is_some_and(|old| old.claim.as_deref() == Some(token));
        if ours {
            state.records.insert(record.key.clone(), record.clone());
        }
        future::ready(Ok(ours)).boxed()
    }

    fn release<'a>(
        &'a self,
        key: &'a str,
        token: &'a str,
    ) -> BoxFuture<'a, Result<bool, PersistenceError>> {
        let mut state = self.state();
        let ours = state.records.get(key).is_some_and(|old| {
            old.status == RecordStatus::InProgress && old.claim.as_deref() == Some(token)
        });
        if ours {
            state.records.remove(key);
        }
        future::ready(Ok(ours)).boxed()
    }

    fn get<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<IdempotencyRecord>, PersistenceError>> {
        future::ready(Ok(self.record(key))).boxed()
    }

    fn get_many<'a>(
        &'a self,
        keys: &'a [String],
    ) -> BoxFuture<'a, Result<HashMap<String, IdempotencyRecord>, PersistenceError>> {
        let mut state = self.state();
        state.reads += 1;
        let found = keys
            .iter()
            .filter_map(|key| Some((key.clone(), state.records.get(key)?.clone())))
            .collect();
        future::ready(Ok(found)).boxed()
    }

    fn get_items<'a>(
        &'a self,
        keys: &'a [(String, Item)],
        _consistent: bool,
    ) -> BoxFuture<'a, Result<Vec<Option<Item>>, PersistenceError>> {
        let mut state = self.state();
        state.reads += 1;
        let found = keys
            .iter()
            .map(|(table, key)| Self::item_at(&state, table, key))
            .collect();
        future::ready(Ok(found)).boxed()
    }

    fn commit<'a>(
        &'a self,
        record: &'a IdempotencyRecord,
        effects: Vec<TransactWriteItem>,
        now_ms: i64,
    ) -> BoxFuture<'a, Result<CommitOutcome, PersistenceError>> {
        let failed = self.failed_effect(&effects);
        let mut state = self.state();
        state.commits += 1;
        if let Some(refused) = Self::refusal(&mut state) {
            return future::ready(refused.map(CommitOutcome::Collision)).boxed();
        }
        // The record's condition first, as DynamoDB's first cancellation reason is read first.
        let outcome = if let Some(old) = Self::blocking(&state, &record.key, now_ms) {
            CommitOutcome::RecordExists(Some(old))
        } else if let Some(index) = failed {
            CommitOutcome::EffectFailed { index }
        } else {
            state.records.insert(record.key.clone(), record.clone());
            state.writes.extend(effects);
            CommitOutcome::Committed
        };
        future::ready(Ok(outcome)).boxed()
    }

    fn commit_batch<'a>(
        &'a self,
        records: &'a [IdempotencyRecord],
        effects: Vec<TransactWriteItem>,
        now_ms: i64,
    ) -> BoxFuture<'a, Result<BatchCommitOutcome, PersistenceError>> {
        // DynamoDB's own rules: at most 100 items, never two operations on one item.
        let mut items: Vec<String> = effects.iter().filter_map(item_key).collect();
        items.extend(records.iter().map(|r| format!("record/{}", r.key)));
        let count = items.len();
        items.sort();
        items.dedup();
        if records.len() + effects.len() > crate::aws::limits::DYNAMODB_MAX_TRANSACT_ITEMS
            || items.len() < count
        {
            let err = PersistenceError::new(
                "ValidationException: more than 100 items, or two operations on one item",
            )
            .with_code(Some("ValidationException"));
            return future::ready(Err(err)).boxed();
        }
        let failed = self.failed_effect(&effects);
        // Outside the store's lock too: the oracle may look at the store.
        let failed_item = failed.and_then(|i| self.failed_item(&effects[i]));
        let mut state = self.state();
        state.commits += 1;
        if let Some(refused) = Self::refusal(&mut state) {
            return future::ready(refused.map(BatchCommitOutcome::Collision)).boxed();
        }
        let blocked: Vec<_> = records
            .iter()
            .enumerate()
            .filter_map(|(i, record)| {
                Self::blocking(&state, &record.key, now_ms).map(|old| (i, Some(old)))
            })
            .collect();
        let home_found = effects
            .iter()
            .enumerate()
            .find_map(|(i, write)| Some((i, Self::existing_home(&state, write)?)));
        let outcome = if !blocked.is_empty() {
            BatchCommitOutcome::RecordsExist(blocked)
        } else if let Some((index, item)) = home_found {
            BatchCommitOutcome::EffectFailed {
                index: Some(index),
                item: Some(item),
            }
        } else if let Some(index) = failed {
            BatchCommitOutcome::EffectFailed {
                index: Some(index),
                item: failed_item,
            }
        } else {
            for record in records {
                state.records.insert(record.key.clone(), record.clone());
            }
            state.writes.extend(effects);
            state.batches += 1;
            BatchCommitOutcome::Committed
        };
        future::ready(Ok(outcome)).boxed()
    }
}
