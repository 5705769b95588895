//! A stack's dead-letter queues: which queues hold dead letters, where their messages came from,
//! and reading the letters without removing them.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{bail, Result};
use aws_config::SdkConfig;
use aws_sdk_sqs::types::MessageSystemAttributeName;
use chrono::Utc;
use herald::aws::dead_letter::attr;
use serde_json::Value;

use herald_local::stack::{MappingSpec, Stack, StreamSource, DEAD_LETTER_TARGET};

/// Where a dead-letter queue's messages go back to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// The queue whose redrive policy moved them here: the message is sent back as it is.
    Queue { logical_id: String, url: String },
    /// A stream: the dead-lettered record is put back onto it.
    Stream { logical_id: String, name: String },
    /// A stream whose event source mapping sent Lambda's on-failure records here: the records
    /// they describe (shard, sequence range) are read from the stream and put back onto it.
    StreamRange { logical_id: String, name: String },
    /// An event store's DynamoDB stream whose publisher's mapping gave up on a batch (its records
    /// expired): the events appended in the span the on-failure record describes are read from
    /// the store and put on the event stream again ([`crate::republish`]).
    Store(crate::StoreRoute),
}

/// A dead-letter queue of the stack.
#[derive(Clone, Debug)]
pub struct DeadLetterQueue {
    /// Logical id.
    pub logical_id: String,
    /// URL.
    pub url: String,
    /// Where its messages go back to (none when herald cannot tell).
    pub source: Option<Source>,
    /// How old an event may be to go back ([`crate::Horizon`]): the stack's idempotency TTL,
    /// older ones refused unless `expired` says [`crate::Expired::Resend`].
    pub horizon: crate::Horizon,
}

/// Every queue of the stack that holds dead letters: redrive targets, on-failure destinations,
/// and the queues functions dead-letter poison to.
pub fn dead_letter_queues(stack: &Stack) -> Vec<DeadLetterQueue> {
    let queues: Vec<(&str, &herald_local::stack::Physical)> =
        stack.of_kind("AWS::SQS::Queue").collect();
    let arn_of =
        |p: &herald_local::stack::Physical| p.attributes.get("Arn").cloned().unwrap_or_default();
    let stream_name = |arn: &str| arn.rsplit('/').next().unwrap_or_default().to_string();
    let stream_id = |arn: &str| {
        stack
            .of_kind("AWS::Kinesis::Stream")
            .find(|(_, p)| p.attributes.get("Arn").map(String::as_str) == Some(arn))
            .map(|(id, _)| id.to_string())
            .unwrap_or_default()
    };
    let stores = crate::republish::stores(stack);
    let mut out = Vec::new();
    for (id, queue) in &queues {
        let arn = arn_of(queue);
        let redriven_from = queues
            .iter()
            .find(|(_, q)| q.attributes.get(DEAD_LETTER_TARGET) == Some(&arn));
        let on_failure_of = stack.mappings.iter().find_map(|m| match m {
            MappingSpec::Stream(k) if k.on_failure.as_deref() == Some(arn.as_str()) => Some(k),
            _ => None,
        });
        // A function that dead-letters to this queue by URL, fed by a stream.
        let lettered_from = stack
            .functions
            .iter()
            .filter(|f| f.environment.values().any(|v| *v == queue.reference))
            .find_map(|f| {
                stack.mappings.iter().find_map(|m| match m {
                    MappingSpec::Stream(k) if k.function == f.logical_id => Some(k),
                    _ => None,
                })
            });
        let source = if let Some((source_id, source)) = redriven_from {
            Some(Source::Queue {
                logical_id: source_id.to_string(),
                url: source.reference.clone(),
            })
        } else if let Some(mapping) = on_failure_of {
            match mapping.source {
                StreamSource::Kinesis => Some(Source::StreamRange {
                    logical_id: stream_id(&mapping.stream_arn),
                    name: stream_name(&mapping.stream_arn),
                }),
                // DynamoDB stream ranges expire with the stream; their events are in the table.
                StreamSource::DynamoDb => stores
                    .iter()
                    .find(|route| {
                        stack
                            .resources
                            .get(&route.table_logical_id)
                            .and_then(|t| t.attributes.get("StreamArn"))
                            == Some(&mapping.stream_arn)
                    })
                    .cloned()
                    .map(Source::Store),
            }
        } else {
            lettered_from
                .filter(|mapping| mapping.source == StreamSource::Kinesis)
                .map(|mapping| Source::Stream {
                    logical_id: stream_id(&mapping.stream_arn),
                    name: stream_name(&mapping.stream_arn),
                })
        };
        let is_dead_letter_queue = redriven_from.is_some()
            || on_failure_of.is_some()
            || lettered_from.is_some()
            || id.contains("DeadLetter");
        if is_dead_letter_queue {
            out.push(DeadLetterQueue {
                logical_id: id.to_string(),
                url: queue.reference.clone(),
                source,
                horizon: crate::Horizon::of(stack, crate::Expired::Refuse),
            });
        }
    }
    out
}

/// Find a dead-letter queue by logical id (or a unique part of it, case-insensitive).
pub fn find_dead_letter_queue(stack: &Stack, name: &str) -> Result<DeadLetterQueue> {
    let all = dead_letter_queues(stack);
    if let Some(exact) = all.iter().find(|q| q.logical_id == name) {
        return Ok(exact.clone());
    }
    let matches: Vec<&DeadLetterQueue> = all
        .iter()
        .filter(|q| q.logical_id.to_lowercase().contains(&name.to_lowercase()))
        .collect();
    match matches[..] {
        [one] => Ok(one.clone()),
        _ => {
            let names: Vec<&str> = all.iter().map(|q| q.logical_id.as_str()).collect();
            bail!(
                "no single dead-letter queue matches {name:?} (queues: {})",
                names.join(", ")
            )
        }
    }
}

/// One dead letter as shown by `herald dlq show`.
#[derive(Clone, Debug)]
pub struct Letter {
    /// SQS message id.
    pub message_id: String,
    /// The body.
    pub body: String,
    /// `herald.reason`, or what herald knows (a Lambda on-failure record's condition, or that the
    /// queue's redrive policy moved it).
    pub reason: String,
    /// `herald.stage`, when set.
    pub stage: Option<String>,
    /// Time since it was first sent.
    pub age: Duration,
    /// How many times it was received, this read included: SQS has no peek, so reading a
    /// message is a receive.
    pub receives: u64,
}

/// Read every message of a queue without removing it or hiding it (visibility timeout 0).
///
/// SQS has no peek: each message read is a receive and its receive count goes up by one. On a
/// dead-letter queue that moves nothing (it has no redrive policy of its own); a queue that had
/// one would move a letter on after enough reads.
pub async fn letters(aws: &SdkConfig, url: &str) -> Result<Vec<Letter>> {
    let sqs = aws_sdk_sqs::Client::new(aws);
    let mut seen = HashMap::new();
    for _ in 0..100 {
        let received = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .visibility_timeout(0)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await?
            .messages
            .unwrap_or_default();
        let before = seen.len();
        for m in received {
            let id = m.message_id.clone().unwrap_or_default();
            seen.entry(id.clone()).or_insert_with(|| letter(id, &m));
        }
        if seen.len() == before {
            break;
        }
    }
    let mut letters: Vec<Letter> = seen.into_values().collect();
    letters.sort_by_key(|l| std::cmp::Reverse(l.age));
    Ok(letters)
}

fn letter(message_id: String, m: &aws_sdk_sqs::types::Message) -> Letter {
    let attribute = |name: &str| {
        m.message_attributes()
            .and_then(|a| a.get(name))
            .and_then(|v| v.string_value.clone())
    };
    let system =
        |name: MessageSystemAttributeName| m.attributes().and_then(|a| a.get(&name)).cloned();
    let sent_ms: i64 = system(MessageSystemAttributeName::SentTimestamp)
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let age = (Utc::now().timestamp_millis() - sent_ms).max(0) as u64;
    let body = m.body.clone().unwrap_or_default();
    let reason = attribute(attr::REASON).unwrap_or_else(|| {
        match serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["requestContext"]["condition"].as_str().map(String::from))
        {
            Some(condition) => format!("Lambda on-failure record: {condition}"),
            None => "moved by the queue's redrive policy (no reason recorded)".into(),
        }
    });
    Letter {
        message_id,
        body,
        reason,
        stage: attribute(attr::STAGE),
        age: Duration::from_millis(age),
        receives: system(MessageSystemAttributeName::ApproximateReceiveCount)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0),
    }
}
