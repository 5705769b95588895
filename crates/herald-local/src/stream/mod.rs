//! Reading a stream — a Kinesis stream or a DynamoDB table's stream — and the Lambda event a
//! batch of its records becomes. One reader for everything that reads one: the event source
//! mappings ([`crate::esm`]), the local Firehose ([`crate::firehose`]) and herald-ops' replay,
//! backfill and redrive.
//!
//! # Shards
//! [`Stream::shards`] lists every shard (all pages) with its parents and whether a reshard
//! closed it; [`Stream::identity`] tells a stream from one created again under its name.
//!
//! # Reading
//! A [`Position`] says where a shard is read from; [`Stream::iterator`] opens it there and
//! [`Stream::read`] answers one `GetRecords` page of [`Record`]s. A closed shard's end comes as
//! a page without a next iterator — maybe with its last records in it (AWS and LocalStack answer
//! so): the iterator is spent then. [`ToTip`] reads one shard page by page up to its tip or end,
//! which is what a one-off read (a replay, a redrive) wants.
//!
//! # The Lambda event
//! [`lambda_event`] is the `Records` event Lambda invokes a function with for a batch of
//! records: `aws:kinesis` records with their data in base64, `aws:dynamodb` records with their
//! `dynamodb` object in DynamoDB's attribute-value JSON.

mod dynamodb;
mod kinesis;
mod lambda_event;
mod to_tip;

pub use lambda_event::{lambda_event, EventSource};
pub use to_tip::ToTip;

use anyhow::Result;
use chrono::{DateTime, Utc};
use serde_json::Value;

/// A stream and the client that reads it.
#[derive(Clone, Debug)]
pub enum Stream {
    /// A Kinesis data stream, by name.
    Kinesis {
        /// Its client.
        client: aws_sdk_kinesis::Client,
        /// The stream's name.
        name: String,
    },
    /// A DynamoDB table's stream, by ARN.
    DynamoDb {
        /// Its client.
        client: aws_sdk_dynamodbstreams::Client,
        /// The stream's ARN.
        arn: String,
        /// The table's partition key attribute: a record's [`Record::partition_key`] is its
        /// value (the lowest-named key attribute while unknown). [`Stream::shards`] tells it.
        hash_key: Option<String>,
    },
}

/// One shard as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shard {
    /// The shard's id.
    pub id: String,
    /// `ParentShardId` and `AdjacentParentShardId` (a merge has two parents).
    pub parents: Vec<String>,
    /// Closed by a reshard (it has an ending sequence number): it takes no more records.
    pub closed: bool,
}

/// Every shard of a stream, and (DynamoDB) the table's partition key attribute.
#[derive(Clone, Debug, Default)]
pub struct Listing {
    /// The shards, in the order the service lists them.
    pub shards: Vec<Shard>,
    /// The table's partition key attribute (DynamoDB streams).
    pub hash_key: Option<String>,
}

/// Where reading a shard starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Position {
    /// At this sequence number (included).
    At(String),
    /// Right after this sequence number (a checkpoint).
    After(String),
    /// The oldest record.
    TrimHorizon,
    /// The tip: only records written from now on.
    Latest,
    /// The first record at or after this instant (milliseconds since the epoch). DynamoDB
    /// Streams has no such iterator: it reads from the oldest record, and the reader skips what
    /// is older ([`Position::skips_before`]).
    AtMillis(i64),
}

impl Position {
    /// Records that arrived before this instant are to be skipped by the reader of `stream`:
    /// those its iterator could not leave out.
    pub fn skips_before(&self, stream: &Stream) -> Option<DateTime<Utc>> {
        match (self, stream) {
            (Position::AtMillis(millis), Stream::DynamoDb { .. }) => {
                DateTime::from_timestamp_millis(*millis)
            }
            _ => None,
        }
    }
}

/// One record read from a shard, whichever the stream.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// The shard it was read from.
    pub shard_id: String,
    /// Its sequence number (decimal digits; wider than 128 bits on some services).
    pub sequence_number: String,
    /// Kinesis: the partition key; DynamoDB: the item's partition key value.
    pub partition_key: String,
    /// When the stream took it.
    pub arrival: DateTime<Utc>,
    /// What it carries.
    pub payload: Payload,
}

/// What a record carries.
#[derive(Clone, Debug, PartialEq)]
pub enum Payload {
    /// A Kinesis record's data.
    Kinesis(Vec<u8>),
    /// A DynamoDB stream record: its id, `INSERT`/`MODIFY`/`REMOVE`, and the `dynamodb` object
    /// in Lambda's JSON.
    DynamoDb {
        /// `eventID`.
        event_id: String,
        /// `eventName`.
        event_name: String,
        /// The `dynamodb` object.
        change: Value,
    },
}

/// One `GetRecords` answer.
#[derive(Clone, Debug, Default)]
pub struct Page {
    /// The records, in order.
    pub records: Vec<Record>,
    /// Where the next read goes on; none when the shard is closed and read to its end.
    pub next_iterator: Option<String>,
    /// How far behind the tip the read is (Kinesis; 0 for DynamoDB streams).
    pub millis_behind: i64,
}

impl Page {
    /// The answer of a shard whose end was read already: nothing more, and no iterator.
    pub fn end() -> Page {
        Page::default()
    }

    /// Whether the read is at the shard's tip (or end).
    pub fn at_tip(&self) -> bool {
        self.millis_behind == 0
    }
}

impl Stream {
    /// The stream's name (Kinesis) or ARN (DynamoDB), for messages.
    pub fn name(&self) -> &str {
        match self {
            Stream::Kinesis { name, .. } => name,
            Stream::DynamoDb { arn, .. } => arn,
        }
    }

    /// What identifies the stream across runs: its ARN and creation time (a stream deleted and
    /// created again under the same name, or a new emulator, is another stream).
    pub async fn identity(&self) -> Result<String> {
        match self {
            Stream::Kinesis { client, name } => kinesis::identity(client, name).await,
            Stream::DynamoDb { client, arn, .. } => dynamodb::identity(client, arn).await,
        }
    }

    /// Every shard (all pages).
    pub async fn shards(&self) -> Result<Listing> {
        match self {
            Stream::Kinesis { client, name } => kinesis::shards(client, name).await,
            Stream::DynamoDb { client, arn, .. } => dynamodb::shards(client, arn).await,
        }
    }

    /// An iterator on `shard` at `position`.
    pub async fn iterator(&self, shard: &str, position: &Position) -> Result<String> {
        match self {
            Stream::Kinesis { client, name } => {
                kinesis::iterator(client, name, shard, position).await
            }
            Stream::DynamoDb { client, arn, .. } => {
                dynamodb::iterator(client, arn, shard, position).await
            }
        }
    }

    /// One `GetRecords` page of `shard` from `iterator`, at most `limit` records.
    pub async fn read(&self, shard: &str, iterator: &str, limit: i32) -> Result<Page> {
        match self {
            Stream::Kinesis { client, .. } => kinesis::read(client, shard, iterator, limit).await,
            Stream::DynamoDb {
                client, hash_key, ..
            } => dynamodb::read(client, shard, iterator, limit, hash_key.as_deref()).await,
        }
    }
}

/// An SDK failure as an error that reads like the service's answer.
fn sdk_error<E: std::error::Error + 'static>(err: E) -> anyhow::Error {
    anyhow::anyhow!(herald::aws::error_text(&err))
}

fn utc(time: aws_smithy_types::DateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(time.secs(), time.subsec_nanos())
}
