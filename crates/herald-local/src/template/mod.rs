//! Reading template.yaml: YAML with CloudFormation's short-form tags (`!Ref`, `!GetAtt`, `!Sub`, ...)
//! turned into the long JSON form (`{"Ref": ...}`), SAM `Globals` merged into each function, and
//! intrinsic functions resolved against the resources the local stack created. Nested
//! applications are inlined (`nested.rs`): from their local template files, or for a deployed
//! stack from the templates of its nested stacks.

mod nested;
mod sub;

pub use nested::NestedTemplates;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{Map, Value};

/// A parsed template.
#[derive(Clone, Debug)]
pub struct Template {
    /// `Parameters` with their defaults (or overrides).
    pub parameters: BTreeMap<String, Value>,
    /// Each parameter's declaration (`Type`, `MinValue`, `MaxValue`, `AllowedValues`, ...), so
    /// an override is refused locally as CloudFormation would refuse it.
    pub parameter_specs: BTreeMap<String, Value>,
    /// `Resources`, in the template's order, with `Globals` merged into serverless functions.
    pub resources: Vec<(String, Resource)>,
    /// `Outputs`.
    pub outputs: BTreeMap<String, Value>,
    /// `Conditions`, unevaluated ([`Template::condition_value`]).
    pub conditions: BTreeMap<String, Value>,
    /// Which resources announce which event types, as the template's `Metadata` declares it:
    /// type → resource ids ([`Template::announced`]).
    pub announced: BTreeMap<String, Vec<String>>,
}

/// One resource.
#[derive(Clone, Debug)]
pub struct Resource {
    /// `Type`, e.g. `AWS::SQS::Queue`.
    pub kind: String,
    /// `Properties` (unresolved).
    pub properties: Value,
    /// `Metadata`.
    pub metadata: Value,
    /// `Condition`: the resource exists only where it holds.
    pub condition: Option<String>,
}

impl Template {
    /// Read and parse a template file, with its nested applications whose template is a local
    /// file (paths relative to this one's directory) inlined.
    pub fn load(path: &Path) -> Result<Template> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let parse = || -> Result<Template> {
            let mut root = parse_root(&text)?;
            let dir = path.parent().unwrap_or(Path::new("."));
            let inlined = nested::inline(&mut root, &nested::Source::Files(dir.to_path_buf()))?;
            Template::from_root(&root, inlined)
        };
        parse().with_context(|| format!("parsing {}", path.display()))
    }

    /// Check an override of parameter `name` against its declaration, as CloudFormation does:
    /// a known name, a number for `Type: Number`, within `MinValue`..`MaxValue`, one of
    /// `AllowedValues`. Limits such as "idempotency outlives every dead letter" are written as
    /// `MinValue`s, so a local stack cannot be brought up with a value AWS would refuse.
    pub fn check_parameter(&self, name: &str, value: &str) -> Result<()> {
        let spec = self
            .parameter_specs
            .get(name)
            .ok_or_else(|| anyhow!("parameter {name}: the template declares no such parameter"))?;
        let as_number = |v: &Value| match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.parse::<f64>().ok(),
            _ => None,
        };
        if spec.get("Type").and_then(Value::as_str) == Some("Number") {
            let number: f64 = value
                .parse()
                .map_err(|_| anyhow!("parameter {name}: \"{value}\" is not a number"))?;
            if let Some(min) = spec.get("MinValue").and_then(as_number) {
                if number < min {
                    bail!("parameter {name}: {value} is below its MinValue {min}");
                }
            }
            if let Some(max) = spec.get("MaxValue").and_then(as_number) {
                if number > max {
                    bail!("parameter {name}: {value} is above its MaxValue {max}");
                }
            }
        }
        if let Some(Value::Array(allowed)) = spec.get("AllowedValues") {
            let matches = |v: &Value| match v {
                Value::String(s) => s == value,
                other => as_number(other).is_some() && as_number(other) == value.parse().ok(),
            };
            if !allowed.iter().any(matches) {
                bail!("parameter {name}: \"{value}\" is not one of its AllowedValues");
            }
        }
        Ok(())
    }

    /// Parse template text.
    pub fn parse(text: &str) -> Result<Template> {
        Template::from_root(&parse_root(text)?, nested::Inlined::default())
    }

    /// Parse a deployed stack's template `text`, with its applications inlined from the
    /// templates its nested stacks were created from (`nested`, by the applications' ids).
    pub fn parse_with_nested(text: &str, nested: &NestedTemplates) -> Result<Template> {
        let mut root = parse_root(text)?;
        let inlined = nested::inline(&mut root, &nested::Source::Deployed(nested))?;
        Template::from_root(&root, inlined)
    }

    /// The template in `root`; the functions `inlined` from applications have their `Globals`
    /// already.
    fn from_root(root: &Map<String, Value>, inlined: nested::Inlined) -> Result<Template> {
        let merged = &inlined.ids;
        let mut parameters = BTreeMap::new();
        let mut parameter_specs = BTreeMap::new();
        if let Some(Value::Object(params)) = root.get("Parameters") {
            for (name, spec) in params {
                if let Some(default) = spec.get("Default") {
                    parameters.insert(name.clone(), default.clone());
                }
                parameter_specs.insert(name.clone(), spec.clone());
            }
        }
        let globals = root
            .get("Globals")
            .and_then(|g| g.get("Function"))
            .cloned()
            .unwrap_or(Value::Object(Map::new()));
        let mut resources = Vec::new();
        let Some(Value::Object(items)) = root.get("Resources") else {
            bail!("the template has no Resources");
        };
        for (id, body) in items {
            let kind = body
                .get("Type")
                .and_then(Value::as_str)
                .ok_or_else(|| anyhow!("resource {id} has no Type"))?
                .to_string();
            let mut properties = body
                .get("Properties")
                .cloned()
                .unwrap_or(Value::Object(Map::new()));
            if kind == "AWS::Serverless::Function" && !merged.contains(id) {
                properties = merge_globals(&globals, properties);
            }
            resources.push((
                id.clone(),
                Resource {
                    kind,
                    properties,
                    metadata: body.get("Metadata").cloned().unwrap_or(Value::Null),
                    condition: body
                        .get("Condition")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                },
            ));
        }
        let outputs = match root.get("Outputs") {
            Some(Value::Object(outputs)) => outputs
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            _ => BTreeMap::new(),
        };
        let conditions = match root.get("Conditions") {
            Some(Value::Object(conditions)) => conditions
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            _ => BTreeMap::new(),
        };
        Ok(Template {
            announced: announced(root, &resources, &inlined.applications)?,
            parameters,
            parameter_specs,
            resources,
            outputs,
            conditions,
        })
    }

    /// A condition's value (`Fn::Equals`, `Fn::Not`, `Fn::And`, `Fn::Or`, `Condition`), with
    /// the names `names` resolves.
    pub fn condition_value(&self, name: &str, names: &dyn Names) -> Result<bool> {
        self.condition(name, names, 0)
    }

    fn condition(&self, name: &str, names: &dyn Names, depth: usize) -> Result<bool> {
        let expression = self
            .conditions
            .get(name)
            .ok_or_else(|| anyhow!("condition {name}: no such condition"))?;
        self.truth(expression, names, depth)
            .with_context(|| format!("condition {name}"))
    }

    fn truth(&self, expression: &Value, names: &dyn Names, depth: usize) -> Result<bool> {
        if depth > 32 {
            bail!("conditions refer to each other in a cycle");
        }
        let Some((function, arg)) = expression.as_object().and_then(|m| m.iter().next()) else {
            bail!("{expression} is not a condition");
        };
        let items = || arg.as_array().cloned().unwrap_or_default();
        Ok(match function.as_str() {
            "Fn::Equals" => {
                let items = items();
                let [a, b] = &items[..] else {
                    bail!("Fn::Equals takes two values");
                };
                scalar(&resolve(a, names)?) == scalar(&resolve(b, names)?)
            }
            "Fn::Not" => !self.truth(
                &items().first().cloned().unwrap_or_default(),
                names,
                depth + 1,
            )?,
            "Fn::And" => {
                let mut all = true;
                for item in items() {
                    all &= self.truth(&item, names, depth + 1)?;
                }
                all
            }
            "Fn::Or" => {
                let mut any = false;
                for item in items() {
                    any |= self.truth(&item, names, depth + 1)?;
                }
                any
            }
            "Condition" => self.condition(arg.as_str().unwrap_or_default(), names, depth + 1)?,
            other => bail!("{other} is not a condition function"),
        })
    }

    /// Resources of one type.
    pub fn of_kind<'a>(
        &'a self,
        kind: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a Resource)> + 'a {
        self.resources
            .iter()
            .filter(move |(_, r)| r.kind == kind)
            .map(|(id, r)| (id.as_str(), r))
    }

    /// Resource ids in an order where every resource comes after the resources it refers to.
    pub fn creation_order(&self) -> Result<Vec<String>> {
        let ids: BTreeSet<&str> = self.resources.iter().map(|(id, _)| id.as_str()).collect();
        let mut deps: HashMap<&str, BTreeSet<String>> = HashMap::new();
        let functions: Vec<&str> = self
            .of_kind("AWS::Serverless::Function")
            .map(|(id, _)| id)
            .collect();
        for (id, resource) in &self.resources {
            let mut refs = BTreeSet::new();
            references(&resource.properties, &mut refs);
            // What SAM makes of a function (its role `<Function>Role`, the implicit HTTP or REST
            // API) exists once the function (or every function) is made.
            let implicit: Vec<String> = refs
                .iter()
                .filter(|r| !ids.contains(r.as_str()))
                .flat_map(|r| match r.strip_suffix("Role") {
                    Some(function) if functions.contains(&function) => vec![function.to_string()],
                    _ if r == "ServerlessHttpApi" || r == "ServerlessRestApi" => {
                        functions.iter().map(|f| f.to_string()).collect()
                    }
                    _ => Vec::new(),
                })
                .collect();
            refs.extend(implicit);
            refs.retain(|r| ids.contains(r.as_str()) && r != id);
            deps.insert(id.as_str(), refs);
        }
        let mut order: Vec<String> = Vec::new();
        let mut placed: BTreeSet<String> = BTreeSet::new();
        while order.len() < self.resources.len() {
            let before = order.len();
            for (id, _) in &self.resources {
                if !placed.contains(id) && deps[id.as_str()].iter().all(|d| placed.contains(d)) {
                    placed.insert(id.clone());
                    order.push(id.clone());
                }
            }
            if order.len() == before {
                bail!("the template's resources refer to each other in a cycle");
            }
        }
        Ok(order)
    }

    /// The resources themselves, in [`Template::creation_order`].
    pub fn in_creation_order(&self) -> Result<Vec<(String, &Resource)>> {
        let by_id: HashMap<&str, &Resource> = self
            .resources
            .iter()
            .map(|(id, r)| (id.as_str(), r))
            .collect();
        Ok(self
            .creation_order()?
            .into_iter()
            .map(|id| {
                let resource = by_id[id.as_str()];
                (id, resource)
            })
            .collect())
    }
}

/// A template's text as JSON in CloudFormation's long form.
fn parse_root(text: &str) -> Result<Map<String, Value>> {
    let yaml: serde_yaml::Value = serde_yaml::from_str(text)?;
    match to_json(yaml)? {
        Value::Object(root) => Ok(root),
        _ => bail!("a template is a mapping"),
    }
}

/// SAM `Globals.Function` under a function's own properties (the function's values win; maps
/// such as `Environment.Variables` are merged key by key).
fn merge_globals(globals: &Value, properties: Value) -> Value {
    match (globals, properties) {
        (Value::Object(g), Value::Object(mut p)) => {
            for (key, value) in g {
                match p.remove(key) {
                    None => {
                        p.insert(key.clone(), value.clone());
                    }
                    Some(own @ Value::Object(_)) if value.is_object() => {
                        p.insert(key.clone(), merge_globals(value, own));
                    }
                    Some(own) => {
                        p.insert(key.clone(), own);
                    }
                }
            }
            Value::Object(p)
        }
        (_, properties) => properties,
    }
}

/// Logical ids a value refers to through `Ref`, `Fn::GetAtt` or `${...}` in `Fn::Sub`.
fn references(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(target)) = map.get("Ref") {
                out.insert(target.clone());
            }
            if let Some(Value::Array(parts)) = map.get("Fn::GetAtt") {
                if let Some(Value::String(target)) = parts.first() {
                    out.insert(target.clone());
                }
            }
            if let Some(sub) = map.get("Fn::Sub").and_then(|arg| sub::Sub::parse(arg).ok()) {
                for name in sub.names() {
                    out.insert(name.split('.').next().unwrap_or_default().to_string());
                }
            }
            for v in map.values() {
                references(v, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| references(v, out)),
        _ => {}
    }
}

/// YAML (with CloudFormation tags) to JSON in CloudFormation's long form.
fn to_json(yaml: serde_yaml::Value) -> Result<Value> {
    use serde_yaml::Value as Y;
    Ok(match yaml {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => serde_json::to_value(&n)?,
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(items.into_iter().map(to_json).collect::<Result<_>>()?),
        Y::Mapping(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                let key = match k {
                    Y::String(s) => s,
                    other => serde_yaml::to_string(&other)?.trim().to_string(),
                };
                out.insert(key, to_json(v)?);
            }
            Value::Object(out)
        }
        Y::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let tag = tag.trim_start_matches('!');
            let inner = to_json(tagged.value)?;
            let name = match tag {
                "Ref" | "Condition" => tag.to_string(),
                _ => format!("Fn::{tag}"),
            };
            let inner = match (tag, inner) {
                // `!GetAtt Resource.Attribute` is short for ["Resource", "Attribute"].
                ("GetAtt", Value::String(s)) => {
                    let (resource, attribute) = s
                        .split_once('.')
                        .ok_or_else(|| anyhow!("!GetAtt {s}: expected Resource.Attribute"))?;
                    Value::Array(vec![resource.into(), attribute.into()])
                }
                (_, inner) => inner,
            };
            let mut out = Map::new();
            out.insert(name, inner);
            Value::Object(out)
        }
    })
}

/// What `Ref` and `Fn::GetAtt` of the local stack's resources resolve to.
pub trait Names {
    /// `Ref` of a resource or parameter.
    fn reference(&self, id: &str) -> Option<Value>;
    /// `Fn::GetAtt` of a resource.
    fn attribute(&self, id: &str, attribute: &str) -> Option<Value>;
    /// A condition's value, for `Fn::If` ([`Template::condition_value`]). Default: none known.
    fn condition(&self, _name: &str) -> Option<bool> {
        None
    }
}

/// `Ref AWS::NoValue`, removed from the object or list it is in once resolved.
const NO_VALUE: &str = "\u{0}AWS::NoValue";

/// Resolve every intrinsic function in `value`.
pub fn resolve(value: &Value, names: &dyn Names) -> Result<Value> {
    let resolved = resolve_inner(value, names)?;
    Ok(if is_no_value(&resolved) {
        Value::Null
    } else {
        resolved
    })
}

fn is_no_value(value: &Value) -> bool {
    value.as_str() == Some(NO_VALUE)
}

fn resolve_inner(value: &Value, names: &dyn Names) -> Result<Value> {
    match value {
        Value::Object(map) if map.len() == 1 => {
            let (key, arg) = map.iter().next().expect("one entry");
            match key.as_str() {
                "Ref" if arg.as_str() == Some("AWS::NoValue") => Ok(Value::String(NO_VALUE.into())),
                "Fn::If" => {
                    let parts = arg.as_array().map(Vec::as_slice).unwrap_or_default();
                    let [Value::String(condition), then, otherwise] = parts else {
                        bail!("Fn::If takes [condition, value if true, value if false]");
                    };
                    let holds = names
                        .condition(condition)
                        .ok_or_else(|| anyhow!("Fn::If: condition {condition} is not known"))?;
                    resolve_inner(if holds { then } else { otherwise }, names)
                }
                "Ref" => {
                    let id = arg.as_str().ok_or_else(|| anyhow!("Ref takes a name"))?;
                    names
                        .reference(id)
                        .ok_or_else(|| anyhow!("Ref {id}: no such resource or parameter"))
                }
                "Fn::GetAtt" => {
                    let parts: Vec<&str> = arg
                        .as_array()
                        .map(|a| a.iter().filter_map(Value::as_str).collect())
                        .unwrap_or_default();
                    let [id, attribute] = parts[..] else {
                        bail!("Fn::GetAtt takes [Resource, Attribute]");
                    };
                    names
                        .attribute(id, attribute)
                        .ok_or_else(|| anyhow!("Fn::GetAtt {id}.{attribute} is not known locally"))
                }
                "Fn::Sub" => {
                    let sub = sub::Sub::parse(arg)?;
                    let mut out = String::new();
                    for piece in sub.pieces()? {
                        match piece {
                            sub::Piece::Text(text) => out.push_str(text),
                            sub::Piece::Escaped(literal) => {
                                out.push_str(&format!("${{{literal}}}"))
                            }
                            sub::Piece::Name(name) => {
                                let value = if let Some(v) = sub.variables.get(name) {
                                    resolve(v, names)?
                                } else if let Some((id, attribute)) = name.split_once('.') {
                                    names.attribute(id, attribute).ok_or_else(|| {
                                        anyhow!("Fn::Sub ${{{name}}} is not known locally")
                                    })?
                                } else {
                                    names.reference(name).ok_or_else(|| {
                                        anyhow!("Fn::Sub ${{{name}}}: no such name")
                                    })?
                                };
                                out.push_str(&scalar(&value));
                            }
                        }
                    }
                    Ok(Value::String(out))
                }
                "Fn::Join" => {
                    let parts = arg
                        .as_array()
                        .ok_or_else(|| anyhow!("Fn::Join takes [sep, list]"))?;
                    let sep = parts.first().and_then(Value::as_str).unwrap_or_default();
                    let list = resolve(parts.get(1).unwrap_or(&Value::Null), names)?;
                    let items: Vec<String> = list
                        .as_array()
                        .map(|a| a.iter().map(scalar).collect())
                        .unwrap_or_default();
                    Ok(Value::String(items.join(sep)))
                }
                "Fn::Select" => {
                    let parts = arg
                        .as_array()
                        .ok_or_else(|| anyhow!("Fn::Select takes [index, list]"))?;
                    let index = resolve(&parts[0], names)?;
                    let index: usize = scalar(&index).parse().context("Fn::Select index")?;
                    let list = match resolve(parts.get(1).unwrap_or(&Value::Null), names)? {
                        // A CommaDelimitedList parameter passed as one string.
                        Value::String(text) => Value::Array(
                            text.split(',')
                                .map(|item| Value::String(item.trim().to_string()))
                                .collect(),
                        ),
                        list => list,
                    };
                    list.get(index)
                        .cloned()
                        .ok_or_else(|| anyhow!("Fn::Select index {index} out of range"))
                }
                _ => resolve_object(map, names),
            }
        }
        Value::Object(map) => resolve_object(map, names),
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                let item = resolve_inner(item, names)?;
                if !is_no_value(&item) {
                    out.push(item);
                }
            }
            Ok(Value::Array(out))
        }
        other => Ok(other.clone()),
    }
}

fn resolve_object(map: &Map<String, Value>, names: &dyn Names) -> Result<Value> {
    let mut out = Map::new();
    for (key, value) in map {
        let value = resolve_inner(value, names)?;
        if !is_no_value(&value) {
            out.insert(key.clone(), value);
        }
    }
    Ok(Value::Object(out))
}

/// A resolved scalar as text (numbers and booleans as CloudFormation would substitute them).
pub fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The template's declaration of who announces what:
///
/// ```yaml
/// Metadata:
///   Herald:
///     Announces:
///       Payment: [payment_succeeded, payment_failed]   # a resource or an application
/// ```
///
/// as type → resource ids. A name that is neither a resource nor an application is an error
/// naming it.
fn announced(
    root: &Map<String, Value>,
    resources: &[(String, Resource)],
    applications: &BTreeSet<String>,
) -> Result<BTreeMap<String, Vec<String>>> {
    let mut announced: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let declared = &root.get("Metadata").unwrap_or(&Value::Null)["Herald"]["Announces"];
    let Some(declared) = declared.as_object() else {
        return Ok(announced);
    };
    for (id, types) in declared {
        if !resources.iter().any(|(r, _)| r == id) && !applications.contains(id) {
            bail!("Metadata.Herald.Announces: {id} is not a resource or an application of the template");
        }
        let types = types.as_array().ok_or_else(|| {
            anyhow!("Metadata.Herald.Announces.{id}: expected a list of event types")
        })?;
        for event_type in types {
            let event_type = event_type.as_str().ok_or_else(|| {
                anyhow!("Metadata.Herald.Announces.{id}: {event_type} is not an event type")
            })?;
            announced
                .entry(event_type.to_string())
                .or_default()
                .push(id.clone());
        }
    }
    Ok(announced)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;
    impl Names for Fixed {
        fn reference(&self, id: &str) -> Option<Value> {
            Some(Value::String(format!("ref-{id}")))
        }
        fn attribute(&self, id: &str, attribute: &str) -> Option<Value> {
            Some(Value::String(format!("{id}-{attribute}")))
        }
    }

    #[test]
    fn short_tags_become_long_form_and_resolve() {
        let template = Template::parse(
            r#"
Parameters:
  Size: { Type: Number, Default: 3 }
Globals:
  Function:
    Timeout: 10
    Environment: { Variables: { A: a } }
Resources:
  Queue: { Type: AWS::SQS::Queue }
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      Timeout: 30
      Environment: { Variables: { Q: !Ref Queue, ARN: !GetAtt Queue.Arn, S: !Sub "x-${Queue}-${Queue.Arn}-${!lit}" } }
"#,
        )
        .unwrap();
        assert_eq!(template.parameters["Size"], 3);
        let (_, function) = template
            .of_kind("AWS::Serverless::Function")
            .next()
            .unwrap();
        assert_eq!(function.properties["Timeout"], 30);
        let env = resolve(&function.properties["Environment"]["Variables"], &Fixed).unwrap();
        assert_eq!(env["A"], "a");
        assert_eq!(env["Q"], "ref-Queue");
        assert_eq!(env["ARN"], "Queue-Arn");
        assert_eq!(env["S"], "x-ref-Queue-Queue-Arn-${lit}");
        assert_eq!(template.creation_order().unwrap(), vec!["Queue", "Fn"]);
    }

    #[test]
    fn who_announces_what_is_read_from_the_templates_metadata_and_a_wrong_name_is_refused() {
        let template = |announces: &str| {
            Template::parse(&format!(
                "Metadata:\n  Herald:\n    Announces:\n{announces}\nResources:\n  Queue: {{ Type: AWS::SQS::Queue }}\n  Fn: {{ Type: AWS::Serverless::Function }}\n"
            ))
        };
        let read = template("      Queue: [a, b]\n      Fn: [b]").unwrap();
        assert_eq!(read.announced["a"], ["Queue"]);
        assert_eq!(read.announced["b"], ["Fn", "Queue"]);
        let err = template("      Qeue: [a]").unwrap_err();
        assert!(
            format!("{err:#}").contains("Qeue is not a resource"),
            "{err:#}"
        );
        let err = template("      Queue: a").unwrap_err();
        assert!(format!("{err:#}").contains("expected a list"), "{err:#}");
        // An application inlined from its file is a name the declaration may use.
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../template.yaml");
        let shop = Template::load(&path).unwrap();
        assert_eq!(shop.announced["payment_failed"], ["Payment"]);
    }

    #[test]
    fn the_project_template_parses_and_orders() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../template.yaml");
        let template = Template::load(&path).unwrap();
        let order = template.creation_order().unwrap();
        let pos = |id: &str| order.iter().position(|o| o == id).unwrap();
        assert!(pos("InventoryDeadLetterQueue") < pos("InventoryQueue"));
        assert!(pos("InventoryQueue") < pos("InventorySubscription"));
        assert!(pos("BusRouterFunction") < pos("BusRouterStreamMapping"));
    }
}
