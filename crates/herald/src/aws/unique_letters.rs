//! Dead letters of the same record are sent once, however often the record is delivered.
//!
//! A record is delivered again when its batch is retried: a router batch after a crash or a
//! later record's failure, an SQS message after a visibility timeout. Poison in it would be
//! dead-lettered on each delivery, and an operator redriving the queue would see phantom work.
//! [`UniqueDeadLetters`] wraps any [`DeadLetters`] and keeps a ledger entry per letter key in the
//! idempotency table (`<prefix>#deadletter#<sha256>`, same TTL as idempotency records, so it
//! outlives the dead letter): a conditional `PutItem` claims the key before sending, a second
//! `PutItem` marks it sent. A delivery that finds the key sent reports success without sending.
//!
//! The key is where the record was read: the stream ARN and `shardId:sequenceNumber` of a Kinesis
//! record, the queue ARN and message id of an SQS message ([`letter_key`]). A redrive makes a new
//! record (new sequence number, new message id), so a record that fails again after a redrive is
//! dead-lettered again rather than lost.
//!
//! Costs: two writes and at most one read per dead letter (none on the happy path). If the
//! ledger cannot be reached the letter is sent anyway: a duplicate is better than a loss.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::AttributeValue;
use sha2::{Digest, Sha256};

use crate::aws::dead_letter::{letter_identity, DeadLetter, DeadLetterError, DeadLetters};
use crate::aws::AwsError;
use crate::aws::Deadline;
use crate::aws::RecordTables;

/// What a claim on a letter key found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// This delivery sends the letter.
    Mine,
    /// The letter was sent before: nothing to send.
    AlreadySent,
    /// Another delivery is sending it right now: retry later.
    Busy,
}

/// The ledger port: which letter keys were sent.
pub trait LetterLedger: Send + Sync {
    /// Claim `key` for `lease` (a claim older than that, never settled, can be taken over).
    fn claim(
        &self,
        key: &str,
        lease: Duration,
    ) -> impl Future<Output = Result<Claim, AwsError>> + Send;
    /// Record the outcome of a claim: sent, or released for another try.
    fn settle(&self, key: &str, sent: bool) -> impl Future<Output = Result<(), AwsError>> + Send;
}

/// No ledger (a function without an idempotency table): every letter is sent.
impl<L: LetterLedger> LetterLedger for Option<L> {
    async fn claim(&self, key: &str, lease: Duration) -> Result<Claim, AwsError> {
        match self {
            Some(ledger) => ledger.claim(key, lease).await,
            None => Ok(Claim::Mine),
        }
    }

    async fn settle(&self, key: &str, sent: bool) -> Result<(), AwsError> {
        match self {
            Some(ledger) => ledger.settle(key, sent).await,
            None => Ok(()),
        }
    }
}

/// The key of a letter: its stage and where its record was read (see the module docs). `None`
/// when the origin names no record (then the letter is always sent).
pub fn letter_key(letter: &DeadLetter) -> Option<String> {
    let identity = letter_identity(&letter.stage, &letter.origin)?;
    Some(format!(
        "{}#deadletter#{}",
        letter.stage,
        hex::encode(Sha256::digest(identity))
    ))
}

/// [`DeadLetters`] that sends each letter key once.
pub struct UniqueDeadLetters<D, L> {
    inner: D,
    ledger: L,
    lease: Duration,
    margin: Duration,
}

/// Time a send leaves before the invocation's deadline ([`crate::aws::Deadline`]) to record its
/// outcome: a send still waiting then is given up and its claim released, so the next delivery
/// sends the letter at once instead of finding it claimed for the whole lease. More than the
/// router's own margin, so the ledger is settled before the router stops waiting.
pub const SEND_MARGIN: Duration = Duration::from_millis(1500);

impl<D: DeadLetters, L: LetterLedger> UniqueDeadLetters<D, L> {
    /// Wrap `inner`; claims last 60 s (longer than one `SendMessage`).
    pub fn new(inner: D, ledger: L) -> Self {
        UniqueDeadLetters {
            inner,
            ledger,
            lease: Duration::from_secs(60),
            margin: SEND_MARGIN,
        }
    }

    async fn send_one(&self, letter: &DeadLetter) -> Result<(), DeadLetterError> {
        let Some(key) = letter_key(letter) else {
            return self.send_inner(letter).await;
        };
        match self.ledger.claim(&key, self.lease).await {
            Ok(Claim::AlreadySent) => {
                tracing::info!(%key, reason = %letter.reason, "already dead-lettered: not sent again");
                Ok(())
            }
            Ok(Claim::Busy) => Err(DeadLetterError::other(
                "another delivery of this record is dead-lettering it",
            )),
            Ok(Claim::Mine) => {
                let sent = self.send_inner(letter).await;
                if let Err(err) = self.ledger.settle(&key, sent.is_ok()).await {
                    tracing::warn!(%key, error = %err, "could not record the dead letter in the ledger");
                }
                sent
            }
            Err(err) => {
                tracing::warn!(%key, error = %err, "dead-letter ledger unavailable: sending anyway");
                self.send_inner(letter).await
            }
        }
    }

    async fn send_inner(&self, letter: &DeadLetter) -> Result<(), DeadLetterError> {
        Deadline::current()
            .run(self.margin, self.inner.send(std::slice::from_ref(letter)))
            .await
            .map_err(|_| {
                DeadLetterError::other(
                    "the dead-letter queue did not answer before the invocation's deadline",
                )
            })?
            .pop()
            .unwrap_or_else(|| Err(DeadLetterError::other("no result for the letter")))
    }
}

impl<D: DeadLetters, L: LetterLedger> DeadLetters for UniqueDeadLetters<D, L> {
    async fn send(&self, letters: &[DeadLetter]) -> Vec<Result<(), DeadLetterError>> {
        futures::future::join_all(letters.iter().map(|l| self.send_one(l))).await
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// The ledger in a DynamoDB table shaped like the idempotency table (partition key `pk`, TTL on
/// `expiresAt`); only `PutItem` and `GetItem`, on keys starting with the stage's prefix.
#[derive(Clone, Debug)]
pub struct DynamoDbLetterLedger {
    client: aws_sdk_dynamodb::Client,
    tables: RecordTables,
    ttl: Duration,
}

impl DynamoDbLetterLedger {
    /// Entries in `table_name` (or spread like the records over several, separated by commas:
    /// [`RecordTables`]), kept for `ttl` (use the idempotency records' TTL).
    pub fn new(
        client: aws_sdk_dynamodb::Client,
        table_name: impl AsRef<str>,
        ttl: Duration,
    ) -> Self {
        DynamoDbLetterLedger {
            client,
            tables: RecordTables::parse(table_name.as_ref()),
            ttl,
        }
    }

    fn item(&self, key: &str, state: &str, until: u64) -> HashMap<String, AttributeValue> {
        HashMap::from([
            ("pk".to_string(), AttributeValue::S(key.to_string())),
            ("state".to_string(), AttributeValue::S(state.to_string())),
            ("until".to_string(), AttributeValue::N(until.to_string())),
            (
                "expiresAt".to_string(),
                AttributeValue::N((now_secs() + self.ttl.as_secs()).to_string()),
            ),
        ])
    }
}

impl LetterLedger for DynamoDbLetterLedger {
    async fn claim(&self, key: &str, lease: Duration) -> Result<Claim, AwsError> {
        let now = now_secs();
        let result = self
            .client
            .put_item()
            .table_name(self.tables.for_key(key))
            .set_item(Some(self.item(key, "sending", now + lease.as_secs())))
            .condition_expression("attribute_not_exists(pk) OR (#s = :sending AND #u < :now)")
            .expression_attribute_names("#s", "state")
            .expression_attribute_names("#u", "until")
            .expression_attribute_values(":sending", AttributeValue::S("sending".into()))
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Claim::Mine),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                let item = self
                    .client
                    .get_item()
                    .table_name(self.tables.for_key(key))
                    .key("pk", AttributeValue::S(key.to_string()))
                    .consistent_read(true)
                    .send()
                    .await
                    .map_err(AwsError::new)?
                    .item;
                let sent = item
                    .as_ref()
                    .and_then(|i| i.get("state"))
                    .and_then(|s| s.as_s().ok())
                    .is_some_and(|s| s == "sent");
                Ok(if sent {
                    Claim::AlreadySent
                } else {
                    Claim::Busy
                })
            }
            Err(err) => Err(AwsError::new(err)),
        }
    }

    async fn settle(&self, key: &str, sent: bool) -> Result<(), AwsError> {
        let item = if sent {
            self.item(key, "sent", 0)
        } else {
            // Released: the next delivery's claim finds an expired lease.
            self.item(key, "sending", 0)
        };
        self.client
            .put_item()
            .table_name(self.tables.for_key(key))
            .set_item(Some(item))
            .send()
            .await
            .map(|_| ())
            .map_err(AwsError::new)
    }
}

/// The ledger in memory (tests, local tools).
#[derive(Debug, Default)]
pub struct InMemoryLetterLedger {
    entries: Mutex<HashMap<String, (bool, u64)>>,
}

impl LetterLedger for InMemoryLetterLedger {
    async fn claim(&self, key: &str, lease: Duration) -> Result<Claim, AwsError> {
        let now = now_secs();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match entries.get(key) {
            Some((true, _)) => Ok(Claim::AlreadySent),
            Some((false, until)) if *until >= now => Ok(Claim::Busy),
            _ => {
                entries.insert(key.to_string(), (false, now + lease.as_secs()));
                Ok(Claim::Mine)
            }
        }
    }

    async fn settle(&self, key: &str, sent: bool) -> Result<(), AwsError> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.insert(key.to_string(), (sent, 0));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::dead_letter::testing::Letters;

    fn router_letter(sequence: &str) -> DeadLetter {
        DeadLetter::new(b"not json", "router", "poison")
            .with_origin("eventSourceARN", "arn:aws:kinesis:us-east-1:1:stream/s")
            .with_origin("eventID", format!("shardId-000000000000:{sequence}"))
    }

    struct Failing;
    impl DeadLetters for Failing {
        async fn send(&self, letters: &[DeadLetter]) -> Vec<Result<(), DeadLetterError>> {
            letters
                .iter()
                .map(|_| Err(DeadLetterError::other("queue unavailable")))
                .collect()
        }
    }

    #[tokio::test]
    async fn the_same_record_delivered_twice_is_dead_lettered_once() {
        let letters = UniqueDeadLetters::new(Letters::default(), InMemoryLetterLedger::default());
        for _ in 0..2 {
            let sent = letters
                .send(&[router_letter("7"), router_letter("8")])
                .await;
            assert!(sent.iter().all(Result::is_ok));
        }
        assert_eq!(letters.inner.0.lock().unwrap().len(), 2);
        // A redriven record has a new sequence number: a new letter.
        letters.send(&[router_letter("9")]).await;
        assert_eq!(letters.inner.0.lock().unwrap().len(), 3);
    }

    #[tokio::test]
    async fn a_failed_send_releases_the_key_for_the_retry() {
        let ledger = InMemoryLetterLedger::default();
        let failing = UniqueDeadLetters::new(Failing, ledger);
        assert!(failing.send(&[router_letter("7")]).await[0].is_err());
        let letters = UniqueDeadLetters::new(Letters::default(), failing.ledger);
        assert!(letters.send(&[router_letter("7")]).await[0].is_ok());
        assert_eq!(letters.inner.0.lock().unwrap().len(), 1);
    }

    /// A queue that never answers.
    struct Hung;
    impl DeadLetters for Hung {
        async fn send(&self, _: &[DeadLetter]) -> Vec<Result<(), DeadLetterError>> {
            std::future::pending().await
        }
    }

    #[tokio::test]
    async fn a_send_still_hanging_near_the_deadline_is_given_up_and_its_claim_released() {
        let hung = UniqueDeadLetters::new(Hung, InMemoryLetterLedger::default());
        let sent = Deadline::after(SEND_MARGIN + Duration::from_millis(50))
            .scope(hung.send(&[router_letter("7")]))
            .await;
        assert!(sent[0].is_err(), "given up, not hanging");
        // The retry sends it at once: the claim was released, not left for its 60 s lease.
        let letters = UniqueDeadLetters::new(Letters::default(), hung.ledger);
        assert!(letters.send(&[router_letter("7")]).await[0].is_ok());
        assert_eq!(letters.inner.0.lock().unwrap().len(), 1);
    }

    #[test]
    fn keys_name_the_stage_and_the_record() {
        let a = letter_key(&router_letter("7")).unwrap();
        assert!(a.starts_with("router#deadletter#"));
        assert_ne!(a, letter_key(&router_letter("8")).unwrap());
        let mut other_stage = router_letter("7");
        other_stage.stage = "inventory".into();
        assert_ne!(a, letter_key(&other_stage).unwrap());
        assert_eq!(letter_key(&DeadLetter::new(b"x", "router", "r")), None);
    }
}
