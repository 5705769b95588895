//! How a batch of events goes onto the stream: `PutRecords` in as few requests as the limits
//! allow, transient failures retried with every later event of their aggregate, an answer for
//! every event before the deadline.

use std::collections::{HashMap, HashSet};

use super::{Accepted, EventStream, Producer, PublishError, PutOutcome, StreamError, StreamRecord};
use crate::aws::Deadline;
use crate::envelope::Envelope;

/// An event not answered yet.
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

/// The answers so far, one per event.
struct Answers<'a> {
    events: &'a [Envelope],
    results: Vec<Option<Result<Accepted, PublishError>>>,
}

impl Answers<'_> {
    fn accept(&mut self, entry: &Pending, shard_id: String, sequence_number: String) {
        let event = &self.events[entry.index];
        tracing::info!(
            eventId = event.id(),
            eventType = event.event_type(),
            correlationId = event.correlation_id(),
            causationId = event.causation_id().unwrap_or_default(),
            shardId = %shard_id,
            sequenceNumber = %sequence_number,
            "written to stream"
        );
        self.results[entry.index] = Some(Ok(Accepted {
            id: entry.id.clone(),
            shard_id,
            sequence_number,
        }));
    }

    /// An event held back because an earlier one of its aggregate failed for good; if it had
    /// been written already (ahead of that one), it stays accepted.
    fn hold_back(&mut self, entry: Pending, earlier: &str) {
        match entry.written.clone() {
            Some((shard_id, sequence_number)) => self.accept(&entry, shard_id, sequence_number),
            None => {
                self.results[entry.index] = Some(Err(PublishError::OrderingBlocked {
                    earlier: earlier.to_string(),
                    partition_key: entry.record.partition_key,
                }))
            }
        }
    }

    /// The deadline came first: an event still pending is accepted if it was written, else
    /// answered with its last failure.
    fn out_of_time(&mut self, entry: Pending) {
        if let Some((shard_id, sequence_number)) = entry.written.clone() {
            return self.accept(&entry, shard_id, sequence_number);
        }
        tracing::warn!(event.id = %entry.id, attempts = entry.attempts, "deadline reached before the event was written");
        self.results[entry.index] = Some(Err(PublishError::DeadlineReached {
            attempts: entry.attempts,
            last_error: entry
                .last
                .map(|(code, message)| format!("{code}: {message}"))
                .unwrap_or_else(|| "not sent: no time left".into()),
        }));
    }
}

/// What one round of `PutRecords` left: the events to send again, and the backoff to wait first
/// (in attempts; 0 for none).
struct Round {
    next: Vec<Pending>,
    wait_after: u32,
}

impl<S: EventStream> Producer<S> {
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
        let mut answers = Answers {
            events,
            results: vec![None; events.len()],
        };
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
        while !pending.is_empty() {
            if deadline.budget(margin).is_some_and(|b| b.is_zero()) {
                break;
            }
            let count = self.next_request(&pending);
            let Some(outcomes) = self.put(&mut pending[..count], deadline).await else {
                break;
            };
            let round = self.sort(&mut answers, pending, count, outcomes);
            pending = round.next;
            if round.wait_after > 0 && !pending.is_empty() {
                let wait = self.config.backoff.delay(round.wait_after);
                if !deadline.allows(wait, margin) {
                    break;
                }
                tokio::time::sleep(wait).await;
            }
        }
        for entry in pending {
            answers.out_of_time(entry);
        }
        answers
            .results
            .into_iter()
            .map(|r| r.expect("every event gets a result"))
            .collect()
    }

    /// One `PutRecords` of `request`: an outcome per record (a failed request fails each), or
    /// none when the deadline came first (its records may or may not have been written: not
    /// confirmed).
    async fn put(&self, request: &mut [Pending], deadline: Deadline) -> Option<Vec<PutOutcome>> {
        let records: Vec<StreamRecord> = request.iter().map(|p| p.record.clone()).collect();
        let margin = self.config.deadline_margin;
        match deadline
            .run(margin, self.stream.put_records(&records))
            .await
        {
            Ok(Ok(outcomes)) if outcomes.len() == records.len() => Some(outcomes),
            Ok(Ok(outcomes)) => {
                let message = format!(
                    "PutRecords answered {} results for {} records",
                    outcomes.len(),
                    records.len()
                );
                Some(failed_all(records.len(), "InvalidResponse", &message))
            }
            Ok(Err(StreamError(err))) => Some(failed_all(
                records.len(),
                err.code().unwrap_or("RequestFailed"),
                &err.to_string(),
            )),
            Err(expired) => {
                for entry in request {
                    entry.attempts += 1;
                    entry.last = Some(("Timeout".into(), expired.to_string()));
                }
                None
            }
        }
    }

    /// Sort the first `count` of `pending` by their outcomes: accepted, retried (with every
    /// later event of their aggregate, the ones written already included), or given up (and
    /// every later event of their aggregate held back).
    fn sort(
        &self,
        answers: &mut Answers,
        mut pending: Vec<Pending>,
        count: usize,
        outcomes: Vec<PutOutcome>,
    ) -> Round {
        // Aggregates with an event to retry in this round (later events follow it), and
        // aggregates whose event failed for good (later events are held back).
        let mut retrying: HashSet<String> = HashSet::new();
        let mut given_up: HashMap<String, String> = HashMap::new();
        let mut round = Round {
            next: Vec::with_capacity(pending.len()),
            wait_after: 0,
        };
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
                        round.next.push(entry);
                    } else {
                        answers.accept(&entry, shard_id, sequence_number);
                    }
                }
                PutOutcome::Failed { code, message } => {
                    entry.attempts += 1;
                    entry.last = Some((code.clone(), message.clone()));
                    if let Some(earlier) = given_up.get(&key) {
                        answers.hold_back(entry, earlier);
                        continue;
                    }
                    let class = crate::aws::errors::classify(&code);
                    if retrying.contains(&key)
                        || (class.retry_in_process()
                            && entry.attempts < self.config.backoff.max_attempts)
                    {
                        round.wait_after = round.wait_after.max(entry.attempts);
                        retrying.insert(key);
                        round.next.push(entry);
                    } else {
                        tracing::warn!(event.id = %entry.id, %code, %message, ?class, "giving up on a record");
                        answers.results[entry.index] = Some(Err(PublishError::Stream {
                            attempts: entry.attempts,
                            code,
                            message,
                        }));
                        given_up.insert(key, entry.id.clone());
                    }
                }
            }
        }
        for entry in pending {
            match given_up.get(&entry.record.partition_key) {
                Some(earlier) => answers.hold_back(entry, earlier),
                None => round.next.push(entry),
            }
        }
        round
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

fn failed_all(n: usize, code: &str, message: &str) -> Vec<PutOutcome> {
    vec![
        PutOutcome::Failed {
            code: code.to_string(),
            message: message.to_string(),
        };
        n
    ]
}
