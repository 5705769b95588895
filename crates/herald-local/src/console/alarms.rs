//! The local alarms' states (see [`crate::alarms`]).

use serde::Serialize;

use crate::alarms::{AlarmBoard, AlarmStatus, Transition};

/// What the page shows about alarms.
#[derive(Clone, Debug, Serialize)]
pub struct Alarms {
    /// Evaluated alarms, in the template's order.
    pub evaluated: Vec<AlarmStatus>,
    /// The latest changes, newest first (at most 20).
    pub changes: Vec<Transition>,
    /// Alarms not evaluated locally, with why.
    pub not_evaluated: Vec<NotEvaluated>,
}

/// An alarm the runner cannot observe.
#[derive(Clone, Debug, Serialize)]
pub struct NotEvaluated {
    /// Logical id.
    pub id: String,
    /// Why.
    pub why: String,
}

/// The board, for the page.
pub fn alarms(board: &AlarmBoard) -> Alarms {
    let mut changes = board.transitions();
    changes.reverse();
    changes.truncate(20);
    Alarms {
        evaluated: board.statuses(),
        changes,
        not_evaluated: board
            .not_evaluated()
            .into_iter()
            .map(|(id, why)| NotEvaluated { id, why })
            .collect(),
    }
}
