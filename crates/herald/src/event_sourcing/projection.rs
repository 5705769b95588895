//! Read models (the query side of CQRS): a [`Projection`] folds events into a store shaped for
//! the questions users ask; a [`Projector`] feeds it from a subscriber queue; [`rebuild`] starts
//! it again from the event store, [`rebuild_from_events`] from any events (the archive).
//!
//! Delivery is at-least-once and may be out of order, so a projection's writes must be either
//! idempotent and user-free (a timeline entry keyed by version) or conditional on the
//! aggregate's version (`aggregateversion`: a status that only moves forward). Then any delivery
//! order, with any duplicates, ends in the same items — which is also what lets [`rebuild`] fold
//! the store in scan order, several events at a time.

use std::future::Future;
use std::time::SystemTime;

use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use serde_json::json;

use crate::aws::AwsError;
use crate::envelope::Envelope;
use crate::event_sourcing::event_store::{EventStore, StoreError};
use crate::subscriber::{Delivery, Outcome, RecordError, RecordHandler};

/// What can go wrong; match on it.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// The event cannot be projected (the reason names the attribute): retrying cannot help.
    #[error("`{field}` {reason}")]
    Invalid {
        /// The attribute.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The read model's store failed; retry.
    #[error("read model: {0}")]
    Persistence(#[from] AwsError),
    /// Reading the event store failed (rebuild).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How one event landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Applied {
    /// It moved the read model forward.
    Advanced,
    /// The read model was already at this version or later: nothing moved (a duplicate or a
    /// late delivery).
    Stale,
}

/// A read model.
pub trait Projection: Send + Sync {
    /// Its name (in logs, and what a rebuild command is given).
    fn name(&self) -> &'static str;

    /// Whether it reads this event at all (others are acknowledged untouched).
    fn wants(&self, event: &Envelope) -> bool;

    /// Apply one event (already upcast). Idempotent and user-insensitive; see the module docs.
    fn apply(
        &self,
        event: &Envelope,
    ) -> impl Future<Output = Result<Applied, ProjectionError>> + Send;

    /// Delete everything the projection wrote; returns how many items went.
    fn clear(&self) -> impl Future<Output = Result<u64, ProjectionError>> + Send;
}

/// How many events a rebuild applies at once.
const REBUILD_CONCURRENCY: usize = 8;

/// Empty `projection` and fold every event of `store` into it again. `progress` is called with
/// (items read, total items) as the rebuild goes. Returns the number of events applied.
///
/// Run it while the projector is paused (or into a fresh table): events projected during the
/// reset would be deleted with the rest.
pub async fn rebuild<P: Projection, S: EventStore>(
    projection: &P,
    store: &S,
    mut progress: impl FnMut(u64, u64),
) -> Result<u64, ProjectionError> {
    let total = store.count().await?;
    projection.clear().await?;
    let mut read = 0u64;
    let mut applied = 0u64;
    progress(0, total);
    let mut start = None;
    loop {
        let page = store.read_page(start).await?;
        let wanted: Vec<&Envelope> = page
            .events
            .iter()
            .map(|stored| &stored.event)
            .filter(|event| projection.wants(event))
            .collect();
        // Order-insensitive by design, so a page's events can be applied concurrently.
        futures::stream::iter(wanted.iter().map(|event| projection.apply(event)))
            .buffer_unordered(REBUILD_CONCURRENCY)
            .try_collect::<Vec<Applied>>()
            .await?;
        applied += wanted.len() as u64;
        read += page.items_read as u64;
        progress(read.min(total.max(read)), total.max(read));
        match page.next {
            Some(next) => start = Some(next),
            None => return Ok(applied),
        }
    }
}

/// Empty `projection` and fold `events` into it again: a rebuild from somewhere other than the
/// event store — the archive of every event that crossed the stream, for a read model of events
/// no store keeps. Events the projection does not want are passed over; the events must be
/// upcast already. Returns the number applied.
pub async fn rebuild_from_events<'a, P: Projection>(
    projection: &P,
    events: impl IntoIterator<Item = &'a Envelope>,
) -> Result<u64, ProjectionError> {
    projection.clear().await?;
    let wanted: Vec<&Envelope> = events
        .into_iter()
        .filter(|event| projection.wants(event))
        .collect();
    // Order-insensitive by design (see the module docs), as the store's rebuild relies on too.
    futures::stream::iter(wanted.iter().map(|event| projection.apply(event)))
        .buffer_unordered(REBUILD_CONCURRENCY)
        .try_collect::<Vec<Applied>>()
        .await?;
    Ok(wanted.len() as u64)
}

/// A [`Projection`] as a subscriber's record handler: applied events count as applied, stale
/// ones as duplicates, unprojectable ones are dead-lettered with their reason.
pub struct Projector<P> {
    projection: P,
    name: &'static str,
}

impl<P: Projection> Projector<P> {
    /// A projector for `projection`, named `projector` in logs, metrics and dead letters.
    pub fn new(projection: P) -> Self {
        Projector {
            projection,
            name: "projector",
        }
    }

    /// Another name for logs, metrics and dead letters (one function per projection).
    pub fn named(mut self, name: &'static str) -> Self {
        self.name = name;
        self
    }

    /// The projection.
    pub fn projection(&self) -> &P {
        &self.projection
    }
}

impl<P: Projection> RecordHandler for Projector<P> {
    fn name(&self) -> &'static str {
        self.name
    }

    async fn process(
        &self,
        event: &Envelope,
        _deadline: SystemTime,
    ) -> Result<Delivery, RecordError> {
        if !self.projection.wants(event) {
            return Ok(Delivery::Ignored);
        }
        match self.projection.apply(event).await {
            Ok(applied) => {
                let outcome = Outcome::new("projected").with_detail(json!({
                    "version": event.aggregate_version(),
                    "applied": applied,
                }));
                Ok(match applied {
                    Applied::Advanced => Delivery::Applied(outcome),
                    Applied::Stale => Delivery::Duplicate(outcome),
                })
            }
            Err(ProjectionError::Invalid { field, reason }) => Err(RecordError::Poison {
                field: field.to_string(),
                reason,
            }),
            Err(ProjectionError::Persistence(err))
                if err.class() == crate::aws::errors::ErrorClass::Permanent =>
            {
                Err(RecordError::Poison {
                    field: "event".into(),
                    reason: format!("{err} (permanent: retrying cannot help)"),
                })
            }
            // The read model's store failed for a while (throttling, an outage, access).
            Err(ProjectionError::Persistence(err)) => Err(RecordError::Unavailable {
                class: err.class(),
                reason: format!("read model: {err}"),
            }),
            Err(err) => Err(RecordError::Retry(err.to_string())),
        }
    }
}
