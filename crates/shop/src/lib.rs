//! The shop: herald's example application — an online shop whose services don't call each other.
//!
//! It uses herald's public API exactly as any application would:
//! - its event types ([`events`]), the [`catalog`] the producer and router check, and the
//!   [`upcasters`] that read old schema versions;
//! - an event-sourced [`order::Order`] with its commands, served over HTTP by
//!   [`commands::OrderCommands`] on herald's [`herald::CommandService`];
//! - a read model, [`orders_view`], with its queries;
//! - five subscribers: [`inventory`] and [`analytics`] and [`ops`] (transactional: their effects
//!   are DynamoDB writes), [`payment`] and [`email`] (claimed: their effects lie outside).
//!
//! Each of its Lambda functions (`functions/*`) is a few lines of [`herald::Herald`] wiring.

#![warn(missing_docs)]

pub mod analytics;
pub mod commands;
pub mod email;
pub mod events;
pub mod inventory;
pub mod ops;
pub mod order;
pub mod orders_view;
pub mod payment;

use herald::{EventCatalog, EventKind, Upcasters};
use serde_json::Value;

use events::types;

/// The shop's event types, their kinds and schema versions (`events/schemas/<type>/v<N>.json`).
pub fn catalog() -> EventCatalog {
    EventCatalog::new()
        .with(types::ORDER_PLACED, EventKind::Business, 1..=2)
        .with(types::ORDER_CANCELLED, EventKind::Business, 1..=2)
        .with(types::STOCK_RESERVATION_FAILED, EventKind::Business, 1..=1)
        .with(types::PAYMENT_SUCCEEDED, EventKind::Business, 1..=1)
        .with(types::PAYMENT_FAILED, EventKind::Business, 1..=1)
        .with(types::JOB_FAILED, EventKind::System, 1..=1)
}

/// How the shop reads old versions: `order_placed` v1 had no `currency` (every shop sold in
/// euros), v2 makes it explicit; `order_cancelled` v2 may carry the order's `items`, which a v1
/// event has none of ("no lines known").
pub fn upcasters() -> Upcasters {
    Upcasters::new()
        .current(types::ORDER_PLACED, 2)
        .step(types::ORDER_PLACED, 1, order_placed_v1_to_v2)
        .current(types::ORDER_CANCELLED, 2)
        .step(types::ORDER_CANCELLED, 1, order_cancelled_v1_to_v2)
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
