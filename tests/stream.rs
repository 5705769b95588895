//! The producer against Kinesis on the emulator: large submissions chunked into valid
//! `PutRecords` requests, every event readable back, each aggregate in order on its shard.

mod common;

use std::collections::BTreeMap;

use aws_sdk_kinesis::types::ShardIteratorType;
use std::time::Duration;

use herald::adapters::KinesisStream;
use herald::aws::RequestCounter;
use herald::deadline::Deadline;
use herald::producer::Producer;
use herald::Envelope;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_submission_lands_complete_and_in_order_per_aggregate() {
    let aws = common::aws().await;
    let kinesis = aws_sdk_kinesis::Client::new(&aws);
    let name = common::unique("stream");
    kinesis
        .create_stream()
        .stream_name(&name)
        .shard_count(3)
        .send()
        .await
        .unwrap();

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
            backoff: herald::backoff::Backoff {
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
    kinesis
        .create_stream()
        .stream_name(&name)
        .shard_count(2)
        .send()
        .await
        .unwrap();
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
    let sequence: Vec<u128> = accepted
        .iter()
        .map(|a| a.sequence_number.parse().unwrap())
        .collect();
    assert!(sequence.windows(2).all(|w| w[0] < w[1]));
    for (event, answer) in events.iter().zip(&accepted) {
        assert_eq!(event.id(), answer.id);
    }
}
