//! Exponential backoff with full jitter (the AWS Architecture Blog's recommendation for
//! retrying throttled batch entries without synchronised retry storms).

use std::time::Duration;

use rand::Rng;

/// How often and how patiently to retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// Attempts in all, the first one included. Default 5.
    pub max_attempts: u32,
    /// Ceiling of the first wait. Default 50 ms.
    pub base: Duration,
    /// No wait is longer than this. Default 2 s.
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            max_attempts: 5,
            base: Duration::from_millis(50),
            cap: Duration::from_secs(2),
        }
    }
}

impl Backoff {
    /// The wait before attempt `attempt + 1` (after `attempt` failed attempts, counting from 1):
    /// uniformly random in `[0, min(cap, base * 2^(attempt-1))]`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(20);
        let ceiling = self.base.saturating_mul(1 << exp).min(self.cap);
        let millis = ceiling.as_millis() as u64;
        Duration::from_millis(rand::rng().random_range(0..=millis))
    }

    /// Sleep for [`Backoff::delay`].
    pub async fn wait(&self, attempt: u32) {
        tokio::time::sleep(self.delay(attempt)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stay_under_the_cap() {
        let backoff = Backoff::default();
        for attempt in 1..30 {
            let d = backoff.delay(attempt);
            assert!(d <= backoff.cap);
            let ceiling = backoff.base.saturating_mul(1 << (attempt - 1).min(20));
            assert!(d <= ceiling);
        }
    }
}
