//! herald::idempotency against DynamoDB on the emulator.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType, TransactWriteItem, Update,
};
use herald::idempotency::{
    put_once, Decision, Delta, Executed, Idempotency, IdempotencyConfig, IdempotencyError, PutOnce,
    RecordTables,
};
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
    setup_with(|_| {}).await
}

async fn setup_with(
    tweak: impl FnOnce(&mut IdempotencyConfig),
) -> (aws_sdk_dynamodb::Client, Idempotency) {
    let client = aws_sdk_dynamodb::Client::new(&common::aws().await);
    let table = table(&client, "pk").await;
    let mut config = IdempotencyConfig::new(table, "test");
    tweak(&mut config);
    (client.clone(), Idempotency::new(client, config))
}

/// Start a delivery and kill it after the claim, as a crashed or timed-out Lambda would.
async fn crash_after_claim(idempotency: &Idempotency, event: &Envelope, deadline: SystemTime) {
    let crashed = tokio::time::timeout(
        Duration::from_millis(300),
        idempotency.run(event, deadline, || async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok::<_, String>(0)
        }),
    )
    .await;
    assert!(crashed.is_err(), "the delivery was cut off mid-handler");
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
    // 16 deliveries race on each of 8 keys.
    for key in 0..8 {
        let id = format!("race-{key}");
        let runs = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let idempotency = idempotency.clone();
                let runs = runs.clone();
                let id = id.clone();
                tokio::spawn(async move {
                    idempotency
                        .run(&event(&id, 1), deadline(), || async {
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
        assert_eq!(ran, 1, "{id}");
        assert_eq!(runs.load(Ordering::SeqCst), 1, "{id}");
    }
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
    let count = || common::number_attribute(&client, &counters, ("metric", "m"), "count");

    // First delivery: one transaction with the record; the duplicate changes nothing.
    let ran = idempotency
        .run_transactional(&event("t1", 1), |_| {
            Ok::<_, String>(Decision {
                deltas: Vec::new(),
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
                deltas: Vec::new(),
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
                deltas: Vec::new(),
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
                deltas: Vec::new(),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_claim_is_taken_over_after_the_invocation_deadline_not_before() {
    let (_, idempotency) = setup_with(|c| {
        c.min_in_progress = Duration::from_millis(200);
        c.in_progress_wait = Duration::ZERO;
    })
    .await;
    let e = event("c1", 1);
    // The claim lasts until the crashed invocation's deadline (`Context::deadline`).
    crash_after_claim(
        &idempotency,
        &e,
        SystemTime::now() + Duration::from_millis(1500),
    )
    .await;
    let blocked = idempotency
        .run(&e, deadline(), || async { Ok::<_, String>(1) })
        .await;
    assert!(
        matches!(blocked, Err(IdempotencyError::AlreadyInProgress { .. })),
        "{blocked:?}"
    );
    tokio::time::sleep(Duration::from_millis(1400)).await;
    let taken_over = idempotency
        .run(&e, deadline(), || async { Ok::<_, String>(2) })
        .await
        .unwrap();
    assert_eq!(taken_over, Executed::Ran(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_in_progress_timeout_overrides_the_deadline() {
    let (_, idempotency) = setup_with(|c| {
        c.in_progress_timeout = Some(Duration::from_millis(800));
        c.min_in_progress = Duration::from_millis(200);
        c.in_progress_wait = Duration::ZERO;
    })
    .await;
    let e = event("c2", 1);
    // A far deadline, but the configured timeout releases the claim after 0.8 s.
    crash_after_claim(
        &idempotency,
        &e,
        SystemTime::now() + Duration::from_secs(600),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let taken_over = idempotency
        .run(&e, deadline(), || async { Ok::<_, String>(3) })
        .await
        .unwrap();
    assert_eq!(taken_over, Executed::Ran(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_duplicate_waits_for_the_first_delivery_instead_of_failing() {
    let (_, idempotency) = setup().await;
    let idempotency = Arc::new(idempotency);
    let first = {
        let idempotency = idempotency.clone();
        tokio::spawn(async move {
            idempotency
                .run(&event("w1", 1), deadline(), || async {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    Ok::<_, String>("first".to_string())
                })
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let second = idempotency
        .run(&event("w1", 1), deadline(), || async {
            Ok::<_, String>("second".to_string())
        })
        .await
        .unwrap();
    assert_eq!(second, Executed::Replayed("first".to_string()));
    assert_eq!(
        first.await.unwrap().unwrap(),
        Executed::Ran("first".to_string())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_completed_record_counts_as_absent() {
    let (_, idempotency) = setup_with(|c| c.record_ttl = Duration::from_secs(1)).await;
    let e = event("x1", 1);
    assert_eq!(
        idempotency
            .run(&e, deadline(), || async { Ok::<_, String>(1) })
            .await
            .unwrap(),
        Executed::Ran(1)
    );
    assert!(idempotency
        .run(&e, deadline(), || async { Ok::<_, String>(2) })
        .await
        .unwrap()
        .is_replay());
    // DynamoDB's TTL deletes lazily (moto never does): expiry is judged by the record itself.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        idempotency
            .run(&e, deadline(), || async { Ok::<_, String>(3) })
            .await
            .unwrap(),
        Executed::Ran(3)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_answers_duplicates_without_a_request() {
    let aws = common::aws().await;
    let counter = herald::aws::RequestCounter::default();
    let client = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&aws)
            .interceptor(counter.clone())
            .build(),
    );
    let mut config = IdempotencyConfig::new(table(&client, "pk").await, "test");
    config.cache_capacity = 16;
    let idempotency = Idempotency::new(client, config);
    let e = event("k1", 1);
    idempotency
        .run(&e, deadline(), || async { Ok::<_, String>(1) })
        .await
        .unwrap();
    counter.reset();
    let again = idempotency
        .run(&e, deadline(), || async { Ok::<_, String>(2) })
        .await
        .unwrap();
    assert_eq!(again, Executed::Replayed(1));
    assert_eq!(counter.total(), 0, "{:?}", counter.counts());
    // A different payload under the same key is still caught.
    let mismatch = idempotency
        .run(&event("k1", 2), deadline(), || async { Ok::<_, String>(3) })
        .await;
    assert!(matches!(
        mismatch,
        Err(IdempotencyError::PayloadMismatch { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_costs_one_request_in_any_mode() {
    let aws = common::aws().await;
    let counter = herald::aws::RequestCounter::default();
    let client = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&aws)
            .interceptor(counter.clone())
            .build(),
    );
    let idempotency = Idempotency::new(
        client.clone(),
        IdempotencyConfig::new(table(&client, "pk").await, "test"),
    );
    let e = event("r1", 1);
    counter.reset();
    idempotency
        .run(&e, deadline(), || async { Ok::<_, String>(1) })
        .await
        .unwrap();
    assert_eq!(
        counter.counts().get("DynamoDB.PutItem"),
        Some(&2),
        "claim + result: {:?}",
        counter.counts()
    );
    counter.reset();
    idempotency
        .run(&e, deadline(), || async { Ok::<_, String>(1) })
        .await
        .unwrap();
    assert_eq!(
        counter.total(),
        1,
        "one failed conditional write, no read: {:?}",
        counter.counts()
    );

    let t = event("r2", 1);
    let decide = |_| {
        Ok::<_, String>(Decision {
            deltas: Vec::new(),
            writes: vec![],
            result: 1,
        })
    };
    for delivery in ["first delivery", "duplicate"] {
        counter.reset();
        idempotency.run_transactional(&t, decide).await.unwrap();
        // The duplicate's old record comes back in the cancellation reasons: no read.
        assert_eq!(counter.total(), 1, "{delivery}: {:?}", counter.counts());
    }

    // Keyed: the effect's item is the record; the duplicate finds it with the refusal.
    let outbox = table(&client, "messageId").await;
    let item = || {
        std::collections::HashMap::from([
            ("messageId".to_string(), AttributeValue::S("m-1".into())),
            ("body".to_string(), AttributeValue::S("hello".into())),
        ])
    };
    counter.reset();
    let first = put_once(&client, &outbox, "messageId", item())
        .await
        .unwrap();
    assert_eq!(first, PutOnce::Written);
    assert_eq!(counter.total(), 1, "{:?}", counter.counts());
    counter.reset();
    let again = put_once(&client, &outbox, "messageId", item())
        .await
        .unwrap();
    assert_eq!(
        again,
        PutOnce::Existing(item()),
        "the stored item, as written"
    );
    assert_eq!(counter.total(), 1, "no read: {:?}", counter.counts());
}

/// Keyed mode at the shop's payment ledger: a cancellation that overtook the charge marks the
/// key; the charge that finds the mark declines now, and its redelivery is told it declined before
/// (a duplicate, not a second decision).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_charge_after_a_cancellation_declines_once_and_its_redelivery_is_a_duplicate() {
    use shop::payment::{Charge, ChargeRequest, LedgerGateway, PaymentGateway, RefundRequest};
    let client = aws_sdk_dynamodb::Client::new(&common::aws().await);
    let ledger = LedgerGateway::new(client.clone(), table(&client, "paymentId").await);
    let order = common::unique("order");
    let refund = RefundRequest {
        idempotency_key: format!("charge#{order}"),
        order_id: order.clone(),
        reason: "customer changed their mind".into(),
    };
    assert!(
        ledger.refund(&refund).await.unwrap().now,
        "the key is marked"
    );
    let charge = ChargeRequest {
        idempotency_key: refund.idempotency_key.clone(),
        order_id: order,
        amount: 4200,
        currency: "EUR".into(),
        token: "tok_visa".into(),
    };
    let first = ledger.charge(&charge).await.unwrap();
    assert!(first.now, "the first charge to find the mark declines now");
    assert!(
        matches!(first.value, Charge::Declined { .. }),
        "{:?}",
        first.value
    );
    let again = ledger.charge(&charge).await.unwrap();
    assert!(!again.now, "its redelivery declined before");
    assert_eq!(again.value, first.value, "the same answer");
}

/// The batch path on DynamoDB: one transaction for a batch, the stock deltas summed, and a
/// redelivered batch's duplicates found by reading its records ahead (`BatchGetItem`), so that
/// only the new event goes in a transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_commits_in_one_transaction_and_its_redelivery_writes_only_what_is_new() {
    batch_on_dynamodb(true).await;
}

/// The same without the read ahead: the duplicates come back with the refused transaction's
/// cancellation reasons, and the new event commits in a second one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_read_ahead_a_redelivered_batch_is_told_by_its_refused_transaction() {
    batch_on_dynamodb(false).await;
}

async fn batch_on_dynamodb(look_ahead: bool) {
    let aws = common::aws().await;
    let counter = herald::aws::RequestCounter::default();
    let client = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&aws)
            .interceptor(counter.clone())
            .build(),
    );
    let stock = table(&client, "sku").await;
    client
        .put_item()
        .table_name(&stock)
        .item("sku", AttributeValue::S("apple".into()))
        .item("available", AttributeValue::N("8".into()))
        .send()
        .await
        .unwrap();
    let records = table(&client, "pk").await;
    // No cache: the redelivery must be told by DynamoDB, as in another process.
    let mut config = IdempotencyConfig::new(records, "test");
    config.cache_capacity = 0;
    config.look_ahead = look_ahead;
    let idempotency = Idempotency::new(client.clone(), config);
    let take = |quantity: i64| {
        Delta::new(&stock, "sku", AttributeValue::S("apple".into()))
            .add("available", -quantity)
            .never_negative("available")
    };
    let decide = |event: &Envelope, conflict: Option<herald::idempotency::Conflict>| {
        let quantity = event.data().unwrap()["n"].as_i64().unwrap();
        Ok::<_, String>(match conflict {
            None => Decision {
                writes: Vec::new(),
                deltas: vec![take(quantity)],
                result: format!("took {quantity}"),
            },
            Some(_) => Decision {
                writes: Vec::new(),
                deltas: Vec::new(),
                result: "refused".to_string(),
            },
        })
    };
    let available = || async {
        let item = client
            .get_item()
            .table_name(&stock)
            .key("sku", AttributeValue::S("apple".into()))
            .consistent_read(true)
            .send()
            .await
            .unwrap()
            .item
            .unwrap();
        item["available"].as_n().unwrap().parse::<i64>().unwrap()
    };

    let batch: Vec<Envelope> = (1..=3).map(|i| event(&format!("b{i}"), 1)).collect();
    let refs: Vec<&Envelope> = batch.iter().collect();
    counter.reset();
    let first = idempotency
        .run_transactional_batch(&refs, None, decide)
        .await;
    assert!(
        first
            .iter()
            .all(|r| matches!(r, Some(Ok(Executed::Ran(_))))),
        "{first:?}"
    );
    let counts = counter.counts();
    assert_eq!(
        counts.get("DynamoDB.TransactWriteItems"),
        Some(&1),
        "one transaction: {counts:?}"
    );
    let reads = counts.get("DynamoDB.BatchGetItem").copied().unwrap_or(0);
    assert_eq!(reads, u64::from(look_ahead), "{counts:?}");
    assert_eq!(counter.total(), 1 + reads, "{counts:?}");
    assert_eq!(available().await, 5);

    // The same events again, with a new one among them: the duplicates are found by the read
    // ahead (or come back with a refused transaction), the new one commits.
    let mut again = batch.clone();
    again.insert(1, event("b4", 2));
    let refs: Vec<&Envelope> = again.iter().collect();
    counter.reset();
    let second = idempotency
        .run_transactional_batch(&refs, None, decide)
        .await;
    let replayed = second
        .iter()
        .filter(|r| matches!(r, Some(Ok(Executed::Replayed(_)))))
        .count();
    assert_eq!(replayed, 3, "{second:?}");
    assert!(matches!(&second[1], Some(Ok(Executed::Ran(r))) if r == "took 2"));
    let counts = counter.counts();
    let transactions = if look_ahead { 1 } else { 2 };
    assert_eq!(
        counts.get("DynamoDB.TransactWriteItems"),
        Some(&transactions),
        "{counts:?}"
    );
    assert_eq!(
        counts
            .get("DynamoDB.BatchGetItem#items")
            .copied()
            .unwrap_or(0),
        if look_ahead { 4 } else { 0 },
        "every record of the batch read at once: {counts:?}"
    );
    assert_eq!(available().await, 3, "each event took its units once");

    // Four units asked of three: the summed condition fails, DynamoDB returns the level with
    // the refusal, and the batch decides again against it at once: the first takes two, the
    // second is refused and proven short in the same transaction (none go one by one).
    let short: Vec<Envelope> = (5..=6).map(|i| event(&format!("b{i}"), 2)).collect();
    let refs: Vec<&Envelope> = short.iter().collect();
    counter.reset();
    let third = idempotency
        .run_transactional_batch(&refs, None, decide)
        .await;
    let results: Vec<String> = third
        .iter()
        .map(|r| match r {
            Some(Ok(e)) => e.clone().into_inner(),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(results, ["took 2", "refused"]);
    assert_eq!(
        counter.counts().get("DynamoDB.TransactWriteItems"),
        Some(&2),
        "the refused attempt and the one that proves the refusal"
    );
    assert_eq!(available().await, 1);

    // DynamoDB returned the apple's level with the refusal: once the last one is taken, a batch
    // asking for more is refused in one transaction that proves the shelf empty.
    for (id, quantity) in [("b7", 2), ("b8", 1)] {
        let e = event(id, quantity);
        let settled = idempotency
            .run_transactional_batch(&[&e], None, decide)
            .await
            .pop()
            .flatten();
        if settled.is_none() {
            idempotency
                .run_transactional(&e, |c| decide(&e, c))
                .await
                .unwrap();
        }
    }
    assert_eq!(available().await, 0);
    let empty: Vec<Envelope> = [("b9", 1), ("b10", 3)]
        .iter()
        .map(|(id, quantity)| event(id, *quantity))
        .collect();
    let refs: Vec<&Envelope> = empty.iter().collect();
    counter.reset();
    let fifth = idempotency
        .run_transactional_batch(&refs, None, decide)
        .await;
    assert!(
        fifth
            .iter()
            .all(|r| matches!(r, Some(Ok(Executed::Ran(r))) if r == "refused")),
        "{fifth:?}"
    );
    let counts = counter.counts();
    assert_eq!(
        counts.get("DynamoDB.TransactWriteItems"),
        Some(&1),
        "{counts:?}"
    );
    assert_eq!(available().await, 0);
}

mod interleavings {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;
    use std::sync::Mutex;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

        /// Any order of deliveries of a set of events, with duplicates and concurrent batches,
        /// applies each event's effect exactly once, in both modes.
        #[test]
        fn any_interleaving_applies_each_effect_once(
            deliveries in proptest::collection::vec(0u8..6, 4..24),
            batch in 1usize..5,
        ) {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            runtime.block_on(check(deliveries, batch));
        }
    }

    async fn check(deliveries: Vec<u8>, batch: usize) {
        let (client, idempotency) = setup().await;
        let effects_table = table(&client, "id").await;
        let idempotency = Arc::new(idempotency);
        let applied: Arc<Mutex<HashMap<u8, usize>>> = Arc::default();
        let run_id = common::unique("p");
        for chunk in deliveries.chunks(batch) {
            let tasks: Vec<_> = chunk
                .iter()
                .map(|&n| {
                    let idempotency = idempotency.clone();
                    let applied = applied.clone();
                    let effects_table = effects_table.clone();
                    let id = format!("{run_id}-{n}");
                    tokio::spawn(async move {
                        let e = event(&id, u64::from(n));
                        // Like a queue, redeliver until the delivery is not refused as in progress.
                        loop {
                            let claimed = idempotency
                                .run(&e, deadline(), || async {
                                    *applied.lock().unwrap().entry(n).or_default() += 1;
                                    Ok::<_, String>(n)
                                })
                                .await;
                            match claimed {
                                Ok(_) => break,
                                Err(IdempotencyError::AlreadyInProgress { .. }) => continue,
                                Err(other) => panic!("{other}"),
                            }
                        }
                        let t = event(&format!("{id}-t"), u64::from(n));
                        idempotency
                            .run_transactional(&t, |_| {
                                Ok::<_, String>(Decision {
                                    deltas: Vec::new(),
                                    writes: vec![TransactWriteItem::builder()
                                        .update(
                                            Update::builder()
                                                .table_name(&effects_table)
                                                .key("id", AttributeValue::S(id.clone()))
                                                .update_expression("ADD #n :one")
                                                .expression_attribute_names("#n", "n")
                                                .expression_attribute_values(
                                                    ":one",
                                                    AttributeValue::N("1".into()),
                                                )
                                                .build()
                                                .unwrap(),
                                        )
                                        .build()],
                                    result: n,
                                })
                            })
                            .await
                            .unwrap();
                    })
                })
                .collect();
            for task in tasks {
                task.await.unwrap();
            }
        }
        let distinct: std::collections::BTreeSet<u8> = deliveries.iter().copied().collect();
        let applied = applied.lock().unwrap().clone();
        for n in &distinct {
            assert_eq!(
                applied.get(n),
                Some(&1),
                "claimed effect of event {n}: {applied:?}"
            );
            let item = client
                .get_item()
                .table_name(&effects_table)
                .key("id", AttributeValue::S(format!("{run_id}-{n}")))
                .send()
                .await
                .unwrap()
                .item
                .unwrap();
            assert_eq!(
                item["n"].as_n().unwrap(),
                "1",
                "transactional effect of event {n}"
            );
        }
        assert_eq!(applied.len(), distinct.len());
    }
}

/// Records spread over three tables (`IDEMPOTENCY_TABLE` listing them, as the bus block does):
/// each record lands in its key's table, and a redelivery — one by one, in a batch read ahead
/// across the tables, or in a batch told by its refused transaction — finds it there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_spread_over_three_tables_are_found_by_every_mode() {
    let client = aws_sdk_dynamodb::Client::new(&common::aws().await);
    let mut tables = Vec::new();
    for _ in 0..3 {
        tables.push(table(&client, "pk").await);
    }
    let counters = table(&client, "metric").await;
    let list = tables.join(",");
    let spread = RecordTables::parse(&list);
    let idempotency = |look_ahead: bool| {
        let mut config = IdempotencyConfig::new(list.clone(), "test");
        config.cache_capacity = 0;
        config.look_ahead = look_ahead;
        Idempotency::new(client.clone(), config)
    };
    let count = |event: &Envelope, _: Option<herald::idempotency::Conflict>| {
        Ok::<_, String>(Decision {
            writes: Vec::new(),
            deltas: vec![
                Delta::new(&counters, "metric", AttributeValue::S("events".into())).add("n", 1),
            ],
            result: event.id().to_string(),
        })
    };

    let events: Vec<Envelope> = (0..30).map(|i| event(&format!("s{i}"), i)).collect();
    let refs: Vec<&Envelope> = events.iter().collect();
    let first = idempotency(true)
        .run_transactional_batch(&refs, None, count)
        .await;
    assert!(
        first
            .iter()
            .all(|r| matches!(r, Some(Ok(Executed::Ran(_))))),
        "{first:?}"
    );

    // Each table holds the records of its keys, and only those.
    let mut held = 0;
    for name in &tables {
        let items = client
            .scan()
            .table_name(name)
            .send()
            .await
            .unwrap()
            .items
            .unwrap_or_default();
        assert!(!items.is_empty(), "every table takes a share: {name}");
        for item in &items {
            let key = item["pk"].as_s().unwrap();
            assert_eq!(spread.for_key(key), name, "{key}");
        }
        held += items.len();
    }
    assert_eq!(held, 30);

    // Redelivered: with the read ahead, without it, and one at a time — never counted again.
    for look_ahead in [true, false] {
        let again = idempotency(look_ahead)
            .run_transactional_batch(&refs, None, count)
            .await;
        assert!(
            again
                .iter()
                .all(|r| matches!(r, Some(Ok(Executed::Replayed(_))))),
            "look ahead {look_ahead}: {again:?}"
        );
    }
    for e in &events[..5] {
        let single = idempotency(false)
            .run_transactional(e, |c| count(e, c))
            .await
            .unwrap();
        assert_eq!(single, Executed::Replayed(e.id().to_string()));
    }
    let total = client
        .get_item()
        .table_name(&counters)
        .key("metric", AttributeValue::S("events".into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    assert_eq!(
        total["n"],
        AttributeValue::N("30".into()),
        "each event counted once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_whose_claim_was_taken_over_can_neither_overwrite_nor_release_it() {
    let (client, idempotency) = setup_with(|c| {
        c.in_progress_timeout = Some(Duration::from_millis(300));
        c.min_in_progress = Duration::from_millis(100);
        c.in_progress_wait = Duration::ZERO;
    })
    .await;
    let idempotency = Arc::new(idempotency);
    let e = event("slow-1", 1);
    // A is slow: its claim expires while it runs, B takes over and finishes.
    let slow = {
        let idempotency = idempotency.clone();
        let e = e.clone();
        tokio::spawn(async move {
            idempotency
                .run(&e, deadline(), || async {
                    tokio::time::sleep(Duration::from_millis(900)).await;
                    Ok::<_, String>("A".to_string())
                })
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(450)).await;
    let b = idempotency
        .run(&e, deadline(), || async {
            Ok::<_, String>("B".to_string())
        })
        .await
        .unwrap();
    assert_eq!(b, Executed::Ran("B".to_string()));
    let a = slow.await.unwrap();
    assert!(
        matches!(a, Err(IdempotencyError::Persistence(ref m)) if m.message().contains("took it over")),
        "{a:?}"
    );
    // B's result stands.
    let again = idempotency
        .run(&e, deadline(), || async {
            Ok::<_, String>("C".to_string())
        })
        .await
        .unwrap();
    assert_eq!(again, Executed::Replayed("B".to_string()));

    // And a slow delivery that fails does not delete the claim of the one that took over.
    let f = event("slow-2", 1);
    let failing = {
        let idempotency = idempotency.clone();
        let f = f.clone();
        tokio::spawn(async move {
            idempotency
                .run(&f, deadline(), || async {
                    tokio::time::sleep(Duration::from_millis(900)).await;
                    Err::<String, _>("gateway down".to_string())
                })
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(450)).await;
    // The one taking over holds its claim for longer than the failing one takes.
    let patient = {
        let mut config = idempotency.config().clone();
        config.in_progress_timeout = Some(Duration::from_secs(5));
        Arc::new(Idempotency::new(client.clone(), config))
    };
    let holder = {
        let idempotency = patient.clone();
        let f = f.clone();
        tokio::spawn(async move {
            idempotency
                .run(&f, deadline(), || async {
                    tokio::time::sleep(Duration::from_millis(900)).await;
                    Ok::<_, String>("D".to_string())
                })
                .await
        })
    };
    assert!(matches!(
        failing.await.unwrap(),
        Err(IdempotencyError::Handler(_))
    ));
    // The failed delivery's release happened while D still held its claim: D's claim survived,
    // so a third delivery now is refused rather than running the effect a second time.
    let third = idempotency
        .run(&f, deadline(), || async {
            Ok::<_, String>("E".to_string())
        })
        .await;
    assert!(
        matches!(third, Err(IdempotencyError::AlreadyInProgress { .. })),
        "{third:?}"
    );
    assert_eq!(
        holder.await.unwrap().unwrap(),
        Executed::Ran("D".to_string())
    );
}

/// Reserves stock under the event's `sku` — a key DynamoDB refuses when it is over 2 048 bytes.
struct Reserve {
    stock: String,
}

impl herald::subscriber::TransactionalHandler for Reserve {
    fn name(&self) -> &'static str {
        "reserve"
    }
    fn wants(&self, _: &Envelope) -> bool {
        true
    }
    fn decide(
        &self,
        event: &Envelope,
        _: Option<herald::idempotency::Conflict>,
    ) -> Result<Decision<herald::subscriber::Outcome>, herald::subscriber::HandlerError> {
        let sku = event.data().unwrap()["sku"].as_str().unwrap().to_string();
        let write = TransactWriteItem::builder()
            .update(
                Update::builder()
                    .table_name(&self.stock)
                    .key("metric", AttributeValue::S(sku))
                    .update_expression("ADD #c :n")
                    .expression_attribute_names("#c", "reserved")
                    .expression_attribute_values(":n", AttributeValue::N("1".into()))
                    .build()
                    .unwrap(),
            )
            .build();
        Ok(Decision {
            deltas: Vec::new(),
            writes: vec![write],
            result: herald::subscriber::Outcome::new("reserved"),
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_dynamodb_refuses_as_invalid_is_dead_lettered_at_once_not_redelivered() {
    use herald::producer::Producer;
    use herald::subscriber::{SqsSubscriber, SubscriberConfig, Transactional};
    use herald::testing::{sqs_event, InMemoryStream};

    let (client, idempotency) = setup().await;
    let stock = table(&client, "metric").await;
    let letters = SharedLetters::default();
    let subscriber = SqsSubscriber::new(
        Transactional::new(Reserve { stock }, idempotency),
        letters.clone(),
        Producer::new(InMemoryStream::new()),
        SubscriberConfig {
            max_receive_count: Some(5),
            ..SubscriberConfig::default()
        },
    );
    let event = |id: &str, sku: String| {
        Envelope::builder("order_placed", "herald/test")
            .id(id)
            .subject(id)
            .data(serde_json::json!({ "sku": sku }))
            .build()
            .unwrap()
    };
    // A key over DynamoDB's 2 048-byte limit: a ValidationException on every delivery.
    let events = [
        event("fine", "sku-1".into()),
        event("bad", "s".repeat(3000)),
    ];
    let (response, summary) = subscriber.handle(&sqs_event(&events), deadline()).await;
    // Before: reported for redelivery, five receives (minutes) before the queue moved it.
    assert!(
        response.batch_item_failures.is_empty(),
        "{:?}",
        response.batch_item_failures
    );
    assert_eq!((summary.applied, summary.dead_lettered), (1, 1));
    let letters = letters.0.letters();
    assert_eq!(letters.len(), 1);
    assert!(
        letters[0].reason.contains("ValidationException"),
        "{}",
        letters[0].reason
    );
    assert!(letters[0].reason.contains("retrying cannot help"));
}

/// Dead letters the test keeps a handle on.
#[derive(Clone, Default)]
struct SharedLetters(Arc<herald::testing::InMemoryDeadLetters>);

impl herald::aws::dead_letter::DeadLetters for SharedLetters {
    async fn send(
        &self,
        letters: &[herald::aws::dead_letter::DeadLetter],
    ) -> Vec<Result<(), herald::aws::dead_letter::DeadLetterError>> {
        self.0.send(letters).await
    }
}
