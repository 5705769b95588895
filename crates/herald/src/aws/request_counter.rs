//! Counting what SDK clients send, per operation, for benchmarks, cost models and the
//! `AwsRequests` metric.

/// The process's [`RequestCounter`]: the clients below count through it, and
/// [`crate::aws::metrics::MetricsLayer`] reports each invocation's share.
pub fn request_counter() -> &'static RequestCounter {
    static COUNTER: std::sync::OnceLock<RequestCounter> = std::sync::OnceLock::new();
    COUNTER.get_or_init(RequestCounter::default)
}

/// Counts the HTTP requests an SDK client sends, per `Service.Operation` (retries included),
/// for benchmarks and cost models. Attach it with a client config builder's `.interceptor(...)`.
#[derive(Clone, Debug, Default)]
pub struct RequestCounter {
    counts: std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<String, u64>>>,
}

impl RequestCounter {
    /// Requests per `Service.Operation` so far.
    pub fn counts(&self) -> std::collections::BTreeMap<String, u64> {
        self.counts.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// All requests so far (`#items` tallies are not requests).
    pub fn total(&self) -> u64 {
        self.counts()
            .iter()
            .filter(|(op, _)| !op.contains('#'))
            .map(|(_, n)| n)
            .sum()
    }

    /// Forget the counts.
    pub fn reset(&self) {
        if let Ok(mut counts) = self.counts.lock() {
            counts.clear();
        }
    }
}

/// The items a DynamoDB request names, for operations billed per item: a transaction's actions,
/// a batch read's keys.
fn request_items(operation: &str, body: &serde_json::Value) -> Option<usize> {
    match operation {
        "DynamoDB.TransactWriteItems" => body["TransactItems"].as_array().map(Vec::len),
        "DynamoDB.BatchGetItem" => Some(
            body["RequestItems"]
                .as_object()?
                .values()
                .filter_map(|table| table["Keys"].as_array())
                .map(Vec::len)
                .sum(),
        ),
        _ => None,
    }
}

impl aws_smithy_runtime_api::client::interceptors::Intercept for RequestCounter {
    fn name(&self) -> &'static str {
        "herald::RequestCounter"
    }

    fn read_before_transmit(
        &self,
        context: &aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef<'_>,
        _components: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        cfg: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        let operation = cfg
            .load::<aws_smithy_runtime_api::client::orchestrator::Metadata>()
            .map(|m| format!("{}.{}", m.service(), m.name()))
            .unwrap_or_else(|| "unknown".into());
        // A transaction's cost is per item (2 write units each), a batch read's per key (half a
        // read unit each, eventually consistent): count them too; and every write's units, from
        // the size of what it writes.
        let body = operation
            .starts_with("DynamoDB.")
            .then(|| context.request().body().bytes())
            .flatten()
            .and_then(|body| serde_json::from_slice::<serde_json::Value>(body).ok());
        let items = body
            .as_ref()
            .and_then(|body| request_items(&operation, body));
        let tables = body
            .as_ref()
            .and_then(|body| crate::aws::write_units::by_table(&operation, body));
        if let Ok(mut counts) = self.counts.lock() {
            if let Some(items) = items {
                *counts.entry(format!("{operation}#items")).or_default() += items as u64;
            }
            if let Some(tables) = tables {
                *counts.entry(format!("{operation}#wru")).or_default() +=
                    tables.values().sum::<u64>();
                for (table, units) in tables {
                    *counts
                        .entry(format!("{operation}#wru@{table}"))
                        .or_default() += units;
                }
            }
            *counts.entry(operation).or_default() += 1;
        }
        Ok(())
    }
}
