//! The AWS service limits herald designs around, in one place so every check names the same number.

/// Kinesis `PutRecords`: at most this many records per request.
pub const KINESIS_MAX_RECORDS_PER_PUT: usize = 500;
/// Kinesis `PutRecords`: at most this many bytes per request (data + partition keys).
pub const KINESIS_MAX_BYTES_PER_PUT: usize = 5 * 1024 * 1024;
/// Kinesis: one record's data blob plus its partition key.
pub const KINESIS_MAX_RECORD_BYTES: usize = 1024 * 1024;
/// Kinesis: a partition key is 1 to 256 Unicode characters.
pub const KINESIS_MAX_PARTITION_KEY_CHARS: usize = 256;

/// SNS `PublishBatch`: at most this many entries per request.
pub const SNS_MAX_BATCH_ENTRIES: usize = 10;
/// SNS: one message, or the sum of a `PublishBatch` request's messages, including message attributes.
pub const SNS_MAX_PAYLOAD_BYTES: usize = 256 * 1024;
/// SNS / SQS: at most this many message attributes per message.
pub const SNS_MAX_MESSAGE_ATTRIBUTES: usize = 10;

/// SQS: `ReceiveMessage` returns at most this many messages per call.
pub const SQS_MAX_RECEIVE: usize = 10;
/// SQS: the longest a queue keeps a message (`MessageRetentionPeriod`'s maximum, 14 days), counted
/// from the message's first enqueue even after a redrive policy moves it to a dead-letter queue.
pub const SQS_MAX_RETENTION_SECONDS: u64 = 14 * 24 * 3600;
/// SQS: the largest message (body plus message attributes) every queue accepts, whatever its
/// `MaximumMessageSize` (256 KiB was the limit before 2025, and is still what older queues take).
pub const SQS_MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// DynamoDB `TransactWriteItems`: at most this many actions per transaction.
pub const DYNAMODB_MAX_TRANSACT_ITEMS: usize = 100;
/// DynamoDB `BatchGetItem`: at most this many keys per request.
pub const DYNAMODB_MAX_BATCH_GET_KEYS: usize = 100;

/// Room left for SNS message attributes when an envelope is published (herald sets at most
/// [`SNS_MAX_MESSAGE_ATTRIBUTES`] attributes whose values are bounded by [`MAX_ATTRIBUTE_CHARS`]).
pub const SNS_ATTRIBUTE_ALLOWANCE_BYTES: usize = 16 * 1024;

/// The largest encoded envelope herald accepts. Every event crosses SNS, whose message limit
/// (256 KiB with attributes) is the tightest of the pipeline's hops; Kinesis alone would allow 1 MiB.
pub const MAX_EVENT_BYTES: usize = SNS_MAX_PAYLOAD_BYTES - SNS_ATTRIBUTE_ALLOWANCE_BYTES;

/// Longest `id`, `source` and `subject` herald accepts (the subject is the Kinesis partition key).
pub const MAX_ATTRIBUTE_CHARS: usize = 256;
/// Longest event `type`; types are also SNS filter-policy values, so they stay short.
pub const MAX_TYPE_CHARS: usize = 128;

/// How far ahead of the producer's clock a submitted event's `time` may be (seconds): an event
/// says when it happened, so only clock skew puts it in the future. Windows and retention are
/// reckoned from `time`; one from next year would hold a window open for a year.
pub const MAX_TIME_AHEAD_SECONDS: i64 = 15 * 60;
