//! `TumblingWindowInSeconds`, as Lambda documents it for Kinesis and DynamoDB streams.
//!
//! - Windows are aligned to multiples of the window's length since the epoch, and a record
//!   belongs to the window of its approximate arrival time. A batch holds records of one window
//!   only.
//! - Every invocation carries the window (`start`, `end`), the `state` the previous invocation of
//!   that window returned (`{}` at its start), `shardId`, `eventSourceARN`,
//!   `isFinalInvokeForWindow` and `isWindowTerminatedEarly`. The response must hold a `state`
//!   object; without one the invocation counts as failed (and is retried with the state it was
//!   given, like any failed batch). With `batchItemFailures`, the returned state stands for the
//!   records before the lowest failure, which are retried from there.
//! - When a record of a later window arrives, or the shard sits at its tip past the window's end
//!   (plus [`super::PollSettings::window_grace`]), or the shard ends (a reshard closes the
//!   window), the window gets its final invocation: no records, the final state,
//!   `isFinalInvokeForWindow: true`. It is retried until it succeeds: the shard reads nothing
//!   more meanwhile.
//! - A state over 1 MB ends the window early: a final invocation with
//!   `isWindowTerminatedEarly: true`, then the same window goes on with a fresh state.
//! - One state per shard, so a windowed mapping reads each shard in one lane (its
//!   `ParallelizationFactor` is not applied).
//! - The open window and its state are saved with the shard's checkpoint: a restarted runner
//!   goes on with the same window and state, neither losing nor repeating a record's share.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::watch;

use super::pause::backoff;
use super::{Context, StreamRecord};
use crate::runtime::FunctionPool;
use crate::stack::StreamMapping;

/// Lambda's limit on a window's state, per shard.
pub const MAX_STATE_BYTES: usize = 1024 * 1024;

/// A window that has had records and not yet its final invocation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenWindow {
    /// Its start, in milliseconds since the epoch.
    pub start_millis: i64,
    /// The state the last successful invocation returned.
    pub state: Value,
}

impl OpenWindow {
    /// A window starting at `start_millis` with a fresh state.
    pub fn new(start_millis: i64) -> OpenWindow {
        OpenWindow {
            start_millis,
            state: json!({}),
        }
    }

    /// Where the window ends (exclusive), in milliseconds since the epoch.
    pub fn end_millis(&self, length: Duration) -> i64 {
        self.start_millis + length.as_millis() as i64
    }

    /// The state outgrew Lambda's limit.
    pub fn state_too_big(&self) -> bool {
        serde_json::to_vec(&self.state).map_or(0, |b| b.len()) > MAX_STATE_BYTES
    }
}

/// Counts one shard's open window in [`super::Activity::open_windows`] while it is open; stops
/// counting it when dropped (the shard's task ended).
pub(super) struct OpenGauge {
    activity: std::sync::Arc<super::Activity>,
    open: bool,
}

impl OpenGauge {
    pub(super) fn new(activity: &std::sync::Arc<super::Activity>, open: bool) -> OpenGauge {
        let mut gauge = OpenGauge {
            activity: activity.clone(),
            open: false,
        };
        gauge.set(open);
        gauge
    }

    pub(super) fn set(&mut self, open: bool) {
        use std::sync::atomic::Ordering;
        if open != self.open {
            if open {
                self.activity.open_windows.fetch_add(1, Ordering::SeqCst);
            } else {
                self.activity.open_windows.fetch_sub(1, Ordering::SeqCst);
            }
            self.open = open;
        }
    }
}

impl Drop for OpenGauge {
    fn drop(&mut self) {
        self.set(false);
    }
}

/// The start of the window `record` belongs to, given the open window (a record that arrived
/// before the open window's start, by clock skew between shards' hosts, joins the open one).
pub(super) fn window_of(record: &StreamRecord, length: Duration, open: Option<&OpenWindow>) -> i64 {
    let length = (length.as_millis() as i64).max(1);
    let at = record.arrival.timestamp_millis();
    let start = at - at.rem_euclid(length);
    match open {
        Some(open) if start < open.start_millis => open.start_millis,
        _ => start,
    }
}

/// Whether an open window's time is up: the shard is at its tip and the window ended more than
/// the grace period ago.
pub(super) fn expired(window: &OpenWindow, length: Duration, grace: Duration) -> bool {
    Utc::now().timestamp_millis() >= window.end_millis(length) + grace.as_millis() as i64
}

fn timestamp(millis: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(millis)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Add Lambda's window fields to an invoke event.
pub(super) fn decorate(
    event: &mut Value,
    mapping: &StreamMapping,
    shard_id: &str,
    window: &OpenWindow,
    length: Duration,
    final_invoke: bool,
    terminated_early: bool,
) {
    event["window"] = json!({
        "start": timestamp(window.start_millis),
        "end": timestamp(window.end_millis(length)),
    });
    event["state"] = window.state.clone();
    event["shardId"] = json!(shard_id);
    event["eventSourceARN"] = json!(mapping.stream_arn);
    event["isFinalInvokeForWindow"] = json!(final_invoke);
    event["isWindowTerminatedEarly"] = json!(terminated_early);
}

/// The state a windowed invocation returned, or why the response does not count.
pub(super) fn returned_state(response: &Value) -> Result<Value, String> {
    match response.get("state") {
        Some(state @ Value::Object(_)) => Ok(state.clone()),
        None | Some(Value::Null) => Err(
            "the response has no state (a function on a tumbling window must return one)".into(),
        ),
        Some(_) => Err("the response's state is not an object".into()),
    }
}

/// The window's final invocation, retried with backoff until it succeeds; false when the
/// runner stopped first (the window stays open in the checkpoint and closes after a restart).
pub(super) async fn close(
    mapping: &StreamMapping,
    pool: &FunctionPool,
    ctx: &Context,
    shard_id: &str,
    window: &OpenWindow,
    terminated_early: bool,
    stop: &watch::Receiver<bool>,
) -> bool {
    let Some(length) = mapping.tumbling_window else {
        return true;
    };
    let label = pool.spec().label();
    let mut event = json!({ "Records": [] });
    decorate(
        &mut event,
        mapping,
        shard_id,
        window,
        length,
        true,
        terminated_early,
    );
    let mut attempt = 0;
    loop {
        match pool.invoke(&event).await {
            Ok(_) => return true,
            Err(err) => ctx.logs.note(
                label,
                &format!(
                    "the final invocation of window {} failed (retrying): {err}",
                    timestamp(window.start_millis)
                ),
            ),
        }
        let mut stop = stop.clone();
        tokio::select! {
            _ = tokio::time::sleep(backoff(attempt, ctx.settings.max_retry_delay)) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            return false;
        }
        attempt += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record_at(millis: i64) -> StreamRecord {
        StreamRecord {
            shard_id: "shard-0".into(),
            sequence_number: "1".into(),
            partition_key: "k".into(),
            payload: crate::stream::Payload::Kinesis(Vec::new()),
            arrival: DateTime::from_timestamp_millis(millis).unwrap(),
        }
    }

    #[test]
    fn windows_are_aligned_to_their_length_and_a_late_clock_joins_the_open_window() {
        let length = Duration::from_secs(60);
        assert_eq!(window_of(&record_at(125_000), length, None), 120_000);
        assert_eq!(window_of(&record_at(120_000), length, None), 120_000);
        assert_eq!(window_of(&record_at(179_999), length, None), 120_000);
        let open = OpenWindow::new(180_000);
        assert_eq!(window_of(&record_at(179_000), length, Some(&open)), 180_000);
        assert_eq!(window_of(&record_at(250_000), length, Some(&open)), 240_000);
    }

    #[test]
    fn a_response_without_a_state_object_does_not_count() {
        assert_eq!(
            returned_state(&json!({"state": {"a": 1}})).unwrap(),
            json!({"a": 1})
        );
        for bad in [json!({}), json!({"state": null}), json!({"state": [1]})] {
            assert!(returned_state(&bad).unwrap_err().contains("state"), "{bad}");
        }
    }

    #[test]
    fn the_state_limit_is_a_megabyte() {
        let mut window = OpenWindow::new(0);
        window.state = json!({ "k": "x".repeat(MAX_STATE_BYTES - 20) });
        assert!(!window.state_too_big());
        window.state = json!({ "k": "x".repeat(MAX_STATE_BYTES) });
        assert!(window.state_too_big());
    }

    #[test]
    fn window_bounds_read_as_lambda_writes_them() {
        let window = OpenWindow::new(1_607_497_440_000);
        let mut event = json!({ "Records": [] });
        let mapping: StreamMapping = serde_json::from_value(json!({
            "logical_id": "M", "function": "F", "stream_arn": "arn:s", "stream_name": "s",
            "starting_position": "TrimHorizon", "batch_size": 1, "batching_window": {"secs": 0, "nanos": 0},
            "bisect_on_error": false, "max_retry_attempts": -1, "max_record_age": null,
            "report_batch_item_failures": false, "on_failure": null, "parallelization_factor": 1,
            "enabled": true
        }))
        .unwrap();
        decorate(
            &mut event,
            &mapping,
            "shard-0",
            &window,
            Duration::from_secs(120),
            false,
            false,
        );
        assert_eq!(event["window"]["start"], "2020-12-09T07:04:00Z");
        assert_eq!(event["window"]["end"], "2020-12-09T07:06:00Z");
        assert_eq!(event["state"], json!({}));
        assert_eq!(event["isFinalInvokeForWindow"], false);
    }
}
