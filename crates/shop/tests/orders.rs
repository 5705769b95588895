//! The event-sourced order and its commands, on herald's in-memory event store: no emulator.

use herald::event_sourcing::command::CommandError as ServiceError;
use herald::event_sourcing::event_store::EventStore;
use herald::testing::InMemoryEventStore;
use herald::{Envelope, HttpRequest, HttpService};
use serde_json::{json, Value};
use shop::commands::OrderCommands;
use shop::events::{types, Customer, LineItem, OrderCancelled, OrderPlaced};
use shop::order::{order_event_id, CommandError, Order, OrderStatus};

fn order(id: &str, total: u64) -> OrderPlaced {
    OrderPlaced {
        order_id: id.into(),
        customer: Customer {
            id: "c-1".into(),
            email: "c1@example.com".into(),
        },
        items: vec![LineItem {
            sku: "SKU-CABLE".into(),
            quantity: 2,
            unit_price: total / 2,
        }],
        total,
        currency: "EUR".into(),
        payment_token: "tok_visa".into(),
    }
}

fn store() -> InMemoryEventStore {
    InMemoryEventStore::new().with_upcasters(shop::upcasters())
}

#[test]
fn placing_decides_one_order_placed_with_a_deterministic_id() {
    let event = Order::default().place(order("o-1", 1000)).unwrap();
    assert_eq!(event.event_type(), types::ORDER_PLACED);
    assert_eq!(event.id(), order_event_id(types::ORDER_PLACED, "o-1"));
    assert_eq!(event.subject(), Some("o-1"));
    assert_eq!(event.schema_version(), 2);
    let mut state = Order::default();
    herald::Aggregate::apply(&mut state, &event);
    assert_eq!(state.status, OrderStatus::Placed);
    assert!(matches!(
        state.place(order("o-1", 1000)),
        Err(CommandError::AlreadyExists(_))
    ));
}

#[test]
fn invalid_orders_name_the_field() {
    let mut bad = order("o-1", 1000);
    bad.total = 999;
    let err = Order::default().place(bad).unwrap_err();
    assert!(
        matches!(&err, CommandError::Invalid(e) if e.field() == "data.total"),
        "{err}"
    );
    let mut no_lines = order("o-1", 1000);
    no_lines.items.clear();
    let err = Order::default().place(no_lines).unwrap_err();
    assert!(matches!(&err, CommandError::Invalid(e) if e.field() == "data.items"));
}

#[test]
fn a_cancellation_carries_the_lines_and_is_refused_twice_or_before_the_order() {
    assert!(matches!(
        Order::default().cancel("o-1", "changed my mind"),
        Err(CommandError::NotFound(_))
    ));
    let mut state = Order::default();
    let placed = state.place(order("o-1", 1000)).unwrap();
    herald::Aggregate::apply(&mut state, &placed);
    let cancelled = state.cancel("o-1", "changed my mind").unwrap();
    let data: OrderCancelled = cancelled.data_as().unwrap();
    assert_eq!(data.items.len(), 1, "inventory releases these lines");
    herald::Aggregate::apply(&mut state, &cancelled);
    assert!(matches!(
        state.cancel("o-1", "again"),
        Err(CommandError::AlreadyCancelled(_))
    ));
    let err = Order::default().cancel("o-1", " ").unwrap_err();
    assert!(matches!(&err, CommandError::Invalid(e) if e.field() == "reason"));
}

#[tokio::test]
async fn commands_append_versions_and_a_retry_answers_the_original_outcome() {
    let commands = OrderCommands::new(store());
    let placed = commands
        .place_order(order("o-1", 1000), None)
        .await
        .unwrap();
    assert_eq!((placed.version, placed.replayed), (1, false));

    let again = commands
        .place_order(order("o-1", 1000), None)
        .await
        .unwrap();
    assert_eq!((again.version, again.replayed), (1, true));
    assert_eq!(again.events, placed.events);

    let different = commands.place_order(order("o-1", 2000), None).await;
    assert!(matches!(
        different,
        Err(ServiceError::Rejected(CommandError::AlreadyExists(_)))
    ));

    let cancelled = commands
        .cancel_order("o-1", "too slow", Some("corr-1"))
        .await
        .unwrap();
    assert_eq!(cancelled.version, 2);
    assert_eq!(cancelled.events[0].correlation_id, "corr-1");
    let retried = commands
        .cancel_order("o-1", "too slow", None)
        .await
        .unwrap();
    assert!(retried.replayed);
    let other_reason = commands.cancel_order("o-1", "other", None).await;
    assert!(matches!(
        other_reason,
        Err(ServiceError::Rejected(CommandError::AlreadyCancelled(_)))
    ));
    assert_eq!(
        commands
            .service()
            .store()
            .events_after("o-1", 0)
            .await
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn concurrent_identical_commands_append_once() {
    let commands = OrderCommands::new(store());
    let results = futures::future::join_all(
        (0..8).map(|_| commands.place_order(order("o-race", 1000), None)),
    )
    .await;
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(
        results
            .iter()
            .filter(|r| !r.as_ref().unwrap().replayed)
            .count(),
        1
    );
    let loaded = commands
        .service()
        .store()
        .load::<Order>("o-race")
        .await
        .unwrap();
    assert_eq!(loaded.version, 1);
}

#[tokio::test]
async fn a_v1_order_in_the_store_is_read_as_v2_with_the_default_currency() {
    let store = store();
    let v1 = Envelope::builder(types::ORDER_PLACED, "herald/orders")
        .id("old-1")
        .subject("o-old")
        .schema_version(1)
        .data(json!({
            "orderId": "o-old",
            "customer": {"id": "c", "email": "c@example.com"},
            "items": [{"sku": "SKU-CABLE", "quantity": 1, "unitPrice": 1299}],
            "total": 1299,
            "paymentToken": "tok_visa"
        }))
        .build()
        .unwrap();
    store.insert_raw("o-old", &v1);
    let loaded = store.load::<Order>("o-old").await.unwrap();
    assert_eq!(loaded.state.currency, "EUR");
    assert_eq!(loaded.version, 1);
    let events = store.events_after("o-old", 0).await.unwrap();
    assert_eq!(events[0].1.schema_version(), 2);
    assert_eq!(events[0].1.aggregate_version(), Some(1));
}

#[tokio::test]
async fn snapshots_shorten_loads_and_give_the_same_state() {
    let snapshotting = InMemoryEventStore::new().with_snapshots_every(2);
    let commands = OrderCommands::new(snapshotting);
    commands
        .place_order(order("o-s", 1000), None)
        .await
        .unwrap();
    commands.cancel_order("o-s", "why not", None).await.unwrap();
    let loaded = commands
        .service()
        .store()
        .load::<Order>("o-s")
        .await
        .unwrap();
    assert_eq!(loaded.version, 2);
    assert_eq!(
        loaded.events_read, 0,
        "the snapshot at version 2 holds it all"
    );
    assert_eq!(loaded.state.status, OrderStatus::Cancelled);
}

fn http(method: &str, path: &str, body: Value) -> HttpRequest {
    HttpRequest::from_payload(json!({
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
        "headers": {"content-type": "application/json"},
        "requestContext": {"http": {"method": method, "path": path}},
        "body": body.to_string(), "isBase64Encoded": false
    }))
    .unwrap()
}

#[tokio::test]
async fn the_http_service_answers_with_status_codes_that_name_the_field() {
    let commands = OrderCommands::new(store());
    let placed = commands
        .handle(http(
            "POST",
            "/orders",
            serde_json::to_value(order("o-h", 1000)).unwrap(),
        ))
        .await;
    assert_eq!(placed.status_code, 201, "{}", placed.body);
    let replayed = commands
        .handle(http(
            "POST",
            "/orders",
            serde_json::to_value(order("o-h", 1000)).unwrap(),
        ))
        .await;
    assert_eq!(replayed.status_code, 200);
    let mut wrong = serde_json::to_value(order("o-w", 1000)).unwrap();
    wrong["total"] = json!(1);
    let invalid = commands.handle(http("POST", "/orders", wrong)).await;
    assert_eq!(invalid.status_code, 400);
    assert!(invalid.body.contains("data.total"), "{}", invalid.body);
    let missing = commands
        .handle(http("POST", "/orders/nope/cancel", json!({"reason": "x"})))
        .await;
    assert_eq!(missing.status_code, 404);
    let bad_id = commands
        .handle(http("POST", "/orders/a%20b/cancel", json!({"reason": "x"})))
        .await;
    assert_eq!(bad_id.status_code, 400);
    assert!(bad_id.body.contains("orderId"), "{}", bad_id.body);
}
