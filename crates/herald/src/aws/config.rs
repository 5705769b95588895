//! The SDK configuration every function and tool builds its clients from, and the clients.

use std::time::Duration;

use aws_config::BehaviorVersion;

use super::environment::{env, MissingEnv};
use super::request_counter::request_counter;

/// The AWS configuration a function's clients are built from ([`crate::Herald::aws`]).
pub use aws_config::SdkConfig;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

/// Load the SDK configuration from the environment (`AWS_REGION`, credentials,
/// `AWS_ENDPOINT_URL` for an emulator) with one TLS stack: rustls on ring. The SDK's default
/// features would build a second stack and aws-lc; see the build notes in docs/testing.md.
///
/// This is the SDK's full provider chain (profiles, SSO, web identity, IMDS, ...), for tools.
/// Functions use [`function_config`].
pub async fn sdk_config() -> SdkConfig {
    config_loader().load().await
}

/// The loader behind [`sdk_config`], for callers that override parts (region, endpoint, credentials).
pub fn config_loader() -> aws_config::ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client())
        .timeout_config(timeouts())
}

/// The SDK configuration of a Lambda function, from the variables Lambda sets: `AWS_REGION`
/// and the role's credentials in `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` /
/// `AWS_SESSION_TOKEN` (plus, for an emulator, `AWS_ENDPOINT_URL` and the per-service
/// `AWS_ENDPOINT_URL_<SERVICE>` that win over it, as the SDK's own loader reads them; see
/// [`ServiceEndpoints`]).
///
/// Not the SDK's default chain: a function never needs profiles, SSO, web identity or IMDS, and
/// leaving them out keeps ~0.5 MB of code out of every binary and the profile files off the
/// cold start path (BENCHMARKS.md, table 6). Elsewhere, build an `SdkConfig` of your own and
/// pass it to [`crate::Herald::with_config`].
pub fn function_config() -> Result<SdkConfig, MissingEnv> {
    use aws_config::environment::EnvironmentVariableCredentialsProvider;
    use aws_config::retry::RetryConfig;
    use aws_credential_types::provider::SharedCredentialsProvider;
    use aws_smithy_async::rt::sleep::TokioSleep;
    use aws_smithy_async::time::SystemTimeSource;

    let region = env("AWS_REGION").or_else(|_| env("AWS_DEFAULT_REGION"))?;
    // Checked here so a missing role is an init error naming the variable, not a failed request.
    env("AWS_ACCESS_KEY_ID")?;
    let mut config = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(aws_config::Region::new(region))
        .credentials_provider(SharedCredentialsProvider::new(
            EnvironmentVariableCredentialsProvider::new(),
        ))
        .http_client(http_client())
        .timeout_config(timeouts())
        .retry_config(RetryConfig::standard())
        .sleep_impl(TokioSleep::new())
        .time_source(SystemTimeSource::new());
    if let Ok(url) = env("AWS_ENDPOINT_URL") {
        config = config.endpoint_url(url);
    }
    Ok(config.service_config(ServiceEndpoints::from_env()).build())
}

/// Endpoints per service, by the SDK's variable names (`AWS_ENDPOINT_URL_DYNAMODB`,
/// `AWS_ENDPOINT_URL_DYNAMODB_STREAMS`, `AWS_ENDPOINT_URL_SQS`, ...: `AWS_ENDPOINT_URL_` and the
/// service id in capitals, spaces as underscores). A client of a service named here goes to its
/// URL; the others to the SDK configuration's `endpoint_url` (or AWS). Locally, this lets each
/// emulated service run in a process of its own.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceEndpoints(std::collections::BTreeMap<String, String>);

impl ServiceEndpoints {
    /// The `AWS_ENDPOINT_URL_<SERVICE>` variables set in this process's environment.
    pub fn from_env() -> ServiceEndpoints {
        ServiceEndpoints(
            std::env::vars()
                .filter(|(name, value)| {
                    name.starts_with(ENDPOINT_VARIABLE_PREFIX) && !value.is_empty()
                })
                .collect(),
        )
    }

    /// `AWS_ENDPOINT_URL_<SERVICE>` for a service id (`DynamoDB Streams` →
    /// `AWS_ENDPOINT_URL_DYNAMODB_STREAMS`).
    pub fn variable(service_id: &str) -> String {
        format!(
            "{ENDPOINT_VARIABLE_PREFIX}{}",
            service_id.to_uppercase().replace([' ', '-'], "_")
        )
    }

    /// Send the service's clients (its variable, as [`ServiceEndpoints::variable`] names it) to
    /// `url`.
    pub fn insert(&mut self, variable: impl Into<String>, url: impl Into<String>) {
        self.0.insert(variable.into(), url.into());
    }

    /// The URL for a service's variable, if it has one of its own.
    pub fn get(&self, variable: &str) -> Option<&str> {
        self.0.get(variable).map(String::as_str)
    }

    /// (variable, URL) pairs, to pass on to a child process's environment.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Whether no service has an endpoint of its own.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

const ENDPOINT_VARIABLE_PREFIX: &str = "AWS_ENDPOINT_URL_";

impl aws_types::service_config::LoadServiceConfig for ServiceEndpoints {
    fn load_config(&self, key: aws_types::service_config::ServiceConfigKey<'_>) -> Option<String> {
        // The SDK asks for each setting by its variable's stem; endpoints are all this knows.
        (key.env() == "AWS_ENDPOINT_URL")
            .then(|| self.get(&Self::variable(key.service_id())))
            .flatten()
            .map(str::to_string)
    }
}

fn http_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// The SDK's timeouts, well inside the function's time budget: connecting 1 s, one attempt
/// [`ATTEMPT_TIMEOUT`], so a stuck connection is abandoned and retried with time to spare. The
/// whole operation is bounded by the invocation's remaining time instead: herald's retry loops
/// run every call under [`crate::aws::Deadline::run`].
pub fn timeouts() -> aws_config::timeout::TimeoutConfig {
    aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(1))
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .build()
}

/// The longest one SDK request attempt may take: under a third of the shortest function timeout
/// in template.yaml (10 s), so that an attempt that hangs leaves room for a second one and for
/// the answer. (Lambda does not tell a function its timeout; each invocation's deadline does, and
/// [`crate::aws::Deadline`] bounds every call by it.)
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);

/// A DynamoDB client whose requests are counted.
pub fn dynamodb(aws: &SdkConfig) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(aws)
            .interceptor(request_counter().clone())
            .build(),
    )
}

/// A Kinesis client whose requests are counted.
pub fn kinesis(aws: &SdkConfig) -> aws_sdk_kinesis::Client {
    aws_sdk_kinesis::Client::from_conf(
        aws_sdk_kinesis::config::Builder::from(aws)
            .interceptor(request_counter().clone())
            .build(),
    )
}

/// An SNS client whose requests are counted.
pub fn sns(aws: &SdkConfig) -> aws_sdk_sns::Client {
    aws_sdk_sns::Client::from_conf(
        aws_sdk_sns::config::Builder::from(aws)
            .interceptor(request_counter().clone())
            .build(),
    )
}

/// An SQS client whose requests are counted.
pub fn sqs(aws: &SdkConfig) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::config::Builder::from(aws)
            .interceptor(request_counter().clone())
            .build(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_with_an_endpoint_of_its_own_goes_there_and_the_others_to_the_shared_one() {
        let mut endpoints = ServiceEndpoints::default();
        endpoints.insert(
            ServiceEndpoints::variable("DynamoDB Streams"),
            "http://127.0.0.1:2",
        );
        endpoints.insert(ServiceEndpoints::variable("SQS"), "http://127.0.0.1:3");
        assert_eq!(
            ServiceEndpoints::variable("DynamoDB Streams"),
            "AWS_ENDPOINT_URL_DYNAMODB_STREAMS"
        );
        use aws_types::service_config::{LoadServiceConfig, ServiceConfigKey};
        // What an SDK client asks when it is built from an SdkConfig (its service id, the
        // variable's stem, the profile key).
        let ask = |service| {
            endpoints.load_config(
                ServiceConfigKey::builder()
                    .service_id(service)
                    .env("AWS_ENDPOINT_URL")
                    .profile("endpoint_url")
                    .build()
                    .expect("every field is set"),
            )
        };
        assert_eq!(ask("SQS").as_deref(), Some("http://127.0.0.1:3"));
        assert_eq!(
            ask("DynamoDB Streams").as_deref(),
            Some("http://127.0.0.1:2")
        );
        assert_eq!(ask("Kinesis"), None);
    }
}
