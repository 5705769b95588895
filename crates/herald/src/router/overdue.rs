//! Records the router has tried to publish for too long are dead-lettered with their payload.
//!
//! A record the bus keeps failing (an SNS or KMS outage) is reported back to Lambda, which
//! retries it until its mapping's `MaximumRecordAgeInSeconds`. Lambda would then send only a
//! pointer (shard, sequence range) to the on-failure destination, and the record itself would
//! vanish with the stream's retention (24 h) although the pointer is kept 14 days. So before
//! Lambda gives up, the router does: a record older than [`RouterConfig::give_up_after`] that
//! still could not be published goes to the dead-letter queue — the whole record, with the
//! reason — and counts as handled, so the shard moves on and an operator redrives it after the
//! outage (`herald dlq redrive`).
//!
//! [`RouterConfig::give_up_after`]: super::RouterConfig::give_up_after

use std::time::Duration;

use super::{Fate, RecordRef, STAGE};
use crate::aws::dead_letter::DeadLetter;

/// When the router gives up on a record its mapping keeps for `max_record_age`: a margin before
/// Lambda would (five minutes, or half the age when that is shorter), so that the last retry
/// invocation still runs before the record's age passes the limit.
pub fn give_up_after(max_record_age: Duration) -> Duration {
    let margin = Duration::from_secs(300).min(max_record_age / 2);
    max_record_age - margin
}

/// Turn every failed record older than `give_up_after` (at `now`, seconds since the epoch) into
/// a dead letter holding the record.
pub(super) fn dead_letter_overdue(
    fates: &mut [Option<Fate>],
    records: &[RecordRef<'_>],
    give_up_after: Duration,
    now: f64,
) {
    for (fate, record) in fates.iter_mut().zip(records) {
        let (Some(Fate::Failed(reason)), Some(arrival)) = (fate.as_ref(), record.arrival) else {
            continue;
        };
        let age = (now - arrival).max(0.0);
        if age < give_up_after.as_secs_f64() {
            continue;
        }
        tracing::error!(
            sequence_number = %record.sequence_number,
            age_seconds = age as u64,
            %reason,
            "could not publish before the mapping gives up: dead-lettering the record"
        );
        *fate = Some(Fate::Poison(DeadLetter::new(
            record.data,
            STAGE,
            format!(
                "not published {}s after it reached the stream ({reason}); redrive it once the bus works again",
                age as u64
            ),
        )));
    }
}
