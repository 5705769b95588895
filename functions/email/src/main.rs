//! email: queues a confirmation for payment_succeeded in the outbox (claimed idempotency).

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    herald::telemetry::init();
    let aws = herald::aws::sdk_config().await;
    let email = herald::subscriber::email::EmailSender::from_env(&aws)?;
    herald::lambda::run_claimed(&aws, email).await
}
