//! Looking into a stack's resources without changing them: every item of a table, every message
//! of a queue (left where it is); and writing raw records onto a stream, as a writer that skips
//! the producer would. What a demo reads back after a run, and what the tests check.

use std::collections::{HashMap, HashSet};

use anyhow::Result;
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::Value;

use herald::aws::dead_letter::attr as dl;

use herald_local::seed::from_item;

/// Every item of a table as plain JSON.
pub async fn scan(dynamodb: &aws_sdk_dynamodb::Client, table: &str) -> Result<Vec<Value>> {
    let items: Vec<HashMap<String, AttributeValue>> = dynamodb
        .scan()
        .table_name(table)
        .into_paginator()
        .items()
        .send()
        .collect::<Result<_, _>>()
        .await?;
    Ok(items.iter().map(from_item).collect())
}

/// One dead letter as read back.
#[derive(Clone, Debug)]
pub struct DeadLetterView {
    /// The message body.
    pub body: String,
    /// `herald.reason`, or `(moved by the redrive policy)` when the queue moved it.
    pub reason: String,
    /// `herald.stage`.
    pub stage: String,
    /// The record it is about ([`herald::aws::dead_letter::letter_identity`]): two letters with one
    /// identity are copies of one.
    pub identity: Option<String>,
}

/// Read every message of a queue without deleting it (visibility timeout 0).
pub async fn peek(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<Vec<DeadLetterView>> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for _ in 0..50 {
        let received = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .visibility_timeout(0)
            .message_attribute_names("All")
            .send()
            .await?
            .messages
            .unwrap_or_default();
        let mut new = 0;
        for m in received {
            if !seen.insert(m.message_id.clone().unwrap_or_default()) {
                continue;
            }
            new += 1;
            let attr = |name: &str| {
                m.message_attributes
                    .as_ref()
                    .and_then(|a| a.get(name))
                    .and_then(|v| v.string_value.clone())
            };
            out.push(DeadLetterView {
                body: m.body.clone().unwrap_or_default(),
                reason: attr(dl::REASON).unwrap_or_else(|| "(moved by the redrive policy)".into()),
                stage: attr(dl::STAGE).unwrap_or_default(),
                identity: crate::redrive::identity(&m),
            });
        }
        if new == 0 {
            break;
        }
    }
    Ok(out)
}

/// Put raw records straight onto the stream (a writer that skips the producer).
pub async fn put_raw(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
    records: &[Vec<u8>],
) -> Result<()> {
    for (i, data) in records.iter().enumerate() {
        kinesis
            .put_record()
            .stream_name(stream)
            .partition_key(format!("rogue-{i}"))
            .data(aws_sdk_kinesis::primitives::Blob::new(data.clone()))
            .send()
            .await?;
    }
    Ok(())
}
