//! The cost model: billable units per submitted event, from a run's EMF metrics, for herald and
//! for three other designs of the same pipeline (Powertools' idempotency, a naive pipeline, and
//! the floor: the effects alone); and the list prices they are priced at.

use std::collections::BTreeMap;

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
    /// Firehose from a Kinesis stream: per GB ingested, each record rounded up to 5 KB.
    pub const FIREHOSE_GB: f64 = 0.029;
    /// Firehose dynamic partitioning: per GB processed.
    pub const PARTITIONING_GB: f64 = 0.020;
    /// Firehose dynamic partitioning: per object delivered (S3 PUT billed on top).
    pub const PARTITIONING_OBJECT: f64 = 0.005 / 1e3;
    /// S3 standard: per PUT.
    pub const S3_PUT: f64 = 0.005 / 1e3;
}

/// The archive's assumptions: each record bills 5 KB (the shop's events are 0.4–0.9 KB), is
/// processed as 1 KB, and objects are one per partition (event type) per buffer interval.
pub mod archive {
    /// Firehose's billing increment per record.
    pub const BILLED_KB_PER_RECORD: f64 = 5.0;
    /// Bytes processed per record (an upper bound for the shop's events).
    pub const PROCESSED_KB_PER_RECORD: f64 = 1.0;
    /// Event types the shop writes (partitions per buffer interval).
    pub const PARTITIONS: f64 = 9.0;
    /// The template's `ArchiveBufferSeconds` default.
    pub const BUFFER_SECONDS: f64 = 300.0;
    /// The rate the object count is priced at (objects per event fall as the rate rises).
    pub const EVENTS_PER_SECOND: f64 = 100.0;
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
    /// Records the archive ingests (every record that crosses the stream, follow-ups included).
    pub archive_records: f64,
}

impl Units {
    /// Replace the DynamoDB figures with another design's.
    fn set_dynamodb(&mut self, dynamodb: DynamoDb) {
        self.dynamodb_wru = dynamodb.wru;
        self.dynamodb_requests = dynamodb.requests;
        self.dynamodb_rru = dynamodb.rru;
    }

    /// Objects the archive writes per submitted event (see the `archive` assumptions).
    pub fn archive_objects(&self) -> f64 {
        archive::PARTITIONS / (archive::BUFFER_SECONDS * archive::EVENTS_PER_SECOND)
    }

    /// The archive's dollars per submitted event.
    pub fn archive_dollars(&self) -> f64 {
        let gb = |kb: f64| self.archive_records * kb / (1024.0 * 1024.0);
        gb(archive::BILLED_KB_PER_RECORD) * prices::FIREHOSE_GB
            + gb(archive::PROCESSED_KB_PER_RECORD) * prices::PARTITIONING_GB
            + self.archive_objects() * (prices::PARTITIONING_OBJECT + prices::S3_PUT)
    }
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
            + self.lambda_invocations * prices::LAMBDA_REQUEST
            + self.archive_dollars())
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
    let reads: f64 = run.metrics.values().map(read_units).sum();
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
        dynamodb_requests: dynamodb_requests(run.metrics.values()) / events,
        dynamodb_wru: write_units(run.metrics.values()) / events,
        dynamodb_rru: reads / events,
        lambda_invocations: sum(run, "Invocations") / events,
        archive_records: of(run, "router", "EventsIn") / events,
    }
}

type Metrics = std::collections::BTreeMap<String, f64>;

/// DynamoDB read units in one function's metrics: a consistent read of a small item is one
/// unit; a batch's idempotency records read ahead of its commit are half a unit each
/// (eventually consistent).
fn read_units(metrics: &Metrics) -> f64 {
    let get = |key: &str| metrics.get(key).copied().unwrap_or(0.0);
    get("aws:DynamoDB.GetItem") + get("aws:DynamoDB.Query") + look_ahead_units(metrics)
}

/// The read units of herald's read-ahead of idempotency records (`BatchGetItem`).
fn look_ahead_units(metrics: &Metrics) -> f64 {
    0.5 * metrics
        .get("aws:DynamoDB.BatchGetItem#items")
        .copied()
        .unwrap_or(0.0)
}

/// DynamoDB requests in these functions' metrics.
fn dynamodb_requests<'a>(functions: impl Iterator<Item = &'a Metrics>) -> f64 {
    functions
        .flat_map(|m| m.iter())
        .filter(|(k, _)| k.starts_with("aws:DynamoDB.") && !k.contains('#'))
        .map(|(_, v)| v)
        .sum()
}

/// DynamoDB write units in these functions' metrics, as the SDK interceptor sized them
/// (`#wru`: one per started KB, two inside a transaction).
fn write_units<'a>(functions: impl Iterator<Item = &'a Metrics>) -> f64 {
    functions
        .flat_map(|m| m.iter())
        .filter(|(k, _)| k.starts_with("aws:DynamoDB.") && k.ends_with("#wru"))
        .map(|(_, v)| v)
        .sum()
}

/// What one subscriber did in a run, for pricing it in another design.
struct Deliveries {
    /// Effect writes of the events applied (one per item per event, before any summing).
    effects: f64,
    /// Events applied.
    applied: f64,
    /// Duplicates skipped.
    duplicates: f64,
    /// Effects that failed their condition (a sold-out SKU) and were decided again.
    conflicts: f64,
}

/// Write units of a failed effect in a design without transactions: the writes before the
/// failing one, the failing conditional write itself, and undoing what went before — one line
/// reserved, the next sold out, the first released: three.
const FAILED_EFFECT_WRITES: f64 = 3.0;

/// DynamoDB per submitted event in a design: write units, requests, read units.
struct DynamoDb {
    wru: f64,
    requests: f64,
    rru: f64,
}

/// The subscribers' DynamoDB in another design: for each subscriber (a function reporting
/// `EffectWrites`), its measured write units and requests are replaced by `units(...)`, and
/// herald's read-ahead of records is taken out of its reads (the other designs learn of a
/// duplicate from the failed write); the rest of the pipeline stays as measured.
fn redesigned(run: &PipelineRun, units: fn(&Deliveries) -> f64) -> DynamoDb {
    let events = run.load.sent.max(1) as f64;
    let (mut wru, mut requests, mut rru) = (0.0, 0.0, 0.0);
    for metrics in run.metrics.values() {
        let get = |key: &str| metrics.get(key).copied().unwrap_or(0.0);
        let one = std::iter::once(metrics);
        if metrics.contains_key("EffectWrites") {
            let writes = units(&Deliveries {
                effects: get("EffectWrites"),
                applied: get("EventsOut"),
                duplicates: get("Duplicates"),
                conflicts: get("ConditionFailures"),
            });
            wru += writes;
            requests += writes;
            rru += read_units(metrics) - look_ahead_units(metrics);
        } else {
            wru += write_units(one.clone());
            requests += dynamodb_requests(one);
            rru += read_units(metrics);
        }
    }
    DynamoDb {
        wru: wru / events,
        requests: requests / events,
        rru: rru / events,
    }
}

/// Powertools for Lambda's idempotency design on herald's batching: per delivery a claim
/// (`PutItem`) and a result (`UpdateItem`) beside the effect's own writes, one unit each; a
/// duplicate costs one failed conditional write; an effect that fails its condition costs what
/// it wrote before failing and undoing that (`FAILED_EFFECT_WRITES`).
pub fn powertools_units(run: &PipelineRun) -> Units {
    let mut units = herald_units(run);
    let dynamodb = redesigned(run, |d| {
        d.effects + 2.0 * d.applied + d.duplicates + FAILED_EFFECT_WRITES * d.conflicts
    });
    units.set_dynamodb(dynamodb);
    units
}

/// The naive baseline: Powertools' idempotency, and no batching either — one `PutRecord` per
/// record, one `Publish` per routed event.
pub fn naive_units(run: &PipelineRun) -> Units {
    let events = run.load.sent.max(1) as f64;
    let mut units = powertools_units(run);
    units.kinesis_requests = units.kinesis_put_units;
    units.sns_requests = of(run, "router", "EventsOut") / events;
    units
}

/// The floor: herald's batching, and the effects' own writes with no idempotency at all (one
/// unit per effect write per event, nothing for a duplicate: at-most-once with no record).
pub fn floor_units(run: &PipelineRun) -> Units {
    let mut units = herald_units(run);
    let dynamodb = redesigned(run, |d| d.effects);
    units.set_dynamodb(dynamodb);
    units
}

/// DynamoDB write units per submitted event on each table (every function's writes summed), as
/// the SDK interceptor sized them: what each table's write quota must carry. Tables are named by
/// their logical id.
pub fn write_units_per_table(run: &PipelineRun) -> BTreeMap<String, f64> {
    let events = run.load.sent.max(1) as f64;
    let mut tables: BTreeMap<String, f64> = BTreeMap::new();
    for (key, units) in run.metrics.values().flatten() {
        if let Some((_, table)) = key
            .strip_prefix("aws:DynamoDB.")
            .and_then(|k| k.split_once("#wru@"))
        {
            // Local physical names are `<stack>-<LogicalId>`; logical ids have no '-'.
            let table = table.rsplit('-').next().unwrap_or(table);
            *tables.entry(table.to_string()).or_default() += units / events;
        }
    }
    tables
}
