//! Your own subscriber whose effect is its own idempotency record: queue each new user's welcome
//! mail in an outbox table, one item per event, written only once whatever the deliveries.
use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use herald::idempotency::{put_once, text, PutOnce};
use herald::{Envelope, HandlerError, Herald, KeyedHandler, KeyedOutcome, Outcome};

#[derive(serde::Deserialize)]
struct SignedUp {
    email: String,
}

struct Welcome {
    outbox: aws_sdk_dynamodb::Client,
    table: String,
}

impl KeyedHandler for Welcome {
    fn name(&self) -> &'static str {
        "welcome"
    }
    fn wants(&self, event: &Envelope) -> bool {
        event.event_type() == "user_signed_up"
    }
    async fn handle(&self, event: &Envelope) -> Result<KeyedOutcome, HandlerError> {
        let user: SignedUp = event.data_as()?;
        let item = HashMap::from([
            ("id".to_string(), AttributeValue::S(event.identity())),
            ("to".to_string(), AttributeValue::S(user.email.clone())),
        ]);
        let outcome = Outcome::new("welcomed").with_detail(serde_json::json!({ "to": user.email }));
        // One conditional write: the item is the proof. A redelivery finds it; the same event id
        // naming another address is refused (dead-lettered with the reason).
        Ok(
            match put_once(&self.outbox, &self.table, "id", item).await? {
                PutOnce::Written => KeyedOutcome::New(outcome),
                PutOnce::Existing(old) if text(&old, "to") == user.email => {
                    KeyedOutcome::Existing(outcome)
                }
                PutOnce::Existing(_) => {
                    return Err(HandlerError::Poison {
                        field: "data.email".into(),
                        reason: "differs from the first delivery of this event id".into(),
                    })
                }
            },
        )
    }
}

#[tokio::main]
async fn main() -> Result<(), herald::Error> {
    let herald = Herald::from_env().await?;
    let welcome = Welcome {
        outbox: herald::aws::dynamodb(herald.aws()),
        table: herald::aws::env("OUTBOX_TABLE")?,
    };
    herald.run_keyed(welcome).await
}
