//! Event source mappings (`AWS::Lambda::EventSourceMapping` and SAM `Kinesis` / `SQS` events):
//! the [`MappingSpec`]s the local runner plays, with Lambda's defaults.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{prop, prop_bool, prop_num, Physical, Stack};
use crate::template::scalar;

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
    /// `TumblingWindowInSeconds` (default 0: none): records are aggregated per window, with
    /// state passed from one invocation to the next and a final invocation per window.
    #[serde(default)]
    pub tumbling_window: Option<Duration>,
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

/// `AWS::Lambda::EventSourceMapping`.
pub(super) fn event_source_mapping(
    stack: &mut Stack,
    id: &str,
    kind: &str,
    properties: &Value,
) -> Result<Physical> {
    let function_name = prop(properties, "FunctionName")
        .map(scalar)
        .unwrap_or_default();
    let function = stack
        .functions
        .iter()
        .find(|f| {
            f.name == function_name || f.arn == function_name || f.logical_id == function_name
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
        bail!(
            "event source {source} is not emulated locally (Kinesis, DynamoDB Streams and SQS are)"
        );
    };
    stack.mappings.push(mapping);
    Ok(Physical {
        kind: kind.into(),
        reference: format!("{}-{id}", stack.name),
        attributes: BTreeMap::new(),
    })
}

/// The queue URL and name of an SQS ARN in this stack.
fn queue_by_arn<'a>(stack: &'a Stack, arn: &str) -> Option<&'a Physical> {
    stack.resources.values().find(|p| {
        p.kind == "AWS::SQS::Queue" && p.attributes.get("Arn").map(String::as_str) == Some(arn)
    })
}

pub(super) fn kinesis_mapping(
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
        tumbling_window: match prop_num::<u64>(p, "TumblingWindowInSeconds")? {
            None | Some(0) => None,
            Some(secs @ 1..=900) => Some(Duration::from_secs(secs)),
            Some(secs) => {
                return Err(anyhow!(
                    "TumblingWindowInSeconds is {secs}; Lambda takes 0 to 900 seconds"
                ))
            }
        },
        enabled: prop_bool(p, "Enabled").unwrap_or(true),
    }))
}

pub(super) fn sqs_mapping(
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
