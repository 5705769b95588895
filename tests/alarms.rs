//! The template's CloudWatch alarms evaluated by the local runner: a dead-letter queue that fills
//! fires its alarm, a redrive that empties it clears it; alarms the runner cannot observe are
//! listed with why.

mod common;

use std::time::{Duration, Instant};

use herald::Envelope;
use herald_local::alarms::{AlarmBoard, State};
use herald_ops::inspect::put_raw;
use serde_json::json;
use shop::events::{sources, types};

fn order(id: &str) -> Envelope {
    Envelope::parse_submission(&json!({
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
    }))
    .unwrap()
}

/// The lines the runner printed so far for alarm `name` (`ALARM <name>: ...`, `OK <name>`),
/// once one of them starts with `expected` (bounded, so a broken alarm fails instead of hanging).
async fn printed_until(board: &AlarmBoard, name: &str, expected: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let lines: Vec<String> = board
            .transitions()
            .iter()
            .filter(|t| t.name == name)
            .map(|t| t.to_string())
            .collect();
        if lines.iter().any(|l| l.starts_with(expected)) || Instant::now() > deadline {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_alarm_fires_when_its_queue_fills_and_clears_after_a_redrive() {
    let pipeline = common::pipeline("alarms", |o| {
        o.runner.alarms.period = Some(Duration::from_millis(500));
    })
    .await;
    let stack = pipeline.stack().clone();
    let aws = common::aws().await;
    let board = pipeline.alarms().clone();

    // Every DLQ, the stream's and the mappings' iterator age and every function's errors are
    // evaluated locally; throttles, DynamoDB throttling and metric math are listed with why.
    let evaluated: Vec<String> = board
        .statuses()
        .iter()
        .map(|s| s.logical_id.clone())
        .collect();
    for id in [
        "BusRouterDeadLetterQueueAlarm",
        "InventoryDeadLetterQueueAlarm",
        "OrderServiceStoreStreamFailureQueueAlarm",
        "BusEventStreamIteratorAgeAlarm",
        "OrderServicePublisherIteratorAgeAlarm",
        "PaymentErrorsAlarm",
    ] {
        assert!(
            evaluated.iter().any(|e| e == id),
            "{id} not evaluated: {evaluated:?}"
        );
    }
    let not_evaluated = board.not_evaluated();
    let why = |id: &str| {
        not_evaluated
            .iter()
            .find(|(i, _)| i == id)
            .map(|(_, why)| why.clone())
            .unwrap_or_default()
    };
    assert!(why("PaymentThrottlesAlarm").contains("instead of throttling"));
    assert!(why("StockTableThrottlesAlarm").contains("never throttles"));
    assert!(why("ProducerRejectedRateAlarm").contains("metric math"));
    let template = herald_local::Template::load(&common::root().join("template.yaml")).unwrap();
    assert_eq!(
        evaluated.len() + not_evaluated.len(),
        template.of_kind("AWS::CloudWatch::Alarm").count(),
        "every alarm either evaluated or listed with why"
    );
    // The new ones (issue 24, item 1) the runner cannot observe say why.
    assert!(why("BusRouterStoppedAlarm").contains("metric math"));
    assert!(!why("InventoryQueueAgeAlarm").is_empty());

    // A poison record on the stream: the router parks it in its DLQ, and the alarm fires.
    let router_alarm = format!("{}-router-dead-letters", stack.name);
    put_raw(
        &aws_sdk_kinesis::Client::new(&aws),
        stack.reference("BusEventStream").unwrap(),
        &[b"{ not json".to_vec()],
    )
    .await
    .unwrap();
    let lines = printed_until(&board, &router_alarm, "ALARM").await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with(&format!(
            "ALARM {router_alarm}: ApproximateNumberOfMessagesVisible of BusRouterDeadLetterQueue was 1 (breaching > 0"
        )),
        "{lines:?}"
    );

    // An order the inventory gave up on earlier, moved to its DLQ by the redrive policy.
    let inventory_alarm = format!("{}-inventory-dead-letters", stack.name);
    let dlq = herald_ops::find_dead_letter_queue(&stack, "InventoryDeadLetterQueue").unwrap();
    aws_sdk_sqs::Client::new(&aws)
        .send_message()
        .queue_url(&dlq.url)
        .message_body(order("alarmed-1").to_json())
        .send()
        .await
        .unwrap();
    let lines = printed_until(&board, &inventory_alarm, "ALARM").await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with(&format!("ALARM {inventory_alarm}: ")),
        "{lines:?}"
    );
    let status = board
        .statuses()
        .into_iter()
        .find(|s| s.name == inventory_alarm)
        .unwrap();
    assert_eq!(status.state, State::Alarm);

    // The redrive sends it back; the inventory applies it; the queue is empty: OK, once.
    let redriven = herald_ops::redrive(&aws, &dlq, |_, _| {}).await.unwrap();
    assert_eq!(redriven.moved, 1);
    let lines = printed_until(&board, &inventory_alarm, "OK").await;
    assert_eq!(
        lines[1..],
        [format!("OK {inventory_alarm}")],
        "one ALARM, then one OK: {lines:?}"
    );
    // The router's DLQ still holds its poison: that alarm stays on.
    let router = board
        .statuses()
        .into_iter()
        .find(|s| s.name == router_alarm)
        .unwrap();
    assert_eq!(router.state, State::Alarm);
    pipeline.stop().await;
}

/// A reference `!Ref X` / `!GetAtt X.attr` in the template's long form: the logical id.
fn referenced(value: &serde_json::Value) -> Option<String> {
    value
        .get("Ref")
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .or_else(|| {
            value
                .get("Fn::GetAtt")
                .and_then(|v| v.get(0))
                .and_then(|v| v.as_str())
                .map(str::to_string)
        })
}

/// Issue 24, item 1: alarms that see a stopped pipeline. On the template before, a reader whose
/// mapping stopped was seen by nothing (the stream-wide iterator age is kept fresh by the other
/// readers; a mapping that never invokes reports no IteratorAge), queues kept SQS's 4-day default
/// and nothing watched their oldest message, Firehose went unwatched, and the order service's
/// 5xx answers (handled, so no Lambda error) were seen by nothing.
#[test]
fn every_reader_queue_archive_and_the_order_service_have_an_alarm_that_sees_them_stop() {
    let template = herald_local::Template::load(&common::root().join("template.yaml")).unwrap();
    let alarms: Vec<&serde_json::Value> = template
        .of_kind("AWS::CloudWatch::Alarm")
        .map(|(_, r)| &r.properties)
        .collect();
    let metric_of = |alarm: &serde_json::Value, namespace: &str, name: &str| -> Vec<String> {
        let mut stats: Vec<&serde_json::Value> = vec![alarm];
        if let Some(metrics) = alarm.get("Metrics").and_then(|m| m.as_array()) {
            stats.extend(
                metrics
                    .iter()
                    .filter_map(|m| m.pointer("/MetricStat/Metric")),
            );
        }
        stats
            .into_iter()
            .filter(|m| m["Namespace"] == namespace && m["MetricName"] == name)
            .flat_map(|m| m["Dimensions"].as_array().cloned().unwrap_or_default())
            .filter_map(|d| referenced(&d["Value"]))
            .collect()
    };
    let watched = |namespace: &str, name: &str| -> Vec<String> {
        alarms
            .iter()
            .flat_map(|a| metric_of(a, namespace, name))
            .collect()
    };
    // Each stream reader: its invocations in a metric-math alarm.
    let invocations = watched("AWS/Lambda", "Invocations");
    for (id, mapping) in template.of_kind("AWS::Lambda::EventSourceMapping") {
        let source = referenced(&mapping.properties["EventSourceArn"]).unwrap_or_default();
        let kind = template
            .resources
            .iter()
            .find(|(i, _)| *i == source)
            .map(|(_, r)| r.kind.as_str())
            .unwrap_or_default();
        if kind == "AWS::SQS::Queue" {
            continue;
        }
        let function = referenced(&mapping.properties["FunctionName"]).unwrap();
        assert!(
            invocations.contains(&function),
            "{id}: nothing alarms when {function} stops reading {source}"
        );
    }
    // Each queue: the age of its oldest message; a queue with a redrive policy keeps its
    // messages as long as SQS allows, not its 4-day default.
    let ages = watched("AWS/SQS", "ApproximateAgeOfOldestMessage");
    for (id, queue) in template.of_kind("AWS::SQS::Queue") {
        assert!(
            ages.contains(&id.to_string()),
            "{id}: no oldest-message alarm"
        );
        assert!(
            queue.properties.get("MessageRetentionPeriod").is_some(),
            "{id}: retention left to SQS's 4-day default"
        );
    }
    // The archive's delivery, and the order service's 5xx answers.
    for (id, _) in template.of_kind("AWS::KinesisFirehose::DeliveryStream") {
        assert!(watched("AWS/Firehose", "DeliveryToS3.DataFreshness").contains(&id.to_string()));
        assert!(watched("AWS/Firehose", "DeliveryToS3.Success").contains(&id.to_string()));
    }
    assert!(watched("AWS/Lambda", "Url5xxCount").contains(&"OrderServiceFunction".to_string()));
}
