//! Email: sends an order confirmation for every `payment_succeeded`.
//!
//! Mail goes through a [`Mailer`]. herald's is an *outbox table* ([`OutboxMailer`]): one item per
//! message, which a mail relay (SES, an SMTP worker) drains. That keeps the function free of SES
//! identity verification, works the same on every emulator, and makes "sent exactly once"
//! countable. Keyed mode: the outbox item, conditional on the message id (derived from the
//! causing event), is the only write; a redelivery finds it queued and sends nothing.

use std::future::Future;

use aws_config::SdkConfig;
use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{SecondsFormat, Utc};
use uuid::Uuid;

use crate::events::{types, PaymentSucceeded};
use herald::aws::{env, MissingEnv};
use herald::envelope::Envelope;
use herald::idempotency::{put_once, text, PutOnce};
use herald::subscriber::{HandlerError, KeyedHandler, KeyedOutcome, Outcome};

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

/// Whether a send did something.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sent {
    /// Sent (queued) now.
    Now,
    /// The same message was sent before: nothing sent again.
    Before,
}

/// The mail port.
pub trait Mailer: Send + Sync {
    /// Send (or queue) one email; sending the same `message_id` twice sends it once. The same
    /// `message_id` with another recipient or text is refused (poison): it names another
    /// message.
    fn send(&self, email: &Email) -> impl Future<Output = Result<Sent, HandlerError>> + Send;
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
    async fn send(&self, email: &Email) -> Result<Sent, HandlerError> {
        let s = |v: &str| AttributeValue::S(v.to_string());
        let item = HashMap::from([
            ("messageId".to_string(), s(&email.message_id)),
            ("to".to_string(), s(&email.to)),
            ("subject".to_string(), s(&email.subject)),
            ("body".to_string(), s(&email.body)),
            ("orderId".to_string(), s(&email.order_id)),
            (
                "queuedAt".to_string(),
                s(&Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)),
            ),
        ]);
        // Classified errors: throttling and outages redelivered, a request DynamoDB refuses for
        // good dead-lettered with its reason.
        match put_once(&self.client, &self.table, "messageId", item).await? {
            PutOnce::Written => Ok(Sent::Now),
            PutOnce::Existing(old) => {
                let same = text(&old, "to") == email.to
                    && text(&old, "subject") == email.subject
                    && text(&old, "body") == email.body;
                if same {
                    Ok(Sent::Before)
                } else {
                    Err(HandlerError::Poison {
                        field: "id".into(),
                        reason: format!(
                            "message {} was queued with other contents: the same event id \
                             with another payload",
                            email.message_id
                        ),
                    })
                }
            }
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
    /// An outbox on `TABLE_NAME` (the subscriber block's own table).
    pub fn from_env(aws: &SdkConfig) -> Result<Self, MissingEnv> {
        Ok(EmailSender::new(OutboxMailer::new(
            herald::aws::dynamodb(aws),
            env("TABLE_NAME")?,
        )))
    }
}

impl<M: Mailer> KeyedHandler for EmailSender<M> {
    fn name(&self) -> &'static str {
        "email"
    }

    fn wants(&self, event: &Envelope) -> bool {
        event.event_type() == types::PAYMENT_SUCCEEDED
    }

    async fn handle(&self, event: &Envelope) -> Result<KeyedOutcome, HandlerError> {
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
        let sent = self.mailer.send(&email).await?;
        let outcome = Outcome::new("sent")
            .with_detail(serde_json::json!({ "messageId": email.message_id, "to": email.to }));
        Ok(match sent {
            Sent::Now => KeyedOutcome::New(outcome),
            Sent::Before => KeyedOutcome::Existing(outcome),
        })
    }
}
