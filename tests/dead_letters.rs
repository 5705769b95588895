//! Dead letters on the local pipeline: every dead letter is a message SQS accepts (characters it
//! refuses encoded, oversized records cut and pointed to), and a redrive gives back the record.

mod common;

use std::time::Duration;

use aws_sdk_sqs::types::Message;
use herald::aws::dead_letter::{attr, decode_body, sqs_accepts_text, DecodeError};
use herald::aws::limits::SQS_MAX_MESSAGE_BYTES;
use herald_ops::inspect::put_raw;
use sha2::{Digest, Sha256};

async fn settle(pipeline: &herald_local::LocalPipeline) {
    pipeline
        .wait_idle(Duration::from_millis(1000), Duration::from_secs(180))
        .await
        .unwrap();
}

/// Every message of a queue with its attributes, without removing them.
async fn messages(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<Message> {
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..50 {
        let received = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .visibility_timeout(0)
            .message_attribute_names("All")
            .send()
            .await
            .unwrap()
            .messages
            .unwrap_or_default();
        let before = seen.len();
        for m in received {
            seen.insert(m.message_id.clone().unwrap_or_default(), m);
        }
        if seen.len() == before {
            break;
        }
    }
    seen.into_values().collect()
}

fn attribute<'a>(m: &'a Message, name: &str) -> Option<&'a str> {
    m.message_attributes()
        .and_then(|a| a.get(name))
        .and_then(|v| v.string_value.as_deref())
}

/// What real SQS would refuse in a received dead letter (moto accepts any character): a
/// character outside SQS's set in the body or an attribute, or the whole message over 256 KiB.
fn sqs_refusal(m: &Message) -> Option<String> {
    let body = m.body.as_deref().unwrap_or_default();
    if !sqs_accepts_text(body) {
        return Some("the body has characters SQS refuses".into());
    }
    let mut bytes = body.len();
    for (name, value) in m.message_attributes().into_iter().flatten() {
        let text = value.string_value.as_deref().unwrap_or_default();
        if !sqs_accepts_text(text) {
            return Some(format!("{name} has characters SQS refuses"));
        }
        bytes += name.len() + value.data_type().len() + text.len();
    }
    (bytes > SQS_MAX_MESSAGE_BYTES).then(|| format!("{bytes} bytes"))
}

fn record_of(m: &Message) -> Result<Vec<u8>, DecodeError> {
    decode_body(
        m.body.as_deref().unwrap_or_default(),
        attribute(m, attr::ENCODING),
        attribute(m, attr::TRUNCATED),
    )
}

/// Poison SQS cannot carry as it is — control characters, not-a-character code points, bytes
/// that are not UTF-8, a record larger than a queue message — reaches the dead-letter queue as a
/// message SQS accepts; a redrive puts back exactly the record; the oversized one names its
/// original (size, SHA-256, shard and sequence number) and a redrive refuses to send a part.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_sqs_cannot_carry_is_encoded_or_cut_and_redrives_as_it_was() {
    let pipeline = common::pipeline("unsendable", |_| {}).await;
    let stack = pipeline.stack().clone();
    let aws = common::aws().await;
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let control = b"{\"type\":\"order_placed\x01\",\"note\":\"bell\x07 escape\x1b\"}".to_vec();
    let noncharacter = "{\"subject\":\"\u{fffe}\u{ffff}\"}".as_bytes().to_vec();
    let mut oversized = b"{\"note\":\"".to_vec();
    oversized.extend(std::iter::repeat_n(b'z', 300 * 1024));
    oversized.extend(b"\x02\"}");
    let poison = [control.clone(), noncharacter.clone(), oversized.clone()];
    put_raw(
        &aws_sdk_kinesis::Client::new(&aws),
        stack.reference("BusEventStream").unwrap(),
        &poison,
    )
    .await
    .unwrap();
    // And one straight into a subscriber's queue (SQS took it; its dead letter must fit too).
    // Control characters other than tab, LF and CR SQS refuses to take at all, as AWS does
    // (LocalStack too; moto took them, and this test once sent one).
    let queued = "{not an envelope \t \u{7f} \u{fffd}}";
    let inventory_queue = stack.reference("InventoryQueue").unwrap();
    sqs.send_message()
        .queue_url(inventory_queue)
        .message_body(queued)
        .send()
        .await
        .unwrap();
    settle(&pipeline).await;

    let router_dlq = stack.reference("BusRouterDeadLetterQueue").unwrap();
    let letters = messages(&sqs, router_dlq).await;
    assert_eq!(letters.len(), 3, "{letters:#?}");
    for letter in &letters {
        assert_eq!(sqs_refusal(letter), None, "{letter:#?}");
    }
    let mut records: Vec<Vec<u8>> = letters.iter().filter_map(|l| record_of(l).ok()).collect();
    records.sort();
    let mut expected = vec![control.clone(), noncharacter.clone()];
    expected.sort();
    assert_eq!(records, expected);
    let cut = letters
        .iter()
        .find(|l| attribute(l, attr::TRUNCATED).is_some())
        .expect("the oversized record's letter says it was cut");
    let truncated: serde_json::Value =
        serde_json::from_str(attribute(cut, attr::TRUNCATED).unwrap()).unwrap();
    assert_eq!(truncated["originalBytes"], oversized.len());
    assert_eq!(
        truncated["sha256"],
        hex::encode(Sha256::digest(&oversized)),
        "the hash a copy read from the stream must match"
    );
    let origin: serde_json::Value =
        serde_json::from_str(attribute(cut, attr::ORIGIN).unwrap()).unwrap();
    assert!(
        origin["eventID"].as_str().unwrap().contains(':'),
        "{origin}"
    );
    assert!(origin["sequenceNumber"].is_string(), "{origin}");

    let inventory_dlq = stack.reference("InventoryDeadLetterQueue").unwrap();
    let inventory_letters = messages(&sqs, inventory_dlq).await;
    assert_eq!(inventory_letters.len(), 1);
    assert_eq!(sqs_refusal(&inventory_letters[0]), None);
    assert_eq!(record_of(&inventory_letters[0]).unwrap(), queued.as_bytes());

    // Redrive: the two whole records go back onto the stream as they were (and, poison still,
    // come back as letters holding the same records); the cut one stays, with why.
    let dlq = herald_ops::find_dead_letter_queue(&stack, "BusRouterDeadLetterQueue").unwrap();
    let redriven = herald_ops::redrive(&aws, &dlq, |_, _| {}).await.unwrap();
    assert_eq!(redriven.moved, 2, "{redriven:?}");
    assert_eq!(redriven.failed.len(), 1, "{redriven:?}");
    assert!(
        redriven.failed[0].contains("truncated"),
        "{:?}",
        redriven.failed
    );
    settle(&pipeline).await;
    let again = messages(&sqs, router_dlq).await;
    let summary: Vec<(Option<&str>, Option<&str>, usize)> = again
        .iter()
        .map(|l| {
            (
                attribute(l, attr::REASON),
                attribute(l, attr::ENCODING),
                l.body.as_deref().unwrap_or_default().len(),
            )
        })
        .collect();
    assert_eq!(again.len(), 3, "{summary:#?}");
    let mut records: Vec<Vec<u8>> = again.iter().filter_map(|l| record_of(l).ok()).collect();
    records.sort();
    assert_eq!(
        records, expected,
        "the redrive put back the records, not their encoding"
    );
    pipeline.stop().await;
}

fn order(id: &str) -> herald::Envelope {
    herald::Envelope::parse_submission(&serde_json::json!({
        "id": id,
        "type": shop::events::types::ORDER_PLACED,
        "source": shop::events::sources::ORDERS,
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

/// A topic's subscriptions with the attributes they were made with.
async fn subscriptions(
    sns: &aws_sdk_sns::Client,
    topic: &str,
) -> Vec<(String, String, Vec<(String, String)>)> {
    let listed = sns
        .list_subscriptions_by_topic()
        .topic_arn(topic)
        .send()
        .await
        .unwrap();
    let mut out = Vec::new();
    for s in listed.subscriptions() {
        let attributes = sns
            .get_subscription_attributes()
            .subscription_arn(s.subscription_arn().unwrap())
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap_or_default();
        let kept = [
            "FilterPolicy",
            "FilterPolicyScope",
            "RawMessageDelivery",
            "RedrivePolicy",
        ]
        .iter()
        .filter_map(|k| attributes.get(*k).map(|v| (k.to_string(), v.clone())))
        .collect();
        out.push((
            s.protocol().unwrap().to_string(),
            s.endpoint().unwrap().to_string(),
            kept,
        ));
    }
    out
}

/// An SNS outage longer than the router's retries (the topic is gone, so every `PublishBatch`
/// fails): the records are not left to expire in the stream behind a pointer. The router
/// dead-letters them whole, with the reason, before its mapping would give up (here
/// `StreamRetrySeconds` = 60 s: at 30 s), nothing goes to StreamFailureQueue, and after the
/// outage a redrive applies them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_longer_than_the_retries_dead_letters_the_records_whole_and_redrive_applies_them()
{
    let pipeline = common::pipeline("outage", |o| {
        o.stack
            .parameters
            .insert("StreamRetrySeconds".into(), "60".into());
    })
    .await;
    let stack = pipeline.stack().clone();
    let aws = common::aws().await;
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let sns = aws_sdk_sns::Client::new(&aws);
    let topic = stack.reference("BusEventTopic").unwrap().to_string();
    let saved = subscriptions(&sns, &topic).await;
    assert!(!saved.is_empty());
    sns.delete_topic().topic_arn(&topic).send().await.unwrap();

    let ids = ["outage-1", "outage-2"];
    let records: Vec<Vec<u8>> = ids.iter().map(|id| order(id).to_json_bytes()).collect();
    put_raw(
        &aws_sdk_kinesis::Client::new(&aws),
        stack.reference("BusEventStream").unwrap(),
        &records,
    )
    .await
    .unwrap();
    let router_dlq = stack.reference("BusRouterDeadLetterQueue").unwrap();
    let mut letters = Vec::new();
    for _ in 0..120 {
        letters = messages(&sqs, router_dlq).await;
        if letters.len() >= records.len() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(letters.len(), records.len(), "{letters:#?}");
    let mut kept: Vec<Vec<u8>> = letters.iter().map(|l| record_of(l).unwrap()).collect();
    kept.sort();
    let mut expected = records.clone();
    expected.sort();
    assert_eq!(kept, expected, "the payloads themselves, not pointers");
    for letter in &letters {
        let reason = attribute(letter, attr::REASON).unwrap();
        assert!(reason.contains("not published"), "{reason}");
    }
    let pointers = messages(&sqs, stack.reference("BusStreamFailureQueue").unwrap()).await;
    assert!(pointers.is_empty(), "{pointers:#?}");

    // The outage ends: the topic and its subscriptions are back; the operator redrives.
    let recreated = sns
        .create_topic()
        .name(topic.rsplit(':').next().unwrap())
        .send()
        .await
        .unwrap()
        .topic_arn
        .unwrap();
    assert_eq!(recreated, topic);
    for (protocol, endpoint, attributes) in &saved {
        let mut request = sns
            .subscribe()
            .topic_arn(&topic)
            .protocol(protocol)
            .endpoint(endpoint);
        for (k, v) in attributes {
            request = request.attributes(k, v);
        }
        request.send().await.unwrap();
    }
    let dlq = herald_ops::find_dead_letter_queue(&stack, "BusRouterDeadLetterQueue").unwrap();
    let redriven = herald_ops::redrive(&aws, &dlq, |_, _| {}).await.unwrap();
    assert_eq!(redriven.moved, records.len(), "{redriven:?}");
    settle(&pipeline).await;
    let effects = shop_cli::demo::report::effects(&stack, &aws).await.unwrap();
    for id in ids {
        let key = format!("inventory#{}#{id}", shop::events::sources::ORDERS);
        assert_eq!(
            effects.inventory_outcomes.get(&key).map(String::as_str),
            Some("reserved"),
            "{id}"
        );
    }
    assert!(messages(&sqs, router_dlq).await.is_empty());
    pipeline.stop().await;
}

/// Poison delivered to the router twice — here the stream replayed, as Lambda redelivers a batch
/// after a crash — is dead-lettered once: the ledger in the idempotency table knows the record
/// (stream, shard, sequence number) was already sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_delivered_twice_is_dead_lettered_once() {
    let pipeline = common::pipeline("twice", |_| {}).await;
    let stack = pipeline.stack().clone();
    let aws = common::aws().await;
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let started = chrono::Utc::now() - chrono::Duration::seconds(5);
    put_raw(
        &aws_sdk_kinesis::Client::new(&aws),
        stack.reference("BusEventStream").unwrap(),
        &[b"poison, twice".to_vec()],
    )
    .await
    .unwrap();
    settle(&pipeline).await;
    let router_dlq = stack.reference("BusRouterDeadLetterQueue").unwrap();
    assert_eq!(messages(&sqs, router_dlq).await.len(), 1);

    let replayed = herald_ops::replay(&aws, &stack, Some(&common::bin_dir()), started, |_| {})
        .await
        .unwrap();
    assert_eq!(replayed.read, 1, "{replayed:?}");
    let routed = replayed.routed.expect("the router's metrics");
    assert_eq!(
        routed.dead_lettered, 1,
        "handled as a dead letter again: {routed:?}"
    );
    settle(&pipeline).await;
    let letters = messages(&sqs, router_dlq).await;
    assert_eq!(letters.len(), 1, "one letter per record: {letters:#?}");
    assert_eq!(record_of(&letters[0]).unwrap(), b"poison, twice");
    pipeline.stop().await;
}

/// The same for the publisher (a store-stream record read again) and a projector (an SQS
/// message delivered again): each function invoked twice with the same poison record, as Lambda
/// does after a crash or a visibility timeout, sends one dead letter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_publisher_and_projectors_dead_letter_a_record_delivered_twice_once() {
    let pipeline = common::pipeline("twice-store", |o| o.runner.mappings = false).await;
    let stack = pipeline.stack().clone();
    let sqs = aws_sdk_sqs::Client::new(&common::aws().await);
    let sample = |path: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(common::root().join("events").join(path)).unwrap())
            .unwrap()
    };

    // A store record whose item lost its `event` attribute.
    let mut change = sample("publisher/dynamodb-stream.json");
    change["Records"].as_array_mut().unwrap().truncate(1);
    let image = &mut change["Records"][0]["dynamodb"]["NewImage"];
    image.as_object_mut().unwrap().remove("event");
    // A projector message that is no event.
    let mut delivery = sample("projector/sqs.json");
    delivery["Records"].as_array_mut().unwrap().truncate(1);
    delivery["Records"][0]["body"] = serde_json::json!("not an event");

    for (function, payload, queue) in [
        (
            "OrderServicePublisher",
            &change,
            "OrderServicePublisherDeadLetterQueue",
        ),
        ("ProjectorFunction", &delivery, "ProjectorDeadLetterQueue"),
    ] {
        for _ in 0..2 {
            let answer = pipeline.invoke(function, payload).await.unwrap();
            let failures = answer["batchItemFailures"].as_array().map(Vec::len);
            assert_eq!(failures.unwrap_or(0), 0, "{function}: {answer}");
        }
        let letters = messages(&sqs, stack.reference(queue).unwrap()).await;
        assert_eq!(letters.len(), 1, "{function}: one letter: {letters:#?}");
    }
    pipeline.stop().await;
}

/// A `SendMessage` whose answer is lost after SQS stored the message is retried, and a standard
/// queue keeps both copies of the letter. A redrive sends the record back once and deletes both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_copies_of_one_letter_are_redriven_once() {
    use herald::aws::dead_letter::{DeadLetter, DeadLetters};
    let pipeline = common::pipeline("copies", |o| o.runner.mappings = false).await;
    let stack = pipeline.stack().clone();
    let aws = common::aws().await;
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let dlq_url = stack.reference("InventoryDeadLetterQueue").unwrap();
    let letter = DeadLetter::new(
        b"{\"an\": \"event\"}",
        "inventory",
        "conditions kept failing",
    )
    .with_origin("messageId", "m-1")
    .with_origin(
        "eventSourceARN",
        "arn:aws:sqs:us-east-1:000000000000:inventory",
    );
    let other = DeadLetter::new(b"{\"another\": 1}", "inventory", "conditions kept failing")
        .with_origin("messageId", "m-2")
        .with_origin(
            "eventSourceARN",
            "arn:aws:sqs:us-east-1:000000000000:inventory",
        );
    let queue = herald::aws::dead_letter::SqsDeadLetters::new(sqs.clone(), dlq_url);
    for letters in [vec![letter.clone(), other], vec![letter]] {
        assert!(queue.send(&letters).await.iter().all(Result::is_ok));
    }
    assert_eq!(messages(&sqs, dlq_url).await.len(), 3);

    let dlq = herald_ops::find_dead_letter_queue(&stack, "InventoryDeadLetterQueue").unwrap();
    let report = herald_ops::redrive(&aws, &dlq, |_, _| {}).await.unwrap();
    assert_eq!((report.moved, report.duplicates), (2, 1), "{report:?}");
    assert!(messages(&sqs, dlq_url).await.is_empty());
    let back = messages(&sqs, stack.reference("InventoryQueue").unwrap()).await;
    let mut bodies: Vec<&str> = back.iter().filter_map(|m| m.body()).collect();
    bodies.sort();
    assert_eq!(bodies, ["{\"an\": \"event\"}", "{\"another\": 1}"]);
    pipeline.stop().await;
}
