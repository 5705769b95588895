//! Your own subscriber: welcome each new user once, however often the event is delivered.
use herald::{ClaimedHandler, Envelope, HandlerError, Herald, Outcome};

#[derive(serde::Deserialize)]
struct SignedUp {
    email: String,
}

struct Welcome;

impl ClaimedHandler for Welcome {
    fn name(&self) -> &'static str {
        "welcome"
    }
    fn wants(&self, event: &Envelope) -> bool {
        event.event_type() == "user_signed_up"
    }
    async fn handle(&self, event: &Envelope) -> Result<Outcome, HandlerError> {
        // A payload without `email` is dead-lettered with the reason; the mail goes out here,
        // once per event, under an idempotency claim.
        let user: SignedUp = event.data_as()?;
        Ok(Outcome::new("welcomed").with_detail(serde_json::json!({ "to": user.email })))
    }
}

#[tokio::main]
async fn main() -> Result<(), herald::Error> {
    Herald::from_env().await?.run_claimed(Welcome).await
}
