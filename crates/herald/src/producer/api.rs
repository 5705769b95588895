//! The producer's front door: one handler for Function URL / API Gateway (HTTP API, payload 2.0)
//! requests and for direct invokes.
//!
//! The body (or the direct-invoke payload) is one event, an array of events, or
//! `{"events": [...]}`. Each event is validated on its own: the answer lists every event as
//! accepted (with its shard and sequence number) or rejected (with the attribute and the reason),
//! and a bad event never keeps the good ones from being written.
//!
//! HTTP status: 202 when every event was accepted, 207 when some were, 400 when the request or
//! every event was invalid, 503 when valid events could not be written. A write failure that a
//! resend may fix (throttling, an outage, the invocation's deadline) says `"retryable": true`.

use serde::Serialize;
use serde_json::{json, Value};

use super::{EventStream, Producer, SubmissionPolicy};
use crate::aws::http::HttpRequest;
pub use crate::aws::http::{is_http_request, HttpResponse};
use crate::envelope::{Envelope, EventKind, ValidationError};

const IDEMPOTENCY_KEY_NAMESPACE: uuid::Uuid = uuid::Uuid::from_bytes([
    0x2f, 0x8e, 0x41, 0x07, 0x9c, 0x33, 0x4d, 0x5a, 0xb1, 0x6e, 0x0d, 0x7c, 0x52, 0xa8, 0x19, 0xe4,
]);

/// Most events one request may carry.
pub const MAX_EVENTS_PER_REQUEST: usize = 1000;

/// Who sent a submission, as far as the ids of its events depend on it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Submitter<'a> {
    /// The request's `Idempotency-Key` header. A retry with the same key gives the request's
    /// id-less events the same ids, so the retry is a duplicate downstream. Default: none.
    pub idempotency_key: Option<&'a str>,
    /// The caller as AWS authenticated it (an IAM principal's ARN; [`HttpRequest::principal`]).
    /// A key is the caller's own: ids derive from the principal and each event's `source` too,
    /// so two clients that happen to pick the same key never share an id. Default: none.
    pub principal: Option<&'a str>,
}

/// What happened to one submitted event.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum EventResult {
    /// Written to the stream.
    Accepted {
        /// Its position in the request.
        index: usize,
        /// The event id herald wrote: assigned when the submission had none, derived from the
        /// client's id under a [`super::SubmissionPolicy`].
        id: String,
        /// The id the client gave, when herald wrote another ([`super::SubmissionPolicy`]).
        #[serde(rename = "clientId", skip_serializing_if = "Option::is_none")]
        client_id: Option<String>,
        /// The shard it was written to.
        #[serde(rename = "shardId")]
        shard_id: String,
        /// Its sequence number in the shard.
        #[serde(rename = "sequenceNumber")]
        sequence_number: String,
    },
    /// Not written.
    Rejected {
        /// Its position in the request.
        index: usize,
        /// The event id, when the submission had one.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// Why: the attribute and the reason.
        error: RejectionReason,
    },
}

/// Why an event was rejected: the attribute (or `event` / `stream`) and a readable message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RejectionReason {
    /// Which attribute was wrong (for a schema violation, `data` and the JSON pointer into it:
    /// `data/items/0/quantity`); `stream` for write failures.
    pub field: String,
    /// What was wrong, with the limit where there is one.
    pub message: String,
    /// Sending the same event again (same id) may succeed: the stream was throttled or down, or
    /// the invocation's deadline came first. Absent (false) for an invalid event.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retryable: bool,
}

/// The answer to a submission.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SubmitReport {
    /// Events written.
    pub accepted: usize,
    /// Events not written.
    pub rejected: usize,
    /// One entry per submitted event, in order.
    pub results: Vec<EventResult>,
}

impl SubmitReport {
    fn status_code(&self, invalid_only: bool) -> u16 {
        match (self.accepted, self.rejected) {
            (_, 0) => 202,
            (0, _) if invalid_only => 400,
            (0, _) => 503,
            _ => 207,
        }
    }
}

/// A request that could not be read at all (as opposed to events that were invalid).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Only POST carries events.
    #[error("method {0} is not allowed; POST events")]
    MethodNotAllowed(String),
    /// The body is not JSON (or not base64 when flagged so).
    #[error("the body is not JSON: {0}")]
    BadBody(String),
    /// Neither an event, an array, nor `{"events": [...]}`.
    #[error("expected an event object, an array of events, or {{\"events\": [...]}}")]
    BadShape,
    /// No events.
    #[error("no events in the request")]
    Empty,
    /// Too many events in one request.
    #[error("{actual} events in one request; the limit is {limit}")]
    TooMany {
        /// The most allowed.
        limit: usize,
        /// How many came.
        actual: usize,
    },
}

/// Handle any producer invocation: HTTP requests get an HTTP response, direct invokes get the
/// [`SubmitReport`] (or `{"error": ...}` for an unreadable payload).
pub async fn handle<S: EventStream>(producer: &Producer<S>, payload: Value) -> Value {
    if is_http_request(&payload) {
        let response = handle_http(producer, payload).await;
        serde_json::to_value(response).expect("responses serialize")
    } else {
        match submit(producer, payload, Submitter::default()).await {
            Ok(report) => serde_json::to_value(report).expect("reports serialize"),
            Err(err) => json!({ "error": err.to_string() }),
        }
    }
}

async fn handle_http<S: EventStream>(producer: &Producer<S>, payload: Value) -> HttpResponse {
    let request = match HttpRequest::from_payload(payload) {
        Ok(request) => request,
        Err(err) => return error_response(400, &RequestError::BadBody(err)),
    };
    if request.method != "POST" {
        return error_response(405, &RequestError::MethodNotAllowed(request.method));
    }
    let value: Value = match serde_json::from_slice(&request.body) {
        Ok(value) => value,
        Err(err) => return error_response(400, &RequestError::BadBody(err.to_string())),
    };
    // A client retry with the same Idempotency-Key gives its id-less events the same ids, so
    // the retry is a duplicate downstream rather than a second sign-up.
    let submitter = Submitter {
        idempotency_key: request.header("idempotency-key"),
        principal: request.principal.as_deref(),
    };
    match submit(producer, value, submitter).await {
        Ok(report) => {
            let invalid_only = report.results.iter().all(|r| match r {
                EventResult::Rejected { error, .. } => error.field != "stream",
                EventResult::Accepted { .. } => true,
            });
            HttpResponse::json(report.status_code(invalid_only), &report)
        }
        Err(err) => error_response(400, &err),
    }
}

fn error_response(status: u16, err: &RequestError) -> HttpResponse {
    HttpResponse::json(status, &json!({ "error": err.to_string() }))
}

/// Validate every event in `body` and write the valid ones. Events without an `id` get one:
/// derived from the submitter's idempotency key, principal and the event's `source` and position
/// when a key is given (so a retried request yields the same ids, and no other caller's), a new
/// UUIDv7 otherwise. Under a [`SubmissionPolicy`] only the types and
/// sources it allows pass, `data` must meet its schema, and a client's `id` is replaced by one
/// derived from it ([`SubmissionPolicy::event_id`]); the correlation id follows when the client
/// left it to default to the id.
pub async fn submit<S: EventStream>(
    producer: &Producer<S>,
    body: Value,
    submitter: Submitter<'_>,
) -> Result<SubmitReport, RequestError> {
    let mut items = match body {
        Value::Array(items) => items,
        Value::Object(mut object) => match object.remove("events") {
            Some(Value::Array(items)) if !object.contains_key("type") => items,
            Some(_) => return Err(RequestError::BadShape),
            None => vec![Value::Object(object)],
        },
        _ => return Err(RequestError::BadShape),
    };
    if items.is_empty() {
        return Err(RequestError::Empty);
    }
    if items.len() > MAX_EVENTS_PER_REQUEST {
        return Err(RequestError::TooMany {
            limit: MAX_EVENTS_PER_REQUEST,
            actual: items.len(),
        });
    }

    let mut results: Vec<Option<EventResult>> = vec![None; items.len()];
    let mut valid = Vec::new();
    let mut valid_index = Vec::new();
    let policy = producer.config().submissions.as_ref();
    // The ids clients chose (before the idempotency key fills in the others).
    let client_ids: Vec<Option<String>> = items
        .iter()
        .map(|item| item.get("id").and_then(Value::as_str).map(str::to_string))
        .collect();
    if let Some(key) = submitter.idempotency_key {
        let principal = submitter.principal.unwrap_or_default();
        for (index, item) in items.iter_mut().enumerate() {
            if let Value::Object(fields) = item {
                let source = fields
                    .get("source")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                fields.entry("id").or_insert_with(|| {
                    let id = uuid::Uuid::new_v5(
                        &IDEMPOTENCY_KEY_NAMESPACE,
                        format!("{principal}\n{source}\n{key}/{index}").as_bytes(),
                    );
                    Value::String(id.to_string())
                });
            }
        }
    }
    for (index, item) in items.iter().enumerate() {
        // A submission that names no kind gets its type's kind from the catalog.
        let kind = producer
            .config()
            .catalog
            .as_ref()
            .zip(item.get("type").and_then(Value::as_str))
            .and_then(|(catalog, event_type)| catalog.get(event_type))
            .map_or(EventKind::Business, |known| known.kind);
        let checked = Envelope::parse_submission_as(item, kind).and_then(|envelope| {
            // Only the event store numbers an aggregate's events; a submitted number would let a
            // client overtake the store's events in every version-guarded read model.
            if envelope.aggregate_version().is_some() {
                return Err(ValidationError::Invalid {
                    field: "aggregateversion",
                    reason: "is set by the event store when it appends an event; submit events without it".into(),
                });
            }
            if let Some(catalog) = &producer.config().catalog {
                catalog.check(envelope.routing_attributes())?;
            }
            match (policy, &client_ids[index]) {
                (Some(policy), Some(client_id)) => {
                    policy.admit(&envelope)?;
                    let id = SubmissionPolicy::event_id(envelope.source(), client_id);
                    Ok(envelope.with_client_id(id))
                }
                (Some(policy), None) => policy.admit(&envelope).map(|()| envelope),
                (None, _) => Ok(envelope),
            }
        });
        match checked {
            Ok(envelope) => {
                valid.push(envelope);
                valid_index.push(index);
            }
            Err(err) => {
                tracing::info!(index, field = err.field(), error = %err, "rejected a submitted event");
                results[index] = Some(rejected(index, item.get("id"), &err));
            }
        }
    }
    let written = producer.publish(&valid).await;
    crate::aws::metrics::count("EventsIn", items.len());
    crate::aws::metrics::count("EventsOut", written.iter().filter(|w| w.is_ok()).count());
    crate::aws::metrics::count(
        "EventsRejected",
        items.len() - written.iter().filter(|w| w.is_ok()).count(),
    );
    for ((index, envelope), outcome) in valid_index.into_iter().zip(&valid).zip(written) {
        results[index] = Some(match outcome {
            Ok(accepted) => EventResult::Accepted {
                index,
                client_id: client_ids[index]
                    .clone()
                    .filter(|client| *client != accepted.id),
                id: accepted.id,
                shard_id: accepted.shard_id,
                sequence_number: accepted.sequence_number,
            },
            Err(err) => {
                // The id a resend must carry to be the same event downstream: the client's own
                // (herald derives its id from it again), else the one herald gave it.
                let resend = resend_advice(
                    client_ids[index].as_deref(),
                    envelope.id(),
                    policy.is_some(),
                    submitter.idempotency_key.is_some(),
                );
                EventResult::Rejected {
                    index,
                    id: Some(
                        client_ids[index]
                            .clone()
                            .unwrap_or_else(|| envelope.id().to_string()),
                    ),
                    error: RejectionReason {
                        field: "stream".into(),
                        message: if err.is_retryable() {
                            format!("{err} ({resend})")
                        } else {
                            err.to_string()
                        },
                        retryable: err.is_retryable(),
                    },
                }
            }
        });
    }
    let results: Vec<EventResult> = results
        .into_iter()
        .map(|r| r.expect("every event has a result"))
        .collect();
    let accepted = results
        .iter()
        .filter(|r| matches!(r, EventResult::Accepted { .. }))
        .count();
    Ok(SubmitReport {
        accepted,
        rejected: results.len() - accepted,
        results,
    })
}

/// How to send an event again so that it is the same event downstream, should the first write
/// have landed unconfirmed.
fn resend_advice(client_id: Option<&str>, id: &str, policy: bool, keyed: bool) -> String {
    match client_id {
        Some(client_id) => format!("to resend it, send it with the same id, \"{client_id}\""),
        None if keyed => "to resend it, send the same request with the same Idempotency-Key".into(),
        // The internal producer takes ids as given: herald's own id is the event's.
        None if !policy => format!("to resend it, send it with the id herald gave it, \"{id}\""),
        None => format!(
            "it may have been written as {id}, and a resend without an id is a new event: give \
             events an id or the request an Idempotency-Key"
        ),
    }
}

fn rejected(index: usize, id: Option<&Value>, err: &ValidationError) -> EventResult {
    EventResult::Rejected {
        index,
        id: id.and_then(Value::as_str).map(str::to_string),
        error: RejectionReason {
            field: err.location(),
            message: err.to_string(),
            retryable: false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::producer::{PutOutcome, StreamError, StreamRecord};
    use base64::Engine;

    struct OkStream;
    impl EventStream for OkStream {
        async fn put_records(
            &self,
            records: &[StreamRecord],
        ) -> Result<Vec<PutOutcome>, StreamError> {
            Ok(records
                .iter()
                .enumerate()
                .map(|(i, _)| PutOutcome::Written {
                    shard_id: "shardId-000000000000".into(),
                    sequence_number: (i + 1).to_string(),
                })
                .collect())
        }
    }

    fn http(method: &str, body: &str) -> Value {
        json!({
            "version": "2.0",
            "rawPath": "/",
            "headers": {"content-type": "application/json"},
            "requestContext": {"http": {"method": method, "path": "/"}},
            "body": body,
            "isBase64Encoded": false
        })
    }

    fn signup(id: &str) -> Value {
        json!({"type": "user_signed_up", "source": "herald/test", "subject": "user-1", "id": id, "data": {}})
    }

    #[tokio::test]
    async fn a_bad_event_does_not_sink_the_good_ones() {
        let producer = Producer::new(OkStream);
        let body =
            json!([signup("a"), {"type": "user_signed_up", "id": "b"}, signup("c")]).to_string();
        let response = handle(&producer, http("POST", &body)).await;
        assert_eq!(response["statusCode"], 207);
        let report: Value = serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
        assert_eq!(report["accepted"], 2);
        assert_eq!(report["results"][1]["status"], "rejected");
        assert_eq!(report["results"][1]["id"], "b");
        assert_eq!(report["results"][1]["error"]["field"], "source");
    }

    #[tokio::test]
    async fn a_submission_without_kind_gets_its_types_kind_from_the_catalog() {
        let catalog = crate::EventCatalog::new()
            .with("user_signed_up", EventKind::Business, 1..=1)
            .with("reading_recorded", EventKind::Data, 1..=1);
        let config = super::super::ProducerConfig {
            catalog: Some(catalog),
            ..Default::default()
        };
        let producer = Producer::with_config(OkStream, config);
        // A data event needs no subject, and (here) no kind either; a business event without
        // a subject is still refused, naming it; a kind that contradicts the catalog is named.
        let reading = json!({"type": "reading_recorded", "source": "iot/device", "data": {}});
        let unnamed = json!({"type": "user_signed_up", "source": "herald/test", "data": {}});
        let mut contradicts = reading.clone();
        contradicts["kind"] = json!("system");
        let report = submit(
            &producer,
            json!([reading, unnamed, contradicts]),
            Submitter::default(),
        )
        .await
        .unwrap();
        assert_eq!(report.accepted, 1, "{:?}", report.results);
        let fields: Vec<Option<&str>> = report
            .results
            .iter()
            .map(|result| match result {
                EventResult::Rejected { error, .. } => Some(error.field.as_str()),
                EventResult::Accepted { .. } => None,
            })
            .collect();
        assert_eq!(fields, [None, Some("subject"), Some("kind")]);
    }

    #[tokio::test]
    async fn only_the_event_store_numbers_an_aggregates_events() {
        let producer = Producer::new(OkStream);
        let mut forged = signup("f");
        forged["aggregateversion"] = json!(999);
        let report = submit(
            &producer,
            json!([forged, signup("g")]),
            Submitter::default(),
        )
        .await
        .unwrap();
        assert_eq!(report.accepted, 1);
        let EventResult::Rejected { error, .. } = &report.results[0] else {
            panic!("{:?}", report.results[0]);
        };
        assert_eq!(error.field, "aggregateversion");
    }

    #[tokio::test]
    async fn http_errors_are_named() {
        let producer = Producer::new(OkStream);
        let response = handle(&producer, http("GET", "")).await;
        assert_eq!(response["statusCode"], 405);
        let response = handle(&producer, http("POST", "{not json")).await;
        assert_eq!(response["statusCode"], 400);
        assert!(response["body"].as_str().unwrap().contains("not JSON"));
        let response = handle(&producer, http("POST", "[]")).await;
        assert_eq!(response["statusCode"], 400);
    }

    #[tokio::test]
    async fn base64_bodies_are_decoded() {
        let producer = Producer::new(OkStream);
        let mut request = http("POST", "");
        request["body"] =
            json!(base64::engine::general_purpose::STANDARD.encode(signup("a").to_string()));
        request["isBase64Encoded"] = json!(true);
        let response = handle(&producer, request).await;
        assert_eq!(response["statusCode"], 202);
    }

    #[tokio::test]
    async fn direct_invokes_take_all_three_shapes() {
        let producer = Producer::new(OkStream);
        for payload in [
            signup("a"),
            json!([signup("a")]),
            json!({"events": [signup("a")]}),
        ] {
            let report = handle(&producer, payload).await;
            assert_eq!(report["accepted"], 1, "{report}");
        }
        let report = handle(&producer, json!(42)).await;
        assert!(report["error"]
            .as_str()
            .unwrap()
            .contains("expected an event"));
    }

    #[tokio::test]
    async fn an_idempotency_key_gives_a_retried_request_the_same_ids() {
        let producer = Producer::new(OkStream);
        let mut request = http(
            "POST",
            &json!([{"type": "user_signed_up", "source": "s", "subject": "o"}]).to_string(),
        );
        request["headers"]["Idempotency-Key"] = json!("client-retry-7");
        let ids: Vec<Value> = futures::future::join_all([
            handle(&producer, request.clone()),
            handle(&producer, request),
        ])
        .await
        .into_iter()
        .map(|response| {
            serde_json::from_str::<Value>(response["body"].as_str().unwrap()).unwrap()["results"][0]
                ["id"]
                .clone()
        })
        .collect();
        assert_eq!(ids[0], ids[1]);
        assert!(ids[0].is_string());
    }

    #[tokio::test]
    async fn under_a_policy_client_ids_are_namespaced_and_a_retry_keeps_its_id() {
        let config = crate::producer::ProducerConfig {
            submissions: Some(SubmissionPolicy::new().allow("user_signed_up", &["herald/test"])),
            ..Default::default()
        };
        let producer = Producer::with_config(OkStream, config);
        let mut ids = Vec::new();
        for _ in 0..2 {
            let report = submit(&producer, json!([signup("client-7")]), Submitter::default())
                .await
                .unwrap();
            let EventResult::Accepted { id, client_id, .. } = &report.results[0] else {
                panic!("{:?}", report.results[0]);
            };
            assert_eq!(client_id.as_deref(), Some("client-7"));
            ids.push(id.clone());
        }
        assert_eq!(ids[0], ids[1], "a retry is the same event");
        assert_eq!(
            ids[0],
            SubmissionPolicy::event_id("herald/test", "client-7")
        );
        // Without an id the client has nothing to collide with: herald's own id, no clientId.
        let mut anonymous = signup("x");
        anonymous.as_object_mut().unwrap().remove("id");
        let report = submit(&producer, anonymous, Submitter::default())
            .await
            .unwrap();
        assert!(matches!(
            &report.results[0],
            EventResult::Accepted {
                client_id: None,
                ..
            }
        ));
    }

    #[tokio::test]
    async fn too_many_events_names_the_limit() {
        let producer = Producer::new(OkStream);
        let events: Vec<Value> = (0..1001).map(|i| signup(&i.to_string())).collect();
        let report = handle(&producer, Value::Array(events)).await;
        assert_eq!(
            report["error"],
            "1001 events in one request; the limit is 1000"
        );
    }

    /// A stream whose writes land but whose answers are lost (a dropped connection after Kinesis
    /// stored the records): it keeps every id it was asked to write and answers with throttling.
    #[derive(Clone, Default)]
    struct LandsUnanswered(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

    impl EventStream for LandsUnanswered {
        async fn put_records(
            &self,
            records: &[StreamRecord],
        ) -> Result<Vec<PutOutcome>, StreamError> {
            let mut written = self.0.lock().unwrap();
            for record in records {
                let event: Value = serde_json::from_slice(&record.data).unwrap();
                written.push(event["id"].as_str().unwrap().to_string());
            }
            Ok(records
                .iter()
                .map(|_| PutOutcome::Failed {
                    code: "ProvisionedThroughputExceededException".into(),
                    message: "Rate exceeded for shard".into(),
                })
                .collect())
        }
    }

    /// Issue 24, item 3: a retryable rejection tells the client how to send the event again, and
    /// following that advice after a write that landed unanswered gives the same event id, which
    /// every subscriber then skips as a duplicate (before: the id in the answer was herald's
    /// derived one, which a resend derived again into a third id: the effect twice).
    #[tokio::test]
    async fn following_the_resend_advice_after_an_unanswered_write_is_the_same_event() {
        let fast = crate::aws::Backoff {
            max_attempts: 2,
            base: std::time::Duration::from_millis(1),
            cap: std::time::Duration::from_millis(1),
        };
        let config = || crate::producer::ProducerConfig {
            submissions: Some(SubmissionPolicy::new().allow("user_signed_up", &["herald/test"])),
            backoff: fast,
            ..Default::default()
        };
        let stream = LandsUnanswered::default();
        let written = stream.0.clone();
        let producer = Producer::with_config(stream.clone(), config());
        let mut event = signup("client-9");
        let report = submit(&producer, json!([event.clone()]), Submitter::default())
            .await
            .unwrap();
        let EventResult::Rejected { id, error, .. } = &report.results[0] else {
            panic!("{:?}", report.results[0]);
        };
        assert!(error.retryable, "{error:?}");
        assert!(error.message.contains("same id"), "{}", error.message);
        // The client follows the advice: the same event, with the id the answer names.
        event["id"] = json!(id.clone().unwrap());
        let report = submit(&producer, json!([event]), Submitter::default())
            .await
            .unwrap();
        assert_eq!(report.rejected, 1);
        let mut ids = written.lock().unwrap().clone();
        ids.dedup();
        assert_eq!(
            ids,
            [SubmissionPolicy::event_id("herald/test", "client-9")],
            "every write, first and resent, carries one id"
        );
    }

    /// Issue 24, item 4: an `Idempotency-Key` belongs to its caller. Two clients (two sources, or
    /// two IAM principals deployed) that pick the same key get different ids for their id-less
    /// events (before: the same ids, so the second client's events were dead-lettered downstream
    /// as payload mismatches of the first's); one caller's retry still gets its own ids back.
    #[tokio::test]
    async fn an_idempotency_key_is_scoped_to_its_caller() {
        let producer = Producer::new(OkStream);
        let id_for = |source: &str, principal: Option<&'static str>| {
            let producer = &producer;
            let event = json!([{"type": "user_signed_up", "source": source, "subject": "o"}]);
            async move {
                let mut request = http("POST", &event.to_string());
                request["headers"]["Idempotency-Key"] = json!("retry-1");
                if let Some(arn) = principal {
                    request["requestContext"]["authorizer"] = json!({"iam": {"userArn": arn}});
                }
                let response = handle(producer, request).await;
                serde_json::from_str::<Value>(response["body"].as_str().unwrap()).unwrap()
                    ["results"][0]["id"]
                    .as_str()
                    .unwrap()
                    .to_string()
            }
        };
        let storefront = id_for("shop/storefront", None).await;
        assert_eq!(storefront, id_for("shop/storefront", None).await, "a retry");
        assert_ne!(
            storefront,
            id_for("shop/mobile", None).await,
            "another source"
        );
        let alice = id_for("shop/storefront", Some("arn:aws:iam::1:user/alice")).await;
        let bob = id_for("shop/storefront", Some("arn:aws:iam::1:user/bob")).await;
        assert_ne!(alice, bob, "another principal");
        assert_eq!(
            alice,
            id_for("shop/storefront", Some("arn:aws:iam::1:user/alice")).await
        );
    }
}
