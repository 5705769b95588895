//! Cold start: the time from starting a function's process to its first `/next` request to the
//! Runtime API (its init: reading the environment, loading the SDK configuration, building
//! clients), over many starts; the stripped binary's size; and the process's peak resident set
//! after init and one invocation with its sample event. `shop bench cold-start` prints it.

use std::path::Path;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use herald_local::logs::Logs;
use herald_local::runtime::FunctionPool;
use herald_local::{binaries, Endpoint, Stack, UpOptions};
use serde_json::Value;

use crate::common::{progress_bar, uuid_suffix};
use crate::load::quantile;

/// `shop bench cold-start`: the shop's stack provisioned without its mappings, every function
/// started `starts` times (debug binaries, or release ones built first); the table. With
/// `compare`, each function is also started from `<compare>/<function>` (another build of it,
/// e.g. one binary per function), alternating with the first so both rows see the same machine.
pub async fn table(starts: usize, release: bool, compare: Option<&Path>) -> Result<String> {
    let root = binaries::project_root();
    let endpoint = Endpoint::from_env_or_start(&root, None).await?;
    let mut options = UpOptions::new(root.clone());
    options.stack.name = format!("cold-{}", uuid_suffix());
    options.release = release;
    options.quiet_build = true;
    options.runner.mappings = false;
    let bin_dir = binaries::bin_dir(&root, release);
    let pipeline = herald_local::up(&endpoint, options).await?;
    let stack = pipeline.stack().clone();
    let bar = progress_bar("starting functions");
    let builds = 1 + usize::from(compare.is_some());
    bar.set_length((stack.functions.len() * starts.max(1) * builds) as u64);
    let rows = measure(
        &root,
        &stack,
        &endpoint,
        &bin_dir,
        compare,
        starts,
        |_, _| bar.inc(1),
    )
    .await;
    bar.finish_and_clear();
    pipeline.stop().await;
    Ok(render(
        &rows?,
        if release {
            "release, stripped"
        } else {
            "debug"
        },
    ))
}

/// One function's numbers.
#[derive(Clone, Debug)]
pub struct ColdStartRow {
    /// The function (binary name).
    pub function: String,
    /// Process start → first `/next`, per start.
    pub starts: Vec<Duration>,
    /// Size of the binary, bytes.
    pub binary_bytes: u64,
    /// Peak RSS after init and one invocation with its sample event, KiB.
    pub peak_rss_kib: Option<u64>,
    /// Whether that invocation succeeded.
    pub sample_ok: bool,
}

/// The sample event each function is invoked with once (`events/`).
fn sample(function: &str) -> &'static str {
    match function {
        "producer" => "producer/direct-invoke.json",
        "router" => "router/kinesis.json",
        "orders" => "orders/place-order.json",
        "publisher" => "publisher/dynamodb-stream.json",
        "projector" => "projector/sqs.json",
        "query" => "query/get-order.json",
        "inventory" => "inventory/sqs.json",
        "payment" => "payment/sqs.json",
        "email" => "email/sqs.json",
        "analytics" => "analytics/sqs.json",
        "fraud" => "fraud/window-batch.json",
        "compensation" => "compensation/sqs.json",
        _ => "ops/sqs.json",
    }
}

/// Start every function of `stack` `starts` times from `bin_dir` (and, with `compare`, as often
/// from `<compare>/<function>`, the two interleaved).
pub async fn measure(
    root: &Path,
    stack: &Stack,
    endpoint: &Endpoint,
    bin_dir: &Path,
    compare: Option<&Path>,
    starts: usize,
    mut progress: impl FnMut(&str, usize),
) -> Result<Vec<ColdStartRow>> {
    let logs = Arc::new(Logs::new(false, None));
    let mut rows = Vec::new();
    for function in &stack.functions {
        let label = function.label();
        let mut candidates = vec![(label.to_string(), bin_dir.join(&function.binary))];
        if let Some(dir) = compare {
            candidates.push((format!("{label} ({})", dir.display()), dir.join(label)));
        }
        let mut function_rows = Vec::new();
        for (name, binary) in &candidates {
            let binary_bytes = std::fs::metadata(binary)
                .with_context(|| format!("{} is not built", binary.display()))?
                .len();
            function_rows.push(ColdStartRow {
                function: name.clone(),
                starts: Vec::new(),
                binary_bytes,
                peak_rss_kib: None,
                sample_ok: false,
            });
        }
        for i in 0..starts.max(1) {
            for ((_, binary), row) in candidates.iter().zip(function_rows.iter_mut()) {
                let pool = FunctionPool::new(
                    function.clone(),
                    binary.clone(),
                    endpoint.child_env(),
                    1,
                    logs.clone(),
                    Arc::new(AtomicUsize::new(0)),
                );
                pool.warm().await?;
                row.starts.extend(pool.cold_starts());
                if i == 0 {
                    let path = root.join("events").join(sample(label));
                    let event: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
                    row.sample_ok = pool.invoke(&event).await.is_ok();
                    row.peak_rss_kib = pool.peak_rss_kib().await;
                }
                pool.stop().await;
                progress(label, i + 1);
            }
        }
        rows.extend(function_rows);
    }
    Ok(rows)
}

/// The table.
pub fn render(rows: &[ColdStartRow], profile: &str) -> String {
    let mut out = format!(
        "cold start ({profile} binaries): process start → first /next, {} starts each\n\n| function | median | p90 | min | binary | peak RSS (init + 1 invocation) |\n|---|---:|---:|---:|---:|---:|\n",
        rows.first().map(|r| r.starts.len()).unwrap_or(0)
    );
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
    for row in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {:.1} MB | {} |\n",
            row.function,
            ms(quantile(&row.starts, 0.5)),
            ms(quantile(&row.starts, 0.9)),
            ms(quantile(&row.starts, 0.0)),
            row.binary_bytes as f64 / 1_000_000.0,
            match (row.peak_rss_kib, row.sample_ok) {
                (Some(kib), true) => format!("{:.1} MB", kib as f64 / 1024.0),
                (Some(kib), false) => format!("{:.1} MB (sample failed)", kib as f64 / 1024.0),
                (None, _) => "-".into(),
            }
        ));
    }
    out
}
