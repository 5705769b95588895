//! The event catalog, generated: each type in `events/schemas` with its versions and schemas, who
//! announces it (as the template's `Metadata` declares it,
//! [`herald_local::Template::announced`]), the `source`s its samples under `events/` carry, who
//! subscribes (each subscription's
//! filter policy judged as SNS judges it, [`crate::filter_policy_matches`], on the message
//! attributes the router gives the type's samples, down to the function reading each queue) and a
//! sample.

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
    /// The resources the template declares as announcing it.
    pub producers: Vec<String>,
    /// The `source`s its samples carry.
    pub sources: Vec<String>,
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
            let sources: BTreeSet<String> = mine
                .iter()
                .filter_map(|(_, e)| e["source"].as_str().map(String::from))
                .collect();
            EventType {
                description: versions
                    .last()
                    .and_then(|v| v.schema["description"].as_str())
                    .unwrap_or_default()
                    .to_string(),
                subscribers: subscribers(&state.stack, &name, &mine),
                sample: mine.first().map(|(file, event)| Sample {
                    file: file.clone(),
                    event: event.clone(),
                }),
                producers: state
                    .stack
                    .announced
                    .get(&name)
                    .cloned()
                    .unwrap_or_default(),
                sources: sources.into_iter().collect(),
                versions,
                name,
            }
        })
        .collect())
}

/// The subscriptions whose filter policy lets one of the type's samples through, judged on the
/// attributes the router gives it; a type without samples is judged on its `type` alone.
fn subscribers(stack: &Stack, event_type: &str, samples: &[&(String, Value)]) -> Vec<Subscriber> {
    let mut messages: Vec<BTreeMap<String, String>> = samples
        .iter()
        .map(|(_, event)| attributes(event_type, event))
        .collect();
    if messages.is_empty() {
        messages.push(attributes(event_type, &Value::Null));
    }
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
        // A policy herald cannot judge (an operator SNS has that it does not know) is shown, not
        // hidden: the reader sees it as written.
        let delivered = policy.is_null()
            || messages
                .iter()
                .any(|m| crate::filter_policy::matches(&policy, m).unwrap_or(true));
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

/// The message attributes filter policies see for an event (`herald::router::bus_attributes`:
/// type, kind, source, schema version, correlation id, and the aggregate version of an
/// event-sourced event), read from a sample's envelope.
fn attributes(event_type: &str, event: &Value) -> BTreeMap<String, String> {
    let mut attributes = BTreeMap::from([("type".to_string(), event_type.to_string())]);
    let text = |value: &Value| match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    for name in [
        "kind",
        "source",
        "schemaversion",
        "correlationid",
        "aggregateversion",
    ] {
        if let Some(value) = event.get(name).and_then(text) {
            attributes.insert(name.to_string(), value);
        }
    }
    attributes
        .entry("schemaversion".into())
        .or_insert_with(|| "1".into());
    attributes
}
