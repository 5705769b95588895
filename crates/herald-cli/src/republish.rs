//! `herald republish`: the event store's events since a point in time onto the event stream again
//! (see `herald_ops::republish`).

use anyhow::{bail, Result};
use herald_ops::{Expired, Horizon};

use crate::common::stack_and_aws;
use crate::output::{print_json, Output};
use crate::replay::timestamp;

/// Republish the events appended in `[since, until)`.
pub async fn republish(
    since: &str,
    until: Option<&str>,
    stack: &str,
    resend_expired: bool,
    output: Output,
) -> Result<()> {
    let since = timestamp("--since", since)?;
    let until = until.map(|u| timestamp("--until", u)).transpose()?;
    if until.is_some_and(|u| u <= since) {
        bail!("--until must be after --since");
    }
    let (stack, aws) = stack_and_aws(stack).await?;
    let expired = if resend_expired {
        Expired::Resend
    } else {
        Expired::Refuse
    };
    if let Err(why) = Horizon::of(&stack, expired).check(since) {
        bail!("--since {since}: {why}");
    }
    let route = herald_ops::store_route(&stack)?;
    let done = herald_ops::republish(&aws, &route, since, until).await?;
    if output.is_json() {
        print_json(&serde_json::json!({
            "table": route.table_logical_id,
            "stream": route.stream,
            "scanned": done.scanned,
            "inSpan": done.in_span,
            "published": done.published,
            "unreadable": done.unreadable,
        }));
        return Ok(());
    }
    println!(
        "republished {} of the {} events in {} onto {} ({} appended in the span; {} items not events)",
        done.published, done.scanned, route.table_logical_id, route.stream, done.in_span, done.unreadable
    );
    Ok(())
}
