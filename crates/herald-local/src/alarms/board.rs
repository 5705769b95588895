//! The alarms' states as the runner last evaluated them, and every change, for whoever asks (the
//! console, tests). A change is also printed as `ALARM <name>: <why>` / `OK <name>`.

use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::definition::AlarmDefinition;
use super::evaluate::State;

/// One alarm's current state.
#[derive(Clone, Debug, Serialize)]
pub struct AlarmStatus {
    /// Logical id in the template.
    pub logical_id: String,
    /// `AlarmName`.
    pub name: String,
    /// `AlarmDescription`.
    pub description: String,
    /// What it watches (`ApproximateNumberOfMessagesVisible of InventoryDeadLetterQueue`).
    pub watches: String,
    /// Its state.
    pub state: State,
    /// Why it is in that state.
    pub reason: String,
    /// Since when.
    pub since: DateTime<Utc>,
    /// The latest datapoint (none: no data in the last period).
    pub latest: Option<f64>,
}

/// A state change.
#[derive(Clone, Debug, Serialize)]
pub struct Transition {
    /// `AlarmName`.
    pub name: String,
    /// The new state.
    pub state: State,
    /// Why.
    pub reason: String,
    /// When.
    pub at: DateTime<Utc>,
}

impl std::fmt::Display for Transition {
    /// The line the runner prints: `ALARM <name>: <why>`, `OK <name>`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.state {
            State::Alarm => write!(f, "ALARM {}: {}", self.name, self.reason),
            State::Ok => write!(f, "OK {}", self.name),
            State::InsufficientData => {
                write!(f, "INSUFFICIENT_DATA {}: {}", self.name, self.reason)
            }
        }
    }
}

/// Every alarm the runner evaluates, and those it cannot.
#[derive(Debug, Default)]
pub struct AlarmBoard {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    statuses: Vec<AlarmStatus>,
    transitions: Vec<Transition>,
    not_evaluated: Vec<(String, String)>,
}

impl AlarmBoard {
    /// A board for `alarms`, all in `INSUFFICIENT_DATA`, and the alarms not evaluated locally
    /// (logical id, why).
    pub fn new(alarms: &[AlarmDefinition], not_evaluated: Vec<(String, String)>) -> Self {
        let now = Utc::now();
        let statuses = alarms
            .iter()
            .map(|a| AlarmStatus {
                logical_id: a.logical_id.clone(),
                name: a.name.clone(),
                description: a.description.clone(),
                watches: super::definition::watches(a),
                state: State::InsufficientData,
                reason: "not evaluated yet".into(),
                since: now,
                latest: None,
            })
            .collect();
        AlarmBoard {
            inner: Mutex::new(Inner {
                statuses,
                transitions: Vec::new(),
                not_evaluated,
            }),
        }
    }

    /// Every evaluated alarm's state, in the template's order.
    pub fn statuses(&self) -> Vec<AlarmStatus> {
        self.inner.lock().expect("lock").statuses.clone()
    }

    /// Every change so far, oldest first (the start-up move from `INSUFFICIENT_DATA` to `OK` is
    /// not a change anyone needs to hear about, and is not recorded).
    pub fn transitions(&self) -> Vec<Transition> {
        self.inner.lock().expect("lock").transitions.clone()
    }

    /// Alarms of the template the runner cannot evaluate: (logical id, why).
    pub fn not_evaluated(&self) -> Vec<(String, String)> {
        self.inner.lock().expect("lock").not_evaluated.clone()
    }

    /// Record the verdict of alarm `index`; returns the change, if it was one worth telling.
    pub(crate) fn record(
        &self,
        index: usize,
        state: State,
        reason: String,
        latest: Option<f64>,
    ) -> Option<Transition> {
        let mut inner = self.inner.lock().expect("lock");
        let status = inner.statuses.get_mut(index)?;
        status.latest = latest;
        if status.state == state {
            status.reason = reason;
            return None;
        }
        let quiet_start = status.state == State::InsufficientData && state == State::Ok;
        let now = Utc::now();
        status.state = state;
        status.reason = reason.clone();
        status.since = now;
        let transition = Transition {
            name: status.name.clone(),
            state,
            reason,
            at: now,
        };
        if quiet_start {
            return None;
        }
        inner.transitions.push(transition.clone());
        Some(transition)
    }
}
