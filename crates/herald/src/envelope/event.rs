//! The [`Envelope`] type: its attributes, getters, structured-mode JSON and the two parsers.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::Value;

use super::parse::{check_size, Defaults, Wire};
use super::{EventKind, ValidationError};

/// An immutable event. Build one with [`Envelope::builder`], or parse one with
/// [`Envelope::parse`] / [`Envelope::parse_submission`]; there are getters but no setters.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Envelope {
    pub(super) specversion: &'static str,
    pub(super) id: String,
    pub(super) source: String,
    #[serde(rename = "type")]
    pub(super) event_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) subject: Option<String>,
    #[serde(serialize_with = "serialize_time")]
    pub(super) time: DateTime<Utc>,
    pub(super) datacontenttype: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) dataschema: Option<String>,
    pub(super) kind: EventKind,
    pub(super) schemaversion: u32,
    pub(super) correlationid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) causationid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) aggregateversion: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) partitionkey: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) data: Option<Value>,
}

/// serde_json's compact form with U+FFFE and U+FFFF escaped (JSON allows both forms; SQS and
/// SNS take only the escaped one).
struct SqsSafe;

impl serde_json::ser::Formatter for SqsSafe {
    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        // Both start with the byte 0xEF, which is rare: the common fragment goes out whole.
        if !fragment.as_bytes().contains(&0xEF) {
            return writer.write_all(fragment.as_bytes());
        }
        let mut rest = fragment;
        while let Some(at) = rest.find(['\u{FFFE}', '\u{FFFF}']) {
            writer.write_all(&rest.as_bytes()[..at])?;
            let c = rest[at..].chars().next().unwrap_or_default();
            write!(writer, "\\u{:04x}", u32::from(c))?;
            rest = &rest[at + c.len_utf8()..];
        }
        writer.write_all(rest.as_bytes())
    }
}

fn serialize_time<S: Serializer>(time: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&time.to_rfc3339_opts(SecondsFormat::Millis, true))
}

impl<'de> Deserialize<'de> for Envelope {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(d)?;
        Envelope::parse(raw.get().as_bytes()).map_err(serde::de::Error::custom)
    }
}

impl Envelope {
    /// Parse a complete envelope (strict: nothing is defaulted). Used on what was already
    /// accepted by a producer: stream records and queue messages.
    pub fn parse(bytes: &[u8]) -> Result<Envelope, ValidationError> {
        check_size(bytes.len())?;
        let wire = Wire::from_slice(bytes)?;
        let header = wire.header(Defaults::None)?;
        let data = match wire.data {
            None => None,
            Some(raw) => Some(
                serde_json::from_str(raw).map_err(|e| ValidationError::NotJson(e.to_string()))?,
            ),
        };
        Ok(header.into_envelope(data))
    }

    /// Parse what a client submitted to the producer, filling the attributes a client may omit:
    /// `id` (a new UUIDv7), `time` (now), `specversion` (1.0), `kind` (business),
    /// `schemaversion` (1), `correlationid` (the event's own id), `datacontenttype` (JSON).
    pub fn parse_submission(value: &Value) -> Result<Envelope, ValidationError> {
        Envelope::parse_submission_as(value, EventKind::Business)
    }

    /// [`Envelope::parse_submission`], with `kind` for a submission that names none (the
    /// producer passes its catalog's kind for the submitted type, so a data event need not say
    /// `"kind": "data"` every time).
    pub fn parse_submission_as(
        value: &Value,
        kind: EventKind,
    ) -> Result<Envelope, ValidationError> {
        let bytes =
            serde_json::to_vec(value).map_err(|e| ValidationError::NotJson(e.to_string()))?;
        let wire = Wire::from_slice(&bytes)?;
        let header = wire.header(Defaults::Submission { kind })?;
        let data = value.get("data").filter(|d| !d.is_null()).cloned();
        let envelope = header.into_envelope(data);
        // The size that counts is the envelope as it will travel, with the defaults filled in.
        check_size(envelope.encoded_len())?;
        Ok(envelope)
    }

    /// The event id (unique per `source`).
    pub fn id(&self) -> &str {
        &self.id
    }
    /// Where the event happened (a URI reference such as `herald/users`).
    pub fn source(&self) -> &str {
        &self.source
    }
    /// What happened (`user_signed_up`).
    pub fn event_type(&self) -> &str {
        &self.event_type
    }
    /// The aggregate the event is about (`user-1001`); the Kinesis partition key.
    pub fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }
    /// When it happened.
    pub fn time(&self) -> DateTime<Utc> {
        self.time
    }
    /// The content type of `data` (always JSON).
    pub fn datacontenttype(&self) -> &str {
        self.datacontenttype
    }
    /// A URI of the schema `data` adheres to, if the producer named one.
    pub fn dataschema(&self) -> Option<&str> {
        self.dataschema.as_deref()
    }
    /// Business, system or data.
    pub fn kind(&self) -> EventKind {
        self.kind
    }
    /// The version of this event type's schema.
    pub fn schema_version(&self) -> u32 {
        self.schemaversion
    }
    /// The business transaction this event belongs to (the first event's id).
    pub fn correlation_id(&self) -> &str {
        &self.correlationid
    }
    /// Extension `aggregateversion`: the event's version within its aggregate (`subject`), set
    /// by the event store when the event is appended (1, 2, ...). Consumers that keep state per
    /// aggregate use it to ignore stale and out-of-order deliveries.
    pub fn aggregate_version(&self) -> Option<u64> {
        self.aggregateversion
    }

    /// The id of the event that caused this one, if any.
    pub fn causation_id(&self) -> Option<&str> {
        self.causationid.as_deref()
    }
    /// The payload.
    pub fn data(&self) -> Option<&Value> {
        self.data.as_ref()
    }

    /// Decode the payload into a type; the error names `data` and what was wrong with it.
    pub fn data_as<T: DeserializeOwned>(&self) -> Result<T, ValidationError> {
        let data = self
            .data
            .as_ref()
            .ok_or(ValidationError::Missing { field: "data" })?;
        T::deserialize(data).map_err(|e| ValidationError::Invalid {
            field: "data",
            reason: format!("does not match `{}`: {e}", self.event_type),
        })
    }

    /// The Kinesis partition key: the extension `partitionkey` when set (CloudEvents'
    /// partitioning extension: a wider key that holds the aggregate, such as the customer of an
    /// order, so that a consumer of the stream sees all of it on one shard), else the aggregate
    /// (`subject`) so that one aggregate's events stay in order on one shard; events about no
    /// aggregate spread by id.
    pub fn partition_key(&self) -> &str {
        self.partitionkey
            .as_deref()
            .or(self.subject.as_deref())
            .unwrap_or(&self.id)
    }

    /// The extension `partitionkey`, when set.
    pub fn partition_key_extension(&self) -> Option<&str> {
        self.partitionkey.as_deref()
    }

    /// The identity CloudEvents defines for an event: `source` + `id`. Redeliveries share it.
    pub fn identity(&self) -> String {
        format!("{}#{}", self.source, self.id)
    }

    /// Structured-mode JSON (U+FFFE and U+FFFF escaped, see [`Envelope::to_json_bytes`]).
    pub fn to_json(&self) -> String {
        String::from_utf8(self.to_json_bytes()).expect("serde_json writes UTF-8")
    }

    /// Structured-mode JSON bytes. The two characters JSON may carry raw but SQS and SNS refuse
    /// in a message, U+FFFE and U+FFFF, are written escaped (`\ufffe`), so any event herald
    /// writes reaches every queue; control characters are escaped by JSON itself.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        let mut serializer = serde_json::Serializer::with_formatter(&mut out, SqsSafe);
        self.serialize(&mut serializer)
            .expect("an envelope always serializes");
        out
    }

    fn encoded_len(&self) -> usize {
        self.to_json_bytes().len()
    }

    /// The same event with its payload at another schema version — what an upcaster returns.
    /// Only [`crate::envelope::upcasting`] builds these: an event's identity and attributes never change.
    pub(crate) fn at_version(&self, schema_version: u32, data: Option<Value>) -> Envelope {
        Envelope {
            schemaversion: schema_version,
            data,
            ..self.clone()
        }
    }

    /// The same event under the id herald gives a client's submission
    /// ([`crate::producer::SubmissionPolicy::event_id`]); a correlation id that defaulted to the
    /// client's id follows it, so that the event still starts its own transaction.
    pub(crate) fn with_client_id(self, id: String) -> Envelope {
        let correlationid = if self.correlationid == self.id {
            id.clone()
        } else {
            self.correlationid
        };
        Envelope {
            id,
            correlationid,
            ..self
        }
    }

    /// The same event stamped with its version in its aggregate — what the event store appends.
    /// Everything else, the id included, stays as it is.
    pub fn with_aggregate_version(self, version: u64) -> Envelope {
        Envelope {
            aggregateversion: Some(version.max(1)),
            ..self
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use uuid::Uuid;

    use super::super::fixtures::{parse, signed_up};
    use super::*;

    #[test]
    fn round_trips_in_structured_mode() {
        let envelope = parse(&signed_up()).unwrap();
        assert_eq!(envelope.id(), "evt-1");
        assert_eq!(envelope.schema_version(), 2);
        assert_eq!(envelope.partition_key(), "user-1");
        let again = Envelope::parse(&envelope.to_json_bytes()).unwrap();
        assert_eq!(envelope, again);
        assert_eq!(serde_json::to_value(&envelope).unwrap(), signed_up());
    }

    #[test]
    fn submissions_get_defaults() {
        let envelope = Envelope::parse_submission(&json!({
            "source": "herald/users",
            "type": "user_signed_up",
            "subject": "user-9",
            "data": {"userId": "user-9"}
        }))
        .unwrap();
        assert_eq!(envelope.kind(), EventKind::Business);
        assert_eq!(envelope.schema_version(), 1);
        assert_eq!(envelope.correlation_id(), envelope.id());
        assert!(Uuid::parse_str(envelope.id()).is_ok());
    }
}
