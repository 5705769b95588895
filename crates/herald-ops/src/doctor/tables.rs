//! What the template asks of its tables and CloudFormation could lose track of (a console click,
//! a restore into a new table): TTL, without which idempotency records never expire, and
//! point-in-time recovery.

use anyhow::Result;
use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::{PointInTimeRecoveryStatus, TimeToLiveStatus};
use herald_local::template::scalar;
use herald_local::{Stack, Template};

use super::{aws_error, Check, Finding, Status};

pub(super) async fn check(stack: &Stack, template: &Template, aws: &SdkConfig) -> Vec<Finding> {
    let dynamodb = aws_sdk_dynamodb::Client::new(aws);
    let mut findings = Vec::new();
    for (id, resource) in template.of_kind("AWS::DynamoDB::Table") {
        let Ok(table) = stack.reference(id) else {
            continue;
        };
        let properties = &resource.properties;
        let ttl_attribute = properties
            .get("TimeToLiveSpecification")
            .filter(|spec| spec.get("Enabled").map(scalar).as_deref() == Some("true"))
            .and_then(|spec| spec.get("AttributeName"))
            .map(scalar);
        if let Some(attribute) = ttl_attribute {
            findings.push(match ttl(&dynamodb, table).await {
                Ok((on, found)) if on && found.as_deref() == Some(attribute.as_str()) => {
                    Finding::new(
                        Check::Ttl,
                        Status::Ok,
                        id,
                        table,
                        format!("on, by {attribute}"),
                    )
                }
                Ok((on, found)) => Finding::new(
                    Check::Ttl,
                    Status::Problem,
                    id,
                    table,
                    format!(
                        "{} where the template asks for it by {attribute}: its records \
                             never expire",
                        match (on, found) {
                            (true, Some(other)) => format!("on by {other}"),
                            _ => "off".to_string(),
                        }
                    ),
                )
                .fix(format!(
                    "aws dynamodb update-time-to-live --table-name {table} \
                         --time-to-live-specification Enabled=true,AttributeName={attribute}"
                )),
                Err(err) => Finding::unreadable(Check::Ttl, id, table, &err),
            });
        }
        let wants_recovery = properties
            .get("PointInTimeRecoverySpecification")
            .and_then(|spec| spec.get("PointInTimeRecoveryEnabled"))
            .map(scalar)
            .as_deref()
            == Some("true");
        if wants_recovery {
            findings.push(match recovery(&dynamodb, table).await {
                Ok(true) => Finding::new(
                    Check::PointInTimeRecovery,
                    Status::Ok,
                    id,
                    table,
                    "on".into(),
                ),
                Ok(false) => Finding::new(
                    Check::PointInTimeRecovery,
                    Status::Problem,
                    id,
                    table,
                    "off where the template asks for it: the table cannot be restored".into(),
                )
                .fix(format!(
                    "aws dynamodb update-continuous-backups --table-name {table} \
                     --point-in-time-recovery-specification PointInTimeRecoveryEnabled=true"
                )),
                Err(err) => Finding::unreadable(Check::PointInTimeRecovery, id, table, &err),
            });
        }
    }
    findings
}

/// Whether TTL is on (or being turned on), and by which attribute.
async fn ttl(dynamodb: &aws_sdk_dynamodb::Client, table: &str) -> Result<(bool, Option<String>)> {
    let described = dynamodb
        .describe_time_to_live()
        .table_name(table)
        .send()
        .await
        .map_err(aws_error)?;
    let description = described.time_to_live_description();
    let on = matches!(
        description.and_then(|d| d.time_to_live_status()),
        Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
    );
    Ok((
        on,
        description
            .and_then(|d| d.attribute_name())
            .map(str::to_string),
    ))
}

async fn recovery(dynamodb: &aws_sdk_dynamodb::Client, table: &str) -> Result<bool> {
    let described = dynamodb
        .describe_continuous_backups()
        .table_name(table)
        .send()
        .await
        .map_err(aws_error)?;
    Ok(matches!(
        described
            .continuous_backups_description()
            .and_then(|d| d.point_in_time_recovery_description())
            .and_then(|d| d.point_in_time_recovery_status()),
        Some(PointInTimeRecoveryStatus::Enabled)
    ))
}
