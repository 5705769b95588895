//! Batch processors with Lambda's partial-batch-response rules, for any per-record handler.
//!
//! **Kinesis** ([`process_kinesis`]). Lambda checkpoints a shard at the lowest sequence number a
//! function reports as failed and redelivers everything after it. So a record that fails must
//! stop the batch: records after it would otherwise be processed now *and* again on the retry,
//! and they would be processed before the record they follow. [`KinesisMode::StopAtFirstFailure`]
//! (the default) processes the records in order and, at the first failure, reports that record
//! and every later one. [`KinesisMode::PerPartitionKey`] lets the other partition keys (other
//! aggregates) continue: less head-of-line blocking, but their records after the checkpoint are
//! delivered again on the retry, so the handler must be idempotent (herald's subscribers are).
//! Order within a partition key is kept in both modes.
//!
//! **SQS** ([`process_sqs`]). Only the failed message ids are reported. Messages with the same
//! group key (the `MessageGroupId` of a FIFO queue, or any key the caller chooses) are processed
//! in order, and a failure fails the rest of its group, as FIFO ordering requires; different
//! groups run concurrently.
//!
//! A panicking handler fails its record (with the panic message as the reason), never the batch.

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;

use aws_lambda_events::event::kinesis::{KinesisEvent, KinesisEventRecord};
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use aws_lambda_events::event::streams::KinesisEventResponse;
use futures::future::join_all;
use futures::FutureExt;

/// How a Kinesis batch continues after a failure.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KinesisMode {
    /// Stop at the first failure; report it and everything after it. Nothing is processed twice.
    #[default]
    StopAtFirstFailure,
    /// Stop only the failed record's partition key; other keys continue (and are redelivered
    /// after the checkpoint, so their handler must be idempotent).
    PerPartitionKey,
}

/// What became of one record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordOutcome {
    /// Handled.
    Done,
    /// The handler failed (or panicked) with this reason.
    Failed(String),
    /// Not attempted: an earlier record (of its key, or of the batch) failed first.
    Skipped,
}

/// The result of a batch: the response for Lambda and the outcome of every record, in order.
#[derive(Clone, Debug, Default)]
pub struct BatchReport<R> {
    /// The partial batch response.
    pub response: R,
    /// One outcome per record.
    pub outcomes: Vec<RecordOutcome>,
}

impl<R> BatchReport<R> {
    /// Records handled.
    pub fn done(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|o| **o == RecordOutcome::Done)
            .count()
    }

    /// The first failure's index and reason.
    pub fn first_failure(&self) -> Option<(usize, &str)> {
        self.outcomes.iter().enumerate().find_map(|(i, o)| match o {
            RecordOutcome::Failed(reason) => Some((i, reason.as_str())),
            _ => None,
        })
    }
}

async fn guarded<Fut: Future<Output = Result<(), String>>>(future: Fut) -> RecordOutcome {
    match AssertUnwindSafe(future).catch_unwind().await {
        Ok(Ok(())) => RecordOutcome::Done,
        Ok(Err(reason)) => RecordOutcome::Failed(reason),
        Err(panic) => {
            RecordOutcome::Failed(format!("the handler panicked: {}", panic_message(&panic)))
        }
    }
}

/// The message of a caught panic.
pub fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// Process a Kinesis batch record by record (see the module docs for the two modes).
pub async fn process_kinesis<F>(
    event: &KinesisEvent,
    mode: KinesisMode,
    handler: F,
) -> BatchReport<KinesisEventResponse>
where
    F: AsyncFn(&KinesisEventRecord) -> Result<(), String>,
{
    let records = &event.records;
    let mut outcomes = vec![RecordOutcome::Skipped; records.len()];
    match mode {
        KinesisMode::StopAtFirstFailure => {
            for (i, record) in records.iter().enumerate() {
                outcomes[i] = guarded(handler(record)).await;
                if outcomes[i] != RecordOutcome::Done {
                    break;
                }
            }
        }
        KinesisMode::PerPartitionKey => {
            let groups = group_indexes(
                records
                    .iter()
                    .map(|r| Some(r.kinesis.partition_key.clone())),
            );
            let handler = &handler;
            let runs = groups.into_iter().map(|indexes| async move {
                let mut out = Vec::new();
                for i in indexes {
                    let outcome = guarded(handler(&records[i])).await;
                    let stop = outcome != RecordOutcome::Done;
                    out.push((i, outcome));
                    if stop {
                        break;
                    }
                }
                out
            });
            for (i, outcome) in join_all(runs).await.into_iter().flatten() {
                outcomes[i] = outcome;
            }
        }
    }
    // Lambda checkpoints at the lowest reported sequence number: report every record from the
    // first one not done.
    let mut response = KinesisEventResponse::default();
    if let Some(first) = outcomes.iter().position(|o| *o != RecordOutcome::Done) {
        for record in &records[first..] {
            response.add_failure(record.kinesis.sequence_number.clone());
        }
    }
    BatchReport { response, outcomes }
}

/// Process an SQS batch; `group` gives each message its ordering group (`None`: unordered).
/// Use [`fifo_group`] for FIFO queues.
pub async fn process_sqs<F, G>(
    event: &SqsEvent,
    group: G,
    handler: F,
) -> BatchReport<SqsBatchResponse>
where
    F: AsyncFn(usize, &SqsMessage) -> Result<(), String>,
    G: Fn(usize, &SqsMessage) -> Option<String>,
{
    let messages = &event.records;
    let groups = group_indexes(messages.iter().enumerate().map(|(i, m)| group(i, m)));
    let handler = &handler;
    let runs = groups.into_iter().map(|indexes| async move {
        let mut out = Vec::with_capacity(indexes.len());
        let mut failed = false;
        for i in indexes {
            if failed {
                out.push((i, RecordOutcome::Skipped));
                continue;
            }
            let outcome = guarded(handler(i, &messages[i])).await;
            failed = outcome != RecordOutcome::Done;
            out.push((i, outcome));
        }
        out
    });
    let mut outcomes = vec![RecordOutcome::Skipped; messages.len()];
    for (i, outcome) in join_all(runs).await.into_iter().flatten() {
        outcomes[i] = outcome;
    }
    let mut response = SqsBatchResponse::default();
    for (message, outcome) in messages.iter().zip(&outcomes) {
        if *outcome != RecordOutcome::Done {
            response.add_failure(message.message_id.clone().unwrap_or_default());
        }
    }
    BatchReport { response, outcomes }
}

/// A FIFO message's group (`MessageGroupId`), for [`process_sqs`].
pub fn fifo_group(message: &SqsMessage) -> Option<String> {
    message.attributes.get("MessageGroupId").cloned()
}

/// Indexes grouped by key, keeping order within a group; `None` keys get a group each.
fn group_indexes(keys: impl Iterator<Item = Option<String>>) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut by_key: HashMap<String, usize> = HashMap::new();
    for (i, key) in keys.enumerate() {
        match key {
            Some(key) => match by_key.get(&key) {
                Some(&g) => groups[g].push(i),
                None => {
                    by_key.insert(key, groups.len());
                    groups.push(vec![i]);
                }
            },
            None => groups.push(vec![i]),
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn kinesis(records: &[(&str, &str)]) -> KinesisEvent {
        let mut event = KinesisEvent::default();
        event.records = records
            .iter()
            .enumerate()
            .map(|(i, (key, data))| {
                let mut r = KinesisEventRecord::default();
                r.kinesis.sequence_number = (100 + i).to_string();
                r.kinesis.partition_key = key.to_string();
                r.kinesis.data.0 = data.as_bytes().to_vec();
                r
            })
            .collect();
        event
    }

    fn reported(response: &KinesisEventResponse) -> Vec<String> {
        response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone().unwrap_or_default())
            .collect()
    }

    async fn handle(seen: &Mutex<Vec<String>>, record: &KinesisEventRecord) -> Result<(), String> {
        let data = String::from_utf8(record.kinesis.data.0.clone()).unwrap();
        seen.lock().unwrap().push(data.clone());
        match data.as_str() {
            "poison" => Err("poison record".into()),
            "panic" => panic!("bug in the handler"),
            _ => Ok(()),
        }
    }

    #[tokio::test]
    async fn stops_at_the_first_failure_and_reports_everything_after_it() {
        let seen = Mutex::new(Vec::new());
        let event = kinesis(&[
            ("a", "1"),
            ("b", "2"),
            ("a", "poison"),
            ("b", "4"),
            ("c", "5"),
        ]);
        let report = process_kinesis(&event, KinesisMode::StopAtFirstFailure, async |r| {
            handle(&seen, r).await
        })
        .await;
        assert_eq!(*seen.lock().unwrap(), ["1", "2", "poison"]);
        assert_eq!(reported(&report.response), ["102", "103", "104"]);
        assert_eq!(report.first_failure(), Some((2, "poison record")));
        assert_eq!(report.done(), 2);
    }

    #[tokio::test]
    async fn per_partition_key_lets_other_keys_continue_in_order() {
        let seen = Mutex::new(Vec::new());
        let event = kinesis(&[
            ("a", "1"),
            ("b", "2"),
            ("a", "poison"),
            ("b", "4"),
            ("a", "5"),
        ]);
        let report = process_kinesis(&event, KinesisMode::PerPartitionKey, async |r| {
            handle(&seen, r).await
        })
        .await;
        let seen = seen.lock().unwrap().clone();
        assert!(
            !seen.contains(&"5".to_string()),
            "a's later record waits for its retry"
        );
        assert!(seen.contains(&"4".to_string()), "b continues");
        assert_eq!(report.outcomes[4], RecordOutcome::Skipped);
        assert_eq!(report.outcomes[3], RecordOutcome::Done);
        // The checkpoint is the lowest failure: everything from it is reported.
        assert_eq!(reported(&report.response), ["102", "103", "104"]);
    }

    #[tokio::test]
    async fn a_panic_is_that_records_failure() {
        let seen = Mutex::new(Vec::new());
        let event = kinesis(&[("a", "1"), ("a", "panic"), ("a", "3")]);
        let report = process_kinesis(&event, KinesisMode::StopAtFirstFailure, async |r| {
            handle(&seen, r).await
        })
        .await;
        assert_eq!(reported(&report.response), ["101", "102"]);
        assert_eq!(
            report.first_failure().unwrap().1,
            "the handler panicked: bug in the handler"
        );
    }

    #[tokio::test]
    async fn a_clean_batch_reports_nothing() {
        let seen = Mutex::new(Vec::new());
        let event = kinesis(&[("a", "1"), ("b", "2")]);
        let report = process_kinesis(&event, KinesisMode::default(), async |r| {
            handle(&seen, r).await
        })
        .await;
        assert!(report.response.batch_item_failures.is_empty());
    }

    fn sqs(messages: &[(&str, Option<&str>, &str)]) -> SqsEvent {
        let mut event = SqsEvent::default();
        event.records = messages
            .iter()
            .map(|(id, group, body)| {
                let mut m = SqsMessage::default();
                m.message_id = Some(id.to_string());
                m.body = Some(body.to_string());
                if let Some(group) = group {
                    m.attributes
                        .insert("MessageGroupId".into(), group.to_string());
                }
                m
            })
            .collect();
        event
    }

    #[tokio::test]
    async fn sqs_reports_only_failed_messages_and_fifo_groups_stop_at_their_first_failure() {
        let event = sqs(&[
            ("m1", Some("g1"), "ok"),
            ("m2", Some("g1"), "fail"),
            ("m3", Some("g1"), "ok"),
            ("m4", Some("g2"), "ok"),
            ("m5", None, "fail"),
            ("m6", None, "ok"),
        ]);
        let report = process_sqs(
            &event,
            |_, m| fifo_group(m),
            async |_, m| {
                if m.body.as_deref() == Some("fail") {
                    Err("no".to_string())
                } else {
                    Ok(())
                }
            },
        )
        .await;
        let failed: Vec<String> = report
            .response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect();
        assert_eq!(failed, ["m2", "m3", "m5"]);
        assert_eq!(report.outcomes[2], RecordOutcome::Skipped);
    }
}
