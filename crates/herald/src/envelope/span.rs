use super::Envelope;

impl Envelope {
    /// The span for work on this event: every line logged inside it carries the event's id, type,
    /// correlation id and causation id.
    pub fn span(&self) -> tracing::Span {
        // ERROR level: a span is kept only if its level passes the filter, and these ids must be
        // on every line about the event whatever the log level (a WARN-only function included).
        tracing::error_span!(
            "event",
            eventId = self.id(),
            eventType = self.event_type(),
            correlationId = self.correlation_id(),
            causationId = self.causation_id().unwrap_or(""),
        )
    }
}
