//! CloudWatch's verdict over the last `EvaluationPeriods` datapoints: ALARM when at least
//! `DatapointsToAlarm` of them breach, missing periods counted as `TreatMissingData` says.

use std::collections::VecDeque;

use serde::Serialize;

use super::definition::{AlarmDefinition, MissingData};

/// An alarm's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum State {
    /// Not enough data yet (every alarm starts here).
    InsufficientData,
    /// Within its threshold.
    Ok,
    /// Breaching.
    Alarm,
}

/// The datapoints of one alarm's evaluation window.
#[derive(Clone, Debug, Default)]
pub struct Window {
    datapoints: VecDeque<Option<f64>>,
}

impl Window {
    /// Add the datapoint of the period that just ended (`None`: no data in it) and return the
    /// verdict, or `None` to keep the current state (`ignore` with nothing to go on).
    pub fn push(&mut self, alarm: &AlarmDefinition, datapoint: Option<f64>) -> Option<State> {
        self.datapoints.push_back(datapoint);
        while self.datapoints.len() > alarm.evaluation_periods {
            self.datapoints.pop_front();
        }
        let mut breaching = 0;
        let mut counted = 0;
        for point in &self.datapoints {
            let breach = match (point, alarm.missing) {
                (Some(v), _) => Some(alarm.comparison.breaches(*v, alarm.threshold)),
                (None, MissingData::Breaching) => Some(true),
                (None, MissingData::NotBreaching) => Some(false),
                (None, MissingData::Ignore | MissingData::Missing) => None,
            };
            if let Some(breach) = breach {
                counted += 1;
                breaching += usize::from(breach);
            }
        }
        if breaching >= alarm.datapoints_to_alarm {
            Some(State::Alarm)
        } else if counted > 0 {
            Some(State::Ok)
        } else if alarm.missing == MissingData::Ignore {
            None
        } else {
            Some(State::InsufficientData)
        }
    }

    /// The datapoints in the window, oldest first.
    pub fn datapoints(&self) -> impl Iterator<Item = Option<f64>> + '_ {
        self.datapoints.iter().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alarms::definition::{Comparison, Source, Statistic};

    fn alarm(periods: usize, to_alarm: usize, missing: MissingData) -> AlarmDefinition {
        AlarmDefinition {
            logical_id: "A".into(),
            name: "a".into(),
            description: String::new(),
            metric: "m".into(),
            source: Source::FunctionErrors {
                function: "F".into(),
            },
            statistic: Statistic::Sum,
            period_secs: 60,
            evaluation_periods: periods,
            datapoints_to_alarm: to_alarm,
            threshold: 0.0,
            comparison: Comparison::Greater,
            missing,
        }
    }

    #[test]
    fn one_breaching_datapoint_alarms_and_the_next_clean_one_clears() {
        let a = alarm(1, 1, MissingData::NotBreaching);
        let mut w = Window::default();
        assert_eq!(w.push(&a, Some(0.0)), Some(State::Ok));
        assert_eq!(w.push(&a, Some(2.0)), Some(State::Alarm));
        assert_eq!(w.push(&a, None), Some(State::Ok));
    }

    #[test]
    fn m_out_of_n_needs_m_breaches_within_the_last_n_periods() {
        let a = alarm(5, 3, MissingData::NotBreaching);
        let mut w = Window::default();
        assert_eq!(w.push(&a, Some(1.0)), Some(State::Ok));
        assert_eq!(w.push(&a, Some(1.0)), Some(State::Ok));
        assert_eq!(w.push(&a, Some(0.0)), Some(State::Ok));
        assert_eq!(w.push(&a, Some(1.0)), Some(State::Alarm));
        for _ in 0..2 {
            w.push(&a, Some(0.0));
        }
        // Two of the three breaches have left the window.
        assert_eq!(w.push(&a, Some(0.0)), Some(State::Ok));
    }

    #[test]
    fn missing_data_counts_as_the_template_says() {
        let breaching = alarm(2, 2, MissingData::Breaching);
        let mut w = Window::default();
        w.push(&breaching, None);
        assert_eq!(w.push(&breaching, None), Some(State::Alarm));
        let missing = alarm(1, 1, MissingData::Missing);
        assert_eq!(
            Window::default().push(&missing, None),
            Some(State::InsufficientData)
        );
        let ignore = alarm(1, 1, MissingData::Ignore);
        assert_eq!(Window::default().push(&ignore, None), None);
    }
}
