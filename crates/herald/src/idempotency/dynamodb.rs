//! [`DynamoDbStore`]: records in a DynamoDB table, one request per store call (conditional
//! `PutItem` claims and completions, `DeleteItem` releases, consistent `GetItem`, one
//! `TransactWriteItems` for records with their effects, and an eventually consistent
//! `BatchGetItem` to read a batch's records ahead of its commit, in this table or, for records
//! kept in effects' items, in theirs). Records may be spread over several tables
//! ([`RecordTables`]): each call goes to its key's table.

use std::collections::HashMap;
use std::fmt;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, KeysAndAttributes, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};
use aws_sdk_dynamodb::Client;
use futures::future::BoxFuture;
use futures::FutureExt;

use super::error::PersistenceError;
use super::keyed::Item;
use super::record::{attr, IdempotencyRecord, RecordStatus};
use super::store::{BatchCommitOutcome, ClaimOutcome, CommitOutcome, IdempotencyStore};
use crate::aws::error_text;
use crate::aws::RecordTables;

/// Records in DynamoDB tables (partition key `pk`, string; TTL on `expiresAt`): one table, or
/// several sharing the records by key ([`RecordTables`]).
#[derive(Clone)]
pub struct DynamoDbStore {
    client: Client,
    tables: RecordTables,
}

impl fmt::Debug for DynamoDbStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynamoDbStore")
            .field("tables", &self.tables)
            .finish_non_exhaustive()
    }
}

impl DynamoDbStore {
    /// Records in `table_name` through `client`: one table, or several separated by commas
    /// ([`RecordTables::parse`]).
    pub fn new(client: Client, table_name: impl AsRef<str>) -> Self {
        DynamoDbStore {
            client,
            tables: RecordTables::parse(table_name.as_ref()),
        }
    }

    async fn put_claim(
        &self,
        record: &IdempotencyRecord,
        now_ms: i64,
    ) -> Result<ClaimOutcome, PersistenceError> {
        let result = self
            .client
            .put_item()
            .table_name(self.tables.for_key(&record.key))
            .set_item(Some(to_item(record)))
            .condition_expression(CLAIM_CONDITION)
            .set_expression_attribute_names(Some(claim_names()))
            .set_expression_attribute_values(Some(claim_values(now_ms)))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(ClaimOutcome::Claimed),
            Err(SdkError::ServiceError(service)) => {
                if let PutItemError::ConditionalCheckFailedException(failed) = service.err() {
                    // Some emulators leave the old item out; the caller reads it then.
                    let old = failed.item().map(|item| from_item(&record.key, item));
                    return Ok(ClaimOutcome::Exists(old));
                }
                let err = service.into_err();
                Err(PersistenceError::new(error_text(&err))
                    .with_throttling(err.code().is_some_and(crate::aws::is_throttling_code))
                    .with_code(err.code())
                    .with_source(err))
            }
            Err(err) => Err(sdk_error(err)),
        }
    }

    async fn put_completed(
        &self,
        record: &IdempotencyRecord,
        token: &str,
    ) -> Result<bool, PersistenceError> {
        let result = self
            .client
            .put_item()
            .table_name(self.tables.for_key(&record.key))
            .set_item(Some(to_item(record)))
            .condition_expression("#claim = :mine")
            .expression_attribute_names("#claim", attr::CLAIM)
            .expression_attribute_values(":mine", AttributeValue::S(token.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                Ok(false)
            }
            Err(err) => Err(sdk_error(err)),
        }
    }

    async fn delete_claim(&self, key: &str, token: &str) -> Result<bool, PersistenceError> {
        let result = self
            .client
            .delete_item()
            .table_name(self.tables.for_key(key))
            .key(attr::KEY, AttributeValue::S(key.to_string()))
            .condition_expression("#status = :inprogress AND #claim = :mine")
            .expression_attribute_names("#status", attr::STATUS)
            .expression_attribute_names("#claim", attr::CLAIM)
            .expression_attribute_values(
                ":inprogress",
                AttributeValue::S(RecordStatus::InProgress.as_str().into()),
            )
            .expression_attribute_values(":mine", AttributeValue::S(token.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                Ok(false)
            }
            Err(err) => Err(sdk_error(err)),
        }
    }

    async fn get_record(&self, key: &str) -> Result<Option<IdempotencyRecord>, PersistenceError> {
        self.client
            .get_item()
            .table_name(self.tables.for_key(key))
            .key(attr::KEY, AttributeValue::S(key.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map(|out| out.item.map(|item| from_item(key, &item)))
            .map_err(sdk_error)
    }

    /// The records at `keys`, eventually consistent (half a read unit each: a record is far
    /// under 4 KB), 100 keys per `BatchGetItem` across their tables. Keys DynamoDB leaves
    /// unprocessed are not read again: the commit that follows catches their duplicates anyway.
    async fn batch_get(
        &self,
        keys: &[String],
    ) -> Result<HashMap<String, IdempotencyRecord>, PersistenceError> {
        let wanted: Vec<(String, Item)> = keys
            .iter()
            .map(|key| {
                let item = HashMap::from([(attr::KEY.to_string(), AttributeValue::S(key.clone()))]);
                (self.tables.for_key(key).to_string(), item)
            })
            .collect();
        let mut found = HashMap::new();
        for item in self
            .batch_get_items(&wanted, false)
            .await?
            .into_iter()
            .flatten()
        {
            if let Some(key) = string(&item, attr::KEY) {
                let record = from_item(&key, &item);
                found.insert(key, record);
            }
        }
        Ok(found)
    }

    /// The items at `keys` (a table and a key each), 100 per `BatchGetItem` across their
    /// tables. Keys DynamoDB leaves unprocessed count as not found: a look-ahead that misses an
    /// item only costs the commit that finds it.
    async fn batch_get_items(
        &self,
        keys: &[(String, Item)],
        consistent: bool,
    ) -> Result<Vec<Option<Item>>, PersistenceError> {
        let mut found: Vec<Option<Item>> = vec![None; keys.len()];
        let limit = crate::aws::limits::DYNAMODB_MAX_BATCH_GET_KEYS;
        for (chunk_index, chunk) in keys.chunks(limit).enumerate() {
            let mut tables: HashMap<String, Vec<Item>> = HashMap::new();
            for (table, key) in chunk {
                let wanted = tables.entry(table.clone()).or_default();
                if !wanted.contains(key) {
                    wanted.push(key.clone());
                }
            }
            let mut request = self.client.batch_get_item();
            for (table, wanted) in tables {
                let wanted = KeysAndAttributes::builder()
                    .set_keys(Some(wanted))
                    .consistent_read(consistent)
                    .build()
                    .map_err(|e| PersistenceError::new(e.to_string()).with_source(e))?;
                request = request.request_items(table, wanted);
            }
            let out = request.send().await.map_err(sdk_error)?;
            for (table, items) in out.responses.unwrap_or_default() {
                for item in items {
                    for (i, (wanted_table, key)) in chunk.iter().enumerate() {
                        let matches = *wanted_table == table
                            && key
                                .iter()
                                .all(|(name, value)| item.get(name) == Some(value));
                        if matches {
                            found[chunk_index * limit + i] = Some(item.clone());
                        }
                    }
                }
            }
        }
        Ok(found)
    }

    async fn transact(
        &self,
        record: &IdempotencyRecord,
        effects: Vec<TransactWriteItem>,
        now_ms: i64,
    ) -> Result<CommitOutcome, PersistenceError> {
        Ok(
            match self
                .transact_many(std::slice::from_ref(record), effects, now_ms)
                .await?
            {
                BatchCommitOutcome::Committed => CommitOutcome::Committed,
                BatchCommitOutcome::RecordsExist(mut old) => {
                    CommitOutcome::RecordExists(old.pop().and_then(|(_, old)| old))
                }
                // Without reasons, the one record's condition is the likelier culprit: the
                // caller reads the record, and finding none reports the failure.
                BatchCommitOutcome::EffectFailed { index: None, .. } => {
                    CommitOutcome::RecordExists(None)
                }
                BatchCommitOutcome::EffectFailed {
                    index: Some(index), ..
                } => CommitOutcome::EffectFailed { index },
                BatchCommitOutcome::Collision(err) => CommitOutcome::Collision(err),
            },
        )
    }

    /// The records (each only where no record blocks it) and the effects in one
    /// `TransactWriteItems`, records first.
    async fn transact_many(
        &self,
        records: &[IdempotencyRecord],
        effects: Vec<TransactWriteItem>,
        now_ms: i64,
    ) -> Result<BatchCommitOutcome, PersistenceError> {
        let mut items = Vec::with_capacity(records.len() + effects.len());
        for record in records {
            let put = Put::builder()
                .table_name(self.tables.for_key(&record.key))
                .set_item(Some(to_item(record)))
                .condition_expression(CLAIM_CONDITION)
                .set_expression_attribute_names(Some(claim_names()))
                .set_expression_attribute_values(Some(claim_values(now_ms)))
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .build()
                .map_err(|e| PersistenceError::new(e.to_string()).with_source(e))?;
            items.push(TransactWriteItem::builder().put(put).build());
        }
        items.extend(effects);
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .customize()
            .config_override(quick_retries())
            .send()
            .await
        {
            Ok(_) => Ok(BatchCommitOutcome::Committed),
            Err(err) => match cancellation(&err, records.len()) {
                Some(Cancelled::RecordsExist(old)) => Ok(BatchCommitOutcome::RecordsExist(
                    old.into_iter()
                        .map(|(i, item)| (i, item.map(|item| from_item(&records[i].key, &item))))
                        .collect(),
                )),
                Some(Cancelled::Effect(index, item)) => {
                    Ok(BatchCommitOutcome::EffectFailed { index, item })
                }
                Some(Cancelled::Collision) => Ok(BatchCommitOutcome::Collision(
                    PersistenceError::new(error_text(&err))
                        .with_throttling(true)
                        .with_source(err),
                )),
                // A write DynamoDB refuses as invalid (an item over 400 KB, a key over 2 048
                // bytes) cancels the transaction with a `ValidationError` reason: permanent.
                None => {
                    let invalid = invalid_write(&err);
                    let err = sdk_error(err);
                    Err(match invalid {
                        Some(code) => err.with_code(Some(code)),
                        None => err,
                    })
                }
            },
        }
    }
}

impl IdempotencyStore for DynamoDbStore {
    fn claim<'a>(
        &'a self,
        record: &'a IdempotencyRecord,
        now_ms: i64,
    ) -> BoxFuture<'a, Result<ClaimOutcome, PersistenceError>> {
        self.put_claim(record, now_ms).boxed()
    }

    fn complete<'a>(
        &'a self,
        record: &'a IdempotencyRecord,
        token: &'a str,
    ) -> BoxFuture<'a, Result<bool, PersistenceError>> {
        self.put_completed(record, token).boxed()
    }

    fn release<'a>(
        &'a self,
        key: &'a str,
        token: &'a str,
    ) -> BoxFuture<'a, Result<bool, PersistenceError>> {
        self.delete_claim(key, token).boxed()
    }

    fn get<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<IdempotencyRecord>, PersistenceError>> {
        self.get_record(key).boxed()
    }

    fn get_many<'a>(
        &'a self,
        keys: &'a [String],
    ) -> BoxFuture<'a, Result<HashMap<String, IdempotencyRecord>, PersistenceError>> {
        self.batch_get(keys).boxed()
    }

    fn get_items<'a>(
        &'a self,
        keys: &'a [(String, Item)],
        consistent: bool,
    ) -> BoxFuture<'a, Result<Vec<Option<Item>>, PersistenceError>> {
        self.batch_get_items(keys, consistent).boxed()
    }

    fn commit<'a>(
        &'a self,
        record: &'a IdempotencyRecord,
        effects: Vec<TransactWriteItem>,
        now_ms: i64,
    ) -> BoxFuture<'a, Result<CommitOutcome, PersistenceError>> {
        self.transact(record, effects, now_ms).boxed()
    }

    fn commit_batch<'a>(
        &'a self,
        records: &'a [IdempotencyRecord],
        effects: Vec<TransactWriteItem>,
        now_ms: i64,
    ) -> BoxFuture<'a, Result<BatchCommitOutcome, PersistenceError>> {
        self.transact_many(records, effects, now_ms).boxed()
    }
}

/// The SDK's own retries of a transaction (5xx, throttling) wait at most 200 ms, not its default
/// of up to seconds: the caller holds its items' turn meanwhile
/// ([`Idempotency::run_transactional_until`](super::Idempotency::run_transactional_until)), and
/// longer waits belong to the caller's backoff, which lets the item go while it waits.
fn quick_retries() -> aws_sdk_dynamodb::config::Builder {
    aws_sdk_dynamodb::config::Builder::default().retry_config(
        aws_sdk_dynamodb::config::retry::RetryConfig::standard()
            .with_max_attempts(3)
            .with_initial_backoff(std::time::Duration::from_millis(25))
            .with_max_backoff(std::time::Duration::from_millis(200)),
    )
}

/// [`IdempotencyRecord::blocks_claim`] as a condition: a claim succeeds when the key is absent,
/// the record expired, or an INPROGRESS claim's time is up.
const CLAIM_CONDITION: &str =
    "attribute_not_exists(#pk) OR #expires < :now_s OR (#status = :inprogress AND #until < :now_ms)";

fn claim_names() -> HashMap<String, String> {
    HashMap::from([
        ("#pk".to_string(), attr::KEY.to_string()),
        ("#expires".to_string(), attr::EXPIRES_AT.to_string()),
        ("#status".to_string(), attr::STATUS.to_string()),
        ("#until".to_string(), attr::IN_PROGRESS_UNTIL.to_string()),
    ])
}

fn claim_values(now_ms: i64) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (
            ":now_s".to_string(),
            AttributeValue::N((now_ms / 1000).to_string()),
        ),
        (":now_ms".to_string(), AttributeValue::N(now_ms.to_string())),
        (
            ":inprogress".to_string(),
            AttributeValue::S(RecordStatus::InProgress.as_str().into()),
        ),
    ])
}

/// An SDK failure as a [`PersistenceError`]: the chain as text (what the logs showed before),
/// the error itself as the source, throttling from the service's error code.
fn sdk_error<E, R>(err: SdkError<E, R>) -> PersistenceError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: fmt::Debug + Send + Sync + 'static,
{
    let throttling = err.code().is_some_and(crate::aws::is_throttling_code);
    let code = err.code().map(str::to_string);
    PersistenceError::new(error_text(&err))
        .with_throttling(throttling)
        .with_code(code.as_deref())
        .with_source(err)
}

/// `ValidationException` when a cancelled transaction names an invalid write among its reasons.
fn invalid_write(err: &SdkError<TransactWriteItemsError>) -> Option<&'static str> {
    let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) =
        err.as_service_error()
    else {
        return None;
    };
    cancelled
        .cancellation_reasons()
        .iter()
        .any(|r| {
            matches!(
                r.code(),
                Some("ValidationError" | "ItemCollectionSizeLimitExceeded")
            )
        })
        .then_some("ValidationException")
}

enum Cancelled {
    /// These records' conditions failed (index into the records): duplicates (or live claims).
    /// Each carries the old item when DynamoDB returned it.
    RecordsExist(Vec<(usize, Option<HashMap<String, AttributeValue>>)>),
    /// An effect's condition failed: its index (into the effects) when the reasons tell, and the
    /// item as it was when DynamoDB returned it.
    Effect(Option<usize>, Option<HashMap<String, AttributeValue>>),
    /// Another transaction touched the same items.
    Collision,
}

/// Why a transaction of `records` records followed by effects was cancelled.
fn cancellation(err: &SdkError<TransactWriteItemsError>, records: usize) -> Option<Cancelled> {
    let cancelled = match err.as_service_error()? {
        TransactWriteItemsError::TransactionCanceledException(cancelled) => cancelled,
        TransactWriteItemsError::TransactionInProgressException(_) => {
            return Some(Cancelled::Collision)
        }
        _ => return None,
    };
    let reasons = cancelled.cancellation_reasons();
    let failed = |i: &usize| reasons[*i].code() == Some("ConditionalCheckFailed");
    let blocked: Vec<_> = (0..records.min(reasons.len()))
        .filter(failed)
        .map(|i| (i, reasons[i].item().cloned()))
        .collect();
    if !blocked.is_empty() {
        return Some(Cancelled::RecordsExist(blocked));
    }
    if let Some(i) = (records..reasons.len()).find(failed) {
        return Some(Cancelled::Effect(
            Some(i - records),
            reasons[i].item().cloned(),
        ));
    }
    if reasons
        .iter()
        .any(|r| r.code() == Some("TransactionConflict"))
    {
        return Some(Cancelled::Collision);
    }
    // Some emulators omit the reasons; the message still names the condition failure.
    if reasons.is_empty()
        && cancelled
            .message()
            .is_some_and(|m| m.contains("ConditionalCheckFailed"))
    {
        return Some(Cancelled::Effect(None, None));
    }
    None
}

/// The table item of a record: only the attributes that have a value.
fn to_item(record: &IdempotencyRecord) -> HashMap<String, AttributeValue> {
    let mut item = HashMap::from([
        (attr::KEY.to_string(), AttributeValue::S(record.key.clone())),
        (
            attr::STATUS.to_string(),
            AttributeValue::S(record.status.as_str().to_string()),
        ),
        (
            attr::EXPIRES_AT.to_string(),
            AttributeValue::N(record.expires_at.to_string()),
        ),
    ]);
    if let Some(until) = record.in_progress_until {
        item.insert(
            attr::IN_PROGRESS_UNTIL.into(),
            AttributeValue::N(until.to_string()),
        );
    }
    if let Some(claim) = &record.claim {
        item.insert(attr::CLAIM.into(), AttributeValue::S(claim.clone()));
    }
    if let Some(result) = &record.result {
        item.insert(attr::RESULT.into(), AttributeValue::S(result.clone()));
    }
    if let Some(hash) = &record.payload_hash {
        item.insert(attr::PAYLOAD_HASH.into(), AttributeValue::S(hash.clone()));
    }
    item
}

/// A table item as a record. Tolerant, like the code that reads it: a missing attribute is
/// `None` (an absent `expiresAt` never expires, as in the claim condition).
fn from_item(key: &str, item: &HashMap<String, AttributeValue>) -> IdempotencyRecord {
    IdempotencyRecord {
        key: string(item, attr::KEY).unwrap_or_else(|| key.to_string()),
        status: RecordStatus::parse(&string(item, attr::STATUS).unwrap_or_default()),
        expires_at: number(item, attr::EXPIRES_AT).unwrap_or(i64::MAX),
        in_progress_until: number(item, attr::IN_PROGRESS_UNTIL),
        claim: string(item, attr::CLAIM),
        result: string(item, attr::RESULT),
        payload_hash: string(item, attr::PAYLOAD_HASH),
    }
}

fn string(item: &HashMap<String, AttributeValue>, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

fn number(item: &HashMap<String, AttributeValue>, name: &str) -> Option<i64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_and_records_convert_both_ways() {
        let record = IdempotencyRecord {
            key: "sub#herald/users#evt-1".into(),
            status: RecordStatus::InProgress,
            expires_at: 1_800_000_000,
            in_progress_until: Some(1_800_000_000_123),
            claim: Some("token".into()),
            result: None,
            payload_hash: Some("abc".into()),
        };
        let item = to_item(&record);
        assert_eq!(item.len(), 6, "no attribute for the absent result");
        assert_eq!(item[attr::STATUS], AttributeValue::S("INPROGRESS".into()));
        assert_eq!(from_item("ignored", &item), record);
    }
}
