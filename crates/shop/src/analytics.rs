//! Analytics: counts every business and data event by type, revenue and refunds by currency.
//!
//! Transactional mode: the counter increments (`ADD`) commit with the idempotency records, so a
//! redelivered event never counts twice. They are deltas: the increments of a batch's events on
//! one metric are summed into one write.

use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::AttributeValue;

use crate::events::{types, PaymentRefunded, PaymentSucceeded};
use herald::aws::{env, MissingEnv};
use herald::envelope::{Envelope, EventKind};
use herald::idempotency::{Conflict, Decision, Delta};
use herald::subscriber::{HandlerError, Outcome, TransactionalHandler};

/// Analytics table attributes: partition key `metric` (S), `count` (N), `amount` (N).
pub mod attr {
    /// Partition key: `type#<event type>` or `revenue#<currency>`.
    pub const METRIC: &str = "metric";
    /// Events counted.
    pub const COUNT: &str = "count";
    /// Sum of amounts (minor units), on revenue metrics.
    pub const AMOUNT: &str = "amount";
}

/// The analytics subscriber.
#[derive(Clone, Debug)]
pub struct Analytics {
    table: String,
}

impl Analytics {
    /// Count into `table`.
    pub fn new(table: impl Into<String>) -> Self {
        Analytics {
            table: table.into(),
        }
    }

    /// From `TABLE_NAME` (the subscriber block's own table).
    pub fn from_env(_aws: &SdkConfig) -> Result<Self, MissingEnv> {
        Ok(Analytics::new(env("TABLE_NAME")?))
    }

    /// Add `count` events (and `amount`) to `metric`: a delta, so that herald sums a batch's
    /// increments of one metric into one write.
    fn add(&self, metric: String, count: i64, amount: Option<u64>) -> Result<Delta, HandlerError> {
        let delta = Delta::new(&self.table, attr::METRIC, AttributeValue::S(metric))
            .add(attr::COUNT, count);
        Ok(match amount {
            Some(amount) => delta.add(
                attr::AMOUNT,
                i64::try_from(amount).map_err(|_| HandlerError::Poison {
                    field: "data.amount".into(),
                    reason: format!("is {amount}; the limit is {}", i64::MAX),
                })?,
            ),
            None => delta,
        })
    }
}

impl TransactionalHandler for Analytics {
    fn name(&self) -> &'static str {
        "analytics"
    }

    fn wants(&self, event: &Envelope) -> bool {
        matches!(event.kind(), EventKind::Business | EventKind::Data)
    }

    fn decide(
        &self,
        event: &Envelope,
        _conflict: Option<Conflict>,
    ) -> Result<Decision<Outcome>, HandlerError> {
        let mut deltas = vec![self.add(format!("type#{}", event.event_type()), 1, None)?];
        if event.event_type() == types::PAYMENT_SUCCEEDED {
            let payment: PaymentSucceeded = event.data_as()?;
            deltas.push(self.add(
                format!("revenue#{}", payment.currency),
                1,
                Some(payment.amount),
            )?);
        }
        // Refunds are counted beside the revenue, not taken from it: both stay sums of
        // positive amounts, and revenue net of refunds is one subtraction away.
        if event.event_type() == types::PAYMENT_REFUNDED {
            let refund: PaymentRefunded = event.data_as()?;
            deltas.push(self.add(
                format!("refunds#{}", refund.currency),
                1,
                Some(refund.amount),
            )?);
        }
        Ok(Decision {
            writes: Vec::new(),
            deltas,
            result: Outcome::new("counted"),
        })
    }
}
