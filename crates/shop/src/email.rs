//! Email: sends an order confirmation for every `payment_succeeded`.
//!
//! Mail goes through a [`Mailer`]. herald's is an *outbox table* ([`OutboxMailer`]): one item per
//! message, which a mail relay (SES, an SMTP worker) drains. That keeps the function free of SES
//! identity verification, works the same on every emulator, and makes "sent exactly once"
//! countable. Claimed mode, like any external effect; the outbox write is also conditional on the
//! message id, so a claim taken over after a crash cannot queue the mail twice.

use std::future::Future;

use aws_config::SdkConfig;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{SecondsFormat, Utc};
use uuid::Uuid;

use crate::events::{types, PaymentSucceeded};
use herald::aws::{env, AwsError, MissingEnv};
use herald::envelope::Envelope;
use herald::subscriber::{ClaimedHandler, HandlerError, Outcome};

/// One email.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Email {
    /// Stable per causing event, so a resend is recognisable.
    pub message_id: String,
    /// Recipient.
    pub to: String,
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub body: String,
    /// The order it is about.
    pub order_id: String,
}

/// The mail port.
pub trait Mailer: Send + Sync {
    /// Send (or queue) one email; sending the same `message_id` twice sends it once.
    fn send(&self, email: &Email) -> impl Future<Output = Result<(), HandlerError>> + Send;
}

/// A [`Mailer`] writing to a DynamoDB outbox table (partition key `messageId`).
#[derive(Clone, Debug)]
pub struct OutboxMailer {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl OutboxMailer {
    /// An outbox in `table`.
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        OutboxMailer {
            client,
            table: table.into(),
        }
    }
}

impl Mailer for OutboxMailer {
    async fn send(&self, email: &Email) -> Result<(), HandlerError> {
        let s = |v: &str| AttributeValue::S(v.to_string());
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("messageId", s(&email.message_id))
            .item("to", s(&email.to))
            .item("subject", s(&email.subject))
            .item("body", s(&email.body))
            .item("orderId", s(&email.order_id))
            .item(
                "queuedAt",
                s(&Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)),
            )
            .condition_expression("attribute_not_exists(messageId)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e))
                if matches!(e.err(), PutItemError::ConditionalCheckFailedException(_)) =>
            {
                Ok(())
            }
            // Classified: throttling and outages redelivered, a request DynamoDB refuses for good
            // dead-lettered with its reason.
            Err(err) => Err(AwsError::new(err).into()),
        }
    }
}

/// The email subscriber.
#[derive(Clone, Debug)]
pub struct EmailSender<M> {
    mailer: M,
}

impl<M> EmailSender<M> {
    /// Send through `mailer`.
    pub fn new(mailer: M) -> Self {
        EmailSender { mailer }
    }
}

impl EmailSender<OutboxMailer> {
    /// An outbox on `OUTBOX_TABLE`.
    pub fn from_env(aws: &SdkConfig) -> Result<Self, MissingEnv> {
        Ok(EmailSender::new(OutboxMailer::new(
            herald::aws::dynamodb(aws),
            env("OUTBOX_TABLE")?,
        )))
    }
}

impl<M: Mailer> ClaimedHandler for EmailSender<M> {
    fn name(&self) -> &'static str {
        "email"
    }

    fn wants(&self, event: &Envelope) -> bool {
        event.event_type() == types::PAYMENT_SUCCEEDED
    }

    async fn handle(&self, event: &Envelope) -> Result<Outcome, HandlerError> {
        let payment: PaymentSucceeded = event.data_as()?;
        if !payment.customer.email.contains('@') {
            return Err(HandlerError::Poison {
                field: "data.customer.email".into(),
                reason: format!("\"{}\" is not an email address", payment.customer.email),
            });
        }
        let email = Email {
            message_id: Uuid::new_v5(&Uuid::NAMESPACE_OID, event.identity().as_bytes()).to_string(),
            to: payment.customer.email.clone(),
            subject: format!("Order {} confirmed", payment.order_id),
            body: format!(
                "Thank you! We received your payment of {}.{:02} {} for order {} (payment {}).",
                payment.amount / 100,
                payment.amount % 100,
                payment.currency,
                payment.order_id,
                payment.payment_id
            ),
            order_id: payment.order_id.clone(),
        };
        self.mailer.send(&email).await?;
        Ok(Outcome::new("sent")
            .with_detail(serde_json::json!({ "messageId": email.message_id, "to": email.to })))
    }
}
