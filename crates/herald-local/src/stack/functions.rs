//! `AWS::Serverless::Function`: the [`FunctionSpec`] the runner starts, its local Function URL,
//! and the mappings of its SAM `Events`.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::mappings::{kinesis_mapping, sqs_mapping};
use super::{arn, physical_name, prop, prop_num, Physical, Stack, StackOptions};
use crate::template::scalar;

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
    /// The CloudWatch Logs group its output goes to: `LoggingConfig.LogGroup`, else Lambda's
    /// `/aws/lambda/<name>`.
    #[serde(default)]
    pub log_group: String,
    /// Local Function URL, when the function has a `FunctionUrlConfig` (a deployed stack's: the
    /// URL AWS gave it).
    pub url: Option<String>,
    /// `FunctionUrlConfig.AuthType`: `AWS_IAM` (callers sign with SigV4) or `NONE`.
    #[serde(default)]
    pub url_auth_type: Option<String>,
    /// ARN.
    pub arn: String,
}

impl FunctionSpec {
    /// The function's short name in logs, tallies and metrics: `HERALD_FUNCTION` when the template
    /// sets it (one binary serving several functions), else the binary's name.
    pub fn label(&self) -> &str {
        self.environment
            .get("HERALD_FUNCTION")
            .map(String::as_str)
            .unwrap_or(&self.binary)
    }
}

/// `AWS::Serverless::Function`.
pub(super) fn function(
    stack: &mut Stack,
    id: &str,
    kind: &str,
    properties: &Value,
    metadata: &Value,
    options: &StackOptions,
) -> Result<Physical> {
    let name = physical_name(stack, id, prop(properties, "FunctionName"), 64);
    let function_arn = arn(stack, "lambda", format!("function:{name}"));
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
                "SQS" => {
                    stack
                        .mappings
                        .push(sqs_mapping(stack, &mapping_id, id, &event_props, "Queue")?)
                }
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
        log_group: logging
            .and_then(|l| l.get("LogGroup"))
            .map(scalar)
            .unwrap_or_else(|| format!("/aws/lambda/{name}")),
        url,
        url_auth_type: prop(properties, "FunctionUrlConfig")
            .and_then(|c| c.get("AuthType"))
            .map(scalar),
        arn: function_arn.clone(),
    });
    // SAM gives a function without a `Role` one of its own, `<Function>Role`, which the template
    // may name (a topic policy that lets only the router publish): known locally too.
    if properties.get("Role").is_none() {
        let role = format!("{id}Role");
        let role_name = format!("{}-{role}", stack.name);
        stack
            .resources
            .entry(role.clone())
            .or_insert_with(|| Physical {
                kind: "AWS::IAM::Role".into(),
                reference: role_name.clone(),
                attributes: BTreeMap::from([(
                    "Arn".into(),
                    format!("arn:aws:iam::{}:role/{role_name}", stack.account),
                )]),
            });
        stack.skipped.insert(
            role,
            "the function's IAM role (SAM's; permissions apply on AWS only)".into(),
        );
    }
    Ok(Physical {
        kind: kind.into(),
        reference: name,
        attributes: BTreeMap::from([("Arn".into(), function_arn)]),
    })
}
