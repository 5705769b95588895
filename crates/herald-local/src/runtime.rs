//! Lambda's part, played locally: each function binary runs as a real process that talks to a
//! [Lambda Runtime API](https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html) server
//! here, exactly as it would on AWS.
//!
//! An [`Instance`] is one execution environment (one process, one invocation at a time); a
//! [`FunctionPool`] grows instances on demand up to a concurrency limit. An invocation that
//! outlives the function's `Timeout` gets its process killed and fails with
//! [`FunctionError::Timeout`]; a process that dies mid-invocation fails it with
//! [`FunctionError::Crashed`]. Either way the next invocation gets a fresh process (a cold start).

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::process::Child;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, Mutex, Semaphore};

use crate::faults::Kills;
use crate::logs::Logs;
use crate::moto::{spawn_tied, Spawn};
use crate::stack::FunctionSpec;

/// Why an invocation failed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum FunctionError {
    /// The handler returned an error (`/invocation/{id}/error`).
    #[error("{error_type}: {message}")]
    Handled { error_type: String, message: String },
    /// The invocation ran past the function's timeout; the process was killed.
    #[error("Task timed out after {0:?}")]
    Timeout(Duration),
    /// The process died during the invocation (or during init).
    #[error("Runtime exited: {0}")]
    Crashed(String),
    /// The runner killed the process at this moment of the invocation (fault injection, see
    /// [`Kills`]); to the caller it is a crash like any other.
    #[error("Runtime exited: signal: 9 (SIGKILL) after {0:?}, by fault injection")]
    Killed(Duration),
    /// The response was not JSON.
    #[error("invalid response: {0}")]
    BadResponse(String),
}

struct Invocation {
    request_id: String,
    payload: Bytes,
    deadline_ms: u128,
    reply: oneshot::Sender<Reply>,
}

enum Reply {
    Response(Bytes),
    Error(Bytes),
}

struct ApiState {
    function_arn: String,
    next: Mutex<mpsc::Receiver<Invocation>>,
    in_flight: std::sync::Mutex<HashMap<String, oneshot::Sender<Reply>>>,
    init_error: std::sync::Mutex<Option<String>>,
    first_next: std::sync::Mutex<Option<Instant>>,
}

/// One execution environment: a Runtime API server and the function process polling it.
pub struct Instance {
    spec: Arc<FunctionSpec>,
    binary: PathBuf,
    env: Vec<(String, String)>,
    port: u16,
    tx: mpsc::Sender<Invocation>,
    state: Arc<ApiState>,
    child: Mutex<Option<Child>>,
    logs: Arc<Logs>,
    serial: usize,
    /// Set by [`Instance::stop`]: no new process is started after it.
    stopped: std::sync::atomic::AtomicBool,
    /// Time from process start to its first `/next` request, per start.
    pub cold_starts: std::sync::Mutex<Vec<Duration>>,
    /// The tasks reading the process's output.
    pipes: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Instance {
    /// Start a Runtime API server and the function process.
    pub async fn start(
        spec: Arc<FunctionSpec>,
        binary: PathBuf,
        env: Vec<(String, String)>,
        logs: Arc<Logs>,
        serial: usize,
    ) -> Result<Arc<Instance>> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let (tx, rx) = mpsc::channel(1);
        let state = Arc::new(ApiState {
            function_arn: spec.arn.clone(),
            next: Mutex::new(rx),
            in_flight: std::sync::Mutex::new(HashMap::new()),
            init_error: std::sync::Mutex::new(None),
            first_next: std::sync::Mutex::new(None),
        });
        tokio::spawn(serve(listener, state.clone()));
        let instance = Arc::new(Instance {
            spec,
            binary,
            env,
            port,
            tx,
            state,
            child: Mutex::new(None),
            logs,
            serial,
            stopped: std::sync::atomic::AtomicBool::new(false),
            cold_starts: std::sync::Mutex::new(Vec::new()),
            pipes: std::sync::Mutex::new(Vec::new()),
        });
        instance.spawn_process().await?;
        Ok(instance)
    }

    async fn spawn_process(&self) -> Result<()> {
        let mut env = self.env.clone();
        let spec = &self.spec;
        let stream_id = uuid::Uuid::new_v4().simple().to_string();
        env.extend([
            (
                "AWS_LAMBDA_RUNTIME_API".into(),
                format!("127.0.0.1:{}", self.port),
            ),
            ("AWS_LAMBDA_FUNCTION_NAME".into(), spec.name.clone()),
            (
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE".into(),
                spec.memory_mb.to_string(),
            ),
            ("AWS_LAMBDA_FUNCTION_VERSION".into(), "$LATEST".into()),
            (
                "AWS_LAMBDA_LOG_GROUP_NAME".into(),
                format!("/aws/lambda/{}", spec.name),
            ),
            (
                "AWS_LAMBDA_LOG_STREAM_NAME".into(),
                format!("local/[$LATEST]{stream_id}"),
            ),
            (
                "AWS_EXECUTION_ENV".into(),
                "AWS_Lambda_provided.al2023".into(),
            ),
            ("_HANDLER".into(), "bootstrap".into()),
            ("TZ".into(), ":UTC".into()),
        ]);
        if spec.log_format.eq_ignore_ascii_case("json") {
            env.push(("AWS_LAMBDA_LOG_FORMAT".into(), "JSON".into()));
        }
        if let Some(level) = &spec.log_level {
            env.push(("AWS_LAMBDA_LOG_LEVEL".into(), level.clone()));
        }
        if let Some(dir) = self.binary.parent() {
            env.push(("LAMBDA_TASK_ROOT".into(), dir.display().to_string()));
        }
        if let Ok(path) = std::env::var("PATH") {
            env.push(("PATH".into(), path));
        }
        let mut child = spawn_tied(Spawn {
            program: self.binary.clone(),
            args: Vec::new(),
            clear_env: true,
            env,
            piped: true,
        })
        .with_context(|| format!("starting {}", self.binary.display()))?;
        let started = Instant::now();
        *self.state.first_next.lock().expect("lock") = None;
        let label = if self.serial == 0 {
            self.spec.label().to_string()
        } else {
            format!("{}#{}", self.spec.label(), self.serial)
        };
        let mut pipes = Vec::new();
        if let Some(stdout) = child.stdout.take() {
            pipes.push(pipe_lines(
                tokio::process::ChildStdout::from_std(stdout)?,
                self.logs.clone(),
                label.clone(),
            ));
        }
        if let Some(stderr) = child.stderr.take() {
            pipes.push(pipe_lines(
                tokio::process::ChildStderr::from_std(stderr)?,
                self.logs.clone(),
                label,
            ));
        }
        self.pipes.lock().expect("lock").extend(pipes);
        *self.child.lock().await = Some(child);
        // Record the cold start once the process asks for its first invocation.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(at) = *self.state.first_next.lock().expect("lock") {
                self.cold_starts.lock().expect("lock").push(at - started);
                break;
            }
            if let Some(child) = self.child.lock().await.as_mut() {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // init failed; the invocation reports it
                }
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(())
    }

    /// The process's peak resident set (`VmHWM`) so far, in KiB (Linux).
    pub async fn peak_rss_kib(&self) -> Option<u64> {
        let pid = self.child.lock().await.as_ref()?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    async fn kill(&self) {
        if let Some(mut child) = self.child.lock().await.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the process is still alive.
    async fn exited(&self) -> Option<String> {
        let mut guard = self.child.lock().await;
        match guard.as_mut() {
            None => Some("no process".into()),
            Some(child) => match child.try_wait() {
                Ok(Some(status)) => Some(status.to_string()),
                Ok(None) => None,
                Err(err) => Some(err.to_string()),
            },
        }
    }

    /// Invoke once and wait for the result (at most the function's timeout). With `kill`, the
    /// process is killed at that moment of the invocation if it has not answered by then (fault
    /// injection, counted in the [`Kills`]).
    pub async fn invoke(
        &self,
        payload: Bytes,
        kill: Option<(Duration, &Kills)>,
    ) -> Result<Value, FunctionError> {
        if self.exited().await.is_some() {
            if self.stopped.load(Ordering::SeqCst) {
                return Err(FunctionError::Crashed("the function was stopped".into()));
            }
            self.kill().await;
            self.spawn_process()
                .await
                .map_err(|e| FunctionError::Crashed(format!("could not restart: {e}")))?;
        }
        let timeout = self.spec.timeout;
        let request_id = uuid::Uuid::new_v4().to_string();
        let deadline_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| (d + timeout).as_millis())
            .unwrap_or(0);
        let (reply_tx, mut reply_rx) = oneshot::channel();
        let invocation = Invocation {
            request_id: request_id.clone(),
            payload,
            deadline_ms,
            reply: reply_tx,
        };
        if self.tx.send(invocation).await.is_err() {
            return Err(FunctionError::Crashed("runtime API is gone".into()));
        }
        let started = Instant::now();
        // The kill comes at its moment exactly, however short the invocation.
        let kill_at = tokio::time::sleep(kill.map(|(at, _)| at).unwrap_or(timeout * 2));
        tokio::pin!(kill_at);
        let outcome = loop {
            tokio::select! {
                biased;
                reply = &mut reply_rx => {
                    // A kill decided for this invocation happens even when the function answers
                    // before its moment: the process dies with its work done and its answer lost.
                    if let Some((_, kills)) = kill {
                        let at = started.elapsed();
                        self.logs.note(self.spec.label(), &format!("{request_id} killed as it answered, after {at:?} (fault injection)"));
                        self.abandon(&request_id).await;
                        kills.note(self.spec.label());
                        return Err(FunctionError::Killed(at));
                    }
                    break reply.ok();
                }
                _ = &mut kill_at, if kill.is_some() => {
                    if let Some((at, kills)) = kill {
                        self.logs.note(self.spec.label(), &format!("{request_id} killed after {at:?} (fault injection)"));
                        self.abandon(&request_id).await;
                        kills.note(self.spec.label());
                        return Err(FunctionError::Killed(at));
                    }
                }
                _ = tokio::time::sleep(Duration::from_millis(20)) => {
                    if started.elapsed() >= timeout {
                        self.logs.note(self.spec.label(), &format!("{request_id} timed out after {timeout:?}; killing the process"));
                        self.abandon(&request_id).await;
                        return Err(FunctionError::Timeout(timeout));
                    }
                    if let Some(status) = self.exited().await {
                        let init = self.state.init_error.lock().expect("lock").take();
                        self.abandon(&request_id).await;
                        return Err(FunctionError::Crashed(match init {
                            Some(init) => format!("init failed ({status}): {init}"),
                            None => status,
                        }));
                    }
                }
            }
        };
        match outcome {
            Some(Reply::Response(body)) => {
                serde_json::from_slice(&body).map_err(|e| FunctionError::BadResponse(e.to_string()))
            }
            Some(Reply::Error(body)) => {
                let error: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                Err(FunctionError::Handled {
                    error_type: error["errorType"]
                        .as_str()
                        .unwrap_or("Unhandled")
                        .to_string(),
                    message: error["errorMessage"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                })
            }
            None => Err(FunctionError::Crashed(
                "the runtime API dropped the invocation".into(),
            )),
        }
    }

    /// Kill the process and forget the invocation; the next invoke starts a new process.
    async fn abandon(&self, request_id: &str) {
        self.kill().await;
        // An invocation still queued is skipped by `/next` once its caller is gone.
        self.state
            .in_flight
            .lock()
            .expect("lock")
            .remove(request_id);
    }

    /// Stop the process.
    pub async fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.kill().await;
        // The process is gone; what it wrote before is still in the pipes: read it all.
        let pipes: Vec<_> = self.pipes.lock().expect("lock").drain(..).collect();
        for pipe in pipes {
            let _ = tokio::time::timeout(Duration::from_secs(2), pipe).await;
        }
    }
}

fn pipe_lines<R: tokio::io::AsyncRead + Unpin + Send + 'static>(
    reader: R,
    logs: Arc<Logs>,
    label: String,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut lines = BufReader::new(reader).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            logs.line(&label, &line);
        }
    })
}

async fn serve(listener: TcpListener, state: Arc<ApiState>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| handle(request, state.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

const PREFIX: &str = "/2018-06-01/runtime";

async fn handle(
    request: Request<Incoming>,
    state: Arc<ApiState>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let Some(route) = path.strip_prefix(PREFIX) else {
        return Ok(reply(
            StatusCode::NOT_FOUND,
            Bytes::from_static(b"{\"errorMessage\":\"not found\"}"),
        ));
    };
    match (method, route) {
        (Method::GET, "/invocation/next") => {
            {
                let mut first = state.first_next.lock().expect("lock");
                first.get_or_insert_with(Instant::now);
            }
            let invocation = {
                let mut next = state.next.lock().await;
                loop {
                    match next.recv().await {
                        // Abandoned (timed out or crashed before pick-up): never run it late.
                        Some(invocation) if invocation.reply.is_closed() => continue,
                        other => break other,
                    }
                }
            };
            let Some(invocation) = invocation else {
                return Ok(reply(StatusCode::GONE, Bytes::new()));
            };
            state
                .in_flight
                .lock()
                .expect("lock")
                .insert(invocation.request_id.clone(), invocation.reply);
            let trace = format!(
                "Root=1-{:08x}-{};Parent={};Sampled=0",
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0),
                &uuid::Uuid::new_v4().simple().to_string()[..24],
                &uuid::Uuid::new_v4().simple().to_string()[..16]
            );
            let response = Response::builder()
                .status(StatusCode::OK)
                .header("content-type", "application/json")
                .header("Lambda-Runtime-Aws-Request-Id", &invocation.request_id)
                .header(
                    "Lambda-Runtime-Deadline-Ms",
                    invocation.deadline_ms.to_string(),
                )
                .header("Lambda-Runtime-Invoked-Function-Arn", &state.function_arn)
                .header("Lambda-Runtime-Trace-Id", trace)
                .body(Full::new(invocation.payload))
                .expect("valid response");
            Ok(response)
        }
        (Method::POST, "/init/error") => {
            *state.init_error.lock().expect("lock") =
                Some(String::from_utf8_lossy(&body).into_owned());
            Ok(reply(
                StatusCode::ACCEPTED,
                Bytes::from_static(b"{\"status\":\"OK\"}"),
            ))
        }
        (Method::POST, route) => {
            let Some(rest) = route.strip_prefix("/invocation/") else {
                return Ok(reply(StatusCode::NOT_FOUND, Bytes::new()));
            };
            let (id, kind) = rest.split_once('/').unwrap_or((rest, ""));
            let Some(sender) = state.in_flight.lock().expect("lock").remove(id) else {
                return Ok(reply(
                    StatusCode::BAD_REQUEST,
                    Bytes::from_static(b"{\"errorMessage\":\"unknown request id\",\"errorType\":\"InvalidRequestID\"}"),
                ));
            };
            let _ = sender.send(if kind == "error" {
                Reply::Error(body)
            } else {
                Reply::Response(body)
            });
            Ok(reply(
                StatusCode::ACCEPTED,
                Bytes::from_static(b"{\"status\":\"OK\"}"),
            ))
        }
        _ => Ok(reply(StatusCode::NOT_FOUND, Bytes::new())),
    }
}

/// A JSON HTTP response.
pub(crate) fn reply(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(body.into()))
        .expect("valid response")
}

/// Instances of one function, grown on demand up to `max` (the function's local concurrency).
pub struct FunctionPool {
    spec: Arc<FunctionSpec>,
    binary: PathBuf,
    env: Vec<(String, String)>,
    logs: Arc<Logs>,
    permits: Semaphore,
    idle: Mutex<Vec<Arc<Instance>>>,
    all: std::sync::Mutex<Vec<Arc<Instance>>>,
    in_flight: Arc<AtomicUsize>,
    invocations: AtomicUsize,
    errors: AtomicUsize,
    /// Durations of the latest invocations (at most [`LATENCY_WINDOW`]), for percentiles.
    latencies: std::sync::Mutex<std::collections::VecDeque<Duration>>,
    /// Processes to kill mid-invocation (fault injection).
    kills: Option<Arc<Kills>>,
}

/// How many of the latest invocation durations a pool keeps for its percentiles.
pub const LATENCY_WINDOW: usize = 1000;

impl FunctionPool {
    /// A pool for `spec` running `binary` with `env` (the endpoint's variables).
    pub fn new(
        spec: FunctionSpec,
        binary: PathBuf,
        env: Vec<(String, String)>,
        max: usize,
        logs: Arc<Logs>,
        in_flight: Arc<AtomicUsize>,
    ) -> Self {
        let mut full_env: Vec<(String, String)> = spec
            .environment
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        full_env.extend(env);
        FunctionPool {
            spec: Arc::new(spec),
            binary,
            env: full_env,
            logs,
            permits: Semaphore::new(max.max(1)),
            idle: Mutex::new(Vec::new()),
            all: std::sync::Mutex::new(Vec::new()),
            in_flight,
            invocations: AtomicUsize::new(0),
            errors: AtomicUsize::new(0),
            latencies: std::sync::Mutex::new(std::collections::VecDeque::new()),
            kills: None,
        }
    }

    /// Kill processes of this function mid-invocation as `kills` decides (fault injection).
    pub fn with_kills(mut self, kills: Option<Arc<Kills>>) -> Self {
        self.kills = kills;
        self
    }

    /// The median of the latest invocation durations (100 ms before the first).
    fn typical_duration(&self) -> Duration {
        let latencies = self.latencies.lock().expect("lock");
        let mut sorted: Vec<Duration> = latencies.iter().copied().collect();
        sorted.sort();
        sorted
            .get(sorted.len() / 2)
            .copied()
            .unwrap_or(Duration::from_millis(100))
    }

    /// The function.
    pub fn spec(&self) -> &FunctionSpec {
        &self.spec
    }

    /// Start one instance ahead of the first invocation.
    pub async fn warm(&self) -> Result<()> {
        let instance = self.new_instance().await?;
        self.idle.lock().await.push(instance);
        Ok(())
    }

    async fn new_instance(&self) -> Result<Arc<Instance>> {
        let serial = self.all.lock().expect("lock").len();
        let instance = Instance::start(
            self.spec.clone(),
            self.binary.clone(),
            self.env.clone(),
            self.logs.clone(),
            serial,
        )
        .await?;
        self.all.lock().expect("lock").push(instance.clone());
        if self.permits.is_closed() {
            // Stopped while this one was starting.
            instance.stop().await;
            anyhow::bail!("the function was stopped");
        }
        Ok(instance)
    }

    /// Invoke with a JSON payload on an idle instance (or a new one, up to the limit).
    pub async fn invoke(&self, payload: &Value) -> Result<Value, FunctionError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| FunctionError::Crashed("pool closed".into()))?;
        // Pop in its own statement: the lock must not be held through a cold start.
        let idle = self.idle.lock().await.pop();
        let instance = match idle {
            Some(instance) => instance,
            None => self.new_instance().await.map_err(|e| {
                FunctionError::Crashed(format!("could not start {}: {e:#}", self.spec.label()))
            })?,
        };
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.invocations.fetch_add(1, Ordering::Relaxed);
        let body = Bytes::from(serde_json::to_vec(payload).unwrap_or_default());
        let kill = self.kills.as_deref().and_then(|kills| {
            kills
                .decide(
                    self.spec.label(),
                    &self.spec.logical_id,
                    self.typical_duration(),
                )
                .map(|at| (at, kills))
        });
        let started = Instant::now();
        let result = instance.invoke(body, kill).await;
        // A killed invocation says nothing about how long the function takes.
        if !matches!(result, Err(FunctionError::Killed(_))) {
            let mut latencies = self.latencies.lock().expect("lock");
            if latencies.len() == LATENCY_WINDOW {
                latencies.pop_front();
            }
            latencies.push_back(started.elapsed());
        }
        if result.is_err() {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.idle.lock().await.push(instance);
        result
    }

    /// Invocations so far, and how many failed.
    pub fn stats(&self) -> (usize, usize) {
        (
            self.invocations.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
        )
    }

    /// The durations of the latest invocations (up to [`LATENCY_WINDOW`]), oldest first.
    pub fn latencies(&self) -> Vec<Duration> {
        self.latencies
            .lock()
            .expect("lock")
            .iter()
            .copied()
            .collect()
    }

    /// Cold-start durations of every instance so far.
    pub fn cold_starts(&self) -> Vec<Duration> {
        self.all
            .lock()
            .expect("lock")
            .iter()
            .flat_map(|i| i.cold_starts.lock().expect("lock").clone())
            .collect()
    }

    /// The highest peak resident set of this pool's live processes, in KiB.
    pub async fn peak_rss_kib(&self) -> Option<u64> {
        let all: Vec<Arc<Instance>> = self.all.lock().expect("lock").clone();
        let mut peak = None;
        for instance in all {
            peak = peak.max(instance.peak_rss_kib().await);
        }
        peak
    }

    /// Stop every process.
    pub async fn stop(&self) {
        // No invocation starts (or starts a process) once the pool is stopped.
        self.permits.close();
        let all: Vec<Arc<Instance>> = self.all.lock().expect("lock").clone();
        for instance in all {
            instance.stop().await;
        }
    }
}
