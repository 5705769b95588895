//! Fraud detection: a windowed consumer of the stream. Within each tumbling window it follows
//! every customer's `order_placed` events; when the window closes, a customer over a limit —
//! more than [`FraudPolicy::max_orders`] orders, or more than [`FraudPolicy::max_value`] in one
//! currency — is announced as `fraud_suspected`, naming the window's orders. The shop reacts by
//! compensation, not by a call: the order service cancels those orders
//! ([`crate::compensation`]), inventory releases their stock and payment refunds their charges
//! on the cancellations, and ops records an incident.
//!
//! Exactly once, on at-least-once delivery: an order counts once however often its event is
//! delivered (the state keeps order ids, not a counter), and the announcement's id is derived
//! from the window, the customer and the orders it names ([`herald::window::window_event_id`]),
//! so a final invocation that Lambda retries announces the same event again, which every
//! subscriber skips.
//!
//! Lambda keeps a window's state per shard, so a customer is judged on one shard: the order
//! service keys its order events by customer (the envelope's `partitionkey`), and all of one
//! customer's orders reach the detector on one shard. An order without that key (submitted
//! straight to the producer without one) is judged with what its shard saw.

use std::collections::{BTreeMap, BTreeSet};

use aws_config::SdkConfig;
use chrono::SecondsFormat;
use herald::aws::{env, MissingEnv};
use herald::producer::{EventStream, Producer};
use herald::window::{window_event_id, WindowBounds, WindowedAggregation};
use herald::Envelope;
use serde::{Deserialize, Serialize};

use crate::events::{sources, types, FraudSuspected, OrderPlaced};

/// The limits of one customer's orders within one window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FraudPolicy {
    /// Most orders per customer per window (`FRAUD_MAX_ORDERS`, default 5).
    pub max_orders: usize,
    /// Most value per customer per window and currency, minor units (`FRAUD_MAX_VALUE`,
    /// default 500 000: 5 000.00).
    pub max_value: u64,
}

impl Default for FraudPolicy {
    fn default() -> Self {
        FraudPolicy {
            max_orders: 5,
            max_value: 500_000,
        }
    }
}

impl FraudPolicy {
    /// Why `activity` breaks the policy (empty when it does not).
    pub fn reasons(&self, activity: &CustomerActivity) -> Vec<String> {
        let mut reasons = Vec::new();
        if activity.order_ids.len() > self.max_orders {
            reasons.push(format!(
                "{} orders in the window (limit {})",
                activity.order_ids.len(),
                self.max_orders
            ));
        }
        for (currency, total) in &activity.totals {
            if *total > self.max_value {
                reasons.push(format!(
                    "{total} {currency} in the window (limit {})",
                    self.max_value
                ));
            }
        }
        reasons
    }
}

/// One customer's orders within the window so far.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomerActivity {
    /// Orders seen, each once.
    #[serde(default)]
    pub order_ids: BTreeSet<String>,
    /// Their value per currency, minor units.
    #[serde(default)]
    pub totals: BTreeMap<String, u64>,
    /// The correlation id of the customer's first order in the window: the announcement joins
    /// that business transaction.
    #[serde(default)]
    pub correlation_id: String,
}

/// The window's state: activity per customer id.
pub type FraudState = BTreeMap<String, CustomerActivity>;

/// Most orders one `fraud_suspected` names (order ids are at most 128 characters: 500 of them
/// stay far below herald's event size limit).
pub const ORDERS_PER_ANNOUNCEMENT: usize = 500;

/// The fraud detector, announcing through `S` (Kinesis in the function).
pub struct FraudDetector<S> {
    policy: FraudPolicy,
    producer: Producer<S>,
}

impl<S: EventStream> FraudDetector<S> {
    /// A detector with `policy`, announcing through `producer`.
    pub fn new(policy: FraudPolicy, producer: Producer<S>) -> Self {
        FraudDetector { policy, producer }
    }

    /// The announcements a closed window makes: one per customer over a limit (a customer with
    /// more than [`ORDERS_PER_ANNOUNCEMENT`] orders in one window gets one per that many, so no
    /// announcement outgrows an event). Each id is derived from the window, the customer and
    /// the orders named: a retried final invocation announces the same events, while a window
    /// that ended early and went on (or a customer seen on two shards) announces its other
    /// orders under other ids instead of being taken for a duplicate.
    pub fn announcements(
        &self,
        window: &WindowBounds,
        state: &FraudState,
    ) -> Result<Vec<Envelope>, herald::ValidationError> {
        let mut events = Vec::new();
        for (customer, activity) in state {
            let reasons = self.policy.reasons(activity);
            if reasons.is_empty() {
                continue;
            }
            let orders: Vec<String> = activity.order_ids.iter().cloned().collect();
            for chunk in orders.chunks(ORDERS_PER_ANNOUNCEMENT) {
                let named = format!("{customer}/{}", chunk.join(","));
                let mut event = Envelope::builder(types::FRAUD_SUSPECTED, sources::FRAUD)
                    .id(window_event_id("fraud", window, &named))
                    .subject(customer.clone());
                if !activity.correlation_id.is_empty() {
                    event = event.correlation_id(activity.correlation_id.clone());
                }
                events.push(
                    event
                        .data(FraudSuspected {
                            customer_id: customer.clone(),
                            window_start: window.start.to_rfc3339_opts(SecondsFormat::Secs, true),
                            window_end: window.end.to_rfc3339_opts(SecondsFormat::Secs, true),
                            order_ids: chunk.to_vec(),
                            totals: activity.totals.clone(),
                            reasons: reasons.clone(),
                        })
                        .build()?,
                );
            }
        }
        Ok(events)
    }
}

impl<S: EventStream> WindowedAggregation for FraudDetector<S> {
    type State = FraudState;

    fn name(&self) -> &'static str {
        "fraud"
    }

    fn fold(&self, state: &mut FraudState, event: &Envelope) -> Result<(), String> {
        if event.event_type() != types::ORDER_PLACED {
            return Ok(());
        }
        // The producer and the order service validated the order; one that does not read is
        // not an order to count (and not a reason to stop the window).
        let Ok(order) = event.data_as::<OrderPlaced>() else {
            tracing::warn!(
                event_id = event.id(),
                "an order_placed that does not read as an order: not counted"
            );
            return Ok(());
        };
        let activity = state.entry(order.customer.id).or_default();
        if activity.correlation_id.is_empty() {
            activity.correlation_id = event.correlation_id().to_string();
        }
        // Counted once per order, however often its event is delivered.
        if activity.order_ids.insert(order.order_id) {
            *activity.totals.entry(order.currency).or_default() += order.total;
        }
        Ok(())
    }

    async fn close(
        &self,
        window: &WindowBounds,
        state: FraudState,
        _terminated_early: bool,
    ) -> Result<(), String> {
        let events = self
            .announcements(window, &state)
            .map_err(|e| e.to_string())?;
        if events.is_empty() {
            return Ok(());
        }
        let failed: Vec<String> = self
            .producer
            .publish(&events)
            .await
            .into_iter()
            .filter_map(|r| r.err().map(|e| e.to_string()))
            .collect();
        match failed.first() {
            // The final invocation is retried; the same ids go out again.
            Some(first) => Err(format!(
                "{} of {} fraud_suspected events not written: {first}",
                failed.len(),
                events.len()
            )),
            None => {
                tracing::info!(
                    window_start = %window.start,
                    customers = events.len(),
                    "fraud suspected"
                );
                Ok(())
            }
        }
    }
}

impl FraudDetector<herald::adapters::KinesisStream> {
    /// Limits from `FRAUD_MAX_ORDERS` and `FRAUD_MAX_VALUE` (defaults when unset), announcing
    /// on `STREAM_NAME`.
    pub fn from_env(aws: &SdkConfig) -> Result<Self, herald::lambda::Error> {
        let defaults = FraudPolicy::default();
        let number = |name: &str, default: u64| -> Result<u64, herald::lambda::Error> {
            match std::env::var(name) {
                Err(_) => Ok(default),
                Ok(text) => text
                    .parse()
                    .map_err(|_| format!("{name} is \"{text}\"; expected a whole number").into()),
            }
        };
        let policy = FraudPolicy {
            max_orders: number("FRAUD_MAX_ORDERS", defaults.max_orders as u64)? as usize,
            max_value: number("FRAUD_MAX_VALUE", defaults.max_value)?,
        };
        let stream = env("STREAM_NAME").map_err(|e: MissingEnv| e.to_string())?;
        Ok(FraudDetector::new(
            policy,
            Producer::new(herald::adapters::KinesisStream::new(
                herald::aws::kinesis(aws),
                stream,
            )),
        ))
    }
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;
    use herald::testing::InMemoryStream;
    use herald::window::WindowProcessor;
    use serde_json::json;

    use super::*;
    use crate::events::{Customer, LineItem};

    fn placed(order_id: &str, customer: &str, total: u64) -> Envelope {
        Envelope::builder(types::ORDER_PLACED, sources::ORDERS)
            .id(format!("evt-{order_id}"))
            .subject(order_id)
            .schema_version(2)
            .data(OrderPlaced {
                order_id: order_id.into(),
                customer: Customer {
                    id: customer.into(),
                    email: format!("{customer}@example.com"),
                },
                items: vec![LineItem {
                    sku: "SKU-1".into(),
                    quantity: 1,
                    unit_price: total,
                }],
                total,
                currency: "EUR".into(),
                payment_token: "tok_visa".into(),
            })
            .build()
            .unwrap()
    }

    fn window() -> WindowBounds {
        WindowBounds {
            start: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            end: DateTime::from_timestamp(1_800_000_060, 0).unwrap(),
        }
    }

    fn detector() -> FraudDetector<InMemoryStream> {
        FraudDetector::new(
            FraudPolicy {
                max_orders: 3,
                max_value: 10_000,
            },
            Producer::new(InMemoryStream::new()),
        )
    }

    #[test]
    fn an_order_counts_once_however_often_it_is_delivered() {
        let detector = detector();
        let mut state = FraudState::default();
        for event in [placed("o-1", "ann", 100), placed("o-1", "ann", 100)] {
            detector.fold(&mut state, &event).unwrap();
        }
        assert_eq!(state["ann"].order_ids.len(), 1);
        assert_eq!(state["ann"].totals["EUR"], 100);
    }

    #[test]
    fn only_customers_over_a_limit_are_announced_with_their_orders() {
        let detector = detector();
        let mut state = FraudState::default();
        for n in 1..=4 {
            detector
                .fold(&mut state, &placed(&format!("burst-{n}"), "burst", 100))
                .unwrap();
        }
        detector
            .fold(&mut state, &placed("big-1", "spender", 20_000))
            .unwrap();
        detector
            .fold(&mut state, &placed("quiet-1", "quiet", 100))
            .unwrap();
        let events = detector.announcements(&window(), &state).unwrap();
        let customers: Vec<&str> = events.iter().filter_map(|e| e.subject()).collect();
        assert_eq!(customers, ["burst", "spender"]);
        let burst: FraudSuspected = events[0].data_as().unwrap();
        assert_eq!(burst.order_ids.len(), 4);
        assert_eq!(burst.reasons, ["4 orders in the window (limit 3)"]);
        assert_eq!(burst.window_start, "2027-01-15T08:00:00Z");
        let spender: FraudSuspected = events[1].data_as().unwrap();
        assert_eq!(spender.reasons, ["20000 EUR in the window (limit 10000)"]);
    }

    #[test]
    fn a_huge_burst_is_announced_in_parts_that_each_fit_an_event() {
        let detector = detector();
        let mut state = FraudState::default();
        let long = "o".repeat(120);
        for n in 0..1200 {
            detector
                .fold(&mut state, &placed(&format!("{long}-{n:04}"), "ann", 1))
                .unwrap();
        }
        let events = detector.announcements(&window(), &state).unwrap();
        assert_eq!(events.len(), 3);
        let named: usize = events
            .iter()
            .map(|e| e.data_as::<FraudSuspected>().unwrap().order_ids.len())
            .sum();
        assert_eq!(named, 1200);
        let ids: BTreeSet<&str> = events.iter().map(|e| e.id()).collect();
        assert_eq!(ids.len(), 3, "each part its own id");
    }

    #[tokio::test]
    async fn a_retried_close_announces_the_same_event_again() {
        let processor = WindowProcessor::new(detector());
        let mut state = FraudState::default();
        for n in 1..=4 {
            processor
                .aggregation()
                .fold(&mut state, &placed(&format!("o-{n}"), "ann", 100))
                .unwrap();
        }
        let final_invocation = serde_json::from_value(json!({
            "Records": [],
            "window": window(),
            "state": state,
            "isFinalInvokeForWindow": true,
        }))
        .unwrap();
        processor.process(&final_invocation).await.unwrap();
        processor.process(&final_invocation).await.unwrap();
        let events = processor.aggregation().producer.stream().events();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].id(), events[1].id(), "the same announcement");
    }

    #[tokio::test]
    async fn a_close_that_cannot_announce_fails_so_lambda_retries_it() {
        let processor = WindowProcessor::new(detector());
        processor.aggregation().producer.stream().set_down(true);
        let mut state = FraudState::default();
        for n in 1..=4 {
            processor
                .aggregation()
                .fold(&mut state, &placed(&format!("o-{n}"), "ann", 100))
                .unwrap();
        }
        let final_invocation = serde_json::from_value(json!({
            "Records": [],
            "window": window(),
            "state": state,
            "isFinalInvokeForWindow": true,
        }))
        .unwrap();
        let err = processor.process(&final_invocation).await.unwrap_err();
        assert!(err.to_string().contains("fraud_suspected"), "{err}");
    }
}
