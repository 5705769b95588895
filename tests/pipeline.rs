//! End to end, on the local pipeline: hundreds of orders over HTTP into the producer's Function
//! URL, with client retries (duplicated events), declined cards, scarce stock, system events,
//! invalid submissions and raw garbage written straight onto the stream. Every effect must
//! happen exactly once, and every bad input must end as a named error or in a DLQ with its reason.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use herald_local::inspect::put_raw;
use herald_local::moto::free_port;
use serde_json::Value;
use shop_cli::demo::report::{effects, render};
use shop_cli::demo::workload::{self, Workload};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_flow_through_every_hop_exactly_once() {
    let port = free_port().unwrap();
    let pipeline = common::pipeline("e2e", |o| o.runner.url_port = Some(port)).await;
    let stack = pipeline.stack().clone();
    let aws = common::aws().await;

    let catalog = workload::catalog(&common::root().join("infra/seed")).unwrap();
    let workload = Workload {
        orders: 200,
        duplicate_ratio: 0.15,
        declined_every: 9,
        system_events: 5,
        malformed: true,
        seed: rand::random(),
        per_request: 25,
    };
    let traffic = workload.generate(&catalog);
    let valid_submissions = traffic.orders.len() + traffic.duplicates + traffic.system_events;
    assert!(
        traffic.duplicates * 10 >= valid_submissions,
        "at least 10% of the events are duplicates"
    );

    let started = Instant::now();
    let url = stack.function_url("producer").unwrap();
    let sent = workload::send(&url, &traffic).await.unwrap();
    put_raw(
        &aws_sdk_kinesis::Client::new(&aws),
        stack.reference("EventStream").unwrap(),
        &traffic.raw_records,
    )
    .await
    .unwrap();
    pipeline
        .wait_idle(Duration::from_millis(1500), Duration::from_secs(300))
        .await
        .unwrap();
    let settled = started.elapsed();
    let effects = effects(&stack, &aws).await.unwrap();
    println!("{}", render(&traffic, &sent, &effects, &pipeline.tallies()));
    println!("settled in {settled:.1?}");

    // The producer: every valid submission accepted, every invalid one rejected naming its attribute.
    assert_eq!(sent.accepted, valid_submissions);
    let mut rejected_fields: Vec<&str> = sent
        .rejected
        .iter()
        .map(|(_, field, _)| field.as_str())
        .collect();
    let mut expected_fields: Vec<&str> = traffic.invalid.iter().map(|(_, field)| *field).collect();
    rejected_fields.sort();
    expected_fields.sort();
    assert_eq!(rejected_fields, expected_fields);

    // Payment: one charge per order, never two.
    let orders = traffic.orders.len();
    let declined = traffic.declined;
    assert_eq!(effects.payments_per_order.len(), orders);
    assert!(
        effects.payments_per_order.values().all(|n| *n == 1),
        "{:?}",
        effects.payments_per_order
    );
    assert_eq!(
        effects.payments.get("declined").copied().unwrap_or(0),
        declined
    );
    assert_eq!(
        effects.payments.get("succeeded").copied().unwrap_or(0),
        orders - declined
    );

    // Email: one confirmation per successful payment.
    assert_eq!(effects.emails_per_order.len(), orders - declined);
    assert!(effects.emails_per_order.values().all(|n| *n == 1));

    // Inventory: one decision per order, and the stock moved by exactly the reserved orders.
    assert_eq!(effects.inventory_outcomes.len(), orders);
    let mut expected_reserved: BTreeMap<String, i64> = BTreeMap::new();
    let by_id: HashMap<String, &Value> = traffic
        .orders
        .iter()
        // The producer namespaces client ids (issue 11, scenario 5): the event's id is derived
        // from the client's source and id.
        .map(|o| {
            let id = herald::producer::SubmissionPolicy::event_id(
                o["source"].as_str().unwrap(),
                o["id"].as_str().unwrap(),
            );
            (id, o)
        })
        .collect();
    let mut refused = 0;
    for (key, outcome) in &effects.inventory_outcomes {
        let id = key.rsplit('#').next().unwrap();
        let order = by_id[id];
        match outcome.as_str() {
            "reserved" => {
                for item in order["data"]["items"].as_array().unwrap() {
                    *expected_reserved
                        .entry(item["sku"].as_str().unwrap().to_string())
                        .or_default() += item["quantity"].as_i64().unwrap();
                }
            }
            "reservation_failed" => refused += 1,
            other => panic!("unexpected inventory outcome {other}"),
        }
    }
    for product in &catalog {
        let (available, reserved) = effects.stock[&product.sku];
        let expected = expected_reserved.get(&product.sku).copied().unwrap_or(0);
        assert_eq!(reserved, expected, "{} reserved", product.sku);
        assert_eq!(
            available,
            product.available as i64 - expected,
            "{} available",
            product.sku
        );
        assert!(available >= 0);
    }
    assert!(
        refused > 0,
        "the scarce SKU runs out, so some reservations are refused"
    );

    // Analytics: each business event counted once.
    let count = |metric: &str| effects.analytics.get(metric).map(|(c, _)| *c).unwrap_or(0) as usize;
    assert_eq!(count("type#order_placed"), orders);
    assert_eq!(count("type#payment_succeeded"), orders - declined);
    assert_eq!(count("type#payment_failed"), declined);
    assert_eq!(count("type#stock_reservation_failed"), refused);
    let revenue: u64 = traffic
        .orders
        .iter()
        .filter(|o| o["data"]["paymentToken"] == "tok_visa")
        .map(|o| o["data"]["total"].as_u64().unwrap())
        .sum();
    assert_eq!(effects.analytics["revenue#EUR"].1 as u64, revenue);

    // Ops: one incident per system event.
    assert_eq!(effects.incidents, traffic.system_events);

    // Garbage on the stream: in the router's DLQ, each with its reason; nothing anywhere else.
    let router_letters = &effects.dead_letters["RouterDeadLetterQueue"];
    assert_eq!(router_letters.len(), traffic.raw_records.len());
    assert!(router_letters
        .iter()
        .all(|l| l.stage == "router" && !l.reason.is_empty()));
    assert_eq!(
        effects.dead_letters.len(),
        1,
        "only the router's DLQ has messages: {:?}",
        effects.dead_letters.keys()
    );
    assert_eq!(pipeline.on_failure_batches(), 0);

    // What the subscribers themselves report: the duplicates were seen and skipped.
    let tallies = pipeline.tallies();
    let skipped: i64 = ["inventory", "payment"]
        .iter()
        .map(|s| tallies[*s]["duplicates"])
        .sum();
    assert!(skipped >= 2 * traffic.duplicates as i64, "{tallies:?}");
    println!(
        "e2e: {} submissions ({} orders, {} duplicated events, {} system, {} invalid) + {} raw records; \
         effects: {} payments, {} emails, {} reservations ({} refused), {} incidents; settled in {settled:.1?}",
        sent.submitted,
        orders,
        traffic.duplicates,
        traffic.system_events,
        traffic.invalid.len(),
        traffic.raw_records.len(),
        effects.payments_per_order.len(),
        effects.emails_per_order.len(),
        orders - refused,
        refused,
        effects.incidents
    );
    pipeline.stop().await;
}
