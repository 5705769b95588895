//! Iterator ages the stream readers see, kept until the alarm monitor takes them: what Lambda
//! reports as `IteratorAge` (per function, the oldest record of each batch it is invoked with) and
//! Kinesis as `GetRecords.IteratorAgeMilliseconds` (per stream, how old the oldest record of each
//! read was; 0 when the reader is at the tip).

use std::collections::HashMap;
use std::sync::Mutex;

/// The largest ages seen since they were last taken, in milliseconds.
#[derive(Debug, Default)]
pub struct IteratorAges {
    seen: Mutex<Ages>,
}

/// One taking of [`IteratorAges`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ages {
    /// By function logical id.
    pub functions: HashMap<String, u64>,
    /// By stream name.
    pub streams: HashMap<String, u64>,
}

impl IteratorAges {
    /// A batch invoked `function` whose oldest record was `ms` old.
    pub fn function(&self, function: &str, ms: u64) {
        let mut seen = self.seen.lock().expect("lock");
        let max = seen.functions.entry(function.to_string()).or_default();
        *max = (*max).max(ms);
    }

    /// A read of `stream` found its oldest record `ms` old (0: nothing left to read).
    pub fn stream(&self, stream: &str, ms: u64) {
        let mut seen = self.seen.lock().expect("lock");
        let max = seen.streams.entry(stream.to_string()).or_default();
        *max = (*max).max(ms);
    }

    /// Everything seen so far, starting afresh.
    pub fn take(&self) -> Ages {
        std::mem::take(&mut *self.seen.lock().expect("lock"))
    }
}
