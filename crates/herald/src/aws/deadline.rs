//! The invocation's time budget.
//!
//! Lambda ends an invocation at its deadline, answer or not: a retry loop that outlives it loses
//! every answer it had (the producer's client gets a timeout instead of "these 900 were written,
//! send these 100 again"). So every retry loop in herald asks the [`Deadline`] before it sends,
//! before it waits, and bounds each request by the time left, keeping a margin to answer in.
//!
//! [`crate::aws::lambda::serve`] sets the invocation's deadline (from the runtime's
//! `Lambda-Runtime-Deadline-Ms`) for the handler's task; [`Deadline::current`] reads it there, and
//! is [`Deadline::NONE`] elsewhere (tests, tools), where [`Deadline::scope`] sets one.

use std::future::Future;
use std::time::{Duration, Instant, SystemTime};

tokio::task_local! {
    static CURRENT: Deadline;
}

/// When the current invocation ends, if it ends at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadline(Option<Instant>);

/// A request that was still running when its time was up: it may or may not have taken effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "no answer before the invocation's deadline (the request may or may not have taken effect)"
)]
pub struct Expired;

impl Deadline {
    /// No deadline: loops stop only by their attempt counts.
    pub const NONE: Deadline = Deadline(None);

    /// A deadline at `instant`.
    pub fn at(instant: Instant) -> Self {
        Deadline(Some(instant))
    }

    /// A deadline `budget` from now.
    pub fn after(budget: Duration) -> Self {
        Deadline(Some(Instant::now() + budget))
    }

    /// A deadline at a wall-clock time (Lambda's `Context::deadline()`).
    pub fn at_system_time(time: SystemTime) -> Self {
        let left = time
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        Deadline::after(left)
    }

    /// The deadline of the invocation this task serves ([`Deadline::NONE`] outside one).
    pub fn current() -> Self {
        CURRENT.try_with(|d| *d).unwrap_or(Deadline::NONE)
    }

    /// Run `work` with this deadline as [`Deadline::current`].
    pub async fn scope<F: Future>(self, work: F) -> F::Output {
        CURRENT.scope(self, work).await
    }

    /// Time left until the deadline; `None` without one.
    pub fn remaining(&self) -> Option<Duration> {
        self.0
            .map(|at| at.saturating_duration_since(Instant::now()))
    }

    /// Time left for work, keeping `margin` to answer in; `None` without a deadline.
    pub fn budget(&self, margin: Duration) -> Option<Duration> {
        self.remaining().map(|left| left.saturating_sub(margin))
    }

    /// Whether there is time to wait `wait` and then still send a request (keeping `margin`).
    pub fn allows(&self, wait: Duration, margin: Duration) -> bool {
        self.budget(margin).is_none_or(|budget| budget > wait)
    }

    /// Run `request`, giving up on it when only `margin` is left.
    pub async fn run<F: Future>(&self, margin: Duration, request: F) -> Result<F::Output, Expired> {
        match self.budget(margin) {
            None => Ok(request.await),
            Some(budget) if budget.is_zero() => Err(Expired),
            Some(budget) => tokio::time::timeout(budget, request)
                .await
                .map_err(|_| Expired),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_scope_sets_the_current_deadline() {
        assert_eq!(Deadline::current(), Deadline::NONE);
        let deadline = Deadline::after(Duration::from_secs(60));
        let inner = deadline.scope(async { Deadline::current() }).await;
        assert_eq!(inner, deadline);
        assert!(Deadline::NONE.allows(Duration::from_secs(3600), Duration::ZERO));
    }

    #[tokio::test]
    async fn an_expired_deadline_sends_nothing() {
        let deadline = Deadline::after(Duration::ZERO);
        let sent = std::sync::atomic::AtomicBool::new(false);
        let result = deadline
            .run(Duration::ZERO, async {
                sent.store(true, std::sync::atomic::Ordering::SeqCst)
            })
            .await;
        assert_eq!(result, Err(Expired));
        assert!(!sent.load(std::sync::atomic::Ordering::SeqCst));
        assert!(!deadline.allows(Duration::ZERO, Duration::ZERO));
    }

    #[tokio::test]
    async fn a_request_past_the_budget_is_abandoned() {
        let deadline = Deadline::after(Duration::from_millis(50));
        let result = deadline
            .run(Duration::from_millis(10), std::future::pending::<()>())
            .await;
        assert_eq!(result, Err(Expired));
    }
}
