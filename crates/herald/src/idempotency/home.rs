//! A record kept in the effect's own item ([`record_in`]): when a transactional decision creates
//! one new item per event (inventory's reservation of an order), that item can carry the event's
//! record, and the idempotency table gets no write at all.
//!
//! A record item costs what the effect item costs, twice inside a transaction: keeping the record
//! in the effect's item saves those units on every first delivery. The item must be created only
//! if absent (`attribute_not_exists` on its key), so a redelivery fails that condition and finds
//! the record: the look-ahead reads it first, and a failed condition returns it
//! (`ALL_OLD`). Such a record never expires: it lives as long as the item.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{
    AttributeValue, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};

use super::keyed::Item;
use super::record::{IdempotencyRecord, RecordStatus};

/// Attribute names of a record kept in an effect's item (prefixed, so they cannot meet the
/// handler's own attributes).
pub mod attr {
    /// The name of the item's key attribute: marks the put as the record's home.
    pub const RECORD_KEY: &str = "heraldRecordKey";
    /// The record key (the same as in the idempotency table).
    pub const RECORD: &str = "heraldRecord";
    /// The handler's result as JSON.
    pub const RESULT: &str = "heraldResult";
    /// The payload hash, when payloads are compared.
    pub const PAYLOAD_HASH: &str = "heraldPayloadHash";
}

/// Keep the event's record in the item `put` creates, instead of in the idempotency table.
/// `key` is the name of its table's partition key attribute. The put must be conditional on
/// that attribute not existing, and be one of a transactional decision's `writes`; a decision
/// with no such put keeps its record in the idempotency table as usual.
pub fn record_in(put: Put, key: &str) -> Put {
    let mut put = put;
    put.item
        .insert(attr::RECORD_KEY.into(), AttributeValue::S(key.into()));
    put
}

/// Where a decision keeps its record: the put at `write` of its writes, in `table` at `key`.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Home {
    pub(super) write: usize,
    pub(super) table: String,
    pub(super) key: Item,
}

/// The put of `writes` marked by [`record_in`], if any.
pub(super) fn of(writes: &[TransactWriteItem]) -> Option<Home> {
    writes.iter().enumerate().find_map(|(write, w)| {
        let put = w.put()?;
        let name = put.item().get(attr::RECORD_KEY)?.as_s().ok()?;
        let value = put.item().get(name)?.clone();
        Some(Home {
            write,
            table: put.table_name().to_string(),
            key: HashMap::from([(name.clone(), value)]),
        })
    })
}

/// Write `record` into its home's put, which returns the item it finds when its condition fails.
pub(super) fn fill(writes: &mut [TransactWriteItem], home: &Home, record: &IdempotencyRecord) {
    let Some(put) = writes.get_mut(home.write).and_then(|w| w.put.as_mut()) else {
        return;
    };
    put.item
        .insert(attr::RECORD.into(), AttributeValue::S(record.key.clone()));
    if let Some(result) = &record.result {
        put.item
            .insert(attr::RESULT.into(), AttributeValue::S(result.clone()));
    }
    if let Some(hash) = &record.payload_hash {
        put.item
            .insert(attr::PAYLOAD_HASH.into(), AttributeValue::S(hash.clone()));
    }
    put.return_values_on_condition_check_failure =
        Some(ReturnValuesOnConditionCheckFailure::AllOld);
}

/// The record `key` kept in `item`, if `item` holds that one (an item created by another event,
/// or by no event, holds none for it).
pub(super) fn record_of(item: &Item, key: &str) -> Option<IdempotencyRecord> {
    let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
    if text(attr::RECORD)? != key {
        return None;
    }
    Some(IdempotencyRecord {
        key: key.to_string(),
        status: RecordStatus::Completed,
        expires_at: i64::MAX,
        in_progress_until: None,
        claim: None,
        result: text(attr::RESULT),
        payload_hash: text(attr::PAYLOAD_HASH),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reservation(order: &str) -> TransactWriteItem {
        let put = Put::builder()
            .table_name("stock")
            .item("sku", AttributeValue::S(format!("order#{order}")))
            .item("status", AttributeValue::S("reserved".into()))
            .condition_expression("attribute_not_exists(sku)")
            .build()
            .unwrap();
        TransactWriteItem::builder()
            .put(record_in(put, "sku"))
            .build()
    }

    #[test]
    fn a_marked_put_is_found_filled_and_read_back() {
        let mut writes = vec![reservation("o-1")];
        let home = of(&writes).expect("the marked put");
        assert_eq!(home.write, 0);
        assert_eq!(home.table, "stock");
        assert_eq!(home.key["sku"], AttributeValue::S("order#o-1".into()));
        let record = IdempotencyRecord {
            key: "inventory#shop#e-1".into(),
            status: RecordStatus::Completed,
            expires_at: 1,
            in_progress_until: None,
            claim: None,
            result: Some("{\"status\":\"reserved\"}".into()),
            payload_hash: Some("h".into()),
        };
        fill(&mut writes, &home, &record);
        let item = writes[0].put().unwrap().item().clone();
        assert_eq!(item["status"], AttributeValue::S("reserved".into()));
        let back = record_of(&item, "inventory#shop#e-1").expect("its record");
        assert_eq!(back.result, record.result);
        assert_eq!(back.payload_hash, record.payload_hash);
        assert_eq!(back.expires_at, i64::MAX, "kept as long as the item");
        assert!(record_of(&item, "inventory#shop#e-2").is_none());
        assert!(of(&[]).is_none());
    }
}
