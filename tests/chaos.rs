//! The chaos suite (issue 11): the end-to-end order flow while AWS and the hosts misbehave as
//! they do in production, all at once —
//!
//! - throttling and 5xx on ≥ 5 % of the requests to every service (Kinesis, DynamoDB, SNS, SQS),
//!   transaction conflicts, KMS throttling and 1 % dropped connections on top (half of them after
//!   the emulator applied the request, so the caller cannot tell);
//! - function processes killed at a random moment of 5 % of their invocations, 40 % of the
//!   producer's (Lambda's `Runtime.ExitError`: a batch half done, its SQS messages back after the
//!   visibility timeout, a client's request answered 502);
//! - SNS `PublishBatch` down for 30 s;
//! - the runner itself restarted once, mid-run, during that outage.
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

use herald_local::faults::{FaultKind, FaultPlan};
use herald_local::inspect::put_raw;
use herald_local::moto::free_port;
use shop_cli::demo::audit::audit;
use shop_cli::demo::report::{effects, render};
use shop_cli::demo::workload::{self, Traffic, Workload};

/// When SNS publishing goes down (after the proxy starts) and for how long.
const OUTAGE_START: Duration = Duration::from_secs(8);
const OUTAGE: Duration = Duration::from_secs(30);

fn plan(seed: u64) -> FaultPlan {
    let extra = std::env::var("CHAOS_EXTRA").unwrap_or_default();
    FaultPlan::parse(&format!(
        "throttle=3%,5xx=3%,5xx:sns=4%,conflict=3%,kms=1%,drop=1%,kill:producer=40%,kill=5%,outage=sns:PublishBatch@{}s+{}s,seed={seed},{extra}",
        OUTAGE_START.as_secs(),
        OUTAGE.as_secs()
    ))
    .unwrap()
}

/// The traffic's requests split in two, to send before and after the restart.
fn halves(traffic: &Traffic) -> (Traffic, Traffic) {
    let middle = traffic.requests.len() / 2;
    let first = Traffic {
        requests: traffic.requests[..middle].to_vec(),
        ..Traffic::default()
    };
    let second = Traffic {
        requests: traffic.requests[middle..].to_vec(),
        ..Traffic::default()
    };
    (first, second)
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
    let up = Instant::now();
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
        per_request: 25,
        data_events: 20,
    }
    .generate(&catalog);
    let url = stack.function_url("producer").unwrap();
    let (first, second) = halves(&traffic);

    let started = Instant::now();
    let mut sent = workload::send(&url, &first).await.unwrap();
    // Restart the runner while SNS is down and batches are in flight.
    let restart_at = OUTAGE_START + OUTAGE / 2;
    tokio::time::sleep(restart_at.saturating_sub(up.elapsed())).await;
    let restarted_at = started.elapsed();
    let restarted_in_outage = up.elapsed();
    pipeline = pipeline.restart().await.unwrap();
    sent.add(workload::send(&url, &second).await.unwrap());
    put_raw(
        &aws_sdk_kinesis::Client::new(&aws),
        stack.reference("EventStream").unwrap(),
        &traffic.raw_records,
    )
    .await
    .unwrap();
    pipeline
        .wait_idle(Duration::from_millis(2000), Duration::from_secs(480))
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
         faults: throttle {}, 5xx {}, conflict {}, kms {}, dropped {}, outage {} (SNS PublishBatch down {OUTAGE:?}); \
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

    // The chaos happened: every service throttled, failed or dropped a share of its requests
    // (7 % asked for, 11 % of SNS's, whose requests are few; those answered by the outage drew
    // no other fault), processes died, SNS was down.
    for service in ["kinesis", "dynamodb", "sns", "sqs"] {
        let requests = report.requests.get(service).copied().unwrap_or(0)
            - report.count(FaultKind::Outage, service);
        let failed = report.count(FaultKind::Throttle, service)
            + report.count(FaultKind::ServerError, service)
            + report.count(FaultKind::Conflict, service)
            + report.count(FaultKind::Drop, service);
        assert!(
            requests > 0 && failed * 100 >= requests * 3,
            "{service}: {failed} of {requests} requests failed\n{report}"
        );
    }
    assert!(kills >= 3, "processes were killed mid-invocation\n{report}");
    assert!(
        report.killed.get("producer").is_some_and(|n| *n > 0) && sent.resent_requests > 0,
        "the producer was killed and its client sent the request again\n{report}"
    );
    assert!(
        (OUTAGE_START..OUTAGE_START + OUTAGE).contains(&restarted_in_outage),
        "the runner restarted during the outage, at {restarted_in_outage:?}"
    );
    assert!(
        report.count(FaultKind::Outage, "sns") > 0,
        "publishing hit the outage\n{report}"
    );
    // And the pipeline kept every promise.
    assert!(audit.is_clean(), "{audit}");
    assert_eq!((audit.lost, audit.duplicated), (0, 0));
    pipeline.stop().await;
}
