//! The router against the emulator: records published through SNS reach exactly the queues
//! whose filter policies (from template.yaml) ask for them, with their attributes; poison lands in
//! the router's DLQ with its reason.

mod common;

use std::collections::BTreeMap;

use aws_lambda_events::event::kinesis::{KinesisEvent, KinesisEventRecord};
use herald::aws::dead_letter::SqsDeadLetters;
use herald::router::Router;
use herald::router::SnsBus;
use herald::{Envelope, EventKind};
use herald_ops::inspect::peek;

fn record(seq: usize, data: Vec<u8>) -> KinesisEventRecord {
    let mut record = KinesisEventRecord::default();
    record.kinesis.sequence_number = seq.to_string();
    record.kinesis.partition_key = format!("k{seq}");
    record.kinesis.data.0 = data;
    record
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filter_policies_route_each_event_to_its_subscribers() {
    let pipeline = common::pipeline("fanout", |o| o.runner.mappings = false).await;
    let stack = pipeline.stack().clone();
    let aws = common::aws().await;
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let router = Router::new(
        SnsBus::new(
            aws_sdk_sns::Client::new(&aws),
            stack.reference("BusEventTopic").unwrap(),
        ),
        SqsDeadLetters::new(
            sqs.clone(),
            stack.reference("BusRouterDeadLetterQueue").unwrap(),
        ),
    );

    let event = |event_type: &str, kind: EventKind| {
        Envelope::builder(event_type, "herald/test")
            .subject("order-1")
            .kind(kind)
            .build()
            .unwrap()
            .to_json_bytes()
    };
    let mut batch = KinesisEvent::default();
    batch.records = vec![
        record(1, event("order_placed", EventKind::Business)),
        record(2, event("payment_succeeded", EventKind::Business)),
        record(3, event("job_failed", EventKind::System)),
        record(4, event("row_changed", EventKind::Data)),
        record(5, b"{\"not\": \"an envelope\"}".to_vec()),
        record(6, event("fraud_suspected", EventKind::Business)),
        // The order service's cancellation carries the aggregate version; a client's does not.
        record(
            7,
            Envelope::builder("order_cancelled", "herald/orders")
                .subject("order-2")
                .build()
                .unwrap()
                .with_aggregate_version(2)
                .to_json_bytes(),
        ),
        record(8, event("order_cancelled", EventKind::Business)),
    ];
    let (response, summary) = router.route(&batch).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!((summary.published, summary.dead_lettered), (7, 1));

    // SNS delivers to SQS asynchronously (LocalStack and AWS; moto within the publish): each
    // queue is read until it holds the messages its policy admits, then once more for any extra.
    let mut received: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (queue, expected) in [
        ("InventoryQueue", 3),
        ("PaymentQueue", 2),
        ("EmailQueue", 1),
        ("AnalyticsQueue", 6),
        ("OpsQueue", 2),
        ("CompensationQueue", 1),
    ] {
        let url = stack.reference(queue).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        let mut types: Vec<String> = Vec::new();
        let mut extra_round = false;
        loop {
            let messages = sqs
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .message_attribute_names("All")
                .send()
                .await
                .unwrap()
                .messages
                .unwrap_or_default();
            types.extend(messages.iter().map(|m| {
                // Raw delivery: the body is the envelope, the attributes are SQS message attributes.
                let envelope = Envelope::parse(m.body().unwrap().as_bytes()).unwrap();
                let attribute = m.message_attributes().unwrap()["type"]
                    .string_value()
                    .unwrap()
                    .to_string();
                assert_eq!(attribute, envelope.event_type());
                attribute
            }));
            if extra_round || std::time::Instant::now() > deadline {
                break;
            }
            extra_round = types.len() >= expected;
        }
        types.sort();
        received.insert(queue, types);
    }
    assert_eq!(
        received["InventoryQueue"],
        ["order_cancelled", "order_cancelled", "order_placed"]
    );
    assert_eq!(
        received["PaymentQueue"],
        ["order_cancelled", "order_placed"],
        "charges, and refunds of the order service's cancellations only"
    );
    assert_eq!(received["EmailQueue"], ["payment_succeeded"]);
    assert_eq!(
        received["AnalyticsQueue"],
        [
            "fraud_suspected",
            "order_cancelled",
            "order_cancelled",
            "order_placed",
            "payment_succeeded",
            "row_changed"
        ],
        "business and data events; the business subscribers above never see a data event"
    );
    assert_eq!(received["OpsQueue"], ["fraud_suspected", "job_failed"]);
    assert_eq!(received["CompensationQueue"], ["fraud_suspected"]);

    let letters = peek(&sqs, stack.reference("BusRouterDeadLetterQueue").unwrap())
        .await
        .unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].reason, "`specversion` is required");
    assert_eq!(letters[0].stage, "router");
    pipeline.stop().await;
}
