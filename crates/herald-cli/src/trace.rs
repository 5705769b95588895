//! `herald trace`: follow one business transaction through every hop, from the stack's logs
//! (CloudWatch Logs, or log files).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use herald_ops::trace::Trace;
use serde_json::{json, Value};

use crate::common::stack_and_aws;
use crate::output::{print_json, Output};

/// Print the transaction of `id` (an event id or a correlation id) as a tree, a Mermaid sequence
/// diagram, or JSON: from the stack's CloudWatch Logs of the last `since`, or from the log files
/// in `logs`.
pub async fn trace(
    id: &str,
    stack: &str,
    format: &str,
    since: &str,
    logs: Option<PathBuf>,
    output: Output,
) -> Result<()> {
    use herald_ops::trace;
    if !matches!(format, "tree" | "mermaid") {
        bail!("--format {format}: expected tree or mermaid");
    }
    let found = match logs {
        Some(dir) => trace::from_files(&dir, id)?,
        None => {
            let since = duration(since)?;
            let (stack, aws) = stack_and_aws(stack).await?;
            trace::from_cloudwatch(&stack, &aws, id, since).await?
        }
    };
    if output.is_json() {
        print_json(&trace_json(&found));
    } else if format == "mermaid" {
        print!("{}", trace::render_mermaid(&found));
    } else {
        print!("{}", trace::render_tree(&found));
    }
    Ok(())
}

/// `90m`, `24h`, `7d`, `30s`.
fn duration(text: &str) -> Result<Duration> {
    let wrong = || anyhow::anyhow!("--since {text}: a number with s, m, h or d (90m, 24h, 7d)");
    let (number, seconds) = [("s", 1), ("m", 60), ("h", 3600), ("d", 86_400)]
        .into_iter()
        .find_map(|(unit, seconds)| Some((text.strip_suffix(unit)?, seconds)))
        .ok_or_else(wrong)?;
    let number: u64 = number.parse().map_err(|_| wrong())?;
    number
        .checked_mul(seconds)
        .map(Duration::from_secs)
        .ok_or_else(wrong)
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

#[cfg(test)]
mod tests {
    use super::duration;
    use std::time::Duration;

    #[test]
    fn since_takes_seconds_minutes_hours_and_days() {
        assert_eq!(duration("90m").unwrap(), Duration::from_secs(5400));
        assert_eq!(duration("7d").unwrap(), Duration::from_secs(7 * 86_400));
        assert_eq!(duration("30s").unwrap(), Duration::from_secs(30));
        for bad in ["", "h", "24", "1w", "-1h", "5é", "18446744073709551615d"] {
            let err = duration(bad).unwrap_err().to_string();
            assert!(err.contains("--since"), "{bad}: {err}");
        }
    }
}
