//! ops: opens incidents for system events (transactional idempotency).

#[tokio::main]
async fn main() -> Result<(), herald::lambda::Error> {
    let herald = herald::Herald::from_env()
        .await?
        .upcasters(shop::upcasters());
    let ops = shop::ops::Ops::from_env(herald.aws())?;
    herald.run_transactional(ops).await
}
