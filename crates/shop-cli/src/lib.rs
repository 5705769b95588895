//! The shop example's commands on herald's local runner — the `shop` binary — as a library, so
//! the end-to-end tests can send the same traffic and read back the same report:
//!
//! - [`demo`]: the pipeline up, a burst of orders, a summary, one order's lifecycle and trace;
//! - [`load`]: order traffic into a running stack at a steady rate;
//! - [`rebuild`]: `orders_view` folded again from the event store;
//! - [`mod@bench`]: the benchmarks BENCHMARKS.md holds.
//!
//! herald's own commands (`herald local up`, `invoke`, `send`, `dlq`, `replay`, `trace`, ...)
//! work on the shop's stack as on any other.

#![warn(missing_docs)]

pub mod bench;
pub mod common;
pub mod demo;
pub mod load;
pub mod rebuild;
