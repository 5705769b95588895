//! `shop rebuild orders_view`: empty the shop's read model and fold every event of the stack's
//! event store into it again, through herald's [`herald::projection::rebuild`].

use std::time::Instant;

use anyhow::{bail, Result};
use herald::event_store::DynamoDbEventStore;
use herald_local::{binaries, Stack};
use shop::orders_view::{OrdersProjection, NAME};

use crate::common::progress_bar;

/// `shop rebuild <name>` on the running stack `stack`, with a progress bar (pause the projector
/// first, or events projected meanwhile are deleted with the rest).
pub async fn command(name: &str, stack: &str) -> Result<()> {
    if name != NAME {
        bail!("no projection {name}; the projections are: {NAME}");
    }
    let (stack, aws) = herald_local::ops::connect(&binaries::project_root(), stack).await?;
    let bar = progress_bar("rebuilding orders_view");
    let started = Instant::now();
    let applied = rebuild_orders_view(&stack, &aws, |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })
    .await?;
    bar.finish();
    println!(
        "orders_view rebuilt from {applied} events in {:.1?}",
        started.elapsed()
    );
    Ok(())
}

/// Rebuild `orders_view` from the stack's event store (old event versions upcast by
/// [`shop::upcasters`]); `progress` gets (items read, total). Returns the events applied.
pub async fn rebuild_orders_view(
    stack: &Stack,
    aws: &aws_config::SdkConfig,
    progress: impl FnMut(u64, u64),
) -> Result<u64> {
    let dynamodb = aws_sdk_dynamodb::Client::new(aws);
    let store = DynamoDbEventStore::new(dynamodb.clone(), stack.reference("EventStoreTable")?)
        .with_upcasters(shop::upcasters());
    let projection = OrdersProjection::new(dynamodb, stack.reference("OrdersViewTable")?);
    Ok(herald::projection::rebuild(&projection, &store, progress).await?)
}
