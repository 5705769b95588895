//! Live counts: per function what the runner saw (invocations, errors, p99 latency) and what the
//! function reported in its EMF metrics (events in and out, duplicates, dead letters, failures);
//! per queue its depth on the emulator.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use aws_sdk_sqs::types::QueueAttributeName as A;
use serde::Serialize;

use super::ConsoleState;

/// One function's counts.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FunctionStats {
    /// Invocations.
    pub invocations: usize,
    /// Failed invocations (crash, timeout, error response).
    pub errors: usize,
    /// 99th percentile of the latest invocations' durations, in ms (none before the first).
    pub p99_ms: Option<f64>,
    /// `EventsIn`.
    pub events_in: f64,
    /// `EventsOut`.
    pub events_out: f64,
    /// `Duplicates`.
    pub duplicates: f64,
    /// `DeadLettered`.
    pub dead_lettered: f64,
    /// `EventsFailed`.
    pub failed: f64,
}

/// One queue's depth.
#[derive(Clone, Debug, Default, Serialize)]
pub struct QueueStats {
    /// Messages waiting.
    pub visible: u64,
    /// Messages being processed.
    pub in_flight: u64,
}

/// Everything, keyed by logical id.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Stats {
    /// Functions.
    pub functions: BTreeMap<String, FunctionStats>,
    /// Queues (dead-letter queues included).
    pub queues: BTreeMap<String, QueueStats>,
}

/// The counts now.
pub async fn stats(state: &ConsoleState) -> Result<Stats> {
    let metrics = state.logs.metrics();
    let mut out = Stats::default();
    for (id, pool) in &state.pools {
        let (invocations, errors) = pool.stats();
        let m = metrics.get(pool.spec().label());
        let metric = |name: &str| m.and_then(|m| m.get(name)).copied().unwrap_or(0.0);
        out.functions.insert(
            id.clone(),
            FunctionStats {
                invocations,
                errors,
                p99_ms: p99(pool.latencies()),
                events_in: metric("EventsIn"),
                events_out: metric("EventsOut"),
                duplicates: metric("Duplicates"),
                dead_lettered: metric("DeadLettered"),
                failed: metric("EventsFailed"),
            },
        );
    }
    let sqs = aws_sdk_sqs::Client::new(&state.aws);
    for (id, queue) in state.stack.of_kind("AWS::SQS::Queue") {
        let attributes = sqs
            .get_queue_attributes()
            .queue_url(&queue.reference)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await?
            .attributes
            .unwrap_or_default();
        let number = |name: A| {
            attributes
                .get(&name)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        out.queues.insert(
            id.to_string(),
            QueueStats {
                visible: number(A::ApproximateNumberOfMessages),
                in_flight: number(A::ApproximateNumberOfMessagesNotVisible),
            },
        );
    }
    Ok(out)
}

/// The 99th percentile (nearest rank) in milliseconds.
pub fn p99(mut durations: Vec<Duration>) -> Option<f64> {
    if durations.is_empty() {
        return None;
    }
    durations.sort();
    let rank = ((durations.len() as f64) * 0.99).ceil() as usize;
    let d = durations[rank.clamp(1, durations.len()) - 1];
    Some((d.as_secs_f64() * 1000.0 * 10.0).round() / 10.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p99_is_the_nearest_rank() {
        assert_eq!(p99(vec![]), None);
        let ms: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(p99(ms), Some(99.0));
        assert_eq!(p99(vec![Duration::from_millis(7)]), Some(7.0));
    }
}
