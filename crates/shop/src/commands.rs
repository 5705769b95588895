//! The order service over HTTP: the write side of the shop's CQRS split.
//!
//! A thin layer over herald's [`CommandService`]: it validates the request, runs
//! [`PlaceOrder`] / [`CancelOrder`] on the event-sourced [`Order`], and answers:
//!
//! | request | command | answers |
//! |---|---|---|
//! | `POST /orders` with `order_placed` data | `place_order` | 201 (200 when replayed), 400, 409, 413 |
//! | `POST /orders/{id}/cancel` with `{"reason": ...}` | `cancel_order` | 200, 400, 404, 409 |
//!
//! An `x-correlation-id` header joins the command's events to an existing business transaction.
//! Commands are safe to retry: each order event has a deterministic id
//! ([`crate::order::order_event_id`]), and repeating a command that already took effect answers
//! the original outcome (`replayed: true`).

use herald::event_sourcing::command::{
    AppendedEvent, CommandError as ServiceError, CommandOutcome,
};
use herald::event_sourcing::event_store::StoreError;
use herald::{CommandService, EventStore, HttpRequest, HttpResponse, HttpService, ValidationError};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::events::OrderPlaced;
use crate::order::{validate_order_id, CancelOrder, CommandError, Order, PlaceOrder};

/// What a command did, as the order service answers it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderOutcome {
    /// The order.
    pub order_id: String,
    /// The order's version after the command (when replayed: after the original command).
    pub version: u64,
    /// The events the command appended (or, when replayed, had appended before).
    pub events: Vec<AppendedEvent>,
    /// The command had already taken effect with the same data; nothing new was appended.
    pub replayed: bool,
}

impl From<CommandOutcome> for OrderOutcome {
    fn from(outcome: CommandOutcome) -> Self {
        OrderOutcome {
            order_id: outcome.aggregate_id,
            version: outcome.version,
            events: outcome.events,
            replayed: outcome.replayed,
        }
    }
}

/// The order service: commands on orders kept in `S`.
pub struct OrderCommands<S> {
    service: CommandService<Order, S>,
}

impl<S: EventStore> OrderCommands<S> {
    /// Commands on `store`.
    pub fn new(store: S) -> Self {
        OrderCommands {
            service: CommandService::new(store),
        }
    }

    /// The command service underneath.
    pub fn service(&self) -> &CommandService<Order, S> {
        &self.service
    }

    /// `place_order`.
    pub async fn place_order(
        &self,
        order: OrderPlaced,
        correlation_id: Option<&str>,
    ) -> Result<OrderOutcome, ServiceError<CommandError>> {
        // A bad id is refused before it reaches the store as a key.
        validate_order_id(&order.order_id)
            .map_err(|e| ServiceError::Rejected(CommandError::from(e)))?;
        let command = PlaceOrder {
            order,
            correlation_id: correlation_id.map(str::to_string),
        };
        self.service.execute(&command).await.map(Into::into)
    }

    /// `cancel_order`.
    pub async fn cancel_order(
        &self,
        order_id: &str,
        reason: &str,
        correlation_id: Option<&str>,
    ) -> Result<OrderOutcome, ServiceError<CommandError>> {
        validate_order_id(order_id).map_err(|e| ServiceError::Rejected(CommandError::from(e)))?;
        let command = CancelOrder {
            order_id: order_id.to_string(),
            reason: reason.to_string(),
            correlation_id: correlation_id.map(str::to_string),
        };
        self.service.execute(&command).await.map(Into::into)
    }
}

impl<S: EventStore> HttpService for OrderCommands<S> {
    fn name(&self) -> &'static str {
        "orders"
    }

    async fn handle(&self, request: HttpRequest) -> HttpResponse {
        route(self, &request).await
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CancelBody {
    reason: String,
}

async fn route<S: EventStore>(service: &OrderCommands<S>, request: &HttpRequest) -> HttpResponse {
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

fn respond(result: Result<OrderOutcome, ServiceError<CommandError>>, created: u16) -> HttpResponse {
    match result {
        Ok(outcome) => HttpResponse::json(if outcome.replayed { 200 } else { created }, &outcome),
        Err(ServiceError::Rejected(CommandError::Invalid(err))) => invalid(&err),
        Err(ServiceError::Rejected(err @ CommandError::NotFound(_))) => {
            HttpResponse::error(404, "orderId", err)
        }
        Err(ServiceError::Rejected(err)) => HttpResponse::error(409, "orderId", err),
        Err(err @ ServiceError::Contended { .. }) => HttpResponse::error(409, "orderId", err),
        // The store refuses what it could never publish: the client's to fix, not a retry's.
        Err(ServiceError::Store(err @ StoreError::TooLarge { .. })) => {
            HttpResponse::error(413, "body", err)
        }
        Err(ServiceError::Store(err @ StoreError::BadAggregateId { .. })) => {
            HttpResponse::error(400, "orderId", err)
        }
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
