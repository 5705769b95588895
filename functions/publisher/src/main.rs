//! publisher: the event store's DynamoDB stream onto Kinesis (published if and only if appended).

#[tokio::main]
async fn main() -> Result<(), herald::lambda::Error> {
    herald::Herald::from_env().await?.run_publisher().await
}
