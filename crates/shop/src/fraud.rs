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
//! from the window, the customer and the orders it names ([`herald::subscriber::window::window_event_id`]),
//! so a final invocation that Lambda retries announces the same event again, which every
//! subscriber skips.
//!
//! A window is Lambda's (by arrival on the stream), but an order is judged with the orders that
//! happened in the same span of time: the state keeps each order's own `time`, and the close
//! judges each customer's orders per window-long span of event time (aligned as Lambda aligns its
//! windows). So an hour of orders put back on the stream at once (a `herald dlq redrive`, a
//! replay) is judged as the hour it was, not as five minutes of frenzy, and a span judged before
//! gives the same verdict, under the same announcement id, which subscribers skip.
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
use herald::subscriber::window::{window_event_id, WindowBounds, WindowedAggregation};
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
    pub fn reasons(&self, activity: &SpanActivity) -> Vec<String> {
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

/// One order as the window saw it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderSeen {
    /// When the order was placed: its event's `time`, in seconds since the epoch.
    pub time: i64,
    /// Its currency.
    pub currency: String,
    /// Its value, minor units.
    pub total: u64,
}

/// One customer's orders seen in the window so far, each once.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomerActivity {
    /// Orders seen, by order id.
    #[serde(default)]
    pub orders: BTreeMap<String, OrderSeen>,
    /// The correlation id of the customer's first order in the window: the announcement joins
    /// that business transaction.
    #[serde(default)]
    pub correlation_id: String,
}

/// One customer's orders that happened within one span of time (a window's length, aligned).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpanActivity {
    /// The orders.
    pub order_ids: BTreeSet<String>,
    /// Their value per currency, minor units.
    pub totals: BTreeMap<String, u64>,
}

impl CustomerActivity {
    /// The orders grouped by the span of `length` seconds (aligned to multiples of it since the
    /// epoch, as Lambda aligns windows) they happened in, keyed by the span's start.
    pub fn by_span(&self, length: i64) -> BTreeMap<i64, SpanActivity> {
        let length = length.max(1);
        let mut spans: BTreeMap<i64, SpanActivity> = BTreeMap::new();
        for (order_id, order) in &self.orders {
            let span = spans
                .entry(order.time.div_euclid(length) * length)
                .or_default();
            span.order_ids.insert(order_id.clone());
            *span.totals.entry(order.currency.clone()).or_default() += order.total;
        }
        spans
    }
}

/// The window's state: activity per customer id. (A state written before orders kept their
/// time reads as empty: its window's orders go unjudged, once, during a deploy.)
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

    /// The announcements a closed window makes: one per customer and span of event time (the
    /// window's length, aligned as Lambda aligns windows) over a limit (a customer with more
    /// than [`ORDERS_PER_ANNOUNCEMENT`] orders in one span gets one per that many, so no
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
        let length = (window.end - window.start).num_seconds().max(1);
        for (customer, activity) in state {
            for (start, span) in activity.by_span(length) {
                events.extend(self.announce(customer, activity, start, length, &span)?);
            }
        }
        Ok(events)
    }

    /// The announcements for one customer's orders of one span of time (none when it keeps to
    /// the policy).
    fn announce(
        &self,
        customer: &str,
        activity: &CustomerActivity,
        start: i64,
        length: i64,
        span: &SpanActivity,
    ) -> Result<Vec<Envelope>, herald::ValidationError> {
        let reasons = self.policy.reasons(span);
        if reasons.is_empty() {
            return Ok(Vec::new());
        }
        let window = WindowBounds {
            start: chrono::DateTime::from_timestamp(start, 0).unwrap_or_default(),
            end: chrono::DateTime::from_timestamp(start + length, 0).unwrap_or_default(),
        };
        let mut events = Vec::new();
        let orders: Vec<String> = span.order_ids.iter().cloned().collect();
        for chunk in orders.chunks(ORDERS_PER_ANNOUNCEMENT) {
            let named = format!("{customer}/{}", chunk.join(","));
            let mut event = Envelope::builder(types::FRAUD_SUSPECTED, sources::FRAUD)
                .id(window_event_id("fraud", &window, &named))
                .subject(customer.to_string());
            if !activity.correlation_id.is_empty() {
                event = event.correlation_id(activity.correlation_id.clone());
            }
            events.push(
                event
                    .data(FraudSuspected {
                        customer_id: customer.to_string(),
                        window_start: window.start.to_rfc3339_opts(SecondsFormat::Secs, true),
                        window_end: window.end.to_rfc3339_opts(SecondsFormat::Secs, true),
                        order_ids: chunk.to_vec(),
                        totals: span.totals.clone(),
                        reasons: reasons.clone(),
                    })
                    .build()?,
            );
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
        // Counted once per order, however often its event is delivered, at the time it says
        // it was placed (not when it reached the stream).
        activity
            .orders
            .entry(order.order_id)
            .or_insert_with(|| OrderSeen {
                time: event.time().timestamp(),
                currency: order.currency,
                total: order.total,
            });
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

impl FraudDetector<herald::producer::KinesisStream> {
    /// Limits from `FRAUD_MAX_ORDERS` and `FRAUD_MAX_VALUE` (defaults when unset), announcing
    /// on `STREAM_NAME`.
    pub fn from_env(aws: &SdkConfig) -> Result<Self, herald::Error> {
        let defaults = FraudPolicy::default();
        let number = |name: &str, default: u64| -> Result<u64, herald::Error> {
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
            Producer::new(herald::producer::KinesisStream::new(
                herald::aws::kinesis(aws),
                stream,
            )),
        ))
    }
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;
    use herald::subscriber::window::WindowProcessor;
    use herald::testing::InMemoryStream;
    use serde_json::json;

    use super::*;
    use crate::events::{Customer, LineItem};

    fn placed(order_id: &str, customer: &str, total: u64) -> Envelope {
        placed_at(order_id, customer, total, window().start)
    }

    fn placed_at(
        order_id: &str,
        customer: &str,
        total: u64,
        time: chrono::DateTime<chrono::Utc>,
    ) -> Envelope {
        Envelope::builder(types::ORDER_PLACED, sources::ORDERS)
            .id(format!("evt-{order_id}"))
            .time(time)
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
            start: DateTime::from_timestamp(1_699_999_980, 0).unwrap(),
            end: DateTime::from_timestamp(1_700_000_040, 0).unwrap(),
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
        assert_eq!(state["ann"].orders.len(), 1);
        let spans = state["ann"].by_span(60);
        assert_eq!(spans[&window().start.timestamp()].totals["EUR"], 100);
    }

    /// Issue 24, item 6: `herald dlq redrive` or a replay puts an hour of one customer's orders
    /// on the stream at once, so they reach one window. Judged by arrival, that is twelve orders
    /// in a minute, and compensation cancels and refunds legitimate orders (the code before:
    /// one `fraud_suspected` naming all twelve). Judged by when they happened, it is one order
    /// every five minutes: no announcement. A real burst among them is still announced, for its
    /// own minute only.
    #[test]
    fn an_hour_of_orders_put_back_at_once_is_judged_as_the_hour_it_was() {
        let detector = detector();
        let mut state = FraudState::default();
        let hour_ago = window().start - chrono::Duration::hours(1);
        for n in 0..12 {
            let time = hour_ago + chrono::Duration::minutes(5 * n);
            detector
                .fold(&mut state, &placed_at(&format!("o-{n}"), "ann", 100, time))
                .unwrap();
        }
        assert!(detector
            .announcements(&window(), &state)
            .unwrap()
            .is_empty());

        // Four orders within one minute of that hour: over the limit of three, announced with
        // that minute's bounds.
        let burst = hour_ago + chrono::Duration::minutes(30) + chrono::Duration::seconds(10);
        for n in 0..3 {
            let time = burst + chrono::Duration::seconds(n);
            detector
                .fold(&mut state, &placed_at(&format!("b-{n}"), "ann", 100, time))
                .unwrap();
        }
        let events = detector.announcements(&window(), &state).unwrap();
        assert_eq!(events.len(), 1);
        let suspected: FraudSuspected = events[0].data_as().unwrap();
        assert_eq!(suspected.order_ids, ["b-0", "b-1", "b-2", "o-6"]);
        assert_eq!(suspected.window_start, "2023-11-14T21:43:00Z");
        assert_eq!(suspected.window_end, "2023-11-14T21:44:00Z");
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
        assert_eq!(burst.window_start, "2023-11-14T22:13:00Z");
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
