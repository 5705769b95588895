//! AWS's published limits and latencies the capacity model uses (us-east-1, as documented in
//! 2025). Each is a default: the "quota" ones can be raised through Service Quotas, the
//! "hard" ones cannot.

/// Kinesis Data Streams, per shard: records written per second (hard).
pub const KINESIS_SHARD_RECORDS_IN: f64 = 1_000.0;
/// Kinesis Data Streams, per shard: bytes written per second (hard).
pub const KINESIS_SHARD_BYTES_IN: f64 = 1_000_000.0;
/// Kinesis Data Streams, per shard: bytes read per second, shared by the shard's consumers
/// (hard; the router, the fraud detector and the archive read every byte).
pub const KINESIS_SHARD_BYTES_OUT: f64 = 2_000_000.0;
/// Kinesis Data Streams price per shard-hour (provisioned capacity mode, as the template uses).
pub const KINESIS_SHARD_HOUR: f64 = 0.015;

/// SNS standard topics: messages published per second in us-east-1 (quota; 9 000 or 1 500 in
/// smaller regions). Each entry of a `PublishBatch` counts.
pub const SNS_PUBLISH_PER_SECOND: f64 = 30_000.0;
/// `PublishBatch` entries (hard).
pub const SNS_BATCH_ENTRIES: f64 = 10.0;

/// DynamoDB, one partition: write units per second (hard). One item lives in one partition, so
/// this is the most one item can take.
pub const DYNAMODB_PARTITION_WCU: f64 = 1_000.0;
/// DynamoDB on-demand, one table: write request units per second (quota).
pub const DYNAMODB_TABLE_WRU: f64 = 40_000.0;
/// DynamoDB: items in one `TransactWriteItems` (hard).
pub const DYNAMODB_TRANSACT_ITEMS: f64 = 100.0;
/// DynamoDB: write units of one item written inside a transaction (1 KB item).
pub const DYNAMODB_TRANSACTION_ITEM_WCU: f64 = 2.0;

/// Lambda: concurrent executions in the account and region (quota).
pub const LAMBDA_ACCOUNT_CONCURRENCY: f64 = 1_000.0;
/// Lambda arm64 price per GB-second.
pub const LAMBDA_ARM_GB_SECOND: f64 = 0.000_013_333_4;

/// Subscriber batch sizes the sizing tries, smallest first (`SubscriberBatchSize`; above 10 a
/// mapping needs a batching window, which the template sets).
pub const BATCH_STEPS: [f64; 5] = [10.0, 20.0, 50.0, 100.0, 200.0];
/// The largest of them: beyond a transaction's 100 items a batch sums no more per write.
pub const MAX_SUBSCRIBER_BATCH: f64 = 200.0;

/// SQS event source mapping: the most concurrent invocations Lambda scales a function's SQS
/// pollers to (hard ceiling of `MaximumConcurrency`).
pub const SQS_MAPPING_MAX_CONCURRENCY: f64 = 1_000.0;

/// Assumed latencies on AWS (p50, same region), which the emulator cannot tell: one SNS
/// `PublishBatch` of 10 entries, and one subscriber invocation of a batch of 10 messages (its
/// aggregates in parallel, one DynamoDB transaction or two writes each, plus Lambda's overhead).
pub const SNS_PUBLISH_BATCH_SECONDS: f64 = 0.015;
/// See [`SNS_PUBLISH_BATCH_SECONDS`].
pub const SUBSCRIBER_BATCH_SECONDS: f64 = 0.040;
/// One AWS request of a request-serving function (p50, same region, with its share of
/// Lambda's overhead): an order-service invocation takes this per DynamoDB request it makes
/// (measured per order: a new order's one append; a client's retry also loads the order).
pub const AWS_REQUEST_SECONDS: f64 = 0.010;

/// Seconds in an average month (365.25 / 12 days).
pub const SECONDS_PER_MONTH: f64 = 2_629_800.0;
