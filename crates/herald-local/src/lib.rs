//! Run herald's template locally, with no Docker: an emulator endpoint (moto by default), the
//! template's resources provisioned on it, every function binary running as a real process behind
//! the Lambda Runtime API, and the event source mappings and Firehose delivery streams
//! ([`firehose`]) played with the template's settings.
//!
//! ```text
//! Endpoint ──► provision(template) ──► Stack ──► LocalPipeline::start ──► invoke / Function URLs / mappings
//! ```
//!
//! It knows no application: whatever the template holds runs. [`http`] talks to its Function
//! URLs, [`alarms`] evaluates the template's alarms, [`log_shipping`] writes its functions' lines
//! to CloudWatch Logs as Lambda does, and [`lambda_api`] answers Lambda's Invoke API for them.
//! [`stream`] is the one reader of Kinesis and DynamoDB streams (shards, iterators, pages, the
//! Lambda event of a batch) behind the mappings, the Firehose and herald-ops' replays.
//! Operating a stack — this one or one CloudFormation deployed — is `herald-ops`'s.

pub mod alarms;
pub mod archive;
pub mod binaries;
pub mod endpoint;
pub mod esm;
pub mod faults;
pub mod firehose;
pub mod http;
pub mod lambda_api;
pub mod localstack;
pub mod log_shipping;
pub mod logs;
pub mod monitor;
pub mod moto;
pub mod runner;
pub mod runtime;
pub mod s3;
pub mod schemas;
pub mod seed;
pub mod session;
pub mod stack;
pub mod stream;
pub mod template;
mod venv;

pub use endpoint::{Emulator, Endpoint};
pub use runner::{LocalPipeline, RunnerOptions};
pub use session::{up, UpOptions};
pub use stack::{provision, Stack, StackOptions};
pub use template::Template;

/// Logging for the command-line tools (`herald`, an application's own): warnings and errors by
/// default, `RUST_LOG` for more.
pub fn init_cli_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_target(false)
        .init();
}
