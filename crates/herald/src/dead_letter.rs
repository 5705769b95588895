//! Dead letters: a record herald will not process, sent to a queue together with the reason.
//!
//! A poison record (not JSON, not an envelope, data that does not match its type) cannot succeed
//! on retry, and retrying it would hold up its shard or queue. The router and the subscribers send
//! such records straight to their dead-letter queue with the reason as message attributes, so an
//! operator sees *why* (`herald dlq show`) and can send them back after a fix.

use std::collections::BTreeMap;
use std::future::Future;

use base64::Engine;

use crate::aws::AwsError;
use crate::limits::SNS_MAX_PAYLOAD_BYTES;

/// Message attribute names on a dead letter.
pub mod attr {
    /// Why the record was rejected.
    pub const REASON: &str = "herald.reason";
    /// The attribute the reason is about (`type`, `data`, ...), when there is one.
    pub const FIELD: &str = "herald.field";
    /// Which function rejected it (`router`, `welcome`, ...).
    pub const STAGE: &str = "herald.stage";
    /// `utf8` (the body is the record as it was) or `base64` (the record was not UTF-8).
    pub const ENCODING: &str = "herald.encoding";
    /// Where it came from: JSON with the source ARN, shard, sequence number or message id.
    pub const ORIGIN: &str = "herald.origin";
    /// When it was dead-lettered (RFC 3339).
    pub const FAILED_AT: &str = "herald.failed_at";
    /// Set when the body had to be cut to fit a queue message; the origin tells where the whole
    /// record can still be read (the stream keeps it for its retention period).
    pub const TRUNCATED: &str = "herald.truncated";
}

/// A record herald gives up on, with its reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    /// The record as it was read (or base64 when it was not UTF-8; see `base64`).
    pub body: String,
    /// Whether `body` is base64.
    pub base64: bool,
    /// Whether `body` was cut to fit a queue message.
    pub truncated: bool,
    /// Why.
    pub reason: String,
    /// The attribute the reason is about.
    pub field: Option<String>,
    /// Which function gave up.
    pub stage: String,
    /// Where the record came from.
    pub origin: BTreeMap<String, String>,
}

/// The largest body a dead letter carries (SQS's classic 256 KiB message limit less room for
/// the reason attributes).
pub const MAX_DEAD_LETTER_BODY: usize = SNS_MAX_PAYLOAD_BYTES - 8 * 1024;

impl DeadLetter {
    /// A dead letter for `record`, keeping it as text when it is UTF-8.
    pub fn new(record: &[u8], stage: &str, reason: impl Into<String>) -> Self {
        let (mut body, base64) = match std::str::from_utf8(record) {
            Ok(text) => (text.to_string(), false),
            Err(_) => (
                base64::engine::general_purpose::STANDARD.encode(record),
                true,
            ),
        };
        let truncated = body.len() > MAX_DEAD_LETTER_BODY;
        if truncated {
            let mut cut = MAX_DEAD_LETTER_BODY;
            while !body.is_char_boundary(cut) {
                cut -= 1;
            }
            body.truncate(cut);
        }
        DeadLetter {
            body,
            base64,
            truncated,
            reason: reason.into(),
            field: None,
            stage: stage.to_string(),
            origin: BTreeMap::new(),
        }
    }

    /// Name the attribute the reason is about.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// Add an origin entry (`eventSourceARN`, `sequenceNumber`, `messageId`, ...).
    pub fn with_origin(mut self, key: &str, value: impl Into<String>) -> Self {
        self.origin.insert(key.to_string(), value.into());
        self
    }
}

/// A dead letter could not be sent; the caller must then fail the record instead of dropping it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("could not dead-letter the record: {0}")]
pub struct DeadLetterError(#[from] pub AwsError);

impl DeadLetterError {
    /// A failure described by text alone (test doubles, unexpected answers).
    pub fn other(text: impl Into<String>) -> Self {
        DeadLetterError(AwsError::other(text))
    }
}

/// The dead-letter port: one result per letter, in order.
pub trait DeadLetters: Send + Sync {
    /// Send the letters.
    fn send(
        &self,
        letters: &[DeadLetter],
    ) -> impl Future<Output = Vec<Result<(), DeadLetterError>>> + Send;
}

/// Test doubles shared by the unit tests of the router and the subscribers.
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::Mutex;

    use super::{DeadLetter, DeadLetterError, DeadLetters};

    /// Keeps every dead letter it is sent.
    #[derive(Default)]
    pub(crate) struct Letters(pub(crate) Mutex<Vec<DeadLetter>>);

    impl DeadLetters for Letters {
        async fn send(&self, letters: &[DeadLetter]) -> Vec<Result<(), DeadLetterError>> {
            self.0.lock().unwrap().extend_from_slice(letters);
            letters.iter().map(|_| Ok(())).collect()
        }
    }
}
