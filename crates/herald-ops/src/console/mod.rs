//! `herald console`: a web page on this machine to watch a pipeline in — the flow drawn from the
//! template with live counts per hop, the alarms, every dead-letter queue with its messages and a
//! redrive button, one transaction's trace, and the event catalog.
//!
//! It watches a pipeline the local runner plays ([`serve_local`]: counts, alarms and logs from the
//! runner itself) or one CloudFormation deployed ([`serve_deployed`]: CloudWatch's metrics of the
//! last hour, its alarms and its logs). Either way it only reads, but for a redrive.
//!
//! The page is plain HTML, CSS and JavaScript compiled into the binary (no build step); it reads
//! the JSON API below, one module per concern:
//!
//! | route | module |
//! |---|---|
//! | `GET /api/flow` | [`flow`]: the resources and how events move between them |
//! | `GET /api/stats` | [`stats`]: counts per function and queue |
//! | `GET /api/alarms` | [`alarms`]: the alarms' states |
//! | `GET /api/dlqs`, `POST /api/dlqs/<id>/redrive` | [`dlqs`] |
//! | `GET /api/traces`, `GET /api/traces/<id>` | [`traces`] |
//! | `GET /api/catalog` | [`catalog`]: event types from `events/schemas` |

pub mod alarms;
pub mod catalog;
pub mod dlqs;
pub mod flow;
mod screenshot;
pub mod stats;
pub mod traces;

pub use screenshot::screenshot;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use aws_config::SdkConfig;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde_json::json;
use tokio::net::TcpListener;

use herald_local::runner::Watch;
use herald_local::{LocalPipeline, Stack};

const INDEX: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/style.css");

/// What the console reads.
pub struct ConsoleState {
    /// The stack.
    pub stack: Arc<Stack>,
    /// SDK configuration for where the stack lives.
    pub aws: SdkConfig,
    /// The project's `events/` directory (schemas and samples for the catalog); none: no catalog.
    pub events_dir: Option<PathBuf>,
    /// Where counts, alarms and traces come from.
    pub pipeline: Pipeline,
}

/// Where the console's counts, alarms and traces come from.
pub enum Pipeline {
    /// The local runner playing the stack: straight from it.
    Local(Watch),
    /// A stack CloudFormation deployed: CloudWatch metrics and alarms, CloudWatch Logs.
    Deployed,
}

/// Serve the console for a pipeline the local runner plays, on 127.0.0.1:`port` (0: any free
/// port), until the pipeline stops; `events_dir` holds the schemas and samples for the catalog.
/// Returns its URL.
pub async fn serve_local(
    pipeline: &mut LocalPipeline,
    port: u16,
    events_dir: PathBuf,
) -> anyhow::Result<String> {
    let (listener, address) = bind(port).await?;
    let watch = pipeline.watch();
    let state = ConsoleState {
        stack: watch.stack.clone(),
        aws: pipeline.aws().clone(),
        events_dir: Some(events_dir),
        pipeline: Pipeline::Local(watch),
    };
    pipeline.keep(tokio::spawn(serve(listener, Arc::new(state))));
    Ok(format!("http://{address}/"))
}

/// Serve the console for a deployed stack on 127.0.0.1:`port` (0: any free port) until the
/// returned task is aborted; `events_dir` (the project's, when there is one) for the catalog.
/// Returns its URL and the task.
pub async fn serve_deployed(
    stack: Stack,
    aws: SdkConfig,
    port: u16,
    events_dir: Option<PathBuf>,
) -> anyhow::Result<(String, tokio::task::JoinHandle<()>)> {
    let (listener, address) = bind(port).await?;
    let state = ConsoleState {
        stack: Arc::new(stack),
        aws,
        events_dir,
        pipeline: Pipeline::Deployed,
    };
    let task = tokio::spawn(serve(listener, Arc::new(state)));
    Ok((format!("http://{address}/"), task))
}

/// Serve the console on `listener` until the task is aborted.
async fn serve(listener: TcpListener, state: Arc<ConsoleState>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(request, &state).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Bind `port` on 127.0.0.1 (0: any free port).
async fn bind(port: u16) -> anyhow::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| anyhow::anyhow!("console port {port}: {e}"))?;
    let address = listener.local_addr()?;
    Ok((listener, address))
}

async fn route(request: Request<Incoming>, state: &ConsoleState) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or_default().to_string();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (request.method(), segments.as_slice()) {
        (&Method::GET, [""]) => asset(INDEX, "text/html; charset=utf-8"),
        (&Method::GET, ["app.js"]) => asset(SCRIPT, "text/javascript; charset=utf-8"),
        (&Method::GET, ["style.css"]) => asset(STYLE, "text/css; charset=utf-8"),
        (&Method::GET, ["api", "flow"]) => reply(Ok(flow::flow(&state.stack))),
        (&Method::GET, ["api", "stats"]) => reply(stats::stats(state).await),
        (&Method::GET, ["api", "alarms"]) => reply(alarms::alarms(state).await),
        (&Method::GET, ["api", "dlqs"]) => reply(dlqs::list(state).await),
        (&Method::POST, ["api", "dlqs", id, "redrive"]) => reply(dlqs::redrive(state, id).await),
        (&Method::GET, ["api", "traces"]) => reply(traces::recent(state).await),
        (&Method::GET, ["api", "traces", id]) => reply(traces::one(state, id).await),
        (&Method::GET, ["api", "catalog"]) => reply(catalog::catalog(state)),
        _ => json_response(
            StatusCode::NOT_FOUND,
            &json!({"error": format!("no route {} {path}{}", request.method(), if query.is_empty() { String::new() } else { format!("?{query}") })}),
        ),
    }
}

fn asset(body: &'static str, content_type: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .header("content-type", content_type)
        .header("cache-control", "no-store")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .expect("valid response")
}

/// A handler's answer as JSON: the value, or 500 with `{"error": ...}`; a [`NotFound`] is a 404.
fn reply<T: Serialize>(result: anyhow::Result<T>) -> Response<Full<Bytes>> {
    match result {
        Ok(value) => match serde_json::to_value(value) {
            Ok(value) => json_response(StatusCode::OK, &value),
            Err(err) => json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &json!({"error": err.to_string()}),
            ),
        },
        Err(err) => {
            let status = if err.is::<NotFound>() {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            json_response(status, &json!({"error": format!("{err:#}")}))
        }
    }
}

fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("cache-control", "no-store")
        .body(Full::new(Bytes::from(value.to_string())))
        .expect("valid response")
}

/// Something the request names does not exist (answered with 404).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotFound(pub String);
