//! Fault injection: an HTTP proxy between every function (and every event source mapping's
//! poller) and the emulator that answers a chosen share of requests the way AWS does when it
//! hurts, so that herald's retries, backoff and dead-lettering run as they would on AWS. The
//! emulator never throttles, never conflicts and never fails; AWS does all three.
//!
//! ```text
//! function / poller ──► FaultProxy ──► moto
//!                         │ throttle, kms, conflict, 5xx, latency, drop, outage
//!                         ▼
//!                       AWS-shaped error (status, x-amzn-ErrorType / __type, or <ErrorResponse>)
//! ```
//!
//! The spec ([`FaultPlan::parse`], `herald local up --faults`) is a comma-separated list:
//!
//! | part | injects |
//! |---|---|
//! | `throttle=5%` | Kinesis/DynamoDB `ProvisionedThroughputExceededException`, DynamoDB `ThrottlingException`, SNS `Throttling`, SQS `RequestThrottled` (400) |
//! | `kms=2%` | Kinesis `KMSThrottlingException` (400) |
//! | `conflict=5%` | DynamoDB `TransactionCanceledException` with one `TransactionConflict` reason (TransactWriteItems only) |
//! | `conflict=contention` | the same, whenever another transaction touching the same item is in flight (as DynamoDB does) |
//! | `5xx=2%` | `InternalError`/`InternalFailure`/`InternalServerError` (500) or `ServiceUnavailable` (503) |
//! | `latency=20ms@10%` | 20 ms more on 10 % of requests (`latency=20ms`: on all) |
//! | `drop=1%` | the connection closed with no answer, half before the request reaches the emulator, half after it was applied |
//! | `outage=sns:PublishBatch@20s+30s` | that operation answers 503 `ServiceUnavailable` from 20 s after start, for 30 s |
//! | `kill=3%` | the runner kills the function's process during 3 % of invocations, at a random moment or as it answers (`kill:inventory=10%`: one function's) |
//! | `seed=7` | the decisions' seed (default 0) |
//!
//! Any share-based part can be scoped: `throttle:dynamodb=10%`, `5xx:sns:PublishBatch=50%`.
//! A share is a count, not a chance: each run of about `1 / share` requests in a rule's scope
//! (per service) gets exactly one fault, at a place drawn from the seed, so after `n` requests at
//! least [`guaranteed`]`(share, n)` were hit on any machine, fast or slow. A test asserts the
//! faults it planned from the plan, never from luck. Outages a test must overlap with something
//! else are begun and ended by the test ([`FaultProxy::begin_outage`]).
//! [`FaultProxy::report`] counts what was injected per kind and service.

mod answer;
mod kills;
mod proxy;
mod spec;
mod spread;

pub use answer::{AwsFault, Protocol};
pub use kills::Kills;
pub use proxy::{FaultProxy, FaultReport};
pub use spec::{FaultKind, FaultPlan, KillRule, Outage, Rule, Scope, SpecError, Trigger, SERVICES};
pub use spread::guaranteed;
