//! Finding a stack by name: one `herald local up` started (the state file it writes), or one
//! CloudFormation created (`sam deploy`), and an SDK configuration for where it lives.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use aws_config::SdkConfig;

use herald_local::stack::Stack;

mod deployed;

pub use deployed::{deployed_template, from_cloudformation};

/// Where `herald local up` records the stack it runs (`<root>/.herald/stack-<name>.json`), for
/// the commands that work on a running stack.
pub fn state_file(root: &Path, stack: &str) -> PathBuf {
    root.join(".herald").join(format!("stack-{stack}.json"))
}

/// The running stack `name` under `root`, as `herald local up` recorded it.
pub fn running_stack(root: &Path, name: &str) -> Result<Stack> {
    Stack::load(&state_file(root, name))
        .with_context(|| format!("no local stack {name}: start one with `herald local up`"))
}

/// The stack `name` and an SDK configuration for the endpoint it lives on: the local stack of
/// that name when `herald local up` started one under `root` (the project, when there is one),
/// else the CloudFormation stack of that name ([`deployed_stack`]).
pub async fn connect(root: Option<&Path>, name: &str) -> Result<(Stack, SdkConfig)> {
    if let Some(root) = root {
        if state_file(root, name).exists() {
            let stack = running_stack(root, name)?;
            let aws = stack.aws_endpoint().sdk_config().await;
            return Ok((stack, aws));
        }
    }
    deployed_stack(name).await.with_context(|| match root {
        Some(_) => format!(
            "no stack {name}: no local one (start one with `herald local up`), and none \
             CloudFormation knows in this account and region"
        ),
        None => format!(
            "no stack {name}: none CloudFormation knows in this account and region, and no \
             herald project here for a local one (a directory holding template.yaml and \
             Cargo.toml, where `herald local up` keeps its stacks)"
        ),
    })
}

/// The CloudFormation stack `name` (`sam deploy --stack-name`): its resources found through
/// CloudFormation, its wiring read from the template it was deployed from (`GetTemplate`), so
/// no project or checkout is needed. AWS as the SDK finds it (credentials, region), or the
/// emulator at `AWS_ENDPOINT_URL`.
pub async fn deployed_stack(name: &str) -> Result<(Stack, SdkConfig)> {
    let (aws, endpoint) = match herald_local::Endpoint::from_env() {
        Some(endpoint) => (endpoint.sdk_config().await, endpoint),
        None => (
            herald::aws::sdk_config().await,
            herald_local::Endpoint::external(String::new()),
        ),
    };
    let mut stack = deployed::from_cloudformation(name, &aws, endpoint.url_for("")).await?;
    for (variable, url) in endpoint.services().iter() {
        stack
            .service_endpoints
            .insert(variable.to_string(), url.to_string());
    }
    Ok((stack, aws))
}
