//! Operating a herald stack — one CloudFormation deployed (`sam deploy`) or one `herald local up`
//! started — found by name with [`herald_local::ops::connect`].
//!
//! ## Is it healthy?
//! [`doctor::examine`] looks at everything a pipeline needs to deliver: its event source mappings,
//! dead-letter and failure queues, how far behind its stream readers are, its alarms, the
//! idempotency records' TTL, point-in-time recovery and the archive. Each [`doctor::Finding`]
//! names the resource and the command that inspects or fixes it.
//!
//! ## What happened to an event?
//! [`trace::trace`] follows one business transaction through every hop from the stack's
//! CloudWatch Logs, where Lambda writes a deployed stack's function output and the local runner
//! writes a local one's.

//!
//! ## Sending to a deployed stack
//! [`signed::post_json`] reaches a deployed Function URL or HTTP API: over TLS, signed with
//! SigV4 with the SDK's credentials.

pub mod doctor;
pub mod signed;
pub mod trace;
