//! `herald`: run the pipeline on your laptop, invoke its functions, send it events.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use serde_json::Value;

use herald_local::example::{self, Workload};
use herald_local::{binaries, Endpoint, Stack, StackOptions, UpOptions};

#[derive(Parser)]
#[command(
    name = "herald",
    version,
    about = "herald: an event-driven pipeline you deploy with SAM and run on your laptop"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The local pipeline.
    Local {
        #[command(subcommand)]
        command: LocalCommand,
    },
    /// Run the demo: pipeline up, a burst of orders (with duplicates and bad events), a summary.
    Demo(DemoArgs),
    /// Invoke one function once with an event file and print its response.
    Invoke(InvokeArgs),
    /// Send events (a file or `-` for stdin) to the producer's Function URL.
    Send(SendArgs),
    /// Print a function's environment in a running local stack (KEY=VALUE lines), for
    /// `cargo lambda watch --env-file`.
    Env {
        /// Function: logical id or binary name.
        function: String,
        /// Stack started by `herald local up`.
        #[arg(long, default_value = "herald")]
        stack: String,
    },
    /// Dead-letter queues: list them, show a queue's messages and reasons, send them back.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
        /// Stack started by `herald local up`.
        #[arg(long, default_value = "herald", global = true)]
        stack: String,
    },
    /// Re-read the stream from a point in time through the router (subscribers are idempotent).
    Replay {
        /// RFC 3339 timestamp (`2026-11-26T10:00:00Z`).
        #[arg(long)]
        from: String,
        /// Stack started by `herald local up`.
        #[arg(long, default_value = "herald")]
        stack: String,
    },
    /// Follow one business transaction through every hop, from the stack's logs.
    Trace {
        /// An event id or a correlation id.
        id: String,
        /// Stack whose logs to read (`herald local up` / `herald demo` write them).
        #[arg(long, default_value = "herald")]
        stack: String,
        /// `tree` (indented, with timings) or `mermaid` (a sequence diagram).
        #[arg(long, default_value = "tree")]
        format: String,
        /// The log directory (default `.herald/logs/<stack>`).
        #[arg(long)]
        logs: Option<PathBuf>,
    },
    /// Send realistic order traffic to a running stack at a steady rate, with a live progress
    /// bar and a summary.
    Load {
        /// Events per second.
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
    /// Read models (projections) of the event store.
    Project {
        #[command(subcommand)]
        command: ProjectCommand,
        /// Stack started by `herald local up`.
        #[arg(long, default_value = "herald", global = true)]
        stack: String,
    },
    /// Event schemas (`events/schemas`).
    Schema {
        #[command(subcommand)]
        command: SchemaCommand,
    },
    /// Benchmarks that print a table.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
}

#[derive(Subcommand)]
enum DlqCommand {
    /// Every dead-letter queue with its message count, oldest message and source.
    List,
    /// A queue's messages with their reasons and ages.
    Show {
        /// Queue: logical id or a unique part of it (`inventory`, `router`).
        queue: String,
    },
    /// Send every message back to its source (deleting each only after it was sent).
    Redrive {
        /// Queue: logical id or a unique part of it.
        queue: String,
    },
}

#[derive(Subcommand)]
enum ProjectCommand {
    /// Empty a projection and fold every event of the store into it again (pause its projector
    /// first, or events projected meanwhile are deleted with the rest).
    Rebuild {
        /// The projection: `orders_view`.
        name: String,
    },
}

#[derive(Subcommand)]
enum SchemaCommand {
    /// Fail when a released schema changed in a way that is not backward compatible, or a sample
    /// event does not match its schema.
    Check {
        /// The schema directory.
        #[arg(long, default_value = "events/schemas")]
        dir: PathBuf,
        /// Record the current schemas as released (only when the check passes).
        #[arg(long)]
        update: bool,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Every benchmark, one run, all tables (what BENCHMARKS.md holds). Run it from a release
    /// build: `cargo run --release -p herald-cli -- bench all`.
    All {
        /// Starts per function for the cold-start table.
        #[arg(long, default_value_t = 20)]
        starts: usize,
        /// Events per pipeline run.
        #[arg(long, default_value_t = 300)]
        events: usize,
        /// Events per second sent to the producer (a rate the local pipeline keeps up with).
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

#[derive(Subcommand)]
enum LocalCommand {
    /// Provision the template on the emulator and run every function and mapping in the foreground.
    Up(UpArgs),
}

#[derive(Args, Clone)]
struct Common {
    /// The SAM template.
    #[arg(long, default_value = "template.yaml")]
    template: PathBuf,
    /// Stack name: the prefix of every local resource name.
    #[arg(long, default_value = "herald")]
    stack: String,
    /// Use release builds of the functions.
    #[arg(long)]
    release: bool,
}

#[derive(Args)]
struct UpArgs {
    #[command(flatten)]
    common: Common,
    /// Port for moto when herald starts it (ignored when AWS_ENDPOINT_URL is set).
    #[arg(long, default_value_t = 5050)]
    moto_port: u16,
    /// Port of the local Function URL server.
    #[arg(long, default_value_t = 9000)]
    url_port: u16,
    /// Concurrent instances per function.
    #[arg(long, default_value_t = 2)]
    concurrency: usize,
}

#[derive(Args)]
struct DemoArgs {
    #[command(flatten)]
    common: Common,
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
}

#[derive(Args)]
struct InvokeArgs {
    #[command(flatten)]
    common: Common,
    /// Function: logical id (InventoryFunction) or binary name (inventory).
    function: String,
    /// Event JSON file, or `-` for stdin.
    event: String,
}

#[derive(Args)]
struct SendArgs {
    /// Events: one event, an array, or {"events": [...]}; a file or `-`.
    events: String,
    /// The producer URL (default: the local stack's Function URL).
    #[arg(long)]
    url: Option<String>,
    /// Stack whose producer to use.
    #[arg(long, default_value = "herald")]
    stack: String,
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_target(false)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Local {
            command: LocalCommand::Up(args),
        } => local_up(args).await,
        Command::Demo(args) => demo(args).await,
        Command::Invoke(args) => invoke(args).await,
        Command::Send(args) => send(args).await,
        Command::Env { function, stack } => env(&function, &stack),
        Command::Dlq { command, stack } => dlq(command, &stack).await,
        Command::Replay { from, stack } => replay(&from, &stack).await,
        Command::Trace {
            id,
            stack,
            format,
            logs,
        } => trace(&id, &stack, &format, logs),
        Command::Load {
            rate,
            duration,
            duplicates,
            stack,
        } => load(rate, &duration, duplicates, &stack).await,
        Command::Project {
            command: ProjectCommand::Rebuild { name },
            stack,
        } => project_rebuild(&name, &stack).await,
        Command::Schema {
            command: SchemaCommand::Check { dir, update },
        } => schema_check(&dir, update),
        Command::Bench {
            command: BenchCommand::Idempotency { events },
        } => bench_idempotency(events).await,
        Command::Bench {
            command: BenchCommand::Router { records, seconds },
        } => bench_router(records, seconds).map(|t| println!("{t}")),
        Command::Bench {
            command: BenchCommand::ColdStart { starts, release },
        } => bench_cold_start(starts, release)
            .await
            .map(|t| println!("{t}")),
        Command::Bench {
            command:
                BenchCommand::Pipeline {
                    events,
                    rate,
                    release,
                },
        } => bench_pipeline(events, rate, release)
            .await
            .map(|t| println!("{t}")),
        Command::Bench {
            command:
                BenchCommand::All {
                    starts,
                    events,
                    rate,
                },
        } => bench_all(starts, events, rate).await,
    };
    if let Err(err) = result {
        eprintln!("herald: {err:#}");
        std::process::exit(1);
    }
}

fn state_file(root: &Path, stack: &str) -> PathBuf {
    root.join(".herald").join(format!("stack-{stack}.json"))
}

fn up_options(root: &Path, common: &Common, url_port: Option<u16>) -> UpOptions {
    let mut options = UpOptions::new(root.to_path_buf());
    options.template = root.join(&common.template);
    options.release = common.release;
    options.stack = StackOptions {
        name: common.stack.clone(),
        function_url_base: format!("http://127.0.0.1:{}", url_port.unwrap_or(9000)),
        ..StackOptions::default()
    };
    options.runner.url_port = url_port;
    options
}

async fn local_up(args: UpArgs) -> Result<()> {
    let root = binaries::project_root();
    let endpoint = Endpoint::from_env_or_moto(&root, Some(args.moto_port)).await?;
    println!("endpoint    {}", endpoint.describe());
    let mut options = up_options(&root, &args.common, Some(args.url_port));
    options.runner.echo_logs = true;
    options.runner.concurrency = args.concurrency;
    options.runner.log_dir = Some(root.join(".herald/logs").join(&args.common.stack));
    let pipeline = herald_local::up(&endpoint, options).await?;
    pipeline.warm().await?;
    let stack = pipeline.stack();
    stack.save(&state_file(&root, &stack.name))?;
    println!(
        "stack       {} ({} resources, {} functions, {} event source mappings)",
        stack.name,
        stack.resources.len(),
        stack.functions.len(),
        stack.mappings.len()
    );
    for function in &stack.functions {
        if let Some(url) = &function.url {
            println!("url         {} → {}", url, function.binary);
        }
    }
    for (id, kind) in &stack.skipped {
        println!("not local   {id}: {kind}");
    }
    println!("\nIn another terminal:\n  export AWS_ENDPOINT_URL={}\n  target/debug/herald send events/producer/direct-invoke.json\n\nCtrl-C stops everything.\n", endpoint.url);
    tokio::signal::ctrl_c().await?;
    println!("stopping");
    pipeline.stop().await;
    Ok(())
}

async fn demo(args: DemoArgs) -> Result<()> {
    let started = Instant::now();
    let root = binaries::project_root();
    let endpoint = Endpoint::from_env_or_moto(&root, None).await?;
    println!("endpoint    {}", endpoint.describe());
    let url_port = herald_local::moto::free_port()?;
    let mut common = args.common.clone();
    if common.stack == "herald" {
        // A fresh stack per run, so a shared emulator never mixes runs.
        common.stack = format!("demo-{}", uuid_suffix());
    }
    let mut options = up_options(&root, &common, Some(url_port));
    options.runner.echo_logs = args.verbose;
    options.runner.log_dir = Some(root.join(".herald/logs").join(&common.stack));
    println!("building    the function binaries (cargo build)…");
    let pipeline = herald_local::up(&endpoint, options).await?;
    pipeline.warm().await?;
    let stack = pipeline.stack().clone();
    println!(
        "stack       {} up after {:.1?}: {} functions, {} mappings",
        stack.name,
        started.elapsed(),
        stack.functions.len(),
        stack.mappings.len()
    );

    let workload = Workload {
        orders: args.orders,
        duplicate_ratio: args.duplicates,
        seed: args.seed,
        ..Workload::default()
    };
    let traffic = workload.generate(&example::catalog(&root.join("infra/seed"))?);
    let url = stack.function_url("producer")?;
    let send_started = Instant::now();
    let sent = example::send(&url, &traffic).await?;
    let aws = endpoint.sdk_config().await;
    example::put_raw(
        &aws_sdk_kinesis::Client::new(&aws),
        stack.reference("EventStream")?,
        &traffic.raw_records,
    )
    .await?;
    println!(
        "sent        {} submissions over HTTP in {:.1?}; waiting for every subscriber…",
        sent.submitted,
        send_started.elapsed()
    );
    pipeline
        .wait_idle(Duration::from_millis(1500), Duration::from_secs(300))
        .await?;
    let settle = send_started.elapsed();
    let effects = example::effects(&stack, &aws).await?;
    println!("settled     after {settle:.1?}\n");
    println!(
        "{}",
        example::render(&traffic, &sent, &effects, &pipeline.tallies())
    );
    let order_id = format!("order-{}", uuid_suffix());
    let lifecycle = herald_local::lifecycle::run(&stack, &aws, &order_id).await?;
    println!("{}", lifecycle.report);
    pipeline
        .wait_idle(Duration::from_millis(1500), Duration::from_secs(120))
        .await?;
    let log_dir = root.join(".herald/logs").join(&stack.name);
    let trace = herald_local::trace::trace(&log_dir, &lifecycle.placed_event_id)?;
    println!(
        "herald trace {} --stack {}\n{}",
        lifecycle.placed_event_id,
        stack.name,
        herald_local::trace::render_tree(&trace)
    );
    println!(
        "logs        {}",
        root.join(".herald/logs").join(&stack.name).display()
    );
    pipeline.stop().await;
    println!("done in {:.1?}", started.elapsed());
    Ok(())
}

fn uuid_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:x}", nanos & 0xff_ffff)
}

fn read_input(source: &str) -> Result<Value> {
    let text = if source == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        text
    } else {
        std::fs::read_to_string(source).with_context(|| format!("reading {source}"))?
    };
    serde_json::from_str(&text).with_context(|| format!("{source} is not JSON"))
}

async fn invoke(args: InvokeArgs) -> Result<()> {
    let payload = read_input(&args.event)?;
    let root = binaries::project_root();
    let endpoint = Endpoint::from_env_or_moto(&root, None).await?;
    let mut options = up_options(&root, &args.common, None);
    options.quiet_build = true;
    options.runner.mappings = false;
    options.runner.echo_logs = true;
    let pipeline = herald_local::up(&endpoint, options).await?;
    let result = pipeline.try_invoke(&args.function, &payload).await?;
    pipeline.stop().await;
    match result {
        Ok(response) => {
            println!("{}", serde_json::to_string_pretty(&response)?);
            Ok(())
        }
        Err(err) => bail!("the function failed: {err}"),
    }
}

fn load_stack(name: &str) -> Result<Stack> {
    let file = state_file(&binaries::project_root(), name);
    Stack::load(&file)
        .with_context(|| format!("no local stack {name}: start one with `herald local up`"))
}

fn env(function: &str, stack: &str) -> Result<()> {
    let stack = load_stack(stack)?;
    let spec = stack.function(function)?;
    let endpoint = Endpoint::external(stack.endpoint.clone());
    for (key, value) in spec
        .environment
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .chain(endpoint.child_env())
    {
        println!("{key}={value}");
    }
    Ok(())
}

async fn send(args: SendArgs) -> Result<()> {
    let events = read_input(&args.events)?;
    let url = match args.url {
        Some(url) => url,
        None => load_stack(&args.stack)?.function_url("producer")?,
    };
    let (status, report) = example::post_json(&url, &events).await?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    if status >= 400 {
        bail!("the producer answered {status}");
    }
    Ok(())
}

fn trace(id: &str, stack: &str, format: &str, logs: Option<PathBuf>) -> Result<()> {
    use herald_local::trace;
    let dir = logs.unwrap_or_else(|| binaries::project_root().join(".herald/logs").join(stack));
    let found = trace::trace(&dir, id)?;
    match format {
        "tree" => print!("{}", trace::render_tree(&found)),
        "mermaid" => print!("{}", trace::render_mermaid(&found)),
        other => bail!("--format {other}: expected tree or mermaid"),
    }
    Ok(())
}

/// `30s`, `2m`, `1h`, or plain seconds.
fn parse_duration(text: &str) -> Result<Duration> {
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

async fn load(rate: f64, duration: &str, duplicates: f64, stack: &str) -> Result<()> {
    use herald_local::load::{self, LoadOptions};
    if !(rate > 0.0 && rate <= 100_000.0) {
        bail!("--rate {rate}: must be more than 0 and at most 100000 events/s");
    }
    if !(0.0..=1.0).contains(&duplicates) {
        bail!("--duplicates {duplicates}: must be between 0 and 1");
    }
    let url = load_stack(stack)?.function_url("producer")?;
    let catalog = example::catalog(&binaries::project_root().join("infra/seed"))?;
    let options = LoadOptions {
        rate,
        duration: parse_duration(duration)?,
        duplicates,
        ..LoadOptions::default()
    };
    let bar = progress_bar("sending");
    let summary = load::run(&url, &catalog, &options, |p| {
        bar.set_length(p.planned as u64);
        bar.set_position(p.sent as u64);
    })
    .await?;
    bar.finish();
    println!(
        "sent        {} events ({} orders, {} retries) in {:.1?}: {:.1} events/s (asked {rate})",
        summary.sent,
        summary.orders,
        summary.sent.saturating_sub(summary.orders),
        summary.elapsed,
        summary.rate()
    );
    println!(
        "producer    accepted {}, rejected {}, failed requests {}",
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

async fn project_rebuild(name: &str, stack: &str) -> Result<()> {
    use herald::projection::NAME;
    if name != NAME {
        bail!("no projection {name}; the projections are: {NAME}");
    }
    let (stack, aws) = stack_and_aws(stack).await?;
    let bar = progress_bar("rebuilding orders_view");
    let started = Instant::now();
    let applied = herald_local::ops::rebuild_orders_view(&stack, &aws, |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })
    .await?;
    bar.finish();
    println!(
        "orders_view rebuilt from {applied} events in {:.1?}",
        started.elapsed()
    );
    Ok(())
}

fn bench_router(records: usize, seconds: f64) -> Result<String> {
    use herald_local::bench::router;
    let root = binaries::project_root();
    let catalog = example::catalog(&root.join("infra/seed"))?;
    let (event, mean_bytes) = router::kinesis_batch(&catalog, records.max(1), 42)?;
    let file = router::batch_file(&root);
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&file, &event)?;
    let rust = router::herald_router(&event, seconds, true)?;
    let route_only = router::herald_router(&event, seconds, false)?;
    let python = root.join(".venv/bin/python");
    let script = root.join("infra/bench/powertools_router.py");
    let powertools = router::powertools_router(&python, &script, &file, seconds)?;
    let mut table = router::render(&[rust, route_only, powertools], records, mean_bytes);
    if cfg!(debug_assertions) {
        table.push_str(
            "
(debug build: run `cargo run --release -p herald-cli -- bench router` for real numbers)
",
        );
    }
    Ok(table)
}

async fn bench_cold_start(starts: usize, release: bool) -> Result<String> {
    let root = binaries::project_root();
    let endpoint = Endpoint::from_env_or_moto(&root, None).await?;
    let mut options = UpOptions::new(root.clone());
    options.stack.name = format!("cold-{}", uuid_suffix());
    options.release = release;
    options.quiet_build = true;
    options.runner.mappings = false;
    let bin_dir = binaries::bin_dir(&root, release);
    let pipeline = herald_local::up(&endpoint, options).await?;
    let stack = pipeline.stack().clone();
    let bar = progress_bar("starting functions");
    bar.set_length((stack.functions.len() * starts.max(1)) as u64);
    let rows = herald_local::bench::cold_start::measure(
        &root,
        &stack,
        &endpoint,
        &bin_dir,
        starts,
        |_, _| bar.inc(1),
    )
    .await;
    bar.finish_and_clear();
    pipeline.stop().await;
    Ok(herald_local::bench::cold_start::render(
        &rows?,
        if release {
            "release, stripped"
        } else {
            "debug"
        },
    ))
}

async fn bench_pipeline(events: usize, rate: f64, release: bool) -> Result<String> {
    use herald_local::bench::pipeline;
    let root = binaries::project_root();
    let endpoint = Endpoint::from_env_or_moto(&root, None).await?;
    let happy = pipeline::run(&root, &endpoint, release, "happy path", rate, events, 0.0).await?;
    let duplicates = pipeline::run(
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
    let saturated = pipeline::run(
        &root,
        &endpoint,
        release,
        "happy path, 5× the rate",
        rate * 5.0,
        events,
        0.0,
    )
    .await?;
    let emulator = pipeline::emulator_speed(&endpoint, 300, 3000).await?;
    Ok(pipeline::render(&[happy, duplicates, saturated], &emulator))
}

async fn bench_all(starts: usize, events: usize, rate: f64) -> Result<()> {
    let started = Instant::now();
    let machine = machine();
    println!(
        "# herald benchmarks

{machine}
"
    );
    println!("{}", bench_router(1000, 3.0)?);
    println!("{}", bench_cold_start(starts, true).await?);
    println!("{}", bench_pipeline(events, rate, true).await?);
    let root = binaries::project_root();
    let endpoint = Endpoint::from_env_or_moto(&root, None).await?;
    let rows = herald_local::bench::idempotency_requests(&endpoint, 100).await?;
    println!(
        "{}",
        herald_local::bench::render_requests(&rows, 100, &endpoint.describe())
    );
    println!("(all of the above in one run, {:.0?})", started.elapsed());
    Ok(())
}

/// CPU model, cores, memory and kernel, for the report.
fn machine() -> String {
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

async fn bench_idempotency(events: usize) -> Result<()> {
    let root = binaries::project_root();
    let endpoint = Endpoint::from_env_or_moto(&root, None).await?;
    let rows = herald_local::bench::idempotency_requests(&endpoint, events).await?;
    println!(
        "{}",
        herald_local::bench::render_requests(&rows, events, &endpoint.describe())
    );
    Ok(())
}

async fn stack_and_aws(name: &str) -> Result<(Stack, aws_config::SdkConfig)> {
    let stack = load_stack(name)?;
    let aws = Endpoint::external(stack.endpoint.clone())
        .sdk_config()
        .await;
    Ok((stack, aws))
}

fn progress_bar(message: &'static str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({elapsed})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(message);
    bar
}

async fn dlq(command: DlqCommand, stack: &str) -> Result<()> {
    use herald_local::ops;
    let (stack, aws) = stack_and_aws(stack).await?;
    match command {
        DlqCommand::List => {
            println!("{:<28} {:>8} {:>12}  source", "queue", "messages", "oldest");
            for queue in ops::dead_letter_queues(&stack) {
                let letters = ops::letters(&aws, &queue.url).await?;
                let oldest = letters
                    .first()
                    .map(|l| format!("{:.0?}", l.age))
                    .unwrap_or_else(|| "-".into());
                let source = match &queue.source {
                    Some(ops::Source::Queue { logical_id, .. }) => format!("queue {logical_id}"),
                    Some(ops::Source::Stream { logical_id, .. }) => format!("stream {logical_id}"),
                    Some(ops::Source::StreamRange { logical_id, .. }) => {
                        format!("stream {logical_id} (on-failure records)")
                    }
                    None => "unknown".into(),
                };
                println!(
                    "{:<28} {:>8} {:>12}  {source}",
                    queue.logical_id,
                    letters.len(),
                    oldest
                );
            }
        }
        DlqCommand::Show { queue } => {
            let queue = ops::find_dead_letter_queue(&stack, &queue)?;
            let letters = ops::letters(&aws, &queue.url).await?;
            println!("{} ({} messages)", queue.logical_id, letters.len());
            for letter in letters {
                let body: String = letter.body.chars().take(120).collect();
                println!(
                    "- {} age {:.0?}, received {}x{}\n  reason: {}\n  body:   {}",
                    letter.message_id,
                    letter.age,
                    letter.receives,
                    letter
                        .stage
                        .map(|s| format!(", from {s}"))
                        .unwrap_or_default(),
                    letter.reason,
                    body
                );
            }
        }
        DlqCommand::Redrive { queue } => {
            let queue = ops::find_dead_letter_queue(&stack, &queue)?;
            let bar = progress_bar("redriving");
            let report = ops::redrive(&aws, &queue, |done, total| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            })
            .await?;
            bar.finish_and_clear();
            println!(
                "{}: {} messages sent back, {} left",
                queue.logical_id,
                report.moved,
                report.failed.len()
            );
            for failure in &report.failed {
                println!("  not sent: {failure}");
            }
            if !report.failed.is_empty() {
                bail!("some messages could not be sent back");
            }
        }
    }
    Ok(())
}

async fn replay(from: &str, stack: &str) -> Result<()> {
    let from = chrono::DateTime::parse_from_rfc3339(from)
        .with_context(|| {
            format!("--from {from}: expected an RFC 3339 timestamp like 2026-11-26T10:00:00Z")
        })?
        .with_timezone(&chrono::Utc);
    let (stack, aws) = stack_and_aws(stack).await?;
    // The stack's own router function does the routing: build it as `herald invoke` would.
    let (router, _) = herald_local::ops::replay_function(&stack)?;
    let bin_dir = binaries::build(
        &binaries::project_root(),
        std::slice::from_ref(&router.binary),
        false,
        true,
    )?;
    let bar = indicatif::ProgressBar::new_spinner();
    let replayed = herald_local::ops::replay(&aws, &stack, &bin_dir, from, |read| {
        bar.set_message(format!("{read} records replayed"));
        bar.tick();
    })
    .await?;
    bar.finish_and_clear();
    let routed = match replayed.routed {
        Some(r) => format!(
            "{} published, {} dead-lettered",
            r.published, r.dead_lettered
        ),
        None => "the router reported no metrics".into(),
    };
    println!(
        "replayed {} records from {from} in {} batches: {routed}",
        replayed.read, replayed.batches
    );
    Ok(())
}

fn schema_check(dir: &Path, update: bool) -> Result<()> {
    use herald_local::schemas;
    let root = binaries::project_root();
    let dir = root.join(dir);
    let current = schemas::load(&dir)?;
    let released = schemas::load_lock(&dir)?;
    let breaking = schemas::breaking_changes(&released, &current);
    let mut invalid = Vec::new();
    let events_dir = dir.parent().unwrap_or(&root).to_path_buf();
    let samples = schemas::sample_events(&events_dir)?;
    for (file, event) in &samples {
        if let Err(errors) = schemas::validate_event(&current, event) {
            invalid.extend(errors.into_iter().map(|e| format!("{file}: {e}")));
        }
    }
    for line in breaking.iter().chain(&invalid) {
        println!("  ✗ {line}");
    }
    if !breaking.is_empty() || !invalid.is_empty() {
        bail!(
            "{} breaking schema changes, {} sample events that do not match their schema",
            breaking.len(),
            invalid.len()
        );
    }
    println!(
        "{} schemas ({} released) are backward compatible; {} sample events match their schemas",
        current.len(),
        released.len(),
        samples.len()
    );
    if update {
        schemas::write_lock(&dir, &current)?;
        println!(
            "recorded {} as released",
            dir.join(schemas::LOCK_FILE).display()
        );
    } else if released != current {
        println!("compatible changes not yet recorded: run `herald schema check --update` to release them");
    }
    Ok(())
}
