//! **Transactional mode** ([`Idempotency::run_transactional`]), for effects that are DynamoDB
//! writes: the COMPLETED record and the effect's writes commit together, one request per first
//! delivery, and no crash can fall between "effect" and "mark done".

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::error::PersistenceError;
use super::record::{now_ms, IdempotencyRecord, RecordStatus};
use super::store::CommitOutcome;
use super::{Conflict, Decision, Executed, Idempotency, IdempotencyError};
use crate::envelope::Envelope;
use crate::limits::DYNAMODB_MAX_TRANSACT_ITEMS;

impl Idempotency {
    /// **Transactional mode.** `decide` returns the effect's writes and the result; they are
    /// committed together with the COMPLETED record in one `TransactWriteItems`. If a write's
    /// condition fails, `decide` is asked again with the [`Conflict`] (up to 3 times).
    pub async fn run_transactional<T, E, F>(
        &self,
        event: &Envelope,
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
        let mut collisions = 0;
        for _ in 0..4 {
            let Decision { writes, result } =
                decide(conflict).map_err(IdempotencyError::Handler)?;
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
            match self.store.commit(&record, writes, now).await? {
                CommitOutcome::Committed => {
                    self.remember(&key, &hash, &json);
                    return Ok(Executed::Ran(result));
                }
                CommitOutcome::RecordExists(old) => {
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
                CommitOutcome::EffectFailed { index } => conflict = Some(Conflict { index }),
                CommitOutcome::Collision(_)
                    if collisions < self.config.conflict_backoff.max_attempts =>
                {
                    collisions += 1;
                    self.config.conflict_backoff.wait(collisions).await;
                }
                CommitOutcome::Collision(err) => return Err(err.into()),
            }
        }
        Err(PersistenceError::new(format!(
            "event {key}: the effect's conditions kept failing after re-deciding"
        ))
        .into())
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};

    use super::super::fixtures::{config, event, in_memory};
    use super::super::record::RecordStatus;
    use super::super::{Conflict, Decision, Executed, IdempotencyError};

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
}
