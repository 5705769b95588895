//! SNS filter policies (`FilterPolicyScope: MessageAttributes`), judged here: a backfill into one
//! subscriber's queue skips the topic, so it applies the queue's subscription policy itself, and
//! the queue gets exactly what SNS would have given it.
//!
//! The parts SNS documents that herald's templates use: a list of alternatives per attribute
//! (all attributes must match), exact strings and numbers, `exists`, `prefix`, `anything-but`,
//! and `$or`. Anything else is refused by name rather than guessed.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use serde_json::Value;

/// Whether a message with `attributes` passes `policy`.
pub fn matches(policy: &Value, attributes: &BTreeMap<String, String>) -> Result<bool> {
    let Some(policy) = policy.as_object() else {
        bail!("a filter policy is a JSON object, not {policy}");
    };
    for (key, rules) in policy {
        if key == "$or" {
            let Some(alternatives) = rules.as_array() else {
                bail!("$or takes a list of policies, not {rules}");
            };
            let mut any = false;
            for alternative in alternatives {
                any |= matches(alternative, attributes)?;
            }
            if !any {
                return Ok(false);
            }
            continue;
        }
        let value = attributes.get(key);
        let rules = match rules {
            Value::Array(rules) => rules.clone(),
            single => vec![single.clone()],
        };
        let mut any = false;
        for rule in &rules {
            any |= rule_matches(key, rule, value)?;
        }
        if !any {
            return Ok(false);
        }
    }
    Ok(true)
}

fn rule_matches(key: &str, rule: &Value, value: Option<&String>) -> Result<bool> {
    Ok(match rule {
        Value::String(s) => value == Some(s),
        Value::Number(n) => value
            .and_then(|v| v.parse::<f64>().ok())
            .zip(n.as_f64())
            .is_some_and(|(a, b)| a == b),
        Value::Object(operator) => match operator.iter().next() {
            Some((op, Value::Bool(exists))) if op == "exists" => value.is_some() == *exists,
            Some((op, Value::String(prefix))) if op == "prefix" => {
                value.is_some_and(|v| v.starts_with(prefix.as_str()))
            }
            Some((op, Value::Object(_))) if op == "anything-but" => {
                bail!("filter policy rule {rule} on {key:?} is not one herald judges locally")
            }
            Some((op, excluded)) if op == "anything-but" => {
                let excluded = match excluded {
                    Value::Array(list) => list.clone(),
                    one => vec![one.clone()],
                };
                value.is_some_and(|v| {
                    !excluded.iter().any(|e| match e {
                        Value::String(s) => s == v,
                        Value::Number(n) => v.parse::<f64>().ok() == n.as_f64(),
                        _ => false,
                    })
                })
            }
            _ => bail!("filter policy rule {rule} on {key:?} is not one herald judges locally"),
        },
        other => bail!("filter policy rule {other} on {key:?} is not one herald judges locally"),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_templates_policies_judge_as_sns_does() {
        let payment = json!({"$or": [
            {"type": ["order_placed"]},
            {"type": ["order_cancelled"], "aggregateversion": [{"exists": true}]}
        ]});
        assert!(matches(&payment, &attrs(&[("type", "order_placed")])).unwrap());
        assert!(matches(
            &payment,
            &attrs(&[("type", "order_cancelled"), ("aggregateversion", "2")])
        )
        .unwrap());
        assert!(!matches(&payment, &attrs(&[("type", "order_cancelled")])).unwrap());
        let business = json!({"kind": ["business"]});
        assert!(!matches(&business, &attrs(&[("kind", "data")])).unwrap());
        let but =
            json!({"type": [{"anything-but": ["job_failed"]}], "source": [{"prefix": "herald/"}]});
        assert!(matches(&but, &attrs(&[("type", "x"), ("source", "herald/orders")])).unwrap());
        assert!(!matches(
            &but,
            &attrs(&[("type", "job_failed"), ("source", "herald/orders")])
        )
        .unwrap());
        let err = matches(&json!({"n": [{"numeric": [">", 1]}]}), &attrs(&[])).unwrap_err();
        assert!(err.to_string().contains("numeric"), "{err}");
    }
}
