//! `herald env`: a function's environment in a running local stack, as KEY=VALUE lines (for
//! `cargo lambda watch --env-file`).

use anyhow::Result;

use crate::common::load_stack;

/// Print the function's template environment and the endpoint's variables.
pub fn env(function: &str, stack: &str) -> Result<()> {
    let stack = load_stack(stack)?;
    let spec = stack.function(function)?;
    let endpoint = stack.aws_endpoint();
    for (key, value) in spec
        .environment
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .chain(endpoint.child_env())
    {
        println!("{key}={value}");
    }
    Ok(())
}
