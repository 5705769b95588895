//! HTTP in Lambda's shape: Function URL / API Gateway HTTP API (payload 2.0) requests in,
//! payload-2.0 responses out. Shared by every function that answers HTTP (the producer, an
//! application's command and query services). An application's HTTP function implements
//! [`HttpService`] and runs with [`crate::Herald::run_http`].

use std::collections::HashMap;
use std::future::Future;

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The parts of a payload-2.0 request herald's handlers read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRequest {
    /// Upper-case method.
    pub method: String,
    /// The path, without the stage or URL prefix (`/accounts/a-1`).
    pub path: String,
    /// Query parameters (the last value wins when a name repeats).
    pub query: HashMap<String, String>,
    /// Headers, names lower-cased.
    pub headers: HashMap<String, String>,
    /// The body, base64-decoded when the request says it is encoded.
    pub body: Vec<u8>,
    /// The caller as AWS authenticated it: the IAM principal's ARN of a SigV4-signed request
    /// (`requestContext.authorizer.iam.userArn`, Function URLs with `AWS_IAM` and IAM-authorized
    /// HTTP APIs) or a JWT authorizer's `sub`; `None` for an unauthenticated request.
    pub principal: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wire {
    #[serde(default)]
    raw_path: Option<String>,
    #[serde(default)]
    raw_query_string: Option<String>,
    #[serde(default)]
    headers: HashMap<String, String>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    is_base64_encoded: bool,
    request_context: WireContext,
}

#[derive(Deserialize)]
struct WireContext {
    http: WireHttp,
    #[serde(default)]
    authorizer: Option<Value>,
}

impl WireContext {
    fn principal(&self) -> Option<String> {
        let authorizer = self.authorizer.as_ref()?;
        authorizer
            .pointer("/iam/userArn")
            .or_else(|| authorizer.pointer("/jwt/claims/sub"))
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty())
            .map(str::to_string)
    }
}

#[derive(Deserialize)]
struct WireHttp {
    method: String,
    #[serde(default)]
    path: Option<String>,
}

/// Whether a Lambda payload is an HTTP request from a Function URL or API Gateway (payload 2.0)
/// rather than a direct invoke.
pub fn is_http_request(payload: &Value) -> bool {
    payload
        .get("requestContext")
        .and_then(|c| c.get("http"))
        .is_some()
        && (payload.get("rawPath").is_some() || payload.get("routeKey").is_some())
}

impl HttpRequest {
    /// Read a payload-2.0 request; the error says what is wrong with it.
    pub fn from_payload(payload: Value) -> Result<HttpRequest, String> {
        let wire: Wire = serde_json::from_value(payload).map_err(|e| e.to_string())?;
        let body = wire.body.unwrap_or_default();
        let body = if wire.is_base64_encoded {
            base64::engine::general_purpose::STANDARD
                .decode(body.trim())
                .map_err(|e| format!("the body is not valid base64: {e}"))?
        } else {
            body.into_bytes()
        };
        let query = wire
            .raw_query_string
            .unwrap_or_default()
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                (percent_decode(name, true), percent_decode(value, true))
            })
            .collect();
        let principal = wire.request_context.principal();
        Ok(HttpRequest {
            principal,
            method: wire.request_context.http.method.to_ascii_uppercase(),
            path: wire
                .raw_path
                .or(wire.request_context.http.path)
                .unwrap_or_else(|| "/".into()),
            query,
            headers: wire
                .headers
                .into_iter()
                .map(|(name, value)| (name.to_ascii_lowercase(), value))
                .collect(),
            body,
        })
    }

    /// A header by (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// The path's segments, empty ones dropped (`/accounts/a-1/` → `["accounts", "a-1"]`), each
    /// percent-decoded.
    pub fn segments(&self) -> Vec<String> {
        self.path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| percent_decode(s, false))
            .collect()
    }
}

/// `%XX` escapes decoded; `+` is a space in a query string (`plus_is_space`), itself in a path.
fn percent_decode(text: &str, plus_is_space: bool) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(high), Some(low)) => {
                    out.push(high << 4 | low);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' if plus_is_space => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An HTTP response in the Function URL / API Gateway payload 2.0 shape.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpResponse {
    /// The status code.
    pub status_code: u16,
    /// Response headers.
    pub headers: HashMap<String, String>,
    /// A JSON body.
    pub body: String,
    /// Always false: herald answers JSON text.
    pub is_base64_encoded: bool,
}

impl HttpResponse {
    /// A JSON response.
    pub fn json(status_code: u16, body: &impl Serialize) -> Self {
        HttpResponse {
            status_code,
            headers: HashMap::from([("content-type".to_string(), "application/json".to_string())]),
            body: serde_json::to_string(body).expect("responses serialize"),
            is_base64_encoded: false,
        }
    }

    /// `{"error": {"field": ..., "message": ...}}`: what was wrong, and where.
    pub fn error(status_code: u16, field: &str, message: impl std::fmt::Display) -> Self {
        HttpResponse::json(
            status_code,
            &json!({ "error": { "field": field, "message": message.to_string() } }),
        )
    }

    /// The response as the Lambda result value.
    pub fn into_value(self) -> Value {
        serde_json::to_value(self).expect("responses serialize")
    }
}

/// A function that answers HTTP requests (commands, queries).
pub trait HttpService: Send + Sync {
    /// The function's name in logs and metrics.
    fn name(&self) -> &'static str;

    /// Answer one request. Errors are responses too: say which field was wrong
    /// ([`HttpResponse::error`]).
    fn handle(&self, request: HttpRequest) -> impl Future<Output = HttpResponse> + Send;
}

/// Serve one Lambda payload (an HTTP request, or a direct invoke shaped like one) with `service`;
/// a payload that is not a request is a 400 naming `request`.
pub async fn serve_payload<S: HttpService>(service: &S, payload: Value) -> Value {
    match HttpRequest::from_payload(payload) {
        Ok(request) => service.handle(request).await.into_value(),
        Err(err) => HttpResponse::error(400, "request", err).into_value(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, path: &str, query: &str, body: &str) -> Value {
        json!({
            "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": query,
            "headers": {"X-Correlation-Id": "c-1"}, "body": body, "isBase64Encoded": false,
            "requestContext": {"http": {"method": method, "path": path}},
        })
    }

    #[test]
    fn reads_method_path_query_headers_and_body() {
        let r = HttpRequest::from_payload(request(
            "get",
            "/customers/c%201/accounts/",
            "limit=5&next=a%2Bb&flag",
            "{}",
        ))
        .unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(r.segments(), ["customers", "c 1", "accounts"]);
        assert_eq!(r.query["limit"], "5");
        assert_eq!(r.query["next"], "a+b");
        assert_eq!(r.query["flag"], "");
        assert_eq!(r.header("x-correlation-id"), Some("c-1"));
        assert_eq!(r.body, b"{}");
        assert!(is_http_request(&request("GET", "/", "", "")));
        assert!(!is_http_request(&json!({"type": "user_signed_up"})));
    }

    #[test]
    fn decodes_base64_bodies_and_rejects_bad_ones() {
        let mut payload = request("POST", "/", "", "eyJhIjoxfQ==");
        payload["isBase64Encoded"] = json!(true);
        assert_eq!(
            HttpRequest::from_payload(payload).unwrap().body,
            b"{\"a\":1}"
        );
        let mut bad = request("POST", "/", "", "***");
        bad["isBase64Encoded"] = json!(true);
        assert!(HttpRequest::from_payload(bad)
            .unwrap_err()
            .contains("base64"));
    }

    #[test]
    fn a_stray_percent_is_kept() {
        assert_eq!(percent_decode("100%", false), "100%");
        assert_eq!(percent_decode("%zz", false), "%zz");
        assert_eq!(percent_decode("a%20b", false), "a b");
        assert_eq!(percent_decode("a+b", false), "a+b");
        assert_eq!(percent_decode("a+b", true), "a b");
    }
}
