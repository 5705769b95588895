//! An `AWS::CloudWatch::Alarm` of the template, read into what the local runner can watch: the
//! metric it measures mapped to a local source (a queue, a function, a stream), or the reason it
//! cannot be evaluated locally.

use anyhow::{anyhow, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::template::scalar;

/// What an alarm measures, as the local runner observes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Source {
    /// `AWS/SQS ApproximateNumberOfMessagesVisible` of a queue: polled from the emulator.
    QueueDepth {
        /// Logical id of the queue.
        queue: String,
        /// Its URL.
        url: String,
    },
    /// `AWS/Lambda Errors` of a function: its failed invocations in the runner.
    FunctionErrors {
        /// Logical id of the function.
        function: String,
    },
    /// `AWS/Lambda IteratorAge` of a function: the age of the oldest record of each stream batch
    /// its mapping invokes it with.
    FunctionIteratorAge {
        /// Logical id of the function.
        function: String,
    },
    /// `AWS/Kinesis GetRecords.IteratorAgeMilliseconds` of a stream: how far behind the tip
    /// the runner's readers of that stream are.
    StreamIteratorAge {
        /// Stream name.
        stream: String,
    },
}

/// How datapoints are summarised over a period (`Statistic`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Statistic {
    /// `Maximum`.
    Maximum,
    /// `Sum`.
    Sum,
}

/// `ComparisonOperator`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Comparison {
    /// `GreaterThanThreshold`.
    Greater,
    /// `GreaterThanOrEqualToThreshold`.
    GreaterOrEqual,
    /// `LessThanThreshold`.
    Less,
    /// `LessThanOrEqualToThreshold`.
    LessOrEqual,
}

impl Comparison {
    /// Whether `value` breaches `threshold`.
    pub fn breaches(self, value: f64, threshold: f64) -> bool {
        match self {
            Comparison::Greater => value > threshold,
            Comparison::GreaterOrEqual => value >= threshold,
            Comparison::Less => value < threshold,
            Comparison::LessOrEqual => value <= threshold,
        }
    }

    /// The operator as written in a reason (`>`).
    pub fn symbol(self) -> &'static str {
        match self {
            Comparison::Greater => ">",
            Comparison::GreaterOrEqual => ">=",
            Comparison::Less => "<",
            Comparison::LessOrEqual => "<=",
        }
    }
}

/// `TreatMissingData`: what a period without a datapoint counts as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MissingData {
    /// `breaching`.
    Breaching,
    /// `notBreaching`.
    NotBreaching,
    /// `ignore`: the state stays as it is.
    Ignore,
    /// `missing` (CloudWatch's default): no data, no verdict.
    Missing,
}

/// One alarm of the template that the local runner evaluates.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlarmDefinition {
    /// Logical id.
    pub logical_id: String,
    /// `AlarmName` (resolved), else the logical id.
    pub name: String,
    /// `AlarmDescription`.
    pub description: String,
    /// `MetricName` as written (`ApproximateNumberOfMessagesVisible`).
    pub metric: String,
    /// Where the runner reads it.
    pub source: Source,
    /// `Statistic`.
    pub statistic: Statistic,
    /// `Period` in seconds.
    pub period_secs: u64,
    /// `EvaluationPeriods`.
    pub evaluation_periods: usize,
    /// `DatapointsToAlarm` (default `EvaluationPeriods`).
    pub datapoints_to_alarm: usize,
    /// `Threshold`.
    pub threshold: f64,
    /// `ComparisonOperator`.
    pub comparison: Comparison,
    /// `TreatMissingData`.
    pub missing: MissingData,
}

/// An alarm's definition from its resolved `properties`, measuring `metric` from `source`.
pub(crate) fn parse(
    id: &str,
    properties: &Value,
    metric: String,
    source: Source,
) -> Result<AlarmDefinition> {
    let text = |name: &str| properties.get(name).map(scalar);
    let number = |name: &str| -> Result<Option<f64>> {
        text(name)
            .map(|t| {
                t.parse::<f64>()
                    .map_err(|_| anyhow!("{name} must be a number, not {t:?}"))
            })
            .transpose()
    };
    let statistic = match text("Statistic").as_deref() {
        Some("Maximum") => Statistic::Maximum,
        Some("Sum") => Statistic::Sum,
        other => anyhow::bail!("Statistic {other:?} is not evaluated locally (Maximum, Sum are)"),
    };
    let comparison = match text("ComparisonOperator").as_deref() {
        Some("GreaterThanThreshold") => Comparison::Greater,
        Some("GreaterThanOrEqualToThreshold") => Comparison::GreaterOrEqual,
        Some("LessThanThreshold") => Comparison::Less,
        Some("LessThanOrEqualToThreshold") => Comparison::LessOrEqual,
        other => anyhow::bail!("ComparisonOperator {other:?} is not evaluated locally"),
    };
    let missing = match text("TreatMissingData").as_deref() {
        Some("breaching") => MissingData::Breaching,
        Some("notBreaching") => MissingData::NotBreaching,
        Some("ignore") => MissingData::Ignore,
        None | Some("missing") => MissingData::Missing,
        Some(other) => anyhow::bail!("TreatMissingData {other:?} is not one CloudWatch knows"),
    };
    let evaluation_periods = number("EvaluationPeriods")?.unwrap_or(1.0).max(1.0) as usize;
    Ok(AlarmDefinition {
        logical_id: id.to_string(),
        name: text("AlarmName").unwrap_or_else(|| id.to_string()),
        description: text("AlarmDescription").unwrap_or_default(),
        metric,
        source,
        statistic,
        period_secs: number("Period")?.unwrap_or(60.0).max(1.0) as u64,
        evaluation_periods,
        datapoints_to_alarm: number("DatapointsToAlarm")?
            .map(|d| d.max(1.0) as usize)
            .unwrap_or(evaluation_periods),
        threshold: number("Threshold")?.ok_or_else(|| anyhow!("Threshold is required"))?,
        comparison,
        missing,
    })
}

/// `ApproximateNumberOfMessagesVisible of InventoryDeadLetterQueue`
pub fn watches(alarm: &AlarmDefinition) -> String {
    let subject = match &alarm.source {
        Source::QueueDepth { queue, .. } => queue,
        Source::FunctionErrors { function } | Source::FunctionIteratorAge { function } => function,
        Source::StreamIteratorAge { stream } => stream,
    };
    format!("{} of {subject}", alarm.metric)
}
