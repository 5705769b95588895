//! Bringing a local stack up in one call: build the binaries, provision the template, seed it,
//! start the pipeline. The CLI's `local up`, `demo` and `invoke` and the tests all go through here.

use std::path::PathBuf;

use anyhow::Result;

use crate::binaries;
use crate::endpoint::Endpoint;
use crate::runner::{LocalPipeline, RunnerOptions};
use crate::stack::{provision, StackOptions};
use crate::template::Template;

/// What to bring up.
#[derive(Clone, Debug)]
pub struct UpOptions {
    /// Project root (template, seed data, target dir).
    pub root: PathBuf,
    /// The template. Default `<root>/template.yaml`.
    pub template: PathBuf,
    /// Stack name and parameters.
    pub stack: StackOptions,
    /// Run `cargo build` for the function binaries first. Default true.
    pub build: bool,
    /// Release binaries. Default false.
    pub release: bool,
    /// Hide cargo's output.
    pub quiet_build: bool,
    /// Seed tables from `<root>/infra/seed`. Default true.
    pub seed: bool,
    /// Runner settings (`bin_dir` is filled in; `state_dir` defaults to `<root>/.herald/state`).
    pub runner: RunnerOptions,
}

impl UpOptions {
    /// Defaults for a project root.
    pub fn new(root: PathBuf) -> Self {
        UpOptions {
            template: root.join("template.yaml"),
            stack: StackOptions::default(),
            build: true,
            release: false,
            quiet_build: false,
            seed: true,
            runner: RunnerOptions {
                state_dir: Some(root.join(".herald/state")),
                ..RunnerOptions::new(binaries::bin_dir(&root, false))
            },
            root,
        }
    }
}

/// Build, provision, seed and start.
pub async fn up(endpoint: &Endpoint, mut options: UpOptions) -> Result<LocalPipeline> {
    let template = Template::load(&options.template)?;
    let aws = endpoint.sdk_config().await;
    let mut stack = provision(&template, &options.stack, &aws, &endpoint.url).await?;
    stack.service_endpoints = endpoint
        .services()
        .iter()
        .map(|(variable, url)| (variable.to_string(), url.to_string()))
        .collect();
    let mut names: Vec<String> = stack.functions.iter().map(|f| f.binary.clone()).collect();
    names.sort();
    names.dedup();
    options.runner.bin_dir = if options.build {
        binaries::build(&options.root, &names, options.release, options.quiet_build)?
    } else {
        binaries::bin_dir(&options.root, options.release)
    };
    if options.seed {
        crate::seed::seed(
            &stack,
            &options.root.join("infra/seed"),
            &aws_sdk_dynamodb::Client::new(&aws),
        )
        .await?;
    }
    LocalPipeline::start(stack, endpoint, options.runner).await
}
