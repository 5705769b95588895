//! analytics: counts business events by type (transactional idempotency).

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    herald::telemetry::init();
    let aws = herald::aws::sdk_config().await;
    let analytics = herald::subscriber::analytics::Analytics::from_env(&aws)?;
    herald::lambda::run_transactional(&aws, analytics).await
}
