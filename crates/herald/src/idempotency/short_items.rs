//! [`ShortItems`]: items whose summed delta a batch found short (a sold-out SKU), remembered for
//! a few seconds, with the numbers DynamoDB returned with the refusal when it did.
//!
//! With those numbers the next batches decide the events that would take an item below zero as
//! refused at once, in the batch, and prove it in the same transaction (a bound on the item, see
//! `batch`). Without them the events changing the item go through the single-event path at
//! once, instead of failing a whole batch transaction on it again first (a cancelled transaction
//! costs what a committed one does).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;

use super::delta::Delta;

/// How long an item stays short: long enough to spare the next batches, short enough that
/// restocked items are batched again soon.
const SHORT_FOR: Duration = Duration::from_secs(5);

/// An item's numeric attributes as last seen.
pub(super) type Level = BTreeMap<String, i64>;

/// `level` after `delta` (every attribute it adds to, guarded or not).
pub(super) fn apply(level: &mut Level, delta: &Delta) {
    for (attribute, value) in level.iter_mut() {
        *value = value.saturating_add(delta.amount(attribute));
    }
}

/// Items recently found short: when, and their level when it is known.
#[derive(Default)]
pub(super) struct ShortItems {
    seen: Mutex<HashMap<String, (Instant, Option<Level>)>>,
}

impl ShortItems {
    /// `item` failed its condition just now; `found` is the item as DynamoDB returned it.
    pub(super) fn mark(&self, item: String, found: Option<&HashMap<String, AttributeValue>>) {
        let level = found.map(|found| {
            found
                .iter()
                .filter_map(|(name, value)| Some((name.clone(), value.as_n().ok()?.parse().ok()?)))
                .collect()
        });
        let mut seen = self.lock();
        seen.retain(|_, (at, _)| at.elapsed() < SHORT_FOR);
        seen.insert(item, (Instant::now(), level));
    }

    /// Whether `item` was found short in the last few seconds: `Some` with its level when
    /// DynamoDB returned it.
    pub(super) fn is_short(&self, item: &str) -> Option<Option<Level>> {
        self.lock()
            .get(item)
            .filter(|(at, _)| at.elapsed() < SHORT_FOR)
            .map(|(_, level)| level.clone())
    }

    /// The level of `item`, found short in the last few seconds.
    pub(super) fn level(&self, item: &str) -> Option<Level> {
        self.is_short(item).flatten()
    }

    /// `delta` was committed: keep its item's level current.
    pub(super) fn committed(&self, delta: &Delta) {
        if let Some((_, Some(level))) = self.lock().get_mut(&delta.item()) {
            apply(level, delta);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Option<Level>)>> {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
