//! The order service: the write side of the example's CQRS split, event-sourced.
//!
//! A command loads the [`Order`] aggregate from the [`EventStore`], decides (the aggregate's
//! methods return the events or a [`CommandError`]) and appends the events at the version it
//! loaded. When another writer appended first ([`StoreError::VersionConflict`]) it loads again and
//! decides again, up to [`OrderServiceConfig::max_attempts`] times.
//!
//! The service never writes to the stream itself: the store's DynamoDB stream feeds the
//! [`crate::publisher`], so an event reaches Kinesis if and only if it was appended.
//!
//! Commands are safe to retry: each order event has a deterministic id
//! ([`crate::orders::order_event_id`]), and repeating a command that already took effect with
//! the same data answers the original outcome (`replayed: true`) instead of a conflict.
//!
//! [`handle`] serves the commands over HTTP (Function URL / API Gateway payload 2.0):
//!
//! | request | command | answers |
//! |---|---|---|
//! | `POST /orders` with `order_placed` data | `place_order` | 201 (200 when replayed), 400, 409 |
//! | `POST /orders/{id}/cancel` with `{"reason": ...}` | `cancel_order` | 200, 400, 404, 409 |
//!
//! An `x-correlation-id` header joins the command's events to an existing business transaction.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::envelope::{Envelope, ValidationError};
use crate::event_store::{EventStore, StoreError};
use crate::http::{HttpRequest, HttpResponse};
use crate::orders::{types, validate_order_id, CommandError, Order, OrderCancelled, OrderPlaced};

/// Settings.
#[derive(Clone, Debug)]
pub struct OrderServiceConfig {
    /// Loads-and-decides per command before a contended aggregate is reported (409). Default 5.
    pub max_attempts: u32,
    /// Pause before the second attempt, doubled after each conflict. Default 10 ms.
    pub conflict_backoff: Duration,
}

impl Default for OrderServiceConfig {
    fn default() -> Self {
        OrderServiceConfig {
            max_attempts: 5,
            conflict_backoff: Duration::from_millis(10),
        }
    }
}

/// What a command did.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandOutcome {
    /// The order.
    pub order_id: String,
    /// The aggregate's version after the command (when replayed: after the original command).
    pub version: u64,
    /// The events the command appended (or, when replayed, had appended before).
    pub events: Vec<AppendedEvent>,
    /// The command had already taken effect with the same data; nothing new was appended.
    pub replayed: bool,
}

/// One appended event, as a command reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppendedEvent {
    /// Event id.
    pub id: String,
    /// Event type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Its version in the aggregate.
    pub version: u64,
    /// Correlation id (follow it with `herald trace`).
    pub correlation_id: String,
}

/// Why a command did not take effect; match on it.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The aggregate refused the command.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// Other writers kept appending to the aggregate between every load and append.
    #[error("order {order_id} changed under {attempts} attempts in a row; try again")]
    Contended { order_id: String, attempts: u32 },
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
}

/// Commands on orders.
#[derive(Clone, Debug)]
pub struct OrderService {
    store: EventStore,
    config: OrderServiceConfig,
}

impl OrderService {
    /// A service on `store` with default settings.
    pub fn new(store: EventStore) -> Self {
        OrderService::with_config(store, OrderServiceConfig::default())
    }

    /// A service with explicit settings.
    pub fn with_config(store: EventStore, config: OrderServiceConfig) -> Self {
        OrderService { store, config }
    }

    /// The store.
    pub fn store(&self) -> &EventStore {
        &self.store
    }

    /// `place_order`.
    pub async fn place_order(
        &self,
        order: OrderPlaced,
        correlation_id: Option<&str>,
    ) -> Result<CommandOutcome, ServiceError> {
        let order_id = order.order_id.clone();
        validate_order_id(&order_id).map_err(CommandError::from)?;
        let result = self
            .execute(&order_id, |state| {
                state.place_correlated(order.clone(), correlation_id)
            })
            .await;
        match result {
            Err(ServiceError::Command(CommandError::AlreadyExists(_))) => {
                let wanted = serde_json::to_value(&order).ok();
                self.replay(&order_id, types::ORDER_PLACED, |event| {
                    event.data().cloned() == wanted
                })
                .await?
                .ok_or(ServiceError::Command(CommandError::AlreadyExists(order_id)))
            }
            other => other,
        }
    }

    /// `cancel_order`.
    pub async fn cancel_order(
        &self,
        order_id: &str,
        reason: &str,
        correlation_id: Option<&str>,
    ) -> Result<CommandOutcome, ServiceError> {
        validate_order_id(order_id).map_err(CommandError::from)?;
        let result = self
            .execute(order_id, |state| {
                state.cancel_correlated(order_id, reason, correlation_id)
            })
            .await;
        match result {
            Err(ServiceError::Command(CommandError::AlreadyCancelled(_))) => self
                .replay(order_id, types::ORDER_CANCELLED, |event| {
                    event
                        .data_as::<OrderCancelled>()
                        .is_ok_and(|c| c.reason == reason)
                })
                .await?
                .ok_or_else(|| {
                    ServiceError::Command(CommandError::AlreadyCancelled(order_id.to_string()))
                }),
            other => other,
        }
    }

    /// Load, decide, append; on a version conflict, again.
    async fn execute(
        &self,
        order_id: &str,
        decide: impl Fn(&Order) -> Result<Envelope, CommandError>,
    ) -> Result<CommandOutcome, ServiceError> {
        let mut pause = self.config.conflict_backoff;
        for attempt in 1..=self.config.max_attempts.max(1) {
            let loaded = self
                .store
                .load::<Order>(order_id)
                .await
                .map_err(ServiceError::Store)?;
            let event = decide(&loaded.state)?;
            let mut after = loaded.state.clone();
            crate::event_store::Aggregate::apply(&mut after, &event);
            match self
                .store
                .append(
                    order_id,
                    loaded.version,
                    std::slice::from_ref(&event),
                    Some(&after),
                )
                .await
            {
                Ok(version) => {
                    tracing::info!(
                        aggregateId = order_id,
                        eventId = event.id(),
                        eventType = event.event_type(),
                        correlationId = event.correlation_id(),
                        version,
                        "appended"
                    );
                    return Ok(CommandOutcome {
                        order_id: order_id.to_string(),
                        version,
                        events: vec![appended(&event, version)],
                        replayed: false,
                    });
                }
                Err(StoreError::VersionConflict { .. }) => {
                    tracing::info!(order_id, attempt, "version conflict; loading again");
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
                Err(err) => return Err(ServiceError::Store(err)),
            }
        }
        Err(ServiceError::Contended {
            order_id: order_id.to_string(),
            attempts: self.config.max_attempts.max(1),
        })
    }

    /// The earlier outcome of a command that already took effect, if its event matches.
    async fn replay(
        &self,
        order_id: &str,
        event_type: &str,
        same: impl Fn(&Envelope) -> bool,
    ) -> Result<Option<CommandOutcome>, ServiceError> {
        let events = self
            .store
            .events_after(order_id, 0)
            .await
            .map_err(ServiceError::Store)?;
        Ok(events
            .iter()
            .find(|(_, e)| e.event_type() == event_type && same(e))
            .map(|(version, event)| CommandOutcome {
                order_id: order_id.to_string(),
                version: *version,
                events: vec![appended(event, *version)],
                replayed: true,
            }))
    }
}

fn appended(event: &Envelope, version: u64) -> AppendedEvent {
    AppendedEvent {
        id: event.id().to_string(),
        event_type: event.event_type().to_string(),
        version,
        correlation_id: event.correlation_id().to_string(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CancelBody {
    reason: String,
}

/// Serve one HTTP request (or a direct invoke shaped like one).
pub async fn handle(service: &OrderService, payload: Value) -> Value {
    let request = match HttpRequest::from_payload(payload) {
        Ok(request) => request,
        Err(err) => return HttpResponse::error(400, "request", err).into_value(),
    };
    route(service, &request).await.into_value()
}

async fn route(service: &OrderService, request: &HttpRequest) -> HttpResponse {
    let correlation = request.header("x-correlation-id");
    let segments = request.segments();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    match (request.method.as_str(), segments.as_slice()) {
        ("POST", ["orders"]) => {
            let order: OrderPlaced = match serde_json::from_slice(&request.body) {
                Ok(order) => order,
                Err(err) => return HttpResponse::error(400, "body", body_error(&err)),
            };
            respond(service.place_order(order, correlation).await, 201)
        }
        ("POST", ["orders", order_id, "cancel"]) => {
            let body: CancelBody = match serde_json::from_slice(&request.body) {
                Ok(body) => body,
                Err(err) => return HttpResponse::error(400, "body", body_error(&err)),
            };
            respond(
                service
                    .cancel_order(order_id, &body.reason, correlation)
                    .await,
                200,
            )
        }
        (_, ["orders"]) | (_, ["orders", _, "cancel"]) => HttpResponse::error(
            405,
            "method",
            format!("{} is not allowed here; POST the command", request.method),
        ),
        _ => HttpResponse::error(
            404,
            "path",
            format!(
                "no command at {}; try POST /orders or POST /orders/{{id}}/cancel",
                request.path
            ),
        ),
    }
}

fn body_error(err: &serde_json::Error) -> String {
    format!("is not the expected JSON: {err}")
}

fn respond(result: Result<CommandOutcome, ServiceError>, created: u16) -> HttpResponse {
    match result {
        Ok(outcome) => HttpResponse::json(if outcome.replayed { 200 } else { created }, &outcome),
        Err(ServiceError::Command(CommandError::Invalid(err))) => invalid(&err),
        Err(ServiceError::Command(err @ CommandError::NotFound(_))) => {
            HttpResponse::error(404, "orderId", err)
        }
        Err(ServiceError::Command(err)) => HttpResponse::error(409, "orderId", err),
        Err(err @ ServiceError::Contended { .. }) => HttpResponse::error(409, "orderId", err),
        Err(ServiceError::Store(err)) => {
            tracing::error!(error = %err, "event store failed");
            HttpResponse::json(
                503,
                &json!({ "error": { "field": "store", "message": err.to_string() } }),
            )
        }
    }
}

fn invalid(err: &ValidationError) -> HttpResponse {
    HttpResponse::error(400, err.field(), err)
}
