//! Schema versions: upcasting old events to the version consumers understand.
//!
//! Every event type has a schema version (`schemaversion`); its JSON Schemas live in
//! `events/schemas/<type>/v<N>.json`. Producers may keep writing old versions and the stream keeps
//! old events for replays, so consumers upcast at *read* time: [`Upcasters::upcast`] applies
//! `v1 → v2 → … → current` in steps, each a pure function on `data`. Consumers also ignore fields
//! they do not know (serde's default), so adding an optional field needs no new version.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::envelope::{Envelope, ValidationError};

/// One step: `data` at version `from` → `data` at `from + 1`.
pub type Step = fn(Value) -> Value;

/// The upcasters of every event type, and each type's current version.
#[derive(Clone, Debug, Default)]
pub struct Upcasters {
    current: BTreeMap<String, u32>,
    steps: BTreeMap<(String, u32), Step>,
}

impl Upcasters {
    /// No types.
    pub fn new() -> Self {
        Upcasters::default()
    }

    /// Declare `event_type`'s current version.
    pub fn current(mut self, event_type: &str, version: u32) -> Self {
        self.current.insert(event_type.to_string(), version);
        self
    }

    /// Add the step from `from` to `from + 1`.
    pub fn step(mut self, event_type: &str, from: u32, step: Step) -> Self {
        self.steps.insert((event_type.to_string(), from), step);
        self
    }

    /// The version consumers of `event_type` read (1 when the type has no upcasters).
    pub fn current_version(&self, event_type: &str) -> u32 {
        self.current.get(event_type).copied().unwrap_or(1)
    }

    /// `event` at its type's current version. Events already current, and events of types with
    /// no declared version, are returned unchanged; a newer version than this code knows, or a
    /// missing step, is an error naming `schemaversion`.
    pub fn upcast(&self, event: Envelope) -> Result<Envelope, ValidationError> {
        let Some(&target) = self.current.get(event.event_type()) else {
            return Ok(event);
        };
        let mut version = event.schema_version();
        if version == target {
            return Ok(event);
        }
        if version > target {
            return Err(ValidationError::Invalid {
                field: "schemaversion",
                reason: format!(
                    "is {version}, newer than the {target} this consumer reads for {}",
                    event.event_type()
                ),
            });
        }
        let mut data = event.data().cloned().unwrap_or(Value::Null);
        while version < target {
            let step = self
                .steps
                .get(&(event.event_type().to_string(), version))
                .ok_or_else(|| ValidationError::Invalid {
                    field: "schemaversion",
                    reason: format!(
                        "is {version}; no upcaster to {} for {}",
                        version + 1,
                        event.event_type()
                    ),
                })?;
            data = step(data);
            version += 1;
        }
        Ok(event.at_version(version, Some(data)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// `user_signed_up` v1 had `name`; v2 splits it into `givenName` and keeps `plan` (default
    /// `free`).
    fn upcasters() -> Upcasters {
        Upcasters::new()
            .current("user_signed_up", 2)
            .step("user_signed_up", 1, |mut data| {
                if let Value::Object(fields) = &mut data {
                    let name = fields.remove("name").unwrap_or(Value::Null);
                    fields.insert("givenName".into(), name);
                    fields
                        .entry("plan")
                        .or_insert_with(|| Value::String("free".into()));
                }
                data
            })
    }

    fn signed_up(version: u32, data: Value) -> Envelope {
        Envelope::builder("user_signed_up", "example/users")
            .id("u-1")
            .subject("user-1")
            .schema_version(version)
            .data(data)
            .build()
            .unwrap()
    }

    #[test]
    fn an_old_event_is_read_at_the_current_version() {
        let upcast = upcasters()
            .upcast(signed_up(1, json!({"name": "Ada"})))
            .unwrap();
        assert_eq!(upcast.schema_version(), 2);
        assert_eq!(upcast.id(), "u-1", "identity is unchanged");
        assert_eq!(
            upcast.data(),
            Some(&json!({"givenName": "Ada", "plan": "free"}))
        );
    }

    #[test]
    fn current_events_and_unknown_types_pass_through() {
        let current = signed_up(2, json!({"givenName": "Ada", "plan": "pro"}));
        assert_eq!(upcasters().upcast(current.clone()).unwrap(), current);
        let other = Envelope::builder("job_failed", "example/jobs")
            .subject("j")
            .build()
            .unwrap();
        assert_eq!(upcasters().upcast(other.clone()).unwrap(), other);
    }

    #[test]
    fn a_version_from_the_future_or_a_missing_step_is_named() {
        let err = upcasters().upcast(signed_up(3, json!({}))).unwrap_err();
        assert_eq!(err.field(), "schemaversion");
        let gap = Upcasters::new().current("user_signed_up", 2);
        let err = gap.upcast(signed_up(1, json!({}))).unwrap_err();
        assert!(err.to_string().contains("no upcaster to 2"), "{err}");
    }
}
