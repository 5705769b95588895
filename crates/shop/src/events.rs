//! The shop's events: their types, sources and payloads.
//!
//! Amounts are integers in the currency's minor unit (cents), so no float ever touches money.

use serde::{Deserialize, Serialize};

use herald::ValidationError;

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
    /// A customer's orders within one window look like fraud (business; the order service
    /// cancels them, ops records an incident).
    pub const FRAUD_SUSPECTED: &str = "fraud_suspected";
    /// Payment gave back what it charged for a cancelled order (business; analytics).
    pub const PAYMENT_REFUNDED: &str = "payment_refunded";
    /// A device measured something (data: high volume; analytics and the archive only).
    pub const METRIC_SAMPLED: &str = "metric_sampled";
}

/// Sources (CloudEvents `source`) of the events the shop's functions emit.
pub mod sources {
    /// The order service (the producer's clients).
    pub const ORDERS: &str = "herald/orders";
    /// The inventory subscriber.
    pub const INVENTORY: &str = "herald/inventory";
    /// The payment subscriber.
    pub const PAYMENT: &str = "herald/payment";
    /// The fraud detector (a windowed consumer of the stream).
    pub const FRAUD: &str = "herald/fraud";
    /// The shop's devices (shelf sensors, warehouse scanners): data events.
    pub const DEVICES: &str = "herald/devices";
}

/// Most line items in one order: each is one write in inventory's transaction, which also holds
/// the idempotency record (100 actions per transaction).
pub const MAX_LINE_ITEMS: usize = 50;

/// Most characters in a SKU: it is the stock table's partition key (DynamoDB: 2048 bytes) and is
/// copied into every event about the order.
pub const MAX_SKU_CHARS: usize = 64;
/// Most characters in a customer id: it is the orders view's partition key (`customer#<id>`).
pub const MAX_CUSTOMER_ID_CHARS: usize = 128;
/// Most characters in an email address (RFC 5321's path limit).
pub const MAX_EMAIL_CHARS: usize = 254;
/// Most characters in a payment-method token.
pub const MAX_PAYMENT_TOKEN_CHARS: usize = 256;

// With these limits the largest valid order — MAX_LINE_ITEMS lines, every text field at
// its limit and made of characters JSON escapes to six bytes — is far below herald's event
// limit, as `order_placed` and as the `order_cancelled` that copies its lines (the shop's tests
// build that order and check both). So an order the service accepts can always be cancelled.
/// A text field of `min` to `max` characters; the error names the field and the limit.
fn bounded(
    field: &'static str,
    value: &str,
    min: usize,
    max: usize,
) -> Result<(), ValidationError> {
    if value.is_empty() {
        return Err(ValidationError::Empty { field });
    }
    // Byte length bounds the character count: count only when it could exceed the limit.
    if value.len() > max {
        let actual = value.chars().count();
        if actual > max {
            return Err(ValidationError::TooLong {
                field,
                limit: max,
                actual,
            });
        }
    }
    if value.chars().count() < min {
        return Err(ValidationError::Invalid {
            field,
            reason: format!("is shorter than {min} characters"),
        });
    }
    Ok(())
}

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
    /// Check what serde cannot: at least one line, quantities ≥ 1, the total adds up, every text
    /// field within its limit (named in the error).
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
        bounded(
            "data.customer.id",
            &self.customer.id,
            1,
            MAX_CUSTOMER_ID_CHARS,
        )?;
        // The customer id is the order's partition key: a control character there is one SQS
        // and SNS refuse (and no customer id has one).
        if let Some(bad) = self.customer.id.chars().find(|c| c.is_control()) {
            return invalid(
                "data.customer.id",
                format!(
                    "contains U+{:04X}; control characters are not allowed",
                    u32::from(bad)
                ),
            );
        }
        bounded(
            "data.customer.email",
            &self.customer.email,
            3,
            MAX_EMAIL_CHARS,
        )?;
        bounded(
            "data.paymentToken",
            &self.payment_token,
            1,
            MAX_PAYMENT_TOKEN_CHARS,
        )?;
        for item in &self.items {
            bounded("data.items.sku", &item.sku, 1, MAX_SKU_CHARS)?;
        }
        if let Some(item) = self.items.iter().find(|i| i.sku.contains('#')) {
            // `#` separates the parts of the shop's compound keys: a SKU has none.
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

/// `fraud_suspected` data: one customer's orders within one tumbling window, over a limit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FraudSuspected {
    /// The customer.
    pub customer_id: String,
    /// The window's first instant (RFC 3339).
    pub window_start: String,
    /// Where the window ends, exclusive (RFC 3339).
    pub window_end: String,
    /// The orders the customer placed within the window, each once.
    pub order_ids: Vec<String>,
    /// Their value per currency, minor units.
    pub totals: std::collections::BTreeMap<String, u64>,
    /// Which limits the window broke, in words.
    pub reasons: Vec<String>,
}

/// `payment_refunded` data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRefunded {
    /// The order.
    pub order_id: String,
    /// The charge refunded.
    pub payment_id: String,
    /// Refunded amount, minor units.
    pub amount: u64,
    /// ISO 4217.
    pub currency: String,
    /// Why (the cancellation's reason).
    pub reason: String,
}
