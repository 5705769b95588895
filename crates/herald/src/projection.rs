//! `orders_view`: the read side of the example's CQRS split, and the queries it serves.
//!
//! The projector folds order events into a DynamoDB table shaped for the two questions users ask
//! — "what is going on with order X?" and "what are customer C's orders?" — one key each:
//!
//! | item | `pk` | `sk` | holds |
//! |---|---|---|---|
//! | summary | `order#<id>` | `summary` | status, version, customer, lines, total, times |
//! | timeline | `order#<id>` | `event#<version, 10 digits>` | one entry per event |
//! | listing | `customer#<id>` | `order#<placedAt>#<orderId>` | status, total (newest first) |
//!
//! Delivery is at-least-once and may be out of order (a standard queue, concurrent batches), so
//! every write is either idempotent and order-free, or conditional on the aggregate version:
//! - timeline entries and an event's immutable facts (an order's lines, a cancellation's reason)
//!   are plain writes: applying them twice or late changes nothing;
//! - the status moves only forward: `SET status ... IF attribute_not_exists(version) OR
//!   version < :v`; a stale event fails the condition and is counted, not applied;
//! - the customer listing copies the summary once the order's customer is known, with the same
//!   kind of condition (`version <= :v`).
//!
//! So any delivery order, with any duplicates, ends in the same items — which is also why
//! [`OrdersProjection::rebuild`] can replay the store in scan order.

use std::collections::HashMap;
use std::time::SystemTime;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, WriteRequest};
use aws_sdk_dynamodb::Client;
use base64::Engine;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::aws::error_text;
use crate::envelope::Envelope;
use crate::event_store::{EventStore, StoreError};
use crate::http::{HttpRequest, HttpResponse};
use crate::orders::{types, validate_order_id, LineItem, OrderCancelled, OrderPlaced};
use crate::subscriber::{Delivery, Outcome, RecordError, RecordHandler};

/// The projection's name (for `herald project rebuild`).
pub const NAME: &str = "orders_view";

/// Attribute names of the view table.
pub mod attr {
    /// Partition key.
    pub const PK: &str = "pk";
    /// Sort key.
    pub const SK: &str = "sk";
    /// Order id.
    pub const ORDER_ID: &str = "orderId";
    /// Customer id.
    pub const CUSTOMER_ID: &str = "customerId";
    /// `placed` / `cancelled`.
    pub const STATUS: &str = "status";
    /// The aggregate version the status is at.
    pub const VERSION: &str = "version";
    /// Total, minor units.
    pub const TOTAL: &str = "total";
    /// ISO 4217.
    pub const CURRENCY: &str = "currency";
    /// Line items (list of maps).
    pub const ITEMS: &str = "items";
    /// When the order was placed (the event's time).
    pub const PLACED_AT: &str = "placedAt";
    /// When it was cancelled.
    pub const CANCELLED_AT: &str = "cancelledAt";
    /// Why.
    pub const CANCEL_REASON: &str = "cancelReason";
    /// Time of the event that set the status.
    pub const UPDATED_AT: &str = "updatedAt";
    /// Timeline: event type.
    pub const TYPE: &str = "type";
    /// Timeline: event id.
    pub const EVENT_ID: &str = "eventId";
    /// Timeline: event time.
    pub const TIME: &str = "time";
    /// Timeline: correlation id.
    pub const CORRELATION_ID: &str = "correlationId";
}

const SUMMARY: &str = "summary";

/// Attribute name → value: what an event says that never changes.
type Facts = Vec<(&'static str, AttributeValue)>;

/// What can go wrong; match on it.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// The event cannot be projected (its reason names the attribute).
    #[error("`{field}` {reason}")]
    Invalid { field: &'static str, reason: String },
    /// DynamoDB failed; retry.
    #[error("orders_view: {0}")]
    Persistence(String),
    /// Reading the event store failed (rebuild).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How one event landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Applied {
    /// It moved the order's status forward.
    Advanced,
    /// The view was already at this version or later: only its timeline entry and facts were
    /// (re)written.
    Stale,
}

/// The `orders_view` projection on one table.
#[derive(Clone, Debug)]
pub struct OrdersProjection {
    client: Client,
    table: String,
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn order_pk(order_id: &str) -> String {
    format!("order#{order_id}")
}

fn customer_pk(customer_id: &str) -> String {
    format!("customer#{customer_id}")
}

fn is_condition_failure(err: &SdkError<UpdateItemError>) -> bool {
    matches!(
        err.as_service_error(),
        Some(UpdateItemError::ConditionalCheckFailedException(_))
    )
}

fn time_of(event: &Envelope) -> String {
    event
        .time()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl OrdersProjection {
    /// The projection writing to `table` (keys `pk` S, `sk` S).
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        OrdersProjection {
            client,
            table: table.into(),
        }
    }

    /// Whether the projection reads this event type.
    pub fn wants(event: &Envelope) -> bool {
        matches!(
            event.event_type(),
            types::ORDER_PLACED | types::ORDER_CANCELLED
        )
    }

    /// Apply one order event (already upcast). Idempotent and order-insensitive; see the module
    /// docs.
    pub async fn apply(&self, event: &Envelope) -> Result<Applied, ProjectionError> {
        let version = event
            .aggregate_version()
            .ok_or(ProjectionError::Invalid {
                field: "aggregateversion",
                reason: "is missing; orders_view orders an order's events by it (events from the event store carry it)".into(),
            })?;
        let order_id = event.subject().unwrap_or_default().to_string();
        validate_order_id(&order_id).map_err(|e| ProjectionError::Invalid {
            field: "subject",
            reason: e.to_string(),
        })?;
        let (status, facts) = self.facts(event)?;
        let pk = order_pk(&order_id);

        // 1. The timeline entry: keyed by version, so a redelivery rewrites the same item.
        let mut entry = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(attr::PK, s(&pk))
            .item(attr::SK, s(format!("event#{version:010}")))
            .item(attr::VERSION, n(version))
            .item(attr::TYPE, s(event.event_type()))
            .item(attr::EVENT_ID, s(event.id()))
            .item(attr::TIME, s(time_of(event)))
            .item(attr::CORRELATION_ID, s(event.correlation_id()));
        if let Some((_, reason)) = facts.iter().find(|(name, _)| *name == attr::CANCEL_REASON) {
            entry = entry.item(attr::CANCEL_REASON, reason.clone());
        }
        entry.send().await.map_err(persistence)?;

        // 2. Immutable facts: the same values whenever they are written.
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(attr::PK, s(&pk))
            .key(attr::SK, s(SUMMARY));
        let mut sets = vec!["#orderId = :orderId".to_string()];
        update = update
            .expression_attribute_names("#orderId", attr::ORDER_ID)
            .expression_attribute_values(":orderId", s(&order_id));
        for (name, value) in &facts {
            sets.push(format!("#{name} = :{name}"));
            update = update
                .expression_attribute_names(format!("#{name}"), *name)
                .expression_attribute_values(format!(":{name}"), value.clone());
        }
        update
            .update_expression(format!("SET {}", sets.join(", ")))
            .send()
            .await
            .map_err(persistence)?;

        // 3. The status, only forward.
        let advanced = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(attr::PK, s(&pk))
            .key(attr::SK, s(SUMMARY))
            .update_expression("SET #status = :status, #version = :v, #updatedAt = :t")
            .condition_expression("attribute_not_exists(#version) OR #version < :v")
            .expression_attribute_names("#status", attr::STATUS)
            .expression_attribute_names("#version", attr::VERSION)
            .expression_attribute_names("#updatedAt", attr::UPDATED_AT)
            .expression_attribute_values(":status", s(status))
            .expression_attribute_values(":v", n(version))
            .expression_attribute_values(":t", s(time_of(event)))
            .send()
            .await;
        let applied = match advanced {
            Ok(_) => Applied::Advanced,
            Err(err) if is_condition_failure(&err) => Applied::Stale,
            Err(err) => return Err(persistence(err)),
        };

        // 4. The customer's listing mirrors the summary as it is now.
        self.mirror(&pk).await?;
        Ok(applied)
    }

    /// The status an event sets and the immutable facts it carries.
    fn facts(&self, event: &Envelope) -> Result<(&'static str, Facts), ProjectionError> {
        let invalid = |e: crate::envelope::ValidationError| ProjectionError::Invalid {
            field: e.field(),
            reason: e.to_string(),
        };
        match event.event_type() {
            types::ORDER_PLACED => {
                let placed: OrderPlaced = event.data_as().map_err(invalid)?;
                let items = placed
                    .items
                    .iter()
                    .map(|item| {
                        AttributeValue::M(HashMap::from([
                            ("sku".to_string(), s(&item.sku)),
                            ("quantity".to_string(), n(item.quantity)),
                            ("unitPrice".to_string(), n(item.unit_price)),
                        ]))
                    })
                    .collect();
                Ok((
                    "placed",
                    vec![
                        (attr::CUSTOMER_ID, s(&placed.customer.id)),
                        (attr::TOTAL, n(placed.total)),
                        (attr::CURRENCY, s(&placed.currency)),
                        (attr::ITEMS, AttributeValue::L(items)),
                        (attr::PLACED_AT, s(time_of(event))),
                    ],
                ))
            }
            types::ORDER_CANCELLED => {
                let cancelled: OrderCancelled = event.data_as().map_err(invalid)?;
                Ok((
                    "cancelled",
                    vec![
                        (attr::CANCEL_REASON, s(cancelled.reason)),
                        (attr::CANCELLED_AT, s(time_of(event))),
                    ],
                ))
            }
            other => Err(ProjectionError::Invalid {
                field: "type",
                reason: format!(
                    "is \"{other}\"; orders_view projects order_placed and order_cancelled"
                ),
            }),
        }
    }

    async fn mirror(&self, pk: &str) -> Result<(), ProjectionError> {
        let summary = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(attr::PK, s(pk))
            .key(attr::SK, s(SUMMARY))
            .consistent_read(true)
            .send()
            .await
            .map_err(persistence)?;
        let Some(item) = summary.item else {
            return Ok(());
        };
        let get = |name: &str| item.get(name).cloned();
        let (Some(customer), Some(placed_at), Some(_), Some(order_id)) = (
            get(attr::CUSTOMER_ID),
            get(attr::PLACED_AT),
            get(attr::VERSION),
            get(attr::ORDER_ID),
        ) else {
            // The order_placed event has not been projected yet; it will mirror when it is.
            return Ok(());
        };
        let (Ok(customer_id), Ok(placed)) = (customer.as_s(), placed_at.as_s()) else {
            return Ok(());
        };
        let mut put = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(attr::PK, s(customer_pk(customer_id)))
            .key(
                attr::SK,
                s(format!(
                    "order#{placed}#{}",
                    order_id.as_s().map(String::as_str).unwrap_or_default()
                )),
            )
            .condition_expression("attribute_not_exists(#version) OR #version <= :version");
        let mut sets = Vec::new();
        for name in [
            attr::ORDER_ID,
            attr::STATUS,
            attr::VERSION,
            attr::TOTAL,
            attr::CURRENCY,
            attr::PLACED_AT,
        ] {
            if let Some(value) = get(name) {
                sets.push(format!("#{name} = :{name}"));
                put = put
                    .expression_attribute_names(format!("#{name}"), name)
                    .expression_attribute_values(format!(":{name}"), value);
            }
        }
        match put
            .update_expression(format!("SET {}", sets.join(", ")))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            // A mirror of a later version got there first.
            Err(err) if is_condition_failure(&err) => Ok(()),
            Err(err) => Err(persistence(err)),
        }
    }

    /// Empty the view and fold every event of `store` into it again. `progress` is called with
    /// (items read, total items) as the rebuild goes. Returns the number of events applied.
    ///
    /// Run it while the projector is paused (or into a fresh table): events projected during the
    /// reset would be deleted with the rest.
    pub async fn rebuild(
        &self,
        store: &EventStore,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<u64, ProjectionError> {
        let total = store.count().await?;
        self.clear().await?;
        let mut read = 0u64;
        let mut applied = 0u64;
        progress(0, total);
        let mut pages = store.scan();
        while let Some((events, items)) = pages.next_page().await? {
            let wanted: Vec<Envelope> = events
                .into_iter()
                .map(|stored| stored.event)
                .filter(Self::wants)
                .collect();
            // Order-insensitive by design, so a page's events can be applied concurrently.
            futures::stream::iter(wanted.iter().map(|event| self.apply(event)))
                .buffer_unordered(8)
                .try_collect::<Vec<Applied>>()
                .await?;
            applied += wanted.len() as u64;
            read += items as u64;
            progress(read.min(total.max(read)), total.max(read));
        }
        Ok(applied)
    }

    /// Delete every item of the view.
    pub async fn clear(&self) -> Result<u64, ProjectionError> {
        let mut deleted = 0u64;
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .projection_expression("#pk, #sk")
                .expression_attribute_names("#pk", attr::PK)
                .expression_attribute_names("#sk", attr::SK)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(persistence)?;
            for chunk in page.items().chunks(25) {
                let mut requests: Vec<WriteRequest> = chunk
                    .iter()
                    .filter_map(|key| {
                        DeleteRequest::builder()
                            .set_key(Some(key.clone()))
                            .build()
                            .ok()
                            .map(|d| WriteRequest::builder().delete_request(d).build())
                    })
                    .collect();
                deleted += requests.len() as u64;
                // BatchWriteItem may hand back unprocessed requests under load: send them again.
                while !requests.is_empty() {
                    let out = self
                        .client
                        .batch_write_item()
                        .request_items(&self.table, requests)
                        .send()
                        .await
                        .map_err(persistence)?;
                    requests = out
                        .unprocessed_items
                        .and_then(|mut u| u.remove(&self.table))
                        .unwrap_or_default();
                }
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(deleted);
            }
        }
    }

    /// One order with its timeline, or `None`.
    pub async fn order(&self, order_id: &str) -> Result<Option<OrderView>, ProjectionError> {
        let mut items = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#pk = :pk")
                .expression_attribute_names("#pk", attr::PK)
                .expression_attribute_values(":pk", s(order_pk(order_id)))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(persistence)?;
            items.extend(page.items().iter().cloned());
            start = page.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
        let Some(summary) = items
            .iter()
            .find(|i| text(i, attr::SK).as_deref() == Some(SUMMARY))
        else {
            return Ok(None);
        };
        let mut timeline: Vec<TimelineEntry> = items
            .iter()
            .filter(|i| text(i, attr::SK).is_some_and(|sk| sk.starts_with("event#")))
            .map(|i| TimelineEntry {
                version: number(i, attr::VERSION).unwrap_or_default(),
                event_type: text(i, attr::TYPE).unwrap_or_default(),
                event_id: text(i, attr::EVENT_ID).unwrap_or_default(),
                time: text(i, attr::TIME).unwrap_or_default(),
                correlation_id: text(i, attr::CORRELATION_ID).unwrap_or_default(),
            })
            .collect();
        timeline.sort_by_key(|e| e.version);
        let items = summary
            .get(attr::ITEMS)
            .and_then(|l| l.as_l().ok())
            .map(|lines| {
                lines
                    .iter()
                    .filter_map(|line| line.as_m().ok())
                    .map(|line| LineItem {
                        sku: text(line, "sku").unwrap_or_default(),
                        quantity: number(line, "quantity").unwrap_or_default() as u32,
                        unit_price: number(line, "unitPrice").unwrap_or_default(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Some(OrderView {
            order_id: text(summary, attr::ORDER_ID).unwrap_or_else(|| order_id.to_string()),
            status: text(summary, attr::STATUS).unwrap_or_default(),
            version: number(summary, attr::VERSION).unwrap_or_default(),
            customer_id: text(summary, attr::CUSTOMER_ID),
            total: number(summary, attr::TOTAL),
            currency: text(summary, attr::CURRENCY),
            items,
            placed_at: text(summary, attr::PLACED_AT),
            cancelled_at: text(summary, attr::CANCELLED_AT),
            cancel_reason: text(summary, attr::CANCEL_REASON),
            updated_at: text(summary, attr::UPDATED_AT),
            timeline,
        }))
    }

    /// A customer's orders, newest first, `limit` at a time; pass the returned `next` to continue.
    pub async fn customer_orders(
        &self,
        customer_id: &str,
        limit: u32,
        next: Option<&str>,
    ) -> Result<CustomerOrders, ProjectionError> {
        let start = match next {
            Some(token) => Some(decode_token(token, &customer_pk(customer_id))?),
            None => None,
        };
        let page = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", attr::PK)
            .expression_attribute_values(":pk", s(customer_pk(customer_id)))
            .scan_index_forward(false)
            .limit(limit.clamp(1, MAX_PAGE) as i32)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(persistence)?;
        let orders = page
            .items()
            .iter()
            .map(|i| CustomerOrder {
                order_id: text(i, attr::ORDER_ID).unwrap_or_default(),
                status: text(i, attr::STATUS).unwrap_or_default(),
                version: number(i, attr::VERSION).unwrap_or_default(),
                total: number(i, attr::TOTAL).unwrap_or_default(),
                currency: text(i, attr::CURRENCY).unwrap_or_default(),
                placed_at: text(i, attr::PLACED_AT).unwrap_or_default(),
            })
            .collect();
        let next = page
            .last_evaluated_key
            .as_ref()
            .and_then(|key| text(key, attr::SK))
            .map(|sk| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sk));
        Ok(CustomerOrders {
            customer_id: customer_id.to_string(),
            orders,
            next,
        })
    }
}

/// Most orders one listing page returns.
pub const MAX_PAGE: u32 = 100;

fn decode_token(token: &str, pk: &str) -> Result<HashMap<String, AttributeValue>, ProjectionError> {
    let sk = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .filter(|sk| sk.starts_with("order#"))
        .ok_or(ProjectionError::Invalid {
            field: "next",
            reason: "is not a token this listing returned".into(),
        })?;
    Ok(HashMap::from([
        (attr::PK.to_string(), s(pk)),
        (attr::SK.to_string(), s(sk)),
    ]))
}

fn persistence<E: std::error::Error + 'static>(err: SdkError<E>) -> ProjectionError
where
    SdkError<E>: std::error::Error,
{
    ProjectionError::Persistence(error_text(&err))
}

fn text(item: &HashMap<String, AttributeValue>, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

fn number(item: &HashMap<String, AttributeValue>, name: &str) -> Option<u64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

/// One order as the query function answers it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderView {
    /// Order id.
    pub order_id: String,
    /// `placed` / `cancelled`.
    pub status: String,
    /// The aggregate version the status reflects.
    pub version: u64,
    /// Customer (known once `order_placed` is projected).
    pub customer_id: Option<String>,
    /// Total, minor units.
    pub total: Option<u64>,
    /// ISO 4217.
    pub currency: Option<String>,
    /// Lines.
    pub items: Vec<LineItem>,
    /// When it was placed.
    pub placed_at: Option<String>,
    /// When it was cancelled.
    pub cancelled_at: Option<String>,
    /// Why.
    pub cancel_reason: Option<String>,
    /// Time of the event behind the current status.
    pub updated_at: Option<String>,
    /// Every event of the order, by version.
    pub timeline: Vec<TimelineEntry>,
}

/// One event in an order's timeline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TimelineEntry {
    /// Aggregate version.
    pub version: u64,
    /// Event type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Event id.
    pub event_id: String,
    /// Event time.
    pub time: String,
    /// Correlation id.
    pub correlation_id: String,
}

/// One line of a customer's listing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomerOrder {
    /// Order id.
    pub order_id: String,
    /// Status.
    pub status: String,
    /// Version.
    pub version: u64,
    /// Total.
    pub total: u64,
    /// Currency.
    pub currency: String,
    /// When placed.
    pub placed_at: String,
}

/// A page of a customer's orders.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomerOrders {
    /// Customer id.
    pub customer_id: String,
    /// Newest first.
    pub orders: Vec<CustomerOrder>,
    /// Pass as `?next=` for the following page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// The projector as a subscriber: events arrive through its SQS queue. No idempotency records are
/// needed — the projection is idempotent by construction.
pub struct Projector {
    projection: OrdersProjection,
}

impl Projector {
    /// A projector writing `projection`.
    pub fn new(projection: OrdersProjection) -> Self {
        Projector { projection }
    }
}

impl RecordHandler for Projector {
    fn name(&self) -> &'static str {
        "projector"
    }

    async fn process(
        &self,
        event: &Envelope,
        _deadline: SystemTime,
    ) -> Result<Delivery, RecordError> {
        if !OrdersProjection::wants(event) {
            return Ok(Delivery::Ignored);
        }
        match self.projection.apply(event).await {
            Ok(applied) => {
                let outcome = Outcome::new("projected").with_detail(json!({
                    "version": event.aggregate_version(),
                    "applied": applied,
                }));
                Ok(match applied {
                    Applied::Advanced => Delivery::Applied(outcome),
                    Applied::Stale => Delivery::Duplicate(outcome),
                })
            }
            Err(ProjectionError::Invalid { field, reason }) => Err(RecordError::Poison {
                field: field.to_string(),
                reason,
            }),
            Err(err) => Err(RecordError::Retry(err.to_string())),
        }
    }
}

/// Serve one query over HTTP (Function URL / API Gateway payload 2.0):
///
/// | request | answers |
/// |---|---|
/// | `GET /orders/{id}` | 200 [`OrderView`], 404 |
/// | `GET /customers/{id}/orders?limit=20&next=...` | 200 [`CustomerOrders`] |
pub async fn handle_query(projection: &OrdersProjection, payload: Value) -> Value {
    let request = match HttpRequest::from_payload(payload) {
        Ok(request) => request,
        Err(err) => return HttpResponse::error(400, "request", err).into_value(),
    };
    query(projection, &request).await.into_value()
}

async fn query(projection: &OrdersProjection, request: &HttpRequest) -> HttpResponse {
    if request.method != "GET" {
        return HttpResponse::error(
            405,
            "method",
            format!(
                "{} is not allowed; the query function only reads (GET)",
                request.method
            ),
        );
    }
    let segments = request.segments();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let answer = match segments.as_slice() {
        ["orders", order_id] => {
            if let Err(err) = validate_order_id(order_id) {
                return HttpResponse::error(400, err.field(), err);
            }
            match projection.order(order_id).await {
                Ok(Some(view)) => return HttpResponse::json(200, &view),
                Ok(None) => {
                    return HttpResponse::error(
                        404,
                        "orderId",
                        format!("order {order_id} is not in orders_view (yet)"),
                    )
                }
                Err(err) => Err(err),
            }
        }
        ["customers", customer_id, "orders"] => {
            let limit = match request.query.get("limit").map(|l| l.parse::<u32>()) {
                None => 20,
                Some(Ok(l)) if (1..=MAX_PAGE).contains(&l) => l,
                Some(_) => {
                    return HttpResponse::error(
                        400,
                        "limit",
                        format!("must be a whole number from 1 to {MAX_PAGE}"),
                    )
                }
            };
            projection
                .customer_orders(
                    customer_id,
                    limit,
                    request.query.get("next").map(String::as_str),
                )
                .await
                .map(|page| HttpResponse::json(200, &page))
        }
        _ => {
            return HttpResponse::error(
                404,
                "path",
                format!(
                    "nothing at {}; try GET /orders/{{id}} or GET /customers/{{id}}/orders",
                    request.path
                ),
            )
        }
    };
    match answer {
        Ok(response) => response,
        Err(ProjectionError::Invalid { field, reason }) => HttpResponse::error(400, field, reason),
        Err(err) => {
            tracing::error!(error = %err, "query failed");
            HttpResponse::error(503, "store", err)
        }
    }
}
