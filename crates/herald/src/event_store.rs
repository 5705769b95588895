//! Event sourcing on DynamoDB: store events, not final state.
//!
//! One item per event, keyed by aggregate id (`aggregateId`, partition key) and version
//! (`version`, sort key, from 1). [`EventStore::append`] writes new events with a condition on
//! the version slot being free — optimistic concurrency: of two writers that both read version N
//! and append N+1, one wins and the other gets [`StoreError::VersionConflict`], reloads and decides
//! again. Several events are appended atomically (one `TransactWriteItems`, ≤ 100 events).
//! Each stored event carries its version in the envelope (`aggregateversion`), so every consumer
//! downstream can tell a stale or out-of-order delivery from a new one.
//! [`EventStore::load`] folds an aggregate's events into its state, starting from the latest
//! snapshot when snapshots are on (every N versions, in the same table under `snapshot#<id>`), and
//! upcasts old event versions first.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use aws_sdk_dynamodb::Client;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::aws::error_text;
use crate::envelope::Envelope;
use crate::limits::DYNAMODB_MAX_TRANSACT_ITEMS;
use crate::schema::Upcasters;

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

/// State rebuilt from events.
pub trait Aggregate: Default + Serialize + DeserializeOwned + Send {
    /// Apply one event (already upcast to its current version).
    fn apply(&mut self, event: &Envelope);
}

/// An aggregate's state and the version it is at (0: no events yet).
#[derive(Clone, Debug, PartialEq)]
pub struct Loaded<A> {
    /// The folded state.
    pub state: A,
    /// The last applied event's version.
    pub version: u64,
    /// How many events were read (after the snapshot, when there was one).
    pub events_read: usize,
}

/// What can go wrong; match on it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Someone appended to the aggregate since it was loaded: reload, decide again, retry.
    #[error("aggregate {aggregate_id} is no longer at version {expected}: another writer appended first")]
    VersionConflict { aggregate_id: String, expected: u64 },
    /// More events than one transaction can hold.
    #[error("{actual} events in one append; the limit is {limit}")]
    TooMany { limit: usize, actual: usize },
    /// A stored item is not what the store wrote.
    #[error("stored item {0} is unreadable")]
    Corrupt(String),
    /// DynamoDB failed.
    #[error("event store: {0}")]
    Persistence(String),
}

/// An event store on one DynamoDB table.
#[derive(Clone, Debug)]
pub struct EventStore {
    client: Client,
    table: String,
    snapshot_every: Option<u64>,
    upcasters: Upcasters,
}

impl EventStore {
    /// A store in `table` (partition key `aggregateId` S, sort key `version` N); no snapshots,
    /// herald's upcasters.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        EventStore {
            client,
            table: table.into(),
            snapshot_every: None,
            upcasters: Upcasters::herald(),
        }
    }

    /// Write a snapshot every `n` versions (loads then read at most `n - 1` events after it).
    pub fn with_snapshots_every(mut self, n: u64) -> Self {
        self.snapshot_every = Some(n.max(1));
        self
    }

    /// Load an aggregate: the latest snapshot (if any) plus every event after it.
    pub async fn load<A: Aggregate>(&self, aggregate_id: &str) -> Result<Loaded<A>, StoreError> {
        let (mut state, mut version) = self
            .latest_snapshot::<A>(aggregate_id)
            .await?
            .unwrap_or_default();
        let events = self.events_after(aggregate_id, version).await?;
        let events_read = events.len();
        for (v, event) in events {
            state.apply(&event);
            version = v;
        }
        Ok(Loaded {
            state,
            version,
            events_read,
        })
    }

    /// Every event of an aggregate after `version`, in order, upcast.
    pub async fn events_after(
        &self,
        aggregate_id: &str,
        version: u64,
    ) -> Result<Vec<(u64, Envelope)>, StoreError> {
        let mut out = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#id = :id AND #v > :v")
                .expression_attribute_names("#id", attr::AGGREGATE_ID)
                .expression_attribute_names("#v", attr::VERSION)
                .expression_attribute_values(":id", AttributeValue::S(aggregate_id.to_string()))
                .expression_attribute_values(":v", AttributeValue::N(version.to_string()))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| StoreError::Persistence(error_text(&e)))?;
            for item in page.items() {
                let v = number(item, attr::VERSION)
                    .ok_or_else(|| StoreError::Corrupt(aggregate_id.to_string()))?;
                out.push((v, self.decode(aggregate_id, v, item)?));
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(out);
            }
        }
    }

    fn decode(
        &self,
        aggregate_id: &str,
        version: u64,
        item: &HashMap<String, AttributeValue>,
    ) -> Result<Envelope, StoreError> {
        let json = item
            .get(attr::EVENT)
            .and_then(|e| e.as_s().ok())
            .ok_or_else(|| StoreError::Corrupt(format!("{aggregate_id}@{version}")))?;
        let event = Envelope::parse(json.as_bytes())
            .and_then(|e| self.upcasters.upcast(e))
            .map_err(|e| StoreError::Corrupt(format!("{aggregate_id}@{version}: {e}")))?;
        // Events stored before versions were stamped get theirs from the item's key.
        Ok(match event.aggregate_version() {
            Some(_) => event,
            None => event.with_aggregate_version(version),
        })
    }

    /// Append `events` after `expected_version`, atomically; returns the new version. `after` is
    /// the state with the events applied, for the snapshot (pass it when snapshots are on).
    pub async fn append<A: Aggregate>(
        &self,
        aggregate_id: &str,
        expected_version: u64,
        events: &[Envelope],
        after: Option<&A>,
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
        let items = events
            .iter()
            .enumerate()
            .map(|(i, event)| {
                let version = expected_version + 1 + i as u64;
                let event = event.clone().with_aggregate_version(version);
                Put::builder()
                    .table_name(&self.table)
                    .item(
                        attr::AGGREGATE_ID,
                        AttributeValue::S(aggregate_id.to_string()),
                    )
                    .item(attr::VERSION, AttributeValue::N(version.to_string()))
                    .item(attr::EVENT, AttributeValue::S(event.to_json()))
                    .item(
                        attr::TYPE,
                        AttributeValue::S(event.event_type().to_string()),
                    )
                    .condition_expression("attribute_not_exists(#v)")
                    .expression_attribute_names("#v", attr::VERSION)
                    .build()
                    .map(|put| TransactWriteItem::builder().put(put).build())
                    .map_err(|e| StoreError::Persistence(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => {}
            Err(err) if is_condition_failure(&err) => {
                return Err(StoreError::VersionConflict {
                    aggregate_id: aggregate_id.to_string(),
                    expected: expected_version,
                })
            }
            Err(err) => return Err(StoreError::Persistence(error_text(&err))),
        }
        let new_version = expected_version + events.len() as u64;
        if let (Some(every), Some(state)) = (self.snapshot_every, after) {
            // A snapshot whenever the append crossed a multiple of `every`. It is only an
            // optimisation: a failed snapshot write costs a longer load, nothing else.
            if new_version / every > expected_version / every {
                if let Err(err) = self.write_snapshot(aggregate_id, new_version, state).await {
                    tracing::warn!(aggregate_id, error = %err, "snapshot not written");
                }
            }
        }
        Ok(new_version)
    }

    /// Read the whole store (events only, snapshots skipped), a page at a time, in no particular
    /// order across aggregates — what a projection rebuild folds.
    pub fn scan(&self) -> EventPages<'_> {
        EventPages {
            store: self,
            start: None,
            done: false,
        }
    }

    /// How many items the store holds (events and snapshots): a rebuild's progress total.
    pub async fn count(&self) -> Result<u64, StoreError> {
        let mut total = 0u64;
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .select(aws_sdk_dynamodb::types::Select::Count)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| StoreError::Persistence(error_text(&e)))?;
            total += page.count().max(0) as u64;
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(total);
            }
        }
    }

    async fn write_snapshot<A: Aggregate>(
        &self,
        aggregate_id: &str,
        version: u64,
        state: &A,
    ) -> Result<(), StoreError> {
        let json =
            serde_json::to_string(state).map_err(|e| StoreError::Persistence(e.to_string()))?;
        self.client
            .put_item()
            .table_name(&self.table)
            .item(
                attr::AGGREGATE_ID,
                AttributeValue::S(snapshot_key(aggregate_id)),
            )
            .item(attr::VERSION, AttributeValue::N(version.to_string()))
            .item(attr::STATE, AttributeValue::S(json))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| StoreError::Persistence(error_text(&e)))
    }

    async fn latest_snapshot<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Option<(A, u64)>, StoreError> {
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
            .map_err(|e| StoreError::Persistence(error_text(&e)))?;
        let Some(item) = page.items().first() else {
            return Ok(None);
        };
        let version = number(item, attr::VERSION)
            .ok_or_else(|| StoreError::Corrupt(snapshot_key(aggregate_id)))?;
        let state = item
            .get(attr::STATE)
            .and_then(|s| s.as_s().ok())
            .and_then(|s| serde_json::from_str(s).ok())
            .ok_or_else(|| StoreError::Corrupt(snapshot_key(aggregate_id)))?;
        Ok(Some((state, version)))
    }
}

/// A stored event, as [`EventStore::scan`] returns it.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredEvent {
    /// The aggregate.
    pub aggregate_id: String,
    /// Its version in the aggregate.
    pub version: u64,
    /// The event, upcast to its current schema version.
    pub event: Envelope,
}

/// Pages of a full-store scan.
pub struct EventPages<'a> {
    store: &'a EventStore,
    start: Option<HashMap<String, AttributeValue>>,
    done: bool,
}

impl EventPages<'_> {
    /// The next page of events with the number of items it read (snapshots included), or `None`
    /// at the end.
    pub async fn next_page(&mut self) -> Result<Option<(Vec<StoredEvent>, usize)>, StoreError> {
        if self.done {
            return Ok(None);
        }
        let page = self
            .store
            .client
            .scan()
            .table_name(&self.store.table)
            .consistent_read(true)
            .set_exclusive_start_key(self.start.take())
            .send()
            .await
            .map_err(|e| StoreError::Persistence(error_text(&e)))?;
        self.start = page.last_evaluated_key.clone();
        self.done = self.start.is_none();
        let read = page.items().len();
        let mut events = Vec::with_capacity(read);
        for item in page.items() {
            let Some(aggregate_id) = item.get(attr::AGGREGATE_ID).and_then(|a| a.as_s().ok())
            else {
                return Err(StoreError::Corrupt("an item without aggregateId".into()));
            };
            if aggregate_id.starts_with(SNAPSHOT_PREFIX) {
                continue;
            }
            let version = number(item, attr::VERSION)
                .ok_or_else(|| StoreError::Corrupt(aggregate_id.clone()))?;
            let event = self.store.decode(aggregate_id, version, item)?;
            events.push(StoredEvent {
                aggregate_id: aggregate_id.clone(),
                version,
                event,
            });
        }
        Ok(Some((events, read)))
    }
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
