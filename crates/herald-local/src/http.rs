//! HTTP to a local stack's Function URLs (or any plain-HTTP endpoint): one request, the answer
//! read as JSON when it is JSON.

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::Value;

/// POST JSON and read a JSON answer.
pub async fn post_json(url: &str, body: &Value) -> Result<(u16, Value)> {
    post(url, body.to_string().into_bytes()).await
}

/// POST bytes as `application/json` and read the answer (JSON when it is, else a string).
pub async fn post(url: &str, body: Vec<u8>) -> Result<(u16, Value)> {
    request("POST", url, Some(body), &[]).await
}

/// GET and read a JSON answer.
pub async fn get_json(url: &str) -> Result<(u16, Value)> {
    request("GET", url, None, &[]).await
}

/// One HTTP request; the answer as JSON when it is, else as a string.
pub async fn request(
    method: &str,
    url: &str,
    body: Option<Vec<u8>>,
    headers: &[(&str, &str)],
) -> Result<(u16, Value)> {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let mut builder = http::Request::builder().method(method).uri(url);
    if body.is_some() {
        builder = builder.header("content-type", "application/json");
    }
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let request = builder.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
    let response = client
        .request(request)
        .await
        .with_context(|| format!("{method} {url}"))?;
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await?.to_bytes();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Ok((status, value))
}
