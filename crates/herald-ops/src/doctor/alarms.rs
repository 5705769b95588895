//! The stack's CloudWatch alarms: each one the template declares exists, and none is in ALARM.
//! An alarm in ALARM points at the command for what it watches (a dead-letter queue, a function).

use std::collections::BTreeMap;

use aws_config::SdkConfig;
use aws_sdk_cloudwatch::types::MetricAlarm;
use herald_local::Stack;

use super::{played_locally, Check, Finding, Status};
use crate::cloudwatch::{describe, NAMES_PER_CALL};

pub(super) async fn check(stack: &Stack, aws: &SdkConfig) -> Vec<Finding> {
    if stack.deployment.is_none() {
        return vec![played_locally(
            Check::Alarm,
            "alarms (the console shows them)",
        )];
    }
    let declared: Vec<(&str, &str)> = stack
        .of_kind("AWS::CloudWatch::Alarm")
        .map(|(id, physical)| (id, physical.reference.as_str()))
        .collect();
    let cloudwatch = aws_sdk_cloudwatch::Client::new(aws);
    let mut found = BTreeMap::new();
    // A batch that cannot be read is said so, alarm by alarm; the others are still judged.
    let mut unreadable: BTreeMap<&str, Finding> = BTreeMap::new();
    for names in declared.chunks(NAMES_PER_CALL) {
        match describe(&cloudwatch, names.iter().map(|(_, name)| *name)).await {
            Ok(alarms) => found.extend(alarms),
            Err(err) => {
                for (id, name) in names {
                    unreadable.insert(name, Finding::unreadable(Check::Alarm, id, name, &err));
                }
            }
        }
    }
    declared
        .iter()
        .map(
            |(id, name)| match (unreadable.remove(*name), found.get(*name)) {
                (Some(finding), _) => finding,
                (None, None) => Finding::new(
                    Check::Alarm,
                    Status::Problem,
                    id,
                    name,
                    "not in CloudWatch: nothing watches what it should".into(),
                )
                .fix(format!("sam deploy --stack-name {}", stack.name)),
                (None, Some(alarm)) => judge(stack, id, name, alarm),
            },
        )
        .collect()
}

fn judge(stack: &Stack, id: &str, name: &str, alarm: &MetricAlarm) -> Finding {
    let state = alarm
        .state_value()
        .map(|s| s.as_str().to_string())
        .unwrap_or_default();
    match state.as_str() {
        "ALARM" => {
            let reason = alarm.state_reason().unwrap_or("no reason given");
            Finding::new(
                Check::Alarm,
                Status::Problem,
                id,
                name,
                format!("in ALARM: {reason}"),
            )
            .fix(inspect(stack, name, alarm))
        }
        "INSUFFICIENT_DATA" => Finding::new(
            Check::Alarm,
            Status::Ok,
            id,
            name,
            "insufficient data (nothing measured yet)".into(),
        ),
        other => Finding::new(Check::Alarm, Status::Ok, id, name, other.to_string()),
    }
}

/// The command that looks at what the alarm watches.
fn inspect(stack: &Stack, name: &str, alarm: &MetricAlarm) -> String {
    let mut watched: Vec<&str> = alarm
        .dimensions()
        .iter()
        .filter_map(|d| d.value())
        .collect();
    for query in alarm.metrics() {
        if let Some(metric) = query.metric_stat().and_then(|s| s.metric()) {
            watched.extend(metric.dimensions().iter().filter_map(|d| d.value()));
        }
    }
    for queue in crate::dead_letter_queues(stack) {
        let queue_name = queue.url.rsplit('/').next().unwrap_or_default();
        if watched.contains(&queue_name) {
            return format!(
                "herald dlq show {} --stack {}",
                queue.logical_id, stack.name
            );
        }
    }
    if let Some(function) = stack
        .functions
        .iter()
        .find(|f| watched.contains(&f.name.as_str()))
    {
        return format!("aws logs tail {} --since 1h", function.log_group);
    }
    format!(
        "aws cloudwatch describe-alarm-history --alarm-name {name} --history-item-type StateUpdate"
    )
}
