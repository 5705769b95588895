//! The producer against Kinesis on the emulator: large submissions chunked into valid
//! `PutRecords` requests, every event readable back, each aggregate in order on its shard.

mod common;

use std::collections::BTreeMap;

use aws_sdk_kinesis::types::ShardIteratorType;
use std::time::Duration;

use herald::aws::Deadline;
use herald::aws::RequestCounter;
use herald::producer::KinesisStream;
use herald::producer::Producer;
use herald::Envelope;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_submission_lands_complete_and_in_order_per_aggregate() {
    let aws = common::aws().await;
    let kinesis = aws_sdk_kinesis::Client::new(&aws);
    let name = common::unique("stream");
    common::create_stream(&kinesis, &name, 3).await;

    // 1 200 events over 40 aggregates (30 each): three PutRecords-sized chunks and more.
    let events: Vec<Envelope> = (0..1200)
        .map(|i| {
            Envelope::builder("order_placed", "herald/test")
                .id(format!("e{i:04}"))
                .subject(format!("order-{}", i % 40))
                .data(serde_json::json!({ "n": i }))
                .build()
                .unwrap()
        })
        .collect();
    let producer = Producer::new(KinesisStream::new(kinesis.clone(), &name));
    let results = producer.publish(&events).await;
    assert!(
        results.iter().all(Result::is_ok),
        "{:?}",
        results.iter().find(|r| r.is_err())
    );

    let mut seen: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let shards = kinesis
        .list_shards()
        .stream_name(&name)
        .send()
        .await
        .unwrap();
    for shard in shards.shards() {
        let mut iterator = kinesis
            .get_shard_iterator()
            .stream_name(&name)
            .shard_id(shard.shard_id())
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap()
            .shard_iterator;
        while let Some(it) = iterator {
            let out = kinesis
                .get_records()
                .shard_iterator(it)
                .send()
                .await
                .unwrap();
            if out.records().is_empty() {
                break;
            }
            for record in out.records() {
                let envelope = Envelope::parse(record.data().as_ref()).unwrap();
                assert_eq!(record.partition_key(), envelope.subject());
                let n = envelope.data().unwrap()["n"].as_u64().unwrap();
                seen.entry(envelope.subject().unwrap().to_string())
                    .or_default()
                    .push(n);
            }
            iterator = out.next_shard_iterator;
        }
    }
    assert_eq!(seen.len(), 40);
    for (aggregate, ns) in &seen {
        assert_eq!(ns.len(), 30, "{aggregate}");
        assert!(
            ns.windows(2).all(|w| w[0] < w[1]),
            "{aggregate} out of order: {ns:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_stream_is_a_named_error_for_every_event() {
    let aws = common::aws().await;
    let producer = Producer::with_config(
        KinesisStream::new(
            aws_sdk_kinesis::Client::new(&aws),
            common::unique("missing"),
        ),
        herald::producer::ProducerConfig {
            backoff: herald::aws::Backoff {
                max_attempts: 2,
                ..Default::default()
            },
            ..Default::default()
        },
    );
    let event = Envelope::builder("order_placed", "herald/test")
        .subject("o")
        .build()
        .unwrap();
    let results = producer.publish(&[event]).await;
    let err = results[0].as_ref().unwrap_err();
    // A missing stream is the deployment's fault: not retried in process (it would fail alike),
    // answered as retryable (the same event goes through once the stream exists).
    assert!(
        err.to_string().contains("(attempts: 1)")
            && err.to_string().contains("ResourceNotFoundException"),
        "{err}"
    );
    assert!(err.is_retryable());
}

/// A Kinesis client whose `PutRecords` requests this test alone counts.
fn counted_kinesis(aws: &aws_config::SdkConfig) -> (aws_sdk_kinesis::Client, RequestCounter) {
    let counter = RequestCounter::default();
    let client = aws_sdk_kinesis::Client::from_conf(
        aws_sdk_kinesis::config::Builder::from(aws)
            .interceptor(counter.clone())
            .build(),
    );
    (client, counter)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_events_of_one_aggregate_take_two_requests_and_stay_in_order() {
    let aws = common::aws().await;
    let (kinesis, counter) = counted_kinesis(&aws);
    let name = common::unique("hot");
    common::create_stream(&kinesis, &name, 2).await;
    counter.reset();
    let events: Vec<Envelope> = (0..1000)
        .map(|i| {
            Envelope::builder("order_placed", "herald/test")
                .id(format!("hot-{i:04}"))
                .subject("order-hot")
                .data(serde_json::json!({ "n": i }))
                .build()
                .unwrap()
        })
        .collect();
    let producer = Producer::new(KinesisStream::new(kinesis.clone(), &name));
    // Under a Lambda-like budget: the answer comes within it, one per event.
    let results = Deadline::after(Duration::from_secs(10))
        .scope(producer.publish(&events))
        .await;
    assert_eq!(results.len(), 1000);
    let accepted: Vec<_> = results
        .iter()
        .map(|r| r.as_ref().expect("every event written"))
        .collect();
    // 1 000 sequential requests before; as many as the 500-record limit needs now.
    assert_eq!(counter.counts().get("Kinesis.PutRecords"), Some(&2));
    // One shard, sequence numbers rising in submission order.
    assert!(accepted.windows(2).all(|w| w[0].shard_id == w[1].shard_id));
    // Sequence numbers are decimal strings of up to 129 digits (wider than any integer type
    // on AWS and LocalStack): ordered by length, then digit by digit.
    let sequence: Vec<(usize, &str)> = accepted
        .iter()
        .map(|a| (a.sequence_number.len(), a.sequence_number.as_str()))
        .collect();
    assert!(sequence.windows(2).all(|w| w[0] < w[1]));
    for (event, answer) in events.iter().zip(&accepted) {
        assert_eq!(event.id(), answer.id);
    }
}

/// Issue 11, scenario 5: the shop's public producer (wired as `functions/shop` wires it) used to
/// accept any catalog type from any source with any id, and `data` unchecked — a client could
/// announce `payment_succeeded`, or send an event with `data: {}` (202, then dead-lettered
/// downstream). Now: only the types and sources clients may submit, `data` valid under the
/// released schema (the error names the JSON pointer and the rule), and client ids namespaced.
///
/// Issue 24, item 5: a client could still submit `order_placed` (from `herald/orders`) with a
/// future order's id and a declining token: the real order's charge shared its payment key and
/// came back "declined". Orders now come only from the order service; a client's well-formed
/// order is refused by type. (The code before accepted it: 202.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_producer_takes_only_what_clients_may_submit() {
    use herald::producer::{api, ProducerConfig, SubmissionPolicy};
    use serde_json::{json, Value};
    use shop::events::{sources, types};
    use shop::order::order_event_id;

    let aws = common::aws().await;
    let kinesis = aws_sdk_kinesis::Client::new(&aws);
    let name = common::unique("public");
    common::create_stream(&kinesis, &name, 1).await;
    // What `Herald::producer` builds for the shop's producer function.
    let producer = Producer::with_config(
        KinesisStream::new(kinesis.clone(), &name),
        ProducerConfig {
            catalog: Some(shop::catalog()),
            submissions: Some(shop::submissions()),
            ..ProducerConfig::default()
        },
    );
    let job = |id: &str, source: &str, data: Value| json!({"id": id, "type": types::JOB_FAILED, "source": source, "kind": "system", "data": data});
    // The id the order service will give order-9's order_placed, and a declining card.
    let future_id = order_event_id(types::ORDER_PLACED, "order-9");
    let future_order = json!({
        "id": future_id, "type": types::ORDER_PLACED, "source": sources::ORDERS,
        "subject": "order-9", "partitionkey": "c-1", "schemaversion": 2,
        "data": {"orderId": "order-9", "customer": {"id": "c-1", "email": "c1@example.com"},
                 "items": [{"sku": "SKU-CABLE", "quantity": 1, "unitPrice": 1299}],
                 "total": 1299, "currency": "EUR", "paymentToken": "tok_declined"}
    });
    let submissions = json!([
        {"type": "payment_succeeded", "source": sources::PAYMENT, "subject": "order-1",
         "data": {"orderId": "order-1", "paymentId": "p", "amount": 1, "currency": "EUR",
                  "customer": {"id": "c", "email": "c@example.com"}}},
        job("j-1", "herald/rogue", json!({"job": "export", "error": "e"})),
        job("j-2", shop::SCHEDULER_SOURCE, json!({})),
        job("j-3", shop::SCHEDULER_SOURCE, json!({"job": "export", "error": "e", "attempt": "3"})),
        future_order,
        job("job-1", shop::SCHEDULER_SOURCE, json!({"job": "export", "error": "e", "attempt": 3})),
    ]);
    let report = api::submit(&producer, submissions, api::Submitter::default())
        .await
        .unwrap();
    let results = serde_json::to_value(&report.results).unwrap();
    let field = |i: usize| {
        results[i]["error"]["field"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    let message = |i: usize| {
        results[i]["error"]["message"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(field(0), "type", "{results}");
    assert!(
        message(0).contains("clients may not submit"),
        "{}",
        message(0)
    );
    assert_eq!(field(1), "source", "{results}");
    assert_eq!(field(2), "data", "{results}");
    assert!(message(2).contains("`job` is required"), "{}", message(2));
    assert_eq!(field(3), "data/attempt", "{results}");
    assert!(
        message(3).contains("expected integer, got string"),
        "{}",
        message(3)
    );
    // The order service alone announces an order, however well formed a client's is.
    assert_eq!(field(4), "type", "{results}");
    assert!(
        message(4).contains("clients may not submit"),
        "{}",
        message(4)
    );

    // A client's id is not the id written: herald namespaces it by source.
    assert_eq!(results[5]["status"], "accepted", "{results}");
    let written = results[5]["id"].as_str().unwrap();
    assert_ne!(written, "job-1");
    assert_eq!(
        written,
        SubmissionPolicy::event_id(shop::SCHEDULER_SOURCE, "job-1")
    );
    assert_eq!(results[5]["clientId"], Value::String("job-1".into()));
    assert_eq!(report.accepted, 1);

    // What reached the stream: that one event, under herald's id — nothing else.
    let shard = kinesis
        .list_shards()
        .stream_name(&name)
        .send()
        .await
        .unwrap()
        .shards
        .unwrap()[0]
        .shard_id
        .clone();
    let iterator = kinesis
        .get_shard_iterator()
        .stream_name(&name)
        .shard_id(shard)
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap()
        .shard_iterator
        .unwrap();
    let records = kinesis
        .get_records()
        .shard_iterator(iterator)
        .send()
        .await
        .unwrap()
        .records;
    let ids: Vec<String> = records
        .iter()
        .map(|r| Envelope::parse(r.data.as_ref()).unwrap().id().to_string())
        .collect();
    assert_eq!(ids, [written]);
}
