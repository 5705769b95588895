//! Benchmarks that count rather than time: requests per event, measured with an SDK interceptor
//! ([`herald::aws::RequestCounter`]) against whatever endpoint is configured. `shop bench
//! idempotency` prints it.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, Result};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, Put,
    ScalarAttributeType, TransactWriteItem, Update,
};
use herald::aws::RequestCounter;
use herald::idempotency::{put_once, record_in, Decision, Delta, Idempotency, IdempotencyConfig};
use herald::Envelope;
use herald_local::{binaries, Endpoint};

/// `shop bench idempotency`: `events` events down each path against the configured endpoint (or
/// a moto of its own); the table.
pub async fn table(events: usize) -> Result<String> {
    let root = binaries::project_root();
    let endpoint = Endpoint::from_env_or_start(&root, None).await?;
    let rows = idempotency_requests(&endpoint, events).await?;
    Ok(render_requests(&rows, events, &endpoint.describe()))
}

/// One row: a delivery path and the DynamoDB requests it cost per event.
#[derive(Clone, Debug)]
pub struct RequestRow {
    /// The path (`claimed: first delivery`, ...).
    pub path: &'static str,
    /// Requests per event, measured.
    pub per_event: f64,
    /// Requests per event by operation.
    pub operations: Vec<(String, f64)>,
    /// Write units per event (one per started KB, two per transaction item).
    pub write_units: f64,
    /// The same path in the Powertools design.
    pub powertools: &'static str,
}

/// DynamoDB requests per event for each idempotency path, over `events` events.
pub async fn idempotency_requests(endpoint: &Endpoint, events: usize) -> Result<Vec<RequestRow>> {
    let aws = endpoint.sdk_config().await;
    let counter = RequestCounter::default();
    let client = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&aws)
            .interceptor(counter.clone())
            .build(),
    );
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let records = format!("bench-idempotency-{suffix}");
    let effects = format!("bench-effects-{suffix}");
    create_table(&client, &records, "pk").await?;
    create_table(&client, &effects, "id").await?;
    let idempotency = Idempotency::new(client.clone(), IdempotencyConfig::new(&records, "bench"));
    let deadline = || SystemTime::now() + Duration::from_secs(30);
    let claimed: Vec<Envelope> = (0..events).map(|i| event("claimed", i)).collect();
    let transactional: Vec<Envelope> = (0..events).map(|i| event("transactional", i)).collect();
    let effect = |event: &Envelope| -> TransactWriteItem {
        TransactWriteItem::builder()
            .update(
                Update::builder()
                    .table_name(&effects)
                    .key("id", AttributeValue::S(event.id().to_string()))
                    .update_expression("ADD #n :one")
                    .expression_attribute_names("#n", "n")
                    .expression_attribute_values(":one", AttributeValue::N("1".into()))
                    .build()
                    .expect("complete update"),
            )
            .build()
    };

    let mut rows = Vec::new();
    let mut measure = |path: &'static str, powertools: &'static str, counter: &RequestCounter| {
        let counts = counter.counts();
        let operations: Vec<(String, f64)> = counts
            .iter()
            .filter(|(op, _)| !op.contains('#'))
            .map(|(op, n)| (op.clone(), *n as f64 / events as f64))
            .collect();
        let write_units: u64 = counts
            .iter()
            .filter(|(op, _)| op.ends_with("#wru"))
            .map(|(_, n)| n)
            .sum();
        rows.push(RequestRow {
            path,
            per_event: counter.total() as f64 / events as f64,
            operations,
            write_units: write_units as f64 / events as f64,
            powertools,
        });
        counter.reset();
    };

    // Each path twice over the same events: the first pass is the first delivery, the second
    // the duplicate.
    counter.reset();
    for (path, powertools) in [
        (
            "claimed: first delivery",
            "2 (PutItem claim + UpdateItem result), 2 WU",
        ),
        ("claimed: duplicate", "1 failed PutItem (ALL_OLD), 1 WU"),
    ] {
        for event in &claimed {
            idempotency
                .run(event, deadline(), || async {
                    Ok::<_, String>("done".to_string())
                })
                .await
                .map_err(|e| anyhow!("{e}"))?;
        }
        measure(path, powertools, &counter);
    }
    for (path, powertools) in [
        (
            "transactional: first delivery",
            "3 (claim + effect + result; no atomicity), 3 WU",
        ),
        (
            "transactional: duplicate",
            "1 failed PutItem (ALL_OLD), 1 WU",
        ),
    ] {
        for event in &transactional {
            idempotency
                .run_transactional(event, |_| {
                    Ok::<_, String>(Decision {
                        deltas: Vec::new(),
                        writes: vec![effect(event)],
                        result: "done".to_string(),
                    })
                })
                .await
                .map_err(|e| anyhow!("{e}"))?;
        }
        measure(path, powertools, &counter);
    }

    // The batch path: ten events per transaction, each adding to one shared counter (summed).
    let batched: Vec<Envelope> = (0..events).map(|i| event("batched", i)).collect();
    for (path, powertools) in [
        (
            "transactional, batches of 10: first delivery",
            "3 per event (claim + effect + result), 3 WU",
        ),
        (
            "transactional, batches of 10: duplicate",
            "1 failed PutItem (ALL_OLD), 1 WU",
        ),
    ] {
        for chunk in batched.chunks(10) {
            let refs: Vec<&Envelope> = chunk.iter().collect();
            let results = idempotency
                .run_transactional_batch(&refs, Some(deadline()), |_, _| {
                    Ok::<_, String>(Decision {
                        writes: Vec::new(),
                        deltas: vec![Delta::new(
                            &effects,
                            "id",
                            AttributeValue::S("counter".into()),
                        )
                        .add("n", 1)],
                        result: "done".to_string(),
                    })
                })
                .await;
            if let Some(unsettled) = results.iter().position(Option::is_none) {
                return Err(anyhow!("the batch left event {unsettled} unsettled"));
            }
        }
        measure(path, powertools, &counter);
    }
    // The batch path where each event's effect creates an item of its own (inventory's
    // reservation of an order) that keeps the event's record: no write to the idempotency table.
    let homed: Vec<Envelope> = (0..events).map(|i| event("homed", i)).collect();
    for (path, powertools) in [
        (
            "transactional, batches of 10, each event's new item its record (`record_in`): first delivery",
            "4 per event (claim + item + counter + result), 4 WU",
        ),
        (
            "transactional, batches of 10, record in the item: duplicate",
            "1 failed PutItem (ALL_OLD), 1 WU",
        ),
    ] {
        for chunk in homed.chunks(10) {
            let refs: Vec<&Envelope> = chunk.iter().collect();
            let results = idempotency
                .run_transactional_batch(&refs, Some(deadline()), |event, _| {
                    let put = Put::builder()
                        .table_name(&effects)
                        .item("id", AttributeValue::S(format!("item#{}", event.id())))
                        .condition_expression("attribute_not_exists(id)")
                        .build()
                        .map_err(|e| e.to_string())?;
                    Ok::<_, String>(Decision {
                        writes: vec![TransactWriteItem::builder()
                            .put(record_in(put, "id"))
                            .build()],
                        deltas: vec![Delta::new(
                            &effects,
                            "id",
                            AttributeValue::S("counter".into()),
                        )
                        .add("n", 1)],
                        result: "done".to_string(),
                    })
                })
                .await;
            if let Some(unsettled) = results.iter().position(Option::is_none) {
                return Err(anyhow!("the batch left event {unsettled} unsettled"));
            }
        }
        measure(path, powertools, &counter);
    }
    // Keyed: the effect's item is the record.
    let keyed: Vec<Envelope> = (0..events).map(|i| event("keyed", i)).collect();
    for (path, powertools) in [
        (
            "keyed (the effect's item is the record): first delivery",
            "3 (claim + effect + result), 3 WU",
        ),
        ("keyed: duplicate", "1 failed PutItem (ALL_OLD), 1 WU"),
    ] {
        for event in &keyed {
            let item = HashMap::from([
                ("id".to_string(), AttributeValue::S(event.id().to_string())),
                ("status".to_string(), AttributeValue::S("sent".into())),
            ]);
            put_once(&client, &effects, "id", item)
                .await
                .map_err(|e| anyhow!("{e}"))?;
        }
        measure(path, powertools, &counter);
    }

    for table in [&records, &effects] {
        let _ = client.delete_table().table_name(table).send().await;
    }
    Ok(rows)
}

/// The table printed by `shop bench idempotency`.
pub fn render_requests(rows: &[RequestRow], events: usize, endpoint: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "DynamoDB requests per event ({events} events per path, endpoint {endpoint})\n"
    );
    let _ = writeln!(
        out,
        "| path | herald requests | herald write units | by operation | Powertools design |"
    );
    let _ = writeln!(out, "|---|---:|---:|---|---|");
    for row in rows {
        let ops: Vec<String> = row
            .operations
            .iter()
            .map(|(op, n)| format!("{} {:.2}", op.trim_start_matches("DynamoDB."), n))
            .collect();
        let _ = writeln!(
            out,
            "| {} | {:.2} | {:.2} | {} | {} |",
            row.path,
            row.per_event,
            row.write_units,
            ops.join(", "),
            row.powertools
        );
    }
    out
}

fn event(kind: &str, i: usize) -> Envelope {
    Envelope::builder("order_placed", "herald/bench")
        .id(format!("{kind}-{i}"))
        .subject(format!("order-{i}"))
        .data(serde_json::json!({ "n": i }))
        .build()
        .expect("a valid event")
}

async fn create_table(client: &aws_sdk_dynamodb::Client, name: &str, key: &str) -> Result<()> {
    client
        .create_table()
        .table_name(name)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(key)
                .attribute_type(ScalarAttributeType::S)
                .build()?,
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name(key)
                .key_type(KeyType::Hash)
                .build()?,
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await?;
    Ok(())
}
