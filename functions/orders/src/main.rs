//! orders: order commands over HTTP (place, cancel), appended to the event store.

#[tokio::main]
async fn main() -> Result<(), herald::lambda::Error> {
    let herald = herald::Herald::from_env()
        .await?
        .upcasters(shop::upcasters());
    let commands = shop::commands::OrderCommands::new(herald.event_store()?);
    herald.run_http(commands).await
}
