//! [`EventKind`]: business, system or data — an attribute subscriptions filter on.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The seed's three kinds of events. They travel as the `kind` extension attribute and as an SNS
/// message attribute, so a subscription can ask for, say, only system events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// Something happened in the business domain (`user_signed_up`, `welcome_sent`, ...).
    Business,
    /// Something happened to the system itself (`job_failed`, `deployment_finished`, ...).
    System,
    /// A data change notification (a row changed, a file landed).
    Data,
}

impl EventKind {
    /// The wire name (`business`, `system`, `data`).
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Business => "business",
            EventKind::System => "system",
            EventKind::Data => "data",
        }
    }

    pub(super) fn parse(value: &str) -> Option<Self> {
        match value {
            "business" => Some(EventKind::Business),
            "system" => Some(EventKind::System),
            "data" => Some(EventKind::Data),
            _ => None,
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
