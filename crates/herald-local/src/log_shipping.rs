//! The functions' output into CloudWatch Logs, as Lambda delivers it: each function's lines to its
//! log group (`LoggingConfig.LogGroup`, else `/aws/lambda/<name>`), one log stream per runner
//! start. So `herald trace` reads a local stack's logs where it reads a deployed one's.
//!
//! Lines are buffered and sent about once a second, a `PutLogEvents` per function (at most
//! 10,000 events or 1 MB each, AWS's limits), straight to the emulator: a fault
//! plan between the functions and AWS does not reach Lambda's own log delivery.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use aws_sdk_cloudwatchlogs::types::InputLogEvent;
use tokio::sync::watch;

/// Events per `PutLogEvents` (AWS's limit).
const MAX_EVENTS: usize = 10_000;
/// Bytes per `PutLogEvents`: each event's UTF-8 size plus 26 (AWS's limit is 1,048,576).
const MAX_BYTES: usize = 1_000_000;
/// Bytes of one event's message (AWS's limit: 256 KB with the 26 bytes of overhead).
const MAX_MESSAGE: usize = 256 * 1024 - 26;
/// How often buffered lines are sent.
const EVERY: Duration = Duration::from_secs(1);

/// Where each function's lines go, and what waits to be sent.
pub struct Shipper {
    logs: aws_sdk_cloudwatchlogs::Client,
    /// Function label → log group.
    groups: BTreeMap<String, String>,
    stream: String,
    pending: Mutex<BTreeMap<String, Vec<InputLogEvent>>>,
    /// Log groups and streams created so far (a flush at a time).
    ready: tokio::sync::Mutex<Vec<String>>,
}

impl Shipper {
    /// Ship to `logs`: each label's lines to its group in `groups`, under a new log stream.
    pub fn new(logs: aws_sdk_cloudwatchlogs::Client, groups: BTreeMap<String, String>) -> Self {
        let stream = format!(
            "{}/[$LATEST]{}",
            chrono::Utc::now().format("%Y/%m/%d"),
            uuid::Uuid::new_v4().simple()
        );
        Shipper {
            logs,
            groups,
            stream,
            pending: Mutex::new(BTreeMap::new()),
            ready: tokio::sync::Mutex::new(Vec::new()),
        }
    }

    /// Keep one line of `function` (its label) to send, timed by its own `timestamp` field when
    /// it has one.
    pub fn keep(&self, function: &str, line: &str, timestamp: Option<i64>) {
        // CloudWatch Logs refuses an empty message (and with it the whole batch)...
        if !self.groups.contains_key(function) || line.is_empty() {
            return;
        }
        // ... and one over 256 KB: cut at a character boundary.
        let mut end = line.len().min(MAX_MESSAGE);
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        let line = &line[..end];
        let time = timestamp.unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
        let Ok(event) = InputLogEvent::builder()
            .timestamp(time)
            .message(line)
            .build()
        else {
            return;
        };
        self.pending
            .lock()
            .expect("lock")
            .entry(function.to_string())
            .or_default()
            .push(event);
    }

    /// Send every kept line now. A batch the emulator refuses is dropped with a warning: the
    /// local log files keep every line.
    pub async fn flush(&self) {
        let pending = std::mem::take(&mut *self.pending.lock().expect("lock"));
        let mut ready = self.ready.lock().await;
        for (function, mut events) in pending {
            let Some(group) = self.groups.get(&function) else {
                continue;
            };
            if !ready.contains(group) {
                if let Err(err) = self.create(group).await {
                    tracing::warn!(group, "log group not created: {err}");
                    continue;
                }
                ready.push(group.clone());
            }
            // In time order, as PutLogEvents requires.
            events.sort_by_key(|e| e.timestamp());
            for batch in batches(events) {
                let sent = self
                    .logs
                    .put_log_events()
                    .log_group_name(group)
                    .log_stream_name(&self.stream)
                    .set_log_events(Some(batch))
                    .send()
                    .await;
                if let Err(err) = sent {
                    tracing::warn!(
                        group,
                        "log lines not delivered: {}",
                        herald::aws::error_text(&err)
                    );
                }
            }
        }
    }

    /// Send kept lines every second until `stop`.
    pub async fn run(self: std::sync::Arc<Self>, mut stop: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(EVERY) => self.flush().await,
                _ = stop.changed() => return,
            }
        }
    }

    /// The group (which the template may have created already) and this run's stream.
    async fn create(&self, group: &str) -> Result<(), String> {
        let created = self
            .logs
            .create_log_group()
            .log_group_name(group)
            .send()
            .await;
        if let Err(err) = created {
            if !err
                .as_service_error()
                .is_some_and(|e| e.is_resource_already_exists_exception())
            {
                return Err(herald::aws::error_text(&err));
            }
        }
        self.logs
            .create_log_stream()
            .log_group_name(group)
            .log_stream_name(&self.stream)
            .send()
            .await
            .map(|_| ())
            .or_else(|err| {
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_resource_already_exists_exception())
                {
                    Ok(())
                } else {
                    Err(herald::aws::error_text(&err))
                }
            })
    }
}

/// Split into batches within PutLogEvents' limits.
fn batches(events: Vec<InputLogEvent>) -> Vec<Vec<InputLogEvent>> {
    let mut out: Vec<Vec<InputLogEvent>> = Vec::new();
    let mut bytes = 0;
    for event in events {
        let size = event.message().len() + 26;
        match out.last_mut() {
            Some(batch) if batch.len() < MAX_EVENTS && bytes + size <= MAX_BYTES => {
                bytes += size;
                batch.push(event);
            }
            _ => {
                bytes = size;
                out.push(vec![event]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(message: &str) -> InputLogEvent {
        InputLogEvent::builder()
            .timestamp(0)
            .message(message)
            .build()
            .unwrap()
    }

    #[test]
    fn batches_keep_within_the_events_and_bytes_limits() {
        let many: Vec<InputLogEvent> = (0..MAX_EVENTS + 1).map(|_| event("x")).collect();
        let split = batches(many);
        assert_eq!(
            split.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![MAX_EVENTS, 1]
        );
        let big = "y".repeat(400_000);
        let split = batches(vec![event(&big), event(&big), event(&big)]);
        assert_eq!(split.iter().map(Vec::len).collect::<Vec<_>>(), vec![2, 1]);
        assert!(batches(Vec::new()).is_empty());
    }
}
