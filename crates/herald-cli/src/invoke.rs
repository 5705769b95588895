//! `herald invoke`: invoke one function once with an event and print its response.

use anyhow::{bail, Result};
use herald_local::Endpoint;

use crate::common::{read_input, up_options};
use crate::InvokeArgs;

/// Bring the stack up without its mappings, invoke the function, stop.
pub async fn invoke(args: InvokeArgs) -> Result<()> {
    let payload = read_input(&args.event)?;
    let root = crate::common::project()?;
    let endpoint = Endpoint::from_env_or_start(&root, None).await?;
    let mut options = up_options(&root, &args.common, None);
    options.quiet_build = true;
    options.runner.mappings = false;
    options.runner.echo_logs = true;
    let pipeline = herald_local::up(&endpoint, options).await?;
    let result = pipeline.try_invoke(&args.function, &payload).await?;
    pipeline.stop().await;
    match result {
        Ok(response) => {
            println!("{}", serde_json::to_string_pretty(&response)?);
            Ok(())
        }
        Err(err) => bail!("the function failed: {err}"),
    }
}
