//! **Claimed mode** ([`Idempotency::run`]), for effects outside DynamoDB: claim the event
//! (INPROGRESS), run the handler, then store its result (COMPLETED) or release the claim so that
//! a retry runs it again. A duplicate costs one refused claim, which returns the stored record.

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::error::PersistenceError;
use super::record::{now_ms, IdempotencyRecord, RecordStatus};
use super::store::ClaimOutcome;
use super::{Executed, Idempotency, IdempotencyError};
use crate::envelope::Envelope;

/// The claim's fate, as read from the store.
enum Claim<T> {
    /// Ours, with the token that proves it.
    Acquired(String),
    Completed(T),
}

impl Idempotency {
    /// **Claimed mode.** Run `handler` once per event: claim, run, store the result (or release
    /// the claim on error). `deadline` is the invocation's (`Context::deadline()`).
    pub async fn run<T, E, F, Fut>(
        &self,
        event: &Envelope,
        deadline: SystemTime,
        handler: F,
    ) -> Result<Executed<T>, IdempotencyError<E>>
    where
        T: Serialize + DeserializeOwned + Clone,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let key = self.key_of(event);
        let hash = self.hash_of(event);
        if let Some(result) = self.cached(&key, &hash)? {
            return Ok(Executed::Replayed(result));
        }
        let token = match self.claim_or_wait::<T, E>(&key, &hash, deadline).await? {
            Claim::Completed(result) => return Ok(Executed::Replayed(result)),
            Claim::Acquired(token) => token,
        };
        match handler().await {
            Ok(result) => {
                let json = serde_json::to_string(&result).map_err(|e| {
                    PersistenceError::new(format!("result does not serialize: {e}")).with_source(e)
                })?;
                self.complete(&key, &hash, &json, &token).await?;
                self.remember(&key, &hash, &json);
                Ok(Executed::Ran(result))
            }
            Err(err) => {
                // If the claim stays, it expires at its deadline and a retry takes it over.
                match self.store.release(&key, &token).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(%key, "could not release the claim after a handler error: it is no longer this delivery's")
                    }
                    Err(release) => {
                        tracing::warn!(%key, error = %release, "could not release the claim after a handler error")
                    }
                }
                Err(IdempotencyError::Handler(err))
            }
        }
    }

    /// Claim; while another delivery holds the claim, retry for up to `in_progress_wait`.
    async fn claim_or_wait<T: DeserializeOwned, E>(
        &self,
        key: &str,
        hash: &str,
        deadline: SystemTime,
    ) -> Result<Claim<T>, IdempotencyError<E>> {
        let started = std::time::Instant::now();
        let mut pause = Duration::from_millis(25);
        loop {
            match self.claim(key, hash, deadline).await {
                Err(IdempotencyError::AlreadyInProgress { .. })
                    if started.elapsed() + pause < self.config.in_progress_wait
                        && SystemTime::now() + pause < deadline =>
                {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(400));
                }
                other => return other,
            }
        }
    }

    async fn claim<T: DeserializeOwned, E>(
        &self,
        key: &str,
        hash: &str,
        deadline: SystemTime,
    ) -> Result<Claim<T>, IdempotencyError<E>> {
        let now = now_ms();
        let token = uuid::Uuid::new_v4().to_string();
        let record = IdempotencyRecord {
            in_progress_until: Some(self.in_progress_until(now, deadline)),
            claim: Some(token.clone()),
            ..self.record(key, hash, RecordStatus::InProgress, now)
        };
        let old = match self.store.claim(&record, now).await? {
            ClaimOutcome::Claimed => return Ok(Claim::Acquired(token)),
            ClaimOutcome::Exists(Some(old)) => Some(old),
            ClaimOutcome::Exists(None) => self.store.get(key).await?,
        };
        match old {
            Some(old) => self.existing(key, hash, &old).map(Claim::Completed),
            None => Err(PersistenceError::new(format!(
                "the claim on {key} failed but no record can be read"
            ))
            .into()),
        }
    }

    /// Store the result, if the claim is still ours (`token`). When a slow delivery's claim
    /// expired and another took it over, this one must not overwrite that one's record.
    async fn complete<E>(
        &self,
        key: &str,
        hash: &str,
        json: &str,
        token: &str,
    ) -> Result<(), IdempotencyError<E>> {
        let record = IdempotencyRecord {
            result: Some(json.to_string()),
            ..self.record(key, hash, RecordStatus::Completed, now_ms())
        };
        if self.store.complete(&record, token).await? {
            Ok(())
        } else {
            Err(PersistenceError::new(format!(
                "the claim on {key} expired and another delivery took it over before this one finished"
            ))
            .into())
        }
    }

    /// Until when a claim taken `now` blocks other deliveries: the configured timeout or the
    /// invocation's deadline, never less than the floor.
    fn in_progress_until(&self, now: i64, deadline: SystemTime) -> i64 {
        let floor = now + self.config.min_in_progress.as_millis() as i64;
        let until = match self.config.in_progress_timeout {
            Some(timeout) => now + timeout.as_millis() as i64,
            None => deadline
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0),
        };
        until.max(floor)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::super::fixtures::{config, deadline, event, in_memory};
    use super::super::record::{now_ms, IdempotencyRecord, RecordStatus};
    use super::super::{Executed, Idempotency, IdempotencyError};

    #[tokio::test]
    async fn the_first_delivery_runs_and_a_duplicate_replays_its_result() {
        let (store, idempotency) = in_memory(config());
        let runs = AtomicUsize::new(0);
        let handler = || async {
            runs.fetch_add(1, Ordering::SeqCst);
            Ok::<_, String>(format!("charged {}", runs.load(Ordering::SeqCst)))
        };
        let e = event("evt-1", 1);
        let first = idempotency.run(&e, deadline(), handler).await.unwrap();
        let again = idempotency.run(&e, deadline(), handler).await.unwrap();
        assert_eq!(first, Executed::Ran("charged 1".to_string()));
        assert_eq!(again, Executed::Replayed("charged 1".to_string()));
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        let record = store.record(&idempotency.key_of(&e)).unwrap();
        assert_eq!(record.status, RecordStatus::Completed);
        assert_eq!(record.claim, None, "a COMPLETED record holds no claim");
    }

    #[tokio::test]
    async fn the_same_id_with_another_payload_is_a_mismatch() {
        let (_, idempotency) = in_memory(config());
        idempotency
            .run(&event("evt-1", 1), deadline(), || async {
                Ok::<_, String>(1)
            })
            .await
            .unwrap();
        let mismatch = idempotency
            .run(&event("evt-1", 2), deadline(), || async {
                Ok::<_, String>(2)
            })
            .await;
        assert!(
            matches!(mismatch, Err(IdempotencyError::PayloadMismatch { .. })),
            "{mismatch:?}"
        );
    }

    #[tokio::test]
    async fn a_handler_error_releases_the_claim_for_the_retry() {
        let (store, idempotency) = in_memory(config());
        let e = event("evt-1", 1);
        let failed = idempotency
            .run(&e, deadline(), || async {
                Err::<String, _>("gateway down".to_string())
            })
            .await;
        assert!(matches!(failed, Err(IdempotencyError::Handler(ref m)) if m == "gateway down"));
        assert_eq!(store.record(&idempotency.key_of(&e)), None);
        let retry = idempotency
            .run(&e, deadline(), || async {
                Ok::<_, String>("ok".to_string())
            })
            .await
            .unwrap();
        assert_eq!(retry, Executed::Ran("ok".to_string()));
    }

    #[tokio::test]
    async fn a_lapsed_claim_is_taken_over_and_a_live_one_is_not() {
        let mut config = config();
        config.in_progress_wait = Duration::ZERO;
        let (store, idempotency) = in_memory(config);
        let e = event("evt-1", 1);
        let crashed = |until_ms| IdempotencyRecord {
            in_progress_until: Some(until_ms),
            claim: Some("crashed delivery".into()),
            ..idempotency.record(
                &idempotency.key_of(&e),
                &idempotency.hash_of(&e),
                RecordStatus::InProgress,
                now_ms(),
            )
        };

        store.insert(crashed(now_ms() + 60_000));
        let blocked = idempotency
            .run(&e, deadline(), || async { Ok::<_, String>(1) })
            .await;
        assert!(
            matches!(blocked, Err(IdempotencyError::AlreadyInProgress { .. })),
            "{blocked:?}"
        );

        store.insert(crashed(now_ms() - 1));
        let taken_over = idempotency
            .run(&e, deadline(), || async { Ok::<_, String>(2) })
            .await
            .unwrap();
        assert_eq!(taken_over, Executed::Ran(2));
    }

    #[tokio::test]
    async fn a_slow_delivery_whose_claim_was_taken_over_does_not_overwrite_the_result() {
        let mut config = config();
        config.in_progress_timeout = Some(Duration::from_millis(50));
        config.min_in_progress = Duration::ZERO;
        config.in_progress_wait = Duration::ZERO;
        let (_, idempotency) = in_memory(config);
        let e = event("evt-1", 1);
        let slow = idempotency.run(&e, deadline(), || async {
            tokio::time::sleep(Duration::from_millis(250)).await;
            Ok::<_, String>("A".to_string())
        });
        let fast = async {
            tokio::time::sleep(Duration::from_millis(120)).await;
            idempotency
                .run(&e, deadline(), || async {
                    Ok::<_, String>("B".to_string())
                })
                .await
        };
        let (a, b) = tokio::join!(slow, fast);
        assert_eq!(b.unwrap(), Executed::Ran("B".to_string()));
        assert!(
            matches!(a, Err(IdempotencyError::Persistence(ref e)) if e.message().contains("took it over")),
            "{a:?}"
        );
        let again = idempotency
            .run(&e, deadline(), || async {
                Ok::<_, String>("C".to_string())
            })
            .await
            .unwrap();
        assert_eq!(again, Executed::Replayed("B".to_string()));
    }

    #[tokio::test]
    async fn a_concurrent_duplicate_waits_for_the_first_delivery_and_replays_it() {
        let idempotency = Idempotency::in_memory(config());
        let e = event("evt-1", 1);
        let first = idempotency.run(&e, deadline(), || async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok::<_, String>("first".to_string())
        });
        let duplicate = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            idempotency
                .run(&e, deadline(), || async {
                    Ok::<_, String>("second".to_string())
                })
                .await
        };
        let (first, duplicate) = tokio::join!(first, duplicate);
        assert_eq!(first.unwrap(), Executed::Ran("first".to_string()));
        assert_eq!(duplicate.unwrap(), Executed::Replayed("first".to_string()));
    }
}
