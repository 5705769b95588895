//! [`ShortItems`]: items whose summed delta a batch found short (a sold-out SKU), remembered for
//! a few seconds so that the next batches send the events changing them through the single-event
//! path at once, instead of failing a whole batch transaction on them again first (a cancelled
//! transaction costs what a committed one does).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long an item stays short: long enough to spare the next batches, short enough that
/// restocked items are batched again soon.
const SHORT_FOR: Duration = Duration::from_secs(5);

/// Items recently found short, with when that was seen.
#[derive(Default)]
pub(super) struct ShortItems {
    seen: Mutex<HashMap<String, Instant>>,
}

impl ShortItems {
    /// `item` failed its condition just now.
    pub(super) fn mark(&self, item: String) {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        seen.retain(|_, at| at.elapsed() < SHORT_FOR);
        seen.insert(item, Instant::now());
    }

    /// Whether `item` was found short in the last few seconds.
    pub(super) fn is_short(&self, item: &str) -> bool {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(item)
            .is_some_and(|at| at.elapsed() < SHORT_FOR)
    }
}
