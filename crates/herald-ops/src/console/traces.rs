//! One business transaction's trace (herald's [`crate::trace`], from the functions' logs: the
//! runner's log files, or a deployed stack's CloudWatch Logs) as a timeline and as the steps of a
//! sequence diagram, and the latest transactions to pick from.

use anyhow::{anyhow, Result};
use serde::Serialize;

use std::time::Duration;

use super::{ConsoleState, NotFound, Pipeline};
use crate::trace::{self, Trace};

/// A transaction in the list.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// Correlation id.
    pub correlation_id: String,
    /// The first event's type.
    pub first: String,
    /// How many events.
    pub events: usize,
    /// When it started (RFC 3339).
    pub started: String,
}

/// One hop on the timeline.
#[derive(Clone, Debug, Serialize)]
pub struct Hop {
    /// Milliseconds after the transaction's first hop.
    pub at_ms: i64,
    /// Event type.
    pub event_type: String,
    /// Event id.
    pub event_id: String,
    /// The function.
    pub function: String,
    /// `store`, `stream`, `topic`, `applied`, `duplicate`, `ignored`, `failed`, `dead-lettered`.
    pub kind: String,
    /// What happened.
    pub detail: String,
}

/// One arrow of the sequence diagram.
#[derive(Clone, Debug, Serialize)]
pub struct Step {
    /// From (a function, `store`, `stream` or `topic`).
    pub from: String,
    /// To.
    pub to: String,
    /// The message.
    pub label: String,
}

/// A trace for the page.
#[derive(Clone, Debug, Serialize)]
pub struct TraceView {
    /// Correlation id.
    pub correlation_id: String,
    /// Every hop of every event, in time order.
    pub hops: Vec<Hop>,
    /// The sequence diagram's arrows, in order.
    pub steps: Vec<Step>,
    /// The same as Mermaid text (`herald trace --format mermaid`).
    pub mermaid: String,
}

/// How far back a deployed stack's logs are read for the latest transactions.
const RECENT: Duration = Duration::from_secs(15 * 60);
/// How far back a deployed stack's logs are searched for one transaction.
const SEARCHED: Duration = Duration::from_secs(24 * 3600);
/// Lines read per function for the latest transactions.
const RECENT_LINES: usize = 5_000;

fn log_dir(state: &ConsoleState) -> Result<&std::path::Path> {
    match &state.pipeline {
        Pipeline::Local(watch) => watch
            .log_dir
            .as_deref()
            .ok_or_else(|| anyhow!("the runner keeps no logs (start it with a log directory)")),
        Pipeline::Deployed => Err(anyhow!("a deployed stack keeps no log files")),
    }
}

/// The 20 latest transactions, newest first.
pub async fn recent(state: &ConsoleState) -> Result<Vec<Summary>> {
    let mut all = match state.pipeline {
        Pipeline::Local(_) => trace::all(log_dir(state)?).unwrap_or_default(),
        Pipeline::Deployed => {
            trace::recent_from_cloudwatch(&state.stack, &state.aws, RECENT, RECENT_LINES).await?
        }
    };
    all.sort_by_key(|t| std::cmp::Reverse(t.started()));
    Ok(all
        .iter()
        .take(20)
        .map(|t| Summary {
            correlation_id: t.correlation_id.clone(),
            first: t
                .events
                .first()
                .map(|e| e.event_type.clone())
                .unwrap_or_default(),
            events: t.events.len(),
            started: t.started().map(|s| s.to_rfc3339()).unwrap_or_default(),
        })
        .collect())
}

/// The transaction of `id` (an event id or a correlation id).
pub async fn one(state: &ConsoleState, id: &str) -> Result<TraceView> {
    let found = match state.pipeline {
        Pipeline::Local(_) => trace::from_files(log_dir(state)?, id),
        Pipeline::Deployed => trace::from_cloudwatch(&state.stack, &state.aws, id, SEARCHED).await,
    }
    .map_err(|e| NotFound(format!("{e:#}")))?;
    Ok(view(&found))
}

/// A trace as hops and sequence steps.
pub fn view(trace: &Trace) -> TraceView {
    let start = trace.started().unwrap_or_default();
    let mut hops: Vec<Hop> = trace
        .events
        .iter()
        .flat_map(|e| {
            e.hops.iter().map(move |h| Hop {
                at_ms: (h.time - start).num_milliseconds(),
                event_type: e.event_type.clone(),
                event_id: e.id.clone(),
                function: h.function.clone(),
                kind: h.kind.clone(),
                detail: h.detail.clone(),
            })
        })
        .collect();
    hops.sort_by_key(|h| h.at_ms);
    let mut steps = Vec::new();
    for hop in &hops {
        let f = hop.function.clone();
        let name = hop.event_type.clone();
        let step = |from: &str, to: &str, label: String| Step {
            from: from.into(),
            to: to.into(),
            label,
        };
        match hop.kind.as_str() {
            "store" => steps.push(step(&f, "store", format!("{name} appended"))),
            "stream" => steps.push(step(&f, "stream", name)),
            "topic" => {
                steps.push(step("stream", &f, name.clone()));
                steps.push(step(&f, "topic", name));
            }
            "applied" | "duplicate" | "ignored" | "failed" | "dead-lettered" => steps.push(step(
                "topic",
                &f,
                format!("{name}: {} (+{} ms)", hop.kind, hop.at_ms),
            )),
            _ => {}
        }
    }
    TraceView {
        correlation_id: trace.correlation_id.clone(),
        hops,
        steps,
        mermaid: trace::render_mermaid(trace),
    }
}
