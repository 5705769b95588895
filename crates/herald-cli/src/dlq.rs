//! `herald dlq`: a stack's dead-letter queues — list them, show a queue's messages and reasons,
//! send them back where they came from.

use anyhow::Result;
use serde_json::{json, Value};

use crate::common::{progress_bar, stack_and_aws};
use crate::output::{print_json, Output, Refused};
use crate::DlqCommand;

/// Run one `herald dlq` subcommand on the running stack `stack`.
pub async fn dlq(command: DlqCommand, stack: &str, output: Output) -> Result<()> {
    let (stack, aws) = stack_and_aws(stack).await?;
    match command {
        DlqCommand::List => {
            let mut queues = Vec::new();
            for queue in herald_ops::dead_letter_queues(&stack) {
                let letters = herald_ops::letters(&aws, &queue.url).await?;
                queues.push((queue, letters));
            }
            if output.is_json() {
                let queues: Vec<Value> = queues
                    .iter()
                    .map(|(queue, letters)| {
                        json!({
                            "queue": queue.logical_id,
                            "url": queue.url,
                            "messages": letters.len(),
                            "oldestSeconds": letters.first().map(|l| l.age.as_secs_f64()),
                            "source": source_json(queue.source.as_ref()),
                        })
                    })
                    .collect();
                print_json(&json!({ "stack": stack.name, "queues": queues }));
                return Ok(());
            }
            println!("{:<28} {:>8} {:>12}  source", "queue", "messages", "oldest");
            for (queue, letters) in &queues {
                let oldest = letters
                    .first()
                    .map(|l| format!("{:.0?}", l.age))
                    .unwrap_or_else(|| "-".into());
                println!(
                    "{:<28} {:>8} {:>12}  {}",
                    queue.logical_id,
                    letters.len(),
                    oldest,
                    source_text(queue.source.as_ref())
                );
            }
        }
        DlqCommand::Show { queue } => {
            let queue = herald_ops::find_dead_letter_queue(&stack, &queue)?;
            let letters = herald_ops::letters(&aws, &queue.url).await?;
            if output.is_json() {
                let messages: Vec<Value> = letters
                    .iter()
                    .map(|l| {
                        json!({
                            "messageId": l.message_id,
                            "ageSeconds": l.age.as_secs_f64(),
                            "receives": l.receives,
                            "stage": l.stage,
                            "reason": l.reason,
                            "body": l.body,
                        })
                    })
                    .collect();
                print_json(&json!({ "queue": queue.logical_id, "messages": messages }));
                return Ok(());
            }
            println!(
                "{} ({} messages; reading is a receive, so each count includes this read)",
                queue.logical_id,
                letters.len()
            );
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
            max,
            dry_run,
        } => {
            let mut queue = herald_ops::find_dead_letter_queue(&stack, &queue)?;
            if resend_expired {
                queue.horizon.expired = herald_ops::Expired::Resend;
            }
            let bar = progress_bar("redriving");
            if output.is_json() {
                bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
            }
            let options = herald_ops::RedriveOptions { max, dry_run };
            let report = herald_ops::redrive_with(&aws, &queue, &options, |done, total| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            })
            .await?;
            bar.finish_and_clear();
            if output.is_json() {
                print_json(&json!({
                    "queue": queue.logical_id,
                    "dryRun": dry_run,
                    "sentBack": report.moved,
                    "duplicatesDeleted": report.duplicates,
                    "left": report.failed.len(),
                    "expired": report.expired,
                    "notSent": report.failed,
                    "remaining": report.remaining,
                }));
            } else if dry_run {
                println!(
                    "{}: {} messages would be sent back, {} would stay (dry run: nothing sent)",
                    queue.logical_id,
                    report.moved,
                    report.failed.len()
                );
                for failure in &report.failed {
                    println!("  would stay: {failure}");
                }
                if report.remaining > 0 {
                    println!("  {} more not looked at (--max)", report.remaining);
                }
            } else {
                println!(
                    "{}: {} messages sent back, {} left",
                    queue.logical_id,
                    report.moved,
                    report.failed.len()
                );
                if report.remaining > 0 {
                    println!(
                        "  {} more stay for a later redrive (--max {})",
                        report.remaining,
                        max.unwrap_or_default()
                    );
                }
                if report.duplicates > 0 {
                    println!(
                        "  {} copies of a letter already sent back deleted (a SendMessage retried after its answer was lost)",
                        report.duplicates
                    );
                }
                for failure in &report.failed {
                    println!("  not sent: {failure}");
                }
            }
            if !report.failed.is_empty() {
                return Err(Refused(format!(
                    "{} of {}'s messages could not be sent back (left in the queue)",
                    report.failed.len(),
                    queue.logical_id
                ))
                .into());
            }
        }
    }
    Ok(())
}

fn source_text(source: Option<&herald_ops::Source>) -> String {
    match source {
        Some(herald_ops::Source::Queue { logical_id, .. }) => format!("queue {logical_id}"),
        Some(herald_ops::Source::Stream { logical_id, .. }) => format!("stream {logical_id}"),
        Some(herald_ops::Source::StreamRange { logical_id, .. }) => {
            format!("stream {logical_id} (on-failure records)")
        }
        Some(herald_ops::Source::Store(route)) => {
            format!("event store {} (republished)", route.table_logical_id)
        }
        None => "unknown".into(),
    }
}

/// `{"kind": "queue" | "stream" | "streamRange" | "eventStore", "logicalId": ...}`, or null when
/// herald cannot tell where the letters came from.
fn source_json(source: Option<&herald_ops::Source>) -> Value {
    match source {
        Some(herald_ops::Source::Queue { logical_id, .. }) => {
            json!({"kind": "queue", "logicalId": logical_id})
        }
        Some(herald_ops::Source::Stream { logical_id, .. }) => {
            json!({"kind": "stream", "logicalId": logical_id})
        }
        Some(herald_ops::Source::StreamRange { logical_id, .. }) => {
            json!({"kind": "streamRange", "logicalId": logical_id})
        }
        Some(herald_ops::Source::Store(route)) => {
            json!({"kind": "eventStore", "logicalId": route.table_logical_id})
        }
        None => Value::Null,
    }
}
