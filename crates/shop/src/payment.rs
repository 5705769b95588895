//! Payment: charges every `order_placed` through a [`PaymentGateway`] and announces the result
//! (`payment_succeeded` / `payment_failed`) back through the producer path.
//!
//! Claimed mode: a gateway is an external effect that cannot join a DynamoDB transaction, so the
//! event is claimed first. The charge also carries an idempotency key (as real gateways accept),
//! so even a claim taken over after a crash cannot charge twice.

use std::future::Future;

use aws_config::SdkConfig;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{SecondsFormat, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::events::{sources, types, OrderPlaced, PaymentFailed, PaymentSucceeded};
use herald::aws::{env, AwsError, MissingEnv};
use herald::envelope::Envelope;
use herald::subscriber::{ClaimedHandler, HandlerError, Outcome};

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

/// The payment gateway port.
pub trait PaymentGateway: Send + Sync {
    /// Charge once per idempotency key.
    fn charge(
        &self,
        request: &ChargeRequest,
    ) -> impl Future<Output = Result<Charge, HandlerError>> + Send;
}

/// Most a single charge may be (minor units); larger ones are declined.
pub const CHARGE_LIMIT: u64 = 1_000_000;

/// A gateway that keeps its ledger in a DynamoDB table (partition key `paymentId`) — the
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

impl PaymentGateway for LedgerGateway {
    async fn charge(&self, request: &ChargeRequest) -> Result<Charge, HandlerError> {
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
        let payment_id = format!(
            "pay_{}",
            Uuid::new_v5(&Uuid::NAMESPACE_OID, request.idempotency_key.as_bytes()).simple()
        );
        let s = |v: &str| AttributeValue::S(v.to_string());
        let status = if declined.is_some() {
            "declined"
        } else {
            "succeeded"
        };
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("paymentId", s(&payment_id))
            .item("orderId", s(&request.order_id))
            .item("amount", AttributeValue::N(request.amount.to_string()))
            .item("currency", s(&request.currency))
            .item("status", s(status))
            .item(
                "createdAt",
                s(&Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)),
            )
            .condition_expression("attribute_not_exists(paymentId)");
        if let Some(reason) = &declined {
            put = put.item("reason", s(reason));
        }
        match put.send().await {
            Ok(_) => {}
            // Already charged under this key: the same answer again, no second charge.
            Err(SdkError::ServiceError(e))
                if matches!(e.err(), PutItemError::ConditionalCheckFailedException(_)) => {}
            // Classified: throttling and outages redelivered, a request DynamoDB refuses for good
            // dead-lettered with its reason.
            Err(err) => return Err(AwsError::new(err).into()),
        }
        Ok(match declined {
            Some(reason) => Charge::Declined { reason },
            None => Charge::Succeeded { payment_id },
        })
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
    /// A ledger gateway on `PAYMENTS_TABLE`.
    pub fn from_env(aws: &SdkConfig) -> Result<Self, MissingEnv> {
        Ok(Payment::new(LedgerGateway::new(
            herald::aws::dynamodb(aws),
            env("PAYMENTS_TABLE")?,
        )))
    }
}

impl<G: PaymentGateway> ClaimedHandler for Payment<G> {
    fn name(&self) -> &'static str {
        "payment"
    }

    fn wants(&self, event: &Envelope) -> bool {
        event.event_type() == types::ORDER_PLACED
    }

    async fn handle(&self, event: &Envelope) -> Result<Outcome, HandlerError> {
        let order: OrderPlaced = event.data_as()?;
        order.validate()?;
        let request = ChargeRequest {
            idempotency_key: event.identity(),
            order_id: order.order_id.clone(),
            amount: order.total,
            currency: order.currency.clone(),
            token: order.payment_token.clone(),
        };
        match self.gateway.charge(&request).await? {
            Charge::Succeeded { payment_id } => {
                let follow_up = event
                    .follow_up(types::PAYMENT_SUCCEEDED, sources::PAYMENT)
                    .data(PaymentSucceeded {
                        order_id: order.order_id,
                        payment_id: payment_id.clone(),
                        amount: order.total,
                        currency: order.currency,
                        customer: order.customer,
                    })
                    .build()?;
                Ok(Outcome::new("charged")
                    .with_detail(
                        serde_json::json!({ "paymentId": payment_id, "amount": request.amount }),
                    )
                    .emitting(follow_up))
            }
            Charge::Declined { reason } => {
                let follow_up = event
                    .follow_up(types::PAYMENT_FAILED, sources::PAYMENT)
                    .data(PaymentFailed {
                        order_id: order.order_id,
                        amount: order.total,
                        currency: order.currency,
                        reason: reason.clone(),
                    })
                    .build()?;
                Ok(Outcome::new("declined")
                    .with_detail(serde_json::json!({ "reason": reason }))
                    .emitting(follow_up))
            }
        }
    }
}
