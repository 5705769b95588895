//! When a failed message comes back, and when herald stops asking for it.
//!
//! SQS redelivers a message its consumer did not delete once its visibility timeout is over: a
//! fixed interval, so a queue whose `maxReceiveCount` is 5 and visibility 60 s gives up on a
//! message after about five minutes, whatever failed. herald instead:
//!
//! - **backs off**: each failed message's visibility is set ([`Redelivery::postpone`], SQS
//!   `ChangeMessageVisibility`) to an exponential delay with jitter — [`RetryPolicy::delay`],
//!   from `base` doubling to `cap` — so an outage is retried less and less often, and a crowd of
//!   failed messages does not come back at once;
//! - **budgets in time**: a message its handler asked to retry ([`RecordError::Retry`]) is
//!   dead-lettered with its reason once it has been in the queue longer than
//!   [`RetryPolicy::budget`], however many receives that took;
//! - **never gives up on AWS**: a failure AWS caused ([`RecordError::Unavailable`]: throttling,
//!   a 5xx, an outage, access denied, a disabled key) is retried for as long as the queue keeps
//!   the message. Only on the receive after which SQS would move it to its DLQ anyway (the
//!   queue's `maxReceiveCount`, sized in the template to come days after the budget) does herald
//!   dead-letter it itself, with its reason, rather than let SQS move it without one.
//!
//! [`RecordError::Retry`]: super::RecordError::Retry
//! [`RecordError::Unavailable`]: super::RecordError::Unavailable

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// SQS's longest visibility timeout.
pub const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600);

/// How failed messages are retried (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The first redelivery comes within this (`RETRY_BASE_SECONDS`). Default 10 s.
    pub base: Duration,
    /// No redelivery waits longer than this (`RETRY_CAP_SECONDS`; at most 12 h, SQS's limit).
    /// Default 15 min.
    pub cap: Duration,
    /// How long a message whose handler asks for a retry is retried, from when it was sent to
    /// the queue (`RETRY_BUDGET_SECONDS`); then it is dead-lettered with its reason. Failures
    /// AWS caused have no budget. Default 24 h.
    pub budget: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_secs(10),
            cap: Duration::from_secs(15 * 60),
            budget: Duration::from_secs(24 * 3600),
        }
    }
}

impl RetryPolicy {
    /// The delay before the redelivery of a message that failed on its `receives`-th receive:
    /// between half and all of `min(cap, base · 2^(receives-1))` ("equal jitter": spread out,
    /// yet never much sooner than the backoff asks), in whole seconds as SQS takes them.
    pub fn delay(&self, receives: u32) -> Duration {
        let exponent = receives.saturating_sub(1).min(30);
        let ceiling = self
            .base
            .saturating_mul(1u32 << exponent.min(20))
            .min(self.cap)
            .min(MAX_VISIBILITY);
        let half = ceiling / 2;
        let jitter = half.mul_f64(rand::random::<f64>());
        Duration::from_secs((half + jitter).as_secs_f64().round().max(1.0) as u64)
    }

    /// Whether a message sent to the queue at `sent_ms` (SQS's `SentTimestamp`, epoch
    /// milliseconds) has used up the budget by `now`.
    pub fn exhausted(&self, sent_ms: u64, now: SystemTime) -> bool {
        let now_ms = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        now_ms.saturating_sub(sent_ms) > self.budget.as_millis() as u64
    }
}

/// A failed message to bring back later.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Postponed {
    /// The queue it came from (the record's `eventSourceARN`).
    pub queue_arn: String,
    /// Its receipt handle from this receive.
    pub receipt_handle: String,
    /// When it should be visible again.
    pub delay: Duration,
}

/// What [`Redelivery::postpone`] returns: one result per message, in order.
pub type Postponing<'a> = Pin<Box<dyn Future<Output = Vec<Result<(), String>>> + Send + 'a>>;

/// The redelivery port: makes failed messages visible again later (SQS
/// `ChangeMessageVisibilityBatch` in the functions; a recording double in tests).
pub trait Redelivery: Send + Sync {
    /// Postpone each message. A failure leaves the message to the queue's own visibility
    /// timeout: it still comes back, only sooner.
    fn postpone<'a>(&'a self, messages: &'a [Postponed]) -> Postponing<'a>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_doubles_to_its_cap_with_jitter_in_the_upper_half() {
        let policy = RetryPolicy::default();
        for (receives, ceiling) in [(1, 10), (2, 20), (3, 40), (7, 640), (8, 900), (50, 900)] {
            for _ in 0..50 {
                let delay = policy.delay(receives).as_secs();
                assert!(
                    (ceiling / 2..=ceiling).contains(&delay),
                    "receive {receives}: {delay} s, expected {}..={ceiling}",
                    ceiling / 2
                );
            }
        }
        let capped = RetryPolicy {
            cap: Duration::from_secs(100_000),
            ..policy
        };
        assert!(capped.delay(40) <= MAX_VISIBILITY);
        let tiny = RetryPolicy {
            base: Duration::from_millis(100),
            ..policy
        };
        assert_eq!(
            tiny.delay(1),
            Duration::from_secs(1),
            "SQS counts whole seconds"
        );
    }

    #[test]
    fn the_budget_counts_from_when_the_message_was_sent() {
        let policy = RetryPolicy {
            budget: Duration::from_secs(60),
            ..RetryPolicy::default()
        };
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert!(!policy.exhausted(1_000_000_000 - 59_000, now));
        assert!(policy.exhausted(1_000_000_000 - 61_000, now));
        assert!(
            !policy.exhausted(1_000_000_000 + 5_000, now),
            "a clock behind"
        );
    }
}
