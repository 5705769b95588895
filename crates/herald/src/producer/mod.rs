//! The producer: validated envelopes onto the stream with `PutRecords`.
//!
//! - Requests are chunked at 500 records / 5 MiB ([`crate::aws::limits`]); one aggregate's events share
//!   requests (1 000 events of one aggregate are two requests, not 1 000).
//! - Only the entries Kinesis failed for transient reasons ([`crate::aws::errors`]) are retried, with
//!   [`Backoff`], and only while the invocation's [deadline](crate::aws::Deadline) leaves time: every
//!   event gets an answer (written, failed with the reason, or "not confirmed before the deadline,
//!   send again"), never a timeout.
//! - The partition key is the aggregate (the envelope's `subject`), and one aggregate's events
//!   stay in order: when an event fails, it is retried together with every later event of its
//!   aggregate ([`Producer::publish_before`]). If an event fails for good, the later events of
//!   its aggregate are rejected rather than written out of order.
//!
//! [`api`] turns Function URL / API Gateway requests and direct-invoke payloads into calls here,
//! admitting only what a [`SubmissionPolicy`] lets clients submit.

pub mod api;
mod kinesis;
mod policy;

pub use kinesis::KinesisStream;
pub use policy::{SubmissionCheck, SubmissionPolicy};

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::time::Duration;

use serde::Serialize;

use crate::aws::limits::{KINESIS_MAX_BYTES_PER_PUT, KINESIS_MAX_RECORDS_PER_PUT};
use crate::aws::AwsError;
use crate::aws::Backoff;
use crate::aws::Deadline;
use crate::envelope::Envelope;
use crate::envelope::EventCatalog;

/// One record for the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamRecord {
    /// The partition key (the aggregate id).
    pub partition_key: String,
    /// The encoded envelope.
    pub data: Vec<u8>,
}

impl StreamRecord {
    /// Bytes this record counts against the 5 MiB request limit (data + partition key).
    pub fn size(&self) -> usize {
        self.data.len() + self.partition_key.len()
    }
}

/// Where one record landed, or why it did not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PutOutcome {
    /// Written.
    Written {
        /// The shard it went to.
        shard_id: String,
        /// Its sequence number in that shard.
        sequence_number: String,
    },
    /// Not written; `code` is Kinesis's error code (`ProvisionedThroughputExceededException`, ...).
    Failed {
        /// Kinesis's error code.
        code: String,
        /// Its message.
        message: String,
    },
}

/// A whole `PutRecords` request failed (network, throttled request, missing stream...); the
/// AWS error tells which ([`AwsError::is_throttling`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StreamError(#[from] pub AwsError);

impl StreamError {
    /// A failure described by text alone (test doubles, unexpected answers).
    pub fn other(text: impl Into<String>) -> Self {
        StreamError(AwsError::other(text))
    }
}

/// The stream port: a `PutRecords`-shaped call returning one outcome per record, in order.
pub trait EventStream: Send + Sync {
    /// Put up to 500 records / 5 MiB.
    fn put_records(
        &self,
        records: &[StreamRecord],
    ) -> impl Future<Output = Result<Vec<PutOutcome>, StreamError>> + Send;
}

/// An event the stream accepted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Accepted {
    /// The event id.
    pub id: String,
    /// The shard it went to.
    pub shard_id: String,
    /// Its sequence number.
    pub sequence_number: String,
}

/// Why an event was not written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// The stream failed this record: for good ([`PublishError::is_retryable`] is false: the
    /// request is wrong), or for as long as this producer retried it.
    #[error(
        "the stream did not take the event (attempts: {attempts}); last error {code}: {message}"
    )]
    Stream {
        /// How many times it was tried.
        attempts: u32,
        /// The last error code.
        code: String,
        /// The last error message.
        message: String,
    },
    /// An earlier event of the same aggregate failed, so this one was held back to keep order.
    #[error("not written: event {earlier} of the same aggregate ({partition_key}) failed first, and writing this one would break the aggregate's order")]
    OrderingBlocked {
        /// The id of the earlier event that failed.
        earlier: String,
        /// The aggregate both belong to.
        partition_key: String,
    },
    /// The invocation's deadline came before the stream confirmed the event. It may have been
    /// written (when a request was still in flight): send it again with the same id, and the
    /// duplicate is dropped downstream.
    #[error("not confirmed before the invocation's deadline ({attempts} attempts; last: {last_error}); send it again with the same id")]
    DeadlineReached {
        /// How many times it was sent.
        attempts: u32,
        /// What the last attempt ended with.
        last_error: String,
    },
}

impl PublishError {
    /// Whether sending the same event again can succeed ([`crate::aws::errors`]): everything but a
    /// request the stream judged wrong.
    pub fn is_retryable(&self) -> bool {
        match self {
            PublishError::Stream { code, .. } => crate::aws::errors::classify(code).is_retryable(),
            PublishError::OrderingBlocked { .. } | PublishError::DeadlineReached { .. } => true,
        }
    }
}

/// Producer settings.
#[derive(Clone, Debug)]
pub struct ProducerConfig {
    /// Retries of failed entries. Default: [`Backoff::default`] (5 attempts).
    pub backoff: Backoff,
    /// Records per request (≤ 500). Default 500.
    pub max_records_per_put: usize,
    /// Bytes per request (≤ 5 MiB). Default 5 MiB.
    pub max_bytes_per_put: usize,
    /// Event types submissions must belong to ([`api`] rejects others, naming the attribute).
    /// Default: none (any valid envelope).
    pub catalog: Option<EventCatalog>,
    /// Time kept before the invocation's deadline to answer in: no request is sent, and no
    /// request is waited for, past `deadline - margin`. Default 1 s.
    pub deadline_margin: Duration,
    /// Which types and sources clients may submit through [`api`], the schemas their `data`
    /// must meet, and client ids namespaced away from herald's ([`SubmissionPolicy`]).
    /// Default: none — every valid envelope the catalog knows, ids as given (only for producers
    /// whose every client is trusted as much as the services are).
    pub submissions: Option<SubmissionPolicy>,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            backoff: Backoff::default(),
            max_records_per_put: KINESIS_MAX_RECORDS_PER_PUT,
            max_bytes_per_put: KINESIS_MAX_BYTES_PER_PUT,
            catalog: None,
            deadline_margin: Duration::from_secs(1),
            submissions: None,
        }
    }
}

/// Writes envelopes to an [`EventStream`].
#[derive(Clone, Debug)]
pub struct Producer<S> {
    stream: S,
    config: ProducerConfig,
}

struct Pending {
    index: usize,
    id: String,
    record: StreamRecord,
    attempts: u32,
    /// The last failure (code, message).
    last: Option<(String, String)>,
    /// Where Kinesis wrote it when it went in ahead of an earlier event of its aggregate that
    /// failed; it is sent again after that one.
    written: Option<(String, String)>,
}

impl<S: EventStream> Producer<S> {
    /// A producer with default settings.
    pub fn new(stream: S) -> Self {
        Producer::with_config(stream, ProducerConfig::default())
    }

    /// A producer with explicit settings.
    pub fn with_config(stream: S, config: ProducerConfig) -> Self {
        Producer { stream, config }
    }

    /// The stream this producer writes to.
    pub fn stream(&self) -> &S {
        &self.stream
    }

    /// The settings.
    pub fn config(&self) -> &ProducerConfig {
        &self.config
    }

    /// Write `events` before the current invocation's deadline ([`Deadline::current`]),
    /// returning one result per event in the same order.
    pub async fn publish(&self, events: &[Envelope]) -> Vec<Result<Accepted, PublishError>> {
        self.publish_before(events, Deadline::current()).await
    }

    /// Write `events`, answering for every one of them before `deadline` (less the margin).
    ///
    /// Records go in as few `PutRecords` requests as the limits allow, an aggregate's events
    /// together in their order. Kinesis writes a request's records one after another, so an
    /// aggregate's events land in order — unless one fails and a later one of its aggregate does
    /// not. Then the failed event is retried *with every later event of its aggregate*, the ones
    /// already written included: the aggregate's events appear in the stream again, in order,
    /// after the stray early copy (which consumers drop as a duplicate of its id). Only transient
    /// failures ([`crate::aws::errors`]) are retried, with backoff, while the deadline leaves time.
    pub async fn publish_before(
        &self,
        events: &[Envelope],
        deadline: Deadline,
    ) -> Vec<Result<Accepted, PublishError>> {
        let margin = self.config.deadline_margin;
        let mut results: Vec<Option<Result<Accepted, PublishError>>> = vec![None; events.len()];
        let mut pending: Vec<Pending> = events
            .iter()
            .enumerate()
            .map(|(index, event)| Pending {
                index,
                id: event.id().to_string(),
                record: StreamRecord {
                    partition_key: event.partition_key().to_string(),
                    data: event.to_json_bytes(),
                },
                attempts: 0,
                last: None,
                written: None,
            })
            .collect();
        let accept = |results: &mut Vec<Option<Result<Accepted, PublishError>>>,
                      entry: &Pending,
                      shard_id: String,
                      sequence_number: String| {
            let event = &events[entry.index];
            tracing::info!(
                eventId = event.id(),
                eventType = event.event_type(),
                correlationId = event.correlation_id(),
                causationId = event.causation_id().unwrap_or_default(),
                shardId = %shard_id,
                sequenceNumber = %sequence_number,
                "written to stream"
            );
            results[entry.index] = Some(Ok(Accepted {
                id: entry.id.clone(),
                shard_id,
                sequence_number,
            }));
        };

        while !pending.is_empty() {
            if deadline.budget(margin).is_some_and(|b| b.is_zero()) {
                break;
            }
            let count = self.next_request(&pending);
            let records: Vec<StreamRecord> =
                pending[..count].iter().map(|p| p.record.clone()).collect();
            let outcomes = match deadline
                .run(margin, self.stream.put_records(&records))
                .await
            {
                Ok(Ok(outcomes)) if outcomes.len() == records.len() => outcomes,
                Ok(Ok(outcomes)) => {
                    let message = format!(
                        "PutRecords answered {} results for {} records",
                        outcomes.len(),
                        records.len()
                    );
                    failed_all(records.len(), "InvalidResponse", &message)
                }
                Ok(Err(StreamError(err))) => failed_all(
                    records.len(),
                    err.code().unwrap_or("RequestFailed"),
                    &err.to_string(),
                ),
                Err(expired) => {
                    // Its records may or may not have been written: not confirmed.
                    for entry in &mut pending[..count] {
                        entry.attempts += 1;
                        entry.last = Some(("Timeout".into(), expired.to_string()));
                    }
                    break;
                }
            };

            // Aggregates with an event to retry in this round (later events follow it), and
            // aggregates whose event failed for good (later events are held back).
            let mut retrying: HashSet<String> = HashSet::new();
            let mut given_up: HashMap<String, String> = HashMap::new();
            let mut next: Vec<Pending> = Vec::with_capacity(pending.len());
            let mut wait_after = 0;
            for (mut entry, outcome) in pending.drain(..count).zip(outcomes) {
                let key = entry.record.partition_key.clone();
                match outcome {
                    PutOutcome::Written {
                        shard_id,
                        sequence_number,
                    } => {
                        if retrying.contains(&key) {
                            // In the stream ahead of an earlier event of its aggregate: send it
                            // again after that one.
                            entry.written = Some((shard_id, sequence_number));
                            next.push(entry);
                        } else {
                            accept(&mut results, &entry, shard_id, sequence_number);
                        }
                    }
                    PutOutcome::Failed { code, message } => {
                        entry.attempts += 1;
                        entry.last = Some((code.clone(), message.clone()));
                        if let Some(earlier) = given_up.get(&key) {
                            hold_back(&mut results, &accept, entry, earlier);
                            continue;
                        }
                        let class = crate::aws::errors::classify(&code);
                        if retrying.contains(&key)
                            || (class.retry_in_process()
                                && entry.attempts < self.config.backoff.max_attempts)
                        {
                            wait_after = wait_after.max(entry.attempts);
                            retrying.insert(key);
                            next.push(entry);
                        } else {
                            tracing::warn!(event.id = %entry.id, %code, %message, ?class, "giving up on a record");
                            results[entry.index] = Some(Err(PublishError::Stream {
                                attempts: entry.attempts,
                                code,
                                message,
                            }));
                            given_up.insert(key, entry.id.clone());
                        }
                    }
                }
            }
            for entry in pending.drain(..) {
                match given_up.get(&entry.record.partition_key) {
                    Some(earlier) => {
                        let earlier = earlier.clone();
                        hold_back(&mut results, &accept, entry, &earlier);
                    }
                    None => next.push(entry),
                }
            }
            pending = next;
            if wait_after > 0 && !pending.is_empty() {
                let wait = self.config.backoff.delay(wait_after);
                if !deadline.allows(wait, margin) {
                    break;
                }
                tokio::time::sleep(wait).await;
            }
        }
        // The deadline came first: every event still pending gets its answer now.
        for entry in pending {
            match entry.written.clone() {
                Some((shard_id, sequence_number)) => {
                    accept(&mut results, &entry, shard_id, sequence_number)
                }
                None => {
                    tracing::warn!(event.id = %entry.id, attempts = entry.attempts, "deadline reached before the event was written");
                    results[entry.index] = Some(Err(PublishError::DeadlineReached {
                        attempts: entry.attempts,
                        last_error: entry
                            .last
                            .map(|(code, message)| format!("{code}: {message}"))
                            .unwrap_or_else(|| "not sent: no time left".into()),
                    }));
                }
            }
        }
        results
            .into_iter()
            .map(|r| r.expect("every event gets a result"))
            .collect()
    }

    /// How many of `pending` (from the front, in order) the next request carries: as many as the
    /// count and byte limits allow. Taking a prefix keeps every aggregate's events in order.
    fn next_request(&self, pending: &[Pending]) -> usize {
        let mut bytes = 0;
        let mut count = 0;
        for entry in pending {
            let size = entry.record.size();
            if count == self.config.max_records_per_put
                || (count > 0 && bytes + size > self.config.max_bytes_per_put)
            {
                break;
            }
            bytes += size;
            count += 1;
        }
        count
    }
}

/// An event held back because an earlier one of its aggregate failed for good; if it had been
/// written already (ahead of that one), it stays accepted.
fn hold_back(
    results: &mut Vec<Option<Result<Accepted, PublishError>>>,
    accept: &impl Fn(&mut Vec<Option<Result<Accepted, PublishError>>>, &Pending, String, String),
    entry: Pending,
    earlier: &str,
) {
    match entry.written.clone() {
        Some((shard_id, sequence_number)) => accept(results, &entry, shard_id, sequence_number),
        None => {
            results[entry.index] = Some(Err(PublishError::OrderingBlocked {
                earlier: earlier.to_string(),
                partition_key: entry.record.partition_key,
            }))
        }
    }
}

fn failed_all(n: usize, code: &str, message: &str) -> Vec<PutOutcome> {
    vec![
        PutOutcome::Failed {
            code: code.to_string(),
            message: message.to_string(),
        };
        n
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::time::Duration;

    /// A stream that records every request and fails the entries a rule picks. The emulator
    /// cannot fail single entries of a PutRecords call, so this is fault injection by hand.
    /// Decides, from the request number and the record, whether the stream fails the entry.
    type FailRule = Box<dyn Fn(usize, &StreamRecord) -> bool + Send + Sync>;

    struct FlakyStream {
        requests: Mutex<Vec<Vec<StreamRecord>>>,
        fail: FailRule,
        written: Mutex<Vec<StreamRecord>>,
    }

    impl FlakyStream {
        fn new(fail: impl Fn(usize, &StreamRecord) -> bool + Send + Sync + 'static) -> Self {
            FlakyStream {
                requests: Mutex::default(),
                fail: Box::new(fail),
                written: Mutex::default(),
            }
        }
    }

    impl EventStream for FlakyStream {
        async fn put_records(
            &self,
            records: &[StreamRecord],
        ) -> Result<Vec<PutOutcome>, StreamError> {
            let call = {
                let mut requests = self.requests.lock().unwrap();
                requests.push(records.to_vec());
                requests.len()
            };
            Ok(records
                .iter()
                .map(|r| {
                    if (self.fail)(call, r) {
                        PutOutcome::Failed {
                            code: "ProvisionedThroughputExceededException".into(),
                            message: "slow down".into(),
                        }
                    } else {
                        let mut written = self.written.lock().unwrap();
                        written.push(r.clone());
                        PutOutcome::Written {
                            shard_id: "shardId-000000000000".into(),
                            sequence_number: written.len().to_string(),
                        }
                    }
                })
                .collect())
        }
    }

    fn fast() -> ProducerConfig {
        ProducerConfig {
            backoff: Backoff {
                max_attempts: 3,
                base: Duration::from_millis(1),
                cap: Duration::from_millis(2),
            },
            ..ProducerConfig::default()
        }
    }

    fn event(subject: &str, n: usize, bytes: usize) -> Envelope {
        Envelope::builder("user_signed_up", "herald/test")
            .id(format!("{subject}-{n}"))
            .subject(subject)
            .data(serde_json::json!({ "pad": "x".repeat(bytes) }))
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn chunks_at_500_records() {
        let producer = Producer::with_config(FlakyStream::new(|_, _| false), fast());
        let events: Vec<_> = (0..1201).map(|i| event(&format!("o{i}"), 0, 10)).collect();
        let results = producer.publish(&events).await;
        assert!(results.iter().all(Result::is_ok));
        let sizes: Vec<usize> = producer
            .stream
            .requests
            .lock()
            .unwrap()
            .iter()
            .map(Vec::len)
            .collect();
        assert_eq!(sizes, vec![500, 500, 201]);
    }

    #[tokio::test]
    async fn chunks_at_5_mib() {
        let producer = Producer::with_config(FlakyStream::new(|_, _| false), fast());
        // 60 events of ~200 KiB: 25 fit in 5 MiB.
        let events: Vec<_> = (0..60)
            .map(|i| event(&format!("o{i}"), 0, 200 * 1024))
            .collect();
        producer.publish(&events).await;
        let requests = producer.stream.requests.lock().unwrap();
        for request in requests.iter() {
            let bytes: usize = request.iter().map(StreamRecord::size).sum();
            assert!(bytes <= KINESIS_MAX_BYTES_PER_PUT, "{bytes}");
        }
        assert_eq!(requests.iter().map(Vec::len).sum::<usize>(), 60);
        assert_eq!(requests[0].len(), 25);
    }

    #[tokio::test]
    async fn retries_only_the_failed_entries() {
        // The first request fails every third record; retries succeed.
        let producer = Producer::with_config(
            FlakyStream::new(|call, r| {
                call == 1 && r.partition_key.ends_with(['0', '3', '6', '9'])
            }),
            fast(),
        );
        let events: Vec<_> = (0..10).map(|i| event(&format!("o{i}"), 0, 10)).collect();
        let results = producer.publish(&events).await;
        assert!(results.iter().all(Result::is_ok));
        let requests = producer.stream.requests.lock().unwrap();
        assert_eq!(requests.len(), 2);
        let retried: Vec<&str> = requests[1]
            .iter()
            .map(|r| r.partition_key.as_str())
            .collect();
        assert_eq!(retried, vec!["o0", "o3", "o6", "o9"]);
    }

    #[tokio::test]
    async fn one_aggregate_stays_in_order_across_retries() {
        // o1's first event is throttled once; its second event must not overtake it.
        let producer = Producer::with_config(
            FlakyStream::new(|call, r| call == 1 && r.partition_key == "o1"),
            fast(),
        );
        let events = vec![
            event("o1", 1, 1),
            event("o2", 1, 1),
            event("o1", 2, 1),
            event("o1", 3, 1),
        ];
        let results = producer.publish(&events).await;
        assert!(results.iter().all(Result::is_ok));
        let written = producer.stream.written.lock().unwrap();
        let o1: Vec<String> = written
            .iter()
            .filter(|r| r.partition_key == "o1")
            .map(|r| Envelope::parse(&r.data).unwrap().id().to_string())
            .collect();
        assert_eq!(o1, vec!["o1-1", "o1-2", "o1-3"]);
    }

    fn ids_of(records: &[StreamRecord], key: &str) -> Vec<String> {
        records
            .iter()
            .filter(|r| r.partition_key == key)
            .map(|r| Envelope::parse(&r.data).unwrap().id().to_string())
            .collect()
    }

    #[tokio::test]
    async fn gives_up_after_max_attempts_and_holds_back_the_aggregate() {
        let producer =
            Producer::with_config(FlakyStream::new(|_, r| r.partition_key == "o1"), fast());
        let events = vec![event("o1", 1, 1), event("o2", 1, 1), event("o1", 2, 1)];
        let results = producer.publish(&events).await;
        assert!(matches!(
            &results[0],
            Err(PublishError::Stream { attempts: 3, .. })
        ));
        assert!(results[1].is_ok());
        assert!(
            matches!(&results[2], Err(PublishError::OrderingBlocked { earlier, .. }) if earlier == "o1-1")
        );
        assert_eq!(producer.stream.written.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn one_aggregates_thousand_events_go_in_two_requests_in_order() {
        let producer = Producer::with_config(FlakyStream::new(|_, _| false), fast());
        let events: Vec<_> = (0..1000).map(|i| event("hot", i, 10)).collect();
        let results = producer.publish(&events).await;
        assert!(results.iter().all(Result::is_ok));
        let sizes: Vec<usize> = producer
            .stream
            .requests
            .lock()
            .unwrap()
            .iter()
            .map(Vec::len)
            .collect();
        assert_eq!(sizes, vec![500, 500]);
        let written = producer.stream.written.lock().unwrap();
        let expected: Vec<String> = (0..1000).map(|i| format!("hot-{i}")).collect();
        assert_eq!(ids_of(&written, "hot"), expected);
    }

    #[tokio::test]
    async fn an_event_written_ahead_of_a_failed_one_is_written_again_after_it() {
        // Kinesis fails o1-1 but writes o1-2 and o1-3 of the same request: the three go again,
        // so the aggregate's events stand in the stream in order after the stray early copies.
        let producer = Producer::with_config(
            FlakyStream::new(|call, r| call == 1 && r.data.windows(4).any(|w| w == b"o1-1")),
            fast(),
        );
        let events = vec![event("o1", 1, 1), event("o1", 2, 1), event("o1", 3, 1)];
        let results = producer.publish(&events).await;
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        let written = producer.stream.written.lock().unwrap();
        assert_eq!(
            ids_of(&written, "o1"),
            ["o1-2", "o1-3", "o1-1", "o1-2", "o1-3"]
        );
        // The answers name the in-order copies.
        let sequence: Vec<&str> = results
            .iter()
            .map(|r| r.as_ref().unwrap().sequence_number.as_str())
            .collect();
        assert_eq!(sequence, ["3", "4", "5"]);
        assert_eq!(producer.stream.requests.lock().unwrap().len(), 2);
    }

    /// A stream whose every request fails as a whole with `code`.
    struct FailingStream {
        code: &'static str,
        requests: Mutex<usize>,
    }

    impl EventStream for FailingStream {
        async fn put_records(&self, _: &[StreamRecord]) -> Result<Vec<PutOutcome>, StreamError> {
            *self.requests.lock().unwrap() += 1;
            Err(StreamError(AwsError::with_code(self.code, "refused")))
        }
    }

    #[tokio::test]
    async fn a_permanent_error_is_not_retried_and_says_so() {
        for (code, retryable) in [
            ("ValidationException", false),
            ("AccessDeniedException", true),
            ("ResourceNotFoundException", true),
        ] {
            let stream = FailingStream {
                code,
                requests: Mutex::new(0),
            };
            let producer = Producer::with_config(stream, fast());
            let results = producer.publish(&[event("o1", 1, 1)]).await;
            let err = results[0].as_ref().unwrap_err();
            assert!(
                matches!(err, PublishError::Stream { attempts: 1, code: c, .. } if c == code),
                "{err:?}"
            );
            assert_eq!(err.is_retryable(), retryable, "{code}");
            assert_eq!(*producer.stream.requests.lock().unwrap(), 1, "{code}");
        }
    }

    #[tokio::test]
    async fn near_the_deadline_every_event_gets_a_retryable_answer() {
        // Kinesis throttles everything; the producer would retry for long, but the deadline
        // comes first: every event is answered "not confirmed, send again", none is lost.
        let producer = Producer::with_config(
            FlakyStream::new(|_, _| true),
            ProducerConfig {
                backoff: Backoff {
                    max_attempts: u32::MAX,
                    base: Duration::from_millis(1),
                    cap: Duration::from_millis(5),
                },
                deadline_margin: Duration::from_millis(20),
                ..ProducerConfig::default()
            },
        );
        let events: Vec<_> = (0..30).map(|i| event("o1", i, 1)).collect();
        let deadline = Deadline::after(Duration::from_millis(150));
        let results = deadline.scope(producer.publish(&events)).await;
        assert_eq!(results.len(), 30);
        for result in &results {
            let err = result.as_ref().unwrap_err();
            assert!(
                matches!(err, PublishError::DeadlineReached { attempts, .. } if *attempts >= 1),
                "{err:?}"
            );
            assert!(err.is_retryable());
        }
        assert!(producer.stream.written.lock().unwrap().is_empty());
    }

    /// A stream that never answers (a hung connection).
    struct HungStream;

    impl EventStream for HungStream {
        async fn put_records(&self, _: &[StreamRecord]) -> Result<Vec<PutOutcome>, StreamError> {
            std::future::pending().await
        }
    }

    #[tokio::test]
    async fn a_request_still_in_flight_at_the_deadline_is_answered_not_confirmed() {
        let producer = Producer::with_config(
            HungStream,
            ProducerConfig {
                deadline_margin: Duration::from_millis(10),
                ..fast()
            },
        );
        let events = vec![event("o1", 1, 1), event("o2", 1, 1)];
        let results = producer
            .publish_before(&events, Deadline::after(Duration::from_millis(60)))
            .await;
        for result in results {
            assert!(
                matches!(&result, Err(PublishError::DeadlineReached { attempts: 1, last_error }) if last_error.starts_with("Timeout")),
                "{result:?}"
            );
        }
        // Past the deadline nothing is sent at all.
        let results = producer
            .publish_before(&events, Deadline::after(Duration::ZERO))
            .await;
        assert!(matches!(
            &results[0],
            Err(PublishError::DeadlineReached { attempts: 0, .. })
        ));
    }
}
