//! The publisher: the event store's DynamoDB stream onto Kinesis.
//!
//! Why a stream and not "append, then put to Kinesis" in a command service: two writes to two
//! systems cannot be atomic, so a crash between them would leave an event stored but never
//! published (or, the other way round, published but never stored). The store's stream records
//! exactly the items that were written, in order per aggregate, for 24 hours; this function reads
//! them through an event source mapping that retries until the write to Kinesis succeeds. So an
//! event is published if and only if it was appended, at least once; the events keep their ids,
//! and every consumer deduplicates on them.
//!
//! Only new events (`INSERT`s of event items) are published; snapshots and any other change are
//! skipped. A stored item that is not a valid event (which the store never writes) is parked in the
//! dead-letter queue with its reason instead of holding up the stream.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::aws::dead_letter::{DeadLetter, DeadLetters};
use crate::envelope::Envelope;
use crate::event_sourcing::event_store::{attr, is_snapshot_key};
use crate::producer::{EventStream, Producer};

const STAGE: &str = "publisher";

/// A DynamoDB stream event, as Lambda delivers it: the fields the publisher reads.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct StoreChanges {
    /// The records, in stream order.
    #[serde(rename = "Records", default)]
    pub records: Vec<ChangeRecord>,
}

/// One stream record.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct ChangeRecord {
    /// `INSERT`, `MODIFY` or `REMOVE`.
    #[serde(rename = "eventName", default)]
    pub event_name: String,
    /// The stream ARN.
    #[serde(rename = "eventSourceARN", default)]
    pub event_source_arn: Option<String>,
    /// The change.
    pub dynamodb: Change,
}

/// The change itself.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Change {
    /// The record's sequence number (what a batch item failure names).
    #[serde(rename = "SequenceNumber")]
    pub sequence_number: String,
    /// The item's key, in DynamoDB's attribute-value JSON.
    #[serde(rename = "Keys", default)]
    pub keys: HashMap<String, Value>,
    /// The item after the change (`NEW_IMAGE` or `NEW_AND_OLD_IMAGES` streams).
    #[serde(rename = "NewImage", default)]
    pub new_image: Option<HashMap<String, Value>>,
}

/// The partial batch response for a stream event source mapping.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StreamBatchResponse {
    /// The records to retry (Lambda resumes at the lowest one).
    #[serde(rename = "batchItemFailures")]
    pub batch_item_failures: Vec<ItemFailure>,
}

/// One failed record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ItemFailure {
    /// Its sequence number.
    #[serde(rename = "itemIdentifier")]
    pub item_identifier: String,
}

/// Counts for one batch.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PublishSummary {
    /// Events written to the stream.
    pub published: usize,
    /// Records that are not new events (snapshots, modifications).
    pub skipped: usize,
    /// Unreadable items parked in the dead-letter queue.
    pub dead_lettered: usize,
    /// Records reported for retry.
    pub failed: usize,
}

/// Publishes the store's new events through a [`Producer`].
pub struct Publisher<S, D> {
    producer: Producer<S>,
    dead_letters: D,
}

enum Fate {
    Skip,
    Publish(Envelope),
    Poison(DeadLetter),
}

impl<S: EventStream, D: DeadLetters> Publisher<S, D> {
    /// A publisher writing through `producer`, parking unreadable items in `dead_letters`.
    pub fn new(producer: Producer<S>, dead_letters: D) -> Self {
        Publisher {
            producer,
            dead_letters,
        }
    }

    /// Publish one batch of store changes.
    pub async fn publish(&self, changes: &StoreChanges) -> (StreamBatchResponse, PublishSummary) {
        let fates: Vec<Fate> = changes.records.iter().map(fate).collect();
        let mut summary = PublishSummary::default();
        let mut failed = vec![false; fates.len()];

        let (indexes, events): (Vec<usize>, Vec<Envelope>) = fates
            .iter()
            .enumerate()
            .filter_map(|(i, f)| match f {
                Fate::Publish(event) => Some((i, event.clone())),
                _ => None,
            })
            .unzip();
        for (i, result) in indexes.iter().zip(self.producer.publish(&events).await) {
            match result {
                Ok(_) => summary.published += 1,
                Err(err) => {
                    tracing::warn!(sequence_number = %changes.records[*i].dynamodb.sequence_number, error = %err, "not published");
                    failed[*i] = true;
                }
            }
        }

        let poison: Vec<(usize, DeadLetter)> = fates
            .iter()
            .enumerate()
            .filter_map(|(i, f)| match f {
                Fate::Poison(letter) => {
                    let record = &changes.records[i];
                    let mut letter = letter
                        .clone()
                        .with_origin("sequenceNumber", &record.dynamodb.sequence_number);
                    if let Some(arn) = &record.event_source_arn {
                        letter = letter.with_origin("eventSourceARN", arn);
                    }
                    Some((i, letter))
                }
                _ => None,
            })
            .collect();
        if !poison.is_empty() {
            let letters: Vec<DeadLetter> = poison.iter().map(|(_, l)| l.clone()).collect();
            for ((i, _), sent) in poison.iter().zip(self.dead_letters.send(&letters).await) {
                match sent {
                    Ok(()) => summary.dead_lettered += 1,
                    Err(_) => failed[*i] = true,
                }
            }
        }
        summary.skipped = fates.iter().filter(|f| matches!(f, Fate::Skip)).count();

        let mut response = StreamBatchResponse::default();
        for (record, _) in changes.records.iter().zip(&failed).filter(|(_, f)| **f) {
            response.batch_item_failures.push(ItemFailure {
                item_identifier: record.dynamodb.sequence_number.clone(),
            });
        }
        summary.failed = response.batch_item_failures.len();
        (response, summary)
    }
}

fn string_attribute<'a>(image: &'a HashMap<String, Value>, name: &str) -> Option<&'a str> {
    image.get(name)?.get("S")?.as_str()
}

fn fate(record: &ChangeRecord) -> Fate {
    if record.event_name != "INSERT" {
        return Fate::Skip;
    }
    let key = record
        .dynamodb
        .keys
        .get(attr::AGGREGATE_ID)
        .and_then(|k| k.get("S"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    if is_snapshot_key(key) {
        return Fate::Skip;
    }
    let Some(image) = &record.dynamodb.new_image else {
        return Fate::Poison(
            DeadLetter::new(
                serde_json::to_string(&record.dynamodb.keys)
                    .unwrap_or_default()
                    .as_bytes(),
                STAGE,
                "the stream record has no NewImage; the table's StreamViewType must be NEW_IMAGE or NEW_AND_OLD_IMAGES",
            )
            .with_field("NewImage"),
        );
    };
    let Some(json) = string_attribute(image, attr::EVENT) else {
        return Fate::Poison(
            DeadLetter::new(
                serde_json::to_string(image).unwrap_or_default().as_bytes(),
                STAGE,
                format!("the item has no `{}` string attribute", attr::EVENT),
            )
            .with_field(attr::EVENT),
        );
    };
    match Envelope::parse(json.as_bytes()) {
        Ok(event) => Fate::Publish(event),
        Err(err) => Fate::Poison(
            DeadLetter::new(json.as_bytes(), STAGE, err.to_string()).with_field(err.field()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use serde_json::json;

    use super::*;
    use crate::aws::dead_letter::testing::Letters;
    use crate::producer::{PutOutcome, StreamError, StreamRecord};

    /// Accepts everything except records whose data contains `fail`.
    #[derive(Default)]
    struct Stream(Mutex<Vec<StreamRecord>>);

    impl EventStream for Stream {
        async fn put_records(
            &self,
            records: &[StreamRecord],
        ) -> Result<Vec<PutOutcome>, StreamError> {
            let mut written = self.0.lock().unwrap();
            Ok(records
                .iter()
                .map(|r| {
                    if String::from_utf8_lossy(&r.data).contains("fail") {
                        PutOutcome::Failed {
                            code: "InternalFailure".into(),
                            message: "injected".into(),
                        }
                    } else {
                        written.push(r.clone());
                        PutOutcome::Written {
                            shard_id: "shardId-0".into(),
                            sequence_number: written.len().to_string(),
                        }
                    }
                })
                .collect())
        }
    }

    fn event(user: &str, version: u64, reason: &str) -> String {
        Envelope::builder("user_deleted", "herald/users")
            .subject(user)
            .aggregate_version(version)
            .data(json!({"userId": user, "reason": reason}))
            .build()
            .unwrap()
            .to_json()
    }

    fn insert(seq: &str, key: &str, image_event: Option<&str>) -> Value {
        let mut image = json!({"aggregateId": {"S": key}, "version": {"N": "1"}});
        if let Some(e) = image_event {
            image["event"] = json!({"S": e});
        }
        json!({
            "eventName": "INSERT",
            "eventSourceARN": "arn:aws:dynamodb:eu-west-1:123456789012:table/events/stream/x",
            "dynamodb": {"SequenceNumber": seq, "Keys": {"aggregateId": {"S": key}, "version": {"N": "1"}}, "NewImage": image},
        })
    }

    fn publisher() -> Publisher<Stream, Letters> {
        let mut config = crate::producer::ProducerConfig::default();
        config.backoff.max_attempts = 2;
        config.backoff.base = std::time::Duration::from_millis(1);
        Publisher::new(
            Producer::with_config(Stream::default(), config),
            Letters::default(),
        )
    }

    #[tokio::test]
    async fn publishes_new_events_in_order_and_skips_the_rest() {
        let p = publisher();
        let mut modify = insert("3", "o-1", Some(&event("o-1", 1, "x")));
        modify["eventName"] = json!("MODIFY");
        let changes: StoreChanges = serde_json::from_value(json!({"Records": [
            insert("1", "o-1", Some(&event("o-1", 1, "a"))),
            insert("2", "snapshot#o-1", None),
            modify,
            insert("4", "o-1", Some(&event("o-1", 2, "b"))),
        ]}))
        .unwrap();
        let (response, summary) = p.publish(&changes).await;
        assert!(response.batch_item_failures.is_empty());
        assert_eq!((summary.published, summary.skipped), (2, 2));
        let written = p.producer.stream().0.lock().unwrap();
        let versions: Vec<Option<u64>> = written
            .iter()
            .map(|r| Envelope::parse(&r.data).unwrap().aggregate_version())
            .collect();
        assert_eq!(versions, [Some(1), Some(2)]);
        assert!(written.iter().all(|r| r.partition_key == "o-1"));
    }

    #[tokio::test]
    async fn a_failed_write_is_reported_and_the_mapping_resumes_there() {
        let p = publisher();
        let changes: StoreChanges = serde_json::from_value(json!({"Records": [
            insert("1", "o-1", Some(&event("o-1", 1, "fail"))),
            insert("2", "o-1", Some(&event("o-1", 2, "ok"))),
            insert("3", "o-2", Some(&event("o-2", 1, "ok"))),
        ]}))
        .unwrap();
        let (response, summary) = p.publish(&changes).await;
        let ids: Vec<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        // v2 went in with v1's request and Kinesis wrote it although v1 failed: it counts as
        // published (its copy is in the stream). The mapping resumes at the lowest reported
        // record, so v1 and then v2 are published again, in order.
        assert_eq!(ids, ["1"]);
        assert_eq!((summary.published, summary.failed), (2, 1));
    }

    #[tokio::test]
    async fn an_unreadable_item_is_dead_lettered_with_its_reason() {
        let p = publisher();
        let changes: StoreChanges = serde_json::from_value(json!({"Records": [
            insert("1", "o-1", Some("{\"not\": \"an envelope\"}")),
            insert("2", "o-2", None),
        ]}))
        .unwrap();
        let (response, summary) = p.publish(&changes).await;
        assert!(response.batch_item_failures.is_empty());
        assert_eq!(summary.dead_lettered, 2);
        let letters = p.dead_letters.0.lock().unwrap();
        assert_eq!(letters[0].origin["sequenceNumber"], "1");
        assert_eq!(letters[1].field.as_deref(), Some("event"));
    }
}
