//! The idempotency modes around a domain handler: [`Claimed`] runs a [`ClaimedHandler`]'s
//! effect once under a claim, [`Transactional`] commits a [`TransactionalHandler`]'s writes with
//! the idempotency record, [`Keyed`] lets a [`KeyedHandler`]'s effect be its own record.

use std::time::SystemTime;

use super::{
    ClaimedHandler, Delivery, KeyedHandler, KeyedOutcome, Outcome, RecordError, RecordHandler,
    TransactionalHandler,
};
use crate::envelope::Envelope;
use crate::idempotency::{Executed, Idempotency};

/// A [`ClaimedHandler`] made idempotent.
pub struct Claimed<H> {
    handler: H,
    idempotency: Idempotency,
}

impl<H> Claimed<H> {
    /// Wrap `handler`.
    pub fn new(handler: H, idempotency: Idempotency) -> Self {
        Claimed {
            handler,
            idempotency,
        }
    }
}

impl<H: ClaimedHandler> RecordHandler for Claimed<H> {
    fn name(&self) -> &'static str {
        self.handler.name()
    }

    async fn process(
        &self,
        event: &Envelope,
        deadline: SystemTime,
    ) -> Result<Delivery, RecordError> {
        if !self.handler.wants(event) {
            return Ok(Delivery::Ignored);
        }
        let executed = self
            .idempotency
            .run(event, deadline, || self.handler.handle(event))
            .await?;
        Ok(delivery(executed))
    }
}

/// A [`TransactionalHandler`] made idempotent.
pub struct Transactional<H> {
    handler: H,
    idempotency: Idempotency,
}

impl<H> Transactional<H> {
    /// Wrap `handler`.
    pub fn new(handler: H, idempotency: Idempotency) -> Self {
        Transactional {
            handler,
            idempotency,
        }
    }
}

impl<H: TransactionalHandler> RecordHandler for Transactional<H> {
    fn name(&self) -> &'static str {
        self.handler.name()
    }

    async fn process(
        &self,
        event: &Envelope,
        deadline: SystemTime,
    ) -> Result<Delivery, RecordError> {
        if !self.handler.wants(event) {
            return Ok(Delivery::Ignored);
        }
        let executed = self
            .idempotency
            .run_transactional_until(event, Some(deadline), |conflict| {
                self.handler.decide(event, conflict)
            })
            .await?;
        Ok(delivery(executed))
    }

    /// The batch's events in one transaction, records and effects, the deltas summed per item
    /// ([`Idempotency::run_transactional_batch`]).
    async fn process_batch(
        &self,
        events: &[&Envelope],
        deadline: SystemTime,
    ) -> Vec<Option<Result<Delivery, RecordError>>> {
        let mut settled: Vec<Option<Result<Delivery, RecordError>>> = Vec::new();
        let mut wanted = Vec::new();
        for (i, event) in events.iter().enumerate() {
            if self.handler.wants(event) {
                wanted.push((i, *event));
                settled.push(None);
            } else {
                settled.push(Some(Ok(Delivery::Ignored)));
            }
        }
        let (indexes, wanted): (Vec<usize>, Vec<&Envelope>) = wanted.into_iter().unzip();
        let results = self
            .idempotency
            .run_transactional_batch(&wanted, Some(deadline), |event, conflict| {
                self.handler.decide(event, conflict)
            })
            .await;
        for (i, result) in indexes.into_iter().zip(results) {
            settled[i] = result.map(|r| r.map(delivery).map_err(RecordError::from));
        }
        settled
    }
}

/// A [`KeyedHandler`]: its effect is its own idempotency record.
pub struct Keyed<H> {
    handler: H,
}

impl<H> Keyed<H> {
    /// Wrap `handler`.
    pub fn new(handler: H) -> Self {
        Keyed { handler }
    }
}

impl<H: KeyedHandler> RecordHandler for Keyed<H> {
    fn name(&self) -> &'static str {
        self.handler.name()
    }

    async fn process(
        &self,
        event: &Envelope,
        _deadline: SystemTime,
    ) -> Result<Delivery, RecordError> {
        if !self.handler.wants(event) {
            return Ok(Delivery::Ignored);
        }
        Ok(match self.handler.handle(event).await? {
            KeyedOutcome::New(outcome) => {
                crate::aws::metrics::count("EffectWrites", 1);
                Delivery::Applied(outcome)
            }
            KeyedOutcome::Existing(outcome) => Delivery::Duplicate(outcome),
        })
    }
}

fn delivery(executed: Executed<Outcome>) -> Delivery {
    match executed {
        Executed::Ran(outcome) => Delivery::Applied(outcome),
        Executed::Replayed(outcome) => Delivery::Duplicate(outcome),
    }
}
