//! Sending old events again. A subscriber skips a redelivered event because it finds the event's
//! idempotency record; records are kept `IDEMPOTENCY_TTL_SECONDS` (15 days) from when the event
//! was applied, and herald treats an expired one as gone. An event that happened longer ago than
//! that may have lost its records everywhere it was applied, and sent again it would be applied
//! again. Queues bound most paths (14 days of SQS retention), but herald's own dead letters are
//! new messages with a fresh 14-day clock, and the archive keeps events for ever, so a redrive or
//! a replay can carry events of any age.
//!
//! Every path that sends old events again — `herald dlq redrive`, `herald replay` from the
//! archive — asks a [`Horizon`] first: an event whose `time` is past it is refused, by name, and
//! left where it was, unless the operator says [`Expired::Resend`] (`--resend-expired`): "I know
//! its effects may be applied again".

use std::time::Duration;

use chrono::{DateTime, Utc};

use herald_local::stack::Stack;

/// herald's default record TTL when the stack says none (15 days).
const DEFAULT_TTL: Duration = herald::idempotency::DEFAULT_RECORD_TTL;

/// Time a resend itself may take before it is applied (retries, backoff): refused a day early.
pub const RESEND_MARGIN: Duration = Duration::from_secs(24 * 3600);

/// What to do with an event past the horizon.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Expired {
    /// Leave it where it is, and say why. The default.
    #[default]
    Refuse,
    /// Send it anyway: its effects may be applied a second time.
    Resend,
}

/// How old an event may be and still be sent again safely (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Horizon {
    /// How long the stack keeps idempotency records.
    pub ttl: Duration,
    /// What to do with an event past the horizon.
    pub expired: Expired,
}

impl Default for Horizon {
    fn default() -> Self {
        Horizon {
            ttl: DEFAULT_TTL,
            expired: Expired::Refuse,
        }
    }
}

impl Horizon {
    /// The stack's horizon: the shortest `IDEMPOTENCY_TTL_SECONDS` among its functions (herald's
    /// default when none sets it).
    pub fn of(stack: &Stack, expired: Expired) -> Horizon {
        let ttl = stack
            .functions
            .iter()
            .filter_map(|f| f.environment.get("IDEMPOTENCY_TTL_SECONDS"))
            .filter_map(|t| t.parse::<u64>().ok())
            .min()
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_TTL);
        Horizon { ttl, expired }
    }

    /// The oldest `time` an event may have to be sent again at `now`.
    pub fn oldest(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let window = self.ttl.saturating_sub(RESEND_MARGIN);
        now - chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX)
    }

    /// Whether an event that happened at `time` may be sent again now; the refusal says why and
    /// what to pass to send it anyway.
    pub fn check(&self, time: DateTime<Utc>) -> Result<(), String> {
        let now = Utc::now();
        if self.expired == Expired::Resend || time >= self.oldest(now) {
            return Ok(());
        }
        Err(format!(
            "the event happened at {} ({} days ago): the stack keeps idempotency records {} days, so \
             a subscriber that applied it may apply it again; left where it is (--resend-expired \
             sends it anyway)",
            time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            (now - time).num_days(),
            self.ttl.as_secs() / 86_400
        ))
    }

    /// [`Horizon::check`] on a record: an event's `time`; a record that is not an event has no
    /// effects to repeat and passes.
    pub fn check_record(&self, record: &[u8]) -> Result<(), String> {
        match herald::Envelope::parse(record) {
            Ok(event) => self.check(event.time()),
            Err(_) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_older_than_the_records_are_refused_unless_resent_on_purpose() {
        let horizon = Horizon::default();
        let now = Utc::now();
        assert!(horizon.check(now - chrono::Duration::days(13)).is_ok());
        let err = horizon.check(now - chrono::Duration::days(20)).unwrap_err();
        assert!(
            err.contains("20 days ago") && err.contains("15 days"),
            "{err}"
        );
        assert!(err.contains("--resend-expired"), "{err}");
        let resend = Horizon {
            expired: Expired::Resend,
            ..horizon
        };
        assert!(resend.check(now - chrono::Duration::days(400)).is_ok());
        assert!(horizon.check_record(b"not an event").is_ok());
    }
}
