//! The chaos suite (issue 11): the end-to-end order flow while AWS and the hosts misbehave as
//! they do in production, all at once —
//!
//! - throttling and 5xx on ≥ 5 % of the requests to every service (Kinesis, DynamoDB, SNS, SQS),
//!   transaction conflicts, KMS throttling and 1 % dropped connections on top (half of them after
//!   the emulator applied the request, so the caller cannot tell);
//! - function processes killed at a random moment of 5 % of their invocations, 10 % of the order
//!   service's and 40 % of the producer's (Lambda's `Runtime.ExitError`: a batch half done, its
//!   SQS messages back after the visibility timeout, a client's request answered 502);
//! - SNS `PublishBatch` down for at least 30 s, from after the first half of the traffic;
//! - the runner itself restarted once during that outage, with the router's batches failing.
//!
//! Every "it happened" check below holds by construction, on any machine: a share in the plan is
//! a count (each run of `1 / share` requests or invocations gets one fault, see
//! [`herald_local::faults`]), a kill decided for an invocation happens even when the function
//! answers first, and the test itself begins the outage, waits until publishing has hit it,
//! restarts the runner and only then ends it.
//!
//! Then every promise must still hold ([`shop_cli::demo::audit`]): each valid event's effects
//! exactly once, stock conserved per SKU, every rejected input answered with its reason or in a
//! DLQ with it, sent = effects + dead letters, nothing else in any DLQ.
//!
//! `CHAOS_SEED=<n>` replays another draw of faults and traffic (the default is fixed, so a
//! failure reproduces); `CHAOS_EXTRA=latency=50ms@5%` adds to the spec;
//! `CHAOS_LOG_DIR=/some/dir` keeps the functions' logs.

mod common;

use std::time::{Duration, Instant};

use herald_local::faults::{guaranteed, FaultKind, FaultPlan};
use herald_local::moto::free_port;
use herald_ops::inspect::put_raw;
use shop_cli::demo::audit::audit;
use shop_cli::demo::report::{effects, render};
use shop_cli::demo::workload::{self, Traffic, Workload};

/// How long SNS publishing stays down, at least.
const OUTAGE: Duration = Duration::from_secs(30);
/// The share of each service's requests throttled (the plan's first rule: never pre-empted by
/// another, so its count is exactly the plan's).
const THROTTLE: f64 = 0.03;
/// The share of the producer's invocations killed.
const PRODUCER_KILLS: f64 = 0.4;
/// The share of the order service's invocations killed (one per `POST /orders`).
const ORDER_KILLS: f64 = 0.1;
/// The share of every other function's invocations killed.
const KILLS: f64 = 0.05;
/// How long publishing may take to reach the outage, on the slowest machine (a state awaited).
const OUTAGE_HIT: Duration = Duration::from_secs(300);

fn plan(seed: u64) -> FaultPlan {
    let extra = std::env::var("CHAOS_EXTRA").unwrap_or_default();
    FaultPlan::parse(&format!(
        "throttle={}%,5xx=3%,5xx:sns=4%,conflict=3%,kms=1%,drop=1%,kill:producer={}%,kill:orders={}%,kill={}%,seed={seed},{extra}",
        THROTTLE * 100.0,
        PRODUCER_KILLS * 100.0,
        ORDER_KILLS * 100.0,
        KILLS * 100.0,
    ))
    .unwrap()
}

/// The traffic's orders and requests split in two, to send before and after the restart.
fn halves(traffic: &Traffic) -> (Traffic, Traffic) {
    let (orders, requests) = (traffic.order_posts.len() / 2, traffic.requests.len() / 2);
    let first = Traffic {
        order_posts: traffic.order_posts[..orders].to_vec(),
        requests: traffic.requests[..requests].to_vec(),
        ..Traffic::default()
    };
    let second = Traffic {
        order_posts: traffic.order_posts[orders..].to_vec(),
        requests: traffic.requests[requests..].to_vec(),
        ..Traffic::default()
    };
    (first, second)
}

/// The share of `function`'s invocations the plan kills.
fn kill_share(function: &str) -> f64 {
    match function {
        "producer" => PRODUCER_KILLS,
        "orders" => ORDER_KILLS,
        _ => KILLS,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_effect_happens_exactly_once_through_faults_kills_an_outage_and_a_restart() {
    let seed: u64 = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(11);
    let port = free_port().unwrap();
    let mut pipeline = common::pipeline("chaos", |o| {
        o.runner.url_port = Some(port);
        o.runner.faults = Some(plan(seed));
        o.runner.log_dir = std::env::var("CHAOS_LOG_DIR").ok().map(Into::into);
    })
    .await;
    let stack = pipeline.stack().clone();
    let aws = common::aws().await;
    let catalog = workload::catalog(&common::root().join("infra/seed")).unwrap();
    let traffic = Workload {
        orders: 150,
        duplicate_ratio: 0.1,
        declined_every: 9,
        system_events: 4,
        malformed: true,
        seed,
        per_request: 5,
        data_events: 20,
    }
    .generate(&catalog);
    let endpoints = workload::Endpoints::of(&stack).unwrap();
    let (first, second) = halves(&traffic);
    // Each order placed is one invocation of the order service at least, each request one of
    // the producer: the plan kills some of them, and their clients must send them again.
    let planned_kills = guaranteed(ORDER_KILLS, traffic.order_posts.len() as u64)
        + guaranteed(PRODUCER_KILLS, traffic.requests.len() as u64);
    assert!(planned_kills >= 3, "the traffic is too small for the plan");

    let started = Instant::now();
    let mut sent = workload::send(&endpoints, &first).await.unwrap();
    // SNS goes down, the second half arrives and the router's batches fail to publish; the
    // runner restarts while they do, and only then does SNS come back.
    let proxy = pipeline.fault_proxy().expect("the plan answers requests");
    proxy.begin_outage("sns", "PublishBatch").unwrap();
    let outage_began = Instant::now();
    sent.add(workload::send(&endpoints, &second).await.unwrap());
    common::wait_until(
        "the router's publishing hits the outage",
        OUTAGE_HIT,
        || {
            let hit = pipeline
                .fault_report()
                .is_some_and(|r| r.count(FaultKind::Outage, "sns") > 0);
            async move { hit }
        },
    )
    .await;
    let restarted_at = started.elapsed();
    pipeline = pipeline.restart().await.unwrap();
    tokio::time::sleep(OUTAGE.saturating_sub(outage_began.elapsed())).await;
    let outage_lasted = outage_began.elapsed();
    pipeline
        .fault_proxy()
        .expect("the proxy outlives a restart")
        .end_outage("sns", "PublishBatch");
    put_raw(
        &aws_sdk_kinesis::Client::new(&aws),
        stack.reference("BusEventStream").unwrap(),
        &traffic.raw_records,
    )
    .await
    .unwrap();
    pipeline
        .wait_idle(Duration::from_millis(2000), Duration::from_secs(900))
        .await
        .unwrap();
    let settled = started.elapsed();
    let report = pipeline.fault_report().unwrap();
    let effects = effects(&stack, &aws).await.unwrap();
    let audit = audit(&catalog, &traffic, &sent, &effects);
    println!("{}", render(&traffic, &sent, &effects, &pipeline.tallies()));
    println!("{report}");
    println!("{audit}");
    let kills: u64 = report.killed.values().sum();
    println!(
        "chaos (seed {seed}): {} events ({} orders, {} system) + {} duplicates, {} invalid, {} raw records; \
         faults: throttle {}, 5xx {}, conflict {}, kms {}, dropped {}, outage {} (SNS PublishBatch down {outage_lasted:.1?}); \
         {kills} processes killed; runner restarted at {restarted_at:.1?}; client resent {} requests and {} events; \
         applied {}, dead letters {} (+{} copies), lost {}, duplicated {}; settled in {settled:.1?}",
        audit.events,
        traffic.orders.len(),
        traffic.system_events,
        traffic.duplicates,
        traffic.invalid.len(),
        traffic.raw_records.len(),
        report.total(FaultKind::Throttle),
        report.total(FaultKind::ServerError),
        report.total(FaultKind::Conflict),
        report.total(FaultKind::Kms),
        report.total(FaultKind::Drop),
        report.total(FaultKind::Outage),
        sent.resent_requests,
        sent.resent_events,
        audit.applied,
        audit.dead_letters,
        audit.letter_copies,
        audit.lost,
        audit.duplicated,
    );

    // The chaos happened, as planned: every service throttled at least its share of the requests
    // the outage did not answer (other faults come on top); the producer was killed on its planned
    // invocations and its client sent those requests again; SNS was down across the restart.
    for service in ["kinesis", "dynamodb", "sns", "sqs"] {
        let requests = report.requests.get(service).copied().unwrap_or(0)
            - report.count(FaultKind::Outage, service);
        let throttled = report.count(FaultKind::Throttle, service);
        let failed = throttled
            + report.count(FaultKind::ServerError, service)
            + report.count(FaultKind::Conflict, service)
            + report.count(FaultKind::Drop, service);
        assert!(
            requests > 0 && throttled >= guaranteed(THROTTLE, requests),
            "{service}: {throttled} throttled and {failed} failed of {requests} requests\n{report}"
        );
    }
    for (function, invoked) in &report.invocations {
        let share = kill_share(function);
        let killed = report.killed.get(function).copied().unwrap_or(0);
        assert!(
            killed >= guaranteed(share, *invoked),
            "{function}: {killed} of {invoked} invocations killed, {share} planned\n{report}"
        );
    }
    let client_kills: u64 = ["orders", "producer"]
        .iter()
        .map(|f| report.killed.get(*f).copied().unwrap_or(0))
        .sum();
    assert!(
        client_kills >= planned_kills,
        "the order service and the producer were killed as planned: {client_kills} (planned {planned_kills})\n{report}"
    );
    assert!(
        sent.resent_requests as u64 >= client_kills,
        "the client sent every request whose answer was lost again: {} of {client_kills}",
        sent.resent_requests
    );
    assert!(outage_lasted >= OUTAGE);
    // And the pipeline kept every promise.
    assert!(audit.is_clean(), "{audit}");
    assert_eq!((audit.lost, audit.duplicated), (0, 0));
    pipeline.stop().await;
}
