//! `shop rebuild orders_view`: empty the shop's read model and fold every event of the stack's
//! event store into it again, through herald's [`herald::event_sourcing::projection::rebuild`].

use std::time::Instant;

use anyhow::{bail, Result};
use herald::event_sourcing::event_store::DynamoDbEventStore;
use herald_local::{binaries, Stack};
use shop::orders_view::{OrdersProjection, NAME};

use crate::common::progress_bar;

/// `shop rebuild <name>` on the running stack `stack`, with a progress bar (pause the projector
/// first, or events projected meanwhile are deleted with the rest).
pub async fn command(name: &str, stack: &str, from_archive: bool) -> Result<()> {
    if name != NAME {
        bail!("no projection {name}; the projections are: {NAME}");
    }
    let (stack, aws) = herald_ops::connect(Some(&binaries::project_root()), stack).await?;
    if from_archive {
        let started = Instant::now();
        let applied = rebuild_orders_view_from_archive(&stack, &aws).await?;
        println!(
            "orders_view rebuilt from {applied} archived events in {:.1?}",
            started.elapsed()
        );
        return Ok(());
    }
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
    let store = DynamoDbEventStore::new(
        dynamodb.clone(),
        stack.reference("OrderServiceEventStoreTable")?,
    )
    .with_upcasters(shop::upcasters());
    let projection = OrdersProjection::new(dynamodb, stack.reference("OrdersViewTable")?);
    Ok(herald::event_sourcing::projection::rebuild(&projection, &store, progress).await?)
}

/// Rebuild `orders_view` from the stack's event archive (S3) instead of the event store: the
/// archive keeps every event that crossed the stream, the store's among them. Returns the
/// events applied.
pub async fn rebuild_orders_view_from_archive(
    stack: &Stack,
    aws: &aws_config::SdkConfig,
) -> Result<u64> {
    let (delivery, root) = herald_local::archive::archive_of(stack)?;
    let query = herald_local::archive::Query {
        types: vec![
            shop::events::types::ORDER_PLACED.into(),
            shop::events::types::ORDER_CANCELLED.into(),
        ],
        ..Default::default()
    };
    let read = herald_local::archive::read(
        &herald_local::s3::client(aws),
        &delivery.bucket,
        &root,
        &query,
    )
    .await?;
    let upcasters = shop::upcasters();
    let events: Vec<herald::Envelope> = read
        .events
        .into_iter()
        .map(|a| upcasters.upcast(a.event))
        .collect::<Result<_, _>>()?;
    let projection = OrdersProjection::new(
        aws_sdk_dynamodb::Client::new(aws),
        stack.reference("OrdersViewTable")?,
    );
    Ok(herald::event_sourcing::projection::rebuild_from_events(&projection, &events).await?)
}
