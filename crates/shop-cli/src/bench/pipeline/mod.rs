//! The local pipeline end to end (`shop bench pipeline`): orders placed with the order service
//! at a steady rate (the only way orders come in), every hop run by the local runner against the
//! emulator; then, from the functions' own output,
//! - throughput and per-transaction latency (the order's write to the event store → the
//!   transaction's last effect, follow-ups included), from the log lines `herald trace` reads;
//! - AWS requests per submitted event for every function, from their EMF documents (an SDK
//!   interceptor counts each request), plus the SQS requests of the event source mappings;
//! - what those requests cost per million events under a small price model, next to a naive
//!   baseline (one `PutRecord` and one `Publish` per event, two idempotency writes per delivery);
//! - the emulator's own speed (sequential DynamoDB writes), so herald's overhead can be told from
//!   moto's.

mod cost;
mod emulator;
mod render;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use herald_local::{binaries, Endpoint};

use crate::demo::workload;
use crate::load::{self, LoadOptions, LoadSummary};

pub use cost::{
    floor_units, herald_units, naive_units, powertools_units, prices, write_units_per_table, Units,
};
pub use emulator::{emulator_speed, EmulatorSpeed};
pub use render::render;

/// `shop bench pipeline`: a happy-path run, a run with 10 % duplicates, and the happy path at
/// five times the rate (each `events` events on a fresh stack), then the emulator's own speed;
/// the tables.
pub async fn table(events: usize, rate: f64, release: bool) -> Result<String> {
    let root = binaries::project_root();
    let endpoint = Endpoint::from_env_or_start(&root, None).await?;
    let happy = run(&root, &endpoint, release, "happy path", rate, events, 0.0).await?;
    let duplicates = run(
        &root,
        &endpoint,
        release,
        "10 % duplicates",
        rate,
        events,
        0.1,
    )
    .await?;
    // The same traffic five times as fast: past what the local pipeline drains, so its
    // throughput is the capacity and its latency mostly queueing.
    let saturated = run(
        &root,
        &endpoint,
        release,
        "happy path, 5× the rate",
        rate * 5.0,
        events,
        0.0,
    )
    .await?;
    // Ten times, twice the events: long enough for the drain rate to show past the first
    // completions.
    let overdriven = run(
        &root,
        &endpoint,
        release,
        "happy path, 10× the rate",
        rate * 10.0,
        events * 2,
        0.0,
    )
    .await?;
    let emulator = emulator_speed(&endpoint, 300, 3000).await?;
    Ok(render(
        &[happy, duplicates, saturated, overdriven],
        &emulator,
    ))
}

/// One run.
#[derive(Clone, Debug)]
pub struct PipelineRun {
    /// `happy path` / `10 % duplicates`.
    pub label: String,
    /// What was sent.
    pub load: LoadSummary,
    /// From the first send until every function was idle.
    pub settled: Duration,
    /// Per transaction: first write to the stream → last effect applied.
    pub latencies: Vec<Duration>,
    /// Business transactions completed per second, from the first completion to the last: the
    /// rate the pipeline drains at (the asked rate when it keeps up, less when it falls behind;
    /// the fixed latency of the hops does not count against it).
    pub throughput: f64,
    /// Summed EMF metrics per function.
    pub metrics: BTreeMap<String, BTreeMap<String, f64>>,
    /// SQS requests of the event source mappings: (receives with messages, delete batches).
    pub poller: (usize, usize),
    /// Analytics' counters after the run (`type#order_placed` → events counted): how the
    /// events that analytics sums spread over its items.
    pub counters: BTreeMap<String, f64>,
}

/// Run the pipeline once: `events` events at `rate` per second, `duplicates` of them retries.
pub async fn run(
    root: &Path,
    endpoint: &Endpoint,
    release: bool,
    label: &str,
    rate: f64,
    events: usize,
    duplicates: f64,
) -> Result<PipelineRun> {
    let stack_name = format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..6]);
    let log_dir = root.join(".herald/logs").join(&stack_name);
    let mut options = herald_local::UpOptions::new(root.to_path_buf());
    options.stack.name = stack_name;
    options.release = release;
    options.quiet_build = true;
    options.runner.log_dir = Some(log_dir.clone());
    let port = herald_local::moto::free_port()?;
    options.runner.url_port = Some(port);
    options.stack.function_url_base = format!("http://127.0.0.1:{port}");
    let pipeline = herald_local::up(endpoint, options).await?;
    pipeline.warm().await?;
    let stack = pipeline.stack().clone();
    let url = stack.function_url("orders")?;
    let catalog = workload::catalog(&root.join("infra/seed"))?;
    let started = Instant::now();
    let summary = load::run(
        &url,
        &catalog,
        &LoadOptions {
            rate,
            duration: Duration::from_secs_f64(events as f64 / rate),
            duplicates,
            ..LoadOptions::default()
        },
        |_| {},
    )
    .await?;
    pipeline
        .wait_idle(Duration::from_millis(1500), Duration::from_secs(600))
        .await?;
    let settled = started.elapsed();
    let metrics = pipeline.metrics();
    let poller = pipeline.poller_requests();
    let dynamodb = aws_sdk_dynamodb::Client::new(&endpoint.sdk_config().await);
    let mut counters = BTreeMap::new();
    for item in herald_ops::inspect::scan(&dynamodb, stack.reference("AnalyticsTable")?).await? {
        if let (Some(metric), Some(count)) = (item["metric"].as_str(), item["count"].as_f64()) {
            counters.insert(metric.to_string(), count);
        }
    }
    pipeline.stop().await;

    let traces = herald_ops::trace::all(&log_dir)?;
    let mut latencies = Vec::new();
    let mut ends = Vec::new();
    for trace in &traces {
        // The order accepted (its write to the store, or a first write to the stream) → the last
        // effect applied. A client retry's duplicate-skipped hops come whenever the client
        // retried: not pipeline latency.
        let hops = || trace.events.iter().flat_map(|e| e.hops.iter());
        let start = hops()
            .filter(|h| h.kind == "stream" || h.kind == "store")
            .map(|h| h.time)
            .min();
        let end = hops().filter(|h| h.kind == "applied").map(|h| h.time).max();
        if let (Some(start), Some(end)) = (start, end) {
            latencies.push((end - start).to_std().unwrap_or_default());
            ends.push(end);
        }
    }
    let drained = match (ends.iter().min(), ends.iter().max()) {
        (Some(a), Some(b)) if ends.len() > 1 => {
            (ends.len() - 1) as f64
                / (*b - *a)
                    .to_std()
                    .unwrap_or_default()
                    .as_secs_f64()
                    .max(1e-9)
        }
        _ => 0.0,
    };
    Ok(PipelineRun {
        label: label.to_string(),
        throughput: drained,
        load: summary,
        settled,
        latencies,
        metrics,
        poller,
        counters,
    })
}
