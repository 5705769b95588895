//! Every dead-letter queue with its messages and their reasons, and redriving one (herald's
//! [`crate::redrive`]: each message back where it came from).

use anyhow::Result;
use serde::Serialize;

use super::{ConsoleState, NotFound};
use crate::Source;

/// A dead-letter queue on the page.
#[derive(Clone, Debug, Serialize)]
pub struct Dlq {
    /// Logical id.
    pub id: String,
    /// Where a redrive sends its messages (none: herald cannot tell, no redrive).
    pub redrives_to: Option<String>,
    /// Its messages, oldest first.
    pub letters: Vec<Letter>,
}

/// One dead letter.
#[derive(Clone, Debug, Serialize)]
pub struct Letter {
    /// SQS message id.
    pub message_id: String,
    /// Why it is here.
    pub reason: String,
    /// Where it failed (`herald.stage`), when recorded.
    pub stage: Option<String>,
    /// Seconds since it was sent here.
    pub age_s: u64,
    /// Times received.
    pub receives: u64,
    /// The body (at most 2 000 characters).
    pub body: String,
}

/// What a redrive did.
#[derive(Clone, Debug, Serialize)]
pub struct Redrive {
    /// The queue.
    pub id: String,
    /// Messages sent back.
    pub moved: usize,
    /// Messages left, with why.
    pub failed: Vec<String>,
}

/// Every dead-letter queue of the stack, with its letters.
pub async fn list(state: &ConsoleState) -> Result<Vec<Dlq>> {
    let mut out = Vec::new();
    for queue in crate::dead_letter_queues(&state.stack) {
        let letters = crate::letters(&state.aws, &queue.url).await?;
        out.push(Dlq {
            redrives_to: queue.source.as_ref().map(|s| match s {
                Source::Queue { logical_id, .. } => logical_id.clone(),
                Source::Stream { logical_id, .. } => logical_id.clone(),
                Source::StreamRange { logical_id, .. } => format!("{logical_id} (stream range)"),
                Source::Store(route) => format!("{} (republished)", route.table_logical_id),
            }),
            id: queue.logical_id,
            letters: letters
                .into_iter()
                .map(|l| Letter {
                    message_id: l.message_id,
                    reason: l.reason,
                    stage: l.stage,
                    age_s: l.age.as_secs(),
                    receives: l.receives,
                    body: l.body.chars().take(2000).collect(),
                })
                .collect(),
        });
    }
    Ok(out)
}

/// Redrive the dead-letter queue with logical id `id`.
pub async fn redrive(state: &ConsoleState, id: &str) -> Result<Redrive> {
    let queue = crate::dead_letter_queues(&state.stack)
        .into_iter()
        .find(|q| q.logical_id == id)
        .ok_or_else(|| NotFound(format!("no dead-letter queue {id}")))?;
    let done = crate::redrive(&state.aws, &queue, |_, _| {}).await?;
    Ok(Redrive {
        id: id.to_string(),
        moved: done.moved,
        failed: done.failed,
    })
}
