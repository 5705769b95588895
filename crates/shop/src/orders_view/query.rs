//! The queries `orders_view` answers: one order with its timeline, a customer's orders page by
//! page — as functions and over HTTP ([`OrdersQuery`]).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine;
use herald::aws::AwsError;
use herald::event_sourcing::projection::ProjectionError;
use herald::{HttpRequest, HttpResponse, HttpService};
use serde::{Deserialize, Serialize};

use super::{
    attr, customer_pk, number, order_pk, s, text, OrdersProjection, SUMMARY, TIMELINE_PREFIX,
};
use crate::events::{LineItem, MAX_CUSTOMER_ID_CHARS};
use crate::order::validate_order_id;

impl OrdersProjection {
    /// One order with its timeline, or `None`.
    pub async fn order(&self, order_id: &str) -> Result<Option<OrderView>, ProjectionError> {
        let Some(summary) = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(attr::PK, s(order_pk(order_id)))
            .key(attr::SK, s(SUMMARY))
            .send()
            .await
            .map_err(AwsError::new)?
            .item
        else {
            return Ok(None);
        };
        let summary = &summary;
        let mut timeline: Vec<TimelineEntry> = summary
            .iter()
            .filter_map(|(name, entry)| {
                let version = name.strip_prefix(TIMELINE_PREFIX)?.parse().ok()?;
                let entry = entry.as_m().ok()?;
                Some(TimelineEntry {
                    version,
                    event_type: text(entry, attr::TYPE).unwrap_or_default(),
                    event_id: text(entry, attr::EVENT_ID).unwrap_or_default(),
                    time: text(entry, attr::TIME).unwrap_or_default(),
                    correlation_id: text(entry, attr::CORRELATION_ID).unwrap_or_default(),
                })
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
            .map_err(AwsError::new)?;
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

/// Longest `next` token a listing hands out: base64 of `order#<time>#<order id>`, the id at most
/// [`MAX_ORDER_ID_CHARS`](crate::order::MAX_ORDER_ID_CHARS) characters. Longer is not ours.
pub const MAX_TOKEN_CHARS: usize = 256;

/// A client's `next` token back into the listing's start key. Anything this listing did not
/// hand out — too long, not base64, not `order#<RFC 3339 time>#<order id>` — is an error naming
/// `next` (a 400), never a key the database would refuse (a 503).
fn decode_token(token: &str, pk: &str) -> Result<HashMap<String, AttributeValue>, ProjectionError> {
    let invalid = |reason: String| ProjectionError::Invalid {
        field: "next",
        reason,
    };
    if token.len() > MAX_TOKEN_CHARS {
        return Err(invalid(format!(
            "is {} characters; a token this listing returns has at most {MAX_TOKEN_CHARS}",
            token.chars().count()
        )));
    }
    let sk = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .filter(|sk| {
            sk.strip_prefix("order#")
                .and_then(|rest| rest.rsplit_once('#'))
                .is_some_and(|(placed, order_id)| {
                    chrono::DateTime::parse_from_rfc3339(placed).is_ok()
                        && validate_order_id(order_id).is_ok()
                })
        })
        .ok_or_else(|| invalid("is not a token this listing returned".into()))?;
    Ok(HashMap::from([
        (attr::PK.to_string(), s(pk)),
        (attr::SK.to_string(), s(sk)),
    ]))
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

/// Serve one query over HTTP (Function URL / API Gateway payload 2.0):
///
/// | request | answers |
/// |---|---|
/// | `GET /orders/{id}` | 200 [`OrderView`], 404 |
/// | `GET /customers/{id}/orders?limit=20&next=...` | 200 [`CustomerOrders`] |
pub struct OrdersQuery {
    projection: OrdersProjection,
}

impl OrdersQuery {
    /// Queries on `projection`.
    pub fn new(projection: OrdersProjection) -> Self {
        OrdersQuery { projection }
    }
}

impl HttpService for OrdersQuery {
    fn name(&self) -> &'static str {
        "query"
    }

    async fn handle(&self, request: HttpRequest) -> HttpResponse {
        query(&self.projection, &request).await
    }
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
            // The id becomes a key (`customer#<id>`): one the database would refuse is a 400.
            let chars = customer_id.chars().count();
            if chars == 0 || chars > MAX_CUSTOMER_ID_CHARS {
                return HttpResponse::error(
                    400,
                    "customerId",
                    format!("is {chars} characters; it must be 1 to {MAX_CUSTOMER_ID_CHARS}"),
                );
            }
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

#[cfg(test)]
mod tests {
    use base64::Engine;
    use proptest::prelude::*;

    use super::*;

    fn encode(sk: &str) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sk)
    }

    #[test]
    fn a_token_the_listing_returned_decodes_to_its_key() {
        let sk = "order#2026-11-30T10:00:00.000Z#order-1";
        let key = decode_token(&encode(sk), "customer#c-1").unwrap();
        assert_eq!(key[attr::SK], s(sk));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

        /// Whatever a client sends as `next` decodes to a key of ours or is an error naming
        /// `next` — never a key DynamoDB would refuse (a 503).
        #[test]
        fn any_next_token_decodes_to_a_valid_key_or_names_next(
            token in prop_oneof![
                ".{0,300}",
                "[A-Za-z0-9_-]{0,400}",
                ".{0,200}".prop_map(|t| encode(&format!("order#{t}"))),
                ("[0-9T:.Z-]{0,30}", ".{0,200}").prop_map(|(time, id)| encode(&format!("order#{time}#{id}"))),
                (0usize..5000).prop_map(|n| encode(&format!("order#2026-11-30T10:00:00.000Z#{}", "o".repeat(n)))),
            ]
        ) {
            match decode_token(&token, "customer#c-1") {
                Ok(key) => {
                    let sk = key[attr::SK].as_s().unwrap();
                    prop_assert!(sk.starts_with("order#"));
                    // DynamoDB's sort key limit is 1024 bytes.
                    prop_assert!(sk.len() <= 1024, "{}", sk.len());
                }
                Err(ProjectionError::Invalid { field, .. }) => prop_assert_eq!(field, "next"),
                Err(other) => prop_assert!(false, "{other}"),
            }
        }
    }
}
