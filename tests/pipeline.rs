//! End to end, on the local pipeline: hundreds of orders over HTTP into the producer's Function
//! URL, with client retries (duplicated events), declined cards, scarce stock, system events,
//! invalid submissions and raw garbage written straight onto the stream. Every effect must
//! happen exactly once, and every bad input must end as a named error or in a DLQ with its reason
//! (`shop_cli::demo::audit` judges the run; `tests/chaos.rs` runs the same under faults).

mod common;

use std::time::{Duration, Instant};

use herald_local::inspect::put_raw;
use herald_local::moto::free_port;
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
