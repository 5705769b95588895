//! `herald send`: events to the producer's Function URL, and the producer's report.

use anyhow::{bail, Result};

use crate::common::{load_stack, read_input};
use crate::SendArgs;

/// POST the events and print what the producer answered; fails on a 4xx/5xx.
pub async fn send(args: SendArgs) -> Result<()> {
    let events = read_input(&args.events)?;
    let url = match args.url {
        Some(url) => url,
        None => load_stack(&args.stack)?.function_url("producer")?,
    };
    let (status, report) = herald_local::http::post_json(&url, &events).await?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    if status >= 400 {
        bail!("the producer answered {status}");
    }
    Ok(())
}
