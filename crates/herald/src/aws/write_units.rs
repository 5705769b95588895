//! DynamoDB write units of a request, estimated from its JSON body the way DynamoDB bills them:
//! one unit per started KB of the item written, twice that inside a transaction. What
//! [`crate::aws::RequestCounter`] reports as `DynamoDB.<operation>#wru`, and per table as
//! `DynamoDB.<operation>#wru@<TableName>`, for cost and capacity models.
//!
//! The item's size is its attribute names plus values (strings and binaries by length, numbers
//! about one byte per two digits, nested lists and maps three bytes plus their parts). An
//! update or a delete is counted as one unit: the item it changes is not in the request.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// Write units `operation` with request `body` costs (`None` for operations that write nothing).
pub fn of_request(operation: &str, body: &Value) -> Option<u64> {
    by_table(operation, body).map(|tables| tables.values().sum())
}

/// The same units per table written to (`TableName`), for what each table's quota must carry.
pub fn by_table(operation: &str, body: &Value) -> Option<BTreeMap<String, u64>> {
    let table = |request: &Value| {
        request["TableName"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let mut tables: BTreeMap<String, u64> = BTreeMap::new();
    let mut add = |name: String, units: u64| *tables.entry(name).or_default() += units;
    match operation {
        "DynamoDB.PutItem" => add(table(body), units(item_bytes(body["Item"].as_object()?))),
        "DynamoDB.UpdateItem" | "DynamoDB.DeleteItem" => add(table(body), 1),
        "DynamoDB.TransactWriteItems" => {
            for item in body["TransactItems"].as_array()? {
                // One action per item: Put, Update, Delete or ConditionCheck.
                let action = item
                    .as_object()
                    .and_then(|actions| actions.values().next())
                    .unwrap_or(&Value::Null);
                let written = match action["Item"].as_object() {
                    Some(put) => units(item_bytes(put)),
                    None => 1,
                };
                add(table(action), 2 * written);
            }
        }
        "DynamoDB.BatchWriteItem" => {
            for (name, requests) in body["RequestItems"].as_object()? {
                for request in requests.as_array().into_iter().flatten() {
                    let written = match request["PutRequest"]["Item"].as_object() {
                        Some(put) => units(item_bytes(put)),
                        None => 1,
                    };
                    add(name.clone(), written);
                }
            }
        }
        _ => return None,
    }
    Some(tables)
}

/// Units for an item of `bytes`: one per started KB, at least one.
fn units(bytes: usize) -> u64 {
    bytes.div_ceil(1024).max(1) as u64
}

/// An item's size: every attribute's name and value.
pub fn item_bytes(item: &Map<String, Value>) -> usize {
    item.iter()
        .map(|(name, value)| name.len() + value_bytes(value))
        .sum()
}

/// One attribute value in DynamoDB's JSON (`{"S": "..."}`, `{"N": "12"}`, ...).
fn value_bytes(value: &Value) -> usize {
    let Some((kind, inner)) = value.as_object().and_then(|v| v.iter().next()) else {
        return 0;
    };
    let text = || inner.as_str().unwrap_or_default();
    match kind.as_str() {
        "S" => text().len(),
        "N" => text().len().div_ceil(2) + 1,
        "B" => text().len() * 3 / 4,
        "BOOL" | "NULL" => 1,
        "SS" | "NS" | "BS" => inner
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|i| i.as_str().unwrap_or_default().len())
                    .sum()
            })
            .unwrap_or(0),
        "L" => {
            3 + inner
                .as_array()
                .map(|items| items.iter().map(|i| 1 + value_bytes(i)).sum())
                .unwrap_or(0)
        }
        "M" => {
            3 + inner
                .as_object()
                .map(|m| m.len() + item_bytes(m))
                .unwrap_or(0)
        }
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_small_put_is_one_unit_and_a_large_one_more() {
        let small = json!({"Item": {"pk": {"S": "a"}, "n": {"N": "12345"}}});
        assert_eq!(of_request("DynamoDB.PutItem", &small), Some(1));
        let large = json!({"Item": {"pk": {"S": "a"}, "body": {"S": "x".repeat(1500)}}});
        assert_eq!(of_request("DynamoDB.PutItem", &large), Some(2));
    }

    #[test]
    fn a_transaction_bills_each_item_twice() {
        let body = json!({"TransactItems": [
            {"Put": {"Item": {"pk": {"S": "r"}, "result": {"S": "y".repeat(1100)}}}},
            {"Update": {"Key": {"pk": {"S": "c"}}}}
        ]});
        assert_eq!(
            of_request("DynamoDB.TransactWriteItems", &body),
            Some(4 + 2)
        );
        assert_eq!(of_request("DynamoDB.GetItem", &json!({})), None);
    }

    #[test]
    fn units_are_told_per_table_and_add_up_to_the_requests() {
        let body = json!({"TransactItems": [
            {"Put": {"TableName": "Idempotency", "Item": {"pk": {"S": "r"}, "result": {"S": "y".repeat(1100)}}}},
            {"Update": {"TableName": "Stock", "Key": {"pk": {"S": "c"}}}},
            {"ConditionCheck": {"TableName": "Stock", "Key": {"pk": {"S": "d"}}}}
        ]});
        let tables = by_table("DynamoDB.TransactWriteItems", &body).unwrap();
        assert_eq!(tables["Idempotency"], 4);
        assert_eq!(tables["Stock"], 4);
        assert_eq!(of_request("DynamoDB.TransactWriteItems", &body), Some(8));
        let batch = json!({"RequestItems": {
            "Views": [{"PutRequest": {"Item": {"pk": {"S": "a"}}}}, {"DeleteRequest": {"Key": {"pk": {"S": "b"}}}}]
        }});
        assert_eq!(
            by_table("DynamoDB.BatchWriteItem", &batch).unwrap()["Views"],
            2
        );
        let put = json!({"TableName": "Views", "Item": {"pk": {"S": "a"}}});
        assert_eq!(by_table("DynamoDB.PutItem", &put).unwrap()["Views"], 1);
    }
}
