//! `herald env`: a function's environment in a running local stack, as KEY=VALUE lines (for
//! `cargo lambda watch --env-file`); `herald env --explain`: the variables each kind of function
//! reads, from herald's own contract ([`herald::aws::environment`]).

use anyhow::Result;
use serde_json::{json, Value};

use crate::common::load_stack;
use crate::output::{print_json, Output};

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

/// Print herald's environment contract: per role, the variables it reads.
pub fn explain(output: Output) {
    use herald::aws::environment::{Role, HERALD_METRICS_NAMESPACE};
    if output.is_json() {
        let roles: Vec<Value> = Role::ALL
            .iter()
            .map(|role| {
                let variables: Vec<Value> = role
                    .requirements()
                    .iter()
                    .map(|r| {
                        json!({
                            "name": r.variable.name,
                            "required": r.required,
                            "default": r.variable.default,
                            "meaning": r.variable.meaning,
                        })
                    })
                    .collect();
                json!({"role": role.name(), "variables": variables})
            })
            .collect();
        let every = &HERALD_METRICS_NAMESPACE;
        print_json(&json!({
            "roles": roles,
            "everyFunction": [{"name": every.name, "required": false, "default": every.default, "meaning": every.meaning}],
        }));
        return;
    }
    for role in Role::ALL {
        println!("{}", role.name());
        let requirements = role.requirements();
        if requirements.is_empty() {
            println!("  (nothing of herald's: only what Lambda sets)");
        }
        for r in requirements {
            let need = match (r.required, r.variable.default) {
                (true, _) => "required".to_string(),
                (false, Some(default)) => format!("default {default}"),
                (false, None) => "optional".to_string(),
            };
            println!(
                "  {:<24} {:<16} {}",
                r.variable.name, need, r.variable.meaning
            );
        }
    }
    let every = &HERALD_METRICS_NAMESPACE;
    println!(
        "every function\n  {:<24} {:<16} {}",
        every.name,
        format!("default {}", every.default.unwrap_or_default()),
        every.meaning
    );
    println!("\nLambda sets the rest (AWS_REGION, the credentials, AWS_LAMBDA_LOG_LEVEL, ...); locally, herald's runner does, with AWS_ENDPOINT_URL.");
}
