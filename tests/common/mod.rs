//! The test harness: one way to pick the AWS endpoint for every AWS-touching test.
//!
//! 1. `AWS_ENDPOINT_URL` when set, with any `AWS_ENDPOINT_URL_<SERVICE>` beside it (scripts/test
//!    starts moto and sets them; point `AWS_ENDPOINT_URL` at LocalStack or anything
//!    compatible to run the same tests there);
//! 2. else, when a Docker engine answers and the `localstack` feature is on, a LocalStack container
//!    through testcontainers (pinned image `localstack/localstack:4.5`, `LOCALSTACK_AUTH_TOKEN`
//!    passed through);
//! 3. else moto from the project's virtualenv (`scripts/bootstrap` installs it).
//!
//! Every test works in its own uniquely named stack or resources, so tests share one endpoint.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

use aws_config::SdkConfig;
use herald_local::{binaries, Endpoint, LocalPipeline, UpOptions};
use tokio::sync::OnceCell;

static ENDPOINT: OnceCell<Endpoint> = OnceCell::const_new();
static BINARIES: OnceLock<PathBuf> = OnceLock::new();

/// The project root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The endpoint every test in this binary uses.
pub async fn endpoint() -> &'static Endpoint {
    ENDPOINT
        .get_or_init(|| async {
            if let Some(endpoint) = Endpoint::from_env() {
                return endpoint;
            }
            if docker_answers() {
                #[cfg(feature = "localstack")]
                return localstack().await;
                #[cfg(not(feature = "localstack"))]
                eprintln!("a Docker engine answers; build with `--features localstack` to test against LocalStack. Using moto.");
            }
            // The emulator HERALD_EMULATOR names (moto, or LocalStack beside moto).
            let emulator = herald_local::Emulator::from_env().unwrap();
            Endpoint::start(emulator, &root(), None)
                .await
                .expect("start the emulator (run scripts/bootstrap first)")
        })
        .await
}

fn docker_answers() -> bool {
    std::process::Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[cfg(feature = "localstack")]
async fn localstack() -> Endpoint {
    use testcontainers_modules::localstack::LocalStack;
    use testcontainers_modules::testcontainers::runners::AsyncRunner;
    use testcontainers_modules::testcontainers::{ContainerAsync, ImageExt};
    static CONTAINER: OnceCell<ContainerAsync<LocalStack>> = OnceCell::const_new();
    let container = CONTAINER
        .get_or_init(|| async {
            let mut image = LocalStack::default().with_tag("4.5");
            if let Ok(token) = std::env::var("LOCALSTACK_AUTH_TOKEN") {
                image = image.with_env_var("LOCALSTACK_AUTH_TOKEN", token);
            }
            image.start().await.expect("start LocalStack")
        })
        .await;
    let host = container.get_host().await.expect("LocalStack host");
    let port = container
        .get_host_port_ipv4(4566)
        .await
        .expect("LocalStack port");
    Endpoint::external(format!("http://{host}:{port}"))
}

/// SDK configuration for the endpoint (per test: SDK clients belong to the runtime that made them).
pub async fn aws() -> SdkConfig {
    endpoint().await.sdk_config().await
}

/// A name no other test run uses.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// The function binaries, built once per test binary (a no-op when `cargo build` already ran).
pub fn bin_dir() -> PathBuf {
    BINARIES
        .get_or_init(|| {
            let names: Vec<String> = [
                "shop-functions",
                "probe",
                "herald",
                "signups-producer",
                "signups-router",
                "signups-welcome",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            binaries::build(&root(), &names, false, true).expect("build the function binaries")
        })
        .clone()
}

/// Where the tests' runners keep their checkpoints (one file per stack; stacks are unique).
pub fn state_dir() -> PathBuf {
    std::env::temp_dir().join("herald-test-state")
}

/// Provision `template` (default: the project's) as a fresh stack and start the local pipeline.
pub async fn pipeline(prefix: &str, tweak: impl FnOnce(&mut UpOptions)) -> LocalPipeline {
    let mut options = UpOptions::new(root());
    options.stack.name = unique(prefix);
    options.build = false;
    options.runner.bin_dir = bin_dir();
    options.runner.state_dir = Some(state_dir());
    tweak(&mut options);
    // The tests' traffic is synthetic: one customer places dozens of orders in seconds, which the
    // fraud detector would rightly compensate whenever a window closes mid-test. Only
    // tests/fraud.rs keeps the detector's limits within reach.
    if options.template == root().join("template.yaml") {
        options
            .stack
            .parameters
            .entry("FraudMaxOrders".into())
            .or_insert_with(|| "1000000".into());
        options
            .stack
            .parameters
            .entry("FraudMaxValue".into())
            .or_insert_with(|| "1000000000000".into());
    }
    if let Some(port) = options.runner.url_port {
        options.stack.function_url_base = format!("http://127.0.0.1:{port}");
    }
    herald_local::up(endpoint().await, options)
        .await
        .expect("bring the local stack up")
}

/// A numeric attribute of one item (0 when the item or the attribute is absent).
pub async fn number_attribute(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    key: (&str, &str),
    attribute: &str,
) -> i64 {
    client
        .get_item()
        .table_name(table)
        .key(
            key.0,
            aws_sdk_dynamodb::types::AttributeValue::S(key.1.to_string()),
        )
        .send()
        .await
        .unwrap()
        .item
        .and_then(|i| {
            i.get(attribute)
                .and_then(|v| v.as_n().ok())
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// Wait until `state` holds, polling every 100 ms; panic naming `what` after `timeout` (a
/// generous bound for the slowest machine, never a guess at how long the work takes).
pub async fn wait_until<F, Fut>(what: &str, timeout: std::time::Duration, mut state: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = std::time::Instant::now();
    while !state().await {
        assert!(started.elapsed() < timeout, "waited {timeout:?} for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// A new stream of `shards` shards, once ACTIVE: as on AWS (and LocalStack), a stream is
/// CREATING for a while and refuses records until then (moto makes it ACTIVE at once). An
/// "already exists" is the SDK's retry of this very call (the name is the test's own).
pub async fn create_stream(kinesis: &aws_sdk_kinesis::Client, name: &str, shards: i32) {
    use aws_sdk_kinesis::types::StreamStatus;
    if let Err(err) = kinesis
        .create_stream()
        .stream_name(name)
        .shard_count(shards)
        .send()
        .await
    {
        assert!(
            err.as_service_error()
                .is_some_and(|e| e.is_resource_in_use_exception()),
            "creating stream {name}: {err:?}"
        );
    }
    wait_until(
        &format!("stream {name} to be ACTIVE"),
        std::time::Duration::from_secs(60),
        || async {
            kinesis
                .describe_stream_summary()
                .stream_name(name)
                .send()
                .await
                .ok()
                .and_then(|s| {
                    s.stream_description_summary()
                        .map(|d| d.stream_status().clone())
                })
                == Some(StreamStatus::Active)
        },
    )
    .await;
}

/// A test that cannot run on this machine (a tool is missing): never a silent pass. Under
/// scripts/test (which sets `HERALD_SKIP_LOG`) the test is recorded and listed as skipped in the
/// run's summary, then returns; anywhere else it fails with `reason`, since a plain `cargo test`
/// has no way to report a skip.
pub fn skip(test: &str, reason: &str) {
    let Some(log) = std::env::var_os("HERALD_SKIP_LOG") else {
        panic!("{test} cannot run here: {reason} (scripts/test reports this as skipped)");
    };
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("open HERALD_SKIP_LOG");
    writeln!(file, "{test}: {reason}").expect("write HERALD_SKIP_LOG");
    eprintln!("SKIPPED {test}: {reason}");
}
