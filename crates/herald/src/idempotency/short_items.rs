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

/// How long an item whose level is unknown stays short: its events go one at a time meanwhile,
/// so long enough to spare the next batches, short enough that a restocked item is batched again
/// soon.
const SHORT_FOR: Duration = Duration::from_secs(5);

/// How long a known level is trusted. Longer than [`SHORT_FOR`]: a refusal decided against it is
/// proven in its transaction, so a level gone stale (stock released or restocked elsewhere) costs
/// one cancelled transaction, which teaches the new level — while forgetting a sold-out item's
/// level costs a cancelled batch transaction every time it is relearned.
const LEVEL_KNOWN_FOR: Duration = Duration::from_secs(60);

/// Whether an entry marked `at` with `level` still holds.
fn holds(at: Instant, level: &Option<Level>) -> bool {
    at.elapsed()
        < if level.is_some() {
            LEVEL_KNOWN_FOR
        } else {
            SHORT_FOR
        }
}

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
        seen.retain(|_, (at, level)| holds(*at, level));
        seen.insert(item, (Instant::now(), level));
    }

    /// Whether `item` was found short recently (a few seconds; a minute when its level is
    /// known): `Some` with its level when DynamoDB returned it.
    pub(super) fn is_short(&self, item: &str) -> Option<Option<Level>> {
        self.lock()
            .get(item)
            .filter(|(at, level)| holds(*at, level))
            .map(|(_, level)| level.clone())
    }

    /// The level of `item`, found short within the last minute.
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
