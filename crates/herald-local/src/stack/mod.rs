//! Provisioning template.yaml's resources on an emulator endpoint, without CloudFormation.
//!
//! moto's CloudFormation drops `AWS::SNS::Subscription` and ignores the SAM transform, and
//! LocalStack's would try to run Lambda in Docker; so herald creates the data-plane resources
//! (streams, tables, queues, topics, subscriptions) itself through their own APIs, in dependency
//! order, and turns functions and event source mappings into the local runner's
//! [`FunctionSpec`]s and [`MappingSpec`]s. Everything comes from the template; nothing here knows
//! herald's own resource names.
//!
//! Physical names are `<stack>-<LogicalId>` (unless the template names a resource), so several
//! stacks share one emulator without colliding: tests give each run its own stack name.

// One module per resource kind; this module keeps the stack itself, template resolution and the
// property helpers they share.
mod alarms;
mod buckets;
mod deliveries;
mod functions;
mod mappings;
mod queues;
mod streams;
mod tables;
mod topics;

pub use deliveries::DeliverySpec;
pub use functions::FunctionSpec;
pub use mappings::{MappingSpec, SqsMapping, StartingPosition, StreamMapping, StreamSource};
pub use queues::DEAD_LETTER_TARGET;

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{anyhow, Context, Result};
use aws_config::SdkConfig;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::alarms::AlarmDefinition;
use crate::template::{resolve, scalar, Names, Template};

/// Options for provisioning.
#[derive(Clone, Debug)]
pub struct StackOptions {
    /// Prefix of every physical name. Default `herald`.
    pub name: String,
    /// Parameter overrides.
    pub parameters: BTreeMap<String, String>,
    /// Base URL of the local Function URL server (`http://127.0.0.1:9000`); each function with a
    /// `FunctionUrlConfig` is served under `<base>/<function logical id>/`.
    pub function_url_base: String,
}

impl Default for StackOptions {
    fn default() -> Self {
        StackOptions {
            name: "herald".into(),
            parameters: BTreeMap::new(),
            function_url_base: "http://127.0.0.1:9000".into(),
        }
    }
}

/// A created resource: what `Ref` and `Fn::GetAtt` give.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Physical {
    /// Resource type.
    pub kind: String,
    /// `Ref`.
    pub reference: String,
    /// `Fn::GetAtt` attributes.
    pub attributes: BTreeMap<String, String>,
}

/// The provisioned stack.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stack {
    /// Stack name (name prefix).
    pub name: String,
    /// Region.
    pub region: String,
    /// Account id the endpoint reports.
    pub account: String,
    /// Endpoint URL.
    pub endpoint: String,
    /// Services at URLs of their own, by `AWS_ENDPOINT_URL_<SERVICE>` (see
    /// [`crate::Endpoint::services`]).
    #[serde(default)]
    pub service_endpoints: BTreeMap<String, String>,
    /// Resources by logical id.
    pub resources: BTreeMap<String, Physical>,
    /// Functions to run.
    pub functions: Vec<FunctionSpec>,
    /// Event source mappings to play.
    pub mappings: Vec<MappingSpec>,
    /// Firehose delivery streams to play (Kinesis into S3).
    #[serde(default)]
    pub deliveries: Vec<DeliverySpec>,
    /// `Outputs`, resolved.
    pub outputs: BTreeMap<String, String>,
    /// Resources with no local counterpart (KMS keys, HTTP APIs, alarms the runner cannot
    /// observe, dashboards, log groups, e-mail subscriptions), by logical id and type or reason.
    pub skipped: BTreeMap<String, String>,
    /// The CloudWatch alarms the local runner evaluates (see [`crate::alarms`]).
    #[serde(default)]
    pub alarms: Vec<AlarmDefinition>,
    /// What CloudFormation says of the stack when it deployed it; none for a stack `herald local
    /// up` provisioned (whose mappings, alarms and delivery streams the runner plays).
    #[serde(default)]
    pub deployment: Option<Deployment>,
    /// Which resources announce which event types, as the template's `Metadata` declares it
    /// ([`Template::announced`](crate::Template::announced)): type → resource ids.
    #[serde(default)]
    pub announced: BTreeMap<String, Vec<String>>,
}

/// A stack CloudFormation created: its id and status when it was read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    /// The stack's ARN.
    pub stack_id: String,
    /// `StackStatus` (`CREATE_COMPLETE`, `UPDATE_ROLLBACK_COMPLETE`, ...).
    pub status: String,
}

impl Stack {
    /// `Ref` of a resource.
    pub fn reference(&self, logical_id: &str) -> Result<&str> {
        self.resources
            .get(logical_id)
            .map(|p| p.reference.as_str())
            .ok_or_else(|| anyhow!("the stack has no resource {logical_id}"))
    }

    /// `Fn::GetAtt` of a resource.
    pub fn attribute(&self, logical_id: &str, attribute: &str) -> Result<&str> {
        self.resources
            .get(logical_id)
            .and_then(|p| p.attributes.get(attribute))
            .map(String::as_str)
            .ok_or_else(|| anyhow!("the stack has no {logical_id}.{attribute}"))
    }

    /// The local Function URL of a function (by any name [`Stack::function`] takes), or an error
    /// saying it has no `FunctionUrlConfig`.
    pub fn function_url(&self, name: &str) -> Result<String> {
        self.function(name)?
            .url
            .clone()
            .ok_or_else(|| anyhow!("{name} has no FunctionUrlConfig in the template"))
    }

    /// A function by logical id, physical name, or short name (`inventory`: `HERALD_FUNCTION` or
    /// the binary).
    pub fn function(&self, name: &str) -> Result<&FunctionSpec> {
        self.functions
            .iter()
            .find(|f| f.logical_id == name || f.name == name || f.label() == name)
            .ok_or_else(|| {
                let known: Vec<&str> = self.functions.iter().map(|f| f.label()).collect();
                anyhow!(
                    "no function {name} in the template (functions: {})",
                    known.join(", ")
                )
            })
    }

    /// Logical ids of resources of one type.
    pub fn of_kind<'a>(
        &'a self,
        kind: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a Physical)> + 'a {
        self.resources
            .iter()
            .filter(move |(_, p)| p.kind == kind)
            .map(|(id, p)| (id.as_str(), p))
    }

    /// Save as JSON (for `herald send`, `herald dlq`, ... in other terminals).
    pub fn save(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("writing {}", path.display()))
    }

    /// Load a saved stack.
    pub fn load(path: &Path) -> Result<Stack> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        Ok(serde_json::from_slice(&bytes)?)
    }
}

struct Resolver<'a> {
    stack: &'a Stack,
    parameters: &'a BTreeMap<String, Value>,
    /// The template whose conditions `Fn::If` asks for.
    template: &'a Template,
}

impl<'a> Resolver<'a> {
    fn new(
        stack: &'a Stack,
        template: &'a Template,
        parameters: &'a BTreeMap<String, Value>,
    ) -> Resolver<'a> {
        Resolver {
            stack,
            parameters,
            template,
        }
    }
}

impl Names for Resolver<'_> {
    fn reference(&self, id: &str) -> Option<Value> {
        let pseudo = match id {
            "AWS::Region" => Some(self.stack.region.clone()),
            "AWS::AccountId" => Some(self.stack.account.clone()),
            "AWS::Partition" => Some("aws".into()),
            "AWS::URLSuffix" => Some("amazonaws.com".into()),
            "AWS::StackName" => Some(self.stack.name.clone()),
            "AWS::StackId" => Some(format!(
                "arn:aws:cloudformation:{}:{}:stack/{}/local",
                self.stack.region, self.stack.account, self.stack.name
            )),
            _ => None,
        };
        pseudo
            .map(Value::String)
            .or_else(|| self.parameters.get(id).cloned())
            .or_else(|| {
                self.stack
                    .resources
                    .get(id)
                    .map(|p| Value::String(p.reference.clone()))
            })
    }

    fn attribute(&self, id: &str, attribute: &str) -> Option<Value> {
        self.stack
            .resources
            .get(id)
            .and_then(|p| p.attributes.get(attribute))
            .map(|v| Value::String(v.clone()))
    }

    fn condition(&self, name: &str) -> Option<bool> {
        // Evaluated when asked: an application's condition may test a parameter its parent
        // passes a resource's name in, known once that resource exists.
        self.template.condition_value(name, self).ok()
    }
}

impl Stack {
    /// A stack of no resources yet, named `name`, in `region` of `account`, at `endpoint`: the
    /// start of one read from somewhere else (CloudFormation), filled with [`Stack::describe`].
    pub fn empty(name: &str, region: String, account: String, endpoint: &str) -> Stack {
        Stack {
            name: name.to_string(),
            region,
            account,
            endpoint: endpoint.to_string(),
            service_endpoints: BTreeMap::new(),
            resources: BTreeMap::new(),
            functions: Vec::new(),
            mappings: Vec::new(),
            deliveries: Vec::new(),
            outputs: BTreeMap::new(),
            skipped: BTreeMap::new(),
            alarms: Vec::new(),
            deployment: None,
            announced: BTreeMap::new(),
        }
    }

    /// The endpoint the stack lives on (every service where it was provisioned).
    pub fn aws_endpoint(&self) -> crate::Endpoint {
        let mut services = herald::aws::ServiceEndpoints::default();
        for (variable, url) in &self.service_endpoints {
            services.insert(variable.clone(), url.clone());
        }
        crate::Endpoint::external(self.endpoint.clone()).with_services(services)
    }
}

/// Reading a stack whose resources exist already (CloudFormation created them): the same model
/// as one provisioned here, built from the template's resources one at a time, in creation order.
impl Stack {
    /// `properties` of a resource of `template` with every `Ref`, `Fn::GetAtt`, `Fn::Sub` ...
    /// resolved against the resources described so far, the pseudo parameters and
    /// `parameters`, and each `Fn::If` by the template's conditions (a building block's
    /// `!If [HasPolicy, ...]`), as CloudFormation evaluated them when it created the stack.
    pub fn resolve(
        &self,
        template: &Template,
        properties: &Value,
        parameters: &BTreeMap<String, Value>,
    ) -> Result<Value> {
        resolve(properties, &Resolver::new(self, template, parameters))
    }

    /// Whether `template`'s condition `name` holds for this stack and `parameters`: what
    /// CloudFormation decided when it created the stack (a resource whose condition is false is
    /// not there, as locally).
    pub fn holds(
        &self,
        template: &Template,
        name: &str,
        parameters: &BTreeMap<String, Value>,
    ) -> Result<bool> {
        template.condition_value(name, &Resolver::new(self, template, parameters))
    }

    /// What the model reads from the template alone — a function, an event source mapping, a
    /// Firehose delivery stream, an alarm — added to the stack; none for other kinds, whose
    /// `Ref` and attributes the caller reads where they live.
    pub fn describe(
        &mut self,
        id: &str,
        kind: &str,
        properties: &Value,
        metadata: &Value,
    ) -> Result<Option<Physical>> {
        let options = StackOptions {
            name: self.name.clone(),
            ..StackOptions::default()
        };
        Ok(Some(match kind {
            "AWS::Serverless::Function" => {
                functions::function(self, id, kind, properties, metadata, &options)?
            }
            "AWS::Lambda::EventSourceMapping" => {
                mappings::event_source_mapping(self, id, kind, properties)?
            }
            "AWS::KinesisFirehose::DeliveryStream" => {
                deliveries::delivery_stream(self, id, kind, properties)?
            }
            "AWS::CloudWatch::Alarm" => alarms_of(self, id, kind, properties),
            _ => return Ok(None),
        }))
    }

    /// A resource the model has nothing of, listed in [`Stack::skipped`] with `why`.
    pub fn skip(&mut self, id: &str, kind: &str, why: String) -> Physical {
        not_local(self, id, kind, why)
    }

    /// `arn:aws:<service>:<region>:<account>:<resource>` in this stack.
    pub fn arn(&self, service: &str, resource: String) -> String {
        arn(self, service, resource)
    }
}

/// Create (or find) every resource of `template` on the endpoint `aws` points at.
pub async fn provision(
    template: &Template,
    options: &StackOptions,
    aws: &SdkConfig,
    endpoint: &str,
) -> Result<Stack> {
    let region = aws
        .region()
        .map(|r| r.to_string())
        .unwrap_or_else(|| "us-east-1".into());
    let account = aws_sdk_sts::Client::new(aws)
        .get_caller_identity()
        .send()
        .await
        .map(|id| id.account.unwrap_or_default())
        .unwrap_or_default();
    let account = if account.is_empty() {
        "123456789012".to_string()
    } else {
        account
    };

    let mut parameters = template.parameters.clone();
    for (name, value) in &options.parameters {
        template.check_parameter(name, value)?;
        parameters.insert(name.clone(), Value::String(value.clone()));
    }
    let mut stack = Stack::empty(&options.name, region, account, endpoint);
    stack.announced = template.announced.clone();
    let clients = Clients::new(aws);
    for (id, resource) in template.in_creation_order()? {
        if let Some(condition) = &resource.condition {
            if !stack.holds(template, condition, &parameters)? {
                continue;
            }
        }
        let properties = stack
            .resolve(template, &resource.properties, &parameters)
            .with_context(|| format!("resolving {id}"))?;
        let physical = create(
            &clients,
            &mut stack,
            &id,
            &resource.kind,
            &properties,
            &resource.metadata,
            options,
        )
        .await
        .with_context(|| format!("creating {id} ({})", resource.kind))?;
        stack.resources.insert(id.clone(), physical);
    }

    for (name, output) in &template.outputs {
        let value = output.get("Value").cloned().unwrap_or(Value::Null);
        // Outputs of resources with no local counterpart (an HTTP API's URL) may not resolve.
        if let Ok(v) = stack.resolve(template, &value, &parameters) {
            stack.outputs.insert(name.clone(), scalar(&v));
        }
    }
    Ok(stack)
}

struct Clients {
    s3: aws_sdk_s3::Client,
    dynamodb: aws_sdk_dynamodb::Client,
    kinesis: aws_sdk_kinesis::Client,
    sqs: aws_sdk_sqs::Client,
    sns: aws_sdk_sns::Client,
}

impl Clients {
    fn new(aws: &SdkConfig) -> Self {
        Clients {
            s3: crate::s3::client(aws),
            dynamodb: aws_sdk_dynamodb::Client::new(aws),
            kinesis: aws_sdk_kinesis::Client::new(aws),
            sqs: aws_sdk_sqs::Client::new(aws),
            sns: aws_sdk_sns::Client::new(aws),
        }
    }
}

fn physical_name(stack: &Stack, id: &str, explicit: Option<&Value>, max: usize) -> String {
    match explicit.and_then(Value::as_str) {
        Some(name) => name.to_string(),
        None => {
            let mut name = format!("{}-{}", stack.name, id);
            name.truncate(max);
            name
        }
    }
}

fn prop<'a>(properties: &'a Value, name: &str) -> Option<&'a Value> {
    properties.get(name).filter(|v| !v.is_null())
}

fn prop_num<T: std::str::FromStr>(properties: &Value, name: &str) -> Result<Option<T>> {
    match prop(properties, name) {
        None => Ok(None),
        Some(v) => scalar(v)
            .parse()
            .map(Some)
            .map_err(|_| anyhow!("{name} must be a whole number, not {v}")),
    }
}

fn prop_bool(properties: &Value, name: &str) -> Option<bool> {
    prop(properties, name).map(|v| matches!(scalar(v).as_str(), "true" | "True"))
}

/// A JSON attribute value (a policy) as the string the APIs take.
fn json_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => {
            // maxReceiveCount and friends may come out of !Ref as strings; APIs accept both.
            other.to_string()
        }
    }
}

/// `arn:aws:<service>:<region>:<account>:<resource>` in this stack.
fn arn(stack: &Stack, service: &str, resource: String) -> String {
    format!(
        "arn:aws:{service}:{}:{}:{resource}",
        stack.region, stack.account
    )
}

async fn create(
    clients: &Clients,
    stack: &mut Stack,
    id: &str,
    kind: &str,
    properties: &Value,
    metadata: &Value,
    options: &StackOptions,
) -> Result<Physical> {
    match kind {
        "AWS::DynamoDB::Table" => tables::table(clients, stack, id, kind, properties).await,
        "AWS::Kinesis::Stream" => streams::stream(clients, stack, id, kind, properties).await,
        "AWS::SQS::Queue" => queues::queue(clients, stack, id, kind, properties).await,
        "AWS::SNS::Topic" => topics::topic(clients, stack, id, kind, properties).await,
        "AWS::SNS::Subscription" => match prop(properties, "Protocol").map(scalar).as_deref() {
            // The alarm topic's e-mail subscription: nobody to mail locally.
            Some(protocol @ ("email" | "email-json" | "sms")) => Ok(not_local(
                stack,
                id,
                kind,
                format!("{protocol} subscription (delivers to a person; AWS only)"),
            )),
            _ => topics::subscription(clients, kind, properties).await,
        },
        "AWS::SQS::QueuePolicy" => queues::queue_policy(clients, stack, id, kind, properties).await,
        "AWS::Serverless::Function" => {
            functions::function(stack, id, kind, properties, metadata, options)
        }
        "AWS::Lambda::EventSourceMapping" => {
            mappings::event_source_mapping(stack, id, kind, properties)
        }
        "AWS::S3::Bucket" => buckets::bucket(&clients.s3, stack, id, kind, properties).await,
        "AWS::KinesisFirehose::DeliveryStream" => {
            deliveries::delivery_stream(stack, id, kind, properties)
        }
        "AWS::S3::BucketPolicy" => Ok(not_local(
            stack,
            id,
            kind,
            "bucket policy (access control applies on AWS only)".into(),
        )),
        "AWS::Glue::Database" | "AWS::Glue::Table" => Ok(not_local(
            stack,
            id,
            kind,
            "Glue catalog (Athena queries the archive on AWS; locally read it with `herald replay --source archive`)".into(),
        )),
        "AWS::IAM::Role" => {
            let mut physical = not_local(
                stack,
                id,
                kind,
                "IAM role (permissions apply on AWS only)".into(),
            );
            let arn = format!("arn:aws:iam::{}:role/{}", stack.account, physical.reference);
            physical.attributes.insert("Arn".into(), arn);
            Ok(physical)
        }
        "AWS::KMS::Key" => {
            stack.skipped.insert(
                id.into(),
                "KMS key (encryption is applied on AWS only)".into(),
            );
            let key_id = uuid::Uuid::new_v5(
                &uuid::Uuid::NAMESPACE_OID,
                format!("{}/{id}", stack.name).as_bytes(),
            )
            .to_string();
            Ok(Physical {
                kind: kind.into(),
                reference: key_id.clone(),
                attributes: BTreeMap::from([
                    ("Arn".into(), arn(stack, "kms", format!("key/{key_id}"))),
                    ("KeyId".into(), key_id),
                ]),
            })
        }
        "AWS::CloudWatch::Alarm" => Ok(alarms_of(stack, id, kind, properties)),
        "AWS::CloudWatch::Dashboard" => Ok(not_local(
            stack,
            id,
            kind,
            "CloudWatch dashboard (AWS only)".into(),
        )),
        "AWS::Logs::LogGroup" => {
            let mut physical = not_local(
                stack,
                id,
                kind,
                "log group (the runner creates it when its function first logs, as Lambda would; retention applies on AWS only)".into(),
            );
            // What a policy naming the group resolves to.
            let name = prop(properties, "LogGroupName")
                .map(scalar)
                .unwrap_or_else(|| physical.reference.clone());
            physical.attributes.insert(
                "Arn".into(),
                arn(stack, "logs", format!("log-group:{name}:*")),
            );
            physical.reference = name;
            Ok(physical)
        }
        other => Ok(not_local(stack, id, kind, other.into())),
    }
}

/// An alarm the local runner evaluates (or, when it cannot, a skipped resource saying why).
fn alarms_of(stack: &mut Stack, id: &str, kind: &str, properties: &Value) -> Physical {
    match alarms::read(stack, id, properties) {
        Ok(alarm) => {
            let name = alarm.name.clone();
            stack.alarms.push(alarm);
            Physical {
                kind: kind.into(),
                attributes: BTreeMap::from([(
                    "Arn".into(),
                    arn(stack, "cloudwatch", format!("alarm:{name}")),
                )]),
                reference: name,
            }
        }
        Err(why) => not_local(
            stack,
            id,
            kind,
            format!("CloudWatch alarm not evaluated locally: {why}"),
        ),
    }
}

/// A resource with no local counterpart: listed in [`Stack::skipped`] with `why`, and given a
/// `Ref` (`<stack>-<LogicalId>`) so that what refers to it (a dashboard naming its alarms) still
/// resolves.
fn not_local(stack: &mut Stack, id: &str, kind: &str, why: String) -> Physical {
    stack.skipped.insert(id.into(), why);
    Physical {
        kind: kind.into(),
        reference: format!("{}-{id}", stack.name),
        attributes: BTreeMap::new(),
    }
}
