//! The order service's answer to `fraud_suspected`: compensation. It cancels every order the
//! announcement names through the same `cancel_order` command a customer uses, so everything
//! downstream happens on the existing paths: the cancellations leave the event store through the
//! publisher, inventory releases their stock, payment refunds their charges.
//!
//! Safe to repeat: each cancellation has a deterministic id and a repeated command answers its
//! first outcome, so an announcement delivered twice (or retried half-way) cancels each order
//! once. An order the service does not hold (one submitted straight to the producer, with no
//! aggregate to cancel) is reported in the outcome and left alone.

use herald::envelope::Envelope;
use herald::event_sourcing::command::CommandError as ServiceError;
use herald::subscriber::{ClaimedHandler, HandlerError, Outcome};
use herald::EventStore;
use serde::Serialize;

use crate::commands::OrderCommands;
use crate::events::{sources, types, FraudSuspected};
use crate::order::CommandError;

/// What became of the orders an announcement named.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Compensated {
    /// Cancelled now (or by an earlier delivery of the same announcement).
    pub cancelled: Vec<String>,
    /// Cancelled before, for another reason.
    pub already_cancelled: Vec<String>,
    /// Not held by the order service.
    pub unknown: Vec<String>,
}

/// The subscriber that cancels suspect orders.
pub struct CancelSuspectOrders<S> {
    commands: OrderCommands<S>,
}

impl<S: EventStore> CancelSuspectOrders<S> {
    /// Cancel through the order service's commands on `store`.
    pub fn new(store: S) -> Self {
        CancelSuspectOrders {
            commands: OrderCommands::new(store),
        }
    }

    /// The reason written on each cancellation (cut to the order's limit on reasons, so a
    /// long list of broken limits never makes a cancellation invalid).
    pub fn reason(suspected: &FraudSuspected) -> String {
        format!(
            "fraud suspected in the window from {}: {}",
            suspected.window_start,
            suspected.reasons.join("; ")
        )
        .chars()
        .take(crate::events::MAX_REASON_CHARS)
        .collect()
    }
}

impl<S: EventStore> ClaimedHandler for CancelSuspectOrders<S> {
    fn name(&self) -> &'static str {
        "compensation"
    }

    fn wants(&self, event: &Envelope) -> bool {
        event.event_type() == types::FRAUD_SUSPECTED
    }

    async fn handle(&self, event: &Envelope) -> Result<Outcome, HandlerError> {
        // Only the fraud detector's suspicions cancel orders (the router already refuses the
        // type from any other source; this keeps a stray one from cancelling anything).
        if event.source() != sources::FRAUD {
            return Err(HandlerError::Poison {
                field: "source".into(),
                reason: format!(
                    "is \"{}\"; only {}'s fraud_suspected cancels orders",
                    event.source(),
                    sources::FRAUD
                ),
            });
        }
        let suspected: FraudSuspected = event.data_as()?;
        let reason = Self::reason(&suspected);
        let mut done = Compensated::default();
        for order_id in &suspected.order_ids {
            match self
                .commands
                .cancel_order(order_id, &reason, Some(event.correlation_id()))
                .await
            {
                Ok(_) => done.cancelled.push(order_id.clone()),
                Err(ServiceError::Rejected(CommandError::AlreadyCancelled(_))) => {
                    done.already_cancelled.push(order_id.clone())
                }
                Err(ServiceError::Rejected(CommandError::NotFound(_))) => {
                    done.unknown.push(order_id.clone())
                }
                // An id the order service would never accept is no order of its own.
                Err(ServiceError::Rejected(CommandError::Invalid(_))) => {
                    done.unknown.push(order_id.clone())
                }
                Err(ServiceError::Rejected(CommandError::AlreadyExists(_))) => {
                    done.already_cancelled.push(order_id.clone())
                }
                // A concurrent command on the order, or the store failing: redelivered, and the
                // orders cancelled so far answer their first outcome then.
                Err(err) => return Err(HandlerError::Retry(format!("{order_id}: {err}"))),
            }
        }
        Ok(Outcome::new("compensated").with_detail(&done))
    }
}

#[cfg(test)]
mod tests {
    use herald::testing::InMemoryEventStore;
    use herald::EventStore;

    use super::*;
    use crate::events::{sources, Customer, LineItem, OrderPlaced};
    use crate::order::{Order, OrderStatus};

    fn order(order_id: &str) -> OrderPlaced {
        OrderPlaced {
            order_id: order_id.into(),
            customer: Customer {
                id: "ann".into(),
                email: "ann@example.com".into(),
            },
            items: vec![LineItem {
                sku: "SKU-1".into(),
                quantity: 1,
                unit_price: 100,
            }],
            total: 100,
            currency: "EUR".into(),
            payment_token: "tok_visa".into(),
        }
    }

    fn suspected(order_ids: &[&str]) -> Envelope {
        Envelope::builder(types::FRAUD_SUSPECTED, sources::FRAUD)
            .subject("ann")
            .data(FraudSuspected {
                customer_id: "ann".into(),
                window_start: "2027-01-15T08:00:00Z".into(),
                window_end: "2027-01-15T08:01:00Z".into(),
                order_ids: order_ids.iter().map(|s| s.to_string()).collect(),
                totals: [("EUR".to_string(), 300)].into(),
                reasons: vec!["3 orders in the window (limit 2)".into()],
            })
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn the_named_orders_are_cancelled_once_and_unknown_ones_reported() {
        let handler = CancelSuspectOrders::new(InMemoryEventStore::new());
        for id in ["o-1", "o-2", "o-3"] {
            handler.commands.place_order(order(id), None).await.unwrap();
        }
        handler
            .commands
            .cancel_order("o-3", "changed my mind", None)
            .await
            .unwrap();
        let event = suspected(&["o-1", "o-2", "o-3", "o-elsewhere"]);
        let first = handler.handle(&event).await.unwrap();
        let again = handler.handle(&event).await.unwrap();
        assert_eq!(first.detail, again.detail, "a repeat answers the same");
        assert_eq!(
            first.detail,
            serde_json::json!({
                "cancelled": ["o-1", "o-2"],
                "alreadyCancelled": ["o-3"],
                "unknown": ["o-elsewhere"],
            })
        );
        let store = handler.commands.service().store();
        for id in ["o-1", "o-2"] {
            let order: Order = store.load(id).await.unwrap().state;
            assert_eq!(order.status, OrderStatus::Cancelled);
            let events = store.events_after(id, 0).await.unwrap();
            assert_eq!(events.len(), 2, "placed and cancelled once: {events:?}");
            let cancelled: crate::events::OrderCancelled = events[1].1.data_as().unwrap();
            assert!(
                cancelled.reason.starts_with("fraud suspected"),
                "{cancelled:?}"
            );
        }
    }

    /// Issue 24, item 9: only the fraud detector's suspicions cancel orders (the code before
    /// cancelled whatever a `fraud_suspected` from any source named).
    #[tokio::test]
    async fn a_fraud_suspected_from_another_source_cancels_nothing() {
        let handler = CancelSuspectOrders::new(InMemoryEventStore::new());
        handler
            .commands
            .place_order(order("o-1"), None)
            .await
            .unwrap();
        let mut forged: serde_json::Value =
            serde_json::from_str(&suspected(&["o-1"]).to_json()).unwrap();
        forged["source"] = serde_json::json!("herald/inventory");
        let forged = Envelope::parse(forged.to_string().as_bytes()).unwrap();
        let err = handler.handle(&forged).await.unwrap_err();
        assert!(
            matches!(&err, HandlerError::Poison { field, .. } if field == "source"),
            "{err:?}"
        );
        let order: Order = handler
            .commands
            .service()
            .store()
            .load("o-1")
            .await
            .unwrap()
            .state;
        assert_eq!(order.status, OrderStatus::Placed);
    }
}
