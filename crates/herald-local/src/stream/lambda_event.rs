//! A batch of stream records as Lambda's invoke event.

use base64::Engine;
use serde_json::{json, Value};

use super::{Payload, Record};

/// Where a batch comes from, as its records name it.
#[derive(Clone, Copy, Debug)]
pub struct EventSource<'a> {
    /// The stream's ARN (`eventSourceARN`).
    pub arn: &'a str,
    /// The region (`awsRegion`).
    pub region: &'a str,
    /// The account whose role reads the stream (`invokeIdentityArn`).
    pub account: &'a str,
}

impl<'a> EventSource<'a> {
    /// The source of `mapping`'s batches in `stack`.
    pub fn of(stack: &'a crate::stack::Stack, mapping: &'a crate::stack::StreamMapping) -> Self {
        EventSource {
            arn: &mapping.stream_arn,
            region: &stack.region,
            account: &stack.account,
        }
    }
}

/// The `{"Records": [...]}` event Lambda invokes a function with for `records`.
pub fn lambda_event(source: EventSource<'_>, records: &[Record]) -> Value {
    let records: Vec<Value> = records.iter().map(|r| record(source, r)).collect();
    json!({ "Records": records })
}

fn record(source: EventSource<'_>, r: &Record) -> Value {
    match &r.payload {
        Payload::DynamoDb {
            event_id,
            event_name,
            change,
        } => json!({
            "eventID": event_id,
            "eventName": event_name,
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": source.region,
            "dynamodb": change,
            "eventSourceARN": source.arn,
        }),
        Payload::Kinesis(data) => json!({
            "kinesis": {
                "kinesisSchemaVersion": "1.0",
                "partitionKey": r.partition_key,
                "sequenceNumber": r.sequence_number,
                "data": base64::engine::general_purpose::STANDARD.encode(data),
                "approximateArrivalTimestamp": r.arrival.timestamp_millis() as f64 / 1000.0,
            },
            "eventSource": "aws:kinesis",
            "eventVersion": "1.0",
            "eventID": format!("{}:{}", r.shard_id, r.sequence_number),
            "eventName": "aws:kinesis:record",
            "invokeIdentityArn": format!("arn:aws:iam::{}:role/herald-local", source.account),
            "awsRegion": source.region,
            "eventSourceARN": source.arn,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kinesis_record_reads_back_as_lambdas_kinesis_event() {
        let arrival = chrono::DateTime::from_timestamp_millis(1_795_687_200_123).unwrap();
        let record = Record {
            shard_id: "shardId-000000000001".into(),
            sequence_number: "4960".into(),
            partition_key: "order-1".into(),
            arrival,
            payload: Payload::Kinesis(b"{\"id\":1}".to_vec()),
        };
        let source = EventSource {
            arn: "arn:aws:kinesis:us-east-1:123456789012:stream/events",
            region: "us-east-1",
            account: "123456789012",
        };
        let event: aws_lambda_events::event::kinesis::KinesisEvent =
            serde_json::from_value(lambda_event(source, &[record])).unwrap();
        let read = &event.records[0];
        assert_eq!(read.kinesis.data.0, b"{\"id\":1}");
        assert_eq!(read.kinesis.partition_key, "order-1");
        assert_eq!(read.kinesis.sequence_number, "4960");
        assert_eq!(read.kinesis.approximate_arrival_timestamp.0, arrival);
        assert_eq!(read.event_id.as_deref(), Some("shardId-000000000001:4960"));
        assert_eq!(read.event_source_arn.as_deref(), Some(source.arn));
    }
}
