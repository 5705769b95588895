//! orders: order commands over HTTP (place, cancel), appended to the event store.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    herald::telemetry::init();
    let aws = herald::aws::sdk_config().await;
    herald::lambda::run_order_service(&aws).await
}
