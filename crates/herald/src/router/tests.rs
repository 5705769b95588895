//! Unit tests of [`Router`](super::Router): batching, poison, retries and batch item failures.

use super::*;
use crate::aws::dead_letter::testing::Letters;
use crate::envelope::Envelope;
use aws_lambda_events::event::kinesis::{KinesisEvent, KinesisEventRecord};
use std::sync::Mutex;
use std::time::Duration;

#[derive(Default)]
struct RecordingBus {
    requests: Mutex<Vec<Vec<BusMessage<'static>>>>,
    throttle_first: bool,
    throttle_always: Option<String>,
}

impl EventBus for RecordingBus {
    async fn publish_batch(&self, entries: &[BusMessage<'_>]) -> Result<Vec<BusOutcome>, BusError> {
        let first = {
            let mut requests = self.requests.lock().unwrap();
            requests.push(
                entries
                    .iter()
                    .cloned()
                    .map(BusMessage::into_owned)
                    .collect(),
            );
            requests.len() == 1
        };
        Ok(entries
            .iter()
            .map(|e| {
                let throttled = (self.throttle_first && first && e.id == "r1")
                    || self.throttle_always.as_deref() == Some(e.id.as_str());
                if throttled {
                    BusOutcome::Failed {
                        code: "Throttling".into(),
                        message: "rate exceeded".into(),
                        sender_fault: false,
                    }
                } else {
                    BusOutcome::Published
                }
            })
            .collect())
    }
}

fn record(seq: usize, data: &[u8]) -> KinesisEventRecord {
    aged(seq, data, 1)
}

/// A record that reached the stream `age_seconds` ago.
fn aged(seq: usize, data: &[u8], age_seconds: i64) -> KinesisEventRecord {
    let mut record = KinesisEventRecord::default();
    record.kinesis.approximate_arrival_timestamp.0 =
        chrono::Utc::now() - chrono::Duration::seconds(age_seconds);
    record.kinesis.sequence_number = seq.to_string();
    record.kinesis.partition_key = "k".into();
    record.kinesis.data.0 = data.to_vec();
    record
}

fn envelope(n: usize) -> Vec<u8> {
    Envelope::builder("user_signed_up", "herald/test")
        .subject(format!("user-{n}"))
        .data(serde_json::json!({"n": n}))
        .build()
        .unwrap()
        .to_json_bytes()
}

fn batch(records: Vec<KinesisEventRecord>) -> KinesisEvent {
    let mut event = KinesisEvent::default();
    event.records = records;
    event
}

fn fast() -> RouterConfig {
    RouterConfig {
        backoff: Backoff {
            max_attempts: 2,
            base: Duration::from_millis(1),
            cap: Duration::from_millis(1),
        },
        concurrency: 2,
        catalog: None,
        deadline_margin: Duration::from_millis(10),
        give_up_after: None,
    }
}

#[tokio::test]
async fn publishes_in_batches_of_ten_with_attributes() {
    let router = Router::with_config(RecordingBus::default(), Letters::default(), fast());
    let records = (0..25).map(|i| record(i, &envelope(i))).collect();
    let (response, summary) = router.route(&batch(records)).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(summary.published, 25);
    let requests = router.bus.requests.lock().unwrap();
    let mut sizes: Vec<usize> = requests.iter().map(Vec::len).collect();
    sizes.sort();
    assert_eq!(sizes, vec![5, 10, 10]);
    let attrs = &requests[0][0].attributes;
    let names: Vec<&str> = attrs.iter().map(|a| a.name).collect();
    assert_eq!(
        names,
        ["type", "kind", "source", "schemaversion", "correlationid"]
    );
    assert_eq!(attrs[0].value, "user_signed_up");
}

#[tokio::test]
async fn poison_goes_to_the_dead_letter_queue_and_does_not_block() {
    let router = Router::with_config(RecordingBus::default(), Letters::default(), fast());
    let records = vec![
        record(1, &envelope(1)),
        record(2, b"not json"),
        record(3, br#"{"id":"x"}"#),
        record(4, &envelope(4)),
    ];
    let (response, summary) = router.route(&batch(records)).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(
        summary,
        RouteSummary {
            published: 2,
            dead_lettered: 2,
            failed: 0
        }
    );
    let letters = router.dead_letters.0.lock().unwrap();
    assert_eq!(letters[0].body, "not json");
    assert_eq!(letters[0].field.as_deref(), Some("event"));
    assert_eq!(letters[1].field.as_deref(), Some("specversion"));
    assert_eq!(letters[1].origin["sequenceNumber"], "3");
}

#[tokio::test]
async fn throttled_entries_are_retried() {
    let bus = RecordingBus {
        throttle_first: true,
        ..Default::default()
    };
    let router = Router::with_config(bus, Letters::default(), fast());
    let records = (0..3).map(|i| record(i, &envelope(i))).collect();
    let (response, summary) = router.route(&batch(records)).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(summary.published, 3);
    let requests = router.bus.requests.lock().unwrap();
    assert_eq!(
        requests[1]
            .iter()
            .map(|m| m.id.as_str())
            .collect::<Vec<_>>(),
        ["r1"]
    );
}

#[tokio::test]
async fn a_lasting_failure_reports_that_record_and_every_later_one() {
    let bus = RecordingBus {
        throttle_always: Some("r2".into()),
        ..Default::default()
    };
    let router = Router::with_config(bus, Letters::default(), fast());
    let records = (0..5).map(|i| record(100 + i, &envelope(i))).collect();
    let (response, summary) = router.route(&batch(records)).await;
    let failed: Vec<String> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone().unwrap())
        .collect();
    assert_eq!(failed, ["102", "103", "104"]);
    assert_eq!(summary.failed, 3);
    assert_eq!(summary.published, 2);
}

/// A bus that fails chosen entries with chosen SNS errors: `(entry id, code, sender fault,
/// only on the first request)`. SNS's KMS and permission failures are what the emulator cannot
/// produce.
struct ScriptedBus {
    failures: Vec<(&'static str, &'static str, bool, bool)>,
    requests: Mutex<Vec<Vec<String>>>,
}

impl ScriptedBus {
    fn new(failures: Vec<(&'static str, &'static str, bool, bool)>) -> Self {
        ScriptedBus {
            failures,
            requests: Mutex::default(),
        }
    }
}

impl EventBus for ScriptedBus {
    async fn publish_batch(&self, entries: &[BusMessage<'_>]) -> Result<Vec<BusOutcome>, BusError> {
        let first = {
            let mut requests = self.requests.lock().unwrap();
            requests.push(entries.iter().map(|e| e.id.clone()).collect());
            requests.len() == 1
        };
        Ok(entries
            .iter()
            .map(|e| {
                match self
                    .failures
                    .iter()
                    .find(|(id, _, _, once)| *id == e.id && (first || !once))
                {
                    Some((_, code, sender_fault, _)) => BusOutcome::Failed {
                        code: code.to_string(),
                        message: "refused".into(),
                        sender_fault: *sender_fault,
                    },
                    None => BusOutcome::Published,
                }
            })
            .collect())
    }
}

fn failed_ids(response: &KinesisEventResponse) -> Vec<String> {
    response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone().unwrap())
        .collect()
}

#[tokio::test]
async fn kms_and_permission_sender_faults_are_not_poison() {
    // SNS flags all three as the sender's fault; only the bad parameter is the message's.
    let bus = ScriptedBus::new(vec![
        ("r0", "KMSThrottling", true, true),
        ("r1", "InvalidParameter", true, false),
        ("r2", "AuthorizationError", true, false),
    ]);
    let router = Router::with_config(
        bus,
        Letters::default(),
        RouterConfig {
            backoff: Backoff {
                max_attempts: 5,
                ..fast().backoff
            },
            ..fast()
        },
    );
    let records = (0..4).map(|i| record(100 + i, &envelope(i))).collect();
    let (response, summary) = router.route(&batch(records)).await;
    let letters = router.dead_letters.0.lock().unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert!(letters[0].reason.contains("InvalidParameter"));
    assert_eq!(letters[0].origin["sequenceNumber"], "101");
    // The throttled entry was retried and published; the authorization failure is reported for
    // Lambda to retry (with every later record), not retried in process.
    assert_eq!(failed_ids(&response), ["102", "103"]);
    assert_eq!(
        summary,
        RouteSummary {
            published: 1,
            dead_lettered: 1,
            failed: 2
        }
    );
    let requests = router.bus.requests.lock().unwrap();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[1], ["r0"]);
}

#[tokio::test]
async fn past_the_deadline_nothing_is_sent_and_every_record_is_reported() {
    let router = Router::with_config(RecordingBus::default(), Letters::default(), fast());
    let records = (0..3).map(|i| record(100 + i, &envelope(i))).collect();
    let (response, summary) = crate::aws::Deadline::after(Duration::ZERO)
        .scope(router.route(&batch(records)))
        .await;
    assert_eq!(failed_ids(&response), ["100", "101", "102"]);
    assert_eq!(summary.failed, 3);
    assert!(router.bus.requests.lock().unwrap().is_empty());
    assert!(router.dead_letters.0.lock().unwrap().is_empty());
}

/// A bus that never answers (a hung connection).
struct HungBus;

impl EventBus for HungBus {
    async fn publish_batch(&self, _: &[BusMessage<'_>]) -> Result<Vec<BusOutcome>, BusError> {
        std::future::pending().await
    }
}

#[tokio::test]
async fn a_hung_publish_is_reported_before_the_deadline() {
    let router = Router::with_config(HungBus, Letters::default(), fast());
    let records = (0..12).map(|i| record(100 + i, &envelope(i))).collect();
    let (response, summary) = crate::aws::Deadline::after(Duration::from_millis(80))
        .scope(router.route(&batch(records)))
        .await;
    assert_eq!(failed_ids(&response).len(), 12);
    assert_eq!(summary.failed, 12);
}

/// A dead-letter queue that never answers.
struct HungLetters;

impl DeadLetters for HungLetters {
    async fn send(
        &self,
        _: &[DeadLetter],
    ) -> Vec<Result<(), crate::aws::dead_letter::DeadLetterError>> {
        std::future::pending().await
    }
}

#[tokio::test]
async fn a_hung_dead_letter_queue_is_reported_before_the_deadline() {
    let router = Router::with_config(RecordingBus::default(), HungLetters, fast());
    let mut records: Vec<KinesisEventRecord> =
        (0..4).map(|i| record(200 + i, &envelope(i))).collect();
    records.insert(2, record(299, b"poison"));
    let (response, summary) = crate::aws::Deadline::after(Duration::from_millis(80))
        .scope(router.route(&batch(records)))
        .await;
    // From the poison on, everything is reported for Lambda's retry; nothing is lost.
    assert_eq!(failed_ids(&response).len(), 3, "{response:?}");
    assert_eq!((summary.dead_lettered, summary.failed), (0, 3));
}

#[tokio::test]
async fn throttling_until_the_deadline_reports_instead_of_retrying_on() {
    let bus = RecordingBus {
        throttle_always: Some("r1".into()),
        ..Default::default()
    };
    let router = Router::with_config(
        bus,
        Letters::default(),
        RouterConfig {
            backoff: Backoff {
                max_attempts: u32::MAX,
                base: Duration::from_millis(1),
                cap: Duration::from_millis(5),
            },
            ..fast()
        },
    );
    let records = (0..3).map(|i| record(100 + i, &envelope(i))).collect();
    let (response, _) = crate::aws::Deadline::after(Duration::from_millis(100))
        .scope(router.route(&batch(records)))
        .await;
    assert_eq!(failed_ids(&response), ["101", "102"]);
    assert!(router.dead_letters.0.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_record_that_cannot_be_published_before_lambda_gives_up_is_dead_lettered_whole() {
    // SNS keeps failing r1 and r2 (an outage); r1 reached the stream 56 minutes ago, r2 just now.
    struct Outage;
    impl EventBus for Outage {
        async fn publish_batch(
            &self,
            entries: &[BusMessage<'_>],
        ) -> Result<Vec<BusOutcome>, BusError> {
            Ok(entries
                .iter()
                .map(|e| match e.id.as_str() {
                    "r0" => BusOutcome::Published,
                    _ => BusOutcome::Failed {
                        code: "KMSThrottling".into(),
                        message: "key unavailable".into(),
                        sender_fault: false,
                    },
                })
                .collect())
        }
    }
    let config = RouterConfig {
        give_up_after: Some(give_up_after(Duration::from_secs(3600))),
        ..fast()
    };
    assert_eq!(config.give_up_after, Some(Duration::from_secs(3300)));
    let router = Router::with_config(Outage, Letters::default(), config);
    let old = envelope(1);
    let records = vec![
        aged(100, &envelope(0), 3400),
        aged(101, &old, 3360),
        aged(102, &envelope(2), 5),
    ];
    let (response, summary) = router.route(&batch(records)).await;
    assert_eq!(
        summary,
        RouteSummary {
            published: 1,
            dead_lettered: 1,
            failed: 1
        }
    );
    let failed: Vec<String> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone().unwrap())
        .collect();
    assert_eq!(failed, ["102"], "the young record is retried");
    let letters = router.dead_letters.0.lock().unwrap();
    assert_eq!(
        letters[0].body.as_bytes(),
        old,
        "the payload, not a pointer"
    );
    assert!(
        letters[0].reason.contains("KMSThrottling"),
        "{}",
        letters[0].reason
    );
    assert_eq!(letters[0].origin["sequenceNumber"], "101");
}

#[test]
fn the_router_gives_up_before_its_mapping_does() {
    assert_eq!(
        give_up_after(Duration::from_secs(3600)),
        Duration::from_secs(3300)
    );
    assert_eq!(
        give_up_after(Duration::from_secs(60)),
        Duration::from_secs(30)
    );
}

#[tokio::test]
async fn escaped_attributes_are_published_decoded_and_the_body_unchanged() {
    let router = Router::with_config(RecordingBus::default(), Letters::default(), fast());
    let text = String::from_utf8(envelope(1))
        .unwrap()
        .replace("\"herald/test\"", "\"herald\\/test\"");
    let (response, summary) = router.route(&batch(vec![record(0, text.as_bytes())])).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(summary.published, 1);
    let requests = router.bus.requests.lock().unwrap();
    let message = &requests[0][0];
    assert_eq!(message.body, text);
    let source = message.attributes.iter().find(|a| a.name == "source");
    assert_eq!(source.map(|a| a.value.as_ref()), Some("herald/test"));
}

/// Issue 24, item 9: a type from a source its catalog entry does not name as a producer is the
/// router's poison, dead-lettered naming `source` (before: any role that may write to the
/// stream could announce any type, and every subscriber acted on it).
#[tokio::test]
async fn a_type_from_a_source_that_does_not_produce_it_is_dead_lettered() {
    let catalog = crate::EventCatalog::new()
        .with("user_signed_up", crate::EventKind::Business, 1..=1)
        .produced_by("user_signed_up", &["herald/users"]);
    let config = RouterConfig {
        catalog: Some(catalog),
        ..fast()
    };
    let router = Router::with_config(RecordingBus::default(), Letters::default(), config);
    let from = |source: &str| {
        Envelope::builder("user_signed_up", source)
            .subject("user-1")
            .build()
            .unwrap()
            .to_json_bytes()
    };
    let records = vec![
        record(1, &from("herald/users")),
        record(2, &from("herald/test")),
    ];
    let (response, summary) = router.route(&batch(records)).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!((summary.published, summary.dead_lettered), (1, 1));
    let letters = router.dead_letters.0.lock().unwrap();
    assert_eq!(letters[0].field.as_deref(), Some("source"));
    assert!(
        letters[0]
            .reason
            .contains("does not produce user_signed_up"),
        "{}",
        letters[0].reason
    );
}
