//! The event-sourced `Order` aggregate: its state is the fold of its events, and its commands
//! (`place`, `cancel`) decide which events happen.

use herald::{Aggregate, Command, Envelope, ValidationError};
use serde::{Deserialize, Serialize};

use crate::events::{sources, types, LineItem, OrderCancelled, OrderPlaced, MAX_REASON_CHARS};

/// Where an order is in its life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// No events yet.
    #[default]
    New,
    /// Placed.
    Placed,
    /// Cancelled.
    Cancelled,
}

/// The event-sourced order aggregate: its state is the fold of its events.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    /// Where it is.
    pub status: OrderStatus,
    /// The order id.
    pub order_id: String,
    /// Who ordered.
    pub customer_id: String,
    /// Total in minor units.
    pub total: u64,
    /// ISO 4217.
    pub currency: String,
    /// The lines (snapshots from before they were kept have none).
    #[serde(default)]
    pub items: Vec<LineItem>,
}

/// Why a command was refused.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// `place_order` for an order that exists.
    #[error("order {0} already exists")]
    AlreadyExists(String),
    /// A command for an order that was never placed.
    #[error("order {0} does not exist")]
    NotFound(String),
    /// `cancel_order` twice.
    #[error("order {0} is already cancelled")]
    AlreadyCancelled(String),
    /// The command's data is invalid.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
}

impl Aggregate for Order {
    fn apply(&mut self, event: &Envelope) {
        match event.event_type() {
            types::ORDER_PLACED => {
                if let Ok(placed) = event.data_as::<OrderPlaced>() {
                    self.status = OrderStatus::Placed;
                    self.order_id = placed.order_id;
                    self.customer_id = placed.customer.id;
                    self.total = placed.total;
                    self.currency = placed.currency;
                    self.items = placed.items;
                }
            }
            types::ORDER_CANCELLED => self.status = OrderStatus::Cancelled,
            // Events this aggregate does not model leave it as it is.
            _ => {}
        }
    }
}

/// Most characters in an order id (it is a DynamoDB key and a Kinesis partition key).
pub const MAX_ORDER_ID_CHARS: usize = 128;

/// Check an order id: 1 to [`MAX_ORDER_ID_CHARS`] of letters, digits, `-` and `_`.
pub fn validate_order_id(order_id: &str) -> Result<(), ValidationError> {
    if order_id.is_empty() {
        return Err(ValidationError::Empty { field: "orderId" });
    }
    let chars = order_id.chars().count();
    if chars > MAX_ORDER_ID_CHARS {
        return Err(ValidationError::TooLong {
            field: "orderId",
            limit: MAX_ORDER_ID_CHARS,
            actual: chars,
        });
    }
    if let Some(bad) = order_id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_')))
    {
        return Err(ValidationError::Invalid {
            field: "orderId",
            reason: format!("contains {bad:?}; use letters, digits, '-' or '_'"),
        });
    }
    Ok(())
}

/// The id of the one event of `event_type` an order can have (`order_placed`,
/// `order_cancelled`): derived from the order id, so a retried command decides the same event.
pub fn order_event_id(event_type: &str, order_id: &str) -> String {
    const NAMESPACE: uuid::Uuid = uuid::Uuid::from_bytes([
        0x9a, 0x41, 0x1c, 0x5e, 0x27, 0x80, 0x4b, 0x6d, 0x8f, 0x02, 0xc4, 0x3b, 0x71, 0xd9, 0x0e,
        0x66,
    ]);
    uuid::Uuid::new_v5(&NAMESPACE, format!("{event_type}|{order_id}").as_bytes()).to_string()
}

impl Order {
    /// `place_order`: the `order_placed` event, if the order is new and the data valid.
    pub fn place(&self, order: OrderPlaced) -> Result<Envelope, CommandError> {
        self.place_correlated(order, None)
    }

    /// [`Order::place`] as part of a business transaction that already has a correlation id.
    pub fn place_correlated(
        &self,
        order: OrderPlaced,
        correlation_id: Option<&str>,
    ) -> Result<Envelope, CommandError> {
        if self.status != OrderStatus::New {
            return Err(CommandError::AlreadyExists(order.order_id));
        }
        validate_order_id(&order.order_id)?;
        order.validate()?;
        // Keyed by customer on the stream: a customer's orders reach a stream consumer (the
        // fraud detector's window) on one shard; each order stays in order within it.
        let mut event = Envelope::builder(types::ORDER_PLACED, sources::ORDERS)
            .id(order_event_id(types::ORDER_PLACED, &order.order_id))
            .subject(order.order_id.clone())
            .partition_key(order.customer.id.clone())
            .schema_version(2);
        if let Some(correlation_id) = correlation_id {
            event = event.correlation_id(correlation_id);
        }
        Ok(event.data(order).build()?)
    }

    /// `cancel_order`: the `order_cancelled` event, if the order is placed and not cancelled.
    pub fn cancel(&self, order_id: &str, reason: &str) -> Result<Envelope, CommandError> {
        self.cancel_correlated(order_id, reason, None)
    }

    /// [`Order::cancel`] as part of a business transaction that already has a correlation id.
    pub fn cancel_correlated(
        &self,
        order_id: &str,
        reason: &str,
        correlation_id: Option<&str>,
    ) -> Result<Envelope, CommandError> {
        if reason.trim().is_empty() {
            return Err(ValidationError::Empty { field: "reason" }.into());
        }
        let chars = reason.chars().count();
        if chars > MAX_REASON_CHARS {
            return Err(ValidationError::TooLong {
                field: "reason",
                limit: MAX_REASON_CHARS,
                actual: chars,
            }
            .into());
        }
        match self.status {
            OrderStatus::New => return Err(CommandError::NotFound(order_id.to_string())),
            OrderStatus::Cancelled => {
                return Err(CommandError::AlreadyCancelled(order_id.to_string()))
            }
            OrderStatus::Placed => {}
        }
        let mut event = Envelope::builder(types::ORDER_CANCELLED, sources::ORDERS)
            .id(order_event_id(types::ORDER_CANCELLED, order_id))
            .subject(order_id)
            .schema_version(2);
        if !self.customer_id.is_empty() {
            event = event.partition_key(self.customer_id.clone());
        }
        if let Some(correlation_id) = correlation_id {
            event = event.correlation_id(correlation_id);
        }
        Ok(event
            .data(OrderCancelled {
                order_id: order_id.to_string(),
                reason: reason.to_string(),
                items: self.items.clone(),
            })
            .build()?)
    }
}

/// The `place_order` command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlaceOrder {
    /// The order.
    pub order: OrderPlaced,
    /// An existing business transaction to join.
    pub correlation_id: Option<String>,
}

impl Command<Order> for PlaceOrder {
    type Error = CommandError;

    fn aggregate_id(&self) -> &str {
        &self.order.order_id
    }

    fn decide(&self, state: &Order) -> Result<Vec<Envelope>, CommandError> {
        state
            .place_correlated(self.order.clone(), self.correlation_id.as_deref())
            .map(|event| vec![event])
    }

    /// Orders are placed under new ids: no read before the append (a retried `POST` finds its
    /// order when the append fails, and is answered as a replay).
    fn creates(&self) -> bool {
        true
    }

    /// The same order placed before: the id is deterministic, so compare the data.
    fn is_outcome_of(&self, event: &Envelope) -> bool {
        event.event_type() == types::ORDER_PLACED
            && serde_json::to_value(&self.order).ok().as_ref() == event.data()
    }
}

/// The `cancel_order` command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CancelOrder {
    /// The order.
    pub order_id: String,
    /// Why.
    pub reason: String,
    /// An existing business transaction to join.
    pub correlation_id: Option<String>,
}

impl Command<Order> for CancelOrder {
    type Error = CommandError;

    fn aggregate_id(&self) -> &str {
        &self.order_id
    }

    fn decide(&self, state: &Order) -> Result<Vec<Envelope>, CommandError> {
        state
            .cancel_correlated(&self.order_id, &self.reason, self.correlation_id.as_deref())
            .map(|event| vec![event])
    }

    /// The same cancellation, for the same reason.
    fn is_outcome_of(&self, event: &Envelope) -> bool {
        event.event_type() == types::ORDER_CANCELLED
            && event
                .data_as::<OrderCancelled>()
                .is_ok_and(|c| c.reason == self.reason)
    }
}

#[cfg(test)]
mod tests {
    use herald::aws::limits::MAX_EVENT_BYTES;

    use super::*;
    use crate::events::{
        Customer, MAX_CUSTOMER_ID_CHARS, MAX_EMAIL_CHARS, MAX_LINE_ITEMS, MAX_PAYMENT_TOKEN_CHARS,
        MAX_SKU_CHARS,
    };

    /// A text of `n` characters that JSON escapes to six bytes each (`\u0001`): the most bytes
    /// a field of `n` characters can take in an event.
    fn widest(n: usize) -> String {
        "\u{1}".repeat(n)
    }

    /// The largest order `validate` accepts.
    fn largest_order() -> OrderPlaced {
        let items: Vec<LineItem> = (0..MAX_LINE_ITEMS)
            .map(|i| LineItem {
                sku: format!("{i:02}{}", widest(MAX_SKU_CHARS - 2)),
                quantity: 1,
                unit_price: u64::MAX / 64,
            })
            .collect();
        OrderPlaced {
            order_id: "o".repeat(MAX_ORDER_ID_CHARS),
            customer: Customer {
                // No control character (the id is the partition key): `"`, escaped in two bytes.
                id: "\"".repeat(MAX_CUSTOMER_ID_CHARS),
                email: widest(MAX_EMAIL_CHARS),
            },
            total: items.iter().map(|i| i.unit_price).sum(),
            items,
            currency: "EUR".into(),
            payment_token: widest(MAX_PAYMENT_TOKEN_CHARS),
        }
    }

    #[test]
    fn the_largest_valid_order_and_its_cancellation_fit_in_an_event_with_any_version() {
        let order = largest_order();
        let placed = Order::default().place(order.clone()).unwrap();
        let mut state = Order::default();
        state.apply(&placed);
        let cancelled = state
            .cancel(&order.order_id, &widest(MAX_REASON_CHARS))
            .unwrap();
        for event in [placed, cancelled] {
            // The store stamps a version; the largest one takes the most digits.
            let stored = event.clone().with_aggregate_version(u64::MAX).to_json();
            assert!(
                stored.len() <= MAX_EVENT_BYTES / 4,
                "{} is {} bytes",
                event.event_type(),
                stored.len()
            );
        }
    }

    #[test]
    fn every_text_field_over_its_limit_is_refused_naming_the_field_and_the_limit() {
        type Set = fn(&mut OrderPlaced, String);
        let cases: [(&str, usize, Set); 4] = [
            ("data.items.sku", MAX_SKU_CHARS, |o, v| o.items[0].sku = v),
            ("data.customer.id", MAX_CUSTOMER_ID_CHARS, |o, v| {
                o.customer.id = v
            }),
            ("data.customer.email", MAX_EMAIL_CHARS, |o, v| {
                o.customer.email = v
            }),
            ("data.paymentToken", MAX_PAYMENT_TOKEN_CHARS, |o, v| {
                o.payment_token = v
            }),
        ];
        for (field, limit, set) in cases {
            let mut order = largest_order();
            set(&mut order, "x".repeat(limit));
            assert!(order.validate().is_ok(), "{field} at its limit");
            set(&mut order, "x".repeat(limit + 1));
            let err = Order::default().place(order).unwrap_err();
            let CommandError::Invalid(err) = err else {
                panic!("{field}: {err}");
            };
            assert_eq!(
                err,
                ValidationError::TooLong {
                    field,
                    limit,
                    actual: limit + 1
                }
            );
        }
    }
}
