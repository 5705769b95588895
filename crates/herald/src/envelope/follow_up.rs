//! Follow-up events: caused by an event, in its correlation, with ids derived from the cause so
//! that re-emitting after a retry yields the same event (which the next hop deduplicates).

use uuid::Uuid;

use super::{Envelope, EnvelopeBuilder};

const FOLLOW_UP_NAMESPACE: Uuid = Uuid::from_bytes([
    0x6c, 0x1d, 0x3e, 0x0a, 0x5b, 0x4f, 0x4e, 0x8b, 0x9d, 0x2a, 0x71, 0x0e, 0x45, 0x90, 0xc3, 0x11,
]);

impl Envelope {
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
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{parse, signed_up};

    #[test]
    fn follow_ups_are_deterministic_and_linked() {
        let cause = parse(&signed_up()).unwrap();
        let a = cause
            .follow_up("welcome_sent", "herald/welcome")
            .build()
            .unwrap();
        let b = cause
            .follow_up("welcome_sent", "herald/welcome")
            .build()
            .unwrap();
        assert_eq!(a.id(), b.id());
        assert_eq!(a.correlation_id(), "evt-1");
        assert_eq!(a.causation_id(), Some("evt-1"));
        assert_eq!(a.subject(), Some("user-1"));
        let c = cause
            .follow_up("welcome_bounced", "herald/welcome")
            .build()
            .unwrap();
        assert_ne!(a.id(), c.id());
    }
}
