//! What the router reads: a Kinesis batch as [`RecordRef`]s, from Lambda's full event type or the
//! lean [`KinesisBatch`] that decodes only the fields the router needs.

use std::fmt;
use std::ops::Range;

use aws_lambda_events::event::kinesis::KinesisEvent;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
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
/// parsing. Every record's data is base64-decoded (SIMD) straight from the input into one buffer
/// and its text fields into another, so a batch of any size costs a handful of allocations
/// instead of five per record.
#[derive(Clone, Debug, Default)]
pub struct KinesisBatch {
    /// Every record's decoded data, back to back.
    data: Vec<u8>,
    /// Every record's text fields, back to back.
    text: String,
    records: Vec<Packed>,
}

/// One record: where its parts are in the batch's buffers.
#[derive(Clone, Debug)]
struct Packed {
    data: Range<usize>,
    sequence_number: Range<usize>,
    partition_key: Range<usize>,
    event_id: Option<Range<usize>>,
    event_source_arn: Option<Range<usize>>,
    arrival: Option<f64>,
}

impl KinesisBatch {
    /// Records in the batch.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Record `i`, if there is one.
    pub fn get(&self, i: usize) -> Option<RecordRef<'_>> {
        self.records.get(i).map(|r| self.view(r))
    }

    /// The records, in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = RecordRef<'_>> + '_ {
        self.records.iter().map(|r| self.view(r))
    }

    fn view(&self, r: &Packed) -> RecordRef<'_> {
        let text = |range: &Range<usize>| &self.text[range.clone()];
        RecordRef {
            data: &self.data[r.data.clone()],
            sequence_number: text(&r.sequence_number),
            partition_key: text(&r.partition_key),
            event_source_arn: r.event_source_arn.as_ref().map(text),
            event_id: r.event_id.as_ref().map(text),
            arrival: r.arrival,
        }
    }
}

impl KinesisRecords for KinesisBatch {
    fn len(&self) -> usize {
        self.records.len()
    }
    fn record(&self, i: usize) -> RecordRef<'_> {
        self.view(&self.records[i])
    }
}

// The `Deserialize` below is written by hand (not derived) so that each field lands in the
// batch's buffers as it is read: the derived form needs a `String` or `Vec` per field. It reads
// what the derived form read: the same fields, the same defaults (`Records`, `partitionKey`,
// `eventID`, `eventSourceARN`, `approximateArrivalTimestamp` may be absent; `null` counts as
// absent for the optional ones), and rejects the same inputs (a missing or duplicate field, a
// value of the wrong type, data that is not padded standard base64).

impl<'de> Deserialize<'de> for KinesisBatch {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_struct("KinesisBatch", BATCH_FIELDS, BatchVisitor)
    }
}

const BATCH_FIELDS: &[&str] = &["Records"];
const RECORD_FIELDS: &[&str] = &["eventID", "eventSourceARN", "kinesis"];
const KINESIS_FIELDS: &[&str] = &[
    "sequenceNumber",
    "partitionKey",
    "data",
    "approximateArrivalTimestamp",
];

/// A key of a map: its position in `fields`, or `None` for a key the router skips. (Read as a
/// `str`: as bytes it would skip serde_json's UTF-8 check, but lambda_runtime's error path,
/// `Records[0].kinesis.data`, only records keys read as text.)
struct Field(&'static [&'static str]);

impl<'de> DeserializeSeed<'de> for Field {
    type Value = Option<usize>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_identifier(self)
    }
}

impl Visitor<'_> for Field {
    type Value = Option<usize>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E: de::Error>(self, name: &str) -> Result<Self::Value, E> {
        self.visit_bytes(name.as_bytes())
    }
    fn visit_bytes<E: de::Error>(self, name: &[u8]) -> Result<Self::Value, E> {
        // Lengths first: most keys are told apart without comparing a byte.
        Ok(self
            .0
            .iter()
            .position(|field| field.len() == name.len() && field.as_bytes() == name))
    }
}

/// Marks field `i` of `fields` as read; a second time is an error, as with derived types.
fn first_time<E: de::Error>(seen: &mut u8, i: usize, fields: &[&'static str]) -> Result<(), E> {
    if *seen & (1 << i) != 0 {
        return Err(E::duplicate_field(fields[i]));
    }
    *seen |= 1 << i;
    Ok(())
}

struct BatchVisitor;

impl<'de> Visitor<'de> for BatchVisitor {
    type Value = KinesisBatch;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("struct KinesisBatch")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<KinesisBatch, A::Error> {
        let mut batch = KinesisBatch::default();
        let mut seen = 0;
        while let Some(field) = map.next_key_seed(Field(BATCH_FIELDS))? {
            match field {
                Some(i) => {
                    first_time(&mut seen, i, BATCH_FIELDS)?;
                    map.next_value_seed(Records(&mut batch))?;
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(batch)
    }
}

/// The `Records` array, appended to the batch.
struct Records<'b>(&'b mut KinesisBatch);

impl<'de> DeserializeSeed<'de> for Records<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Records<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a sequence")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if let Some(n) = seq.size_hint() {
            self.0.records.reserve(n);
        }
        while let Some(record) = seq.next_element_seed(Record(&mut *self.0))? {
            self.0.records.push(record);
        }
        Ok(())
    }
}

/// One record of `Records`; its data and text go to the batch's buffers.
struct Record<'b>(&'b mut KinesisBatch);

impl<'de> DeserializeSeed<'de> for Record<'_> {
    type Value = Packed;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Packed, D::Error> {
        deserializer.deserialize_struct("KinesisBatchRecord", RECORD_FIELDS, self)
    }
}

impl<'de> Visitor<'de> for Record<'_> {
    type Value = Packed;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("struct KinesisBatchRecord")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Packed, A::Error> {
        let batch = self.0;
        let (mut event_id, mut event_source_arn, mut kinesis) = (None, None, None);
        let mut seen = 0;
        while let Some(field) = map.next_key_seed(Field(RECORD_FIELDS))? {
            let Some(i) = field else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            first_time(&mut seen, i, RECORD_FIELDS)?;
            match i {
                0 => event_id = map.next_value_seed(OptionalText(&mut batch.text))?,
                1 => {
                    event_source_arn = map.next_value_seed(OptionalText(&mut batch.text))?;
                    // A batch comes from one stream: keep its ARN once.
                    if let (Some(arn), Some(previous)) = (
                        &mut event_source_arn,
                        batch
                            .records
                            .last()
                            .and_then(|r| r.event_source_arn.clone()),
                    ) {
                        if batch.text[arn.clone()] == batch.text[previous.clone()] {
                            batch.text.truncate(arn.start);
                            *arn = previous;
                        }
                    }
                }
                _ => kinesis = Some(map.next_value_seed(Kinesis(batch))?),
            }
        }
        let kinesis = kinesis.ok_or_else(|| de::Error::missing_field("kinesis"))?;
        Ok(Packed {
            event_id,
            event_source_arn,
            ..kinesis
        })
    }
}

/// The `kinesis` object of a record.
struct Kinesis<'b>(&'b mut KinesisBatch);

impl<'de> DeserializeSeed<'de> for Kinesis<'_> {
    type Value = Packed;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Packed, D::Error> {
        deserializer.deserialize_struct("KinesisBatchData", KINESIS_FIELDS, self)
    }
}

impl<'de> Visitor<'de> for Kinesis<'_> {
    type Value = Packed;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("struct KinesisBatchData")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Packed, A::Error> {
        let batch = self.0;
        let (mut sequence_number, mut partition_key, mut data, mut arrival) =
            (None, None, None, None);
        let mut seen = 0;
        while let Some(field) = map.next_key_seed(Field(KINESIS_FIELDS))? {
            let Some(i) = field else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            first_time(&mut seen, i, KINESIS_FIELDS)?;
            match i {
                0 => sequence_number = Some(map.next_value_seed(Text(&mut batch.text))?),
                1 => partition_key = Some(map.next_value_seed(Text(&mut batch.text))?),
                2 => data = Some(map.next_value_seed(Base64(&mut batch.data))?),
                _ => arrival = map.next_value_seed(Seconds)?,
            }
        }
        let at_end = batch.text.len();
        Ok(Packed {
            data: data.ok_or_else(|| de::Error::missing_field("data"))?,
            sequence_number: sequence_number
                .ok_or_else(|| de::Error::missing_field("sequenceNumber"))?,
            partition_key: partition_key.unwrap_or(at_end..at_end),
            event_id: None,
            event_source_arn: None,
            arrival,
        })
    }
}

/// A string, appended to the batch's text.
struct Text<'b>(&'b mut String);

impl<'de> DeserializeSeed<'de> for Text<'_> {
    type Value = Range<usize>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for Text<'_> {
    type Value = Range<usize>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        let start = self.0.len();
        self.0.push_str(text);
        Ok(start..self.0.len())
    }
}

/// A string or `null`.
struct OptionalText<'b>(&'b mut String);

impl<'de> DeserializeSeed<'de> for OptionalText<'_> {
    type Value = Option<Range<usize>>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for OptionalText<'_> {
    type Value = Option<Range<usize>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string or null")
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        Text(self.0).deserialize(deserializer).map(Some)
    }
}

/// Padded standard base64, decoded onto the batch's data. Read as bytes: the text is checked
/// by the decoder, so a UTF-8 check of it first would be wasted.
struct Base64<'b>(&'b mut Vec<u8>);

impl<'de> DeserializeSeed<'de> for Base64<'_> {
    type Value = Range<usize>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_bytes(self)
    }
}

impl Visitor<'_> for Base64<'_> {
    type Value = Range<usize>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("base64 text")
    }
    fn visit_bytes<E: de::Error>(self, text: &[u8]) -> Result<Self::Value, E> {
        let start = self.0.len();
        base64_simd::STANDARD
            .decode_append(text, self.0)
            .map_err(|_| E::custom("the record's data is not padded standard base64"))?;
        Ok(start..self.0.len())
    }
    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        self.visit_bytes(text.as_bytes())
    }
}

/// When Kinesis took the record (seconds since the epoch): a number, or text holding one;
/// anything else reads as unknown rather than failing the batch.
struct Seconds;

impl<'de> DeserializeSeed<'de> for Seconds {
    type Value = Option<f64>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        Ok(deserializer
            .deserialize_any(self)?
            .filter(|t| t.is_finite() && *t > 0.0))
    }
}

impl<'de> Visitor<'de> for Seconds {
    type Value = Option<f64>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("seconds since the epoch")
    }
    fn visit_f64<E: de::Error>(self, t: f64) -> Result<Self::Value, E> {
        Ok(Some(t))
    }
    fn visit_u64<E: de::Error>(self, t: u64) -> Result<Self::Value, E> {
        Ok(Some(t as f64))
    }
    fn visit_i64<E: de::Error>(self, t: i64) -> Result<Self::Value, E> {
        Ok(Some(t as f64))
    }
    fn visit_str<E: de::Error>(self, t: &str) -> Result<Self::Value, E> {
        Ok(t.trim().parse().ok())
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(None)
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

    /// Lambda's runtime reads the event through serde_path_to_error: the batch reads the same.
    #[test]
    fn the_batch_reads_the_same_through_lambdas_deserializer() {
        let text = include_str!("../../../../events/router/kinesis.json");
        let plain: KinesisBatch = serde_json::from_str(text).unwrap();
        let mut json = serde_json::Deserializer::from_str(text);
        let lambda: KinesisBatch = serde_path_to_error::deserialize(&mut json).unwrap();
        assert_eq!(plain.len(), 3);
        assert_eq!(plain.len(), lambda.len());
        for (a, b) in plain.iter().zip(lambda.iter()) {
            assert_eq!(
                (
                    a.data,
                    a.sequence_number,
                    a.partition_key,
                    a.event_id,
                    a.event_source_arn,
                    a.arrival
                ),
                (
                    b.data,
                    b.sequence_number,
                    b.partition_key,
                    b.event_id,
                    b.event_source_arn,
                    b.arrival
                )
            );
        }
        let bad = text.replacen("\"data\": \"", "\"data\": \"!!", 1);
        let mut json = serde_json::Deserializer::from_str(&bad);
        let err = serde_path_to_error::deserialize::<_, KinesisBatch>(&mut json).unwrap_err();
        assert_eq!(err.path().to_string(), "Records[0].kinesis.data");
    }

    fn record(data: &str) -> serde_json::Value {
        serde_json::json!({"kinesis": {"sequenceNumber": "1", "data": data}})
    }

    #[test]
    fn the_lean_batch_rejects_what_the_derived_form_rejected() {
        let batch = |value: serde_json::Value| {
            let text = value.to_string();
            let from_text = serde_json::from_str::<KinesisBatch>(&text).map(|b| b.len());
            let from_value = serde_json::from_value::<KinesisBatch>(value).map(|b| b.len());
            assert_eq!(from_text.is_ok(), from_value.is_ok(), "{text}");
            from_text.map_err(|e| e.to_string())
        };
        use serde_json::json;
        assert_eq!(batch(json!({})), Ok(0));
        assert_eq!(
            batch(json!({"Records": [record("e30="), record("")]})),
            Ok(2)
        );
        let missing = batch(json!({"Records": [{"kinesis": {"data": "e30="}}]}));
        assert!(missing
            .unwrap_err()
            .contains("missing field `sequenceNumber`"));
        let missing = batch(json!({"Records": [{"eventID": "x"}]}));
        assert!(missing.unwrap_err().contains("missing field `kinesis`"));
        let twice =
            r#"{"Records": [{"kinesis": {"sequenceNumber": "1", "data": "", "data": ""}}]}"#;
        let err = serde_json::from_str::<KinesisBatch>(twice).unwrap_err();
        assert!(err.to_string().contains("duplicate field `data`"), "{err}");
        assert!(batch(json!({"Records": null})).is_err());
        assert!(
            batch(json!({"Records": [{"kinesis": {"sequenceNumber": 1, "data": ""}}]})).is_err()
        );
        assert!(
            batch(json!({"Records": [{"kinesis": {"sequenceNumber": "1", "data": [1]}}]})).is_err()
        );
        // `null` is absent for the optional text fields, and a wrong type for the others.
        let nulls = json!({"Records": [{"eventID": null, "eventSourceARN": null,
            "kinesis": {"sequenceNumber": "1", "data": "", "approximateArrivalTimestamp": null}}]});
        assert_eq!(batch(nulls), Ok(1));
        assert!(batch(json!({"Records": [{"kinesis": {"sequenceNumber": "1", "partitionKey": null, "data": ""}}]})).is_err());
    }

    #[test]
    fn records_keep_their_own_fields_in_the_shared_buffers() {
        use base64::Engine;
        let records: Vec<serde_json::Value> = (0..5)
            .map(|i| {
                serde_json::json!({
                    "eventID": format!("shardId-000000000000:{i}"),
                    "eventSourceARN": if i == 3 { "arn:other" } else { "arn:stream" },
                    "kinesis": {
                        "sequenceNumber": format!("{i}"),
                        "partitionKey": format!("key-{i}"),
                        "data": base64::engine::general_purpose::STANDARD.encode(format!("record {i}")),
                    },
                })
            })
            .collect();
        let batch: KinesisBatch =
            serde_json::from_str(&serde_json::json!({ "Records": records }).to_string()).unwrap();
        assert_eq!(batch.len(), 5);
        for (i, r) in batch.iter().enumerate() {
            assert_eq!(r.data, format!("record {i}").as_bytes());
            assert_eq!(r.sequence_number, i.to_string());
            assert_eq!(r.partition_key, format!("key-{i}"));
            assert_eq!(
                r.event_id,
                Some(format!("shardId-000000000000:{i}").as_str())
            );
            assert_eq!(
                r.event_source_arn,
                Some(if i == 3 { "arn:other" } else { "arn:stream" })
            );
            assert_eq!(r.arrival, None);
        }
        assert_eq!(batch.get(5).map(|r| r.sequence_number), None);
    }

    /// The SIMD decoder accepts exactly what the `base64` crate's padded standard engine accepts,
    /// and decodes it the same.
    #[test]
    fn simd_base64_agrees_with_the_base64_crate() {
        use base64::Engine;
        let engine = base64::engine::general_purpose::STANDARD;
        let mut rng = 0x2545f4914f6cdd1du64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_ \n";
        for round in 0..20_000 {
            let len = (next() % 80) as usize;
            let text: Vec<u8> = if round % 2 == 0 {
                // Valid encodings, some with one byte changed.
                let raw: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                let mut text = engine.encode(raw).into_bytes();
                if round % 4 == 0 && !text.is_empty() {
                    let at = (next() as usize) % text.len();
                    text[at] = alphabet[(next() as usize) % alphabet.len()];
                }
                text
            } else {
                (0..len)
                    .map(|_| alphabet[(next() as usize) % alphabet.len()])
                    .collect()
            };
            let mut simd = vec![7u8];
            let simd = base64_simd::STANDARD
                .decode_append(&text, &mut simd)
                .map(|()| simd[1..].to_vec());
            let scalar = engine.decode(&text);
            assert_eq!(
                simd.ok(),
                scalar.ok(),
                "{:?}",
                String::from_utf8_lossy(&text)
            );
        }
    }
}
