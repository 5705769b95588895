//! The local pipeline: every function of a provisioned [`Stack`] as real processes behind the
//! Runtime API, every event source mapping played, and Function URLs served over HTTP.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use base64::Engine;
use bytes::Bytes;
use chrono::Utc;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::alarms::AlarmBoard;
use crate::endpoint::Endpoint;
use crate::esm::{Activity, Checkpoints, PollSettings};
use crate::faults::{FaultPlan, FaultProxy, FaultReport, Kills};
use crate::logs::Logs;
use crate::monitor::AlarmSettings;
use crate::runtime::{FunctionError, FunctionPool};
use crate::stack::Stack;

mod start;

/// How to run.
#[derive(Clone, Debug)]
pub struct RunnerOptions {
    /// Directory holding the function binaries.
    pub bin_dir: PathBuf,
    /// Most concurrent instances of one function. Default 2.
    pub concurrency: usize,
    /// Print function output. Default false.
    pub echo_logs: bool,
    /// Keep raw function output here (one file per function).
    pub log_dir: Option<PathBuf>,
    /// Send function output to the emulator's CloudWatch Logs too, under each function's log
    /// group, as Lambda does (see [`crate::log_shipping`]): `herald trace` reads it there.
    /// Default true.
    pub cloudwatch_logs: bool,
    /// Port of the Function URL server (must match the stack's `function_url_base`); none = no server.
    pub url_port: Option<u16>,
    /// Port of Lambda's `Invoke` API for the functions the runner plays (0: any free port; see
    /// [`crate::lambda_api`] and [`LocalPipeline::lambda_endpoint`]); none = not served.
    pub lambda_port: Option<u16>,
    /// Play the event source mappings. Default true; false runs functions for direct invokes only.
    pub mappings: bool,
    /// Poll settings.
    pub poll: PollSettings,
    /// Where stream checkpoints are saved: `<state_dir>/<stack>/checkpoints.json`, so a runner
    /// started again resumes every stream mapping where it left off. Default none: kept in
    /// memory only (still across [`LocalPipeline::restart`]); `herald local up` uses
    /// `<project>/.herald/state`.
    pub state_dir: Option<PathBuf>,
    /// Ignore the saved checkpoints: every stream mapping starts at its `StartingPosition` (and
    /// the file is overwritten). Default false.
    pub fresh: bool,
    /// Evaluating the template's alarms.
    pub alarms: AlarmSettings,
    /// Faults to inject between every function and poller and the emulator (see
    /// [`crate::faults`]). Default none: requests go straight to the emulator.
    pub faults: Option<FaultPlan>,
    /// The local Firehose's buffer interval, in place of the template's `IntervalInSeconds`
    /// (which Firehose keeps at 60 s or more with dynamic partitioning: long for a test).
    /// Default none: the template's.
    pub archive_buffer: Option<Duration>,
}

impl RunnerOptions {
    /// Defaults for binaries in `bin_dir`.
    pub fn new(bin_dir: PathBuf) -> Self {
        RunnerOptions {
            bin_dir,
            concurrency: 2,
            echo_logs: false,
            log_dir: None,
            cloudwatch_logs: true,
            url_port: None,
            lambda_port: None,
            mappings: true,
            poll: PollSettings::default(),
            state_dir: None,
            fresh: false,
            alarms: AlarmSettings::default(),
            faults: None,
            archive_buffer: None,
        }
    }
}

/// The running pipeline's parts a view reads (see [`LocalPipeline::watch`]).
#[derive(Clone)]
pub struct Watch {
    /// The stack.
    pub stack: Arc<Stack>,
    /// The functions, by logical id.
    pub pools: BTreeMap<String, Arc<FunctionPool>>,
    /// The functions' output (metrics, tallies).
    pub logs: Arc<Logs>,
    /// The template's alarms as the runner evaluates them.
    pub alarms: Arc<AlarmBoard>,
    /// The functions' raw logs, when kept in files.
    pub log_dir: Option<PathBuf>,
}

/// A running local pipeline. Call [`LocalPipeline::stop`] to end it.
pub struct LocalPipeline {
    stack: Arc<Stack>,
    pools: BTreeMap<String, Arc<FunctionPool>>,
    tasks: Vec<JoinHandle<()>>,
    stop: watch::Sender<bool>,
    activity: Arc<Activity>,
    logs: Arc<Logs>,
    sqs: aws_sdk_sqs::Client,
    watched_queues: Vec<String>,
    checkpoints: Arc<Checkpoints>,
    /// What [`LocalPipeline::restart`] starts again with.
    endpoint: Endpoint,
    options: RunnerOptions,
    alarms: Arc<AlarmBoard>,
    aws: aws_config::SdkConfig,
    log_dir: Option<PathBuf>,
    faults: Injected,
    lambda_endpoint: Option<String>,
}

/// The faults injected into a run; they outlive a [`LocalPipeline::restart`] (they are AWS's
/// and the hosts', not the runner's): an outage keeps its window, the counts go on.
#[derive(Clone, Default)]
struct Injected {
    proxy: Option<Arc<FaultProxy>>,
    kills: Option<Arc<Kills>>,
    /// Whether a plan was given at all.
    planned: bool,
}

impl Injected {
    async fn start(plan: Option<&FaultPlan>, upstream: &Endpoint) -> Result<Injected> {
        let Some(plan) = plan.filter(|p| !p.is_empty()) else {
            return Ok(Injected::default());
        };
        let proxy = if plan.needs_proxy() {
            Some(Arc::new(FaultProxy::start(plan.clone(), upstream).await?))
        } else {
            None
        };
        Ok(Injected {
            proxy,
            kills: Kills::new(plan).map(Arc::new),
            planned: true,
        })
    }
}

impl LocalPipeline {
    /// Start every function and mapping of `stack` against `endpoint`.
    pub async fn start(
        stack: Stack,
        endpoint: &Endpoint,
        options: RunnerOptions,
    ) -> Result<LocalPipeline> {
        let checkpoints = match &options.state_dir {
            Some(dir) => Checkpoints::open(Checkpoints::path(dir, &stack.name), options.fresh)?,
            None => Checkpoints::in_memory(),
        };
        let faults = Injected::start(options.faults.as_ref(), endpoint).await?;
        Self::start_with(stack, endpoint, options, Arc::new(checkpoints), faults).await
    }

    /// Where Lambda's `Invoke` API answers for the functions this runner plays
    /// (`RunnerOptions::lambda_port`), for `AWS_ENDPOINT_URL_LAMBDA`.
    pub fn lambda_endpoint(&self) -> Option<&str> {
        self.lambda_endpoint.as_deref()
    }

    /// Stop the runner and start it again on the same stack (no provisioning, no seeding), as a
    /// restarted `herald local up` would: every stream mapping resumes after its checkpoints,
    /// the batches in flight are read again (at-least-once), function processes start cold.
    pub async fn restart(self) -> Result<LocalPipeline> {
        let stack = (*self.stack).clone();
        let endpoint = self.endpoint.shared();
        let options = self.options.clone();
        let checkpoints = self.checkpoints.clone();
        let faults = self.faults.clone();
        self.stop().await;
        Self::start_with(stack, &endpoint, options, checkpoints, faults).await
    }

    /// The stream mappings' checkpoints.
    pub fn checkpoints(&self) -> &Checkpoints {
        &self.checkpoints
    }

    /// The stack this pipeline runs.
    pub fn stack(&self) -> &Stack {
        &self.stack
    }

    /// Start one instance of every function now (cold starts happen up front, as with
    /// provisioned concurrency).
    pub async fn warm(&self) -> Result<()> {
        for pool in self.pools.values() {
            pool.warm().await?;
        }
        Ok(())
    }

    /// Invoke a function (logical id, physical name or binary name) with a payload.
    pub async fn invoke(&self, function: &str, payload: &Value) -> Result<Value> {
        let spec = self.stack.function(function)?;
        let pool = &self.pools[&spec.logical_id];
        pool.invoke(payload)
            .await
            .map_err(|e| anyhow!("{} failed: {e}", spec.label()))
    }

    /// Invoke and keep the function error as a value.
    pub async fn try_invoke(
        &self,
        function: &str,
        payload: &Value,
    ) -> Result<Result<Value, FunctionError>> {
        let spec = self.stack.function(function)?;
        Ok(self.pools[&spec.logical_id].invoke(payload).await)
    }

    /// Wait until nothing is in flight, every shard is read to its tip, and every mapped queue is
    /// empty (visible and in flight), continuously for `quiet`. Errors after `limit`.
    /// What waits for time rather than work does not count: a tumbling window still open, an
    /// archive buffer not yet due (see [`LocalPipeline::wait_settled`]).
    pub async fn wait_idle(&self, quiet: Duration, limit: Duration) -> Result<()> {
        self.wait_until_idle(quiet, limit, false, false).await
    }

    /// [`LocalPipeline::wait_idle`], and every tumbling window that had records has had its final
    /// invocation (and what that set off has settled).
    pub async fn wait_windows_closed(&self, quiet: Duration, limit: Duration) -> Result<()> {
        self.wait_until_idle(quiet, limit, true, false).await
    }

    /// [`LocalPipeline::wait_idle`], and every record the archive's delivery streams have read is
    /// delivered to S3 (after their buffering interval).
    pub async fn wait_archived(&self, quiet: Duration, limit: Duration) -> Result<()> {
        self.wait_until_idle(quiet, limit, false, true).await
    }

    /// Both: windows closed and archive delivered.
    pub async fn wait_settled(&self, quiet: Duration, limit: Duration) -> Result<()> {
        self.wait_until_idle(quiet, limit, true, true).await
    }

    async fn wait_until_idle(
        &self,
        quiet: Duration,
        limit: Duration,
        windows: bool,
        archive: bool,
    ) -> Result<()> {
        let started = Instant::now();
        let mut idle_since: Option<Instant> = None;
        while started.elapsed() < limit {
            let idle = self.activity.in_flight.load(Ordering::SeqCst) == 0
                && self.activity.shards_behind.load(Ordering::SeqCst) == 0
                && (!windows || self.activity.open_windows.load(Ordering::SeqCst) == 0)
                && (!archive || self.activity.archive_buffered.load(Ordering::SeqCst) == 0)
                && self.queues_empty().await?;
            match (idle, idle_since) {
                (true, Some(since)) if since.elapsed() >= quiet => return Ok(()),
                (true, None) => idle_since = Some(Instant::now()),
                (false, _) => idle_since = None,
                _ => {}
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("the pipeline did not settle within {limit:?}")
    }

    async fn queues_empty(&self) -> Result<bool> {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        for url in &self.watched_queues {
            let out = self
                .sqs
                .get_queue_attributes()
                .queue_url(url)
                .attribute_names(A::ApproximateNumberOfMessages)
                .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
                .attribute_names(A::ApproximateNumberOfMessagesDelayed)
                .send()
                .await?;
            let total: u64 = out
                .attributes
                .unwrap_or_default()
                .values()
                .filter_map(|v| v.parse::<u64>().ok())
                .sum();
            if total > 0 {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Counts the functions reported in their logs (`batch done` / `batch routed` lines).
    pub fn tallies(&self) -> BTreeMap<String, BTreeMap<String, i64>> {
        self.logs.tallies()
    }

    /// SQS requests the event source mappings made: (receives that returned messages,
    /// `DeleteMessageBatch` calls).
    pub fn poller_requests(&self) -> (usize, usize) {
        (
            self.activity
                .sqs_receives
                .load(std::sync::atomic::Ordering::Relaxed),
            self.activity
                .sqs_deletes
                .load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    /// Summed EMF metrics per function (see [`crate::logs::Logs::metrics`]).
    pub fn metrics(&self) -> BTreeMap<String, BTreeMap<String, f64>> {
        self.logs.metrics()
    }

    /// Per function: (invocations, failed invocations, cold starts).
    pub fn stats(&self) -> BTreeMap<String, (usize, usize, Vec<Duration>)> {
        self.pools
            .values()
            .map(|p| {
                let (invocations, errors) = p.stats();
                (
                    p.spec().label().to_string(),
                    (invocations, errors, p.cold_starts()),
                )
            })
            .collect()
    }

    /// The template's alarms as the runner evaluates them (see [`crate::alarms`]).
    pub fn alarms(&self) -> &Arc<AlarmBoard> {
        &self.alarms
    }

    /// What a view of the running pipeline reads (herald-ops' console): its parts, shared.
    pub fn watch(&self) -> Watch {
        Watch {
            stack: self.stack.clone(),
            pools: self.pools.clone(),
            logs: self.logs.clone(),
            alarms: self.alarms.clone(),
            log_dir: self.log_dir.clone(),
        }
    }

    /// The SDK configuration the pipeline's functions and mappings use.
    pub fn aws(&self) -> &aws_config::SdkConfig {
        &self.aws
    }

    /// Keep `task` (a view serving the pipeline) running until the pipeline stops.
    pub fn keep(&mut self, task: JoinHandle<()>) {
        self.tasks.push(task);
    }

    /// What was injected so far, across restarts: the proxy's faults and the processes killed
    /// (`None` when the pipeline runs without faults).
    pub fn fault_report(&self) -> Option<FaultReport> {
        if !self.faults.planned {
            return None;
        }
        let mut report = self
            .faults
            .proxy
            .as_ref()
            .map(|proxy| proxy.report())
            .unwrap_or_default();
        if let Some(kills) = &self.faults.kills {
            report.killed = kills.killed();
            report.invocations = kills.invocations();
        }
        Some(report)
    }

    /// The fault proxy in front of the emulator (`None` when the plan answers no request). Its
    /// [`FaultProxy::begin_outage`] takes an operation down until the caller ends it; like every
    /// injected fault, it outlives a [`LocalPipeline::restart`].
    pub fn fault_proxy(&self) -> Option<&FaultProxy> {
        self.faults.proxy.as_deref()
    }

    /// Batches sent to on-failure destinations so far.
    pub fn on_failure_batches(&self) -> usize {
        self.activity.on_failure_batches.load(Ordering::SeqCst)
    }

    /// Stop polling, stop every process.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        for task in &self.tasks {
            task.abort();
        }
        // Wait for the tasks to end: nothing of this run saves a checkpoint or holds the
        // Function URL port once this returns.
        for task in std::mem::take(&mut self.tasks) {
            let _ = task.await;
        }
        for pool in self.pools.values() {
            pool.stop().await;
        }
        self.flush_logs().await;
    }

    /// Send the functions' output so far to CloudWatch Logs now (it goes about once a second),
    /// so that what reads it there (`herald trace`) sees every line logged before this call.
    pub async fn flush_logs(&self) {
        if let Some(shipper) = self.logs.shipper() {
            shipper.flush().await;
        }
    }
}

async fn serve_urls(
    listener: TcpListener,
    urls: Arc<BTreeMap<String, Arc<FunctionPool>>>,
    stack: Arc<Stack>,
) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        let urls = urls.clone();
        let stack = stack.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let urls = urls.clone();
                let stack = stack.clone();
                async move {
                    Ok::<_, Infallible>(
                        function_url(request, &urls, &stack, peer.ip().to_string()).await,
                    )
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// One Function URL request: the HTTP request as a payload-2.0 event, the function's answer as
/// the HTTP response (Function URL semantics: a result without `statusCode` is a 200 JSON body).
async fn function_url(
    request: Request<Incoming>,
    urls: &BTreeMap<String, Arc<FunctionPool>>,
    stack: &Stack,
    source_ip: String,
) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_string();
    let mut segments = path.trim_start_matches('/').splitn(2, '/');
    let id = segments.next().unwrap_or_default().to_string();
    let rest = format!("/{}", segments.next().unwrap_or_default());
    let Some(pool) = urls.get(&id) else {
        let known: Vec<String> = urls.keys().map(|k| format!("/{k}/")).collect();
        return text(
            StatusCode::NOT_FOUND,
            &json!({"message": format!("no function URL at {path}; try {}", known.join(", "))})
                .to_string(),
        );
    };
    let method = request.method().to_string();
    let query = request.uri().query().unwrap_or_default().to_string();
    let headers: serde_json::Map<String, Value> = request
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                Value::String(v.to_str().unwrap_or_default().to_string()),
            )
        })
        .collect();
    let user_agent = headers.get("user-agent").cloned().unwrap_or(Value::Null);
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let (body, is_base64) = match std::str::from_utf8(&body) {
        Ok(text) => (text.to_string(), false),
        Err(_) => (
            base64::engine::general_purpose::STANDARD.encode(&body),
            true,
        ),
    };
    let now = Utc::now();
    let event = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": rest,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": format!("{}-local", stack.name),
            "domainName": "127.0.0.1",
            "domainPrefix": "local",
            "http": {"method": method, "path": rest, "protocol": "HTTP/1.1", "sourceIp": source_ip, "userAgent": user_agent},
            "requestId": uuid::Uuid::new_v4().to_string(),
            "routeKey": "$default",
            "stage": "$default",
            "time": now.format("%d/%b/%Y:%H:%M:%S %z").to_string(),
            "timeEpoch": now.timestamp_millis(),
        },
        "body": body,
        "isBase64Encoded": is_base64,
    });
    match pool.invoke(&event).await {
        Ok(result) if result.get("statusCode").is_some() => {
            let status = result["statusCode"]
                .as_u64()
                .and_then(|s| StatusCode::from_u16(s as u16).ok())
                .unwrap_or(StatusCode::OK);
            let mut builder = Response::builder().status(status);
            if let Some(Value::Object(headers)) = result.get("headers") {
                for (k, v) in headers {
                    builder = builder.header(k, v.as_str().unwrap_or_default());
                }
            }
            let body = result
                .get("body")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let body = if result.get("isBase64Encoded").and_then(Value::as_bool) == Some(true) {
                base64::engine::general_purpose::STANDARD
                    .decode(body)
                    .unwrap_or_default()
            } else {
                body.as_bytes().to_vec()
            };
            builder
                .body(Full::new(Bytes::from(body)))
                .unwrap_or_else(|_| text(StatusCode::BAD_GATEWAY, "bad response"))
        }
        Ok(result) => text(StatusCode::OK, &result.to_string()),
        Err(err) => text(
            StatusCode::BAD_GATEWAY,
            &json!({"message": "Internal Server Error", "error": err.to_string()}).to_string(),
        ),
    }
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    crate::runtime::reply(status, body.to_string())
}
