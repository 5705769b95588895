//! Validating event payloads against their released JSON Schemas.
//!
//! herald reads the small subset of JSON Schema 2020-12 that event payloads need — `type`,
//! `required`, `properties`, `additionalProperties`, `items`, `enum`, `const`,
//! `minimum`/`maximum`, `minLength`/`maxLength`, `minItems`/`maxItems` (annotations such as
//! `title` and `format` are ignored) — small enough to decide schema compatibility exactly
//! (`herald schema check`) and to run in every producer without a dependency. The application
//! hands the schemas over as values (the shop embeds `events/schemas` in its binary); herald never
//! reads files at run time.
//!
//! Each [`Violation`] names where (a JSON pointer into the payload, `/items/0/sku`) and which rule.

use serde_json::Value;

/// One way a value breaks its schema.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Where, as a JSON pointer into the validated value (`""` is the value itself).
    pub pointer: String,
    /// The rule broken, in words (`expected string, got integer`).
    pub rule: String,
}

/// How deep a value is followed: payloads nest a few levels; deeper ones are reported rather
/// than recursed into, so a hostile payload cannot exhaust the stack.
const MAX_DEPTH: usize = 64;

/// Every way `value` breaks `schema`, in document order (empty when it is valid).
pub fn validate(schema: &Value, value: &Value) -> Vec<Violation> {
    let mut violations = Vec::new();
    check(schema, value, &mut String::new(), 0, &mut violations);
    violations
}

fn type_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// `name` escaped as a JSON pointer token (RFC 6901: `~` → `~0`, `/` → `~1`).
fn token(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

fn check(schema: &Value, value: &Value, path: &mut String, depth: usize, out: &mut Vec<Violation>) {
    let mut fail = |rule: String| {
        out.push(Violation {
            pointer: path.clone(),
            rule,
        })
    };
    if depth > MAX_DEPTH {
        fail(format!("nests deeper than {MAX_DEPTH} levels"));
        return;
    }
    if let Some(expected) = schema.get("type") {
        let actual = type_of(value);
        let allowed: Vec<&str> = match expected {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let ok = allowed
            .iter()
            .any(|t| *t == actual || (*t == "number" && actual == "integer"));
        if !ok {
            fail(format!("expected {}, got {actual}", allowed.join(" or ")));
            return;
        }
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array) {
        if !options.contains(value) {
            fail(format!(
                "{} is not one of {}",
                shorten(value),
                Value::Array(options.clone())
            ));
        }
    }
    if let Some(constant) = schema.get("const") {
        if constant != value {
            fail(format!("expected {constant}"));
        }
    }
    let number = |k: &str| schema.get(k).and_then(Value::as_f64);
    if let Some(n) = value.as_f64() {
        if let Some(min) = number("minimum").filter(|min| n < *min) {
            fail(format!("{n} is below the minimum {min}"));
        }
        if let Some(max) = number("maximum").filter(|max| n > *max) {
            fail(format!("{n} is above the maximum {max}"));
        }
    }
    if let Some(s) = value.as_str() {
        let len = s.chars().count() as f64;
        if let Some(min) = number("minLength").filter(|min| len < *min) {
            fail(format!("{len} characters; the minimum is {min}"));
        }
        if let Some(max) = number("maxLength").filter(|max| len > *max) {
            fail(format!("{len} characters; the maximum is {max}"));
        }
    }
    if let Some(items) = value.as_array() {
        let len = items.len() as f64;
        if let Some(min) = number("minItems").filter(|min| len < *min) {
            fail(format!("{len} items; the minimum is {min}"));
        }
        if let Some(max) = number("maxItems").filter(|max| len > *max) {
            fail(format!("{len} items; the maximum is {max}"));
        }
        if let Some(item_schema) = schema.get("items") {
            for (i, item) in items.iter().enumerate() {
                let at = path.len();
                path.push_str(&format!("/{i}"));
                check(item_schema, item, path, depth + 1, out);
                path.truncate(at);
            }
        }
    }
    if let Some(object) = value.as_object() {
        for name in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !object.contains_key(name) {
                out.push(Violation {
                    pointer: path.clone(),
                    rule: format!("`{name}` is required"),
                });
            }
        }
        let properties = schema.get("properties").and_then(Value::as_object);
        for (name, field) in object {
            let sub = match properties.and_then(|p| p.get(name)) {
                Some(sub) => sub,
                None => match schema.get("additionalProperties") {
                    Some(Value::Bool(false)) => {
                        out.push(Violation {
                            pointer: path.clone(),
                            rule: format!("`{}` is not allowed", shorten_str(name)),
                        });
                        continue;
                    }
                    Some(sub @ Value::Object(_)) => sub,
                    _ => continue,
                },
            };
            let at = path.len();
            path.push('/');
            path.push_str(&token(name));
            check(sub, field, path, depth + 1, out);
            path.truncate(at);
        }
    }
}

/// A value as it appears in a rule, cut short: an error message must not echo a huge input.
fn shorten(value: &Value) -> String {
    shorten_str(&value.to_string())
}

fn shorten_str(text: &str) -> String {
    const MAX: usize = 64;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn schema() -> Value {
        json!({
            "type": "object",
            "required": ["orderId", "items"],
            "additionalProperties": false,
            "properties": {
                "orderId": {"type": "string", "minLength": 1, "maxLength": 8},
                "items": {"type": "array", "minItems": 1, "items": {
                    "type": "object",
                    "properties": {"a/b": {"type": "integer", "minimum": 1}}
                }},
                "state": {"enum": ["placed", "cancelled"]}
            }
        })
    }

    #[test]
    fn a_valid_value_has_no_violations() {
        let value = json!({"orderId": "o-1", "items": [{"a/b": 2}], "state": "placed"});
        assert_eq!(validate(&schema(), &value), []);
    }

    #[test]
    fn each_violation_names_its_pointer_and_rule() {
        let value =
            json!({"orderId": "o-123456789", "items": [{"a/b": 0}], "state": "lost", "x": 1});
        let got: Vec<(String, String)> = validate(&schema(), &value)
            .into_iter()
            .map(|v| (v.pointer, v.rule))
            .collect();
        assert!(got.contains(&("/items/0/a~1b".into(), "0 is below the minimum 1".into())));
        assert!(got.contains(&("/orderId".into(), "11 characters; the maximum is 8".into())));
        assert!(got.contains(&("".into(), "`x` is not allowed".into())));
        assert!(got
            .iter()
            .any(|(p, r)| p == "/state" && r.contains("not one of")));
        let missing = validate(&schema(), &json!({}));
        assert_eq!(missing[0].rule, "`orderId` is required");
        let wrong = validate(&schema(), &Value::Null);
        assert_eq!(
            wrong,
            [Violation {
                pointer: String::new(),
                rule: "expected object, got null".into()
            }]
        );
    }

    #[test]
    fn deep_nesting_is_reported_not_recursed() {
        // A schema that accepts arrays of arrays of anything, and a value nested far deeper.
        let mut schema = json!({});
        for _ in 0..100 {
            schema = json!({"type": "array", "items": schema});
        }
        let mut value = json!(1);
        for _ in 0..100 {
            value = json!([value]);
        }
        let violations = validate(&schema, &value);
        assert_eq!(violations.len(), 1);
        assert!(violations[0].rule.contains("deeper than"), "{violations:?}");
    }
}
