//! The shop: herald's example application — an online shop whose services don't call each other.
//!
//! It uses herald's public API exactly as any application would:
//! - its event types ([`events`]), the [`catalog`] the producer and router check, and the
//!   [`upcasters`] that read old schema versions;
//! - an event-sourced [`order::Order`] with its commands, served over HTTP by
//!   [`commands::OrderCommands`] on herald's [`herald::CommandService`];
//! - a read model, [`orders_view`], with its queries;
//! - five subscribers: [`inventory`] and [`analytics`] and [`ops`] (transactional: their effects
//!   are DynamoDB writes), [`payment`] and [`email`] (claimed: their effects lie outside);
//! - a windowed consumer of the stream, [`fraud`], whose `fraud_suspected` the shop answers by
//!   compensation: the order service cancels the orders ([`compensation`]), inventory releases
//!   their stock, payment refunds them, ops opens an incident.
//!
//! Each of its Lambda functions (`functions/*`) is a few lines of [`herald::Herald`] wiring.

#![warn(missing_docs)]

pub mod analytics;
pub mod commands;
pub mod compensation;
pub mod email;
pub mod events;
pub mod fraud;
pub mod inventory;
pub mod ops;
pub mod order;
pub mod orders_view;
pub mod payment;

use herald::producer::SubmissionPolicy;
use herald::{EventCatalog, EventKind, Upcasters};
use serde_json::Value;

use events::{sources, types};

/// The shop's event types, their kinds and schema versions (`events/schemas/<type>/v<N>.json`).
pub fn catalog() -> EventCatalog {
    EventCatalog::new()
        .with(types::ORDER_PLACED, EventKind::Business, 1..=2)
        .with(types::ORDER_CANCELLED, EventKind::Business, 1..=2)
        .with(types::STOCK_RESERVATION_FAILED, EventKind::Business, 1..=1)
        .with(types::PAYMENT_SUCCEEDED, EventKind::Business, 1..=1)
        .with(types::PAYMENT_FAILED, EventKind::Business, 1..=1)
        .with(types::JOB_FAILED, EventKind::System, 1..=1)
        .with(types::FRAUD_SUSPECTED, EventKind::Business, 1..=1)
        .with(types::PAYMENT_REFUNDED, EventKind::Business, 1..=1)
        .with(types::METRIC_SAMPLED, EventKind::Data, 1..=1)
        // Who announces what: the router dead-letters a type from any other source.
        .produced_by(types::ORDER_PLACED, &[sources::ORDERS])
        .produced_by(types::ORDER_CANCELLED, &[sources::ORDERS])
        .produced_by(types::STOCK_RESERVATION_FAILED, &[sources::INVENTORY])
        .produced_by(types::PAYMENT_SUCCEEDED, &[sources::PAYMENT])
        .produced_by(types::PAYMENT_FAILED, &[sources::PAYMENT])
        .produced_by(types::PAYMENT_REFUNDED, &[sources::PAYMENT])
        .produced_by(types::JOB_FAILED, &[SCHEDULER_SOURCE])
        .produced_by(types::FRAUD_SUSPECTED, &[sources::FRAUD])
        .produced_by(types::METRIC_SAMPLED, &[sources::DEVICES])
}

/// The released JSON Schemas (`events/schemas/<type>/v<N>.json`), embedded in the binary: the
/// producer validates client submissions against them without reading files.
pub const SCHEMAS: [(&str, u32, &str); 11] = [
    (
        types::ORDER_PLACED,
        1,
        include_str!("../../../events/schemas/order_placed/v1.json"),
    ),
    (
        types::ORDER_PLACED,
        2,
        include_str!("../../../events/schemas/order_placed/v2.json"),
    ),
    (
        types::ORDER_CANCELLED,
        1,
        include_str!("../../../events/schemas/order_cancelled/v1.json"),
    ),
    (
        types::ORDER_CANCELLED,
        2,
        include_str!("../../../events/schemas/order_cancelled/v2.json"),
    ),
    (
        types::STOCK_RESERVATION_FAILED,
        1,
        include_str!("../../../events/schemas/stock_reservation_failed/v1.json"),
    ),
    (
        types::PAYMENT_SUCCEEDED,
        1,
        include_str!("../../../events/schemas/payment_succeeded/v1.json"),
    ),
    (
        types::PAYMENT_FAILED,
        1,
        include_str!("../../../events/schemas/payment_failed/v1.json"),
    ),
    (
        types::JOB_FAILED,
        1,
        include_str!("../../../events/schemas/job_failed/v1.json"),
    ),
    (
        types::FRAUD_SUSPECTED,
        1,
        include_str!("../../../events/schemas/fraud_suspected/v1.json"),
    ),
    (
        types::PAYMENT_REFUNDED,
        1,
        include_str!("../../../events/schemas/payment_refunded/v1.json"),
    ),
    (
        types::METRIC_SAMPLED,
        1,
        include_str!("../../../events/schemas/metric_sampled/v1.json"),
    ),
];

/// The source of system events from the shop's scheduled jobs (a producer client).
pub const SCHEDULER_SOURCE: &str = "herald/scheduler";

/// What the shop's clients may submit to the public producer: failed background jobs (from the
/// scheduler) and metric samples (data events from the shop's devices, `herald/devices`, many
/// per request), each `data` meeting its released schema.
///
/// Orders are not among them: the order service alone announces `order_placed`, after its
/// aggregate accepted the order (`POST /orders`). One id space (the store refuses a second order
/// with an order's id), an aggregate compensation can cancel, and the customer as partition key
/// on every order; a client's own `order_placed` could take a future order's id, and its payment
/// key with it. Payments, reservations and cancellations come only from the shop's services.
pub fn submissions() -> SubmissionPolicy {
    SubmissionPolicy::new()
        .allow(types::JOB_FAILED, &[SCHEDULER_SOURCE])
        .allow(types::METRIC_SAMPLED, &[sources::DEVICES])
        .schemas(SCHEMAS)
        .expect("the embedded schemas are JSON (a unit test reads each)")
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

#[cfg(test)]
mod tests {
    use herald::Envelope;
    use serde_json::json;

    use super::*;

    #[test]
    fn every_released_schema_is_embedded_and_reads() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events/schemas");
        let mut on_disk = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            if !entry.file_type().unwrap().is_dir() {
                continue;
            }
            for file in std::fs::read_dir(entry.path()).unwrap() {
                let name = file.unwrap().file_name().to_string_lossy().into_owned();
                let version: u32 = name[1..name.len() - 5].parse().unwrap();
                on_disk.push((entry.file_name().to_string_lossy().into_owned(), version));
            }
        }
        on_disk.sort();
        let mut embedded: Vec<(String, u32)> = SCHEMAS
            .iter()
            .map(|(t, v, _)| (t.to_string(), *v))
            .collect();
        embedded.sort();
        assert_eq!(embedded, on_disk);
        for (event_type, version, text) in SCHEMAS {
            serde_json::from_str::<Value>(text)
                .unwrap_or_else(|e| panic!("{event_type} v{version}: {e}"));
        }
        let _ = submissions();
    }

    fn order() -> Envelope {
        Envelope::builder(types::ORDER_PLACED, sources::ORDERS)
            .subject("o-1")
            .partition_key("c-1")
            .schema_version(2)
            .data(
                json!({"orderId": "o-1", "customer": {"id": "c-1", "email": "a@example.com"},
                   "items": [{"sku": "SKU-1", "quantity": 2, "unitPrice": 100}],
                   "total": 200, "currency": "EUR", "paymentToken": "tok_visa"}),
            )
            .build()
            .unwrap()
    }

    fn job_failed(source: &str, data: Value) -> Envelope {
        Envelope::builder(types::JOB_FAILED, source)
            .kind(EventKind::System)
            .data(data)
            .build()
            .unwrap()
    }

    #[test]
    fn clients_submit_what_they_own_and_never_an_order() {
        let policy = submissions();
        let job = json!({"job": "nightly-export", "error": "upstream timed out", "attempt": 3});
        assert!(policy
            .admit(&job_failed(SCHEDULER_SOURCE, job.clone()))
            .is_ok());
        // An order only from the order service, even well formed and from its source.
        let err = policy.admit(&order()).unwrap_err();
        assert_eq!(err.field(), "type");
        assert!(err.to_string().contains("clients may not submit"), "{err}");
        let paid = Envelope::builder(types::PAYMENT_SUCCEEDED, sources::PAYMENT)
            .subject("o-1")
            .data(json!({}))
            .build()
            .unwrap();
        assert_eq!(policy.admit(&paid).unwrap_err().field(), "type");
        let err = policy
            .admit(&job_failed(sources::PAYMENT, job))
            .unwrap_err();
        assert_eq!(err.field(), "source");
    }

    #[test]
    fn a_submission_is_checked_against_its_schema() {
        let policy = submissions();
        let err = policy
            .admit(&job_failed(SCHEDULER_SOURCE, json!({})))
            .unwrap_err();
        assert_eq!(err.location(), "data");
        let mut bad = json!({"job": "nightly-export", "error": "upstream timed out", "attempt": 3});
        bad["attempt"] = json!("three");
        let err = policy
            .admit(&job_failed(SCHEDULER_SOURCE, bad))
            .unwrap_err();
        assert_eq!(err.location(), "data/attempt");
    }
}
