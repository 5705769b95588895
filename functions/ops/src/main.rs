//! ops: opens incidents for system events (transactional idempotency).

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    herald::telemetry::init();
    let aws = herald::aws::sdk_config().await;
    let ops = herald::subscriber::ops::Ops::from_env(&aws)?;
    herald::lambda::run_transactional(&aws, ops).await
}
