//! User sign-ups: a second, tiny herald application, written against herald's public API only,
//! to show the library knows nothing of the shop.
//!
//! One event type, `user_signed_up` (business, versions 1 and 2), and one subscriber, [`Welcome`],
//! which welcomes each new user once. v1 carried a single `name`; v2 calls it `displayName` and
//! adds the user's `plan` (every v1 user was on the free plan). The test `tests/signups.rs` runs it
//! end to end on the local runner.

use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::AttributeValue;
use herald::aws::{env, error_text, MissingEnv};
use herald::{ClaimedHandler, Envelope, EventCatalog, EventKind, HandlerError, Outcome, Upcasters};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The event type.
pub const USER_SIGNED_UP: &str = "user_signed_up";

/// The sign-ups' event types: what the producer accepts and the router routes.
pub fn catalog() -> EventCatalog {
    EventCatalog::new().with(USER_SIGNED_UP, EventKind::Business, 1..=2)
}

/// How old versions are read: `user_signed_up` v1 → v2.
pub fn upcasters() -> Upcasters {
    Upcasters::new()
        .current(USER_SIGNED_UP, 2)
        .step(USER_SIGNED_UP, 1, user_signed_up_v1_to_v2)
}

/// v1 → v2: `name` became `displayName`; v1 had no plans, so every v1 user is on `free`.
fn user_signed_up_v1_to_v2(mut data: Value) -> Value {
    if let Value::Object(fields) = &mut data {
        if let Some(name) = fields.remove("name") {
            fields.insert("displayName".into(), name);
        }
        fields.entry("plan").or_insert_with(|| "free".into());
    }
    data
}

/// `user_signed_up` at version 2, the one handlers read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserSignedUp {
    /// The new user.
    pub user_id: String,
    /// How to address them.
    pub display_name: String,
    /// `free`, `pro`, ...
    pub plan: String,
}

/// The welcome subscriber: one item per user in the welcome table (partition key `userId`).
///
/// The item records what the handler saw after upcasting, and `welcomes` is *added to* rather
/// than set, so a second effect for the same user would show as `welcomes = 2`.
#[derive(Clone, Debug)]
pub struct Welcome {
    dynamodb: aws_sdk_dynamodb::Client,
    table: String,
}

impl Welcome {
    /// Welcome into `table`.
    pub fn new(dynamodb: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Welcome {
            dynamodb,
            table: table.into(),
        }
    }

    /// Welcome into `TABLE_NAME` (the subscriber block's own table).
    pub fn from_env(aws: &SdkConfig) -> Result<Self, MissingEnv> {
        Ok(Welcome::new(herald::aws::dynamodb(aws), env("TABLE_NAME")?))
    }
}

impl ClaimedHandler for Welcome {
    fn name(&self) -> &'static str {
        "welcome"
    }

    fn wants(&self, event: &Envelope) -> bool {
        event.event_type() == USER_SIGNED_UP
    }

    async fn handle(&self, event: &Envelope) -> Result<Outcome, HandlerError> {
        let user: UserSignedUp = event.data_as()?;
        let s = |v: &str| AttributeValue::S(v.to_string());
        let n = |v: u32| AttributeValue::N(v.to_string());
        self.dynamodb
            .update_item()
            .table_name(&self.table)
            .key("userId", s(&user.user_id))
            .update_expression(
                "SET displayName = :name, #plan = :plan, eventId = :event, schemaVersion = :version \
                 ADD welcomes :one",
            )
            // `plan` is a DynamoDB reserved word.
            .expression_attribute_names("#plan", "plan")
            .expression_attribute_values(":name", s(&user.display_name))
            .expression_attribute_values(":plan", s(&user.plan))
            .expression_attribute_values(":event", s(event.id()))
            .expression_attribute_values(":version", n(event.schema_version()))
            .expression_attribute_values(":one", n(1))
            .send()
            .await
            .map_err(|err| HandlerError::Retry(format!("welcome table: {}", error_text(&err))))?;
        Ok(Outcome::new("welcomed").with_detail(&user))
    }
}
