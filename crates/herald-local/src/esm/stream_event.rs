//! A stream batch as Lambda's invoke event: `aws:kinesis` records, and `aws:dynamodb` records
//! with their `dynamodb` object in DynamoDB's attribute-value JSON.

use base64::Engine;
use serde_json::{json, Value};

use super::{Context, Payload, StreamRecord};
use crate::stack::StreamMapping;

pub(super) fn stream_event(
    mapping: &StreamMapping,
    ctx: &Context,
    batch: &[StreamRecord],
) -> Value {
    let b64 = base64::engine::general_purpose::STANDARD;
    let records: Vec<Value> = batch
        .iter()
        .map(|r| match &r.payload {
            Payload::DynamoDb {
                event_id,
                event_name,
                change,
            } => json!({
                "eventID": event_id,
                "eventName": event_name,
                "eventVersion": "1.1",
                "eventSource": "aws:dynamodb",
                "awsRegion": ctx.stack.region,
                "dynamodb": change,
                "eventSourceARN": mapping.stream_arn,
            }),
            Payload::Kinesis(data) => json!({
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": r.partition_key,
                    "sequenceNumber": r.sequence_number,
                    "data": b64.encode(data),
                    "approximateArrivalTimestamp": r.arrival.timestamp_millis() as f64 / 1000.0,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": format!("{}:{}", r.shard_id, r.sequence_number),
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": format!("arn:aws:iam::{}:role/herald-local", ctx.stack.account),
                "awsRegion": ctx.stack.region,
                "eventSourceARN": mapping.stream_arn,
            }),
        })
        .collect();
    json!({ "Records": records })
}

/// A DynamoDB stream record's `dynamodb` object in Lambda's JSON.
pub(super) fn dynamodb_change(change: &aws_sdk_dynamodbstreams::types::StreamRecord) -> Value {
    let image = |image: &Option<
        std::collections::HashMap<String, aws_sdk_dynamodbstreams::types::AttributeValue>,
    >| {
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
fn attribute_json(value: &aws_sdk_dynamodbstreams::types::AttributeValue) -> Value {
    use aws_sdk_dynamodbstreams::types::AttributeValue as A;
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
