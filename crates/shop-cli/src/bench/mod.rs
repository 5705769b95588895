//! `shop bench ...`: benchmarks of herald running the shop, each printing a table; BENCHMARKS.md
//! holds a run's results.
//!
//! - [`idempotency`]: DynamoDB requests per event for each idempotency path;
//! - [`router`]: the router's hot path in events/s on one core, next to Powertools for Python;
//! - [`cold_start`]: process start to the first `/next`, binary size, peak RSS per function;
//! - [`pipeline`]: the local pipeline end to end — events/s, latency, AWS requests per event
//!   and what they cost;
//! - [`capacity`]: the walls of the template and what 10 to 10 000 events/s need.

pub mod capacity;
pub mod cold_start;
pub mod idempotency;
pub mod pipeline;
pub mod router;

use std::time::Instant;

use anyhow::Result;

pub use idempotency::{idempotency_requests, render_requests, RequestRow};

/// `shop bench all`: every benchmark, one run, all tables (release binaries), headed by the
/// machine they ran on.
pub async fn all(starts: usize, events: usize, rate: f64) -> Result<()> {
    let started = Instant::now();
    let machine = machine();
    println!(
        "# herald benchmarks

{machine}
"
    );
    println!("{}", router::table(1000, 3.0)?);
    println!("{}", cold_start::table(starts, true, None).await?);
    println!("{}", pipeline::table(events, rate, true).await?);
    println!("{}", idempotency::table(100).await?);
    println!("{}", capacity::table(150, rate, true).await?);
    println!("(all of the above in one run, {:.0?})", started.elapsed());
    Ok(())
}

/// CPU model, cores, memory and kernel, for the report.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| format!("{:.1} GiB", kib as f64 / 1024.0 / 1024.0))
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "machine: {model}, {cores} cores, {memory} RAM, Linux {}; {}",
        kernel.trim(),
        chrono::Utc::now().format("%Y-%m-%d")
    )
}
