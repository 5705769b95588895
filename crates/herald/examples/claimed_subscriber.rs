//! Your own subscriber: welcome every new user once, however often the event is delivered.
//! A Lambda function; its template entry gives it a queue, `IDEMPOTENCY_TABLE` and
//! `DEAD_LETTER_QUEUE_URL` (see the README's "Build your own pipeline").

use herald::{ClaimedHandler, Envelope, HandlerError, Herald, Outcome};

struct Welcome;

impl ClaimedHandler for Welcome {
    fn name(&self) -> &'static str {
        "welcome"
    }

    fn wants(&self, event: &Envelope) -> bool {
        event.event_type() == "user_signed_up"
    }

    async fn handle(&self, event: &Envelope) -> Result<Outcome, HandlerError> {
        #[derive(serde::Deserialize)]
        struct SignedUp {
            email: String,
        }
        let user: SignedUp = event.data_as()?; // a bad payload is dead-lettered, naming the field
        // Send the mail here: it runs once per event, under an idempotency claim.
        Ok(Outcome::new("welcomed").with_detail(serde_json::json!({ "to": user.email })))
    }
}

#[tokio::main]
async fn main() -> Result<(), herald::lambda::Error> {
    Herald::from_env().await?.run_claimed(Welcome).await
}
