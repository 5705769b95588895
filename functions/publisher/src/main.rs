//! publisher: the event store's DynamoDB stream onto Kinesis (published if and only if appended).

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    herald::telemetry::init();
    let aws = herald::aws::sdk_config().await;
    herald::lambda::run_publisher(&aws).await
}
