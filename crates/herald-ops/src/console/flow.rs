//! The pipeline as a graph, drawn from the template: functions, streams, tables, topics, queues
//! and dead-letter queues, and the ways events move between them (a function writing to what its
//! environment names, a mapping feeding a function, a subscription feeding a queue with its filter,
//! a redrive policy or on-failure destination parking what failed).

use std::collections::BTreeSet;

use serde::Serialize;

use crate::dead_letter_queues;
use herald_local::stack::{MappingSpec, Stack, DEAD_LETTER_TARGET};

/// A resource on the page.
#[derive(Clone, Debug, Serialize)]
pub struct Node {
    /// Logical id.
    pub id: String,
    /// `function`, `stream`, `table`, `topic`, `queue`, `dlq`.
    pub kind: &'static str,
    /// What to call it: a function's short name, else the logical id without its kind
    /// (`InventoryQueue` → `Inventory`; the node says its kind).
    pub label: String,
    /// A queue's subscription filter (`type: order_placed`), else empty.
    pub detail: String,
    /// An entry point (a Function URL).
    pub entry: bool,
}

/// Events moving from one resource to another.
#[derive(Clone, Debug, Serialize)]
pub struct Edge {
    /// From (logical id).
    pub from: String,
    /// To (logical id).
    pub to: String,
    /// `writes`, `feeds`, `subscribes`, `fails`.
    pub kind: &'static str,
    /// A subscription's filter (`type: order_placed`), else empty.
    pub label: String,
}

/// The graph.
#[derive(Clone, Debug, Serialize)]
pub struct Flow {
    /// Stack name.
    pub stack: String,
    /// Resources.
    pub nodes: Vec<Node>,
    /// Movements.
    pub edges: Vec<Edge>,
}

/// The stack's flow.
pub fn flow(stack: &Stack) -> Flow {
    let dlqs: BTreeSet<String> = dead_letter_queues(stack)
        .into_iter()
        .map(|q| q.logical_id)
        .collect();
    let mut nodes = Vec::new();
    for f in &stack.functions {
        nodes.push(Node {
            id: f.logical_id.clone(),
            kind: "function",
            label: f.label().to_string(),
            detail: String::new(),
            entry: f.url.is_some(),
        });
    }
    for (id, physical) in &stack.resources {
        let kind = match physical.kind.as_str() {
            "AWS::Kinesis::Stream" => "stream",
            "AWS::DynamoDB::Table" => "table",
            "AWS::SNS::Topic" if !id.contains("Alarm") => "topic",
            "AWS::SQS::Queue" if dlqs.contains(id) => "dlq",
            "AWS::SQS::Queue" => "queue",
            _ => continue,
        };
        nodes.push(Node {
            id: id.clone(),
            kind,
            label: short_label(id, kind),
            detail: String::new(),
            entry: false,
        });
    }
    let known: BTreeSet<String> = nodes.iter().map(|n| n.id.clone()).collect();
    let mut edges = Vec::new();
    let mut edge = |from: &str, to: &str, kind: &'static str, label: String| {
        if known.contains(from) && known.contains(to) && from != to {
            edges.push(Edge {
                from: from.into(),
                to: to.into(),
                kind,
                label,
            });
        }
    };
    // A function writes to what its environment names (a stream, a topic, a table, a queue).
    for f in &stack.functions {
        for (id, physical) in &stack.resources {
            let names: Vec<&String> = std::iter::once(&physical.reference)
                .chain(physical.attributes.get("Arn"))
                .collect();
            if f.environment.values().any(|v| names.contains(&v)) {
                let kind = if dlqs.contains(id) { "fails" } else { "writes" };
                edge(&f.logical_id, id, kind, String::new());
            }
        }
    }
    let by_arn = |arn: &str| {
        stack
            .resources
            .iter()
            .find(|(_, p)| {
                p.attributes.get("Arn").map(String::as_str) == Some(arn)
                    || p.attributes.get("StreamArn").map(String::as_str) == Some(arn)
                    || p.reference == arn
            })
            .map(|(id, _)| id.clone())
    };
    for mapping in &stack.mappings {
        match mapping {
            MappingSpec::Stream(m) => {
                let source = by_arn(&m.stream_arn).or_else(|| {
                    stack
                        .of_kind("AWS::DynamoDB::Table")
                        .find(|(_, p)| p.reference == m.stream_name)
                        .map(|(id, _)| id.to_string())
                });
                if let Some(source) = source {
                    edge(&source, &m.function, "feeds", String::new());
                }
                if let Some(target) = m.on_failure.as_deref().and_then(by_arn) {
                    edge(&m.function, &target, "fails", String::new());
                }
            }
            MappingSpec::Sqs(m) => {
                if let Some((queue, _)) = stack
                    .of_kind("AWS::SQS::Queue")
                    .find(|(_, p)| p.reference == m.queue_url)
                {
                    edge(queue, &m.function, "feeds", String::new());
                }
            }
        }
    }
    for (_, subscription) in stack.of_kind("AWS::SNS::Subscription") {
        let attribute = |name: &str| subscription.attributes.get(name).cloned();
        let (Some(topic), Some(endpoint)) = (
            attribute("herald:TopicArn").and_then(|a| by_arn(&a)),
            attribute("herald:Endpoint").and_then(|a| by_arn(&a)),
        ) else {
            continue;
        };
        let label = attribute("herald:FilterPolicy")
            .map(|p| filter_label(&p))
            .unwrap_or_default();
        if let Some(queue) = nodes.iter_mut().find(|n| n.id == endpoint) {
            queue.detail = label.clone();
        }
        edge(&topic, &endpoint, "subscribes", label);
    }
    for (id, queue) in stack.of_kind("AWS::SQS::Queue") {
        if let Some(target) = queue
            .attributes
            .get(DEAD_LETTER_TARGET)
            .and_then(|a| by_arn(a))
        {
            edge(id, &target, "fails", String::new());
        }
    }
    Flow {
        stack: stack.name.clone(),
        nodes,
        edges,
    }
}

/// A resource's logical id without the kind its node shows anyway (`InventoryQueue` →
/// `Inventory`, `InventoryDeadLetterQueue` → `Inventory DLQ`, `PaymentsTable` → `Payments`).
fn short_label(id: &str, kind: &str) -> String {
    let strip = |suffix: &str| id.strip_suffix(suffix).filter(|s| !s.is_empty());
    let short = match kind {
        "dlq" => strip("DeadLetterQueue")
            .or_else(|| strip("Queue"))
            .map(|s| format!("{s} DLQ")),
        "queue" => strip("Queue").map(String::from),
        "table" => strip("Table").map(String::from),
        _ => None,
    };
    short.unwrap_or_else(|| id.to_string())
}

/// `{"type":["order_placed"]}` → `type: order_placed`; an `$or` reads as its alternatives
/// joined by `|`, a condition that is not a value as its JSON (`{"exists":true}`).
pub fn filter_label(policy: &str) -> String {
    match serde_json::from_str(policy) {
        Ok(serde_json::Value::Object(map)) => policy_label(&map),
        _ => policy.to_string(),
    }
}

fn policy_label(map: &serde_json::Map<String, serde_json::Value>) -> String {
    map.iter()
        .map(|(key, values)| {
            let values = values.as_array().into_iter().flatten();
            if key == "$or" {
                return values
                    .map(|alternative| match alternative {
                        serde_json::Value::Object(map) => policy_label(map),
                        other => other.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(" | ");
            }
            let values: Vec<String> = values
                .map(|v| v.as_str().map_or_else(|| v.to_string(), String::from))
                .collect();
            format!("{key}: {}", values.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::filter_label;

    #[test]
    fn a_policy_reads_as_its_keys_and_an_or_as_its_alternatives() {
        assert_eq!(
            filter_label(r#"{"type":["order_placed","order_cancelled"]}"#),
            "type: order_placed, order_cancelled"
        );
        assert_eq!(
            filter_label(r#"{"$or":[{"kind":["system"]},{"type":["fraud_suspected"]}]}"#),
            "kind: system | type: fraud_suspected"
        );
        assert_eq!(
            filter_label(r#"{"aggregateversion":[{"exists":true}]}"#),
            r#"aggregateversion: {"exists":true}"#
        );
        assert_eq!(filter_label("not json"), "not json");
    }
}
