//! What the router reads: a Kinesis batch as [`RecordRef`]s, from Lambda's full event type or the
//! lean [`KinesisBatch`] that decodes only the fields the router needs.

use aws_lambda_events::event::kinesis::KinesisEvent;
use serde::Deserialize;

/// One Kinesis record as the router reads it.
#[derive(Clone, Copy, Debug)]
pub struct RecordRef<'a> {
    /// The record's data (the envelope).
    pub data: &'a [u8],
    /// Its sequence number (what a batch item failure names).
    pub sequence_number: &'a str,
    /// Its partition key.
    pub partition_key: &'a str,
    /// The stream ARN.
    pub event_source_arn: Option<&'a str>,
    /// `shardId:sequenceNumber`.
    pub event_id: Option<&'a str>,
    /// When Kinesis took the record (seconds since the epoch), if the event says.
    pub arrival: Option<f64>,
}

/// A Kinesis batch the router can route: Lambda's full event type, or the lean [`KinesisBatch`].
pub trait KinesisRecords {
    /// Records in the batch.
    fn len(&self) -> usize;
    /// Whether the batch is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Record `i` (< `len()`).
    fn record(&self, i: usize) -> RecordRef<'_>;
}

impl KinesisRecords for KinesisEvent {
    fn len(&self) -> usize {
        self.records.len()
    }
    fn record(&self, i: usize) -> RecordRef<'_> {
        let r = &self.records[i];
        RecordRef {
            data: &r.kinesis.data.0,
            sequence_number: &r.kinesis.sequence_number,
            partition_key: &r.kinesis.partition_key,
            event_source_arn: r.event_source_arn.as_deref(),
            event_id: r.event_id.as_deref(),
            arrival: Some(
                r.kinesis.approximate_arrival_timestamp.0.timestamp_millis() as f64 / 1000.0,
            )
            .filter(|t| *t > 0.0),
        }
    }
}

/// Lambda's Kinesis event with only the fields the router reads; the others are skipped while
/// parsing, and the base64 data is decoded straight from the input. On the hot path this halves
/// the allocations of `aws_lambda_events`' full type.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct KinesisBatch {
    /// The records.
    #[serde(rename = "Records", default)]
    pub records: Vec<KinesisBatchRecord>,
}

/// One record of a [`KinesisBatch`].
#[derive(Clone, Debug, Deserialize)]
pub struct KinesisBatchRecord {
    /// `shardId:sequenceNumber`.
    #[serde(rename = "eventID", default)]
    pub event_id: Option<String>,
    /// The stream ARN.
    #[serde(rename = "eventSourceARN", default)]
    pub event_source_arn: Option<String>,
    /// The Kinesis part.
    pub kinesis: KinesisBatchData,
}

/// The `kinesis` object of a record.
#[derive(Clone, Debug, Deserialize)]
pub struct KinesisBatchData {
    /// Sequence number.
    #[serde(rename = "sequenceNumber")]
    pub sequence_number: String,
    /// Partition key.
    #[serde(rename = "partitionKey", default)]
    pub partition_key: String,
    /// The data, base64-decoded.
    #[serde(deserialize_with = "base64_data")]
    pub data: Vec<u8>,
    /// When Kinesis took the record (seconds since the epoch). A number, or text holding one;
    /// anything else reads as unknown rather than failing the batch.
    #[serde(
        rename = "approximateArrivalTimestamp",
        default,
        deserialize_with = "lenient_seconds"
    )]
    pub approximate_arrival_timestamp: Option<f64>,
}

fn base64_data<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
    struct Base64;
    impl serde::de::Visitor<'_> for Base64 {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("base64 text")
        }
        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Vec<u8>, E> {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(E::custom)
        }
    }
    deserializer.deserialize_str(Base64)
}

fn lenient_seconds<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<f64>, D::Error> {
    Ok(match serde_json::Value::deserialize(deserializer)? {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|t: &f64| t.is_finite() && *t > 0.0))
}

impl KinesisRecords for KinesisBatch {
    fn len(&self) -> usize {
        self.records.len()
    }
    fn record(&self, i: usize) -> RecordRef<'_> {
        let r = &self.records[i];
        RecordRef {
            data: &r.kinesis.data,
            sequence_number: &r.kinesis.sequence_number,
            partition_key: &r.kinesis.partition_key,
            event_source_arn: r.event_source_arn.as_deref(),
            event_id: r.event_id.as_deref(),
            arrival: r.kinesis.approximate_arrival_timestamp,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lean_batch_reads_what_lambdas_full_event_type_reads() {
        let text = include_str!("../../../../events/router/kinesis.json");
        let full: KinesisEvent = serde_json::from_str(text).unwrap();
        let lean: KinesisBatch = serde_json::from_str(text).unwrap();
        assert_eq!(full.len(), lean.len());
        for i in 0..full.len() {
            let (a, b) = (full.record(i), lean.record(i));
            assert_eq!(a.data, b.data);
            assert_eq!(a.sequence_number, b.sequence_number);
            assert_eq!(a.partition_key, b.partition_key);
            assert_eq!(a.event_source_arn, b.event_source_arn);
            assert_eq!(a.event_id, b.event_id);
            assert!((a.arrival.unwrap() - b.arrival.unwrap()).abs() < 0.002);
        }
        let quoted = text.replacen(
            "\"approximateArrivalTimestamp\": 1795687200.123",
            "\"approximateArrivalTimestamp\": \"1795687200.5\"",
            1,
        );
        let lean: KinesisBatch = serde_json::from_str(&quoted).unwrap();
        assert_eq!(lean.record(0).arrival, Some(1795687200.5));
        let odd = text.replacen(
            "\"approximateArrivalTimestamp\": 1795687200.123",
            "\"approximateArrivalTimestamp\": [true]",
            1,
        );
        let lean: KinesisBatch = serde_json::from_str(&odd).unwrap();
        assert_eq!(lean.record(0).arrival, None);
        let bad = text.replacen("\"data\": \"", "\"data\": \"!!", 1);
        assert!(serde_json::from_str::<KinesisBatch>(&bad).is_err());
    }
}
