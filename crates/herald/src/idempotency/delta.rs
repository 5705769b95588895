//! [`Delta`]: a commutative change to numbers on one item (`ADD`), which herald may sum with the
//! deltas of other events on the same item before it writes: a batch of ten `order_placed` then
//! costs the `type#order_placed` counter one write instead of ten, and the hot item takes a tenth
//! of the writes.
//!
//! A delta may keep attributes from going below zero (stock never negative): the summed write is
//! then conditional on the sum, and when that condition fails herald cannot tell whose part was
//! too much, so it decides every event of the batch again on its own.

use std::collections::BTreeMap;

use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};

use super::error::PersistenceError;

/// Add signed amounts to numeric attributes of one item; absent attributes count from zero.
#[derive(Clone, Debug, PartialEq)]
pub struct Delta {
    table: String,
    key: BTreeMap<String, AttributeValue>,
    adds: BTreeMap<String, i64>,
    never_negative: Vec<String>,
    /// Exclusive upper bounds the item's attributes must be under when written: what proves
    /// the refusals a batch decided from the item's last known level (see `batch`).
    below: BTreeMap<String, i64>,
}

impl Delta {
    /// A delta on the item of `table` whose key attribute `name` is `value` (add more key
    /// attributes with [`Delta::key`] for a composite key).
    pub fn new(table: impl Into<String>, name: impl Into<String>, value: AttributeValue) -> Self {
        Delta {
            table: table.into(),
            key: BTreeMap::from([(name.into(), value)]),
            adds: BTreeMap::new(),
            never_negative: Vec::new(),
            below: BTreeMap::new(),
        }
    }

    /// Another key attribute (the sort key).
    pub fn key(mut self, name: impl Into<String>, value: AttributeValue) -> Self {
        self.key.insert(name.into(), value);
        self
    }

    /// Add `amount` (negative to take away) to `attribute`.
    pub fn add(mut self, attribute: impl Into<String>, amount: i64) -> Self {
        let sum = self.adds.entry(attribute.into()).or_default();
        *sum = sum.saturating_add(amount);
        self
    }

    /// Refuse the write (a failed condition, as [`Conflict`](super::Conflict)) when it would
    /// take `attribute` below zero. An absent attribute then fails too.
    pub fn never_negative(mut self, attribute: impl Into<String>) -> Self {
        let attribute = attribute.into();
        if !self.never_negative.contains(&attribute) {
            self.never_negative.push(attribute);
        }
        self
    }

    /// The table.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The amount added to `attribute` (0 when none).
    pub fn amount(&self, attribute: &str) -> i64 {
        self.adds.get(attribute).copied().unwrap_or(0)
    }

    /// The attributes kept from going below zero.
    pub(super) fn guarded(&self) -> &[String] {
        &self.never_negative
    }

    /// Whether this delta would take its one guarded attribute below zero on an item at
    /// `level`; `false` when that cannot be told (no level known, or several guards).
    pub(super) fn short_at(&self, level: &BTreeMap<String, i64>) -> bool {
        let [attribute] = self.never_negative.as_slice() else {
            return false;
        };
        level
            .get(attribute)
            .is_some_and(|have| have.saturating_add(self.amount(attribute)) < 0)
    }

    /// Whether [`Delta::short_at`] can judge this delta at `level`: nothing guarded, or one
    /// guarded attribute whose level is known.
    pub(super) fn judged_at(&self, level: &BTreeMap<String, i64>) -> bool {
        match self.never_negative.as_slice() {
            [] => true,
            [attribute] => level.contains_key(attribute),
            _ => false,
        }
    }

    /// Require `attribute` to be under `bound` when written (the tighter bound wins).
    pub(super) fn bound_below(&mut self, attribute: &str, bound: i64) {
        let entry = self.below.entry(attribute.to_string()).or_insert(bound);
        *entry = (*entry).min(bound);
    }

    /// The same item with nothing to add: a condition check once bounds are put on it.
    pub(super) fn check_only(&self) -> Delta {
        Delta {
            table: self.table.clone(),
            key: self.key.clone(),
            adds: BTreeMap::new(),
            never_negative: Vec::new(),
            below: BTreeMap::new(),
        }
    }

    /// The key's attribute names, sorted.
    pub(super) fn key_names(&self) -> Vec<String> {
        self.key.keys().cloned().collect()
    }

    /// Which item this changes (in the form of the item locks' keys): deltas on the same item
    /// may be summed.
    pub(super) fn item(&self) -> String {
        let mut key: Vec<String> = self.key.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
        key.sort();
        format!("{}/{}", self.table, key.join(","))
    }

    /// Fold `other` (the same item) into this one.
    pub(super) fn absorb(&mut self, other: &Delta) {
        for (attribute, amount) in &other.adds {
            let sum = self.adds.entry(attribute.clone()).or_default();
            *sum = sum.saturating_add(*amount);
        }
        for attribute in &other.never_negative {
            if !self.never_negative.contains(attribute) {
                self.never_negative.push(attribute.clone());
            }
        }
        for (attribute, bound) in &other.below {
            self.bound_below(attribute, *bound);
        }
    }

    /// The write: one `ADD` per attribute, conditional on the guarded attributes covering what
    /// is taken from them (and on the bounds). A failed condition returns the item (`ALL_OLD`),
    /// so herald learns how much it has left. With nothing to add and bounds, a condition check.
    pub fn to_write(&self) -> Result<TransactWriteItem, PersistenceError> {
        let mut names = std::collections::HashMap::new();
        let mut values = std::collections::HashMap::new();
        let mut adds = Vec::new();
        let mut conditions = Vec::new();
        for (i, (attribute, amount)) in self.adds.iter().enumerate() {
            names.insert(format!("#a{i}"), attribute.clone());
            values.insert(format!(":a{i}"), AttributeValue::N(amount.to_string()));
            adds.push(format!("#a{i} :a{i}"));
            if self.never_negative.contains(attribute) {
                // `x + amount >= 0`, written as `x >= -amount` (expressions have no unary minus).
                values.insert(
                    format!(":min{i}"),
                    AttributeValue::N(amount.saturating_neg().max(0).to_string()),
                );
                conditions.push(format!("#a{i} >= :min{i}"));
            }
        }
        for (i, (attribute, bound)) in self.below.iter().enumerate() {
            names.insert(format!("#b{i}"), attribute.clone());
            values.insert(format!(":b{i}"), AttributeValue::N(bound.to_string()));
            conditions.push(format!("#b{i} < :b{i}"));
        }
        let condition = (!conditions.is_empty()).then(|| conditions.join(" AND "));
        let built = |e: aws_sdk_dynamodb::error::BuildError| {
            PersistenceError::new(e.to_string()).with_source(e)
        };
        if adds.is_empty() {
            let Some(condition) = condition else {
                return Err(PersistenceError::new(format!(
                    "a delta on {} adds nothing",
                    self.item()
                )));
            };
            let check = ConditionCheck::builder()
                .table_name(&self.table)
                .set_key(Some(self.key.clone().into_iter().collect()))
                .condition_expression(condition)
                .set_expression_attribute_names(Some(names))
                .set_expression_attribute_values(Some(values))
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .build()
                .map_err(built)?;
            return Ok(TransactWriteItem::builder().condition_check(check).build());
        }
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(self.key.clone().into_iter().collect()))
            .update_expression(format!("ADD {}", adds.join(", ")))
            .set_condition_expression(condition)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(built)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }
}

/// Sum deltas per item, keeping the order in which each item first appears.
pub(super) fn merge<'a>(deltas: impl IntoIterator<Item = &'a Delta>) -> Vec<Delta> {
    let mut merged: Vec<Delta> = Vec::new();
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    for delta in deltas {
        match index.get(&delta.item()) {
            Some(&i) => merged[i].absorb(delta),
            None => {
                index.insert(delta.item(), merged.len());
                merged.push(delta.clone());
            }
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stock(sku: &str, quantity: i64) -> Delta {
        Delta::new("stock", "sku", AttributeValue::S(sku.into()))
            .add("available", -quantity)
            .add("reserved", quantity)
            .never_negative("available")
    }

    #[test]
    fn deltas_on_one_item_are_summed_and_others_kept_apart() {
        let merged = merge(&[stock("apple", 2), stock("pear", 1), stock("apple", 3)]);
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0].amount("available"), -5);
        assert_eq!(merged[0].amount("reserved"), 5);
        assert_eq!(merged[1].amount("available"), -1);
    }

    #[test]
    fn the_write_adds_every_attribute_and_guards_the_sum() {
        let merged = merge(&[stock("apple", 2), stock("apple", 3)]);
        let write = merged[0].to_write().unwrap();
        let update = write.update().unwrap();
        assert_eq!(update.update_expression(), "ADD #a0 :a0, #a1 :a1");
        assert_eq!(update.condition_expression(), Some("#a0 >= :min0"));
        let values = update.expression_attribute_values().unwrap();
        assert_eq!(values[":a0"], AttributeValue::N("-5".into()));
        assert_eq!(values[":min0"], AttributeValue::N("5".into()));
        assert_eq!(values[":a1"], AttributeValue::N("5".into()));
    }

    #[test]
    fn a_counter_has_no_condition_and_an_empty_delta_is_refused() {
        let counter =
            Delta::new("analytics", "metric", AttributeValue::S("type#x".into())).add("count", 1);
        let write = counter.to_write().unwrap();
        assert_eq!(write.update().unwrap().condition_expression(), None);
        let empty = Delta::new("analytics", "metric", AttributeValue::S("type#x".into()));
        assert!(empty.to_write().is_err());
    }
}
