//! The Kinesis side of [`super::Stream`].

use anyhow::{anyhow, Result};
use aws_sdk_kinesis::types::ShardIteratorType;
use aws_sdk_kinesis::Client;
use chrono::Utc;

use super::{sdk_error, utc, Listing, Page, Payload, Position, Record, Shard};

pub(super) async fn identity(client: &Client, name: &str) -> Result<String> {
    let summary = client
        .describe_stream_summary()
        .stream_name(name)
        .send()
        .await
        .map_err(sdk_error)?
        .stream_description_summary
        .ok_or_else(|| anyhow!("DescribeStreamSummary answered no summary"))?;
    let created = summary.stream_creation_timestamp;
    Ok(format!(
        "{}@{}.{:09}",
        summary.stream_arn,
        created.secs(),
        created.subsec_nanos()
    ))
}

pub(super) async fn shards(client: &Client, name: &str) -> Result<Listing> {
    let mut shards = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let request = match &next {
            // With a token, the stream must not be named.
            Some(token) => client.list_shards().next_token(token),
            None => client.list_shards().stream_name(name),
        };
        let out = request.send().await.map_err(sdk_error)?;
        shards.extend(out.shards().iter().map(|s| {
            Shard {
                id: s.shard_id.clone(),
                parents: s
                    .parent_shard_id
                    .iter()
                    .chain(s.adjacent_parent_shard_id.iter())
                    .cloned()
                    .collect(),
                closed: s
                    .sequence_number_range
                    .as_ref()
                    .is_some_and(|r| r.ending_sequence_number.is_some()),
            }
        }));
        next = out.next_token;
        if next.is_none() {
            return Ok(Listing {
                shards,
                hash_key: None,
            });
        }
    }
}

pub(super) async fn iterator(
    client: &Client,
    name: &str,
    shard: &str,
    position: &Position,
) -> Result<String> {
    let request = client
        .get_shard_iterator()
        .stream_name(name)
        .shard_id(shard);
    let request = match position {
        Position::At(at) => request
            .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
            .starting_sequence_number(at),
        Position::After(after) => request
            .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
            .starting_sequence_number(after),
        Position::TrimHorizon => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
        Position::Latest => request.shard_iterator_type(ShardIteratorType::Latest),
        Position::AtMillis(millis) => request
            .shard_iterator_type(ShardIteratorType::AtTimestamp)
            .timestamp(aws_smithy_types::DateTime::from_millis(*millis)),
    };
    request
        .send()
        .await
        .map_err(sdk_error)?
        .shard_iterator
        .ok_or_else(|| anyhow!("GetShardIterator answered no iterator"))
}

pub(super) async fn read(client: &Client, shard: &str, iterator: &str, limit: i32) -> Result<Page> {
    let out = client
        .get_records()
        .shard_iterator(iterator)
        .limit(limit)
        .send()
        .await
        .map_err(sdk_error)?;
    Ok(Page {
        millis_behind: out.millis_behind_latest.unwrap_or(0),
        next_iterator: out.next_shard_iterator,
        records: out
            .records
            .into_iter()
            .map(|r| Record {
                shard_id: shard.to_string(),
                sequence_number: r.sequence_number,
                partition_key: r.partition_key.unwrap_or_default(),
                arrival: r
                    .approximate_arrival_timestamp
                    .and_then(utc)
                    .unwrap_or_else(Utc::now),
                payload: Payload::Kinesis(r.data.into_inner()),
            })
            .collect(),
    })
}
