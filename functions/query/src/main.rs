//! query: the orders_view read model over HTTP.

#[tokio::main]
async fn main() -> Result<(), herald::lambda::Error> {
    let herald = herald::Herald::from_env().await?;
    let orders_view = shop::orders_view::OrdersProjection::from_env(herald.aws())?;
    herald
        .run_http(shop::orders_view::OrdersQuery::new(orders_view))
        .await
}
