//! Republishing from the event store: the way back when the store's stream no longer has what the
//! publisher could not publish.
//!
//! The publisher reads the store's DynamoDB stream, which keeps a change for 24 hours. If
//! publishing fails for longer (Kinesis or its key down, the publisher broken), its mapping gives
//! up on a batch when the records reach `MaximumRecordAgeInSeconds` and sends Lambda's on-failure
//! record (the batch's shard, sequence range and arrival times) to its failure queue. The events
//! themselves are still in the store, and that is where they are taken from: every event appended
//! within a span of time (by its `time`, the moment it was appended) is put on the event stream
//! again, in version order per aggregate, with its own id, so whatever had been published already
//! is a duplicate downstream and skipped. `herald republish --since` does it for a span of time;
//! `herald dlq redrive` on the failure queue does it for the span its on-failure records describe.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Context, Result};
use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use herald::event_sourcing::event_store::{attr, is_snapshot_key};
use herald::producer::Producer;
use herald::Envelope;

use herald_local::stack::{MappingSpec, Stack, StreamSource};

/// Arrival times of an on-failure record are approximate: the span read is widened by this.
pub const ARRIVAL_MARGIN: chrono::Duration = chrono::Duration::minutes(5);

/// An event store and the stream its publisher writes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreRoute {
    /// The store's table (logical id).
    pub table_logical_id: String,
    /// Its name.
    pub table: String,
    /// The Kinesis stream its publisher writes to.
    pub stream: String,
}

/// What a republish did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Republished {
    /// Events in the store (snapshots not counted).
    pub scanned: usize,
    /// Of those, events in the span.
    pub in_span: usize,
    /// Put on the stream again.
    pub published: usize,
    /// Items that are not events (left alone, counted).
    pub unreadable: usize,
}

/// The event stores of the stack: each table a function reads through a DynamoDB stream
/// mapping, with the Kinesis stream that function publishes to (`STREAM_NAME`).
pub fn stores(stack: &Stack) -> Vec<StoreRoute> {
    stack
        .mappings
        .iter()
        .filter_map(|m| match m {
            MappingSpec::Stream(k) if k.source == StreamSource::DynamoDb => Some(k),
            _ => None,
        })
        .filter_map(|mapping| {
            let function = stack.function(&mapping.function).ok()?;
            let stream = function.environment.get("STREAM_NAME")?.clone();
            let (logical_id, table) = stack.of_kind("AWS::DynamoDB::Table").find(|(_, p)| {
                p.attributes.get("StreamArn").map(String::as_str) == Some(&mapping.stream_arn)
            })?;
            Some(StoreRoute {
                table_logical_id: logical_id.to_string(),
                table: table.reference.clone(),
                stream,
            })
        })
        .collect()
}

/// The stack's one event store (an error naming them when there are several, or none).
pub fn store_route(stack: &Stack) -> Result<StoreRoute> {
    let mut all = stores(stack);
    match all.len() {
        1 => Ok(all.remove(0)),
        0 => bail!("no function of the stack publishes a DynamoDB table's stream: no event store"),
        _ => {
            let names: Vec<&str> = all.iter().map(|s| s.table_logical_id.as_str()).collect();
            bail!(
                "several event stores ({}); herald cannot tell which",
                names.join(", ")
            )
        }
    }
}

/// Put every event of `route`'s store whose `time` is in `[since, until)` on its stream again.
pub async fn republish(
    aws: &SdkConfig,
    route: &StoreRoute,
    since: DateTime<Utc>,
    until: Option<DateTime<Utc>>,
) -> Result<Republished> {
    let dynamodb = aws_sdk_dynamodb::Client::new(aws);
    let mut report = Republished::default();
    // Per aggregate, by version: the order the publisher keeps.
    let mut events: BTreeMap<(String, u64), Envelope> = BTreeMap::new();
    let mut start: Option<std::collections::HashMap<String, AttributeValue>> = None;
    loop {
        let page = dynamodb
            .scan()
            .table_name(&route.table)
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(|e| anyhow!(herald::aws::error_text(&e)))
            .with_context(|| format!("scanning {}", route.table))?;
        for item in page.items() {
            let key = item
                .get(attr::AGGREGATE_ID)
                .and_then(|v| v.as_s().ok())
                .cloned()
                .unwrap_or_default();
            if is_snapshot_key(&key) {
                continue;
            }
            report.scanned += 1;
            let version = item
                .get(attr::VERSION)
                .and_then(|v| v.as_n().ok())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let Some(Ok(event)) = item
                .get(attr::EVENT)
                .and_then(|v| v.as_s().ok())
                .map(|json| Envelope::parse(json.as_bytes()))
            else {
                report.unreadable += 1;
                continue;
            };
            if event.time() >= since && until.is_none_or(|u| event.time() < u) {
                events.insert((key, version), event);
            }
        }
        match page.last_evaluated_key {
            Some(next) if !next.is_empty() => start = Some(next),
            _ => break,
        }
    }
    report.in_span = events.len();
    let events: Vec<Envelope> = events.into_values().collect();
    let producer = Producer::new(herald::producer::KinesisStream::new(
        aws_sdk_kinesis::Client::new(aws),
        route.stream.clone(),
    ));
    let mut failures = Vec::new();
    for (event, result) in events.iter().zip(producer.publish(&events).await) {
        match result {
            Ok(_) => report.published += 1,
            Err(err) => failures.push(format!("{}: {err}", event.id())),
        }
    }
    if let Some(first) = failures.first() {
        bail!(
            "{} of {} events were not put on {} (the first: {first}); republish again: the \
             ones that went are duplicates downstream",
            failures.len(),
            events.len(),
            route.stream
        );
    }
    Ok(report)
}

/// The span of arrival times an on-failure record of a DynamoDB stream describes, widened by
/// [`ARRIVAL_MARGIN`] on both sides.
pub fn failure_span(body: &str) -> Result<(DateTime<Utc>, DateTime<Utc>)> {
    let record: serde_json::Value =
        serde_json::from_str(body).context("the on-failure record is not JSON")?;
    let info = &record["DDBStreamBatchInfo"];
    let time = |name: &str| -> Result<DateTime<Utc>> {
        let text = info[name]
            .as_str()
            .ok_or_else(|| anyhow!("the on-failure record has no DDBStreamBatchInfo.{name}"))?;
        Ok(DateTime::parse_from_rfc3339(text)
            .with_context(|| format!("DDBStreamBatchInfo.{name} is {text:?}"))?
            .with_timezone(&Utc))
    };
    Ok((
        time("approximateArrivalOfFirstRecord")? - ARRIVAL_MARGIN,
        time("approximateArrivalOfLastRecord")? + ARRIVAL_MARGIN,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_on_failure_records_span_is_its_arrival_times_widened() {
        let body = r#"{"requestContext":{"condition":"RecordAgeExceeded"},
            "DDBStreamBatchInfo":{"shardId":"s","startSequenceNumber":"1","endSequenceNumber":"9",
            "approximateArrivalOfFirstRecord":"2026-12-01T10:00:00.000Z",
            "approximateArrivalOfLastRecord":"2026-12-01T10:30:00.000Z","batchSize":9}}"#;
        let (from, to) = failure_span(body).unwrap();
        assert_eq!(from.to_rfc3339(), "2026-12-01T09:55:00+00:00");
        assert_eq!(to.to_rfc3339(), "2026-12-01T10:35:00+00:00");
        let err = failure_span(r#"{"KinesisBatchInfo":{}}"#).unwrap_err();
        assert!(err.to_string().contains("DDBStreamBatchInfo"), "{err}");
    }
}
