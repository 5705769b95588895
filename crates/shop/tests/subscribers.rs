//! The shop's subscribers decide and act on in-memory ports: a fake gateway, a fake mailer, and
//! the transactional handlers' writes inspected as they would be committed. No emulator.

use std::sync::Mutex;

use aws_sdk_dynamodb::types::TransactWriteItem;
use herald::idempotency::Conflict;
use herald::{
    Envelope, EventKind, HandlerError, KeyedHandler, KeyedOutcome, Outcome, TransactionalHandler,
};
use serde_json::json;
use shop::email::{Email, EmailSender, Mailer, Sent};
use shop::events::{
    sources, types, PaymentFailed, PaymentRefunded, PaymentSucceeded, StockReservationFailed,
};
use shop::inventory::Inventory;
use shop::payment::{
    Answer, Charge, ChargeRequest, Payment, PaymentGateway, Refund, RefundRequest,
};

fn order_placed(id: &str, token: &str) -> Envelope {
    Envelope::builder(types::ORDER_PLACED, sources::ORDERS)
        .id(format!("evt-{id}"))
        .subject(id)
        .schema_version(2)
        .data(json!({
            "orderId": id,
            "customer": {"id": "c-1", "email": "c1@example.com"},
            "items": [
                {"sku": "SKU-CABLE", "quantity": 2, "unitPrice": 500},
                {"sku": "SKU-LAMP", "quantity": 1, "unitPrice": 2000}
            ],
            "total": 3000, "currency": "EUR", "paymentToken": token
        }))
        .build()
        .unwrap()
}

/// A `payment_succeeded` for `order`, paid by a customer at `email`.
fn payment_succeeded(order: &str, amount: u64, email: &str) -> Envelope {
    Envelope::builder(types::PAYMENT_SUCCEEDED, sources::PAYMENT)
        .subject(order)
        .data(
            json!({"orderId": order, "paymentId": format!("pay-{order}"), "amount": amount,
            "currency": "EUR", "customer": {"id": "c-1", "email": email}}),
        )
        .build()
        .unwrap()
}

/// A gateway in memory with a processor's rules: `tok_declined` is declined; one charge per key.
#[derive(Default)]
struct FakeGateway {
    charged: Mutex<Vec<ChargeRequest>>,
    refunded: Mutex<Vec<String>>,
}

impl PaymentGateway for FakeGateway {
    async fn charge(&self, request: &ChargeRequest) -> Result<Answer<Charge>, HandlerError> {
        if request.token == "tok_declined" {
            return Ok(Answer::now(Charge::Declined {
                reason: "card declined by issuer".into(),
            }));
        }
        let mut charged = self.charged.lock().unwrap();
        let before = charged
            .iter()
            .any(|c| c.idempotency_key == request.idempotency_key);
        if !before {
            charged.push(request.clone());
        }
        let charge = Charge::Succeeded {
            payment_id: format!("pay-{}", request.order_id),
        };
        Ok(Answer {
            value: charge,
            now: !before,
        })
    }

    async fn refund(&self, request: &RefundRequest) -> Result<Answer<Refund>, HandlerError> {
        let key = &request.idempotency_key;
        let mut charged = self.charged.lock().unwrap();
        let mut refunded = self.refunded.lock().unwrap();
        let mut now = false;
        if let Some(at) = charged.iter().position(|c| &c.idempotency_key == key) {
            charged.remove(at);
            refunded.push(key.clone());
            now = true;
        }
        let value = if refunded.contains(key) {
            Refund::Refunded {
                payment_id: format!("pay-{}", request.order_id),
                amount: 3000,
                currency: "EUR".into(),
            }
        } else {
            Refund::NothingCharged
        };
        Ok(Answer { value, now })
    }
}

/// The outcome, new or a duplicate's.
fn either(keyed: KeyedOutcome) -> Outcome {
    match keyed {
        KeyedOutcome::New(o) | KeyedOutcome::Existing(o) => o,
    }
}

/// The order service's `order_cancelled` for `id` (it carries the aggregate version).
fn order_cancelled(id: &str) -> Envelope {
    Envelope::builder(types::ORDER_CANCELLED, sources::ORDERS)
        .subject(id)
        .schema_version(2)
        .data(json!({"orderId": id, "reason": "fraud suspected"}))
        .build()
        .unwrap()
        .with_aggregate_version(2)
}

#[tokio::test]
async fn payment_refunds_a_cancelled_order_once_and_nothing_it_never_charged() {
    let payment = Payment::new(FakeGateway::default());
    payment
        .handle(&order_placed("o-1", "tok_visa"))
        .await
        .unwrap();
    let cancelled = order_cancelled("o-1");
    assert!(payment.wants(&cancelled));
    let outcome = either(payment.handle(&cancelled).await.unwrap());
    assert_eq!(outcome.effect, "refunded");
    let refund = &outcome.emit[0];
    assert_eq!(refund.event_type(), types::PAYMENT_REFUNDED);
    assert_eq!(refund.causation_id(), Some(cancelled.id()));
    let data: PaymentRefunded = refund.data_as().unwrap();
    assert_eq!((data.order_id.as_str(), data.amount), ("o-1", 3000));
    // A redelivery is a duplicate with the same follow-up: the next hop deduplicates it.
    let KeyedOutcome::Existing(again) = payment.handle(&cancelled).await.unwrap() else {
        panic!("a redelivered refund is a duplicate");
    };
    assert_eq!(again.emit[0].id(), refund.id());

    let never_charged = either(payment.handle(&order_cancelled("o-2")).await.unwrap());
    assert_eq!(never_charged.effect, "nothing_to_refund");
    assert!(never_charged.emit.is_empty());

    // A client's cancellation through the producer carries no version: not payment's to refund.
    let submitted = Envelope::builder(types::ORDER_CANCELLED, sources::ORDERS)
        .subject("o-1")
        .data(json!({"orderId": "o-1", "reason": "x"}))
        .build()
        .unwrap();
    assert!(!payment.wants(&submitted));
}

#[tokio::test]
async fn payment_charges_once_per_event_and_announces_the_result() {
    let payment = Payment::new(FakeGateway::default());
    let placed = order_placed("o-1", "tok_visa");
    assert!(payment.wants(&placed));
    let KeyedOutcome::New(outcome) = payment.handle(&placed).await.unwrap() else {
        panic!("the first delivery charges");
    };
    assert_eq!(outcome.effect, "charged");
    let follow_up = &outcome.emit[0];
    assert_eq!(follow_up.event_type(), types::PAYMENT_SUCCEEDED);
    assert_eq!(follow_up.causation_id(), Some(placed.id()));
    assert_eq!(follow_up.correlation_id(), placed.correlation_id());
    let data: PaymentSucceeded = follow_up.data_as().unwrap();
    assert_eq!((data.amount, data.payment_id.as_str()), (3000, "pay-o-1"));
    // A redelivery is a duplicate with the same follow-up id: the next hop deduplicates it.
    let KeyedOutcome::Existing(again) = payment.handle(&placed).await.unwrap() else {
        panic!("a redelivery charges nothing");
    };
    assert_eq!(again.emit[0].id(), follow_up.id());

    let declined = either(
        payment
            .handle(&order_placed("o-2", "tok_declined"))
            .await
            .unwrap(),
    );
    assert_eq!(declined.emit[0].event_type(), types::PAYMENT_FAILED);
    let data: PaymentFailed = declined.emit[0].data_as().unwrap();
    assert_eq!(data.reason, "card declined by issuer");
}

#[tokio::test]
async fn payment_refuses_an_order_that_does_not_add_up_as_poison() {
    let bad = Envelope::builder(types::ORDER_PLACED, sources::ORDERS)
        .subject("o-3")
        .schema_version(2)
        .data(
            json!({"orderId": "o-3", "customer": {"id": "c", "email": "c@x.io"},
            "items": [{"sku": "S", "quantity": 1, "unitPrice": 5}], "total": 6,
            "currency": "EUR", "paymentToken": "tok_visa"}),
        )
        .build()
        .unwrap();
    let gateway = FakeGateway::default();
    let err = Payment::new(gateway).handle(&bad).await.unwrap_err();
    assert!(
        matches!(&err, HandlerError::Poison { field, .. } if field == "data.total"),
        "{err}"
    );
}

#[derive(Default)]
struct FakeMailer(Mutex<Vec<Email>>);

impl Mailer for FakeMailer {
    async fn send(&self, email: &Email) -> Result<Sent, HandlerError> {
        let mut sent = self.0.lock().unwrap();
        if sent.iter().any(|e| e.message_id == email.message_id) {
            return Ok(Sent::Before);
        }
        sent.push(email.clone());
        Ok(Sent::Now)
    }
}

#[tokio::test]
async fn email_confirms_a_payment_to_the_customer_and_rejects_a_bad_address() {
    let sender = EmailSender::new(FakeMailer::default());
    let paid = payment_succeeded("o-1", 3050, "c1@example.com");
    assert!(matches!(
        sender.handle(&paid).await.unwrap(),
        KeyedOutcome::New(_)
    ));
    assert!(
        matches!(
            sender.handle(&paid).await.unwrap(),
            KeyedOutcome::Existing(_)
        ),
        "a redelivery sends nothing"
    );
    let bad = payment_succeeded("o-2", 1, "nobody");
    let err = sender.handle(&bad).await.unwrap_err();
    assert!(matches!(&err, HandlerError::Poison { field, .. } if field == "data.customer.email"));
}

/// The table and key of one write, as `table/key` (the way a test reads a decision).
fn target(write: &TransactWriteItem) -> String {
    let (table, key) = if let Some(put) = write.put() {
        (
            put.table_name(),
            put.item()
                .get("sku")
                .or(put.item().get("metric"))
                .or(put.item().get("orderId"))
                .cloned(),
        )
    } else if let Some(update) = write.update() {
        (
            update.table_name(),
            update
                .key()
                .get("sku")
                .or(update.key().get("metric"))
                .or(update.key().get("orderId"))
                .cloned(),
        )
    } else {
        ("?", None)
    };
    let key = key.and_then(|k| k.as_s().ok().cloned()).unwrap_or_default();
    format!("{table}/{key}")
}

#[test]
fn inventory_reserves_every_line_with_the_order_reservation_in_one_decision() {
    let inventory = Inventory::new("stock", "reservations");
    let placed = order_placed("o-1", "tok_visa");
    let decision = inventory.decide(&placed, None).unwrap();
    let targets: Vec<String> = decision.effects().unwrap().iter().map(target).collect();
    assert!(
        targets.contains(&"reservations/o-1".to_string()),
        "{targets:?}"
    );
    assert!(
        targets.contains(&"stock/SKU-CABLE".to_string()),
        "{targets:?}"
    );
    assert!(
        targets.contains(&"stock/SKU-LAMP".to_string()),
        "{targets:?}"
    );
    assert_eq!(decision.result.effect, "reserved");
    assert!(decision.result.emit.is_empty());
}

#[test]
fn inventory_refuses_the_order_when_a_line_lacks_stock() {
    let inventory = Inventory::new("stock", "reservations");
    let placed = order_placed("o-1", "tok_visa");
    let first = inventory.decide(&placed, None).unwrap();
    // DynamoDB cancelled the transaction on the lamp's condition (`available >= :q`).
    let lamp = first
        .effects()
        .unwrap()
        .iter()
        .position(|w| target(w) == "stock/SKU-LAMP")
        .unwrap();
    let second = inventory
        .decide(&placed, Some(Conflict { index: lamp }))
        .unwrap();
    assert_eq!(second.result.effect, "reservation_failed");
    let failed = &second.result.emit[0];
    assert_eq!(failed.event_type(), types::STOCK_RESERVATION_FAILED);
    let data: StockReservationFailed = failed.data_as().unwrap();
    assert_eq!((data.sku.as_str(), data.requested), ("SKU-LAMP", 1));
    // No stock moves: only the order's `refused` reservation is written.
    let targets: Vec<String> = second.effects().unwrap().iter().map(target).collect();
    assert_eq!(targets, ["reservations/o-1"]);
}

#[test]
fn analytics_counts_business_and_data_events_and_revenue_only() {
    let analytics = shop::analytics::Analytics::new("analytics");
    let paid = payment_succeeded("o-1", 3050, "c1@example.com");
    let decision = analytics.decide(&paid, None).unwrap();
    let targets: Vec<String> = decision.effects().unwrap().iter().map(target).collect();
    assert_eq!(
        targets,
        ["analytics/type#payment_succeeded", "analytics/revenue#EUR"]
    );
    let job = Envelope::builder(types::JOB_FAILED, "herald/jobs")
        .subject("nightly")
        .kind(EventKind::System)
        .data(json!({"job": "nightly", "error": "disk full"}))
        .build()
        .unwrap();
    assert!(!analytics.wants(&job));
    assert!(shop::ops::Ops::new("incidents").wants(&job));
    // Data events: counted by analytics, of no interest to the business subscribers.
    let sample = Envelope::builder(types::METRIC_SAMPLED, sources::DEVICES)
        .subject("shelf-sensor-1")
        .kind(EventKind::Data)
        .data(json!({"deviceId": "shelf-sensor-1", "metric": "temperature", "value": 18.5}))
        .build()
        .unwrap();
    assert!(analytics.wants(&sample));
    let targets: Vec<String> = analytics
        .decide(&sample, None)
        .unwrap()
        .effects()
        .unwrap()
        .iter()
        .map(target)
        .collect();
    assert_eq!(targets, ["analytics/type#metric_sampled"]);
    assert!(!shop::ops::Ops::new("incidents").wants(&sample));
    assert!(!Payment::new(FakeGateway::default()).wants(&sample));
    assert!(!Inventory::new("stock", "reservations").wants(&sample));
}

#[test]
fn the_catalog_knows_every_shop_event_and_the_upcasters_read_old_versions() {
    let catalog = shop::catalog();
    for event_type in [
        types::ORDER_PLACED,
        types::ORDER_CANCELLED,
        types::STOCK_RESERVATION_FAILED,
        types::PAYMENT_SUCCEEDED,
        types::PAYMENT_FAILED,
        types::JOB_FAILED,
        types::FRAUD_SUSPECTED,
        types::PAYMENT_REFUNDED,
        types::METRIC_SAMPLED,
    ] {
        assert!(catalog.get(event_type).is_some(), "{event_type}");
    }
    assert_eq!(shop::upcasters().current_version(types::ORDER_PLACED), 2);
}

#[test]
fn an_order_whose_cancellation_came_first_reserves_nothing() {
    let inventory = Inventory::new("stock", "reservations");
    let placed = order_placed("o-1", "tok_visa");
    // The reservation item (index 0) already exists: the cancellation's tombstone.
    let decision = inventory
        .decide(&placed, Some(Conflict { index: 0 }))
        .unwrap();
    assert!(decision.is_empty());
    assert_eq!(decision.result.effect, "skipped_cancelled");
}

#[test]
fn reservations_spread_over_two_tables_and_an_order_always_meets_its_own() {
    let inventory = Inventory::new("stock", "reservations-a,reservations-b");
    let tables = herald::idempotency::RecordTables::parse("reservations-a,reservations-b");
    let mut used = std::collections::BTreeSet::new();
    for n in 0..20 {
        let order = format!("o-{n}");
        let expected = format!("{}/{order}", tables.for_key(&order));
        let placed = inventory
            .decide(&order_placed(&order, "tok_visa"), None)
            .unwrap();
        let cancelled = inventory.decide(&order_cancelled(&order), None).unwrap();
        for decision in [placed.effects().unwrap(), cancelled.effects().unwrap()] {
            let targets: Vec<String> = decision.iter().map(target).collect();
            assert!(targets.contains(&expected), "{targets:?} {expected}");
        }
        used.insert(tables.for_key(&order).to_string());
    }
    assert_eq!(used.len(), 2, "both tables take orders");
}

/// The whole subscriber as Lambda runs it — SQS batch in, idempotency, follow-ups, dead letters,
/// partial batch response — on in-memory ports.
mod delivered {
    use std::time::{Duration, SystemTime};

    use herald::producer::Producer;
    use herald::subscriber::{Keyed, SqsSubscriber, SubscriberConfig};
    use herald::testing::{sqs_event, sqs_message, InMemoryDeadLetters, InMemoryStream};

    use super::*;

    fn subscriber(
        gateway: FakeGateway,
    ) -> SqsSubscriber<Keyed<Payment<FakeGateway>>, InMemoryDeadLetters, InMemoryStream> {
        SqsSubscriber::new(
            Keyed::new(Payment::new(gateway)),
            InMemoryDeadLetters::new(),
            Producer::new(InMemoryStream::new()),
            SubscriberConfig {
                upcasters: shop::upcasters(),
                ..SubscriberConfig::default()
            },
        )
    }

    fn deadline() -> SystemTime {
        SystemTime::now() + Duration::from_secs(10)
    }

    #[tokio::test]
    async fn a_duplicate_delivery_charges_once_and_poison_is_dead_lettered() {
        let payment = subscriber(FakeGateway::default());
        let placed = order_placed("o-1", "tok_visa");
        let (response, summary) = payment
            .handle(&sqs_event(&[placed.clone(), placed.clone()]), deadline())
            .await;
        assert!(response.batch_item_failures.is_empty());
        assert_eq!((summary.applied, summary.duplicates), (1, 1));

        // A redelivery later (SNS retried): still one charge.
        let (_, summary) = payment.handle(&sqs_event(&[placed]), deadline()).await;
        assert_eq!(summary.duplicates, 1);

        let mut poison = sqs_event(&[]);
        poison
            .records
            .push(sqs_message("m-bad", "{\"not\": \"an event\"}", 1));
        let (response, summary) = payment.handle(&poison, deadline()).await;
        assert!(
            response.batch_item_failures.is_empty(),
            "acknowledged, not retried"
        );
        assert_eq!(summary.dead_lettered, 1);
    }

    #[tokio::test]
    async fn a_v1_order_is_charged_in_euros_after_upcasting() {
        let payment = subscriber(FakeGateway::default());
        let v1 = Envelope::builder(types::ORDER_PLACED, sources::ORDERS)
            .subject("o-v1")
            .schema_version(1)
            .data(
                json!({"orderId": "o-v1", "customer": {"id": "c", "email": "c@x.io"},
                "items": [{"sku": "S", "quantity": 1, "unitPrice": 700}], "total": 700,
                "paymentToken": "tok_visa"}),
            )
            .build()
            .unwrap();
        let (response, summary) = payment.handle(&sqs_event(&[v1]), deadline()).await;
        assert!(response.batch_item_failures.is_empty());
        assert_eq!(summary.applied, 1);
    }
}
