//! `AWS::SQS::Queue` (attributes, redrive policy, FIFO names) and `AWS::SQS::QueuePolicy`.

use std::collections::BTreeMap;

use anyhow::{anyhow, Result};
use serde_json::Value;

use super::{arn, json_text, physical_name, prop, prop_bool, Clients, Physical, Stack};
use crate::template::scalar;

/// The attribute under which a queue's redrive target (its DLQ's ARN) is kept.
pub const DEAD_LETTER_TARGET: &str = "herald:DeadLetterTargetArn";

/// `AWS::SQS::Queue`.
pub(super) async fn queue(
    clients: &Clients,
    stack: &Stack,
    id: &str,
    kind: &str,
    properties: &Value,
) -> Result<Physical> {
    let mut name = physical_name(stack, id, prop(properties, "QueueName"), 80);
    if prop_bool(properties, "FifoQueue") == Some(true) && !name.ends_with(".fifo") {
        name.truncate(75);
        name.push_str(".fifo");
    }
    let url = create_queue(&clients.sqs, &name, properties).await?;
    let mut attributes = BTreeMap::from([
        ("Arn".into(), arn(stack, "sqs", name.clone())),
        ("QueueName".into(), name),
        ("QueueUrl".into(), url.clone()),
    ]);
    // Not a CloudFormation attribute: kept so `herald dlq redrive` knows where a DLQ's
    // messages came from.
    if let Some(target) =
        prop(properties, "RedrivePolicy").and_then(|r| r.get("deadLetterTargetArn"))
    {
        attributes.insert(DEAD_LETTER_TARGET.into(), scalar(target));
    }
    Ok(Physical {
        kind: kind.into(),
        reference: url,
        attributes,
    })
}

/// `AWS::SQS::QueuePolicy`: the policy is set on each of its queues.
pub(super) async fn queue_policy(
    clients: &Clients,
    stack: &Stack,
    id: &str,
    kind: &str,
    properties: &Value,
) -> Result<Physical> {
    let policy = prop(properties, "PolicyDocument")
        .map(json_text)
        .unwrap_or_default();
    for queue in prop(properties, "Queues")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        clients
            .sqs
            .set_queue_attributes()
            .queue_url(scalar(queue))
            .attributes(aws_sdk_sqs::types::QueueAttributeName::Policy, &policy)
            .send()
            .await?;
    }
    Ok(Physical {
        kind: kind.into(),
        reference: format!("{}-{id}", stack.name),
        attributes: BTreeMap::new(),
    })
}

async fn create_queue(client: &aws_sdk_sqs::Client, name: &str, p: &Value) -> Result<String> {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let mut attributes = Vec::new();
    for (key, attribute) in [
        ("VisibilityTimeout", A::VisibilityTimeout),
        ("MessageRetentionPeriod", A::MessageRetentionPeriod),
        ("DelaySeconds", A::DelaySeconds),
        ("MaximumMessageSize", A::MaximumMessageSize),
        (
            "ReceiveMessageWaitTimeSeconds",
            A::ReceiveMessageWaitTimeSeconds,
        ),
        ("FifoQueue", A::FifoQueue),
        ("ContentBasedDeduplication", A::ContentBasedDeduplication),
    ] {
        if let Some(v) = prop(p, key) {
            attributes.push((attribute, scalar(v)));
        }
    }
    if let Some(redrive) = prop(p, "RedrivePolicy") {
        // maxReceiveCount arrives as a string when it comes from a parameter; SQS wants a number.
        let mut redrive = redrive.clone();
        if let Some(count) = redrive.get("maxReceiveCount").map(scalar) {
            redrive["maxReceiveCount"] = Value::from(count.parse::<u64>().unwrap_or(5));
        }
        attributes.push((A::RedrivePolicy, redrive.to_string()));
    }
    let mut request = client.create_queue().queue_name(name);
    for (k, v) in &attributes {
        request = request.attributes(k.clone(), v);
    }
    match request.send().await {
        Ok(out) => Ok(out.queue_url.unwrap_or_default()),
        Err(err) => {
            // The queue exists with other attributes (an earlier run of a changed template): update it.
            let url = client
                .get_queue_url()
                .queue_name(name)
                .send()
                .await
                .map_err(|_| anyhow!(herald::aws::error_text(&err)))?
                .queue_url
                .unwrap_or_default();
            let mut update = client.set_queue_attributes().queue_url(&url);
            for (k, v) in attributes.into_iter().filter(|(k, _)| *k != A::FifoQueue) {
                update = update.attributes(k, v);
            }
            update.send().await?;
            Ok(url)
        }
    }
}
