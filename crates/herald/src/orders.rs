//! The e-commerce example's events: their types, sources and payloads.
//!
//! Amounts are integers in the currency's minor unit (cents), so no float ever touches money.

use serde::{Deserialize, Serialize};

use crate::envelope::ValidationError;

/// Event types of the example.
pub mod types {
    /// A customer placed an order (business; inventory, payment, analytics).
    pub const ORDER_PLACED: &str = "order_placed";
    /// A customer cancelled an order (business).
    pub const ORDER_CANCELLED: &str = "order_cancelled";
    /// Inventory could not reserve an order's stock (business).
    pub const STOCK_RESERVATION_FAILED: &str = "stock_reservation_failed";
    /// The payment went through (business; email, analytics).
    pub const PAYMENT_SUCCEEDED: &str = "payment_succeeded";
    /// The payment was declined (business; analytics).
    pub const PAYMENT_FAILED: &str = "payment_failed";
    /// A background job failed (system; ops).
    pub const JOB_FAILED: &str = "job_failed";
}

/// Sources (CloudEvents `source`) of the events herald's own functions emit.
pub mod sources {
    /// The order service (the producer's clients).
    pub const ORDERS: &str = "herald/orders";
    /// The inventory subscriber.
    pub const INVENTORY: &str = "herald/inventory";
    /// The payment subscriber.
    pub const PAYMENT: &str = "herald/payment";
}

/// Most line items in one order: each is one write in inventory's transaction, which also holds
/// the idempotency record (100 actions per transaction).
pub const MAX_LINE_ITEMS: usize = 50;

/// `order_placed` data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderPlaced {
    /// The order (also the event's subject).
    pub order_id: String,
    /// Who ordered.
    pub customer: Customer,
    /// What.
    pub items: Vec<LineItem>,
    /// The total, in minor units.
    pub total: u64,
    /// ISO 4217 code.
    pub currency: String,
    /// A payment-method token (`tok_visa`; `tok_declined` is always declined).
    pub payment_token: String,
}

/// A customer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Customer {
    /// Customer id.
    pub id: String,
    /// Where confirmations go.
    pub email: String,
}

/// One line of an order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LineItem {
    /// Stock keeping unit.
    pub sku: String,
    /// How many (≥ 1).
    pub quantity: u32,
    /// Price of one, in minor units.
    pub unit_price: u64,
}

impl OrderPlaced {
    /// Check what serde cannot: at least one line, quantities ≥ 1, the total adds up.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let invalid =
            |field: &'static str, reason: String| Err(ValidationError::Invalid { field, reason });
        if self.items.is_empty() {
            return invalid("data.items", "must list at least one item".into());
        }
        if self.items.len() > MAX_LINE_ITEMS {
            return Err(ValidationError::TooLong {
                field: "data.items",
                limit: MAX_LINE_ITEMS,
                actual: self.items.len(),
            });
        }
        if let Some(item) = self
            .items
            .iter()
            .find(|i| i.sku.is_empty() || i.sku.contains('#'))
        {
            // `#` is reserved for the stock table's reservation items (`order#<id>`).
            return invalid(
                "data.items.sku",
                format!("is \"{}\"; a SKU is not empty and has no '#'", item.sku),
            );
        }
        if let Some(item) = self.items.iter().find(|i| i.quantity == 0) {
            return invalid(
                "data.items.quantity",
                format!("is 0 for {}; the minimum is 1", item.sku),
            );
        }
        let sum: u64 = self
            .items
            .iter()
            .map(|i| i.unit_price.saturating_mul(u64::from(i.quantity)))
            .fold(0u64, u64::saturating_add);
        if sum != self.total {
            return invalid(
                "data.total",
                format!("is {} but the items add up to {sum}", self.total),
            );
        }
        if self.currency.len() != 3 || !self.currency.chars().all(|c| c.is_ascii_uppercase()) {
            return invalid(
                "data.currency",
                format!(
                    "is \"{}\"; expected an ISO 4217 code like EUR",
                    self.currency
                ),
            );
        }
        Ok(())
    }
}

/// `stock_reservation_failed` data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StockReservationFailed {
    /// The order.
    pub order_id: String,
    /// The first line that could not be reserved.
    pub sku: String,
    /// How many were asked for.
    pub requested: u32,
}

/// `payment_succeeded` data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentSucceeded {
    /// The order.
    pub order_id: String,
    /// The gateway's payment id.
    pub payment_id: String,
    /// Charged amount, minor units.
    pub amount: u64,
    /// ISO 4217.
    pub currency: String,
    /// Who paid (email gets the address from here).
    pub customer: Customer,
}

/// `payment_failed` data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentFailed {
    /// The order.
    pub order_id: String,
    /// Attempted amount.
    pub amount: u64,
    /// ISO 4217.
    pub currency: String,
    /// Why the gateway declined.
    pub reason: String,
}

/// `job_failed` data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobFailed {
    /// Which job.
    pub job: String,
    /// What went wrong.
    pub error: String,
    /// Which attempt failed.
    #[serde(default)]
    pub attempt: u32,
}

/// `order_cancelled` data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderCancelled {
    /// The order.
    pub order_id: String,
    /// Why.
    pub reason: String,
    /// The order's lines, so inventory can release their stock without a read (v2; optional, and
    /// absent from v1 events).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<LineItem>,
}

/// Most characters in a cancellation reason.
pub const MAX_REASON_CHARS: usize = 500;

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

impl crate::event_store::Aggregate for Order {
    fn apply(&mut self, event: &crate::envelope::Envelope) {
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
    pub fn place(&self, order: OrderPlaced) -> Result<crate::envelope::Envelope, CommandError> {
        self.place_correlated(order, None)
    }

    /// [`Order::place`] as part of a business transaction that already has a correlation id.
    pub fn place_correlated(
        &self,
        order: OrderPlaced,
        correlation_id: Option<&str>,
    ) -> Result<crate::envelope::Envelope, CommandError> {
        if self.status != OrderStatus::New {
            return Err(CommandError::AlreadyExists(order.order_id));
        }
        validate_order_id(&order.order_id)?;
        order.validate()?;
        let mut event = crate::envelope::Envelope::builder(types::ORDER_PLACED, sources::ORDERS)
            .id(order_event_id(types::ORDER_PLACED, &order.order_id))
            .subject(order.order_id.clone())
            .schema_version(2);
        if let Some(correlation_id) = correlation_id {
            event = event.correlation_id(correlation_id);
        }
        Ok(event.data(order).build()?)
    }

    /// `cancel_order`: the `order_cancelled` event, if the order is placed and not cancelled.
    pub fn cancel(
        &self,
        order_id: &str,
        reason: &str,
    ) -> Result<crate::envelope::Envelope, CommandError> {
        self.cancel_correlated(order_id, reason, None)
    }

    /// [`Order::cancel`] as part of a business transaction that already has a correlation id.
    pub fn cancel_correlated(
        &self,
        order_id: &str,
        reason: &str,
        correlation_id: Option<&str>,
    ) -> Result<crate::envelope::Envelope, CommandError> {
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
        let mut event = crate::envelope::Envelope::builder(types::ORDER_CANCELLED, sources::ORDERS)
            .id(order_event_id(types::ORDER_CANCELLED, order_id))
            .subject(order_id)
            .schema_version(2);
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
