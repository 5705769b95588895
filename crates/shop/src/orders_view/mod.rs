//! `orders_view`: the read side of the example's CQRS split, and the queries it serves.
//!
//! The projector folds order events into a DynamoDB table shaped for the two questions users ask
//! — "what is going on with order X?" and "what are customer C's orders?" — one key each:
//!
//! | item | `pk` | `sk` | holds |
//! |---|---|---|---|
//! | summary | `order#<id>` | `summary` | status, version, customer, lines, total, times, and the timeline: one `event#<version, 10 digits>` attribute per event |
//! | listing | `customer#<id>` | `order#<placedAt>#<orderId>` | status, total (newest first) |
//!
//! Two writes per event (the table's write quota is one of the pipeline's walls): the summary,
//! then the listing it returns (`ALL_NEW`), without reading it back.
//!
//! Delivery is at-least-once and may be out of order (a standard queue, concurrent batches), so
//! every write is either idempotent and order-free, or conditional on the aggregate version:
//! - an event's timeline entry and immutable facts (an order's lines, a cancellation's reason)
//!   are the same whenever they are written: applying them twice or late changes nothing;
//! - the status moves only forward: the summary's write sets it `IF attribute_not_exists(version)
//!   OR version < :v`; a stale event fails the condition, writes its entry and facts alone, and
//!   is counted, not applied;
//! - the customer listing copies the summary once the order's customer is known, with the same
//!   kind of condition (`version <= :v`).
//!
//! So any delivery order, with any duplicates, ends in the same items — which is also why a
//! rebuild (`shop rebuild orders_view`) may replay the store's pages in any order.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, ReturnValue, WriteRequest};
use aws_sdk_dynamodb::Client;
use herald::aws::AwsError;
use herald::event_sourcing::projection::{Applied, Projection, ProjectionError};
use herald::{Envelope, ValidationError};

use crate::events::{types, OrderCancelled, OrderPlaced};
use crate::order::validate_order_id;

mod query;

pub use query::{
    CustomerOrder, CustomerOrders, OrderView, OrdersQuery, TimelineEntry, MAX_PAGE, MAX_TOKEN_CHARS,
};

/// The projection's name (for `shop rebuild orders_view`).
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

pub(crate) const SUMMARY: &str = "summary";

/// The summary's attribute holding the timeline entry of the event at `version`.
pub(crate) fn timeline_attribute(version: u64) -> String {
    format!("{TIMELINE_PREFIX}{version:010}")
}

/// What the timeline entries' attribute names start with.
pub(crate) const TIMELINE_PREFIX: &str = "event#";

/// Attribute name → value: what an event says that never changes.
type Facts = Vec<(&'static str, AttributeValue)>;

/// The `orders_view` projection on one table.
#[derive(Clone, Debug)]
pub struct OrdersProjection {
    client: Client,
    table: String,
}

pub(crate) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub(crate) fn order_pk(order_id: &str) -> String {
    format!("order#{order_id}")
}

pub(crate) fn customer_pk(customer_id: &str) -> String {
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
    /// The projection on `TABLE_NAME` (the projector's and the query function's table).
    pub fn from_env(aws: &aws_config::SdkConfig) -> Result<Self, herald::aws::MissingEnv> {
        Ok(OrdersProjection::new(
            herald::aws::dynamodb(aws),
            herald::aws::env("TABLE_NAME")?,
        ))
    }

    /// The projection writing to `table` (keys `pk` S, `sk` S).
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        OrdersProjection {
            client,
            table: table.into(),
        }
    }

    /// Whether the projection reads this event: the order service's order events, which carry
    /// their version in the aggregate (what the view orders by). Orders submitted straight to
    /// the producer carry none and are no order service's (its subscription filters them out;
    /// a rebuild from the archive, which holds both, passes over them here).
    pub fn wants_type(event: &Envelope) -> bool {
        matches!(
            event.event_type(),
            types::ORDER_PLACED | types::ORDER_CANCELLED
        ) && event.aggregate_version().is_some()
    }

    /// Apply one order event (already upcast). Idempotent and order-insensitive; see the module
    /// docs.
    async fn project(&self, event: &Envelope) -> Result<Applied, ProjectionError> {
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

        // The event's timeline entry, keyed by its version, and its immutable facts: the same
        // values whenever they are written, so a redelivery or a late event changes nothing.
        let mut entry = HashMap::from([
            (attr::TYPE.to_string(), s(event.event_type())),
            (attr::EVENT_ID.to_string(), s(event.id())),
            (attr::TIME.to_string(), s(time_of(event))),
            (attr::CORRELATION_ID.to_string(), s(event.correlation_id())),
        ]);
        if let Some((_, reason)) = facts.iter().find(|(name, _)| *name == attr::CANCEL_REASON) {
            entry.insert(attr::CANCEL_REASON.to_string(), reason.clone());
        }
        let mut sets = vec![
            "#orderId = :orderId".to_string(),
            "#entry = :entry".to_string(),
        ];
        let mut values = HashMap::from([
            (":orderId".to_string(), s(&order_id)),
            (":entry".to_string(), AttributeValue::M(entry)),
        ]);
        let mut names = HashMap::from([
            ("#orderId".to_string(), attr::ORDER_ID.to_string()),
            ("#entry".to_string(), timeline_attribute(version)),
        ]);
        for (name, value) in &facts {
            sets.push(format!("#{name} = :{name}"));
            names.insert(format!("#{name}"), name.to_string());
            values.insert(format!(":{name}"), value.clone());
        }

        // One write: the facts and the entry, and the status if the event is newer than the
        // one behind it (the status only moves forward).
        let mut forward = sets.clone();
        forward.push("#status = :status, #version = :v, #updatedAt = :t".into());
        let mut forward_names = names.clone();
        forward_names.extend([
            ("#status".to_string(), attr::STATUS.to_string()),
            ("#version".to_string(), attr::VERSION.to_string()),
            ("#updatedAt".to_string(), attr::UPDATED_AT.to_string()),
        ]);
        let mut forward_values = values.clone();
        forward_values.extend([
            (":status".to_string(), s(status)),
            (":v".to_string(), n(version)),
            (":t".to_string(), s(time_of(event))),
        ]);
        let advanced = self
            .summary_update(&pk, forward, forward_names, forward_values)
            .condition_expression("attribute_not_exists(#version) OR #version < :v")
            .send()
            .await;
        let (applied, summary) = match advanced {
            Ok(out) => (Applied::Advanced, out.attributes),
            // A newer event set the status: write the facts and the entry alone.
            Err(err) if is_condition_failure(&err) => {
                let out = self
                    .summary_update(&pk, sets, names, values)
                    .send()
                    .await
                    .map_err(AwsError::new)?;
                (Applied::Stale, out.attributes)
            }
            Err(err) => return Err(AwsError::new(err).into()),
        };

        // The customer's listing mirrors the summary as the write left it.
        if let Some(summary) = summary {
            self.mirror(&summary).await?;
        }
        Ok(applied)
    }

    /// An update of `pk`'s summary that returns the item as it leaves it.
    fn summary_update(
        &self,
        pk: &str,
        sets: Vec<String>,
        names: HashMap<String, String>,
        values: HashMap<String, AttributeValue>,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.table)
            .key(attr::PK, s(pk))
            .key(attr::SK, s(SUMMARY))
            .update_expression(format!("SET {}", sets.join(", ")))
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .return_values(ReturnValue::AllNew)
    }

    /// The status an event sets and the immutable facts it carries.
    fn facts(&self, event: &Envelope) -> Result<(&'static str, Facts), ProjectionError> {
        let invalid = |e: ValidationError| ProjectionError::Invalid {
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

    async fn mirror(&self, item: &HashMap<String, AttributeValue>) -> Result<(), ProjectionError> {
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
            Err(err) => Err(AwsError::new(err).into()),
        }
    }

    /// Delete every item of the view.
    async fn delete_all(&self) -> Result<u64, ProjectionError> {
        let mut deleted = 0u64;
        let mut pages = self
            .client
            .scan()
            .table_name(&self.table)
            .projection_expression("#pk, #sk")
            .expression_attribute_names("#pk", attr::PK)
            .expression_attribute_names("#sk", attr::SK)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(AwsError::new)?;
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
                        .map_err(AwsError::new)?;
                    requests = out
                        .unprocessed_items
                        .and_then(|mut u| u.remove(&self.table))
                        .unwrap_or_default();
                }
            }
        }
        Ok(deleted)
    }
}

impl Projection for OrdersProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn wants(&self, event: &Envelope) -> bool {
        OrdersProjection::wants_type(event)
    }

    async fn apply(&self, event: &Envelope) -> Result<Applied, ProjectionError> {
        self.project(event).await
    }

    async fn clear(&self) -> Result<u64, ProjectionError> {
        self.delete_all().await
    }
}

pub(crate) fn text(item: &HashMap<String, AttributeValue>, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

pub(crate) fn number(item: &HashMap<String, AttributeValue>, name: &str) -> Option<u64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}
