//! query: the orders_view read model over HTTP.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    herald::telemetry::init();
    let aws = herald::aws::sdk_config().await;
    herald::lambda::run_query(&aws).await
}
