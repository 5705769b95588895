//! Lambda's rules for one stream batch: checkpoint on success, `batchItemFailures`, bisecting on
//! function errors, retries with backoff, and giving up to the on-failure destination. On a
//! tumbling window, every invocation carries the window's state and a successful one replaces
//! it (a retry starts again from the state the failed invocation was given).

use std::collections::VecDeque;

use chrono::Utc;
use serde_json::Value;

use super::on_failure::{on_failure, FailureCondition};
use super::pause::backoff;
use super::window::{decorate, returned_state, OpenWindow};
use super::{Context, StreamRecord};
use crate::runtime::{FunctionError, FunctionPool};
use crate::stack::StreamMapping;

/// Records still to invoke with: a batch, its retries so far, its invocations so far.
type Work = VecDeque<(Vec<StreamRecord>, i64, u32)>;

pub(super) async fn process_kinesis_batch(
    mapping: &StreamMapping,
    pool: &FunctionPool,
    ctx: &Context,
    records: Vec<StreamRecord>,
    mut window: Option<&mut OpenWindow>,
) {
    let run = Run {
        mapping,
        pool,
        ctx,
        label: pool.spec().label(),
    };
    let mut work: Work = VecDeque::from([(records, 0, 0)]);
    while let Some((batch, retries, invocations)) = work.pop_front() {
        let batch = run.park_expired(batch, invocations).await;
        if batch.is_empty() {
            continue;
        }
        let answer = run.invoke(&batch, retries, window.as_deref_mut()).await;
        let error = match answer {
            Ok(_) if !mapping.report_batch_item_failures => continue,
            Ok(response) => match first_failed(&response, &batch) {
                Ok(None) => continue,
                Ok(Some(index)) => {
                    run.partly_failed(&mut work, batch, index, retries, invocations + 1)
                        .await;
                    continue;
                }
                Err(reason) => FunctionError::BadResponse(reason),
            },
            Err(err) => err,
        };
        ctx.logs.note(
            run.label,
            &format!("batch of {} failed: {error}", batch.len()),
        );
        if mapping.bisect_on_error && batch.len() > 1 {
            bisect(&mut work, batch, retries, invocations + 1);
            continue;
        }
        run.retry_or_give_up(&mut work, batch, retries, invocations + 1, Some(&error))
            .await;
    }
}

/// One stream batch's processing: the mapping, the function it invokes, and where it reports.
struct Run<'a> {
    mapping: &'a StreamMapping,
    pool: &'a FunctionPool,
    ctx: &'a Context,
    label: &'a str,
}

impl Run<'_> {
    /// Send the records older than `MaximumRecordAgeInSeconds` to the on-failure destination;
    /// the others.
    async fn park_expired(&self, batch: Vec<StreamRecord>, invocations: u32) -> Vec<StreamRecord> {
        let Some(max_age) = self.mapping.max_record_age else {
            return batch;
        };
        let (batch, expired): (Vec<_>, Vec<_>) = batch.into_iter().partition(|r| {
            Utc::now()
                .signed_duration_since(r.arrival)
                .to_std()
                .unwrap_or_default()
                <= max_age
        });
        if !expired.is_empty() {
            let condition = FailureCondition::RecordAgeExceeded;
            on_failure(
                self.mapping,
                self.ctx,
                self.label,
                &expired,
                condition,
                invocations,
                None,
            )
            .await;
        }
        batch
    }

    /// Invoke the function with `batch` (and the open window's state); its response. On a
    /// window, a response counts only with a state, which becomes the window's once the response
    /// as a whole is accepted (a rejected one retries from the state it was given).
    async fn invoke(
        &self,
        batch: &[StreamRecord],
        retries: i64,
        window: Option<&mut OpenWindow>,
    ) -> Result<Value, FunctionError> {
        let mapping = self.mapping;
        let mut event = crate::stream::lambda_event(self.ctx.event_source(mapping), batch);
        if let (Some(open), Some(length)) = (window.as_deref(), mapping.tumbling_window) {
            let shard = &batch[0].shard_id;
            decorate(&mut event, mapping, shard, open, length, false, false);
        }
        tracing::debug!(
            records = batch.len(),
            retries,
            "invoking with a Kinesis batch"
        );
        let oldest = batch
            .iter()
            .map(|r| r.arrival)
            .min()
            .unwrap_or_else(Utc::now);
        let age = Utc::now().signed_duration_since(oldest).num_milliseconds();
        self.ctx
            .activity
            .iterator_ages
            .function(&mapping.function, age.max(0) as u64);
        let response = self.pool.invoke(&event).await?;
        let Some(open) = window else {
            return Ok(response);
        };
        let state = returned_state(&response).map_err(FunctionError::BadResponse)?;
        let accepted =
            !mapping.report_batch_item_failures || first_failed(&response, batch).is_ok();
        if accepted {
            open.state = state;
        }
        Ok(response)
    }

    /// The function reported the records from `index` on as failed.
    async fn partly_failed(
        &self,
        work: &mut Work,
        batch: Vec<StreamRecord>,
        index: usize,
        retries: i64,
        invocations: u32,
    ) {
        if index > 0 && self.mapping.bisect_on_error {
            // Checkpoint before the failure and split there: the remaining records are tried
            // again as a batch of their own (a split, not a retry).
            work.push_front((batch[index..].to_vec(), retries, invocations));
        } else if index == 0 && self.mapping.bisect_on_error && batch.len() > 1 {
            // The first record failed: bisect to isolate it.
            bisect(work, batch, retries, invocations);
        } else {
            // Checkpoint before the lowest failure; retry from there.
            let remaining = batch[index..].to_vec();
            self.retry_or_give_up(work, remaining, retries, invocations, None)
                .await;
        }
    }

    /// Retry `batch` after a backoff, or, its retries spent, send it to the on-failure
    /// destination.
    async fn retry_or_give_up(
        &self,
        work: &mut Work,
        batch: Vec<StreamRecord>,
        retries: i64,
        invocations: u32,
        error: Option<&FunctionError>,
    ) {
        let mapping = self.mapping;
        if mapping.max_retry_attempts >= 0 && retries >= mapping.max_retry_attempts {
            let condition = FailureCondition::RetryAttemptsExhausted;
            on_failure(
                mapping,
                self.ctx,
                self.label,
                &batch,
                condition,
                invocations,
                error,
            )
            .await;
            return;
        }
        let delay = backoff(
            retries.clamp(0, 10) as u32,
            self.ctx.settings.max_retry_delay,
        );
        tokio::time::sleep(delay).await;
        work.push_front((batch, retries + 1, invocations));
    }
}

/// Split a batch in two and try each half, first half first (splitting is not a retry).
fn bisect(work: &mut Work, mut batch: Vec<StreamRecord>, retries: i64, invocations: u32) {
    let second = batch.split_off(batch.len() / 2);
    work.push_front((second, retries, invocations));
    work.push_front((batch, retries, invocations));
}

/// Index of the lowest failed record, `None` when nothing failed, or why the response is invalid
/// (then the whole batch counts as failed, as on Lambda).
fn first_failed(response: &Value, batch: &[StreamRecord]) -> Result<Option<usize>, String> {
    let Some(failures) = response.get("batchItemFailures") else {
        return Ok(None);
    };
    let Some(failures) = failures.as_array() else {
        return if failures.is_null() {
            Ok(None)
        } else {
            Err("batchItemFailures is not a list".into())
        };
    };
    let mut lowest: Option<usize> = None;
    for failure in failures {
        let id = failure
            .get("itemIdentifier")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if id.is_empty() {
            return Err("a batch item failure has an empty itemIdentifier".into());
        }
        let index = batch
            .iter()
            .position(|r| r.sequence_number == id)
            .ok_or_else(|| format!("itemIdentifier {id} is not in the batch"))?;
        lowest = Some(lowest.map_or(index, |l| l.min(index)));
    }
    Ok(lowest)
}
