//! `shop`: the shop example on herald's local runner — its demo, a load generator, the rebuild
//! of its read model, and the benchmarks. Clap definitions and dispatch only; each command lives
//! in its module of the `shop_cli` library.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

use shop_cli::demo::DemoOptions;
use shop_cli::{bench, demo, load, rebuild};

#[derive(Parser)]
#[command(
    name = "shop",
    version,
    about = "shop: herald's example application — demo, load, rebuild, benchmarks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the demo: pipeline up, a burst of orders (with duplicates and bad events), a summary.
    Demo {
        /// The SAM template.
        #[arg(long, default_value = "template.yaml")]
        template: PathBuf,
        /// Stack name: the prefix of every local resource name.
        #[arg(long, default_value = "herald")]
        stack: String,
        /// Use release builds of the functions.
        #[arg(long)]
        release: bool,
        /// Distinct orders to send.
        #[arg(long, default_value_t = 60)]
        orders: usize,
        /// Share of orders sent twice.
        #[arg(long, default_value_t = 0.15)]
        duplicates: f64,
        /// Random seed of the traffic.
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Show every function log line.
        #[arg(long)]
        verbose: bool,
        /// Save a picture of the console's pipeline page (1,280 pixels wide, headless Chromium)
        /// once the demo has run: how docs/console.png is made.
        #[arg(long, value_name = "FILE.png")]
        screenshot: Option<PathBuf>,
    },
    /// Place realistic orders with a running stack's order service at a steady rate, with a
    /// live progress bar and a summary.
    Load {
        /// Orders per second.
        #[arg(long, default_value_t = 50.0)]
        rate: f64,
        /// How long: `30s`, `2m`, or seconds.
        #[arg(long, default_value = "30s")]
        duration: String,
        /// Share of orders sent twice (client retries).
        #[arg(long, default_value_t = 0.1)]
        duplicates: f64,
        /// Stack started by `herald local up`.
        #[arg(long, default_value = "herald")]
        stack: String,
    },
    /// Empty a projection and fold every event of the store into it again (pause its projector
    /// first, or events projected meanwhile are deleted with the rest).
    Rebuild {
        /// The projection: `orders_view`.
        name: String,
        /// Stack started by `herald local up`.
        #[arg(long, default_value = "herald")]
        stack: String,
        /// Fold the event archive (S3) instead of the event store.
        #[arg(long)]
        from_archive: bool,
    },
    /// Benchmarks that print a table.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Every benchmark, one run, all tables (what BENCHMARKS.md holds). Run it from a release
    /// build: `cargo run --release -p shop-cli -- bench all`.
    All {
        /// Starts per function for the cold-start table.
        #[arg(long, default_value_t = 20)]
        starts: usize,
        /// Events per pipeline run.
        #[arg(long, default_value_t = 300)]
        events: usize,
        /// Orders per second placed with the order service (a rate the local pipeline keeps up
        /// with).
        #[arg(long, default_value_t = 10.0)]
        rate: f64,
    },
    /// The router's hot path in events/s on one core, next to Powertools for Python.
    Router {
        /// Records per Kinesis batch.
        #[arg(long, default_value_t = 1000)]
        records: usize,
        /// Seconds per implementation.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
    },
    /// Process start → first `/next` of every function, binary size, peak RSS.
    ColdStart {
        /// Starts per function.
        #[arg(long, default_value_t = 20)]
        starts: usize,
        /// Measure release binaries (built first).
        #[arg(long)]
        release: bool,
        /// Also start each function from `DIR/<function>` (another build, e.g. one binary per
        /// function), interleaved with the first, for a side-by-side comparison.
        #[arg(long, value_name = "DIR")]
        compare: Option<std::path::PathBuf>,
    },
    /// How far the template goes: walls with its defaults, and what 10 to 10 000 submitted
    /// events/s need (shards, concurrency, write units, the first wall, $ per month), from one
    /// local run's costs per event and AWS's published limits.
    Capacity {
        /// Events in the measuring run.
        #[arg(long, default_value_t = 150)]
        events: usize,
        /// Events per second in the measuring run.
        #[arg(long, default_value_t = 10.0)]
        rate: f64,
        /// Use release binaries (built first).
        #[arg(long)]
        release: bool,
    },
    /// The local pipeline end to end: throughput, latency, AWS requests per event, cost.
    Pipeline {
        /// Events per run.
        #[arg(long, default_value_t = 300)]
        events: usize,
        /// Events per second (a rate the local pipeline keeps up with; a third run sends 5×).
        #[arg(long, default_value_t = 10.0)]
        rate: f64,
        /// Use release binaries (built first).
        #[arg(long)]
        release: bool,
    },
    /// DynamoDB requests per event for each idempotency path (first delivery, duplicate).
    Idempotency {
        /// Events per path.
        #[arg(long, default_value_t = 100)]
        events: usize,
    },
}

#[tokio::main]
async fn main() {
    herald_local::init_cli_logging();
    if let Err(err) = dispatch(Cli::parse().command).await {
        eprintln!("shop: {err:#}");
        std::process::exit(1);
    }
}

async fn dispatch(command: Command) -> Result<()> {
    match command {
        Command::Demo {
            template,
            stack,
            release,
            orders,
            duplicates,
            seed,
            verbose,
            screenshot,
        } => {
            demo::run(DemoOptions {
                template,
                stack,
                release,
                orders,
                duplicates,
                seed,
                verbose,
                screenshot,
            })
            .await
        }
        Command::Load {
            rate,
            duration,
            duplicates,
            stack,
        } => load::command(rate, &duration, duplicates, &stack).await,
        Command::Rebuild {
            name,
            stack,
            from_archive,
        } => rebuild::command(&name, &stack, from_archive).await,
        Command::Bench { command } => match command {
            BenchCommand::All {
                starts,
                events,
                rate,
            } => bench::all(starts, events, rate).await,
            BenchCommand::Router { records, seconds } => {
                bench::router::table(records, seconds).map(|t| println!("{t}"))
            }
            BenchCommand::ColdStart {
                starts,
                release,
                compare,
            } => {
                let table = bench::cold_start::table(starts, release, compare.as_deref()).await?;
                println!("{table}");
                Ok(())
            }
            BenchCommand::Pipeline {
                events,
                rate,
                release,
            } => {
                let table = bench::pipeline::table(events, rate, release).await?;
                println!("{table}");
                Ok(())
            }
            BenchCommand::Capacity {
                events,
                rate,
                release,
            } => {
                let table = bench::capacity::table(events, rate, release).await?;
                println!("{table}");
                Ok(())
            }
            BenchCommand::Idempotency { events } => {
                let table = bench::idempotency::table(events).await?;
                println!("{table}");
                Ok(())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
