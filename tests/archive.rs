//! The event archive, on the project's template: the runner plays the Firehose delivery stream
//! (`ArchiveDeliveryStream`) into the emulator's S3 with the template's buffering hints. Every
//! event that crosses the stream lands once under its type and hour; a record that is not an
//! event lands under `errors/` with the reason. A replay from the archive into one subscriber's
//! queue reaches that subscriber only, through its filter policy; a read model rebuilt from the
//! archive equals the one the projector built event by event.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use herald::Envelope;
use herald_local::archive::{self, Query};
use herald_local::http::request;
use herald_local::moto::free_port;
use herald_ops::inspect::{put_raw, scan};
use herald_ops::Target;
use serde_json::{json, Value};

/// A `POST /orders` body.
fn order(n: usize) -> Value {
    json!({
        "orderId": format!("order-a{n}"),
        "customer": {"id": format!("c-a{n}"), "email": "a@example.com"},
        "items": [{"sku": "SKU-CABLE", "quantity": 1, "unitPrice": 1299}],
        "total": 1299,
        "currency": "EUR",
        "paymentToken": "tok_visa"
    })
}

fn job_failed(n: usize) -> Value {
    json!({
        "id": format!("job-{n}"),
        "type": "job_failed",
        "source": "herald/scheduler",
        "kind": "system",
        "data": {"job": format!("export-{n}"), "error": "timed out", "attempt": 1}
    })
}

async fn settle(pipeline: &herald_local::LocalPipeline) {
    pipeline
        .wait_archived(Duration::from_millis(1000), Duration::from_secs(180))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_is_archived_once_and_a_backfill_reaches_one_subscriber_only() {
    let port = free_port().unwrap();
    let pipeline = common::pipeline("archive", |o| {
        o.runner.url_port = Some(port);
        // The template keeps Firehose's 60 s floor; the local Firehose may flush sooner.
        o.runner.archive_buffer = Some(Duration::from_secs(2));
    })
    .await;
    let stack = pipeline.stack().clone();
    let aws = common::aws().await;
    // Six orders placed with the order service; its publisher announces them.
    let commands = stack.function_url("orders").unwrap();
    let mut ids = Vec::new();
    for n in 1..=6 {
        let placed = order(n);
        let (status, answer) = request(
            "POST",
            &format!("{}/orders", commands.trim_end_matches('/')),
            Some(placed.to_string().into_bytes()),
            &[],
        )
        .await
        .unwrap();
        assert_eq!(status, 201, "{answer}");
        ids.push(shop::order::order_event_id(
            "order_placed",
            placed["orderId"].as_str().unwrap(),
        ));
    }
    let mut sent: Vec<Value> = (1..=2).map(job_failed).collect();
    sent.push(json!({
        "id": "sample-1", "type": "metric_sampled", "source": "herald/devices", "kind": "data",
        "subject": "shelf-sensor-1",
        "data": {"deviceId": "shelf-sensor-1", "metric": "temperature", "value": 18.5}
    }));
    let report = pipeline
        .invoke("producer", &json!({ "events": sent }))
        .await
        .unwrap();
    assert_eq!(report["accepted"], 3, "{report}");
    ids.extend(
        report["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string()),
    );
    put_raw(
        &aws_sdk_kinesis::Client::new(&aws),
        stack.reference("BusEventStream").unwrap(),
        &[b"{ not an event".to_vec()],
    )
    .await
    .unwrap();
    settle(&pipeline).await;

    // Each event once, under its type's partition; the follow-ups too (payment_succeeded).
    let (delivery, root) = archive::archive_of(&stack).unwrap();
    assert_eq!(root, "events/");
    let s3 = herald_local::s3::client(&aws);
    let read = archive::read(&s3, &delivery.bucket, &root, &Query::default())
        .await
        .unwrap();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for archived in &read.events {
        *seen.entry(archived.event.id().to_string()).or_default() += 1;
        let partitions = archive::partitions(&archived.object);
        assert_eq!(partitions["type"], archived.event.event_type());
        assert!(partitions.contains_key("dt") && partitions.contains_key("hour"));
        assert!(archived.object.ends_with(".gz"), "{}", archived.object);
    }
    for id in &ids {
        assert_eq!(seen.get(id), Some(&1), "event {id} archived once: {seen:?}");
    }
    let follow_ups = read
        .events
        .iter()
        .filter(|a| a.event.event_type() == "payment_succeeded")
        .count();
    assert_eq!(
        follow_ups, 6,
        "follow-ups cross the stream and are archived too"
    );
    assert_eq!(read.unreadable, 0);
    let errors = s3
        .list_objects_v2()
        .bucket(&delivery.bucket)
        .prefix("errors/processing-failed/")
        .send()
        .await
        .unwrap();
    assert_eq!(
        errors.contents().len(),
        1,
        "the poison record, with its reason"
    );

    // A backfill of the orders into analytics' queue: analytics gets them (and skips them as
    // duplicates: it applied them already); no other subscriber sees them again.
    let before = pipeline.tallies();
    let bin_dir = common::bin_dir();
    let done = herald_ops::replay_archive(
        &aws,
        &stack,
        Some(&bin_dir),
        &Query {
            types: vec!["order_placed".into(), "job_failed".into()],
            ..Query::default()
        },
        &Target::Subscriber("analytics".into()),
        herald_ops::Expired::Refuse,
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(
        (done.read, done.sent, done.filtered_out),
        (8, 6, 2),
        "{done:?}"
    );
    // Issue 24, item 7: events older than the stack keeps idempotency records are refused as a
    // whole, before anything is sent (the code before replayed any age: effects applied twice).
    let ancient = Envelope::builder("job_failed", "herald/scheduler")
        .kind(herald::EventKind::System)
        .time(chrono::Utc::now() - chrono::Duration::days(30))
        .data(json!({"job": "export-old", "error": "timed out", "attempt": 1}))
        .build()
        .unwrap();
    let archived = herald_local::archive::Archived {
        raw: ancient.to_json_bytes(),
        event: ancient,
        object: "events/type=job_failed/old.gz".into(),
    };
    let refused = herald_ops::replay_events(
        &aws,
        &stack,
        Some(&bin_dir),
        std::slice::from_ref(&archived),
        &Target::Subscriber("ops".into()),
        herald_ops::Expired::Refuse,
        |_| {},
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        refused.contains("1 of the 1 events") && refused.contains("--resend-expired"),
        "{refused}"
    );
    settle(&pipeline).await;
    let after = pipeline.tallies();
    let count = |tallies: &BTreeMap<String, BTreeMap<String, i64>>, f: &str, what: &str| {
        tallies
            .get(f)
            .and_then(|t| t.get(what))
            .copied()
            .unwrap_or(0)
    };
    assert_eq!(
        count(&after, "analytics", "duplicates") - count(&before, "analytics", "duplicates"),
        6,
        "{after:?}"
    );
    for other in [
        "inventory",
        "payment",
        "email",
        "ops",
        "projector",
        "router",
    ] {
        assert_eq!(
            after.get(other),
            before.get(other),
            "{other} saw nothing of the backfill"
        );
    }
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_model_rebuilt_from_the_archive_equals_the_incremental_one() {
    let port = free_port().unwrap();
    let pipeline = common::pipeline("archive-view", |o| {
        o.runner.url_port = Some(port);
        // The template keeps Firehose's 60 s floor; the local Firehose may flush sooner.
        o.runner.archive_buffer = Some(Duration::from_secs(2));
    })
    .await;
    let stack = pipeline.stack().clone();
    let aws = common::aws().await;
    let commands = stack.function_url("orders").unwrap();
    let commands = commands.trim_end_matches('/');
    for n in 0..6 {
        let body = json!({
            "orderId": format!("o-r{n}"),
            "customer": {"id": format!("c-r{}", n % 3), "email": "r@example.com"},
            "items": [{"sku": "SKU-CABLE", "quantity": 1, "unitPrice": 1299}],
            "total": 1299, "currency": "EUR", "paymentToken": "tok_visa"
        });
        let (status, answer) = request(
            "POST",
            &format!("{commands}/orders"),
            Some(body.to_string().into_bytes()),
            &[],
        )
        .await
        .unwrap();
        assert_eq!(status, 201, "{answer}");
    }
    for n in [1, 4] {
        let (status, answer) = request(
            "POST",
            &format!("{commands}/orders/o-r{n}/cancel"),
            Some(br#"{"reason": "changed my mind"}"#.to_vec()),
            &[],
        )
        .await
        .unwrap();
        assert_eq!(status, 200, "{answer}");
    }
    settle(&pipeline).await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws);
    let view_table = stack.reference("OrdersViewTable").unwrap().to_string();
    let sorted = |mut items: Vec<Value>| {
        items.sort_by_key(|i| i.to_string());
        items
    };
    let incremental = sorted(scan(&dynamodb, &view_table).await.unwrap());
    assert!(incremental.len() >= 6, "{incremental:?}");

    let applied = shop_cli::rebuild::rebuild_orders_view_from_archive(&stack, &aws)
        .await
        .unwrap();
    assert_eq!(applied, 8, "six orders placed and two cancelled");
    let rebuilt = sorted(scan(&dynamodb, &view_table).await.unwrap());
    assert_eq!(rebuilt, incremental);
    pipeline.stop().await;
}
