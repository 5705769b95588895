//! Analytics: counts every business and data event by type, revenue and refunds by currency.
//!
//! Transactional mode: the counter increments (`ADD`) commit with the idempotency record, so a
//! redelivered event never counts twice.

use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};

use crate::events::{types, PaymentRefunded, PaymentSucceeded};
use herald::aws::{env, MissingEnv};
use herald::envelope::{Envelope, EventKind};
use herald::idempotency::{Conflict, Decision};
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

    /// From `ANALYTICS_TABLE`.
    pub fn from_env(_aws: &SdkConfig) -> Result<Self, MissingEnv> {
        Ok(Analytics::new(env("ANALYTICS_TABLE")?))
    }

    fn add(
        &self,
        metric: String,
        count: u64,
        amount: Option<u64>,
    ) -> Result<TransactWriteItem, HandlerError> {
        let mut update = Update::builder()
            .table_name(&self.table)
            .key(attr::METRIC, AttributeValue::S(metric))
            .expression_attribute_names("#count", attr::COUNT)
            .expression_attribute_values(":count", AttributeValue::N(count.to_string()));
        update = match amount {
            Some(amount) => update
                .update_expression("ADD #count :count, #amount :amount")
                .expression_attribute_names("#amount", attr::AMOUNT)
                .expression_attribute_values(":amount", AttributeValue::N(amount.to_string())),
            None => update.update_expression("ADD #count :count"),
        };
        let update = update
            .build()
            .map_err(|e| HandlerError::Retry(e.to_string()))?;
        Ok(TransactWriteItem::builder().update(update).build())
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
        let mut writes = vec![self.add(format!("type#{}", event.event_type()), 1, None)?];
        if event.event_type() == types::PAYMENT_SUCCEEDED {
            let payment: PaymentSucceeded = event.data_as()?;
            writes.push(self.add(
                format!("revenue#{}", payment.currency),
                1,
                Some(payment.amount),
            )?);
        }
        // Refunds are counted beside the revenue, not taken from it: both stay sums of
        // positive amounts, and revenue net of refunds is one subtraction away.
        if event.event_type() == types::PAYMENT_REFUNDED {
            let refund: PaymentRefunded = event.data_as()?;
            writes.push(self.add(
                format!("refunds#{}", refund.currency),
                1,
                Some(refund.amount),
            )?);
        }
        Ok(Decision {
            writes,
            result: Outcome::new("counted"),
        })
    }
}
