//! The bus port: `PublishBatch`-shaped entries with their filter-policy attributes, the outcome
//! of each, and the [`EventBus`] trait the SNS adapter implements.

use std::future::Future;

use crate::aws::AwsError;
use crate::envelope::RoutingAttributes;

/// One SNS message attribute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageAttribute {
    /// Attribute name (a CloudEvents attribute name).
    pub name: &'static str,
    /// `String` or `Number`.
    pub data_type: &'static str,
    /// The value.
    pub value: String,
}

/// One `PublishBatch` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BusMessage {
    /// The entry id, unique within a request.
    pub id: String,
    /// The envelope JSON.
    pub body: String,
    /// Filter-policy attributes.
    pub attributes: Vec<MessageAttribute>,
}

impl BusMessage {
    /// Bytes counted against SNS's 256 KiB request limit.
    pub fn size(&self) -> usize {
        self.body.len()
            + self
                .attributes
                .iter()
                .map(|a| a.name.len() + a.data_type.len() + a.value.len())
                .sum::<usize>()
    }
}

/// The SNS message attributes for an envelope.
pub fn message_attributes(routing: RoutingAttributes<'_>) -> Vec<MessageAttribute> {
    let string = |name, value: &str| MessageAttribute {
        name,
        data_type: "String",
        value: value.to_string(),
    };
    let mut attributes = vec![
        string("type", routing.event_type),
        string("kind", routing.kind.as_str()),
        string("source", routing.source),
        MessageAttribute {
            name: "schemaversion",
            data_type: "Number",
            value: routing.schema_version.to_string(),
        },
        string("correlationid", routing.correlation_id),
    ];
    if let Some(version) = routing.aggregate_version {
        // Lets a subscription ask for event-sourced events only (`"exists": true`).
        attributes.push(MessageAttribute {
            name: "aggregateversion",
            data_type: "Number",
            value: version.to_string(),
        });
    }
    attributes
}

/// The outcome of one entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BusOutcome {
    /// Published.
    Published,
    /// Not published. `sender_fault` means retrying the same entry cannot succeed.
    Failed {
        /// SNS's error code.
        code: String,
        /// Its message.
        message: String,
        /// The entry itself is wrong (too large, bad attribute): retrying cannot help.
        sender_fault: bool,
    },
}

/// The whole request failed; the AWS error tells why ([`AwsError::is_throttling`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BusError(#[from] pub AwsError);

impl BusError {
    /// A failure described by text alone (test doubles, unexpected answers).
    pub fn other(text: impl Into<String>) -> Self {
        BusError(AwsError::other(text))
    }
}

/// The bus port: a `PublishBatch`-shaped call with one outcome per entry, in order.
pub trait EventBus: Send + Sync {
    /// Publish up to 10 entries / 256 KiB.
    fn publish_batch(
        &self,
        entries: &[BusMessage],
    ) -> impl Future<Output = Result<Vec<BusOutcome>, BusError>> + Send;
}
