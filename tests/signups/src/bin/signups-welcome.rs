//! signups-welcome: one welcome per signed-up user (claimed idempotency).

#[tokio::main]
async fn main() -> Result<(), herald::Error> {
    let herald = herald::Herald::from_env()
        .await?
        .upcasters(herald_signups::upcasters());
    let welcome = herald_signups::Welcome::from_env(herald.aws())?;
    herald.run_claimed(welcome).await
}
