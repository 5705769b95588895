//! The two idempotency modes around a domain handler: [`Claimed`] runs a [`ClaimedHandler`]'s
//! effect once under a claim, [`Transactional`] commits a [`TransactionalHandler`]'s writes with
//! the idempotency record.

use std::time::SystemTime;

use super::{ClaimedHandler, Delivery, Outcome, RecordError, RecordHandler, TransactionalHandler};
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
}

fn delivery(executed: Executed<Outcome>) -> Delivery {
    match executed {
        Executed::Ran(outcome) => Delivery::Applied(outcome),
        Executed::Replayed(outcome) => Delivery::Duplicate(outcome),
    }
}
