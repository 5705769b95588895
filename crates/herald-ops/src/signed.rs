//! Requests to a deployed stack's HTTP entry points — a Function URL with `AuthType: AWS_IAM`, or
//! the HTTP API — over TLS and signed with SigV4 using the SDK's credentials (environment,
//! profile, SSO cache, instance role: whatever `aws_config` finds), as AWS requires.

use std::time::SystemTime;

use anyhow::{anyhow, bail, Context, Result};
use aws_config::SdkConfig;
use aws_credential_types::provider::ProvideCredentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::Value;

/// How a request is authorised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Signing {
    /// Not signed: a Function URL with `AuthType: NONE`, or a local runner's URL.
    Unsigned,
    /// SigV4 for `service`: `lambda` for a Function URL, `execute-api` for an API.
    SigV4 {
        /// The signing name.
        service: String,
    },
}

impl Signing {
    /// What a URL's host says it needs: a Function URL (`*.lambda-url.<region>.on.aws`) is
    /// signed for `lambda`, an API (`*.execute-api.<region>.amazonaws.com`) for `execute-api`,
    /// anything else (a local runner's URL) is not signed.
    pub fn for_url(url: &str) -> Signing {
        let host = url
            .split("://")
            .nth(1)
            .unwrap_or(url)
            .split(['/', ':'])
            .next()
            .unwrap_or_default();
        let service = if host.contains(".lambda-url.") {
            "lambda"
        } else if host.contains(".execute-api.") {
            "execute-api"
        } else {
            return Signing::Unsigned;
        };
        Signing::SigV4 {
            service: service.into(),
        }
    }
}

impl std::fmt::Display for Signing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Signing::Unsigned => f.write_str("unsigned"),
            Signing::SigV4 { service } => write!(f, "SigV4 ({service})"),
        }
    }
}

/// POST `body` as JSON to `url` (https or http), signed as `signing` says with `aws`'s
/// credentials and region; the answer's status and body (JSON when it is, else a string).
pub async fn post_json(
    url: &str,
    body: &Value,
    signing: &Signing,
    aws: &SdkConfig,
) -> Result<(u16, Value)> {
    let body = body.to_string().into_bytes();
    let uri: http::Uri = url.parse().with_context(|| format!("{url} is not a URL"))?;
    let host = uri
        .authority()
        .ok_or_else(|| anyhow!("{url} has no host"))?
        .to_string();
    let mut request = http::Request::builder()
        .method("POST")
        .uri(uri)
        .header("host", host)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.clone())))?;
    if let Signing::SigV4 { service } = signing {
        sign_request(&mut request, &body, service, aws).await?;
    }
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(rustls::crypto::ring::default_provider())
        .context("reading the system's TLS roots")?
        .https_or_http()
        .enable_http1()
        .build();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, Full<Bytes>>(connector);
    let response = client
        .request(request)
        .await
        .with_context(|| format!("POST {url}"))?;
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await?.to_bytes();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Ok((status, value))
}

/// Add SigV4's headers (`authorization`, `x-amz-date`, `x-amz-security-token`) for `service`.
async fn sign_request(
    request: &mut http::Request<Full<Bytes>>,
    body: &[u8],
    service: &str,
    aws: &SdkConfig,
) -> Result<()> {
    let Some(provider) = aws.credentials_provider() else {
        bail!("no AWS credentials to sign with (set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)");
    };
    let credentials = provider
        .provide_credentials()
        .await
        .map_err(|err| anyhow!("no AWS credentials to sign with: {err}"))?;
    let region = aws
        .region()
        .ok_or_else(|| anyhow!("no AWS region to sign for (--region, or AWS_REGION)"))?
        .to_string();
    let identity: Identity = credentials.into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&region)
        .name(service)
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()?
        .into();
    let uri = request.uri().to_string();
    let headers: Vec<(&str, &str)> = request
        .headers()
        .iter()
        .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)))
        .collect();
    let signable = SignableRequest::new(
        request.method().as_str(),
        uri,
        headers.into_iter(),
        SignableBody::Bytes(body),
    )?;
    let (instructions, _) = sign(signable, &params)?.into_parts();
    instructions.apply_to_request_http1x(request);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Signing;

    #[test]
    fn the_host_says_what_to_sign_for() {
        let sigv4 = |service: &str| Signing::SigV4 {
            service: service.into(),
        };
        assert_eq!(
            Signing::for_url("https://abc123.lambda-url.eu-west-1.on.aws/"),
            sigv4("lambda")
        );
        assert_eq!(
            Signing::for_url("https://k2j3.execute-api.us-east-1.amazonaws.com/events"),
            sigv4("execute-api")
        );
        assert_eq!(
            Signing::for_url("http://127.0.0.1:9000/ProducerFunction/"),
            Signing::Unsigned
        );
    }
}
