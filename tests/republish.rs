//! The way back after a publisher outage longer than the store's stream keeps its records
//! (issue 24, item 8). The publisher's mapping retried until the records expired and reported
//! nothing (`MaximumRecordAgeInSeconds: -1`), its failure queue had no way back (`herald dlq
//! redrive` refused it: herald could not tell where its messages came from), and orders already
//! answered 201 were never published. Now the mapping gives up an hour before the stream drops a
//! batch and sends its on-failure record to the failure queue; a redrive of that queue, or
//! `herald republish --since`, publishes the events of that span again from the store itself,
//! each with its id: what had gone out already is a duplicate downstream.

mod common;

use std::time::Duration;

use aws_sdk_kinesis::types::ShardIteratorType;
use herald::Envelope;
use herald_local::http::request;
use herald_local::moto::free_port;
use serde_json::json;
use shop::events::{Customer, LineItem, OrderPlaced};
use shop_cli::demo::report::effects;

fn order(order_id: &str) -> OrderPlaced {
    OrderPlaced {
        order_id: order_id.into(),
        customer: Customer {
            id: "c-republish".into(),
            email: "c@example.com".into(),
        },
        items: vec![LineItem {
            sku: "SKU-CABLE".into(),
            quantity: 1,
            unit_price: 1299,
        }],
        total: 1299,
        currency: "EUR".into(),
        payment_token: "tok_visa".into(),
    }
}

/// How often each of `ids` is on the stream as an `order_placed` event.
async fn on_stream(kinesis: &aws_sdk_kinesis::Client, stream: &str, ids: &[String]) -> Vec<usize> {
    let mut counts = vec![0; ids.len()];
    let shards = kinesis
        .list_shards()
        .stream_name(stream)
        .send()
        .await
        .unwrap();
    for shard in shards.shards() {
        let mut iterator = kinesis
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(&shard.shard_id)
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap()
            .shard_iterator;
        while let Some(it) = iterator {
            let page = kinesis
                .get_records()
                .shard_iterator(it)
                .send()
                .await
                .unwrap();
            if page.records().is_empty() {
                break;
            }
            for record in page.records() {
                let Ok(event) = Envelope::parse(record.data.as_ref()) else {
                    continue;
                };
                if event.event_type() != "order_placed" {
                    continue;
                }
                if let Some(i) = ids
                    .iter()
                    .position(|id| Some(id.as_str()) == event.subject())
                {
                    counts[i] += 1;
                }
            }
            iterator = page.next_shard_iterator;
        }
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stores_events_are_published_again_from_the_store_by_span_and_apply_once() {
    let port = free_port().unwrap();
    let pipeline = common::pipeline("republish", |o| o.runner.url_port = Some(port)).await;
    let stack = pipeline.stack().clone();
    let aws = common::aws().await;
    let kinesis = aws_sdk_kinesis::Client::new(&aws);
    let stream = stack.reference("BusEventStream").unwrap().to_string();
    let commands = stack.function_url("orders").unwrap();
    let commands = commands.trim_end_matches('/').to_string();
    let since = chrono::Utc::now() - chrono::Duration::seconds(1);
    let run = common::unique("rp");
    let ids: Vec<String> = (0..3).map(|n| format!("{run}-{n}")).collect();
    for id in &ids {
        let (status, answer) = request(
            "POST",
            &format!("{commands}/orders"),
            Some(serde_json::to_vec(&order(id)).unwrap()),
            &[],
        )
        .await
        .unwrap();
        assert_eq!(status, 201, "{answer}");
    }
    pipeline
        .wait_idle(Duration::from_millis(1500), Duration::from_secs(300))
        .await
        .unwrap();
    assert_eq!(on_stream(&kinesis, &stream, &ids).await, [1, 1, 1]);

    // `herald republish --since`: the span's events again, each once more.
    let route = herald_ops::store_route(&stack).unwrap();
    assert_eq!(route.table_logical_id, "OrderServiceEventStoreTable");
    let done = herald_ops::republish(&aws, &route, since, None)
        .await
        .unwrap();
    assert_eq!(done.published, done.in_span);
    assert!(done.in_span >= 3, "{done:?}");
    assert_eq!(on_stream(&kinesis, &stream, &ids).await, [2, 2, 2]);

    // The publisher's mapping gave up on a batch (its records aged out): the on-failure record
    // in the failure queue names the span, and a redrive publishes it again from the store.
    let dlq =
        herald_ops::find_dead_letter_queue(&stack, "OrderServiceStoreStreamFailureQueue").unwrap();
    assert!(
        matches!(&dlq.source, Some(herald_ops::Source::Store(r)) if r.table_logical_id == "OrderServiceEventStoreTable"),
        "{:?}",
        dlq.source
    );
    let now = chrono::Utc::now();
    let record = json!({
        "requestContext": {"condition": "RecordAgeExceeded", "approximateInvokeCount": 40},
        "DDBStreamBatchInfo": {
            "shardId": "shardId-0", "startSequenceNumber": "1", "endSequenceNumber": "9",
            "approximateArrivalOfFirstRecord": since.to_rfc3339(),
            "approximateArrivalOfLastRecord": now.to_rfc3339(),
            "batchSize": 3, "streamArn": "arn:aws:dynamodb:us-east-1:123456789012:table/x/stream/y"
        }
    });
    aws_sdk_sqs::Client::new(&aws)
        .send_message()
        .queue_url(&dlq.url)
        .message_body(record.to_string())
        .send()
        .await
        .unwrap();
    let redriven = herald_ops::redrive(&aws, &dlq, |_, _| {}).await.unwrap();
    assert_eq!(
        (redriven.moved, redriven.failed.len()),
        (1, 0),
        "{redriven:?}"
    );
    assert_eq!(on_stream(&kinesis, &stream, &ids).await, [3, 3, 3]);

    // Three deliveries of each order: one effect each.
    pipeline
        .wait_idle(Duration::from_millis(1500), Duration::from_secs(300))
        .await
        .unwrap();
    let effects = effects(&stack, &aws).await.unwrap();
    for id in &ids {
        assert_eq!(
            effects.payments_per_order.get(id).copied(),
            Some(1),
            "{id}: {effects:?}"
        );
    }
    pipeline.stop().await;
}

/// The publisher's mapping reports a batch it gives up on before the store's stream (24 h) drops
/// its records: a record age limit under a day, and an on-failure destination (before: `-1`, no
/// limit, so Lambda retried until the records expired and reported nothing).
#[test]
fn the_publishers_mapping_reports_what_expires_before_the_stream_drops_it() {
    let template = herald_local::Template::load(&common::root().join("template.yaml")).unwrap();
    let (_, mapping) = template
        .of_kind("AWS::Lambda::EventSourceMapping")
        .find(|(id, _)| *id == "OrderServicePublisherStreamMapping")
        .unwrap();
    let age = mapping.properties["MaximumRecordAgeInSeconds"]
        .as_i64()
        .unwrap();
    assert!(
        (60..=23 * 3600).contains(&age),
        "MaximumRecordAgeInSeconds {age}"
    );
    assert!(mapping.properties["DestinationConfig"]["OnFailure"]["Destination"].is_object());
}
