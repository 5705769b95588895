//! The emulator's own speed, so herald's overhead can be told from moto's.

use std::time::{Duration, Instant};

use anyhow::Result;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType,
};
use herald_local::Endpoint;

use crate::load::quantile;

/// The emulator's own speed, sequentially: `writes` `PutItem`s into an empty table, then as
/// many two-item `TransactWriteItems` into a table already holding `filled` items (what an
/// idempotency table holds after a run).
pub async fn emulator_speed(
    endpoint: &Endpoint,
    writes: usize,
    filled: usize,
) -> Result<EmulatorSpeed> {
    let client = aws_sdk_dynamodb::Client::new(&endpoint.sdk_config().await);
    let table = format!(
        "bench-writes-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..6]
    );
    client
        .create_table()
        .table_name(&table)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(ScalarAttributeType::S)
                .build()?,
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(KeyType::Hash)
                .build()?,
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await?;
    let payload = "x".repeat(400);
    let mut latencies = Vec::with_capacity(writes);
    let started = Instant::now();
    for i in 0..writes {
        let at = Instant::now();
        client
            .put_item()
            .table_name(&table)
            .item("pk", AttributeValue::S(format!("item-{i}")))
            .item("payload", AttributeValue::S(payload.clone()))
            .send()
            .await?;
        latencies.push(at.elapsed());
    }
    let puts_per_second = writes as f64 / started.elapsed().as_secs_f64();
    let put_p50 = quantile(&latencies, 0.5);
    for i in writes..filled.max(writes) {
        client
            .put_item()
            .table_name(&table)
            .item("pk", AttributeValue::S(format!("item-{i}")))
            .item("payload", AttributeValue::S(payload.clone()))
            .send()
            .await?;
    }
    let put = |key: String| -> Result<aws_sdk_dynamodb::types::TransactWriteItem> {
        Ok(aws_sdk_dynamodb::types::TransactWriteItem::builder()
            .put(
                aws_sdk_dynamodb::types::Put::builder()
                    .table_name(&table)
                    .item("pk", AttributeValue::S(key))
                    .item("payload", AttributeValue::S(payload.clone()))
                    .condition_expression("attribute_not_exists(pk)")
                    .build()?,
            )
            .build())
    };
    let mut latencies = Vec::with_capacity(writes);
    let started = Instant::now();
    for i in 0..writes {
        let at = Instant::now();
        client
            .transact_write_items()
            .transact_items(put(format!("tx-{i}-a"))?)
            .transact_items(put(format!("tx-{i}-b"))?)
            .send()
            .await?;
        latencies.push(at.elapsed());
    }
    let transactions_per_second = writes as f64 / started.elapsed().as_secs_f64();
    let _ = client.delete_table().table_name(&table).send().await;
    Ok(EmulatorSpeed {
        puts_per_second,
        put_p50,
        transactions_per_second,
        transaction_p50: quantile(&latencies, 0.5),
        filled: filled.max(writes),
    })
}

/// What the emulator does on its own.
#[derive(Clone, Debug)]
pub struct EmulatorSpeed {
    /// Sequential `PutItem`s per second.
    pub puts_per_second: f64,
    /// Their median latency.
    pub put_p50: Duration,
    /// Sequential two-item `TransactWriteItems` per second, into a filled table.
    pub transactions_per_second: f64,
    /// Their median latency.
    pub transaction_p50: Duration,
    /// Items in the table during the transactions.
    pub filled: usize,
}
