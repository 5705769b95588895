//! payment: charges order_placed, emits payment_succeeded / payment_failed (claimed idempotency).

#[tokio::main]
async fn main() -> Result<(), herald::lambda::Error> {
    let herald = herald::Herald::from_env()
        .await?
        .upcasters(shop::upcasters());
    let payment = shop::payment::Payment::from_env(herald.aws())?;
    herald.run_claimed(payment).await
}
