//! `herald doctor`: a stack's health, finding by finding, and the command for each problem.

use anyhow::Result;
use herald_local::Template;
use herald_ops::doctor::{self, Status};

use crate::common::{project, stack_and_aws};
use crate::output::{print_json, Output, Refused};

/// Examine the stack `stack` and print what was found.
pub async fn doctor(stack: &str, output: Output) -> Result<()> {
    let template = Template::load(&project()?.join("template.yaml"))?;
    let (stack, aws) = stack_and_aws(stack).await?;
    let report = doctor::examine(&stack, &template, &aws).await?;
    if output.is_json() {
        let mut value = serde_json::to_value(&report)?;
        value["healthy"] = (report.problems() == 0).into();
        print_json(&value);
    } else {
        let origin = match &stack.deployment {
            Some(deployment) => format!("CloudFormation, {}", deployment.status),
            None => "herald local up".to_string(),
        };
        println!("stack {} ({origin})", report.stack);
        for finding in &report.findings {
            let mark = match finding.status {
                Status::Ok => "ok  ",
                Status::Skipped => "--  ",
                Status::Warning => "WARN",
                Status::Problem => "FAIL",
            };
            let check = serde_json::to_value(finding.check)?;
            println!(
                "{mark} {:<20} {:<32} {}",
                check.as_str().unwrap_or_default(),
                finding.resource,
                finding.detail
            );
            if let Some(fix) = &finding.fix {
                println!("     {:<20} {:<32} → {fix}", "", "");
            }
        }
        println!(
            "{} problems, {} warnings, {} checked",
            report.problems(),
            report.warnings(),
            report.findings.len()
        );
    }
    if report.problems() > 0 {
        return Err(Refused(format!(
            "stack {}: {} problems (each with the command that inspects or fixes it above)",
            report.stack,
            report.problems()
        ))
        .into());
    }
    Ok(())
}
