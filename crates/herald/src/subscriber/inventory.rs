//! Inventory: reserves stock for every `order_placed`, all lines or none, never below zero.
//!
//! Transactional mode: the stock decrements (one conditional `UpdateItem` per SKU,
//! `available >= :quantity`) commit in one transaction with the idempotency record. When a line
//! lacks stock the transaction is cancelled, inventory decides again knowing which line, and
//! commits only the record with a `stock_reservation_failed` follow-up event.

use std::collections::BTreeMap;

use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};

use super::{HandlerError, Outcome, TransactionalHandler};
use crate::aws::{env, MissingEnv};
use crate::envelope::Envelope;
use crate::idempotency::{Conflict, Decision};
use crate::orders::{sources, types, OrderPlaced, StockReservationFailed};

/// Stock table attributes: partition key `sku` (S), `available` (N).
pub mod attr {
    /// Partition key.
    pub const SKU: &str = "sku";
    /// Units available to reserve.
    pub const AVAILABLE: &str = "available";
    /// Units reserved so far.
    pub const RESERVED: &str = "reserved";
}

/// The inventory subscriber.
#[derive(Clone, Debug)]
pub struct Inventory {
    stock_table: String,
}

impl Inventory {
    /// Reserve from `stock_table`.
    pub fn new(stock_table: impl Into<String>) -> Self {
        Inventory {
            stock_table: stock_table.into(),
        }
    }

    /// From `STOCK_TABLE`.
    pub fn from_env(_aws: &SdkConfig) -> Result<Self, MissingEnv> {
        Ok(Inventory::new(env("STOCK_TABLE")?))
    }

    fn reserve(&self, sku: &str, quantity: u32) -> Result<TransactWriteItem, HandlerError> {
        let update = Update::builder()
            .table_name(&self.stock_table)
            .key(attr::SKU, AttributeValue::S(sku.to_string()))
            .update_expression("SET #available = #available - :q ADD #reserved :q")
            .condition_expression("#available >= :q")
            .expression_attribute_names("#available", attr::AVAILABLE)
            .expression_attribute_names("#reserved", attr::RESERVED)
            .expression_attribute_values(":q", AttributeValue::N(quantity.to_string()))
            .build()
            .map_err(|e| HandlerError::Retry(e.to_string()))?;
        Ok(TransactWriteItem::builder().update(update).build())
    }
}

impl TransactionalHandler for Inventory {
    fn name(&self) -> &'static str {
        "inventory"
    }

    fn wants(&self, event: &Envelope) -> bool {
        event.event_type() == types::ORDER_PLACED
    }

    fn decide(
        &self,
        event: &Envelope,
        conflict: Option<Conflict>,
    ) -> Result<Decision<Outcome>, HandlerError> {
        let order: OrderPlaced = event.data_as()?;
        order.validate()?;
        // One write per SKU: an order may list a SKU twice.
        let mut lines: BTreeMap<&str, u32> = BTreeMap::new();
        for item in &order.items {
            let line = lines.entry(item.sku.as_str()).or_default();
            *line = line
                .checked_add(item.quantity)
                .ok_or_else(|| HandlerError::Poison {
                    field: "data.items.quantity".into(),
                    reason: format!("for {} add up to more than {}", item.sku, u32::MAX),
                })?;
        }
        match conflict {
            None => Ok(Decision {
                writes: lines
                    .iter()
                    .map(|(sku, quantity)| self.reserve(sku, *quantity))
                    .collect::<Result<_, _>>()?,
                result: Outcome::new("reserved").with_detail(&lines),
            }),
            Some(Conflict { index }) => {
                let (sku, requested) = lines
                    .iter()
                    .nth(index)
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
                    writes: Vec::new(),
                    result: Outcome::new("reservation_failed")
                        .with_detail(serde_json::json!({ "sku": sku, "requested": requested }))
                        .emitting(failed),
                })
            }
        }
    }
}
