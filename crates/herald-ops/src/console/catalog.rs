//! The event catalog, generated: each type in `events/schemas` with its versions and schemas, who
//! produces it (the `source` of its samples under `events/`), who subscribes (the template's
//! subscription filter policies, down to the function reading each queue) and a sample.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Result;
use serde::Serialize;
use serde_json::Value;

use super::flow::filter_label;
use super::ConsoleState;
use herald_local::schemas;
use herald_local::stack::{MappingSpec, Stack};

/// One event type.
#[derive(Clone, Debug, Serialize)]
pub struct EventType {
    /// The type (`order_placed`).
    pub name: String,
    /// Its schema's description, if any.
    pub description: String,
    /// Versions, oldest first, with their schemas.
    pub versions: Vec<Version>,
    /// The `source`s its samples carry.
    pub producers: Vec<String>,
    /// Who receives it.
    pub subscribers: Vec<Subscriber>,
    /// A sample event and the file it is in.
    pub sample: Option<Sample>,
}

/// One schema version.
#[derive(Clone, Debug, Serialize)]
pub struct Version {
    /// `N` of `vN.json`.
    pub version: u32,
    /// The schema.
    pub schema: Value,
}

/// A subscription that delivers the type.
#[derive(Clone, Debug, Serialize)]
pub struct Subscriber {
    /// The queue it delivers to.
    pub queue: String,
    /// The function reading that queue.
    pub function: Option<String>,
    /// The filter that lets the type through.
    pub filter: String,
}

/// A sample event.
#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    /// The file under `events/`.
    pub file: String,
    /// The event.
    pub event: Value,
}

/// The catalog.
pub fn catalog(state: &ConsoleState) -> Result<Vec<EventType>> {
    // A deployed stack watched from outside a project: no schemas to show.
    let Some(events_dir) = &state.events_dir else {
        return Ok(Vec::new());
    };
    let set = schemas::load(&events_dir.join("schemas"))?;
    let samples = schemas::sample_events(events_dir).unwrap_or_default();
    let mut by_type: BTreeMap<String, Vec<Version>> = BTreeMap::new();
    for ((name, version), schema) in set {
        by_type
            .entry(name)
            .or_default()
            .push(Version { version, schema });
    }
    Ok(by_type
        .into_iter()
        .map(|(name, versions)| {
            let mine: Vec<&(String, Value)> =
                samples.iter().filter(|(_, e)| e["type"] == name).collect();
            let producers: BTreeSet<String> = mine
                .iter()
                .filter_map(|(_, e)| e["source"].as_str().map(String::from))
                .collect();
            EventType {
                description: versions
                    .last()
                    .and_then(|v| v.schema["description"].as_str())
                    .unwrap_or_default()
                    .to_string(),
                subscribers: subscribers(&state.stack, &name),
                sample: mine.first().map(|(file, event)| Sample {
                    file: file.clone(),
                    event: event.clone(),
                }),
                producers: producers.into_iter().collect(),
                versions,
                name,
            }
        })
        .collect())
}

/// The subscriptions whose filter lets `event_type` through (a `type` list naming it, or a filter
/// on other attributes, shown as written).
fn subscribers(stack: &Stack, event_type: &str) -> Vec<Subscriber> {
    let mut out = Vec::new();
    for (_, subscription) in stack.of_kind("AWS::SNS::Subscription") {
        let Some(endpoint) = subscription.attributes.get("herald:Endpoint") else {
            continue;
        };
        let policy: Value = subscription
            .attributes
            .get("herald:FilterPolicy")
            .and_then(|p| serde_json::from_str(p).ok())
            .unwrap_or(Value::Null);
        let delivered = match policy.get("type").and_then(Value::as_array) {
            Some(types) => types.iter().any(|t| t == event_type),
            None => true,
        };
        if !delivered {
            continue;
        }
        let Some((queue, physical)) = stack
            .of_kind("AWS::SQS::Queue")
            .find(|(_, p)| p.attributes.get("Arn") == Some(endpoint))
        else {
            continue;
        };
        let function = stack.mappings.iter().find_map(|m| match m {
            MappingSpec::Sqs(m) if m.queue_url == physical.reference => stack
                .function(&m.function)
                .ok()
                .map(|f| f.label().to_string()),
            _ => None,
        });
        out.push(Subscriber {
            queue: queue.to_string(),
            function,
            filter: if policy.is_null() {
                "everything".into()
            } else {
                filter_label(&policy.to_string())
            },
        });
    }
    out
}
