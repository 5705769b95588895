//! email: queues a confirmation for payment_succeeded in the outbox (claimed idempotency).

#[tokio::main]
async fn main() -> Result<(), herald::lambda::Error> {
    let herald = herald::Herald::from_env()
        .await?
        .upcasters(shop::upcasters());
    let email = shop::email::EmailSender::from_env(herald.aws())?;
    herald.run_claimed(email).await
}
