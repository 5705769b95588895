//! Event sourcing: store events, not final state.
//!
//! An aggregate's state is the fold of its events ([`Aggregate::apply`]). The [`EventStore`] port
//! appends events at an expected version — optimistic concurrency: of two writers that both read
//! version N and append N+1, one wins and the other gets [`StoreError::VersionConflict`], reloads
//! and decides again ([`crate::event_sourcing::command::CommandService`] does exactly that). Several events are
//! appended atomically. Each stored event carries its version in the envelope
//! (`aggregateversion`), so every consumer downstream can tell a stale or out-of-order delivery
//! from a new one. Loads start from the latest snapshot when the store writes them, and upcast old
//! event versions first.
//!
//! Implementations: [`DynamoDbEventStore`] (one item per event; a conditional `PutItem` for one
//! event, a transaction for several) and, with the `test-util`
//! feature, `testing::InMemoryEventStore`.

mod dynamodb;

use std::future::Future;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::aws::limits::{MAX_ATTRIBUTE_CHARS, MAX_EVENT_BYTES};
use crate::aws::AwsError;
use crate::envelope::Envelope;

pub use dynamodb::{attr, is_snapshot_key, DynamoDbEventStore};

/// State rebuilt from events.
pub trait Aggregate: Default + Clone + Serialize + DeserializeOwned + Send + Sync {
    /// Apply one event (already upcast to its current version). Events the aggregate does not
    /// model should leave it as it is.
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
    VersionConflict {
        /// The aggregate.
        aggregate_id: String,
        /// The version the append expected.
        expected: u64,
    },
    /// More events than one atomic append can hold.
    #[error("{actual} events in one append; the limit is {limit}")]
    TooMany {
        /// The store's limit.
        limit: usize,
        /// How many were given.
        actual: usize,
    },
    /// An event would be larger, as stored and published (with the `aggregateversion` the store
    /// stamps on it), than the pipeline can carry: refused before it is stored, so that nothing
    /// the store accepts is later unpublishable or unloadable.
    #[error("event {event_id} ({event_type}) of {aggregate_id} would be {actual} bytes as stored, with its aggregateversion; the limit is {limit} bytes")]
    TooLarge {
        /// The aggregate.
        aggregate_id: String,
        /// The event's id.
        event_id: String,
        /// The event's type.
        event_type: String,
        /// [`MAX_EVENT_BYTES`].
        limit: usize,
        /// The stamped event's encoded bytes.
        actual: usize,
    },
    /// The aggregate id cannot be a store key: empty, or longer than
    /// [`MAX_ATTRIBUTE_CHARS`] (it is also the events' subject and Kinesis partition key).
    #[error("aggregate id is {actual} characters; it must be 1 to {limit}")]
    BadAggregateId {
        /// The most characters allowed.
        limit: usize,
        /// Its characters.
        actual: usize,
    },
    /// A stored item is not what the store wrote.
    #[error("stored item {0} is unreadable")]
    Corrupt(String),
    /// The database failed; [`AwsError::is_throttling`] tells whether a retry may help.
    #[error("event store: {0}")]
    Persistence(#[from] AwsError),
}

/// A stored event, as a full-store read returns it.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredEvent {
    /// The aggregate.
    pub aggregate_id: String,
    /// Its version in the aggregate.
    pub version: u64,
    /// The event, upcast to its current schema version.
    pub event: Envelope,
}

/// One page of a full-store read ([`EventStore::read_page`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EventPage {
    /// The page's events, in no particular order across aggregates.
    pub events: Vec<StoredEvent>,
    /// How many stored items the page read (snapshots included): a rebuild's progress.
    pub items_read: usize,
    /// Where the next page starts; `None` after the last page.
    pub next: Option<String>,
}

/// The event store port.
pub trait EventStore: Send + Sync {
    /// Every event of an aggregate after `version`, in order, upcast.
    fn events_after(
        &self,
        aggregate_id: &str,
        version: u64,
    ) -> impl Future<Output = Result<Vec<(u64, Envelope)>, StoreError>> + Send;

    /// Append `events` after `expected_version`, atomically, each stamped with its version;
    /// returns the new version. [`StoreError::VersionConflict`] when the slot is taken.
    fn append_events(
        &self,
        aggregate_id: &str,
        expected_version: u64,
        events: &[Envelope],
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Write a snapshot every this many versions (`None`: never).
    fn snapshot_every(&self) -> Option<u64>;

    /// The latest snapshot of an aggregate: its version and state as JSON.
    fn latest_snapshot(
        &self,
        aggregate_id: &str,
    ) -> impl Future<Output = Result<Option<(u64, String)>, StoreError>> + Send;

    /// Store a snapshot (state as JSON) at `version`.
    fn write_snapshot(
        &self,
        aggregate_id: &str,
        version: u64,
        state: String,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// One page of the whole store (events only), starting at `start` (a previous page's
    /// `next`; `None` for the first page) — what a projection rebuild folds.
    fn read_page(
        &self,
        start: Option<String>,
    ) -> impl Future<Output = Result<EventPage, StoreError>> + Send;

    /// How many items the store holds (events and snapshots): a rebuild's progress total.
    fn count(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Load an aggregate: the latest snapshot (if any) plus every event after it.
    fn load<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> impl Future<Output = Result<Loaded<A>, StoreError>> + Send {
        async move {
            let (mut version, mut state) = match self.latest_snapshot(aggregate_id).await? {
                Some((version, json)) => match serde_json::from_str::<A>(&json) {
                    Ok(state) => (version, state),
                    // A snapshot of an older shape of the state: fold from the start instead.
                    Err(_) => (0, A::default()),
                },
                None => (0, A::default()),
            };
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
    }

    /// Append `events` after `expected_version`; `after` is the state with the events applied,
    /// written as a snapshot when the append crosses a multiple of [`EventStore::snapshot_every`].
    fn append<A: Aggregate>(
        &self,
        aggregate_id: &str,
        expected_version: u64,
        events: &[Envelope],
        after: Option<&A>,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send {
        async move {
            let new_version = self
                .append_events(aggregate_id, expected_version, events)
                .await?;
            if let (Some(every), Some(state)) = (self.snapshot_every(), after) {
                // A snapshot is only an optimisation: a failed write costs a longer load.
                if new_version / every > expected_version / every {
                    let written = match serde_json::to_string(state) {
                        Ok(json) => self.write_snapshot(aggregate_id, new_version, json).await,
                        Err(err) => Err(StoreError::Corrupt(format!(
                            "snapshot of {aggregate_id}: {err}"
                        ))),
                    };
                    if let Err(err) = written {
                        tracing::warn!(aggregate_id, error = %err, "snapshot not written");
                    }
                }
            }
            Ok(new_version)
        }
    }
}

impl StoreError {
    /// Whether the append was refused for what it held (too large, a bad id): retrying the same
    /// append cannot succeed, so a command service answers the caller with a 4xx, not a 503.
    pub fn is_rejection(&self) -> bool {
        matches!(
            self,
            StoreError::TooLarge { .. } | StoreError::BadAggregateId { .. }
        )
    }
}

/// The events to store: each stamped with the version it will have, with its JSON as it will be
/// stored. Refuses the whole append when one stamped event is larger than the pipeline carries
/// (the check runs on the final bytes, `aggregateversion` included, because an event the store
/// accepts is published and loaded as stored, forever).
pub(crate) fn stamped(
    aggregate_id: &str,
    expected_version: u64,
    events: &[Envelope],
) -> Result<Vec<(u64, Envelope, String)>, StoreError> {
    let chars = aggregate_id.chars().count();
    if chars == 0 || chars > MAX_ATTRIBUTE_CHARS {
        return Err(StoreError::BadAggregateId {
            limit: MAX_ATTRIBUTE_CHARS,
            actual: chars,
        });
    }
    events
        .iter()
        .enumerate()
        .map(|(i, event)| {
            let version = expected_version + 1 + i as u64;
            let event = event.clone().with_aggregate_version(version);
            let json = event.to_json();
            if json.len() > MAX_EVENT_BYTES {
                return Err(StoreError::TooLarge {
                    aggregate_id: aggregate_id.to_string(),
                    event_id: event.id().to_string(),
                    event_type: event.event_type().to_string(),
                    limit: MAX_EVENT_BYTES,
                    actual: json.len(),
                });
            }
            Ok((version, event, json))
        })
        .collect()
}

/// A stored event's JSON read back: parsed, upcast, and given its version when it was stored
/// before versions were stamped.
pub(crate) fn decode(
    upcasters: &crate::envelope::upcasting::Upcasters,
    aggregate_id: &str,
    version: u64,
    json: &str,
) -> Result<Envelope, StoreError> {
    let event = Envelope::parse(json.as_bytes())
        .and_then(|e| upcasters.upcast(e))
        .map_err(|e| StoreError::Corrupt(format!("{aggregate_id}@{version}: {e}")))?;
    Ok(match event.aggregate_version() {
        Some(_) => event,
        None => event.with_aggregate_version(version),
    })
}
