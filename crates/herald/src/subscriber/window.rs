//! Patterns over time: aggregation on Lambda's tumbling windows (`TumblingWindowInSeconds` on a
//! Kinesis mapping), as a reusable piece.
//!
//! Lambda carries a window's state from one invocation to the next and ends the window with a
//! final invocation. You write two plain functions of a [`WindowedAggregation`]: `fold` adds
//! one event to the state, `close` acts on the window's final state. [`WindowProcessor`] does
//! the rest:
//! - the batch's events are folded in order into the state Lambda passed in, and the new state
//!   is returned (a fold works on a copy, so a failed or panicking fold leaves no trace);
//! - at the first record whose fold fails, that record and every later one are reported in
//!   `batchItemFailures`, and the returned state holds only the records before it: Lambda
//!   retries from the failed record with that state, so no record is counted twice;
//! - a record that is not an event (no valid envelope) is left out of the state and logged: the
//!   router dead-letters it, with its reason;
//! - a failing `close` fails the final invocation, which Lambda retries until it succeeds: what
//!   `close` emits must be idempotent, e.g. events with ids derived from the window
//!   ([`window_event_id`]) so subscribers skip a repeat as a duplicate;
//! - a state that no longer reads as [`WindowedAggregation::State`] (its shape changed between
//!   releases mid-window) fails the invocation with an error naming it: keep new fields
//!   `#[serde(default)]`.

use std::future::Future;
use std::panic::AssertUnwindSafe;

use aws_lambda_events::event::kinesis::KinesisEventRecord;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::envelope::upcasting::Upcasters;
use crate::envelope::Envelope;

/// A window's bounds, as Lambda sends them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowBounds {
    /// The window's first instant.
    pub start: DateTime<Utc>,
    /// Where it ends (exclusive).
    pub end: DateTime<Utc>,
}

/// One invocation of a Kinesis mapping with a tumbling window.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WindowEvent {
    /// The batch (none in the final invocation).
    #[serde(rename = "Records", default)]
    pub records: Vec<KinesisEventRecord>,
    /// The window the records belong to.
    pub window: WindowBounds,
    /// The state the previous invocation of this window returned (`{}` at its start).
    #[serde(default)]
    pub state: Value,
    /// The shard the records come from (a window and its state are per shard).
    #[serde(default)]
    pub shard_id: Option<String>,
    /// The stream.
    #[serde(default, rename = "eventSourceARN")]
    pub event_source_arn: Option<String>,
    /// The window is over: act on the state.
    #[serde(default)]
    pub is_final_invoke_for_window: bool,
    /// The window ended early (its state grew past 1 MB); it goes on with a fresh state.
    #[serde(default)]
    pub is_window_terminated_early: bool,
}

/// A record to retry, by sequence number.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemFailure {
    /// The record's sequence number.
    pub item_identifier: String,
}

/// What a windowed invocation answers: the new state, and the records to retry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WindowResponse {
    /// The state after this batch (Lambda requires one, even from the final invocation).
    pub state: Value,
    /// The first failed record and every later one.
    pub batch_item_failures: Vec<ItemFailure>,
}

/// What one invocation did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WindowSummary {
    /// Events folded into the state.
    pub folded: usize,
    /// Records that are not events (left to the router's dead letters).
    pub skipped: usize,
    /// Records reported failed (the first failure and every later record).
    pub failed: usize,
    /// The first failure's reason.
    pub failure: Option<String>,
    /// This was the final invocation, and `close` ran.
    pub closed: bool,
}

/// Why a windowed invocation failed as a whole (Lambda retries it).
#[derive(Debug, thiserror::Error)]
pub enum WindowError {
    /// The state Lambda passed in does not read as the aggregation's state.
    #[error("the window's state does not read as this aggregation's state: {0}")]
    State(String),
    /// The final state could not be written as JSON.
    #[error("the window's state cannot be written as JSON: {0}")]
    StateNotJson(String),
    /// `close` failed (or panicked); the final invocation is retried.
    #[error("closing the window failed: {0}")]
    Close(String),
}

/// An aggregation over a tumbling window: what the state is, how an event adds to it, and what
/// happens when the window closes.
pub trait WindowedAggregation: Send + Sync {
    /// The state carried from one invocation to the next (at most 1 MB as JSON, per shard).
    type State: Serialize + DeserializeOwned + Default + Clone + Send;

    /// The aggregation's name, in logs.
    fn name(&self) -> &'static str;

    /// Add one event to the state. An error fails the record; the state stays as it was.
    fn fold(&self, state: &mut Self::State, event: &Envelope) -> Result<(), String>;

    /// The window is over (`terminated_early`: its state outgrew 1 MB and the same window goes
    /// on with a fresh state). Retried until it succeeds, so it must be idempotent.
    fn close(
        &self,
        window: &WindowBounds,
        state: Self::State,
        terminated_early: bool,
    ) -> impl Future<Output = Result<(), String>> + Send;
}

/// Runs a [`WindowedAggregation`] on windowed invocations (see the module docs).
#[derive(Clone, Debug)]
pub struct WindowProcessor<A> {
    aggregation: A,
    upcasters: Upcasters,
}

impl<A: WindowedAggregation> WindowProcessor<A> {
    /// A processor for `aggregation`, reading events as they were written (no upcasters).
    pub fn new(aggregation: A) -> Self {
        WindowProcessor {
            aggregation,
            upcasters: Upcasters::new(),
        }
    }

    /// Read old schema versions of events as their current one before folding them.
    pub fn upcasters(mut self, upcasters: Upcasters) -> Self {
        self.upcasters = upcasters;
        self
    }

    /// The aggregation.
    pub fn aggregation(&self) -> &A {
        &self.aggregation
    }

    /// One invocation: fold its records, or close the window on the final invocation.
    pub async fn process(
        &self,
        event: &WindowEvent,
    ) -> Result<(WindowResponse, WindowSummary), WindowError> {
        let mut state: A::State = match &event.state {
            Value::Null => A::State::default(),
            Value::Object(map) if map.is_empty() => A::State::default(),
            value => serde_json::from_value(value.clone())
                .map_err(|e| WindowError::State(e.to_string()))?,
        };
        let mut summary = WindowSummary::default();
        let mut failures = Vec::new();
        for record in &event.records {
            if !failures.is_empty() {
                failures.push(failure(record));
                continue;
            }
            let envelope = match Envelope::parse(&record.kinesis.data.0)
                .and_then(|e| self.upcasters.upcast(e))
            {
                Ok(envelope) => envelope,
                Err(err) => {
                    tracing::warn!(
                        aggregation = self.aggregation.name(),
                        sequence_number = %record.kinesis.sequence_number,
                        error = %err,
                        "not an event: left out of the window (the router dead-letters it)"
                    );
                    summary.skipped += 1;
                    continue;
                }
            };
            let mut next = state.clone();
            let folded = std::panic::catch_unwind(AssertUnwindSafe(|| {
                self.aggregation.fold(&mut next, &envelope)
            }))
            .unwrap_or_else(|panic| {
                Err(format!(
                    "the fold panicked: {}",
                    crate::subscriber::partial_response::panic_message(&panic)
                ))
            });
            match folded {
                Ok(()) => {
                    state = next;
                    summary.folded += 1;
                }
                Err(reason) => {
                    summary.failure = Some(reason);
                    failures.push(failure(record));
                }
            }
        }
        summary.failed = failures.len();
        if event.is_final_invoke_for_window {
            let close = self.aggregation.close(
                &event.window,
                std::mem::take(&mut state),
                event.is_window_terminated_early,
            );
            match futures::FutureExt::catch_unwind(AssertUnwindSafe(close)).await {
                Ok(Ok(())) => summary.closed = true,
                Ok(Err(reason)) => return Err(WindowError::Close(reason)),
                Err(panic) => {
                    return Err(WindowError::Close(format!(
                        "close panicked: {}",
                        crate::subscriber::partial_response::panic_message(&panic)
                    )))
                }
            }
        }
        let state =
            serde_json::to_value(&state).map_err(|e| WindowError::StateNotJson(e.to_string()))?;
        if !state.is_object() {
            return Err(WindowError::StateNotJson(
                "Lambda keeps a JSON object: make the state a struct or a map".into(),
            ));
        }
        Ok((
            WindowResponse {
                state,
                batch_item_failures: failures,
            },
            summary,
        ))
    }
}

fn failure(record: &KinesisEventRecord) -> ItemFailure {
    ItemFailure {
        item_identifier: record.kinesis.sequence_number.clone(),
    }
}

/// A deterministic event id for what a window's `close` emits about `key` (a customer, a
/// device): the same window closed twice emits the same id, which subscribers skip.
pub fn window_event_id(aggregation: &str, window: &WindowBounds, key: &str) -> String {
    let name = format!(
        "{aggregation}/{}/{}/{key}",
        window.start.timestamp_millis(),
        window.end.timestamp_millis()
    );
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, name.as_bytes()).to_string()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use base64::Engine;
    use serde_json::json;

    use super::*;

    /// Sums `data.amount` per subject; fails an event whose amount is negative; remembers
    /// what each close saw.
    #[derive(Default)]
    struct Totals {
        closed: Mutex<Vec<(BTreeMap<String, i64>, bool)>>,
        fail_close: bool,
    }

    impl WindowedAggregation for Totals {
        type State = BTreeMap<String, i64>;

        fn name(&self) -> &'static str {
            "totals"
        }

        fn fold(&self, state: &mut Self::State, event: &Envelope) -> Result<(), String> {
            let amount = event.data().and_then(|d| d["amount"].as_i64()).unwrap_or(0);
            *state
                .entry(event.subject().unwrap_or("").to_string())
                .or_default() += amount;
            if amount < 0 {
                // The state was changed before failing: the processor must not keep it.
                return Err(format!("amount {amount} is negative"));
            }
            Ok(())
        }

        async fn close(
            &self,
            _window: &WindowBounds,
            state: Self::State,
            terminated_early: bool,
        ) -> Result<(), String> {
            if self.fail_close {
                return Err("the bus is down".into());
            }
            self.closed.lock().unwrap().push((state, terminated_early));
            Ok(())
        }
    }

    fn record(sequence: u32, data: &[u8]) -> Value {
        json!({
            "kinesis": {
                "kinesisSchemaVersion": "1.0",
                "partitionKey": "k",
                "sequenceNumber": sequence.to_string(),
                "data": base64::engine::general_purpose::STANDARD.encode(data),
                "approximateArrivalTimestamp": 1_607_497_475.0,
            },
            "eventSource": "aws:kinesis",
            "eventVersion": "1.0",
            "eventID": format!("shardId-0:{sequence}"),
            "eventName": "aws:kinesis:record",
            "awsRegion": "us-east-1",
            "eventSourceARN": "arn:aws:kinesis:us-east-1:1:stream/s",
        })
    }

    fn sale(sequence: u32, customer: &str, amount: i64) -> Value {
        let event = Envelope::builder("sold", "test/shop")
            .subject(customer)
            .data(json!({ "amount": amount }))
            .build()
            .unwrap();
        record(sequence, &serde_json::to_vec(&event).unwrap())
    }

    fn invocation(records: Vec<Value>, state: Value, last: bool) -> WindowEvent {
        serde_json::from_value(json!({
            "Records": records,
            "window": { "start": "2020-12-09T07:04:00Z", "end": "2020-12-09T07:06:00Z" },
            "state": state,
            "shardId": "shardId-0",
            "eventSourceARN": "arn:aws:kinesis:us-east-1:1:stream/s",
            "isFinalInvokeForWindow": last,
            "isWindowTerminatedEarly": false,
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn state_is_carried_from_invocation_to_invocation_and_closed_once() {
        let processor = WindowProcessor::new(Totals::default());
        let (first, summary) = processor
            .process(&invocation(
                vec![sale(1, "ann", 5), sale(2, "bob", 1)],
                json!({}),
                false,
            ))
            .await
            .unwrap();
        assert_eq!(first.state, json!({ "ann": 5, "bob": 1 }));
        assert!(first.batch_item_failures.is_empty());
        assert_eq!((summary.folded, summary.closed), (2, false));

        let (second, _) = processor
            .process(&invocation(vec![sale(3, "ann", 2)], first.state, false))
            .await
            .unwrap();
        assert_eq!(second.state, json!({ "ann": 7, "bob": 1 }));

        let (last, summary) = processor
            .process(&invocation(vec![], second.state, true))
            .await
            .unwrap();
        assert!(summary.closed);
        assert_eq!(
            last.state,
            json!({}),
            "the state is dropped after the window"
        );
        let closed = processor.aggregation().closed.lock().unwrap().clone();
        assert_eq!(
            closed,
            [(
                BTreeMap::from([("ann".into(), 7), ("bob".into(), 1)]),
                false
            )]
        );
    }

    #[tokio::test]
    async fn a_failed_record_and_every_later_one_are_retried_and_counted_once() {
        let processor = WindowProcessor::new(Totals::default());
        let batch = vec![sale(1, "ann", 5), sale(2, "ann", -1), sale(3, "bob", 4)];
        let (response, summary) = processor
            .process(&invocation(batch, json!({}), false))
            .await
            .unwrap();
        assert_eq!(
            response.state,
            json!({ "ann": 5 }),
            "only the records before the failure"
        );
        let retried: Vec<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        assert_eq!(retried, ["2", "3"]);
        assert_eq!(summary.failure.as_deref(), Some("amount -1 is negative"));

        // Lambda retries from the failed record with the returned state (now it succeeds).
        let (response, _) = processor
            .process(&invocation(
                vec![sale(2, "ann", 1), sale(3, "bob", 4)],
                response.state,
                false,
            ))
            .await
            .unwrap();
        assert_eq!(response.state, json!({ "ann": 6, "bob": 4 }));
    }

    #[tokio::test]
    async fn a_record_that_is_not_an_event_is_left_out_and_counted() {
        let processor = WindowProcessor::new(Totals::default());
        let (response, summary) = processor
            .process(&invocation(
                vec![record(1, b"{not an event"), sale(2, "ann", 3)],
                json!({}),
                false,
            ))
            .await
            .unwrap();
        assert_eq!(response.state, json!({ "ann": 3 }));
        assert!(response.batch_item_failures.is_empty());
        assert_eq!((summary.folded, summary.skipped), (1, 1));
    }

    #[tokio::test]
    async fn a_failing_close_fails_the_final_invocation_so_lambda_retries_it() {
        let processor = WindowProcessor::new(Totals {
            fail_close: true,
            ..Totals::default()
        });
        let err = processor
            .process(&invocation(vec![], json!({ "ann": 1 }), true))
            .await
            .unwrap_err();
        assert!(
            matches!(err, WindowError::Close(ref r) if r == "the bus is down"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_state_of_another_shape_is_an_error_naming_the_state() {
        let processor = WindowProcessor::new(Totals::default());
        let err = processor
            .process(&invocation(vec![], json!({ "ann": "five" }), false))
            .await
            .unwrap_err();
        assert!(matches!(err, WindowError::State(_)), "{err}");
        assert!(err.to_string().contains("state"), "{err}");
    }

    #[test]
    fn an_event_id_from_a_window_is_the_same_for_the_same_window_and_key() {
        let window = WindowBounds {
            start: DateTime::from_timestamp(60, 0).unwrap(),
            end: DateTime::from_timestamp(120, 0).unwrap(),
        };
        let later = WindowBounds {
            start: window.end,
            end: DateTime::from_timestamp(180, 0).unwrap(),
        };
        let id = window_event_id("fraud", &window, "ann");
        assert_eq!(id, window_event_id("fraud", &window, "ann"));
        assert_ne!(id, window_event_id("fraud", &window, "bob"));
        assert_ne!(id, window_event_id("fraud", &later, "ann"));
    }
}
