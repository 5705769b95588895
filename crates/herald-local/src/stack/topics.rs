//! `AWS::SNS::Topic` and `AWS::SNS::Subscription` (created here because moto's CloudFormation
//! drops subscriptions).

use std::collections::BTreeMap;

use anyhow::{anyhow, Result};
use serde_json::Value;

use super::{arn, json_text, physical_name, prop, prop_bool, Clients, Physical, Stack};
use crate::template::scalar;

/// `AWS::SNS::Topic`.
pub(super) async fn topic(
    clients: &Clients,
    stack: &Stack,
    id: &str,
    kind: &str,
    properties: &Value,
) -> Result<Physical> {
    let name = physical_name(stack, id, prop(properties, "TopicName"), 256);
    let mut request = clients.sns.create_topic().name(&name);
    if prop_bool(properties, "FifoTopic") == Some(true) {
        request = request.attributes("FifoTopic", "true");
    }
    let topic_arn = request
        .send()
        .await?
        .topic_arn
        .unwrap_or_else(|| arn(stack, "sns", name.clone()));
    Ok(Physical {
        kind: kind.into(),
        reference: topic_arn.clone(),
        attributes: BTreeMap::from([("TopicArn".into(), topic_arn), ("TopicName".into(), name)]),
    })
}

/// `AWS::SNS::Subscription`, with its delivery attributes (raw delivery, filter policy, ...).
pub(super) async fn subscription(
    clients: &Clients,
    kind: &str,
    properties: &Value,
) -> Result<Physical> {
    let topic = prop(properties, "TopicArn")
        .map(scalar)
        .ok_or_else(|| anyhow!("TopicArn is required"))?;
    let protocol = prop(properties, "Protocol")
        .map(scalar)
        .unwrap_or_else(|| "sqs".into());
    let endpoint = prop(properties, "Endpoint")
        .map(scalar)
        .ok_or_else(|| anyhow!("Endpoint is required"))?;
    let mut request = clients
        .sns
        .subscribe()
        .topic_arn(&topic)
        .protocol(&protocol)
        .endpoint(&endpoint)
        .return_subscription_arn(true);
    if let Some(raw) = prop_bool(properties, "RawMessageDelivery") {
        request = request.attributes("RawMessageDelivery", raw.to_string());
    }
    for name in [
        "FilterPolicy",
        "FilterPolicyScope",
        "RedrivePolicy",
        "DeliveryPolicy",
    ] {
        if let Some(v) = prop(properties, name) {
            request = request.attributes(name, json_text(v));
        }
    }
    let subscription = request.send().await?.subscription_arn.unwrap_or_default();
    // Kept for the console: which queue gets which event types from which topic.
    let mut attributes = BTreeMap::from([
        ("herald:TopicArn".to_string(), topic),
        ("herald:Endpoint".to_string(), endpoint),
    ]);
    if let Some(policy) = prop(properties, "FilterPolicy") {
        attributes.insert("herald:FilterPolicy".into(), json_text(policy));
    }
    Ok(Physical {
        kind: kind.into(),
        reference: subscription,
        attributes,
    })
}
