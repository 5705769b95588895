//! `herald trace`: follow one business transaction through every hop, from the stack's logs.

use std::path::PathBuf;

use anyhow::{bail, Result};
use herald_local::trace::Trace;
use serde_json::{json, Value};

use crate::output::{print_json, Output};

/// Print the transaction of `id` (an event id or a correlation id) as a tree, a Mermaid sequence
/// diagram, or JSON, from `logs` (default `.herald/logs/<stack>`).
pub fn trace(
    id: &str,
    stack: &str,
    format: &str,
    logs: Option<PathBuf>,
    output: Output,
) -> Result<()> {
    use herald_local::trace;
    let dir = match logs {
        Some(dir) => dir,
        None => crate::common::project()?.join(".herald/logs").join(stack),
    };
    let found = trace::trace(&dir, id)?;
    if output.is_json() {
        print_json(&trace_json(&found));
        return Ok(());
    }
    match format {
        "tree" => print!("{}", trace::render_tree(&found)),
        "mermaid" => print!("{}", trace::render_mermaid(&found)),
        other => bail!("--format {other}: expected tree or mermaid"),
    }
    Ok(())
}

/// `{"correlationId", "events": [{"id", "type", "causationId", "hops": [{"time", "function",
/// "kind", "detail"}]}]}`.
fn trace_json(trace: &Trace) -> Value {
    let events: Vec<Value> = trace
        .events
        .iter()
        .map(|event| {
            let hops: Vec<Value> = event
                .hops
                .iter()
                .map(|hop| {
                    json!({
                        "time": hop.time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                        "function": hop.function,
                        "kind": hop.kind,
                        "detail": hop.detail,
                    })
                })
                .collect();
            json!({
                "id": event.id,
                "type": event.event_type,
                "causationId": event.causation_id,
                "hops": hops,
            })
        })
        .collect();
    json!({ "correlationId": trace.correlation_id, "events": events })
}
