//! Which AWS endpoint to use, and SDK configuration for it.
//!
//! `AWS_ENDPOINT_URL` wins (moto, LocalStack, anything API-compatible), with the SDK's
//! per-service `AWS_ENDPOINT_URL_<SERVICE>` variables over it when set. Without it, herald starts
//! the emulator `HERALD_EMULATOR` names ([`Emulator`]): moto by default ([`crate::moto`]: one
//! process per group of services that work together, so that the emulator uses more than one
//! core), or LocalStack beside moto ([`crate::localstack`]).

use std::path::Path;

use anyhow::Result;
use aws_config::{Region, SdkConfig};
use aws_sdk_dynamodb::config::Credentials;
use herald::aws::ServiceEndpoints;

use crate::localstack::LocalStack;
use crate::moto::MotoCluster;

/// Which emulator herald starts when no endpoint is set: `HERALD_EMULATOR`, `moto` by default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Emulator {
    /// moto for every service.
    #[default]
    Moto,
    /// LocalStack for [`crate::localstack::SERVICES`] (Kinesis, SNS, SQS, S3, Firehose,
    /// CloudFormation), moto for the rest (DynamoDB and its streams, CloudWatch, Logs, ...).
    LocalStack,
}

impl Emulator {
    /// `HERALD_EMULATOR` (`moto` or `localstack`; unset or empty is `moto`).
    pub fn from_env() -> Result<Emulator> {
        match std::env::var("HERALD_EMULATOR")
            .unwrap_or_default()
            .as_str()
        {
            "" => Ok(Emulator::Moto),
            name => name
                .parse()
                .map_err(|e| anyhow::anyhow!("HERALD_EMULATOR: {e}")),
        }
    }
}

impl std::str::FromStr for Emulator {
    type Err = String;

    /// `moto` or `localstack`.
    fn from_str(name: &str) -> std::result::Result<Emulator, String> {
        match name {
            "moto" => Ok(Emulator::Moto),
            "localstack" => Ok(Emulator::LocalStack),
            other => Err(format!(
                "{other:?} is not an emulator herald starts (moto, localstack)"
            )),
        }
    }
}

/// The emulator processes herald started; stopped on drop.
#[derive(Debug)]
struct Started {
    /// Held for its drop, which stops the processes.
    _moto: MotoCluster,
    localstack: Option<LocalStack>,
}

/// Region used when none is configured.
pub const DEFAULT_REGION: &str = "us-east-1";

/// An endpoint, and the emulator behind it when herald started one (stopped on drop).
#[derive(Debug)]
pub struct Endpoint {
    /// The URL clients use, unless their service has one of its own ([`Endpoint::services`]).
    pub url: String,
    /// The region.
    pub region: String,
    services: ServiceEndpoints,
    started: Option<Started>,
}

impl Endpoint {
    /// `AWS_ENDPOINT_URL` (and any `AWS_ENDPOINT_URL_<SERVICE>`) if set, else the emulator
    /// `HERALD_EMULATOR` names, started now ([`Endpoint::start`]).
    pub async fn from_env_or_start(root: &Path, port: Option<u16>) -> Result<Endpoint> {
        match Endpoint::from_env() {
            Some(endpoint) => Ok(endpoint),
            None => Endpoint::start(Emulator::from_env()?, root, port).await,
        }
    }

    /// Start `emulator` for the project at `root`, moto's shared process on `port` (a free one
    /// when `None`).
    pub async fn start(emulator: Emulator, root: &Path, port: Option<u16>) -> Result<Endpoint> {
        match emulator {
            Emulator::Moto => Endpoint::moto(root, port).await,
            Emulator::LocalStack => Endpoint::localstack(root, port).await,
        }
    }

    /// `AWS_ENDPOINT_URL`, with the `AWS_ENDPOINT_URL_<SERVICE>` variables set beside it; none
    /// when it is not set.
    pub fn from_env() -> Option<Endpoint> {
        let url = std::env::var("AWS_ENDPOINT_URL")
            .ok()
            .filter(|u| !u.is_empty())?;
        Some(Endpoint::external(url).with_services(ServiceEndpoints::from_env()))
    }

    /// An endpoint someone else runs: every service at `url`.
    pub fn external(url: impl Into<String>) -> Endpoint {
        Endpoint {
            url: url.into(),
            region: region(),
            services: ServiceEndpoints::default(),
            started: None,
        }
    }

    /// The same endpoint, with these services at URLs of their own.
    pub fn with_services(mut self, services: ServiceEndpoints) -> Endpoint {
        self.services = services;
        self
    }

    /// Start moto (the project's `.venv`, else herald's own: [`crate::moto::Installation`]),
    /// its shared process on `port` (a free one when `None`).
    pub async fn moto(root: &Path, port: Option<u16>) -> Result<Endpoint> {
        let moto = MotoCluster::start(root, port, crate::moto::SERVICE_GROUPS).await?;
        Ok(Endpoint {
            url: moto.url(),
            region: region(),
            services: moto.services(),
            started: Some(Started {
                _moto: moto,
                localstack: None,
            }),
        })
    }

    /// Start LocalStack for [`crate::localstack::SERVICES`] and moto for the rest (installed as
    /// [`crate::localstack::Installation`] and [`crate::moto::Installation`] say), moto's shared
    /// process on `port` (a free one when `None`). Both answer for one account: the default
    /// access key id is [`crate::localstack::ACCOUNT_KEY_ID`].
    pub async fn localstack(root: &Path, port: Option<u16>) -> Result<Endpoint> {
        // Installed first (a pip install the first time), so moto is not kept waiting to start.
        let installation = {
            let root = root.to_path_buf();
            tokio::task::spawn_blocking(move || {
                crate::localstack::Installation::find_or_install(&root)
            })
            .await??
        };
        // moto's groups for DynamoDB and its streams only: LocalStack serves the others.
        let groups = &crate::moto::SERVICE_GROUPS[..1];
        let (moto, localstack) = futures::future::try_join(
            MotoCluster::start(root, port, groups),
            LocalStack::start(&installation, root),
        )
        .await?;
        let mut services = moto.services();
        for (variable, url) in localstack.services().iter() {
            services.insert(variable.to_string(), url.to_string());
        }
        Ok(Endpoint {
            url: moto.url(),
            region: region(),
            services,
            started: Some(Started {
                _moto: moto,
                localstack: Some(localstack),
            }),
        })
    }

    /// The same endpoint, without owning the emulator (dropping it stops nothing).
    pub fn shared(&self) -> Endpoint {
        Endpoint {
            url: self.url.clone(),
            region: self.region.clone(),
            services: self.services.clone(),
            started: None,
        }
    }

    /// The same endpoint reached through a proxy at `url` (the [fault proxy](crate::faults)):
    /// every service goes to the proxy, which forwards each to where it belongs.
    pub fn through(&self, url: &str) -> Endpoint {
        Endpoint::external(url)
    }

    /// The services with a URL of their own.
    pub fn services(&self) -> &ServiceEndpoints {
        &self.services
    }

    /// The URL for a service's `AWS_ENDPOINT_URL_<SERVICE>` variable: its own, else the shared one.
    pub fn url_for(&self, variable: &str) -> &str {
        self.services.get(variable).unwrap_or(&self.url)
    }

    /// Whether herald started the emulator itself.
    pub fn is_embedded(&self) -> bool {
        self.started.is_some()
    }

    /// `http://… (moto, started by herald)` or `http://… (AWS_ENDPOINT_URL)`, and the services
    /// elsewhere.
    pub fn describe(&self) -> String {
        let origin = match &self.started {
            Some(Started {
                localstack: Some(_),
                ..
            }) => "moto, started by herald; LocalStack beside it",
            Some(_) => "moto, started by herald",
            None => "AWS_ENDPOINT_URL",
        };
        let mut text = format!("{} ({origin})", self.url);
        for (variable, url) in self.services.iter() {
            let service = variable
                .trim_start_matches("AWS_ENDPOINT_URL_")
                .to_lowercase();
            text.push_str(&format!(", {service} at {url}"));
        }
        text
    }

    /// What another shell exports to reach the same emulator: `AWS_ENDPOINT_URL`, each
    /// `AWS_ENDPOINT_URL_<SERVICE>`, and with LocalStack the access key id that names the account
    /// both emulators answer for.
    pub fn exports(&self) -> Vec<(String, String)> {
        let mut exports = vec![("AWS_ENDPOINT_URL".to_string(), self.url.clone())];
        exports.extend(
            self.services
                .iter()
                .map(|(variable, url)| (variable.to_string(), url.to_string())),
        );
        if let Some(Started {
            localstack: Some(_),
            ..
        }) = &self.started
        {
            exports.push(("AWS_ACCESS_KEY_ID".to_string(), access_key_id()));
        }
        exports
    }

    /// SDK configuration for this endpoint (dummy credentials unless real ones are set; their key
    /// id names moto's account, which LocalStack then answers for too).
    pub async fn sdk_config(&self) -> SdkConfig {
        let mut loader = herald::aws::config_loader().region(Region::new(self.region.clone()));
        if std::env::var("AWS_ACCESS_KEY_ID").is_err() {
            loader = loader.credentials_provider(Credentials::new(
                crate::localstack::ACCOUNT_KEY_ID,
                "test",
                None,
                None,
                "herald-local",
            ));
        }
        // Not the loader's `endpoint_url`: a client ignores per-service endpoints when the shared
        // one was set in code.
        loader
            .load()
            .await
            .into_builder()
            .endpoint_url(&self.url)
            .service_config(self.services.clone())
            .build()
    }

    /// Environment variables that point a child process (a function) at this endpoint.
    pub fn child_env(&self) -> Vec<(String, String)> {
        let key = access_key_id();
        let secret = std::env::var("AWS_SECRET_ACCESS_KEY").unwrap_or_else(|_| "test".into());
        let mut env = vec![
            ("AWS_ENDPOINT_URL".to_string(), self.url.clone()),
            ("AWS_REGION".to_string(), self.region.clone()),
            ("AWS_DEFAULT_REGION".to_string(), self.region.clone()),
            ("AWS_ACCESS_KEY_ID".to_string(), key),
            ("AWS_SECRET_ACCESS_KEY".to_string(), secret),
        ];
        env.extend(
            self.services
                .iter()
                .map(|(variable, url)| (variable.to_string(), url.to_string())),
        );
        if let Ok(token) = std::env::var("AWS_SESSION_TOKEN") {
            env.push(("AWS_SESSION_TOKEN".to_string(), token));
        }
        env
    }
}

/// The per-service endpoints an SDK configuration holds (for the services herald's functions
/// use), to hand on to a process started from it.
pub fn services_of(aws: &SdkConfig) -> ServiceEndpoints {
    use aws_types::service_config::ServiceConfigKey;
    let mut services = ServiceEndpoints::default();
    let Some(config) = aws.service_config() else {
        return services;
    };
    let ids = crate::moto::SERVICE_GROUPS.iter().flat_map(|g| g.iter());
    for id in ids.chain(crate::localstack::SERVICES.iter()) {
        let key = ServiceConfigKey::builder()
            .service_id(id)
            .env("AWS_ENDPOINT_URL")
            .profile("endpoint_url")
            .build();
        if let Some(url) = key.ok().and_then(|key| config.load_config(key)) {
            services.insert(ServiceEndpoints::variable(id), url);
        }
    }
    services
}

/// `AWS_ACCESS_KEY_ID`, else the key id that names moto's account on LocalStack too.
fn access_key_id() -> String {
    std::env::var("AWS_ACCESS_KEY_ID").unwrap_or_else(|_| crate::localstack::ACCOUNT_KEY_ID.into())
}

fn region() -> String {
    std::env::var("AWS_REGION")
        .or_else(|_| std::env::var("AWS_DEFAULT_REGION"))
        .unwrap_or_else(|_| DEFAULT_REGION.to_string())
}
