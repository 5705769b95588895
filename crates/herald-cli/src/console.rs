//! `herald console --deployed`: the console for a stack CloudFormation deployed, served on this
//! machine from CloudWatch (metrics of the last hour, alarms, logs) and the stack's queues.

use anyhow::Result;

/// Serve the console for the deployed stack `name` on `port` until Ctrl-C.
pub async fn deployed(name: &str, port: u16) -> Result<()> {
    let (stack, aws) = herald_ops::deployed_stack(name).await?;
    // The catalog is the project's, when herald runs in one.
    let events_dir = herald_local::binaries::find_project_root().map(|root| root.join("events"));
    let status = stack
        .deployment
        .as_ref()
        .map(|d| d.status.clone())
        .unwrap_or_default();
    println!(
        "stack       {} ({status}, {} resources, {} functions)",
        stack.name,
        stack.resources.len(),
        stack.functions.len()
    );
    let (url, task) = herald_ops::console::serve_deployed(stack, aws, port, events_dir).await?;
    println!("console     {url} (CloudWatch's view; a redrive is the one thing it changes)");
    println!("Ctrl-C to stop.");
    tokio::signal::ctrl_c().await?;
    task.abort();
    Ok(())
}
