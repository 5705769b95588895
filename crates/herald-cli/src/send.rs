//! `herald send`: events to the producer's Function URL (a deployed one over TLS, signed with
//! SigV4), and the producer's report.

use anyhow::{anyhow, bail, Result};
use herald_ops::signed::{self, Signing};
use serde_json::{json, Value};

use crate::common::{read_input, stack_and_aws};
use crate::output::{print_json, Output, Refused};
use crate::SendArgs;

/// POST the events and print what the producer answered: the report as it came (`--output
/// json`) or indented. Fails on a 4xx/5xx; a 207 (some events rejected) is "refused" (exit 2).
pub async fn send(args: SendArgs, output: Output) -> Result<()> {
    let events = read_input(&args.events)?;
    let (url, found_signing, aws) = match &args.url {
        Some(url) => (
            url.clone(),
            Signing::for_url(url),
            herald::aws::sdk_config().await,
        ),
        None => {
            let (stack, aws) = stack_and_aws(&args.stack).await?;
            let producer = stack.function("producer")?;
            let url = producer.url.clone().ok_or_else(|| {
                anyhow!(
                    "the producer of stack {} has no Function URL{}",
                    stack.name,
                    if stack.deployment.is_some() {
                        " deployed"
                    } else {
                        ""
                    }
                )
            })?;
            // A local runner's URL checks no signature; a deployed one with AWS_IAM does.
            let signing = match (&stack.deployment, producer.url_auth_type.as_deref()) {
                (Some(_), Some("AWS_IAM")) => Signing::SigV4 {
                    service: "lambda".into(),
                },
                _ => Signing::Unsigned,
            };
            (url, signing, aws)
        }
    };
    let signing = match args.sign.as_str() {
        "auto" => found_signing,
        "none" => Signing::Unsigned,
        service => Signing::SigV4 {
            service: service.into(),
        },
    };
    if args.dry_run {
        let plan = json!({
            "url": url,
            "signing": signing.to_string(),
            "events": count(&events),
        });
        if output.is_json() {
            print_json(&plan);
        } else {
            println!("would POST {} events to {url}, {signing}", plan["events"]);
        }
        return Ok(());
    }
    let (status, report) = signed::post_json(&url, &events, &signing, &aws).await?;
    if output.is_json() {
        print_json(&report);
    } else {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    if status >= 400 {
        bail!("the producer answered {status}");
    }
    let rejected = report["rejected"].as_u64().unwrap_or(0);
    if rejected > 0 {
        return Err(Refused(format!(
            "the producer rejected {rejected} of the events ({status}); each result names the field"
        ))
        .into());
    }
    Ok(())
}

/// How many events the input holds: one, an array, or `{"events": [...]}`.
fn count(events: &Value) -> usize {
    match events {
        Value::Array(items) => items.len(),
        Value::Object(fields) => fields
            .get("events")
            .and_then(Value::as_array)
            .map_or(1, Vec::len),
        _ => 1,
    }
}
