//! Schema versions: upcasting old events to the version consumers understand.
//!
//! Every event type has a schema version (`schemaversion`); its JSON Schemas live in
//! `events/schemas/<type>/v<N>.json`. Producers may keep writing old versions and the stream keeps
//! old events for replays, so consumers upcast at *read* time: [`Upcasters::upcast`] applies
//! `v1 → v2 → … → current` in steps, each a pure function on `data`. Consumers also ignore fields
//! they do not know (serde's default), so adding an optional field needs no new version.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::envelope::{Envelope, ValidationError};
use crate::orders::types;

/// One step: `data` at version `from` → `data` at `from + 1`.
pub type Step = fn(Value) -> Value;

/// The upcasters of every event type, and each type's current version.
#[derive(Clone, Debug, Default)]
pub struct Upcasters {
    current: BTreeMap<String, u32>,
    steps: BTreeMap<(String, u32), Step>,
}

impl Upcasters {
    /// No types.
    pub fn new() -> Self {
        Upcasters::default()
    }

    /// Declare `event_type`'s current version.
    pub fn current(mut self, event_type: &str, version: u32) -> Self {
        self.current.insert(event_type.to_string(), version);
        self
    }

    /// Add the step from `from` to `from + 1`.
    pub fn step(mut self, event_type: &str, from: u32, step: Step) -> Self {
        self.steps.insert((event_type.to_string(), from), step);
        self
    }

    /// herald's upcasters: `order_placed` v1 had no `currency` (every shop sold in euros);
    /// v2 makes it explicit. `order_cancelled` v2 may carry the order's `items`; a v1 event has
    /// none, which v2 readers take as "no lines known".
    pub fn herald() -> Self {
        Upcasters::new()
            .current(types::ORDER_PLACED, 2)
            .step(types::ORDER_PLACED, 1, order_placed_v1_to_v2)
            .current(types::ORDER_CANCELLED, 2)
            .step(types::ORDER_CANCELLED, 1, order_cancelled_v1_to_v2)
    }

    /// The version consumers of `event_type` read (1 when the type has no upcasters).
    pub fn current_version(&self, event_type: &str) -> u32 {
        self.current.get(event_type).copied().unwrap_or(1)
    }

    /// `event` at its type's current version. Events already current, and events of types with
    /// no declared version, are returned unchanged; a newer version than this code knows, or a
    /// missing step, is an error naming `schemaversion`.
    pub fn upcast(&self, event: Envelope) -> Result<Envelope, ValidationError> {
        let Some(&target) = self.current.get(event.event_type()) else {
            return Ok(event);
        };
        let mut version = event.schema_version();
        if version == target {
            return Ok(event);
        }
        if version > target {
            return Err(ValidationError::Invalid {
                field: "schemaversion",
                reason: format!(
                    "is {version}, newer than the {target} this consumer reads for {}",
                    event.event_type()
                ),
            });
        }
        let mut data = event.data().cloned().unwrap_or(Value::Null);
        while version < target {
            let step = self
                .steps
                .get(&(event.event_type().to_string(), version))
                .ok_or_else(|| ValidationError::Invalid {
                    field: "schemaversion",
                    reason: format!(
                        "is {version}; no upcaster to {} for {}",
                        version + 1,
                        event.event_type()
                    ),
                })?;
            data = step(data);
            version += 1;
        }
        Ok(event.at_version(version, Some(data)))
    }
}

/// `order_placed` v1 → v2: `currency` became required; every v1 order was in euros.
fn order_placed_v1_to_v2(mut data: Value) -> Value {
    if let Value::Object(fields) = &mut data {
        fields
            .entry("currency")
            .or_insert_with(|| Value::String("EUR".into()));
    }
    data
}

/// `order_cancelled` v1 → v2: v2 added the optional `items`; a v1 event knows no lines.
fn order_cancelled_v1_to_v2(data: Value) -> Value {
    data
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orders::OrderPlaced;
    use serde_json::json;

    fn v1_order() -> Envelope {
        Envelope::builder(types::ORDER_PLACED, "herald/orders")
            .id("old-1")
            .subject("order-1")
            .schema_version(1)
            .data(json!({
                "orderId": "order-1",
                "customer": {"id": "c", "email": "c@example.com"},
                "items": [{"sku": "SKU-CABLE", "quantity": 1, "unitPrice": 1299}],
                "total": 1299,
                "paymentToken": "tok_visa"
            }))
            .build()
            .unwrap()
    }

    #[test]
    fn a_v1_order_is_read_as_v2_with_the_default_currency() {
        let upcast = Upcasters::herald().upcast(v1_order()).unwrap();
        assert_eq!(upcast.schema_version(), 2);
        assert_eq!(upcast.id(), "old-1", "identity is unchanged");
        let order: OrderPlaced = upcast.data_as().unwrap();
        assert_eq!(order.currency, "EUR");
        order.validate().unwrap();
    }

    #[test]
    fn current_events_pass_through_and_unknown_fields_are_ignored() {
        let event = Envelope::builder(types::ORDER_PLACED, "herald/orders")
            .subject("order-2")
            .schema_version(2)
            .data(json!({
                "orderId": "order-2",
                "customer": {"id": "c", "email": "c@example.com", "loyaltyTier": "gold"},
                "items": [{"sku": "SKU-CABLE", "quantity": 1, "unitPrice": 1299, "giftWrap": true}],
                "total": 1299, "currency": "USD", "paymentToken": "tok_visa", "channel": "mobile"
            }))
            .build()
            .unwrap();
        let same = Upcasters::herald().upcast(event.clone()).unwrap();
        assert_eq!(same, event);
        let order: OrderPlaced = same.data_as().unwrap();
        assert_eq!(order.currency, "USD");
    }

    #[test]
    fn a_version_from_the_future_is_named() {
        let event = Envelope::builder(types::ORDER_PLACED, "herald/orders")
            .subject("o")
            .schema_version(3)
            .build()
            .unwrap();
        let err = Upcasters::herald().upcast(event).unwrap_err();
        assert_eq!(err.field(), "schemaversion");
    }
}
