//! The router's hot path: decode a Kinesis batch (Lambda's JSON, base64 records), validate each
//! envelope, check it against the catalog and build the SNS `PublishBatch` entries — everything
//! but the network, which an in-memory bus stands in for. Measured on one core (a current-thread
//! runtime), next to the same work done by Powertools for Python's `BatchProcessor` + parser
//! (`infra/bench/powertools_router.py`) on the same batch file. `shop bench router` prints it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use base64::Engine;
use herald::aws::dead_letter::{DeadLetter, DeadLetterError, DeadLetters};
use herald::router::{
    BusError, BusMessage, BusOutcome, EventBus, KinesisBatch, Router, RouterConfig,
};
use herald::Envelope;
use herald_local::binaries;
use serde_json::{json, Value};

use crate::demo::workload::{self, Product, Workload};

/// `shop bench router`: batches of `records` order events through herald's router for `seconds`
/// (with and without the Lambda JSON decode), and through Powertools for Python (from
/// `.venv`, `scripts/bootstrap --bench`) on the same batch; the table.
pub fn table(records: usize, seconds: f64) -> Result<String> {
    let root = binaries::project_root();
    let catalog = workload::catalog(&root.join("infra/seed"))?;
    let (event, mean_bytes) = kinesis_batch(&catalog, records.max(1), 42)?;
    let file = batch_file(&root);
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&file, &event)?;
    let rust = herald_router(&event, seconds, true)?;
    let route_only = herald_router(&event, seconds, false)?;
    let python = root.join(".venv/bin/python");
    let script = root.join("infra/bench/powertools_router.py");
    let powertools = powertools_router(&python, &script, &file, seconds)?;
    let mut table = render(&[rust, route_only, powertools], records, mean_bytes);
    if cfg!(debug_assertions) {
        table.push_str(
            "
(debug build: run `cargo run --release -p shop-cli -- bench router` for real numbers)
",
        );
    }
    Ok(table)
}

/// Accepts every entry (stands in for SNS).
struct NullBus;

impl EventBus for NullBus {
    async fn publish_batch(&self, entries: &[BusMessage<'_>]) -> Result<Vec<BusOutcome>, BusError> {
        Ok(vec![BusOutcome::Published; entries.len()])
    }
}

struct NullLetters;

impl DeadLetters for NullLetters {
    async fn send(&self, letters: &[DeadLetter]) -> Vec<Result<(), DeadLetterError>> {
        letters.iter().map(|_| Ok(())).collect()
    }
}

/// A Kinesis event of `records` realistic order events, as Lambda delivers it; also returns the
/// mean envelope size in bytes.
pub fn kinesis_batch(catalog: &[Product], records: usize, seed: u64) -> Result<(Vec<u8>, usize)> {
    let traffic = Workload {
        orders: records,
        duplicate_ratio: 0.0,
        declined_every: 10,
        system_events: 0,
        malformed: false,
        seed,
        per_request: records.max(1),
        data_events: 0,
    }
    .generate(catalog);
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut bytes = 0usize;
    let mut out = Vec::with_capacity(records);
    for (i, submission) in traffic.orders.iter().enumerate() {
        let envelope = Envelope::parse_submission(submission)?;
        let data = envelope.to_json_bytes();
        bytes += data.len();
        let sequence = format!("4959033827149025660855969253836157109592157598913{i:07}");
        out.push(json!({
            "kinesis": {
                "kinesisSchemaVersion": "1.0",
                "partitionKey": envelope.partition_key(),
                "sequenceNumber": sequence,
                "data": b64.encode(&data),
                "approximateArrivalTimestamp": 1_795_687_200.5,
            },
            "eventSource": "aws:kinesis",
            "eventVersion": "1.0",
            "eventID": format!("shardId-000000000000:{sequence}"),
            "eventName": "aws:kinesis:record",
            "invokeIdentityArn": "arn:aws:iam::123456789012:role/herald-router",
            "awsRegion": "us-east-1",
            "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/herald-BusEventStream",
        }));
    }
    let event = serde_json::to_vec(&json!({ "Records": out }))?;
    Ok((event, bytes / records.max(1)))
}

/// One implementation's result.
#[derive(Clone, Debug)]
pub struct Throughput {
    /// Who.
    pub name: String,
    /// Events processed.
    pub events: u64,
    /// In how long.
    pub elapsed: Duration,
}

impl Throughput {
    /// Events per second.
    pub fn per_second(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// herald's router on `event` (Lambda's JSON bytes) for about `seconds`, on one core: a thread
/// of its own with a current-thread runtime, as in a Lambda execution environment. With
/// `decode`, each round decodes the Lambda JSON first (as in Lambda); without, the batch is
/// decoded once and only routing is timed.
pub fn herald_router(event: &[u8], seconds: f64, decode: bool) -> Result<Throughput> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| route_on_this_thread(event, seconds, decode))
            .join()
            .unwrap_or_else(|_| bail!("the benchmark thread panicked"))
    })
}

fn route_on_this_thread(event: &[u8], seconds: f64, decode: bool) -> Result<Throughput> {
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    let router = Router::with_config(
        NullBus,
        NullLetters,
        RouterConfig {
            catalog: Some(shop::catalog()),
            ..RouterConfig::default()
        },
    );
    runtime.block_on(async {
        // One checked run: every record is published.
        let first: KinesisBatch = serde_json::from_slice(event)?;
        let (response, summary) = router.route(&first).await;
        if !response.batch_item_failures.is_empty() || summary.published != first.len() {
            bail!("the benchmark batch did not route cleanly: {summary:?}");
        }
        let records = first.len() as u64;
        let mut events = 0u64;
        let started = Instant::now();
        while started.elapsed().as_secs_f64() < seconds {
            if decode {
                // Lambda hands over JSON: decoding it is part of the hot path.
                let batch: KinesisBatch = serde_json::from_slice(event)?;
                std::hint::black_box(router.route(&batch).await);
            } else {
                std::hint::black_box(router.route(&first).await);
            }
            events += records;
        }
        Ok(Throughput {
            name: if decode {
                "herald router (Rust): Lambda JSON decode + route".into()
            } else {
                "herald router (Rust): route a decoded batch".into()
            },
            events,
            elapsed: started.elapsed(),
        })
    })
}

/// Powertools for Python doing the same work on the same file.
pub fn powertools_router(
    python: &Path,
    script: &Path,
    event_file: &Path,
    seconds: f64,
) -> Result<Throughput> {
    let output = Command::new(python)
        .arg(script)
        .arg(event_file)
        .arg(seconds.to_string())
        .output()
        .with_context(|| format!("running {}", python.display()))?;
    if !output.status.success() {
        bail!(
            "{} failed (is Powertools installed? scripts/bootstrap --bench): {}",
            script.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let result: Value = serde_json::from_slice(&output.stdout)
        .with_context(|| format!("{} printed no result", script.display()))?;
    Ok(Throughput {
        name: "Powertools for Python BatchProcessor + parser".into(),
        events: result["events"].as_u64().unwrap_or(0),
        elapsed: Duration::from_secs_f64(result["seconds"].as_f64().unwrap_or(0.0)),
    })
}

/// Where the batch file goes.
pub fn batch_file(root: &Path) -> PathBuf {
    root.join(".herald/bench/kinesis-batch.json")
}

/// The table.
pub fn render(rows: &[Throughput], records: usize, mean_bytes: usize) -> String {
    let mut out = format!(
        "router hot path: Kinesis batches of {records} order events (mean envelope {mean_bytes} B), one core\n\n| implementation | events | seconds | events/s | vs Powertools |\n|---|---:|---:|---:|---:|\n"
    );
    let baseline = rows
        .iter()
        .find(|r| r.name.contains("Powertools"))
        .map(Throughput::per_second);
    for row in rows {
        let ratio = baseline
            .map(|b| format!("{:.1}×", row.per_second() / b.max(1e-9)))
            .unwrap_or_else(|| "-".into());
        out.push_str(&format!(
            "| {} | {} | {:.2} | {:.0} | {} |\n",
            row.name,
            row.events,
            row.elapsed.as_secs_f64(),
            row.per_second(),
            ratio
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_benchmark_batch_is_realistic_and_routes_cleanly() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let catalog = workload::catalog(&root.join("infra/seed")).unwrap();
        let (event, mean) = kinesis_batch(&catalog, 50, 1).unwrap();
        assert!((300..=800).contains(&mean), "mean envelope {mean} B");
        let parsed: KinesisBatch = serde_json::from_slice(&event).unwrap();
        assert_eq!(parsed.len(), 50);
        // herald_router checks that every record is published before it times anything.
        let result = herald_router(&event, 0.05, true).unwrap();
        assert!(result.events >= 50);
    }
}
