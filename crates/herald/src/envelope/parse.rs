//! The validation both parsers share: the JSON's attributes read raw (so that every error can
//! name its attribute), checked against herald's limits, borrowed where no escape forces a copy.

use std::borrow::Cow;

use chrono::{DateTime, SubsecRound, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use uuid::Uuid;

use super::{Envelope, EventKind, ValidationError, JSON_CONTENT_TYPE, SPEC_VERSION};
use crate::limits::{
    KINESIS_MAX_PARTITION_KEY_CHARS as MAX_PARTITION_KEY_CHARS, MAX_ATTRIBUTE_CHARS,
    MAX_EVENT_BYTES, MAX_TYPE_CHARS,
};

/// Rejects an event larger than the pipeline can carry.
pub(super) fn check_size(actual: usize) -> Result<(), ValidationError> {
    if actual > MAX_EVENT_BYTES {
        return Err(ValidationError::TooLarge {
            limit: MAX_EVENT_BYTES,
            actual,
        });
    }
    Ok(())
}

/// Which attributes may be absent: none (strict), or those a client may leave out.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Defaults {
    None,
    Submission,
}

/// The envelope as it sits in the JSON, every attribute still raw so that a wrong type can be
/// reported with the attribute's name (serde's own messages do not name the field). Unknown
/// attributes (extensions herald does not know) are ignored.
#[derive(Deserialize)]
pub(super) struct Wire<'a> {
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
    partitionkey: Option<&'a RawValue>,
    #[serde(borrow)]
    pub(super) data: Option<&'a RawValue>,
}

impl<'a> Wire<'a> {
    pub(super) fn from_slice(bytes: &'a [u8]) -> Result<Self, ValidationError> {
        Wire::from_text(utf8(bytes)?)
    }

    pub(super) fn from_text(text: &'a str) -> Result<Self, ValidationError> {
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
            "partitionkey" => self.partitionkey,
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

    pub(super) fn header(&self, defaults: Defaults) -> Result<Header<'a>, ValidationError> {
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
                .with_timezone(&Utc)
                .trunc_subsecs(3),
            // Milliseconds, as the envelope is written: an event reads back as it was accepted.
            None if lenient => Utc::now().trunc_subsecs(3),
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
        // Kinesis takes partition keys of up to 256 characters.
        let partitionkey = self
            .string("partitionkey")?
            .map(|k| bounded("partitionkey", k, MAX_PARTITION_KEY_CHARS))
            .transpose()?;
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
            partitionkey,
        })
    }
}

pub(super) fn utf8(bytes: &[u8]) -> Result<&str, ValidationError> {
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
pub(super) struct Header<'a> {
    pub(super) id: Cow<'a, str>,
    pub(super) source: Cow<'a, str>,
    pub(super) event_type: Cow<'a, str>,
    pub(super) subject: Option<Cow<'a, str>>,
    pub(super) time: DateTime<Utc>,
    pub(super) dataschema: Option<Cow<'a, str>>,
    pub(super) kind: EventKind,
    pub(super) schemaversion: u32,
    pub(super) correlationid: Cow<'a, str>,
    pub(super) causationid: Option<Cow<'a, str>>,
    pub(super) aggregateversion: Option<u64>,
    pub(super) partitionkey: Option<Cow<'a, str>>,
}

impl Header<'_> {
    pub(super) fn into_envelope(self, data: Option<Value>) -> Envelope {
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
            partitionkey: self.partitionkey.map(Cow::into_owned),
            data,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::fixtures::{parse, signed_up};
    use super::*;

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
            let mut value = signed_up();
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
        let mut value = signed_up();
        value["id"] = json!(42);
        let err = parse(&value).unwrap_err();
        assert_eq!(err.field(), "id");
        assert_eq!(err.to_string(), "`id` must be a string");

        let mut value = signed_up();
        value["schemaversion"] = json!("two");
        assert_eq!(parse(&value).unwrap_err().field(), "schemaversion");
    }

    #[test]
    fn limits_are_named() {
        let mut value = signed_up();
        value["subject"] = json!("x".repeat(300));
        assert_eq!(
            parse(&value),
            Err(ValidationError::TooLong {
                field: "subject",
                limit: 256,
                actual: 300
            })
        );

        let mut value = signed_up();
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
            ("type", json!("user signed up")),
            ("datacontenttype", json!("text/plain")),
            ("source", json!("")),
        ];
        for (field, bad) in cases {
            let mut value = signed_up();
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
        let mut value = signed_up();
        value.as_object_mut().unwrap().remove("subject");
        assert_eq!(parse(&value).unwrap_err().field(), "subject");
        value["kind"] = json!("system");
        assert!(parse(&value).is_ok());
    }
}
