//! The DynamoDB Streams side of [`super::Stream`].

use anyhow::{anyhow, Result};
use aws_sdk_dynamodbstreams::types::{AttributeValue, KeyType, ShardIteratorType};
use aws_sdk_dynamodbstreams::Client;
use base64::Engine;
use chrono::Utc;
use serde_json::{json, Value};

use super::{sdk_error, utc, Listing, Page, Payload, Position, Record, Shard};

pub(super) async fn identity(client: &Client, arn: &str) -> Result<String> {
    let created = client
        .describe_stream()
        .stream_arn(arn)
        .limit(1)
        .send()
        .await
        .map_err(sdk_error)?
        .stream_description
        .and_then(|d| d.creation_request_date_time)
        .map(|t| format!("{}.{:09}", t.secs(), t.subsec_nanos()))
        .unwrap_or_default();
    Ok(format!("{arn}@{created}"))
}

pub(super) async fn shards(client: &Client, arn: &str) -> Result<Listing> {
    let mut listing = Listing::default();
    let mut start: Option<String> = None;
    loop {
        let out = client
            .describe_stream()
            .stream_arn(arn)
            .set_exclusive_start_shard_id(start.take())
            .send()
            .await
            .map_err(sdk_error)?;
        let Some(description) = out.stream_description else {
            return Ok(listing);
        };
        listing.hash_key = description
            .key_schema()
            .iter()
            .find(|k| k.key_type == KeyType::Hash)
            .map(|k| k.attribute_name.clone())
            .or(listing.hash_key);
        listing
            .shards
            .extend(description.shards().iter().filter_map(|s| {
                Some(Shard {
                    id: s.shard_id.clone()?,
                    parents: s.parent_shard_id.iter().cloned().collect(),
                    closed: s
                        .sequence_number_range
                        .as_ref()
                        .is_some_and(|r| r.ending_sequence_number.is_some()),
                })
            }));
        start = description.last_evaluated_shard_id;
        if start.is_none() {
            return Ok(listing);
        }
    }
}

pub(super) async fn iterator(
    client: &Client,
    arn: &str,
    shard: &str,
    position: &Position,
) -> Result<String> {
    let request = client.get_shard_iterator().stream_arn(arn).shard_id(shard);
    let request = match position {
        Position::At(at) => request
            .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
            .sequence_number(at),
        Position::After(after) => request
            .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
            .sequence_number(after),
        Position::Latest => request.shard_iterator_type(ShardIteratorType::Latest),
        // No AT_TIMESTAMP here: the reader skips older records (Position::skips_before).
        Position::TrimHorizon | Position::AtMillis(_) => {
            request.shard_iterator_type(ShardIteratorType::TrimHorizon)
        }
    };
    request
        .send()
        .await
        .map_err(sdk_error)?
        .shard_iterator
        .ok_or_else(|| anyhow!("GetShardIterator answered no iterator"))
}

pub(super) async fn read(
    client: &Client,
    shard: &str,
    iterator: &str,
    limit: i32,
    hash_key: Option<&str>,
) -> Result<Page> {
    let out = client
        .get_records()
        .shard_iterator(iterator)
        // DynamoDB Streams answers at most 1,000 records a call.
        .limit(limit.min(1000))
        .send()
        .await
        .map_err(sdk_error)?;
    let records = out
        .records
        .unwrap_or_default()
        .into_iter()
        .filter_map(|r| {
            let change = r.dynamodb?;
            let sequence_number = change.sequence_number.clone()?;
            Some(Record {
                shard_id: shard.to_string(),
                sequence_number,
                partition_key: partition_key(&change, hash_key),
                arrival: change
                    .approximate_creation_date_time
                    .and_then(utc)
                    .unwrap_or_else(Utc::now),
                payload: Payload::DynamoDb {
                    event_id: r.event_id.unwrap_or_default(),
                    event_name: r
                        .event_name
                        .map(|n| n.as_str().to_string())
                        .unwrap_or_default(),
                    change: change_json(&change),
                },
            })
        })
        .collect();
    Ok(Page {
        millis_behind: 0,
        next_iterator: out.next_shard_iterator,
        records,
    })
}

/// The item's partition key value: one partition's records stay in one lane.
fn partition_key(
    change: &aws_sdk_dynamodbstreams::types::StreamRecord,
    hash_key: Option<&str>,
) -> String {
    change
        .keys
        .as_ref()
        .and_then(|keys| match hash_key {
            Some(name) => keys.get(name),
            None => keys.iter().min_by_key(|(k, _)| k.as_str()).map(|(_, v)| v),
        })
        .map(|v| match v {
            AttributeValue::S(s) => s.clone(),
            AttributeValue::N(n) => n.clone(),
            other => format!("{other:?}"),
        })
        .unwrap_or_default()
}

/// A DynamoDB stream record's `dynamodb` object in Lambda's JSON.
fn change_json(change: &aws_sdk_dynamodbstreams::types::StreamRecord) -> Value {
    let image = |image: &Option<std::collections::HashMap<String, AttributeValue>>| {
        image.as_ref().map(|i| {
            Value::Object(
                i.iter()
                    .map(|(k, v)| (k.clone(), attribute_json(v)))
                    .collect(),
            )
        })
    };
    let mut out = serde_json::Map::new();
    if let Some(t) = change.approximate_creation_date_time {
        out.insert("ApproximateCreationDateTime".into(), json!(t.secs()));
    }
    for (name, value) in [
        ("Keys", image(&change.keys)),
        ("NewImage", image(&change.new_image)),
        ("OldImage", image(&change.old_image)),
    ] {
        if let Some(value) = value {
            out.insert(name.into(), value);
        }
    }
    out.insert("SequenceNumber".into(), json!(change.sequence_number));
    if let Some(size) = change.size_bytes {
        out.insert("SizeBytes".into(), json!(size));
    }
    if let Some(view) = &change.stream_view_type {
        out.insert("StreamViewType".into(), json!(view.as_str()));
    }
    Value::Object(out)
}

/// DynamoDB's attribute-value JSON (`{"S": "..."}`, `{"N": "1"}`, ...).
fn attribute_json(value: &AttributeValue) -> Value {
    use AttributeValue as A;
    let b64 = |b: &aws_smithy_types::Blob| {
        Value::String(base64::engine::general_purpose::STANDARD.encode(b.as_ref()))
    };
    match value {
        A::S(s) => json!({ "S": s }),
        A::N(n) => json!({ "N": n }),
        A::B(b) => json!({ "B": b64(b) }),
        A::Bool(b) => json!({ "BOOL": b }),
        A::Null(b) => json!({ "NULL": b }),
        A::Ss(v) => json!({ "SS": v }),
        A::Ns(v) => json!({ "NS": v }),
        A::Bs(v) => json!({ "BS": v.iter().map(b64).collect::<Vec<_>>() }),
        A::L(v) => json!({ "L": v.iter().map(attribute_json).collect::<Vec<_>>() }),
        A::M(m) => {
            json!({ "M": m.iter().map(|(k, v)| (k.clone(), attribute_json(v))).collect::<serde_json::Map<_, _>>() })
        }
        _ => Value::Null,
    }
}
