//! The template's CloudWatch alarms, evaluated by the local runner where it can observe their
//! metric: queue depths (polled from the emulator), stream iterator ages (from its own readers),
//! function errors (from its own invocations). A change prints `ALARM <name>: <why>` or
//! `OK <name>`; the states stay queryable ([`AlarmBoard`]) for the console and tests. Alarms it
//! cannot observe (throttles, DynamoDB throttling, metric math) are listed once as not evaluated
//! locally, with why.
//!
//! Periods are the template's (60 s, 300 s) unless [`AlarmSettings::period`] shortens them
//! (`herald local up --alarm-period 2`).

mod board; // states and changes
mod definition; // the template's alarm, read into a local source
mod evaluate; // CloudWatch's M-out-of-N verdict
mod monitor; // the sampling and evaluation loop

pub use board::{AlarmBoard, AlarmStatus, Transition};
pub use definition::{read, AlarmDefinition, Comparison, MissingData, Source, Statistic};
pub use evaluate::{State, Window};
pub use monitor::{run, watches, AlarmSettings, Observed};
