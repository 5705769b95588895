//! Finding a running stack: the state file `herald local up` writes, the stack it records, and an
//! SDK configuration for the endpoint it lives on.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use aws_config::SdkConfig;

use crate::stack::Stack;

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

/// The running stack `name` under `root` and an SDK configuration for the endpoint it lives on.
pub async fn connect(root: &Path, name: &str) -> Result<(Stack, SdkConfig)> {
    let stack = running_stack(root, name)?;
    let aws = stack.aws_endpoint().sdk_config().await;
    Ok((stack, aws))
}
