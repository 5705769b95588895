//! [`ItemLocks`]: transactions of one process that write the same item take turns.
//!
//! A subscriber runs up to ten aggregates of a batch at once; when they all add to one hot item
//! (a per-type counter, a popular SKU's stock), DynamoDB cancels every transaction that meets
//! another one in flight on that item (`TransactionConflict`). Those that come from the same
//! process need not meet at all: waiting for the sibling's commit costs one round trip, a
//! conflict costs a round trip plus a backoff. Only contention between processes is left to
//! [`Backoff`](crate::aws::Backoff).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem};
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

/// One async lock per item (table and key) being written; entries go when nobody holds them.
#[derive(Default)]
pub(super) struct ItemLocks {
    locks: Mutex<HashMap<String, Arc<AsyncMutex<()>>>>,
}

/// The locks of one transaction's items; dropping it lets the next writer go.
pub(super) struct Held<'a> {
    owner: &'a ItemLocks,
    guards: Vec<(String, OwnedMutexGuard<()>)>,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let mut locks = self
            .owner
            .locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for (key, guard) in self.guards.drain(..) {
            drop(guard);
            // Only the map (and no waiter) still refers to it: forget it.
            if locks.get(&key).is_some_and(|l| Arc::strong_count(l) == 1) {
                locks.remove(&key);
            }
        }
    }
}

impl ItemLocks {
    /// Wait for, and take, the locks of every item that `writes` update, delete or check (puts
    /// are new items: an idempotency record, a reservation). Taken in key order, so two
    /// transactions never wait for each other.
    pub(super) async fn lock(&self, writes: &[TransactWriteItem]) -> Held<'_> {
        let mut keys: Vec<String> = writes.iter().filter_map(item_key).collect();
        keys.sort();
        keys.dedup();
        let mut guards = Vec::with_capacity(keys.len());
        for key in keys {
            let lock = self
                .locks
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(key.clone())
                .or_default()
                .clone();
            guards.push((key, lock.lock_owned().await));
        }
        Held {
            owner: self,
            guards,
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// `table/attr=value,...` of an update, delete or condition check; `None` for a put.
pub(super) fn item_key(write: &TransactWriteItem) -> Option<String> {
    let (table, key): (&str, &HashMap<String, AttributeValue>) = if let Some(u) = write.update() {
        (u.table_name(), u.key())
    } else if let Some(d) = write.delete() {
        (d.table_name(), d.key())
    } else if let Some(c) = write.condition_check() {
        (c.table_name(), c.key())
    } else {
        return None;
    };
    let mut parts: Vec<String> = key.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    parts.sort();
    Some(format!("{table}/{}", parts.join(",")))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use aws_sdk_dynamodb::types::{Put, Update};

    use super::*;

    fn add(item: &str) -> TransactWriteItem {
        let update = Update::builder()
            .table_name("counters")
            .key("pk", AttributeValue::S(item.into()))
            .update_expression("ADD n :one")
            .build()
            .unwrap();
        TransactWriteItem::builder().update(update).build()
    }

    fn put(item: &str) -> TransactWriteItem {
        let put = Put::builder()
            .table_name("records")
            .item("pk", AttributeValue::S(item.into()))
            .build()
            .unwrap();
        TransactWriteItem::builder().put(put).build()
    }

    #[tokio::test]
    async fn writers_of_one_item_take_turns_and_others_do_not_wait() {
        let locks = ItemLocks::default();
        let first = locks.lock(&[put("r1"), add("hot")]).await;
        let same = tokio::time::timeout(Duration::from_millis(50), locks.lock(&[add("hot")])).await;
        assert!(same.is_err(), "a second writer of the hot item waits");
        let other = tokio::time::timeout(
            Duration::from_millis(50),
            locks.lock(&[add("cold"), put("r1")]),
        )
        .await;
        assert!(other.is_ok(), "another item does not wait (puts never do)");
        drop(other);
        drop(first);
        let again = locks.lock(&[add("hot")]).await;
        drop(again);
        assert_eq!(locks.len(), 0, "no lock is kept once nobody holds it");
    }
}
