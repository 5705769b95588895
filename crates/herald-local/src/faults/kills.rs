//! `kill=…`: function processes killed mid-invocation, as when Lambda's execution environment
//! dies (out of memory, a host failure). The runner asks [`Kills::decide`] before each
//! invocation; the instance kills its process at the chosen moment, or as it answers when it
//! answers sooner (its work done, its answer lost), and the caller sees `Runtime.ExitError` as it
//! would on AWS. A share is a count (see `spread`): `kill:producer=40%` kills two of every five
//! invocations of the producer, so a test asserts the kills from the plan, not from luck.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use super::proxy::{splitmix, unit};
use super::spec::{FaultPlan, KillRule};
use super::spread::hits;

/// The kill rules of a plan and what they did.
#[derive(Debug)]
pub struct Kills {
    rules: Vec<KillRule>,
    seed: u64,
    /// Invocations seen per function: the sequence number each decision is drawn from.
    sequence: Mutex<HashMap<String, u64>>,
    /// Processes killed per function label.
    killed: Mutex<BTreeMap<String, u64>>,
}

impl Kills {
    /// The plan's kill rules (`None` when it has none).
    pub fn new(plan: &FaultPlan) -> Option<Kills> {
        (!plan.kills.is_empty()).then(|| Kills {
            rules: plan.kills.clone(),
            seed: plan.seed,
            sequence: Mutex::new(HashMap::new()),
            killed: Mutex::new(BTreeMap::new()),
        })
    }

    /// Whether to kill this invocation of the function, and when: a moment drawn uniformly
    /// within `typical` (how long its invocations take), so kills land mid-batch (an invocation
    /// that answers first is killed as it answers). A rule naming the function wins over one for
    /// every function. The same seed kills the same invocations of each function.
    pub fn decide(&self, label: &str, logical_id: &str, typical: Duration) -> Option<Duration> {
        let share = self.share(label, logical_id);
        if share == 0.0 {
            return None;
        }
        let n = {
            let mut sequence = self.sequence.lock().expect("lock");
            let n = sequence.entry(label.to_string()).or_default();
            *n += 1;
            *n
        };
        let mut h = splitmix(self.seed ^ 0x6b69_6c6c);
        for byte in label.bytes() {
            h = splitmix(h ^ u64::from(byte));
        }
        let roll = splitmix(h ^ n);
        hits(share, h, n).then(|| typical.mul_f64(unit(roll)))
    }

    /// Count a process killed.
    pub fn note(&self, label: &str) {
        *self
            .killed
            .lock()
            .expect("lock")
            .entry(label.to_string())
            .or_default() += 1;
    }

    /// Invocations decided so far, per function label (what the shares count).
    pub fn invocations(&self) -> BTreeMap<String, u64> {
        self.sequence
            .lock()
            .expect("lock")
            .iter()
            .map(|(label, n)| (label.clone(), *n))
            .collect()
    }

    /// The share of `label`'s invocations its rules kill (0 when none applies).
    pub fn share(&self, label: &str, logical_id: &str) -> f64 {
        self.rules
            .iter()
            .find(|r| r.function.is_some() && r.matches(label, logical_id))
            .or_else(|| self.rules.iter().find(|r| r.function.is_none()))
            .map_or(0.0, |r| r.share)
    }

    /// Processes killed so far, per function label.
    pub fn killed(&self) -> BTreeMap<String, u64> {
        self.killed.lock().expect("lock").clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_share_of_invocations_is_killed_within_their_typical_length() {
        let plan = FaultPlan::parse("kill:inventory=10%,seed=3").unwrap();
        let kills = Kills::new(&plan).unwrap();
        let typical = Duration::from_millis(200);
        let decided: Vec<Option<Duration>> = (0..2000)
            .map(|_| kills.decide("inventory", "InventoryFunction", typical))
            .collect();
        let killed = decided.iter().flatten().count();
        assert_eq!(killed, 200, "10 % of 2000, exactly");
        assert!(decided.iter().flatten().all(|at| *at < typical));
        assert!(
            (0..100).all(|_| kills
                .decide("payment", "PaymentFunction", typical)
                .is_none()),
            "other functions are left alone"
        );
        let again = Kills::new(&plan).unwrap();
        let replay: Vec<Option<Duration>> = (0..2000)
            .map(|_| again.decide("inventory", "InventoryFunction", typical))
            .collect();
        assert_eq!(replay, decided, "the same seed kills the same invocations");
        assert!(Kills::new(&FaultPlan::parse("throttle=1%").unwrap()).is_none());
    }

    #[test]
    fn a_rule_naming_the_function_wins_over_one_for_every_function() {
        for spec in ["kill=0%,kill:inventory=100%", "kill:inventory=100%,kill=0%"] {
            let kills = Kills::new(&FaultPlan::parse(spec).unwrap()).unwrap();
            let typical = Duration::from_millis(10);
            assert!(
                kills
                    .decide("inventory", "InventoryFunction", typical)
                    .is_some(),
                "{spec}"
            );
            assert!(
                kills
                    .decide("payment", "PaymentFunction", typical)
                    .is_none(),
                "{spec}"
            );
        }
    }
}
