//! Ops: turns system events (`job_failed`, ...) and suspected fraud (`fraud_suspected`, a
//! business event) into incidents an operator works through.
//!
//! Transactional mode: the incident item commits with the idempotency record.

use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use chrono::SecondsFormat;

use crate::events::{types, FraudSuspected, JobFailed};
use herald::aws::{env, MissingEnv};
use herald::envelope::{Envelope, EventKind};
use herald::idempotency::{Conflict, Decision};
use herald::subscriber::{HandlerError, Outcome, TransactionalHandler};

/// Incidents table attributes: partition key `incidentId` (S).
pub mod attr {
    /// Partition key: the event id.
    pub const INCIDENT_ID: &str = "incidentId";
}

/// The ops subscriber.
#[derive(Clone, Debug)]
pub struct Ops {
    table: String,
}

impl Ops {
    /// Open incidents in `table`.
    pub fn new(table: impl Into<String>) -> Self {
        Ops {
            table: table.into(),
        }
    }

    /// From `TABLE_NAME` (the subscriber block's own table).
    pub fn from_env(_aws: &SdkConfig) -> Result<Self, MissingEnv> {
        Ok(Ops::new(env("TABLE_NAME")?))
    }
}

impl TransactionalHandler for Ops {
    fn name(&self) -> &'static str {
        "ops"
    }

    fn wants(&self, event: &Envelope) -> bool {
        event.kind() == EventKind::System || event.event_type() == types::FRAUD_SUSPECTED
    }

    fn decide(
        &self,
        event: &Envelope,
        _conflict: Option<Conflict>,
    ) -> Result<Decision<Outcome>, HandlerError> {
        let s = |v: &str| AttributeValue::S(v.to_string());
        let (severity, summary) = if event.event_type() == types::JOB_FAILED {
            let job: JobFailed = event.data_as()?;
            (
                "high",
                format!(
                    "job {} failed (attempt {}): {}",
                    job.job, job.attempt, job.error
                ),
            )
        } else if event.event_type() == types::FRAUD_SUSPECTED {
            let fraud: FraudSuspected = event.data_as()?;
            (
                "high",
                format!(
                    "fraud suspected for customer {} in the window from {}: {}; their {} orders \
                     are being cancelled and refunded",
                    fraud.customer_id,
                    fraud.window_start,
                    fraud.reasons.join("; "),
                    fraud.order_ids.len()
                ),
            )
        } else {
            (
                "info",
                format!("{} from {}", event.event_type(), event.source()),
            )
        };
        let put = Put::builder()
            .table_name(&self.table)
            .item(attr::INCIDENT_ID, s(event.id()))
            .item("type", s(event.event_type()))
            .item("source", s(event.source()))
            .item("severity", s(severity))
            .item("summary", s(&summary))
            .item("correlationId", s(event.correlation_id()))
            .item(
                "time",
                s(&event.time().to_rfc3339_opts(SecondsFormat::Millis, true)),
            )
            .item("status", s("open"))
            .build()
            .map_err(|e| HandlerError::Retry(e.to_string()))?;
        Ok(Decision {
            deltas: Vec::new(),
            writes: vec![TransactWriteItem::builder().put(put).build()],
            result: Outcome::new("incident_opened")
                .with_detail(serde_json::json!({ "severity": severity })),
        })
    }
}
