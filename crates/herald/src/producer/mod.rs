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
mod publish;

pub use kinesis::KinesisStream;
pub use policy::{SubmissionCheck, SubmissionPolicy};

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
