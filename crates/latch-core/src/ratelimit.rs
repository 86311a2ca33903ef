//! Failed-login throttling.
//!
//! A fixed number of failures inside a sliding window locks the key (an
//! identity or a source address) until the oldest failure leaves the window.
//! Pure and clock-driven: callers pass the failures they know of and `now`.
//! The failures themselves live in the store, so every node of a cluster
//! counts the same ones.

use std::time::Duration;

use crate::Timestamp;

#[derive(Clone, Copy, Debug)]
pub struct Limit {
    pub max_failures: usize,
    pub window: Duration,
}

impl Limit {
    /// `Some(retry_after)` when a key with these `failures` is locked at `now`.
    /// Failures outside the window are ignored; order does not matter.
    pub fn locked_for(&self, failures: &[Timestamp], now: Timestamp) -> Option<Duration> {
        let mut recent: Vec<Timestamp> = failures.iter().copied().filter(|t| t.plus(self.window) > now).collect();
        if recent.len() < self.max_failures.max(1) {
            return None;
        }
        recent.sort();
        // Unlocked once all but max_failures - 1 of them have left the window.
        let pivot = recent[recent.len() - self.max_failures.max(1)];
        let until = pivot.plus(self.window);
        Some(Duration::from_millis(u64::try_from(until.millis() - now.millis()).unwrap_or(0).max(1000)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_after_max_failures_and_unlocks_after_window() {
        let l = Limit { max_failures: 3, window: Duration::from_secs(60) };
        let t0 = Timestamp(1_000_000);
        let mut failures = Vec::new();
        for i in 0..3 {
            assert!(l.locked_for(&failures, t0).is_none(), "attempt {i}");
            failures.push(t0);
        }
        assert_eq!(l.locked_for(&failures, t0), Some(Duration::from_secs(60)));
        assert!(l.locked_for(&failures, t0.plus(Duration::from_secs(59))).is_some());
        assert!(l.locked_for(&failures, t0.plus(Duration::from_secs(60))).is_none());
    }

    #[test]
    fn the_lock_lasts_until_enough_failures_leave_the_window() {
        let l = Limit { max_failures: 2, window: Duration::from_secs(60) };
        let t = |s: u64| Timestamp(1_000_000).plus(Duration::from_secs(s));
        // Three failures at 0, 10, 20 s: locked until the one at 10 s leaves (70 s).
        let f = [t(20), t(0), t(10)];
        assert_eq!(l.locked_for(&f, t(30)), Some(Duration::from_secs(40)));
        assert!(l.locked_for(&f, t(70)).is_none());
    }
}
