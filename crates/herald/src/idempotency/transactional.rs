//! **Transactional mode** ([`Idempotency::run_transactional`]), for effects that are DynamoDB
//! writes: the COMPLETED record and the effect's writes commit together, one request per first
//! delivery, and no crash can fall between "effect" and "mark done".

use std::time::{Duration, SystemTime};

use serde::de::DeserializeOwned;
use serde::Serialize;

use aws_sdk_dynamodb::types::TransactWriteItem;

use super::error::PersistenceError;
use super::home::{self, Home};
use super::record::{now_ms, IdempotencyRecord, RecordStatus};
use super::store::{BatchCommitOutcome, CommitOutcome};
use super::{Conflict, Decision, Executed, Idempotency, IdempotencyError};
use crate::aws::limits::DYNAMODB_MAX_TRANSACT_ITEMS;
use crate::envelope::Envelope;

/// Decisions asked for one delivery: the first, and one more per failed effect condition.
const MAX_DECISIONS: u32 = 4;

/// Time kept free before the invocation's deadline: one more commit, publishing follow-ups and
/// answering the batch must still fit after the last backoff.
const DEADLINE_RESERVE: Duration = Duration::from_secs(1);

impl Idempotency {
    /// **Transactional mode.** `decide` returns the effect's writes and the result; they are
    /// committed together with the COMPLETED record in one `TransactWriteItems`. If a write's
    /// condition fails, `decide` is asked again with the [`Conflict`] (up to 3 times). A commit
    /// that collided with another transaction or was throttled is retried with
    /// [`IdempotencyConfig::conflict_backoff`](super::IdempotencyConfig::conflict_backoff);
    /// [`Idempotency::run_transactional_until`] also stops those retries in time for a deadline.
    pub async fn run_transactional<T, E, F>(
        &self,
        event: &Envelope,
        decide: F,
    ) -> Result<Executed<T>, IdempotencyError<E>>
    where
        T: Serialize + DeserializeOwned + Clone,
        F: FnMut(Option<Conflict>) -> Result<Decision<T>, E>,
    {
        self.run_transactional_until(event, None, decide).await
    }

    /// [`Idempotency::run_transactional`] within an invocation's `deadline`. Transactions of this
    /// process that write the same item commit one at a time; collisions with other processes
    /// (`TransactionConflict`) and throttling are retried with exponential backoff and full
    /// jitter for as long as the deadline allows (keeping a second for what follows) and
    /// [`Backoff::max_attempts`](crate::aws::Backoff::max_attempts) permits, without
    /// costing the handler any of its decisions. A hot item then ends in the effect, not in a
    /// redelivery and eventually a dead letter.
    pub async fn run_transactional_until<T, E, F>(
        &self,
        event: &Envelope,
        deadline: Option<SystemTime>,
        mut decide: F,
    ) -> Result<Executed<T>, IdempotencyError<E>>
    where
        T: Serialize + DeserializeOwned + Clone,
        F: FnMut(Option<Conflict>) -> Result<Decision<T>, E>,
    {
        let key = self.key_of(event);
        let hash = self.hash_of(event);
        if let Some(result) = self.cached(&key, &hash)? {
            return Ok(Executed::Replayed(result));
        }
        let mut conflict = None;
        let mut decisions = 0;
        let mut contended = 0;
        loop {
            let decision = decide(conflict).map_err(IdempotencyError::Handler)?;
            let mut writes = decision.effects()?;
            let writes_count = writes.len();
            let result = decision.result;
            if writes.len() >= DYNAMODB_MAX_TRANSACT_ITEMS {
                return Err(PersistenceError::new(format!(
                    "{} writes in one decision; the limit is {} (100 per transaction, one for the record)",
                    writes.len(),
                    DYNAMODB_MAX_TRANSACT_ITEMS - 1
                ))
                .into());
            }
            let json = serde_json::to_string(&result).map_err(|e| {
                PersistenceError::new(format!("result does not serialize: {e}")).with_source(e)
            })?;
            let now = now_ms();
            let record = IdempotencyRecord {
                result: Some(json.clone()),
                ..self.record(&key, &hash, RecordStatus::Completed, now)
            };
            // Siblings in this process writing the same item wait here instead of colliding.
            let held = self.item_locks.lock(&writes).await;
            let committed = match home::of(&writes) {
                Some(home) => {
                    home::fill(&mut writes, &home, &record);
                    self.commit_at_home(&record, &home, writes, now).await
                }
                None => self.store.commit(&record, writes, now).await,
            };
            drop(held);
            let refused = match committed {
                Ok(CommitOutcome::Committed) => {
                    crate::aws::metrics::count("EffectWrites", writes_count);
                    for delta in &decision.deltas {
                        self.short_items.committed(delta);
                    }
                    self.remember(&key, &hash, &json);
                    return Ok(Executed::Ran(result));
                }
                Ok(CommitOutcome::RecordExists(old)) => {
                    let old = match old {
                        Some(old) => Some(old),
                        None => self.store.get(&key).await?,
                    };
                    return match old {
                        Some(old) => self
                            .existing::<T, E>(&key, &hash, &old)
                            .map(Executed::Replayed),
                        None => Err(PersistenceError::new(format!(
                            "the record {key} blocked the transaction but cannot be read"
                        ))
                        .into()),
                    };
                }
                Ok(CommitOutcome::EffectFailed { index }) => {
                    decisions += 1;
                    if decisions >= MAX_DECISIONS {
                        return Err(PersistenceError::new(format!(
                            "event {key}: the effect's conditions kept failing after re-deciding"
                        ))
                        .into());
                    }
                    conflict = Some(Conflict { index });
                    // For cost models: an effect that failed its condition and was decided again.
                    crate::aws::metrics::count("ConditionFailures", 1);
                    continue;
                }
                Ok(CommitOutcome::Collision(err)) => err,
                Err(err) if err.is_throttling() => err,
                Err(err) => return Err(err.into()),
            };
            // Contention or throttling: nothing was written; the same decision may go through
            // a moment later.
            contended += 1;
            if !self.back_off(contended, deadline).await {
                tracing::warn!(
                    key = %key,
                    attempts = contended,
                    "transaction still contended or throttled; leaving it to a redelivery"
                );
                return Err(refused.into());
            }
        }
    }

    /// Commit `writes`, one of which keeps `record` in its own item (`home`), without a record
    /// in the idempotency table; a failure of that write's condition is a duplicate when the
    /// item it found holds this record (returned with the refusal, or read).
    async fn commit_at_home(
        &self,
        record: &IdempotencyRecord,
        home: &Home,
        writes: Vec<TransactWriteItem>,
        now: i64,
    ) -> Result<CommitOutcome, PersistenceError> {
        // Which write failed (`None`: the store gave no reasons) and the item it found.
        let (failed, failed_item) = match self.store.commit_batch(&[], writes, now).await? {
            BatchCommitOutcome::Committed => return Ok(CommitOutcome::Committed),
            BatchCommitOutcome::Collision(err) => return Ok(CommitOutcome::Collision(err)),
            BatchCommitOutcome::EffectFailed {
                index: Some(index),
                item,
            } if index == home.write => (Some(index), item),
            BatchCommitOutcome::EffectFailed {
                index: Some(index), ..
            } => return Ok(CommitOutcome::EffectFailed { index }),
            BatchCommitOutcome::EffectFailed { index: None, .. }
            | BatchCommitOutcome::RecordsExist(_) => (None, None),
        };
        let item = match failed_item {
            Some(item) => Some(item),
            None => self
                .store
                .get_items(&[(home.table.clone(), home.key.clone())], true)
                .await?
                .pop()
                .flatten(),
        };
        match (
            item.and_then(|item| home::record_of(&item, &record.key)),
            failed,
        ) {
            (Some(old), _) => Ok(CommitOutcome::RecordExists(Some(old))),
            (None, Some(index)) => Ok(CommitOutcome::EffectFailed { index }),
            (None, None) => Err(PersistenceError::new(format!(
                "the transaction of {} was cancelled without saying which condition failed",
                record.key
            ))),
        }
    }

    /// After the `contended`-th refused commit (a collision or throttling), wait with
    /// [`IdempotencyConfig::conflict_backoff`](super::IdempotencyConfig::conflict_backoff) and
    /// say `true`; or say `false` at once when the attempts are used up or the wait would not
    /// leave [`DEADLINE_RESERVE`] before `deadline`.
    pub(super) async fn back_off(&self, contended: u32, deadline: Option<SystemTime>) -> bool {
        let backoff = &self.config.conflict_backoff;
        let delay = backoff.delay(contended);
        let fits = deadline.is_none_or(|deadline| {
            deadline
                .duration_since(SystemTime::now())
                .is_ok_and(|left| left > delay + DEADLINE_RESERVE)
        });
        if contended >= backoff.max_attempts || !fits {
            return false;
        }
        crate::aws::metrics::count("TransactionRetries", 1);
        tokio::time::sleep(delay).await;
        true
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};

    use std::time::{Duration, SystemTime};

    use super::super::fixtures::{config, event, in_memory};
    use super::super::record::RecordStatus;
    use super::super::{Conflict, Decision, Executed, IdempotencyError};
    use crate::aws::Backoff;

    /// "Take one of `item`", conditional on stock (which only the oracle can judge here).
    fn take(item: &str) -> TransactWriteItem {
        TransactWriteItem::builder()
            .update(
                Update::builder()
                    .table_name("stock")
                    .key("item", AttributeValue::S(item.to_string()))
                    .update_expression("ADD #available :minus_one")
                    .condition_expression("#available >= :one")
                    .expression_attribute_names("#available", "available")
                    .expression_attribute_values(":minus_one", AttributeValue::N("-1".into()))
                    .expression_attribute_values(":one", AttributeValue::N("1".into()))
                    .build()
                    .unwrap(),
            )
            .build()
    }

    fn item(write: &TransactWriteItem) -> String {
        let key = write.update().unwrap().key();
        key["item"].as_s().unwrap().clone()
    }

    #[tokio::test]
    async fn the_record_and_the_effect_commit_together_and_a_duplicate_replays() {
        let (store, idempotency) = in_memory(config());
        let decisions = Cell::new(0);
        let decide = |conflict: Option<Conflict>| {
            assert_eq!(conflict, None);
            decisions.set(decisions.get() + 1);
            Ok::<_, String>(Decision {
                deltas: Vec::new(),
                writes: vec![take("apple"), take("pear")],
                result: "reserved".to_string(),
            })
        };
        let e = event("evt-1", 1);
        let first = idempotency.run_transactional(&e, decide).await.unwrap();
        let again = idempotency.run_transactional(&e, decide).await.unwrap();
        assert_eq!(first, Executed::Ran("reserved".to_string()));
        assert_eq!(again, Executed::Replayed("reserved".to_string()));
        assert_eq!(decisions.get(), 2, "a duplicate is decided, then refused");
        let written: Vec<String> = store.committed_writes().iter().map(item).collect();
        assert_eq!(written, ["apple", "pear"], "the duplicate wrote nothing");
        let record = store.record(&idempotency.key_of(&e)).unwrap();
        assert_eq!(record.status, RecordStatus::Completed);
        assert_eq!(record.result.as_deref(), Some("\"reserved\""));
    }

    #[tokio::test]
    async fn a_failed_condition_asks_the_handler_to_decide_again() {
        let (store, idempotency) = in_memory(config());
        store.set_condition_oracle(|write| item(write) != "pear");
        let mut conflicts = Vec::new();
        let outcome = idempotency
            .run_transactional(&event("evt-1", 1), |conflict| {
                conflicts.push(conflict);
                let writes = match conflict {
                    None => vec![take("apple"), take("pear")],
                    Some(_) => vec![take("apple")],
                };
                Ok::<_, String>(Decision {
                    deltas: Vec::new(),
                    result: writes.len(),
                    writes,
                })
            })
            .await
            .unwrap();
        assert_eq!(outcome, Executed::Ran(1));
        assert_eq!(conflicts, [None, Some(Conflict { index: 1 })]);
        let written: Vec<String> = store.committed_writes().iter().map(item).collect();
        assert_eq!(written, ["apple"], "the refused decision wrote nothing");
    }

    #[tokio::test]
    async fn conditions_that_keep_failing_end_in_an_error() {
        let (store, idempotency) = in_memory(config());
        store.set_condition_oracle(|_| false);
        let outcome = idempotency
            .run_transactional(&event("evt-1", 1), |_| {
                Ok::<_, String>(Decision {
                    deltas: Vec::new(),
                    writes: vec![take("apple")],
                    result: (),
                })
            })
            .await;
        assert!(
            matches!(outcome, Err(IdempotencyError::Persistence(ref e)) if !e.is_throttling()),
            "{outcome:?}"
        );
        assert!(store.committed_writes().is_empty());
        assert_eq!(store.record(&idempotency.key_of(&event("evt-1", 1))), None);
    }

    /// Quick backoff, so that the tests do not sleep long.
    fn quick(max_attempts: u32) -> super::super::IdempotencyConfig {
        let mut config = config();
        config.conflict_backoff = Backoff {
            max_attempts,
            base: Duration::from_millis(1),
            cap: Duration::from_millis(5),
        };
        config
    }

    fn count_once() -> Result<Decision<String>, String> {
        Ok(Decision {
            deltas: Vec::new(),
            writes: vec![take("counter")],
            result: "counted".to_string(),
        })
    }

    #[tokio::test]
    async fn a_hot_item_is_retried_past_the_decision_limit_until_it_commits() {
        // Before: collisions used up the four decisions, and the fifth contended commit was
        // reported as "conditions kept failing" (a redelivery, after five a dead letter).
        let (store, idempotency) = in_memory(quick(20));
        store.refuse_commits(6, 4);
        let mut decisions = Vec::new();
        let outcome = idempotency
            .run_transactional(&event("evt-1", 1), |conflict| {
                decisions.push(conflict);
                count_once()
            })
            .await
            .unwrap();
        assert_eq!(outcome, Executed::Ran("counted".to_string()));
        assert_eq!(store.commit_attempts(), 11);
        assert!(
            decisions.iter().all(Option::is_none),
            "contention is no failed condition"
        );
        assert_eq!(store.committed_writes().len(), 1, "counted once");
    }

    #[tokio::test]
    async fn contention_that_outlasts_the_attempts_is_reported_as_throttling() {
        let (store, idempotency) = in_memory(quick(3));
        store.refuse_commits(10, 0);
        let outcome = idempotency
            .run_transactional(&event("evt-1", 1), |_| count_once())
            .await;
        assert!(
            matches!(outcome, Err(ref e) if e.is_throttling()),
            "{outcome:?}"
        );
        assert_eq!(store.commit_attempts(), 3);
        assert!(store.committed_writes().is_empty());
    }

    #[tokio::test]
    async fn backoff_stops_in_time_for_the_deadline() {
        let mut config = quick(100);
        config.conflict_backoff.base = Duration::from_millis(400);
        config.conflict_backoff.cap = Duration::from_millis(400);
        let (store, idempotency) = in_memory(config);
        store.refuse_commits(100, 0);
        // 1.2 s left, a second of it reserved: a wait of up to 400 ms fits at most once.
        let deadline = SystemTime::now() + Duration::from_millis(1200);
        let outcome = idempotency
            .run_transactional_until(&event("evt-1", 1), Some(deadline), |_| count_once())
            .await;
        assert!(matches!(outcome, Err(ref e) if e.is_throttling()));
        assert!(SystemTime::now() < deadline, "gave up before the deadline");
        assert!(store.commit_attempts() < 100);
    }
}
