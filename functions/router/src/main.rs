//! router: Kinesis records in, SNS PublishBatch out, poison (and types outside the shop's catalog) to the dead-letter queue.

#[tokio::main]
async fn main() -> Result<(), herald::lambda::Error> {
    herald::Herald::from_env()
        .await?
        .catalog(shop::catalog())
        .run_router()
        .await
}
