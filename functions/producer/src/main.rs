//! producer: accepts the shop's events over HTTP (Function URL / API Gateway) and direct invoke, writes them to Kinesis.

#[tokio::main]
async fn main() -> Result<(), herald::lambda::Error> {
    herald::Herald::from_env()
        .await?
        .catalog(shop::catalog())
        .run_producer()
        .await
}
