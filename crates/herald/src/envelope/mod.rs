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
//!
//! One concern per file:
//! - `event`: the [`Envelope`] type, its accessors and its two parsers;
//! - `kind`: [`EventKind`];
//! - `builder`: [`EnvelopeBuilder`];
//! - `parse`: the attribute-by-attribute validation both parsers share;
//! - `scan`: the one-pass reader of an envelope's attributes (serde_json reads the rest);
//! - `time`: RFC 3339 times, the usual form read without a general parser;
//! - `error`: [`ValidationError`];
//! - `follow_up`: events caused by an event, with deterministic ids;
//! - `routing`: [`RoutingAttributes`] and the router's payload-free [`validate_record`];
//! - `span`: [`Envelope::span`], the tracing span work on one event runs in;
//! - `catalog`: [`EventCatalog`], the event types an application has;
//! - [`upcasting`]: reading old schema versions ([`Upcasters`]);
//! - [`json_schema`]: payloads checked against their released JSON Schemas.

mod builder;
mod catalog;
mod error;
mod event;
mod follow_up;
pub mod json_schema;
mod kind;
mod parse;
mod routing;
mod scan;
mod span;
mod time;
pub mod upcasting;

pub use builder::EnvelopeBuilder;
pub use catalog::EventCatalog;
pub use error::ValidationError;
pub use event::Envelope;
pub use kind::EventKind;
pub use routing::{validate_record, EnvelopeView, RoutingAttributes};
pub use upcasting::Upcasters;

/// The only CloudEvents version herald speaks.
pub const SPEC_VERSION: &str = "1.0";
/// The only content type herald carries in `data`.
pub const JSON_CONTENT_TYPE: &str = "application/json";

/// The event the submodules' tests start from.
#[cfg(test)]
pub(crate) mod fixtures {
    use serde_json::{json, Value};

    use super::{Envelope, ValidationError};

    /// A complete, valid `user_signed_up`, as JSON.
    pub(crate) fn signed_up() -> Value {
        json!({
            "specversion": "1.0",
            "id": "evt-1",
            "source": "herald/users",
            "type": "user_signed_up",
            "subject": "user-1",
            "time": "2026-11-26T10:00:00.000Z",
            "datacontenttype": "application/json",
            "kind": "business",
            "schemaversion": 2,
            "correlationid": "evt-1",
            "data": {"userId": "user-1"}
        })
    }

    /// Strict parse of a JSON value.
    pub(crate) fn parse(value: &Value) -> Result<Envelope, ValidationError> {
        Envelope::parse(&serde_json::to_vec(value).unwrap())
    }
}
