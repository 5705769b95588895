//! Reading CloudWatch alarms by name, shared by `doctor` and the console.

use std::collections::BTreeMap;

use anyhow::Result;
use aws_sdk_cloudwatch::types::MetricAlarm;

/// `DescribeAlarms` takes at most this many names.
pub(crate) const NAMES_PER_CALL: usize = 100;

/// The metric alarms among `names` (at most [`NAMES_PER_CALL`]) CloudWatch has, by name.
pub(crate) async fn describe(
    cloudwatch: &aws_sdk_cloudwatch::Client,
    names: impl Iterator<Item = &str>,
) -> Result<BTreeMap<String, MetricAlarm>> {
    let mut request = cloudwatch.describe_alarms();
    for name in names {
        request = request.alarm_names(name);
    }
    let mut found = BTreeMap::new();
    let mut pages = request.into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|err| anyhow::anyhow!(herald::aws::error_text(&err)))?;
        for alarm in page.metric_alarms() {
            if let Some(name) = alarm.alarm_name() {
                found.insert(name.to_string(), alarm.clone());
            }
        }
    }
    Ok(found)
}
