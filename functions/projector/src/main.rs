//! projector: order events from its SQS queue into the orders_view read model.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    herald::telemetry::init();
    let aws = herald::aws::sdk_config().await;
    herald::lambda::run_projector(&aws).await
}
