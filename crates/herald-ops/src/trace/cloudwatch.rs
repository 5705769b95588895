//! A business transaction's log lines from CloudWatch Logs: each function's log group (as
//! Lambda writes it, and as the local runner writes it too), searched with `FilterLogEvents`
//! for the id, then for its correlation id, then for the router's batch lines over the
//! transaction's span (they say which batch carried which stream record, and carry no
//! correlation id of their own).

use std::time::Duration;

use super::{self as lines, Trace};
use anyhow::Result;
use aws_config::SdkConfig;
use herald_local::Stack;

/// How long after the transaction's last line a router batch may still carry it.
const ROUTED_WITHIN: Duration = Duration::from_secs(10 * 60);

/// Trace `id` (an event id or a correlation id) in the stack's logs of the last `since`.
pub async fn trace(stack: &Stack, aws: &SdkConfig, id: &str, since: Duration) -> Result<Trace> {
    let logs = aws_sdk_cloudwatchlogs::Client::new(aws);
    let groups = log_groups(stack);
    let now = chrono::Utc::now().timestamp_millis();
    let start = now - since.as_millis() as i64;
    let mut found = search(&logs, &groups, id, start, None, None).await?;
    let correlation = lines::correlation_of(plain(&found), id);
    if correlation != id {
        found = search(&logs, &groups, &correlation, start, None, None).await?;
    }
    if let (Some(first), Some(last)) = (
        found.iter().map(|l| l.time).min(),
        found.iter().map(|l| l.time).max(),
    ) {
        // From the router's group (every group when herald cannot tell which function routes).
        let router = crate::replay_function(stack)
            .map(|(f, _)| f.label().to_string())
            .ok();
        let router_groups: Vec<(String, String)> = groups
            .iter()
            .filter(|(label, _)| router.as_deref().is_none_or(|r| r == label))
            .cloned()
            .collect();
        let routed = search(
            &logs,
            &router_groups,
            "batch routed",
            first - 60_000,
            Some(last + ROUTED_WITHIN.as_millis() as i64),
            None,
        )
        .await?;
        found.extend(routed);
    }
    lines::trace_lines(
        plain(&found),
        id,
        &format!(
            "the CloudWatch Logs of stack {} (last {since:?})",
            stack.name
        ),
    )
}

/// The transactions in the stack's logs of the last `since`, from at most `limit` lines per
/// function and kind of line (`FilterLogEvents` reads forward: on a busy stack, the window's
/// first lines; keep `since` short for the latest).
pub async fn recent(
    stack: &Stack,
    aws: &SdkConfig,
    since: Duration,
    limit: usize,
) -> Result<Vec<Trace>> {
    let logs = aws_sdk_cloudwatchlogs::Client::new(aws);
    let groups = log_groups(stack);
    let start = chrono::Utc::now().timestamp_millis() - since.as_millis() as i64;
    // Lines about an event carry its correlation id; the router's batch lines say "batch routed".
    let mut found = search(&logs, &groups, "correlationId", start, None, Some(limit)).await?;
    found.extend(search(&logs, &groups, "batch routed", start, None, Some(limit)).await?);
    Ok(lines::all_lines(plain(&found)))
}

fn log_groups(stack: &Stack) -> Vec<(String, String)> {
    stack
        .functions
        .iter()
        .map(|f| (f.label().to_string(), f.log_group.clone()))
        .collect()
}

/// One log event, by function.
struct Found {
    function: String,
    time: i64,
    message: String,
}

fn plain(found: &[Found]) -> Vec<(String, String)> {
    found
        .iter()
        .map(|f| (f.function.clone(), f.message.clone()))
        .collect()
}

/// Every event in `groups` whose message holds `phrase`, between `start` and `end` (ms); with
/// `limit`, the first pages of each group up to that many events.
async fn search(
    logs: &aws_sdk_cloudwatchlogs::Client,
    groups: &[(String, String)],
    phrase: &str,
    start: i64,
    end: Option<i64>,
    limit: Option<usize>,
) -> Result<Vec<Found>> {
    let mut found = Vec::new();
    for (function, group) in groups {
        let mut token = None;
        let mut taken = 0;
        loop {
            let page = logs
                .filter_log_events()
                .log_group_name(group)
                // A quoted term: the exact phrase, punctuation and all.
                .filter_pattern(format!("\"{phrase}\""))
                .start_time(start)
                .set_end_time(end)
                .set_next_token(token)
                .send()
                .await;
            let page = match page {
                Ok(page) => page,
                // A function that never logged has no group yet.
                Err(err)
                    if err
                        .as_service_error()
                        .is_some_and(|e| e.is_resource_not_found_exception()) =>
                {
                    break
                }
                Err(err) => anyhow::bail!("reading {group}: {}", herald::aws::error_text(&err)),
            };
            taken += page.events().len();
            found.extend(page.events().iter().map(|event| Found {
                function: function.clone(),
                time: event.timestamp().unwrap_or_default(),
                message: event.message().unwrap_or_default().to_string(),
            }));
            token = page.next_token().map(str::to_string);
            if token.is_none() || limit.is_some_and(|limit| taken >= limit) {
                break;
            }
        }
    }
    Ok(found)
}
