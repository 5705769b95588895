//! Unit tests of [`SqsSubscriber`](super::SqsSubscriber): panics, poison, the last receive,
//! per-aggregate ordering, follow-ups and SNS unwrapping.

use super::*;
use crate::aws::dead_letter::testing::Letters;
use crate::producer::{PutOutcome, StreamError, StreamRecord};
use crate::subscriber::Outcome;
use std::sync::Mutex;

/// Behaves by event type: `boom` panics, `flaky` asks for a retry, `bad` is poison,
/// `echo` emits a follow-up, `throttled` and `denied` fail as AWS does (transient and
/// configuration); everything else is applied.
struct Scripted;
impl RecordHandler for Scripted {
    fn name(&self) -> &'static str {
        "scripted"
    }
    async fn process(
        &self,
        event: &Envelope,
        _deadline: SystemTime,
    ) -> Result<Delivery, RecordError> {
        match event.event_type() {
            "boom" => panic!("handler bug"),
            "flaky" => Err(RecordError::Retry("throttled".into())),
            "throttled" => Err(RecordError::Unavailable {
                class: crate::aws::errors::ErrorClass::Transient,
                reason: "ProvisionedThroughputExceededException: slow down".into(),
            }),
            "denied" => Err(RecordError::Unavailable {
                class: crate::aws::errors::ErrorClass::Configuration,
                reason: "AccessDeniedException: not allowed".into(),
            }),
            "bad" => Err(RecordError::Poison {
                field: "data".into(),
                reason: "is wrong".into(),
            }),
            "echo" => Ok(Delivery::Applied(
                Outcome::new("echoed")
                    .emitting(event.follow_up("echoed", "herald/test").build().unwrap()),
            )),
            _ => Ok(Delivery::Applied(Outcome::new("done"))),
        }
    }
}

struct Stream {
    fail: bool,
    written: Mutex<Vec<StreamRecord>>,
    requests: Mutex<usize>,
}
impl EventStream for Stream {
    async fn put_records(&self, records: &[StreamRecord]) -> Result<Vec<PutOutcome>, StreamError> {
        *self.requests.lock().unwrap() += 1;
        if self.fail {
            return Err(StreamError::other("stream down"));
        }
        self.written.lock().unwrap().extend_from_slice(records);
        // The record of an event whose subject is `refused` fails (retryably).
        Ok(records
            .iter()
            .map(|r| {
                if String::from_utf8_lossy(&r.data).contains("\"subject\":\"refused\"") {
                    PutOutcome::Failed {
                        code: "ProvisionedThroughputExceededException".into(),
                        message: "slow down".into(),
                    }
                } else {
                    PutOutcome::Written {
                        shard_id: "s".into(),
                        sequence_number: "1".into(),
                    }
                }
            })
            .collect())
    }
}

fn subscriber(
    fail_stream: bool,
    max_receive_count: Option<u32>,
) -> SqsSubscriber<Scripted, Letters, Stream> {
    let backoff = crate::aws::Backoff {
        max_attempts: 1,
        ..Default::default()
    };
    let producer = Producer::with_config(
        Stream {
            fail: fail_stream,
            written: Mutex::default(),
            requests: Mutex::default(),
        },
        crate::producer::ProducerConfig {
            backoff,
            ..Default::default()
        },
    );
    SqsSubscriber::new(
        Scripted,
        Letters::default(),
        producer,
        SubscriberConfig {
            max_receive_count,
            ..SubscriberConfig::default()
        },
    )
}

fn message(id: &str, event_type: &str, subject: &str, receives: u32) -> SqsMessage {
    let envelope = Envelope::builder(event_type, "herald/test")
        .id(id)
        .subject(subject)
        .build()
        .unwrap();
    raw_message(id, &envelope.to_json(), receives)
}

fn raw_message(id: &str, body: &str, receives: u32) -> SqsMessage {
    let mut message = SqsMessage::default();
    message.message_id = Some(id.into());
    message.body = Some(body.into());
    message
        .attributes
        .insert("ApproximateReceiveCount".into(), receives.to_string());
    message
}

fn batch(messages: Vec<SqsMessage>) -> SqsEvent {
    let mut event = SqsEvent::default();
    event.records = messages;
    event
}

fn failed(response: &SqsBatchResponse) -> Vec<String> {
    response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect()
}

#[tokio::test]
async fn a_panic_fails_its_record_only() {
    let subscriber = subscriber(false, None);
    let event = batch(vec![
        message("a", "ok", "x", 1),
        message("b", "boom", "y", 1),
        message("c", "ok", "z", 1),
    ]);
    let (response, summary) = subscriber.handle(&event, SystemTime::now()).await;
    assert_eq!(failed(&response), ["b"]);
    assert_eq!(summary.applied, 2);
}

#[tokio::test]
async fn poison_is_dead_lettered_with_its_reason_and_acknowledged() {
    let subscriber = subscriber(false, None);
    let event = batch(vec![
        raw_message("a", "not json", 1),
        message("b", "bad", "y", 1),
    ]);
    let (response, summary) = subscriber.handle(&event, SystemTime::now()).await;
    assert!(failed(&response).is_empty());
    assert_eq!(summary.dead_lettered, 2);
    let letters = subscriber.dead_letters.0.lock().unwrap();
    assert_eq!(letters[0].body, "not json");
    assert_eq!(letters[0].stage, "scripted");
    assert_eq!(letters[1].field.as_deref(), Some("data"));
    assert_eq!(letters[1].origin["messageId"], "b");
}

#[tokio::test]
async fn the_last_allowed_receive_dead_letters_with_the_reason() {
    let subscriber = subscriber(false, Some(3));
    let event = batch(vec![
        message("a", "flaky", "x", 2),
        message("b", "flaky", "y", 3),
    ]);
    let (response, _) = subscriber.handle(&event, SystemTime::now()).await;
    assert_eq!(failed(&response), ["a"]);
    let letters = subscriber.dead_letters.0.lock().unwrap();
    assert_eq!(letters.len(), 1);
    assert!(
        letters[0]
            .reason
            .contains("gave up after 3 receives: throttled"),
        "{}",
        letters[0].reason
    );
}

#[tokio::test]
async fn a_failed_event_holds_back_the_rest_of_its_aggregate() {
    let subscriber = subscriber(false, None);
    let event = batch(vec![
        message("a", "flaky", "acct-1", 1),
        message("b", "ok", "acct-1", 1),
        message("c", "ok", "acct-2", 1),
    ]);
    let (response, summary) = subscriber.handle(&event, SystemTime::now()).await;
    assert_eq!(failed(&response), ["a", "b"]);
    assert_eq!(summary.applied, 1);
}

#[tokio::test]
async fn follow_ups_are_published_and_a_failed_publish_is_retried() {
    let ok = subscriber(false, None);
    let (response, _) = ok
        .handle(
            &batch(vec![message("a", "echo", "x", 1)]),
            SystemTime::now(),
        )
        .await;
    assert!(failed(&response).is_empty());
    assert_eq!(ok.emitter.stream().written.lock().unwrap().len(), 1);

    let down = subscriber(true, None);
    let (response, _) = down
        .handle(
            &batch(vec![message("a", "echo", "x", 1)]),
            SystemTime::now(),
        )
        .await;
    assert_eq!(failed(&response), ["a"]);
}

#[tokio::test]
async fn a_batch_publishes_its_follow_ups_in_one_request() {
    let ok = subscriber(false, None);
    let messages = (0..6)
        .map(|i| message(&format!("m{i}"), "echo", &format!("agg-{i}"), 1))
        .collect();
    let (response, summary) = ok.handle(&batch(messages), SystemTime::now()).await;
    assert!(failed(&response).is_empty());
    assert_eq!(summary.applied, 6);
    assert_eq!(ok.emitter.stream().written.lock().unwrap().len(), 6);
    assert_eq!(*ok.emitter.stream().requests.lock().unwrap(), 1);
}

#[tokio::test]
async fn a_follow_up_that_fails_holds_back_the_rest_of_its_aggregate() {
    let stream = subscriber(false, None);
    // `a` and `c` are one aggregate; `a`'s follow-up is refused; `b` is another aggregate.
    let mut first = message("a", "echo", "refused", 1);
    let envelope = Envelope::builder("echo", "herald/test")
        .id("a")
        .subject("refused")
        .partition_key("order-1")
        .build()
        .unwrap();
    first.body = Some(envelope.to_json());
    let later = Envelope::builder("noop", "herald/test")
        .id("c")
        .subject("other")
        .partition_key("order-1")
        .build()
        .unwrap();
    let (response, _) = stream
        .handle(
            &batch(vec![
                first,
                message("b", "echo", "fine", 1),
                raw_message("c", &later.to_json(), 1),
            ]),
            SystemTime::now(),
        )
        .await;
    // `c` was applied, but its aggregate's earlier event is redelivered: so is `c` (as a
    // duplicate, its effect stored), and the aggregate keeps its order.
    assert_eq!(failed(&response), ["a", "c"]);
}

/// A stream that refuses every request as invalid (what no redelivery can fix).
struct RefusingStream;
impl EventStream for RefusingStream {
    async fn put_records(&self, _: &[StreamRecord]) -> Result<Vec<PutOutcome>, StreamError> {
        Err(StreamError(crate::aws::AwsError::with_code(
            "ValidationException",
            "record too large",
        )))
    }
}

#[tokio::test]
async fn a_follow_up_the_stream_refuses_for_good_is_dead_lettered_not_redelivered() {
    let subscriber = SqsSubscriber::new(
        Scripted,
        Letters::default(),
        Producer::new(RefusingStream),
        SubscriberConfig {
            max_receive_count: Some(5),
            ..SubscriberConfig::default()
        },
    );
    let (response, summary) = subscriber
        .handle(
            &batch(vec![message("a", "echo", "x", 1)]),
            SystemTime::now(),
        )
        .await;
    assert!(failed(&response).is_empty());
    assert_eq!(summary.dead_lettered, 1);
    let letters = subscriber.dead_letters.0.lock().unwrap();
    assert_eq!(letters[0].field.as_deref(), Some("emit"));
    assert!(
        letters[0].reason.contains("ValidationException"),
        "{}",
        letters[0].reason
    );
}

#[test]
fn sns_notifications_are_unwrapped() {
    let envelope = Envelope::builder("ok", "herald/test")
        .id("n1")
        .subject("s")
        .build()
        .unwrap();
    let wrapped = serde_json::json!({"Type": "Notification", "MessageId": "m", "Message": envelope.to_json()});
    let decoded = decode(&raw_message("m", &wrapped.to_string(), 1)).unwrap();
    assert_eq!(decoded, envelope);
}

/// Records what it was asked to postpone.
#[derive(Default)]
struct Postponements(Mutex<Vec<Postponed>>);

impl Redelivery for Postponements {
    fn postpone<'a>(
        &'a self,
        messages: &'a [Postponed],
    ) -> crate::subscriber::retry::Postponing<'a> {
        self.0.lock().unwrap().extend_from_slice(messages);
        Box::pin(async move { messages.iter().map(|_| Ok(())).collect() })
    }
}

fn queued(mut message: SqsMessage, seconds_ago: u64) -> SqsMessage {
    let now = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    message.attributes.insert(
        "SentTimestamp".into(),
        (now - seconds_ago * 1000).to_string(),
    );
    message.event_source_arn = Some("arn:aws:sqs:us-east-1:123456789012:q".into());
    message.receipt_handle = Some(format!("rh-{}", message.message_id.clone().unwrap()));
    message
}

/// Issue 24, item 2: a failure AWS caused (throttling, an outage, access denied) is never given
/// up on by herald before the queue's last receive, however long it lasts; it comes back with
/// exponential backoff. The code before dead-lettered any failure on the receive the queue
/// allowed last (5 receives × 60 s: about five minutes of a DynamoDB or KMS outage).
#[tokio::test]
async fn aws_failures_come_back_with_backoff_and_are_not_dead_lettered_before_the_last_receive() {
    let postponed = Arc::new(Postponements::default());
    let patient = subscriber(false, Some(500)).with_redelivery(postponed.clone());
    let event = batch(vec![
        // A day in the queue, 200 receives: still retried.
        queued(message("a", "throttled", "x", 200), 86_400),
        queued(message("b", "denied", "y", 3), 600),
    ]);
    let (response, summary) = patient.handle(&event, SystemTime::now()).await;
    assert_eq!(failed(&response), ["a", "b"]);
    assert_eq!(summary.dead_lettered, 0);
    assert!(patient.dead_letters.0.lock().unwrap().is_empty());
    let postponed = postponed.0.lock().unwrap().clone();
    let delays: Vec<u64> = postponed.iter().map(|p| p.delay.as_secs()).collect();
    assert!((450..=900).contains(&delays[0]), "at the cap: {delays:?}");
    assert!((20..=40).contains(&delays[1]), "third receive: {delays:?}");
    assert_eq!(postponed[1].receipt_handle, "rh-b");
    // Every message unavailable: the invocation fails, so Lambda's Errors alarm sees it.
    assert!(summary.outage(2), "{summary:?}");

    // On the queue's last receive herald dead-letters it with the reason, rather than SQS
    // moving it without one.
    let last = subscriber(false, Some(500));
    let (response, _) = last
        .handle(
            &batch(vec![queued(message("c", "throttled", "z", 500), 60)]),
            SystemTime::now(),
        )
        .await;
    assert!(failed(&response).is_empty());
    let letters = last.dead_letters.0.lock().unwrap();
    assert!(
        letters[0].reason.contains("gave up after 500 receives")
            && letters[0].reason.contains("ProvisionedThroughputExceeded"),
        "{}",
        letters[0].reason
    );
}

/// A handler's own "retry later" has a budget in time, not in receives: within it the message
/// comes back (with backoff), past it it is dead-lettered with its reason and its age.
#[tokio::test]
async fn a_handlers_retry_is_dead_lettered_once_its_budget_in_time_is_spent() {
    let mut subscriber = subscriber(false, Some(500));
    subscriber.config.retry.budget = std::time::Duration::from_secs(3600);
    let event = batch(vec![
        queued(message("young", "flaky", "x", 40), 1800),
        queued(message("old", "flaky", "y", 4), 7200),
        queued(message("fine", "ok", "z", 1), 7200),
    ]);
    let (response, summary) = subscriber.handle(&event, SystemTime::now()).await;
    assert_eq!(failed(&response), ["young"]);
    assert_eq!((summary.dead_lettered, summary.applied), (1, 1));
    assert!(!summary.outage(3));
    let letters = subscriber.dead_letters.0.lock().unwrap();
    assert!(
        letters[0]
            .reason
            .contains("gave up after 4 receives over 7200 s: throttled"),
        "{}",
        letters[0].reason
    );
}

/// A store that cannot be reached is AWS's failure (`Unavailable`), whatever the handler.
#[test]
fn idempotency_store_failures_are_unavailable_not_retries_with_a_budget() {
    let throttled = crate::idempotency::PersistenceError::new("TransactWriteItems: slow down")
        .with_throttling(true);
    let err: RecordError =
        crate::idempotency::IdempotencyError::<crate::subscriber::HandlerError>::Persistence(
            throttled,
        )
        .into();
    assert!(
        matches!(
            err,
            RecordError::Unavailable {
                class: crate::aws::errors::ErrorClass::Transient,
                ..
            }
        ),
        "{err:?}"
    );
    let err: RecordError = crate::subscriber::HandlerError::from(crate::aws::AwsError::with_code(
        "AccessDeniedException",
        "not allowed",
    ))
    .into();
    assert!(matches!(err, RecordError::Unavailable { .. }), "{err:?}");
}
