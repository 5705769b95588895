//! projector: order events from its SQS queue into the orders_view read model.

#[tokio::main]
async fn main() -> Result<(), herald::lambda::Error> {
    let herald = herald::Herald::from_env()
        .await?
        .upcasters(shop::upcasters());
    let orders_view = shop::orders_view::OrdersProjection::from_env(herald.aws())?;
    herald.run_projector(orders_view).await
}
