//! Lambda's rules for one stream batch: checkpoint on success, `batchItemFailures`, bisecting on
//! function errors, retries with backoff, and giving up to the on-failure destination. On a
//! tumbling window, every invocation carries the window's state and a successful one replaces
//! it (a retry starts again from the state the failed invocation was given).

use std::collections::VecDeque;
use std::time::Duration;

use chrono::Utc;
use serde_json::Value;

use super::on_failure::{on_failure, FailureCondition};
use super::window::{decorate, returned_state, OpenWindow};
use super::{Context, StreamRecord};
use crate::runtime::{FunctionError, FunctionPool};
use crate::stack::StreamMapping;

pub(super) async fn process_kinesis_batch(
    mapping: &StreamMapping,
    pool: &FunctionPool,
    ctx: &Context,
    records: Vec<StreamRecord>,
    mut window: Option<&mut OpenWindow>,
) {
    let label = pool.spec().label();
    // (records, retries so far, invocations so far)
    let mut work: VecDeque<(Vec<StreamRecord>, i64, u32)> = VecDeque::from([(records, 0, 0)]);
    while let Some((batch, retries, invocations)) = work.pop_front() {
        let (batch, expired): (Vec<_>, Vec<_>) = match mapping.max_record_age {
            Some(max_age) => batch.into_iter().partition(|r| {
                Utc::now()
                    .signed_duration_since(r.arrival)
                    .to_std()
                    .unwrap_or_default()
                    <= max_age
            }),
            None => (batch, Vec::new()),
        };
        if !expired.is_empty() {
            on_failure(
                mapping,
                ctx,
                label,
                &expired,
                FailureCondition::RecordAgeExceeded,
                invocations,
                None,
            )
            .await;
        }
        if batch.is_empty() {
            continue;
        }
        let mut event = crate::stream::lambda_event(ctx.event_source(mapping), &batch);
        if let (Some(open), Some(length)) = (window.as_deref(), mapping.tumbling_window) {
            decorate(
                &mut event,
                mapping,
                &batch[0].shard_id,
                open,
                length,
                false,
                false,
            );
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
        ctx.activity
            .iterator_ages
            .function(&mapping.function, age.max(0) as u64);
        let result = pool.invoke(&event).await;
        // On a window, a response counts only with a state, which becomes the window's once the
        // response as a whole is accepted (a rejected one retries from the state it was given).
        let result = match (result, window.is_some()) {
            (Ok(response), true) => match returned_state(&response) {
                Ok(state) => Ok((response, Some(state))),
                Err(reason) => Err(FunctionError::BadResponse(reason)),
            },
            (result, _) => result.map(|response| (response, None)),
        };
        let result = match result {
            Ok((response, state)) => {
                let accepted =
                    !mapping.report_batch_item_failures || first_failed(&response, &batch).is_ok();
                if let (true, Some(state), Some(open)) = (accepted, state, window.as_deref_mut()) {
                    open.state = state;
                }
                Ok(response)
            }
            Err(err) => Err(err),
        };
        let error = match result {
            Ok(response) => {
                if !mapping.report_batch_item_failures {
                    continue;
                }
                match first_failed(&response, &batch) {
                    Ok(None) => continue,
                    Ok(Some(index)) if index > 0 && mapping.bisect_on_error => {
                        // Checkpoint before the failure and split there: the remaining records
                        // are tried again as a batch of their own (a split, not a retry).
                        work.push_front((batch[index..].to_vec(), retries, invocations + 1));
                        continue;
                    }
                    Ok(Some(index)) if index == 0 && mapping.bisect_on_error && batch.len() > 1 => {
                        // The first record failed: bisect to isolate it.
                        bisect(&mut work, batch, retries, invocations + 1);
                        continue;
                    }
                    Ok(Some(index)) => {
                        // Checkpoint before the lowest failure; retry from there.
                        let remaining = batch[index..].to_vec();
                        retry_or_give_up(
                            mapping,
                            ctx,
                            label,
                            &mut work,
                            remaining,
                            retries,
                            invocations + 1,
                            None,
                        )
                        .await;
                        continue;
                    }
                    Err(reason) => FunctionError::BadResponse(reason),
                }
            }
            Err(err) => err,
        };
        ctx.logs
            .note(label, &format!("batch of {} failed: {error}", batch.len()));
        if mapping.bisect_on_error && batch.len() > 1 {
            bisect(&mut work, batch, retries, invocations + 1);
            continue;
        }
        retry_or_give_up(
            mapping,
            ctx,
            label,
            &mut work,
            batch,
            retries,
            invocations + 1,
            Some(&error),
        )
        .await;
    }
}

/// Split a batch in two and try each half, first half first (splitting is not a retry).
fn bisect(
    work: &mut VecDeque<(Vec<StreamRecord>, i64, u32)>,
    mut batch: Vec<StreamRecord>,
    retries: i64,
    invocations: u32,
) {
    let second = batch.split_off(batch.len() / 2);
    work.push_front((second, retries, invocations));
    work.push_front((batch, retries, invocations));
}

#[allow(clippy::too_many_arguments)]
async fn retry_or_give_up(
    mapping: &StreamMapping,
    ctx: &Context,
    label: &str,
    work: &mut VecDeque<(Vec<StreamRecord>, i64, u32)>,
    batch: Vec<StreamRecord>,
    retries: i64,
    invocations: u32,
    error: Option<&FunctionError>,
) {
    if mapping.max_retry_attempts >= 0 && retries >= mapping.max_retry_attempts {
        on_failure(
            mapping,
            ctx,
            label,
            &batch,
            FailureCondition::RetryAttemptsExhausted,
            invocations,
            error,
        )
        .await;
        return;
    }
    let delay = (Duration::from_millis(50) * 2u32.saturating_pow(retries.min(10) as u32))
        .min(ctx.settings.max_retry_delay);
    tokio::time::sleep(delay).await;
    work.push_front((batch, retries + 1, invocations));
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
