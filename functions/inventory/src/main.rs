//! inventory: reserves stock for order_placed (transactional idempotency).

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    herald::telemetry::init();
    let aws = herald::aws::sdk_config().await;
    let inventory = herald::subscriber::inventory::Inventory::from_env(&aws)?;
    herald::lambda::run_transactional(&aws, inventory).await
}
