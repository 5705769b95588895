//! Payment: charges every `order_placed` through a [`PaymentGateway`] and announces the result
//! (`payment_succeeded` / `payment_failed`) back through the producer path; refunds the charge
//! of every order the order service cancels and announces `payment_refunded` (the compensating
//! effect, idempotent like the charge).
//!
//! Keyed mode: the charge carries an idempotency key (as real gateways accept): the order's, so
//! a redelivery — or the same order announced by two events — cannot charge twice, and the
//! gateway's answer says whether it charged now or answers an earlier charge again. No
//! idempotency record is written: the ledger entry is the proof (one write per order instead of
//! a claim, the charge and a result). A refund names the same key. A cancellation may overtake
//! its order's charge (different messages, concurrent batches): the refund then leaves a
//! `cancelled` mark under the key, and the charge arriving after it declines.

use std::collections::HashMap;
use std::future::Future;

use aws_config::SdkConfig;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{SecondsFormat, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::events::{
    sources, types, OrderCancelled, OrderPlaced, PaymentFailed, PaymentRefunded, PaymentSucceeded,
};
use herald::aws::{env, AwsError, MissingEnv};
use herald::envelope::Envelope;
use herald::idempotency::{put_once, text, PutOnce};
use herald::subscriber::{HandlerError, KeyedHandler, KeyedOutcome, Outcome};

/// A charge to make.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChargeRequest {
    /// The same key always yields the same charge.
    pub idempotency_key: String,
    /// The order paid for.
    pub order_id: String,
    /// Minor units.
    pub amount: u64,
    /// ISO 4217.
    pub currency: String,
    /// The payment-method token.
    pub token: String,
}

/// The gateway's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Charge {
    /// Money moved.
    Succeeded {
        /// The gateway's id of the payment.
        payment_id: String,
    },
    /// Declined, with the gateway's reason.
    Declined {
        /// Why.
        reason: String,
    },
}

/// A refund to make: the charge made under `idempotency_key`, given back in full.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RefundRequest {
    /// The charge's key.
    pub idempotency_key: String,
    /// The order.
    pub order_id: String,
    /// Why.
    pub reason: String,
}

/// The gateway's answer to a refund.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refund {
    /// The charge was given back (now, or by an earlier request with the same key).
    Refunded {
        /// The charge's payment id.
        payment_id: String,
        /// Minor units.
        amount: u64,
        /// ISO 4217.
        currency: String,
    },
    /// Nothing was charged under the key (declined, or not charged yet: then never will be).
    NothingCharged,
}

/// The idempotency key of an order's charge: one charge per order, whichever event announces it.
pub fn charge_key(order_id: &str) -> String {
    format!("order#{order_id}")
}

/// A gateway's answer, and whether the request did something now (`false`: an earlier request
/// under the same key did, and this is its answer again).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer<T> {
    /// The answer.
    pub value: T,
    /// Whether it happened now.
    pub now: bool,
}

impl<T> Answer<T> {
    /// Done by this request.
    pub fn now(value: T) -> Self {
        Answer { value, now: true }
    }

    /// Done by an earlier request under the same key.
    pub fn before(value: T) -> Self {
        Answer { value, now: false }
    }
}

/// The payment gateway port.
pub trait PaymentGateway: Send + Sync {
    /// Charge once per idempotency key. The same key with another amount or currency is
    /// refused (poison): it names another charge.
    fn charge(
        &self,
        request: &ChargeRequest,
    ) -> impl Future<Output = Result<Answer<Charge>, HandlerError>> + Send;

    /// Refund the charge made under the request's key, once; a charge that comes after the
    /// refund is declined.
    fn refund(
        &self,
        request: &RefundRequest,
    ) -> impl Future<Output = Result<Answer<Refund>, HandlerError>> + Send;
}

/// Most a single charge may be (minor units); larger ones are declined.
pub const CHARGE_LIMIT: u64 = 1_000_000;

/// A gateway that keeps its ledger in a DynamoDB table (partition key `paymentId`, one item per
/// idempotency key, `status` `succeeded` / `declined` / `refunded` / `cancelled`) — the
/// stand-in for a card processor in the example, with a processor's rules: `tok_declined` and
/// amounts over [`CHARGE_LIMIT`] are declined; the idempotency key makes retries safe.
#[derive(Clone, Debug)]
pub struct LedgerGateway {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl LedgerGateway {
    /// A ledger in `table`.
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        LedgerGateway {
            client,
            table: table.into(),
        }
    }
}

/// The ledger's payment id for an idempotency key.
fn payment_id(idempotency_key: &str) -> String {
    format!(
        "pay_{}",
        Uuid::new_v5(&Uuid::NAMESPACE_OID, idempotency_key.as_bytes()).simple()
    )
}

impl LedgerGateway {
    /// The ledger item under `payment_id`, read consistently.
    async fn item(
        &self,
        payment_id: &str,
    ) -> Result<Option<std::collections::HashMap<String, AttributeValue>>, HandlerError> {
        Ok(self
            .client
            .get_item()
            .table_name(&self.table)
            .key("paymentId", AttributeValue::S(payment_id.into()))
            .consistent_read(true)
            .send()
            .await
            .map_err(AwsError::new)?
            .item)
    }
}

impl PaymentGateway for LedgerGateway {
    async fn charge(&self, request: &ChargeRequest) -> Result<Answer<Charge>, HandlerError> {
        let declined = if request.token == "tok_declined" {
            Some("card declined by issuer".to_string())
        } else if request.amount > CHARGE_LIMIT {
            Some(format!(
                "amount {} exceeds the limit of {CHARGE_LIMIT}",
                request.amount
            ))
        } else {
            None
        };
        let payment_id = payment_id(&request.idempotency_key);
        let s = |v: &str| AttributeValue::S(v.to_string());
        let status = if declined.is_some() {
            "declined"
        } else {
            "succeeded"
        };
        let mut item = HashMap::from([
            ("paymentId".to_string(), s(&payment_id)),
            ("orderId".to_string(), s(&request.order_id)),
            (
                "amount".to_string(),
                AttributeValue::N(request.amount.to_string()),
            ),
            ("currency".to_string(), s(&request.currency)),
            ("status".to_string(), s(status)),
            (
                "createdAt".to_string(),
                s(&Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)),
            ),
        ]);
        if let Some(reason) = &declined {
            item.insert("reason".into(), s(reason));
        }
        // Classified errors: throttling and outages redelivered, a request DynamoDB refuses for
        // good dead-lettered with its reason.
        let old = match put_once(&self.client, &self.table, "paymentId", item).await? {
            PutOnce::Written => {
                return Ok(Answer::now(match declined {
                    Some(reason) => Charge::Declined { reason },
                    None => Charge::Succeeded { payment_id },
                }))
            }
            PutOnce::Existing(old) => old,
        };
        // Something is under this key already: the answer it records, no second charge.
        if text(&old, "status") == "cancelled" {
            // The refund only marked the key: the first charge to find the mark declines now
            // (and notes it on the mark), a redelivery of it finds the note.
            let first = self
                .client
                .update_item()
                .table_name(&self.table)
                .key("paymentId", s(&payment_id))
                .update_expression("SET declinedAt = :at")
                .condition_expression("#s = :cancelled AND attribute_not_exists(declinedAt)")
                .expression_attribute_names("#s", "status")
                .expression_attribute_values(":cancelled", s("cancelled"))
                .expression_attribute_values(
                    ":at",
                    s(&Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)),
                )
                .send()
                .await;
            let now = match first {
                Ok(_) => true,
                Err(SdkError::ServiceError(e))
                    if e.err().is_conditional_check_failed_exception() =>
                {
                    false
                }
                Err(err) => return Err(AwsError::new(err).into()),
            };
            let declined = Charge::Declined {
                reason: "the order was cancelled before it was charged".into(),
            };
            return Ok(if now {
                Answer::now(declined)
            } else {
                Answer::before(declined)
            });
        }
        let amount = old.get("amount").and_then(|v| v.as_n().ok());
        if amount != Some(&request.amount.to_string()) || text(&old, "currency") != request.currency
        {
            return Err(HandlerError::Poison {
                field: "data.total".into(),
                reason: format!(
                    "order {} was charged {} {} under its key; this event asks {} {}: the same \
                     order with another payload",
                    request.order_id,
                    amount.map(String::as_str).unwrap_or("nothing"),
                    text(&old, "currency"),
                    request.amount,
                    request.currency
                ),
            });
        }
        Ok(Answer::before(match text(&old, "status") {
            "declined" => Charge::Declined {
                reason: text(&old, "reason").to_string(),
            },
            // Charged (and maybe refunded since): the charge's answer again.
            _ => Charge::Succeeded { payment_id },
        }))
    }

    async fn refund(&self, request: &RefundRequest) -> Result<Answer<Refund>, HandlerError> {
        let payment_id = payment_id(&request.idempotency_key);
        let s = |v: &str| AttributeValue::S(v.to_string());
        // Two rounds at most: a charge landing between the refund's update and its mark is
        // refunded on the second.
        for _ in 0..2 {
            let refunded = self
                .client
                .update_item()
                .table_name(&self.table)
                .key("paymentId", s(&payment_id))
                .update_expression("SET #s = :refunded, refundReason = :reason, refundedAt = :at")
                .condition_expression("#s = :succeeded")
                .expression_attribute_names("#s", "status")
                .expression_attribute_values(":refunded", s("refunded"))
                .expression_attribute_values(":succeeded", s("succeeded"))
                .expression_attribute_values(":reason", s(&request.reason))
                .expression_attribute_values(
                    ":at",
                    s(&Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)),
                )
                .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
                .send()
                .await;
            let (item, now) = match refunded {
                Ok(out) => (out.attributes.unwrap_or_default(), true),
                Err(SdkError::ServiceError(e))
                    if e.err().is_conditional_check_failed_exception() =>
                {
                    match self.item(&payment_id).await? {
                        Some(item) => (item, false),
                        None => {
                            // Not charged yet: mark the key so the charge declines when it comes.
                            let marked = self
                                .client
                                .put_item()
                                .table_name(&self.table)
                                .item("paymentId", s(&payment_id))
                                .item("orderId", s(&request.order_id))
                                .item("status", s("cancelled"))
                                .item("reason", s(&request.reason))
                                .condition_expression("attribute_not_exists(paymentId)")
                                .send()
                                .await;
                            match marked {
                                Ok(_) => return Ok(Answer::now(Refund::NothingCharged)),
                                Err(SdkError::ServiceError(e))
                                    if e.err().is_conditional_check_failed_exception() =>
                                {
                                    continue
                                }
                                Err(err) => return Err(AwsError::new(err).into()),
                            }
                        }
                    }
                }
                Err(err) => return Err(AwsError::new(err).into()),
            };
            // Nothing to refund of a declined charge: that answer is this request's.
            let now = now || text(&item, "status") == "declined";
            let value = match text(&item, "status") {
                "refunded" => Refund::Refunded {
                    payment_id,
                    amount: item
                        .get("amount")
                        .and_then(|v| v.as_n().ok())
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0),
                    currency: text(&item, "currency").to_string(),
                },
                _ => Refund::NothingCharged,
            };
            return Ok(Answer { value, now });
        }
        Err(HandlerError::Retry(format!(
            "the charge of order {} kept changing during its refund",
            request.order_id
        )))
    }
}

/// The payment subscriber.
#[derive(Clone, Debug)]
pub struct Payment<G> {
    gateway: G,
}

impl<G> Payment<G> {
    /// Charge through `gateway`.
    pub fn new(gateway: G) -> Self {
        Payment { gateway }
    }
}

impl Payment<LedgerGateway> {
    /// A ledger gateway on `TABLE_NAME` (the subscriber block's own table).
    pub fn from_env(aws: &SdkConfig) -> Result<Self, MissingEnv> {
        Ok(Payment::new(LedgerGateway::new(
            herald::aws::dynamodb(aws),
            env("TABLE_NAME")?,
        )))
    }
}

impl<G: PaymentGateway> Payment<G> {
    /// The compensating effect: give back what the cancelled order was charged.
    async fn refund(&self, event: &Envelope) -> Result<KeyedOutcome, HandlerError> {
        let cancelled: OrderCancelled = event.data_as()?;
        let request = RefundRequest {
            idempotency_key: charge_key(&cancelled.order_id),
            order_id: cancelled.order_id.clone(),
            reason: cancelled.reason.clone(),
        };
        let answer = self.gateway.refund(&request).await?;
        let outcome = match answer.value {
            Refund::Refunded {
                payment_id,
                amount,
                currency,
            } => {
                let follow_up =
                    announcement(event, types::PAYMENT_REFUNDED, &request.idempotency_key)
                        .data(PaymentRefunded {
                            order_id: cancelled.order_id,
                            payment_id: payment_id.clone(),
                            amount,
                            currency,
                            reason: cancelled.reason,
                        })
                        .build()?;
                Outcome::new("refunded")
                    .with_detail(serde_json::json!({ "paymentId": payment_id, "amount": amount }))
                    .emitting(follow_up)
            }
            Refund::NothingCharged => Outcome::new("nothing_to_refund"),
        };
        Ok(keyed(answer.now, outcome))
    }
}

impl<G: PaymentGateway> KeyedHandler for Payment<G> {
    fn name(&self) -> &'static str {
        "payment"
    }

    fn wants(&self, event: &Envelope) -> bool {
        match event.event_type() {
            types::ORDER_PLACED => true,
            // Only the order service's cancellations are refunded: they carry the aggregate
            // version, which the producer refuses from clients.
            types::ORDER_CANCELLED => event.aggregate_version().is_some(),
            _ => false,
        }
    }

    async fn handle(&self, event: &Envelope) -> Result<KeyedOutcome, HandlerError> {
        if event.event_type() == types::ORDER_CANCELLED {
            return self.refund(event).await;
        }
        let order: OrderPlaced = event.data_as()?;
        order.validate()?;
        let request = ChargeRequest {
            idempotency_key: charge_key(&order.order_id),
            order_id: order.order_id.clone(),
            amount: order.total,
            currency: order.currency.clone(),
            token: order.payment_token.clone(),
        };
        let answer = self.gateway.charge(&request).await?;
        let outcome = match answer.value {
            Charge::Succeeded { payment_id } => {
                let follow_up =
                    announcement(event, types::PAYMENT_SUCCEEDED, &request.idempotency_key)
                        .data(PaymentSucceeded {
                            order_id: order.order_id,
                            payment_id: payment_id.clone(),
                            amount: order.total,
                            currency: order.currency,
                            customer: order.customer,
                        })
                        .build()?;
                Outcome::new("charged")
                    .with_detail(
                        serde_json::json!({ "paymentId": payment_id, "amount": request.amount }),
                    )
                    .emitting(follow_up)
            }
            Charge::Declined { reason } => {
                let follow_up =
                    announcement(event, types::PAYMENT_FAILED, &request.idempotency_key)
                        .data(PaymentFailed {
                            order_id: order.order_id,
                            amount: order.total,
                            currency: order.currency,
                            reason: reason.clone(),
                        })
                        .build()?;
                Outcome::new("declined")
                    .with_detail(serde_json::json!({ "reason": reason }))
                    .emitting(follow_up)
            }
        };
        Ok(keyed(answer.now, outcome))
    }
}

/// A follow-up about the charge under `key`, identified by the charge rather than by the event
/// that asked for it: every event about one order's charge (a redelivery, a second announcement
/// of the order, an event id reused for it) yields the same announcement, which the next hops
/// deduplicate; an event id reused for another order yields that order's own.
fn announcement(
    event: &Envelope,
    event_type: &str,
    key: &str,
) -> herald::envelope::EnvelopeBuilder {
    let id = Uuid::new_v5(
        &Uuid::NAMESPACE_OID,
        format!("{}|{key}|{event_type}", sources::PAYMENT).as_bytes(),
    );
    event
        .follow_up(event_type, sources::PAYMENT)
        .id(id.to_string())
}

/// A gateway's answer as the subscriber's: new, or a duplicate's (its follow-ups go out again,
/// with the same ids).
fn keyed(now: bool, outcome: Outcome) -> KeyedOutcome {
    if now {
        KeyedOutcome::New(outcome)
    } else {
        KeyedOutcome::Existing(outcome)
    }
}
