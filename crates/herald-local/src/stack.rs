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

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use aws_config::SdkConfig;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::template::{resolve, scalar, Names, Template};

/// The attribute under which a queue's redrive target (its DLQ's ARN) is kept.
pub const DEAD_LETTER_TARGET: &str = "herald:DeadLetterTargetArn";

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

/// A function the runner starts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FunctionSpec {
    /// Logical id (`InventoryFunction`).
    pub logical_id: String,
    /// Physical name (`herald-InventoryFunction`).
    pub name: String,
    /// Cargo binary (`Metadata.BuildProperties.Binary`).
    pub binary: String,
    /// `Timeout`.
    pub timeout: Duration,
    /// `MemorySize` in MB.
    pub memory_mb: u32,
    /// `Environment.Variables`, resolved.
    pub environment: BTreeMap<String, String>,
    /// `LoggingConfig.LogFormat` (`Text` or `JSON`).
    pub log_format: String,
    /// `LoggingConfig.ApplicationLogLevel`.
    pub log_level: Option<String>,
    /// Local Function URL, when the function has a `FunctionUrlConfig`.
    pub url: Option<String>,
    /// ARN.
    pub arn: String,
}

/// Where a Kinesis mapping starts reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StartingPosition {
    /// The oldest record.
    TrimHorizon,
    /// Only new records.
    Latest,
    /// From a time (epoch seconds).
    AtTimestamp(i64),
}

/// Where a stream mapping reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum StreamSource {
    /// A Kinesis data stream.
    #[default]
    Kinesis,
    /// A DynamoDB table's stream.
    DynamoDb,
}

/// A stream event source mapping: Kinesis or DynamoDB Streams (the same settings and rules).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StreamMapping {
    /// Logical id of the mapping (or `<Function>.<Event>` for SAM events).
    pub logical_id: String,
    /// Logical id of the function.
    pub function: String,
    /// Kinesis or DynamoDB.
    #[serde(default)]
    pub source: StreamSource,
    /// Stream ARN.
    pub stream_arn: String,
    /// Stream name (Kinesis) or table name (DynamoDB).
    pub stream_name: String,
    /// DynamoDB: the table's partition key attribute (read from the stream when it starts).
    #[serde(default)]
    pub partition_key_attribute: Option<String>,
    /// `StartingPosition`.
    pub starting_position: StartingPosition,
    /// `BatchSize` (default 100).
    pub batch_size: usize,
    /// `MaximumBatchingWindowInSeconds` (default 0).
    pub batching_window: Duration,
    /// `BisectBatchOnFunctionError` (default false).
    pub bisect_on_error: bool,
    /// `MaximumRetryAttempts` (default -1: until the record expires).
    pub max_retry_attempts: i64,
    /// `MaximumRecordAgeInSeconds` (default -1: no limit).
    pub max_record_age: Option<Duration>,
    /// `FunctionResponseTypes` contains `ReportBatchItemFailures`.
    pub report_batch_item_failures: bool,
    /// `DestinationConfig.OnFailure.Destination` (an SQS queue or SNS topic ARN).
    pub on_failure: Option<String>,
    /// `ParallelizationFactor` (default 1).
    pub parallelization_factor: usize,
    /// `Enabled` (default true).
    pub enabled: bool,
}

/// An SQS event source mapping.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SqsMapping {
    /// Logical id of the mapping.
    pub logical_id: String,
    /// Logical id of the function.
    pub function: String,
    /// Queue ARN.
    pub queue_arn: String,
    /// Queue URL.
    pub queue_url: String,
    /// `BatchSize` (default 10).
    pub batch_size: usize,
    /// `MaximumBatchingWindowInSeconds` (default 0).
    pub batching_window: Duration,
    /// `FunctionResponseTypes` contains `ReportBatchItemFailures`.
    pub report_batch_item_failures: bool,
    /// `ScalingConfig.MaximumConcurrency` (default: the runner's pool size).
    pub max_concurrency: Option<usize>,
    /// `Enabled` (default true).
    pub enabled: bool,
}

/// An event source mapping.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum MappingSpec {
    /// Kinesis or DynamoDB stream → function.
    Stream(StreamMapping),
    /// SQS queue → function.
    Sqs(SqsMapping),
}

impl MappingSpec {
    /// The function's logical id.
    pub fn function(&self) -> &str {
        match self {
            MappingSpec::Stream(m) => &m.function,
            MappingSpec::Sqs(m) => &m.function,
        }
    }
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
    /// Resources by logical id.
    pub resources: BTreeMap<String, Physical>,
    /// Functions to run.
    pub functions: Vec<FunctionSpec>,
    /// Event source mappings to play.
    pub mappings: Vec<MappingSpec>,
    /// `Outputs`, resolved.
    pub outputs: BTreeMap<String, String>,
    /// Resources with no local counterpart (KMS keys, HTTP APIs), by logical id and type.
    pub skipped: BTreeMap<String, String>,
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

    /// A function by logical id, physical name, or binary name (`inventory`).
    pub fn function(&self, name: &str) -> Result<&FunctionSpec> {
        self.functions
            .iter()
            .find(|f| f.logical_id == name || f.name == name || f.binary == name)
            .ok_or_else(|| {
                let known: Vec<&str> = self.functions.iter().map(|f| f.binary.as_str()).collect();
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
        parameters.insert(name.clone(), Value::String(value.clone()));
    }
    let mut stack = Stack {
        name: options.name.clone(),
        region,
        account,
        endpoint: endpoint.to_string(),
        resources: BTreeMap::new(),
        functions: Vec::new(),
        mappings: Vec::new(),
        outputs: BTreeMap::new(),
        skipped: BTreeMap::new(),
    };
    let clients = Clients::new(aws);
    let by_id: BTreeMap<&str, &crate::template::Resource> = template
        .resources
        .iter()
        .map(|(id, r)| (id.as_str(), r))
        .collect();

    for id in template.creation_order()? {
        let resource = by_id[id.as_str()];
        let properties = resolve(
            &resource.properties,
            &Resolver {
                stack: &stack,
                parameters: &parameters,
            },
        )
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
        if let Ok(v) = resolve(
            &value,
            &Resolver {
                stack: &stack,
                parameters: &parameters,
            },
        ) {
            stack.outputs.insert(name.clone(), scalar(&v));
        }
    }
    Ok(stack)
}

struct Clients {
    dynamodb: aws_sdk_dynamodb::Client,
    kinesis: aws_sdk_kinesis::Client,
    sqs: aws_sdk_sqs::Client,
    sns: aws_sdk_sns::Client,
}

impl Clients {
    fn new(aws: &SdkConfig) -> Self {
        Clients {
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

async fn create(
    clients: &Clients,
    stack: &mut Stack,
    id: &str,
    kind: &str,
    properties: &Value,
    metadata: &Value,
    options: &StackOptions,
) -> Result<Physical> {
    let arn = |service: &str, resource: String| {
        format!(
            "arn:aws:{service}:{}:{}:{resource}",
            stack.region, stack.account
        )
    };
    match kind {
        "AWS::DynamoDB::Table" => {
            let name = physical_name(stack, id, prop(properties, "TableName"), 255);
            let stream_arn = create_table(&clients.dynamodb, &name, properties).await?;
            let mut attributes =
                BTreeMap::from([("Arn".into(), arn("dynamodb", format!("table/{name}")))]);
            if let Some(stream_arn) = stream_arn {
                attributes.insert("StreamArn".into(), stream_arn);
            }
            Ok(Physical {
                kind: kind.into(),
                reference: name.clone(),
                attributes,
            })
        }
        "AWS::Kinesis::Stream" => {
            let name = physical_name(stack, id, prop(properties, "Name"), 128);
            create_stream(&clients.kinesis, &name, properties).await?;
            Ok(Physical {
                kind: kind.into(),
                reference: name.clone(),
                attributes: BTreeMap::from([(
                    "Arn".into(),
                    arn("kinesis", format!("stream/{name}")),
                )]),
            })
        }
        "AWS::SQS::Queue" => {
            let mut name = physical_name(stack, id, prop(properties, "QueueName"), 80);
            if prop_bool(properties, "FifoQueue") == Some(true) && !name.ends_with(".fifo") {
                name.truncate(75);
                name.push_str(".fifo");
            }
            let url = create_queue(&clients.sqs, &name, properties).await?;
            let mut attributes = BTreeMap::from([
                ("Arn".into(), arn("sqs", name.clone())),
                ("QueueName".into(), name),
                ("QueueUrl".into(), url.clone()),
            ]);
            // Not a CloudFormation attribute: kept so `herald dlq redrive` knows where a DLQ's
            // messages came from.
            if let Some(target) =
                prop(properties, "RedrivePolicy").and_then(|r| r.get("deadLetterTargetArn"))
            {
                attributes.insert(DEAD_LETTER_TARGET.into(), scalar(target));
            }
            Ok(Physical {
                kind: kind.into(),
                reference: url,
                attributes,
            })
        }
        "AWS::SNS::Topic" => {
            let name = physical_name(stack, id, prop(properties, "TopicName"), 256);
            let mut request = clients.sns.create_topic().name(&name);
            if prop_bool(properties, "FifoTopic") == Some(true) {
                request = request.attributes("FifoTopic", "true");
            }
            let topic_arn = request
                .send()
                .await?
                .topic_arn
                .unwrap_or_else(|| arn("sns", name.clone()));
            Ok(Physical {
                kind: kind.into(),
                reference: topic_arn.clone(),
                attributes: BTreeMap::from([
                    ("TopicArn".into(), topic_arn),
                    ("TopicName".into(), name),
                ]),
            })
        }
        "AWS::SNS::Subscription" => {
            let topic = prop(properties, "TopicArn")
                .map(scalar)
                .ok_or_else(|| anyhow!("TopicArn is required"))?;
            let protocol = prop(properties, "Protocol")
                .map(scalar)
                .unwrap_or_else(|| "sqs".into());
            let endpoint = prop(properties, "Endpoint")
                .map(scalar)
                .ok_or_else(|| anyhow!("Endpoint is required"))?;
            let mut request = clients
                .sns
                .subscribe()
                .topic_arn(&topic)
                .protocol(&protocol)
                .endpoint(&endpoint)
                .return_subscription_arn(true);
            if let Some(raw) = prop_bool(properties, "RawMessageDelivery") {
                request = request.attributes("RawMessageDelivery", raw.to_string());
            }
            for name in [
                "FilterPolicy",
                "FilterPolicyScope",
                "RedrivePolicy",
                "DeliveryPolicy",
            ] {
                if let Some(v) = prop(properties, name) {
                    request = request.attributes(name, json_text(v));
                }
            }
            let subscription = request.send().await?.subscription_arn.unwrap_or_default();
            Ok(Physical {
                kind: kind.into(),
                reference: subscription,
                attributes: BTreeMap::new(),
            })
        }
        "AWS::SQS::QueuePolicy" => {
            let policy = prop(properties, "PolicyDocument")
                .map(json_text)
                .unwrap_or_default();
            for queue in prop(properties, "Queues")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                clients
                    .sqs
                    .set_queue_attributes()
                    .queue_url(scalar(queue))
                    .attributes(aws_sdk_sqs::types::QueueAttributeName::Policy, &policy)
                    .send()
                    .await?;
            }
            Ok(Physical {
                kind: kind.into(),
                reference: format!("{}-{id}", stack.name),
                attributes: BTreeMap::new(),
            })
        }
        "AWS::Serverless::Function" => {
            let name = physical_name(stack, id, prop(properties, "FunctionName"), 64);
            let function_arn = arn("lambda", format!("function:{name}"));
            let binary = metadata
                .get("BuildProperties")
                .and_then(|b| b.get("Binary"))
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| {
                    anyhow!("{id} has no Metadata.BuildProperties.Binary (the cargo binary to run)")
                })?;
            let environment = prop(properties, "Environment")
                .and_then(|e| e.get("Variables"))
                .and_then(Value::as_object)
                .map(|vars| vars.iter().map(|(k, v)| (k.clone(), scalar(v))).collect())
                .unwrap_or_default();
            let logging = prop(properties, "LoggingConfig");
            let url = prop(properties, "FunctionUrlConfig")
                .map(|_| format!("{}/{id}/", options.function_url_base.trim_end_matches('/')));
            if let Some(url) = &url {
                // SAM's implicit `<Function>Url` resource.
                stack.resources.insert(
                    format!("{id}Url"),
                    Physical {
                        kind: "AWS::Lambda::Url".into(),
                        reference: function_arn.clone(),
                        attributes: BTreeMap::from([("FunctionUrl".into(), url.clone())]),
                    },
                );
            }
            if let Some(Value::Object(events)) = prop(properties, "Events") {
                for (event_id, event) in events {
                    let event_type = event
                        .get("Type")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    let event_props = event.get("Properties").cloned().unwrap_or(Value::Null);
                    let mapping_id = format!("{id}.{event_id}");
                    match event_type {
                        "Kinesis" => stack.mappings.push(kinesis_mapping(
                            stack,
                            &mapping_id,
                            id,
                            &event_props,
                            "Stream",
                        )?),
                        "SQS" => stack.mappings.push(sqs_mapping(
                            stack,
                            &mapping_id,
                            id,
                            &event_props,
                            "Queue",
                        )?),
                        "HttpApi" | "Api" => {
                            let api = if event_type == "HttpApi" {
                                "ServerlessHttpApi"
                            } else {
                                "ServerlessRestApi"
                            };
                            stack
                                .resources
                                .entry(api.to_string())
                                .or_insert_with(|| Physical {
                                    kind: "AWS::Serverless::HttpApi".into(),
                                    reference: format!("{}-local-api", stack.name),
                                    attributes: BTreeMap::new(),
                                });
                            stack.skipped.insert(
                                mapping_id,
                                format!("{event_type} event (served by the Function URL locally)"),
                            );
                        }
                        other => {
                            stack.skipped.insert(mapping_id, format!("{other} event"));
                        }
                    }
                }
            }
            stack.functions.push(FunctionSpec {
                logical_id: id.to_string(),
                name: name.clone(),
                binary,
                timeout: Duration::from_secs(prop_num::<u64>(properties, "Timeout")?.unwrap_or(3)),
                memory_mb: prop_num::<u64>(properties, "MemorySize")?.unwrap_or(128) as u32,
                environment,
                log_format: logging
                    .and_then(|l| l.get("LogFormat"))
                    .map(scalar)
                    .unwrap_or_else(|| "Text".into()),
                log_level: logging
                    .and_then(|l| l.get("ApplicationLogLevel"))
                    .map(scalar),
                url,
                arn: function_arn.clone(),
            });
            Ok(Physical {
                kind: kind.into(),
                reference: name,
                attributes: BTreeMap::from([("Arn".into(), function_arn)]),
            })
        }
        "AWS::Lambda::EventSourceMapping" => {
            let function_name = prop(properties, "FunctionName")
                .map(scalar)
                .unwrap_or_default();
            let function = stack
                .functions
                .iter()
                .find(|f| {
                    f.name == function_name
                        || f.arn == function_name
                        || f.logical_id == function_name
                })
                .map(|f| f.logical_id.clone())
                .ok_or_else(|| {
                    anyhow!("FunctionName {function_name} is not a function of this template")
                })?;
            let source = prop(properties, "EventSourceArn")
                .map(scalar)
                .unwrap_or_default();
            let mapping = if source.starts_with("arn:aws:kinesis:")
                || (source.starts_with("arn:aws:dynamodb:") && source.contains("/stream/"))
            {
                kinesis_mapping(stack, id, &function, properties, "EventSourceArn")?
            } else if source.starts_with("arn:aws:sqs:") {
                sqs_mapping(stack, id, &function, properties, "EventSourceArn")?
            } else {
                bail!("event source {source} is not emulated locally (Kinesis, DynamoDB Streams and SQS are)");
            };
            stack.mappings.push(mapping);
            Ok(Physical {
                kind: kind.into(),
                reference: format!("{}-{id}", stack.name),
                attributes: BTreeMap::new(),
            })
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
                    ("Arn".into(), arn("kms", format!("key/{key_id}"))),
                    ("KeyId".into(), key_id),
                ]),
            })
        }
        other => {
            stack.skipped.insert(id.into(), other.into());
            Ok(Physical {
                kind: kind.into(),
                reference: format!("{}-{id}", stack.name),
                attributes: BTreeMap::new(),
            })
        }
    }
}

/// The queue URL and name of an SQS ARN in this stack.
fn queue_by_arn<'a>(stack: &'a Stack, arn: &str) -> Option<&'a Physical> {
    stack.resources.values().find(|p| {
        p.kind == "AWS::SQS::Queue" && p.attributes.get("Arn").map(String::as_str) == Some(arn)
    })
}

fn kinesis_mapping(
    stack: &Stack,
    id: &str,
    function: &str,
    p: &Value,
    source_key: &str,
) -> Result<MappingSpec> {
    let stream_arn = prop(p, source_key)
        .map(scalar)
        .ok_or_else(|| anyhow!("{source_key} is required"))?;
    // Kinesis: arn:...:stream/<name>; DynamoDB: arn:...:table/<name>/stream/<label>.
    let (source, stream_name) = match stream_arn.split_once(":table/") {
        Some((_, rest)) => (
            StreamSource::DynamoDb,
            rest.split('/').next().unwrap_or_default().to_string(),
        ),
        None => (
            StreamSource::Kinesis,
            stream_arn
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_string(),
        ),
    };
    let starting_position = match prop(p, "StartingPosition").map(scalar).as_deref() {
        Some("LATEST") => StartingPosition::Latest,
        Some("AT_TIMESTAMP") => StartingPosition::AtTimestamp(
            prop_num::<i64>(p, "StartingPositionTimestamp")?.unwrap_or(0),
        ),
        _ => StartingPosition::TrimHorizon,
    };
    let on_failure = p
        .get("DestinationConfig")
        .and_then(|d| d.get("OnFailure"))
        .and_then(|o| o.get("Destination"))
        .map(scalar);
    let max_record_age = prop_num::<i64>(p, "MaximumRecordAgeInSeconds")?.unwrap_or(-1);
    let _ = stack;
    Ok(MappingSpec::Stream(StreamMapping {
        logical_id: id.into(),
        function: function.into(),
        source,
        stream_arn,
        stream_name,
        partition_key_attribute: None,
        starting_position,
        batch_size: prop_num::<u64>(p, "BatchSize")?
            .unwrap_or(100)
            .clamp(1, 10_000) as usize,
        batching_window: Duration::from_secs(
            prop_num::<u64>(p, "MaximumBatchingWindowInSeconds")?.unwrap_or(0),
        ),
        bisect_on_error: prop_bool(p, "BisectBatchOnFunctionError").unwrap_or(false),
        max_retry_attempts: prop_num::<i64>(p, "MaximumRetryAttempts")?.unwrap_or(-1),
        max_record_age: (max_record_age >= 0).then(|| Duration::from_secs(max_record_age as u64)),
        report_batch_item_failures: reports_item_failures(p),
        on_failure,
        parallelization_factor: prop_num::<u64>(p, "ParallelizationFactor")?
            .unwrap_or(1)
            .clamp(1, 10) as usize,
        enabled: prop_bool(p, "Enabled").unwrap_or(true),
    }))
}

fn sqs_mapping(
    stack: &Stack,
    id: &str,
    function: &str,
    p: &Value,
    source_key: &str,
) -> Result<MappingSpec> {
    let queue_arn = prop(p, source_key)
        .map(scalar)
        .ok_or_else(|| anyhow!("{source_key} is required"))?;
    let queue = queue_by_arn(stack, &queue_arn)
        .ok_or_else(|| anyhow!("queue {queue_arn} is not in this stack"))?;
    Ok(MappingSpec::Sqs(SqsMapping {
        logical_id: id.into(),
        function: function.into(),
        queue_url: queue.reference.clone(),
        queue_arn,
        batch_size: prop_num::<u64>(p, "BatchSize")?
            .unwrap_or(10)
            .clamp(1, 10_000) as usize,
        batching_window: Duration::from_secs(
            prop_num::<u64>(p, "MaximumBatchingWindowInSeconds")?.unwrap_or(0),
        ),
        report_batch_item_failures: reports_item_failures(p),
        max_concurrency: p
            .get("ScalingConfig")
            .and_then(|s| s.get("MaximumConcurrency"))
            .and_then(|v| scalar(v).parse().ok()),
        enabled: prop_bool(p, "Enabled").unwrap_or(true),
    }))
}

fn reports_item_failures(p: &Value) -> bool {
    prop(p, "FunctionResponseTypes")
        .and_then(Value::as_array)
        .is_some_and(|types| types.iter().any(|t| t == "ReportBatchItemFailures"))
}

/// Create a table (or keep the one that exists); its stream ARN when it has a stream.
async fn create_table(
    client: &aws_sdk_dynamodb::Client,
    name: &str,
    p: &Value,
) -> Result<Option<String>> {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ProvisionedThroughput,
        ScalarAttributeType, StreamSpecification, StreamViewType, TimeToLiveSpecification,
    };
    let mut request = client.create_table().table_name(name);
    for def in prop(p, "AttributeDefinitions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        request = request.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(def.get("AttributeName").map(scalar).unwrap_or_default())
                .attribute_type(ScalarAttributeType::from(
                    def.get("AttributeType")
                        .map(scalar)
                        .unwrap_or_default()
                        .as_str(),
                ))
                .build()?,
        );
    }
    for key in prop(p, "KeySchema")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        request = request.key_schema(
            KeySchemaElement::builder()
                .attribute_name(key.get("AttributeName").map(scalar).unwrap_or_default())
                .key_type(KeyType::from(
                    key.get("KeyType").map(scalar).unwrap_or_default().as_str(),
                ))
                .build()?,
        );
    }
    if prop(p, "GlobalSecondaryIndexes").is_some() || prop(p, "LocalSecondaryIndexes").is_some() {
        bail!("secondary indexes are not provisioned locally yet");
    }
    request = match prop(p, "BillingMode").map(scalar).as_deref() {
        Some("PROVISIONED") => {
            let t = prop(p, "ProvisionedThroughput");
            let units = |k: &str| {
                t.and_then(|t| t.get(k))
                    .and_then(|v| scalar(v).parse().ok())
                    .unwrap_or(5)
            };
            request.provisioned_throughput(
                ProvisionedThroughput::builder()
                    .read_capacity_units(units("ReadCapacityUnits"))
                    .write_capacity_units(units("WriteCapacityUnits"))
                    .build()?,
            )
        }
        _ => request.billing_mode(BillingMode::PayPerRequest),
    };
    if let Some(view) = prop(p, "StreamSpecification").and_then(|s| s.get("StreamViewType")) {
        request = request.stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::from(scalar(view).as_str()))
                .build()?,
        );
    }
    let stream_arn = match request.send().await {
        Ok(created) => created.table_description.and_then(|t| t.latest_stream_arn),
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_resource_in_use_exception()) =>
        {
            let existing = client
                .describe_table()
                .table_name(name)
                .send()
                .await
                .map_err(|e| anyhow!(herald::aws::error_text(&e)))?;
            return Ok(existing.table.and_then(|t| t.latest_stream_arn));
        }
        Err(err) => return Err(anyhow!(herald::aws::error_text(&err))),
    };
    if let Some(ttl) = prop(p, "TimeToLiveSpecification") {
        if ttl.get("Enabled").map(scalar).as_deref() == Some("true") {
            client
                .update_time_to_live()
                .table_name(name)
                .time_to_live_specification(
                    TimeToLiveSpecification::builder()
                        .attribute_name(ttl.get("AttributeName").map(scalar).unwrap_or_default())
                        .enabled(true)
                        .build()?,
                )
                .send()
                .await
                .map_err(|e| anyhow!(herald::aws::error_text(&e)))?;
        }
    }
    Ok(stream_arn)
}

async fn create_stream(client: &aws_sdk_kinesis::Client, name: &str, p: &Value) -> Result<()> {
    use aws_sdk_kinesis::types::{StreamMode, StreamModeDetails, StreamStatus};
    let mut request = client.create_stream().stream_name(name);
    let on_demand = prop(p, "StreamModeDetails")
        .and_then(|m| m.get("StreamMode"))
        .map(scalar)
        .as_deref()
        == Some("ON_DEMAND");
    request = if on_demand {
        request.stream_mode_details(
            StreamModeDetails::builder()
                .stream_mode(StreamMode::OnDemand)
                .build()?,
        )
    } else {
        request.shard_count(prop_num::<u64>(p, "ShardCount")?.unwrap_or(1) as i32)
    };
    match request.send().await {
        Ok(_) => {}
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_resource_in_use_exception()) => {}
        Err(err) => return Err(anyhow!(herald::aws::error_text(&err))),
    }
    for _ in 0..100 {
        let summary = client
            .describe_stream_summary()
            .stream_name(name)
            .send()
            .await?;
        if summary
            .stream_description_summary()
            .map(|s| s.stream_status())
            == Some(&StreamStatus::Active)
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("stream {name} did not become ACTIVE")
}

async fn create_queue(client: &aws_sdk_sqs::Client, name: &str, p: &Value) -> Result<String> {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let mut attributes = Vec::new();
    for (key, attribute) in [
        ("VisibilityTimeout", A::VisibilityTimeout),
        ("MessageRetentionPeriod", A::MessageRetentionPeriod),
        ("DelaySeconds", A::DelaySeconds),
        ("MaximumMessageSize", A::MaximumMessageSize),
        (
            "ReceiveMessageWaitTimeSeconds",
            A::ReceiveMessageWaitTimeSeconds,
        ),
        ("FifoQueue", A::FifoQueue),
        ("ContentBasedDeduplication", A::ContentBasedDeduplication),
    ] {
        if let Some(v) = prop(p, key) {
            attributes.push((attribute, scalar(v)));
        }
    }
    if let Some(redrive) = prop(p, "RedrivePolicy") {
        // maxReceiveCount arrives as a string when it comes from a parameter; SQS wants a number.
        let mut redrive = redrive.clone();
        if let Some(count) = redrive.get("maxReceiveCount").map(scalar) {
            redrive["maxReceiveCount"] = Value::from(count.parse::<u64>().unwrap_or(5));
        }
        attributes.push((A::RedrivePolicy, redrive.to_string()));
    }
    let mut request = client.create_queue().queue_name(name);
    for (k, v) in &attributes {
        request = request.attributes(k.clone(), v);
    }
    match request.send().await {
        Ok(out) => Ok(out.queue_url.unwrap_or_default()),
        Err(err) => {
            // The queue exists with other attributes (an earlier run of a changed template): update it.
            let url = client
                .get_queue_url()
                .queue_name(name)
                .send()
                .await
                .map_err(|_| anyhow!(herald::aws::error_text(&err)))?
                .queue_url
                .unwrap_or_default();
            let mut update = client.set_queue_attributes().queue_url(&url);
            for (k, v) in attributes.into_iter().filter(|(k, _)| *k != A::FifoQueue) {
                update = update.attributes(k, v);
            }
            update.send().await?;
            Ok(url)
        }
    }
}
