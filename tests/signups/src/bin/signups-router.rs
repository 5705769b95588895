//! signups-router: Kinesis records in, SNS out, poison (and types outside the catalog) to its DLQ.

#[tokio::main]
async fn main() -> Result<(), herald::Error> {
    herald::Herald::from_env()
        .await?
        .catalog(herald_signups::catalog())
        .run_router()
        .await
}
