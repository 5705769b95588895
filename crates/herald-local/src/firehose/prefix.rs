//! Firehose's S3 prefixes: `!{partitionKeyFromQuery:<key>}` (dynamic partitioning),
//! `!{timestamp:<Java date pattern>}` (the record's arrival, UTC), `!{firehose:error-output-type}`
//! and `!{firehose:random-string}`; and the name Firehose gives each object.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Result};
use chrono::{DateTime, Utc};

/// Render `template` for one record.
pub fn render(
    template: &str,
    partition: &BTreeMap<String, String>,
    arrival: DateTime<Utc>,
    error_type: Option<&str>,
) -> Result<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("!{") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find('}')
            .ok_or_else(|| anyhow!("prefix {template:?}: an unclosed !{{"))?;
        let expression = &rest[start + 2..start + end];
        let (namespace, argument) = expression
            .split_once(':')
            .ok_or_else(|| anyhow!("prefix {template:?}: !{{{expression}}} has no namespace"))?;
        match namespace {
            "partitionKeyFromQuery" => out.push_str(
                partition
                    .get(argument)
                    .ok_or_else(|| anyhow!("the record has no partition key {argument:?}"))?,
            ),
            "timestamp" => out.push_str(&arrival.format(&java_pattern(argument)?).to_string()),
            "firehose" => match argument {
                "error-output-type" => out.push_str(error_type.unwrap_or("processing-failed")),
                "random-string" => out.push_str(&uuid::Uuid::new_v4().simple().to_string()[..11]),
                other => bail!("prefix {template:?}: unknown !{{firehose:{other}}}"),
            },
            other => bail!("prefix {template:?}: unknown namespace {other:?}"),
        }
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A Java `DateTimeFormatter` pattern of the common letters as a chrono format.
fn java_pattern(pattern: &str) -> Result<String> {
    let mut out = String::new();
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let run = chars[i..].iter().take_while(|&&d| d == c).count();
        let piece = match (c, run) {
            ('y', 4) | ('u', 4) => "%Y",
            ('y', 2) => "%y",
            ('M', 2) => "%m",
            ('d', 2) => "%d",
            ('H', 2) => "%H",
            ('m', 2) => "%M",
            ('s', 2) => "%S",
            (c, _) if c.is_ascii_alphabetic() => {
                bail!(
                    "timestamp pattern {pattern:?}: {} is not played locally",
                    c.to_string().repeat(run)
                )
            }
            _ => {
                out.extend(std::iter::repeat_n(c, run));
                i += run;
                continue;
            }
        };
        out.push_str(piece);
        i += run;
    }
    Ok(out)
}

/// The name Firehose gives an object under its prefix:
/// `<delivery stream>-<version>-<yyyy-MM-dd-HH-mm-ss>-<uuid>[.gz]`.
pub fn object_name(delivery: &str, at: DateTime<Utc>, gzip: bool) -> String {
    format!(
        "{delivery}-1-{}-{}{}",
        at.format("%Y-%m-%d-%H-%M-%S"),
        uuid::Uuid::new_v4(),
        if gzip { ".gz" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_keys_and_the_arrival_time_fill_the_prefix() {
        let at = DateTime::parse_from_rfc3339("2026-11-30T07:05:09Z")
            .unwrap()
            .with_timezone(&Utc);
        let keys = BTreeMap::from([("type".to_string(), "order_placed".to_string())]);
        assert_eq!(
            render(
                "events/type=!{partitionKeyFromQuery:type}/dt=!{timestamp:yyyy-MM-dd}/hour=!{timestamp:HH}/",
                &keys,
                at,
                None
            )
            .unwrap(),
            "events/type=order_placed/dt=2026-11-30/hour=07/"
        );
        assert_eq!(
            render("errors/!{firehose:error-output-type}/", &keys, at, None).unwrap(),
            "errors/processing-failed/"
        );
        let err = render("x/!{partitionKeyFromQuery:kind}/", &keys, at, None).unwrap_err();
        assert!(err.to_string().contains("kind"), "{err}");
        assert!(render("x/!{timestamp:EEE}/", &keys, at, None).is_err());
    }
}
