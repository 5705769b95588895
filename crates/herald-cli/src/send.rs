//! `herald send`: events to the producer's Function URL, and the producer's report.

use anyhow::{bail, Result};

use crate::common::{load_stack, read_input};
use crate::output::{print_json, Output, Refused};
use crate::SendArgs;

/// POST the events and print what the producer answered: the report as it came (`--output
/// json`) or indented. Fails on a 4xx/5xx; a 207 (some events rejected) is "refused" (exit 2).
pub async fn send(args: SendArgs, output: Output) -> Result<()> {
    let events = read_input(&args.events)?;
    let url = match args.url {
        Some(url) => url,
        None => load_stack(&args.stack)?.function_url("producer")?,
    };
    let (status, report) = herald_local::http::post_json(&url, &events).await?;
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
