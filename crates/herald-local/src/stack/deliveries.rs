//! `AWS::KinesisFirehose::DeliveryStream` with a Kinesis stream as its source and S3 as its
//! destination: not created on the emulator (whose Firehose reads no Kinesis stream) but turned
//! into a [`DeliverySpec`] the local runner plays ([`crate::firehose`]), as it plays Lambda's
//! event source mappings.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{arn, physical_name, prop, prop_num, Physical, Stack};
use crate::template::scalar;

/// The shortest buffer interval Firehose takes with dynamic partitioning on (seconds).
pub const MIN_DYNAMIC_BUFFER_SECONDS: u64 = 60;

/// A delivery stream the runner plays: the stream it reads, where and how it writes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliverySpec {
    /// Logical id (its checkpoints are kept under it).
    pub logical_id: String,
    /// The delivery stream's name (the start of every object's name).
    pub name: String,
    /// The Kinesis stream it reads.
    pub stream_name: String,
    /// The bucket it writes to.
    pub bucket: String,
    /// `Prefix`, with its `!{...}` expressions.
    pub prefix: String,
    /// `ErrorOutputPrefix`: records that cannot be partitioned.
    pub error_prefix: String,
    /// `BufferingHints.IntervalInSeconds` (default 300).
    pub buffer_interval: Duration,
    /// `BufferingHints.SizeInMBs` in bytes (default 5 MiB).
    pub buffer_bytes: usize,
    /// `CompressionFormat: GZIP`.
    pub gzip: bool,
    /// Dynamic partitioning: key → the record's JSON field path (`MetadataExtractionQuery`).
    pub partition_keys: Vec<(String, Vec<String>)>,
    /// `AppendDelimiterToRecord`: written after every record.
    pub delimiter: String,
}

/// Read a delivery stream's properties into the runner's spec (and its `Ref` / `Arn`).
pub(super) fn delivery_stream(
    stack: &mut Stack,
    id: &str,
    kind: &str,
    p: &Value,
) -> Result<Physical> {
    let name = physical_name(stack, id, prop(p, "DeliveryStreamName"), 64);
    let physical = Physical {
        kind: kind.into(),
        reference: name.clone(),
        attributes: BTreeMap::from([(
            "Arn".into(),
            arn(stack, "firehose", format!("deliverystream/{name}")),
        )]),
    };
    let source = prop(p, "KinesisStreamSourceConfiguration")
        .and_then(|s| s.get("KinesisStreamARN"))
        .map(scalar);
    let destination = prop(p, "ExtendedS3DestinationConfiguration");
    let (Some(source), Some(destination)) = (source, destination) else {
        stack.skipped.insert(
            id.into(),
            "delivery stream without a Kinesis source and an S3 destination (AWS only)".into(),
        );
        return Ok(physical);
    };
    let stream_name = source.rsplit('/').next().unwrap_or_default().to_string();
    let bucket = destination
        .get("BucketARN")
        .map(scalar)
        .and_then(|arn| arn.strip_prefix("arn:aws:s3:::").map(str::to_string))
        .ok_or_else(|| anyhow!("ExtendedS3DestinationConfiguration.BucketARN is required"))?;
    let hints = destination
        .get("BufferingHints")
        .cloned()
        .unwrap_or_default();
    let processors = destination
        .get("ProcessingConfiguration")
        .filter(|c| c.get("Enabled").map(scalar).as_deref() != Some("false"))
        .and_then(|c| c.get("Processors"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let parameter = |kind: &str, name: &str| {
        processors
            .iter()
            .filter(|p| p.get("Type").map(scalar).as_deref() == Some(kind))
            .flat_map(|p| {
                p.get("Parameters")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
            })
            .find(|param| param.get("ParameterName").map(scalar).as_deref() == Some(name))
            .and_then(|param| param.get("ParameterValue").map(scalar))
    };
    let partition_keys = match parameter("MetadataExtraction", "MetadataExtractionQuery") {
        Some(query) => jq_keys(&query)?,
        None => Vec::new(),
    };
    let delimiter = parameter("AppendDelimiterToRecord", "Delimiter")
        .map(|d| d.replace("\\n", "\n"))
        .unwrap_or_else(|| {
            // Without the processor Firehose adds nothing; with it and no parameter, a newline.
            let appended = processors
                .iter()
                .any(|p| p.get("Type").map(scalar).as_deref() == Some("AppendDelimiterToRecord"));
            if appended {
                "\n".into()
            } else {
                String::new()
            }
        });
    let buffer_interval = prop_num::<u64>(&hints, "IntervalInSeconds")?.unwrap_or(300);
    let dynamic = destination
        .get("DynamicPartitioningConfiguration")
        .and_then(|c| c.get("Enabled"))
        .map(scalar)
        .as_deref()
        == Some("true");
    if dynamic && buffer_interval < MIN_DYNAMIC_BUFFER_SECONDS {
        // Firehose refuses this at deploy time; refused here too, rather than shown working.
        bail!(
            "{id}: BufferingHints.IntervalInSeconds is {buffer_interval}; Firehose takes at least \
             {MIN_DYNAMIC_BUFFER_SECONDS} with dynamic partitioning (for a faster local archive, \
             set the runner's archive_buffer instead)"
        );
    }
    stack.deliveries.push(DeliverySpec {
        logical_id: id.into(),
        name,
        stream_name,
        bucket,
        prefix: destination.get("Prefix").map(scalar).unwrap_or_default(),
        error_prefix: destination
            .get("ErrorOutputPrefix")
            .map(scalar)
            .unwrap_or_else(|| "errors/".into()),
        buffer_interval: Duration::from_secs(buffer_interval),
        buffer_bytes: prop_num::<usize>(&hints, "SizeInMBs")?.unwrap_or(5) * 1024 * 1024,
        gzip: destination.get("CompressionFormat").map(scalar).as_deref() == Some("GZIP"),
        partition_keys,
        delimiter,
    });
    Ok(physical)
}

/// The keys of a JQ `MetadataExtractionQuery` of the form `{type: .type, day: .data.day}`:
/// the only form the local runner plays (others are refused by name).
fn jq_keys(query: &str) -> Result<Vec<(String, Vec<String>)>> {
    let inner = query
        .trim()
        .strip_prefix('{')
        .and_then(|q| q.strip_suffix('}'))
        .ok_or_else(|| {
            anyhow!("MetadataExtractionQuery {query:?}: expected {{key: .field, ...}}")
        })?;
    let mut keys = Vec::new();
    for pair in inner.split(',') {
        let Some((key, path)) = pair.split_once(':') else {
            bail!("MetadataExtractionQuery {query:?}: {pair:?} is not `key: .field`");
        };
        let path = path.trim();
        let Some(fields) = path.strip_prefix('.') else {
            bail!("MetadataExtractionQuery {query:?}: {path:?} is not a `.field` path (the only JQ the local runner plays)");
        };
        let fields: Vec<String> = fields.split('.').map(str::to_string).collect();
        if fields
            .iter()
            .any(|f| f.is_empty() || !f.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        {
            bail!("MetadataExtractionQuery {query:?}: {path:?} is not a `.field` path (the only JQ the local runner plays)");
        }
        keys.push((key.trim().to_string(), fields));
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jq_query_of_fields_reads_as_keys_and_anything_else_is_refused_by_name() {
        assert_eq!(
            jq_keys("{type: .type, day: .data.day}").unwrap(),
            [
                ("type".to_string(), vec!["type".to_string()]),
                (
                    "day".to_string(),
                    vec!["data".to_string(), "day".to_string()]
                )
            ]
        );
        let err = jq_keys("{type: .type | ascii_downcase}")
            .unwrap_err()
            .to_string();
        assert!(err.contains("MetadataExtractionQuery"), "{err}");
    }
}
