//! The persistence port: what the two modes need from wherever records live
//! ([`IdempotencyStore`]), in the spirit of Powertools for Lambda's persistence layer.
//!
//! A store only keeps records and applies conditions; what a record *means* (a stored result to
//! replay, a live claim to wait for, a payload mismatch, a lapsed claim) is decided by the modes,
//! so every store behaves the same.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::TransactWriteItem;
use futures::future::{self, BoxFuture};
use futures::FutureExt;

use super::error::PersistenceError;
use super::keyed::Item;
use super::record::IdempotencyRecord;

/// Where idempotency records live. Boxed futures keep [`Idempotency`](super::Idempotency)
/// non-generic; every call is a network round trip, so the allocation does not count.
pub trait IdempotencyStore: Send + Sync {
    /// Put `record` (INPROGRESS, with its claim token) unless a stored record
    /// [blocks the claim](IdempotencyRecord::blocks_claim) at `now_ms`.
    fn claim<'a>(
        &'a self,
        record: &'a IdempotencyRecord,
        now_ms: i64,
    ) -> BoxFuture<'a, Result<ClaimOutcome, PersistenceError>>;

    /// Replace the record with `record` (COMPLETED) if the stored one still carries the claim
    /// `token`. `Ok(false)`: it does not (the claim lapsed and another delivery took it over).
    fn complete<'a>(
        &'a self,
        record: &'a IdempotencyRecord,
        token: &'a str,
    ) -> BoxFuture<'a, Result<bool, PersistenceError>>;

    /// Delete the record at `key` if it is INPROGRESS under the claim `token`.
    /// `Ok(false)`: it is not (any more).
    fn release<'a>(
        &'a self,
        key: &'a str,
        token: &'a str,
    ) -> BoxFuture<'a, Result<bool, PersistenceError>>;

    /// The record at `key`, read consistently (expired or not: the caller judges).
    fn get<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<IdempotencyRecord>, PersistenceError>>;

    /// The records at `keys` that can be found cheaply, read ahead of a batch commit so that
    /// known duplicates stay out of its transaction. A read may be stale (eventually
    /// consistent) and may leave keys out: the commit's own conditions still catch every
    /// duplicate, this only spares the failed attempt. By default nothing is read.
    fn get_many<'a>(
        &'a self,
        keys: &'a [String],
    ) -> BoxFuture<'a, Result<HashMap<String, IdempotencyRecord>, PersistenceError>> {
        let _ = keys;
        future::ready(Ok(HashMap::new())).boxed()
    }

    /// The items at `keys` (a table and an item's key each), for records kept in an effect's
    /// item ([`record_in`](super::record_in)); strongly consistent reads when `consistent`. One
    /// answer per key, `None` for an item not found. By default nothing is found.
    fn get_items<'a>(
        &'a self,
        keys: &'a [(String, Item)],
        consistent: bool,
    ) -> BoxFuture<'a, Result<Vec<Option<Item>>, PersistenceError>> {
        let _ = consistent;
        future::ready(Ok(vec![None; keys.len()])).boxed()
    }

    /// Atomically put `record` (COMPLETED) and apply `effects`, all or nothing. The record goes
    /// in only if no stored record [blocks the claim](IdempotencyRecord::blocks_claim) at
    /// `now_ms`; each effect only if its own condition holds.
    fn commit<'a>(
        &'a self,
        record: &'a IdempotencyRecord,
        effects: Vec<TransactWriteItem>,
        now_ms: i64,
    ) -> BoxFuture<'a, Result<CommitOutcome, PersistenceError>>;

    /// [`IdempotencyStore::commit`] for several events at once: every record of `records` and
    /// every write of `effects` in one transaction, all or nothing.
    fn commit_batch<'a>(
        &'a self,
        records: &'a [IdempotencyRecord],
        effects: Vec<TransactWriteItem>,
        now_ms: i64,
    ) -> BoxFuture<'a, Result<BatchCommitOutcome, PersistenceError>>;
}

/// How a claim ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// The record is in: the claim is the caller's.
    Claimed,
    /// A live record blocked the claim. It comes back with the refusal when the store can return
    /// it without another request; `None` sends the caller to [`IdempotencyStore::get`].
    Exists(Option<IdempotencyRecord>),
}

/// How a transactional commit ended. Nothing was written unless it is `Committed`.
#[derive(Debug)]
pub enum CommitOutcome {
    /// The record and every effect are in.
    Committed,
    /// A live record blocked the commit: a duplicate, or a delivery holding a claim. `None` when
    /// the store could not return it with the refusal (read it with [`IdempotencyStore::get`]).
    RecordExists(Option<IdempotencyRecord>),
    /// The effect at `index` (into `effects`) failed its condition.
    EffectFailed {
        /// Index into the committed `effects`.
        index: usize,
    },
    /// The transaction collided with another one on the same items; trying again may succeed.
    /// The error is what to report if the retries run out (marked as throttling).
    Collision(PersistenceError),
}

/// How a batch commit ended. Nothing was written unless it is `Committed`.
#[derive(Debug)]
pub enum BatchCommitOutcome {
    /// Every record and every effect are in.
    Committed,
    /// These records (index into `records`) blocked the commit, each with the stored record
    /// when the store returned it: duplicates, to take out before committing the rest.
    RecordsExist(Vec<(usize, Option<IdempotencyRecord>)>),
    /// An effect failed its condition.
    EffectFailed {
        /// Index into `effects`, when the store can tell.
        index: Option<usize>,
        /// The item as it was when the condition failed, when the store returned it (DynamoDB
        /// does for writes that ask for `ALL_OLD`, as [`Delta`](super::Delta)s do): how much a
        /// short item has left.
        item: Option<Item>,
    },
    /// The transaction collided with another one; trying again may succeed.
    Collision(PersistenceError),
}
