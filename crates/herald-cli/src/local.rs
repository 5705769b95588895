//! `herald local up`: provision the template on the emulator and run every function and mapping
//! in the foreground until Ctrl-C.

use anyhow::Result;
use herald_local::faults::FaultPlan;
use herald_local::Endpoint;

use crate::common::up_options;
use crate::UpArgs;

/// Bring the stack up, record it for the other commands, and wait for Ctrl-C.
pub async fn up(args: UpArgs) -> Result<()> {
    let faults = args.faults.as_deref().map(FaultPlan::parse).transpose()?;
    let root = crate::common::project()?;
    println!(
        "project     {} (the nearest directory holding template.yaml and Cargo.toml)",
        root.display()
    );
    let endpoint = match Endpoint::from_env() {
        Some(endpoint) => endpoint,
        None => Endpoint::start(args.emulator, &root, Some(args.moto_port)).await?,
    };
    println!("endpoint    {}", endpoint.describe());
    let mut options = up_options(&root, &args.common, Some(args.url_port));
    options.runner.echo_logs = true;
    options.runner.concurrency = args.concurrency;
    if let Some(seconds) = args.alarm_period {
        options.runner.alarms.period = Some(
            std::time::Duration::try_from_secs_f64(seconds)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "--alarm-period must be a positive number of seconds, not {seconds}"
                    )
                })?,
        );
    }
    options.runner.log_dir = Some(root.join(".herald/logs").join(&args.common.stack));
    options.runner.fresh = args.fresh;
    options.runner.faults = faults;
    options.runner.lambda_port = args.lambda_port;
    let mut pipeline = herald_local::up(&endpoint, options).await?;
    pipeline.warm().await?;
    let console =
        herald_ops::console::serve_local(&mut pipeline, args.console_port, root.join("events"))
            .await?;
    let stack = pipeline.stack();
    stack.save(&herald_ops::state_file(&root, &stack.name))?;
    println!(
        "stack       {} ({} resources, {} functions, {} event source mappings)",
        stack.name,
        stack.resources.len(),
        stack.functions.len(),
        stack.mappings.len()
    );
    for function in &stack.functions {
        if let Some(url) = &function.url {
            println!("url         {} → {}", url, function.label());
        }
    }
    if let Some(lambda) = pipeline.lambda_endpoint() {
        println!("lambda      {lambda} (Invoke: AWS_ENDPOINT_URL_LAMBDA={lambda})");
    }
    if let Some(spec) = &args.faults {
        println!("faults      {spec} (functions and pollers go through the fault proxy)");
    }
    if let Some(file) = pipeline.checkpoints().file() {
        let how = if args.fresh {
            "streams read from each mapping's StartingPosition"
        } else {
            "streams resume after them; --fresh starts over"
        };
        println!("checkpoints {} ({how})", file.display());
    }
    for (id, kind) in &stack.skipped {
        println!("not local   {id}: {kind}");
    }
    println!(
        "alarms      {} of the template's alarms evaluated locally; changes print as `ALARM <name>: <why>` / `OK <name>`",
        stack.alarms.len()
    );
    println!("console     {console}");
    let exports: String = endpoint
        .exports()
        .iter()
        .map(|(variable, value)| format!("  export {variable}={value}\n"))
        .collect();
    println!("\nIn another terminal:\n{exports}  target/debug/herald send events/producer/direct-invoke.json\n\nCtrl-C stops everything.\n");
    tokio::signal::ctrl_c().await?;
    println!("stopping");
    if let Some(report) = pipeline.fault_report() {
        print!("{report}");
    }
    pipeline.stop().await;
    Ok(())
}
