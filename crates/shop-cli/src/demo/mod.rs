//! `shop demo`: the whole pipeline up locally, a burst of orders (with client retries, system
//! events and events the pipeline must refuse), a summary of what every subscriber did, one
//! order's lifecycle hop by hop, and its trace.

pub mod audit;
pub mod lifecycle;
pub mod report;
pub mod workload;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Result;
use herald_local::{binaries, Endpoint, StackOptions, UpOptions};

use crate::common::uuid_suffix;
use workload::Workload;

/// What `shop demo` runs.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// The SAM template, relative to the project root.
    pub template: PathBuf,
    /// Stack name; the default `herald` becomes a fresh `demo-<suffix>` per run.
    pub stack: String,
    /// Use release builds of the functions.
    pub release: bool,
    /// Distinct orders to send.
    pub orders: usize,
    /// Share of orders sent twice.
    pub duplicates: f64,
    /// Random seed of the traffic.
    pub seed: u64,
    /// Show every function log line.
    pub verbose: bool,
    /// Where to save a picture of the console once the demo has run.
    pub screenshot: Option<PathBuf>,
}

/// Run the demo end to end and print its report.
pub async fn run(args: DemoOptions) -> Result<()> {
    let started = Instant::now();
    let root = binaries::project_root();
    let endpoint = Endpoint::from_env_or_start(&root, None).await?;
    println!("endpoint    {}", endpoint.describe());
    let url_port = herald_local::moto::free_port()?;
    // A fresh stack per run, so a shared emulator never mixes runs.
    let stack_name = if args.stack == "herald" {
        format!("demo-{}", uuid_suffix())
    } else {
        args.stack.clone()
    };
    let mut options = UpOptions::new(root.clone());
    options.template = root.join(&args.template);
    options.release = args.release;
    options.stack = StackOptions {
        name: stack_name.clone(),
        function_url_base: format!("http://127.0.0.1:{url_port}"),
        ..StackOptions::default()
    };
    options.runner.url_port = Some(url_port);
    options.runner.echo_logs = args.verbose;
    options.runner.log_dir = Some(root.join(".herald/logs").join(&stack_name));
    println!("building    the function binaries (cargo build)…");
    // The console's alarms show on its page; the report below is the demo's text.
    options.runner.alarms.print = false;
    let mut pipeline = herald_local::up(&endpoint, options).await?;
    pipeline.warm().await?;
    let console = herald_ops::console::serve_local(&mut pipeline, 0, root.join("events")).await?;
    let stack = pipeline.stack().clone();
    println!(
        "stack       {} up after {:.1?}: {} functions, {} mappings",
        stack.name,
        started.elapsed(),
        stack.functions.len(),
        stack.mappings.len()
    );
    println!("console     {console} (open it to watch; it closes when the demo ends)");

    let workload = Workload {
        orders: args.orders,
        duplicate_ratio: args.duplicates,
        seed: args.seed,
        ..Workload::default()
    };
    let traffic = workload.generate(&workload::catalog(&root.join("infra/seed"))?);
    let endpoints = workload::Endpoints::of(&stack)?;
    let send_started = Instant::now();
    let sent = workload::send(&endpoints, &traffic).await?;
    let aws = endpoint.sdk_config().await;
    herald_ops::inspect::put_raw(
        &aws_sdk_kinesis::Client::new(&aws),
        stack.reference("BusEventStream")?,
        &traffic.raw_records,
    )
    .await?;
    println!(
        "sent        {} orders and submissions over HTTP in {:.1?}; waiting for every subscriber…",
        sent.submitted,
        send_started.elapsed()
    );
    pipeline
        .wait_idle(Duration::from_millis(1500), Duration::from_secs(300))
        .await?;
    let settle = send_started.elapsed();
    let effects = report::effects(&stack, &aws).await?;
    println!("settled     after {settle:.1?}\n");
    println!(
        "{}",
        report::render(&traffic, &sent, &effects, &pipeline.tallies())
    );
    let order_id = format!("order-{}", uuid_suffix());
    let lifecycle = lifecycle::run(&stack, &aws, &order_id).await?;
    println!("{}", lifecycle.report);
    pipeline
        .wait_idle(Duration::from_millis(1500), Duration::from_secs(120))
        .await?;
    let log_dir = root.join(".herald/logs").join(&stack.name);
    let trace = herald_ops::trace::from_files(&log_dir, &lifecycle.placed_event_id)?;
    println!(
        "herald trace {} --stack {}\n{}",
        lifecycle.placed_event_id,
        stack.name,
        herald_ops::trace::render_tree(&trace)
    );
    println!(
        "logs        {}",
        root.join(".herald/logs").join(&stack.name).display()
    );
    if let Some(path) = &args.screenshot {
        herald_ops::console::screenshot(&console, path).await?;
        println!(
            "screenshot  {} (the console's pipeline page)",
            path.display()
        );
    }
    pipeline.stop().await;
    println!("done in {:.1?}", started.elapsed());
    Ok(())
}
