//! The idempotency record: its attribute names in the table ([`attr`]) and its typed form
//! ([`IdempotencyRecord`]), which is what the modes and the stores exchange.

use std::time::{SystemTime, UNIX_EPOCH};

/// Attribute names of an idempotency record.
pub mod attr {
    /// Partition key.
    pub const KEY: &str = "pk";
    /// `INPROGRESS` or `COMPLETED`.
    pub const STATUS: &str = "status";
    /// When the record expires, epoch seconds: the table's TTL attribute.
    pub const EXPIRES_AT: &str = "expiresAt";
    /// When an INPROGRESS claim may be taken over, epoch milliseconds.
    pub const IN_PROGRESS_UNTIL: &str = "inProgressUntil";
    /// The handler's result as JSON.
    pub const RESULT: &str = "result";
    /// SHA-256 of the payload fields that must match on a duplicate.
    pub const PAYLOAD_HASH: &str = "payloadHash";
    /// Which delivery holds an INPROGRESS claim: only that one may complete or release it.
    pub const CLAIM: &str = "claimId";
}

/// Where a record stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordStatus {
    /// A delivery claimed the event and is running its handler (`INPROGRESS`).
    InProgress,
    /// The handler ran; the record holds its result (`COMPLETED`).
    Completed,
}

impl RecordStatus {
    /// The value of [`attr::STATUS`].
    pub fn as_str(self) -> &'static str {
        match self {
            RecordStatus::InProgress => "INPROGRESS",
            RecordStatus::Completed => "COMPLETED",
        }
    }

    /// Read [`attr::STATUS`]. Anything but `COMPLETED` counts as in progress: a record whose
    /// result cannot be trusted must not be replayed.
    pub fn parse(value: &str) -> RecordStatus {
        if value == RecordStatus::Completed.as_str() {
            RecordStatus::Completed
        } else {
            RecordStatus::InProgress
        }
    }
}

/// One idempotency record, one attribute per field (see [`attr`]). The modes build them and
/// interpret them; a store only keeps them and applies [`IdempotencyRecord::blocks_claim`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyRecord {
    /// The record key (prefix + event key), [`attr::KEY`].
    pub key: String,
    /// [`attr::STATUS`].
    pub status: RecordStatus,
    /// Epoch seconds after which the record counts as absent, [`attr::EXPIRES_AT`].
    pub expires_at: i64,
    /// Epoch milliseconds after which an INPROGRESS claim may be taken over,
    /// [`attr::IN_PROGRESS_UNTIL`].
    pub in_progress_until: Option<i64>,
    /// The claim token of the delivery holding an INPROGRESS claim, [`attr::CLAIM`].
    pub claim: Option<String>,
    /// The handler's result as JSON, on COMPLETED records, [`attr::RESULT`].
    pub result: Option<String>,
    /// The payload hash, when payloads are compared, [`attr::PAYLOAD_HASH`].
    pub payload_hash: Option<String>,
}

impl IdempotencyRecord {
    /// Whether this stored record keeps a new claim (or a transactional commit) out at `now_ms`.
    /// It does unless it expired or it is an INPROGRESS claim whose time is up. The DynamoDB
    /// store says the same as a condition expression; every store must agree with this.
    pub fn blocks_claim(&self, now_ms: i64) -> bool {
        let expired = self.expires_at < now_ms / 1000;
        let claim_lapsed = self.status == RecordStatus::InProgress
            && self.in_progress_until.is_some_and(|until| until < now_ms);
        !(expired || claim_lapsed)
    }
}

/// Now, in epoch milliseconds (0 before 1970: a broken clock must not panic a handler).
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(status: RecordStatus, expires_at: i64, until: Option<i64>) -> IdempotencyRecord {
        IdempotencyRecord {
            key: "k".into(),
            status,
            expires_at,
            in_progress_until: until,
            claim: until.map(|_| "token".into()),
            result: None,
            payload_hash: None,
        }
    }

    #[test]
    fn only_expired_records_and_lapsed_claims_let_a_claim_through() {
        let now = 1_000_000_000;
        let later_s = now / 1000 + 60;
        assert!(record(RecordStatus::Completed, later_s, None).blocks_claim(now));
        assert!(!record(RecordStatus::Completed, now / 1000 - 1, None).blocks_claim(now));
        assert!(record(RecordStatus::InProgress, later_s, Some(now + 1)).blocks_claim(now));
        assert!(!record(RecordStatus::InProgress, later_s, Some(now - 1)).blocks_claim(now));
        assert_eq!(RecordStatus::parse("INPROGRESS"), RecordStatus::InProgress);
        assert_eq!(RecordStatus::parse("garbage"), RecordStatus::InProgress);
        assert_eq!(RecordStatus::parse("COMPLETED"), RecordStatus::Completed);
    }
}
