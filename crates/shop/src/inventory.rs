//! Inventory: reserves stock for every `order_placed`, all lines or none, never below zero, and
//! releases it on `order_cancelled`.
//!
//! Transactional mode: the stock decrements (one delta per SKU, never below zero) commit in one
//! transaction with the order's reservation item (in the reservations tables, keyed by the order
//! id: apart from the stock counters, and spread over two tables by order id like records,
//! `RecordTables`, so that each has its own write quota), which keeps the
//! event's idempotency record (`record_in`: no write to the idempotency table); herald
//! sums the decrements of a batch's orders per SKU. When a line lacks stock the
//! transaction is cancelled, inventory decides again knowing which line, and commits the record
//! and a `refused` reservation with a `stock_reservation_failed` follow-up event.
//!
//! Cancellations may arrive before the order they cancel (different messages, concurrent
//! batches), so the reservation item orders the two: a cancellation releases the stock only of a
//! `reserved` reservation (and marks it `released`); finding none, it leaves a `cancelled`
//! tombstone, and an `order_placed` arriving after that finds the tombstone and reserves nothing.

use std::collections::BTreeMap;

use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};

use crate::events::{
    sources, types, LineItem, OrderCancelled, OrderPlaced, StockReservationFailed, MAX_LINE_ITEMS,
};
use herald::aws::{env, MissingEnv};
use herald::envelope::Envelope;
use herald::idempotency::{record_in, Conflict, Decision, Delta, RecordTables};
use herald::subscriber::{HandlerError, Outcome, TransactionalHandler};

/// Stock table attributes: partition key `sku` (S), `available` (N); reservations table:
/// partition key `orderId` (S), `status` (S).
pub mod attr {
    /// Stock: partition key.
    pub const SKU: &str = "sku";
    /// Stock: units available to reserve.
    pub const AVAILABLE: &str = "available";
    /// Stock: units reserved so far.
    pub const RESERVED: &str = "reserved";
    /// Reservations: partition key.
    pub const ORDER_ID: &str = "orderId";
    /// A reservation's state: `reserved`, `refused`, `released`, `cancelled`.
    pub const STATUS: &str = "status";
}

/// The inventory subscriber.
#[derive(Clone, Debug)]
pub struct Inventory {
    stock_table: String,
    reservations: RecordTables,
}

impl Inventory {
    /// Reserve from `stock_table`, keeping each order's reservation in `reservations_tables`:
    /// one table, or several separated by commas that share the orders by id (fixed for the
    /// life of the reservations: an order's table follows from the list).
    pub fn new(stock_table: impl Into<String>, reservations_tables: impl AsRef<str>) -> Self {
        Inventory {
            stock_table: stock_table.into(),
            reservations: RecordTables::parse(reservations_tables.as_ref()),
        }
    }

    /// From `TABLE_NAME` (stock) and `SECOND_TABLE_NAME` (the reservations tables): the
    /// subscriber block's own tables.
    pub fn from_env(_aws: &SdkConfig) -> Result<Self, MissingEnv> {
        Ok(Inventory::new(
            env("TABLE_NAME")?,
            env("SECOND_TABLE_NAME")?,
        ))
    }

    fn reservation_key(order_id: &str) -> AttributeValue {
        AttributeValue::S(order_id.to_string())
    }

    /// Put the order's reservation item, only if the order has none yet. The item keeps the
    /// `order_placed` event's idempotency record too (one item per order either way): a
    /// redelivery finds it there, and the idempotency table gets no write.
    fn reservation(&self, order_id: &str, status: &str) -> Result<TransactWriteItem, HandlerError> {
        let put = Put::builder()
            .table_name(self.reservations.for_key(order_id))
            .item(attr::ORDER_ID, Self::reservation_key(order_id))
            .item(attr::STATUS, AttributeValue::S(status.to_string()))
            .condition_expression("attribute_not_exists(#order)")
            .expression_attribute_names("#order", attr::ORDER_ID)
            .build()
            .map_err(|e| HandlerError::Retry(e.to_string()))?;
        Ok(TransactWriteItem::builder()
            .put(record_in(put, attr::ORDER_ID))
            .build())
    }

    /// `reserved` → `released`, only if it is reserved.
    fn release_reservation(&self, order_id: &str) -> Result<TransactWriteItem, HandlerError> {
        let update = Update::builder()
            .table_name(self.reservations.for_key(order_id))
            .key(attr::ORDER_ID, Self::reservation_key(order_id))
            .update_expression("SET #status = :released")
            .condition_expression("#status = :reserved")
            .expression_attribute_names("#status", attr::STATUS)
            .expression_attribute_values(":released", AttributeValue::S("released".into()))
            .expression_attribute_values(":reserved", AttributeValue::S("reserved".into()));
        update_item(update)
    }

    /// A `cancelled` tombstone when the order has no reservation; an existing one is kept. With
    /// `unless_reserved`, the write fails on a reserved order (its stock must be released instead).
    fn tombstone(
        &self,
        order_id: &str,
        unless_reserved: bool,
    ) -> Result<TransactWriteItem, HandlerError> {
        let mut update = Update::builder()
            .table_name(self.reservations.for_key(order_id))
            .key(attr::ORDER_ID, Self::reservation_key(order_id))
            .update_expression("SET #status = if_not_exists(#status, :cancelled)")
            .expression_attribute_names("#status", attr::STATUS)
            .expression_attribute_values(":cancelled", AttributeValue::S("cancelled".into()));
        if unless_reserved {
            update = update
                .condition_expression("attribute_not_exists(#status) OR #status <> :reserved")
                .expression_attribute_values(":reserved", AttributeValue::S("reserved".into()));
        }
        update_item(update)
    }

    /// Give `quantity` of `sku` back: a delta, summed with the batch's other changes to the SKU.
    fn unreserve(&self, sku: &str, quantity: u32) -> Delta {
        self.stock(sku)
            .add(attr::AVAILABLE, i64::from(quantity))
            .add(attr::RESERVED, -i64::from(quantity))
    }

    /// Take `quantity` of `sku`, never below zero: a delta, so a batch's orders of one SKU take
    /// their units in one write (conditional on the sum).
    fn reserve(&self, sku: &str, quantity: u32) -> Delta {
        self.stock(sku)
            .add(attr::AVAILABLE, -i64::from(quantity))
            .add(attr::RESERVED, i64::from(quantity))
            .never_negative(attr::AVAILABLE)
    }

    fn stock(&self, sku: &str) -> Delta {
        Delta::new(
            &self.stock_table,
            attr::SKU,
            AttributeValue::S(sku.to_string()),
        )
    }
}

impl TransactionalHandler for Inventory {
    fn name(&self) -> &'static str {
        "inventory"
    }

    fn wants(&self, event: &Envelope) -> bool {
        match event.event_type() {
            types::ORDER_PLACED => true,
            // Only the event store's cancellations release stock: they carry the aggregate
            // version, which the producer refuses from clients.
            types::ORDER_CANCELLED => event.aggregate_version().is_some(),
            _ => false,
        }
    }

    fn decide(
        &self,
        event: &Envelope,
        conflict: Option<Conflict>,
    ) -> Result<Decision<Outcome>, HandlerError> {
        if event.event_type() == types::ORDER_CANCELLED {
            return self.decide_cancel(event, conflict);
        }
        let order: OrderPlaced = event.data_as()?;
        order.validate()?;
        let lines = per_sku(&order.items)?;
        match conflict {
            None => Ok(Decision {
                writes: vec![self.reservation(&order.order_id, "reserved")?],
                deltas: lines.iter().map(|(sku, q)| self.reserve(sku, *q)).collect(),
                result: Outcome::new("reserved").with_detail(&lines),
            }),
            // The order already has a reservation item: its cancellation came first.
            Some(Conflict { index: 0 }) => Ok(Decision {
                deltas: Vec::new(),
                writes: Vec::new(),
                result: Outcome::new("skipped_cancelled"),
            }),
            Some(Conflict { index }) => {
                let (sku, requested) = lines
                    .iter()
                    .nth(index - 1)
                    .map(|(s, q)| (s.to_string(), *q))
                    .unwrap_or_default();
                let failed = event
                    .follow_up(types::STOCK_RESERVATION_FAILED, sources::INVENTORY)
                    .data(StockReservationFailed {
                        order_id: order.order_id.clone(),
                        sku: sku.clone(),
                        requested,
                    })
                    .build()?;
                Ok(Decision {
                    deltas: Vec::new(),
                    writes: vec![self.reservation(&order.order_id, "refused")?],
                    result: Outcome::new("reservation_failed")
                        .with_detail(serde_json::json!({ "sku": sku, "requested": requested }))
                        .emitting(failed),
                })
            }
        }
    }
}

impl Inventory {
    fn decide_cancel(
        &self,
        event: &Envelope,
        conflict: Option<Conflict>,
    ) -> Result<Decision<Outcome>, HandlerError> {
        let cancelled: OrderCancelled = event.data_as()?;
        if cancelled.items.len() > MAX_LINE_ITEMS {
            return Err(HandlerError::Poison {
                field: "data.items".into(),
                reason: format!(
                    "lists {} lines; the limit is {MAX_LINE_ITEMS}",
                    cancelled.items.len()
                ),
            });
        }
        let lines = per_sku(&cancelled.items)?;
        match conflict {
            // A reserved order with its lines in the event: release them.
            None if !lines.is_empty() => Ok(Decision {
                writes: vec![self.release_reservation(&cancelled.order_id)?],
                deltas: lines
                    .iter()
                    .map(|(sku, q)| self.unreserve(sku, *q))
                    .collect(),
                result: Outcome::new("released").with_detail(&lines),
            }),
            // An older event without lines: nothing can be released; still, a late
            // `order_placed` must reserve nothing.
            _ if lines.is_empty() => Ok(Decision {
                deltas: Vec::new(),
                writes: vec![self.tombstone(&cancelled.order_id, false)?],
                result: Outcome::new("no_lines_to_release"),
            }),
            // Not reserved (not yet placed, refused, already released): the tombstone makes a
            // late `order_placed` reserve nothing.
            _ => Ok(Decision {
                deltas: Vec::new(),
                writes: vec![self.tombstone(&cancelled.order_id, true)?],
                result: Outcome::new("nothing_to_release"),
            }),
        }
    }
}

/// An update as a transaction item (a builder missing a required field is a bug: retried, logged).
fn update_item(
    update: aws_sdk_dynamodb::types::builders::UpdateBuilder,
) -> Result<TransactWriteItem, HandlerError> {
    let update = update
        .build()
        .map_err(|e| HandlerError::Retry(e.to_string()))?;
    Ok(TransactWriteItem::builder().update(update).build())
}

/// One write per SKU: an order may list a SKU twice.
fn per_sku(items: &[LineItem]) -> Result<BTreeMap<&str, u32>, HandlerError> {
    let mut lines: BTreeMap<&str, u32> = BTreeMap::new();
    for item in items {
        let line = lines.entry(item.sku.as_str()).or_default();
        *line = line
            .checked_add(item.quantity)
            .ok_or_else(|| HandlerError::Poison {
                field: "data.items.quantity".into(),
                reason: format!("for {} add up to more than {}", item.sku, u32::MAX),
            })?;
    }
    Ok(lines)
}
