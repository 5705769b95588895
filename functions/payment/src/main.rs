//! payment: charges order_placed, emits payment_succeeded / payment_failed (claimed idempotency).

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    herald::telemetry::init();
    let aws = herald::aws::sdk_config().await;
    let payment = herald::subscriber::payment::Payment::from_env(&aws)?;
    herald::lambda::run_claimed(&aws, payment).await
}
