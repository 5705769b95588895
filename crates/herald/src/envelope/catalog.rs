//! The event catalog: which event types exist, of which kind, in which schema versions, and
//! (when declared) which sources produce them.
//!
//! The application builds it ([`EventCatalog::with`]) and hands it to herald's wiring. The
//! producer checks submissions against it (a client learns at once that `usr_signed_up` is a
//! typo) and the router checks stream records (a writer that skipped the producer cannot push an
//! unknown type or version to the subscribers: it lands in the router's DLQ with the reason).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::RangeInclusive;

use crate::envelope::{EventKind, RoutingAttributes, ValidationError};

/// One known event type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventType {
    /// Its kind.
    pub kind: EventKind,
    /// The schema versions that exist.
    pub versions: RangeInclusive<u32>,
    /// The sources allowed to produce it ([`EventCatalog::produced_by`]); `None`: any.
    pub producers: Option<BTreeSet<String>>,
}

/// Known event types by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventCatalog {
    types: BTreeMap<String, EventType>,
}

impl EventCatalog {
    /// An empty catalog.
    pub fn new() -> Self {
        EventCatalog::default()
    }

    /// Add a type.
    pub fn with(mut self, name: &str, kind: EventKind, versions: RangeInclusive<u32>) -> Self {
        self.types.insert(
            name.to_string(),
            EventType {
                kind,
                versions,
                producers: None,
            },
        );
        self
    }

    /// Only these sources produce `name` (an event type added before). Every function with the
    /// catalog refuses the type from any other source: the producer answers 400 naming `source`,
    /// the router dead-letters such a record with that reason, so one service cannot announce
    /// what only another may (the inventory a `fraud_suspected`, say). IAM cannot say it: any
    /// role that may write to the stream may write any type.
    ///
    /// # Panics
    /// When `name` was not added first: a catalog is built once, at start.
    pub fn produced_by(mut self, name: &str, sources: &[&str]) -> Self {
        let known = self
            .types
            .get_mut(name)
            .unwrap_or_else(|| panic!("produced_by({name:?}): add the type with `with` first"));
        known.producers = Some(sources.iter().map(|s| s.to_string()).collect());
        self
    }

    /// The type's entry, if known.
    pub fn get(&self, name: &str) -> Option<&EventType> {
        self.types.get(name)
    }

    /// The known type names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.types.keys().map(String::as_str)
    }

    /// Whether an event's type, kind and version are known; the error names the attribute.
    pub fn check(&self, event: RoutingAttributes<'_>) -> Result<(), ValidationError> {
        let Some(known) = self.types.get(event.event_type) else {
            let names: Vec<&str> = self.types.keys().map(String::as_str).collect();
            return Err(ValidationError::Invalid {
                field: "type",
                reason: format!(
                    "is \"{}\", which is not in the event catalog (known: {})",
                    event.event_type,
                    names.join(", ")
                ),
            });
        };
        if known.kind != event.kind {
            return Err(ValidationError::Invalid {
                field: "kind",
                reason: format!(
                    "is {} but {} events are {}",
                    event.kind, event.event_type, known.kind
                ),
            });
        }
        if let Some(producers) = &known.producers {
            if !producers.contains(event.source) {
                let allowed: Vec<&str> = producers.iter().map(String::as_str).collect();
                return Err(ValidationError::Invalid {
                    field: "source",
                    reason: format!(
                        "is \"{}\", which does not produce {} (its producers: {})",
                        event.source,
                        event.event_type,
                        allowed.join(", ")
                    ),
                });
            }
        }
        if !known.versions.contains(&event.schema_version) {
            return Err(ValidationError::Invalid {
                field: "schemaversion",
                reason: format!(
                    "is {} but {} has versions {} to {}",
                    event.schema_version,
                    event.event_type,
                    known.versions.start(),
                    known.versions.end()
                ),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Envelope;

    fn attributes(event_type: &str, kind: EventKind, version: u32) -> Envelope {
        Envelope::builder(event_type, "herald/test")
            .subject("s")
            .kind(kind)
            .schema_version(version)
            .build()
            .unwrap()
    }

    #[test]
    fn unknown_types_kinds_and_versions_are_named() {
        let catalog = EventCatalog::new()
            .with("user_signed_up", EventKind::Business, 1..=2)
            .with("job_failed", EventKind::System, 1..=1);
        assert!(catalog
            .check(attributes("user_signed_up", EventKind::Business, 1).routing_attributes())
            .is_ok());
        let err = catalog
            .check(attributes("gizmo_exploded", EventKind::Business, 1).routing_attributes())
            .unwrap_err();
        assert_eq!(err.field(), "type");
        assert!(
            err.to_string().contains("not in the event catalog"),
            "{err}"
        );
        let err = catalog
            .check(attributes("user_signed_up", EventKind::Business, 9).routing_attributes())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "`schemaversion` is 9 but user_signed_up has versions 1 to 2"
        );
        let err = catalog
            .check(attributes("job_failed", EventKind::Business, 1).routing_attributes())
            .unwrap_err();
        assert_eq!(err.field(), "kind");
    }

    /// Issue 24, item 9: a type's declared producers are the only sources it may come from.
    #[test]
    fn a_type_from_a_source_that_does_not_produce_it_is_named() {
        let catalog = EventCatalog::new()
            .with("user_signed_up", EventKind::Business, 1..=1)
            .produced_by("user_signed_up", &["herald/users"])
            .with("job_failed", EventKind::System, 1..=1);
        let from = |source: &str, event_type: &str, kind| {
            Envelope::builder(event_type, source)
                .subject("s")
                .kind(kind)
                .build()
                .unwrap()
        };
        let ok = from("herald/users", "user_signed_up", EventKind::Business);
        assert!(catalog.check(ok.routing_attributes()).is_ok());
        let forged = from("herald/inventory", "user_signed_up", EventKind::Business);
        let err = catalog.check(forged.routing_attributes()).unwrap_err();
        assert_eq!(err.field(), "source");
        assert_eq!(
            err.to_string(),
            "`source` is \"herald/inventory\", which does not produce user_signed_up (its producers: herald/users)"
        );
        // Undeclared: any source.
        let anyone = from("herald/anyone", "job_failed", EventKind::System);
        assert!(catalog.check(anyone.routing_attributes()).is_ok());
    }
}
