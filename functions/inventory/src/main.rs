//! inventory: reserves stock for order_placed, releases it on order_cancelled (transactional idempotency).

#[tokio::main]
async fn main() -> Result<(), herald::lambda::Error> {
    let herald = herald::Herald::from_env()
        .await?
        .upcasters(shop::upcasters());
    let inventory = shop::inventory::Inventory::from_env(herald.aws())?;
    herald.run_transactional(inventory).await
}
