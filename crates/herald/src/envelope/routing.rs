//! What the router needs: the SNS message attributes of an event ([`RoutingAttributes`]) and
//! [`validate_record`], which validates a stream record without building an owned [`Envelope`].

use std::borrow::Cow;

use super::parse::{check_size, refused_character, utf8, Defaults, Header, Wire};
use super::{Envelope, EventKind, ValidationError};

impl Envelope {
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

/// What the router needs from a stream record without building an owned [`Envelope`]: the
/// attributes validated (borrowed from the record), `data` left as raw JSON. The record's bytes
/// are published unchanged ([`EnvelopeView::text`]).
pub fn validate_record(bytes: &[u8]) -> Result<EnvelopeView<'_>, ValidationError> {
    check_size(bytes.len())?;
    let text = utf8(bytes)?;
    let wire = Wire::from_text(text)?;
    let header = wire.header(Defaults::None)?;
    // The record is published as it is: raw U+FFFE / U+FFFF (herald's writers escape them) would
    // be refused by SNS and SQS. The attributes were checked above; what is left is `data`.
    if text.as_bytes().contains(&0xEF) {
        if let Some((at, bad)) = refused_character(text) {
            return Err(ValidationError::Invalid {
                field: "data",
                reason: format!(
                    "contains U+{:04X} unescaped at character {at}, which SNS and SQS refuse \
                     (herald's producers write it as \\u{:04x})",
                    u32::from(bad),
                    u32::from(bad)
                ),
            });
        }
    }
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
    /// The routing attributes for as long as the record lives: `None` when one of them was
    /// escaped in the JSON (then only [`EnvelopeView::routing_attributes`] has its text).
    pub fn record_routing_attributes(&self) -> Option<RoutingAttributes<'a>> {
        let header = &self.header;
        match (&header.event_type, &header.source, &header.correlationid) {
            (Cow::Borrowed(event_type), Cow::Borrowed(source), Cow::Borrowed(correlation_id)) => {
                Some(RoutingAttributes {
                    event_type,
                    kind: header.kind,
                    source,
                    schema_version: header.schemaversion,
                    correlation_id,
                    aggregate_version: header.aggregateversion,
                })
            }
            _ => None,
        }
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
    use super::super::fixtures::signed_up;
    use super::*;

    #[test]
    fn record_view_validates_without_the_payload() {
        let bytes = serde_json::to_vec(&signed_up()).unwrap();
        let view = validate_record(&bytes).unwrap();
        assert_eq!(view.routing_attributes().event_type, "user_signed_up");
        assert_eq!(view.routing_attributes().kind, EventKind::Business);
    }
}
