//! [`ValidationError`]: why an envelope was rejected, naming the attribute.

/// Why an envelope was rejected. Every variant names the attribute it is about.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// The bytes are not a JSON object.
    #[error("not a JSON object: {0}")]
    NotJson(String),
    /// A required attribute is absent (or null).
    #[error("`{field}` is required")]
    Missing {
        /// The attribute.
        field: &'static str,
    },
    /// An attribute has the wrong JSON type.
    #[error("`{field}` must be {expected}")]
    WrongType {
        /// The attribute.
        field: &'static str,
        /// The JSON type it must have.
        expected: &'static str,
    },
    /// An attribute is present but empty.
    #[error("`{field}` must not be empty")]
    Empty {
        /// The attribute.
        field: &'static str,
    },
    /// An attribute is longer than herald allows.
    #[error("`{field}` is {actual} characters; the limit is {limit}")]
    TooLong {
        /// The attribute.
        field: &'static str,
        /// The most allowed.
        limit: usize,
        /// What it is.
        actual: usize,
    },
    /// An attribute's value is not one herald accepts.
    #[error("`{field}` {reason}")]
    Invalid {
        /// The attribute.
        field: &'static str,
        /// Why, in words that follow the attribute's name.
        reason: String,
    },
    /// `data` breaks its event type's released JSON Schema.
    #[error("`data{pointer}`: {rule} (the {event_type} v{version} schema)")]
    Schema {
        /// Where in `data`, as a JSON pointer (`/items/0/sku`; empty for `data` itself).
        pointer: String,
        /// The rule broken.
        rule: String,
        /// The event type whose schema it is.
        event_type: String,
        /// The schema version.
        version: u32,
    },
    /// The whole encoded event is larger than the pipeline can carry.
    #[error("the event is {actual} bytes; the limit is {limit} bytes (SNS's 256 KiB message limit less room for attributes)")]
    TooLarge {
        /// The most bytes allowed.
        limit: usize,
        /// The event's bytes.
        actual: usize,
    },
}

impl ValidationError {
    /// Where the error is, as precisely as it is known: the attribute, or for a schema violation
    /// `data` followed by the JSON pointer into it (`data/items/0/sku`).
    pub fn location(&self) -> String {
        match self {
            ValidationError::Schema { pointer, .. } => format!("data{pointer}"),
            other => other.field().to_string(),
        }
    }

    /// The attribute the error is about (`"event"` for whole-event errors).
    pub fn field(&self) -> &'static str {
        match self {
            ValidationError::NotJson(_) | ValidationError::TooLarge { .. } => "event",
            ValidationError::Schema { .. } => "data",
            ValidationError::Missing { field }
            | ValidationError::WrongType { field, .. }
            | ValidationError::Empty { field }
            | ValidationError::TooLong { field, .. }
            | ValidationError::Invalid { field, .. } => field,
        }
    }
}
