//! The bus port: `PublishBatch`-shaped entries with their filter-policy attributes, the outcome
//! of each, and the [`EventBus`] trait the SNS adapter implements.

use std::borrow::Cow;
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

/// One SNS message attribute of a [`BusMessage`], its value borrowed from the record where the
/// record's JSON had it as is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BusAttribute<'a> {
    /// Attribute name (a CloudEvents attribute name).
    pub name: &'static str,
    /// `String` or `Number`.
    pub data_type: &'static str,
    /// The value.
    pub value: Cow<'a, str>,
}

impl BusAttribute<'_> {
    /// The same attribute, owning its value.
    pub fn into_owned(self) -> BusAttribute<'static> {
        BusAttribute {
            value: Cow::Owned(self.value.into_owned()),
            ..self
        }
    }
}

/// One `PublishBatch` entry. Body and attributes borrow from the Kinesis record: the SNS
/// request copies them once, into its own entry; the router does not copy them before.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BusMessage<'a> {
    /// The entry id, unique within a request.
    pub id: String,
    /// The envelope JSON.
    pub body: Cow<'a, str>,
    /// Filter-policy attributes.
    pub attributes: Vec<BusAttribute<'a>>,
}

impl BusMessage<'_> {
    /// Bytes counted against SNS's 256 KiB request limit.
    pub fn size(&self) -> usize {
        self.body.len()
            + self
                .attributes
                .iter()
                .map(|a| a.name.len() + a.data_type.len() + a.value.len())
                .sum::<usize>()
    }

    /// The same message, owning its body and attributes (for a bus that keeps what it got).
    pub fn into_owned(self) -> BusMessage<'static> {
        BusMessage {
            id: self.id,
            body: Cow::Owned(self.body.into_owned()),
            attributes: self
                .attributes
                .into_iter()
                .map(BusAttribute::into_owned)
                .collect(),
        }
    }
}

/// The SNS message attributes for an envelope.
pub fn message_attributes(routing: RoutingAttributes<'_>) -> Vec<MessageAttribute> {
    bus_attributes(routing)
        .into_iter()
        .map(|a| MessageAttribute {
            name: a.name,
            data_type: a.data_type,
            value: a.value.into_owned(),
        })
        .collect()
}

/// The SNS message attributes for an envelope, borrowing its text.
pub fn bus_attributes(routing: RoutingAttributes<'_>) -> Vec<BusAttribute<'_>> {
    let string = |name, value| BusAttribute {
        name,
        data_type: "String",
        value: Cow::Borrowed(value),
    };
    // Room for the optional sixth: no second allocation for event-sourced events.
    let mut attributes = Vec::with_capacity(6);
    attributes.extend([
        string("type", routing.event_type),
        string("kind", routing.kind.as_str()),
        string("source", routing.source),
        BusAttribute {
            name: "schemaversion",
            data_type: "Number",
            value: Cow::Owned(routing.schema_version.to_string()),
        },
        string("correlationid", routing.correlation_id),
    ]);
    if let Some(version) = routing.aggregate_version {
        // Lets a subscription ask for event-sourced events only (`"exists": true`).
        attributes.push(BusAttribute {
            name: "aggregateversion",
            data_type: "Number",
            value: Cow::Owned(version.to_string()),
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
        entries: &[BusMessage<'_>],
    ) -> impl Future<Output = Result<Vec<BusOutcome>, BusError>> + Send;
}
