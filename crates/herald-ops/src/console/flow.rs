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
    /// What to call it (a function's short name, else the logical id).
    pub label: String,
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
            label: id.clone(),
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

/// `{"type":["order_placed"]}` → `type: order_placed`
pub fn filter_label(policy: &str) -> String {
    let Ok(serde_json::Value::Object(map)) = serde_json::from_str(policy) else {
        return policy.to_string();
    };
    map.iter()
        .map(|(key, values)| {
            let values: Vec<String> = values
                .as_array()
                .into_iter()
                .flatten()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), String::from))
                .collect();
            format!("{key}: {}", values.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}
