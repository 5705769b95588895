//! The alarms' states: a local pipeline's as the runner evaluates them (see
//! [`herald_local::alarms`]), a deployed one's as CloudWatch has them.

use anyhow::Result;
use aws_sdk_cloudwatch::types::MetricAlarm;
use chrono::{DateTime, Utc};
use serde::Serialize;

use herald_local::alarms::{AlarmBoard, AlarmStatus, State, Transition};

use super::{ConsoleState, Pipeline};
use crate::cloudwatch::{describe, NAMES_PER_CALL};

/// What the page shows about alarms.
#[derive(Clone, Debug, Serialize)]
pub struct Alarms {
    /// Evaluated alarms, in the template's order.
    pub evaluated: Vec<AlarmStatus>,
    /// The latest changes, newest first (at most 20).
    pub changes: Vec<Transition>,
    /// Alarms not evaluated (locally: the runner cannot observe them; deployed: not in
    /// CloudWatch), with why.
    pub not_evaluated: Vec<NotEvaluated>,
}

/// An alarm with no state to show.
#[derive(Clone, Debug, Serialize)]
pub struct NotEvaluated {
    /// Logical id.
    pub id: String,
    /// Why.
    pub why: String,
}

/// The alarms now.
pub async fn alarms(state: &ConsoleState) -> Result<Alarms> {
    match &state.pipeline {
        Pipeline::Local(watch) => Ok(board(&watch.alarms)),
        Pipeline::Deployed => deployed(state).await,
    }
}

fn board(board: &AlarmBoard) -> Alarms {
    let mut changes = board.transitions();
    changes.reverse();
    changes.truncate(20);
    Alarms {
        evaluated: board.statuses(),
        changes,
        not_evaluated: board
            .not_evaluated()
            .into_iter()
            .map(|(id, why)| NotEvaluated { id, why })
            .collect(),
    }
}

/// The template's alarms as CloudWatch has them; each one's latest change stands for its history.
async fn deployed(state: &ConsoleState) -> Result<Alarms> {
    let declared: Vec<(&str, &str)> = state
        .stack
        .of_kind("AWS::CloudWatch::Alarm")
        .map(|(id, physical)| (id, physical.reference.as_str()))
        .collect();
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&state.aws);
    let mut found = std::collections::BTreeMap::new();
    for names in declared.chunks(NAMES_PER_CALL) {
        found.extend(describe(&cloudwatch, names.iter().map(|(_, name)| *name)).await?);
    }
    let mut out = Alarms {
        evaluated: Vec::new(),
        changes: Vec::new(),
        not_evaluated: Vec::new(),
    };
    for (id, name) in declared {
        let Some(alarm) = found.get(name) else {
            out.not_evaluated.push(NotEvaluated {
                id: id.to_string(),
                why: format!("{name} is not in CloudWatch"),
            });
            continue;
        };
        let status = status(id, name, alarm);
        if status.state != State::InsufficientData {
            out.changes.push(Transition {
                name: status.name.clone(),
                state: status.state,
                reason: status.reason.clone(),
                at: status.since,
            });
        }
        out.evaluated.push(status);
    }
    out.changes.sort_by_key(|t| std::cmp::Reverse(t.at));
    out.changes.truncate(20);
    Ok(out)
}

fn status(id: &str, name: &str, alarm: &MetricAlarm) -> AlarmStatus {
    let state = match alarm.state_value().map(|s| s.as_str()) {
        Some("ALARM") => State::Alarm,
        Some("OK") => State::Ok,
        _ => State::InsufficientData,
    };
    let since = alarm
        .state_updated_timestamp()
        .and_then(|t| DateTime::<Utc>::from_timestamp(t.secs(), t.subsec_nanos()))
        .unwrap_or_default();
    AlarmStatus {
        logical_id: id.to_string(),
        name: name.to_string(),
        description: alarm.alarm_description().unwrap_or_default().to_string(),
        watches: watches(alarm),
        state,
        reason: alarm.state_reason().unwrap_or_default().to_string(),
        since,
        latest: None,
    }
}

/// `ApproximateNumberOfMessagesVisible of prod-InventoryDLQ-X1Y2`, or the metric math's
/// metrics.
fn watches(alarm: &MetricAlarm) -> String {
    let one = |metric: Option<&str>, dimensions: &[aws_sdk_cloudwatch::types::Dimension]| {
        let values: Vec<&str> = dimensions.iter().filter_map(|d| d.value()).collect();
        match values.is_empty() {
            true => metric.unwrap_or_default().to_string(),
            false => format!("{} of {}", metric.unwrap_or_default(), values.join(", ")),
        }
    };
    if alarm.metric_name().is_some() {
        return one(alarm.metric_name(), alarm.dimensions());
    }
    alarm
        .metrics()
        .iter()
        .filter_map(|q| q.metric_stat().and_then(|s| s.metric()))
        .map(|m| one(m.metric_name(), m.dimensions()))
        .collect::<Vec<_>>()
        .join("; ")
}
