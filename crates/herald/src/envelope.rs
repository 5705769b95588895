//! The immutable event envelope: CloudEvents 1.0 attributes plus herald's extensions.
//!
//! An [`Envelope`] is serialized in CloudEvents *structured mode* (one JSON object, `data` inline).
//! Two ways in:
//! - [`Envelope::parse`] is strict: every required attribute must be present. The router and the
//!   subscribers use it on what they read from the stream and the queues.
//! - [`Envelope::parse_submission`] is what the producer accepts from clients: it fills the
//!   attributes a client may leave out (`id`, `time`, `specversion`, `kind`, `schemaversion`,
//!   `correlationid`, `datacontenttype`) and then applies the same validation.
//!
//! Every rejection is a [`ValidationError`] that names the attribute and, where there is one, the limit.

use std::borrow::Cow;
use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::Value;
use uuid::Uuid;

use crate::limits::{MAX_ATTRIBUTE_CHARS, MAX_EVENT_BYTES, MAX_TYPE_CHARS};

/// The only CloudEvents version herald speaks.
pub const SPEC_VERSION: &str = "1.0";
/// The only content type herald carries in `data`.
pub const JSON_CONTENT_TYPE: &str = "application/json";

/// The seed's three kinds of events. They travel as the `kind` extension attribute and as an SNS
/// message attribute, so a subscription can ask for, say, only system events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// Something happened in the business domain (`order_placed`, `payment_succeeded`, ...).
    Business,
    /// Something happened to the system itself (`job_failed`, `deployment_finished`, ...).
    System,
    /// A data change notification (a row changed, a file landed).
    Data,
}

impl EventKind {
    /// The wire name (`business`, `system`, `data`).
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Business => "business",
            EventKind::System => "system",
            EventKind::Data => "data",
        }
    }

    fn parse(value: &str) -> Option<Self> {
        match value {
            "business" => Some(EventKind::Business),
            "system" => Some(EventKind::System),
            "data" => Some(EventKind::Data),
            _ => None,
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an envelope was rejected. Every variant names the attribute it is about.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// The bytes are not a JSON object.
    #[error("not a JSON object: {0}")]
    NotJson(String),
    /// A required attribute is absent (or null).
    #[error("`{field}` is required")]
    Missing { field: &'static str },
    /// An attribute has the wrong JSON type.
    #[error("`{field}` must be {expected}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
    },
    /// An attribute is present but empty.
    #[error("`{field}` must not be empty")]
    Empty { field: &'static str },
    /// An attribute is longer than herald allows.
    #[error("`{field}` is {actual} characters; the limit is {limit}")]
    TooLong {
        field: &'static str,
        limit: usize,
        actual: usize,
    },
    /// An attribute's value is not one herald accepts.
    #[error("`{field}` {reason}")]
    Invalid { field: &'static str, reason: String },
    /// The whole encoded event is larger than the pipeline can carry.
    #[error("the event is {actual} bytes; the limit is {limit} bytes (SNS's 256 KiB message limit less room for attributes)")]
    TooLarge { limit: usize, actual: usize },
}

impl ValidationError {
    /// The attribute the error is about (`"event"` for whole-event errors).
    pub fn field(&self) -> &'static str {
        match self {
            ValidationError::NotJson(_) | ValidationError::TooLarge { .. } => "event",
            ValidationError::Missing { field }
            | ValidationError::WrongType { field, .. }
            | ValidationError::Empty { field }
            | ValidationError::TooLong { field, .. }
            | ValidationError::Invalid { field, .. } => field,
        }
    }
}

/// An immutable event. Build one with [`Envelope::builder`], or parse one with
/// [`Envelope::parse`] / [`Envelope::parse_submission`]; there are getters but no setters.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Envelope {
    specversion: &'static str,
    id: String,
    source: String,
    #[serde(rename = "type")]
    event_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<String>,
    #[serde(serialize_with = "serialize_time")]
    time: DateTime<Utc>,
    datacontenttype: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    dataschema: Option<String>,
    kind: EventKind,
    schemaversion: u32,
    correlationid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    causationid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aggregateversion: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Value>,
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
    /// Start building an event of `event_type` from `source`.
    pub fn builder(event_type: impl Into<String>, source: impl Into<String>) -> EnvelopeBuilder {
        EnvelopeBuilder {
            event_type: event_type.into(),
            source: source.into(),
            id: None,
            subject: None,
            time: None,
            dataschema: None,
            kind: EventKind::Business,
            schemaversion: 1,
            correlationid: None,
            causationid: None,
            aggregateversion: None,
            data: None,
        }
    }

    /// Parse a complete envelope (strict: nothing is defaulted). Used on what was already
    /// accepted by a producer: stream records and queue messages.
    pub fn parse(bytes: &[u8]) -> Result<Envelope, ValidationError> {
        check_size(bytes.len())?;
        let wire = Wire::from_slice(bytes)?;
        let header = wire.header(Defaults::None)?;
        let data = match wire.data {
            None => None,
            Some(raw) => Some(
                serde_json::from_str(raw.get())
                    .map_err(|e| ValidationError::NotJson(e.to_string()))?,
            ),
        };
        Ok(header.into_envelope(data))
    }

    /// Parse what a client submitted to the producer, filling the attributes a client may omit:
    /// `id` (a new UUIDv7), `time` (now), `specversion` (1.0), `kind` (business),
    /// `schemaversion` (1), `correlationid` (the event's own id), `datacontenttype` (JSON).
    pub fn parse_submission(value: &Value) -> Result<Envelope, ValidationError> {
        let bytes =
            serde_json::to_vec(value).map_err(|e| ValidationError::NotJson(e.to_string()))?;
        let wire = Wire::from_slice(&bytes)?;
        let header = wire.header(Defaults::Submission)?;
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
    /// Where the event happened (a URI reference such as `herald/orders`).
    pub fn source(&self) -> &str {
        &self.source
    }
    /// What happened (`order_placed`).
    pub fn event_type(&self) -> &str {
        &self.event_type
    }
    /// The aggregate the event is about (`order-1001`); the Kinesis partition key.
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

    /// The Kinesis partition key: the aggregate (`subject`) so that one aggregate's events stay
    /// in order on one shard; events about no aggregate spread by id.
    pub fn partition_key(&self) -> &str {
        self.subject.as_deref().unwrap_or(&self.id)
    }

    /// The identity CloudEvents defines for an event: `source` + `id`. Redeliveries share it.
    pub fn identity(&self) -> String {
        format!("{}#{}", self.source, self.id)
    }

    /// Structured-mode JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("an envelope always serializes")
    }

    /// Structured-mode JSON bytes.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an envelope always serializes")
    }

    fn encoded_len(&self) -> usize {
        self.to_json_bytes().len()
    }

    /// The same event with its payload at another schema version — what an upcaster returns.
    /// Only [`crate::schema`] builds these: an event's identity and attributes never change.
    pub(crate) fn at_version(&self, schema_version: u32, data: Option<Value>) -> Envelope {
        Envelope {
            schemaversion: schema_version,
            data,
            ..self.clone()
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

    /// Start an event caused by this one: same correlation id, causation id = this id, and a
    /// deterministic id so that re-emitting it (after a retry) yields the same event, which the
    /// next hop deduplicates.
    pub fn follow_up(
        &self,
        event_type: impl Into<String>,
        source: impl Into<String>,
    ) -> EnvelopeBuilder {
        let event_type = event_type.into();
        let id = Uuid::new_v5(
            &FOLLOW_UP_NAMESPACE,
            format!("{}|{}|{}", self.source, self.id, event_type).as_bytes(),
        );
        let mut builder = Envelope::builder(event_type, source)
            .id(id.to_string())
            .correlation_id(self.correlationid.clone())
            .causation_id(self.id.clone());
        if let Some(subject) = &self.subject {
            builder = builder.subject(subject.clone());
        }
        builder
    }

    /// The SNS message attributes a subscription's filter policy can match on.
    pub fn routing_attributes(&self) -> RoutingAttributes<'_> {
        RoutingAttributes {
            event_type: &self.event_type,
            kind: self.kind,
            source: &self.source,
            schema_version: self.schemaversion,
            correlation_id: &self.correlationid,
            aggregate_version: self.aggregateversion,
        }
    }
}

/// The attributes the router puts on every SNS message (and that arrive as SQS message attributes
/// with raw delivery). Names match the CloudEvents attribute names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoutingAttributes<'a> {
    /// `type`
    pub event_type: &'a str,
    /// `kind`
    pub kind: EventKind,
    /// `source`
    pub source: &'a str,
    /// `schemaversion` (an SNS `Number`)
    pub schema_version: u32,
    /// `correlationid`
    pub correlation_id: &'a str,
    /// `aggregateversion` (an SNS `Number`), on events from the event store
    pub aggregate_version: Option<u64>,
}

const FOLLOW_UP_NAMESPACE: Uuid = Uuid::from_bytes([
    0x6c, 0x1d, 0x3e, 0x0a, 0x5b, 0x4f, 0x4e, 0x8b, 0x9d, 0x2a, 0x71, 0x0e, 0x45, 0x90, 0xc3, 0x11,
]);

/// Builds an [`Envelope`]; `build` validates it like any parsed event.
#[derive(Clone, Debug)]
#[must_use]
pub struct EnvelopeBuilder {
    event_type: String,
    source: String,
    id: Option<String>,
    subject: Option<String>,
    time: Option<DateTime<Utc>>,
    dataschema: Option<String>,
    kind: EventKind,
    schemaversion: u32,
    correlationid: Option<String>,
    causationid: Option<String>,
    aggregateversion: Option<u64>,
    data: Option<Value>,
}

impl EnvelopeBuilder {
    /// The id (default: a new UUIDv7).
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }
    /// The aggregate id.
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }
    /// When it happened (default: now).
    pub fn time(mut self, time: DateTime<Utc>) -> Self {
        self.time = Some(time);
        self
    }
    /// The schema URI of `data`.
    pub fn dataschema(mut self, uri: impl Into<String>) -> Self {
        self.dataschema = Some(uri.into());
        self
    }
    /// The kind (default: business).
    pub fn kind(mut self, kind: EventKind) -> Self {
        self.kind = kind;
        self
    }
    /// The schema version (default: 1).
    pub fn schema_version(mut self, version: u32) -> Self {
        self.schemaversion = version;
        self
    }
    /// The correlation id (default: the event's own id).
    pub fn correlation_id(mut self, id: impl Into<String>) -> Self {
        self.correlationid = Some(id.into());
        self
    }
    /// The causing event's id.
    pub fn causation_id(mut self, id: impl Into<String>) -> Self {
        self.causationid = Some(id.into());
        self
    }
    /// Extension `aggregateversion` (≥ 1); the event store sets it on append.
    pub fn aggregate_version(mut self, version: u64) -> Self {
        self.aggregateversion = Some(version);
        self
    }

    /// The payload, serialized to JSON.
    pub fn data(mut self, data: impl Serialize) -> Self {
        self.data = Some(serde_json::to_value(data).expect("event data serializes to JSON"));
        self
    }

    /// Validate and build.
    pub fn build(self) -> Result<Envelope, ValidationError> {
        let id = self.id.unwrap_or_else(|| Uuid::now_v7().to_string());
        let mut object = serde_json::Map::new();
        object.insert("id".into(), Value::String(id.clone()));
        object.insert("source".into(), Value::String(self.source));
        object.insert("type".into(), Value::String(self.event_type));
        if let Some(subject) = self.subject {
            object.insert("subject".into(), Value::String(subject));
        }
        let time = self.time.unwrap_or_else(Utc::now);
        object.insert(
            "time".into(),
            Value::String(time.to_rfc3339_opts(SecondsFormat::Millis, true)),
        );
        if let Some(schema) = self.dataschema {
            object.insert("dataschema".into(), Value::String(schema));
        }
        object.insert("kind".into(), Value::String(self.kind.as_str().into()));
        object.insert("schemaversion".into(), Value::from(self.schemaversion));
        object.insert(
            "correlationid".into(),
            Value::String(self.correlationid.unwrap_or(id)),
        );
        if let Some(causation) = self.causationid {
            object.insert("causationid".into(), Value::String(causation));
        }
        if let Some(version) = self.aggregateversion {
            object.insert("aggregateversion".into(), Value::from(version));
        }
        if let Some(data) = self.data {
            object.insert("data".into(), data);
        }
        Envelope::parse_submission(&Value::Object(object))
    }
}

fn check_size(actual: usize) -> Result<(), ValidationError> {
    if actual > MAX_EVENT_BYTES {
        return Err(ValidationError::TooLarge {
            limit: MAX_EVENT_BYTES,
            actual,
        });
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Defaults {
    None,
    Submission,
}

/// The envelope as it sits in the JSON, every attribute still raw so that a wrong type can be
/// reported with the attribute's name (serde's own messages do not name the field). Unknown
/// attributes (extensions herald does not know) are ignored.
#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(borrow)]
    specversion: Option<&'a RawValue>,
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    source: Option<&'a RawValue>,
    #[serde(borrow, rename = "type")]
    event_type: Option<&'a RawValue>,
    #[serde(borrow)]
    subject: Option<&'a RawValue>,
    #[serde(borrow)]
    time: Option<&'a RawValue>,
    #[serde(borrow)]
    datacontenttype: Option<&'a RawValue>,
    #[serde(borrow)]
    dataschema: Option<&'a RawValue>,
    #[serde(borrow)]
    kind: Option<&'a RawValue>,
    #[serde(borrow)]
    schemaversion: Option<&'a RawValue>,
    #[serde(borrow)]
    correlationid: Option<&'a RawValue>,
    #[serde(borrow)]
    causationid: Option<&'a RawValue>,
    #[serde(borrow)]
    aggregateversion: Option<&'a RawValue>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
}

impl<'a> Wire<'a> {
    fn from_slice(bytes: &'a [u8]) -> Result<Self, ValidationError> {
        Wire::from_text(utf8(bytes)?)
    }

    fn from_text(text: &'a str) -> Result<Self, ValidationError> {
        serde_json::from_str(text).map_err(|e| {
            ValidationError::NotJson(if e.classify() == serde_json::error::Category::Data {
                format!("expected an object of CloudEvents attributes ({e})")
            } else {
                e.to_string()
            })
        })
    }

    fn get(&self, field: &'static str) -> Option<&'a RawValue> {
        let raw = match field {
            "specversion" => self.specversion,
            "id" => self.id,
            "source" => self.source,
            "type" => self.event_type,
            "subject" => self.subject,
            "time" => self.time,
            "datacontenttype" => self.datacontenttype,
            "dataschema" => self.dataschema,
            "kind" => self.kind,
            "schemaversion" => self.schemaversion,
            "correlationid" => self.correlationid,
            "causationid" => self.causationid,
            "aggregateversion" => self.aggregateversion,
            _ => None,
        };
        raw.filter(|raw| raw.get() != "null")
    }

    fn string(&self, field: &'static str) -> Result<Option<Cow<'a, str>>, ValidationError> {
        let Some(raw) = self.get(field) else {
            return Ok(None);
        };
        // Borrow when the string has no escapes; decode into an owned string when it does.
        if let Ok(s) = serde_json::from_str::<&'a str>(raw.get()) {
            return Ok(Some(Cow::Borrowed(s)));
        }
        serde_json::from_str::<String>(raw.get())
            .map(|s| Some(Cow::Owned(s)))
            .map_err(|_| ValidationError::WrongType {
                field,
                expected: "a string",
            })
    }

    fn required(&self, field: &'static str, limit: usize) -> Result<Cow<'a, str>, ValidationError> {
        let value = self
            .string(field)?
            .ok_or(ValidationError::Missing { field })?;
        bounded(field, value, limit)
    }

    fn header(&self, defaults: Defaults) -> Result<Header<'a>, ValidationError> {
        let lenient = defaults == Defaults::Submission;

        match self.string("specversion")? {
            Some(v) if v == SPEC_VERSION => {}
            Some(v) => {
                return Err(ValidationError::Invalid {
                    field: "specversion",
                    reason: format!("is \"{v}\"; herald speaks CloudEvents \"{SPEC_VERSION}\""),
                })
            }
            None if lenient => {}
            None => {
                return Err(ValidationError::Missing {
                    field: "specversion",
                })
            }
        }

        let id = match self.string("id")? {
            Some(id) => bounded("id", id, MAX_ATTRIBUTE_CHARS)?,
            None if lenient => Cow::Owned(Uuid::now_v7().to_string()),
            None => return Err(ValidationError::Missing { field: "id" }),
        };
        let source = self.required("source", MAX_ATTRIBUTE_CHARS)?;
        if source.chars().any(char::is_whitespace) {
            return Err(ValidationError::Invalid {
                field: "source",
                reason: "must be a URI reference (no whitespace)".into(),
            });
        }
        let event_type = self.required("type", MAX_TYPE_CHARS)?;
        if let Some(bad) = event_type
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(ValidationError::Invalid {
                field: "type",
                reason: format!("contains {bad:?}; use letters, digits, '.', '_' or '-'"),
            });
        }
        let subject = self
            .string("subject")?
            .map(|s| bounded("subject", s, MAX_ATTRIBUTE_CHARS))
            .transpose()?;

        let time = match self.string("time")? {
            Some(t) => DateTime::parse_from_rfc3339(&t)
                .map_err(|e| ValidationError::Invalid {
                    field: "time",
                    reason: format!("must be an RFC 3339 timestamp ({e})"),
                })?
                .with_timezone(&Utc),
            None if lenient => Utc::now(),
            None => return Err(ValidationError::Missing { field: "time" }),
        };

        match self.string("datacontenttype")? {
            None => {}
            Some(ct) if ct.starts_with(JSON_CONTENT_TYPE) => {}
            Some(ct) => {
                return Err(ValidationError::Invalid {
                    field: "datacontenttype",
                    reason: format!(
                        "is \"{ct}\"; herald carries \"{JSON_CONTENT_TYPE}\" data only"
                    ),
                })
            }
        }
        let dataschema = self
            .string("dataschema")?
            .map(|s| bounded("dataschema", s, 2048))
            .transpose()?;

        let kind = match self.string("kind")? {
            Some(k) => EventKind::parse(&k).ok_or_else(|| ValidationError::Invalid {
                field: "kind",
                reason: format!("is \"{k}\"; expected business, system or data"),
            })?,
            None if lenient => EventKind::Business,
            None => return Err(ValidationError::Missing { field: "kind" }),
        };
        if kind == EventKind::Business && subject.is_none() {
            // Business events are about an aggregate, and the aggregate orders them.
            return Err(ValidationError::Invalid {
                field: "subject",
                reason: "is required for business events (it names the aggregate)".into(),
            });
        }

        let schemaversion = match self.get("schemaversion") {
            Some(raw) => match serde_json::from_str::<u64>(raw.get()) {
                Ok(v) if (1..=u64::from(u32::MAX)).contains(&v) => v as u32,
                _ => {
                    return Err(ValidationError::WrongType {
                        field: "schemaversion",
                        expected: "a whole number from 1",
                    })
                }
            },
            None if lenient => 1,
            None => {
                return Err(ValidationError::Missing {
                    field: "schemaversion",
                })
            }
        };

        let correlationid = match self.string("correlationid")? {
            Some(c) => bounded("correlationid", c, MAX_ATTRIBUTE_CHARS)?,
            None if lenient => id.clone(),
            None => {
                return Err(ValidationError::Missing {
                    field: "correlationid",
                })
            }
        };
        let causationid = self
            .string("causationid")?
            .map(|c| bounded("causationid", c, MAX_ATTRIBUTE_CHARS))
            .transpose()?;
        let aggregateversion = match self.get("aggregateversion") {
            Some(raw) => match serde_json::from_str::<u64>(raw.get()) {
                Ok(v) if v >= 1 => Some(v),
                _ => {
                    return Err(ValidationError::WrongType {
                        field: "aggregateversion",
                        expected: "a whole number from 1",
                    })
                }
            },
            None => None,
        };
        if aggregateversion.is_some() && subject.is_none() {
            return Err(ValidationError::Invalid {
                field: "aggregateversion",
                reason: "needs a subject (the aggregate it counts versions of)".into(),
            });
        }

        Ok(Header {
            id,
            source,
            event_type,
            subject,
            time,
            dataschema,
            kind,
            schemaversion,
            correlationid,
            causationid,
            aggregateversion,
        })
    }
}

fn utf8(bytes: &[u8]) -> Result<&str, ValidationError> {
    std::str::from_utf8(bytes).map_err(|e| ValidationError::NotJson(format!("not UTF-8: {e}")))
}

/// The value if it is not empty and at most `limit` characters; borrowed when it was.
fn bounded<'a>(
    field: &'static str,
    value: Cow<'a, str>,
    limit: usize,
) -> Result<Cow<'a, str>, ValidationError> {
    if value.is_empty() {
        return Err(ValidationError::Empty { field });
    }
    // Byte length bounds the character count: count only when it could exceed the limit.
    if value.len() > limit {
        let chars = value.chars().count();
        if chars > limit {
            return Err(ValidationError::TooLong {
                field,
                limit,
                actual: chars,
            });
        }
    }
    Ok(value)
}

/// The attributes, borrowed from the JSON where no escape forced a copy.
struct Header<'a> {
    id: Cow<'a, str>,
    source: Cow<'a, str>,
    event_type: Cow<'a, str>,
    subject: Option<Cow<'a, str>>,
    time: DateTime<Utc>,
    dataschema: Option<Cow<'a, str>>,
    kind: EventKind,
    schemaversion: u32,
    correlationid: Cow<'a, str>,
    causationid: Option<Cow<'a, str>>,
    aggregateversion: Option<u64>,
}

impl Header<'_> {
    fn into_envelope(self, data: Option<Value>) -> Envelope {
        Envelope {
            specversion: SPEC_VERSION,
            id: self.id.into_owned(),
            source: self.source.into_owned(),
            event_type: self.event_type.into_owned(),
            subject: self.subject.map(Cow::into_owned),
            time: self.time,
            datacontenttype: JSON_CONTENT_TYPE,
            dataschema: self.dataschema.map(Cow::into_owned),
            kind: self.kind,
            schemaversion: self.schemaversion,
            correlationid: self.correlationid.into_owned(),
            causationid: self.causationid.map(Cow::into_owned),
            aggregateversion: self.aggregateversion,
            data,
        }
    }
}

/// What the router needs from a stream record without building an owned [`Envelope`]: the
/// attributes validated (borrowed from the record), `data` left as raw JSON. The record's bytes
/// are published unchanged ([`EnvelopeView::text`]).
pub fn validate_record(bytes: &[u8]) -> Result<EnvelopeView<'_>, ValidationError> {
    check_size(bytes.len())?;
    let text = utf8(bytes)?;
    let wire = Wire::from_text(text)?;
    let header = wire.header(Defaults::None)?;
    Ok(EnvelopeView { header, text })
}

/// A validated envelope's attributes (no payload), as returned by [`validate_record`].
pub struct EnvelopeView<'a> {
    header: Header<'a>,
    text: &'a str,
}

impl<'a> EnvelopeView<'a> {
    /// The record as text (it is UTF-8 JSON: validated).
    pub fn text(&self) -> &'a str {
        self.text
    }

    /// The id.
    pub fn id(&self) -> &str {
        &self.header.id
    }
    /// The source.
    pub fn source(&self) -> &str {
        &self.header.source
    }
    /// The routing attributes for SNS.
    pub fn routing_attributes(&self) -> RoutingAttributes<'_> {
        RoutingAttributes {
            event_type: &self.header.event_type,
            kind: self.header.kind,
            source: &self.header.source,
            schema_version: self.header.schemaversion,
            correlation_id: &self.header.correlationid,
            aggregate_version: self.header.aggregateversion,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn order() -> Value {
        json!({
            "specversion": "1.0",
            "id": "evt-1",
            "source": "herald/orders",
            "type": "order_placed",
            "subject": "order-1",
            "time": "2026-11-26T10:00:00.000Z",
            "datacontenttype": "application/json",
            "kind": "business",
            "schemaversion": 2,
            "correlationid": "evt-1",
            "data": {"orderId": "order-1"}
        })
    }

    fn parse(value: &Value) -> Result<Envelope, ValidationError> {
        Envelope::parse(&serde_json::to_vec(value).unwrap())
    }

    #[test]
    fn round_trips_in_structured_mode() {
        let envelope = parse(&order()).unwrap();
        assert_eq!(envelope.id(), "evt-1");
        assert_eq!(envelope.schema_version(), 2);
        assert_eq!(envelope.partition_key(), "order-1");
        let again = Envelope::parse(&envelope.to_json_bytes()).unwrap();
        assert_eq!(envelope, again);
        assert_eq!(serde_json::to_value(&envelope).unwrap(), order());
    }

    #[test]
    fn strict_parse_names_each_missing_attribute() {
        for field in [
            "specversion",
            "id",
            "source",
            "type",
            "time",
            "kind",
            "schemaversion",
            "correlationid",
        ] {
            let mut value = order();
            value.as_object_mut().unwrap().remove(field);
            assert_eq!(
                parse(&value),
                Err(ValidationError::Missing { field }),
                "{field}"
            );
        }
    }

    #[test]
    fn wrong_types_name_the_field() {
        let mut value = order();
        value["id"] = json!(42);
        let err = parse(&value).unwrap_err();
        assert_eq!(err.field(), "id");
        assert_eq!(err.to_string(), "`id` must be a string");

        let mut value = order();
        value["schemaversion"] = json!("two");
        assert_eq!(parse(&value).unwrap_err().field(), "schemaversion");
    }

    #[test]
    fn limits_are_named() {
        let mut value = order();
        value["subject"] = json!("x".repeat(300));
        assert_eq!(
            parse(&value),
            Err(ValidationError::TooLong {
                field: "subject",
                limit: 256,
                actual: 300
            })
        );

        let mut value = order();
        value["data"] = json!({"blob": "x".repeat(MAX_EVENT_BYTES)});
        let err = parse(&value).unwrap_err();
        assert!(matches!(err, ValidationError::TooLarge { limit, .. } if limit == MAX_EVENT_BYTES));
        assert!(err.to_string().contains("245760"), "{err}");
    }

    #[test]
    fn rejects_bad_values() {
        let cases = [
            ("specversion", json!("0.3")),
            ("time", json!("yesterday")),
            ("kind", json!("gossip")),
            ("type", json!("order placed")),
            ("datacontenttype", json!("text/plain")),
            ("source", json!("")),
        ];
        for (field, bad) in cases {
            let mut value = order();
            value[field] = bad;
            assert_eq!(parse(&value).unwrap_err().field(), field);
        }
    }

    #[test]
    fn not_json_is_rejected() {
        assert!(matches!(
            Envelope::parse(b"not json"),
            Err(ValidationError::NotJson(_))
        ));
        assert!(matches!(
            Envelope::parse(b"[1,2]"),
            Err(ValidationError::NotJson(_))
        ));
        assert!(matches!(
            Envelope::parse(&[0xff, 0xfe]),
            Err(ValidationError::NotJson(_))
        ));
    }

    #[test]
    fn business_events_need_a_subject() {
        let mut value = order();
        value.as_object_mut().unwrap().remove("subject");
        assert_eq!(parse(&value).unwrap_err().field(), "subject");
        value["kind"] = json!("system");
        assert!(parse(&value).is_ok());
    }

    #[test]
    fn submissions_get_defaults() {
        let envelope = Envelope::parse_submission(&json!({
            "source": "herald/orders",
            "type": "order_placed",
            "subject": "order-9",
            "data": {"orderId": "order-9"}
        }))
        .unwrap();
        assert_eq!(envelope.kind(), EventKind::Business);
        assert_eq!(envelope.schema_version(), 1);
        assert_eq!(envelope.correlation_id(), envelope.id());
        assert!(Uuid::parse_str(envelope.id()).is_ok());
    }

    #[test]
    fn follow_ups_are_deterministic_and_linked() {
        let cause = parse(&order()).unwrap();
        let a = cause
            .follow_up("payment_succeeded", "herald/payment")
            .build()
            .unwrap();
        let b = cause
            .follow_up("payment_succeeded", "herald/payment")
            .build()
            .unwrap();
        assert_eq!(a.id(), b.id());
        assert_eq!(a.correlation_id(), "evt-1");
        assert_eq!(a.causation_id(), Some("evt-1"));
        assert_eq!(a.subject(), Some("order-1"));
        let c = cause
            .follow_up("payment_failed", "herald/payment")
            .build()
            .unwrap();
        assert_ne!(a.id(), c.id());
    }

    #[test]
    fn record_view_validates_without_the_payload() {
        let bytes = serde_json::to_vec(&order()).unwrap();
        let view = validate_record(&bytes).unwrap();
        assert_eq!(view.routing_attributes().event_type, "order_placed");
        assert_eq!(view.routing_attributes().kind, EventKind::Business);
    }
}
