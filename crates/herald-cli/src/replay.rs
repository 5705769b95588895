//! `herald replay`: events again from a point in time — from the stream while it holds them, from
//! the archive when they are older — through the stack's router function, or into one
//! subscriber's queue only (subscribers are idempotent, so what they already applied is skipped).

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use herald_local::archive::Query;
use herald_local::binaries;
use herald_ops::Target;

use crate::common::stack_and_aws;
use crate::output::{print_json, Output};

/// What to replay.
pub struct Request<'a> {
    /// From (RFC 3339).
    pub from: &'a str,
    /// Until (RFC 3339), exclusive.
    pub to: Option<&'a str>,
    /// Only these types.
    pub types: Vec<String>,
    /// Into this subscriber's queue only.
    pub to_subscriber: Option<String>,
    /// `auto`, `stream` or `archive`.
    pub source: &'a str,
    /// The stack.
    pub stack: &'a str,
    /// Replay events past the idempotency records' horizon too.
    pub resend_expired: bool,
    /// Text or JSON.
    pub output: Output,
}

pub(crate) fn timestamp(flag: &str, text: &str) -> Result<DateTime<Utc>> {
    Ok(DateTime::parse_from_rfc3339(text)
        .with_context(|| {
            format!("{flag} {text}: expected an RFC 3339 timestamp like 2026-11-26T10:00:00Z")
        })?
        .with_timezone(&Utc))
}

/// Replay as `request` says.
pub async fn replay(request: Request<'_>) -> Result<()> {
    let from = timestamp("--from", request.from)?;
    let to = request.to.map(|t| timestamp("--to", t)).transpose()?;
    if to.is_some_and(|to| to <= from) {
        bail!("--to must be after --from");
    }
    let (stack, aws) = stack_and_aws(request.stack).await?;
    let source = match request.source {
        "auto" => {
            let hours = herald_ops::stream_retention_hours(&aws, &stack).await?;
            if Utc::now() - chrono::Duration::hours(hours) > from {
                "archive"
            } else {
                "stream"
            }
        }
        other => other,
    };
    let target = match &request.to_subscriber {
        Some(name) => Target::Subscriber(name.clone()),
        None => Target::Router,
    };
    // The stack's own router function does the routing: a deployed stack's through Lambda; a
    // local one's built here as `herald invoke` would.
    let (router, _) = herald_ops::replay_function(&stack)?;
    let bin_dir = match stack.deployment {
        Some(_) => None,
        None => Some(binaries::build(
            &crate::common::project()?,
            std::slice::from_ref(&router.binary),
            false,
            true,
        )?),
    };
    let bin_dir = bin_dir.as_deref();
    let bar = indicatif::ProgressBar::new_spinner();
    if request.output.is_json() {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let progress = |n: usize| {
        bar.set_message(format!("{n} events replayed"));
        bar.tick();
    };
    let query = Query {
        from: Some(from),
        to,
        types: request.types.clone(),
    };
    let plain_stream =
        source == "stream" && target == Target::Router && to.is_none() && request.types.is_empty();
    if plain_stream {
        let replayed = herald_ops::replay(&aws, &stack, bin_dir, from, progress).await?;
        bar.finish_and_clear();
        if request.output.is_json() {
            print_json(&serde_json::json!({
                "source": "stream",
                "target": "router",
                "read": replayed.read,
                "sent": replayed.read,
                "batches": replayed.batches,
                "routed": routed_json(replayed.routed),
            }));
            return Ok(());
        }
        println!(
            "replayed {} records from the stream since {from} in {} batches: {}",
            replayed.read,
            replayed.batches,
            routed(replayed.routed)
        );
        return Ok(());
    }
    let expired = if request.resend_expired {
        herald_ops::Expired::Resend
    } else {
        herald_ops::Expired::Refuse
    };
    let done = if source == "archive" {
        herald_ops::replay_archive(&aws, &stack, bin_dir, &query, &target, expired, progress)
            .await?
    } else {
        let events = herald_ops::stream_events(&aws, &stack, &query).await?;
        herald_ops::replay_events(&aws, &stack, bin_dir, &events, &target, expired, progress)
            .await?
    };
    bar.finish_and_clear();
    if request.output.is_json() {
        print_json(&serde_json::json!({
            "source": source,
            "target": match &target {
                Target::Subscriber(name) => name.as_str(),
                Target::Router => "router",
            },
            "read": done.read,
            "sent": done.sent,
            "filteredOut": done.filtered_out,
            "archiveObjects": done.objects,
            "unreadable": done.unreadable,
            "routed": routed_json(done.routed),
        }));
        return Ok(());
    }
    let whence = if source == "archive" {
        format!("the archive ({} objects)", done.objects)
    } else {
        "the stream".to_string()
    };
    match &target {
        Target::Subscriber(name) => println!(
            "replayed {} of {} events from {whence} into {name}'s queue ({} kept out by its filter policy)",
            done.sent, done.read, done.filtered_out
        ),
        Target::Router => println!(
            "replayed {} events from {whence} through the router: {}",
            done.sent,
            routed(done.routed)
        ),
    }
    if done.unreadable > 0 {
        println!(
            "{} archived lines are not events (left in place)",
            done.unreadable
        );
    }
    Ok(())
}

/// `{"published", "deadLettered"}`, or null when the router reported no metrics.
fn routed_json(routed: Option<herald_ops::Routed>) -> serde_json::Value {
    match routed {
        Some(r) => serde_json::json!({"published": r.published, "deadLettered": r.dead_lettered}),
        None => serde_json::Value::Null,
    }
}

fn routed(routed: Option<herald_ops::Routed>) -> String {
    match routed {
        Some(r) => format!(
            "{} published, {} dead-lettered",
            r.published, r.dead_lettered
        ),
        None => "the router reported no metrics".into(),
    }
}
