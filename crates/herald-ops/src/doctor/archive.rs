//! The archive: each delivery stream the template declares is active (Firehose writes the
//! stream's events to S3, where `herald replay --source archive` reads them).

use aws_config::SdkConfig;
use herald_local::Stack;

use super::{aws_error, played_locally, Check, Finding, Status};

pub(super) async fn check(stack: &Stack, aws: &SdkConfig) -> Vec<Finding> {
    if stack.deliveries.is_empty() {
        return Vec::new();
    }
    if stack.deployment.is_none() {
        return vec![played_locally(Check::Archive, "the archive's delivery")];
    }
    let firehose = aws_sdk_firehose::Client::new(aws);
    let mut findings = Vec::new();
    for delivery in &stack.deliveries {
        let described = firehose
            .describe_delivery_stream()
            .delivery_stream_name(&delivery.name)
            .send()
            .await
            .map_err(aws_error);
        let finding = match described {
            Ok(described) => {
                let description = described.delivery_stream_description();
                let status = description
                    .map(|d| d.delivery_stream_status().as_str().to_string())
                    .unwrap_or_default();
                let failure = description
                    .and_then(|d| d.failure_description())
                    .map(|f| format!(": {}", f.details()))
                    .unwrap_or_default();
                if status == "ACTIVE" {
                    Finding::new(
                        Check::Archive,
                        Status::Ok,
                        &delivery.logical_id,
                        &delivery.name,
                        format!("active, into s3://{}", delivery.bucket),
                    )
                } else {
                    Finding::new(
                        Check::Archive,
                        Status::Problem,
                        &delivery.logical_id,
                        &delivery.name,
                        format!("{status}{failure}: nothing is archived"),
                    )
                    .fix(format!(
                        "aws firehose describe-delivery-stream --delivery-stream-name {}",
                        delivery.name
                    ))
                }
            }
            Err(err) => {
                Finding::unreadable(Check::Archive, &delivery.logical_id, &delivery.name, &err)
            }
        };
        findings.push(finding);
    }
    findings
}
