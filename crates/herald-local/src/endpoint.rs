//! Which AWS endpoint to use, and SDK configuration for it.
//!
//! `AWS_ENDPOINT_URL` wins (moto, LocalStack, anything API-compatible). Without it, herald starts
//! moto server from the project's own virtualenv ([`crate::moto`]).

use std::path::Path;

use anyhow::Result;
use aws_config::{Region, SdkConfig};
use aws_sdk_dynamodb::config::Credentials;

use crate::moto::MotoServer;

/// Region used when none is configured.
pub const DEFAULT_REGION: &str = "us-east-1";

/// An endpoint, and the emulator behind it when herald started one (stopped on drop).
#[derive(Debug)]
pub struct Endpoint {
    /// The URL all clients use.
    pub url: String,
    /// The region.
    pub region: String,
    moto: Option<MotoServer>,
}

impl Endpoint {
    /// `AWS_ENDPOINT_URL` if set, else a new moto server from `<root>/.venv` on `port` (a free
    /// one when `None`).
    pub async fn from_env_or_moto(root: &Path, port: Option<u16>) -> Result<Endpoint> {
        match std::env::var("AWS_ENDPOINT_URL")
            .ok()
            .filter(|u| !u.is_empty())
        {
            Some(url) => Ok(Endpoint::external(url)),
            None => Endpoint::moto(root, port).await,
        }
    }

    /// An endpoint someone else runs.
    pub fn external(url: impl Into<String>) -> Endpoint {
        Endpoint {
            url: url.into(),
            region: region(),
            moto: None,
        }
    }

    /// Start moto from `<root>/.venv` on `port` (a free one when `None`).
    pub async fn moto(root: &Path, port: Option<u16>) -> Result<Endpoint> {
        let moto = MotoServer::start(root, port).await?;
        Ok(Endpoint {
            url: moto.url(),
            region: region(),
            moto: Some(moto),
        })
    }

    /// The same endpoint, without owning the emulator (dropping it stops nothing).
    pub fn shared(&self) -> Endpoint {
        Endpoint {
            url: self.url.clone(),
            region: self.region.clone(),
            moto: None,
        }
    }

    /// The same endpoint reached through a proxy at `url` (the [fault proxy](crate::faults)).
    pub fn through(&self, url: &str) -> Endpoint {
        Endpoint {
            url: url.to_string(),
            region: self.region.clone(),
            moto: None,
        }
    }

    /// Whether herald started the emulator itself.
    pub fn is_embedded(&self) -> bool {
        self.moto.is_some()
    }

    /// `http://… (moto, started by herald)` or `http://… (AWS_ENDPOINT_URL)`.
    pub fn describe(&self) -> String {
        let origin = if self.is_embedded() {
            "moto, started by herald"
        } else {
            "AWS_ENDPOINT_URL"
        };
        format!("{} ({origin})", self.url)
    }

    /// SDK configuration for this endpoint (dummy credentials unless real ones are set).
    pub async fn sdk_config(&self) -> SdkConfig {
        let mut loader = herald::aws::config_loader()
            .endpoint_url(&self.url)
            .region(Region::new(self.region.clone()));
        if std::env::var("AWS_ACCESS_KEY_ID").is_err() {
            loader = loader.credentials_provider(Credentials::new(
                "test",
                "test",
                None,
                None,
                "herald-local",
            ));
        }
        loader.load().await
    }

    /// Environment variables that point a child process (a function) at this endpoint.
    pub fn child_env(&self) -> Vec<(String, String)> {
        let key = std::env::var("AWS_ACCESS_KEY_ID").unwrap_or_else(|_| "test".into());
        let secret = std::env::var("AWS_SECRET_ACCESS_KEY").unwrap_or_else(|_| "test".into());
        let mut env = vec![
            ("AWS_ENDPOINT_URL".to_string(), self.url.clone()),
            ("AWS_REGION".to_string(), self.region.clone()),
            ("AWS_DEFAULT_REGION".to_string(), self.region.clone()),
            ("AWS_ACCESS_KEY_ID".to_string(), key),
            ("AWS_SECRET_ACCESS_KEY".to_string(), secret),
        ];
        if let Ok(token) = std::env::var("AWS_SESSION_TOKEN") {
            env.push(("AWS_SESSION_TOKEN".to_string(), token));
        }
        env
    }
}

fn region() -> String {
    std::env::var("AWS_REGION")
        .or_else(|_| std::env::var("AWS_DEFAULT_REGION"))
        .unwrap_or_else(|_| DEFAULT_REGION.to_string())
}
