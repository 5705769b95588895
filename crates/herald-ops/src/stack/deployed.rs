//! A stack CloudFormation created (`sam deploy`): every resource found by name through
//! `ListStackResources` (CloudFormation's names carry random suffixes; none is derived from a
//! logical id here), and the wiring — which queue dead-letters into which, which function a
//! mapping feeds — read from the template it was deployed from (`GetTemplate`, as sent: the SAM
//! template), resolved against those names. A template on the building blocks is read through
//! its nested stacks, one per application, into the same flat set of resources a local stack
//! of that template has. The result is the same
//! [`Stack`] the local runner provisions, so `herald dlq` and the other commands work on either.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use anyhow::{anyhow, bail, Context, Result};
use aws_config::SdkConfig;
use serde_json::Value;

use herald_local::stack::{Deployment, Physical, Stack, DEAD_LETTER_TARGET};
use herald_local::template::{scalar, NestedTemplates, Template};

/// The template the CloudFormation stack `name` was deployed from, as it was sent (`GetTemplate`,
/// stage `Original`: for `sam deploy`, the SAM template with its code in S3), its applications
/// inlined from the templates of its nested stacks.
pub async fn deployed_template(aws: &SdkConfig, name: &str) -> Result<Template> {
    let cfn = aws_sdk_cloudformation::Client::new(aws);
    Deployed::read(&cfn, name).await?.template(name)
}

/// What CloudFormation holds for a stack and, recursively, its nested stacks (a template built
/// on the building blocks has one per application): each template as it was sent, and every
/// resource's physical id by its logical id in the inlined template (a nested stack's resources
/// prefixed with its application's id: `Welcome` + `Queue` = `WelcomeQueue`).
struct Deployed {
    text: String,
    nested: NestedTemplates,
    physical: BTreeMap<String, String>,
}

type Reading<'a> = Pin<Box<dyn Future<Output = Result<(String, NestedTemplates)>> + Send + 'a>>;

impl Deployed {
    async fn read(cfn: &aws_sdk_cloudformation::Client, name: &str) -> Result<Deployed> {
        let mut physical = BTreeMap::new();
        let (text, nested) = read_stack(cfn, name, String::new(), &mut physical).await?;
        Ok(Deployed {
            text,
            nested,
            physical,
        })
    }

    fn template(&self, name: &str) -> Result<Template> {
        Template::parse_with_nested(&self.text, &self.nested)
            .with_context(|| format!("the template of stack {name}"))
    }
}

/// The template of `stack` (a name, or a nested stack's id), its nested stacks' templates, and
/// its resources' physical ids (into `physical`, under `prefix`).
fn read_stack<'a>(
    cfn: &'a aws_sdk_cloudformation::Client,
    stack: &'a str,
    prefix: String,
    physical: &'a mut BTreeMap<String, String>,
) -> Reading<'a> {
    Box::pin(async move {
        let text = cfn
            .get_template()
            .stack_name(stack)
            .template_stage(aws_sdk_cloudformation::types::TemplateStage::Original)
            .send()
            .await
            .map_err(|err| {
                anyhow!(
                    "no CloudFormation stack {stack} ({})",
                    herald::aws::error_text(&err)
                )
            })?
            .template_body
            .ok_or_else(|| anyhow!("CloudFormation gave no template for stack {stack}"))?;
        let mut children = Vec::new();
        let mut pages = cfn
            .list_stack_resources()
            .stack_name(stack)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|err| anyhow!(herald::aws::error_text(&err)))?;
            for summary in page.stack_resource_summaries() {
                let (Some(id), Some(found)) = (
                    summary.logical_resource_id(),
                    summary.physical_resource_id(),
                ) else {
                    continue;
                };
                if summary.resource_type() == Some("AWS::CloudFormation::Stack") {
                    children.push((id.to_string(), found.to_string()));
                }
                physical.insert(format!("{prefix}{id}"), found.to_string());
            }
        }
        let mut nested = NestedTemplates::default();
        for (id, child) in children {
            let child_prefix = format!("{prefix}{id}");
            let (child_text, grandchildren) =
                read_stack(cfn, &child, child_prefix.clone(), &mut *physical)
                    .await
                    .with_context(|| format!("nested stack {child_prefix} ({child})"))?;
            nested.insert(id, child_text, grandchildren);
        }
        Ok((text, nested))
    })
}

/// The CloudFormation stack `name`, its wiring read from the template it was deployed from.
/// `endpoint` is what the stack records as its endpoint (empty on AWS itself).
pub async fn from_cloudformation(name: &str, aws: &SdkConfig, endpoint: &str) -> Result<Stack> {
    let cfn = aws_sdk_cloudformation::Client::new(aws);
    let described = cfn
        .describe_stacks()
        .stack_name(name)
        .send()
        .await
        .map_err(|err| {
            anyhow!(
                "no CloudFormation stack {name} ({})",
                herald::aws::error_text(&err)
            )
        })?;
    let Some(found) = described.stacks().first() else {
        bail!("no CloudFormation stack {name}");
    };
    let status = found.stack_status().map(|s| s.as_str()).unwrap_or_default();
    // Stacks whose resources are not (or no longer) there; an update in progress or rolled back
    // still has them, and is what an operator most needs to look into.
    if matches!(
        status,
        "CREATE_IN_PROGRESS" | "CREATE_FAILED" | "ROLLBACK_IN_PROGRESS" | "ROLLBACK_COMPLETE"
    ) || status.starts_with("DELETE_")
    {
        bail!("CloudFormation stack {name} is {status}: it has no resources to work on");
    }
    let read = Deployed::read(&cfn, name).await?;
    let template = &read.template(name)?;
    // arn:aws:cloudformation:<region>:<account>:stack/<name>/<id>
    let stack_id = found.stack_id().unwrap_or_default().to_string();
    let mut arn_parts = stack_id.split(':');
    let region = arn_parts.nth(3).unwrap_or("us-east-1").to_string();
    let account = arn_parts.next().unwrap_or("123456789012").to_string();
    let mut parameters = template.parameters.clone();
    for parameter in found.parameters() {
        if let (Some(key), Some(value)) = (parameter.parameter_key(), parameter.parameter_value()) {
            parameters.insert(key.to_string(), Value::String(value.to_string()));
        }
    }
    let outputs: BTreeMap<String, String> = found
        .outputs()
        .iter()
        .filter_map(|o| Some((o.output_key()?.to_string(), o.output_value()?.to_string())))
        .collect();

    // Logical id → physical id, as CloudFormation created them.
    let deployed = read.physical;

    let mut stack = Stack::empty(name, region, account, endpoint);
    stack.outputs = outputs;
    stack.announced = template.announced.clone();
    stack.deployment = Some(Deployment {
        stack_id: stack_id.clone(),
        status: status.to_string(),
    });
    let dynamodb = aws_sdk_dynamodb::Client::new(aws);
    for (id, resource) in template.in_creation_order()? {
        if let Some(condition) = &resource.condition {
            if !stack
                .holds(template, condition, &parameters)
                .with_context(|| format!("condition {condition} of {id}"))?
            {
                continue;
            }
        }
        let resolved = stack.resolve(template, &resource.properties, &parameters);
        let mut properties = match resolved {
            Ok(properties) => properties,
            // What the commands never read (a dashboard's body) need not resolve; what refers
            // to it then fails by name.
            Err(err) => {
                let mut physical =
                    stack.skip(&id, &resource.kind, format!("not resolved: {err:#}"));
                if let Some(found) = deployed.get(&id) {
                    physical.reference = found.clone();
                }
                stack.resources.insert(id.clone(), physical);
                continue;
            }
        };
        // CloudFormation's name for what the readers below would otherwise name themselves.
        let name_property = match resource.kind.as_str() {
            "AWS::Serverless::Function" => Some("FunctionName"),
            "AWS::CloudWatch::Alarm" => Some("AlarmName"),
            "AWS::KinesisFirehose::DeliveryStream" => Some("DeliveryStreamName"),
            _ => None,
        };
        if let (Some(property), Some(found), Value::Object(props)) =
            (name_property, deployed.get(&id), &mut properties)
        {
            props.insert(property.into(), Value::String(found.clone()));
        }
        let described = match (resource.kind.as_str(), deployed.get(&id)) {
            // A function the template has but CloudFormation did not create (a condition).
            ("AWS::Serverless::Function", None) => None,
            (kind, _) => stack
                .describe(&id, kind, &properties, &resource.metadata)
                .with_context(|| format!("reading {id} ({kind})"))?,
        };
        let physical = match (described, deployed.get(&id)) {
            (Some(physical), _) => physical,
            (None, Some(found)) => existing(&dynamodb, &stack, &resource.kind, found, &properties)
                .await
                .with_context(|| format!("reading {id} ({}, {found})", resource.kind))?,
            (None, None) => stack.skip(
                &id,
                &resource.kind,
                "not in the CloudFormation stack".into(),
            ),
        };
        let mut physical = physical;
        // `Ref` is what CloudFormation created, also where the readers above fell back to a
        // name of their own (an alarm they could not read).
        if let Some(found) = deployed.get(&id) {
            physical.reference = found.clone();
        }
        stack.resources.insert(id.clone(), physical);
    }
    function_urls(&mut stack, aws).await?;
    Ok(stack)
}

/// A Function URL's address is AWS's to give (`https://<id>.lambda-url.<region>.on.aws`): read it
/// for every function whose template has a `FunctionUrlConfig`; none when it has none deployed.
async fn function_urls(stack: &mut Stack, aws: &SdkConfig) -> Result<()> {
    let lambda = aws_sdk_lambda::Client::new(aws);
    for index in 0..stack.functions.len() {
        if stack.functions[index].url.is_none() {
            continue;
        }
        let name = stack.functions[index].name.clone();
        // None deployed is an answer; anything else (throttled, denied) is an error to say.
        let config = match lambda
            .get_function_url_config()
            .function_name(&name)
            .send()
            .await
        {
            Ok(config) => Some(config),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                None
            }
            Err(err) => bail!(
                "reading {name}'s Function URL: {}",
                herald::aws::error_text(&err)
            ),
        };
        let function = &mut stack.functions[index];
        function.url = config.map(|config| {
            function.url_auth_type = Some(config.auth_type().as_str().to_string());
            config.function_url().to_string()
        });
        let url_resource = format!("{}Url", function.logical_id);
        let url = function.url.clone();
        if let Some(resource) = stack.resources.get_mut(&url_resource) {
            match url {
                Some(url) => {
                    resource.attributes.insert("FunctionUrl".into(), url);
                }
                None => {
                    resource.attributes.remove("FunctionUrl");
                }
            }
        }
    }
    Ok(())
}

/// What `Ref` and `Fn::GetAtt` give for a resource CloudFormation created as `physical`.
async fn existing(
    dynamodb: &aws_sdk_dynamodb::Client,
    stack: &Stack,
    kind: &str,
    physical: &str,
    properties: &Value,
) -> Result<Physical> {
    let arn = |service: &str, resource: String| stack.arn(service, resource);
    let mut attributes = BTreeMap::new();
    match kind {
        "AWS::SQS::Queue" => {
            // `Ref` is the queue's URL; its name is the URL's last segment.
            let name = physical.rsplit('/').next().unwrap_or(physical).to_string();
            attributes.insert("Arn".into(), arn("sqs", name.clone()));
            attributes.insert("QueueName".into(), name);
            attributes.insert("QueueUrl".into(), physical.to_string());
            if let Some(target) = properties
                .get("RedrivePolicy")
                .and_then(|r| r.get("deadLetterTargetArn"))
            {
                attributes.insert(DEAD_LETTER_TARGET.into(), scalar(target));
            }
        }
        "AWS::Kinesis::Stream" => {
            attributes.insert("Arn".into(), arn("kinesis", format!("stream/{physical}")));
        }
        "AWS::DynamoDB::Table" => {
            attributes.insert("Arn".into(), arn("dynamodb", format!("table/{physical}")));
            if properties
                .get("StreamSpecification")
                .is_some_and(|v| !v.is_null())
            {
                let table = dynamodb
                    .describe_table()
                    .table_name(physical)
                    .send()
                    .await
                    .map_err(|err| anyhow!(herald::aws::error_text(&err)))?;
                if let Some(stream) = table.table().and_then(|t| t.latest_stream_arn()) {
                    attributes.insert("StreamArn".into(), stream.to_string());
                }
            }
        }
        "AWS::SNS::Topic" => {
            attributes.insert("TopicArn".into(), physical.to_string());
            let name = physical.rsplit(':').next().unwrap_or(physical);
            attributes.insert("TopicName".into(), name.to_string());
        }
        "AWS::S3::Bucket" => {
            attributes.insert("Arn".into(), format!("arn:aws:s3:::{physical}"));
        }
        "AWS::KMS::Key" => {
            attributes.insert("Arn".into(), arn("kms", format!("key/{physical}")));
            attributes.insert("KeyId".into(), physical.to_string());
        }
        "AWS::Logs::LogGroup" => {
            attributes.insert("Arn".into(), arn("logs", format!("log-group:{physical}:*")));
        }
        "AWS::KinesisFirehose::DeliveryStream" => {
            attributes.insert(
                "Arn".into(),
                arn("firehose", format!("deliverystream/{physical}")),
            );
        }
        "AWS::IAM::Role" => {
            attributes.insert(
                "Arn".into(),
                format!("arn:aws:iam::{}:role/{physical}", stack.account),
            );
        }
        _ => {}
    }
    Ok(Physical {
        kind: kind.to_string(),
        reference: physical.to_string(),
        attributes,
    })
}
