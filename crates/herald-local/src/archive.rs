//! Reading the event archive back: what the stack's Firehose delivery stream wrote to S3
//! (`events/type=<type>/dt=<day>/hour=<hour>/<object>.gz`, one event per line). Objects are
//! chosen by their partitions (`key=value` path segments) before any is read, then each line is
//! parsed as an event and kept when its `time` falls in the range. Works on any endpoint: the
//! emulator's S3 locally, the bucket on AWS after `sam deploy`.

use std::collections::BTreeMap;
use std::io::Read as _;

use anyhow::{anyhow, bail, Context, Result};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use herald::Envelope;

use crate::stack::{DeliverySpec, Stack};

/// Which events to read.
#[derive(Clone, Debug, Default)]
pub struct Query {
    /// Events at or after this time (`time` attribute).
    pub from: Option<DateTime<Utc>>,
    /// Events before this time.
    pub to: Option<DateTime<Utc>>,
    /// Only these types (all when empty).
    pub types: Vec<String>,
}

/// One archived event.
#[derive(Clone, Debug)]
pub struct Archived {
    /// The line as delivered (the event's JSON, unchanged).
    pub raw: Vec<u8>,
    /// The event.
    pub event: Envelope,
    /// The object it was read from.
    pub object: String,
}

/// What a read found.
#[derive(Clone, Debug, Default)]
pub struct Read {
    /// The events, oldest first (by `time`, then as archived).
    pub events: Vec<Archived>,
    /// Objects read.
    pub objects: usize,
    /// Lines that are not events (left where they are).
    pub unreadable: usize,
}

/// The stack's archive: the delivery stream writing into S3 (the only one, or the one whose
/// logical id names it), its bucket and the prefix every partition lies under.
pub fn archive_of(stack: &Stack) -> Result<(&DeliverySpec, String)> {
    let delivery = match stack.deliveries.as_slice() {
        [] => bail!("the stack has no Firehose delivery stream into S3: no archive to read"),
        [one] => one,
        several => several
            .iter()
            .find(|d| d.logical_id.to_lowercase().contains("archive"))
            .ok_or_else(|| anyhow!("several delivery streams; none is named an archive"))?,
    };
    // The fixed part of the prefix, up to its first expression's segment.
    let fixed = match delivery.prefix.find("!{") {
        Some(at) => &delivery.prefix[..at],
        None => delivery.prefix.as_str(),
    };
    let root = match fixed.rfind('/') {
        Some(at) => fixed[..=at].to_string(),
        None => String::new(),
    };
    Ok((delivery, root))
}

/// The `key=value` segments of an object key.
pub fn partitions(key: &str) -> BTreeMap<String, String> {
    key.split('/')
        .filter_map(|segment| segment.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Whether an object's partitions can hold events of `query` (its `type`, and its `dt`/`hour`
/// with a day's slack either side: partitions are by arrival, the range by event time, and an
/// event reaches the stream after its time — a publisher retrying through an outage — within
/// the stream's retention).
fn wanted(partitions: &BTreeMap<String, String>, query: &Query) -> bool {
    if !query.types.is_empty() {
        if let Some(t) = partitions.get("type") {
            if !query.types.iter().any(|wanted| wanted == t) {
                return false;
            }
        }
    }
    let Some(day) = partitions
        .get("dt")
        .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
    else {
        return true;
    };
    let (start, length) = match partitions.get("hour").and_then(|h| h.parse::<u32>().ok()) {
        Some(hour) => (day.and_hms_opt(hour, 0, 0), Duration::hours(1)),
        None => (day.and_hms_opt(0, 0, 0), Duration::days(1)),
    };
    let Some(start) = start.map(|s| s.and_utc()) else {
        return true;
    };
    let slack = Duration::hours(24);
    let end = start + length;
    query.from.is_none_or(|from| end + slack > from) && query.to.is_none_or(|to| start - slack < to)
}

/// Read the events of `query` from `bucket` under `root`.
pub async fn read(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    root: &str,
    query: &Query,
) -> Result<Read> {
    let mut keys = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(root)
            .set_continuation_token(token.take())
            .send()
            .await
            .map_err(|e| {
                anyhow!(
                    "listing s3://{bucket}/{root}: {}",
                    herald::aws::error_text(&e)
                )
            })?;
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key.clone())
                .filter(|k| wanted(&partitions(k), query)),
        );
        match page.next_continuation_token {
            Some(next) if page.is_truncated == Some(true) => token = Some(next),
            _ => break,
        }
    }
    keys.sort();
    let mut out = Read::default();
    for key in keys {
        let object = s3
            .get_object()
            .bucket(bucket)
            .key(&key)
            .send()
            .await
            .map_err(|e| {
                anyhow!(
                    "reading s3://{bucket}/{key}: {}",
                    herald::aws::error_text(&e)
                )
            })?;
        let bytes = object
            .body
            .collect()
            .await
            .with_context(|| format!("reading s3://{bucket}/{key}"))?
            .into_bytes();
        let text = if bytes.starts_with(&[0x1f, 0x8b]) {
            let mut text = Vec::new();
            flate2::read::MultiGzDecoder::new(&bytes[..])
                .read_to_end(&mut text)
                .with_context(|| format!("s3://{bucket}/{key} is not gzip"))?;
            text
        } else {
            bytes.to_vec()
        };
        out.objects += 1;
        for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let Ok(event) = Envelope::parse(line) else {
                out.unreadable += 1;
                continue;
            };
            let time = event.time();
            let in_range = query.from.is_none_or(|from| time >= from)
                && query.to.is_none_or(|to| time < to)
                && (query.types.is_empty() || query.types.iter().any(|t| t == event.event_type()));
            if in_range {
                out.events.push(Archived {
                    raw: line.to_vec(),
                    event,
                    object: key.clone(),
                });
            }
        }
    }
    out.events.sort_by_key(|a| a.event.time());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn objects_are_chosen_by_their_partitions() {
        let key = "events/type=order_placed/dt=2026-11-30/hour=10/s-1-2026-11-30-10-00-00-x.gz";
        let p = partitions(key);
        assert_eq!(p["type"], "order_placed");
        let query = |from: &str, to: &str, types: &[&str]| Query {
            from: Some(at(from)),
            to: Some(at(to)),
            types: types.iter().map(|t| t.to_string()).collect(),
        };
        assert!(wanted(
            &p,
            &query("2026-11-30T10:30:00Z", "2026-11-30T10:31:00Z", &[])
        ));
        assert!(
            wanted(
                &p,
                &query("2026-12-01T08:00:00Z", "2026-12-01T09:00:00Z", &[])
            ),
            "a day's slack"
        );
        assert!(!wanted(
            &p,
            &query("2026-12-02T13:00:00Z", "2026-12-02T14:00:00Z", &[])
        ));
        assert!(!wanted(
            &p,
            &query(
                "2026-11-30T10:00:00Z",
                "2026-11-30T11:00:00Z",
                &["payment_succeeded"]
            )
        ));
        assert!(wanted(&partitions("events/other/x.gz"), &Query::default()));
    }
}
