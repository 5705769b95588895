//! `shop load`: realistic order traffic at a steady rate into a running stack's order service
//! (`POST /orders`, where the shop's orders come in), for watching the pipeline under load and
//! for the end-to-end benchmark.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use herald_local::binaries;
use herald_local::http::post_json;
use tokio::sync::Semaphore;

use crate::common::progress_bar;
use crate::demo::workload::{self, Product, Workload};

/// `shop load`: `rate` orders per second for `duration` (`30s`, `2m`, or seconds) into the order
/// service of the running stack `stack`, with a live progress bar and a summary.
pub async fn command(rate: f64, duration: &str, duplicates: f64, stack: &str) -> Result<()> {
    if !(rate > 0.0 && rate <= 100_000.0) {
        bail!("--rate {rate}: must be more than 0 and at most 100000 events/s");
    }
    if !(0.0..=1.0).contains(&duplicates) {
        bail!("--duplicates {duplicates}: must be between 0 and 1");
    }
    let root = binaries::project_root();
    let url = herald_ops::running_stack(&root, stack)?.function_url("orders")?;
    let catalog = workload::catalog(&root.join("infra/seed"))?;
    let options = LoadOptions {
        rate,
        duration: parse_duration(duration)?,
        duplicates,
        ..LoadOptions::default()
    };
    let bar = progress_bar("sending");
    let summary = run(&url, &catalog, &options, |p| {
        bar.set_length(p.planned as u64);
        bar.set_position(p.sent as u64);
    })
    .await?;
    bar.finish();
    println!(
        "sent        {} orders ({} distinct, {} retries) in {:.1?}: {:.1} orders/s (asked {rate})",
        summary.sent,
        summary.orders,
        summary.sent.saturating_sub(summary.orders),
        summary.elapsed,
        summary.rate()
    );
    println!(
        "orders      placed {}, refused {}, failed requests {}",
        summary.accepted, summary.rejected, summary.failed_requests
    );
    println!(
        "requests    p50 {:.1?}, p99 {:.1?}, max {:.1?}",
        summary.latency(0.5),
        summary.latency(0.99),
        summary.latency(1.0)
    );
    Ok(())
}

/// `30s`, `2m`, `1h`, or plain seconds.
pub fn parse_duration(text: &str) -> Result<Duration> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| anyhow!("--duration {text}: expected e.g. 30s, 2m or 90"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        other => bail!("--duration {text}: unknown unit {other} (ms, s, m, h)"),
    };
    if !(seconds > 0.0 && seconds <= 24.0 * 3600.0) {
        bail!("--duration {text}: must be more than 0 and at most 24h");
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// What to send.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Orders per second to aim for. Default 50.
    pub rate: f64,
    /// How long to send. Default 30 s.
    pub duration: Duration,
    /// Share of orders placed a second time (client retries). Default 0.1.
    pub duplicates: f64,
    /// Requests in flight at most. Default 16.
    pub concurrency: usize,
    /// Traffic seed (order ids derive from it: use a new one per run on a shared stack).
    pub seed: u64,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            rate: 50.0,
            duration: Duration::from_secs(30),
            duplicates: 0.1,
            concurrency: 16,
            seed: rand::random(),
        }
    }
}

/// Where a run is.
#[derive(Clone, Copy, Debug, Default)]
pub struct LoadProgress {
    /// Orders sent so far.
    pub sent: usize,
    /// Orders planned.
    pub planned: usize,
    /// Orders the order service placed (or had placed before: a retry).
    pub accepted: usize,
}

/// How a run went.
#[derive(Clone, Debug, Default)]
pub struct LoadSummary {
    /// Distinct orders.
    pub orders: usize,
    /// Orders sent (distinct + retries).
    pub sent: usize,
    /// Placed by the order service (`201`, or `200` for a retry).
    pub accepted: usize,
    /// Not placed: refused by the order service, or in a request that failed outright.
    pub rejected: usize,
    /// Requests that failed outright.
    pub failed_requests: usize,
    /// Wall time of the sending.
    pub elapsed: Duration,
    /// HTTP request latencies.
    pub latencies: Vec<Duration>,
}

impl LoadSummary {
    /// Achieved orders per second.
    pub fn rate(&self) -> f64 {
        self.sent as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The `q` quantile (0..=1) of request latency.
    pub fn latency(&self, q: f64) -> Duration {
        quantile(&self.latencies, q)
    }
}

/// The `q` quantile of `samples` (nearest rank); zero when empty.
pub fn quantile(samples: &[Duration], q: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    let mut sorted = samples.to_vec();
    sorted.sort();
    let rank = ((q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Place `options.rate` orders per second for `options.duration` with the order service at
/// `url` (its Function URL), one `POST /orders` each.
pub async fn run(
    url: &str,
    catalog: &[Product],
    options: &LoadOptions,
    mut progress: impl FnMut(LoadProgress),
) -> Result<LoadSummary> {
    let planned = (options.rate * options.duration.as_secs_f64())
        .round()
        .max(1.0) as usize;
    let orders = ((planned as f64) / (1.0 + options.duplicates))
        .round()
        .max(1.0) as usize;
    let traffic = Workload {
        orders,
        duplicate_ratio: options.duplicates,
        declined_every: 10,
        system_events: 0,
        malformed: false,
        seed: options.seed,
        per_request: 1,
        data_events: 0,
    }
    .generate(catalog);
    let planned = traffic.order_posts.len();
    let interval = Duration::from_secs_f64(1.0 / options.rate.max(0.001));
    let url = format!("{}/orders", url.trim_end_matches('/'));
    let permits = Arc::new(Semaphore::new(options.concurrency.max(1)));
    // (orders in the request, placed, latency when the request got an answer)
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, usize, Option<Duration>)>();
    let mut summary = LoadSummary {
        orders,
        ..LoadSummary::default()
    };
    let mut absorb = |summary: &mut LoadSummary, (count, accepted, latency)| {
        summary.sent += count;
        summary.accepted += accepted;
        match latency {
            Some(l) => summary.latencies.push(l),
            None => summary.failed_requests += 1,
        }
        progress(LoadProgress {
            sent: summary.sent,
            planned,
            accepted: summary.accepted,
        });
    };
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, order) in traffic.order_posts.iter().enumerate() {
        tokio::time::sleep_until((started + interval * i as u32).into()).await;
        let permit = permits.clone().acquire_owned().await?;
        let url = url.clone();
        let body = order.clone();
        let tx = tx.clone();
        tasks.spawn(async move {
            let sent_at = Instant::now();
            let answer = post_json(&url, &body).await;
            let latency = sent_at.elapsed();
            let placed = matches!(answer, Ok((200 | 201, _)));
            let _ = tx.send((1, usize::from(placed), answer.is_ok().then_some(latency)));
            drop(permit);
        });
        while let Ok(done) = rx.try_recv() {
            absorb(&mut summary, done);
        }
    }
    drop(tx);
    while let Some(done) = rx.recv().await {
        absorb(&mut summary, done);
    }
    while tasks.join_next().await.is_some() {}
    summary.elapsed = started.elapsed();
    summary.rejected = summary.sent - summary.accepted;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_or_without_a_unit() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration(" 90 ").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("2d").is_err());
        assert!(parse_duration("25h").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn quantiles_are_nearest_rank() {
        let samples: Vec<Duration> = (1..=10).map(Duration::from_millis).collect();
        assert_eq!(quantile(&samples, 0.5), Duration::from_millis(5));
        assert_eq!(quantile(&samples, 0.99), Duration::from_millis(10));
        assert_eq!(quantile(&samples, 0.0), Duration::from_millis(1));
        assert_eq!(quantile(&[], 0.5), Duration::ZERO);
    }
}
