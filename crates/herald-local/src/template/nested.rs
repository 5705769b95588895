//! Nested applications (`AWS::Serverless::Application`, `AWS::CloudFormation::Stack`) inlined
//! into the parent, so a stack is one flat set of resources, as the runner, the alarms, the
//! console and the ops commands expect. Locally the children are files (a `Location` or
//! `TemplateURL` relative to the parent); for a deployed stack they are the templates its nested
//! stacks were created from ([`NestedTemplates`]).
//!
//! A child's resource `Queue` under the application `Alerts` becomes `AlertsQueue` (the name
//! `herald`'s commands show, locally and for a deployed stack alike); its parameters become the
//! values the parent passes (or their defaults); the parent's `!GetAtt Alerts.Outputs.QueueUrl`
//! becomes the child's output value. Each child keeps its own `Globals`.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use super::sub::{Piece, Sub};
use anyhow::{anyhow, bail, Context, Result};
use serde_json::{Map, Value};

/// How deep applications may nest (CloudFormation allows more; a loop is the likelier cause).
const MAX_DEPTH: usize = 8;

/// The templates a deployed stack's nested stacks were created from (`GetTemplate`, as sent),
/// by the logical id of their application in the parent, each with its own nested stacks':
/// what [`Template::parse_with_nested`](super::Template::parse_with_nested) inlines.
#[derive(Clone, Debug, Default)]
pub struct NestedTemplates {
    templates: BTreeMap<String, (String, NestedTemplates)>,
}

impl NestedTemplates {
    /// Add the template `text` of the nested stack the parent names `id`, and its own nested
    /// stacks' templates.
    pub fn insert(&mut self, id: impl Into<String>, text: String, nested: NestedTemplates) {
        self.templates.insert(id.into(), (text, nested));
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.templates.is_empty()
    }
}

/// Where the templates of a template's applications come from.
pub(super) enum Source<'a> {
    /// Files; relative locations start at this directory (the parent's).
    Files(PathBuf),
    /// The templates of a deployed stack's nested stacks.
    Deployed(&'a NestedTemplates),
}

/// One child's template: its text, what to call it in an error, and where its own children
/// come from.
struct Found<'a> {
    text: Cow<'a, str>,
    name: String,
    children: Source<'a>,
}

impl<'a> Source<'a> {
    /// The template of application `id` (resource `body`); `None` when `body` is not an
    /// application, or is one CloudFormation did not create (its condition false).
    fn child(&self, id: &str, body: &Value) -> Option<Result<Found<'a>>> {
        if !is_application(body) {
            return None;
        }
        let kind = body.get("Type")?.as_str()?;
        match self {
            Source::Files(dir) => Some(location(kind, body).and_then(|file| {
                let path = dir.join(file);
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("application {id}: reading {}", path.display()))?;
                Ok(Found {
                    text: Cow::Owned(text),
                    name: path.display().to_string(),
                    children: Source::Files(path.parent().unwrap_or(dir).to_path_buf()),
                })
            })),
            Source::Deployed(nested) => match nested.templates.get(id) {
                Some((text, children)) => Some(Ok(Found {
                    text: Cow::Borrowed(text.as_str()),
                    name: format!("nested stack {id}"),
                    children: Source::Deployed(children),
                })),
                None if body.get("Condition").is_some() => None,
                None => Some(Err(anyhow!(
                    "application {id}: the stack has no nested stack of that logical id"
                ))),
            },
        }
    }
}

/// What inlining left behind: the ids of the resources that came from children (their
/// `Globals` are merged already; the parent's must not be).
#[derive(Debug, Default)]
pub(super) struct Inlined {
    pub(super) ids: BTreeSet<String>,
    /// The applications inlined, by id (nested ones prefixed like their resources): gone from
    /// the flat template, still names a declaration may use.
    pub(super) applications: BTreeSet<String>,
}

/// Inline every application of `root` (a template in CloudFormation's long JSON form) whose
/// template `source` has.
pub(super) fn inline(root: &mut Map<String, Value>, source: &Source) -> Result<Inlined> {
    inline_at(root, source, 0)
}

fn inline_at(root: &mut Map<String, Value>, source: &Source, depth: usize) -> Result<Inlined> {
    let mut inlined = Inlined::default();
    let Some(Value::Object(resources)) = root.get("Resources") else {
        return Ok(inlined);
    };
    let mut applications: Vec<(String, Found)> = Vec::new();
    // Applications CloudFormation did not create: left out, as their condition says.
    let mut absent: BTreeSet<String> = BTreeSet::new();
    for (id, body) in resources {
        match source.child(id, body) {
            Some(found) => applications.push((id.clone(), found?)),
            None if matches!(source, Source::Deployed(_)) && is_application(body) => {
                absent.insert(id.clone());
            }
            None => {}
        }
    }
    if applications.is_empty() && absent.is_empty() {
        return Ok(inlined);
    }
    if depth >= MAX_DEPTH {
        bail!("applications nest deeper than {MAX_DEPTH} levels (does one include itself?)");
    }
    // Each application's outputs, as the parent's expressions, for `!GetAtt App.Outputs.X`.
    let mut outputs: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    let mut added: Vec<(String, Value)> = Vec::new();
    let mut added_conditions: Vec<(String, Value)> = Vec::new();
    for (id, found) in &applications {
        let yaml: serde_yaml::Value = serde_yaml::from_str(&found.text)
            .with_context(|| format!("application {id}: parsing {}", found.name))?;
        let Value::Object(mut child) = super::to_json(yaml)? else {
            bail!("application {id}: {} is not a template", found.name);
        };
        let nested = inline_at(&mut child, &found.children, depth + 1)
            .with_context(|| format!("application {id} ({})", found.name))?;
        let passed = resources[id]
            .get("Properties")
            .and_then(|p| p.get("Parameters"))
            .cloned()
            .unwrap_or(Value::Object(Map::new()));
        let child = Child::new(id, &child, &passed)
            .with_context(|| format!("application {id} ({})", found.name))?;
        inlined.applications.insert(id.clone());
        for nested_id in &nested.applications {
            inlined.applications.insert(format!("{id}{nested_id}"));
        }
        for (child_id, body) in child.resources(&nested)? {
            inlined.ids.insert(child_id.clone());
            added.push((child_id, body));
        }
        added_conditions.extend(child.conditions()?);
        outputs.insert(id.clone(), child.outputs()?);
    }
    let ids: BTreeSet<&str> = applications
        .iter()
        .map(|(id, _)| id.as_str())
        .chain(absent.iter().map(String::as_str))
        .collect();
    let Some(Value::Object(resources)) = root.get_mut("Resources") else {
        unreachable!("checked above");
    };
    let mut flat = Map::new();
    for (id, body) in std::mem::take(resources) {
        if !ids.contains(id.as_str()) {
            flat.insert(id, body);
        }
    }
    for (id, body) in added {
        if flat.insert(id.clone(), body).is_some() {
            bail!("{id} is both a resource of the template and of one of its applications");
        }
    }
    *resources = flat;
    if !added_conditions.is_empty() {
        let conditions = root
            .entry("Conditions")
            .or_insert_with(|| Value::Object(Map::new()));
        let Value::Object(conditions) = conditions else {
            bail!("Conditions is not a mapping");
        };
        for (name, expression) in added_conditions {
            if conditions.insert(name.clone(), expression).is_some() {
                bail!("condition {name} is both the template's and one of its applications'");
            }
        }
    }
    // The parent's references to the applications' outputs, until none is left (an output may
    // pass on another application's output).
    for _ in 0..=applications.len() {
        let mut changed = false;
        for key in ["Resources", "Outputs", "Conditions"] {
            if let Some(value) = root.get_mut(key) {
                changed |= replace_outputs(value, &outputs)?;
            }
        }
        if !changed {
            return Ok(inlined);
        }
    }
    bail!("the applications' outputs refer to each other in a cycle")
}

fn is_application(body: &Value) -> bool {
    matches!(
        body.get("Type").and_then(Value::as_str),
        Some("AWS::Serverless::Application" | "AWS::CloudFormation::Stack")
    )
}

/// The local template file of an application resource of type `kind`; an error for one that is
/// not local (the Serverless Application Repository, S3).
fn location(kind: &str, body: &Value) -> Result<String> {
    let property = match kind {
        "AWS::Serverless::Application" => "Location",
        _ => "TemplateURL",
    };
    let value = body.get("Properties").and_then(|p| p.get(property));
    match value.and_then(Value::as_str) {
        Some(file) if !file.contains("://") => Ok(file.to_string()),
        _ => {
            Err(anyhow!(
            "{kind} {property} {}: only applications whose template is a local file run locally",
            value.map(Value::to_string).unwrap_or_else(|| "(none)".into())
        ))
        }
    }
}

/// One child template, about to be inlined under its application's id.
struct Child<'a> {
    prefix: &'a str,
    template: &'a Map<String, Value>,
    /// Parameter values: what the parent passes, else the default.
    parameters: Map<String, Value>,
    /// The child's own resource ids.
    ids: BTreeSet<String>,
    /// The child's own condition names.
    conditions: BTreeSet<String>,
}

impl<'a> Child<'a> {
    fn new(prefix: &'a str, template: &'a Map<String, Value>, passed: &Value) -> Result<Self> {
        let mut parameters = Map::new();
        let declared = template.get("Parameters").and_then(Value::as_object);
        for (name, spec) in declared.into_iter().flatten() {
            let value = passed
                .get(name)
                .or_else(|| spec.get("Default"))
                .ok_or_else(|| anyhow!("parameter {name} has no value and no default"))?;
            parameters.insert(name.clone(), value.clone());
        }
        if let Some(passed) = passed.as_object() {
            if let Some(unknown) = passed.keys().find(|k| !parameters.contains_key(*k)) {
                bail!("parameter {unknown}: the application's template declares no such parameter");
            }
        }
        // The child's resources, and what SAM makes of its functions (`<Function>Role`,
        // `<Function>Url`), which its template may refer to as well.
        let mut ids = BTreeSet::new();
        let resources = template.get("Resources").and_then(Value::as_object);
        for (id, body) in resources.into_iter().flatten() {
            ids.insert(id.clone());
            if body.get("Type").and_then(Value::as_str) == Some("AWS::Serverless::Function") {
                ids.insert(format!("{id}Role"));
                ids.insert(format!("{id}Url"));
            }
        }
        let conditions = template
            .get("Conditions")
            .and_then(Value::as_object)
            .map(|c| c.keys().cloned().collect())
            .unwrap_or_default();
        Ok(Child {
            prefix,
            template,
            parameters,
            ids,
            conditions,
        })
    }

    /// The child's resources, renamed and rewritten, with its own `Globals` merged.
    fn resources(&self, nested: &Inlined) -> Result<Vec<(String, Value)>> {
        let globals = self
            .template
            .get("Globals")
            .and_then(|g| g.get("Function"))
            .cloned()
            .unwrap_or(Value::Object(Map::new()));
        let mut out = Vec::new();
        let resources = self.template.get("Resources").and_then(Value::as_object);
        for (id, body) in resources.into_iter().flatten() {
            let mut body = body.clone();
            let serverless =
                body.get("Type").and_then(Value::as_str) == Some("AWS::Serverless::Function");
            if serverless && !nested.ids.contains(id) {
                let properties = body
                    .get("Properties")
                    .cloned()
                    .unwrap_or(Value::Object(Map::new()));
                body["Properties"] = super::merge_globals(&globals, properties);
            }
            if let Some(Value::Object(map)) = body.get_mut("Properties") {
                for value in map.values_mut() {
                    *value = self.rewrite(value)?;
                }
            }
            if let Some(metadata) = body.get_mut("Metadata") {
                *metadata = self.rewrite(metadata)?;
            }
            if let Some(Value::String(condition)) = body.get_mut("Condition") {
                *condition = format!("{}{condition}", self.prefix);
            }
            out.push((format!("{}{id}", self.prefix), body));
        }
        Ok(out)
    }

    /// The child's conditions, renamed and rewritten.
    fn conditions(&self) -> Result<Vec<(String, Value)>> {
        let conditions = self.template.get("Conditions").and_then(Value::as_object);
        conditions
            .into_iter()
            .flatten()
            .map(|(name, expression)| {
                Ok((format!("{}{name}", self.prefix), self.rewrite(expression)?))
            })
            .collect()
    }

    /// The child's outputs as the parent sees them.
    fn outputs(&self) -> Result<Map<String, Value>> {
        let mut out = Map::new();
        let outputs = self.template.get("Outputs").and_then(Value::as_object);
        for (name, output) in outputs.into_iter().flatten() {
            let value = output
                .get("Value")
                .ok_or_else(|| anyhow!("output {name} has no Value"))?;
            out.insert(name.clone(), self.rewrite(value)?);
        }
        Ok(out)
    }

    /// `value` with the child's parameters replaced by their values and its resources by
    /// their new ids.
    fn rewrite(&self, value: &Value) -> Result<Value> {
        Ok(match value {
            Value::Object(map) if map.len() == 1 => {
                let (key, arg) = map.iter().next().expect("one entry");
                match (key.as_str(), arg) {
                    ("Ref", Value::String(name)) => {
                        if let Some(value) = self.parameters.get(name) {
                            value.clone()
                        } else if self.ids.contains(name) {
                            single("Ref", Value::String(format!("{}{name}", self.prefix)))
                        } else {
                            value.clone()
                        }
                    }
                    ("Fn::GetAtt", Value::Array(parts)) => {
                        let mut parts = parts.clone();
                        if let Some(Value::String(id)) = parts.first() {
                            if self.ids.contains(id) {
                                parts[0] = Value::String(format!("{}{id}", self.prefix));
                            }
                        }
                        single("Fn::GetAtt", Value::Array(parts))
                    }
                    ("Fn::Sub", arg) => self.rewrite_sub(arg)?,
                    ("Condition", Value::String(name)) if self.conditions.contains(name) => {
                        single("Condition", Value::String(format!("{}{name}", self.prefix)))
                    }
                    ("Fn::If", Value::Array(parts)) => {
                        let mut parts: Vec<Value> = parts
                            .iter()
                            .map(|p| self.rewrite(p))
                            .collect::<Result<_>>()?;
                        if let Some(Value::String(name)) = parts.first() {
                            if self.conditions.contains(name) {
                                parts[0] = Value::String(format!("{}{name}", self.prefix));
                            }
                        }
                        single("Fn::If", Value::Array(parts))
                    }
                    _ => single(key, self.rewrite(arg)?),
                }
            }
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| Ok((k.clone(), self.rewrite(v)?)))
                    .collect::<Result<_>>()?,
            ),
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|v| self.rewrite(v))
                    .collect::<Result<_>>()?,
            ),
            other => other.clone(),
        })
    }

    /// `Fn::Sub`: `${Resource}` renamed, `${Parameter}` passed in as a variable of its own.
    fn rewrite_sub(&self, arg: &Value) -> Result<Value> {
        let mut sub = Sub::parse(arg)?;
        let own: BTreeSet<String> = sub.variables.keys().cloned().collect();
        for value in sub.variables.values_mut() {
            *value = self.rewrite(value)?;
        }
        let mut out = String::new();
        let mut passed = Map::new();
        for piece in sub.pieces()? {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Escaped(literal) => out.push_str(&format!("${{!{literal}}}")),
                Piece::Name(name) => {
                    let head = name.split('.').next().unwrap_or_default();
                    if !own.contains(name) && self.parameters.contains_key(name) {
                        passed.insert(name.to_string(), self.parameters[name].clone());
                        out.push_str(&format!("${{{name}}}"));
                    } else if !own.contains(head) && self.ids.contains(head) {
                        out.push_str(&format!("${{{}{name}}}", self.prefix));
                    } else {
                        out.push_str(&format!("${{{name}}}"));
                    }
                }
            }
        }
        sub.text = out;
        sub.variables.extend(passed);
        Ok(single("Fn::Sub", sub.into_value()))
    }
}

fn single(key: &str, value: Value) -> Value {
    let mut map = Map::new();
    map.insert(key.to_string(), value);
    Value::Object(map)
}

/// Replace `Fn::GetAtt [App, "Outputs.X"]` (and `${App.Outputs.X}` in `Fn::Sub`) with the
/// application's output; whether anything changed.
fn replace_outputs(
    value: &mut Value,
    outputs: &BTreeMap<String, Map<String, Value>>,
) -> Result<bool> {
    let output = |id: &str, attribute: &str| -> Option<Result<Value>> {
        let name = attribute.strip_prefix("Outputs.")?;
        let of = outputs.get(id)?;
        Some(
            of.get(name)
                .cloned()
                .ok_or_else(|| anyhow!("application {id} has no output {name}")),
        )
    };
    match value {
        Value::Object(map) if map.len() == 1 => {
            if let Some(Value::Array(parts)) = map.get("Fn::GetAtt") {
                if let [Value::String(id), Value::String(attribute)] = &parts[..] {
                    if let Some(replacement) = output(id, attribute) {
                        *value = replacement?;
                        return Ok(true);
                    }
                }
            }
            if let Some(arg) = map.get_mut("Fn::Sub") {
                return replace_sub_outputs(arg, outputs, &output);
            }
            let mut changed = false;
            for v in map.values_mut() {
                changed |= replace_outputs(v, outputs)?;
            }
            Ok(changed)
        }
        Value::Object(map) => {
            let mut changed = false;
            for v in map.values_mut() {
                changed |= replace_outputs(v, outputs)?;
            }
            Ok(changed)
        }
        Value::Array(items) => {
            let mut changed = false;
            for v in items {
                changed |= replace_outputs(v, outputs)?;
            }
            Ok(changed)
        }
        _ => Ok(false),
    }
}

/// `${App.Outputs.X}` in a `Fn::Sub`: the output passed in as a variable.
fn replace_sub_outputs(
    arg: &mut Value,
    outputs: &BTreeMap<String, Map<String, Value>>,
    output: &dyn Fn(&str, &str) -> Option<Result<Value>>,
) -> Result<bool> {
    let Ok(mut sub) = Sub::parse(arg) else {
        return Ok(false);
    };
    let mut changed = false;
    for v in sub.variables.values_mut() {
        changed |= replace_outputs(v, outputs)?;
    }
    let mut found = Map::new();
    for name in sub.names() {
        if sub.variables.contains_key(name) {
            continue;
        }
        if let Some((id, attribute)) = name.split_once('.') {
            if let Some(replacement) = output(id, attribute) {
                found.insert(name.to_string(), replacement?);
            }
        }
    }
    changed |= !found.is_empty();
    if changed {
        sub.variables.extend(found);
        *arg = sub.into_value();
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::super::{resolve, Names, Template};
    use super::NestedTemplates;
    use serde_json::Value;

    struct Physical<'a>(Option<&'a Template>);
    impl Names for Physical<'_> {
        fn condition(&self, name: &str) -> Option<bool> {
            self.0?.condition_value(name, self).ok()
        }
        fn reference(&self, id: &str) -> Option<Value> {
            Some(Value::String(format!("ref-{id}")))
        }
        fn attribute(&self, id: &str, attribute: &str) -> Option<Value> {
            Some(Value::String(format!("{id}-{attribute}")))
        }
    }

    fn project(files: &[(&str, &str)]) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "herald-nested-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4()
        ));
        for (file, text) in files {
            let path = dir.join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        dir
    }

    const SUBSCRIBER: &str = r#"
Transform: AWS::Serverless-2016-10-31
Parameters:
  TopicArn: { Type: String }
  Types: { Type: String, Default: '["a"]' }
  Mode: { Type: String }
  Policy: { Type: String, Default: "" }
Conditions:
  HasPolicy: !Not [!Equals [!Ref Policy, ""]]
Globals:
  Function:
    Timeout: 7
Resources:
  DeadLetterQueue: { Type: AWS::SQS::Queue }
  Extra: { Type: AWS::SQS::Queue, Condition: HasPolicy }
  Queue:
    Type: AWS::SQS::Queue
    Properties:
      RedrivePolicy: { deadLetterTargetArn: !GetAtt DeadLetterQueue.Arn, maxReceiveCount: 5 }
  Subscription:
    Type: AWS::SNS::Subscription
    Properties:
      TopicArn: !Ref TopicArn
      Endpoint: !GetAtt Queue.Arn
      FilterPolicy: !Ref Types
  Function:
    Type: AWS::Serverless::Function
    Properties:
      Environment:
        Variables:
          MODE: !Ref Mode
          DLQ: !Ref DeadLetterQueue
          NAME: !Sub "${Mode}-${Queue.QueueName}-${AWS::Region}"
          POLICY: !If [HasPolicy, !Ref Policy, !Ref AWS::NoValue]
Outputs:
  QueueUrl: { Value: !Ref Queue }
  Name: { Value: !Sub "${Mode}-subscriber" }
"#;

    #[test]
    fn an_application_is_inlined_under_its_id() {
        let dir = project(&[
            (
                "template.yaml",
                r#"
Globals:
  Function:
    Timeout: 30
    MemorySize: 256
Resources:
  Topic: { Type: AWS::SNS::Topic }
  Alerts:
    Type: AWS::Serverless::Application
    Properties:
      Location: blocks/subscriber.yaml
      Parameters:
        TopicArn: !Ref Topic
        Mode: alerts
  Watcher:
    Type: AWS::SQS::Queue
    Properties:
      Tags:
        - { Key: url, Value: !GetAtt Alerts.Outputs.QueueUrl }
        - { Key: name, Value: !Sub "watching ${Alerts.Outputs.Name}" }
"#,
            ),
            ("blocks/subscriber.yaml", SUBSCRIBER),
        ]);
        let template = Template::load(&dir.join("template.yaml")).unwrap();
        let ids: std::collections::BTreeSet<&str> = template
            .resources
            .iter()
            .map(|(id, _)| id.as_str())
            .collect();
        let expected = [
            "Topic",
            "Watcher",
            "AlertsDeadLetterQueue",
            "AlertsQueue",
            "AlertsSubscription",
            "AlertsFunction",
            "AlertsExtra",
        ];
        assert_eq!(ids, expected.into_iter().collect());
        let by_id = |id: &str| &template.resources.iter().find(|(i, _)| i == id).unwrap().1;
        let subscription = resolve(
            &by_id("AlertsSubscription").properties,
            &Physical(Some(&template)),
        )
        .unwrap();
        assert_eq!(subscription["TopicArn"], "ref-Topic");
        assert_eq!(subscription["Endpoint"], "AlertsQueue-Arn");
        assert_eq!(subscription["FilterPolicy"], r#"["a"]"#);
        // The child's Globals, not the parent's.
        let function = &by_id("AlertsFunction").properties;
        assert_eq!(function["Timeout"], 7);
        assert!(function.get("MemorySize").is_none());
        let env = resolve(
            &function["Environment"]["Variables"],
            &Physical(Some(&template)),
        )
        .unwrap();
        assert_eq!(env["MODE"], "alerts");
        assert_eq!(env["DLQ"], "ref-AlertsDeadLetterQueue");
        assert_eq!(env["NAME"], "alerts-AlertsQueue-QueueName-ref-AWS::Region");
        // The child's conditions, renamed, on the parameters the parent passed.
        assert_eq!(
            by_id("AlertsExtra").condition.as_deref(),
            Some("AlertsHasPolicy")
        );
        let names = Physical(Some(&template));
        assert!(!template.condition_value("AlertsHasPolicy", &names).unwrap());
        assert!(
            env.get("POLICY").is_none(),
            "AWS::NoValue leaves it out: {env}"
        );
        let watcher = resolve(&by_id("Watcher").properties, &Physical(Some(&template))).unwrap();
        assert_eq!(watcher["Tags"][0]["Value"], "ref-AlertsQueue");
        assert_eq!(watcher["Tags"][1]["Value"], "watching alerts-subscriber");
        let order = template.creation_order().unwrap();
        let pos = |id: &str| order.iter().position(|o| o == id).unwrap();
        assert!(pos("Topic") < pos("AlertsSubscription"));
        assert!(pos("AlertsQueue") < pos("Watcher"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_deployed_application_is_inlined_from_its_nested_stack() {
        // As `sam deploy` sends it: the application's template uploaded, its Location a URL.
        let parent = r#"
Conditions:
  Never: !Equals [a, b]
Resources:
  Topic: { Type: AWS::SNS::Topic }
  Alerts:
    Type: AWS::Serverless::Application
    Properties:
      Location: https://s3.amazonaws.com/bucket/templates/subscriber.json
      Parameters: { TopicArn: !Ref Topic, Mode: alerts }
  Spare:
    Type: AWS::Serverless::Application
    Condition: Never
    Properties:
      Location: https://s3.amazonaws.com/bucket/templates/subscriber.json
      Parameters: { TopicArn: !Ref Topic, Mode: spare }
"#;
        let mut nested = NestedTemplates::default();
        nested.insert("Alerts", SUBSCRIBER.to_string(), NestedTemplates::default());
        let template = Template::parse_with_nested(parent, &nested).unwrap();
        let ids: Vec<&str> = template
            .resources
            .iter()
            .map(|(id, _)| id.as_str())
            .collect();
        for id in [
            "Topic",
            "AlertsQueue",
            "AlertsFunction",
            "AlertsSubscription",
        ] {
            assert!(ids.contains(&id), "{id} in {ids:?}");
        }
        assert!(
            !ids.iter()
                .any(|id| id.starts_with("Spare") || *id == "Alerts"),
            "the applications themselves and the one not created are not resources: {ids:?}"
        );
        let function = &template
            .resources
            .iter()
            .find(|(id, _)| id == "AlertsFunction");
        assert_eq!(function.unwrap().1.properties["Timeout"], 7);

        // An application the stack has no nested stack for is named.
        let err = Template::parse_with_nested(parent, &NestedTemplates::default()).unwrap_err();
        assert!(
            format!("{err:#}").contains("application Alerts: the stack has no nested stack"),
            "{err:#}"
        );
    }

    #[test]
    fn what_cannot_be_inlined_is_named() {
        let parent = |parameters: &str, location: &str| {
            format!(
                "Resources:\n  Alerts:\n    Type: AWS::Serverless::Application\n    Properties:\n      Location: {location}\n      Parameters: {parameters}\n"
            )
        };
        let cases = [
            (
                parent("{ Mode: x }", "sub.yaml"),
                "parameter TopicArn has no value",
            ),
            (
                parent("{ Mode: x, TopicArn: t, Typo: 1 }", "sub.yaml"),
                "parameter Typo: the application's template declares no such parameter",
            ),
            (
                parent("{}", "s3://bucket/sub.yaml"),
                "only applications whose template is a local file run locally",
            ),
            (parent("{}", "missing.yaml"), "missing.yaml"),
        ];
        for (text, expected) in cases {
            let dir = project(&[("template.yaml", &text), ("sub.yaml", SUBSCRIBER)]);
            let err = format!(
                "{:#}",
                Template::load(&dir.join("template.yaml")).unwrap_err()
            );
            assert!(err.contains(expected), "{expected} in {err}");
            std::fs::remove_dir_all(dir).unwrap();
        }
    }
}
