//! Helpers the `herald` commands share: reading an input file (or stdin), finding a running
//! stack, options for bringing one up, and progress bars.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use herald_local::{binaries, Stack, StackOptions, UpOptions};
use serde_json::Value;

use crate::Common;

/// JSON from a file, or from stdin when `source` is `-`.
pub fn read_input(source: &str) -> Result<Value> {
    let text = if source == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        text
    } else {
        std::fs::read_to_string(source).with_context(|| format!("reading {source}"))?
    };
    serde_json::from_str(&text).with_context(|| format!("{source} is not JSON"))
}

/// The project herald runs in: the nearest directory up from here with `template.yaml` and
/// `Cargo.toml`, or an error that says so (never the directory herald was built in).
pub fn project() -> Result<PathBuf> {
    binaries::find_project_root().ok_or_else(|| {
        let here = std::env::current_dir()
            .map(|d| d.display().to_string())
            .unwrap_or_else(|_| "the current directory".into());
        anyhow!(
            "no herald project here: neither {here} nor any directory above it holds both \
             template.yaml and Cargo.toml; run herald inside your project"
        )
    })
}

/// The stack `herald local up` started under the name `name`.
pub fn load_stack(name: &str) -> Result<Stack> {
    herald_ops::running_stack(&project()?, name)
}

/// The stack `name` — one `herald local up` started in this project, else the CloudFormation
/// stack of that name (no project needed) — and an SDK configuration for where it lives.
pub async fn stack_and_aws(name: &str) -> Result<(Stack, aws_config::SdkConfig)> {
    herald_ops::connect(binaries::find_project_root().as_deref(), name).await
}

/// How to bring the template up: the common flags, and the Function URL server's port (9000
/// when none).
pub fn up_options(root: &Path, common: &Common, url_port: Option<u16>) -> UpOptions {
    let mut options = UpOptions::new(root.to_path_buf());
    options.template = root.join(&common.template);
    options.release = common.release;
    options.stack = StackOptions {
        name: common.stack.clone(),
        function_url_base: format!("http://127.0.0.1:{}", url_port.unwrap_or(9000)),
        ..StackOptions::default()
    };
    options.runner.url_port = url_port;
    options
}

/// A progress bar: `message [=====>   ] pos/len (elapsed)`.
pub fn progress_bar(message: &'static str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({elapsed})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(message);
    bar
}
