//! Waiting between polls and retries, cut short when the runner stops.

use std::time::Duration;

use tokio::sync::watch;

/// The pause before the `attempt`-th retry of a failed read, listing or send (from 0): doubling
/// from 50 ms up to `max`.
pub(super) fn backoff(attempt: u32, max: Duration) -> Duration {
    (Duration::from_millis(50) * 2u32.saturating_pow(attempt.min(10))).min(max)
}

/// Sleep `delay`, or less when the runner stops; whether it is still running.
pub(crate) async fn pause(delay: Duration, stop: &watch::Receiver<bool>) -> bool {
    let mut stop = stop.clone();
    if *stop.borrow() {
        return false;
    }
    tokio::select! {
        _ = tokio::time::sleep(delay) => {}
        _ = stop.changed() => {}
    }
    let stopped = *stop.borrow();
    !stopped
}
