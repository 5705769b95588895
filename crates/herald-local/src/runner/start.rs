//! Starting a [`LocalPipeline`]: a pool per function, the event source mappings, the Firehose
//! delivery streams, Lambda's Invoke API, the Function URLs and the alarm monitor, each a task
//! that runs until the pipeline stops.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::{anyhow, bail, Result};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{serve_urls, Injected, LocalPipeline, RunnerOptions};
use crate::alarms::AlarmBoard;
use crate::endpoint::Endpoint;
use crate::esm::{self, Activity, Checkpoints, Context};
use crate::log_shipping::Shipper;
use crate::logs::Logs;
use crate::monitor;
use crate::runtime::FunctionPool;
use crate::stack::{MappingSpec, Stack};

type Pools = BTreeMap<String, Arc<FunctionPool>>;

impl LocalPipeline {
    pub(super) async fn start_with(
        stack: Stack,
        endpoint: &Endpoint,
        options: RunnerOptions,
        checkpoints: Arc<Checkpoints>,
        faults: Injected,
    ) -> Result<LocalPipeline> {
        // With faults, functions and pollers reach the emulator through the fault proxy; the
        // runner's own bookkeeping (`wait_idle`) goes straight to it.
        let proxied = faults
            .proxy
            .as_ref()
            .map(|proxy| endpoint.through(proxy.url()));
        let direct = endpoint;
        let endpoint = proxied.as_ref().unwrap_or(direct);
        let aws = endpoint.sdk_config().await;
        let stack = Arc::new(stack);
        let mut tasks = Vec::new();
        let (stop, stop_rx) = watch::channel(false);
        let logs = Arc::new(logs(&stack, &options, direct, &stop_rx, &mut tasks).await);
        let activity = Arc::new(Activity::default());
        let pools = pools(&stack, &options, endpoint, &logs, &activity, &faults)?;
        let ctx = Context {
            stack: stack.clone(),
            kinesis: aws_sdk_kinesis::Client::new(&aws),
            dynamodb_streams: aws_sdk_dynamodbstreams::Client::new(&aws),
            sqs: aws_sdk_sqs::Client::new(&aws),
            sns: aws_sdk_sns::Client::new(&aws),
            logs: logs.clone(),
            activity: activity.clone(),
            settings: options.poll.clone(),
            checkpoints: checkpoints.clone(),
        };
        let mut watched_queues = Vec::new();
        if options.mappings {
            watched_queues = mappings(&stack, &pools, &ctx, &options, &stop_rx, &mut tasks)?;
            deliveries(&stack, &ctx, &aws, &options, &stop_rx, &mut tasks);
        }
        let lambda_endpoint = match options.lambda_port {
            Some(port) => Some(lambda_api(port, &stack, &pools, &mut tasks).await?),
            None => None,
        };
        if let Some(port) = options.url_port {
            function_urls(port, &stack, &pools, &mut tasks).await?;
        }
        let board = Arc::new(alarm_board(&stack));
        if options.alarms.enabled && !stack.alarms.is_empty() {
            tasks.push(tokio::spawn(monitor::run(
                stack.alarms.clone(),
                options.alarms.clone(),
                monitor::Observed {
                    sqs: ctx.sqs.clone(),
                    pools: pools.clone(),
                    activity: activity.clone(),
                },
                board.clone(),
                stop_rx.clone(),
            )));
        }
        Ok(LocalPipeline {
            stack,
            pools,
            tasks,
            stop,
            activity,
            logs,
            sqs: aws_sdk_sqs::Client::new(&direct.sdk_config().await),
            watched_queues,
            checkpoints,
            endpoint: direct.shared(),
            log_dir: options.log_dir.clone(),
            options,
            alarms: board,
            aws,
            faults,
            lambda_endpoint,
        })
    }
}

/// Where the functions' output goes: the terminal and files as asked, and CloudWatch Logs
/// (straight to the emulator, not through a fault proxy) under each function's log group.
async fn logs(
    stack: &Stack,
    options: &RunnerOptions,
    direct: &Endpoint,
    stop_rx: &watch::Receiver<bool>,
    tasks: &mut Vec<JoinHandle<()>>,
) -> Logs {
    let logs = Logs::new(options.echo_logs, options.log_dir.clone());
    if !options.cloudwatch_logs {
        return logs;
    }
    let groups = stack
        .functions
        .iter()
        .map(|f| (f.label().to_string(), f.log_group.clone()))
        .collect();
    let shipper = Arc::new(Shipper::new(
        aws_sdk_cloudwatchlogs::Client::new(&direct.sdk_config().await),
        groups,
    ));
    tasks.push(tokio::spawn(shipper.clone().run(stop_rx.clone())));
    logs.shipping_to(shipper)
}

/// A pool of processes per function, each running its built binary.
fn pools(
    stack: &Stack,
    options: &RunnerOptions,
    endpoint: &Endpoint,
    logs: &Arc<Logs>,
    activity: &Activity,
    faults: &Injected,
) -> Result<Pools> {
    let mut pools = BTreeMap::new();
    for function in &stack.functions {
        let binary = options.bin_dir.join(&function.binary);
        if !binary.exists() {
            bail!(
                "{} is not built (expected {}); build with `cargo build --bins`",
                function.binary,
                binary.display()
            );
        }
        let pool = FunctionPool::new(
            function.clone(),
            binary,
            endpoint.child_env(),
            options.concurrency,
            logs.clone(),
            activity.in_flight.clone(),
        )
        .with_kills(faults.kills.clone());
        pools.insert(function.logical_id.clone(), Arc::new(pool));
    }
    Ok(pools)
}

/// A task per enabled event source mapping; the SQS queues they read (for `wait_idle`).
fn mappings(
    stack: &Stack,
    pools: &Pools,
    ctx: &Context,
    options: &RunnerOptions,
    stop_rx: &watch::Receiver<bool>,
    tasks: &mut Vec<JoinHandle<()>>,
) -> Result<Vec<String>> {
    let mut watched_queues = Vec::new();
    for mapping in stack.mappings.iter().cloned() {
        let pool = pools
            .get(mapping.function())
            .cloned()
            .ok_or_else(|| anyhow!("mapping to unknown function {}", mapping.function()))?;
        let ctx = ctx.clone();
        let stop_rx = stop_rx.clone();
        match mapping {
            MappingSpec::Stream(m) if m.enabled => {
                // Count the shards as behind before the task lists them, so `wait_idle` never
                // sees a pipeline that has not started reading as settled.
                ctx.activity.shards_behind.fetch_add(1, Ordering::SeqCst);
                let logs = ctx.logs.clone();
                tasks.push(tokio::spawn(async move {
                    let label = pool.spec().label().to_string();
                    if let Err(err) = esm::run_stream(m, pool, ctx, stop_rx).await {
                        logs.note(&label, &format!("stream mapping stopped: {err:#}"));
                    }
                }));
            }
            MappingSpec::Sqs(m) if m.enabled => {
                watched_queues.push(m.queue_url.clone());
                let concurrency = m
                    .max_concurrency
                    .unwrap_or(options.concurrency)
                    .min(options.concurrency.max(1));
                tasks.push(tokio::spawn(esm::run_sqs(
                    m,
                    pool,
                    ctx,
                    concurrency,
                    stop_rx,
                )));
            }
            _ => {}
        }
    }
    Ok(watched_queues)
}

/// Firehose's part: each delivery stream reads from where the runner starts (or its
/// checkpoints) into S3.
fn deliveries(
    stack: &Stack,
    ctx: &Context,
    aws: &aws_config::SdkConfig,
    options: &RunnerOptions,
    stop_rx: &watch::Receiver<bool>,
    tasks: &mut Vec<JoinHandle<()>>,
) {
    let started = chrono::Utc::now().timestamp_millis();
    let firehose = crate::firehose::Context {
        kinesis: ctx.kinesis.clone(),
        s3: crate::s3::client(aws),
        checkpoints: ctx.checkpoints.clone(),
        logs: ctx.logs.clone(),
        activity: ctx.activity.clone(),
        idle_poll: options.poll.idle_poll * 2,
    };
    for mut delivery in stack.deliveries.iter().cloned() {
        if let Some(interval) = options.archive_buffer {
            delivery.buffer_interval = interval;
        }
        let firehose = firehose.clone();
        let stop_rx = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            let label = format!("firehose:{}", delivery.logical_id);
            let logs = firehose.logs.clone();
            if let Err(err) =
                crate::firehose::run_delivery(delivery, firehose, started, stop_rx).await
            {
                logs.note(&label, &format!("delivery stream stopped: {err:#}"));
            }
        }));
    }
}

/// Lambda's Invoke API on `port`, each function under every name Invoke takes (physical name,
/// ARN, logical id); its URL.
async fn lambda_api(
    port: u16,
    stack: &Stack,
    pools: &Pools,
    tasks: &mut Vec<JoinHandle<()>>,
) -> Result<String> {
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| anyhow!("Lambda API port {port}: {e}"))?;
    let url = format!("http://{}", listener.local_addr()?);
    let mut by_name = BTreeMap::new();
    for function in &stack.functions {
        if let Some(pool) = pools.get(&function.logical_id) {
            for name in [&function.name, &function.arn, &function.logical_id] {
                by_name.insert(name.clone(), pool.clone());
            }
        }
    }
    tasks.push(tokio::spawn(crate::lambda_api::serve(
        listener,
        Arc::new(by_name),
    )));
    Ok(url)
}

/// The functions' URLs, served on `port`.
async fn function_urls(
    port: u16,
    stack: &Arc<Stack>,
    pools: &Pools,
    tasks: &mut Vec<JoinHandle<()>>,
) -> Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| anyhow!("Function URL port {port}: {e}"))?;
    let urls: Pools = stack
        .functions
        .iter()
        .filter(|f| f.url.is_some())
        .filter_map(|f| {
            pools
                .get(&f.logical_id)
                .map(|p| (f.logical_id.clone(), p.clone()))
        })
        .collect();
    tasks.push(tokio::spawn(serve_urls(
        listener,
        Arc::new(urls),
        stack.clone(),
    )));
    Ok(())
}

/// The board of the stack's alarms, with the ones the runner cannot evaluate and why.
fn alarm_board(stack: &Stack) -> AlarmBoard {
    let not_evaluated: Vec<(String, String)> = stack
        .skipped
        .iter()
        .filter(|(id, _)| {
            stack.resources.get(id.as_str()).map(|p| p.kind.as_str())
                == Some("AWS::CloudWatch::Alarm")
        })
        .map(|(id, why)| (id.clone(), why.clone()))
        .collect();
    AlarmBoard::new(&stack.alarms, not_evaluated)
}
