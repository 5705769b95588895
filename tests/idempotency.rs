//! herald::idempotency against DynamoDB on the emulator.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType, TransactWriteItem, Update,
};
use herald::idempotency::{Decision, Executed, Idempotency, IdempotencyConfig, IdempotencyError};
use herald::Envelope;

async fn table(client: &aws_sdk_dynamodb::Client, key: &str) -> String {
    let name = common::unique("idem");
    client
        .create_table()
        .table_name(&name)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(key)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name(key)
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap();
    name
}

fn event(id: &str, n: u64) -> Envelope {
    Envelope::builder("order_placed", "herald/test")
        .id(id)
        .subject("order-1")
        .data(serde_json::json!({"n": n}))
        .build()
        .unwrap()
}

fn deadline() -> SystemTime {
    SystemTime::now() + Duration::from_secs(10)
}

async fn setup() -> (aws_sdk_dynamodb::Client, Idempotency) {
    let client = aws_sdk_dynamodb::Client::new(&common::aws().await);
    let table = table(&client, "pk").await;
    (
        client.clone(),
        Idempotency::new(client, IdempotencyConfig::new(table, "test")),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_gets_the_stored_result_without_running_the_handler() {
    let (_, idempotency) = setup().await;
    let runs = AtomicUsize::new(0);
    let handler = || async {
        runs.fetch_add(1, Ordering::SeqCst);
        Ok::<_, String>(42)
    };
    let first = idempotency
        .run(&event("e1", 1), deadline(), handler)
        .await
        .unwrap();
    let second = idempotency
        .run(&event("e1", 1), deadline(), handler)
        .await
        .unwrap();
    assert_eq!(first, Executed::Ran(42));
    assert_eq!(second, Executed::Replayed(42));
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_error_releases_the_claim_so_a_retry_runs_again() {
    let (_, idempotency) = setup().await;
    let failed = idempotency
        .run(&event("e2", 1), deadline(), || async {
            Err::<u32, _>("gateway down".to_string())
        })
        .await;
    assert!(matches!(failed, Err(IdempotencyError::Handler(ref e)) if e == "gateway down"));
    let retried = idempotency
        .run(&event("e2", 1), deadline(), || async { Ok::<_, String>(7) })
        .await
        .unwrap();
    assert_eq!(retried, Executed::Ran(7));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_id_with_another_payload_is_a_payload_mismatch() {
    let (_, idempotency) = setup().await;
    idempotency
        .run(&event("e3", 1), deadline(), || async { Ok::<_, String>(1) })
        .await
        .unwrap();
    let runs = AtomicUsize::new(0);
    let mismatch = idempotency
        .run(&event("e3", 2), deadline(), || async {
            runs.fetch_add(1, Ordering::SeqCst);
            Ok::<_, String>(2)
        })
        .await;
    assert!(
        matches!(mismatch, Err(IdempotencyError::PayloadMismatch { .. })),
        "{mismatch:?}"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_duplicates_run_the_handler_once() {
    let (_, idempotency) = setup().await;
    let idempotency = Arc::new(idempotency);
    let runs = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let idempotency = idempotency.clone();
            let runs = runs.clone();
            tokio::spawn(async move {
                idempotency
                    .run(&event("e4", 1), deadline(), || async {
                        runs.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok::<_, String>("charged".to_string())
                    })
                    .await
            })
        })
        .collect();
    let mut ran = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(Executed::Ran(_)) => ran += 1,
            Ok(Executed::Replayed(r)) => assert_eq!(r, "charged"),
            Err(IdempotencyError::AlreadyInProgress { .. }) => {}
            Err(other) => panic!("{other}"),
        }
    }
    assert_eq!(ran, 1);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_transaction_leaves_neither_effect_nor_record() {
    let (client, idempotency) = setup().await;
    let counters = table(&client, "metric").await;
    let add = |n: i64, limit: i64| {
        TransactWriteItem::builder()
            .update(
                Update::builder()
                    .table_name(&counters)
                    .key("metric", AttributeValue::S("m".into()))
                    .update_expression("ADD #c :n")
                    .condition_expression("attribute_not_exists(#c) OR #c < :limit")
                    .expression_attribute_names("#c", "count")
                    .expression_attribute_values(":n", AttributeValue::N(n.to_string()))
                    .expression_attribute_values(":limit", AttributeValue::N(limit.to_string()))
                    .build()
                    .unwrap(),
            )
            .build()
    };
    let count = || async {
        client
            .get_item()
            .table_name(&counters)
            .key("metric", AttributeValue::S("m".into()))
            .send()
            .await
            .unwrap()
            .item
            .and_then(|i| {
                i.get("count")
                    .and_then(|v| v.as_n().ok())
                    .and_then(|n| n.parse::<i64>().ok())
            })
            .unwrap_or(0)
    };

    // First delivery: one transaction with the record; the duplicate changes nothing.
    let ran = idempotency
        .run_transactional(&event("t1", 1), |_| {
            Ok::<_, String>(Decision {
                writes: vec![add(1, 10)],
                result: "added".to_string(),
            })
        })
        .await
        .unwrap();
    assert_eq!(ran, Executed::Ran("added".to_string()));
    let again = idempotency
        .run_transactional(&event("t1", 1), |_| {
            Ok::<_, String>(Decision {
                writes: vec![add(1, 10)],
                result: "added".to_string(),
            })
        })
        .await
        .unwrap();
    assert!(again.is_replay());
    assert_eq!(count().await, 1);

    // A decision whose write cannot commit, and a handler that refuses after the conflict: nothing stays.
    let refused = idempotency
        .run_transactional(&event("t2", 1), |conflict| match conflict {
            None => Ok(Decision {
                writes: vec![add(5, 0)],
                result: "added".to_string(),
            }),
            Some(_) => Err("over the limit".to_string()),
        })
        .await;
    assert!(
        matches!(refused, Err(IdempotencyError::Handler(ref e)) if e == "over the limit"),
        "{refused:?}"
    );
    assert_eq!(count().await, 1);
    let retried = idempotency
        .run_transactional(&event("t2", 1), |_| {
            Ok::<_, String>(Decision {
                writes: vec![add(2, 10)],
                result: "added".to_string(),
            })
        })
        .await
        .unwrap();
    assert_eq!(
        retried,
        Executed::Ran("added".to_string()),
        "no record was left by the failed attempt"
    );
    assert_eq!(count().await, 3);
}
