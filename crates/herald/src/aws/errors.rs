//! One classification of AWS failures, used by every retry decision in herald: the producer's and
//! publisher's `PutRecords` retries, the router's `PublishBatch` retries, and whether a subscriber
//! dead-letters a failed event at once or lets its queue redeliver it.
//!
//! | class | examples (error codes) | what herald does |
//! |---|---|---|
//! | [`ErrorClass::Transient`] | throttling (`ThrottlingException`, `ProvisionedThroughputExceededException`, `Throttled`, `KMSThrottlingException`, `KMS.ThrottlingException`), contention (`TransactionConflict`, `TransactionInProgressException`), server errors (`InternalFailure`, `InternalError`, `ServiceUnavailable`), timeouts and connection failures (no code) | retry in process with backoff while the invocation's [deadline](crate::aws::Deadline) allows, then report for redelivery (answer "retryable" to a producer client) |
//! | [`ErrorClass::Configuration`] | `AccessDenied(Exception)`, `AuthorizationError`, `KMSAccessDenied`, `KMSDisabled`, `KMSInvalidState`, `KMSNotFound`, `KMSOptInRequired`, `ResourceNotFoundException`, `NotFound`, `QueueDoesNotExist`, `UnrecognizedClientException` | the request is fine and so is the event, the deployment is not (a key policy, a role, a missing resource): no in-process retry (it would fail the same way), never a dead letter — report for redelivery so nothing is lost while an operator fixes it (the function's error alarm fires) |
//! | [`ErrorClass::Permanent`] | `ValidationException`, `InvalidParameter`, `InvalidParameterValue`, `InvalidArgumentException`, `SerializationException`, `ItemCollectionSizeLimitExceededException` | this request can never succeed: no retry; the event goes to its dead-letter queue (or the client's answer) with the service's reason |
//!
//! SNS marks `AuthorizationError` and every `KMS*` failure of a `PublishBatch` entry as the
//! sender's fault, although the message is not at fault; [`classify_sns_entry`] therefore trusts
//! the code over the flag. A code this table does not know is transient: a wrong guess then costs
//! retries bounded by the deadline and the queue's receive count, never a valid event in a DLQ.

/// What a failure says about retrying the same request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// Retrying later can succeed: back off and try again.
    Transient,
    /// The deployment is wrong or unavailable (permissions, keys, missing resources): every request
    /// fails alike until an operator acts. Keep the event for redelivery; do not dead-letter it.
    Configuration,
    /// The request itself is wrong: it will never succeed. Dead-letter (or answer) with the reason.
    Permanent,
}

impl ErrorClass {
    /// Whether retrying the same request (now or after a fix of the deployment) can succeed.
    pub fn is_retryable(self) -> bool {
        self != ErrorClass::Permanent
    }

    /// Whether retrying within this invocation is worth it (only for transient failures).
    pub fn retry_in_process(self) -> bool {
        self == ErrorClass::Transient
    }
}

/// Codes that mean "the request is wrong".
const PERMANENT: &[&str] = &[
    "ValidationException",
    "ValidationError",
    "InvalidParameter",
    "InvalidParameterValue",
    "InvalidParameterValueException",
    "InvalidParameterException",
    "InvalidArgumentException",
    "InvalidRequestException",
    "SerializationException",
    "ItemCollectionSizeLimitExceededException",
    "InvalidMessageContents",
    "MessageTooLong",
    "BatchRequestTooLong",
    "BatchEntryIdsNotDistinct",
    "TooManyEntriesInBatchRequest",
    "EmptyBatchRequest",
    "InvalidBatchEntryId",
    "AWS.SimpleQueueService.BatchRequestTooLong",
    "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
    "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
    "ConditionalCheckFailedException",
];

/// Codes that mean "the deployment is wrong or missing something".
const CONFIGURATION: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "AuthorizationError",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "MissingAuthenticationToken",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "OptInRequired",
    "InvalidSecurity",
    "KMSAccessDenied",
    "KMSAccessDeniedException",
    "KMSDisabled",
    "KMSDisabledException",
    "KMSInvalidState",
    "KMSInvalidStateException",
    "KMSNotFound",
    "KMSNotFoundException",
    "KMSOptInRequired",
    "ResourceNotFoundException",
    "NotFound",
    "NotFoundException",
    "QueueDoesNotExist",
    "AWS.SimpleQueueService.NonExistentQueue",
    "EndpointDisabled",
    "PlatformApplicationDisabled",
];

/// The class of an AWS error code. Throttling codes ([`is_throttling_code`]), server
/// errors and unknown codes are [`ErrorClass::Transient`].
pub fn classify(code: &str) -> ErrorClass {
    // KMS errors relayed by SNS or Kinesis come as `KMS.<Code>` as well as `KMS<Code>`.
    let normalized = code
        .strip_prefix("KMS.")
        .map(|rest| format!("KMS{}", rest.trim_end_matches("Exception")));
    let code = normalized.as_deref().unwrap_or(code);
    if is_throttling_code(code) || code.contains("Throttl") {
        ErrorClass::Transient
    } else if PERMANENT.contains(&code) {
        ErrorClass::Permanent
    } else if CONFIGURATION.contains(&code) {
        ErrorClass::Configuration
    } else {
        ErrorClass::Transient
    }
}

/// The class of a failure that may have no code (a timeout, a dropped connection: transient).
pub fn classify_code(code: Option<&str>) -> ErrorClass {
    code.map_or(ErrorClass::Transient, classify)
}

/// The class of a failed SNS `PublishBatch` entry. SNS sets `SenderFault` on failures that are
/// not the message's fault (`AuthorizationError`, `KMSThrottling`, `KMSDisabled`...), so the code
/// decides; the flag only turns an unknown code permanent (SNS judged the entry itself wrong).
pub fn classify_sns_entry(code: &str, sender_fault: bool) -> ErrorClass {
    let known = PERMANENT.contains(&code)
        || CONFIGURATION.contains(&code)
        || is_throttling_code(code)
        || code.contains("Throttl")
        || code.starts_with("KMS")
        || matches!(
            code,
            "InternalError" | "InternalFailure" | "ServiceUnavailable"
        );
    match classify(code) {
        ErrorClass::Transient if sender_fault && !known => ErrorClass::Permanent,
        class => class,
    }
}

/// An AWS request failed. Keeps the SDK's error as its source and the service's error code, so a
/// caller can tell throttling (retry later) from a validation failure (never retry).
#[derive(Clone, Debug, thiserror::Error)]
#[error("{text}")]
pub struct AwsError {
    text: String,
    code: Option<String>,
    // Shared, so the error can be cloned into every record a failed request concerned.
    #[source]
    source: std::sync::Arc<dyn std::error::Error + Send + Sync>,
}

/// Two failures are the same when they read the same and carry the same code.
impl PartialEq for AwsError {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text && self.code == other.code
    }
}

impl Eq for AwsError {}

/// Error codes AWS services answer when a caller is over its rate; retrying later helps.
const THROTTLING_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "TransactionConflictException",
    "TransactionInProgressException",
    "LimitExceededException",
    "KMSThrottlingException",
];

impl AwsError {
    /// Wrap an SDK error.
    pub fn new<E>(err: E) -> Self
    where
        E: aws_smithy_types::error::metadata::ProvideErrorMetadata
            + std::error::Error
            + Send
            + Sync
            + 'static,
    {
        AwsError {
            text: error_text(&err),
            code: err.code().map(str::to_string),
            source: std::sync::Arc::new(err),
        }
    }

    /// A failure that is not an SDK error (a request that could not be built, say).
    pub fn other(text: impl Into<String>) -> Self {
        let text = text.into();
        let source: Box<dyn std::error::Error + Send + Sync> = text.clone().into();
        AwsError {
            source: source.into(),
            text,
            code: None,
        }
    }

    /// A failure with a service error code but no SDK error behind it (test doubles, fault
    /// injection), classified like the real one.
    pub fn with_code(code: impl Into<String>, text: impl Into<String>) -> Self {
        let mut err = AwsError::other(text);
        err.code = Some(code.into());
        err
    }

    /// The service's error code (`ConditionalCheckFailedException`, ...), when it answered one.
    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }

    /// Whether the service throttled the request: retrying after a pause helps.
    pub fn is_throttling(&self) -> bool {
        self.code().is_some_and(is_throttling_code)
    }

    /// Whether a retry can help, and when ([`crate::aws::errors`]). A failure without a code (a
    /// timeout, a dropped connection) is transient.
    pub fn class(&self) -> crate::aws::errors::ErrorClass {
        crate::aws::errors::classify_code(self.code())
    }
}

/// Whether an AWS error code means "too much, too fast" (retry later), not "wrong request".
pub fn is_throttling_code(code: &str) -> bool {
    THROTTLING_CODES.contains(&code)
}

/// The short name of an SDK error (`ProvisionedThroughputExceededException`, `dispatch failure`…)
/// with its message, for logs and dead letters.
pub fn error_text<E: std::error::Error + 'static>(err: &E) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_sorts_the_codes_aws_answers() {
        for code in [
            "ThrottlingException",
            "ProvisionedThroughputExceededException",
            "Throttled",
            "KMSThrottlingException",
            "KMS.ThrottlingException",
            "KMSThrottling",
            "TransactionConflictException",
            "InternalFailure",
            "InternalError",
            "ServiceUnavailable",
            "SomethingNew",
        ] {
            assert_eq!(classify(code), ErrorClass::Transient, "{code}");
        }
        for code in [
            "ValidationException",
            "InvalidParameter",
            "InvalidParameterValue",
            "InvalidArgumentException",
        ] {
            assert_eq!(classify(code), ErrorClass::Permanent, "{code}");
        }
        for code in [
            "AccessDeniedException",
            "AuthorizationError",
            "KMSDisabled",
            "KMS.DisabledException",
            "KMSAccessDeniedException",
            "ResourceNotFoundException",
        ] {
            assert_eq!(classify(code), ErrorClass::Configuration, "{code}");
        }
        assert_eq!(classify_code(None), ErrorClass::Transient);
    }

    #[test]
    fn sns_sender_faults_that_are_not_the_messages_fault_are_not_poison() {
        assert_eq!(
            classify_sns_entry("KMSThrottling", true),
            ErrorClass::Transient
        );
        assert_eq!(
            classify_sns_entry("KMS.ThrottlingException", true),
            ErrorClass::Transient
        );
        assert_eq!(
            classify_sns_entry("AuthorizationError", true),
            ErrorClass::Configuration
        );
        assert_eq!(
            classify_sns_entry("KMSDisabled", true),
            ErrorClass::Configuration
        );
        assert_eq!(
            classify_sns_entry("InvalidParameter", true),
            ErrorClass::Permanent
        );
        // An unknown code SNS blames on the entry stays the entry's fault.
        assert_eq!(
            classify_sns_entry("SomethingNew", true),
            ErrorClass::Permanent
        );
        assert_eq!(
            classify_sns_entry("InternalError", false),
            ErrorClass::Transient
        );
    }

    #[test]
    fn throttling_is_told_apart_from_a_bad_request() {
        assert!(is_throttling_code("ProvisionedThroughputExceededException"));
        assert!(is_throttling_code("ThrottlingException"));
        assert!(!is_throttling_code("ConditionalCheckFailedException"));
        assert!(!is_throttling_code("ValidationException"));
        let other = AwsError::other("no request");
        assert!(!other.is_throttling());
        assert_eq!(other.code(), None);
    }
}
