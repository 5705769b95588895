//! The event store against DynamoDB on the emulator: optimistic concurrency, atomic appends,
//! snapshots, and upcasting of stored events.

mod common;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use herald::event_sourcing::event_store::{DynamoDbEventStore, EventStore, StoreError};
use herald::Envelope;
use shop::events::{Customer, LineItem, OrderPlaced};
use shop::order::{CommandError, Order, OrderStatus};

async fn store() -> (aws_sdk_dynamodb::Client, String) {
    let client = aws_sdk_dynamodb::Client::new(&common::aws().await);
    let table = common::unique("events");
    let attribute = |name: &str, kind: ScalarAttributeType| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(kind)
            .build()
            .unwrap()
    };
    let key = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .unwrap()
    };
    client
        .create_table()
        .table_name(&table)
        .attribute_definitions(attribute("aggregateId", ScalarAttributeType::S))
        .attribute_definitions(attribute("version", ScalarAttributeType::N))
        .key_schema(key("aggregateId", KeyType::Hash))
        .key_schema(key("version", KeyType::Range))
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap();
    (client, table)
}

fn placed(order_id: &str) -> OrderPlaced {
    OrderPlaced {
        order_id: order_id.into(),
        customer: Customer {
            id: "c-1".into(),
            email: "c1@example.com".into(),
        },
        items: vec![LineItem {
            sku: "SKU-CABLE".into(),
            quantity: 2,
            unit_price: 1299,
        }],
        total: 2598,
        currency: "EUR".into(),
        payment_token: "tok_visa".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_racing_for_the_next_version_one_wins_one_retries() {
    let (client, table) = store().await;
    let store = DynamoDbEventStore::new(client, &table).with_upcasters(shop::upcasters());
    let loaded = store.load::<Order>("order-1").await.unwrap();
    let placed = loaded.state.place(placed("order-1")).unwrap();
    store
        .append("order-1", 0, &[placed], None::<&Order>)
        .await
        .unwrap();

    // Both writers load version 1 and decide to cancel.
    let a = store.load::<Order>("order-1").await.unwrap();
    let b = store.load::<Order>("order-1").await.unwrap();
    assert_eq!((a.version, b.version), (1, 1));
    let cancel_a = [a.state.cancel("order-1", "changed my mind").unwrap()];
    let cancel_b = [b.state.cancel("order-1", "duplicate order").unwrap()];
    let (ra, rb) = tokio::join!(
        store.append("order-1", a.version, &cancel_a, None::<&Order>),
        store.append("order-1", b.version, &cancel_b, None::<&Order>)
    );
    let (won, lost) = match (ra, rb) {
        (Ok(v), Err(e)) | (Err(e), Ok(v)) => (v, e),
        other => panic!("exactly one writer must win: {other:?}"),
    };
    assert_eq!(won, 2);
    assert!(
        matches!(lost, StoreError::VersionConflict { expected: 1, .. }),
        "{lost}"
    );

    // The loser reloads and decides again: the order is already cancelled.
    let reloaded = store.load::<Order>("order-1").await.unwrap();
    assert_eq!(reloaded.version, 2);
    assert_eq!(reloaded.state.status, OrderStatus::Cancelled);
    assert!(matches!(
        reloaded.state.cancel("order-1", "again"),
        Err(CommandError::AlreadyCancelled(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_event_append_is_all_or_nothing() {
    let (client, table) = store().await;
    let store = DynamoDbEventStore::new(client, &table).with_upcasters(shop::upcasters());
    let first = Order::default().place(placed("order-2")).unwrap();
    store
        .append("order-2", 0, std::slice::from_ref(&first), None::<&Order>)
        .await
        .unwrap();
    // Two events expecting version 0: the first slot is taken, so neither is written.
    let other = Envelope::builder("order_cancelled", "herald/orders")
        .subject("order-2")
        .data(serde_json::json!({"orderId": "order-2", "reason": "x"}))
        .build()
        .unwrap();
    let err = store
        .append("order-2", 0, &[first, other], None::<&Order>)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::VersionConflict { .. }));
    let events = store.events_after("order-2", 0).await.unwrap();
    assert_eq!(events.len(), 1, "the second event was not written either");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_shorten_loads_without_changing_the_state() {
    let (client, table) = store().await;
    let with_snapshots = DynamoDbEventStore::new(client.clone(), &table)
        .with_upcasters(shop::upcasters())
        .with_snapshots_every(3);
    let plain = DynamoDbEventStore::new(client, &table).with_upcasters(shop::upcasters());
    // Seven events: placed, then six notes the aggregate ignores, appended one by one.
    let mut loaded = with_snapshots.load::<Order>("order-3").await.unwrap();
    let mut events = vec![loaded.state.place(placed("order-3")).unwrap()];
    for i in 0..6 {
        events.push(
            Envelope::builder("order_noted", "herald/orders")
                .subject("order-3")
                .data(serde_json::json!({"note": i}))
                .build()
                .unwrap(),
        );
    }
    for event in events {
        let mut after = loaded.state.clone();
        herald::event_sourcing::event_store::Aggregate::apply(&mut after, &event);
        let version = with_snapshots
            .append("order-3", loaded.version, &[event], Some(&after))
            .await
            .unwrap();
        loaded = herald::event_sourcing::event_store::Loaded {
            state: after,
            version,
            events_read: 0,
        };
    }
    let fast = with_snapshots.load::<Order>("order-3").await.unwrap();
    let full = plain.load::<Order>("order-3").await.unwrap();
    assert_eq!(fast.state, full.state);
    assert_eq!((fast.version, full.version), (7, 7));
    assert_eq!(full.events_read, 7);
    assert_eq!(
        fast.events_read, 1,
        "the snapshot at version 6 leaves one event to read"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_v1_events_are_upcast_when_loaded() {
    let (client, table) = store().await;
    let store = DynamoDbEventStore::new(client, &table).with_upcasters(shop::upcasters());
    let v1 = Envelope::builder("order_placed", "herald/orders")
        .subject("order-4")
        .schema_version(1)
        .data(serde_json::json!({
            "orderId": "order-4",
            "customer": {"id": "c-4", "email": "c4@example.com"},
            "items": [{"sku": "SKU-MOUSE", "quantity": 1, "unitPrice": 2999}],
            "total": 2999,
            "paymentToken": "tok_visa"
        }))
        .build()
        .unwrap();
    store
        .append("order-4", 0, &[v1], None::<&Order>)
        .await
        .unwrap();
    let loaded = store.load::<Order>("order-4").await.unwrap();
    assert_eq!(loaded.state.status, OrderStatus::Placed);
    assert_eq!(loaded.state.currency, "EUR");
    assert_eq!(
        store.events_after("order-4", 0).await.unwrap()[0]
            .1
            .schema_version(),
        2
    );
}

/// An event of `event_type` about `aggregate` whose JSON, before the store stamps its version,
/// is exactly `bytes` long.
fn event_of_size(aggregate: &str, bytes: usize) -> Envelope {
    let build = |blob: usize| {
        Envelope::builder("note_added", "herald/test")
            .id("note-1")
            .subject(aggregate)
            .data(serde_json::json!({ "blob": "x".repeat(blob) }))
            .build()
            .unwrap()
    };
    let event = build(bytes - build(0).to_json().len());
    assert_eq!(event.to_json().len(), bytes);
    event
}

/// Issue 11, scenario 3: an event within a few bytes of the limit used to be stored (the size
/// was checked before the store added `aggregateversion`), then dead-lettered by the publisher
/// and unloadable forever. Now the store checks the bytes it will store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_too_large_once_stamped_is_refused_and_its_aggregate_still_loads() {
    use herald::aws::limits::MAX_EVENT_BYTES;

    let (client, table) = store().await;
    let store = DynamoDbEventStore::new(client, &table);
    let stamp = r#","aggregateversion":1"#.len();

    let near = event_of_size("note-a", MAX_EVENT_BYTES - 5);
    assert!(
        Envelope::parse(&near.to_json_bytes()).is_ok(),
        "valid unstamped"
    );
    let err = store.append_events("note-a", 0, &[near]).await.unwrap_err();
    let StoreError::TooLarge { limit, actual, .. } = err else {
        panic!("{err}");
    };
    assert_eq!(
        (limit, actual),
        (MAX_EVENT_BYTES, MAX_EVENT_BYTES - 5 + stamp)
    );
    // Nothing was stored: the aggregate loads (empty) and takes a smaller event.
    assert_eq!(store.events_after("note-a", 0).await.unwrap().len(), 0);

    // At the limit once stamped: stored, loaded back, parsed by every later hop.
    let exact = event_of_size("note-b", MAX_EVENT_BYTES - stamp);
    store.append_events("note-b", 0, &[exact]).await.unwrap();
    let loaded = store.events_after("note-b", 0).await.unwrap();
    assert_eq!(loaded[0].1.to_json().len(), MAX_EVENT_BYTES);
    assert!(Envelope::parse(&loaded[0].1.to_json_bytes()).is_ok());
}

/// Issue 11, scenario 3, as the order service's clients see it: a field with no limit let an
/// order grow to the event limit, answered 201, and then every command on it answered 503.
/// Now each field has a limit the 400 names, and every order accepted can be cancelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_order_field_is_a_400_naming_it_and_accepted_orders_can_be_cancelled() {
    use herald::{HttpRequest, HttpService};
    use shop::commands::OrderCommands;
    use shop::events::MAX_SKU_CHARS;

    let (client, table) = store().await;
    let service = OrderCommands::new(
        DynamoDbEventStore::new(client, &table).with_upcasters(shop::upcasters()),
    );
    let post = |path: &str, body: serde_json::Value| HttpRequest {
        method: "POST".into(),
        path: path.into(),
        query: Default::default(),
        headers: Default::default(),
        body: body.to_string().into_bytes(),
        principal: None,
    };
    let mut order = placed("order-big");
    // Just under the event limit before the store's stamp: what used to be accepted.
    order.items[0].sku = "S".repeat(herald::aws::limits::MAX_EVENT_BYTES - 600);
    let response = service
        .handle(post("/orders", serde_json::to_value(&order).unwrap()))
        .await;
    assert_eq!(response.status_code, 400, "{}", response.body);
    let body: serde_json::Value = serde_json::from_str(&response.body).unwrap();
    assert_eq!(body["error"]["field"], "data.items.sku");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("the limit is {MAX_SKU_CHARS}")),
        "{body}"
    );

    order.items[0].sku = "S".repeat(MAX_SKU_CHARS);
    let response = service
        .handle(post("/orders", serde_json::to_value(&order).unwrap()))
        .await;
    assert_eq!(response.status_code, 201, "{}", response.body);
    let response = service
        .handle(post(
            "/orders/order-big/cancel",
            serde_json::json!({"reason": "r".repeat(shop::events::MAX_REASON_CHARS)}),
        ))
        .await;
    assert_eq!(response.status_code, 200, "{}", response.body);
}
