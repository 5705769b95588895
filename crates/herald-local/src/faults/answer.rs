//! What AWS answers when it hurts, byte for byte where the SDK looks: the status code, the
//! `x-amzn-ErrorType` header and `__type` body of the JSON protocols (Kinesis, DynamoDB, SQS),
//! and the `<ErrorResponse>` document of the query protocol (SNS). The SDK classifies its retries
//! from exactly these, so an injected fault is retried (or not) as it would be on AWS.

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use serde_json::{json, Value};

/// Which wire protocol a service speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// awsJson 1.0 / 1.1: `X-Amz-Target` names the operation.
    Json,
    /// awsQuery: `Action=` in the form body names the operation.
    Query,
}

/// An error to answer with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AwsFault {
    /// HTTP status.
    pub status: u16,
    /// The error code (`ThrottlingException`).
    pub code: &'static str,
    /// The message AWS gives.
    pub message: String,
    /// For `TransactionCanceledException`: one reason code per transaction item.
    pub cancellation_reasons: Vec<&'static str>,
}

impl AwsFault {
    /// A fault with no cancellation reasons.
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        AwsFault {
            status,
            code,
            message: message.into(),
            cancellation_reasons: Vec::new(),
        }
    }
}

/// The JSON protocol's namespace for `__type` (the SDK keeps what follows `#`).
fn namespace(service: &str) -> &'static str {
    match service {
        "dynamodb" => "com.amazonaws.dynamodb.v20120810",
        "kinesis" => "com.amazonaws.kinesis.v20131202",
        "sqs" => "com.amazonaws.sqs",
        _ => "com.amazonaws",
    }
}

/// The HTTP response carrying `fault` for `service` in `protocol`.
pub fn response(
    service: &str,
    protocol: Protocol,
    fault: &AwsFault,
    request_id: &str,
) -> Response<Full<Bytes>> {
    let status = StatusCode::from_u16(fault.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let builder = Response::builder()
        .status(status)
        .header("x-amzn-requestid", request_id);
    let built = match protocol {
        Protocol::Json => {
            let mut body = json!({
                "__type": format!("{}#{}", namespace(service), fault.code),
                "message": fault.message,
            });
            if !fault.cancellation_reasons.is_empty() {
                body["CancellationReasons"] = Value::Array(
                    fault
                        .cancellation_reasons
                        .iter()
                        .map(|code| match *code {
                            "None" => json!({"Code": "None"}),
                            code => json!({"Code": code, "Message": "Transaction is ongoing for the item"}),
                        })
                        .collect(),
                );
            }
            let mut builder = builder
                .header("content-type", json_content_type(service))
                .header("x-amzn-errortype", format!("{}:", fault.code));
            if service == "sqs" {
                // SQS's JSON protocol is query-compatible: the SDK reads the code from here first.
                let side = if fault.status >= 500 {
                    "Receiver"
                } else {
                    "Sender"
                };
                builder = builder.header("x-amzn-query-error", format!("{};{side}", fault.code));
            }
            builder.body(Full::new(Bytes::from(body.to_string())))
        }
        Protocol::Query => {
            let side = if fault.status >= 500 {
                "Receiver"
            } else {
                "Sender"
            };
            let body = format!(
                "<ErrorResponse xmlns=\"http://sns.amazonaws.com/doc/2010-03-31/\">\n  <Error>\n    <Type>{side}</Type>\n    <Code>{}</Code>\n    <Message>{}</Message>\n  </Error>\n  <RequestId>{request_id}</RequestId>\n</ErrorResponse>\n",
                fault.code,
                xml_escape(&fault.message)
            );
            builder
                .header("content-type", "text/xml")
                .body(Full::new(Bytes::from(body)))
        }
    };
    built.unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

fn json_content_type(service: &str) -> &'static str {
    match service {
        "kinesis" => "application/x-amz-json-1.1",
        _ => "application/x-amz-json-1.0",
    }
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The throttling error of `service` (`variant` picks between DynamoDB's two).
pub fn throttle(service: &str, variant: u64) -> AwsFault {
    match service {
        "kinesis" => AwsFault::new(
            400,
            "ProvisionedThroughputExceededException",
            "Rate exceeded for shard shardId-000000000000 in stream under account 123456789012.",
        ),
        "dynamodb" if variant.is_multiple_of(2) => AwsFault::new(
            400,
            "ProvisionedThroughputExceededException",
            "The level of configured provisioned throughput for the table was exceeded. Consider increasing your provisioning level with the UpdateTable API.",
        ),
        "dynamodb" => AwsFault::new(
            400,
            "ThrottlingException",
            "Throughput exceeds the current capacity of your table or index. DynamoDB is automatically scaling your table or index so please try again shortly.",
        ),
        "sqs" => AwsFault::new(400, "RequestThrottled", "Request is throttled."),
        _ => AwsFault::new(400, "Throttling", "Rate exceeded"),
    }
}

/// Kinesis's `KMSThrottlingException`.
pub fn kms_throttle() -> AwsFault {
    AwsFault::new(
        400,
        "KMSThrottlingException",
        "The request was denied due to request throttling. (Service: AWSKMS; Status Code: 400; Error Code: ThrottlingException)",
    )
}

/// A server error of `service`: 500 or 503 (`variant` picks).
pub fn server_error(service: &str, variant: u64) -> AwsFault {
    let unavailable = variant % 2 == 1;
    match (service, unavailable) {
        ("kinesis", false) => AwsFault::new(500, "InternalFailure", "Internal service failure."),
        ("dynamodb", false) => AwsFault::new(500, "InternalServerError", "Internal server error"),
        (_, false) => AwsFault::new(
            500,
            "InternalError",
            "We encountered an internal error. Please try again.",
        ),
        (_, true) => unavailable_fault(),
    }
}

/// `ServiceUnavailable` (503): what an outage answers.
pub fn unavailable_fault() -> AwsFault {
    AwsFault::new(
        503,
        "ServiceUnavailable",
        "The request has failed due to a temporary failure of the server.",
    )
}

/// DynamoDB's `TransactionCanceledException` for a transaction of `items` items whose item
/// `conflicted` collided with another transaction.
pub fn transaction_conflict(items: usize, conflicted: usize) -> AwsFault {
    let reasons: Vec<&'static str> = (0..items.max(1))
        .map(|i| {
            if i == conflicted {
                "TransactionConflict"
            } else {
                "None"
            }
        })
        .collect();
    let listed: Vec<&str> = reasons.to_vec();
    AwsFault {
        status: 400,
        code: "TransactionCanceledException",
        message: format!(
            "Transaction cancelled, please refer cancellation reasons for specific reasons [{}]",
            listed.join(", ")
        ),
        cancellation_reasons: reasons,
    }
}
