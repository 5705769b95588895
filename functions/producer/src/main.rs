//! producer: accepts events over HTTP (Function URL / API Gateway) and direct invoke, writes them to Kinesis.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    herald::telemetry::init();
    let aws = herald::aws::sdk_config().await;
    herald::lambda::run_producer(&aws).await
}
