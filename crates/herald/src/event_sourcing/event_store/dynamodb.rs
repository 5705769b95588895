//! [`DynamoDbEventStore`]: the event store on one DynamoDB table.
//!
//! One item per event, keyed by aggregate id (`aggregateId`, partition key) and version
//! (`version`, sort key, from 1). An append is one `TransactWriteItems` (≤ 100 events) whose
//! every item is conditional on its version slot being free. Snapshots live in the same table
//! under `snapshot#<id>`. The table's stream (`NEW_IMAGE`) is what [`crate::event_sourcing::publisher`] reads.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, Select, TransactWriteItem};
use aws_sdk_dynamodb::Client;

use super::{decode, stamped, EventPage, EventStore, StoreError, StoredEvent};
use crate::aws::limits::DYNAMODB_MAX_TRANSACT_ITEMS;
use crate::aws::AwsError;
use crate::envelope::upcasting::Upcasters;
use crate::envelope::Envelope;

/// Attribute names of the event store table.
pub mod attr {
    /// Partition key: the aggregate id (or `snapshot#<id>` for snapshots).
    pub const AGGREGATE_ID: &str = "aggregateId";
    /// Sort key: the version (1, 2, ...).
    pub const VERSION: &str = "version";
    /// The event, as envelope JSON.
    pub const EVENT: &str = "event";
    /// The event type (for reading the table by eye and for stream filters).
    pub const TYPE: &str = "type";
    /// A snapshot's state, as JSON.
    pub const STATE: &str = "state";
}

/// An event store on one DynamoDB table.
#[derive(Clone, Debug)]
pub struct DynamoDbEventStore {
    client: Client,
    table: String,
    snapshot_every: Option<u64>,
    upcasters: Upcasters,
}

impl DynamoDbEventStore {
    /// A store in `table` (partition key `aggregateId` S, sort key `version` N); no snapshots,
    /// no upcasters.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoDbEventStore {
            client,
            table: table.into(),
            snapshot_every: None,
            upcasters: Upcasters::new(),
        }
    }

    /// Write a snapshot every `n` versions (loads then read at most `n - 1` events after it).
    pub fn with_snapshots_every(mut self, n: u64) -> Self {
        self.snapshot_every = Some(n.max(1));
        self
    }

    /// Upcast stored events with `upcasters` when they are read.
    pub fn with_upcasters(mut self, upcasters: Upcasters) -> Self {
        self.upcasters = upcasters;
        self
    }

    /// The table.
    pub fn table(&self) -> &str {
        &self.table
    }

    fn event_of(
        &self,
        aggregate_id: &str,
        version: u64,
        item: &HashMap<String, AttributeValue>,
    ) -> Result<Envelope, StoreError> {
        let json = item
            .get(attr::EVENT)
            .and_then(|e| e.as_s().ok())
            .ok_or_else(|| StoreError::Corrupt(format!("{aggregate_id}@{version}")))?;
        decode(&self.upcasters, aggregate_id, version, json)
    }
}

impl EventStore for DynamoDbEventStore {
    async fn events_after(
        &self,
        aggregate_id: &str,
        version: u64,
    ) -> Result<Vec<(u64, Envelope)>, StoreError> {
        let pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("#id = :id AND #v > :v")
            .expression_attribute_names("#id", attr::AGGREGATE_ID)
            .expression_attribute_names("#v", attr::VERSION)
            .expression_attribute_values(":id", AttributeValue::S(aggregate_id.to_string()))
            .expression_attribute_values(":v", AttributeValue::N(version.to_string()))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(AwsError::new)?;
        pages
            .iter()
            .map(|item| {
                let v = number(item, attr::VERSION)
                    .ok_or_else(|| StoreError::Corrupt(aggregate_id.to_string()))?;
                Ok((v, self.event_of(aggregate_id, v, item)?))
            })
            .collect()
    }

    async fn append_events(
        &self,
        aggregate_id: &str,
        expected_version: u64,
        events: &[Envelope],
    ) -> Result<u64, StoreError> {
        if events.is_empty() {
            return Ok(expected_version);
        }
        if events.len() > DYNAMODB_MAX_TRANSACT_ITEMS {
            return Err(StoreError::TooMany {
                limit: DYNAMODB_MAX_TRANSACT_ITEMS,
                actual: events.len(),
            });
        }
        // Each event one item, created only if its version is free.
        let items: Vec<HashMap<String, AttributeValue>> =
            stamped(aggregate_id, expected_version, events)?
                .into_iter()
                .map(|(version, event, json)| {
                    HashMap::from([
                        (
                            attr::AGGREGATE_ID.to_string(),
                            AttributeValue::S(aggregate_id.to_string()),
                        ),
                        (
                            attr::VERSION.to_string(),
                            AttributeValue::N(version.to_string()),
                        ),
                        (attr::EVENT.to_string(), AttributeValue::S(json)),
                        (
                            attr::TYPE.to_string(),
                            AttributeValue::S(event.event_type().to_string()),
                        ),
                    ])
                })
                .collect();
        const VERSION_FREE: &str = "attribute_not_exists(#v)";
        let conflict = || StoreError::VersionConflict {
            aggregate_id: aggregate_id.to_string(),
            expected: expected_version,
        };
        // One event is one item: its conditional put is as atomic as a transaction, at half the
        // write units (a transaction item bills twice).
        if let [item] = items.as_slice() {
            return match self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item.clone()))
                .condition_expression(VERSION_FREE)
                .expression_attribute_names("#v", attr::VERSION)
                .send()
                .await
            {
                Ok(_) => Ok(expected_version + 1),
                Err(err)
                    if matches!(
                        err.as_service_error(),
                        Some(PutItemError::ConditionalCheckFailedException(_))
                    ) =>
                {
                    Err(conflict())
                }
                Err(err) => Err(AwsError::new(err).into()),
            };
        }
        let items = items
            .into_iter()
            .map(|item| {
                Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(item))
                    .condition_expression(VERSION_FREE)
                    .expression_attribute_names("#v", attr::VERSION)
                    .build()
                    .map(|put| TransactWriteItem::builder().put(put).build())
                    .map_err(|e| StoreError::Persistence(AwsError::other(e.to_string())))
            })
            .collect::<Result<Vec<_>, _>>()?;
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => Ok(expected_version + events.len() as u64),
            Err(err) if is_condition_failure(&err) => Err(conflict()),
            Err(err) => Err(AwsError::new(err).into()),
        }
    }

    fn snapshot_every(&self) -> Option<u64> {
        self.snapshot_every
    }

    async fn latest_snapshot(
        &self,
        aggregate_id: &str,
    ) -> Result<Option<(u64, String)>, StoreError> {
        if self.snapshot_every.is_none() {
            return Ok(None);
        }
        let page = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("#id = :id")
            .expression_attribute_names("#id", attr::AGGREGATE_ID)
            .expression_attribute_values(":id", AttributeValue::S(snapshot_key(aggregate_id)))
            .scan_index_forward(false)
            .limit(1)
            .consistent_read(true)
            .send()
            .await
            .map_err(AwsError::new)?;
        let Some(item) = page.items().first() else {
            return Ok(None);
        };
        let version = number(item, attr::VERSION)
            .ok_or_else(|| StoreError::Corrupt(snapshot_key(aggregate_id)))?;
        let state = item
            .get(attr::STATE)
            .and_then(|s| s.as_s().ok())
            .ok_or_else(|| StoreError::Corrupt(snapshot_key(aggregate_id)))?;
        Ok(Some((version, state.clone())))
    }

    async fn write_snapshot(
        &self,
        aggregate_id: &str,
        version: u64,
        state: String,
    ) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item(
                attr::AGGREGATE_ID,
                AttributeValue::S(snapshot_key(aggregate_id)),
            )
            .item(attr::VERSION, AttributeValue::N(version.to_string()))
            .item(attr::STATE, AttributeValue::S(state))
            .send()
            .await
            .map_err(AwsError::new)?;
        Ok(())
    }

    async fn read_page(&self, start: Option<String>) -> Result<EventPage, StoreError> {
        let start = start.map(|token| decode_start(&token)).transpose()?;
        let page = self
            .client
            .scan()
            .table_name(&self.table)
            .consistent_read(true)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(AwsError::new)?;
        let items_read = page.items().len();
        let mut events = Vec::with_capacity(items_read);
        for item in page.items() {
            let Some(aggregate_id) = item.get(attr::AGGREGATE_ID).and_then(|a| a.as_s().ok())
            else {
                return Err(StoreError::Corrupt("an item without aggregateId".into()));
            };
            if is_snapshot_key(aggregate_id) {
                continue;
            }
            let version = number(item, attr::VERSION)
                .ok_or_else(|| StoreError::Corrupt(aggregate_id.clone()))?;
            let event = self.event_of(aggregate_id, version, item)?;
            events.push(StoredEvent {
                aggregate_id: aggregate_id.clone(),
                version,
                event,
            });
        }
        Ok(EventPage {
            events,
            items_read,
            next: page.last_evaluated_key.as_ref().map(encode_start),
        })
    }

    async fn count(&self) -> Result<u64, StoreError> {
        let pages = self
            .client
            .scan()
            .table_name(&self.table)
            .select(Select::Count)
            .into_paginator()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(AwsError::new)?;
        Ok(pages.iter().map(|p| p.count().max(0) as u64).sum())
    }
}

/// A scan position as an opaque token: the item key (aggregate id, version).
fn encode_start(key: &HashMap<String, AttributeValue>) -> String {
    let id = key
        .get(attr::AGGREGATE_ID)
        .and_then(|a| a.as_s().ok())
        .cloned()
        .unwrap_or_default();
    let version = number(key, attr::VERSION).unwrap_or_default();
    format!("{version}|{id}")
}

fn decode_start(token: &str) -> Result<HashMap<String, AttributeValue>, StoreError> {
    let (version, id) = token
        .split_once('|')
        .ok_or_else(|| StoreError::Corrupt(format!("scan position {token}")))?;
    Ok(HashMap::from([
        (
            attr::AGGREGATE_ID.to_string(),
            AttributeValue::S(id.to_string()),
        ),
        (
            attr::VERSION.to_string(),
            AttributeValue::N(version.to_string()),
        ),
    ]))
}

const SNAPSHOT_PREFIX: &str = "snapshot#";

/// Whether a store item key is a snapshot rather than an event (stream consumers skip those).
pub fn is_snapshot_key(aggregate_id: &str) -> bool {
    aggregate_id.starts_with(SNAPSHOT_PREFIX)
}

fn snapshot_key(aggregate_id: &str) -> String {
    format!("{SNAPSHOT_PREFIX}{aggregate_id}")
}

fn number(item: &HashMap<String, AttributeValue>, name: &str) -> Option<u64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
}

fn is_condition_failure(err: &SdkError<TransactWriteItemsError>) -> bool {
    match err.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) => {
            cancelled
                .cancellation_reasons()
                .iter()
                .any(|r| r.code() == Some("ConditionalCheckFailed"))
                || (cancelled.cancellation_reasons().is_empty()
                    && cancelled
                        .message()
                        .is_some_and(|m| m.contains("ConditionalCheckFailed")))
        }
        _ => false,
    }
}
