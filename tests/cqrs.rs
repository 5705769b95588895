//! Event sourcing and CQRS end to end: commands to the order service append to the event store,
//! the store's stream is published to Kinesis, the projector builds `orders_view`, and the query
//! function serves it. Plus: the view does not depend on delivery order or duplicates, and a
//! rebuild from the store reproduces it.

mod common;

use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use futures::StreamExt;
use herald::event_sourcing::event_store::{DynamoDbEventStore, EventStore};
use herald::Envelope;
use herald::Projection;
use herald_local::http::{get_json, request};
use herald_local::moto::free_port;
use herald_ops::inspect::scan;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde_json::{json, Value};
use shop::commands::OrderCommands;
use shop::events::{Customer, LineItem, OrderPlaced};
use shop::order::Order;
use shop::orders_view::{OrderView, OrdersProjection};
use shop_cli::demo::report::effects;

fn order(order_id: &str, customer: &str, quantity: u32) -> OrderPlaced {
    OrderPlaced {
        order_id: order_id.into(),
        customer: Customer {
            id: customer.into(),
            email: format!("{customer}@example.com"),
        },
        items: vec![LineItem {
            sku: "SKU-CABLE".into(),
            quantity,
            unit_price: 1299,
        }],
        total: 1299 * u64::from(quantity),
        currency: "EUR".into(),
        payment_token: "tok_visa".into(),
    }
}

async fn table(
    client: &aws_sdk_dynamodb::Client,
    keys: [(&str, ScalarAttributeType); 2],
) -> String {
    let name = common::unique("table");
    let mut request = client
        .create_table()
        .table_name(&name)
        .billing_mode(BillingMode::PayPerRequest);
    for (i, (key, kind)) in keys.into_iter().enumerate() {
        request = request
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(key)
                    .attribute_type(kind)
                    .build()
                    .unwrap(),
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(key)
                    .key_type(if i == 0 {
                        KeyType::Hash
                    } else {
                        KeyType::Range
                    })
                    .build()
                    .unwrap(),
            );
    }
    request.send().await.unwrap();
    name
}

/// The whole table, sorted by key, as JSON.
async fn snapshot(client: &aws_sdk_dynamodb::Client, table: &str) -> Vec<Value> {
    let mut items = scan(client, table).await.unwrap();
    items.sort_by_key(|i| (i["pk"].to_string(), i["sk"].to_string()));
    items
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_reach_the_view_through_store_stream_and_topic_and_a_rebuild_reproduces_it() {
    let port = free_port().unwrap();
    let pipeline = common::pipeline("cqrs", |o| o.runner.url_port = Some(port)).await;
    let stack = pipeline.stack().clone();
    let aws = common::aws().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws);
    let commands = stack.function_url("orders").unwrap();
    let queries = stack.function_url("query").unwrap();
    let commands = commands.trim_end_matches('/');
    let queries = queries.trim_end_matches('/');
    let body = |v: &OrderPlaced| Some(serde_json::to_vec(v).unwrap());

    // 24 orders from 4 customers; every third one is cancelled.
    let orders: Vec<OrderPlaced> = (0..24)
        .map(|i| order(&format!("o-{i:02}"), &format!("c-{}", i % 4), 1 + i % 3))
        .collect();
    for (i, o) in orders.iter().enumerate() {
        let correlation = format!("corr-{i}");
        let (status, answer) = request(
            "POST",
            &format!("{commands}/orders"),
            body(o),
            &[("x-correlation-id", &correlation)],
        )
        .await
        .unwrap();
        assert_eq!(status, 201, "{answer}");
        assert_eq!(answer["version"], 1);
        assert_eq!(answer["events"][0]["correlationId"], correlation);
    }
    for o in orders.iter().step_by(3) {
        let (status, answer) = request(
            "POST",
            &format!("{commands}/orders/{}/cancel", o.order_id),
            Some(br#"{"reason": "changed my mind"}"#.to_vec()),
            &[],
        )
        .await
        .unwrap();
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["version"], 2);
    }

    // Retrying a command that took effect answers its outcome; conflicting ones are refused.
    let (status, replay) = request("POST", &format!("{commands}/orders"), body(&orders[1]), &[])
        .await
        .unwrap();
    assert_eq!((status, replay["replayed"].clone()), (200, json!(true)));
    let mut changed = orders[1].clone();
    changed.payment_token = "tok_other".into();
    let (status, conflict) = request("POST", &format!("{commands}/orders"), body(&changed), &[])
        .await
        .unwrap();
    assert_eq!(status, 409, "{conflict}");
    let (status, missing) = request(
        "POST",
        &format!("{commands}/orders/o-nope/cancel"),
        Some(br#"{"reason": "x"}"#.to_vec()),
        &[],
    )
    .await
    .unwrap();
    assert_eq!(status, 404, "{missing}");
    let mut invalid = order("o-bad", "c-0", 1);
    invalid.total = 1;
    let (status, rejected) = request("POST", &format!("{commands}/orders"), body(&invalid), &[])
        .await
        .unwrap();
    assert_eq!(status, 400);
    assert_eq!(rejected["error"]["field"], "data.total", "{rejected}");

    // A v1 order_placed (no currency) already in the store is published and upcast on the way.
    let store = DynamoDbEventStore::new(
        dynamodb.clone(),
        stack.reference("OrderServiceEventStoreTable").unwrap(),
    )
    .with_upcasters(shop::upcasters());
    let mut v1 = serde_json::to_value(order("o-v1", "c-0", 2)).unwrap();
    v1.as_object_mut().unwrap().remove("currency");
    let legacy = Envelope::builder("order_placed", "herald/orders")
        .subject("o-v1")
        .schema_version(1)
        .data(v1)
        .build()
        .unwrap();
    store
        .append("o-v1", 0, &[legacy], None::<&Order>)
        .await
        .unwrap();

    pipeline
        .wait_idle(Duration::from_millis(1500), Duration::from_secs(180))
        .await
        .unwrap();

    // The query function serves what the commands did.
    for (i, o) in orders.iter().enumerate() {
        let (status, view) = get_json(&format!("{queries}/orders/{}", o.order_id))
            .await
            .unwrap();
        assert_eq!(status, 200, "{view}");
        let view: OrderView = serde_json::from_value(view).unwrap();
        let cancelled = i.is_multiple_of(3);
        assert_eq!(view.status, if cancelled { "cancelled" } else { "placed" });
        assert_eq!(view.version, if cancelled { 2 } else { 1 });
        assert_eq!(view.total, Some(o.total));
        assert_eq!(view.items, o.items);
        let types: Vec<&str> = view
            .timeline
            .iter()
            .map(|e| e.event_type.as_str())
            .collect();
        if cancelled {
            assert_eq!(types, ["order_placed", "order_cancelled"]);
            assert_eq!(view.cancel_reason.as_deref(), Some("changed my mind"));
        } else {
            assert_eq!(types, ["order_placed"]);
        }
        assert_eq!(view.timeline[0].correlation_id, format!("corr-{i}"));
    }
    let (_, legacy_view) = get_json(&format!("{queries}/orders/o-v1")).await.unwrap();
    assert_eq!(legacy_view["currency"], "EUR", "{legacy_view}");
    let (status, listing) = get_json(&format!("{queries}/customers/c-1/orders?limit=4"))
        .await
        .unwrap();
    assert_eq!(status, 200);
    let first_page = listing["orders"].as_array().unwrap().clone();
    assert_eq!(first_page.len(), 4);
    let next = listing["next"].as_str().unwrap();
    let (_, rest) = get_json(&format!("{queries}/customers/c-1/orders?next={next}"))
        .await
        .unwrap();
    let mut listed: Vec<Value> = first_page;
    listed.extend(rest["orders"].as_array().unwrap().iter().cloned());
    let mine: Vec<&OrderPlaced> = orders.iter().filter(|o| o.customer.id == "c-1").collect();
    assert_eq!(listed.len(), mine.len(), "{listed:?}");
    for entry in &listed {
        let index: usize = entry["orderId"].as_str().unwrap()[2..].parse().unwrap();
        let expected = if index.is_multiple_of(3) {
            "cancelled"
        } else {
            "placed"
        };
        assert_eq!(entry["status"], expected, "{entry}");
    }
    let (status, bad_limit) = get_json(&format!("{queries}/customers/c-1/orders?limit=1000"))
        .await
        .unwrap();
    assert_eq!(
        (status, bad_limit["error"]["field"].clone()),
        (400, json!("limit"))
    );

    // The other subscribers saw the store's orders too: one payment per order, and the stock of
    // cancelled orders is back (whichever of an order's two events inventory saw first).
    let effects = effects(&stack, &aws).await.unwrap();
    for o in &orders {
        assert_eq!(
            effects.payments_per_order.get(&o.order_id),
            Some(&1),
            "{}",
            o.order_id
        );
    }
    let kept: u64 = orders
        .iter()
        .enumerate()
        .filter(|(i, _)| !i.is_multiple_of(3))
        .map(|(_, o)| u64::from(o.items[0].quantity))
        .sum::<u64>()
        + 2;
    assert_eq!(
        effects.stock["SKU-CABLE"],
        (500 - kept as i64, kept as i64),
        "(available, reserved)"
    );
    assert!(
        effects.dead_letters.values().all(Vec::is_empty),
        "{:?}",
        effects.dead_letters
    );

    // Rebuilding from the store gives the same items as the incremental projection.
    let view_table = stack.reference("OrdersViewTable").unwrap();
    let incremental = snapshot(&dynamodb, view_table).await;
    assert_eq!(
        incremental.len(),
        25 + 25,
        "summaries (each holding its timeline), listings"
    );
    // Each summary holds one timeline entry per event: 24 placed, 8 cancelled, the v1 order.
    let entries: usize = incremental
        .iter()
        .filter(|i| i["sk"] == "summary")
        .map(|i| {
            i.as_object()
                .unwrap()
                .keys()
                .filter(|k| k.starts_with("event#"))
                .count()
        })
        .sum();
    assert_eq!(entries, 24 + 8 + 1);
    let projection = OrdersProjection::new(dynamodb.clone(), view_table);
    let mut reported = Vec::new();
    let applied =
        herald::event_sourcing::projection::rebuild(&projection, &store, |done, total| {
            reported.push((done, total))
        })
        .await
        .unwrap();
    assert_eq!(applied, 24 + 8 + 1);
    assert_eq!(reported.last().map(|(d, t)| d == t), Some(true));
    let rebuilt = snapshot(&dynamodb, view_table).await;
    assert_eq!(rebuilt, incremental);
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shuffled_duplicated_concurrent_delivery_ends_in_the_same_view() {
    let aws = common::aws().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws);
    let events_table = table(
        &dynamodb,
        [
            ("aggregateId", ScalarAttributeType::S),
            ("version", ScalarAttributeType::N),
        ],
    )
    .await;
    let service = OrderCommands::new(
        DynamoDbEventStore::new(dynamodb.clone(), &events_table).with_upcasters(shop::upcasters()),
    );
    for i in 0..6 {
        let id = format!("o-{i}");
        service
            .place_order(order(&id, &format!("c-{}", i % 2), 1 + i), None)
            .await
            .unwrap();
        if i.is_multiple_of(2) {
            service.cancel_order(&id, "too slow", None).await.unwrap();
        }
    }
    let mut events: Vec<Envelope> = Vec::new();
    let store =
        DynamoDbEventStore::new(dynamodb.clone(), &events_table).with_upcasters(shop::upcasters());
    let mut start = None;
    loop {
        let page = store.read_page(start).await.unwrap();
        events.extend(page.events.into_iter().map(|stored| stored.event));
        match page.next {
            Some(next) => start = Some(next),
            None => break,
        }
    }
    assert_eq!(events.len(), 9);
    events.sort_by_key(|e| (e.subject().unwrap().to_string(), e.aggregate_version()));

    let in_order_table = table(
        &dynamodb,
        [
            ("pk", ScalarAttributeType::S),
            ("sk", ScalarAttributeType::S),
        ],
    )
    .await;
    let in_order = OrdersProjection::new(dynamodb.clone(), &in_order_table);
    for event in &events {
        in_order.apply(event).await.unwrap();
    }
    let expected = snapshot(&dynamodb, &in_order_table).await;
    assert_eq!(
        expected
            .iter()
            .filter(|i| i["status"] == "cancelled")
            .count(),
        3 + 3
    );

    let shuffled_table = table(
        &dynamodb,
        [
            ("pk", ScalarAttributeType::S),
            ("sk", ScalarAttributeType::S),
        ],
    )
    .await;
    let shuffled = OrdersProjection::new(dynamodb.clone(), &shuffled_table);
    for seed in 0..8u64 {
        shuffled.clear().await.unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        // Every event at least once, a third of them twice, in a random order, four at a time.
        let mut delivery: Vec<&Envelope> = events.iter().collect();
        delivery.extend(events.iter().step_by(3));
        delivery.shuffle(&mut rng);
        futures::stream::iter(delivery.iter().map(|e| shuffled.apply(e)))
            .buffer_unordered(4)
            .for_each(|r| async {
                r.unwrap();
            })
            .await;
        let got = snapshot(&dynamodb, &shuffled_table).await;
        assert_eq!(got, expected, "delivery order of seed {seed}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commands_on_one_order_append_once_and_agree() {
    let aws = common::aws().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws);
    let events_table = table(
        &dynamodb,
        [
            ("aggregateId", ScalarAttributeType::S),
            ("version", ScalarAttributeType::N),
        ],
    )
    .await;
    let service = OrderCommands::new(
        DynamoDbEventStore::new(dynamodb.clone(), &events_table).with_upcasters(shop::upcasters()),
    );
    let placed = order("o-race", "c-1", 2);
    // Eight clients place the same order at once: one appends, the others get its outcome.
    let outcomes =
        futures::future::join_all((0..8).map(|_| service.place_order(placed.clone(), None))).await;
    let outcomes: Vec<_> = outcomes.into_iter().map(Result::unwrap).collect();
    assert_eq!(outcomes.iter().filter(|o| !o.replayed).count(), 1);
    assert!(outcomes
        .iter()
        .all(|o| o.events[0].id == outcomes[0].events[0].id));
    // Two different cancellations race: one wins, the other is refused — never both.
    let (a, b) = tokio::join!(
        service.cancel_order("o-race", "first reason", None),
        service.cancel_order("o-race", "second reason", None),
    );
    assert!(a.is_ok() != b.is_ok(), "{a:?} / {b:?}");
    let loaded = service
        .service()
        .store()
        .load::<Order>("o-race")
        .await
        .unwrap();
    assert_eq!(loaded.version, 2);
}

/// An SQS event (raw delivery) carrying `events`, as the inventory queue delivers them.
fn sqs_event(events: &[&Envelope]) -> Value {
    let records: Vec<Value> = events
        .iter()
        .map(|e| {
            json!({
                "messageId": uuid::Uuid::new_v4().to_string(),
                "receiptHandle": "handle",
                "body": e.to_json(),
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:herald-InventoryQueue",
                "awsRegion": "us-east-1",
            })
        })
        .collect();
    json!({ "Records": records })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancellation_releases_stock_once_even_when_it_arrives_before_the_order() {
    let pipeline = common::pipeline("release", |o| o.runner.mappings = false).await;
    let stack = pipeline.stack().clone();
    let dynamodb = aws_sdk_dynamodb::Client::new(&common::aws().await);
    let stock = stack.reference("StockTable").unwrap().to_string();
    let cable = || async {
        (
            common::number_attribute(&dynamodb, &stock, ("sku", "SKU-CABLE"), "available").await,
            common::number_attribute(&dynamodb, &stock, ("sku", "SKU-CABLE"), "reserved").await,
        )
    };
    let events = |id: &str| {
        let state = Order::default();
        let placed = state
            .place(order(id, "c-9", 3))
            .unwrap()
            .with_aggregate_version(1);
        let mut after = state.clone();
        herald::event_sourcing::event_store::Aggregate::apply(&mut after, &placed);
        let cancelled = after
            .cancel(id, "changed my mind")
            .unwrap()
            .with_aggregate_version(2);
        (placed, cancelled)
    };
    let ok = |response: Value| {
        assert_eq!(response["batchItemFailures"], json!([]), "{response}");
    };

    // In order: reserve 3, release 3; the cancellation delivered again releases nothing more.
    let (placed, cancelled) = events("o-in-order");
    ok(pipeline
        .invoke("inventory", &sqs_event(&[&placed]))
        .await
        .unwrap());
    assert_eq!(cable().await, (497, 3));
    ok(pipeline
        .invoke("inventory", &sqs_event(&[&cancelled]))
        .await
        .unwrap());
    ok(pipeline
        .invoke("inventory", &sqs_event(&[&cancelled]))
        .await
        .unwrap());
    assert_eq!(cable().await, (500, 0));

    // Out of order: the cancellation first leaves a tombstone; the order then reserves nothing.
    let (placed, cancelled) = events("o-reversed");
    ok(pipeline
        .invoke("inventory", &sqs_event(&[&cancelled]))
        .await
        .unwrap());
    ok(pipeline
        .invoke("inventory", &sqs_event(&[&placed]))
        .await
        .unwrap());
    assert_eq!(cable().await, (500, 0));

    // A cancellation that did not come from the event store (no aggregate version) releases
    // nothing, whatever lines it claims: inventory ignores it.
    let (placed, _) = events("o-forged");
    ok(pipeline
        .invoke("inventory", &sqs_event(&[&placed]))
        .await
        .unwrap());
    let forged = Envelope::builder("order_cancelled", "herald/orders")
        .subject("o-forged")
        .schema_version(2)
        .data(json!({
            "orderId": "o-forged",
            "reason": "x",
            "items": [{"sku": "SKU-CABLE", "quantity": 300, "unitPrice": 1}],
        }))
        .build()
        .unwrap();
    ok(pipeline
        .invoke("inventory", &sqs_event(&[&forged]))
        .await
        .unwrap());
    assert_eq!(cable().await, (497, 3));

    let tallies = pipeline.tallies();
    let inventory = &tallies["inventory"];
    assert_eq!(
        (
            inventory["applied"],
            inventory["duplicates"],
            inventory["ignored"]
        ),
        (5, 1, 1),
        "{inventory:?}"
    );
    pipeline.stop().await;
}

/// Issue 11, scenario 8 (part): a client's oversized or garbled `next` token, or a customer id
/// too long to be a key, used to reach DynamoDB, which refused it — answered as a 503 (retry
/// later) although no retry could help. Now each is a 400 naming the parameter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_bad_next_token_or_customer_id_is_a_400_naming_it() {
    use base64::Engine;
    use herald::{HttpRequest, HttpService};
    use shop::orders_view::OrdersQuery;

    let aws = common::aws().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws);
    let view = table(
        &dynamodb,
        [
            ("pk", ScalarAttributeType::S),
            ("sk", ScalarAttributeType::S),
        ],
    )
    .await;
    let query = OrdersQuery::new(OrdersProjection::new(dynamodb.clone(), &view));
    let get = |path: String, next: Option<String>| HttpRequest {
        method: "GET".into(),
        path,
        query: next.into_iter().map(|n| ("next".to_string(), n)).collect(),
        headers: Default::default(),
        body: Vec::new(),
        principal: None,
    };
    let token = |sk: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sk);
    let cases = [
        // Shaped like ours, but far longer than any key the listing hands out.
        (Some(token(&format!("order#{}", "x".repeat(3000)))), "next"),
        (
            Some(token(&format!(
                "order#2026-11-30T10:00:00.000Z#{}",
                "o".repeat(2000)
            ))),
            "next",
        ),
        (Some("!!not base64!!".to_string()), "next"),
        (Some(token("order#yesterday#o-1")), "next"),
        (Some("A".repeat(100_000)), "next"),
    ];
    for (next, field) in cases {
        let response = query
            .handle(get("/customers/c-1/orders".into(), next.clone()))
            .await;
        assert_eq!(response.status_code, 400, "{next:?}: {}", response.body);
        let body: Value = serde_json::from_str(&response.body).unwrap();
        assert_eq!(body["error"]["field"], field, "{body}");
    }
    let response = query
        .handle(get(format!("/customers/{}/orders", "c".repeat(3000)), None))
        .await;
    assert_eq!(response.status_code, 400, "{}", response.body);
    assert!(response.body.contains("customerId"), "{}", response.body);

    // A token the listing returned still works.
    let ours = token("order#2026-11-30T10:00:00.000Z#o-1");
    let response = query
        .handle(get("/customers/c-1/orders".into(), Some(ours)))
        .await;
    assert_eq!(response.status_code, 200, "{}", response.body);
}
