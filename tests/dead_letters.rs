//! Dead letters on the local pipeline: every dead letter is a message SQS accepts (characters it
//! refuses encoded, oversized records cut and pointed to), and a redrive gives back the record.

mod common;

use std::time::Duration;

use aws_sdk_sqs::types::Message;
use herald::dead_letter::{attr, decode_body, sqs_accepts_text, DecodeError};
use herald::limits::SQS_MAX_MESSAGE_BYTES;
use herald_local::inspect::put_raw;
use herald_local::ops;
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
        stack.reference("EventStream").unwrap(),
        &poison,
    )
    .await
    .unwrap();
    // And one straight into a subscriber's queue (SQS took it; its dead letter must fit too).
    let queued = "{not an envelope \u{1} \u{1f}}";
    let inventory_queue = stack.reference("InventoryQueue").unwrap();
    sqs.send_message()
        .queue_url(inventory_queue)
        .message_body(queued)
        .send()
        .await
        .unwrap();
    settle(&pipeline).await;

    let router_dlq = stack.reference("RouterDeadLetterQueue").unwrap();
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
    assert!(origin["eventID"].as_str().unwrap().contains(':'), "{origin}");
    assert!(origin["sequenceNumber"].is_string(), "{origin}");

    let inventory_dlq = stack.reference("InventoryDeadLetterQueue").unwrap();
    let inventory_letters = messages(&sqs, inventory_dlq).await;
    assert_eq!(inventory_letters.len(), 1);
    assert_eq!(sqs_refusal(&inventory_letters[0]), None);
    assert_eq!(record_of(&inventory_letters[0]).unwrap(), queued.as_bytes());

    // Redrive: the two whole records go back onto the stream as they were (and, poison still,
    // come back as letters holding the same records); the cut one stays, with why.
    let dlq = ops::find_dead_letter_queue(&stack, "RouterDeadLetterQueue").unwrap();
    let redriven = ops::redrive(&aws, &dlq, |_, _| {}).await.unwrap();
    assert_eq!(redriven.moved, 2, "{redriven:?}");
    assert_eq!(redriven.failed.len(), 1, "{redriven:?}");
    assert!(
        redriven.failed[0].contains("truncated"),
        "{:?}",
        redriven.failed
    );
    settle(&pipeline).await;
    let again = messages(&sqs, router_dlq).await;
    let summary: Vec<(Option<&str>, Option<&str>, usize)> = again.iter().map(|l| (attribute(l, attr::REASON), attribute(l, attr::ENCODING), l.body.as_deref().unwrap_or_default().len())).collect();
    assert_eq!(again.len(), 3, "{summary:#?}");
    let mut records: Vec<Vec<u8>> = again.iter().filter_map(|l| record_of(l).ok()).collect();
    records.sort();
    assert_eq!(records, expected, "the redrive put back the records, not their encoding");
    pipeline.stop().await;
}
