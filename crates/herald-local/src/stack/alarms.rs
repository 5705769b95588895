//! The template's alarms, read against the stack: the metric each measures mapped to what the
//! local runner observes (a queue, a function, a stream of this stack), or why it cannot be.

use serde_json::Value;

use super::Stack;
use crate::alarms::{parse, AlarmDefinition, Source};
use crate::template::scalar;

/// Read an alarm's resolved `properties`: its definition, or why the runner cannot evaluate it.
pub(crate) fn read(stack: &Stack, id: &str, properties: &Value) -> Result<AlarmDefinition, String> {
    if let Some(metrics) = properties.get("Metrics") {
        let namespaces: Vec<String> = metrics
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m.pointer("/MetricStat/Metric/Namespace"))
            .map(scalar)
            .collect();
        if !namespaces.is_empty() && namespaces.iter().all(|n| n == "AWS/DynamoDB") {
            return Err("the emulator never throttles DynamoDB".into());
        }
        return Err("metric math over several metrics (evaluated on AWS only)".into());
    }
    let text = |name: &str| properties.get(name).map(scalar).unwrap_or_default();
    let namespace = text("Namespace");
    let metric = text("MetricName");
    let dimension = |name: &str| {
        properties
            .get("Dimensions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|d| d.get("Name").map(scalar).as_deref() == Some(name))
            .and_then(|d| d.get("Value"))
            .map(scalar)
    };
    let function = |value: Option<String>| -> Result<String, String> {
        let value = value.ok_or("no FunctionName dimension")?;
        stack
            .functions
            .iter()
            .find(|f| f.name == value || f.logical_id == value)
            .map(|f| f.logical_id.clone())
            .ok_or_else(|| format!("function {value} is not in the local stack"))
    };
    let source =
        match (namespace.as_str(), metric.as_str()) {
            ("AWS/SQS", "ApproximateNumberOfMessagesVisible") => {
                let name = dimension("QueueName").ok_or("no QueueName dimension")?;
                let (queue, physical) = stack
                    .of_kind("AWS::SQS::Queue")
                    .find(|(_, p)| p.attributes.get("QueueName") == Some(&name))
                    .ok_or_else(|| format!("queue {name} is not in the local stack"))?;
                Source::QueueDepth {
                    queue: queue.to_string(),
                    url: physical.reference.clone(),
                }
            }
            ("AWS/Lambda", "Errors") => Source::FunctionErrors {
                function: function(dimension("FunctionName"))?,
            },
            ("AWS/Lambda", "IteratorAge") => Source::FunctionIteratorAge {
                function: function(dimension("FunctionName"))?,
            },
            ("AWS/Lambda", "Throttles") => return Err(
                "the local runner queues invocations past its concurrency instead of throttling"
                    .into(),
            ),
            ("AWS/Kinesis", "GetRecords.IteratorAgeMilliseconds") => Source::StreamIteratorAge {
                stream: dimension("StreamName").ok_or("no StreamName dimension")?,
            },
            ("AWS/DynamoDB", _) => return Err("the emulator never throttles DynamoDB".into()),
            (namespace, metric) => {
                return Err(format!(
                    "{namespace} {metric} is not observed by the local runner"
                ))
            }
        };
    parse(id, properties, metric, source).map_err(|e| format!("{e:#}"))
}
