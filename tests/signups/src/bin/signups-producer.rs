//! signups-producer: accepts sign-up events over HTTP and direct invoke, writes them to Kinesis.

#[tokio::main]
async fn main() -> Result<(), herald::Error> {
    herald::Herald::from_env()
        .await?
        .catalog(herald_signups::catalog())
        .run_producer()
        .await
}
