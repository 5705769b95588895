//! `AWS::DynamoDB::Table`: the table (keys, billing, stream, TTL) and its `Arn` / `StreamArn`.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Result};
use serde_json::Value;

use super::{arn, physical_name, prop, Clients, Physical, Stack};
use crate::template::scalar;

/// `AWS::DynamoDB::Table`.
pub(super) async fn table(
    clients: &Clients,
    stack: &Stack,
    id: &str,
    kind: &str,
    properties: &Value,
) -> Result<Physical> {
    let name = physical_name(stack, id, prop(properties, "TableName"), 255);
    let stream_arn = create_table(&clients.dynamodb, &name, properties).await?;
    let mut attributes = BTreeMap::from([(
        "Arn".into(),
        arn(stack, "dynamodb", format!("table/{name}")),
    )]);
    if let Some(stream_arn) = stream_arn {
        attributes.insert("StreamArn".into(), stream_arn);
    }
    Ok(Physical {
        kind: kind.into(),
        reference: name.clone(),
        attributes,
    })
}

/// Create a table (or keep the one that exists); its stream ARN when it has a stream.
async fn create_table(
    client: &aws_sdk_dynamodb::Client,
    name: &str,
    p: &Value,
) -> Result<Option<String>> {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType,
        PointInTimeRecoverySpecification, ProvisionedThroughput, ScalarAttributeType,
        StreamSpecification, StreamViewType, TimeToLiveSpecification,
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
    // As CloudFormation does, so `herald doctor` finds what the template asks for.
    if prop(p, "PointInTimeRecoverySpecification")
        .and_then(|spec| spec.get("PointInTimeRecoveryEnabled"))
        .map(scalar)
        .as_deref()
        == Some("true")
    {
        client
            .update_continuous_backups()
            .table_name(name)
            .point_in_time_recovery_specification(
                PointInTimeRecoverySpecification::builder()
                    .point_in_time_recovery_enabled(true)
                    .build()?,
            )
            .send()
            .await
            .map_err(|e| anyhow!(herald::aws::error_text(&e)))?;
    }
    Ok(stream_arn)
}
