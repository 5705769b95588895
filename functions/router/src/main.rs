//! router: Kinesis records in, SNS PublishBatch out, poison to the dead-letter queue.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    herald::telemetry::init();
    let aws = herald::aws::sdk_config().await;
    herald::lambda::run_router(&aws).await
}
