//! Lambda's `Invoke` API, served by the runner for the functions it plays (what `sam local
//! start-lambda` is to SAM): `POST /2015-03-31/functions/{name}/invocations` runs the function
//! (by physical name, ARN or logical id) with the request's payload and answers as Lambda does —
//! 200 with the response, or 200 with `X-Amz-Function-Error: Unhandled` and the error.
//! `GET /2021-10-31/functions/{name}/url` (`GetFunctionUrlConfig`) answers too, with the URL the
//! runner knows for the function; anything else is Lambda's `ResourceNotFoundException`. Point an
//! SDK at it with `AWS_ENDPOINT_URL_LAMBDA`: then what invokes a deployed function (`herald
//! replay` into the router) reaches the local one.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::runtime::FunctionPool;

/// Answer `Invoke` for `functions` (each pool under every name it answers to) until the task is
/// dropped.
pub(crate) async fn serve(
    listener: TcpListener,
    functions: Arc<BTreeMap<String, Arc<FunctionPool>>>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let functions = functions.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let functions = functions.clone();
                async move { Ok::<_, Infallible>(invoke(request, &functions).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn invoke(
    request: Request<Incoming>,
    functions: &BTreeMap<String, Arc<FunctionPool>>,
) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_string();
    if let Some(name) = path
        .strip_prefix("/2021-10-31/functions/")
        .and_then(|rest| rest.strip_suffix("/url"))
        .map(percent_decode)
    {
        return url_config(functions.get(&name).map(|pool| pool.spec()), &name);
    }
    let name = path
        .strip_prefix("/2015-03-31/functions/")
        .and_then(|rest| rest.strip_suffix("/invocations"))
        .map(percent_decode);
    let Some(name) = name else {
        return not_found(format!(
            "only Invoke and GetFunctionUrlConfig are served here, not {path}"
        ));
    };
    let Some(pool) = functions.get(&name) else {
        return not_found(format!("Function not found: {name}"));
    };
    let body = match request.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        // A request cut off is not an empty payload: nothing is invoked.
        Err(err) => {
            return answer(
                StatusCode::BAD_REQUEST,
                None,
                json!({"Type": "User", "Message": format!("the request body could not be read: {err}")}),
            )
        }
    };
    let payload: Value = if body.is_empty() {
        // Lambda's own default payload.
        json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(payload) => payload,
            Err(err) => {
                return answer(
                    StatusCode::BAD_REQUEST,
                    None,
                    json!({"Type": "User", "Message": format!("Could not parse request body into json: {err}")}),
                )
            }
        }
    };
    match pool.invoke(&payload).await {
        Ok(response) => answer(StatusCode::OK, None, response),
        Err(err) => answer(
            StatusCode::OK,
            Some("Unhandled"),
            json!({"errorType": "Runtime.Error", "errorMessage": err.to_string()}),
        ),
    }
}

/// `GetFunctionUrlConfig`: the function's URL as the runner knows it.
fn url_config(function: Option<&crate::stack::FunctionSpec>, name: &str) -> Response<Full<Bytes>> {
    let Some((function, url)) = function.and_then(|f| Some((f, f.url.as_ref()?))) else {
        return not_found(format!(
            "The resource you requested does not exist: {name}'s URL"
        ));
    };
    let created = "2026-01-01T00:00:00.000+0000";
    answer(
        StatusCode::OK,
        None,
        json!({
            "FunctionUrl": url,
            "FunctionArn": function.arn,
            "AuthType": function.url_auth_type.as_deref().unwrap_or("NONE"),
            "CreationTime": created,
            "LastModifiedTime": created,
            "InvokeMode": "BUFFERED",
        }),
    )
}

/// Lambda's `ResourceNotFoundException`, as the SDK reads it (the error type in a header).
fn not_found(message: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(StatusCode::NOT_FOUND)
        .header("content-type", "application/json")
        .header("x-amzn-errortype", "ResourceNotFoundException")
        .body(Full::new(Bytes::from(
            json!({"Type": "User", "Message": message}).to_string(),
        )))
        .unwrap_or_default()
}

fn answer(status: StatusCode, function_error: Option<&str>, body: Value) -> Response<Full<Bytes>> {
    let mut response = Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("x-amz-executed-version", "$LATEST");
    if let Some(kind) = function_error {
        response = response.header("x-amz-function-error", kind);
    }
    response
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap_or_default()
}

/// The SDK escapes the name in the path (an ARN's `:` as `%3A`).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(byte) = u8::from_str_radix(&text[i + 1..i + 3], 16) {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_come_back_unescaped() {
        assert_eq!(
            super::percent_decode("arn%3Aaws%3Alambda%3Aus-east-1%3A123%3Afunction%3Aprod-Router"),
            "arn:aws:lambda:us-east-1:123:function:prod-Router"
        );
        assert_eq!(super::percent_decode("plain-name"), "plain-name");
        assert_eq!(super::percent_decode("trailing%4"), "trailing%4");
    }
}
