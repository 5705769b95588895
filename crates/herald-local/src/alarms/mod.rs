//! The template's CloudWatch alarms, evaluated by the local runner where it can observe their
//! metric: queue depths (polled from the emulator), stream iterator ages (from its own readers),
//! function errors (from its own invocations). A change prints `ALARM <name>: <why>` or
//! `OK <name>`; the states stay queryable ([`AlarmBoard`]) for the console and tests. Alarms it
//! cannot observe (throttles, DynamoDB throttling, metric math) are listed once as not evaluated
//! locally, with why.
//!
//! The runner's loop that samples and evaluates them is [`crate::monitor`]. Periods are the
//! template's (60 s, 300 s) unless [`crate::monitor::AlarmSettings::period`] shortens them
//! (`herald local up --alarm-period 2`).

mod board; // states and changes
mod definition; // the template's alarm, read into a local source
mod evaluate; // CloudWatch's M-out-of-N verdict

pub use board::{AlarmBoard, AlarmStatus, Transition};
pub(crate) use definition::parse;
pub use definition::{watches, AlarmDefinition, Comparison, MissingData, Source, Statistic};
pub use evaluate::{State, Window};
