//! Failed-login throttling.
//!
//! A fixed number of failures inside a sliding window locks the key (an
//! identity or a source address) until the oldest failure leaves the window.
//! Pure and clock-driven: callers pass `now`.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use crate::Timestamp;

#[derive(Clone, Copy, Debug)]
pub struct Limit {
    pub max_failures: usize,
    pub window: Duration,
}

/// Bounded in memory: keys with no failure inside the window are dropped by
/// [`FailureLimiter::prune`], and each key keeps at most `max_failures` stamps.
#[derive(Debug)]
pub struct FailureLimiter {
    limit: Limit,
    failures: HashMap<String, VecDeque<Timestamp>>,
}

impl FailureLimiter {
    pub fn new(limit: Limit) -> Self {
        FailureLimiter { limit, failures: HashMap::new() }
    }

    /// `Some(retry_after)` when the key is locked at `now`.
    pub fn check(&self, key: &str, now: Timestamp) -> Option<Duration> {
        let q = self.failures.get(key)?;
        let recent: Vec<_> = q.iter().filter(|t| self.in_window(**t, now)).collect();
        if recent.len() < self.limit.max_failures {
            return None;
        }
        let oldest = recent.first()?;
        let until = oldest.plus(self.limit.window);
        Some(Duration::from_millis(u64::try_from(until.millis() - now.millis()).unwrap_or(0).max(1000)))
    }

    pub fn record_failure(&mut self, key: &str, now: Timestamp) {
        let window = self.limit.window;
        let max = self.limit.max_failures.max(1);
        let q = self.failures.entry(key.to_string()).or_default();
        q.retain(|t| t.plus(window) > now);
        q.push_back(now);
        while q.len() > max {
            q.pop_front();
        }
    }

    /// Forget a key's failures (after a successful login).
    pub fn clear(&mut self, key: &str) {
        self.failures.remove(key);
    }

    pub fn prune(&mut self, now: Timestamp) {
        let window = self.limit.window;
        self.failures.retain(|_, q| q.back().is_some_and(|t| t.plus(window) > now));
    }

    fn in_window(&self, t: Timestamp, now: Timestamp) -> bool {
        t.plus(self.limit.window) > now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_after_max_failures_and_unlocks_after_window() {
        let mut l = FailureLimiter::new(Limit { max_failures: 3, window: Duration::from_secs(60) });
        let t0 = Timestamp(1_000_000);
        for i in 0..3 {
            assert!(l.check("alice", t0).is_none(), "attempt {i}");
            l.record_failure("alice", t0);
        }
        let retry = l.check("alice", t0).unwrap();
        assert_eq!(retry, Duration::from_secs(60));
        assert!(l.check("bob", t0).is_none(), "other keys unaffected");
        assert!(l.check("alice", t0.plus(Duration::from_secs(59))).is_some());
        assert!(l.check("alice", t0.plus(Duration::from_secs(60))).is_none());
        l.prune(t0.plus(Duration::from_secs(61)));
        assert!(l.failures.is_empty());
    }
}
