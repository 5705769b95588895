//! Live counts: per function its invocations, errors and p99 latency, and what it reported in
//! its EMF metrics (events in and out, duplicates, dead letters, failures); per queue its depth.
//! A local pipeline's functions are counted by the runner since it started; a deployed one's are
//! CloudWatch's sums over the last hour (`AWS/Lambda` and herald's namespace).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use aws_sdk_sqs::types::QueueAttributeName as A;
use serde::Serialize;

use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat};
use aws_smithy_types::DateTime as SmithyTime;
use herald_local::stack::FunctionSpec;

use super::{ConsoleState, Pipeline};

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
    let mut out = Stats {
        functions: match &state.pipeline {
            Pipeline::Local(watch) => local(watch),
            Pipeline::Deployed => deployed(state).await?,
        },
        ..Stats::default()
    };
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

fn local(watch: &herald_local::runner::Watch) -> BTreeMap<String, FunctionStats> {
    let metrics = watch.logs.metrics();
    let mut out = BTreeMap::new();
    for (id, pool) in &watch.pools {
        let (invocations, errors) = pool.stats();
        let m = metrics.get(pool.spec().label());
        let metric = |name: &str| m.and_then(|m| m.get(name)).copied().unwrap_or(0.0);
        out.insert(
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
    out
}

/// How far back a deployed stack's metrics are summed.
const WINDOW_SECONDS: i64 = 3600;
/// `GetMetricData` takes at most this many queries.
const QUERIES_PER_CALL: usize = 500;
/// herald's EMF metrics shown per function.
const HERALD_METRICS: [&str; 5] = [
    "EventsIn",
    "EventsOut",
    "Duplicates",
    "DeadLettered",
    "EventsFailed",
];

/// A deployed stack's functions from CloudWatch: Lambda's `Invocations`, `Errors` and `Duration`
/// (p99) by `FunctionName`, and herald's EMF metrics by `function`, over the last hour.
async fn deployed(state: &ConsoleState) -> Result<BTreeMap<String, FunctionStats>> {
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&state.aws);
    let end = chrono::Utc::now().timestamp();
    let start = end - WINDOW_SECONDS;
    let mut sums = Vec::new();
    let mut percentiles = Vec::new();
    for (index, function) in state.stack.functions.iter().enumerate() {
        let lambda = |metric: &str| {
            (
                "AWS/Lambda".to_string(),
                metric.to_string(),
                ("FunctionName", function.name.clone()),
            )
        };
        sums.push((index, lambda("Invocations")));
        sums.push((index, lambda("Errors")));
        for metric in HERALD_METRICS {
            sums.push((
                index,
                (
                    namespace(function),
                    metric.to_string(),
                    ("function", function.label().to_string()),
                ),
            ));
        }
        percentiles.push((index, lambda("Duration")));
    }
    let sums = fetch(&cloudwatch, &sums, "Sum", start, end).await?;
    // A percentile is AWS's to compute; an endpoint that cannot (the emulator) leaves it out
    // rather than the counts.
    let p99s = fetch(&cloudwatch, &percentiles, "p99", start, end)
        .await
        .unwrap_or_default();
    let mut out = BTreeMap::new();
    for (index, function) in state.stack.functions.iter().enumerate() {
        let sum = |metric: &str| {
            sums.get(&(index, metric.to_string()))
                .map(|values| values.iter().sum())
                .unwrap_or(0.0)
        };
        out.insert(
            function.logical_id.clone(),
            FunctionStats {
                invocations: sum("Invocations") as usize,
                errors: sum("Errors") as usize,
                // The hour may straddle two periods: the worse of them.
                p99_ms: p99s
                    .get(&(index, "Duration".to_string()))
                    .and_then(|values| values.iter().copied().reduce(f64::max)),
                events_in: sum("EventsIn"),
                events_out: sum("EventsOut"),
                duplicates: sum("Duplicates"),
                dead_lettered: sum("DeadLettered"),
                failed: sum("EventsFailed"),
            },
        );
    }
    Ok(out)
}

/// Where a function's EMF metrics go (`HERALD_METRICS_NAMESPACE`, default `herald`).
fn namespace(function: &FunctionSpec) -> String {
    function
        .environment
        .get("HERALD_METRICS_NAMESPACE")
        .cloned()
        .unwrap_or_else(|| "herald".into())
}

type MetricKey = (String, String, (&'static str, String));

/// `stat` of each metric over `start..end`, one value per period CloudWatch answers with, by
/// (function index, metric name); none for a metric with no data.
async fn fetch(
    cloudwatch: &aws_sdk_cloudwatch::Client,
    metrics: &[(usize, MetricKey)],
    stat: &str,
    start: i64,
    end: i64,
) -> Result<BTreeMap<(usize, String), Vec<f64>>> {
    let mut out = BTreeMap::new();
    for chunk in metrics.chunks(QUERIES_PER_CALL) {
        let mut request = cloudwatch
            .get_metric_data()
            .start_time(SmithyTime::from_secs(start))
            .end_time(SmithyTime::from_secs(end));
        for (position, (_, (namespace, name, (dimension, value)))) in chunk.iter().enumerate() {
            let metric = Metric::builder()
                .namespace(namespace)
                .metric_name(name)
                .dimensions(Dimension::builder().name(*dimension).value(value).build())
                .build();
            request = request.metric_data_queries(
                MetricDataQuery::builder()
                    .id(format!("m{position}"))
                    .metric_stat(
                        MetricStat::builder()
                            .metric(metric)
                            .period(WINDOW_SECONDS as i32)
                            .stat(stat)
                            .build(),
                    )
                    .return_data(true)
                    .build(),
            );
        }
        let mut pages = request.into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|err| anyhow::anyhow!(herald::aws::error_text(&err)))?;
            for result in page.metric_data_results() {
                let Some(position) = result
                    .id()
                    .and_then(|id| id.strip_prefix('m'))
                    .and_then(|p| p.parse::<usize>().ok())
                else {
                    continue;
                };
                let Some((index, (_, name, _))) = chunk.get(position) else {
                    continue;
                };
                if !result.values().is_empty() {
                    out.entry((*index, name.clone()))
                        .or_insert_with(Vec::new)
                        .extend_from_slice(result.values());
                }
            }
        }
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
