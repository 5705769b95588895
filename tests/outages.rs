//! A long outage of an AWS service the subscribers need (issue 24, item 2). DynamoDB stops
//! answering for longer than a fixed redelivery schedule would wait — 5 receives × 60 s gave up
//! after about five minutes and dead-lettered every message on its last receive, whatever failed,
//! while the functions' `Errors` alarms stayed quiet. Now a failure AWS caused comes back with
//! exponential backoff for as long as the queue keeps it, and a batch that failed whole for it
//! fails its invocation, so the `<function>-errors` alarm sees the outage. The periods are
//! shortened (backoff 1 s doubling to 2 s, alarms evaluated every half second); the outage lasts
//! until the alarm fired and for at least as many receives as the old schedule allowed.

mod common;

use std::time::{Duration, Instant};

use herald_local::alarms::State;
use herald_local::faults::FaultPlan;
use herald_local::moto::free_port;
use shop_cli::demo::audit::audit;
use shop_cli::demo::report::{effects, render};
use shop_cli::demo::workload::{self, Workload};

/// What the old schedule gave a message: its `maxReceiveCount`.
const OLD_RECEIVES: usize = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_dynamodb_outage_dead_letters_nothing_and_every_effect_applies_once_after() {
    let port = free_port().unwrap();
    let pipeline = common::pipeline("outage", |o| {
        o.runner.url_port = Some(port);
        // A proxy in front of the emulator that injects nothing until the test begins the outage.
        o.runner.faults = Some(FaultPlan::parse("throttle:dynamodb=0%").unwrap());
        o.runner.alarms.period = Some(Duration::from_millis(500));
        o.runner.alarms.print = false;
        for (name, value) in [("RetryBaseSeconds", "1"), ("RetryCapSeconds", "2")] {
            o.stack.parameters.insert(name.into(), value.into());
        }
    })
    .await;
    let stack = pipeline.stack().clone();
    let aws = common::aws().await;
    let board = pipeline.alarms().clone();
    let catalog = workload::catalog(&common::root().join("infra/seed")).unwrap();
    let traffic = Workload {
        orders: 30,
        duplicate_ratio: 0.0,
        declined_every: 7,
        system_events: 2,
        malformed: false,
        seed: 24,
        per_request: 10,
        data_events: 0,
    }
    .generate(&catalog);

    let proxy = pipeline.fault_proxy().expect("the plan has a proxy");
    proxy.begin_outage("dynamodb", "*").unwrap();
    let began = Instant::now();
    // The orders were taken by the order service before the outage: its publisher writes them to
    // the stream (the store is DynamoDB, down now); the scheduler's events go to the producer.
    traffic
        .announce_orders(&aws, stack.reference("BusEventStream").unwrap())
        .await
        .unwrap();
    let producer_only = workload::Traffic {
        order_posts: Vec::new(),
        ..traffic.clone()
    };
    let mut sent = workload::send(&workload::Endpoints::of(&stack).unwrap(), &producer_only)
        .await
        .unwrap();
    sent.accepted += traffic.orders.len();
    // The outage holds until the inventory's errors alarm fired and inventory has been invoked
    // more often than the old schedule would have delivered each message.
    common::wait_until(
        "the inventory's errors alarm in ALARM during the outage",
        Duration::from_secs(300),
        || {
            let alarm = board
                .statuses()
                .iter()
                .any(|s| s.logical_id == "InventoryErrorsAlarm" && s.state == State::Alarm);
            async move { alarm }
        },
    )
    .await;
    common::wait_until(
        "inventory retried past the old schedule",
        Duration::from_secs(300),
        || {
            let failed = pipeline.stats()["inventory"].1;
            async move { failed > OLD_RECEIVES }
        },
    )
    .await;
    let outage = began.elapsed();
    let (invocations, failed, _) = pipeline.stats()["inventory"].clone();
    pipeline.fault_proxy().unwrap().end_outage("dynamodb", "*");
    pipeline
        .wait_idle(Duration::from_millis(2000), Duration::from_secs(600))
        .await
        .unwrap();
    let effects = effects(&stack, &aws).await.unwrap();
    let audit = audit(&catalog, &traffic, &sent, &effects);
    println!("{}", render(&traffic, &sent, &effects, &pipeline.tallies()));
    println!("{audit}");
    println!(
        "outage: DynamoDB down {outage:.1?}; inventory invoked {invocations} times, {failed} failed \
         during it; dead letters {}; {}",
        audit.dead_letters,
        pipeline.fault_report().unwrap()
    );
    assert!(audit.is_clean(), "{audit}");
    assert_eq!(
        (audit.dead_letters, audit.lost, audit.duplicated),
        (0, 0, 0),
        "nothing dead-lettered, lost or doubled"
    );
    pipeline.stop().await;
}
