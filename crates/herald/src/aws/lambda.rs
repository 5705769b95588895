//! Serving a handler on the Lambda runtime with herald's layers: the runtime's request span
//! (`requestId` on every log line) around [`crate::aws::metrics::MetricsLayer`] (one EMF document per
//! invocation). [`crate::Herald`]'s `run_*` methods use it; use it directly to serve a handler of
//! your own with the same logs and metrics:
//!
//! ```no_run
//! use herald::aws::lambda::{serve, Error, LambdaEvent};
//! use serde_json::{json, Value};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Error> {
//!     herald::aws::telemetry::init();
//!     serve("echo", |event: LambdaEvent<Value>| async move {
//!         herald::aws::metrics::count("EventsIn", 1);
//!         Ok::<_, Error>(json!({ "echo": event.payload }))
//!     })
//!     .await
//! }
//! ```

use std::future::Future;
use std::pin::Pin;

use lambda_runtime::service_fn;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::aws::metrics::MetricsLayer;

pub use lambda_runtime::{Context, Error, LambdaEvent};

/// Run `handler` on the Lambda runtime until the process ends. `function` names the function in
/// the EMF metrics (`function` dimension).
pub async fn serve<E, R, F, Fut>(function: &'static str, handler: F) -> Result<(), Error>
where
    E: DeserializeOwned,
    R: Serialize,
    F: Fn(LambdaEvent<E>) -> Fut,
    Fut: Future<Output = Result<R, Error>>,
{
    // Handler futures are boxed: the SDK's nested futures are otherwise too deep for rustc's
    // layout query.
    let handler = move |event: LambdaEvent<E>| -> HandlerFuture<'_, R> { Box::pin(handler(event)) };
    serve_dyn(function, &handler).await
}

/// One invocation's work, boxed.
type HandlerFuture<'a, R> = Pin<Box<dyn Future<Output = Result<R, Error>> + 'a>>;

/// The runtime and its layers behind a `dyn` handler: compiled once per event and response type
/// (at most five in herald) rather than once per handler, so a binary running many functions (the shop's
/// runs thirteen) carries lambda_runtime's invocation loop, its layers and their drop glue once
/// per type. One more allocation per invocation (the deadline's scope), none per event.
async fn serve_dyn<'a, E, R>(
    function: &'static str,
    handler: &'a dyn Fn(LambdaEvent<E>) -> HandlerFuture<'a, R>,
) -> Result<(), Error>
where
    E: DeserializeOwned,
    R: Serialize,
{
    // Each invocation runs with its deadline as `Deadline::current()`, which every retry loop
    // in herald respects.
    lambda_runtime::Runtime::new(lambda_runtime::tower::Layer::layer(
        &MetricsLayer::new(function),
        service_fn(move |event: LambdaEvent<E>| {
            let deadline = crate::aws::Deadline::at_system_time(event.context.deadline());
            Box::pin(deadline.scope(handler(event)))
        }),
    ))
    .layer(lambda_runtime::layers::TracingLayer::new())
    .run()
    .await
}
