//! Failure routing and operations on the local pipeline: bad input of every kind ends as a named
//! error or in a DLQ with its reason (nothing is lost), DLQ redrive, and stream replay.

mod common;

use std::time::Duration;

use herald::Envelope;
use herald_local::http::{post, post_json};
use herald_local::moto::free_port;
use herald_ops::inspect::put_raw;
use serde_json::{json, Value};
use shop::events::{sources, types};
use shop_cli::demo::report::effects;

fn order(id: &str) -> Value {
    json!({
        "id": id,
        "type": types::ORDER_PLACED,
        "source": sources::ORDERS,
        "subject": format!("order-{id}"),
        "data": {
            "orderId": format!("order-{id}"),
            "customer": {"id": "c-1", "email": "c1@example.com"},
            "items": [{"sku": "SKU-CABLE", "quantity": 1, "unitPrice": 1299}],
            "total": 1299,
            "currency": "EUR",
            "paymentToken": "tok_visa"
        }
    })
}

/// A failed job, as the scheduler submits it to the producer.
fn job(id: &str) -> Value {
    json!({
        "id": id,
        "type": types::JOB_FAILED,
        "source": shop::SCHEDULER_SOURCE,
        "kind": "system",
        "data": {"job": format!("export-{id}"), "error": "upstream timed out", "attempt": 1}
    })
}

fn envelope(id: &str) -> Envelope {
    Envelope::parse_submission(&order(id)).unwrap()
}

async fn settle(pipeline: &herald_local::LocalPipeline) {
    pipeline
        .wait_idle(Duration::from_millis(1000), Duration::from_secs(180))
        .await
        .unwrap();
}

/// Malformed input of every kind, at every door: the producer and the order service answer each
/// with the attribute and the reason; whatever reaches the stream or a queue some other way ends in a DLQ with its
/// reason. Sent = processed + rejected + dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_of_every_kind_is_rejected_with_a_reason_and_nothing_is_lost() {
    let port = free_port().unwrap();
    let pipeline = common::pipeline("gauntlet", |o| o.runner.url_port = Some(port)).await;
    let stack = pipeline.stack().clone();
    let aws = common::aws().await;
    let url = stack.function_url("producer").unwrap();
    let orders = format!(
        "{}/orders",
        stack.function_url("orders").unwrap().trim_end_matches('/')
    );

    // 1. At the order service's HTTP door: two orders placed, one refused naming its field.
    for id in ["good-1", "good-2"] {
        let (status, answer) = post_json(&orders, &order(id)["data"]).await.unwrap();
        assert_eq!(status, 201, "{answer}");
    }
    let mut wrong_total = order("wrong-total")["data"].clone();
    wrong_total["total"] = json!(1);
    let (status, answer) = post_json(&orders, &wrong_total).await.unwrap();
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["field"], "data.total", "{answer}");

    // 2. At the producer's HTTP door.
    let mut bad_version = job("bad-version");
    bad_version["schemaversion"] = json!(7);
    let mut wrong_type = job("wrong-type");
    wrong_type["id"] = json!(5);
    let mut missing = job("missing");
    missing.as_object_mut().unwrap().remove("type");
    let mut oversize = job("oversize");
    oversize["data"]["note"] = json!("x".repeat(300 * 1024));
    let mut unknown = job("unknown");
    unknown["type"] = json!("gizmo_exploded");
    let submissions = [
        (job("good-1"), None),
        (missing, Some("type")),
        (wrong_type, Some("id")),
        (oversize, Some("event")),
        (unknown, Some("type")),
        (bad_version, Some("schemaversion")),
        (json!(42), Some("event")),
        // Only the order service announces an order.
        (order("client-order"), Some("type")),
        (job("good-2"), None),
    ];
    let body = Value::Array(submissions.iter().map(|(e, _)| e.clone()).collect());
    let (status, report) = post_json(&url, &body).await.unwrap();
    assert_eq!(status, 207, "{report}");
    for (i, (_, field)) in submissions.iter().enumerate() {
        let result = &report["results"][i];
        match field {
            None => assert_eq!(result["status"], "accepted", "{result}"),
            Some(field) => {
                assert_eq!(result["status"], "rejected", "{result}");
                assert_eq!(result["error"]["field"], *field, "{result}");
                assert!(!result["error"]["message"].as_str().unwrap().is_empty());
            }
        }
    }
    let (status, report) = post_json(&url, &json!("not an event")).await.unwrap();
    assert_eq!(status, 400, "{report}");
    let (status, report) = post(&url, b"{\"type\": ".to_vec()).await.unwrap();
    assert_eq!(status, 400);
    assert!(
        report["error"]
            .as_str()
            .unwrap()
            .starts_with("the body is not JSON"),
        "{report}"
    );

    // 3. Straight onto the stream, skipping the producer.
    let mut unknown_version = envelope("raw-version").to_json();
    unknown_version = unknown_version.replace("\"schemaversion\":1", "\"schemaversion\":9");
    let raw: Vec<(Vec<u8>, &str)> = vec![
        (b"not json at all".to_vec(), "event"),
        (vec![0xde, 0xad, 0xbe, 0xef], "event"),
        (br#"["an", "array"]"#.to_vec(), "event"),
        (br#"{"specversion":"1.0","id":"x","source":"s","type":"order_placed"}"#.to_vec(), "time"),
        (
            br#"{"specversion":"1.0","id":"x","source":"s","type":"order_placed","subject":"o","time":12,"kind":"business","schemaversion":1,"correlationid":"c"}"#
                .to_vec(),
            "time",
        ),
        (serde_json::to_vec(&json!({"specversion":"1.0","id":"big","source":"s","type":"order_placed","subject":"o","time":"2026-01-01T00:00:00Z","kind":"business","schemaversion":1,"correlationid":"c","data":{"x":"y".repeat(300*1024)}})).unwrap(), "event"),
        (envelope("raw-good").to_json_bytes(), ""),
        (unknown_version.into_bytes(), "schemaversion"),
        (
            Envelope::builder("gizmo_exploded", "herald/rogue").subject("g").build().unwrap().to_json_bytes(),
            "type",
        ),
    ];
    let raw_records: Vec<Vec<u8>> = raw.iter().map(|(r, _)| r.clone()).collect();
    put_raw(
        &aws_sdk_kinesis::Client::new(&aws),
        stack.reference("BusEventStream").unwrap(),
        &raw_records,
    )
    .await
    .unwrap();

    // 4. Straight into a subscriber's queue, skipping the router.
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let wrong_data = Envelope::builder(types::ORDER_PLACED, sources::ORDERS)
        .subject("order-x")
        .data(json!({"orderId": "order-x", "items": "none"}))
        .build()
        .unwrap();
    let total_mismatch = {
        let mut o = order("mismatch");
        o["data"]["total"] = json!(1);
        Envelope::parse_submission(&o).unwrap()
    };
    let queue_bodies = [
        wrong_data.to_json(),
        total_mismatch.to_json(),
        "{not an envelope".to_string(),
    ];
    for body in &queue_bodies {
        sqs.send_message()
            .queue_url(stack.reference("InventoryQueue").unwrap())
            .message_body(body)
            .send()
            .await
            .unwrap();
    }
    settle(&pipeline).await;

    let router_letters =
        herald_ops::letters(&aws, stack.reference("BusRouterDeadLetterQueue").unwrap())
            .await
            .unwrap();
    let expected_poison: Vec<&str> = raw
        .iter()
        .filter(|(_, f)| !f.is_empty())
        .map(|(_, f)| *f)
        .collect();
    assert_eq!(
        router_letters.len(),
        expected_poison.len(),
        "{router_letters:#?}"
    );
    assert!(router_letters
        .iter()
        .all(|l| l.stage.as_deref() == Some("router") && !l.reason.is_empty()));
    for reason in [
        "is not in the event catalog",
        "has versions 1 to 2",
        "not UTF-8",
        "the limit is 245760 bytes",
    ] {
        assert!(
            router_letters.iter().any(|l| l.reason.contains(reason)),
            "no letter says {reason:?}"
        );
    }
    let inventory_letters =
        herald_ops::letters(&aws, stack.reference("InventoryDeadLetterQueue").unwrap())
            .await
            .unwrap();
    assert_eq!(
        inventory_letters.len(),
        queue_bodies.len(),
        "{inventory_letters:#?}"
    );
    assert!(inventory_letters
        .iter()
        .any(|l| l.reason.contains("the items add up to 1299")));
    assert!(inventory_letters
        .iter()
        .any(|l| l.reason.contains("does not match `order_placed`")));

    // Nothing lost: every record on the stream was published or dead-lettered; every queue
    // message was applied or dead-lettered.
    let tallies = pipeline.tallies();
    // On the stream: 2 orders placed, 2 jobs accepted by the producer, the raw records, and one
    // payment_succeeded for each of the 3 good orders.
    let router = &tallies["router"];
    assert_eq!(
        router["published"] + router["dead_lettered"],
        2 + 2 + raw.len() as i64 + 3,
        "{router:?}"
    );
    assert_eq!(router["dead_lettered"], expected_poison.len() as i64);
    let inventory = &tallies["inventory"];
    assert_eq!(
        inventory["applied"] + inventory["dead_lettered"],
        3 + queue_bodies.len() as i64,
        "{inventory:?}"
    );
    // And no effect happened twice.
    let effects = effects(&stack, &aws).await.unwrap();
    assert_eq!(effects.payments_per_order.len(), 3);
    assert!(effects
        .payments_per_order
        .values()
        .chain(effects.emails_per_order.values())
        .all(|n| *n == 1));
    println!(
        "gauntlet: order service 3 orders (2 placed, 1 refused by name); producer {} submissions ({} accepted, {} rejected by name) + 2 unreadable requests (400); \
         stream {} raw records ({} processed, {} dead-lettered); queue {} messages ({} dead-lettered); \
         duplicated effects 0",
        submissions.len(),
        submissions.iter().filter(|(_, f)| f.is_none()).count(),
        submissions.iter().filter(|(_, f)| f.is_some()).count(),
        raw.len(),
        raw.len() - expected_poison.len(),
        router_letters.len(),
        queue_bodies.len(),
        inventory_letters.len()
    );
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dlq_redrive_returns_every_message_once_and_a_second_finds_nothing() {
    let pipeline = common::pipeline("redrive", |_| {}).await;
    let stack = pipeline.stack().clone();
    let aws = common::aws().await;
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let dlq = herald_ops::find_dead_letter_queue(&stack, "InventoryDeadLetterQueue").unwrap();
    assert_eq!(
        dlq.source,
        Some(herald_ops::Source::Queue {
            logical_id: "InventoryQueue".into(),
            url: stack.reference("InventoryQueue").unwrap().into()
        })
    );
    // Six orders that failed earlier and were moved here by the redrive policy.
    let ids: Vec<String> = (0..6).map(|i| format!("redriven-{i}")).collect();
    for id in &ids {
        sqs.send_message()
            .queue_url(&dlq.url)
            .message_body(envelope(id).to_json())
            .send()
            .await
            .unwrap();
    }
    let progress = std::sync::Mutex::new(Vec::new());
    let first = herald_ops::redrive(&aws, &dlq, |done, total| {
        progress.lock().unwrap().push((done, total))
    })
    .await
    .unwrap();
    assert_eq!(
        first,
        herald_ops::Redriven {
            moved: 6,
            duplicates: 0,
            failed: vec![],
            expired: 0,
            remaining: 0,
        }
    );
    assert_eq!(progress.lock().unwrap().last(), Some(&(6, 6)));
    let second = herald_ops::redrive(&aws, &dlq, |_, _| {}).await.unwrap();
    assert_eq!(second.moved, 0);
    settle(&pipeline).await;
    let effects = effects(&stack, &aws).await.unwrap();
    for id in &ids {
        let key = format!("inventory#{}#{id}", sources::ORDERS);
        assert_eq!(
            effects.inventory_outcomes.get(&key).map(String::as_str),
            Some("reserved"),
            "{id}"
        );
    }
    assert!(herald_ops::letters(&aws, &dlq.url)
        .await
        .unwrap()
        .is_empty());
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_the_stream_repeats_no_effect() {
    let port = free_port().unwrap();
    let pipeline = common::pipeline("replay", |o| o.runner.url_port = Some(port)).await;
    let stack = pipeline.stack().clone();
    let aws = common::aws().await;
    let started = chrono::Utc::now() - chrono::Duration::seconds(5);
    let orders = format!(
        "{}/orders",
        stack.function_url("orders").unwrap().trim_end_matches('/')
    );
    for i in 0..12 {
        let (status, answer) = post_json(&orders, &order(&format!("replay-{i}"))["data"])
            .await
            .unwrap();
        assert_eq!(status, 201, "{answer}");
    }
    settle(&pipeline).await;
    let before = effects(&stack, &aws).await.unwrap();
    let duplicates_before: i64 = pipeline.tallies()["inventory"]["duplicates"];

    let replayed = herald_ops::replay(&aws, &stack, Some(&common::bin_dir()), started, |_| {})
        .await
        .unwrap();
    assert!(
        replayed.read >= 12 + 12,
        "orders and their follow-ups: {replayed:?}"
    );
    let routed = replayed.routed.clone().expect("the router's metrics");
    assert_eq!(routed.published, replayed.read);
    settle(&pipeline).await;
    let after = effects(&stack, &aws).await.unwrap();
    assert_eq!(before.stock, after.stock);
    assert_eq!(before.payments_per_order, after.payments_per_order);
    assert_eq!(before.emails_per_order, after.emails_per_order);
    assert_eq!(before.analytics, after.analytics);
    let duplicates_after: i64 = pipeline.tallies()["inventory"]["duplicates"];
    assert_eq!(
        duplicates_after - duplicates_before,
        12,
        "each replayed order was recognised as a duplicate"
    );
    pipeline.stop().await;
}

/// Issue 24, item 7: an event older than the stack keeps idempotency records (15 days) may have
/// lost them where it was applied, and herald's dead letters are new messages with a fresh
/// 14-day clock: a redrive of such a letter would apply its effects again. It is left in the
/// queue, with why, unless the operator resends it on purpose (`--resend-expired`). (The code
/// before sent it back like any other.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redrive_leaves_letters_older_than_the_idempotency_records_unless_told_otherwise() {
    let pipeline = common::pipeline("expired", |_| {}).await;
    let stack = pipeline.stack().clone();
    let aws = common::aws().await;
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let mut dlq = herald_ops::find_dead_letter_queue(&stack, "InventoryDeadLetterQueue").unwrap();
    assert_eq!(dlq.horizon.ttl.as_secs(), 1_296_000, "the stack's 15 days");
    let old = |id: &str, days: i64| {
        let fresh = envelope(id);
        let mut value: serde_json::Value = serde_json::from_str(&fresh.to_json()).unwrap();
        value["time"] = serde_json::json!((chrono::Utc::now() - chrono::Duration::days(days))
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        value.to_string()
    };
    for (id, days) in [("expired-old", 20), ("expired-recent", 3)] {
        sqs.send_message()
            .queue_url(&dlq.url)
            .message_body(old(id, days))
            .send()
            .await
            .unwrap();
    }
    let report = herald_ops::redrive(&aws, &dlq, |_, _| {}).await.unwrap();
    assert_eq!((report.moved, report.expired), (1, 1), "{report:?}");
    assert!(
        report.failed[0].contains("20 days ago") && report.failed[0].contains("--resend-expired"),
        "{report:?}"
    );
    let left = herald_ops::letters(&aws, &dlq.url).await.unwrap();
    assert_eq!(left.len(), 1);
    assert!(left[0].body.contains("expired-old"));

    dlq.horizon.expired = herald_ops::Expired::Resend;
    let report = herald_ops::redrive(&aws, &dlq, |_, _| {}).await.unwrap();
    assert_eq!((report.moved, report.expired), (1, 0), "{report:?}");
    assert!(herald_ops::letters(&aws, &dlq.url)
        .await
        .unwrap()
        .is_empty());
    pipeline.stop().await;
}
