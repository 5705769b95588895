//! Dead letters: a record herald will not process, sent to a queue together with the reason.
//!
//! A poison record (not JSON, not an envelope, data that does not match its type) cannot succeed
//! on retry, and retrying it would hold up its shard or queue. The router and the subscribers send
//! such records straight to their dead-letter queue with the reason as message attributes, so an
//! operator sees *why* (`herald dlq show`) and can send them back after a fix.

use std::collections::BTreeMap;
use std::future::Future;

use base64::Engine;
use sha2::{Digest, Sha256};

use crate::aws::AwsError;

use crate::aws::limits::SQS_MAX_MESSAGE_BYTES;

mod sqs;

pub use sqs::SqsDeadLetters;

/// Message attribute names on a dead letter.
pub mod attr {
    /// Why the record was rejected.
    pub const REASON: &str = "herald.reason";
    /// The attribute the reason is about (`type`, `data`, ...), when there is one.
    pub const FIELD: &str = "herald.field";
    /// Which function rejected it (`router`, `welcome`, ...).
    pub const STAGE: &str = "herald.stage";
    /// `utf8` (the body is the record as it was) or `base64` (the record was not UTF-8, or held
    /// characters SQS refuses).
    pub const ENCODING: &str = "herald.encoding";
    /// Where it came from: JSON with the source ARN, shard, sequence number or message id.
    pub const ORIGIN: &str = "herald.origin";
    /// When it was dead-lettered (RFC 3339).
    pub const FAILED_AT: &str = "herald.failed_at";
    /// Set when the body had to be cut to fit a queue message: JSON with the original's size
    /// and SHA-256 (`{"originalBytes":…,"sha256":"…"}`); the origin tells where the whole record
    /// can still be read (a stream keeps it for its retention period).
    pub const TRUNCATED: &str = "herald.truncated";
}

/// The encodings a dead letter's body may have (the `herald.encoding` attribute).
pub mod encoding {
    /// The body is the record itself.
    pub const UTF8: &str = "utf8";
    /// The body is the record in standard base64.
    pub const BASE64: &str = "base64";
}

/// A record herald gives up on, with its reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    /// The record as it was read, or base64 (see `base64`) when it was not UTF-8 or held
    /// characters SQS refuses.
    pub body: String,
    /// Whether `body` is base64.
    pub base64: bool,
    /// Whether `body` was cut to fit a queue message.
    pub truncated: bool,
    /// The record's size in bytes, before any encoding or cut.
    pub original_bytes: usize,
    /// SHA-256 of the record (hex): what a copy found elsewhere must match.
    pub sha256: String,
    /// Why (characters SQS refuses escaped, at most [`MAX_REASON_CHARS`]).
    pub reason: String,
    /// The attribute the reason is about.
    pub field: Option<String>,
    /// Which function gave up.
    pub stage: String,
    /// Where the record came from.
    pub origin: BTreeMap<String, String>,
}

/// The largest body a dead letter carries: SQS's 256 KiB message limit (which every queue
/// accepts) less room for the attributes (reason, origin, ... at most ~12 KiB).
pub const MAX_DEAD_LETTER_BODY: usize = SQS_MAX_MESSAGE_BYTES - 16 * 1024;

/// The longest reason, field and origin value kept (in characters); longer ones are cut.
pub const MAX_REASON_CHARS: usize = 1024;
/// The longest field name or origin value kept (in characters).
pub const MAX_ATTRIBUTE_VALUE_CHARS: usize = 256;

/// Whether SQS accepts `c` in a message body or string attribute: `#x9 | #xA | #xD |
/// #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF` (unpaired surrogates cannot be in a `str`).
pub fn sqs_accepts(c: char) -> bool {
    matches!(c, '\u{9}' | '\u{A}' | '\u{D}' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Whether SQS accepts all of `text`.
pub fn sqs_accepts_text(text: &str) -> bool {
    text.chars().all(sqs_accepts)
}

/// `text` with every character SQS refuses written as `\u{..}`, cut to `max_chars` characters.
pub fn sqs_safe(text: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_chars * 4));
    for (i, c) in text.chars().enumerate() {
        if i == max_chars {
            out.push('…');
            break;
        }
        if sqs_accepts(c) {
            out.push(c);
        } else {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        }
    }
    out
}

impl DeadLetter {
    /// A dead letter for `record`, kept as text when it is UTF-8 that SQS accepts, as base64
    /// otherwise, and cut to [`MAX_DEAD_LETTER_BODY`] when it does not fit.
    pub fn new(record: &[u8], stage: &str, reason: impl Into<String>) -> Self {
        let (mut body, base64) = match std::str::from_utf8(record) {
            Ok(text) if sqs_accepts_text(text) => (text.to_string(), false),
            _ => (
                base64::engine::general_purpose::STANDARD.encode(record),
                true,
            ),
        };
        let truncated = body.len() > MAX_DEAD_LETTER_BODY;
        if truncated {
            // base64 is cut at a multiple of 4 so that what is kept still decodes.
            let mut cut = if base64 {
                MAX_DEAD_LETTER_BODY / 4 * 4
            } else {
                MAX_DEAD_LETTER_BODY
            };
            while !body.is_char_boundary(cut) {
                cut -= 1;
            }
            body.truncate(cut);
        }
        DeadLetter {
            body,
            base64,
            truncated,
            original_bytes: record.len(),
            sha256: hex::encode(Sha256::digest(record)),
            reason: sqs_safe(&reason.into(), MAX_REASON_CHARS),
            field: None,
            stage: sqs_safe(stage, MAX_ATTRIBUTE_VALUE_CHARS),
            origin: BTreeMap::new(),
        }
    }

    /// Name the attribute the reason is about.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(sqs_safe(&field.into(), MAX_ATTRIBUTE_VALUE_CHARS));
        self
    }

    /// Add an origin entry (`eventSourceARN`, `sequenceNumber`, `messageId`, ...).
    pub fn with_origin(mut self, key: &str, value: impl Into<String>) -> Self {
        self.origin.insert(
            sqs_safe(key, MAX_ATTRIBUTE_VALUE_CHARS),
            sqs_safe(&value.into(), MAX_ATTRIBUTE_VALUE_CHARS),
        );
        self
    }

    /// The `herald.encoding` value of this letter.
    pub fn encoding(&self) -> &'static str {
        if self.base64 {
            encoding::BASE64
        } else {
            encoding::UTF8
        }
    }

    /// The `herald.truncated` value: the original's size and hash, when the body was cut.
    pub fn truncated_attribute(&self) -> Option<String> {
        self.truncated.then(|| {
            serde_json::json!({"originalBytes": self.original_bytes, "sha256": self.sha256})
                .to_string()
        })
    }

    /// The message body to send: SQS refuses empty bodies, so an empty record is one space.
    pub fn message_body(&self) -> &str {
        if self.body.is_empty() {
            " "
        } else {
            &self.body
        }
    }

    /// The string message attributes of this letter, by name (all but `herald.failed_at`,
    /// which is stamped when it is sent).
    pub fn attributes(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![
            (attr::REASON, self.reason.clone()),
            (attr::STAGE, self.stage.clone()),
            (attr::ENCODING, self.encoding().to_string()),
            (
                attr::ORIGIN,
                serde_json::to_string(&self.origin).unwrap_or_default(),
            ),
        ];
        if let Some(field) = &self.field {
            out.push((attr::FIELD, field.clone()));
        }
        if let Some(truncated) = self.truncated_attribute() {
            out.push((attr::TRUNCATED, truncated));
        }
        // SQS refuses an empty attribute value.
        out.retain(|(_, value)| !value.is_empty());
        out
    }

    /// Bytes SQS counts against its message limit: the body and every attribute's name, data
    /// type (`String`) and value, with room for `herald.failed_at`.
    pub fn message_bytes(&self) -> usize {
        let failed_at = attr::FAILED_AT.len() + "String".len() + "2026-01-01T00:00:00.000Z".len();
        self.message_body().len()
            + failed_at
            + self
                .attributes()
                .iter()
                .map(|(name, value)| name.len() + "String".len() + value.len())
                .sum::<usize>()
    }
}

/// Which record a dead letter is about: its stage and where the record was read (the stream or
/// queue ARN and the record's `eventID`, `sequenceNumber` or `messageId` in its origin). `None`
/// when the origin names no record.
///
/// Two messages with one identity are copies of one letter: the ledger
/// ([`crate::aws::unique_letters`]) sends each letter once, but a `SendMessage` whose answer was lost
/// after SQS stored the message is retried, and a standard queue keeps both. A redrive sends
/// one of them back.
pub fn letter_identity(stage: &str, origin: &BTreeMap<String, String>) -> Option<String> {
    let record = origin
        .get("eventID")
        .or_else(|| origin.get("sequenceNumber"))
        .or_else(|| origin.get("messageId"))?;
    let source = origin
        .get("eventSourceARN")
        .map(String::as_str)
        .unwrap_or("");
    Some(format!("{stage}\n{source}\n{record}"))
}

/// [`letter_identity`] of a received dead letter, from its `herald.stage` and `herald.origin`
/// attributes.
pub fn received_letter_identity(stage: Option<&str>, origin: Option<&str>) -> Option<String> {
    let origin: BTreeMap<String, String> = serde_json::from_str(origin?).ok()?;
    letter_identity(stage?, &origin)
}

/// A dead letter's body could not be turned back into the record.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// `herald.encoding` names an encoding herald does not write.
    #[error("herald.encoding is \"{0}\"; expected \"utf8\" or \"base64\"")]
    UnknownEncoding(String),
    /// The body is not valid base64.
    #[error("the body is not valid base64: {0}")]
    Base64(String),
    /// The body was cut to fit a queue message: the whole record must be read from its origin.
    #[error("the dead letter holds a truncated record ({0}); read the whole record from its origin (herald.origin)")]
    Truncated(String),
}

/// The record a dead letter holds, from its body and its `herald.encoding` and
/// `herald.truncated` attributes (what `herald dlq redrive` sends back).
pub fn decode_body(
    body: &str,
    encoding: Option<&str>,
    truncated: Option<&str>,
) -> Result<Vec<u8>, DecodeError> {
    if let Some(truncated) = truncated.filter(|t| !t.is_empty() && *t != "false") {
        return Err(DecodeError::Truncated(truncated.to_string()));
    }
    match encoding.unwrap_or(encoding::UTF8) {
        encoding::UTF8 => Ok(body.as_bytes().to_vec()),
        encoding::BASE64 => base64::engine::general_purpose::STANDARD
            .decode(body.trim())
            .map_err(|e| DecodeError::Base64(e.to_string())),
        other => Err(DecodeError::UnknownEncoding(sqs_safe(other, 64))),
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What SQS would refuse in a letter: a character it rejects anywhere, or the whole message
    /// over its limit.
    fn sqs_refusal(letter: &DeadLetter) -> Option<String> {
        if !sqs_accepts_text(letter.message_body()) {
            return Some("body".into());
        }
        for (name, value) in letter.attributes() {
            if !sqs_accepts_text(&value) {
                return Some(name.into());
            }
        }
        (letter.message_bytes() > SQS_MAX_MESSAGE_BYTES)
            .then(|| format!("{} bytes", letter.message_bytes()))
    }

    fn decode(letter: &DeadLetter) -> Result<Vec<u8>, DecodeError> {
        let attrs = letter.attributes();
        let get = |name: &str| {
            attrs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_str())
        };
        decode_body(&letter.body, get(attr::ENCODING), get(attr::TRUNCATED))
    }

    #[test]
    fn control_characters_are_sent_as_base64_and_come_back_as_they_were() {
        for record in [
            "{\"type\":\"x\u{0}\"}".as_bytes(),
            "bell \u{7} and escape \u{1b}".as_bytes(),
            "form feed \u{c}, vertical tab \u{b}".as_bytes(),
            "not a character: \u{fffe}\u{ffff}".as_bytes(),
            b"\xed\xa0\x80 (an unpaired surrogate, as CESU-8 writes it)",
            b"\xff\xfe not UTF-8",
        ] {
            let letter = DeadLetter::new(record, "router", "bad \u{1} reason\u{0}");
            assert!(letter.base64, "{record:?}");
            assert_eq!(sqs_refusal(&letter), None);
            assert_eq!(decode(&letter).unwrap(), record);
            assert_eq!(letter.reason, "bad \\u{1} reason\\u{0}");
        }
        // Tabs, newlines and carriage returns are fine as they are.
        let letter = DeadLetter::new(b"a\tb\nc\rd", "router", "r");
        assert!(!letter.base64);
        assert_eq!(letter.body, "a\tb\nc\rd");
    }

    #[test]
    fn an_oversized_record_is_cut_to_fit_and_names_the_original() {
        let record = vec![b'x'; 300 * 1024];
        let letter = DeadLetter::new(&record, "router", "too big")
            .with_origin("eventID", "shardId-000000000000:42");
        assert!(letter.truncated);
        assert_eq!(sqs_refusal(&letter), None);
        assert!(letter.body.len() <= MAX_DEAD_LETTER_BODY);
        let truncated: serde_json::Value =
            serde_json::from_str(&letter.truncated_attribute().unwrap()).unwrap();
        assert_eq!(truncated["originalBytes"], 300 * 1024);
        assert_eq!(truncated["sha256"], hex::encode(Sha256::digest(&record)));
        assert!(matches!(decode(&letter), Err(DecodeError::Truncated(_))));
        // Oversized and binary: what is kept is still whole base64 groups.
        let binary = vec![0u8; 300 * 1024];
        let letter = DeadLetter::new(&binary, "router", "too big");
        assert!(letter.base64 && letter.truncated);
        assert_eq!(letter.body.len() % 4, 0);
        assert_eq!(sqs_refusal(&letter), None);
    }

    #[test]
    fn the_longest_reason_and_origin_still_fit() {
        let wide = "\u{10348}".repeat(5000);
        let mut letter =
            DeadLetter::new(&vec![b'y'; 1024 * 1024], &wide, wide.clone()).with_field(wide.clone());
        for key in [
            "eventSourceARN",
            "eventID",
            "sequenceNumber",
            "partitionKey",
            "messageId",
        ] {
            letter = letter.with_origin(key, wide.clone());
        }
        assert_eq!(sqs_refusal(&letter), None);
    }

    #[test]
    fn an_unknown_encoding_or_bad_base64_is_a_named_error() {
        assert!(matches!(
            decode_body("x", Some("gzip"), None),
            Err(DecodeError::UnknownEncoding(_))
        ));
        assert!(matches!(
            decode_body("!!", Some("base64"), None),
            Err(DecodeError::Base64(_))
        ));
        assert_eq!(decode_body("x", None, Some("false")).unwrap(), b"x");
    }

    proptest! {
        #[test]
        fn any_record_makes_a_letter_sqs_accepts_and_redrive_restores(
            record in proptest::collection::vec(any::<u8>(), 0..2048),
            text in ".{0,64}",
            reason in any::<String>(),
        ) {
            for record in [record.clone(), text.clone().into_bytes()] {
                let letter = DeadLetter::new(&record, "stage", reason.clone())
                    .with_field(reason.clone())
                    .with_origin("partitionKey", text.clone());
                prop_assert_eq!(sqs_refusal(&letter), None);
                prop_assert_eq!(decode(&letter).unwrap(), record);
            }
        }
    }
}
