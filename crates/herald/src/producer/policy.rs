//! [`SubmissionPolicy`]: what the public producer takes from clients.
//!
//! The catalog says which events exist; the policy says which of them a *client* may submit.
//! Internal events — a payment that succeeded, a reservation that failed, anything a service or
//! the event store emits — come only from their services, which write through
//! [`super::Producer::publish`], not through the public API. Without a policy a client could
//! announce `payment_succeeded` (an email sent, revenue counted, nothing charged).
//!
//! For each submission the policy checks, in order, each error naming the attribute:
//! 1. the `type` is one clients may submit ([`SubmissionPolicy::allow`]);
//! 2. the `source` is one of the sources allowed for that type;
//! 3. `data` is valid under the released JSON Schema of that type and `schemaversion`
//!    ([`SubmissionPolicy::schema`]; the error carries a JSON pointer and the rule); a type
//!    allowed with schemas but submitted at a version without one is refused;
//! 4. the application's own check of that type, if it gave one ([`SubmissionPolicy::check`]) —
//!    rules a schema cannot say (a total that must add up).
//!
//! Client ids are namespaced: the id a client gives is not the id herald writes. herald derives
//! the event's id from the client's `source` and `id` (a UUIDv5 in a namespace of its own), so a
//! retry with the same id is still the same event (and deduplicated), but no client can choose
//! the id of an event a service will emit later — deterministic ids such as follow-ups' and
//! command services' live in other namespaces, and pre-submitting one used to turn the real
//! event into a payload mismatch everywhere. The answer reports both (`id` and `clientId`).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde_json::Value;
use uuid::Uuid;

use crate::envelope::json_schema;
use crate::envelope::{Envelope, ValidationError};

const CLIENT_ID_NAMESPACE: Uuid = Uuid::from_bytes([
    0x51, 0x3c, 0xa9, 0x0e, 0x6d, 0x27, 0x4f, 0x81, 0xb4, 0x98, 0x2e, 0x05, 0xc7, 0x3a, 0x6f, 0xd2,
]);

/// An application's check of one event type's submissions (what its schema cannot express).
pub type SubmissionCheck = fn(&Envelope) -> Result<(), ValidationError>;

/// Which event types and sources clients may submit, and the schemas their `data` must meet.
/// The default allows nothing: an application lists what its clients may send.
#[derive(Clone, Default)]
pub struct SubmissionPolicy {
    /// Type → the sources a client may submit it from.
    allowed: BTreeMap<String, Vec<String>>,
    /// (type, version) → schema.
    schemas: BTreeMap<(String, u32), Arc<Value>>,
    checks: BTreeMap<String, SubmissionCheck>,
}

impl fmt::Debug for SubmissionPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubmissionPolicy")
            .field("allowed", &self.allowed)
            .field("schemas", &self.schemas.keys().collect::<Vec<_>>())
            .field("checks", &self.checks.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl SubmissionPolicy {
    /// A policy that allows nothing yet.
    pub fn new() -> Self {
        SubmissionPolicy::default()
    }

    /// Clients may submit `event_type` from any of `sources` (CloudEvents `source`, compared
    /// exactly).
    pub fn allow(mut self, event_type: &str, sources: &[&str]) -> Self {
        self.allowed
            .entry(event_type.to_string())
            .or_default()
            .extend(sources.iter().map(|s| s.to_string()));
        self
    }

    /// `data` of `event_type` at `version` must be valid under `schema` (a JSON Schema in the
    /// subset [`crate::envelope::json_schema`] reads).
    pub fn schema(mut self, event_type: &str, version: u32, schema: Value) -> Self {
        self.schemas
            .insert((event_type.to_string(), version), Arc::new(schema));
        self
    }

    /// The schemas of an application, as `(type, version, JSON text)` — e.g. `include_str!`s of
    /// its `events/schemas/<type>/v<N>.json`. An unreadable schema is an error naming it.
    pub fn schemas<'a>(
        mut self,
        schemas: impl IntoIterator<Item = (&'a str, u32, &'a str)>,
    ) -> Result<Self, String> {
        for (event_type, version, text) in schemas {
            let schema: Value = serde_json::from_str(text)
                .map_err(|e| format!("the schema of {event_type} v{version} is not JSON: {e}"))?;
            self = self.schema(event_type, version, schema);
        }
        Ok(self)
    }

    /// Run `check` on every submission of `event_type` after its schema.
    pub fn check(mut self, event_type: &str, check: SubmissionCheck) -> Self {
        self.checks.insert(event_type.to_string(), check);
        self
    }

    /// The types clients may submit, sorted.
    pub fn allowed_types(&self) -> impl Iterator<Item = &str> {
        self.allowed.keys().map(String::as_str)
    }

    /// Whether a client may submit `event`; the error names the attribute (and, for `data`,
    /// the JSON pointer and the rule).
    pub fn admit(&self, event: &Envelope) -> Result<(), ValidationError> {
        let event_type = event.event_type();
        let Some(sources) = self.allowed.get(event_type) else {
            let allowed: Vec<&str> = self.allowed_types().collect();
            return Err(ValidationError::Invalid {
                field: "type",
                reason: format!(
                    "is \"{event_type}\", which clients may not submit (only its own service \
                     emits it); clients may submit: {}",
                    if allowed.is_empty() {
                        "nothing".to_string()
                    } else {
                        allowed.join(", ")
                    }
                ),
            });
        };
        if !sources.iter().any(|s| s == event.source()) {
            return Err(ValidationError::Invalid {
                field: "source",
                reason: format!(
                    "is \"{}\"; clients submit {event_type} from {}",
                    shorten(event.source()),
                    sources.join(", ")
                ),
            });
        }
        let version = event.schema_version();
        let has_schemas = self.schemas.keys().any(|(t, _)| t == event_type);
        match self.schemas.get(&(event_type.to_string(), version)) {
            Some(schema) => {
                let data = event.data().unwrap_or(&Value::Null);
                if let Some(first) = json_schema::validate(schema, data).into_iter().next() {
                    return Err(ValidationError::Schema {
                        pointer: first.pointer,
                        rule: first.rule,
                        event_type: event_type.to_string(),
                        version,
                    });
                }
            }
            None if has_schemas => {
                return Err(ValidationError::Invalid {
                    field: "schemaversion",
                    reason: format!(
                        "is {version}; {event_type} has no released schema of that version"
                    ),
                })
            }
            None => {}
        }
        match self.checks.get(event_type) {
            Some(check) => check(event),
            None => Ok(()),
        }
    }

    /// The id herald gives a client's event that came with `client_id` from `source`: the
    /// same for a retry, never one a service's deterministic id can equal.
    pub fn event_id(source: &str, client_id: &str) -> String {
        Uuid::new_v5(
            &CLIENT_ID_NAMESPACE,
            format!("{source}\n{client_id}").as_bytes(),
        )
        .to_string()
    }
}

fn shorten(text: &str) -> &str {
    match text.char_indices().nth(64) {
        Some((cut, _)) => &text[..cut],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::EventKind;

    fn policy() -> SubmissionPolicy {
        SubmissionPolicy::new()
            .allow("order_placed", &["shop/storefront"])
            .schema(
                "order_placed",
                1,
                json!({"type": "object", "required": ["orderId"],
                       "properties": {"orderId": {"type": "string", "maxLength": 8}}}),
            )
            .check("order_placed", |e| match e.subject() {
                Some("forbidden") => Err(ValidationError::Invalid {
                    field: "subject",
                    reason: "is forbidden".into(),
                }),
                _ => Ok(()),
            })
    }

    fn event(event_type: &str, source: &str, version: u32, data: Value) -> Envelope {
        Envelope::builder(event_type, source)
            .subject("o-1")
            .kind(EventKind::Business)
            .schema_version(version)
            .data(data)
            .build()
            .unwrap()
    }

    #[test]
    fn internal_types_and_foreign_sources_are_refused_by_name() {
        let err = policy()
            .admit(&event("payment_succeeded", "shop/storefront", 1, json!({})))
            .unwrap_err();
        assert_eq!(err.field(), "type");
        assert!(
            err.to_string().contains("may submit: order_placed"),
            "{err}"
        );
        let err = policy()
            .admit(&event(
                "order_placed",
                "shop/payment",
                1,
                json!({"orderId": "o"}),
            ))
            .unwrap_err();
        assert_eq!(err.field(), "source");
        assert!(policy()
            .admit(&event(
                "order_placed",
                "shop/storefront",
                1,
                json!({"orderId": "o"})
            ))
            .is_ok());
    }

    #[test]
    fn data_is_checked_against_the_schema_of_its_version() {
        let err = policy()
            .admit(&event("order_placed", "shop/storefront", 1, json!({})))
            .unwrap_err();
        assert_eq!(err.location(), "data");
        assert_eq!(
            err.to_string(),
            "`data`: `orderId` is required (the order_placed v1 schema)"
        );
        let err = policy()
            .admit(&event(
                "order_placed",
                "shop/storefront",
                1,
                json!({"orderId": "123456789"}),
            ))
            .unwrap_err();
        assert_eq!(err.location(), "data/orderId");
        assert!(err.to_string().contains("the maximum is 8"), "{err}");
        let err = policy()
            .admit(&event(
                "order_placed",
                "shop/storefront",
                2,
                json!({"orderId": "o"}),
            ))
            .unwrap_err();
        assert_eq!(err.field(), "schemaversion");
    }

    #[test]
    fn the_applications_check_runs_last() {
        let forbidden = Envelope::builder("order_placed", "shop/storefront")
            .subject("forbidden")
            .data(json!({"orderId": "o"}))
            .build()
            .unwrap();
        assert_eq!(policy().admit(&forbidden).unwrap_err().field(), "subject");
    }

    #[test]
    fn client_ids_are_namespaced_per_source() {
        let a = SubmissionPolicy::event_id("shop/storefront", "order-1");
        assert_eq!(a, SubmissionPolicy::event_id("shop/storefront", "order-1"));
        assert_ne!(a, SubmissionPolicy::event_id("shop/other", "order-1"));
        assert_ne!(a, "order-1");
    }
}
