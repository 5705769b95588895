//! analytics: counts business events by type (transactional idempotency).

#[tokio::main]
async fn main() -> Result<(), herald::lambda::Error> {
    let herald = herald::Herald::from_env()
        .await?
        .upcasters(shop::upcasters());
    let analytics = shop::analytics::Analytics::from_env(herald.aws())?;
    herald.run_transactional(analytics).await
}
