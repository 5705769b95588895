//! SQS mappings: pollers that receive batches, invoke, delete what succeeded, and leave failures
//! to the queue's visibility timeout and redrive policy.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};
use tokio::sync::watch;

use super::Context;
use crate::runtime::FunctionPool;
use crate::stack::SqsMapping;

/// How long a poller's `ReceiveMessage` waits for a message on an empty queue (long polling,
/// as Lambda's pollers do): an idle queue costs a request per wait rather than one per
/// [`super::PollSettings::idle_poll`], and a message sent meanwhile is received at once.
pub const LONG_POLL_SECONDS: i32 = 5;

/// herald's timeouts, with a long poll's wait added to what one attempt may take.
fn long_poll_timeouts() -> aws_config::timeout::TimeoutConfig {
    let attempt = herald::aws::ATTEMPT_TIMEOUT + Duration::from_secs(LONG_POLL_SECONDS as u64);
    herald::aws::timeouts()
        .to_builder()
        .operation_attempt_timeout(attempt)
        .build()
}

/// Run an SQS mapping with `concurrency` pollers until `stop` turns true.
pub async fn run_sqs(
    mapping: SqsMapping,
    pool: Arc<FunctionPool>,
    ctx: Context,
    concurrency: usize,
    stop: watch::Receiver<bool>,
) {
    // A JoinSet aborts the pollers when this task is aborted (the runner's stop).
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        tasks.spawn(poll_sqs(
            mapping.clone(),
            pool.clone(),
            ctx.clone(),
            stop.clone(),
        ));
    }
    tasks.join_all().await;
}

type Message = aws_sdk_sqs::types::Message;

/// One poller: receive a batch, invoke, delete what succeeded, until `stop`.
async fn poll_sqs(
    mapping: SqsMapping,
    pool: Arc<FunctionPool>,
    ctx: Context,
    stop: watch::Receiver<bool>,
) {
    let poller = Poller {
        label: pool.spec().label().to_string(),
        mapping,
        pool,
        ctx,
        stop,
    };
    while !*poller.stop.borrow() {
        let messages = poller.receive_batch().await;
        if messages.is_empty() {
            continue;
        }
        let failed = poller.invoke(&messages).await;
        // Delete what succeeded; failures reappear after the visibility timeout.
        let done: Vec<&Message> = messages
            .iter()
            .filter(|m| !m.message_id.as_ref().is_some_and(|id| failed.contains(id)))
            .collect();
        poller.delete(&done).await;
    }
}

struct Poller {
    mapping: SqsMapping,
    pool: Arc<FunctionPool>,
    ctx: Context,
    stop: watch::Receiver<bool>,
    label: String,
}

impl Poller {
    /// Up to `BatchSize` messages: a long poll for the first, then short polls until the batch
    /// is full or its batching window ends (none when the runner stops first).
    async fn receive_batch(&self) -> Vec<Message> {
        use aws_sdk_sqs::types::MessageSystemAttributeName;
        let mapping = &self.mapping;
        let mut messages = Vec::new();
        let started = Instant::now();
        while messages.len() < mapping.batch_size && !*self.stop.borrow() {
            let want = (mapping.batch_size - messages.len())
                .min(herald::aws::limits::SQS_MAX_RECEIVE) as i32;
            // Waiting for a batch's first message, long poll; once a batch has begun, short polls
            // fill it until its window ends.
            let waiting = messages.is_empty();
            let received = self
                .ctx
                .sqs
                .receive_message()
                .queue_url(&mapping.queue_url)
                .max_number_of_messages(want)
                .wait_time_seconds(if waiting { LONG_POLL_SECONDS } else { 0 })
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .message_attribute_names("All")
                .customize()
                .config_override(
                    aws_sdk_sqs::config::Builder::default().timeout_config(long_poll_timeouts()),
                )
                .send()
                .await;
            let got = match received {
                Ok(out) => out.messages.unwrap_or_default(),
                Err(err) => {
                    let note = format!("ReceiveMessage: {}", herald::aws::error_text(&err));
                    self.ctx.logs.note(&self.label, &note);
                    tokio::time::sleep(self.ctx.settings.idle_poll * 5).await;
                    continue;
                }
            };
            let empty = got.is_empty();
            if !empty {
                self.ctx
                    .activity
                    .sqs_receives
                    .fetch_add(1, Ordering::Relaxed);
            }
            messages.extend(got);
            let window_over = started.elapsed() >= mapping.batching_window;
            if !messages.is_empty() && (window_over || (empty && mapping.batching_window.is_zero()))
            {
                break;
            }
            if empty && !waiting {
                tokio::time::sleep(self.ctx.settings.idle_poll).await;
            }
        }
        messages
    }

    /// Invoke the function with `messages`; the ids of those that failed (all of them when
    /// the invocation did, or its batch response is not one Lambda accepts).
    async fn invoke(&self, messages: &[Message]) -> Vec<String> {
        let event = sqs_event(&self.mapping, &self.ctx, messages);
        tracing::debug!(queue = %self.mapping.queue_url, messages = messages.len(), "invoking with an SQS batch");
        let all = || {
            messages
                .iter()
                .filter_map(|m| m.message_id.clone())
                .collect()
        };
        match self.pool.invoke(&event).await {
            Ok(response) if self.mapping.report_batch_item_failures => {
                failed_ids(&response, messages).unwrap_or_else(|reason| {
                    let note = format!("invalid batch response ({reason}): the whole batch failed");
                    self.ctx.logs.note(&self.label, &note);
                    all()
                })
            }
            Ok(_) => Vec::new(),
            Err(err) => {
                let note = format!("batch of {} failed: {err}", messages.len());
                self.ctx.logs.note(&self.label, &note);
                all()
            }
        }
    }

    /// `DeleteMessageBatch`, ten at a time.
    async fn delete(&self, done: &[&Message]) {
        for chunk in done.chunks(10) {
            let mut request = self
                .ctx
                .sqs
                .delete_message_batch()
                .queue_url(&self.mapping.queue_url);
            for (i, message) in chunk.iter().enumerate() {
                request = request.entries(
                    aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                        .id(format!("m{i}"))
                        .receipt_handle(message.receipt_handle.clone().unwrap_or_default())
                        .build()
                        .expect("id and receipt handle are set"),
                );
            }
            self.ctx
                .activity
                .sqs_deletes
                .fetch_add(1, Ordering::Relaxed);
            let note = match request.send().await {
                // Those messages come back after the visibility timeout and are processed again
                // (subscribers are idempotent); say so rather than hide it.
                Ok(out) if !out.failed.is_empty() => {
                    let failed: Vec<String> = out
                        .failed
                        .iter()
                        .map(|f| format!("{}: {}", f.id, f.code))
                        .collect();
                    format!("DeleteMessageBatch failed for {}", failed.join(", "))
                }
                Ok(_) => continue,
                Err(err) => format!("DeleteMessageBatch: {}", herald::aws::error_text(&err)),
            };
            self.ctx.logs.note(&self.label, &note);
        }
    }
}

/// The ids a batch response reports failed, or why it is not a response Lambda accepts.
fn failed_ids(response: &Value, messages: &[Message]) -> Result<Vec<String>, String> {
    let Some(failures) = response.get("batchItemFailures").filter(|f| !f.is_null()) else {
        return Ok(Vec::new());
    };
    let failures = failures
        .as_array()
        .ok_or("batchItemFailures is not a list")?;
    failures
        .iter()
        .map(|f| {
            let id = f
                .get("itemIdentifier")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if id.is_empty() {
                Err("empty itemIdentifier".to_string())
            } else if !messages.iter().any(|m| m.message_id.as_deref() == Some(id)) {
                Err(format!("itemIdentifier {id} is not in the batch"))
            } else {
                Ok(id.to_string())
            }
        })
        .collect()
}

/// Lambda's SQS event for `messages`.
fn sqs_event(mapping: &SqsMapping, ctx: &Context, messages: &[Message]) -> Value {
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            let attributes: serde_json::Map<String, Value> = m
                .attributes
                .iter()
                .flatten()
                .map(|(k, v)| (k.as_str().to_string(), Value::String(v.clone())))
                .collect();
            let message_attributes: serde_json::Map<String, Value> = m
                .message_attributes
                .iter()
                .flatten()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        json!({
                            "stringValue": v.string_value,
                            "binaryValue": v.binary_value.as_ref().map(|b| base64::engine::general_purpose::STANDARD.encode(b.as_ref())),
                            "stringListValues": [],
                            "binaryListValues": [],
                            "dataType": v.data_type,
                        }),
                    )
                })
                .collect();
            json!({
                "messageId": m.message_id,
                "receiptHandle": m.receipt_handle,
                "body": m.body,
                "attributes": attributes,
                "messageAttributes": message_attributes,
                "md5OfBody": m.md5_of_body,
                "eventSource": "aws:sqs",
                "eventSourceARN": mapping.queue_arn,
                "awsRegion": ctx.stack.region,
            })
        })
        .collect();
    json!({ "Records": records })
}
