//! Metrics in CloudWatch Embedded Metric Format (EMF): one JSON document per invocation on
//! stdout, which CloudWatch Logs turns into metrics without an API call (the same approach as
//! Powertools' Metrics utility).
//!
//! Handlers record what they did with [`count`]; [`MetricsLayer`] (a tower layer around the
//! handler, so the document is written before the response is sent) adds `ProcessingTime`, `ColdStart` (on the first invocation of a process) and
//! `AwsRequests` (every SDK request the invocation sent, from [`crate::aws::request_counter`], with
//! the per-operation split as the `awsRequests` property), and flushes one document per
//! invocation with the dimension `function`.
//!
//! herald's metrics, all per function:
//!
//! | name | unit | meaning |
//! |---|---|---|
//! | `EventsIn` | Count | events (records, messages, submissions) the invocation received — its batch size |
//! | `EventsOut` | Count | events published (producer, router, publisher) or applied (subscribers) |
//! | `EventsFailed` | Count | events reported for retry |
//! | `Duplicates` | Count | deliveries skipped as duplicates (or stale, for the projector) |
//! | `DeadLettered` | Count | events parked in a DLQ with their reason |
//! | `EventsRejected` | Count | submissions the producer did not write (invalid, or the stream failed) |
//! | `ProcessingTime` | Milliseconds | the invocation's duration in the handler |
//! | `ColdStart` | Count | 1 on a process's first invocation |
//! | `AwsRequests` | Count | AWS API requests sent (retries included) |

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::Instant;

use lambda_runtime::tower::{Layer, Service};
use lambda_runtime::LambdaEvent;
use serde_json::{json, Map, Value};

/// A metric's unit (the EMF names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// A count.
    Count,
    /// Milliseconds.
    Milliseconds,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
        }
    }
}

/// The namespace metrics go to: `HERALD_METRICS_NAMESPACE`, default `herald`.
pub fn namespace() -> String {
    let namespace = &crate::aws::environment::HERALD_METRICS_NAMESPACE;
    std::env::var(namespace.name).unwrap_or_else(|_| namespace.default.unwrap_or_default().into())
}

static RECORDED: Mutex<BTreeMap<&'static str, (f64, Unit)>> = Mutex::new(BTreeMap::new());
static WARM: AtomicBool = AtomicBool::new(false);

/// Add `value` to a count metric of the current invocation.
pub fn count(name: &'static str, value: usize) {
    if let Ok(mut recorded) = RECORDED.lock() {
        recorded.entry(name).or_insert((0.0, Unit::Count)).0 += value as f64;
    }
}

/// A batch's counts: `EventsIn` (its size), `EventsOut`, `DeadLettered`, `EventsFailed`.
pub fn count_batch(events_in: usize, events_out: usize, dead_lettered: usize, failed: usize) {
    count("EventsIn", events_in);
    count("EventsOut", events_out);
    count("DeadLettered", dead_lettered);
    count("EventsFailed", failed);
}

/// One EMF document: `metrics` under `namespace` with the dimension `function`, plus
/// `properties` (searchable in the logs, not metrics).
pub fn document(
    namespace: &str,
    function: &str,
    metrics: &BTreeMap<&'static str, (f64, Unit)>,
    properties: Map<String, Value>,
    timestamp_ms: i64,
) -> Value {
    let definitions: Vec<Value> = metrics
        .iter()
        .map(|(name, (_, unit))| json!({ "Name": name, "Unit": unit.as_str() }))
        .collect();
    let mut doc = Map::new();
    doc.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [["function"]],
                "Metrics": definitions,
            }],
        }),
    );
    doc.insert("function".into(), Value::String(function.to_string()));
    for (name, (value, _)) in metrics {
        doc.insert(name.to_string(), json!(value));
    }
    for (key, value) in properties {
        doc.entry(key).or_insert(value);
    }
    Value::Object(doc)
}

/// The tower layer that flushes one EMF document per invocation.
#[derive(Clone, Debug)]
pub struct MetricsLayer {
    function: &'static str,
    namespace: String,
}

impl MetricsLayer {
    /// Metrics for `function` (the dimension value: `router`, `welcome`, ...).
    pub fn new(function: &'static str) -> Self {
        MetricsLayer {
            function,
            namespace: namespace(),
        }
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = MetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MetricsService {
            inner,
            layer: self.clone(),
        }
    }
}

/// [`MetricsLayer`]'s service.
pub struct MetricsService<S> {
    inner: S,
    layer: MetricsLayer,
}

impl<S, T> Service<LambdaEvent<T>> for MetricsService<S>
where
    S: Service<LambdaEvent<T>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = MetricsFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, invocation: LambdaEvent<T>) -> Self::Future {
        let started = Instant::now();
        let cold = !WARM.swap(true, Ordering::SeqCst);
        let requests_before = crate::aws::request_counter().counts();
        let request_id = invocation.context.request_id.clone();
        if let Ok(mut recorded) = RECORDED.lock() {
            recorded.clear();
        }
        MetricsFuture {
            inner: Box::pin(self.inner.call(invocation)),
            flush: Some(Flush {
                layer: self.layer.clone(),
                started,
                cold,
                requests_before,
                request_id,
            }),
        }
    }
}

/// What a finished invocation's document needs.
struct Flush {
    layer: MetricsLayer,
    started: Instant,
    cold: bool,
    requests_before: BTreeMap<String, u64>,
    request_id: String,
}

impl Flush {
    fn write(self) {
        let mut metrics = RECORDED
            .lock()
            .map(|mut r| std::mem::take(&mut *r))
            .unwrap_or_default();
        metrics.insert(
            "ProcessingTime",
            (
                self.started.elapsed().as_secs_f64() * 1000.0,
                Unit::Milliseconds,
            ),
        );
        if self.cold {
            metrics.insert("ColdStart", (1.0, Unit::Count));
        }
        let mut by_operation = Map::new();
        let mut total = 0u64;
        for (operation, n) in crate::aws::request_counter().counts() {
            let delta = n - self.requests_before.get(&operation).copied().unwrap_or(0);
            if delta > 0 {
                if !operation.contains('#') {
                    total += delta;
                }
                by_operation.insert(operation, json!(delta));
            }
        }
        metrics.insert("AwsRequests", (total as f64, Unit::Count));
        let mut properties = Map::new();
        properties.insert("requestId".into(), Value::String(self.request_id));
        properties.insert("awsRequests".into(), Value::Object(by_operation));
        let doc = document(
            &self.layer.namespace,
            self.layer.function,
            &metrics,
            properties,
            chrono::Utc::now().timestamp_millis(),
        );
        // EMF goes to stdout as its own line, outside the log formatter.
        println!("{doc}");
    }
}

/// [`MetricsService`]'s future: the invocation, then its document.
pub struct MetricsFuture<F> {
    inner: Pin<Box<F>>,
    flush: Option<Flush>,
}

impl<F: Future> Future for MetricsFuture<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        match this.inner.as_mut().poll(cx) {
            Poll::Ready(output) => {
                if let Some(flush) = this.flush.take() {
                    flush.write();
                }
                Poll::Ready(output)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_declares_every_metric_it_carries() {
        let metrics = BTreeMap::from([
            ("EventsIn", (10.0, Unit::Count)),
            ("ProcessingTime", (12.5, Unit::Milliseconds)),
        ]);
        let mut properties = Map::new();
        properties.insert("requestId".into(), json!("r-1"));
        let doc = document("herald", "router", &metrics, properties, 1_795_687_200_000);
        let aws = &doc["_aws"];
        assert_eq!(aws["Timestamp"], 1_795_687_200_000i64);
        let directive = &aws["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "herald");
        assert_eq!(directive["Dimensions"], json!([["function"]]));
        for definition in directive["Metrics"].as_array().unwrap() {
            let name = definition["Name"].as_str().unwrap();
            assert!(doc[name].is_number(), "{name} has a value");
        }
        assert_eq!(doc["function"], "router");
        assert_eq!(doc["ProcessingTime"], 12.5);
        assert_eq!(doc["requestId"], "r-1");
    }
}
