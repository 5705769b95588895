//! Commands on event-sourced aggregates: load, decide, append at the loaded version, and on a
//! version conflict load and decide again.
//!
//! A [`Command`] decides, from an [`Aggregate`]'s current state, which events it causes (or
//! refuses). [`CommandService::execute`] runs it against an [`EventStore`]:
//!
//! 1. load the aggregate (snapshot + later events, upcast) — except on the first try of a
//!    command that [`Command::creates`] an aggregate, which assumes it is new;
//! 2. `decide` on the state;
//! 3. append the events at the loaded version — optimistic concurrency;
//! 4. when another writer appended first, wait a little and start again, up to
//!    [`CommandConfig::max_attempts`] times, then [`CommandError::Contended`].
//!
//! Commands are safe to retry when their events have deterministic ids: a command that already
//! took effect is refused by the aggregate (the account exists, the account is closed), and
//! [`Command::is_outcome_of`] recognises the stored event it caused, so the service answers the
//! original outcome (`replayed: true`) instead of the refusal.
//!
//! The service never writes to the stream: the store's change stream feeds the
//! [`crate::event_sourcing::publisher`], so an event is published if and only if it was appended.
//!
//! ```
//! use herald::event_sourcing::command::{Command, CommandService};
//! use herald::event_sourcing::event_store::Aggregate;
//! use herald::testing::InMemoryEventStore;
//! use herald::Envelope;
//!
//! #[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
//! struct Counter { value: u64 }
//!
//! impl Aggregate for Counter {
//!     fn apply(&mut self, event: &Envelope) {
//!         if event.event_type() == "incremented" { self.value += 1 }
//!     }
//! }
//!
//! struct Increment(String);
//!
//! impl Command<Counter> for Increment {
//!     type Error = herald::ValidationError;
//!     fn aggregate_id(&self) -> &str { &self.0 }
//!     fn decide(&self, _state: &Counter) -> Result<Vec<Envelope>, Self::Error> {
//!         Ok(vec![Envelope::builder("incremented", "example/counter").subject(self.0.clone()).build()?])
//!     }
//! }
//!
//! # tokio_test_block(async {
//! let service = CommandService::new(InMemoryEventStore::new());
//! let outcome = service.execute(&Increment("c-1".into())).await.unwrap();
//! assert_eq!(outcome.version, 1);
//! # });
//! # fn tokio_test_block(f: impl std::future::Future<Output = ()>) {
//! #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
//! # }
//! ```

use std::marker::PhantomData;
use std::time::Duration;

use serde::Serialize;

use crate::envelope::Envelope;
use crate::event_sourcing::event_store::{Aggregate, EventStore, Loaded, StoreError};

/// One command on one aggregate.
pub trait Command<A: Aggregate>: Send + Sync {
    /// Why the aggregate refuses the command.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The aggregate the command addresses.
    fn aggregate_id(&self) -> &str;

    /// The events the command causes in `state`, or why it is refused. Pure: it may run several
    /// times (once per attempt).
    fn decide(&self, state: &A) -> Result<Vec<Envelope>, Self::Error>;

    /// Whether `event`, already stored, is this very command's earlier outcome (same event id
    /// and same data): then a refusal is answered as a replay. Default: never.
    fn is_outcome_of(&self, event: &Envelope) -> bool {
        let _ = event;
        false
    }

    /// Whether the command starts a new aggregate (one an existing aggregate refuses, such as
    /// placing an order under a new id). Then the first attempt decides on the default state
    /// and appends at version 0 without loading: two reads fewer for the usual case. When the
    /// aggregate exists after all (a client's retry), the append fails its condition and the
    /// service loads and decides as for any other command. Default: no.
    fn creates(&self) -> bool {
        false
    }
}

/// Settings.
#[derive(Clone, Debug)]
pub struct CommandConfig {
    /// Loads-and-decides per command before a contended aggregate is reported. Default 5.
    pub max_attempts: u32,
    /// Pause before the second attempt, doubled after each conflict. Default 10 ms.
    pub conflict_backoff: Duration,
}

impl Default for CommandConfig {
    fn default() -> Self {
        CommandConfig {
            max_attempts: 5,
            conflict_backoff: Duration::from_millis(10),
        }
    }
}

/// What a command did.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandOutcome {
    /// The aggregate.
    pub aggregate_id: String,
    /// The aggregate's version after the command (when replayed: after the original command).
    pub version: u64,
    /// The events the command appended (or, when replayed, had appended before).
    pub events: Vec<AppendedEvent>,
    /// The command had already taken effect; nothing new was appended.
    pub replayed: bool,
}

/// One appended event, as a command reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppendedEvent {
    /// Event id.
    pub id: String,
    /// Event type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Its version in the aggregate.
    pub version: u64,
    /// Correlation id (follow it with `herald trace`).
    pub correlation_id: String,
}

impl AppendedEvent {
    fn of(event: &Envelope, version: u64) -> Self {
        AppendedEvent {
            id: event.id().to_string(),
            event_type: event.event_type().to_string(),
            version,
            correlation_id: event.correlation_id().to_string(),
        }
    }
}

/// Why a command did not take effect; match on it.
#[derive(Debug, thiserror::Error)]
pub enum CommandError<E> {
    /// The aggregate refused the command.
    #[error(transparent)]
    Rejected(E),
    /// Other writers kept appending to the aggregate between every load and append.
    #[error("{aggregate_id} changed under {attempts} attempts in a row; try again")]
    Contended {
        /// The aggregate.
        aggregate_id: String,
        /// Attempts made.
        attempts: u32,
    },
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
}

/// Runs commands on aggregates of type `A` kept in `S`.
#[derive(Debug)]
pub struct CommandService<A, S> {
    store: S,
    config: CommandConfig,
    aggregate: PhantomData<fn() -> A>,
}

impl<A: Aggregate, S: EventStore> CommandService<A, S> {
    /// A service on `store` with default settings.
    pub fn new(store: S) -> Self {
        CommandService::with_config(store, CommandConfig::default())
    }

    /// A service with explicit settings.
    pub fn with_config(store: S, config: CommandConfig) -> Self {
        CommandService {
            store,
            config,
            aggregate: PhantomData,
        }
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Load, decide, append; on a version conflict, again. A refusal whose command had already
    /// taken effect is answered with the original outcome.
    pub async fn execute<C: Command<A>>(
        &self,
        command: &C,
    ) -> Result<CommandOutcome, CommandError<C::Error>> {
        let aggregate_id = command.aggregate_id();
        let mut pause = self.config.conflict_backoff;
        let attempts = self.config.max_attempts.max(1);
        // A creation assumes the aggregate is new until its append says otherwise; that first
        // try is not one of the attempts a contended aggregate is allowed.
        let mut assume_new = command.creates();
        let mut attempt = 0;
        while attempt < attempts {
            if !assume_new {
                attempt += 1;
            }
            let loaded = if assume_new {
                Loaded {
                    state: A::default(),
                    version: 0,
                    events_read: 0,
                }
            } else {
                self.store
                    .load::<A>(aggregate_id)
                    .await
                    .map_err(CommandError::Store)?
            };
            let events = match command.decide(&loaded.state) {
                Ok(events) => events,
                Err(refused) if loaded.version > 0 => {
                    return match self.replay(command).await? {
                        Some(outcome) => Ok(outcome),
                        None => Err(CommandError::Rejected(refused)),
                    }
                }
                Err(refused) => return Err(CommandError::Rejected(refused)),
            };
            let mut after = loaded.state.clone();
            for event in &events {
                after.apply(event);
            }
            match self
                .store
                .append(aggregate_id, loaded.version, &events, Some(&after))
                .await
            {
                Ok(version) => {
                    let first = version + 1 - events.len() as u64;
                    let appended = events
                        .iter()
                        .zip(first..)
                        .map(|(event, v)| {
                            tracing::info!(
                                aggregateId = aggregate_id,
                                eventId = event.id(),
                                eventType = event.event_type(),
                                correlationId = event.correlation_id(),
                                version = v,
                                "appended"
                            );
                            AppendedEvent::of(event, v)
                        })
                        .collect();
                    return Ok(CommandOutcome {
                        aggregate_id: aggregate_id.to_string(),
                        version,
                        events: appended,
                        replayed: false,
                    });
                }
                // The aggregate existed: load it now, at once (nobody raced us).
                Err(StoreError::VersionConflict { .. }) if assume_new => assume_new = false,
                Err(StoreError::VersionConflict { .. }) => {
                    tracing::info!(aggregate_id, attempt, "version conflict; loading again");
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
                Err(err) => return Err(CommandError::Store(err)),
            }
        }
        Err(CommandError::Contended {
            aggregate_id: aggregate_id.to_string(),
            attempts,
        })
    }

    /// The earlier outcome of a command that already took effect, if one of the stored events
    /// is its outcome.
    async fn replay<C: Command<A>>(
        &self,
        command: &C,
    ) -> Result<Option<CommandOutcome>, CommandError<C::Error>> {
        let events = self
            .store
            .events_after(command.aggregate_id(), 0)
            .await
            .map_err(CommandError::Store)?;
        Ok(events
            .iter()
            .find(|(_, e)| command.is_outcome_of(e))
            .map(|(version, event)| CommandOutcome {
                aggregate_id: command.aggregate_id().to_string(),
                version: *version,
                events: vec![AppendedEvent::of(event, *version)],
                replayed: true,
            }))
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::envelope::ValidationError;
    use crate::event_sourcing::event_store::EventPage;
    use crate::testing::InMemoryEventStore;

    /// The in-memory store, counting the reads a load makes.
    #[derive(Default)]
    struct CountingStore {
        inner: InMemoryEventStore,
        reads: AtomicUsize,
    }

    impl EventStore for CountingStore {
        async fn events_after(
            &self,
            aggregate_id: &str,
            version: u64,
        ) -> Result<Vec<(u64, Envelope)>, StoreError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            self.inner.events_after(aggregate_id, version).await
        }
        async fn append_events(
            &self,
            aggregate_id: &str,
            expected_version: u64,
            events: &[Envelope],
        ) -> Result<u64, StoreError> {
            self.inner
                .append_events(aggregate_id, expected_version, events)
                .await
        }
        fn snapshot_every(&self) -> Option<u64> {
            None
        }
        async fn latest_snapshot(&self, id: &str) -> Result<Option<(u64, String)>, StoreError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            self.inner.latest_snapshot(id).await
        }
        async fn write_snapshot(&self, id: &str, v: u64, state: String) -> Result<(), StoreError> {
            self.inner.write_snapshot(id, v, state).await
        }
        async fn read_page(&self, start: Option<String>) -> Result<EventPage, StoreError> {
            self.inner.read_page(start).await
        }
        async fn count(&self) -> Result<u64, StoreError> {
            self.inner.count().await
        }
    }

    #[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
    struct Account {
        opened: bool,
    }

    impl Aggregate for Account {
        fn apply(&mut self, event: &Envelope) {
            if event.event_type() == "opened" {
                self.opened = true;
            }
        }
    }

    #[derive(Debug, thiserror::Error)]
    enum Refused {
        #[error("the account is open already")]
        Exists,
        #[error(transparent)]
        Invalid(#[from] ValidationError),
    }

    /// Opens an account under a new id, with a deterministic event id (safe to retry).
    struct Open {
        id: String,
        owner: String,
    }

    impl Command<Account> for Open {
        type Error = Refused;
        fn aggregate_id(&self) -> &str {
            &self.id
        }
        fn decide(&self, state: &Account) -> Result<Vec<Envelope>, Refused> {
            if state.opened {
                return Err(Refused::Exists);
            }
            Ok(vec![Envelope::builder("opened", "test/accounts")
                .id(format!("open-{}", self.id))
                .subject(self.id.clone())
                .data(serde_json::json!({ "owner": self.owner }))
                .build()?])
        }
        fn is_outcome_of(&self, event: &Envelope) -> bool {
            event.id() == format!("open-{}", self.id)
                && event.data() == Some(&serde_json::json!({ "owner": self.owner }))
        }
        fn creates(&self) -> bool {
            true
        }
    }

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn a_creation_appends_without_reading_the_store() {
        block_on(async {
            let service = CommandService::<Account, _>::new(CountingStore::default());
            let open = Open {
                id: "a-1".into(),
                owner: "ada".into(),
            };
            let outcome = service.execute(&open).await.unwrap();
            assert_eq!((outcome.version, outcome.replayed), (1, false));
            assert_eq!(service.store().reads.load(Ordering::SeqCst), 0);
        });
    }

    #[test]
    fn a_creation_of_an_existing_aggregate_loads_it_and_answers_a_retry_as_a_replay() {
        block_on(async {
            let service = CommandService::<Account, _>::new(CountingStore::default());
            let open = Open {
                id: "a-1".into(),
                owner: "ada".into(),
            };
            service.execute(&open).await.unwrap();
            // The same command again (a client's retry): the append fails, the load finds it.
            let again = service.execute(&open).await.unwrap();
            assert_eq!((again.version, again.replayed), (1, true));
            assert!(service.store().reads.load(Ordering::SeqCst) > 0);
            // Another command for the same id is refused, not appended at version 2.
            let other = Open {
                id: "a-1".into(),
                owner: "bob".into(),
            };
            let err = service.execute(&other).await.unwrap_err();
            assert!(
                matches!(err, CommandError::Rejected(Refused::Exists)),
                "{err}"
            );
            let stored = service.store().events_after("a-1", 0).await.unwrap();
            assert_eq!(stored.len(), 1);
        });
    }

    #[test]
    fn finding_the_aggregate_is_not_one_of_a_contended_commands_attempts() {
        block_on(async {
            let config = CommandConfig {
                max_attempts: 1,
                ..CommandConfig::default()
            };
            let service =
                CommandService::<Account, _>::with_config(CountingStore::default(), config);
            let open = Open {
                id: "a-1".into(),
                owner: "ada".into(),
            };
            service.execute(&open).await.unwrap();
            // One attempt allowed: the failed guess does not use it up.
            assert!(service.execute(&open).await.unwrap().replayed);
        });
    }
}
