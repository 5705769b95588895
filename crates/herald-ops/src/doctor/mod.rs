//! `herald doctor`: whether a stack is healthy, and what to do when it is not.
//!
//! Each check reads one part of the stack through its own API and gives [`Finding`]s: one per
//! resource it looked at, healthy or not, each naming the resource (logical and physical) and,
//! when something is wrong, the command that inspects or fixes it. What the local runner plays
//! rather than AWS (mappings, alarms, delivery streams of a `herald local up` stack) is
//! [`Status::Skipped`], saying so.

mod alarms;
mod archive;
mod dead_letters;
mod iterator_age;
mod mappings;
mod tables;

use anyhow::Result;
use aws_config::SdkConfig;
use herald_local::{Stack, Template};
use serde::Serialize;

/// What a check looked at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Check {
    /// The CloudFormation stack's status.
    Stack,
    /// An event source mapping: enabled, and its last processing result.
    Mapping,
    /// A dead-letter or on-failure queue's depth.
    DeadLetters,
    /// How far behind a stream reader is (`IteratorAge`).
    IteratorAge,
    /// A CloudWatch alarm's state.
    Alarm,
    /// TTL on a table whose template turns it on (the idempotency records').
    Ttl,
    /// Point-in-time recovery on a table whose template turns it on.
    PointInTimeRecovery,
    /// The archive's delivery stream.
    Archive,
}

/// How a finding stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Status {
    /// Healthy.
    Ok,
    /// Not checked: the local runner plays it, or it does not apply.
    Skipped,
    /// Worth a look, not (yet) losing or delaying anything.
    Warning,
    /// Wrong: events wait, fail or could be applied twice until it is fixed.
    Problem,
}

/// One resource looked at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// What was checked.
    pub check: Check,
    /// How it stands.
    pub status: Status,
    /// The resource's logical id in the template.
    pub resource: String,
    /// Its physical name, as CloudFormation (or the local runner) created it.
    pub physical: String,
    /// What was found, in a sentence.
    pub detail: String,
    /// The command that inspects or fixes it, when something is wrong.
    pub fix: Option<String>,
}

impl Finding {
    fn new(check: Check, status: Status, resource: &str, physical: &str, detail: String) -> Self {
        Finding {
            check,
            status,
            resource: resource.to_string(),
            physical: physical.to_string(),
            detail,
            fix: None,
        }
    }

    fn fix(mut self, command: String) -> Self {
        self.fix = Some(command);
        self
    }

    /// A check that could not read what it looks at (permissions, a missing resource): a
    /// problem, since nothing then says the resource is healthy.
    fn unreadable(check: Check, resource: &str, physical: &str, err: &anyhow::Error) -> Self {
        Finding::new(
            check,
            Status::Problem,
            resource,
            physical,
            format!("could not be read: {err:#}"),
        )
    }
}

/// What `herald doctor` found.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Stack name.
    pub stack: String,
    /// Whether CloudFormation deployed it (else `herald local up` started it).
    pub deployed: bool,
    /// Every finding, in check order.
    pub findings: Vec<Finding>,
}

impl Report {
    /// Findings with status [`Status::Problem`].
    pub fn problems(&self) -> usize {
        self.count(Status::Problem)
    }

    /// Findings with status [`Status::Warning`].
    pub fn warnings(&self) -> usize {
        self.count(Status::Warning)
    }

    fn count(&self, status: Status) -> usize {
        self.findings.iter().filter(|f| f.status == status).count()
    }
}

/// Examine `stack` (found with [`crate::connect`]) against `template`, the template
/// it was deployed from (for what it asks of its tables).
pub async fn examine(stack: &Stack, template: &Template, aws: &SdkConfig) -> Result<Report> {
    let mut findings = Vec::new();
    if let Some(deployment) = &stack.deployment {
        findings.push(stack_status(&stack.name, &deployment.status));
    }
    findings.extend(mappings::check(stack, aws).await);
    findings.extend(dead_letters::check(stack, aws).await);
    findings.extend(iterator_age::check(stack, aws).await);
    findings.extend(alarms::check(stack, aws).await);
    findings.extend(tables::check(stack, template, aws).await);
    findings.extend(archive::check(stack, aws).await);
    Ok(Report {
        stack: stack.name.clone(),
        deployed: stack.deployment.is_some(),
        findings,
    })
}

fn stack_status(name: &str, status: &str) -> Finding {
    let (level, detail) = if status.ends_with("_FAILED") {
        (
            Status::Problem,
            format!("{status}: CloudFormation could not apply the last change"),
        )
    } else if status == "UPDATE_ROLLBACK_COMPLETE" {
        (
            Status::Warning,
            format!("{status}: the last update was rolled back; the previous version runs"),
        )
    } else if status.ends_with("_IN_PROGRESS") {
        (
            Status::Warning,
            format!("{status}: a change is being applied"),
        )
    } else {
        (Status::Ok, status.to_string())
    };
    let finding = Finding::new(Check::Stack, level, name, name, detail);
    if level == Status::Ok {
        finding
    } else {
        finding.fix(format!(
            "aws cloudformation describe-stack-events --stack-name {name}"
        ))
    }
}

/// The error of an SDK call, with its causes.
fn aws_error<E: std::error::Error + 'static>(err: E) -> anyhow::Error {
    anyhow::anyhow!(herald::aws::error_text(&err))
}

/// What the local runner plays instead of AWS, once per check.
fn played_locally(check: Check, what: &str) -> Finding {
    Finding::new(
        check,
        Status::Skipped,
        what,
        "",
        format!("{what}: played by `herald local up`, not by AWS"),
    )
}
