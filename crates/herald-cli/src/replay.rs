//! `herald replay`: re-read the stream from a point in time through the stack's router function
//! (subscribers are idempotent, so what they already applied is skipped).

use anyhow::{Context, Result};
use herald_local::binaries;

use crate::common::stack_and_aws;

/// Replay the running stack `stack`'s stream from `from` (RFC 3339).
pub async fn replay(from: &str, stack: &str) -> Result<()> {
    let from = chrono::DateTime::parse_from_rfc3339(from)
        .with_context(|| {
            format!("--from {from}: expected an RFC 3339 timestamp like 2026-11-26T10:00:00Z")
        })?
        .with_timezone(&chrono::Utc);
    let (stack, aws) = stack_and_aws(stack).await?;
    // The stack's own router function does the routing: build it as `herald invoke` would.
    let (router, _) = herald_local::ops::replay_function(&stack)?;
    let bin_dir = binaries::build(
        &binaries::project_root(),
        std::slice::from_ref(&router.binary),
        false,
        true,
    )?;
    let bar = indicatif::ProgressBar::new_spinner();
    let replayed = herald_local::ops::replay(&aws, &stack, &bin_dir, from, |read| {
        bar.set_message(format!("{read} records replayed"));
        bar.tick();
    })
    .await?;
    bar.finish_and_clear();
    let routed = match replayed.routed {
        Some(r) => format!(
            "{} published, {} dead-lettered",
            r.published, r.dead_lettered
        ),
        None => "the router reported no metrics".into(),
    };
    println!(
        "replayed {} records from {from} in {} batches: {routed}",
        replayed.read, replayed.batches
    );
    Ok(())
}
