//! Benchmarks that print tables (`herald bench ...`); BENCHMARKS.md holds a run's results.
//!
//! - [`idempotency`]: DynamoDB requests per event for each idempotency path;
//! - [`router`]: the router's hot path in events/s on one core, next to Powertools for Python;
//! - [`cold_start`]: process start to the first `/next`, binary size, peak RSS per function;
//! - [`pipeline`]: the local pipeline end to end — events/s, latency, AWS requests per event
//!   and what they cost.

pub mod cold_start;
pub mod idempotency;
pub mod pipeline;
pub mod router;

pub use idempotency::{idempotency_requests, render_requests, RequestRow};
