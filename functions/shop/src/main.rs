//! Every Lambda function of the shop, one binary: `HERALD_FUNCTION` (set per function in
//! template.yaml) says which one this process is. One binary lets `sam build` build once for all
//! thirteen functions (they share one build definition) instead of re-optimising the whole
//! dependency graph per function.

use herald::Error;
use herald::Herald;
use shop::orders_view::{OrdersProjection, OrdersQuery};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let herald = Herald::from_env()
        .await?
        .catalog(shop::catalog())
        .submissions(shop::submissions())
        .upcasters(shop::upcasters());
    let aws = herald.aws().clone();
    match herald::aws::env("HERALD_FUNCTION")?.as_str() {
        "producer" => herald.run_producer().await,
        "router" => herald.run_router().await,
        "publisher" => herald.run_publisher().await,
        "inventory" => {
            let inventory = shop::inventory::Inventory::from_env(&aws)?;
            herald.run_transactional(inventory).await
        }
        "analytics" => {
            let analytics = shop::analytics::Analytics::from_env(&aws)?;
            herald.run_transactional(analytics).await
        }
        "ops" => {
            herald
                .run_transactional(shop::ops::Ops::from_env(&aws)?)
                .await
        }
        "payment" => {
            herald
                .run_keyed(shop::payment::Payment::from_env(&aws)?)
                .await
        }
        "email" => {
            herald
                .run_keyed(shop::email::EmailSender::from_env(&aws)?)
                .await
        }
        "orders" => {
            let commands = shop::commands::OrderCommands::new(herald.event_store()?);
            herald.run_http(commands).await
        }
        "fraud" => {
            let detector = shop::fraud::FraudDetector::from_env(&aws)?;
            herald.run_windowed(detector).await
        }
        "compensation" => {
            let cancel = shop::compensation::CancelSuspectOrders::new(herald.event_store()?);
            herald.run_claimed(cancel).await
        }
        "projector" => {
            herald
                .run_projector(OrdersProjection::from_env(&aws)?)
                .await
        }
        "query" => {
            let query = OrdersQuery::new(OrdersProjection::from_env(&aws)?);
            herald.run_http(query).await
        }
        other => Err(format!(
            "HERALD_FUNCTION is \"{other}\"; expected producer, router, publisher, inventory, \
             analytics, ops, payment, email, orders, fraud, compensation, projector or query"
        )
        .into()),
    }
}
