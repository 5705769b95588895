//! AWS implementations of herald's ports.

mod kinesis;
mod sns;
mod sqs;

pub use kinesis::KinesisStream;
pub use sns::SnsBus;
pub use sqs::{SqsDeadLetters, SqsRedelivery};
