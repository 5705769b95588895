//! herald on AWS: the SDK configuration and clients, how a failure is classified, the service
//! limits herald holds events to, and what runs around every handler in a Lambda function
//! (serving it, its logs and metrics, its environment, dead letters).
//!
//! # Clients
//! [`function_config`] builds a function's SDK configuration from what Lambda sets;
//! [`dynamodb`], [`kinesis`], [`sns`], [`sqs`] build clients whose requests are counted
//! ([`RequestCounter`]).
//!
//! # Failures
//! Every AWS call answers an [`AwsError`]; [`ErrorClass`] says whether retrying can help
//! ([`errors`] has the table). Retries are bounded by the invocation's [`Deadline`] and spaced
//! by a [`Backoff`].
//!
//! # Around a handler
//! [`lambda::serve`] runs a handler on the Lambda runtime with [`telemetry`]'s JSON logs and
//! [`metrics`]' EMF metrics; [`environment`] is the list of variables each function reads;
//! [`http`] is the request/response shape of a function URL or API Gateway; [`dead_letter`]
//! parks what cannot be handled, with its reason, once per record ([`unique_letters`]).
//!
//! # Tables
//! [`RecordTables`] spreads items keyed by one string over several DynamoDB tables, past one
//! table's write quota (idempotency records, the dead-letter ledger, a handler's own items).

mod backoff;
mod config;
pub mod dead_letter;
mod deadline;
pub mod environment;
pub mod errors;
pub mod http;
pub mod lambda;
pub mod limits;
pub mod metrics;
mod record_tables;
mod request_counter;
pub mod telemetry;
pub mod unique_letters;
pub mod write_units;

pub use backoff::Backoff;
pub use config::{
    config_loader, dynamodb, function_config, kinesis, sdk_config, sns, sqs, timeouts, SdkConfig,
    ServiceEndpoints, ATTEMPT_TIMEOUT,
};
pub use deadline::{Deadline, Expired};
pub use environment::{env, MissingEnv};
pub use errors::{error_text, is_throttling_code, AwsError, ErrorClass};
pub use record_tables::RecordTables;
pub use request_counter::{request_counter, RequestCounter};
