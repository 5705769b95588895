//! What can go wrong: [`IdempotencyError`], and [`PersistenceError`] for the store's failures,
//! which keeps the store's own error and says whether it was throttling.

use std::error::Error as StdError;

/// What can go wrong; match on it.
#[derive(Debug, thiserror::Error)]
pub enum IdempotencyError<E> {
    /// Another invocation holds the claim and its time is not up.
    #[error(
        "event {key} is being processed by another invocation (claim held until {until_ms} ms)"
    )]
    AlreadyInProgress {
        /// The record key.
        key: String,
        /// When the claim may be taken over, epoch milliseconds.
        until_ms: i64,
    },
    /// Same key, different payload: a producer reused an id for a different event.
    #[error("event {key} was already processed with a different payload (stored hash {stored}, this delivery {received})")]
    PayloadMismatch {
        /// The record key.
        key: String,
        /// The hash stored with the record.
        stored: String,
        /// This delivery's hash.
        received: String,
    },
    /// The store failed or answered something unexpected.
    #[error("idempotency store: {0}")]
    Persistence(#[from] PersistenceError),
    /// The handler failed (its claim was released, so a retry runs it again).
    #[error(transparent)]
    Handler(E),
}

impl<E> IdempotencyError<E> {
    /// Whether the store refused for capacity or contention (see
    /// [`PersistenceError::is_throttling`]): worth retrying later, not worth an alarm.
    pub fn is_throttling(&self) -> bool {
        matches!(self, IdempotencyError::Persistence(e) if e.is_throttling())
    }
}

/// A failure of the idempotency store. The message reads on its own in a log line (for DynamoDB
/// it already includes the SDK error's chain); the original error stays reachable as
/// [`std::error::Error::source`] for callers that need more than text.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct PersistenceError {
    message: String,
    throttling: bool,
    code: Option<String>,
    #[source]
    source: Option<Box<dyn StdError + Send + Sync>>,
}

impl PersistenceError {
    /// A failure described by `message` alone (not throttling, no source).
    pub fn new(message: impl Into<String>) -> Self {
        PersistenceError {
            message: message.into(),
            throttling: false,
            code: None,
            source: None,
        }
    }

    /// The same failure, caused by `source`.
    #[must_use]
    pub fn with_source(mut self, source: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// The same failure, marked as throttling (or not). Stores set it when the backend refused
    /// for capacity or contention, so that callers can back off instead of raising an alarm.
    #[must_use]
    pub fn with_throttling(mut self, throttling: bool) -> Self {
        self.throttling = throttling;
        self
    }

    /// The same failure with the service's error code (`ValidationException`, ...), which
    /// [`PersistenceError::class`] reads.
    #[must_use]
    pub fn with_code(mut self, code: Option<&str>) -> Self {
        self.code = code.map(str::to_string);
        self
    }

    /// What failed, as text.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The service's error code, when the store got one.
    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }

    /// Whether retrying can help ([`crate::aws::errors`]): a `ValidationException` (an item over
    /// 400 KB, a key over 2 048 bytes) is permanent, throttling and failures without a code are
    /// transient.
    pub fn class(&self) -> crate::aws::errors::ErrorClass {
        if self.throttling {
            return crate::aws::errors::ErrorClass::Transient;
        }
        crate::aws::errors::classify_code(self.code())
    }

    /// Whether the store refused for capacity or contention: DynamoDB's
    /// `ProvisionedThroughputExceededException`, `ThrottlingException`, `RequestLimitExceeded`,
    /// or a transaction that kept colliding with others (`TransactionConflict`,
    /// `TransactionInProgressException`). Retrying later helps; the request itself was fine.
    pub fn is_throttling(&self) -> bool {
        self.throttling
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn the_source_and_the_throttling_flag_survive_the_wrapping() {
        let io = std::io::Error::other("slow down");
        let err: IdempotencyError<std::io::Error> = PersistenceError::new("PutItem: slow down")
            .with_source(io)
            .with_throttling(true)
            .into();
        assert!(err.is_throttling());
        assert_eq!(err.to_string(), "idempotency store: PutItem: slow down");
        let persistence = err.source().expect("the persistence error");
        assert_eq!(
            persistence.source().map(ToString::to_string).as_deref(),
            Some("slow down")
        );
        let handler = IdempotencyError::Handler(std::io::Error::other("no"));
        assert!(!handler.is_throttling());
    }
}
