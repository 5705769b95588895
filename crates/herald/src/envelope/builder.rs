//! [`EnvelopeBuilder`]: events built in code, validated like any parsed event.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::{Envelope, EventKind, ValidationError};

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
            partitionkey: None,
            data: None,
        }
    }
}

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
    partitionkey: Option<String>,
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
    /// Extension `partitionkey` (CloudEvents partitioning): the stream partition key when it
    /// should be wider than the aggregate, e.g. an order's customer, so that everything about
    /// one customer reaches a stream consumer on one shard, in order (default: the subject).
    pub fn partition_key(mut self, key: impl Into<String>) -> Self {
        self.partitionkey = Some(key.into());
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
        if let Some(key) = self.partitionkey {
            object.insert("partitionkey".into(), Value::String(key));
        }
        if let Some(data) = self.data {
            object.insert("data".into(), data);
        }
        Envelope::parse_submission(&Value::Object(object))
    }
}
