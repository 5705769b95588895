//! `herald trace`: one business transaction, hop by hop, from the functions' own log lines.
//!
//! Every function logs JSON lines carrying the ids of the event they are about (`eventId`,
//! `eventType`, `correlationId`, `causationId`; see `herald::aws::telemetry`). Given an event id or a
//! correlation id, the transaction's lines are gathered — from the stack's CloudWatch Logs
//! ([`from_cloudwatch`]) or from log files ([`from_files`]) — and arranged as a tree of events (a follow-up under the event that caused it), each with its hops:
//! appended to the event store, written to the stream (shard, sequence), routed to the topic (the
//! router's batch covering that sequence), and each subscriber's outcome (applied, duplicate
//! skipped, failed, dead-lettered), with times relative to the transaction's first line.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use serde_json::Value;

mod cloudwatch;

pub use cloudwatch::{recent as recent_from_cloudwatch, trace as from_cloudwatch};

/// One log line, as read.
#[derive(Clone, Debug)]
struct Line {
    function: String,
    time: DateTime<Utc>,
    fields: serde_json::Map<String, Value>,
}

impl Line {
    fn text(&self, key: &str) -> &str {
        self.fields.get(key).and_then(Value::as_str).unwrap_or("")
    }
    fn number(&self, key: &str) -> Option<i64> {
        self.fields.get(key).and_then(Value::as_i64)
    }
}

/// One step of an event's journey.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hop {
    /// When.
    pub time: DateTime<Utc>,
    /// Which function (its binary name).
    pub function: String,
    /// `store`, `stream`, `topic`, `applied`, `duplicate`, `ignored`, `failed`, `dead-lettered`.
    pub kind: String,
    /// What happened, readably.
    pub detail: String,
}

/// One event of the transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TracedEvent {
    /// Event id.
    pub id: String,
    /// Event type.
    pub event_type: String,
    /// The event that caused it (empty for the first).
    pub causation_id: String,
    /// Its hops, in time order.
    pub hops: Vec<Hop>,
}

/// A whole transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trace {
    /// The correlation id.
    pub correlation_id: String,
    /// Its events, first seen first.
    pub events: Vec<TracedEvent>,
}

impl Trace {
    /// When the transaction's first hop happened.
    pub fn started(&self) -> Option<DateTime<Utc>> {
        self.events
            .iter()
            .flat_map(|e| e.hops.iter().map(|h| h.time))
            .min()
    }

    /// When its last hop happened.
    pub fn ended(&self) -> Option<DateTime<Utc>> {
        self.events
            .iter()
            .flat_map(|e| e.hops.iter().map(|h| h.time))
            .max()
    }
}

/// Read every function's log in `dir` (`<function>.log`, JSON lines).
fn read_lines(dir: &Path) -> Result<Vec<Line>> {
    let mut raw = Vec::new();
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("no logs at {}", dir.display()))?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("log") {
            continue;
        }
        let function = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        let text = std::fs::read_to_string(&path)?;
        raw.extend(
            text.lines()
                .map(|line| (function.clone(), line.to_string())),
        );
    }
    Ok(parse_lines(raw))
}

/// The JSON lines among `(function, line)` pairs, in time order.
fn parse_lines(raw: impl IntoIterator<Item = (String, String)>) -> Vec<Line> {
    let mut lines = Vec::new();
    for (function, raw) in raw {
        let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(&raw) else {
            continue;
        };
        let Some(time) = fields
            .get("timestamp")
            .and_then(Value::as_str)
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        else {
            continue;
        };
        lines.push(Line {
            function,
            time: time.with_timezone(&Utc),
            fields,
        });
    }
    lines.sort_by_key(|l| l.time);
    lines
}

/// Kinesis sequence numbers are decimal strings of any length: compare them as numbers.
fn sequence_key(sequence: &str) -> (usize, &str) {
    (sequence.len(), sequence)
}

/// Trace `id` (an event id or a correlation id) through the logs in `dir`.
pub fn from_files(dir: &Path, id: &str) -> Result<Trace> {
    trace_in(read_lines(dir)?, id, &dir.display().to_string())
}

/// Trace `id` through log lines read from anywhere (CloudWatch Logs): `(function, line)` pairs,
/// the function by its short name (`producer`). `place` names where they came from, for the
/// error when none mentions `id`.
pub fn trace_lines(
    lines: impl IntoIterator<Item = (String, String)>,
    id: &str,
    place: &str,
) -> Result<Trace> {
    trace_in(parse_lines(lines), id, place)
}

/// The correlation id of `id` among `(function, line)` pairs: the correlation id of the event
/// `id` names, else `id` itself (it is one).
pub fn correlation_of(lines: impl IntoIterator<Item = (String, String)>, id: &str) -> String {
    parse_lines(lines)
        .iter()
        .find(|l| l.text("eventId") == id)
        .map(|l| l.text("correlationId").to_string())
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| id.to_string())
}

fn trace_in(lines: Vec<Line>, id: &str, place: &str) -> Result<Trace> {
    let correlation_id = lines
        .iter()
        .find(|l| l.text("eventId") == id)
        .map(|l| l.text("correlationId").to_string())
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| id.to_string());
    let routed: Vec<&Line> = lines
        .iter()
        .filter(|l| l.text("message") == "batch routed")
        .collect();
    let mine: Vec<&Line> = lines
        .iter()
        .filter(|l| l.text("correlationId") == correlation_id)
        .collect();
    let trace = build(correlation_id, &mine, &routed);
    if trace.events.is_empty() {
        bail!(
            "no log line mentions {id} in {place} (is it an event id or correlation id of this stack?)"
        );
    }
    Ok(trace)
}

/// Every transaction in the logs of `dir`, by correlation id.
pub fn all(dir: &Path) -> Result<Vec<Trace>> {
    Ok(transactions(read_lines(dir)?))
}

/// Every transaction among log lines read from anywhere: `(function, line)` pairs, as for
/// [`trace_lines`].
pub fn all_lines(lines: impl IntoIterator<Item = (String, String)>) -> Vec<Trace> {
    transactions(parse_lines(lines))
}

fn transactions(lines: Vec<Line>) -> Vec<Trace> {
    let routed: Vec<&Line> = lines
        .iter()
        .filter(|l| l.text("message") == "batch routed")
        .collect();
    let mut by_correlation: BTreeMap<&str, Vec<&Line>> = BTreeMap::new();
    for line in &lines {
        let correlation = line.text("correlationId");
        if !correlation.is_empty() {
            by_correlation.entry(correlation).or_default().push(line);
        }
    }
    by_correlation
        .into_iter()
        .map(|(id, lines)| build(id.to_string(), &lines, &routed))
        .filter(|t| !t.events.is_empty())
        .collect()
}

fn build(correlation_id: String, lines: &[&Line], routed: &[&Line]) -> Trace {
    let mut events: Vec<TracedEvent> = Vec::new();
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    for line in lines.iter().copied() {
        let event_id = line.text("eventId");
        if event_id.is_empty() {
            continue;
        }
        let slot = *index.entry(event_id.to_string()).or_insert_with(|| {
            events.push(TracedEvent {
                id: event_id.to_string(),
                event_type: line.text("eventType").to_string(),
                causation_id: line.text("causationId").to_string(),
                hops: Vec::new(),
            });
            events.len() - 1
        });
        let event = &mut events[slot];
        if event.causation_id.is_empty() {
            event.causation_id = line.text("causationId").to_string();
        }
        let hop = |kind: &str, detail: String| Hop {
            time: line.time,
            function: line.function.clone(),
            kind: kind.to_string(),
            detail,
        };
        match line.text("message") {
            "appended" => event.hops.push(hop(
                "store",
                format!(
                    "appended to the event store as {} v{}",
                    line.text("aggregateId"),
                    line.number("version").unwrap_or_default()
                ),
            )),
            "written to stream" => {
                let shard = line.text("shardId");
                let sequence = line.text("sequenceNumber");
                event.hops.push(hop(
                    "stream",
                    format!("written to the stream: {shard} #{sequence}"),
                ));
                // The router's batch that covered this record.
                if let Some(batch) = routed.iter().find(|b| {
                    b.text("shardId") == shard
                        && b.time >= line.time
                        && sequence_key(b.text("firstSequence")) <= sequence_key(sequence)
                        && sequence_key(sequence) <= sequence_key(b.text("lastSequence"))
                }) {
                    event.hops.push(Hop {
                        time: batch.time,
                        function: batch.function.clone(),
                        kind: "topic".into(),
                        detail: format!(
                            "routed to the topic (batch of {}, {} published)",
                            batch.number("records").unwrap_or_default(),
                            batch.number("published").unwrap_or_default()
                        ),
                    });
                }
            }
            "processed" => {
                let delivery = line.text("delivery");
                let detail = match (delivery, line.text("effect")) {
                    ("duplicate", effect) => format!("duplicate skipped (first outcome: {effect})"),
                    ("ignored", _) => "ignored (not for this subscriber)".to_string(),
                    (_, effect) => format!("applied: {effect}"),
                };
                event.hops.push(hop(delivery, detail));
            }
            "dead-lettered" => event.hops.push(hop(
                "dead-lettered",
                format!("dead-lettered: {}", line.text("reason")),
            )),
            "reporting for redelivery" => event.hops.push(hop(
                "failed",
                format!("failed, left for redelivery: {}", line.text("reason")),
            )),
            _ => {}
        }
    }
    for event in &mut events {
        event.hops.sort_by_key(|h| h.time);
    }
    Trace {
        correlation_id,
        events,
    }
}

fn offset(from: DateTime<Utc>, to: DateTime<Utc>) -> String {
    let ms = (to - from).num_microseconds().unwrap_or_default() as f64 / 1000.0;
    if ms < 1000.0 {
        format!("+{ms:.0} ms")
    } else {
        format!("+{:.2} s", ms / 1000.0)
    }
}

fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

/// The trace as an indented tree: each event, its hops with times, its follow-ups beneath.
pub fn render_tree(trace: &Trace) -> String {
    let start = trace.started().unwrap_or_else(Utc::now);
    let mut out = String::new();
    let hops: usize = trace.events.iter().map(|e| e.hops.len()).sum();
    let _ = writeln!(
        out,
        "correlation {}: {} events, {} hops, {} end to end",
        trace.correlation_id,
        trace.events.len(),
        hops,
        offset(start, trace.ended().unwrap_or(start)).trim_start_matches('+')
    );
    let ids: Vec<&str> = trace.events.iter().map(|e| e.id.as_str()).collect();
    let roots = trace
        .events
        .iter()
        .filter(|e| e.causation_id.is_empty() || !ids.contains(&e.causation_id.as_str()));
    for root in roots {
        tree_node(&mut out, trace, root, start, 0);
    }
    out
}

fn tree_node(
    out: &mut String,
    trace: &Trace,
    event: &TracedEvent,
    start: DateTime<Utc>,
    depth: usize,
) {
    let indent = "   ".repeat(depth);
    let branch = if depth == 0 { "" } else { "└─ " };
    let _ = writeln!(out, "{indent}{branch}{} {}", event.event_type, event.id);
    let pad = "   ".repeat(depth + 1);
    for hop in &event.hops {
        let _ = writeln!(
            out,
            "{pad}{:>10}  {:<10} {}",
            offset(start, hop.time),
            hop.function,
            hop.detail
        );
    }
    for child in trace.events.iter().filter(|e| e.causation_id == event.id) {
        tree_node(out, trace, child, start, depth + 1);
    }
}

/// The trace as a Mermaid sequence diagram.
pub fn render_mermaid(trace: &Trace) -> String {
    let start = trace.started().unwrap_or_else(Utc::now);
    let mut steps: Vec<(DateTime<Utc>, String)> = Vec::new();
    for event in &trace.events {
        let name = format!("{} {}", event.event_type, short(&event.id));
        for hop in &event.hops {
            let f = &hop.function;
            let line = match hop.kind.as_str() {
                "store" => format!("    {f}->>store: {name} appended"),
                "stream" => format!("    {f}->>stream: {name}"),
                "topic" => format!("    stream->>{f}: {name}\n    {f}->>topic: {name}"),
                "applied" | "duplicate" | "ignored" | "failed" | "dead-lettered" => format!(
                    "    topic->>{f}: {name}\n    Note over {f}: {} ({})",
                    hop.detail.replace([':', ';', '#'], " "),
                    offset(start, hop.time)
                ),
                _ => continue,
            };
            steps.push((hop.time, line));
        }
    }
    steps.sort_by_key(|(t, _)| *t);
    let mut out = String::from("sequenceDiagram\n    autonumber\n");
    let _ = writeln!(out, "    %% correlation {}", trace.correlation_id);
    for (_, line) in steps {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, function: &str, lines: &[Value]) {
        let text: Vec<String> = lines.iter().map(Value::to_string).collect();
        std::fs::write(dir.join(format!("{function}.log")), text.join("\n")).unwrap();
    }

    #[test]
    fn follows_an_event_and_its_follow_ups_through_every_hop() {
        let dir = std::env::temp_dir().join(format!("herald-trace-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let ids = |id: &str, t: &str, cause: &str| serde_json::json!({"eventId": id, "eventType": t, "correlationId": "c-1", "causationId": cause});
        let at = |s: u32, mut v: Value, message: &str| {
            v["timestamp"] = format!("2026-11-26T10:00:0{s}.000000Z").into();
            v["message"] = message.into();
            v
        };
        let mut written = ids("e-1", "order_placed", "");
        written["shardId"] = "shard-1".into();
        written["sequenceNumber"] = "12".into();
        write(&dir, "producer", &[at(0, written, "written to stream")]);
        write(
            &dir,
            "router",
            &[at(
                1,
                serde_json::json!({"shardId": "shard-1", "firstSequence": "9", "lastSequence": "100", "records": 3, "published": 3}),
                "batch routed",
            )],
        );
        let mut applied = ids("e-1", "order_placed", "");
        applied["delivery"] = "applied".into();
        applied["effect"] = "charged".into();
        let mut follow = ids("e-2", "payment_succeeded", "e-1");
        follow["shardId"] = "shard-1".into();
        follow["sequenceNumber"] = "101".into();
        let mut duplicate = ids("e-1", "order_placed", "");
        duplicate["delivery"] = "duplicate".into();
        duplicate["effect"] = "charged".into();
        write(
            &dir,
            "payment",
            &[
                at(2, applied, "processed"),
                at(3, follow, "written to stream"),
                at(4, duplicate, "processed"),
            ],
        );
        let mut unrelated = ids("e-9", "order_placed", "");
        unrelated["correlationId"] = "c-2".into();
        write(&dir, "unrelated", &[at(5, unrelated, "processed")]);

        let trace = from_files(&dir, "e-2").unwrap();
        assert_eq!(trace.correlation_id, "c-1");
        assert_eq!(trace.events.len(), 2);
        let kinds: Vec<&str> = trace.events[0]
            .hops
            .iter()
            .map(|h| h.kind.as_str())
            .collect();
        assert_eq!(kinds, ["stream", "topic", "applied", "duplicate"]);
        assert_eq!(trace.events[1].causation_id, "e-1");
        let tree = render_tree(&trace);
        assert!(tree.contains("└─ payment_succeeded e-2"), "{tree}");
        assert!(tree.contains("+2.00 s"), "{tree}");
        let mermaid = render_mermaid(&trace);
        assert!(mermaid.starts_with("sequenceDiagram"), "{mermaid}");
        assert!(
            mermaid.contains("producer->>stream: order_placed e-1"),
            "{mermaid}"
        );
        assert!(trace_err(&dir));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn trace_err(dir: &Path) -> bool {
        from_files(dir, "nobody").is_err()
    }
}
