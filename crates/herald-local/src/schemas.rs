//! The event schemas in `events/schemas/<type>/v<N>.json`: validating events against them, and
//! keeping released schemas backward compatible.
//!
//! The schemas use a small subset of JSON Schema 2020-12 — `type`, `required`, `properties`,
//! `additionalProperties`, `items`, `enum`, `const`, `minimum`/`maximum`, `minLength`/`maxLength`,
//! `minItems`/`maxItems`, plus annotations (`$schema`, `$id`, `title`, `description`, `default`,
//! `examples`) — enough for event payloads, and small enough that compatibility can be decided
//! exactly. Any other keyword is reported as unsupported rather than silently ignored.
//!
//! Compatibility: `schemas.lock.json` holds the released schemas. A change is *breaking* when
//! data valid under the released schema could fail the new one, or a consumer relying on the
//! released schema could miss something: a removed property, a changed type, a new required
//! property without a `default`, a narrowed `enum`, a tightened bound, a removed version. New
//! versions are not changes to old ones: evolve a type by adding `v<N+1>.json` and an upcaster.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// The lock file of released schemas, in the schema directory.
pub const LOCK_FILE: &str = "schemas.lock.json";

const ANNOTATIONS: [&str; 6] = [
    "$schema",
    "$id",
    "title",
    "description",
    "default",
    "examples",
];
const KEYWORDS: [&str; 14] = [
    "type",
    "required",
    "properties",
    "additionalProperties",
    "items",
    "enum",
    "const",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "format",
];

/// Schemas by `(type, version)`.
pub type SchemaSet = BTreeMap<(String, u32), Value>;

/// Read every `<type>/v<N>.json` under `dir`.
pub fn load(dir: &Path) -> Result<SchemaSet> {
    let mut set = SchemaSet::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        if !entry.file_type()?.is_dir() {
            continue;
        }
        let event_type = entry.file_name().to_string_lossy().into_owned();
        for file in std::fs::read_dir(entry.path())? {
            let path = file?.path();
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let Some(version) = name.strip_prefix('v').and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            let version: u32 = version
                .parse()
                .with_context(|| format!("{}: expected v<N>.json", path.display()))?;
            let schema: Value = serde_json::from_slice(&std::fs::read(&path)?)
                .with_context(|| format!("{} is not JSON", path.display()))?;
            let unsupported = unsupported_keywords(&schema, "");
            if !unsupported.is_empty() {
                bail!(
                    "{}: unsupported keywords {}",
                    path.display(),
                    unsupported.join(", ")
                );
            }
            set.insert((event_type.clone(), version), schema);
        }
    }
    Ok(set)
}

/// The lock file's schemas (empty when there is none yet).
pub fn load_lock(dir: &Path) -> Result<SchemaSet> {
    let path = dir.join(LOCK_FILE);
    if !path.exists() {
        return Ok(SchemaSet::new());
    }
    let locked: BTreeMap<String, Value> = serde_json::from_slice(&std::fs::read(&path)?)
        .with_context(|| format!("{} is not a schema lock", path.display()))?;
    locked
        .into_iter()
        .map(|(key, schema)| {
            let (event_type, version) = key
                .rsplit_once("/v")
                .with_context(|| format!("{key}: expected <type>/v<N>"))?;
            Ok(((event_type.to_string(), version.parse()?), schema))
        })
        .collect()
}

/// Write `set` as the lock file.
pub fn write_lock(dir: &Path, set: &SchemaSet) -> Result<()> {
    let locked: BTreeMap<String, &Value> = set
        .iter()
        .map(|((t, v), s)| (format!("{t}/v{v}"), s))
        .collect();
    std::fs::write(
        dir.join(LOCK_FILE),
        serde_json::to_string_pretty(&locked)? + "\n",
    )?;
    Ok(())
}

fn unsupported_keywords(schema: &Value, path: &str) -> Vec<String> {
    let Value::Object(map) = schema else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (key, value) in map {
        if ANNOTATIONS.contains(&key.as_str()) {
            continue;
        }
        if !KEYWORDS.contains(&key.as_str()) {
            out.push(format!("{path}/{key}"));
            continue;
        }
        match key.as_str() {
            "properties" => {
                for (name, sub) in value.as_object().into_iter().flatten() {
                    out.extend(unsupported_keywords(
                        sub,
                        &format!("{path}/properties/{name}"),
                    ));
                }
            }
            "items" | "additionalProperties" => {
                out.extend(unsupported_keywords(value, &format!("{path}/{key}")))
            }
            _ => {}
        }
    }
    out
}

/// Validate `value` against `schema`; each error names the path (`/items/0/quantity`) and the rule.
/// The same validator the producer runs on submissions ([`herald::envelope::json_schema`]).
pub fn validate(schema: &Value, value: &Value) -> Vec<String> {
    herald::envelope::json_schema::validate(schema, value)
        .into_iter()
        .map(|v| {
            let at = if v.pointer.is_empty() {
                "/"
            } else {
                &v.pointer
            };
            format!("{at}: {}", v.rule)
        })
        .collect()
}

/// Every way `current` breaks what `released` promised, by `<type>/v<N><path>`.
pub fn breaking_changes(released: &SchemaSet, current: &SchemaSet) -> Vec<String> {
    let mut out = Vec::new();
    for ((event_type, version), old) in released {
        let at = format!("{event_type}/v{version}");
        match current.get(&(event_type.clone(), *version)) {
            None => out.push(format!("{at}: the released schema was removed")),
            Some(new) => compare(old, new, &at, &mut out),
        }
    }
    // Versions of a type must run 1..=N without gaps, so every old version can be upcast.
    let mut versions: BTreeMap<&str, BTreeSet<u32>> = BTreeMap::new();
    for (event_type, version) in current.keys() {
        versions.entry(event_type).or_default().insert(*version);
    }
    for (event_type, set) in versions {
        let expected: BTreeSet<u32> = (1..=*set.iter().max().unwrap_or(&1)).collect();
        if set != expected {
            out.push(format!(
                "{event_type}: versions {set:?} have a gap; expected {expected:?}"
            ));
        }
    }
    out
}

fn compare(old: &Value, new: &Value, at: &str, out: &mut Vec<String>) {
    if old.get("type") != new.get("type") {
        out.push(format!(
            "{at}: type changed from {} to {}",
            show(old.get("type")),
            show(new.get("type"))
        ));
        return;
    }
    let names = |s: &Value, k: &str| -> BTreeSet<String> {
        match s.get(k) {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect(),
            Some(Value::Object(o)) => o.keys().cloned().collect(),
            _ => BTreeSet::new(),
        }
    };
    let (old_required, new_required) = (names(old, "required"), names(new, "required"));
    for added in new_required.difference(&old_required) {
        let has_default = new
            .get("properties")
            .and_then(|p| p.get(added))
            .and_then(|p| p.get("default"))
            .is_some();
        if !has_default {
            out.push(format!("{at}: `{added}` became required (released events may lack it; give it a default or add a new version)"));
        }
    }
    let (old_properties, new_properties) = (names(old, "properties"), names(new, "properties"));
    for removed in old_properties.difference(&new_properties) {
        let required = if old_required.contains(removed) {
            "required "
        } else {
            ""
        };
        out.push(format!(
            "{at}: the {required}property `{removed}` was removed (consumers may rely on it)"
        ));
    }
    for name in old_properties.intersection(&new_properties) {
        compare(
            &old["properties"][name],
            &new["properties"][name],
            &format!("{at}/{name}"),
            out,
        );
    }
    if let (Some(old_items), Some(new_items)) = (old.get("items"), new.get("items")) {
        compare(old_items, new_items, &format!("{at}/items"), out);
    }
    if let Some(old_enum) = old.get("enum").and_then(Value::as_array) {
        if let Some(new_enum) = new.get("enum").and_then(Value::as_array) {
            for value in old_enum.iter().filter(|v| !new_enum.contains(v)) {
                out.push(format!("{at}: enum value {value} was removed"));
            }
        }
    } else if new.get("enum").is_some() {
        out.push(format!("{at}: an enum now restricts the values"));
    }
    if old.get("additionalProperties") != Some(&Value::Bool(false))
        && new.get("additionalProperties") == Some(&Value::Bool(false))
    {
        out.push(format!("{at}: additional properties are no longer allowed"));
    }
    for (key, lower_bound) in [
        ("minimum", true),
        ("minLength", true),
        ("minItems", true),
        ("maximum", false),
        ("maxLength", false),
        ("maxItems", false),
    ] {
        let (o, n) = (
            old.get(key).and_then(Value::as_f64),
            new.get(key).and_then(Value::as_f64),
        );
        let tightened = match (o, n) {
            (None, Some(_)) => true,
            (Some(o), Some(n)) => {
                if lower_bound {
                    n > o
                } else {
                    n < o
                }
            }
            _ => false,
        };
        if tightened {
            out.push(format!(
                "{at}: `{key}` tightened from {} to {}",
                show(old.get(key)),
                show(new.get(key))
            ));
        }
    }
}

fn show(value: Option<&Value>) -> String {
    value.map(Value::to_string).unwrap_or_else(|| "none".into())
}

/// The file in `events/` that declares the samples: a YAML list under `samples:` of files and
/// directories (every `.json` file in it, recursively), relative to `events/`. A JSON file not
/// listed (a malformed request kept for a test, say) is not a sample.
pub const SAMPLES_FILE: &str = "samples.yaml";

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SampleList {
    samples: Vec<String>,
}

/// The events in the samples `events/samples.yaml` declares, each with its file (relative to
/// `events_dir`): those a request, a Kinesis or an SQS sample carries. None when the project
/// declares none (no `samples.yaml`); an error names a listed path that does not exist.
pub fn sample_events(events_dir: &Path) -> Result<Vec<(String, Value)>> {
    let manifest = events_dir.join(SAMPLES_FILE);
    if !manifest.exists() {
        return Ok(Vec::new());
    }
    let list: SampleList = serde_yaml::from_slice(&std::fs::read(&manifest)?)
        .with_context(|| format!("{} is not a list under `samples:`", manifest.display()))?;
    let mut files = Vec::new();
    for entry in &list.samples {
        let path = events_dir.join(entry);
        if path.is_dir() {
            json_files(&path, &mut files)?;
        } else if path.is_file() {
            files.push(path);
        } else {
            bail!("{}: `{entry}` does not exist", manifest.display());
        }
    }
    files.sort();
    files.dedup();
    let mut out = Vec::new();
    for path in files {
        let file = path
            .strip_prefix(events_dir)
            .unwrap_or(&path)
            .display()
            .to_string();
        let sample: Value = serde_json::from_slice(&std::fs::read(&path)?)
            .with_context(|| format!("{} is not JSON", path.display()))?;
        out.extend(events_in(&sample).into_iter().map(|c| (file.clone(), c)));
    }
    Ok(out)
}

/// Every `.json` file under `dir`.
fn json_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            json_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
    Ok(())
}

/// The events a sample carries: a request's `events` or `body`, a Kinesis record's `data`, an
/// SQS record's `body`; only those with a `type`.
fn events_in(sample: &Value) -> Vec<Value> {
    let mut candidates: Vec<Value> = Vec::new();
    if let Some(events) = sample.get("events").and_then(Value::as_array) {
        candidates.extend(events.iter().cloned());
    }
    if let Some(body) = sample.get("body").and_then(Value::as_str) {
        candidates.extend(serde_json::from_str::<Value>(body).ok());
    }
    for record in sample
        .get("Records")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(data) = record.pointer("/kinesis/data").and_then(Value::as_str) {
            use base64::Engine;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(data)
                .unwrap_or_default();
            candidates.extend(serde_json::from_slice::<Value>(&bytes).ok());
        }
        if let Some(body) = record.get("body").and_then(Value::as_str) {
            candidates.extend(serde_json::from_str::<Value>(body).ok());
        }
    }
    candidates.retain(|c| c.get("type").is_some());
    candidates
}

/// Validate one event's `data` against the schema of its type and version.
pub fn validate_event(schemas: &SchemaSet, event: &Value) -> Result<(), Vec<String>> {
    let event_type = event["type"].as_str().unwrap_or_default().to_string();
    let version = event["schemaversion"].as_u64().unwrap_or(1) as u32;
    let Some(schema) = schemas.get(&(event_type.clone(), version)) else {
        return Err(vec![format!("no schema for {event_type} v{version}")]);
    };
    let errors = validate(schema, event.get("data").unwrap_or(&Value::Null));
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors
            .into_iter()
            .map(|e| format!("{event_type} v{version} data{e}"))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object",
            "required": ["id", "items"],
            "properties": {
                "id": {"type": "string", "minLength": 1},
                "items": {"type": "array", "minItems": 1, "items": {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer", "minimum": 1}}}},
                "state": {"enum": ["open", "closed"]}
            }
        })
    }

    #[test]
    fn only_declared_files_are_samples() {
        let dir = std::env::temp_dir().join(format!("herald-samples-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("producer/nested")).unwrap();
        std::fs::create_dir_all(dir.join("tests")).unwrap();
        let event = |t: &str| json!({"events": [{"type": t, "data": {}}]}).to_string();
        std::fs::write(dir.join("producer/a.json"), event("a")).unwrap();
        std::fs::write(dir.join("producer/nested/b.json"), event("b")).unwrap();
        std::fs::write(dir.join("producer/notes.txt"), "not a sample").unwrap();
        std::fs::write(dir.join("tests/malformed.json"), "{ not json").unwrap();
        std::fs::write(dir.join("c.json"), event("c")).unwrap();
        // Nothing declared: no samples.
        assert!(sample_events(&dir).unwrap().is_empty());
        std::fs::write(
            dir.join(SAMPLES_FILE),
            "samples:\n  - producer\n  - c.json\n",
        )
        .unwrap();
        let types: Vec<(String, String)> = sample_events(&dir)
            .unwrap()
            .into_iter()
            .map(|(file, e)| (file, e["type"].as_str().unwrap().to_string()))
            .collect();
        let expected = [
            ("c.json", "c"),
            ("producer/a.json", "a"),
            ("producer/nested/b.json", "b"),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(f, t)| (f.to_string(), t.to_string()))
            .collect();
        assert_eq!(types, expected);
        std::fs::write(dir.join(SAMPLES_FILE), "samples:\n  - gone.json\n").unwrap();
        let err = sample_events(&dir).unwrap_err().to_string();
        assert!(err.contains("`gone.json` does not exist"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn validation_names_the_path_and_the_rule() {
        assert!(validate(
            &schema(),
            &json!({"id": "a", "items": [{"n": 1}], "extra": true})
        )
        .is_empty());
        let errors = validate(
            &schema(),
            &json!({"items": [{"n": 0}, {"n": "x"}], "state": "gone"}),
        );
        assert!(
            errors.contains(&"/: `id` is required".to_string()),
            "{errors:?}"
        );
        assert!(
            errors.contains(&"/items/0/n: 0 is below the minimum 1".to_string()),
            "{errors:?}"
        );
        assert!(
            errors.contains(&"/items/1/n: expected integer, got string".to_string()),
            "{errors:?}"
        );
        assert!(
            errors.iter().any(|e| e.starts_with("/state:")),
            "{errors:?}"
        );
    }

    fn set(schema: Value) -> SchemaSet {
        SchemaSet::from([(("thing".to_string(), 1), schema)])
    }

    #[test]
    fn compatible_changes_pass_and_breaking_ones_are_named() {
        let released = set(schema());
        let mut added_optional = schema();
        added_optional["properties"]["note"] = json!({"type": "string"});
        assert!(breaking_changes(&released, &set(added_optional)).is_empty());

        let mut removed = schema();
        removed["properties"].as_object_mut().unwrap().remove("id");
        removed["required"] = json!(["items"]);
        let changes = breaking_changes(&released, &set(removed));
        assert_eq!(
            changes,
            ["thing/v1: the required property `id` was removed (consumers may rely on it)"]
        );

        let mut retyped = schema();
        retyped["properties"]["items"]["items"]["properties"]["n"]["type"] = json!("string");
        assert!(breaking_changes(&released, &set(retyped))[0]
            .contains("thing/v1/items/items/n: type changed"));

        let mut newly_required = schema();
        newly_required["properties"]["note"] = json!({"type": "string"});
        newly_required["required"] = json!(["id", "items", "note"]);
        assert!(
            breaking_changes(&released, &set(newly_required))[0].contains("`note` became required")
        );

        let mut narrowed = schema();
        narrowed["properties"]["state"]["enum"] = json!(["open"]);
        assert!(breaking_changes(&released, &set(narrowed))[0]
            .contains("enum value \"closed\" was removed"));

        let mut tightened = schema();
        tightened["properties"]["id"]["minLength"] = json!(3);
        assert!(breaking_changes(&released, &set(tightened))[0].contains("`minLength` tightened"));

        assert_eq!(
            breaking_changes(&released, &SchemaSet::new()),
            ["thing/v1: the released schema was removed"]
        );
    }

    #[test]
    fn version_gaps_are_reported() {
        let current = SchemaSet::from([
            (("thing".to_string(), 1), schema()),
            (("thing".to_string(), 3), schema()),
        ]);
        assert!(breaking_changes(&SchemaSet::new(), &current)[0].contains("gap"));
    }
}
