//! The validation both parsers share: the JSON's attributes read raw (so that every error can
//! name its attribute), checked against herald's limits, borrowed where no escape forces a copy.

use std::borrow::Cow;

use chrono::{DateTime, SubsecRound, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use uuid::Uuid;

use super::scan::{self, Spans};
use super::{time, Envelope, EventKind, ValidationError, JSON_CONTENT_TYPE, SPEC_VERSION};
use crate::aws::limits::{
    KINESIS_MAX_PARTITION_KEY_CHARS as MAX_PARTITION_KEY_CHARS, MAX_ATTRIBUTE_CHARS,
    MAX_EVENT_BYTES, MAX_TIME_AHEAD_SECONDS, MAX_TYPE_CHARS,
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
    /// A client's submission; `kind` when it names none (the catalog's kind for its type).
    Submission {
        kind: EventKind,
    },
}

/// The envelope as it sits in the JSON, every attribute still raw so that a wrong type can be
/// reported with the attribute's name (serde's own messages do not name the field). Unknown
/// attributes (extensions herald does not know) are ignored.
pub(super) struct Wire<'a> {
    spans: Spans<'a>,
    /// `data`'s raw JSON.
    pub(super) data: Option<&'a str>,
}

/// The serde_json reading of [`Wire`], for what the one-pass scanner leaves to it.
#[derive(Deserialize)]
struct SerdeWire<'a> {
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
    data: Option<&'a RawValue>,
}

impl<'a> SerdeWire<'a> {
    fn spans(self) -> Spans<'a> {
        let get = |raw: Option<&'a RawValue>| raw.map(RawValue::get);
        Spans {
            specversion: get(self.specversion),
            id: get(self.id),
            source: get(self.source),
            event_type: get(self.event_type),
            subject: get(self.subject),
            time: get(self.time),
            datacontenttype: get(self.datacontenttype),
            dataschema: get(self.dataschema),
            kind: get(self.kind),
            schemaversion: get(self.schemaversion),
            correlationid: get(self.correlationid),
            causationid: get(self.causationid),
            aggregateversion: get(self.aggregateversion),
            partitionkey: get(self.partitionkey),
            data: get(self.data),
        }
    }
}

impl<'a> Wire<'a> {
    pub(super) fn from_slice(bytes: &'a [u8]) -> Result<Self, ValidationError> {
        Wire::from_text(utf8(bytes)?)
    }

    pub(super) fn from_text(text: &'a str) -> Result<Self, ValidationError> {
        // The common case in one pass; serde_json for the rest, and for its errors.
        let spans = match scan::attributes(text) {
            Some(spans) => spans,
            None => serde_json::from_str::<SerdeWire>(text)
                .map_err(|e| {
                    ValidationError::NotJson(if e.classify() == serde_json::error::Category::Data {
                        format!("expected an object of CloudEvents attributes ({e})")
                    } else {
                        e.to_string()
                    })
                })?
                .spans(),
        };
        Ok(Wire {
            data: spans.data,
            spans,
        })
    }

    /// The raw JSON of an attribute herald reads, unless it is absent or `null`. Matched on
    /// the name the caller gives (a constant: the match folds away when inlined).
    #[inline(always)]
    fn get(&self, field: &'static str) -> Option<&'a str> {
        let s = &self.spans;
        let raw = match field {
            "specversion" => s.specversion,
            "id" => s.id,
            "source" => s.source,
            "type" => s.event_type,
            "subject" => s.subject,
            "time" => s.time,
            "datacontenttype" => s.datacontenttype,
            "dataschema" => s.dataschema,
            "kind" => s.kind,
            "schemaversion" => s.schemaversion,
            "correlationid" => s.correlationid,
            "causationid" => s.causationid,
            "aggregateversion" => s.aggregateversion,
            "partitionkey" => s.partitionkey,
            _ => None,
        };
        raw.filter(|raw| *raw != "null")
    }

    #[inline(always)]
    fn string(&self, field: &'static str) -> Result<Option<Cow<'a, str>>, ValidationError> {
        let Some(raw) = self.get(field) else {
            return Ok(None);
        };
        // Borrow when the string has no escapes (the raw value is valid JSON: a quoted run
        // without a backslash is the string itself); decode into an owned string when it does.
        if let Some(plain) = raw
            .strip_prefix('"')
            .and_then(|r| r.strip_suffix('"'))
            .filter(|r| !r.contains('\\'))
        {
            return Ok(Some(Cow::Borrowed(plain)));
        }
        unescaped(field, raw).map(Some)
    }

    #[inline(always)]
    fn required(&self, field: &'static str, limit: usize) -> Result<Cow<'a, str>, ValidationError> {
        let value = self
            .string(field)?
            .ok_or(ValidationError::Missing { field })?;
        bounded(field, value, limit)
    }

    /// Every attribute checked, in one pass over the object's members: a submission
    /// (`Defaults::Submission`) may leave out the ones the producer fills.
    pub(super) fn header(&self, defaults: Defaults) -> Result<Header<'a>, ValidationError> {
        let lenient = matches!(defaults, Defaults::Submission { .. });
        self.specversion(lenient)?;
        let id = match self.string("id")? {
            Some(id) => bounded("id", id, MAX_ATTRIBUTE_CHARS)?,
            None if lenient => Cow::Owned(Uuid::now_v7().to_string()),
            None => return Err(ValidationError::Missing { field: "id" }),
        };
        let source = self.source()?;
        let event_type = self.event_type()?;
        let subject = self.optional("subject", MAX_ATTRIBUTE_CHARS)?;
        let time = self.time(lenient)?;
        self.datacontenttype()?;
        let dataschema = self.optional("dataschema", 2048)?;
        let kind = self.kind(defaults)?;
        if kind == EventKind::Business && subject.is_none() {
            // Business events are about an aggregate, and the aggregate orders them.
            return Err(ValidationError::Invalid {
                field: "subject",
                reason: "is required for business events (it names the aggregate)".into(),
            });
        }
        let schemaversion = match self.whole_number("schemaversion", u64::from(u32::MAX))? {
            Some(v) => v as u32,
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
        let causationid = self.optional("causationid", MAX_ATTRIBUTE_CHARS)?;
        let aggregateversion = self.whole_number("aggregateversion", u64::MAX)?;
        // Kinesis takes partition keys of up to 256 characters.
        let partitionkey = self.optional("partitionkey", MAX_PARTITION_KEY_CHARS)?;
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

    /// An optional string attribute, at most `limit` characters.
    fn optional(
        &self,
        field: &'static str,
        limit: usize,
    ) -> Result<Option<Cow<'a, str>>, ValidationError> {
        self.string(field)?
            .map(|s| bounded(field, s, limit))
            .transpose()
    }

    /// An optional whole-number attribute, from 1 to `max`.
    fn whole_number(&self, field: &'static str, max: u64) -> Result<Option<u64>, ValidationError> {
        let Some(raw) = self.get(field) else {
            return Ok(None);
        };
        match whole_number(raw) {
            Some(v) if (1..=max).contains(&v) => Ok(Some(v)),
            _ => Err(ValidationError::WrongType {
                field,
                expected: "a whole number from 1",
            }),
        }
    }

    /// `specversion`: CloudEvents 1.0 (a submission may leave it out).
    fn specversion(&self, lenient: bool) -> Result<(), ValidationError> {
        match self.string("specversion")? {
            Some(v) if v == SPEC_VERSION => Ok(()),
            Some(v) => Err(ValidationError::Invalid {
                field: "specversion",
                reason: format!("is \"{v}\"; herald speaks CloudEvents \"{SPEC_VERSION}\""),
            }),
            None if lenient => Ok(()),
            None => Err(ValidationError::Missing {
                field: "specversion",
            }),
        }
    }

    /// `source`: a URI reference, so no whitespace.
    fn source(&self) -> Result<Cow<'a, str>, ValidationError> {
        let source = self.required("source", MAX_ATTRIBUTE_CHARS)?;
        if source.chars().any(char::is_whitespace) {
            return Err(ValidationError::Invalid {
                field: "source",
                reason: "must be a URI reference (no whitespace)".into(),
            });
        }
        Ok(source)
    }

    /// `type`: letters, digits, '.', '_' and '-' (it becomes a filter-policy attribute).
    fn event_type(&self) -> Result<Cow<'a, str>, ValidationError> {
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
        Ok(event_type)
    }

    /// `time`: RFC 3339 in milliseconds, not before 1970, and (a submission) not far ahead of
    /// the producer's clock.
    fn time(&self, lenient: bool) -> Result<DateTime<Utc>, ValidationError> {
        let time = match self.string("time")? {
            Some(t) => time::parse_rfc3339(&t)
                .map_err(|e| ValidationError::Invalid {
                    field: "time",
                    reason: format!("must be an RFC 3339 timestamp ({e})"),
                })?
                .trunc_subsecs(3),
            // Milliseconds, as the envelope is written: an event reads back as it was accepted.
            None if lenient => Utc::now().trunc_subsecs(3),
            None => return Err(ValidationError::Missing { field: "time" }),
        };
        if time < DateTime::UNIX_EPOCH {
            return Err(ValidationError::Invalid {
                field: "time",
                reason: "is before 1970-01-01T00:00:00Z; TTLs and windows count seconds from it"
                    .into(),
            });
        }
        // A submission's clock is the producer's; what is already on the stream keeps its time.
        if lenient && time > Utc::now() + chrono::Duration::seconds(MAX_TIME_AHEAD_SECONDS) {
            return Err(ValidationError::Invalid {
                field: "time",
                reason: format!(
                    "is {}, more than {} minutes ahead of the producer's clock; an event's time is \
                     when it happened",
                    time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    MAX_TIME_AHEAD_SECONDS / 60
                ),
            });
        }
        Ok(time)
    }

    /// `datacontenttype`: JSON, when given.
    fn datacontenttype(&self) -> Result<(), ValidationError> {
        match self.string("datacontenttype")? {
            None => Ok(()),
            Some(ct) if ct.starts_with(JSON_CONTENT_TYPE) => Ok(()),
            Some(ct) => Err(ValidationError::Invalid {
                field: "datacontenttype",
                reason: format!("is \"{ct}\"; herald carries \"{JSON_CONTENT_TYPE}\" data only"),
            }),
        }
    }

    /// `kind`: business, system or data (a submission's default when it has none).
    fn kind(&self, defaults: Defaults) -> Result<EventKind, ValidationError> {
        match self.string("kind")? {
            Some(k) => EventKind::parse(&k).ok_or_else(|| ValidationError::Invalid {
                field: "kind",
                reason: format!("is \"{k}\"; expected business, system or data"),
            }),
            None => match defaults {
                Defaults::Submission { kind } => Ok(kind),
                Defaults::None => Err(ValidationError::Missing { field: "kind" }),
            },
        }
    }
}

/// A string with escapes, decoded; or the error for a value that is not a string.
#[cold]
#[inline(never)]
fn unescaped<'a>(field: &'static str, raw: &str) -> Result<Cow<'a, str>, ValidationError> {
    serde_json::from_str::<String>(raw)
        .map(Cow::Owned)
        .map_err(|_| ValidationError::WrongType {
            field,
            expected: "a string",
        })
}

/// A JSON value that is a whole number that fits in a `u64`, as serde_json reads one.
fn whole_number(raw: &str) -> Option<u64> {
    // Plain digits (valid JSON: no leading zero) short of overflow: read them here.
    if (1..=19).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_digit()) {
        return Some(
            raw.bytes()
                .fold(0u64, |n, digit| n * 10 + u64::from(digit - b'0')),
        );
    }
    serde_json::from_str::<u64>(raw).ok()
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
    if let Some((at, bad)) = refused_character(&value) {
        return Err(ValidationError::Invalid {
            field,
            reason: format!(
                "contains U+{:04X} at character {at}; SQS and SNS refuse control characters (but tab, \
                 line feed and carriage return) and U+FFFE / U+FFFF",
                u32::from(bad)
            ),
        });
    }
    Ok(value)
}

/// The first character SQS refuses in a message (its body and attributes take only `#x9 | #xA |
/// #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF`; a Rust string holds no surrogate), with
/// its position in characters. moto accepts every character; SQS answers
/// `InvalidMessageContents`, and an SNS delivery to a queue is then lost.
pub(crate) fn refused_character(text: &str) -> Option<(usize, char)> {
    // Only a C0 control or the bytes of U+FFFE / U+FFFF (EF BF BE, EF BF BF) can be refused.
    let suspect = text
        .bytes()
        .any(|b| (b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r')) || b == 0xEF);
    if !suspect {
        return None;
    }
    text.chars().enumerate().find(|(_, c)| {
        (*c < ' ' && !matches!(c, '\t' | '\n' | '\r')) || matches!(c, '\u{FFFE}' | '\u{FFFF}')
    })
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

    /// Random edits of envelopes (and of JSON around them): wherever the one-pass scanner
    /// answers, serde_json accepts the text and finds the same attributes.
    #[test]
    fn the_scanner_answers_only_as_serde_json_would() {
        let bases = [
            serde_json::to_string(&signed_up()).unwrap(),
            serde_json::to_string_pretty(&signed_up()).unwrap(),
            r#"{"id":"a\"b","data":{"k":[1,-2.5e-3,true,false,null,"\u00e9\n",{}]},"x":[]}"#
                .to_string(),
        ];
        let alphabet = b"{}[]:,\"\\ \n\t0123456789-+.eEtrufalsn/uidatype\x01";
        let mut rng = 0x2545f4914f6cdd1du64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng as usize
        };
        let mut answered = 0;
        for round in 0..200_000 {
            let mut text = bases[round % bases.len()].clone().into_bytes();
            for _ in 0..1 + next() % 3 {
                let at = next() % (text.len() + 1);
                let byte = alphabet[next() % alphabet.len()];
                match next() % 3 {
                    0 if at < text.len() => text[at] = byte,
                    1 if at < text.len() => {
                        text.remove(at);
                    }
                    _ => text.insert(at, byte),
                }
            }
            let Ok(text) = String::from_utf8(text) else {
                continue;
            };
            if let Some(spans) = scan::attributes(&text) {
                answered += 1;
                let serde = serde_json::from_str::<SerdeWire>(&text)
                    .unwrap_or_else(|e| panic!("serde_json rejects {text}: {e}"))
                    .spans();
                assert_eq!(spans, serde, "{text}");
            }
        }
        assert!(answered > 10_000, "{answered}");
    }

    // Issue 24, item 10: what moto accepts and AWS does not.

    #[test]
    fn an_attribute_with_a_character_sqs_refuses_is_named() {
        for (field, value) in [
            ("correlationid", "corr\u{7}bell"),
            ("id", "evt-\u{FFFF}"),
            ("subject", "user-\u{FFFE}"),
            ("causationid", "a\u{0}b"),
            ("partitionkey", "k\u{1b}[31m"),
        ] {
            let mut event = signed_up();
            event[field] = json!(value);
            let err = parse(&event).unwrap_err();
            assert_eq!(err.field(), field, "{err}");
            assert!(err.to_string().contains("SQS"), "{err}");
            // A submission is refused the same way, before it reaches the stream.
            let err = Envelope::parse_submission(&event).unwrap_err();
            assert_eq!(err.field(), field, "{err}");
        }
        // Tab, line feed and carriage return are characters SQS takes.
        let mut event = signed_up();
        event["subject"] = json!("line one\nline\ttwo\r");
        assert!(parse(&event).is_ok());
        assert_eq!(refused_character("ok \u{FFFD} \u{10000}"), None);
        assert_eq!(refused_character("ab\u{FFFF}"), Some((2, '\u{FFFF}')));
    }

    #[test]
    fn time_before_1970_or_far_ahead_of_the_producer_is_named() {
        let mut event = signed_up();
        event["time"] = json!("1969-12-31T23:59:59Z");
        let err = parse(&event).unwrap_err();
        assert_eq!(err.field(), "time", "{err}");
        assert!(err.to_string().contains("1970"), "{err}");

        let ahead = Utc::now() + chrono::Duration::days(400);
        event["time"] = json!(ahead.to_rfc3339());
        let err = Envelope::parse_submission(&event).unwrap_err();
        assert_eq!(err.field(), "time", "{err}");
        assert!(err.to_string().contains("15 minutes ahead"), "{err}");
        // Already on the stream: the time is the producer's business, and stays.
        assert!(parse(&event).is_ok());
        // Clock skew within the bound is fine.
        event["time"] = json!((Utc::now() + chrono::Duration::minutes(5)).to_rfc3339());
        assert!(Envelope::parse_submission(&event).is_ok());
    }

    #[test]
    fn data_with_noncharacters_is_written_escaped_and_reads_back_the_same() {
        let mut event = signed_up();
        event["data"] = json!({"note": "a\u{FFFF}b\u{FFFE}", "\u{FFFF}key": 1});
        let envelope = parse(&event).unwrap();
        let bytes = envelope.to_json_bytes();
        let text = std::str::from_utf8(&bytes).unwrap();
        assert_eq!(refused_character(text), None, "{text}");
        assert!(text.contains(r"a\uffffb\ufffe"), "{text}");
        assert_eq!(Envelope::parse(&bytes).unwrap(), envelope);
        assert_eq!(envelope.to_json().as_bytes(), &bytes[..]);
        // A record written raw by someone else is refused by the router's reading, naming `data`.
        let raw = serde_json::to_vec(&event).unwrap();
        let err = crate::envelope::validate_record(&raw).err().unwrap();
        assert_eq!(err.field(), "data", "{err}");
        assert!(err.to_string().contains("U+FFFF"), "{err}");
    }
}
