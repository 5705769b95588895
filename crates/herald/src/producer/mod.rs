//! The producer: validated envelopes onto the stream with `PutRecords`.
//!
//! - Requests are chunked at 500 records / 5 MiB ([`crate::limits`]).
//! - Only the entries Kinesis failed are retried, with [`Backoff`].
//! - The partition key is the aggregate (the envelope's `subject`), and one aggregate's events
//!   stay in order: a request never carries two records of the same aggregate, so a failed entry
//!   can be retried without a later event of its aggregate having overtaken it. If an event fails
//!   for good, the later events of its aggregate in the same call are rejected rather than written
//!   out of order.
//!
//! [`api`] turns Function URL / API Gateway requests and direct-invoke payloads into calls here,
//! admitting only what a [`SubmissionPolicy`] lets clients submit.

pub mod api;
mod policy;

pub use policy::{SubmissionCheck, SubmissionPolicy};

use std::collections::HashSet;
use std::future::Future;

use serde::Serialize;

use crate::aws::AwsError;
use crate::backoff::Backoff;
use crate::catalog::EventCatalog;
use crate::envelope::Envelope;
use crate::limits::{KINESIS_MAX_BYTES_PER_PUT, KINESIS_MAX_RECORDS_PER_PUT};

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
    /// The stream kept failing this record.
    #[error("the stream rejected the event {attempts} times; last error {code}: {message}")]
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

    /// Write `events`, returning one result per event in the same order.
    pub async fn publish(&self, events: &[Envelope]) -> Vec<Result<Accepted, PublishError>> {
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
            })
            .collect();

        while !pending.is_empty() {
            let batch = self.next_request(&pending);
            let records: Vec<StreamRecord> =
                batch.iter().map(|&i| pending[i].record.clone()).collect();
            let outcomes = match self.stream.put_records(&records).await {
                Ok(outcomes) if outcomes.len() == records.len() => outcomes,
                Ok(outcomes) => {
                    let message = format!(
                        "PutRecords answered {} results for {} records",
                        outcomes.len(),
                        records.len()
                    );
                    failed_all(records.len(), "InvalidResponse", &message)
                }
                Err(StreamError(err)) => failed_all(
                    records.len(),
                    err.code().unwrap_or("RequestFailed"),
                    &err.to_string(),
                ),
            };

            let mut done = HashSet::new();
            let mut any_retry = false;
            let mut given_up: Vec<(String, String)> = Vec::new();
            for (&i, outcome) in batch.iter().zip(outcomes) {
                let entry = &mut pending[i];
                entry.attempts += 1;
                match outcome {
                    PutOutcome::Written {
                        shard_id,
                        sequence_number,
                    } => {
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
                        done.insert(i);
                    }
                    PutOutcome::Failed { code, message } => {
                        if entry.attempts >= self.config.backoff.max_attempts {
                            tracing::warn!(event.id = %entry.id, %code, %message, "giving up on a record");
                            results[entry.index] = Some(Err(PublishError::Stream {
                                attempts: entry.attempts,
                                code,
                                message,
                            }));
                            given_up.push((entry.record.partition_key.clone(), entry.id.clone()));
                            done.insert(i);
                        } else {
                            any_retry = true;
                        }
                    }
                }
            }
            // Later events of an aggregate whose event failed for good are not written out of order.
            for (key, earlier) in given_up {
                for (i, entry) in pending.iter().enumerate() {
                    if !done.contains(&i) && entry.record.partition_key == key {
                        results[entry.index] = Some(Err(PublishError::OrderingBlocked {
                            earlier: earlier.clone(),
                            partition_key: key.clone(),
                        }));
                        done.insert(i);
                    }
                }
            }
            let attempt = batch
                .iter()
                .filter(|i| !done.contains(i))
                .map(|&i| pending[i].attempts)
                .max()
                .unwrap_or(0);
            let mut position = 0;
            pending.retain(|_| {
                let keep = !done.contains(&position);
                position += 1;
                keep
            });
            if any_retry {
                self.config.backoff.wait(attempt).await;
            }
        }
        results
            .into_iter()
            .map(|r| r.expect("every event gets a result"))
            .collect()
    }

    /// Indexes into `pending` for the next request: in order, at most one record per partition key
    /// (so a retry never lands behind a later event of its aggregate), within the count and byte limits.
    fn next_request(&self, pending: &[Pending]) -> Vec<usize> {
        let mut keys: HashSet<&str> = HashSet::new();
        let mut batch = Vec::new();
        let mut bytes = 0;
        for (i, entry) in pending.iter().enumerate() {
            if batch.len() == self.config.max_records_per_put {
                break;
            }
            if !keys.insert(entry.record.partition_key.as_str()) {
                continue;
            }
            let size = entry.record.size();
            if !batch.is_empty() && bytes + size > self.config.max_bytes_per_put {
                break;
            }
            bytes += size;
            batch.push(i);
        }
        batch
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

    #[tokio::test]
    async fn gives_up_after_max_attempts_and_holds_back_the_aggregate() {
        let producer = Producer::with_config(
            FlakyStream::new(|_, r| {
                r.partition_key == "o1" && r.data.windows(4).any(|w| w == b"o1-1")
            }),
            fast(),
        );
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
}
