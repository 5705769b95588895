//! Operating a herald stack — one CloudFormation deployed (`sam deploy`) or one `herald local up`
//! started — found by name with [`herald_local::ops::connect`].
//!
//! ## Is it healthy?
//! [`doctor::examine`] looks at everything a pipeline needs to deliver: its event source mappings,
//! dead-letter and failure queues, how far behind its stream readers are, its alarms, the
//! idempotency records' TTL, point-in-time recovery and the archive. Each [`doctor::Finding`]
//! names the resource and the command that inspects or fixes it.

pub mod doctor;
