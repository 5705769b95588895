//! In-memory implementations of herald's ports, for unit tests that run without AWS or an
//! emulator (feature `test-util`): the stream ([`InMemoryStream`]), the bus ([`InMemoryBus`]),
//! dead letters ([`InMemoryDeadLetters`]), the event store ([`InMemoryEventStore`]) and the
//! idempotency store ([`InMemoryIdempotencyStore`], or simply
//! [`crate::idempotency::Idempotency::in_memory`]), plus helpers that build the Lambda events a
//! handler receives ([`sqs_event`]).
//!
//! They keep what they were sent, so a test asserts on it; each can be told to fail, so a test
//! can check what a handler does when AWS does.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};

use crate::aws::dead_letter::{DeadLetter, DeadLetterError, DeadLetters};
use crate::envelope::upcasting::Upcasters;
use crate::envelope::Envelope;
use crate::event_sourcing::event_store::{
    decode, stamped, EventPage, EventStore, StoreError, StoredEvent,
};
use crate::producer::{EventStream, PutOutcome, StreamError, StreamRecord};
use crate::router::{BusError, BusMessage, BusOutcome, EventBus};

pub use crate::idempotency::InMemoryStore as InMemoryIdempotencyStore;

/// A stream that keeps every record written to it, in order.
#[derive(Debug, Default)]
pub struct InMemoryStream {
    records: Mutex<Vec<StreamRecord>>,
    down: AtomicBool,
}

impl InMemoryStream {
    /// An empty, working stream.
    pub fn new() -> Self {
        InMemoryStream::default()
    }

    /// Make every later `PutRecords` fail as a whole (`true`) or work again (`false`).
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// The records written so far.
    pub fn records(&self) -> Vec<StreamRecord> {
        self.records.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// The events written so far (records that are not envelopes are skipped).
    pub fn events(&self) -> Vec<Envelope> {
        self.records()
            .iter()
            .filter_map(|r| Envelope::parse(&r.data).ok())
            .collect()
    }
}

impl EventStream for InMemoryStream {
    async fn put_records(&self, records: &[StreamRecord]) -> Result<Vec<PutOutcome>, StreamError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StreamError::other(
                "the stream is down (InMemoryStream::set_down)",
            ));
        }
        let mut written = self
            .records
            .lock()
            .map_err(|e| StreamError::other(e.to_string()))?;
        Ok(records
            .iter()
            .map(|record| {
                written.push(record.clone());
                PutOutcome::Written {
                    shard_id: "shardId-000000000000".into(),
                    sequence_number: written.len().to_string(),
                }
            })
            .collect())
    }
}

/// A bus that keeps every message published to it.
#[derive(Debug, Default)]
pub struct InMemoryBus {
    messages: Mutex<Vec<BusMessage<'static>>>,
    down: AtomicBool,
}

impl InMemoryBus {
    /// An empty, working bus.
    pub fn new() -> Self {
        InMemoryBus::default()
    }

    /// Make every later `PublishBatch` fail as a whole (`true`) or work again (`false`).
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// The messages published so far.
    pub fn messages(&self) -> Vec<BusMessage<'static>> {
        self.messages.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

impl EventBus for InMemoryBus {
    async fn publish_batch(&self, entries: &[BusMessage<'_>]) -> Result<Vec<BusOutcome>, BusError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(BusError::other("the bus is down (InMemoryBus::set_down)"));
        }
        let mut published = self
            .messages
            .lock()
            .map_err(|e| BusError::other(e.to_string()))?;
        published.extend(entries.iter().cloned().map(BusMessage::into_owned));
        Ok(entries.iter().map(|_| BusOutcome::Published).collect())
    }
}

/// Dead letters kept in memory.
#[derive(Debug, Default)]
pub struct InMemoryDeadLetters {
    letters: Mutex<Vec<DeadLetter>>,
}

impl InMemoryDeadLetters {
    /// No letters yet.
    pub fn new() -> Self {
        InMemoryDeadLetters::default()
    }

    /// The letters sent so far.
    pub fn letters(&self) -> Vec<DeadLetter> {
        self.letters.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl DeadLetters for InMemoryDeadLetters {
    async fn send(&self, letters: &[DeadLetter]) -> Vec<Result<(), DeadLetterError>> {
        match self.letters.lock() {
            Ok(mut kept) => {
                kept.extend_from_slice(letters);
                letters.iter().map(|_| Ok(())).collect()
            }
            Err(e) => letters
                .iter()
                .map(|_| Err(DeadLetterError::other(e.to_string())))
                .collect(),
        }
    }
}

/// An event store in memory, with the same rules as the DynamoDB one: versions from 1, an
/// append at a taken version is a [`StoreError::VersionConflict`], events are stamped with their
/// version and upcast when read, snapshots every N versions.
#[derive(Debug, Default)]
pub struct InMemoryEventStore {
    /// Aggregate id → its events as stored JSON, in version order.
    events: Mutex<BTreeMap<String, Vec<String>>>,
    snapshots: Mutex<BTreeMap<String, (u64, String)>>,
    snapshot_every: Option<u64>,
    upcasters: Upcasters,
}

impl InMemoryEventStore {
    /// An empty store, no snapshots, no upcasters.
    pub fn new() -> Self {
        InMemoryEventStore::default()
    }

    /// Snapshot every `n` versions.
    pub fn with_snapshots_every(mut self, n: u64) -> Self {
        self.snapshot_every = Some(n.max(1));
        self
    }

    /// Upcast events when they are read.
    pub fn with_upcasters(mut self, upcasters: Upcasters) -> Self {
        self.upcasters = upcasters;
        self
    }

    /// Store `event` as it is (no stamping): an event written by an older version of the code.
    pub fn insert_raw(&self, aggregate_id: &str, event: &Envelope) {
        if let Ok(mut events) = self.events.lock() {
            events
                .entry(aggregate_id.to_string())
                .or_default()
                .push(event.to_json());
        }
    }

    fn lock_error<T>(err: std::sync::PoisonError<T>) -> StoreError {
        StoreError::Corrupt(format!("in-memory store poisoned: {err}"))
    }
}

impl EventStore for InMemoryEventStore {
    async fn events_after(
        &self,
        aggregate_id: &str,
        version: u64,
    ) -> Result<Vec<(u64, Envelope)>, StoreError> {
        let events = self.events.lock().map_err(Self::lock_error)?;
        let Some(stored) = events.get(aggregate_id) else {
            return Ok(Vec::new());
        };
        stored
            .iter()
            .enumerate()
            .map(|(i, json)| (i as u64 + 1, json))
            .filter(|(v, _)| *v > version)
            .map(|(v, json)| Ok((v, decode(&self.upcasters, aggregate_id, v, json)?)))
            .collect()
    }

    async fn append_events(
        &self,
        aggregate_id: &str,
        expected_version: u64,
        events: &[Envelope],
    ) -> Result<u64, StoreError> {
        let stamped = stamped(aggregate_id, expected_version, events)?;
        let mut all = self.events.lock().map_err(Self::lock_error)?;
        let stored = all.entry(aggregate_id.to_string()).or_default();
        if stored.len() as u64 != expected_version {
            return Err(StoreError::VersionConflict {
                aggregate_id: aggregate_id.to_string(),
                expected: expected_version,
            });
        }
        stored.extend(stamped.into_iter().map(|(_, _, json)| json));
        Ok(stored.len() as u64)
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
        let snapshots = self.snapshots.lock().map_err(Self::lock_error)?;
        Ok(snapshots.get(aggregate_id).cloned())
    }

    async fn write_snapshot(
        &self,
        aggregate_id: &str,
        version: u64,
        state: String,
    ) -> Result<(), StoreError> {
        let mut snapshots = self.snapshots.lock().map_err(Self::lock_error)?;
        snapshots.insert(aggregate_id.to_string(), (version, state));
        Ok(())
    }

    async fn read_page(&self, start: Option<String>) -> Result<EventPage, StoreError> {
        // One page holds everything: tests' stores are small.
        if start.is_some() {
            return Ok(EventPage::default());
        }
        let all = self.events.lock().map_err(Self::lock_error)?;
        let mut events = Vec::new();
        for (aggregate_id, stored) in all.iter() {
            for (i, json) in stored.iter().enumerate() {
                let version = i as u64 + 1;
                events.push(StoredEvent {
                    aggregate_id: aggregate_id.clone(),
                    version,
                    event: decode(&self.upcasters, aggregate_id, version, json)?,
                });
            }
        }
        let snapshots = self.snapshots.lock().map_err(Self::lock_error)?.len();
        Ok(EventPage {
            items_read: events.len() + snapshots,
            events,
            next: None,
        })
    }

    async fn count(&self) -> Result<u64, StoreError> {
        let events: usize = self
            .events
            .lock()
            .map_err(Self::lock_error)?
            .values()
            .map(Vec::len)
            .sum();
        let snapshots = self.snapshots.lock().map_err(Self::lock_error)?.len();
        Ok((events + snapshots) as u64)
    }
}

/// The SQS event Lambda would deliver for `events` (raw SNS delivery, first receive), message ids
/// `m-0`, `m-1`, ...
pub fn sqs_event(events: &[Envelope]) -> SqsEvent {
    let mut batch = SqsEvent::default();
    batch.records = events
        .iter()
        .enumerate()
        .map(|(i, event)| sqs_message(&format!("m-{i}"), &event.to_json(), 1))
        .collect();
    batch
}

/// One SQS message with `body`, received `receives` times.
pub fn sqs_message(message_id: &str, body: &str, receives: u32) -> SqsMessage {
    let mut message = SqsMessage::default();
    message.message_id = Some(message_id.into());
    message.body = Some(body.into());
    message
        .attributes
        .insert("ApproximateReceiveCount".into(), receives.to_string());
    message
}
