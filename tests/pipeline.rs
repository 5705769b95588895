//! End to end, on the local pipeline: hundreds of orders placed over HTTP with the order service
//! (client retries among them), declined cards, scarce stock, system and data events and invalid
//! submissions (a client's own `order_placed` among them) into the producer's Function URL, and
//! raw garbage written straight onto the stream. Every effect must
//! happen exactly once, and every bad input must end as a named error or in a DLQ with its reason
//! (`shop_cli::demo::audit` judges the run; `tests/chaos.rs` runs the same under faults).

mod common;

use std::time::{Duration, Instant};

use herald_local::moto::free_port;
use herald_ops::inspect::put_raw;
use shop_cli::demo::audit::audit;
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
        data_events: 40,
    };
    let traffic = workload.generate(&catalog);
    assert!(
        traffic.duplicates * 10 >= traffic.order_posts.len(),
        "at least 10% of the orders are placed twice"
    );

    let started = Instant::now();
    let endpoints = workload::Endpoints::of(&stack).unwrap();
    let sent = workload::send(&endpoints, &traffic).await.unwrap();
    put_raw(
        &aws_sdk_kinesis::Client::new(&aws),
        stack.reference("BusEventStream").unwrap(),
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

    // Every promise: each valid event's effects exactly once (one charge per order, one email
    // per successful charge, one stock decision per order, each business event counted once, one
    // incident per system event), stock conserved per SKU, every invalid submission rejected
    // naming its attribute, the garbage in the router's DLQ with its reason, nothing else.
    let audit = audit(&catalog, &traffic, &sent, &effects);
    println!("{audit}");
    assert!(audit.is_clean(), "{audit}");
    assert!(
        audit.refused > 0,
        "the scarce SKU runs out, so some reservations are refused"
    );
    assert_eq!(pipeline.on_failure_batches(), 0);

    // A retried order was placed once: the order service answered it 200 (placed before), and
    // only the first one 201.
    assert_eq!(sent.statuses.get(&201), Some(&traffic.orders.len()));
    assert_eq!(sent.statuses.get(&200), Some(&traffic.duplicates));
    println!(
        "e2e: {} orders and submissions ({} orders, {} placed again, {} system, {} invalid) + {} raw records; \
         effects: {} payments, {} emails, {} reservations ({} refused), {} incidents; settled in {settled:.1?}",
        sent.submitted,
        traffic.orders.len(),
        traffic.duplicates,
        traffic.system_events,
        traffic.invalid.len(),
        traffic.raw_records.len(),
        effects.payments_per_order.len(),
        effects.emails_per_order.len(),
        traffic.orders.len() - audit.refused,
        audit.refused,
        effects.incidents
    );
    pipeline.stop().await;
}
