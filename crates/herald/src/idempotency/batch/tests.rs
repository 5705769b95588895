use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};

use super::super::fixtures::{config, event, in_memory};
use super::super::{
    Conflict, Decision, Delta, Executed, Idempotency, IdempotencyError, InMemoryStore,
};
use crate::aws::Backoff;
use crate::envelope::Envelope;

fn counter(metric: &str) -> Delta {
    Delta::new("analytics", "metric", AttributeValue::S(metric.into())).add("count", 1)
}

/// A plain write on `item` (not summable).
fn mark(item: &str) -> TransactWriteItem {
    let update = Update::builder()
        .table_name("orders")
        .key("pk", AttributeValue::S(item.into()))
        .update_expression("SET seen = :yes")
        .expression_attribute_values(":yes", AttributeValue::Bool(true))
        .build()
        .unwrap();
    TransactWriteItem::builder().update(update).build()
}

fn count(event: &Envelope, _: Option<Conflict>) -> Result<Decision<String>, String> {
    Ok(Decision {
        writes: Vec::new(),
        deltas: vec![counter("type#user_signed_up")],
        result: format!("counted {}", event.id()),
    })
}

/// Another process on the same records: nothing in its cache.
fn uncached(store: &InMemoryStore) -> Idempotency {
    let mut config = config();
    config.cache_capacity = 0;
    Idempotency::with_store(store.clone(), config)
}

fn events(n: usize) -> Vec<Envelope> {
    (0..n)
        .map(|i| event(&format!("evt-{i}"), i as u32))
        .collect()
}

fn ran(results: &super::BatchResults<String, String>) -> usize {
    results
        .iter()
        .filter(|r| matches!(r, Some(Ok(Executed::Ran(_)))))
        .count()
}

fn replayed(results: &super::BatchResults<String, String>) -> usize {
    results
        .iter()
        .filter(|r| matches!(r, Some(Ok(Executed::Replayed(_)))))
        .count()
}

#[tokio::test]
async fn a_batch_commits_in_one_transaction_with_its_counters_summed() {
    let (store, idempotency) = in_memory(config());
    let events = events(5);
    let refs: Vec<&Envelope> = events.iter().collect();
    let results = idempotency
        .run_transactional_batch(&refs, None, count)
        .await;
    assert_eq!(ran(&results), 5);
    assert_eq!(store.commit_attempts(), 1, "one transaction for the batch");
    let writes = store.committed_writes();
    assert_eq!(writes.len(), 1, "five increments of one counter, one write");
    let values = writes[0]
        .update()
        .unwrap()
        .expression_attribute_values()
        .unwrap();
    assert_eq!(values[":a0"], AttributeValue::N("5".into()));
    for e in &events {
        assert!(
            store.record(&idempotency.key_of(e)).is_some(),
            "each event has its record"
        );
    }
    // Redelivered to another process (no cache): every one a duplicate, nothing written again,
    // and no transaction sent: the records read ahead told all five.
    let again = uncached(&store)
        .run_transactional_batch(&refs, None, count)
        .await;
    assert_eq!(replayed(&again), 5);
    assert_eq!(store.committed_writes().len(), 1);
    assert_eq!(store.commit_attempts(), 1, "no transaction for duplicates");
    assert_eq!(store.reads_ahead(), 2, "one read per batch");
}

#[tokio::test]
async fn without_the_read_ahead_one_refused_transaction_tells_the_duplicates() {
    let mut config = config();
    config.look_ahead = false;
    config.cache_capacity = 0;
    let (store, idempotency) = in_memory(config);
    let events = events(5);
    let refs: Vec<&Envelope> = events.iter().collect();
    idempotency
        .run_transactional_batch(&refs, None, count)
        .await;
    let again = idempotency
        .run_transactional_batch(&refs, None, count)
        .await;
    assert_eq!(replayed(&again), 5);
    assert_eq!(store.committed_writes().len(), 1);
    assert_eq!(
        store.commit_attempts(),
        2,
        "the refusal returned all five records"
    );
    assert_eq!(store.reads_ahead(), 0);
}

#[tokio::test]
async fn a_duplicate_in_the_batch_is_answered_from_its_record_and_the_rest_commit() {
    let (store, idempotency) = in_memory(config());
    let events = events(4);
    // evt-2 was applied by an earlier delivery (another process: not in this one's cache).
    uncached(&store)
        .run_transactional_batch(&[&events[2]], None, count)
        .await;
    let refs: Vec<&Envelope> = events.iter().collect();
    let results = idempotency
        .run_transactional_batch(&refs, None, count)
        .await;
    assert_eq!(ran(&results), 3);
    assert!(
        matches!(&results[2], Some(Ok(Executed::Replayed(r))) if r == "counted evt-2"),
        "{:?}",
        results[2]
    );
    assert_eq!(
        store.batch_commits(),
        2,
        "the earlier delivery's, then the other three"
    );
    assert_eq!(
        store.commit_attempts(),
        2,
        "the duplicate never joined a transaction"
    );
    let total: i64 = store
        .committed_writes()
        .iter()
        .map(|w| {
            let values = w.update().unwrap().expression_attribute_values().unwrap();
            values[":a0"].as_n().unwrap().parse::<i64>().unwrap()
        })
        .sum();
    assert_eq!(total, 4, "each event counted once");
}

#[tokio::test]
async fn a_failed_condition_leaves_the_batch_to_the_single_event_path() {
    let (store, idempotency) = in_memory(config());
    store.set_condition_oracle(|_| false);
    let events = events(3);
    let refs: Vec<&Envelope> = events.iter().collect();
    let results = idempotency
        .run_transactional_batch(&refs, None, count)
        .await;
    assert!(results.iter().all(Option::is_none), "{results:?}");
    assert!(store.committed_writes().is_empty());
    assert_eq!(store.record(&idempotency.key_of(&events[0])), None);
}

#[tokio::test]
async fn a_decision_that_fails_ends_the_batch_there() {
    let (store, idempotency) = in_memory(config());
    let events = events(4);
    let refs: Vec<&Envelope> = events.iter().collect();
    let results = idempotency
        .run_transactional_batch(&refs, None, |event, conflict| {
            if event.id() == "evt-2" {
                return Err("cannot decide".to_string());
            }
            count(event, conflict)
        })
        .await;
    assert_eq!(ran(&results), 2, "evt-0 and evt-1 committed");
    assert!(
        results[2].is_none() && results[3].is_none(),
        "evt-2 and later go alone, in order"
    );
    assert_eq!(store.record(&idempotency.key_of(&events[3])), None);
}

#[tokio::test]
async fn writes_on_one_item_go_in_separate_transactions_in_order() {
    let (store, idempotency) = in_memory(config());
    let events = events(3);
    let refs: Vec<&Envelope> = events.iter().collect();
    let results = idempotency
        .run_transactional_batch(&refs, None, |event, _| {
            // evt-0 and evt-2 mark the same order: DynamoDB refuses two operations on one item.
            let item = if event.id() == "evt-1" {
                "order-2"
            } else {
                "order-1"
            };
            Ok::<_, String>(Decision {
                writes: vec![mark(item)],
                deltas: Vec::new(),
                result: event.id().to_string(),
            })
        })
        .await;
    assert_eq!(ran(&results), 3);
    assert_eq!(
        store.batch_commits(),
        2,
        "evt-0 and evt-1 together, then evt-2"
    );
    let items: Vec<String> = store
        .committed_writes()
        .iter()
        .map(|w| w.update().unwrap().key()["pk"].as_s().unwrap().clone())
        .collect();
    assert_eq!(items, ["order-1", "order-2", "order-1"]);
}

#[tokio::test]
async fn a_batch_larger_than_a_transaction_takes_several() {
    let (store, idempotency) = in_memory(config());
    // 60 events of two items each (record + one write): 50 fit in a transaction of 100.
    let events = events(60);
    let refs: Vec<&Envelope> = events.iter().collect();
    let results = idempotency
        .run_transactional_batch(&refs, None, |event, _| {
            Ok::<_, String>(Decision {
                writes: vec![mark(event.id())],
                deltas: Vec::new(),
                result: String::new(),
            })
        })
        .await;
    assert_eq!(ran(&results), 60);
    assert_eq!(store.batch_commits(), 2);
}

#[tokio::test]
async fn a_collision_is_retried_and_then_commits() {
    let mut config = config();
    config.conflict_backoff = Backoff {
        max_attempts: 10,
        base: Duration::from_millis(1),
        cap: Duration::from_millis(5),
    };
    let (store, idempotency) = in_memory(config);
    store.refuse_commits(2, 1);
    let events = events(3);
    let refs: Vec<&Envelope> = events.iter().collect();
    let results = idempotency
        .run_transactional_batch(&refs, None, count)
        .await;
    assert_eq!(ran(&results), 3);
    assert_eq!(store.commit_attempts(), 4);
    assert_eq!(store.committed_writes().len(), 1);
}

#[tokio::test]
async fn the_same_event_twice_in_a_batch_is_answered_by_the_first() {
    let (store, idempotency) = in_memory(config());
    let first = event("evt-1", 1);
    let again = event("evt-1", 1);
    let other = event("evt-2", 2);
    let forged = event("evt-1", 7);
    let results = idempotency
        .run_transactional_batch(&[&first, &again, &other, &forged], None, count)
        .await;
    assert!(matches!(results[0], Some(Ok(Executed::Ran(_)))));
    assert!(
        matches!(&results[1], Some(Ok(Executed::Replayed(r))) if r == "counted evt-1"),
        "{:?}",
        results[1]
    );
    assert!(
        matches!(results[2], Some(Ok(Executed::Ran(_)))),
        "the events after a repeat still join the batch"
    );
    assert!(
        matches!(
            results[3],
            Some(Err(IdempotencyError::PayloadMismatch { .. }))
        ),
        "same id, other payload: {:?}",
        results[3]
    );
    assert_eq!(store.commit_attempts(), 1);
    let values = store.committed_writes()[0]
        .update()
        .unwrap()
        .expression_attribute_values()
        .unwrap()
        .clone();
    assert_eq!(
        values[":a0"],
        AttributeValue::N("2".into()),
        "evt-1 counted once"
    );
}

#[tokio::test]
async fn a_repeat_of_an_event_left_to_the_single_path_goes_there_too() {
    let (store, idempotency) = in_memory(config());
    store.set_condition_oracle(|_| false);
    let first = event("evt-1", 1);
    let again = event("evt-1", 1);
    let results = idempotency
        .run_transactional_batch(&[&first, &again], None, count)
        .await;
    assert!(results.iter().all(Option::is_none), "{results:?}");
}

#[tokio::test]
async fn a_put_and_an_update_of_one_item_go_in_separate_transactions() {
    use aws_sdk_dynamodb::types::Put;
    let (store, idempotency) = in_memory(config());
    let events = events(2);
    let refs: Vec<&Envelope> = events.iter().collect();
    let results = idempotency
        .run_transactional_batch(&refs, None, |event, _| {
            // Placed, then cancelled: the put creates the item the update changes.
            let write = if event.id() == "evt-0" {
                let put = Put::builder()
                    .table_name("orders")
                    .item("pk", AttributeValue::S("order-1".into()))
                    .item("status", AttributeValue::S("placed".into()))
                    .build()
                    .unwrap();
                TransactWriteItem::builder().put(put).build()
            } else {
                mark("order-1")
            };
            Ok::<_, String>(Decision {
                writes: vec![write],
                deltas: Vec::new(),
                result: String::new(),
            })
        })
        .await;
    assert_eq!(ran(&results), 2);
    assert_eq!(store.batch_commits(), 2);
}

#[tokio::test]
async fn summed_deltas_take_one_slot_so_99_counted_events_fit_one_transaction() {
    let (store, idempotency) = in_memory(config());
    // 99 records + one summed counter = 100 items: one transaction; the 100th event needs a
    // second.
    let events = events(100);
    let refs: Vec<&Envelope> = events.iter().collect();
    let results = idempotency
        .run_transactional_batch(&refs, None, count)
        .await;
    assert_eq!(ran(&results), 100);
    assert_eq!(store.batch_commits(), 2);
    assert_eq!(
        store.committed_writes().len(),
        2,
        "one counter write per transaction"
    );
}

#[tokio::test]
async fn a_failed_delta_leaves_only_its_events_and_their_aggregates_to_the_single_path() {
    let (store, idempotency) = in_memory(config());
    // The pear is sold out: its summed decrement fails, the apples' does not.
    store.set_condition_oracle(|write| {
        write
            .update()
            .is_none_or(|u| u.key()["sku"].as_s().unwrap() != "pear")
    });
    let order = |id: &str, customer: &str| {
        Envelope::builder("order_placed", "herald/test")
            .id(id)
            .subject(customer)
            .build()
            .unwrap()
    };
    // o2 wants a pear; o3 is the same customer's next order: it must wait for o2.
    let events = [
        order("o1", "ann"),
        order("o2", "bob"),
        order("o3", "bob"),
        order("o4", "cat"),
    ];
    let refs: Vec<&Envelope> = events.iter().collect();
    let results = idempotency
        .run_transactional_batch(&refs, None, |event, _| {
            let sku = if event.id() == "o2" { "pear" } else { "apple" };
            Ok::<_, String>(Decision {
                writes: Vec::new(),
                deltas: vec![Delta::new("stock", "sku", AttributeValue::S(sku.into()))
                    .add("available", -1)
                    .never_negative("available")],
                result: event.id().to_string(),
            })
        })
        .await;
    assert!(matches!(&results[0], Some(Ok(Executed::Ran(r))) if r == "o1"));
    assert!(results[1].is_none(), "o2 goes alone, to be decided again");
    assert!(
        results[2].is_none(),
        "o3 waits for o2, its customer's earlier order"
    );
    assert!(matches!(&results[3], Some(Ok(Executed::Ran(r))) if r == "o4"));
    let writes = store.committed_writes();
    assert_eq!(writes.len(), 1, "the apples of o1 and o4, summed");
    let values = writes[0]
        .update()
        .unwrap()
        .expression_attribute_values()
        .unwrap();
    assert_eq!(values[":a0"], AttributeValue::N("-2".into()));
}

#[tokio::test]
async fn an_item_found_short_sends_the_next_batches_events_alone_at_once() {
    let (store, idempotency) = in_memory(config());
    store.set_condition_oracle(|write| {
        write
            .update()
            .is_none_or(|u| u.key()["sku"].as_s().unwrap() != "pear")
    });
    let order = |id: &str, sku: &'static str| {
        (
            Envelope::builder("order_placed", "herald/test")
                .id(id)
                .subject(id)
                .build()
                .unwrap(),
            sku,
        )
    };
    let decide = |skus: Vec<(&'static str, &'static str)>| {
        move |event: &Envelope, _: Option<Conflict>| {
            let sku = skus.iter().find(|(id, _)| *id == event.id()).unwrap().1;
            Ok::<_, String>(Decision {
                writes: Vec::new(),
                deltas: vec![Delta::new("stock", "sku", AttributeValue::S(sku.into()))
                    .add("available", -1)
                    .never_negative("available")],
                result: event.id().to_string(),
            })
        }
    };
    let first = [order("o1", "pear"), order("o2", "apple")];
    let refs: Vec<&Envelope> = first.iter().map(|(e, _)| e).collect();
    idempotency
        .run_transactional_batch(&refs, None, decide(vec![("o1", "pear"), ("o2", "apple")]))
        .await;
    assert_eq!(store.commit_attempts(), 2, "the pear failed the batch once");
    let second = [order("o3", "pear"), order("o4", "apple")];
    let refs: Vec<&Envelope> = second.iter().map(|(e, _)| e).collect();
    let results = idempotency
        .run_transactional_batch(&refs, None, decide(vec![("o3", "pear"), ("o4", "apple")]))
        .await;
    assert!(results[0].is_none(), "the pear's order goes alone");
    assert!(matches!(&results[1], Some(Ok(Executed::Ran(_)))));
    assert_eq!(store.commit_attempts(), 3, "no failed batch this time");
}

/// A stock of apples at `level` as DynamoDB would judge the batch's writes on it: the summed
/// take (`>= :min0`), the bounds that prove refusals (`< :b0`), and the item returned when a
/// condition fails.
fn apples_at(store: &InMemoryStore, level: Arc<AtomicI64>) {
    let n = |v: Option<&AttributeValue>| v.map(|v| v.as_n().unwrap().parse::<i64>().unwrap());
    let judged = level.clone();
    store.set_condition_oracle(move |write| {
        let have = judged.load(Ordering::SeqCst);
        let values = match (write.update(), write.condition_check()) {
            (Some(u), _) if u.table_name() == "stock" => u.expression_attribute_values(),
            (_, Some(c)) => c.expression_attribute_values(),
            _ => return true,
        };
        let values = values.unwrap();
        have >= n(values.get(":min0")).unwrap_or(i64::MIN)
            && have < n(values.get(":b0")).unwrap_or(i64::MAX)
    });
    store.set_failed_item(move |_| {
        let have = level.load(Ordering::SeqCst);
        Some(HashMap::from([(
            "available".to_string(),
            AttributeValue::N(have.to_string()),
        )]))
    });
}

/// Take the apples the event asks for (`data.n`); refused, take none.
fn take_apples(event: &Envelope, conflict: Option<Conflict>) -> Result<Decision<String>, String> {
    let n = i64::from(event.data().unwrap()["n"].as_u64().unwrap() as u32);
    Ok(match conflict {
        None => Decision {
            writes: Vec::new(),
            deltas: vec![
                Delta::new("stock", "sku", AttributeValue::S("apple".into()))
                    .add("available", -n)
                    .never_negative("available"),
            ],
            result: format!("took {n}"),
        },
        Some(_) => Decision {
            writes: Vec::new(),
            deltas: Vec::new(),
            result: "refused".to_string(),
        },
    })
}

fn answers(results: &super::BatchResults<String, String>) -> Vec<String> {
    results
        .iter()
        .map(|r| match r {
            Some(Ok(e)) => e.clone().into_inner(),
            Some(Err(e)) => format!("error {e}"),
            None => "alone".to_string(),
        })
        .collect()
}

#[tokio::test]
async fn a_short_items_level_refuses_in_the_batch_and_the_transaction_proves_it() {
    let (store, idempotency) = in_memory(config());
    let level = Arc::new(AtomicI64::new(1));
    apples_at(&store, level.clone());
    let batch = |ids: &[(&str, u32)]| -> Vec<Envelope> {
        ids.iter().map(|(id, n)| event(id, *n)).collect()
    };
    let run = |events: Vec<Envelope>| {
        let idempotency = &idempotency;
        async move {
            let refs: Vec<&Envelope> = events.iter().collect();
            idempotency
                .run_transactional_batch(&refs, None, take_apples)
                .await
        }
    };

    // Two asked of one: the take fails, and DynamoDB says one is left; the batch decides again
    // against that level at once (refused, proven in the second transaction) instead of leaving
    // the event to go alone.
    let first = run(batch(&[("e0", 2)])).await;
    assert_eq!(answers(&first), ["refused"]);
    assert_eq!(store.commit_attempts(), 2);

    // Knowing the level, the next batch refuses what it cannot cover, in order, and commits at
    // once: one apple for e3, a bound proving e2 and e4 short.
    let attempts = store.commit_attempts();
    let second = run(batch(&[("e2", 2), ("e3", 1), ("e4", 5)])).await;
    assert_eq!(answers(&second), ["refused", "took 1", "refused"]);
    assert_eq!(store.commit_attempts(), attempts + 1, "no failed attempt");
    let writes = store.committed_writes();
    let update = writes.last().unwrap().update().unwrap();
    assert_eq!(
        update.condition_expression(),
        Some("#a0 >= :min0 AND #b0 < :b0")
    );
    let values = update.expression_attribute_values().unwrap();
    assert_eq!(values[":a0"], AttributeValue::N("-1".into()));
    assert_eq!(
        values[":b0"],
        AttributeValue::N("2".into()),
        "e2 was short only if fewer than 2 were there"
    );

    // Sold out (the level took e3's apple): nothing to take, a condition check proves it.
    level.store(0, Ordering::SeqCst);
    let third = run(batch(&[("e5", 1)])).await;
    assert_eq!(answers(&third), ["refused"]);
    let check = store.committed_writes().last().unwrap().clone();
    assert!(check.condition_check().is_some(), "{check:?}");

    // Restocked behind herald's back: the bound fails, DynamoDB returns the new level, and the
    // batch decides again against it: it takes.
    level.store(100, Ordering::SeqCst);
    let fourth = run(batch(&[("e6", 2)])).await;
    assert_eq!(answers(&fourth), ["took 2"]);
    let fifth = run(batch(&[("e7", 2)])).await;
    assert_eq!(answers(&fifth), ["took 2"]);
}

#[tokio::test]
async fn a_refusals_bound_counts_what_earlier_events_gave_back() {
    let (store, idempotency) = in_memory(config());
    apples_at(&store, Arc::new(AtomicI64::new(0)));
    // Sold out: the first batch learns the level (0).
    let first = event("e0", 1);
    idempotency
        .run_transactional_batch(&[&first], None, take_apples)
        .await;
    // A cancellation gives one back, then an order wants two: refused, rightly only if fewer
    // than one was there before the batch (0 + 1 < 2).
    let give_back = event("back-1", 0);
    let order = event("e1", 2);
    let results = idempotency
        .run_transactional_batch(&[&give_back, &order], None, |event, conflict| {
            if event.id().starts_with("back") {
                return Ok(Decision {
                    writes: Vec::new(),
                    deltas: vec![
                        Delta::new("stock", "sku", AttributeValue::S("apple".into()))
                            .add("available", 1),
                    ],
                    result: "gave back 1".to_string(),
                });
            }
            take_apples(event, conflict)
        })
        .await;
    assert_eq!(answers(&results), ["gave back 1", "refused"]);
    let writes = store.committed_writes();
    let update = writes.last().unwrap().update().unwrap();
    assert_eq!(update.condition_expression(), Some("#b0 < :b0"));
    assert_eq!(
        update.expression_attribute_values().unwrap()[":b0"],
        AttributeValue::N("1".into())
    );
}

/// A reservation-like decision: one new item per event that keeps the event's record, and a
/// counter. Told its put failed (the item exists without its record), it writes nothing.
fn reserve(event: &Envelope, conflict: Option<Conflict>) -> Result<Decision<String>, String> {
    if conflict == Some(Conflict { index: 0 }) {
        return Ok(Decision {
            writes: Vec::new(),
            deltas: Vec::new(),
            result: format!("skipped {}", event.id()),
        });
    }
    let put = aws_sdk_dynamodb::types::Put::builder()
        .table_name("stock")
        .item("sku", AttributeValue::S(format!("order#{}", event.id())))
        .condition_expression("attribute_not_exists(sku)")
        .build()
        .unwrap();
    Ok(Decision {
        writes: vec![TransactWriteItem::builder()
            .put(super::super::record_in(put, "sku"))
            .build()],
        deltas: vec![counter("type#order_placed")],
        result: format!("reserved {}", event.id()),
    })
}

fn puts(store: &InMemoryStore) -> usize {
    store
        .committed_writes()
        .iter()
        .filter(|w| w.put().is_some())
        .count()
}

#[tokio::test]
async fn a_record_kept_in_the_effects_item_writes_nothing_to_the_idempotency_table() {
    let (store, idempotency) = in_memory(config());
    let events = events(4);
    let refs: Vec<&Envelope> = events.iter().collect();
    let results = idempotency
        .run_transactional_batch(&refs, None, reserve)
        .await;
    assert_eq!(ran(&results), 4);
    assert_eq!(store.commit_attempts(), 1);
    for e in &events {
        assert!(
            store.record(&idempotency.key_of(e)).is_none(),
            "the reservation holds the record"
        );
    }
    let item = store.committed_writes()[0].put().unwrap().item().clone();
    assert_eq!(
        item["heraldRecord"],
        AttributeValue::S(idempotency.key_of(&events[0]))
    );
    // Redelivered to another process: the read ahead finds the records in the items, nothing
    // is committed again, and each answer is the stored one.
    let again = uncached(&store)
        .run_transactional_batch(&refs, None, reserve)
        .await;
    assert_eq!(replayed(&again), 4);
    assert_eq!(store.commit_attempts(), 1, "no transaction for duplicates");
    match &again[2] {
        Some(Ok(Executed::Replayed(result))) => assert_eq!(result, "reserved evt-2"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn without_the_read_ahead_a_refused_put_tells_its_duplicate_and_the_rest_commits() {
    let mut config = config();
    config.look_ahead = false;
    config.cache_capacity = 0;
    let (store, idempotency) = in_memory(config);
    let events = events(3);
    idempotency
        .run_transactional_batch(&[&events[1]], None, reserve)
        .await;
    let refs: Vec<&Envelope> = events.iter().collect();
    let results = idempotency
        .run_transactional_batch(&refs, None, reserve)
        .await;
    assert_eq!(ran(&results), 2);
    assert_eq!(replayed(&results), 1);
    assert_eq!(puts(&store), 3, "each reservation once");
    assert_eq!(store.batch_commits(), 2);
    // Event by event (the single path) the same: a duplicate, nothing written.
    let single = idempotency
        .run_transactional(&events[0], |c| reserve(&events[0], c))
        .await
        .unwrap();
    assert_eq!(single, Executed::Replayed("reserved evt-0".to_string()));
    assert_eq!(puts(&store), 3);
}

#[tokio::test]
async fn an_item_there_without_the_record_is_a_conflict_the_handler_decides() {
    let (store, idempotency) = in_memory(config());
    let events = events(2);
    // Another event made evt-1's item first (say, a cancellation's tombstone).
    let tombstone = aws_sdk_dynamodb::types::Put::builder()
        .table_name("stock")
        .item("sku", AttributeValue::S("order#evt-1".into()))
        .build()
        .unwrap();
    let other = event("evt-other", 9);
    let tombstone = TransactWriteItem::builder().put(tombstone).build();
    idempotency
        .run_transactional(&other, |_| {
            Ok::<_, String>(Decision {
                writes: vec![tombstone.clone()],
                deltas: Vec::new(),
                result: "tombstone".to_string(),
            })
        })
        .await
        .unwrap();
    let refs: Vec<&Envelope> = events.iter().collect();
    let results = idempotency
        .run_transactional_batch(&refs, None, reserve)
        .await;
    // evt-0 commits in the batch; evt-1's put fails on the item, which holds no record of it:
    // it goes to the single path, where the handler decides again knowing its put failed.
    assert_eq!(ran(&results), 1);
    assert!(results[1].is_none(), "left to the single path");
    let single = idempotency
        .run_transactional(&events[1], |c| reserve(&events[1], c))
        .await
        .unwrap();
    assert_eq!(single, Executed::Ran("skipped evt-1".to_string()));
    assert!(
        store.record(&idempotency.key_of(&events[1])).is_some(),
        "no write kept it: the record is in the idempotency table"
    );
}
