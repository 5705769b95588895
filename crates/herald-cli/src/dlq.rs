//! `herald dlq`: a stack's dead-letter queues — list them, show a queue's messages and reasons,
//! send them back where they came from.

use anyhow::{bail, Result};
use herald_local::ops;

use crate::common::{progress_bar, stack_and_aws};
use crate::DlqCommand;

/// Run one `herald dlq` subcommand on the running stack `stack`.
pub async fn dlq(command: DlqCommand, stack: &str) -> Result<()> {
    let (stack, aws) = stack_and_aws(stack).await?;
    match command {
        DlqCommand::List => {
            println!("{:<28} {:>8} {:>12}  source", "queue", "messages", "oldest");
            for queue in ops::dead_letter_queues(&stack) {
                let letters = ops::letters(&aws, &queue.url).await?;
                let oldest = letters
                    .first()
                    .map(|l| format!("{:.0?}", l.age))
                    .unwrap_or_else(|| "-".into());
                let source = match &queue.source {
                    Some(ops::Source::Queue { logical_id, .. }) => format!("queue {logical_id}"),
                    Some(ops::Source::Stream { logical_id, .. }) => format!("stream {logical_id}"),
                    Some(ops::Source::StreamRange { logical_id, .. }) => {
                        format!("stream {logical_id} (on-failure records)")
                    }
                    Some(ops::Source::Store(route)) => {
                        format!("event store {} (republished)", route.table_logical_id)
                    }
                    None => "unknown".into(),
                };
                println!(
                    "{:<28} {:>8} {:>12}  {source}",
                    queue.logical_id,
                    letters.len(),
                    oldest
                );
            }
        }
        DlqCommand::Show { queue } => {
            let queue = ops::find_dead_letter_queue(&stack, &queue)?;
            let letters = ops::letters(&aws, &queue.url).await?;
            println!("{} ({} messages)", queue.logical_id, letters.len());
            for letter in letters {
                let body: String = letter.body.chars().take(120).collect();
                println!(
                    "- {} age {:.0?}, received {}x{}\n  reason: {}\n  body:   {}",
                    letter.message_id,
                    letter.age,
                    letter.receives,
                    letter
                        .stage
                        .map(|s| format!(", from {s}"))
                        .unwrap_or_default(),
                    letter.reason,
                    body
                );
            }
        }
        DlqCommand::Redrive {
            queue,
            resend_expired,
        } => {
            let mut queue = ops::find_dead_letter_queue(&stack, &queue)?;
            if resend_expired {
                queue.horizon.expired = ops::Expired::Resend;
            }
            let bar = progress_bar("redriving");
            let report = ops::redrive(&aws, &queue, |done, total| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            })
            .await?;
            bar.finish_and_clear();
            println!(
                "{}: {} messages sent back, {} left",
                queue.logical_id,
                report.moved,
                report.failed.len()
            );
            if report.duplicates > 0 {
                println!(
                    "  {} copies of a letter already sent back deleted (a SendMessage retried after its answer was lost)",
                    report.duplicates
                );
            }
            for failure in &report.failed {
                println!("  not sent: {failure}");
            }
            if !report.failed.is_empty() {
                bail!("some messages could not be sent back");
            }
        }
    }
    Ok(())
}
