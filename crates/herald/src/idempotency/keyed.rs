//! [`put_once`]: an effect that is one DynamoDB item keyed by the event, written only if absent,
//! so the item is its own idempotency record ([`KeyedHandler`](crate::subscriber::KeyedHandler)).
//! A second write finds the first item (returned with the refusal: no read) and the handler
//! answers from it.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use aws_sdk_dynamodb::Client;

use crate::aws::AwsError;

/// A DynamoDB item.
pub type Item = HashMap<String, AttributeValue>;

/// What [`put_once`] found.
#[derive(Clone, Debug, PartialEq)]
pub enum PutOnce {
    /// The item is in, now.
    Written,
    /// An item with this key was there already: here it is, untouched.
    Existing(Item),
}

/// Put `item` into `table` unless an item with the same key exists (the key attribute is
/// `key`). One `PutItem` either way: an existing item comes back with the failed condition
/// (`ReturnValuesOnConditionCheckFailure=ALL_OLD`), and is read only if the store left it out
/// (some emulators do). The caller compares it with what it meant to write: the same contents
/// are a duplicate; other contents under the same key are the same event id with another
/// payload, which no redelivery can fix.
pub async fn put_once(
    client: &Client,
    table: &str,
    key: &str,
    item: Item,
) -> Result<PutOnce, AwsError> {
    let key_value = item.get(key).cloned();
    let result = client
        .put_item()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression("attribute_not_exists(#key)")
        .expression_attribute_names("#key", key)
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
        .send()
        .await;
    match result {
        Ok(_) => Ok(PutOnce::Written),
        Err(SdkError::ServiceError(e))
            if matches!(e.err(), PutItemError::ConditionalCheckFailedException(_)) =>
        {
            if let PutItemError::ConditionalCheckFailedException(failed) = e.err() {
                if let Some(old) = failed.item() {
                    return Ok(PutOnce::Existing(old.clone()));
                }
            }
            let old = client
                .get_item()
                .table_name(table)
                .set_key(key_value.map(|v| HashMap::from([(key.to_string(), v)])))
                .consistent_read(true)
                .send()
                .await
                .map_err(AwsError::new)?
                .item
                .unwrap_or_default();
            Ok(PutOnce::Existing(old))
        }
        Err(err) => Err(AwsError::new(err)),
    }
}

/// The string attribute `name` of `item` (empty when absent or not a string).
pub fn text<'a>(item: &'a Item, name: &str) -> &'a str {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
        .unwrap_or_default()
}
