//! The cost model: billable units per submitted event, from a run's EMF metrics, for herald and
//! for a naive design of the same pipeline; and the list prices they are priced at.

use super::PipelineRun;

/// List prices (us-east-1, on-demand / standard, as published in 2025) the cost model uses.
pub mod prices {
    /// Kinesis Data Streams: per PUT payload unit (25 KB; a ~600 B event is one).
    pub const KINESIS_PUT_UNIT: f64 = 0.014 / 1e6;
    /// SNS standard topic: per request (each 64 KB chunk of a publish, so a `PublishBatch` of 10
    /// small events is one). Deliveries to SQS are free.
    pub const SNS_REQUEST: f64 = 0.50 / 1e6;
    /// SQS standard queue: per request (Lambda's pollers bill `ReceiveMessage` and
    /// `DeleteMessageBatch`).
    pub const SQS_REQUEST: f64 = 0.40 / 1e6;
    /// DynamoDB on-demand: per write request unit (1 KB; a transaction's item costs 2).
    pub const DYNAMODB_WRU: f64 = 0.625 / 1e6;
    /// DynamoDB on-demand: per read request unit (4 KB, strongly consistent).
    pub const DYNAMODB_RRU: f64 = 0.125 / 1e6;
    /// Lambda: per invocation.
    pub const LAMBDA_REQUEST: f64 = 0.20 / 1e6;
}

/// Billable units per submitted event, by service.
#[derive(Clone, Debug, Default)]
pub struct Units {
    /// Kinesis `PutRecords` / `PutRecord` requests.
    pub kinesis_requests: f64,
    /// Kinesis PUT payload units.
    pub kinesis_put_units: f64,
    /// SNS billed requests.
    pub sns_requests: f64,
    /// SQS requests (pollers and dead letters).
    pub sqs_requests: f64,
    /// DynamoDB requests.
    pub dynamodb_requests: f64,
    /// DynamoDB write units.
    pub dynamodb_wru: f64,
    /// DynamoDB read units.
    pub dynamodb_rru: f64,
    /// Lambda invocations.
    pub lambda_invocations: f64,
}

impl Units {
    /// Dollars per million submitted events (Lambda duration excluded: measured against the
    /// emulator, it says more about moto than about herald).
    pub fn dollars_per_million(&self) -> f64 {
        1e6 * (self.kinesis_put_units * prices::KINESIS_PUT_UNIT
            + self.sns_requests * prices::SNS_REQUEST
            + self.sqs_requests * prices::SQS_REQUEST
            + self.dynamodb_wru * prices::DYNAMODB_WRU
            + self.dynamodb_rru * prices::DYNAMODB_RRU
            + self.lambda_invocations * prices::LAMBDA_REQUEST)
    }
}

pub(super) fn sum(run: &PipelineRun, key: &str) -> f64 {
    run.metrics
        .values()
        .map(|m| m.get(key).copied().unwrap_or(0.0))
        .sum()
}

pub(super) fn of(run: &PipelineRun, function: &str, key: &str) -> f64 {
    run.metrics
        .get(function)
        .and_then(|m| m.get(key))
        .copied()
        .unwrap_or(0.0)
}

/// herald's units per submitted event in `run`.
pub fn herald_units(run: &PipelineRun) -> Units {
    let events = run.load.sent.max(1) as f64;
    let transact_items = sum(run, "aws:DynamoDB.TransactWriteItems#items");
    let writes = sum(run, "aws:DynamoDB.PutItem")
        + sum(run, "aws:DynamoDB.UpdateItem")
        + sum(run, "aws:DynamoDB.DeleteItem");
    let reads = sum(run, "aws:DynamoDB.GetItem") + sum(run, "aws:DynamoDB.Query");
    let dynamodb_requests: f64 = run
        .metrics
        .values()
        .flat_map(|m| m.iter())
        .filter(|(k, _)| k.starts_with("aws:DynamoDB.") && !k.contains('#'))
        .map(|(_, v)| v)
        .sum();
    let sqs_sent: f64 = run
        .metrics
        .values()
        .flat_map(|m| m.iter())
        .filter(|(k, _)| k.starts_with("aws:SQS."))
        .map(|(_, v)| v)
        .sum();
    Units {
        kinesis_requests: sum(run, "aws:Kinesis.PutRecords") / events,
        kinesis_put_units: of(run, "router", "EventsIn") / events,
        sns_requests: sum(run, "aws:SNS.PublishBatch") / events,
        sqs_requests: (run.poller.0 + run.poller.1) as f64 / events + sqs_sent / events,
        dynamodb_requests: dynamodb_requests / events,
        dynamodb_wru: (writes + 2.0 * transact_items) / events,
        dynamodb_rru: reads / events,
        lambda_invocations: sum(run, "Invocations") / events,
    }
}

/// The naive baseline for the same traffic: one `PutRecord` per record, one `Publish` per routed
/// event, and idempotency as two writes per delivery (claim, then complete) beside the effect
/// instead of inside its transaction. Everything else as herald does it.
pub fn naive_units(run: &PipelineRun) -> Units {
    let events = run.load.sent.max(1) as f64;
    let mut units = herald_units(run);
    let transactions = sum(run, "aws:DynamoDB.TransactWriteItems");
    let transact_items = sum(run, "aws:DynamoDB.TransactWriteItems#items");
    units.kinesis_requests = units.kinesis_put_units;
    units.sns_requests = of(run, "router", "EventsOut") / events;
    // A transaction of n items (record + n-1 effect writes) at 2 units each becomes claim +
    // n-1 effect writes + complete at 1 unit each, in n+1 requests.
    units.dynamodb_wru += (-2.0 * transact_items + transact_items + transactions) / events;
    units.dynamodb_requests += (transact_items + transactions - transactions) / events;
    units
}
