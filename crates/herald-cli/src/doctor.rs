//! `herald doctor`: a stack's health, finding by finding, and the command for each problem.

use anyhow::Result;
use herald_local::Template;
use herald_ops::doctor::{self, Status};

use crate::common::{project, stack_and_aws};
use crate::output::{print_json, Output, Refused};

/// Examine the stack `stack` and print what was found.
pub async fn doctor(stack: &str, output: Output) -> Result<()> {
    let (stack, aws) = stack_and_aws(stack).await?;
    // What the stack asks of its tables: as deployed, or as this project's template says.
    let template = match &stack.deployment {
        Some(_) => herald_ops::deployed_template(&aws, &stack.name).await?,
        None => Template::load(&project()?.join("template.yaml"))?,
    };
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
        // What is wrong (or not checked) line by line; what is well, counted per check.
        let mut healthy: Vec<(String, usize)> = Vec::new();
        for finding in &report.findings {
            let check = serde_json::to_value(finding.check)?
                .as_str()
                .unwrap_or_default()
                .to_string();
            let mark = match finding.status {
                Status::Ok => {
                    match healthy.iter_mut().find(|(c, _)| *c == check) {
                        Some((_, n)) => *n += 1,
                        None => healthy.push((check, 1)),
                    }
                    continue;
                }
                Status::Skipped => "--  ",
                Status::Warning => "WARN",
                Status::Problem => "FAIL",
            };
            println!(
                "{mark} {check:<20} {:<32} {}",
                finding.resource, finding.detail
            );
            if let Some(fix) = &finding.fix {
                println!("     {:<20} {:<32} → {fix}", "", "");
            }
        }
        let healthy: Vec<String> = healthy
            .iter()
            .map(|(check, n)| format!("{check} {n}"))
            .collect();
        println!("ok   {}", healthy.join(", "));
        println!(
            "{} problems, {} warnings",
            report.problems(),
            report.warnings()
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
