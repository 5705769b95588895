//! `AWS::Kinesis::Stream`: the data stream (provisioned or on-demand), waited on until ACTIVE.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use serde_json::Value;

use super::{arn, physical_name, prop, prop_num, Clients, Physical, Stack};
use crate::template::scalar;

/// `AWS::Kinesis::Stream`.
pub(super) async fn stream(
    clients: &Clients,
    stack: &Stack,
    id: &str,
    kind: &str,
    properties: &Value,
) -> Result<Physical> {
    let name = physical_name(stack, id, prop(properties, "Name"), 128);
    create_stream(&clients.kinesis, &name, properties).await?;
    Ok(Physical {
        kind: kind.into(),
        reference: name.clone(),
        attributes: BTreeMap::from([(
            "Arn".into(),
            arn(stack, "kinesis", format!("stream/{name}")),
        )]),
    })
}

async fn create_stream(client: &aws_sdk_kinesis::Client, name: &str, p: &Value) -> Result<()> {
    use aws_sdk_kinesis::types::{StreamMode, StreamModeDetails, StreamStatus};
    let mut request = client.create_stream().stream_name(name);
    let on_demand = prop(p, "StreamModeDetails")
        .and_then(|m| m.get("StreamMode"))
        .map(scalar)
        .as_deref()
        == Some("ON_DEMAND");
    request = if on_demand {
        request.stream_mode_details(
            StreamModeDetails::builder()
                .stream_mode(StreamMode::OnDemand)
                .build()?,
        )
    } else {
        request.shard_count(prop_num::<u64>(p, "ShardCount")?.unwrap_or(1) as i32)
    };
    match request.send().await {
        Ok(_) => {}
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_resource_in_use_exception()) => {}
        Err(err) => return Err(anyhow!(herald::aws::error_text(&err))),
    }
    for _ in 0..100 {
        let summary = client
            .describe_stream_summary()
            .stream_name(name)
            .send()
            .await?;
        if summary
            .stream_description_summary()
            .map(|s| s.stream_status())
            == Some(&StreamStatus::Active)
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("stream {name} did not become ACTIVE")
}
