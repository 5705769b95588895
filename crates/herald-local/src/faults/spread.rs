//! A share as a count: how `throttle=5%` or `kill=40%` picks the occasions it hits.
//!
//! The occasions in a rule's scope (its requests, a function's invocations) are cut into runs of
//! about `1 / share` in a row, and each run gets exactly one hit at a seeded place within it. So
//! after `n` occasions at least `⌊n · share⌋` were hit, whatever the machine's speed or the
//! interleaving, and a test can assert "it happened" from the plan alone; within a run the place is
//! still unpredictable, and two hits can fall next to each other (the end of one run, the start of
//! the next), so retries meet repeated faults as they do on AWS.

use super::proxy::splitmix;

/// Shares are counted in parts per million (no float rounding at run boundaries).
const MILLION: u64 = 1_000_000;

/// Whether occasion `k` (1-based, counted within the rule's scope) is hit by a rule with this
/// `share`. `key` seeds the places (one key per rule and scope).
pub(super) fn hits(share: f64, key: u64, k: u64) -> bool {
    let parts = (share * MILLION as f64).round() as u64;
    if parts == 0 || k == 0 {
        return false;
    }
    if parts >= MILLION {
        return true;
    }
    let index = k - 1;
    // Run `run` holds the indexes i with ⌊i · parts / MILLION⌋ = run.
    let run = index * parts / MILLION;
    let first = (run * MILLION).div_ceil(parts);
    let next = ((run + 1) * MILLION).div_ceil(parts);
    let place = splitmix(key ^ splitmix(run)) % (next - first);
    index - first == place
}

/// How many of the first `n` occasions a rule with this `share` is sure to have hit.
pub fn guaranteed(share: f64, n: u64) -> u64 {
    let parts = (share * MILLION as f64).round() as u64;
    (n * parts.min(MILLION)) / MILLION
}

/// Occasions seen per scope, and hits owed: a rule whose place came on an occasion another rule
/// had already taken (the first rule to hit answers a request) takes the next one instead, so
/// every rule's count holds.
#[derive(Debug, Default)]
pub(super) struct Tally {
    seen: u64,
    owed: u64,
}

impl Tally {
    /// Count one more occasion; whether the rule hits it (its place, or a hit it owes).
    pub(super) fn next(&mut self, share: f64, key: u64) -> bool {
        self.seen += 1;
        if hits(share, key, self.seen) {
            // A hit still owed waits for the next occasion.
            return true;
        }
        if self.owed > 0 {
            self.owed -= 1;
            return true;
        }
        false
    }

    /// The hit could not be taken here: take the next occasion.
    pub(super) fn owe(&mut self) {
        self.owed += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_run_of_occasions_gets_its_hit() {
        for share in [0.01, 0.03, 0.05, 0.4, 0.5, 0.11, 0.999] {
            for key in [0, 7, 11, u64::MAX] {
                let mut count = 0;
                for n in 1..=3000 {
                    count += u64::from(hits(share, key, n));
                    let floor = guaranteed(share, n);
                    assert!(
                        (floor..=floor + 1).contains(&count),
                        "{share} key {key}: {count} hits in {n}, expected {floor} or one more"
                    );
                }
            }
        }
        assert!((1..100).all(|n| !hits(0.0, 3, n)));
        assert!((1..100).all(|n| hits(1.0, 3, n)));
    }

    #[test]
    fn places_vary_with_the_key_and_repeat_with_it() {
        let places = |key| -> Vec<u64> { (1..=200).filter(|n| hits(0.05, key, *n)).collect() };
        assert_eq!(places(3), places(3));
        assert_ne!(places(3), places(4));
        let gaps: Vec<u64> = places(3).windows(2).map(|w| w[1] - w[0]).collect();
        assert!(
            gaps.iter().any(|g| *g != 20),
            "not every 20th occasion: {gaps:?}"
        );
    }

    #[test]
    fn an_owed_hit_lands_on_the_next_occasion() {
        let mut tally = Tally::default();
        let first = (1..=100).find(|n| hits(0.05, 9, *n)).unwrap();
        for _ in 1..first {
            assert!(!tally.next(0.05, 9));
        }
        assert!(tally.next(0.05, 9));
        tally.owe();
        assert!(tally.next(0.05, 9), "owed");
    }
}
