//! How far behind each stream reader is: Lambda's `IteratorAge` (the age of the last record it
//! read) over the last fifteen minutes. A reader that falls behind for hours loses records when
//! the stream's retention drops them.

use std::time::{Duration, SystemTime};

use anyhow::Result;
use aws_config::SdkConfig;
use aws_sdk_cloudwatch::types::{Dimension, Statistic};
use aws_smithy_types::DateTime;
use herald_local::stack::MappingSpec;
use herald_local::Stack;

use super::{aws_error, played_locally, Check, Finding, Status};

/// How far back the readings go.
const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Behind by more than this: a warning.
const BEHIND: Duration = Duration::from_secs(60);
/// Behind by more than this: a problem (records are a good part of the way to being dropped).
const FAR_BEHIND: Duration = Duration::from_secs(60 * 60);

pub(super) async fn check(stack: &Stack, aws: &SdkConfig) -> Vec<Finding> {
    if stack.deployment.is_none() {
        return vec![played_locally(Check::IteratorAge, "stream readers")];
    }
    let cloudwatch = aws_sdk_cloudwatch::Client::new(aws);
    let mut findings = Vec::new();
    let mut seen = Vec::new();
    for mapping in &stack.mappings {
        let MappingSpec::Stream(mapping) = mapping else {
            continue;
        };
        let Ok(function) = stack.function(&mapping.function) else {
            continue;
        };
        // One metric per function, however many streams it reads.
        if seen.contains(&function.name) {
            continue;
        }
        seen.push(function.name.clone());
        let finding = match oldest(&cloudwatch, &function.name).await {
            Ok(None) => Finding::new(
                Check::IteratorAge,
                Status::Ok,
                &function.logical_id,
                &function.name,
                "no readings in the last 15 minutes (nothing to read)".into(),
            ),
            Ok(Some(age)) => {
                let status = status_of(age);
                let finding = Finding::new(
                    Check::IteratorAge,
                    status,
                    &function.logical_id,
                    &function.name,
                    format!("reading {} behind {}", human(age), mapping.stream_name),
                );
                if status == Status::Ok {
                    finding
                } else {
                    finding.fix(format!("aws logs tail {} --since 1h", function.log_group))
                }
            }
            Err(err) => Finding::unreadable(
                Check::IteratorAge,
                &function.logical_id,
                &function.name,
                &err,
            ),
        };
        findings.push(finding);
    }
    findings
}

/// The largest `IteratorAge` in the window, if the function read anything in it.
async fn oldest(
    cloudwatch: &aws_sdk_cloudwatch::Client,
    function: &str,
) -> Result<Option<Duration>> {
    let now = SystemTime::now();
    let readings = cloudwatch
        .get_metric_statistics()
        .namespace("AWS/Lambda")
        .metric_name("IteratorAge")
        .dimensions(
            Dimension::builder()
                .name("FunctionName")
                .value(function)
                .build(),
        )
        .start_time(DateTime::from(now - WINDOW))
        .end_time(DateTime::from(now))
        .period(60)
        .statistics(Statistic::Maximum)
        .send()
        .await
        .map_err(aws_error)?;
    Ok(readings
        .datapoints()
        .iter()
        .filter_map(|d| d.maximum())
        .fold(None, |max: Option<f64>, v| {
            Some(max.map_or(v, |m| m.max(v)))
        })
        .map(|ms| Duration::from_millis(ms.max(0.0) as u64)))
}

/// How a reader that far behind stands.
fn status_of(age: Duration) -> Status {
    if age > FAR_BEHIND {
        Status::Problem
    } else if age > BEHIND {
        Status::Warning
    } else {
        Status::Ok
    }
}

fn human(age: Duration) -> String {
    let seconds = age.as_secs();
    if seconds >= 3600 {
        format!("{}h{:02}m", seconds / 3600, seconds % 3600 / 60)
    } else if seconds >= 60 {
        format!("{}m{:02}s", seconds / 60, seconds % 60)
    } else {
        format!("{:.1}s", age.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minute_behind_is_a_warning_an_hour_a_problem() {
        let secs = Duration::from_secs;
        assert_eq!(status_of(secs(0)), Status::Ok);
        assert_eq!(status_of(secs(60)), Status::Ok);
        assert_eq!(status_of(secs(61)), Status::Warning);
        assert_eq!(status_of(secs(3600)), Status::Warning);
        assert_eq!(status_of(secs(3601)), Status::Problem);
        assert_eq!(human(secs(3725)), "1h02m");
        assert_eq!(human(secs(75)), "1m15s");
    }
}
