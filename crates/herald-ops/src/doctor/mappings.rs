//! Event source mappings: each one the template declares exists, is enabled, and last processed
//! without a problem. A disabled mapping stops its function reading: the stream or queue fills
//! while nothing fails.

use anyhow::Result;
use aws_config::SdkConfig;
use aws_sdk_lambda::types::EventSourceMappingConfiguration;
use herald_local::stack::MappingSpec;
use herald_local::Stack;

use super::{aws_error, played_locally, Check, Finding, Status};

pub(super) async fn check(stack: &Stack, aws: &SdkConfig) -> Vec<Finding> {
    if stack.deployment.is_none() {
        return vec![played_locally(Check::Mapping, "event source mappings")];
    }
    let lambda = aws_sdk_lambda::Client::new(aws);
    let mut findings = Vec::new();
    for function in &stack.functions {
        let expected: Vec<&MappingSpec> = stack
            .mappings
            .iter()
            .filter(|m| m.function() == function.logical_id)
            .collect();
        if expected.is_empty() {
            continue;
        }
        let deployed = match list(&lambda, &function.name).await {
            Ok(deployed) => deployed,
            Err(err) => {
                findings.push(Finding::unreadable(
                    Check::Mapping,
                    &function.logical_id,
                    &function.name,
                    &err,
                ));
                continue;
            }
        };
        for mapping in expected {
            let (logical_id, source) = match mapping {
                MappingSpec::Stream(m) => (&m.logical_id, &m.stream_arn),
                MappingSpec::Sqs(m) => (&m.logical_id, &m.queue_arn),
            };
            let found = deployed
                .iter()
                .find(|d| d.event_source_arn() == Some(source.as_str()));
            findings.push(match found {
                Some(found) => judge(logical_id, &function.name, &function.log_group, found),
                None => Finding::new(
                    Check::Mapping,
                    Status::Problem,
                    logical_id,
                    "",
                    format!(
                        "{} has no event source mapping from {source}: it reads nothing from it",
                        function.name
                    ),
                )
                .fix(format!("sam deploy --stack-name {}", stack.name)),
            });
        }
    }
    findings
}

fn judge(
    logical_id: &str,
    function: &str,
    log_group: &str,
    mapping: &EventSourceMappingConfiguration,
) -> Finding {
    let uuid = mapping.uuid().unwrap_or_default();
    let state = mapping.state().unwrap_or("unknown");
    let last = mapping.last_processing_result().unwrap_or("no result yet");
    let finding = |status, detail| Finding::new(Check::Mapping, status, logical_id, uuid, detail);
    match state {
        "Enabled" if last.starts_with("PROBLEM") => finding(
            Status::Problem,
            format!("enabled into {function}, but its last batch: {last}"),
        )
        .fix(format!("aws logs tail {log_group} --since 1h")),
        "Enabled" => finding(
            Status::Ok,
            format!("enabled into {function}; last result: {last}"),
        ),
        "Disabled" | "Disabling" => {
            let why = mapping
                .state_transition_reason()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default();
            finding(
                Status::Problem,
                format!("{state}{why}: {function} reads nothing while its source fills"),
            )
            .fix(format!(
                "aws lambda update-event-source-mapping --uuid {uuid} --enabled"
            ))
        }
        other => finding(
            Status::Warning,
            format!("{other}: a change to the mapping is being applied"),
        ),
    }
}

async fn list(
    lambda: &aws_sdk_lambda::Client,
    function: &str,
) -> Result<Vec<EventSourceMappingConfiguration>> {
    let mut found = Vec::new();
    let mut marker = None;
    loop {
        let page = lambda
            .list_event_source_mappings()
            .function_name(function)
            .set_marker(marker)
            .send()
            .await
            .map_err(aws_error)?;
        found.extend(page.event_source_mappings().iter().cloned());
        marker = page.next_marker().map(str::to_string);
        if marker.is_none() {
            return Ok(found);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(state: &str, last: Option<&str>) -> EventSourceMappingConfiguration {
        EventSourceMappingConfiguration::builder()
            .uuid("u-1")
            .state(state)
            .set_last_processing_result(last.map(str::to_string))
            .build()
    }

    #[test]
    fn each_state_and_last_result_is_judged_with_its_fix() {
        let judged = |state, last| {
            judge(
                "BusRouterStreamMapping",
                "prod-Router",
                "/aws/lambda/prod-Router",
                &mapping(state, last),
            )
        };
        let ok = judged("Enabled", Some("OK"));
        assert_eq!((ok.status, ok.fix), (Status::Ok, None));
        let failing = judged("Enabled", Some("PROBLEM: Function call failed"));
        assert_eq!(failing.status, Status::Problem);
        assert_eq!(
            failing.fix.as_deref(),
            Some("aws logs tail /aws/lambda/prod-Router --since 1h")
        );
        let disabled = judged("Disabled", None);
        assert_eq!(disabled.status, Status::Problem);
        assert_eq!(
            disabled.fix.as_deref(),
            Some("aws lambda update-event-source-mapping --uuid u-1 --enabled")
        );
        assert_eq!(judged("Updating", None).status, Status::Warning);
    }
}
