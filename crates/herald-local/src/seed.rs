//! Seed data: `infra/seed/<TableLogicalId>.json` (a JSON array of items) is written into that
//! table when the table is empty, so restarting a local stack keeps its state.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::Value;

use crate::stack::Stack;

/// Seed every table that has a seed file and no items. Returns (table, items written).
pub async fn seed(
    stack: &Stack,
    dir: &Path,
    client: &aws_sdk_dynamodb::Client,
) -> Result<Vec<(String, usize)>> {
    let mut written = Vec::new();
    for (id, table) in stack.of_kind("AWS::DynamoDB::Table") {
        let file = dir.join(format!("{id}.json"));
        if !file.exists() {
            continue;
        }
        let items: Vec<Value> = serde_json::from_slice(&std::fs::read(&file)?)
            .with_context(|| format!("{} is not a JSON array of items", file.display()))?;
        let existing = client
            .scan()
            .table_name(&table.reference)
            .limit(1)
            .send()
            .await?;
        if existing.count > 0 {
            continue;
        }
        for item in &items {
            client
                .put_item()
                .table_name(&table.reference)
                .set_item(Some(to_item(item)))
                .send()
                .await
                .with_context(|| format!("seeding {id}"))?;
        }
        written.push((id.to_string(), items.len()));
    }
    Ok(written)
}

/// A plain JSON object as a DynamoDB item (strings → S, numbers → N, booleans → BOOL, ...).
pub fn to_item(value: &Value) -> HashMap<String, AttributeValue> {
    value
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), to_attribute(v)))
                .collect()
        })
        .unwrap_or_default()
}

fn to_attribute(value: &Value) -> AttributeValue {
    match value {
        Value::Null => AttributeValue::Null(true),
        Value::Bool(b) => AttributeValue::Bool(*b),
        Value::Number(n) => AttributeValue::N(n.to_string()),
        Value::String(s) => AttributeValue::S(s.clone()),
        Value::Array(items) => AttributeValue::L(items.iter().map(to_attribute).collect()),
        Value::Object(_) => AttributeValue::M(to_item(value)),
    }
}

/// A DynamoDB item as plain JSON (numbers parsed when they fit).
pub fn from_item(item: &HashMap<String, AttributeValue>) -> Value {
    Value::Object(
        item.iter()
            .map(|(k, v)| (k.clone(), from_attribute(v)))
            .collect(),
    )
}

fn from_attribute(value: &AttributeValue) -> Value {
    match value {
        AttributeValue::S(s) => Value::String(s.clone()),
        AttributeValue::N(n) => n
            .parse::<i64>()
            .map(Value::from)
            .or_else(|_| n.parse::<f64>().map(Value::from))
            .unwrap_or_else(|_| Value::String(n.clone())),
        AttributeValue::Bool(b) => Value::Bool(*b),
        AttributeValue::L(items) => Value::Array(items.iter().map(from_attribute).collect()),
        AttributeValue::M(map) => from_item(map),
        AttributeValue::Ss(items) => Value::from(items.clone()),
        AttributeValue::Ns(items) => Value::from(items.clone()),
        _ => Value::Null,
    }
}
